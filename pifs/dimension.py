"""Lyapunov spectra and Kaplan–Yorke dimensions of the DDIM chain (§5 of the paper).

Conventions
-----------
* A *chain* of Jacobians is given **in the order the maps are applied**. For the
  reverse DDIM chain Φ = Φ_1 ∘ ⋯ ∘ Φ_T that is step t = T first, i.e. the list
  ``[J Φ_T, J Φ_{T−1}, ..., J Φ_1]`` whose product is J Φ = J Φ_1 ⋯ J Φ_T
  (eq. 43: ∏_{t=T}^{1} J_{x_t*} Φ_t).
* Exponents are natural-log rates **per step**: eq. (43) divides log s_i by the
  number of steps T of one pass of the chain (not by the number of passes).
* Spectra are returned sorted in decreasing order, as eq. (44) needs them.
* Schedules follow :mod:`pifs.schedules` (``alpha_bar`` of shape (T+1,),
  ``alpha_bar[0] = 1``, step t = 1..T maps x_t to x_{t−1}); the schedule-only
  quantities f_t(λ), Λ(μ), λ** come from :mod:`pifs.geometry`.

Contents
--------
==================================  ===============================================
:func:`kaplan_yorke_dimension`      d_KY of a spectrum, eq. (44)
:func:`lyapunov_spectrum`           spectrum of a product of Jacobians (QR / exact SVD),
                                    eq. (43), Benettin et al. (1980)
:func:`gaussian_lyapunov_spectrum`  Theorem 26: {Λ(λ_k) repeated n_k times}
:func:`gaussian_kaplan_yorke`       Theorem 26: formula (47), condition (46), lower bound
:func:`suppressed_exponents`        Theorem 27: Λ_eff,k, eqs. (48)–(49)
:func:`suppressed_kaplan_yorke`     Theorem 27: formula (50)
==================================  ===============================================
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .geometry import expansion_function, mean_lyapunov_exponent, moran_threshold
from .schedules import validate

__all__ = [
    "kaplan_yorke_dimension",
    "lyapunov_spectrum",
    "gaussian_lyapunov_spectrum",
    "gaussian_kaplan_yorke",
    "suppressed_exponents",
    "suppressed_kaplan_yorke",
    "KYResult",
]


# ----------------------------------------------------------------------------- eq. (44)
def kaplan_yorke_dimension(exponents, *, return_info: bool = False):
    """Kaplan–Yorke dimension of a Lyapunov spectrum, eq. (44) (Kaplan & Yorke 1979).

    d_KY = j* + (Σ_{i≤j*} ℓ_i) / |ℓ_{j*+1}|,  j* = max{j : Σ_{i≤j} ℓ_i ≥ 0},

    with ℓ_1 ≥ ℓ_2 ≥ ⋯ the exponents sorted in decreasing order (the input is
    sorted here; ties are harmless) and the empty sum (j = 0) equal to 0.

    Edge cases (all follow from the definition):

    * all exponents negative → j* = 0 and d_KY = 0 (Proposition 24);
    * every partial sum ≥ 0 (e.g. all exponents ≥ 0) → j* = n and d_KY = n
      (the attractor fills the space; there is no ℓ_{n+1});
    * ℓ_{j*+1} < 0 strictly whenever j* < n (else the partial sum j* + 1 would
      still be ≥ 0), so the quotient is always defined.

    Parameters
    ----------
    exponents : array_like, shape (n,), n ≥ 1, finite floats
        Lyapunov exponents in any order (any consistent unit, e.g. nats per step).
    return_info : bool
        Also return ``{"j_star": int, "partial_sum": float, "next": float or None}``.

    Returns
    -------
    float in [0, n], or (float, dict) when ``return_info``.

    Raises
    ------
    ValueError
        If ``exponents`` is empty, not one-dimensional, or holds NaN / ±inf.
    TypeError
        If it is not numeric.
    """
    try:
        ell = np.asarray(exponents, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"exponents: expected a 1-D array of floats, got {type(exponents).__name__}") from exc
    if ell.ndim != 1 or ell.size == 0:
        raise ValueError(f"exponents: expected a non-empty 1-D array, got shape {ell.shape}")
    if not np.isfinite(ell).all():
        raise ValueError(f"exponents: must be finite; got {ell[~np.isfinite(ell)][:3].tolist()}")
    ell = np.sort(ell)[::-1]
    csum = np.concatenate([[0.0], np.cumsum(ell)])  # csum[j] = Σ_{i≤j} ℓ_i
    # sorted decreasingly, the partial sums are concave in j: {j : csum[j] ≥ 0} = [0, j*]
    j_star = int(np.flatnonzero(csum >= 0.0).max())
    n = ell.size
    if j_star == n:
        d, nxt = float(n), None
    else:
        nxt = float(ell[j_star])  # ℓ_{j*+1} (0-based index j*), strictly negative
        d = j_star + float(csum[j_star]) / abs(nxt)
    if return_info:
        return d, {"j_star": j_star, "partial_sum": float(csum[j_star]), "next": nxt}
    return d


# ----------------------------------------------------------------------------- eq. (43)
def _as_np(a):
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def _qr_pos(z):
    """QR with R's diagonal made non-negative (so log|R_ii| = log R_ii)."""
    q, r = np.linalg.qr(z)
    s = np.sign(np.diag(r))
    s[s == 0] = 1.0
    return q * s, r * s[:, None]


