"""Schedule-only geometry of the DDIM chain: b_t, L*_t, f_t(λ), λ*(t), λ**, Λ(μ), IG_t, Δd_t, ρ*.

Every function takes a schedule ``alpha_bar`` of shape (T+1,) as defined in
:mod:`pifs.schedules` (a full training schedule or a sub-sampled DDIM chain) and
returns float64 values for the steps t = 1..T along the **last** axis: index
``i`` of the output is step ``t = i + 1`` (the map x_t → x_{t−1}).

The closed forms are evaluated in algebraically equivalent forms that avoid
cancellation (differences such as ᾱ_{t−1} − ᾱ_t are tiny near t = 0) and stay
finite at ᾱ_T = 0; the notebooks derive each rewriting with SymPy and the tests
compare it with the printed formula. No function here evaluates a model.
"""
from __future__ import annotations

import numpy as np
from scipy import optimize

from .schedules import validate

__all__ = [
    "score_step_coefficient",
    "expansion_factor",
    "contraction_threshold",
    "expansion_function",
    "expansion_threshold",
    "mean_lyapunov_exponent",
    "moran_threshold",
    "information_gain",
    "dimension_growth",
    "step_density",
    "optimal_timesteps",
]


def _pairs(alpha_bar):
    a = validate(alpha_bar)
    a_prev, a_t = a[:-1], a[1:]
    return a_prev, a_t, 1.0 - a_prev, 1.0 - a_t


def _positive_lam(lam, name="lam"):
    lam = np.asarray(lam, dtype=np.float64)
    if np.isnan(lam).any() or (lam <= 0).any():
        bad = lam[np.isnan(lam) | (lam <= 0)].ravel()[:3].tolist()
        raise ValueError(f"{name}: patch variances λ must be > 0 and not NaN; got {bad}")
    return lam


def expansion_factor(alpha_bar) -> np.ndarray:
    """The identity coefficient √(ᾱ_{t−1}/ᾱ_t) of Φ_t (eq. 4), shape (T,).

    +inf at a step with ᾱ_t = 0. Always > 1 for a strictly decreasing schedule.
    """
    a_prev, a_t, _, _ = _pairs(alpha_bar)
    with np.errstate(divide="ignore"):
        return np.sqrt(a_prev / a_t)


def score_step_coefficient(alpha_bar) -> np.ndarray:
    """Score step coefficient b_t of the DDIM operator, eq. (5), shape (T,).

    b_t = √(1−ᾱ_{t−1}) − √ᾱ_{t−1} √(1−ᾱ_t) / √ᾱ_t, evaluated as

        b_t = −(ᾱ_{t−1} − ᾱ_t) / ( √ᾱ_t (√(v_{t−1} ᾱ_t) + √(ᾱ_{t−1} v_t)) ),

    which makes Proposition 3 (b_t < 0) visible and avoids cancellation.

    Parameters
    ----------
    alpha_bar : array_like, shape (T+1,)
        Schedule or sub-sampled chain (:mod:`pifs.schedules`).

    Returns
    -------
    numpy.ndarray, float64, shape (T,)
        b_t for t = 1..T; −inf at a step with ᾱ_t = 0.

    Raises
    ------
    ValueError
        For an invalid schedule (:func:`pifs.schedules.validate`).
    """
    a_prev, a_t, v_prev, v_t = _pairs(alpha_bar)
    with np.errstate(divide="ignore"):
        return -(a_prev - a_t) / (np.sqrt(a_t) * (np.sqrt(v_prev * a_t) + np.sqrt(a_prev * v_t)))


def contraction_threshold(alpha_bar) -> np.ndarray:
    """Contraction threshold L*_t of Theorem 6, eq. (10), shape (T,).

    L*_t = (√(ᾱ_{t−1}/ᾱ_t) − 1) / |b_t|, evaluated as

        L*_t = (√(v_{t−1} ᾱ_t) + √(ᾱ_{t−1} v_t)) / (√ᾱ_{t−1} + √ᾱ_t),

    finite everywhere (L*_T = 1 when ᾱ_T = 0). Depends on the schedule only.

    Parameters
    ----------
    alpha_bar : array_like, shape (T+1,)

    Returns
    -------
    numpy.ndarray, float64, shape (T,), values in (0, 1].

    Raises
    ------
    ValueError
        For an invalid schedule.
    """
    a_prev, a_t, v_prev, v_t = _pairs(alpha_bar)
    return (np.sqrt(v_prev * a_t) + np.sqrt(a_prev * v_t)) / (np.sqrt(a_prev) + np.sqrt(a_t))


