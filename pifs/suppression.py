"""Directional suppression field S_k,t, suppression margin γ_k,t and release times (§4.1.1, §4.2).

The paper compares a score model ε̂ with the score ε^N of its Gaussian
surrogate N(0, Σ_0) through the deviation field (eq. 28)

    Δ_t(x) = ε̂(x, t) − ε^N(x, t),

and measures, per patch k, the Rayleigh quotient of the diagonal Jacobian
block of Δ_t along the top eigenvector v_k^(1) of the patch covariance Σ_k
(Definition 18, eq. 30):

    S_k,t(x) = |b_t| ⟨v_k, [∇_x Δ_t(x)]_kk v_k⟩,

with the suppression margin γ_k,t = S_k,t − (f_t(λ_k) − 1) (eq. 31), the
diagonal Rayleigh quotient κ^diag_k,t = ⟨v_k, [J_x Φ_t]_kk v_k⟩ (eq. 32) and
the release time t_k^rel = sup{t ≤ T : γ_k,t ≤ 0} (Definition 20, eq. 33).

Conventions
-----------
* Images are float tensors (B, C, H, W) in the pixel scale [−1, 1], or flat
  (B, n); the flat index of a value is its position in ``x.reshape(B, -1)``
  (row-major (C, H, W)). Patches follow :mod:`pifs.patches`: ``patch_idx`` of
  shape (M, n_k) lists the flat positions of patch k (channel-major), and
  ``directions[k]`` (shape (n_k,)) is a unit vector in that same order.
* ``t`` is a training index 1..T of ``alpha_bar`` (shape (T+1,),
  ``alpha_bar[0] = 1``): the index the score model is called with. The DDIM
  step whose coefficient b enters S is the step t → ``t_prev`` of the chain in
  use (default ``t_prev = t − 1``, the paper's Φ_t on the full training chain;
  a sub-sampled sampler passes the previous index of its chain, e.g. t = 980,
  t_prev = 960 for 50-step DDIM). b is evaluated by
  :func:`pifs.geometry.score_step_coefficient` on the two-step chain
  [1, ᾱ_{t_prev}, ᾱ_t] (eq. 5), in float64.
* Directional derivatives are forward-mode JVPs (:func:`torch.func.jvp`), one
  batched call for all patches (tangent k is v_k embedded in patch k, zero
  elsewhere). A model must treat batch rows independently (true for the exact
  models of :mod:`pifs.scores` and for UNets with GroupNorm). For diffusers
  UNets prepare the model for forward-mode AD first
  (:func:`pifs.scores.prepare_unet_for_forward_ad`).
"""
from __future__ import annotations

import numbers

import numpy as np
import torch

from .geometry import score_step_coefficient
from .schedules import validate

__all__ = [
    "step_coefficient",
    "block_rayleigh",
    "suppression_field",
    "diagonal_rayleigh",
    "suppression_margin",
    "release_times",
    "gaussian_patch_loss",
]


