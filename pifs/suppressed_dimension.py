"""Suppression-corrected exponents, λ*** and d_KY: Table 11 and Theorem 27 (§7.7).

Homes of :func:`suppressed_moran_threshold` (λ***, eq. 48) and :func:`suppressed_dimension_table`;
the exponents themselves are :func:`pifs.dimension.suppressed_exponents` /
:func:`pifs.dimension.suppressed_kaplan_yorke`. (Re-exported by :mod:`pifs.experiments`.)
"""
from __future__ import annotations

import numpy as np

__all__ = ["suppressed_moran_threshold", "suppressed_dimension_table"]


def suppressed_moran_threshold(S_of_lam, alpha_bar, *, bracket=(1.0, 1e6)):
    """λ*** solving the suppression-corrected Moran equation ∏_t g_t(λ) = 1 (Theorem 27, eq. 48).

    g_t(λ) = f_t(λ) − S_t(λ), where the paper does not say how S depends on λ: the caller
    passes ``S_of_lam(lam) -> array (T,)`` (e.g. a λ-independent patch mean, or an
    interpolation across the measured patches). The root of h(u) = Σ_t log g_t(e^u) is
    bracketed on a log grid over ``bracket`` and refined with ``scipy.optimize.brentq``.

    Parameters
    ----------
    S_of_lam : callable
        λ (float > 0) ↦ S_t(λ), shape (T,), index i ↔ step t = i + 1 of ``alpha_bar``.
    alpha_bar : array_like, shape (T+1,)
        The chain (e.g. the DDIM sub-sampled schedule).
    bracket : (float, float)
        Search interval for λ, 0 < lo < hi.

    Returns
    -------
    (float, dict)
        λ*** (``inf`` when ∏_t g_t(λ) < 1 on the whole bracket, ``nan`` when g ≤ 0
        somewhere on it so the product is undefined, ``lo`` when already ≥ 1 at lo) and
        info: ``log_prod_lo``, ``log_prod_hi`` (Σ log g at the bracket ends, nan if
        undefined), ``limit`` (Σ_t log(√(ᾱ_{t−1}/ᾱ_t) − S_t(hi)), the λ → ∞ value of
        Σ log g when S does not depend on λ), ``status``.

    Raises
    ------
    ValueError
        For a bad bracket or an S of the wrong shape.
    """
    from scipy import optimize

    from .geometry import expansion_factor, expansion_function
    from .schedules import validate

    a = validate(alpha_bar)
    T = a.size - 1
    lo, hi = map(float, bracket)
    if not 0 < lo < hi:
        raise ValueError(f"bracket: expected 0 < lo < hi, got {bracket!r}")

    def h(u):
        lam = float(np.exp(u))
        S = np.asarray(S_of_lam(lam), np.float64)
        if S.shape != (T,):
            raise ValueError(f"S_of_lam: expected an array of shape (T,) = ({T},), got {S.shape}")
        g = expansion_function(lam, a) - S
        return float(np.log(g).sum()) if (g > 0).all() else np.nan

    us = np.linspace(np.log(lo), np.log(hi), 400)
    hs = np.array([h(u) for u in us])
    S_hi = np.asarray(S_of_lam(hi), np.float64)
    lim_terms = expansion_factor(a) - S_hi
    info = {"log_prod_lo": hs[0], "log_prod_hi": hs[-1],
            "limit": float(np.log(lim_terms).sum()) if (lim_terms > 0).all() else np.nan}
    if np.isnan(hs).any():
        info["status"] = "g_t(λ) ≤ 0 for some λ in the bracket: the product is undefined"
        return float("nan"), info
    if hs[0] >= 0:
        info["status"] = "∏ g ≥ 1 already at the lower end of the bracket"
        return lo, info
    pos = np.flatnonzero(hs > 0)
    if pos.size == 0:
        info["status"] = "∏ g < 1 on the whole bracket: no root (λ*** = ∞)"
        return float("inf"), info
    i = int(pos[0])
    u = optimize.brentq(h, us[i - 1], us[i], xtol=1e-13)
    info["status"] = "root"
    return float(np.exp(u)), info


def suppressed_dimension_table(lam, n_k, S, alpha_bar, R=None):
    """Table 11 on any model: Λ_pred,k, Λ̂_k, λ*** and d_KY^eff from S_k,t and Rayleigh quotients.

    Parameters
    ----------
    lam : array_like, shape (M,), > 0
        Patch variances λ_k (16 × 16 patches of 32 × 32 CIFAR-10 in ``small``: M = 4).
    n_k : int
        Values per patch.
    S : array_like, shape (samples, M, T)
        S_k,t (eq. 30) at every step of the chain ``alpha_bar`` (sub-sampled schedule, T steps),
        e.g. :func:`pifs.suppression.suppression_field` at points x_t ~ q(x_t).
    alpha_bar : array_like, shape (T+1,)
        The chain as a schedule (:func:`pifs.schedules.subsample`).
    R : array_like, shape (trajectories, M, T'), optional
        Rayleigh quotients r_k,t = ⟨v_k, [J Φ_t]_kk v_k⟩ along trajectories: Λ̂_k = mean_t log|r|
        (the paper's "signed Rayleigh quotient estimator").

    Returns
    -------
    (pandas.DataFrame, dict)
        Per patch: ``patch``, ``lam``, ``Lambda_gauss`` (Theorem 26), ``Lambda_pred`` (eq. 49; NaN
        where S ≥ f), ``Lambda_hat``, ``std`` (over trajectories); and ``lam3`` (λ*** with S the
        patch mean, interpolated in λ), ``lam3_info``, ``d_ky`` (:func:`pifs.dimension.suppressed_kaplan_yorke`
        ``d_ky``, NaN where undefined), ``violations`` (fraction of S ≥ f).

    Raises
    ------
    ValueError
        For inconsistent shapes.
    """
    import pandas as pd

    from .dimension import suppressed_exponents, suppressed_kaplan_yorke
    from .geometry import expansion_function, mean_lyapunov_exponent

    lam = np.atleast_1d(np.asarray(lam, np.float64))
    S = np.asarray(S, np.float64)
    if S.ndim == 2:
        S = S[None]
    f = expansion_function(lam, alpha_bar)
    if S.shape[1:] != f.shape:
        raise ValueError(f"S: expected shape (samples, M, T) = (·, {f.shape[0]}, {f.shape[1]}), got {S.shape}")
    viol = float((S >= f[None]).mean())
    try:
        Lp = suppressed_exponents(lam, S, alpha_bar)
        ky = suppressed_kaplan_yorke(lam, n_k, S, alpha_bar).d_ky
    except ValueError:
        Lp, ky = np.full(lam.size, np.nan), float("nan")
    order = np.argsort(lam)
    Sm = S.mean(0)  # (M, T)

    def S_of_lam(x):
        return np.array([np.interp(x, lam[order], Sm[order, i]) for i in range(Sm.shape[1])])

    lam3, info = suppressed_moran_threshold(S_of_lam, alpha_bar)
    rows = {"patch": np.arange(lam.size), "lam": lam, "Lambda_gauss": mean_lyapunov_exponent(lam, alpha_bar),
            "Lambda_pred": Lp}
    if R is not None:
        L = np.log(np.abs(np.asarray(R, np.float64))).mean(-1)  # (traj, M)
        rows["Lambda_hat"] = L.mean(0)
        rows["std"] = L.std(0, ddof=1) if L.shape[0] > 1 else np.zeros(lam.size)
    return pd.DataFrame(rows), {"lam3": lam3, "lam3_info": info, "d_ky": float(ky), "violations": viol}
