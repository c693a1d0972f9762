"""Noise schedules ᾱ_t (§2.1 of the paper).

Conventions (used throughout :mod:`pifs`)
-----------------------------------------
A schedule is a float64 array ``alpha_bar`` of shape ``(T+1,)`` with
``alpha_bar[0] = 1`` (the clean image) and ``alpha_bar[t]`` the cumulative
signal coefficient ᾱ_t of the forward process x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε
(eq. 1). Step t = 1..T of the reverse chain maps x_t to x_{t-1}. It must be
strictly decreasing and lie in [0, 1]; ᾱ_T = 0 is legal (the cosine schedule
reaches it), quantities that divide by ᾱ_T then say so (inf / nan).

A sub-sampled chain (DDIM with N < T steps) is again such an array: the chain
``[1, ᾱ[t_1], ..., ᾱ[t_N]]`` for increasing training indices t_1 < ... < t_N
(:func:`subsample`), so every function of :mod:`pifs.geometry` accepts it.

================  =========================  ===========================
code              paper                      meaning
================  =========================  ===========================
``alpha_bar``     ᾱ_t                        cumulative signal coefficient
``v``             v_t = 1 − ᾱ_t              residual noise variance
``snr``           SNR_t = ᾱ_t / v_t          signal-to-noise ratio (eq. 3)
================  =========================  ===========================
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "linear",
    "cosine",
    "subsample",
    "ddim_timesteps",
    "shift_log_snr",
    "validate",
    "v",
    "snr",
    "log_snr",
]


def validate(alpha_bar, name: str = "alpha_bar") -> np.ndarray:
    """Check a schedule and return it as a float64 array.

    Parameters
    ----------
    alpha_bar : array_like, shape (T+1,)
        Cumulative schedule with ``alpha_bar[0] == 1``.
    name : str
        Argument name used in error messages.

    Returns
    -------
    numpy.ndarray, float64, shape (T+1,)

    Raises
    ------
    ValueError
        If the array is not one-dimensional with at least two entries, contains
        NaN, has ``alpha_bar[0] != 1``, leaves [0, 1], or is not strictly
        decreasing (the hypothesis of Proposition 3 and every later result).
    """
    a = np.asarray(alpha_bar, dtype=np.float64)
    if a.ndim != 1 or a.size < 2:
        raise ValueError(f"{name}: expected a 1-D schedule of shape (T+1,) with T >= 1, got shape {a.shape}")
    if np.isnan(a).any():
        raise ValueError(f"{name}: contains NaN at indices {np.flatnonzero(np.isnan(a))[:5].tolist()}")
    if a[0] != 1.0:
        raise ValueError(f"{name}: alpha_bar[0] must be exactly 1 (the clean image), got {a[0]!r}")
    bad = np.flatnonzero((a < 0) | (a > 1))
    if bad.size:
        raise ValueError(f"{name}: values must lie in [0, 1]; index {bad[0]} holds {a[bad[0]]!r}")
    steps = np.flatnonzero(np.diff(a) >= 0)
    if steps.size:
        t = int(steps[0]) + 1
        raise ValueError(
            f"{name}: schedule must be strictly decreasing; alpha_bar[{t}] = {a[t]!r} "
            f">= alpha_bar[{t - 1}] = {a[t - 1]!r}"
        )
    return a


def linear(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """Linear-β schedule of Ho et al. (2020), the DDPM CIFAR-10 schedule.

    ᾱ_t = ∏_{s=1}^{t} (1 − β_s) with β_s linear from ``beta_start`` (s = 1) to
    ``beta_end`` (s = T). Identical to diffusers' ``DDPMScheduler(beta_schedule="linear")``
    ``alphas_cumprod`` with ``alpha_bar[0] = 1`` prepended.

    Parameters
    ----------
    T : int, >= 1
        Number of training steps.
    beta_start, beta_end : float in (0, 1)
        First and last β; ``beta_start < beta_end`` is customary but not required.

    Returns
    -------
    numpy.ndarray, float64, shape (T+1,)

    Raises
    ------
    ValueError
        If ``T < 1`` or a β lies outside (0, 1).

    References
    ----------
    Paper §2.1 (linear schedule); Ho, Jain & Abbeel (2020).
    """
    if int(T) != T or T < 1:
        raise ValueError(f"T: expected a positive integer, got {T!r}")
    for nm, b in (("beta_start", beta_start), ("beta_end", beta_end)):
        if not 0.0 < b < 1.0:
            raise ValueError(f"{nm}: expected a value in (0, 1), got {b!r}")
    betas = np.linspace(beta_start, beta_end, int(T), dtype=np.float64)
    return np.concatenate([[1.0], np.cumprod(1.0 - betas)])


def cosine(T: int = 1000, s: float = 0.008) -> np.ndarray:
    """Cosine schedule of Nichol & Dhariwal (2021), eq. (2) of the paper.

    ᾱ_t = f(t)/f(0) with f(t) = cos²((t/T + s)/(1 + s) · π/2), evaluated
    directly (no β clipping). ᾱ_T is 0 up to round-off (cos(π/2)² ≈ 4e-33 in
    float64); it is set to exactly 0.

    Parameters
    ----------
    T : int, >= 1
        Number of training steps.
    s : float, >= 0
        The offset s_off (0.008 in practice, 0 for the original cosine).

    Returns
    -------
    numpy.ndarray, float64, shape (T+1,), with ``alpha_bar[T] == 0``.

    Raises
    ------
    ValueError
        If ``T < 1`` or ``s < 0``.

    Notes
    -----
    diffusers' ``squaredcos_cap_v2`` clips β_t at 0.999, which changes only the
    last steps; this function follows the paper's eq. (2) exactly.
    """
    if int(T) != T or T < 1:
        raise ValueError(f"T: expected a positive integer, got {T!r}")
    if not s >= 0:
        raise ValueError(f"s: the cosine offset s_off must be >= 0, got {s!r}")
    t = np.arange(int(T) + 1, dtype=np.float64)
    f = np.cos((t / T + s) / (1.0 + s) * np.pi / 2.0) ** 2
    a = f / f[0]
    a[0] = 1.0
    a[-1] = 0.0
    return a


def subsample(alpha_bar, timesteps) -> np.ndarray:
    """The sub-sampled chain [1, ᾱ[t_1], ..., ᾱ[t_N]] of a DDIM sampler.

    Parameters
    ----------
    alpha_bar : array_like, shape (T+1,)
        Training schedule.
    timesteps : array_like of int, shape (N,)
        Training indices in 1..T, strictly increasing (sort diffusers'
        descending ``scheduler.timesteps`` first; note diffusers indexes
        ``alphas_cumprod`` from 0, i.e. its timestep τ is our t = τ + 1).

    Returns
    -------
    numpy.ndarray, float64, shape (N+1,)
        A schedule in the sense of :func:`validate`: step i of the chain maps
        x at training index t_i to training index t_{i-1} (t_0 = 0).

    Raises
    ------
    ValueError
        If ``timesteps`` is not strictly increasing or leaves 1..T.
    """
    a = validate(alpha_bar)
    ts = np.asarray(timesteps)
    if ts.ndim != 1 or ts.size == 0 or not np.issubdtype(ts.dtype, np.integer):
        raise ValueError(f"timesteps: expected a non-empty 1-D integer array, got {ts!r}")
    if (np.diff(ts) <= 0).any():
        raise ValueError("timesteps: must be strictly increasing training indices")
    if ts[0] < 1 or ts[-1] > a.size - 1:
        raise ValueError(f"timesteps: must lie in 1..T = 1..{a.size - 1}, got [{ts[0]}, {ts[-1]}]")
    return np.concatenate([[1.0], a[ts]])


def ddim_timesteps(n_steps: int = 50, T: int = 1000, spacing: str = "leading") -> np.ndarray:
    """Training indices t_1 < ... < t_N of an N-step DDIM sampler, in this package's indexing.

    Reproduces the timesteps of diffusers' ``DDIMScheduler`` (``steps_offset = 0``) and
    converts them with t = τ + 1 (diffusers' ``alphas_cumprod[τ]`` is our ᾱ_{τ+1}):

    * ``"leading"`` (diffusers' default): τ_i = i·(T // N), i = 0..N−1; for N = 50,
      T = 1000: t = 1, 21, ..., 981 (the paper's printed "980, 900, ... 20" are τ).
    * ``"trailing"``: τ_i = round(T − i·T/N) − 1.
    * ``"linspace"``: τ_i = round(linspace(0, T − 1, N)).

    Parameters
    ----------
    n_steps : int, 1 <= n_steps <= T
    T : int, >= 1
        Training steps of the schedule.
    spacing : {"leading", "trailing", "linspace"}

    Returns
    -------
    numpy.ndarray of int64, shape (N,), strictly increasing, values in 1..T; pass it to
    :func:`subsample` for the chain's schedule.

    Raises
    ------
    ValueError
        For ``n_steps`` outside 1..T, or an unknown ``spacing``.
    """
    if int(T) != T or T < 1:
        raise ValueError(f"T: expected a positive integer, got {T!r}")
    if int(n_steps) != n_steps or not 1 <= n_steps <= T:
        raise ValueError(f"n_steps: expected an integer in 1..T = 1..{T}, got {n_steps!r}")
    n, T = int(n_steps), int(T)
    if spacing == "leading":
        tau = np.arange(n, dtype=np.int64) * (T // n)
    elif spacing == "trailing":
        tau = np.round(np.arange(T, 0, -T / n)).astype(np.int64)[::-1] - 1
    elif spacing == "linspace":
        tau = np.round(np.linspace(0, T - 1, n)).astype(np.int64)
    else:
        raise ValueError(f"spacing: expected 'leading', 'trailing' or 'linspace', got {spacing!r}")
    return tau + 1


def v(alpha_bar) -> np.ndarray:
    """Residual noise variance v_t = 1 − ᾱ_t, shape (T+1,) (paper §2.1)."""
    return 1.0 - validate(alpha_bar)


def snr(alpha_bar) -> np.ndarray:
    """SNR_t = ᾱ_t / v_t, shape (T+1,); +inf at t = 0 and 0 where ᾱ_t = 0 (eq. 20)."""
    a = validate(alpha_bar)
    with np.errstate(divide="ignore"):
        return a / (1.0 - a)


def log_snr(alpha_bar) -> np.ndarray:
    """logSNR_t = log(ᾱ_t / (1 − ᾱ_t)), eq. (3); +inf at t = 0, −inf where ᾱ_t = 0."""
    with np.errstate(divide="ignore"):
        return np.log(snr(alpha_bar))


def shift_log_snr(alpha_bar, c: float) -> np.ndarray:
    """Shift a schedule's logSNR by ``c``: logSNR'_t = logSNR_t + c (eq. 61).

    Equivalently SNR'_t = e^c SNR_t, i.e. ᾱ'_t = σ(logSNR_t + c) with σ the
    logistic function. ᾱ'_0 = 1 and ᾱ'_T = 0 are preserved.

    Parameters
    ----------
    alpha_bar : array_like, shape (T+1,)
    c : float
        Shift in nats; the resolution shift of Hoogeboom et al. (2023) is
        c = 2 log(d_base / d), negative when training above d_base.

    Returns
    -------
    numpy.ndarray, float64, shape (T+1,)

    Raises
    ------
    ValueError
        For an invalid schedule or a non-finite ``c``.
    """
    a = validate(alpha_bar)
    if not np.isfinite(c):
        raise ValueError(f"c: expected a finite shift, got {c!r}")
    with np.errstate(divide="ignore"):
        ls = np.log(a) - np.log1p(-a)
    out = 1.0 / (1.0 + np.exp(-(ls + c)))
    out[0] = 1.0
    out[a == 0] = 0.0
    return validate(out, "shifted alpha_bar")