def expansion_function(lam, alpha_bar) -> np.ndarray:
    """Per-step diagonal expansion function f_t(λ) of Theorem 17, eq. (26).

    f_t(λ) = √(ᾱ_{t−1}/ᾱ_t) − |b_t| √v_t / (λ ᾱ_t + v_t), evaluated as

        f_t(λ) = (λ √(ᾱ_{t−1} ᾱ_t) + √(v_{t−1} v_t)) / (λ ᾱ_t + v_t)

    (eq. 62 multiplied through by v_t), finite at ᾱ_T = 0 where f_T ≡ √v_{T−1}.
    Under Gaussian data with patch covariance eigenvalue λ and the exact score it
    is the eigenvalue of the diagonal Jacobian block [J Φ_t]_kk (Theorem 17).

    Parameters
    ----------
    lam : float or array_like, any shape, values > 0
        Patch variances (eigenvalues of Σ_k, pixel scale [−1, 1]).
    alpha_bar : array_like, shape (T+1,)

    Returns
    -------
    numpy.ndarray, float64, shape ``np.shape(lam) + (T,)``

    Raises
    ------
    ValueError
        If any λ ≤ 0 or NaN, or the schedule is invalid.
    """
    lam = _positive_lam(lam)[..., None]
    a_prev, a_t, v_prev, v_t = _pairs(alpha_bar)
    return (lam * np.sqrt(a_prev * a_t) + np.sqrt(v_prev * v_t)) / (lam * a_t + v_t)


def expansion_threshold(alpha_bar) -> np.ndarray:
    """Per-step patch expansion threshold λ*(t) of Theorem 17, eq. (27), shape (T,).

    The unique λ with f_t(λ) = 1; printed as
    λ*(t) = √v_t (√v_t − √v_{t−1}) / ((√ᾱ_{t−1} − √ᾱ_t) √ᾱ_t) and evaluated,
    after cancelling ᾱ_{t−1} − ᾱ_t from numerator and denominator, as

        λ*(t) = √v_t (√ᾱ_{t−1} + √ᾱ_t) / (√ᾱ_t (√v_t + √v_{t−1})).

    Returns
    -------
    numpy.ndarray, float64, shape (T,)
        +inf at a step with ᾱ_t = 0 (f_T ≡ √v_{T−1} < 1 never reaches 1).

    Raises
    ------
    ValueError
        For an invalid schedule.
    """
    a_prev, a_t, v_prev, v_t = _pairs(alpha_bar)
    with np.errstate(divide="ignore"):
        return np.sqrt(v_t) * (np.sqrt(a_prev) + np.sqrt(a_t)) / (np.sqrt(a_t) * (np.sqrt(v_t) + np.sqrt(v_prev)))


def mean_lyapunov_exponent(mu, alpha_bar) -> np.ndarray:
    """Mean Lyapunov exponent Λ(μ) = (1/T) Σ_t log f_t(μ) of Theorem 25.

    Parameters
    ----------
    mu : float or array_like, values > 0
        Eigenvalues of the patch covariances.
    alpha_bar : array_like, shape (T+1,)

    Returns
    -------
    numpy.ndarray, float64, shape ``np.shape(mu)``; nats per step.
    """
    return np.log(expansion_function(mu, alpha_bar)).mean(axis=-1)