def _product_svd_logs(mats, tol, max_iter):
    """log singular values of P = mats[-1] ⋯ mats[0] by orthogonal iteration on PᵀP in factored form."""
    n = mats[0].shape[1]
    q = np.eye(n)
    prev = None
    for it in range(1, max_iter + 1):
        z = q
        logs_f = np.zeros(n)
        for J in mats:  # forward: P q = Q_f R_f, factor by factor
            z, r = _qr_pos(J @ z)
            with np.errstate(divide="ignore"):
                logs_f += np.log(np.abs(np.diag(r)))
        logs_b = np.zeros(n)
        for J in reversed(mats):  # backward: Pᵀ Q_f = Q_b R_b
            z, r = _qr_pos(J.T @ z)
            with np.errstate(divide="ignore"):
                logs_b += np.log(np.abs(np.diag(r)))
        q = z
        est = 0.5 * (logs_f + logs_b)  # diag of R_b R_f = σ_i² at convergence
        if prev is not None and np.all(np.abs(est - prev) <= tol * np.maximum(1.0, np.abs(est))):
            return logs_f, est, it, True
        prev = est
    return logs_f, est, max_iter, False


def lyapunov_spectrum(
    jacobians=None,
    *,
    jvp_fn=None,
    n_steps: int | None = None,
    dim: int | None = None,
    k: int | None = None,
    method: str = "qr",
    q0=None,
    seed: int = 0,
    n_passes: int = 1,
    steps_per_pass: int | None = None,
    tol: float = 1e-12,
    max_iter: int = 200,
    return_info: bool = False,
):
    """Lyapunov exponents of a product of Jacobians along a trajectory, eq. (43).

    Two estimators:

    ``method="qr"`` (Benettin et al. 1980)
        Propagate an orthonormal frame Q (n × k) through the chain,
        Z = J_i Q, Z = Q' R (QR), and accumulate log R_jj. The exponents are
        (1/T) Σ_i log R_jj (sorted decreasingly). Each step is re-orthonormalised,
        so the estimate is stable over arbitrarily long chains (no over/underflow).
        Works from dense Jacobians or from JVPs (``jvp_fn``) with k ≤ n directions
        and then estimates the first k exponents.
    ``method="svd"``
        The exact eq. (43): ℓ_i = (1/T) log s_i(P) of the product P = J_last ⋯ J_first
        (dense Jacobians, all n exponents). Computed without forming P: orthogonal
        iteration on PᵀP in factored form (QR through the factors forward with P,
        then backward with Pᵀ), which keeps the relative accuracy of tiny
        singular values (forming P and calling ``svd`` loses every σ_i below
        ε·σ_max). Iterates until the log-estimates change by less than ``tol``.

    The two differ for a single pass. Σ_{j≤m} log R_jj is the log of the
    m-volume growth of the *initial* frame's first m columns, which is at most
    Σ_{j≤m} log s_j(P) with equality only when span(Q_0[:, :m]) is the top-m
    right singular subspace of P; for one finite pass the QR values therefore
    depend on ``q0`` (only the full sum, log|det P|, does not). They converge to
    the Lyapunov exponents asymptotically (many passes / long chains, Oseledets):
    repeating the chain of Jacobians of a map at its fixed point ``n_passes``
    times (J_{x*}Φ^m = (J_{x*}Φ)^m, footnote to eq. 43) the QR values tend to
    (1/T) log|eigenvalues of J_{x*}Φ|, the exponents of the iterated map, which
    equal the singular-value definition (43) only when J_{x*}Φ is normal (e.g.
    symmetric, as under Gaussian data with the exact score, Theorem 25). For
    commuting symmetric factors with the frame aligned to their common
    eigenbasis all three coincide exactly.

    Parameters
    ----------
    jacobians : array_like or sequence, shape (T, n, n), float, optional
        The per-step Jacobians in application order (for Φ = Φ_1 ∘ ⋯ ∘ Φ_T:
        ``[J Φ_T, ..., J Φ_1]``, each evaluated at its trajectory point
        x_t*). numpy arrays or torch tensors.
    jvp_fn : callable, optional
        Instead of ``jacobians``: ``jvp_fn(i, V) -> J_i V`` for i = 0..n_steps−1 in
        application order, V of shape (dim, k) (float64 numpy; a torch tensor may be
        returned). Only ``method="qr"``.
    n_steps, dim : int
        Required with ``jvp_fn``: the number of steps and the state dimension n.
    k : int, optional
        Number of directions (QR only); default n. With k < n the first k
        exponents are estimated.
    method : {"qr", "svd"}
    q0 : array_like, shape (n, k), optional
        Initial orthonormal frame (QR only). Default: a random orthonormal frame
        (``seed``), the generic start of Benettin's method.
    seed : int
        Seed of the default ``q0``.
    n_passes : int, ≥ 1
        Apply the chain this many times (valid at a fixed point of the composed
        map, where every pass has the same Jacobians). QR only.
    steps_per_pass : int, optional
        The normaliser T of eq. (43); default the number of Jacobians (one pass).
        The exponents are divided by ``steps_per_pass · n_passes``.
    tol, max_iter : float, int
        Convergence of the ``"svd"`` iteration.
    return_info : bool
        Also return a dict: ``log_sums`` (unsorted accumulations), ``frame``
        (final Q, QR only), ``iterations``/``converged`` (svd only).

    Returns
    -------
    numpy.ndarray, float64, shape (k,) (or (n,)), sorted decreasingly; nats per
    step. A zero singular value gives −inf.

    Raises
    ------
    ValueError
        For missing/conflicting inputs, non-square or inconsistent Jacobians,
        non-finite entries, an unknown ``method``, k outside 1..n, ``method="svd"``
        with ``jvp_fn``/``k < n``/``n_passes > 1``, or a ``q0`` that is not
        orthonormal of shape (n, k).
    """
    if method not in ("qr", "svd"):
        raise ValueError(f"method: expected 'qr' or 'svd', got {method!r}")
    if (jacobians is None) == (jvp_fn is None):
        raise ValueError("jacobians / jvp_fn: give exactly one of them")
    if int(n_passes) != n_passes or n_passes < 1:
        raise ValueError(f"n_passes: expected a positive integer, got {n_passes!r}")
    if jacobians is not None:
        mats = [_as_np(J) for J in jacobians]
        if len(mats) == 0:
            raise ValueError("jacobians: expected at least one Jacobian")
        n = mats[0].shape[0]
        for i, J in enumerate(mats):
            if J.ndim != 2 or J.shape != (n, n):
                raise ValueError(f"jacobians: entry {i} has shape {J.shape}, expected ({n}, {n})")
            if not np.isfinite(J).all():
                raise ValueError(f"jacobians: entry {i} holds non-finite values")
        T = len(mats)

        def apply(i, V):
            return mats[i] @ V
    else:
        if not callable(jvp_fn):
            raise ValueError("jvp_fn: expected a callable jvp_fn(i, V) -> J_i V")
        if n_steps is None or dim is None or int(n_steps) != n_steps or int(dim) != dim or n_steps < 1 or dim < 1:
            raise ValueError(f"n_steps, dim: positive integers are required with jvp_fn, got {n_steps!r}, {dim!r}")
        if method == "svd":
            raise ValueError("method: 'svd' needs dense jacobians (the exact product SVD); use method='qr' with jvp_fn")
        n, T = int(dim), int(n_steps)

        def apply(i, V):
            out = _as_np(jvp_fn(i, V))
            if out.shape != V.shape:
                raise ValueError(f"jvp_fn: step {i} returned shape {out.shape}, expected {V.shape}")
            return out

    norm = T if steps_per_pass is None else steps_per_pass
    if int(norm) != norm or norm < 1:
        raise ValueError(f"steps_per_pass: expected a positive integer, got {steps_per_pass!r}")
    norm = float(norm) * n_passes

    if method == "svd":
        if k not in (None, n):
            raise ValueError(f"k: method='svd' returns all n = {n} exponents; got k = {k!r}")
        if n_passes != 1:
            raise ValueError("n_passes: method='svd' is the single-pass definition (43); use method='qr' for passes")
        logs, est, it, conv = _product_svd_logs(mats, tol, max_iter)
        out = np.sort(logs)[::-1] / norm
        if return_info:
            return out, {"log_sums": logs, "log_sums_symmetric": est, "iterations": it, "converged": conv}
        return out

    k = n if k is None else k
    if int(k) != k or not 1 <= k <= n:
        raise ValueError(f"k: expected an integer in 1..n = 1..{n}, got {k!r}")
    k = int(k)
    if q0 is None:
        q, _ = _qr_pos(np.random.default_rng(seed).standard_normal((n, k)))
    else:
        q = _as_np(q0)
        if q.shape != (n, k) or not np.allclose(q.T @ q, np.eye(k), atol=1e-10):
            raise ValueError(f"q0: expected an orthonormal frame of shape ({n}, {k})")
    logs = np.zeros(k)
    for _ in range(int(n_passes)):
        for i in range(T):
            q, r = _qr_pos(apply(i, q))
            with np.errstate(divide="ignore"):
                logs += np.log(np.abs(np.diag(r)))
    out = np.sort(logs)[::-1] / norm
    if return_info:
        return out, {"log_sums": logs, "frame": q}
    return out


