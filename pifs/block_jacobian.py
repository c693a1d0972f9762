"""Norms and block statistics of DDIM-step Jacobians: Tables 4–9 of the paper (§7.4–7.5).

The one home of these measurements (formerly ``pifs.blockstats``, which re-exports them).

The §7.4–7.5 notebook measures, at points x_t of deterministic 50-step DDIM
trajectories of a trained ε-network, the Jacobian J = J_x Φ of one DDIM step
Φ: x_t ↦ x_{t_prev} (eq. 4; :func:`pifs.ddim.step_fn`) and derives from it

* the global spectral norm κ̂_t = ‖J‖_op (Table 4) and ŝ = ∏_t κ̂_t;
* the block decomposition of Theorem 9 (eqs. 15–19) on 8×8 patches: diagonal block
  norms κ̂_{k,t}^diag = ‖[J]_kk‖_op, the score-coupling field
  C_{k,t} = Σ_{j≠k} ‖[J]_kj‖_op (eq. 16), κ̂_t^diag = max_k κ̂_{k,t}^diag and
  δ̂_t^cross = max_k C_{k,t} (eq. 18) (Tables 5, 6, 8);
* the per-patch Rayleigh quotient κ_{k,t}^diag = ⟨v_k, [J]_kk v_k⟩ along the leading
  patch eigenvector v_k = v_k^(1) (eq. 32; Table 9);
* the symmetric Frobenius coupling C̄_kj = ½(‖[J]_kj‖_F + ‖[J]_jk‖_F) against the
  Chebyshev distance of the patches (Table 7).

Two measurement methods share one result type (:class:`StepMeasurement`), so the
tables do not depend on which one produced them:

``"dense"``
    The dense Jacobian (n batched JVPs, :func:`pifs.jacobian.dense_jacobian`), then
    everything exactly: σ_max by SVD, all M² block norms by batched SVD. This is the
    ``full`` profile (a GPU) and the tests (tiny models).
``"sketch"``
    Matrix-free, for a CPU (``small``, ``smoke``), where one dense Jacobian of a
    32×32 UNet costs n = 3,072 JVPs (minutes). Per point it spends
    ``k_pi`` JVP+VJP pairs on the global norm (power iteration), ``M·k_diag`` pairs on
    the M diagonal blocks (power iteration per patch, started at v_k, so the first
    iterate also gives the Rayleigh quotient of eq. 32), and ``M·n_probes`` JVPs on
    Gaussian probes of every block column. From these it returns

    - ``block_fro``: the unbiased randomised estimate of ‖[J]_kj‖_F
      (E‖A ω‖² = ‖A‖_F² for ω ~ N(0, I); Hutchinson 1989 / Girard 1989),
    - ``block_op_lo``: certified lower bounds of ‖[J]_kj‖_op: the largest ‖[J]_kj u‖/‖u‖
      and ‖[J]_kjᵀ w‖/‖w‖ over every vector the computation pushed through the block
      (each is ≤ the operator norm), and, on the diagonal, the power-iteration value,
    - upper-side estimates of C_k from the Frobenius norms (‖A‖_op ≤ ‖A‖_F).

    So the coupling C_k is bracketed, C_k^lo ≤ C_k ≲ C_k^F, and (PC) violations are
    certified with the lower bound (see :func:`pc_slack`).

Conventions: images (C, H, W) in [−1, 1]; training indices t = 1..T of ``alpha_bar``
(shape (T+1,), ``alpha_bar[0] = 1``). The paper labels the steps of its 50-step DDIM
chain with diffusers' timestep τ = 980, 960, ..., 0 (its Table 4: "step 1 of 50" is
980, "49 of 50" is 20); our index is t = τ + 1 (:func:`paper_t_to_index`). Patches are
those of :func:`pifs.patches.patch_indices` (row-major k, channel-major inside).
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.func import jvp as _jvp
from torch.func import vjp as _vjp
from torch.func import vmap

from . import jacobian as jac
from .jacobian import _flat as _flat_map

__all__ = [
    "DDIM50_PAPER_T",
    "paper_t_to_index",
    "chebyshev_distances",
    "power_iteration",
    "StepMeasurement",
    "measure_step",
    "JacobianStudy",
    "coupling_by_distance",
    "pc_slack",
    "spearman_exact_permutation",
    "attention_entropies",
    "exact_norm",
    "matrix_power_iteration",
    "block_power_iteration",
    "dense_step_measurement",
    "diag_block_measurement",
    "slack_at_strides",
]

#: The paper's 50-step DDIM chain in its own labels τ (diffusers timesteps), first step first.
DDIM50_PAPER_T = tuple(range(980, -1, -20))


# ----------------------------------------------------------------------------- indexing
def paper_t_to_index(tau) -> int:
    """Our training index t = τ + 1 of a step the paper labels τ (diffusers' timestep).

    The paper's tables (§7.4–7.5) use diffusers' 0-based timesteps τ of the 50-step
    DDIM chain (980, 960, ..., 20, 0); diffusers' ``alphas_cumprod[τ]`` is our ᾱ_{τ+1}.

    Parameters
    ----------
    tau : int, 0..T−1

    Returns
    -------
    int

    Raises
    ------
    TypeError
        If ``tau`` is not an integer.
    ValueError
        If ``tau`` < 0.
    """
    if isinstance(tau, (bool, np.bool_)) or int(tau) != tau:
        raise TypeError(f"tau: expected an integer diffusers timestep, got {tau!r}")
    if tau < 0:
        raise ValueError(f"tau: expected τ >= 0, got {tau}")
    return int(tau) + 1


def chebyshev_distances(grid) -> np.ndarray:
    """Chebyshev (king-move) distance between patches on a grid, shape (M, M).

    d(k, j) = max(|r_k − r_j|, |c_k − c_j|) with k = r·cols + c (row-major patch index,
    :func:`pifs.patches.patch_indices`). Table 7 groups block couplings by d = 1, 2, 3.

    Parameters
    ----------
    grid : (int, int)
        Patch rows and columns (H/p, W/p); (4, 4) for 8×8 patches of a 32×32 image.

    Returns
    -------
    numpy.ndarray, int64, shape (rows·cols, rows·cols)

    Raises
    ------
    ValueError
        If ``grid`` is not two positive integers.
    """
    try:
        rows, cols = (int(g) for g in grid)
    except (TypeError, ValueError):
        raise ValueError(f"grid: expected (rows, cols), got {grid!r}") from None
    if rows < 1 or cols < 1:
        raise ValueError(f"grid: expected positive sizes, got {grid!r}")
    r, c = np.divmod(np.arange(rows * cols), cols)
    return np.maximum(np.abs(r[:, None] - r[None, :]), np.abs(c[:, None] - c[None, :])).astype(np.int64)


# ----------------------------------------------------------------------------- products
def _check_idx(patch_idx, n):
    idx = np.asarray(patch_idx)
    if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"patch_idx: expected an integer array (M, n_k), got shape {idx.shape}")
    if idx.size != n or not np.array_equal(np.sort(idx.reshape(-1)), np.arange(n)):
        raise ValueError(f"patch_idx: rows must partition 0..n−1 with n = {n}")
    return torch.as_tensor(idx.astype(np.int64))


def power_iteration(f, x, iters: int, u0=None, seed: int = 0):
    """‖J_x f‖_op by power iteration on JᵀJ (one JVP + one VJP per iteration), with warm start.

    A call of :func:`pifs.jacobian.spectral_norm` (the paper's
    PowerIter(J, K_PI), §7.1): w = J u, z = Jᵀ w, σ = ‖z‖/‖w‖, u ← z/‖z‖; each σ is a
    lower bound of ‖J‖_op. It also returns the last vector u so that a chain of steps
    can warm-start each step from its predecessor's estimate.

    Parameters
    ----------
    f : callable
        Single-sample map (e.g. :func:`pifs.ddim.step_fn`), output shape = input shape.
    x : torch.Tensor, shape (n,) or (C, H, W)
    iters : int, >= 1
    u0 : torch.Tensor, optional
        Start vector (x's number of entries); default Gaussian from ``seed``.
    seed : int

    Returns
    -------
    sigma : float
        The last estimate σ_K.
    history : numpy.ndarray, shape (iters,)
        σ_1..σ_K.
    u : torch.Tensor, shape (n,)
        The last unit vector (approximate top right singular vector).

    Raises
    ------
    ValueError
        If ``iters`` < 1 or ``u0`` has the wrong size or is zero.
    """
    return jac.spectral_norm(f, x, iters, seed, return_history=True, u0=u0, return_vector=True)


# ----------------------------------------------------------------------------- one point
@dataclass
class StepMeasurement:
    """Everything measured of J = J_x Φ at one trajectory point (one (t, seed)).

    Attributes
    ----------
    t, t_prev : int
        Training indices of the step x_t → x_{t_prev}.
    expand, b : float
        The two coefficients of eq. (4): J = expand·I + b·J_x ε̂.
    method : {"dense", "sketch"}
    kappa : float
        Global ‖J‖_op: power-iteration estimate (``kappa_history`` its iterates).
    kappa_history : numpy.ndarray
    kappa_exact : float or None
        σ_max(J) by SVD (``dense`` only).
    diag_op : numpy.ndarray, shape (M,)
        ‖[J]_kk‖_op (exact for dense; power-iteration lower bound for sketch).
    rayleigh : numpy.ndarray, shape (M,)
        κ_{k,t}^diag = ⟨v_k, [J]_kk v_k⟩ (eq. 32), NaN if no directions were given.
    block_op : numpy.ndarray, shape (M, M) or None
        Exact ‖[J]_kj‖_op (``dense`` only).
    block_op_lo : numpy.ndarray, shape (M, M)
        Certified lower bounds of ‖[J]_kj‖_op (equal to ``block_op`` for dense).
    block_fro : numpy.ndarray, shape (M, M)
        ‖[J]_kj‖_F (exact for dense; unbiased-in-square randomised estimate for sketch).
    n_jvp, n_vjp : int
        Network products spent (the dense Jacobian counts n JVPs).
    seconds : float
        Wall time of the measurement.
    """

    t: int
    t_prev: int
    expand: float
    b: float
    method: str
    kappa: float
    kappa_history: np.ndarray
    kappa_exact: float | None
    diag_op: np.ndarray
    rayleigh: np.ndarray
    block_op: np.ndarray | None
    block_op_lo: np.ndarray
    block_fro: np.ndarray
    n_jvp: int = 0
    n_vjp: int = 0
    seconds: float = 0.0
    u: torch.Tensor | None = field(default=None, repr=False)

    # -- derived (Theorem 9) --------------------------------------------------
    def _off(self, N):
        N = np.array(N, dtype=np.float64, copy=True)
        np.fill_diagonal(N, 0.0)
        return N.sum(axis=1)

    @property
    def C(self) -> np.ndarray:
        """C_{k,t} = Σ_{j≠k} ‖[J]_kj‖_op (eq. 16): exact (dense) or the certified lower bound (sketch)."""
        return self._off(self.block_op if self.block_op is not None else self.block_op_lo)

    @property
    def C_lo(self) -> np.ndarray:
        """Certified lower bound of C_{k,t}, shape (M,)."""
        return self._off(self.block_op_lo)

    @property
    def C_fro(self) -> np.ndarray:
        """Σ_{j≠k} ‖[J]_kj‖_F ≥ C_{k,t} (an upper bound; estimated for sketch), shape (M,)."""
        return self._off(self.block_fro)

    @property
    def kappa_diag(self) -> float:
        """κ̂_t^diag = max_k ‖[J]_kk‖_op (eq. 18 at this x)."""
        return float(np.max(self.diag_op))

    @property
    def delta_cross(self) -> float:
        """δ̂_t^cross = max_k C_{k,t} (eq. 18 at this x; lower bound for sketch)."""
        return float(np.max(self.C))

    @property
    def delta_cross_fro(self) -> float:
        """max_k Σ_{j≠k}‖[J]_kj‖_F, the Frobenius upper side of δ̂_t^cross."""
        return float(np.max(self.C_fro))


def _rayleigh_from(JV, V, idx):
    # JV, V: (M, n) with V[k] supported on patch k
    M = idx.shape[0]
    rows = torch.arange(M)[:, None]
    return (JV[rows, idx] * V[rows, idx]).sum(1)


def measure_step(f, x, patch_idx, directions=None, *, method: str = "sketch", k_pi: int = 20,
                 k_diag: int = 2, n_probes: int = 2, u0=None, seed: int = 0, chunk=None) -> StepMeasurement:
    """Measure the global and block structure of J = J_x f at one point (Theorem 9, eq. 32).

    Parameters
    ----------
    f : callable
        The single-sample DDIM step (:func:`pifs.ddim.step_fn`; attributes ``expand``, ``b``,
        ``t``, ``t_prev`` are recorded when present), output shape = input shape.
    x : torch.Tensor, shape (C, H, W) or (n,)
        The trajectory point x_t (pixel scale [−1, 1]).
    patch_idx : array_like of int, shape (M, n_k)
        :func:`pifs.patches.patch_indices`.
    directions : array_like, shape (M, n_k), optional
        Unit leading eigenvectors v_k^(1) of the patch covariances
        (:func:`pifs.patches.patch_top_eigenvalues`), in ``patch_idx`` order. They give the
        Rayleigh quotients of eq. (32) and start the diagonal power iterations; without them
        the starts are Gaussian and ``rayleigh`` is NaN.
    method : {"sketch", "dense"}
        See the module docstring.
    k_pi : int, >= 1
        Power-iteration steps for the global norm (the paper's K_PI). For ``dense`` the
        iteration runs on the matrix (to compare with the SVD).
    k_diag : int, >= 1
        Power-iteration steps per diagonal block (``sketch``).
    n_probes : int, >= 0
        Gaussian probes per block column (``sketch``); 0 skips them (``block_fro`` is then NaN).
    u0 : torch.Tensor, optional
        Warm start of the global power iteration.
    seed : int
        Seeds the probes and the default start vector.
    chunk : int, optional
        Columns per vectorised JVP for ``dense``.

    Returns
    -------
    StepMeasurement

    Raises
    ------
    ValueError
        For an unknown ``method``, a bad partition or directions, or iteration counts < 1.
    TypeError
        If ``f`` is not callable or ``x`` not a floating tensor.
    """
    from pifs.jacobian import block_norms, dense_jacobian

    if not callable(f):
        raise TypeError(f"f: expected a callable single-sample map, got {type(f).__name__}")
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
        raise TypeError(f"x: expected a floating torch.Tensor, got {type(x).__name__}")
    if method not in ("sketch", "dense"):
        raise ValueError(f"method: expected 'sketch' or 'dense', got {method!r}")
    for name, val, lo in (("k_pi", k_pi, 1), ("k_diag", k_diag, 1), ("n_probes", n_probes, 0)):
        if int(val) != val or val < lo:
            raise ValueError(f"{name}: expected an integer >= {lo}, got {val!r}")
    t0 = time.perf_counter()
    g, xf = _flat_map(f, x)
    n = xf.numel()
    idx = _check_idx(patch_idx, n)
    M, nk = idx.shape
    dev = xf.device
    idx = idx.to(dev)
    rows = torch.arange(M, device=dev)[:, None]
    dt = xf.dtype
    V = None
    if directions is not None:
        d = torch.as_tensor(np.asarray(directions), dtype=dt, device=dev) if not isinstance(directions, torch.Tensor) \
            else directions.to(device=dev, dtype=dt)
        if tuple(d.shape) != (M, nk):
            raise ValueError(f"directions: expected shape ({M}, {nk}), got {tuple(d.shape)}")
        nd = d.norm(dim=1)
        if not bool((nd > 0).all()):
            raise ValueError("directions: every v_k must be non-zero")
        V = torch.zeros(M, n, dtype=dt, device=dev)
        V[rows, idx] = d / nd[:, None]
    expand = float(getattr(f, "expand", float("nan")))
    b = float(getattr(f, "b", float("nan")))
    t = int(getattr(f, "t", -1))
    t_prev = int(getattr(f, "t_prev", -1))

    if method == "dense":
        J = dense_jacobian(f, x, chunk=chunk).detach()
        Jd = J.double()
        kappa_exact = float(torch.linalg.matrix_norm(Jd, ord=2))
        Nop = block_norms(Jd, idx.cpu().numpy(), "op").cpu().numpy()
        Nfro = block_norms(Jd, idx.cpu().numpy(), "fro").cpu().numpy()
        # power iteration on the matrix, same recursion as the matrix-free one
        lin = lambda z: (Jd @ z.reshape(-1).double()).to(dt).reshape(z.shape)  # noqa: E731
        kap, hist, u = power_iteration(lin, xf, k_pi, u0=u0, seed=seed)
        ray = np.full(M, np.nan)
        if V is not None:
            ray = _rayleigh_from((Jd @ V.double().T).T, V.double(), idx).cpu().numpy()
        return StepMeasurement(t, t_prev, expand, b, "dense", kap, hist, kappa_exact, np.diagonal(Nop).copy(),
                               ray, Nop, Nop.copy(), Nfro, n_jvp=n, n_vjp=0,
                               seconds=time.perf_counter() - t0, u=u)

    # ---- sketch -----------------------------------------------------------------
    kap, hist, u = power_iteration(f, x, k_pi, u0=u0, seed=seed)
    n_jvp, n_vjp = k_pi, k_pi
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    _, vjp_fn = _vjp(g, xf)
    jv = vmap(lambda z: _jvp(g, (xf,), (z,))[1])
    vj = vmap(lambda w: vjp_fn(w)[0])
    lo = torch.zeros(M, M, dtype=torch.float64, device=dev)  # lower bounds of ‖[J]_kj‖_op, (out k, in j)

    # diagonal blocks: power iteration per patch, all patches in one vectorised pass
    if V is not None:
        U = V.clone()
    else:
        U = torch.zeros(M, n, dtype=dt, device=dev)
        U[rows, idx] = torch.randn(M, nk, generator=gen, dtype=torch.float64).to(device=dev, dtype=dt)
        U[rows, idx] = U[rows, idx] / U[rows, idx].norm(dim=1, keepdim=True)
    ray = np.full(M, np.nan)
    diag = torch.zeros(M, dtype=torch.float64, device=dev)
    for it in range(int(k_diag)):
        JU = jv(U).detach()  # row k: J u_k, u_k supported on patch k
        n_jvp += M
        if it == 0 and V is not None:
            ray = _rayleigh_from(JU, V, idx).double().cpu().numpy()
        un = U[rows, idx].norm(dim=1).double()  # (M,) = 1
        # column k of the block matrix: ‖[J]_jk u_k‖ for every output patch j
        outn = JU[:, idx].norm(dim=-1).double()  # (M in-patch k, M out-patch j)
        lo = torch.maximum(lo, (outn / un[:, None]).T)
        W = torch.zeros_like(U)
        W[rows, idx] = JU[rows, idx]  # w_k = [J]_kk u_k on patch k
        Z = vj(W).detach()  # row k: Jᵀ w_k; restricted to patch j: [J]_kjᵀ w_k
        n_vjp += M
        wn = W[rows, idx].norm(dim=1).double()
        backn = Z[:, idx].norm(dim=-1).double()  # (out-patch k, in-patch j)
        ok = wn > 0
        lo = torch.maximum(lo, torch.where(ok[:, None], backn / torch.where(ok, wn, 1.0)[:, None], 0.0))
        z = Z[rows, idx]
        zn = z.norm(dim=1)
        diag = torch.where(ok, zn.double() / torch.where(ok, wn, 1.0), diag)
        U = torch.zeros_like(U)
        U[rows, idx] = torch.where((zn > 0)[:, None], z / torch.where(zn > 0, zn, 1.0)[:, None], 0.0)
    fro = torch.full((M, M), float("nan"), dtype=torch.float64, device=dev)
    if n_probes > 0:
        P = M * int(n_probes)
        src = torch.arange(M, device=dev).repeat_interleave(int(n_probes))  # probe p lives on patch src[p]
        om = torch.randn(P, nk, generator=gen, dtype=torch.float64).to(device=dev, dtype=dt)
        Om = torch.zeros(P, n, dtype=dt, device=dev)
        Om[torch.arange(P, device=dev)[:, None], idx[src]] = om
        Y = jv(Om).detach()
        n_jvp += P
        yn2 = (Y[:, idx] ** 2).sum(-1).double()  # (P, M out-patch)
        on = om.norm(dim=1).double()
        for j in range(M):
            sel = src == j
            fro[:, j] = yn2[sel].mean(0).sqrt()
            lo[:, j] = torch.maximum(lo[:, j], (yn2[sel].sqrt() / on[sel][:, None]).max(0).values)
    diag_np = diag.cpu().numpy()
    lo_np = lo.cpu().numpy()
    np.fill_diagonal(lo_np, np.maximum(np.diagonal(lo_np), diag_np))
    diag_np = np.diagonal(lo_np).copy()  # the best certified lower bound of ‖[J]_kk‖_op
    return StepMeasurement(t, t_prev, expand, b, "sketch", kap, hist, None, diag_np, ray, None, lo_np,
                           fro.cpu().numpy(), n_jvp=n_jvp, n_vjp=n_vjp, seconds=time.perf_counter() - t0, u=u)


# ----------------------------------------------------------------------------- trajectories
class JacobianStudy:
    """Trajectories of a 50-step DDIM sampler and cached Jacobian measurements on them.

    One sweep per seed walks the chain from x_T: at every step it estimates the global
    norm ‖J_{x_t} Φ_t‖_op by power iteration warm-started from the previous step's vector
    (``k_chain`` iterations; these give ŝ = ∏_t κ̂_t), and at the requested timesteps it runs
    the full :func:`measure_step` (``k_pi`` global iterations, warm-started likewise).
    Each (seed, t) is measured once; the tables read the cache.

    Parameters
    ----------
    model : score model
        ``model(x, t)`` with ``model.alpha_bar`` (e.g. :class:`pifs.scores.DiffusersScore`).
    chain : array_like of int
        Increasing training indices of the sampler (:func:`pifs.schedules.ddim_timesteps`).
    measure_t : iterable of int
        Training indices (members of ``chain``) where the block structure is measured.
    seeds : iterable of int
        x_T = N(0, I) drawn from ``torch.Generator().manual_seed(seed)``.
    patch_idx : array_like (M, n_k)
    directions : array_like (M, n_k), optional
        v_k^(1) (see :func:`measure_step`).
    shape : tuple (C, H, W)
    method : {"sketch", "dense"}
    k_pi, k_diag, n_probes : int
        See :func:`measure_step`.
    k_chain : int, >= 0
        Warm-started power-iteration steps at the chain steps that are not measured;
        0 skips them (no ŝ).
    log : callable, optional
        ``log(str)`` for progress lines (default: silent).

    Raises
    ------
    ValueError
        If a ``measure_t`` is not in ``chain`` or a count is invalid.
    """

    def __init__(self, model, chain, measure_t, seeds, patch_idx, directions=None, *, shape=(3, 32, 32),
                 method="sketch", k_pi=20, k_diag=2, n_probes=2, k_chain=2, log=None):
        self.model = model
        self.chain = np.asarray(chain, dtype=np.int64)
        if self.chain.ndim != 1 or (np.diff(self.chain) <= 0).any():
            raise ValueError("chain: expected strictly increasing training indices")
        self.measure_t = sorted({int(t) for t in measure_t}, reverse=True)
        missing = [t for t in self.measure_t if t not in set(self.chain.tolist())]
        if missing:
            raise ValueError(f"measure_t: not steps of the chain: {missing}")
        self.seeds = [int(s) for s in seeds]
        if not self.seeds:
            raise ValueError("seeds: expected at least one seed")
        if int(k_chain) != k_chain or k_chain < 0:
            raise ValueError(f"k_chain: expected an integer >= 0, got {k_chain!r}")
        self.patch_idx, self.directions, self.shape = np.asarray(patch_idx), directions, tuple(shape)
        self.method, self.k_pi, self.k_diag, self.n_probes, self.k_chain = method, k_pi, k_diag, n_probes, k_chain
        self.log = log or (lambda s: None)
        self.trajectories: dict[int, torch.Tensor] = {}
        self.chain_kappa: dict[int, dict[int, float]] = {}
        self.measurements: dict[tuple[int, int], StepMeasurement] = {}
        self.seconds = 0.0

    def x_T(self, seed: int) -> torch.Tensor:
        """The start noise of ``seed``, shape ``shape``, float32."""
        g = torch.Generator().manual_seed(int(seed))
        return torch.randn((1, *self.shape), generator=g)

    def trajectory(self, seed: int) -> torch.Tensor:
        """[x_{t_N}, ..., x_{t_1}, x_0] of ``seed`` (shape (N+1, C, H, W)), cached.

        x_T is :meth:`x_T` (``torch.Generator().manual_seed(seed)`` on the CPU, the same noise
        as trajectory ``seed`` of :func:`pifs.experiments.trajectories` with base seed 0),
        moved to the model's device; the chain is :func:`pifs.ddim.ddim_chain`.
        """
        from pifs.ddim import ddim_chain

        if seed not in self.trajectories:
            dev = next((p.device for p in self.model.parameters()), torch.device("cpu")) \
                if isinstance(self.model, torch.nn.Module) else torch.device("cpu")
            with torch.no_grad():
                _, tr = ddim_chain(self.model, self.x_T(seed).to(dev), self.chain, return_trajectory=True)
            self.trajectories[seed] = tr[:, 0]
        return self.trajectories[seed]

    def point(self, seed: int, t: int) -> torch.Tensor:
        """The trajectory point x_t (input of the step at training index t)."""
        pos = int(np.nonzero(self.chain[::-1] == t)[0][0])
        return self.trajectory(seed)[pos]

    def t_prev(self, t: int) -> int:
        """The next (smaller) index of the chain after t (0 after the first index)."""
        i = int(np.nonzero(self.chain == t)[0][0])
        return int(self.chain[i - 1]) if i > 0 else 0

    def run(self):
        """Sweep every seed (cached: a second call does nothing). Returns self."""
        from pifs.ddim import step_fn

        t0 = time.perf_counter()
        todo = set(self.measure_t)
        for seed in self.seeds:
            if seed in self.chain_kappa and all((seed, t) in self.measurements for t in todo):
                continue
            ts0 = time.perf_counter()
            self.trajectory(seed)
            u = None
            kap = {}
            for t in self.chain[::-1]:
                t = int(t)
                if t not in todo and self.k_chain == 0:
                    continue
                f = step_fn(self.model, t, self.t_prev(t))
                x = self.point(seed, t)
                if t in todo:
                    m = measure_step(f, x, self.patch_idx, self.directions, method=self.method, k_pi=self.k_pi,
                                     k_diag=self.k_diag, n_probes=self.n_probes, u0=u, seed=seed * 1000 + t)
                    self.measurements[(seed, t)] = m
                    kap[t], u = m.kappa, m.u
                else:
                    kap[t], _, u = power_iteration(f, x, self.k_chain, u0=u, seed=seed * 1000 + t)
            self.chain_kappa[seed] = kap
            self.log(f"seed {seed}: {len(kap)} steps, {sum(1 for k in self.measurements if k[0] == seed)} measured, "
                     f"{time.perf_counter() - ts0:.1f} s")
        self.seconds += time.perf_counter() - t0
        return self

    def s_hat(self, seed: int) -> float:
        """ŝ = ∏ over all chain steps of κ̂_t for ``seed`` (NaN unless ``k_chain`` > 0)."""
        kap = self.chain_kappa.get(seed, {})
        if len(kap) != len(self.chain):
            return float("nan")
        return float(np.exp(np.sum(np.log(list(kap.values())))))

    def get(self, seed: int, t: int) -> StepMeasurement:
        """The cached measurement at (seed, t) (runs the sweep if needed)."""
        if (seed, t) not in self.measurements:
            self.run()
        return self.measurements[(seed, t)]

    def frame(self):
        """One row per (seed, t): the scalar quantities of every table, as a pandas DataFrame."""
        import pandas as pd

        rows = []
        for (seed, t), m in sorted(self.measurements.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
            rows.append(dict(seed=seed, t=t, tau=t - 1, kappa=m.kappa, kappa_exact=m.kappa_exact,
                             kappa_diag=m.kappa_diag, delta_cross=m.delta_cross, delta_cross_fro=m.delta_cross_fro,
                             kappa_pc=m.kappa_diag + m.delta_cross, b=m.b, seconds=m.seconds,
                             n_jvp=m.n_jvp, n_vjp=m.n_vjp))
        return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- tables
def coupling_by_distance(block_fro, distances, ds=(1, 2, 3)):
    """Mean and std of C̄_kj = ½(‖[J]_kj‖_F + ‖[J]_jk‖_F) by Chebyshev distance (Table 7).

    Parameters
    ----------
    block_fro : array_like, shape (S, M, M) or (M, M)
        Block Frobenius norms, one matrix per (timestep, trajectory) sample.
    distances : array_like of int, shape (M, M)
        :func:`chebyshev_distances`.
    ds : iterable of int
        Distances to report.

    Returns
    -------
    dict
        ``{d: (mean, std, count)}`` over all samples and unordered pairs k < j at distance d
        (std with ddof = 0).

    Raises
    ------
    ValueError
        For mismatched shapes.
    """
    N = np.asarray(block_fro, dtype=np.float64)
    if N.ndim == 2:
        N = N[None]
    D = np.asarray(distances)
    if N.ndim != 3 or N.shape[1:] != D.shape or D.shape[0] != D.shape[1]:
        raise ValueError(f"block_fro: expected (S, M, M) matching distances {D.shape}, got {N.shape}")
    Cbar = 0.5 * (N + np.transpose(N, (0, 2, 1)))
    iu = np.triu_indices(D.shape[0], k=1)
    out = {}
    for d in ds:
        sel = D[iu] == d
        vals = Cbar[:, iu[0][sel], iu[1][sel]].reshape(-1)
        out[int(d)] = (float(vals.mean()) if vals.size else float("nan"),
                       float(vals.std()) if vals.size else float("nan"), int(vals.size))
    return out


def pc_slack(diag_op, C):
    """Per-patch (PC) margin slack δ_k^loc = (1 − ‖[J]_kk‖_op) − C_k (§7.5, Table 8; eq. 17).

    Positive slack means patch k satisfies condition (17) at this point. With a lower
    bound of ‖[J]_kk‖_op and a lower bound of C_k (``sketch``) the result is a certified
    *upper* bound of the slack: a negative value certifies a violation.

    Parameters
    ----------
    diag_op, C : array_like, same shape (..., M)

    Returns
    -------
    numpy.ndarray, float64, shape of the inputs

    Raises
    ------
    ValueError
        For mismatched shapes.
    """
    a, c = np.asarray(diag_op, dtype=np.float64), np.asarray(C, dtype=np.float64)
    if a.shape != c.shape:
        raise ValueError(f"C: expected the shape of diag_op {a.shape}, got {c.shape}")
    return (1.0 - a) - c


def spearman_exact_permutation(x, y, alternative: str = "two-sided"):
    """Spearman ρ and its exact permutation p-value (all n! orderings; n ≤ 10).

    p = #{π : |ρ(x, y_π)| ≥ |ρ_obs|} / n! (two-sided), or one-sided with ≥ / ≤. For a
    perfect ranking without ties the two-sided value is 2/n! (the paper's Table 6 quotes
    p ≈ 0.00025 for n = 8, against 2/8! = 4.96e-5).

    Parameters
    ----------
    x, y : array_like, shape (n,), 3 ≤ n ≤ 10
    alternative : {"two-sided", "greater", "less"}

    Returns
    -------
    (float, float)
        ρ (scipy.stats.spearmanr, average ranks for ties) and the exact p-value.

    Raises
    ------
    ValueError
        For mismatched or too short/long inputs or an unknown ``alternative``.
    """
    from scipy.stats import rankdata

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or not 3 <= x.size <= 10:
        raise ValueError(f"x, y: expected equal 1-D arrays of length 3..10, got {x.shape}, {y.shape}")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative: expected 'two-sided', 'greater' or 'less', got {alternative!r}")
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt((rx ** 2).sum() * (ry ** 2).sum())
    if den == 0:
        return float("nan"), float("nan")
    rho = float((rx * ry).sum() / den)
    perms = np.array(list(itertools.permutations(range(x.size))), dtype=np.int64)
    rhos = (ry[perms] * rx[None, :]).sum(1) / den
    eps = 1e-12
    if alternative == "two-sided":
        hits = np.abs(rhos) >= abs(rho) - eps
    elif alternative == "greater":
        hits = rhos >= rho - eps
    else:
        hits = rhos <= rho + eps
    return rho, float(hits.mean())


def attention_entropies(unet, model, x, t):
    """Mean row entropy of every attention module of ``unet`` at one batch (Table 6's H(A_t)).

    Parameters
    ----------
    unet : diffusers.UNet2DModel
        The network inside ``model``.
    model : callable
        ``model(x, t)`` (e.g. :class:`pifs.scores.DiffusersScore` wrapping ``unet``).
    x : torch.Tensor, (B, C, H, W)
        Trajectory points at training index t.
    t : int, 1..T

    Returns
    -------
    dict[str, (float, int)]
        Module name → (mean row entropy in nats over batch, heads and query rows; key
        length L_k, so log L_k is the maximum).

    Raises
    ------
    ValueError
        If ``unet`` has no attention module (:func:`pifs.models.capture_attention`).

    Notes
    -----
    Source: the paper's Table 6 (§7.4) and Theorem 23; the paper does not say which layer,
    so every module is returned and the notebook states which it averages.
    """
    from pifs.models import attention_entropy, capture_attention

    with torch.no_grad(), capture_attention(unet) as rec:
        model(x, int(t))
    out = {}
    for name, p in rec.last().items():
        out[name] = (attention_entropy(p), int(p.shape[-1]))
    return out


# ----------------------------------------------------------------------------- exact beside the paper's estimators
def exact_norm(J, symmetric=None, *, maxiter=None) -> float:
    """‖J‖_op to round-off, by Lanczos (ARPACK, tol = 0) on a dense matrix or a LinearOperator.

    A dense J gets a bounded Lanczos run (``maxiter``, default 20 restarts); when it has not
    converged to round-off by then (clustered spectra, e.g. high noise), the norm is taken from a
    dense symmetric eigen-solver instead: max |λ(J)| for a symmetric J, √λ_max(JᵀJ) otherwise
    (both exact to float64 round-off; O(n³), ≈ 2 s at n = 3072 on one core). An operator gets
    ARPACK with its default iteration limit (``maxiter`` None) and no fallback.

    Parameters
    ----------
    J : torch.Tensor or numpy.ndarray of shape (m, n), or scipy.sparse.linalg.LinearOperator
    symmetric : bool, optional
        Use the symmetric eigen-solver (``eigsh``, largest |eigenvalue|); default: test a dense
        J for symmetry, False for an operator.
    maxiter : int, optional
        ARPACK's iteration limit (dense default 20, then the dense fallback).

    Returns
    -------
    float
        σ_max(J) (exact up to float64 round-off; not an estimate).

    Raises
    ------
    ValueError
        If J is not 2-D.
    """
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh, svds

    dense = not isinstance(J, LinearOperator)
    if dense:
        J = J.detach().cpu().double().numpy() if isinstance(J, torch.Tensor) else np.asarray(J, np.float64)
        if J.ndim != 2:
            raise ValueError(f"J: expected a matrix, got shape {J.shape}")
        if min(J.shape) <= 32:
            return float(np.linalg.norm(J, 2))
        if symmetric is None:
            symmetric = J.shape[0] == J.shape[1] and np.allclose(J, J.T, rtol=0, atol=1e-13 * np.abs(J).max())
        maxiter = 20 if maxiter is None else maxiter
    v0 = np.random.default_rng(0).standard_normal(J.shape[1])
    try:
        if symmetric:
            return float(np.abs(eigsh(J, k=1, which="LM", tol=0, v0=v0, maxiter=maxiter,
                                      return_eigenvectors=False)).max())
        return float(svds(J, k=1, tol=0, v0=v0 if J.shape[0] >= J.shape[1] else None, maxiter=maxiter,
                          return_singular_vectors=False)[0])
    except ArpackNoConvergence:
        if not dense:
            raise
    Jt = torch.from_numpy(J)
    if symmetric:
        return float(torch.linalg.eigvalsh(0.5 * (Jt + Jt.T)).abs().max())
    G = Jt.T @ Jt if J.shape[0] >= J.shape[1] else Jt @ Jt.T
    return float(np.sqrt(max(float(torch.linalg.eigvalsh(0.5 * (G + G.T))[-1]), 0.0)))


def matrix_power_iteration(J, iters: int, seed: int = 0) -> np.ndarray:
    """The paper's cold-started PowerIter(J, K_PI) on an explicit matrix or operator: σ_1..σ_K (§7.1).

    u_0 ~ N(0, I) from ``torch.Generator().manual_seed(seed)`` (the start of
    :func:`pifs.jacobian.spectral_norm`), w = J u, z = Jᵀ w, σ = ‖z‖/‖w‖, u ← z/‖z‖; every σ_k
    is ≤ ‖J‖_op, so exact − σ_K ≥ 0 is the estimator's bias.

    Parameters
    ----------
    J : array_like (m, n) or scipy.sparse.linalg.LinearOperator
    iters : int, ≥ 1
    seed : int

    Returns
    -------
    numpy.ndarray, float64, shape (iters,)

    Raises
    ------
    ValueError
        If ``iters`` < 1.
    """
    if isinstance(iters, bool) or int(iters) != iters or iters < 1:
        raise ValueError(f"iters: expected a positive integer, got {iters!r}")
    if isinstance(J, torch.Tensor):
        J = J.detach().cpu().double().numpy()
    n = J.shape[1]
    u = torch.randn(n, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64).numpy()
    u /= np.linalg.norm(u)
    hist = []
    for _ in range(int(iters)):
        w = J @ u
        z = J.T @ w if not hasattr(J, "rmatvec") else J.rmatvec(w)
        nw, nz = np.linalg.norm(w), np.linalg.norm(z)
        if not (nw > 0 and nz > 0):
            hist.append(0.0)
            break
        hist.append(nz / nw)
        u = z / nz
    return np.asarray(hist + [hist[-1]] * (int(iters) - len(hist)))


def block_power_iteration(blocks, iters: int, seed: int = 0) -> torch.Tensor:
    """Cold-started power iteration on a batch of matrices at once (per-block K_PI of Tables 5 and 8).

    Parameters
    ----------
    blocks : torch.Tensor, shape (..., p, q)
        E.g. the (M, M, n_k, n_k) blocks [J]_kj of a dense J.
    iters : int, ≥ 1
        K_PI (10 in Table 5, 30 in Table 8).
    seed : int
        Seed of the Gaussian starts (one per block).

    Returns
    -------
    torch.Tensor, shape (...), float64: σ_K per block (each ≤ the block's operator norm).

    Raises
    ------
    ValueError
        If ``blocks`` has fewer than 2 dims or ``iters`` < 1.
    """
    B = torch.as_tensor(blocks).double()
    if B.ndim < 2:
        raise ValueError(f"blocks: expected shape (..., p, q), got {tuple(B.shape)}")
    if isinstance(iters, bool) or int(iters) != iters or iters < 1:
        raise ValueError(f"iters: expected a positive integer, got {iters!r}")
    u = torch.randn(*B.shape[:-2], B.shape[-1], generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
    u = u / u.norm(dim=-1, keepdim=True)
    sig = torch.zeros(B.shape[:-2], dtype=torch.float64)
    for _ in range(int(iters)):
        w = (B @ u[..., None])[..., 0]
        z = (B.transpose(-1, -2) @ w[..., None])[..., 0]
        nw, nz = w.norm(dim=-1), z.norm(dim=-1)
        ok = (nw > 0) & (nz > 0)
        sig = torch.where(ok, nz / torch.where(ok, nw, 1.0), torch.zeros_like(nw))
        u = torch.where(ok[..., None], z / torch.where(ok, nz, 1.0)[..., None], u)
    return sig


def diag_block_measurement(D, directions=None, *, k_block: int = 10, seed: int = 0) -> dict:
    """Table 9's quantities from the diagonal blocks alone: ‖[J]_kk‖_op, per-block PowerIter, Rayleigh.

    The diagonal part of :func:`dense_step_measurement` (same estimator starts), for when the
    blocks come without the dense J (:func:`pifs.reference_models.step_diag_blocks`).

    Parameters
    ----------
    D : array_like, shape (M, n_k, n_k)
        [J]_kk in the patch order of ``directions``.
    directions : array_like, shape (M, n_k), optional
        v_k^(1) (normalised here) for the Rayleigh quotients ⟨v_k, [J]_kk v_k⟩ (eq. 32).
    k_block : int ≥ 1
        K_PI of the per-block power iteration (10 in Table 5).
    seed : int

    Returns
    -------
    dict
        ``diag_op`` (M,) exact (SVD), ``diag_pi`` (M,) σ_K, ``rayleigh`` (M,) (NaN without directions).

    Raises
    ------
    ValueError
        If D is not (M, n_k, n_k) or ``directions`` has another shape.
    """
    D = torch.as_tensor(np.asarray(D) if not isinstance(D, torch.Tensor) else D).detach().cpu().double()
    if D.ndim != 3 or D.shape[1] != D.shape[2]:
        raise ValueError(f"D: expected shape (M, n_k, n_k), got {tuple(D.shape)}")
    out = {"diag_op": torch.linalg.matrix_norm(D, ord=2).numpy(),
           "diag_pi": block_power_iteration(D, k_block, seed).numpy()}
    if directions is not None:
        V = torch.as_tensor(np.asarray(directions), dtype=torch.float64)
        if tuple(V.shape) != tuple(D.shape[:2]):
            raise ValueError(f"directions: expected shape {tuple(D.shape[:2])}, got {tuple(V.shape)}")
        V = V / V.norm(dim=1, keepdim=True)
        out["rayleigh"] = torch.einsum("ki,kij,kj->k", V, D, V).numpy()
    else:
        out["rayleigh"] = np.full(D.shape[0], np.nan)
    return out


def dense_step_measurement(J, patch_idx, directions=None, *, blocks: bool = True, k_pi: int = 20, k_block: int = 10,
                           k_slack: int = 30, seed: int = 0, kappa_exact=None) -> dict:
    """Every §7.4–7.5 quantity of one dense DDIM-step Jacobian, exact and by the paper's estimators.

    Exact: κ_t = ‖J‖_op (Table 4), ‖[J]_kk‖_op and all ‖[J]_kj‖_op by SVD, C_k (eq. 16),
    κ_diag, δ_cross, κ^pc (eqs. 18–19; Table 5), ‖[J]_kj‖_F (Table 7), the (PC) slack
    (1 − ‖[J]_kk‖_op) − C_k (Table 8) and the Rayleigh quotients ⟨v_k, [J]_kk v_k⟩ (eq. 32).
    Estimators of the paper, all cold-started: PowerIter(J, ``k_pi`` = 20) for κ̂_t (§7.1),
    per-block PowerIter with ``k_block`` = 10 (Table 5) and ``k_slack`` = 30 (Table 8).

    Parameters
    ----------
    J : torch.Tensor or numpy.ndarray, shape (n, n)
        J_x Φ of one step (:func:`pifs.reference_models.ddim_step_jacobian`, or
        :func:`pifs.jacobian.dense_jacobian` of :func:`pifs.ddim.step_fn`).
    patch_idx : array_like of int, shape (M, n_k)
        :func:`pifs.patches.patch_indices`.
    directions : array_like, shape (M, n_k), optional
        Unit v_k^(1) (patch order of ``patch_idx``) for the Rayleigh quotients.
    blocks : bool
        Also the off-diagonal blocks (M² SVDs); False gives only the diagonal ones (Table 9) and
        the global norms.
    k_pi, k_block, k_slack : int ≥ 1
    seed : int
    kappa_exact : float, optional
        A known exact norm (e.g. by :func:`exact_norm` on an operator); computed otherwise.

    Returns
    -------
    dict
        ``kappa_exact``, ``kappa_pi`` (σ_K of K = k_pi), ``kappa_pi_bias`` (exact − estimate, ≥ 0);
        ``diag_op`` (M,), ``diag_pi`` (M,, K = k_block), ``rayleigh`` (M,, NaN without directions);
        with ``blocks``: ``block_op``, ``block_fro``, ``block_pi`` (K = k_block), ``block_pi_slack``
        (K = k_slack), all (M, M), and ``C``, ``C_pi`` (M,), ``kappa_diag``, ``delta_cross``,
        ``kappa_pc``, ``kappa_diag_pi``, ``delta_cross_pi``, ``slack`` (M,, exact), ``slack_pi`` (M,,
        K = k_slack).

    Raises
    ------
    ValueError
        For a non-square J or a bad partition.
    """
    Jt = torch.as_tensor(J).detach().cpu().double()
    if Jt.ndim != 2 or Jt.shape[0] != Jt.shape[1]:
        raise ValueError(f"J: expected a square matrix (n, n), got shape {tuple(Jt.shape)}")
    idx = _check_idx(patch_idx, Jt.shape[0])
    M = idx.shape[0]
    out = {}
    out["kappa_exact"] = float(exact_norm(Jt) if kappa_exact is None else kappa_exact)
    out["kappa_pi"] = float(matrix_power_iteration(Jt.numpy(), k_pi, seed)[-1])
    out["kappa_pi_bias"] = out["kappa_exact"] - out["kappa_pi"]
    D = Jt[idx[:, :, None], idx[:, None, :]]  # (M, nk, nk) diagonal blocks
    out.update(diag_block_measurement(D, directions, k_block=k_block, seed=seed))
    if blocks:
        Bk = Jt[idx[:, None, :, None], idx[None, :, None, :]]  # (M, M, nk, nk)
        fro = torch.linalg.matrix_norm(Bk, ord="fro")
        nz = fro > 0
        op = torch.zeros_like(fro)
        op[nz] = torch.linalg.matrix_norm(Bk[nz], ord=2)
        pi = torch.zeros_like(fro)
        pi[nz] = block_power_iteration(Bk[nz], k_block, seed)
        pis = torch.zeros_like(fro)
        pis[nz] = block_power_iteration(Bk[nz], k_slack, seed)
        off = lambda N: (N.sum(1) - torch.diagonal(N)).numpy()  # noqa: E731
        out.update(block_op=op.numpy(), block_fro=fro.numpy(), block_pi=pi.numpy(), block_pi_slack=pis.numpy())
        out["C"], out["C_pi"] = off(op), off(pi)
        out["kappa_diag"], out["delta_cross"] = float(out["diag_op"].max()), float(out["C"].max())
        out["kappa_pc"] = out["kappa_diag"] + out["delta_cross"]
        out["kappa_diag_pi"], out["delta_cross_pi"] = float(torch.diagonal(pi).max()), float(out["C_pi"].max())
        out["slack"] = pc_slack(out["diag_op"], out["C"])
        out["slack_pi"] = pc_slack(torch.diagonal(pis).numpy(), off(pis))
    return out


def slack_at_strides(J_score, alpha_bar, t, t_prevs, patch_idx, *, k_slack: int = 30, seed: int = 0) -> dict:
    """(PC) slack of Table 8 from one score Jacobian at several step strides (e.g. 20 and 1).

    J_x Φ = √(ᾱ_{t'}/ᾱ_t) I + b_{t→t'} J_x ε̂ shares J_x ε̂ across strides (§7.1, "Step-size
    invariance"); the paper states K_PI = 30 on the 50-step chain but its magnitudes may match
    stride 1: both are computed here.

    Parameters
    ----------
    J_score : array_like, (n, n)
        J_x ε̂(x_t, t) (closed form ``model.jacobian`` or dense autograd).
    alpha_bar : array_like, shape (T+1,)
    t : int, 1..T
    t_prevs : iterable of int in 0..t−1
        Targets, e.g. (t − 20, t − 1).
    patch_idx : array_like (M, n_k)
    k_slack : int
    seed : int

    Returns
    -------
    dict
        ``{t_prev: {"slack": (M,) exact, "slack_pi": (M,) K = k_slack, "mean", "min", "frac_violated",
        "mean_pi", "min_pi", "frac_violated_pi"}}``.

    Raises
    ------
    ValueError
        For bad indices or shapes.
    """
    from .ddim import step_coefficients

    Js = torch.as_tensor(J_score).detach().cpu().double()
    eye = torch.eye(Js.shape[0], dtype=torch.float64)
    res = {}
    for tp in t_prevs:
        c, b = step_coefficients(alpha_bar, int(t), int(tp))
        m = dense_step_measurement(c * eye + b * Js, patch_idx, k_slack=k_slack, seed=seed, kappa_exact=float("nan"))
        sl, sp = m["slack"], m["slack_pi"]
        res[int(tp)] = {"slack": sl, "slack_pi": sp, "mean": float(sl.mean()), "min": float(sl.min()),
                        "frac_violated": float((sl < 0).mean()), "mean_pi": float(sp.mean()),
                        "min_pi": float(sp.min()), "frac_violated_pi": float((sp < 0).mean())}
    return res
