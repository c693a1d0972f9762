"""Jacobian toolkit: JVP/VJP, dense Jacobians, power iteration, block decomposition (§3, §7.1).

Every tool takes a **single-sample** map ``f`` (e.g. :func:`pifs.ddim.step_fn`,
or ``lambda z: model(z[None], t)[0]``) and a point ``x`` of shape (n,) or
(C, H, W); the Jacobian J = ∂f/∂x is indexed by the row-major flattening of
input and output (``x.reshape(-1)``), the convention of
:func:`pifs.patches.patch_indices`. Only :func:`collage_regulariser` takes a
*batched* map (a training loss).

Products with J are computed by ``torch.func``: J u by forward mode
(``jvp``), Jᵀ w by reverse mode (``vjp``), batches of them by ``vmap``. Nothing
here forms J unless asked (:func:`dense_jacobian`).

Block notation (Theorem 9): with patches R_1..R_M (rows of ``patch_idx``),
[J]_kj is the n_k × n_j block mapping patch j of the input to patch k of the
output; C_k = Σ_{j≠k} ‖[J]_kj‖_op (eq. 16, for J = J_x Φ_t),
κ_diag = max_k ‖[J]_kk‖_op, δ_cross = max_k C_k (eq. 18), κ_pc = κ_diag + δ_cross
(eq. 19). The paper takes sup over x; the functions here evaluate at one x,
the sup over samples is the max over calls.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.func import jvp as _jvp
from torch.func import vjp as _vjp
from torch.func import vmap

__all__ = [
    "jvp",
    "vjp",
    "dense_jacobian",
    "spectral_norm",
    "exact_spectral_norm",
    "block_norms",
    "block_norms_power",
    "BlockDecomposition",
    "block_decomposition",
    "rayleigh_quotient",
    "collage_regulariser",
    "block_max_norm",
]


# ----------------------------------------------------------------------------- helpers
def _check_point(f, x):
    if not callable(f):
        raise TypeError(f"f: expected a callable single-sample map, got {type(f).__name__}")
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
        raise TypeError(f"x: expected a floating torch.Tensor, got {type(x).__name__}")


def _flat(f, x):
    shape = x.shape

    def g(z):
        return f(z.reshape(shape)).reshape(-1)

    return g, x.detach().reshape(-1)


def _patch_idx(patch_idx, n, name="patch_idx"):
    idx = patch_idx.detach().cpu().numpy() if isinstance(patch_idx, torch.Tensor) else np.asarray(patch_idx)
    if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer) or idx.size == 0:
        raise ValueError(f"{name}: expected an integer array of shape (M, n_k) (pifs.patches.patch_indices), got {idx.shape}")
    if idx.size != n or not np.array_equal(np.sort(idx.reshape(-1)), np.arange(n)):
        raise ValueError(f"{name}: rows must partition 0..n−1 with n = {n} (each index exactly once)")
    return idx.astype(np.int64)


def jvp(f, x, u):
    """J u and f(x) by forward mode.

    Parameters
    ----------
    f : callable, single sample → single sample
    x, u : torch.Tensor, same shape (n,) or (C, H, W)

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        f(x) and J_x f · u, each of f's output shape.
    """
    _check_point(f, x)
    if u.shape != x.shape:
        raise ValueError(f"u: expected the shape of x {tuple(x.shape)}, got {tuple(u.shape)}")
    return _jvp(f, (x,), (u,))


def vjp(f, x, w):
    """Jᵀ w and f(x) by reverse mode.

    Parameters
    ----------
    f : callable
    x : torch.Tensor, the input point
    w : torch.Tensor, f's output shape

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        f(x) and (J_x f)ᵀ w (shape of x).
    """
    _check_point(f, x)
    y, fn = _vjp(f, x)
    if w.shape != y.shape:
        raise ValueError(f"w: expected f's output shape {tuple(y.shape)}, got {tuple(w.shape)}")
    return y, fn(w)[0]


def dense_jacobian(f, x, chunk=None, memory_budget: int = 2**30, mode: str = "jvp"):
    """The dense Jacobian of a single-sample map by batched JVP (``vmap`` over basis columns).

    Column j is J e_j; columns are computed ``chunk`` at a time with one
    vectorised forward-mode pass each. ``mode="vjp"`` instead builds rows
    e_iᵀ J by vectorised reverse mode (one primal pass in all), which is faster
    on CPUs where forward-mode convolutions are slow (see benchmarks/jacobian.py).

    Parameters
    ----------
    f : callable
        Single-sample map, input shape = ``x.shape``.
    x : torch.Tensor, shape (n,) or (C, H, W)
    chunk : int, optional
        Columns per vectorised pass. Default: as many as fit ``memory_budget``
        under the heuristic of 256 × (n + m) values of working memory per column
        (a network's activations are a few hundred times its input), capped at n.
    memory_budget : int
        Bytes, for the default ``chunk``.
    mode : {"jvp", "vjp"}
        Columns by forward mode (default) or rows by reverse mode.

    Returns
    -------
    torch.Tensor, shape (m, n), x's dtype
        J[i, j] = ∂ f(x).reshape(-1)[i] / ∂ x.reshape(-1)[j].

    Raises
    ------
    TypeError
        If ``f`` is not callable or ``x`` is not a floating tensor.
    ValueError
        If ``chunk`` < 1 or ``mode`` is unknown.
    """
    _check_point(f, x)
    if mode not in ("jvp", "vjp"):
        raise ValueError(f"mode: expected 'jvp' or 'vjp', got {mode!r}")
    g, xf = _flat(f, x)
    n = xf.numel()
    with torch.no_grad():
        m = g(xf).numel()
    if chunk is None:
        chunk = int(max(1, min(n, memory_budget // (256 * xf.element_size() * (n + m)))))
    if int(chunk) != chunk or chunk < 1:
        raise ValueError(f"chunk: expected a positive integer, got {chunk!r}")
    chunk = int(chunk)
    J = torch.empty((m, n), dtype=xf.dtype, device=xf.device)
    if mode == "jvp":
        col = vmap(lambda u: _jvp(g, (xf,), (u,))[1])
        eye = torch.eye(n, dtype=xf.dtype, device=xf.device)
        for s in range(0, n, chunk):
            J[:, s : s + chunk] = col(eye[s : s + chunk]).detach().T
    else:
        _, vjp_fn = _vjp(g, xf)
        row = vmap(lambda w: vjp_fn(w)[0])
        eye = torch.eye(m, dtype=xf.dtype, device=xf.device)
        for s in range(0, m, chunk):
            J[s : s + chunk] = row(eye[s : s + chunk]).detach()
    return J


def spectral_norm(f, x, iters: int = 20, seed: int = 0, return_history: bool = False, u0=None,
                  return_vector: bool = False):
    """‖J_x f‖_op by power iteration on JᵀJ, matrix-free (one JVP + one VJP per iteration).

    u_0 random unit (Gaussian, ``seed``); w_k = J u_k (JVP), z_k = Jᵀ w_k (VJP),
    σ_k = ‖z_k‖ / ‖w_k‖, u_{k+1} = z_k / ‖z_k‖. Each σ_k is a lower bound of
    ‖J‖_op (‖Jᵀ w‖ ≤ ‖J‖ ‖w‖) and ≥ ‖J u_k‖; it converges at the rate
    (σ_2/σ_1)^{2k}. This is the paper's PowerIter(J, K_PI) of §7.1.

    Parameters
    ----------
    f : callable, single sample → single sample
    x : torch.Tensor, shape (n,) or (C, H, W)
    iters : int, >= 1
        K_PI.
    seed : int
        Seed of the starting vector (a CPU generator; moved to x's device).
    return_history : bool
        Also return σ_1..σ_K.
    u0 : torch.Tensor, optional
        Starting vector (x's shape, or flat with x's number of entries) instead of a
        random one, e.g. the previous step's vector to warm-start a chain.
    return_vector : bool
        Also return the last unit vector u (flat, shape (n,)): the approximate top right
        singular vector, for warm starts.

    Returns
    -------
    float; with ``return_history`` and/or ``return_vector`` a tuple
    (σ_K[, σ_1..σ_K as numpy.ndarray of shape (iters,)][, u]).

    Raises
    ------
    ValueError
        If ``iters`` < 1 or ``u0`` has the wrong size or is zero.
    """
    _check_point(f, x)
    if int(iters) != iters or iters < 1:
        raise ValueError(f"iters: expected a positive integer, got {iters!r}")
    g, xf = _flat(f, x)
    _, vjp_fn = _vjp(g, xf)
    if u0 is None:
        gen = torch.Generator().manual_seed(int(seed))
        u = torch.randn(xf.numel(), generator=gen, dtype=torch.float64).to(xf.dtype).to(xf.device)
    else:
        u0 = torch.as_tensor(u0)
        if u0.shape != x.shape and u0.shape != xf.shape:
            raise ValueError(f"u0: expected shape {tuple(x.shape)} or ({xf.numel()},), got {tuple(u0.shape)}")
        u = u0.detach().reshape(-1).to(device=xf.device, dtype=xf.dtype)
    nu = u.norm()
    if not nu > 0:
        raise ValueError("u0: the starting vector must be non-zero")
    u = u / nu
    hist = []
    sigma = 0.0
    for _ in range(int(iters)):
        w = _jvp(g, (xf,), (u,))[1].detach()
        nw = w.norm()
        if not nw > 0:
            hist.append(0.0)
            break
        z = vjp_fn(w)[0].detach()
        nz = z.norm()
        sigma = float(nz / nw)
        hist.append(sigma)
        if not nz > 0:
            break
        u = z / nz
    hist = np.asarray(hist + [hist[-1]] * (int(iters) - len(hist)))
    sigma = float(hist[-1])
    out = (sigma,) + ((hist,) if return_history else ()) + ((u,) if return_vector else ())
    return out if len(out) > 1 else sigma


def exact_spectral_norm(f, x, chunk=None):
    """‖J_x f‖_op as the largest singular value of the dense Jacobian (SVD, float64).

    Parameters
    ----------
    f : callable
    x : torch.Tensor, shape (n,) or (C, H, W); n up to a few thousand.
    chunk : int, optional
        Passed to :func:`dense_jacobian`.

    Returns
    -------
    float
    """
    J = dense_jacobian(f, x, chunk=chunk)
    return float(torch.linalg.matrix_norm(J.double(), ord=2))


def block_max_norm(x, patch_idx):
    """The block-max norm ‖x‖_{∞,M} = max_k ‖x^{(k)}‖_2 of §3.2 (per sample).

    Parameters
    ----------
    x : torch.Tensor, shape (B, n) or (B, C, H, W)
    patch_idx : array_like, shape (M, n_k), a partition of 0..n−1

    Returns
    -------
    torch.Tensor, shape (B,)
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError("x: expected a batch tensor of shape (B, n) or (B, C, H, W)")
    xf = x.reshape(x.shape[0], -1)
    idx = torch.as_tensor(_patch_idx(patch_idx, xf.shape[1]), device=x.device)
    return xf[:, idx].norm(dim=-1).amax(dim=-1)


def block_norms(J, patch_idx, ord: str = "op"):
    """Matrix of block norms ‖[J]_kj‖ for the patch partition, shape (M, M).

    Parameters
    ----------
    J : torch.Tensor or numpy.ndarray, shape (n, n)
        A Jacobian in the row-major flattening (e.g. :func:`dense_jacobian`).
    patch_idx : array_like of int, shape (M, n_k)
        :func:`pifs.patches.patch_indices`; rows must partition 0..n−1.
    ord : {"op", "fro"}
        Operator (spectral) norm, by batched SVD, or Frobenius norm.

    Returns
    -------
    torch.Tensor, shape (M, M), J's dtype (float64 for numpy input)
        Entry (k, j) = ‖J[R_k, R_j]‖.

    Raises
    ------
    ValueError
        For a non-square J, a bad partition, or an unknown ``ord``.
    """
    J = torch.as_tensor(J)
    if J.ndim != 2 or J.shape[0] != J.shape[1]:
        raise ValueError(f"J: expected a square matrix (n, n), got shape {tuple(J.shape)}")
    idx = torch.as_tensor(_patch_idx(patch_idx, J.shape[0]), device=J.device)
    if ord not in ("op", "fro"):
        raise ValueError(f"ord: expected 'op' or 'fro', got {ord!r}")
    blocks = J[idx[:, None, :, None], idx[None, :, None, :]]  # (M, M, nk, nk)
    return torch.linalg.matrix_norm(blocks, ord=2 if ord == "op" else "fro")


def block_norms_power(f, x, patch_idx, iters: int = 20, seed: int = 0, chunk=None):
    """Matrix-free estimates of ‖[J]_kj‖_op by power iteration on every block.

    For each pair (k, j) a vector u supported on patch j is pushed through J
    (JVP) and restricted to patch k, then back through Jᵀ (VJP of the patch-k
    cotangent) and restricted to patch j: one JVP + one VJP per block per
    iteration, vectorised over all M² blocks with ``vmap``. Each estimate is a
    lower bound (see :func:`spectral_norm`).

    Parameters
    ----------
    f : callable, single-sample map
    x : torch.Tensor, shape (n,) or (C, H, W)
    patch_idx : array_like, shape (M, n_k), a partition of 0..n−1
    iters : int, >= 1
        K per block.
    seed : int
    chunk : int, optional
        Blocks per vectorised pass (default all M²).

    Returns
    -------
    torch.Tensor, shape (M, M), x's dtype.

    Notes
    -----
    Cost: K·M² JVPs and K·M² VJPs (e.g. 20·256 each for M = 16); for n of a few
    thousand :func:`dense_jacobian` (n JVPs) followed by :func:`block_norms` is
    cheaper. The matrix-free form is for large n or single blocks.
    """
    _check_point(f, x)
    if int(iters) != iters or iters < 1:
        raise ValueError(f"iters: expected a positive integer, got {iters!r}")
    g, xf = _flat(f, x)
    n = xf.numel()
    idx = torch.as_tensor(_patch_idx(patch_idx, n), device=xf.device)
    M, nk = idx.shape
    kk, jj = torch.meshgrid(torch.arange(M), torch.arange(M), indexing="ij")
    kk, jj = kk.reshape(-1).to(xf.device), jj.reshape(-1).to(xf.device)
    P = M * M
    chunk = P if chunk is None else int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk: expected a positive integer, got {chunk!r}")
    _, vjp_fn = _vjp(g, xf)
    jv = vmap(lambda u: _jvp(g, (xf,), (u,))[1])
    vj = vmap(lambda w: vjp_fn(w)[0])
    gen = torch.Generator().manual_seed(int(seed))
    u = torch.randn(P, nk, generator=gen, dtype=torch.float64).to(xf.dtype).to(xf.device)
    u = u / u.norm(dim=1, keepdim=True)
    sig = torch.zeros(P, dtype=xf.dtype, device=xf.device)
    rows = torch.arange(P, device=xf.device)[:, None]
    for _ in range(int(iters)):
        for s in range(0, P, chunk):
            sl = slice(s, s + chunk)
            r = rows[: u[sl].shape[0]]
            U = torch.zeros(u[sl].shape[0], n, dtype=xf.dtype, device=xf.device)
            U[r, idx[jj[sl]]] = u[sl]
            Wfull = jv(U).detach()
            w = Wfull[r, idx[kk[sl]]]  # (c, nk)
            Wc = torch.zeros_like(U)
            Wc[r, idx[kk[sl]]] = w
            z = vj(Wc).detach()[r, idx[jj[sl]]]
            nw, nz = w.norm(dim=1), z.norm(dim=1)
            ok = (nw > 0) & (nz > 0)
            sig[sl] = torch.where(ok, nz / torch.where(nw > 0, nw, torch.ones_like(nw)), torch.zeros_like(nw))
            u[sl] = torch.where(ok[:, None], z / torch.where(nz > 0, nz, torch.ones_like(nz))[:, None], u[sl])
    return sig.reshape(M, M)


@dataclass
class BlockDecomposition:
    """Block decomposition of J_x Φ_t at one point (Theorem 9, eqs. 16–19).

    Attributes
    ----------
    block_norms : torch.Tensor, shape (M, M)
        ‖[J Φ_t]_kj‖_op.
    diag : torch.Tensor, shape (M,)
        κ^diag_{k,t} = ‖[J Φ_t]_kk‖_op per patch.
    C : torch.Tensor, shape (M,)
        Score-coupling field C_{k,t} = Σ_{j≠k} ‖[J Φ_t]_kj‖_op (eq. 16).
    kappa_diag, delta_cross : float
        max_k diag_k and max_k C_k (eq. 18 at this x).
    kappa_pc : float
        κ_diag + δ_cross (eq. 19).
    kappa_pc_rowmax : float
        max_k (diag_k + C_k) ≤ κ_pc: the sharper per-patch form of condition (17).
    violating : torch.Tensor of bool, shape (M,)
        Patches with diag_k + C_k ≥ 1 (condition (17) fails).
    C_score, delta_cross_score : torch.Tensor (M,), float, or None
        C_k / |b_t| and δ_cross / |b_t|: the coupling of the score Jacobian
        itself (given ``b_t``).
    """

    block_norms: torch.Tensor
    diag: torch.Tensor
    C: torch.Tensor
    kappa_diag: float
    delta_cross: float
    kappa_pc: float
    kappa_pc_rowmax: float
    violating: torch.Tensor
    C_score: torch.Tensor | None = None
    delta_cross_score: float | None = None
    method: str = field(default="dense")


def block_decomposition(J_or_f, x=None, patch_idx=None, b_t=None, *, method: str = "dense",
                        iters: int = 20, seed: int = 0, chunk=None):
    """κ_diag, δ_cross, C_k and κ_pc of J_x Φ_t at one point (Theorem 9, Definition 10).

    Parameters
    ----------
    J_or_f : torch.Tensor of shape (n, n), or callable
        The Jacobian J_x Φ_t (e.g. :func:`dense_jacobian` of
        :func:`pifs.ddim.step_fn`), or the single-sample map Φ_t itself.
    x : torch.Tensor, shape (n,) or (C, H, W)
        The point (required when a map is given; ignored for a matrix).
    patch_idx : array_like, shape (M, n_k)
        Patch partition (:func:`pifs.patches.patch_indices`).
    b_t : float, optional
        Score step coefficient b_t of the step (eq. 5; ``step_fn(...).b``). If
        given, the coupling is also reported at the score level,
        C_k/|b_t| = Σ_{j≠k}‖[J ε̂]_kj‖_op (eq. 16), and δ_cross/|b_t|.
    method : {"dense", "power"}
        For a map: dense Jacobian + batched SVD, or matrix-free power iteration
        on every block (:func:`block_norms_power`, ``iters`` per block, lower
        bounds).
    iters, seed, chunk
        Passed to the chosen method.

    Returns
    -------
    BlockDecomposition

    Raises
    ------
    ValueError
        If ``patch_idx`` is missing/invalid, ``x`` is missing for a map,
        ``b_t`` is zero, or ``method`` is unknown.
    """
    if patch_idx is None:
        raise ValueError("patch_idx: required (pifs.patches.patch_indices(shape, p))")
    if method not in ("dense", "power"):
        raise ValueError(f"method: expected 'dense' or 'power', got {method!r}")
    if callable(J_or_f) and not isinstance(J_or_f, torch.Tensor):
        if x is None:
            raise ValueError("x: required when a map is given")
        if method == "dense":
            N = block_norms(dense_jacobian(J_or_f, x, chunk=chunk), patch_idx, "op")
        else:
            N = block_norms_power(J_or_f, x, patch_idx, iters=iters, seed=seed, chunk=chunk)
    else:
        N = block_norms(J_or_f, patch_idx, "op")
        method = "dense"
    N = N.detach()
    diag = torch.diagonal(N).clone()
    C = N.sum(1) - diag
    out = BlockDecomposition(
        block_norms=N, diag=diag, C=C,
        kappa_diag=float(diag.max()), delta_cross=float(C.max()),
        kappa_pc=float(diag.max() + C.max()), kappa_pc_rowmax=float((diag + C).max()),
        violating=(diag + C) >= 1, method=method,
    )
    if b_t is not None:
        b = abs(float(b_t))
        if not b > 0:
            raise ValueError(f"b_t: expected a non-zero score step coefficient, got {b_t!r}")
        out.C_score = C / b
        out.delta_cross_score = float(C.max()) / b
    return out


def rayleigh_quotient(f, x, v):
    """Rayleigh quotient ⟨v̂, J_x f v̂⟩ along unit direction(s) v̂ = v/‖v‖ (one JVP each).

    Used for the directional suppression field (Definition 18) along the
    leading patch eigenvector.

    Parameters
    ----------
    f : callable, single-sample map (output shape = input shape)
    x : torch.Tensor, shape (n,) or (C, H, W)
    v : torch.Tensor, shape of x, or (K, *x.shape) for K directions
        Normalised inside (the quotient is scale-free).

    Returns
    -------
    torch.Tensor, shape () or (K,)

    Raises
    ------
    ValueError
        If ``v`` has the wrong shape or a direction is zero.
    """
    _check_point(f, x)
    single = v.shape == x.shape
    if not single and v.shape[1:] != x.shape:
        raise ValueError(f"v: expected shape {tuple(x.shape)} or (K, *{tuple(x.shape)}), got {tuple(v.shape)}")
    V = (v[None] if single else v).reshape(-1, x.numel()).to(x.dtype)
    nv = V.norm(dim=1)
    if not bool((nv > 0).all()):
        raise ValueError("v: every direction must be non-zero")
    V = V / nv[:, None]
    g, xf = _flat(f, x)
    JV = vmap(lambda u: _jvp(g, (xf,), (u,))[1])(V)
    q = (V * JV).sum(1).detach()
    return q[0] if single else q


def collage_regulariser(f, x, patch_idx, n_probes: int = 1, generator=None, mode: str = "jvp"):
    """Unbiased stochastic estimate of the PIFS collage penalty Σ_{k≠j} ‖[J_x f]_kj‖_F² (Theorem 15).

    Differentiable with respect to ``f``'s parameters, so it can be added to a
    training loss: ``loss = dsm + mu_reg * collage_regulariser(lambda z: model(z, t), x, idx)``.

    Estimator. For one sample with Jacobian J (blocks [J]_kj over the patches
    R_1..R_M), draw a random patch split S ⊂ {1..M} (each patch in S
    independently with probability ½) and g ~ N(0, I_n); let P_S zero every
    coordinate outside the patches of S, and S^c the complement. Then

        X = 2 ( ‖P_{S^c} J P_S g‖² + ‖P_S J P_{S^c} g‖² )

    is unbiased: E_g ‖A g‖² = ‖A‖_F² for any A, and ‖P_{S^c} J P_S‖_F² =
    Σ_{k∉S, j∈S} ‖[J]_kj‖_F²; an ordered pair (k, j), k ≠ j, has k ∉ S, j ∈ S
    with probability ¼ and k ∈ S, j ∉ S with probability ¼, while a diagonal
    pair (k = k) never appears. Hence E_{S,g} X = 2 · ½ Σ_{k≠j} ‖[J]_kj‖_F².
    Both terms reuse one Gaussian probe split by S (P_S g + P_{S^c} g = g):
    cost 2 JVPs per probe, each on the batch as given, so ``f`` may capture
    per-sample timesteps (against the
    M² n_k products of Theorem 15(b) for the exact value). ``mode="vjp"``
    uses the transposed estimator X = 2(‖P_S Jᵀ P_{S^c} g‖² + ‖P_{S^c} Jᵀ P_S g‖²)
    (same expectation, reverse mode with ``create_graph``; use it for models
    without forward-mode support).

    Parameters
    ----------
    f : callable
        *Batched, sample-wise* map (B, ...) → (B, ...) with output shape = input
        shape, e.g. ``lambda z: model(z, t)`` with ``t`` an int or a (B,) tensor
        (no batch statistics: BatchNorm in training mode breaks sample-wise
        independence).
    x : torch.Tensor, shape (B, n) or (B, C, H, W)
        Points (e.g. noised training images x_t).
    patch_idx : array_like, shape (M, n_k), a partition of 0..n−1
    n_probes : int, >= 1
        Independent (S, g) draws averaged per sample.
    generator : torch.Generator, optional
        On x's device; default the global RNG.
    mode : {"jvp", "vjp"}

    Returns
    -------
    torch.Tensor, scalar
        Mean over the batch (and probes) of the per-sample estimates; its
        expectation is (1/B) Σ_b Σ_{k≠j} ‖[J_{x_b} f]_kj‖_F².

    Raises
    ------
    ValueError
        For a bad ``x`` shape, partition, ``n_probes`` or ``mode``, or an output
        shape different from the input's.
    """
    if not callable(f):
        raise TypeError(f"f: expected a callable batched map, got {type(f).__name__}")
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point or x.ndim < 2:
        raise ValueError("x: expected a floating batch tensor of shape (B, n) or (B, C, H, W)")
    if int(n_probes) != n_probes or n_probes < 1:
        raise ValueError(f"n_probes: expected a positive integer, got {n_probes!r}")
    if mode not in ("jvp", "vjp"):
        raise ValueError(f"mode: expected 'jvp' or 'vjp', got {mode!r}")
    B = x.shape[0]
    n = x[0].numel()
    idx = _patch_idx(patch_idx, n)
    M = idx.shape[0]
    patch_of = np.empty(n, dtype=np.int64)
    patch_of[idx.reshape(-1)] = np.repeat(np.arange(M), idx.shape[1])
    patch_of = torch.as_tensor(patch_of, device=x.device)
    x = x.detach()
    total = x.new_zeros(())
    for _ in range(int(n_probes)):
        S = torch.rand(B, M, generator=generator, device=x.device) < 0.5
        mask = S[:, patch_of].to(x.dtype)  # (B, n): 1 on patches of S
        g = torch.randn(B, n, generator=generator, device=x.device, dtype=x.dtype)
        if mode == "jvp":
            U = torch.stack([g * mask, g * (1 - mask)]).reshape((2,) + tuple(x.shape))
            y, Ju0 = _jvp(f, (x,), (U[0],))
            if y.shape != x.shape:
                raise ValueError(f"f: output shape {tuple(y.shape)} must equal the input shape {tuple(x.shape)}")
            Ju1 = _jvp(f, (x,), (U[1],))[1]
            r = torch.cat([Ju0.reshape(B, n) * (1 - mask), Ju1.reshape(B, n) * mask])
        else:
            xr = x.clone().requires_grad_(True)
            y = f(xr)
            if y.shape != x.shape:
                raise ValueError(f"f: output shape {tuple(y.shape)} must equal the input shape {tuple(x.shape)}")
            w0 = (g * (1 - mask)).reshape(x.shape)
            w1 = (g * mask).reshape(x.shape)
            (Jw0,) = torch.autograd.grad(y, xr, grad_outputs=w0, create_graph=True, retain_graph=True)
            (Jw1,) = torch.autograd.grad(y, xr, grad_outputs=w1, create_graph=True)
            r = torch.cat([Jw0.reshape(B, n) * mask, Jw1.reshape(B, n) * (1 - mask)])
        total = total + 2.0 * (r * r).sum() / B
    return total / int(n_probes)