# ----------------------------------------------------------------------------- Theorem 26
def _lam_nk(lam, n_k):
    lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError(f"lam: expected a non-empty 1-D array of patch variances, got shape {lam.shape}")
    if np.isnan(lam).any() or (lam <= 0).any():
        raise ValueError(f"lam: patch variances must be > 0 (and not NaN), got min {np.nanmin(lam)!r}")
    nk = np.asarray(n_k)
    if not np.issubdtype(nk.dtype, np.integer) and not np.all(np.mod(nk, 1) == 0):
        raise ValueError(f"n_k: expected integer patch dimensions, got {n_k!r}")
    nk = np.broadcast_to(nk.astype(np.int64), lam.shape).copy() if nk.ndim == 0 else nk.astype(np.int64)
    if nk.shape != lam.shape:
        raise ValueError(f"n_k: expected a scalar or shape {lam.shape}, got shape {nk.shape}")
    if (nk < 1).any():
        raise ValueError(f"n_k: patch dimensions must be >= 1, got {n_k!r}")
    return lam, nk


def gaussian_lyapunov_spectrum(lam, n_k, alpha_bar) -> np.ndarray:
    """Lyapunov spectrum of the exact Gaussian-score DDIM chain, Theorem 26.

    Under p_data = N(0, diag(λ_1 I_{n_1}, ..., λ_M I_{n_M})) and the exact score,
    J_{x*}Φ is block-diagonal and every exponent of patch k equals
    Λ(λ_k) = (1/T) Σ_t log f_t(λ_k) (Theorem 25, :func:`pifs.geometry.mean_lyapunov_exponent`).
    For a non-isotropic patch pass each eigenvalue μ_{k,i} of Σ_k as its own
    entry with ``n_k = 1`` (Theorem 25's proof).

    Parameters
    ----------
    lam : array_like, shape (M,), values > 0
        Patch variances λ_k (pixel scale [−1, 1]).
    n_k : int or array_like of int, shape (M,)
        Patch dimensions (C·p·p).
    alpha_bar : array_like, shape (T+1,)
        The chain (training schedule or sub-sampled DDIM chain).

    Returns
    -------
    numpy.ndarray, float64, shape (Σ n_k,), sorted decreasingly; nats per step.

    Raises
    ------
    ValueError
        For λ ≤ 0, non-integer or < 1 patch dimensions, mismatched shapes, or an
        invalid schedule.
    """
    lam, nk = _lam_nk(lam, n_k)
    Lam = mean_lyapunov_exponent(lam, validate(alpha_bar))
    return np.sort(np.repeat(Lam, nk))[::-1]


