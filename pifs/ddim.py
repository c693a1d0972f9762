"""The deterministic DDIM operator Φ_t (eq. 4) and the reverse chain Φ = Φ_1 ∘ ⋯ ∘ Φ_T.

A step from training index t to t_prev < t (t_prev = 0 allowed, ᾱ_0 = 1) is

    Φ(x) = √(ᾱ_{t_prev}/ᾱ_t) x + b ε̂(x, t),
    b    = √(1 − ᾱ_{t_prev}) − √ᾱ_{t_prev} √(1 − ᾱ_t) / √ᾱ_t            (eq. 5),

i.e. x_{t_prev} = √ᾱ_{t_prev} x̂_0 + √(1 − ᾱ_{t_prev}) ε̂ with
x̂_0 = (x − √(1 − ᾱ_t) ε̂)/√ᾱ_t (Song et al., 2021a, η = 0). With t_prev = t − 1
it is the paper's Φ_t; a sub-sampled sampler (N < T steps) uses
t_prev = the previous chain index. Coefficients are computed in float64 in the
cancellation-free form of :func:`pifs.geometry.score_step_coefficient` and
applied in ``x``'s dtype.

``model`` is any score model of :mod:`pifs.scores` (``model(x, t)`` with
``model.alpha_bar``).
"""
from __future__ import annotations

import numbers

import numpy as np
import torch

__all__ = ["step_coefficients", "ddim_step", "ddim_chain", "step_fn"]


def _index(t, name, T):
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Integral):
        if isinstance(t, torch.Tensor) and t.ndim == 0 and not t.dtype.is_floating_point:
            t = int(t)
        else:
            raise TypeError(f"{name}: expected an int training index, got {type(t).__name__}")
    if not 0 <= int(t) <= T:
        raise ValueError(f"{name}: training index must lie in 0..T = 0..{T}, got {t}")
    return int(t)


def step_coefficients(alpha_bar, t, t_prev):
    """The two scalars of Φ from t to t_prev: (√(ᾱ_{t_prev}/ᾱ_t), b), eq. (4)–(5).

    b = −(ᾱ_{t_prev} − ᾱ_t) / (√ᾱ_t (√(v_{t_prev} ᾱ_t) + √(ᾱ_{t_prev} v_t))), the
    cancellation-free form of eq. (5) (negative: Proposition 3).

    Parameters
    ----------
    alpha_bar : numpy.ndarray, float64, shape (T+1,)
        A validated schedule (``model.alpha_bar``).
    t : int, 1..T
    t_prev : int, 0..t−1

    Returns
    -------
    (float, float)
        The identity coefficient (> 1) and b (< 0), float64.

    Raises
    ------
    ValueError
        If ``t_prev >= t``, an index is out of range, or ᾱ_t = 0 (x̂_0 and Φ
        are undefined at a step that starts from pure noise with ᾱ_t = 0).
    TypeError
        If an index is not an integer.
    """
    a = np.asarray(alpha_bar, dtype=np.float64)
    T = a.size - 1
    t = _index(t, "t", T)
    t_prev = _index(t_prev, "t_prev", T)
    if t < 1:
        raise ValueError(f"t: training index must be >= 1, got {t}")
    if not t_prev < t:
        raise ValueError(f"t_prev: expected t_prev < t = {t}, got {t_prev}")
    a_t, a_p = a[t], a[t_prev]
    if a_t <= 0:
        raise ValueError(f"t: ᾱ_{t} = 0, so x̂_0 and Φ are undefined at this step (use a schedule with ᾱ_T > 0)")
    v_t, v_p = 1.0 - a_t, 1.0 - a_p
    expand = float(np.sqrt(a_p / a_t))
    b = float(-(a_p - a_t) / (np.sqrt(a_t) * (np.sqrt(v_p * a_t) + np.sqrt(a_p * v_t))))
    return expand, b


