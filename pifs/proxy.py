"""The paired-difference proxy of eq. (65) and its log–log fit: Table 10 and Figure 1 (§7.6).

Δ̂_t(x_0, ε) = ε̂(√ᾱ_t x_0 + √v_t ε, t) − ε̂(√v_t ε, t) (eq. 65) estimates the deviation field
Δ_t = ε̂ − ε^N (eq. 28) at high noise; Theorem 16 predicts ‖Δ_t‖ = O(√ᾱ_t), tested by an OLS fit of
log E‖Δ̂_t‖ on log √ᾱ_t over t ≥ 800 (:func:`loglog_fit`). (Re-exported by :mod:`pifs.experiments`.)
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .setup7 import forward_marginal, model_device

__all__ = ["paired_difference_proxy", "loglog_fit", "proxy_table"]


def loglog_fit(x, y, *, confidence: float = 0.95, slope_null: float = 1.0) -> dict:
    """OLS fit of log y on log x with a t-interval for the slope (§7.6).

    Parameters
    ----------
    x, y : array_like, shape (N,), positive, N >= 3
    confidence : float
        Level of the two-sided slope interval.
    slope_null : float
        Slope of the one-sided test H1: slope < slope_null.

    Returns
    -------
    dict
        ``slope``, ``ci`` (low, high), ``r2``, ``intercept`` (natural log), ``stderr``,
        ``p_less`` (one-sided p of slope < slope_null), ``p_two_sided`` (of slope ≠
        slope_null), ``n``. From ``scipy.stats.linregress`` and the t distribution with
        N − 2 degrees of freedom.

    Raises
    ------
    ValueError
        If fewer than 3 points or a value is not positive.
    """
    from scipy import stats as st

    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    if x.size != y.size or x.size < 3:
        raise ValueError(f"x, y: expected equal lengths >= 3, got {x.size} and {y.size}")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError("x, y: a log-log fit needs positive values")
    r = st.linregress(np.log(x), np.log(y))
    dof = x.size - 2
    q = st.t.ppf(0.5 + confidence / 2, dof)
    tstat = (r.slope - slope_null) / r.stderr if r.stderr > 0 else (-np.inf if r.slope < slope_null else np.inf)
    return {
        "slope": float(r.slope), "ci": (float(r.slope - q * r.stderr), float(r.slope + q * r.stderr)),
        "r2": float(r.rvalue ** 2), "intercept": float(r.intercept), "stderr": float(r.stderr),
        "p_less": float(st.t.cdf(tstat, dof)), "p_two_sided": float(2 * st.t.sf(abs(tstat), dof)), "n": int(x.size),
    }


@torch.no_grad()
def paired_difference_proxy(model, images, t: int, alpha_bar, *, seed: int = 0, batch: int = 64) -> np.ndarray:
    """The paired-difference proxy ‖Δ̂_t(x_0, ε)‖_2 of eq. (65), one value per image.

    Δ̂_t = ε̂(√ᾱ_t x_0 + √v_t ε, t) − ε̂(√v_t ε, t), with the same ε for both inputs.

    Parameters
    ----------
    model : callable ``model(x, t)``
    images : numpy.ndarray, float, (N, C, H, W), pixel scale [−1, 1]
    t : int, 1..T
    alpha_bar : array_like, shape (T+1,)
    seed : int
        Seed of ε (the same for every t, so the curve is paired across timesteps).
    batch : int

    Returns
    -------
    numpy.ndarray, float64, shape (N,)

    Raises
    ------
    ValueError
        As :func:`forward_marginal`.
    """
    from .schedules import validate

    a = validate(alpha_bar)
    x_real, eps = forward_marginal(images, t, a, seed=seed)
    x_noise = math.sqrt(1.0 - a[t]) * eps
    dev = model_device(model)
    out = []
    for s in range(0, x_real.shape[0], int(batch)):
        xr, xn = x_real[s:s + batch].to(dev), x_noise[s:s + batch].to(dev)
        d = model(xr, int(t)) - model(xn, int(t))
        out.append(d.reshape(d.shape[0], -1).norm(dim=1).double().cpu())
    return torch.cat(out).numpy()


def proxy_table(model, images, timesteps, alpha_bar, *, seed: int = 0, fit_min_t: int = 800, batch: int = 64):
    """Table 10 and the fit of Figure 1: E‖Δ̂_t‖ (mean ± std over images) per t and the log–log OLS.

    Parameters
    ----------
    model : callable ``model(x, t)``
        Network or exact model (:mod:`pifs.reference_models`).
    images : numpy.ndarray, (N, C, H, W), pixel scale [−1, 1]
    timesteps : iterable of int in 1..T
        The paper's 14 (999, 990, 980, 960, …, 300; they are printed as training indices).
    alpha_bar : array_like, shape (T+1,)
    seed : int
        Seed of ε, the same at every t (paired).
    fit_min_t : int
        The fit uses t ≥ fit_min_t (800 in the paper).
    batch : int

    Returns
    -------
    (pandas.DataFrame, dict)
        Rows ``t``, ``sqrt_ab``, ``mean``, ``std`` (ddof = 1); and :func:`loglog_fit` of mean on √ᾱ_t
        over t ≥ ``fit_min_t`` (needs ≥ 3 such t).

    Raises
    ------
    ValueError
        As :func:`paired_difference_proxy` and :func:`loglog_fit`.
    """
    import pandas as pd

    from .schedules import validate

    a = validate(alpha_bar)
    rows = []
    for t in timesteps:
        d = paired_difference_proxy(model, images, int(t), a, seed=seed, batch=batch)
        rows.append({"t": int(t), "sqrt_ab": float(np.sqrt(a[int(t)])), "mean": float(d.mean()),
                     "std": float(d.std(ddof=1)) if d.size > 1 else 0.0})
    df = pd.DataFrame(rows)
    hi = df[df.t >= fit_min_t]
    return df, loglog_fit(hi.sqrt_ab.values, hi["mean"].values)