def moran_threshold(alpha_bar, *, return_info: bool = False):
    """Global expansion threshold λ**: the root of the discrete Moran equation (45).

    Solves ∏_t f_t(λ) = 1, i.e. h(u) = Σ_t log f_t(e^u) = 0, with scipy's
    bracketed ``brentq`` in u = log λ, bracket [0, u_hi] with h(0) < 0 (Theorem
    17(b): f_t(1) < 1) and u_hi doubled until h(u_hi) > 0. Uniqueness is checked,
    not assumed: h'(u) = Σ_t λ ∂_λ f_t / f_t is evaluated on a fine grid over the
    bracket and must be positive everywhere (strict monotonicity).

    Parameters
    ----------
    alpha_bar : array_like, shape (T+1,)
    return_info : bool
        Also return a dict with the bracket, the residual |∏ f_t(λ**) − 1|, the
        minimum of h' over the bracket and the number of iterations.

    Returns
    -------
    float, or (float, dict) when ``return_info``.

    Raises
    ------
    ValueError
        If the schedule is invalid or no root exists: ∏_t f_t(λ) → ∏ over steps
        of its λ → ∞ limit, which is ≤ 1 when ᾱ_T is not small enough
        (for ᾱ_T > 0 the limit is 1/√ᾱ_T > 1, so a root always exists).
    RuntimeError
        If the monotonicity check fails (the root would not be unique).
    """
    a = validate(alpha_bar)
    a_prev, a_t, v_prev, v_t = _pairs(a)

    def h(u):
        return float(np.log(expansion_function(np.exp(u), a)).sum())

    def dh(u):
        lam = np.exp(np.atleast_1d(u))[:, None]
        num = lam * np.sqrt(a_prev * a_t) + np.sqrt(v_prev * v_t)
        den = lam * a_t + v_t
        dnum = np.sqrt(a_prev * a_t)
        # d/dλ log f = dnum/num − a_t/den;  h'(u) = λ Σ_t d/dλ log f_t
        return (lam * (dnum / num - a_t / den)).sum(axis=-1)

    if not h(0.0) < 0:
        raise RuntimeError("moran_threshold: expected ∏ f_t(1) < 1 (Theorem 17(b)); the schedule violates it")
    # limit of Σ log f_t as λ → ∞
    with np.errstate(divide="ignore"):
        lim_terms = np.where(a_t > 0, 0.5 * (np.log(a_prev) - np.log(a_t)), 0.5 * np.log(v_prev))
    if not lim_terms.sum() > 0:
        raise ValueError(
            "alpha_bar: the Moran equation ∏ f_t(λ) = 1 has no solution for this schedule "
            f"(∏ f_t(λ) → {np.exp(lim_terms.sum()):.4g} ≤ 1 as λ → ∞)"
        )
    hi = 1.0
    while h(hi) <= 0:
        hi *= 2.0
        if hi > 700:
            raise ValueError("alpha_bar: λ** exceeds e^700; the schedule barely ends in noise")
    u, res = optimize.brentq(h, 0.0, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps, full_output=True)
    grid = np.linspace(0.0, hi, 2001)
    dmin = float(dh(grid).min())
    if not dmin > 0:
        raise RuntimeError(f"moran_threshold: Σ log f_t is not strictly increasing on the bracket (min slope {dmin})")
    lam = float(np.exp(u))
    if return_info:
        info = {
            "bracket": (1.0, float(np.exp(hi))),
            "residual": abs(float(np.prod(expansion_function(lam, a))) - 1.0),
            "min_slope": dmin,
            "iterations": res.iterations,
        }
        return lam, info
    return lam