@dataclass
class KYResult:
    """Kaplan–Yorke dimension of a patch spectrum, with the quantities of Theorems 26/27.

    Attributes
    ----------
    d_ky : float
        d_KY from the definition (44) applied to the full spectrum (always valid).
    formula : float or None
        Formula (47) (Gaussian) or (50) (suppressed): N + Σ n_k Λ_k / |Λ_k*|;
        ``None`` when there is no contracting patch to define k*.
    condition : bool or None
        Condition (46) (or its analogue in Theorem 27(b)); ``None`` without k*.
    lower_bound : float or None
        The paper's bound N + N Λ⁺ / |Λ_k*| stated for when (46) fails (Theorem 26);
        ``None`` when undefined. It is *not* guaranteed to hold (see the notebook
        of §5).
    n_plus : int
        N⁺ (or N⁺⁺⁺): total dimension of the expanding patches.
    expanding_sum : float
        Σ_{expanding} n_k Λ_k.
    k_star : int or None
        Index of the contracting patch with the largest variance (k* or k**).
    lambda_k_star : float or None
        Its exponent (negative).
    exponents : numpy.ndarray, shape (M,)
        Per-patch exponents Λ(λ_k) or Λ_eff,k.
    threshold : float or None
        λ** of the chain (Gaussian case).
    """

    d_ky: float
    formula: float | None
    condition: bool | None
    lower_bound: float | None
    n_plus: int
    expanding_sum: float
    k_star: int | None
    lambda_k_star: float | None
    exponents: np.ndarray = field(repr=False)
    threshold: float | None = None


