"""§7 set-up shared by the measurements: the forward marginal, timesteps, DDIM trajectories.

Conventions: images (B, C, H, W) in [−1, 1]; training index t = 1..T of ``alpha_bar`` (shape
(T+1,), ``alpha_bar[0] = 1``); diffusers' timestep τ = t − 1. (Re-exported by
:mod:`pifs.experiments`.)
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

__all__ = ["training_index", "trajectories", "clear_cache", "forward_marginal", "model_device"]


def model_device(model, default="cpu"):
    """The device of a score model's parameters (CPU for parameter-free exact models)."""
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device(default)


# ----------------------------------------------------------------------------- timesteps
def training_index(printed, convention: str = "diffusers"):
    """Our training index t (1..T) of a timestep as the paper prints it.

    Parameters
    ----------
    printed : int or array_like of int
    convention : {"diffusers", "ours"}
        ``"diffusers"``: the paper prints diffusers' τ (Tables 4–6, 9: 980, …, 20 are
        the DDIM-50 "leading" steps τ = 20 i), so t = τ + 1. ``"ours"``: already t
        (Table 3's 1, 101, …, 941 lie on the same grid as τ + 1; Table 10's √ᾱ_t
        column matches ᾱ indexed by the printed value).

    Returns
    -------
    numpy.ndarray of int64 (or int for scalar input)

    Raises
    ------
    ValueError
        For an unknown convention or a negative index.
    """
    if convention not in ("diffusers", "ours"):
        raise ValueError(f"convention: expected 'diffusers' or 'ours', got {convention!r}")
    p = np.asarray(printed)
    if not np.issubdtype(p.dtype, np.integer) or (p < 0).any():
        raise ValueError(f"printed: expected non-negative integer timesteps, got {printed!r}")
    out = p + 1 if convention == "diffusers" else p.copy()
    return int(out) if out.ndim == 0 else out.astype(np.int64)


_TRAJ_CACHE: dict = {}


def clear_cache() -> None:
    """Empty the in-session trajectory cache of :func:`trajectories`."""
    _TRAJ_CACHE.clear()


@torch.no_grad()
def trajectories(model, n: int, timesteps, *, seed: int = 0, shape=(3, 32, 32), batch: int = 16):
    """Deterministic DDIM trajectories from standard-normal noise, cached for the session.

    Runs :func:`pifs.ddim.ddim_chain` over ``timesteps`` and keeps every state.
    Trajectory j starts from noise drawn with ``torch.Generator().manual_seed(seed + j)``,
    so trajectory j is the same whatever ``n`` is.

    Parameters
    ----------
    model : score model with ``alpha_bar``
    n : int, >= 1
        Number of trajectories (the paper's seeds).
    timesteps : array_like of int, increasing, in 1..T
        The sampler's chain (e.g. :func:`chain`).
    seed : int
    shape : tuple (C, H, W)
    batch : int
        Trajectories per forward pass.

    Returns
    -------
    dict
        ``{t: tensor (n, C, H, W)}`` on the CPU for every t in ``timesteps`` (the state
        *at* t, before the step t → t_prev) and ``0`` (the sample x_0). The chain runs on
        the model's device.

    Raises
    ------
    ValueError
        If ``n`` < 1 or ``timesteps`` is invalid (:func:`pifs.ddim.ddim_chain`).
    """
    from .ddim import ddim_chain

    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n: expected a positive integer, got {n!r}")
    ts = np.asarray(timesteps, dtype=np.int64)
    key = (id(model), int(seed), tuple(int(s) for s in ts), tuple(shape))
    have = _TRAJ_CACHE.get(key)
    if have is None or have[ts[-1]].shape[0] < n:
        xs = []
        for j0 in range(0, n, batch):
            noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(seed + j))
                                 for j in range(j0, min(n, j0 + batch))])
            _, traj = ddim_chain(model, noise.to(model_device(model)), ts, return_trajectory=True)
            xs.append(traj.cpu())
        traj = torch.cat(xs, dim=1)  # (N+1, n, C, H, W): [x_{t_N}, ..., x_{t_1}, x_0]
        order = [int(s) for s in ts[::-1]] + [0]
        have = {t: traj[i] for i, t in enumerate(order)}
        _TRAJ_CACHE[key] = have
    return {t: v[:n] for t, v in have.items()}


def forward_marginal(images, t: int, alpha_bar, *, seed: int = 0):
    """Samples x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε of the forward marginal q(x_t) (eq. 1).

    Parameters
    ----------
    images : numpy.ndarray or torch.Tensor, float, (N, C, H, W), pixel scale [−1, 1]
    t : int, 0..T
    alpha_bar : array_like, shape (T+1,)
    seed : int
        Seed of ε (a CPU generator).

    Returns
    -------
    (x_t, eps) : two float32 tensors (N, C, H, W)

    Raises
    ------
    ValueError
        If ``t`` is out of range or ``images`` is not 4-D.
    """
    from .schedules import validate

    a = validate(alpha_bar)
    if isinstance(t, bool) or not isinstance(t, numbers.Integral) or not 0 <= t <= a.size - 1:
        raise ValueError(f"t: expected an integer training index in 0..{a.size - 1}, got {t!r}")
    x0 = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if x0.ndim != 4:
        raise ValueError(f"images: expected shape (N, C, H, W), got {tuple(x0.shape)}")
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(seed)))
    return math.sqrt(a[t]) * x0 + math.sqrt(1.0 - a[t]) * eps, eps