def information_gain(lam, n_k, alpha_bar, *, exact: bool = False) -> np.ndarray:
    """Information gain IG_t = D_KL(p_{t−1} ‖ p_t) per step, eq. (55) (Definition 31).

    Under the block-diagonal isotropic Gaussian model p_t^(k) = N(0, σ²_{t,k} I),
    σ²_{t,k} = ᾱ_t λ_k + v_t. By default the paper's leading-order form
    IG_t ≈ Σ_k n_k (log f_t(λ_k))² is returned; ``exact=True`` gives the exact
    KL Σ_k (n_k/2)(e^{2ε_k} − 1 − 2ε_k), ε_k = log(σ_{t−1,k}/σ_{t,k}).

    Parameters
    ----------
    lam : array_like, shape (M,), values > 0
        Patch variances λ_k.
    n_k : int or array_like, shape (M,)
        Patch dimensions (C·p·p; 192 for 8×8×3 patches).
    alpha_bar : array_like, shape (T+1,)
    exact : bool

    Returns
    -------
    numpy.ndarray, float64, shape (T,), nats.

    Raises
    ------
    ValueError
        If λ ≤ 0, n_k < 1, shapes disagree, or the schedule is invalid.
    """
    lam = np.atleast_1d(_positive_lam(lam))
    n = np.broadcast_to(np.asarray(n_k, dtype=np.float64), lam.shape)
    if (n < 1).any():
        raise ValueError(f"n_k: patch dimensions must be >= 1, got {n_k!r}")
    if not exact:
        return (n[:, None] * np.log(expansion_function(lam, alpha_bar)) ** 2).sum(axis=0)
    a = validate(alpha_bar)
    var = a[None, :] * lam[:, None] + (1.0 - a)[None, :]
    eps = 0.5 * (np.log(var[:, :-1]) - np.log(var[:, 1:]))
    return (0.5 * n[:, None] * np.expm1(2 * eps) - n[:, None] * eps).sum(axis=0)


def dimension_growth(lam, n_k, alpha_bar, *, lam_star_star: float | None = None) -> np.ndarray:
    """Per-step Kaplan–Yorke dimension growth Δd_t of eq. (56).

    Δd_t ≈ Σ_{k: λ_k > λ**} n_k log f_t(λ_k), with λ** from :func:`moran_threshold`
    of the same chain unless given.

    Parameters
    ----------
    lam : array_like, shape (M,), values > 0
    n_k : int or array_like, shape (M,)
    alpha_bar : array_like, shape (T+1,)
    lam_star_star : float, optional
        Pre-computed λ** of ``alpha_bar``.

    Returns
    -------
    numpy.ndarray, float64, shape (T,)
    """
    lam = np.atleast_1d(_positive_lam(lam))
    n = np.broadcast_to(np.asarray(n_k, dtype=np.float64), lam.shape)
    lss = moran_threshold(alpha_bar) if lam_star_star is None else float(lam_star_star)
    keep = lam > lss
    return (n[keep, None] * np.log(expansion_function(lam[keep], alpha_bar))).sum(axis=0)


def step_density(alpha_bar) -> np.ndarray:
    """Optimal sampling-step density ρ*(t) ∝ 1/L*_t of Theorem 35, eq. (64), shape (T,).

    Normalised to sum to 1 over the T steps of ``alpha_bar`` (a probability mass
    over training steps; the continuous density is its limit).
    """
    w = 1.0 / contraction_threshold(alpha_bar)
    return w / w.sum()


def optimal_timesteps(alpha_bar, n_steps: int) -> np.ndarray:
    """Place ``n_steps`` sampling timesteps with density ρ* ∝ 1/L*_t (Theorem 35).

    The i-th timestep (i = 1..N) is the training index where the cumulative mass
    of :func:`step_density` first reaches (i − ½)/N (mid-point quantiles), then
    duplicates are resolved upward so the indices are strictly increasing.

    Parameters
    ----------
    alpha_bar : array_like, shape (T+1,)
    n_steps : int, 1 <= n_steps <= T

    Returns
    -------
    numpy.ndarray of int64, shape (n_steps,), strictly increasing indices in 1..T.

    Raises
    ------
    ValueError
        If ``n_steps`` is not in 1..T.
    """
    rho = step_density(alpha_bar)
    T = rho.size
    if int(n_steps) != n_steps or not 1 <= n_steps <= T:
        raise ValueError(f"n_steps: expected an integer in 1..T = 1..{T}, got {n_steps!r}")
    cdf = np.cumsum(rho)
    q = (np.arange(int(n_steps)) + 0.5) / n_steps
    idx = np.searchsorted(cdf, q) + 1  # training index t = position + 1
    for i in range(1, idx.size):
        idx[i] = max(idx[i], idx[i - 1] + 1)
    if idx[-1] > T:
        raise ValueError("n_steps: too many steps to place distinct timesteps")
    return idx.astype(np.int64)