def _ky_from_patch_exponents(Lam, lam, nk, expanding, threshold=None) -> KYResult:
    spectrum = np.repeat(Lam, nk)
    d = kaplan_yorke_dimension(spectrum)
    n_plus = int(nk[expanding].sum())
    s_plus = float((nk[expanding] * Lam[expanding]).sum())
    contracting = np.flatnonzero(Lam < 0)
    if contracting.size == 0:
        return KYResult(d, None, None, None, n_plus, s_plus, None, None, Lam, threshold)
    k_star = int(contracting[np.argmax(lam[contracting])])
    lk = float(Lam[k_star])
    formula = n_plus + s_plus / abs(lk)
    cond = bool(s_plus < abs(lk))
    lower = None
    if expanding.any():
        lower = n_plus + n_plus * float(Lam[expanding].min()) / abs(lk)
    return KYResult(d, formula, cond, lower, n_plus, s_plus, k_star, lk, Lam, threshold)


def gaussian_kaplan_yorke(lam, n_k, alpha_bar, *, lam_star_star: float | None = None) -> KYResult:
    """Kaplan–Yorke dimension under Gaussian data with isotropic patches, Theorem 26.

    Computes N⁺ = Σ_{λ_k > λ**} n_k, k* = argmax_{λ_k < λ**} λ_k,
    Λ⁻_{k*} = Λ(λ_{k*}), condition (46) Σ_{λ_k>λ**} n_k Λ(λ_k) < |Λ⁻_{k*}|, formula (47)
    d_KY = N⁺ + Σ n_k Λ(λ_k) / |Λ⁻_{k*}|, the paper's lower bound for when (46)
    fails, N⁺ + N⁺Λ⁺/|Λ⁻_{k*}| with Λ⁺ = min_{λ_k>λ**} Λ(λ_k), and — independently
    of all of these — d_KY from definition (44) on the full spectrum
    (:func:`gaussian_lyapunov_spectrum`). When (46) holds, ``formula == d_ky``.

    The expanding set is decided by the sign of Λ(λ_k), which by Theorem 25(a)
    (strict monotonicity of ∏ f_t) is the same as λ_k > λ**.

    Parameters
    ----------
    lam : array_like, shape (M,), values > 0
    n_k : int or array_like of int, shape (M,)
    alpha_bar : array_like, shape (T+1,)
    lam_star_star : float, optional
        λ** of the chain; computed with :func:`pifs.geometry.moran_threshold` if omitted.

    Returns
    -------
    KYResult
        ``formula``/``condition``/``lower_bound`` are ``None`` when every patch
        expands (no k*); then d_KY = n.

    Raises
    ------
    ValueError
        As :func:`gaussian_lyapunov_spectrum`.
    """
    lam, nk = _lam_nk(lam, n_k)
    a = validate(alpha_bar)
    lss = moran_threshold(a) if lam_star_star is None else float(lam_star_star)
    Lam = mean_lyapunov_exponent(lam, a)
    return _ky_from_patch_exponents(Lam, lam, nk, Lam > 0, threshold=lss)