# ----------------------------------------------------------------------------- helpers
def _int_index(value, name):
    if isinstance(value, torch.Tensor) and value.ndim == 0 and not value.dtype.is_floating_point:
        value = int(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int training index, got {type(value).__name__}")
    return int(value)


def step_coefficient(alpha_bar, t, t_prev=None) -> float:
    """Score-step coefficient b of the DDIM step t → t_prev (eq. 5), float64.

    b = √(1 − ᾱ_{t_prev}) − √ᾱ_{t_prev} √(1 − ᾱ_t)/√ᾱ_t < 0 (Proposition 3),
    evaluated in the cancellation-free form of
    :func:`pifs.geometry.score_step_coefficient` on the chain [1, ᾱ_{t_prev}, ᾱ_t].

    Parameters
    ----------
    alpha_bar : array_like, shape (T+1,)
        Training schedule (:mod:`pifs.schedules`).
    t : int, 1..T
        Training index of the step's input x_t.
    t_prev : int, 0..t−1, optional
        Training index of the step's output (default ``t − 1``).

    Returns
    -------
    float
        b (negative).

    Raises
    ------
    TypeError
        If an index is not an integer.
    ValueError
        If an index is out of range, ``t_prev >= t``, or ᾱ_t = 0 (b = −∞:
        the step from pure noise has no finite Jacobian).
    """
    a = validate(alpha_bar)
    T = a.size - 1
    t = _int_index(t, "t")
    t_prev = t - 1 if t_prev is None else _int_index(t_prev, "t_prev")
    if not 1 <= t <= T:
        raise ValueError(f"t: training index must lie in 1..T = 1..{T}, got {t}")
    if not 0 <= t_prev < t:
        raise ValueError(f"t_prev: expected an index in 0..t−1 = 0..{t - 1}, got {t_prev}")
    if a[t] <= 0:
        raise ValueError(f"t: ᾱ_{t} = 0, so b_t = −inf and S_k,t is undefined at this step")
    chain = np.array([1.0, a[t]]) if t_prev == 0 else np.array([1.0, a[t_prev], a[t]])
    return float(score_step_coefficient(chain)[-1])


def _check_patches(x, directions, patch_idx):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"x: expected a floating tensor, got dtype {x.dtype}")
    if x.ndim not in (2, 4):
        raise ValueError(f"x: expected shape (B, n) or (B, C, H, W), got {tuple(x.shape)}")
    n = int(np.prod(x.shape[1:]))
    idx = patch_idx.detach().cpu().numpy() if isinstance(patch_idx, torch.Tensor) else np.asarray(patch_idx)
    if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"patch_idx: expected an integer array of shape (M, n_k), got {idx.dtype} {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"patch_idx: flat indices must lie in 0..n−1 = 0..{n - 1}, got [{idx.min()}, {idx.max()}]")
    if isinstance(directions, torch.Tensor):
        d = directions.detach().to(dtype=torch.float64, device="cpu").numpy()
    else:
        d = np.asarray(directions, dtype=np.float64)
    if d.shape != idx.shape:
        raise ValueError(f"directions: expected shape (M, n_k) = {idx.shape} (one unit vector per patch), got {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError("directions: contains NaN or inf")
    norms = np.linalg.norm(d, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > 1e-6)
    if bad.size:
        raise ValueError(
            f"directions: each v_k must be a unit vector (Definition 18); row {bad[0]} has norm {norms[bad[0]]!r}"
        )
    return n, torch.as_tensor(idx, dtype=torch.long, device=x.device), torch.as_tensor(d, dtype=x.dtype, device=x.device)


def _check_chunk(chunk, M):
    if chunk is None:
        return M
    if isinstance(chunk, (bool, np.bool_)) or not isinstance(chunk, numbers.Integral) or chunk < 1:
        raise ValueError(f"chunk: expected a positive integer number of patches per JVP call, got {chunk!r}")
    return int(chunk)


# ----------------------------------------------------------------------------- Rayleigh quotients
def block_rayleigh(fn, x, directions, patch_idx, *, chunk=None) -> torch.Tensor:
    """Rayleigh quotients ⟨v_k, [J_x fn(x)]_kk v_k⟩ of the diagonal Jacobian blocks, by JVP.

    For each patch k the tangent u_k = v_k embedded in patch k (zero elsewhere)
    is pushed through ``fn`` with :func:`torch.func.jvp`; the quotient is
    ⟨v_k, (J u_k)|_patch k⟩. All patches go in one batched call (or groups of
    ``chunk`` patches).

    Parameters
    ----------
    fn : callable
        x ↦ y with y of x's shape, batched over the first axis with independent
        rows, differentiable by ``torch.func`` (e.g. ``lambda z: model(z, t)``).
    x : torch.Tensor, shape (B, C, H, W) or (B, n), float
        Evaluation points (pixel scale [−1, 1]).
    directions : array_like or torch.Tensor, shape (M, n_k)
        Unit vectors v_k, in the flat order of ``patch_idx[k]``.
    patch_idx : array_like of int, shape (M, n_k)
        Flat positions of each patch (:func:`pifs.patches.patch_indices`).
    chunk : int, optional
        Patches per JVP call (memory bound B·chunk samples); default all M.

    Returns
    -------
    torch.Tensor, shape (B, M), dtype of ``x``, detached.

    Raises
    ------
    TypeError
        If ``x`` is not a floating tensor.
    ValueError
        For inconsistent shapes, out-of-range indices or non-unit directions.
    """
    n, idx, d = _check_patches(x, directions, patch_idx)
    M, nk = idx.shape
    B = x.shape[0]
    step = _check_chunk(chunk, M)
    xf = x.detach()
    out = []
    for s in range(0, M, step):
        ks = slice(s, min(M, s + step))
        m = ks.stop - ks.start
        tang = torch.zeros((m, n), dtype=x.dtype, device=x.device)
        tang.scatter_(1, idx[ks], d[ks])
        # materialised copies: forward AD refuses inputs whose elements share memory (expand views)
        X = xf.unsqueeze(0).expand(m, *xf.shape).reshape(m * B, *xf.shape[1:]).clone()
        U = tang[:, None, :].expand(m, B, n).reshape(m * B, *xf.shape[1:]).clone()
        _, ju = torch.func.jvp(fn, (X,), (U,))
        ju = ju.reshape(m, B, n)
        blk = torch.gather(ju, 2, idx[ks][:, None, :].expand(m, B, nk))  # (m, B, nk)
        out.append((blk * d[ks][:, None, :]).sum(-1).T)  # (B, m)
    return torch.cat(out, dim=1).detach()


def suppression_field(model, surrogate, x, t, directions, patch_idx, *, alpha_bar, t_prev=None, chunk=None):
    """Directional suppression field S_k,t(x) of Definition 18, eq. (30).

    S_k,t(x) = |b| ⟨v_k, [∇_x Δ_t(x)]_kk v_k⟩ with Δ_t = ε̂ − ε^N (eq. 28),
    computed as the difference of two directional JVPs (the Jacobian is linear
    in the model). Positive S means the model's diagonal block is *less*
    expansive along v_k than the Gaussian surrogate's (eq. 29, b < 0).

    Parameters
    ----------
    model : callable
        Score model ``model(x, t) -> eps_hat`` (:mod:`pifs.scores` interface).
    surrogate : callable
        The Gaussian surrogate's score ε^N, same interface (e.g.
        ``pifs.scores.GaussianScore(Σ_0, alpha_bar)``).
    x : torch.Tensor, shape (B, C, H, W) or (B, n)
        Points x_t (pixel scale [−1, 1]) at training index ``t``.
    t : int, 1..T
        Training index passed to both models.
    directions : array_like or torch.Tensor, shape (M, n_k)
        Unit top eigenvectors v_k^(1) of the patch covariances Σ_k.
    patch_idx : array_like of int, shape (M, n_k)
        Flat positions of each patch (:func:`pifs.patches.patch_indices`).
    alpha_bar : array_like, shape (T+1,)
        Training schedule of the models (``model.alpha_bar``); required so the
        step convention is explicit.
    t_prev : int, 0..t−1, optional
        Output index of the DDIM step whose b is used (default t − 1).
    chunk : int, optional
        Patches per JVP call.

    Returns
    -------
    torch.Tensor, shape (B, M), dtype of ``x``, detached.

    Raises
    ------
    TypeError, ValueError
        For bad indices (:func:`step_coefficient`) or shapes/directions
        (:func:`block_rayleigh`).

    References
    ----------
    Paper eqs. (28)–(30); measured as in §7.2 (directional JVP along v_k^(1)).
    """
    b = step_coefficient(alpha_bar, t, t_prev)
    t = _int_index(t, "t")
    rq_model = block_rayleigh(lambda z: model(z, t), x, directions, patch_idx, chunk=chunk)
    rq_gauss = block_rayleigh(lambda z: surrogate(z, t), x, directions, patch_idx, chunk=chunk)
    return abs(b) * (rq_model - rq_gauss)


def diagonal_rayleigh(model, x, t, directions, patch_idx, *, alpha_bar, t_prev=None, chunk=None):
    """Diagonal Rayleigh quotient κ^diag_k,t(x) = ⟨v_k, [J_x Φ_t]_kk v_k⟩, eq. (32).

    Computed directly from the model, κ = √(ᾱ_{t_prev}/ᾱ_t) + b ⟨v_k, [J ε̂]_kk v_k⟩
    (eq. 15), without the surrogate. When the surrogate N(0, Σ_0) is
    block-diagonal and v_k is an eigenvector of Σ_k with eigenvalue λ_k,
    eq. (32) gives κ = f_t(λ_k) − S_k,t (Theorem 17 + eq. 29).

    Parameters
    ----------
    model, x, t, directions, patch_idx, alpha_bar, t_prev, chunk
        As in :func:`suppression_field`.

    Returns
    -------
    torch.Tensor, shape (B, M), dtype of ``x``, detached.

    Raises
    ------
    TypeError, ValueError
        As :func:`suppression_field`.
    """
    b = step_coefficient(alpha_bar, t, t_prev)
    a = validate(alpha_bar)
    t = _int_index(t, "t")
    tp = t - 1 if t_prev is None else _int_index(t_prev, "t_prev")
    expand = float(np.sqrt(a[tp] / a[t]))
    rq = block_rayleigh(lambda z: model(z, t), x, directions, patch_idx, chunk=chunk)
    return expand + b * rq


# ----------------------------------------------------------------------------- margins and release
def _as_float64(a, name):
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    try:
        out = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected a numeric array, got {type(a).__name__}") from exc
    if np.isnan(out).any():
        raise ValueError(f"{name}: contains NaN")
    return out


def suppression_margin(S, f_t_of_lam) -> np.ndarray:
    """Suppression margin γ_k,t = S_k,t − (f_t(λ_k) − 1), eq. (31).

    γ > 0: patch k is still suppressed (κ^diag < 1 under Proposition 19);
    γ ≤ 0: released.

    Parameters
    ----------
    S : array_like or torch.Tensor, shape (..., M)
        Suppression field (:func:`suppression_field`), e.g. (B, M).
    f_t_of_lam : array_like, shape (M,) or broadcastable to S
        f_t(λ_k) for the same step (:func:`pifs.geometry.expansion_function`
        of the same chain, column of step t).

    Returns
    -------
    numpy.ndarray, float64, broadcast shape of the inputs.

    Raises
    ------
    TypeError
        For non-numeric input.
    ValueError
        If the shapes do not broadcast or an input contains NaN.
    """
    s = _as_float64(S, "S")
    f = _as_float64(f_t_of_lam, "f_t_of_lam")
    try:
        shape = np.broadcast_shapes(s.shape, f.shape)
    except ValueError as exc:
        raise ValueError(f"f_t_of_lam: shape {f.shape} does not broadcast against S {s.shape} (patch axis last)") from exc
    return np.broadcast_to(s - (f - 1.0), shape).copy()


def release_times(gamma, timesteps) -> np.ndarray:
    """Per-patch release time t_k^rel = sup{t ≤ T : γ_k,t ≤ 0}, Definition 20, eq. (33).

    The largest evaluated timestep at which the margin is ≤ 0, i.e. the first
    step of the reverse chain (run from t = T down) at which κ^diag_k,t ≥ 1.
    Only the given ``timesteps`` are searched (the supremum over a grid).

    Parameters
    ----------
    gamma : array_like, shape (N, ...)
        Margins γ (:func:`suppression_margin`); axis 0 indexes ``timesteps``,
        the remaining axes (e.g. (B, M) or (M,)) are kept.
    timesteps : array_like of int, shape (N,)
        Distinct training indices (any order) at which ``gamma`` was evaluated.

    Returns
    -------
    numpy.ndarray, float64, shape ``gamma.shape[1:]``
        t_k^rel, or NaN where γ > 0 at every evaluated step (never released:
        the supremum of the empty set).

    Raises
    ------
    TypeError
        If ``timesteps`` is not an integer array or ``gamma`` is not numeric.
    ValueError
        If the lengths disagree, timesteps repeat or are < 1, or ``gamma`` has NaN.
    """
    g = _as_float64(gamma, "gamma")
    ts = np.asarray(timesteps)
    if ts.ndim != 1 or not np.issubdtype(ts.dtype, np.integer):
        raise TypeError(f"timesteps: expected a 1-D integer array, got dtype {ts.dtype} shape {ts.shape}")
    if g.ndim < 1 or g.shape[0] != ts.size:
        raise ValueError(f"gamma: axis 0 must have len(timesteps) = {ts.size} entries, got shape {g.shape}")
    if np.unique(ts).size != ts.size:
        raise ValueError("timesteps: must be distinct")
    if ts.size and ts.min() < 1:
        raise ValueError(f"timesteps: training indices must be >= 1, got {ts.min()}")
    released = g <= 0
    tt = ts.astype(np.float64).reshape((-1,) + (1,) * (g.ndim - 1))
    cand = np.where(released, tt, -np.inf)
    out = cand.max(axis=0) if ts.size else np.full(g.shape[1:], -np.inf)
    return np.where(np.isfinite(out), out, np.nan)


def gaussian_patch_loss(lam, alpha_bar) -> np.ndarray:
    """Per-direction reconstruction loss of the Gaussian patch model, eq. (38).

    L_k,t = λ_k v_t / (ᾱ_t λ_k + v_t): the posterior variance of x_0 along an
    eigen-direction of Σ_k with eigenvalue λ_k, i.e. the MSE of the optimal
    x̂_0 = E[x_0 | x_t] per direction (an isotropic patch Σ_k = λ_k I_{n_k}
    has total MSE n_k times this; the factor is absorbed into c_t of (A3)).

    Parameters
    ----------
    lam : float or array_like, values > 0
        Patch variances λ_k (pixel scale [−1, 1]).
    alpha_bar : array_like, shape (T+1,)

    Returns
    -------
    numpy.ndarray, float64, shape ``np.shape(lam) + (T,)``; index i ↔ step t = i + 1.

    Raises
    ------
    ValueError
        If any λ ≤ 0 or NaN, or the schedule is invalid.
    """
    lam = np.asarray(lam, dtype=np.float64)
    if np.isnan(lam).any() or (lam <= 0).any():
        raise ValueError(f"lam: patch variances must be > 0 (and not NaN), got min {np.nanmin(lam)!r}")
    a = validate(alpha_bar)[1:]
    v = 1.0 - a
    lam = lam[..., None]
    return lam * v / (a * lam + v)
