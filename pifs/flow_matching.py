"""Flow matching with Gaussian data: exact velocity, Euler step, (PC-FM) constants (Appendix A).

Convention (the paper's (PC-FM), Definition 36, has the singular factor 1/(1−t), so
t = 1 is the data end): the linear interpolation of Lipman et al. (2023) / rectified
flow (Liu et al. 2023),

    x_t = t x_1 + (1 − t) x_0,   x_0 ~ N(0, I) (noise),  x_1 ~ p_data,  t ∈ [0, 1],

and the exact (marginal) velocity v(x, t) = E[x_1 − x_0 | x_t = x]. For Gaussian data
x_1 ~ N(m, Σ) the pair (x_t, x_1 − x_0) is jointly Gaussian, with
C_t := Cov(x_t) = t²Σ + (1 − t)² I and Cov(x_1 − x_0, x_t) = tΣ − (1 − t) I, so

    v(x, t) = m + (tΣ − (1 − t) I) C_t^{-1} (x − t m),
    J_x v(x, t) = (tΣ − (1 − t) I) C_t^{-1}      (constant in x, symmetric).

The Euler step of Theorem 37 is Ψ_t(x) = x + v(x, t)/T on the grid t = 0, 1/T, ..., (T−1)/T.
Data here are vectors of dimension n (flattened images in [−1, 1] if used with images).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "gaussian_velocity",
    "gaussian_velocity_jacobian",
    "euler_step",
    "pcfm_constants",
    "contraction_factor",
    "pcfm_conditions",
]


def _cov(cov, name="cov"):
    c = np.asarray(cov, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] == 0:
        raise ValueError(f"{name}: expected a square (n, n) matrix, got shape {c.shape}")
    if not np.isfinite(c).all() or not np.allclose(c, c.T, atol=1e-12 * max(1.0, np.abs(c).max())):
        raise ValueError(f"{name}: expected a finite symmetric matrix")
    if np.linalg.eigvalsh(c).min() < -1e-12:
        raise ValueError(f"{name}: expected a positive semi-definite covariance")
    return c


def _time(t, name="t"):
    if isinstance(t, (bool, np.bool_)) or not np.isscalar(t):
        raise TypeError(f"{name}: expected a float time in [0, 1], got {type(t).__name__}")
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"{name}: expected a time in [0, 1] (t = 1 is data), got {t!r}")
    return t


def gaussian_velocity_jacobian(t, cov) -> np.ndarray:
    """J_x v(x, t) = (tΣ − (1 − t) I)(t²Σ + (1 − t)² I)^{-1} of the exact Gaussian velocity.

    Parameters
    ----------
    t : float in [0, 1]
        Interpolation time (t = 1 is data). At t = 1, Σ must be non-singular.
    cov : array_like, shape (n, n)
        Data covariance Σ (symmetric PSD).

    Returns
    -------
    numpy.ndarray, float64, shape (n, n), symmetric (Σ and C_t commute).

    Raises
    ------
    ValueError
        For t outside [0, 1], an invalid covariance, or t = 1 with singular Σ.
    TypeError
        For a non-scalar t.
    """
    t = _time(t)
    S = _cov(cov)
    n = S.shape[0]
    C = t * t * S + (1 - t) ** 2 * np.eye(n)
    if np.linalg.eigvalsh(C).min() <= 0:
        raise ValueError("cov: C_t = t²Σ + (1−t)²I is singular (t = 1 with singular Σ): v is undefined there")
    J = np.linalg.solve(C, t * S - (1 - t) * np.eye(n)).T  # (tΣ−(1−t)I) C^{-1}, C symmetric
    return 0.5 * (J + J.T)


def gaussian_velocity(x, t, cov, mean=None):
    """Exact flow-matching velocity v(x, t) = E[x_1 − x_0 | x_t = x] for x_1 ~ N(m, Σ).

    v(x, t) = m + (tΣ − (1 − t) I) C_t^{-1}(x − t m), C_t = t²Σ + (1 − t)² I.

    Parameters
    ----------
    x : torch.Tensor or numpy.ndarray, shape (B, n) or (n,)
    t : float in [0, 1]
    cov : array_like, shape (n, n)
    mean : array_like, shape (n,), optional (default 0)

    Returns
    -------
    Same type and shape as ``x`` (torch: differentiable by ``torch.func``; dtype of ``x``).

    Raises
    ------
    ValueError
        For mismatched shapes, t outside [0, 1], or an invalid covariance.
    """
    J = gaussian_velocity_jacobian(t, cov)
    n = J.shape[0]
    m = np.zeros(n) if mean is None else np.asarray(mean, dtype=np.float64)
    if m.shape != (n,):
        raise ValueError(f"mean: expected shape ({n},), got {m.shape}")
    if x.shape[-1] != n or x.ndim not in (1, 2):
        raise ValueError(f"x: expected shape (B, {n}) or ({n},), got {tuple(x.shape)}")
    t = float(t)
    if isinstance(x, torch.Tensor):
        Jt = torch.as_tensor(J, dtype=x.dtype, device=x.device)
        mt = torch.as_tensor(m, dtype=x.dtype, device=x.device)
        return mt + (x - t * mt) @ Jt.T
    x = np.asarray(x, dtype=np.float64)
    return m + (x - t * m) @ J.T


def euler_step(velocity, x, t, T: int):
    """The Euler step Ψ_t(x) = x + v(x, t)/T of Theorem 37.

    Parameters
    ----------
    velocity : callable ``velocity(x, t) -> v`` (same shape as x)
    x : torch.Tensor or numpy.ndarray, shape (B, n)
    t : float in [0, 1)
    T : int >= 1, number of Euler steps on [0, 1]

    Returns
    -------
    Same type and shape as ``x``.

    Raises
    ------
    ValueError
        If T < 1 or t outside [0, 1).
    """
    if int(T) != T or T < 1:
        raise ValueError(f"T: expected a positive integer, got {T!r}")
    t = _time(t)
    if t >= 1:
        raise ValueError("t: the Euler grid is t = 0, 1/T, ..., (T−1)/T; t = 1 is not a step")
    return x + velocity(x, t) / T


def pcfm_constants(jac, t):
    """Constants (μ_t, δ̃_t) of Definition 36 read off a symmetric velocity Jacobian.

    Writes J = −(μ_t/(1 − t)) I + R_t with the scalar chosen to minimise ‖R_t‖_op:
    the midpoint of J's eigenvalue range, so μ_t = −(1 − t)(j_min + j_max)/2 and
    δ̃_t = ‖R_t‖_op = (j_max − j_min)/2. For a Jacobian constant in x (Gaussian data)
    μ_t^min = μ_t^max = μ_t.

    Parameters
    ----------
    jac : array_like, shape (n, n), symmetric
    t : float in [0, 1)

    Returns
    -------
    (float, float) : μ_t, δ̃_t

    Raises
    ------
    ValueError
        If ``jac`` is not square symmetric, or t outside [0, 1).
    """
    J = np.asarray(jac, dtype=np.float64)
    if J.ndim != 2 or J.shape[0] != J.shape[1] or not np.allclose(J, J.T, atol=1e-10 * max(1.0, np.abs(J).max())):
        raise ValueError("jac: expected a square symmetric Jacobian (the optimal scalar part is only closed-form then)")
    t = _time(t)
    if t >= 1:
        raise ValueError("t: Definition 36 is stated on [0, 1)")
    ev = np.linalg.eigvalsh(J)
    return -(1 - t) * 0.5 * (ev[0] + ev[-1]), 0.5 * (ev[-1] - ev[0])


def contraction_factor(mu_min, delta, t, T):
    """κ̃_t = (1 − μ_t^min/(T(1 − t))) + δ̃_t/T, eq. (66) of Theorem 37.

    A valid bound ‖J Ψ_t‖_op ≤ κ̃_t whenever the scalar part 1 − μ_t(x)/(T(1−t)) is
    ≥ 0 (second half of condition 3); it is < 1 only under the first half of condition 3.

    Parameters
    ----------
    mu_min, delta : float or array_like (broadcast)
    t : float or array_like in [0, 1)
    T : int >= 1

    Returns
    -------
    numpy.ndarray (float64), broadcast shape.
    """
    t = np.asarray(t, dtype=np.float64)
    if np.any((t < 0) | (t >= 1)):
        raise ValueError("t: expected times in [0, 1)")
    if int(T) != T or T < 1:
        raise ValueError(f"T: expected a positive integer, got {T!r}")
    return 1.0 - np.asarray(mu_min, dtype=np.float64) / (T * (1.0 - t)) + np.asarray(delta, dtype=np.float64) / T


def pcfm_conditions(mu_min, mu_max, delta, t, T) -> dict:
    """The three conditions of (PC-FM), Definition 36, as booleans (broadcast over t).

    Returns
    -------
    dict with keys ``"mu_positive"`` (0 < μ_min), ``"kappa_below_one"`` (μ_min > δ̃(1 − t)),
    ``"euler_nonnegative"`` (μ_max < T(1 − t)) and ``"all"``.
    """
    t = np.asarray(t, dtype=np.float64)
    mu_min, mu_max, delta = (np.asarray(a, dtype=np.float64) for a in (mu_min, mu_max, delta))
    c1 = mu_min > 0
    c3a = mu_min > delta * (1 - t)
    c3b = mu_max < T * (1 - t)
    return {"mu_positive": c1, "kappa_below_one": c3a, "euler_nonnegative": c3b, "all": c1 & c3a & c3b}