# ----------------------------------------------------------------------------- Theorem 27
def suppressed_exponents(lam, S, alpha_bar) -> np.ndarray:
    """Suppression-corrected Lyapunov exponents Λ_eff,k of Theorem 27, eqs. (48)–(49).

    g_{k,t} = f_t(λ_k) − S_{k,t}(x_t)  (48),
    Λ_eff,k = (1/T) Σ_t E_{x_t ~ q(x_t)}[log g_{k,t}]  (49),

    with the expectation taken as the mean over the sample axis of ``S``.

    Parameters
    ----------
    lam : array_like, shape (M,), values > 0
        Patch variances λ_k.
    S : array_like, shape (M, T) or (samples, M, T)
        Directional suppression field S_{k,t} (eq. 30) at step index i ↔ t = i + 1,
        one row per sample x_t ~ q(x_t) (or already a single evaluation). Negative
        values are allowed (the theorem assumes S > 0; check it where you measure S).
    alpha_bar : array_like, shape (T+1,)

    Returns
    -------
    numpy.ndarray, float64, shape (M,); nats per step.

    Raises
    ------
    ValueError
        If shapes disagree, S holds NaN, or S_{k,t} ≥ f_t(λ_k) anywhere (the
        assumption S < f of Theorem 27 is violated and log g is undefined).
    """
    lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    a = validate(alpha_bar)
    T = a.size - 1
    S = np.asarray(S, dtype=np.float64)
    if S.ndim == 2:
        S = S[None]
    if S.ndim != 3 or S.shape[1:] != (lam.size, T):
        raise ValueError(f"S: expected shape (M, T) or (samples, M, T) with M = {lam.size}, T = {T}; got {S.shape}")
    if np.isnan(S).any():
        raise ValueError("S: contains NaN")
    f = expansion_function(lam, a)  # (M, T)
    g = f[None] - S
    if (g <= 0).any():
        s, k, i = (int(v[0]) for v in np.nonzero(g <= 0))
        raise ValueError(
            f"S: the assumption S_k,t < f_t(λ_k) of Theorem 27 is violated (sample {s}, patch {k}, step t = {i + 1}: "
            f"S = {S[s, k, i]!r} >= f = {f[k, i]!r}); log g_k,t is undefined"
        )
    return np.log(g).mean(axis=0).mean(axis=-1)


def suppressed_kaplan_yorke(lam, n_k, S, alpha_bar) -> KYResult:
    """Suppression-corrected Kaplan–Yorke dimension, Theorem 27(b), eq. (50).

    K⁺⁺⁺ = {k : Λ_eff,k > 0}, N⁺⁺⁺ = Σ_{k∈K⁺⁺⁺} n_k, k** = argmax_{k∉K⁺⁺⁺} λ_k and

        d_KY^eff = N⁺⁺⁺ + Σ_{k∈K⁺⁺⁺} n_k Λ_eff,k / |Λ_eff,k**|   (50)

    under the analogue of (46), Σ_{K⁺⁺⁺} n_k Λ_eff,k < |Λ_eff,k**|. The spectrum is
    {Λ_eff,k repeated n_k times} as in the paper's proof of (c); ``d_ky`` is (44) on it.

    Parameters
    ----------
    lam : array_like, shape (M,), values > 0
    n_k : int or array_like of int, shape (M,)
    S : array_like, shape (M, T) or (samples, M, T)
        See :func:`suppressed_exponents`.
    alpha_bar : array_like, shape (T+1,)

    Returns
    -------
    KYResult
        With ``exponents`` = Λ_eff (M,), ``k_star`` = k**; ``threshold`` is None.
        ``lower_bound`` is the Theorem 26 form with the suppressed exponents.

    Raises
    ------
    ValueError
        As :func:`suppressed_exponents` and :func:`gaussian_lyapunov_spectrum`.

    Notes
    -----
    k** is the contracting patch of largest *variance*, as the paper defines
    it; with suppression the least negative contracting exponent need not
    belong to it, in which case (50) is not the KY dimension even when its
    condition holds — compare ``formula`` with ``d_ky``.
    """
    lam, nk = _lam_nk(lam, n_k)
    Lam = suppressed_exponents(lam, S, alpha_bar)
    return _ky_from_patch_exponents(Lam, lam, nk, Lam > 0)