def ddim_step(model, x, t, t_prev=None):
    """One deterministic DDIM step Φ: x at training index t → x at t_prev (eq. 4).

    Parameters
    ----------
    model : score model (:mod:`pifs.scores`)
        ``model(x, t) -> eps_hat`` with attribute ``alpha_bar`` (shape (T+1,)).
    x : torch.Tensor, shape (B, n) or (B, C, H, W)
        Batch at noise level ᾱ_t, pixel scale [−1, 1].
    t : int, 1..T
    t_prev : int, 0..t−1, optional
        Target index (default t − 1, the paper's Φ_t; 0 means ᾱ = 1, the clean image).

    Returns
    -------
    torch.Tensor, shape and dtype of ``x``.

    Raises
    ------
    ValueError, TypeError
        See :func:`step_coefficients`.
    """
    if t_prev is None:
        t_prev = _index(t, "t", model.alpha_bar.size - 1) - 1
    expand, b = step_coefficients(model.alpha_bar, t, t_prev)
    return expand * x + b * model(x, int(t))


def ddim_chain(model, x_T, timesteps, return_trajectory: bool = False):
    """The deterministic DDIM sampler Φ over a (sub-sampled) chain of training indices.

    Runs x_{t_N} → x_{t_{N−1}} → ⋯ → x_{t_1} → x_0 with t_1 < ⋯ < t_N the
    given ``timesteps`` (the last step goes to ᾱ_0 = 1). With
    ``timesteps = [1, 2, ..., T]`` this is Φ_1 ∘ ⋯ ∘ Φ_T of the paper. It
    equals diffusers' ``DDIMScheduler`` (η = 0, ``set_alpha_to_one=True``)
    whose timesteps τ are our t − 1.

    Parameters
    ----------
    model : score model
    x_T : torch.Tensor, shape (B, n) or (B, C, H, W)
        Starting batch at noise level ᾱ_{t_N}.
    timesteps : array_like of int, shape (N,)
        Strictly increasing training indices in 1..T.
    return_trajectory : bool
        Also return every intermediate state.

    Returns
    -------
    torch.Tensor, shape of ``x_T``
        x_0.
    torch.Tensor, shape (N+1, *x_T.shape), only if ``return_trajectory``
        [x_{t_N}, x_{t_{N−1}}, ..., x_{t_1}, x_0].

    Raises
    ------
    ValueError
        If ``timesteps`` is empty, not strictly increasing, or leaves 1..T.
    """
    ts = np.asarray(timesteps.detach().cpu() if isinstance(timesteps, torch.Tensor) else timesteps)
    if ts.ndim != 1 or ts.size == 0 or not np.issubdtype(ts.dtype, np.integer):
        raise ValueError(f"timesteps: expected a non-empty 1-D integer array, got {timesteps!r}")
    if (np.diff(ts) <= 0).any():
        raise ValueError("timesteps: must be strictly increasing training indices")
    T = model.alpha_bar.size - 1
    if ts[0] < 1 or ts[-1] > T:
        raise ValueError(f"timesteps: must lie in 1..T = 1..{T}, got [{ts[0]}, {ts[-1]}]")
    chain = [0] + [int(s) for s in ts]
    x = x_T
    traj = [x] if return_trajectory else None
    for i in range(len(chain) - 1, 0, -1):
        x = ddim_step(model, x, chain[i], chain[i - 1])
        if return_trajectory:
            traj.append(x)
    if return_trajectory:
        return x, torch.stack(traj)
    return x


def step_fn(model, t, t_prev=None):
    """The single-sample map x ↦ Φ(x) from t to t_prev, for the tools of :mod:`pifs.jacobian`.

    Parameters
    ----------
    model : score model
    t : int, 1..T
    t_prev : int, 0..t−1, optional (default t − 1)

    Returns
    -------
    callable
        ``f(x)`` for one sample ``x`` of shape (n,) or (C, H, W) (no batch axis),
        returning Φ(x) of the same shape; ``f.expand`` and ``f.b`` hold the two
        coefficients of eq. (4). Composable with ``torch.func`` (jvp, vjp, vmap).

    Raises
    ------
    ValueError, TypeError
        See :func:`step_coefficients`.
    """
    if t_prev is None:
        t_prev = _index(t, "t", model.alpha_bar.size - 1) - 1
    expand, b = step_coefficients(model.alpha_bar, t, t_prev)
    t = int(t)

    def f(x):
        if x.ndim not in (1, 3):
            raise ValueError(f"x: expected one sample of shape (n,) or (C, H, W), got {tuple(x.shape)}")
        return expand * x + b * model(x[None], t)[0]

    f.expand, f.b, f.t, f.t_prev = expand, b, t, int(t_prev)
    return f
