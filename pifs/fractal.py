"""Classical fractal image coding (Jacquin's PIFS) and IFS attractors (paper §2.2).

Two halves, both numpy/scipy only:

**PIFS codec** (Jacquin, 1992; Fisher, 1995). A grayscale image ``x`` (float,
grey levels in [0, 255], shape (H, W)) is tiled by non-overlapping r×r *range
blocks* R_k, k = 0..M−1 in row-major order. Each is coded by the affine map of
the paper's §2.2

    w_k(x) = s_k · A_k(DS(D_{j(k)})) + o_k,

with D_j a 2r×2r *domain block* on a stride grid, DS the 2×2-averaging
downsampling, A_k one of the 8 symmetries of the square (:func:`apply_symmetry`),
s_k the luminance contrast and o_k the offset, chosen by least squares to
minimise the block collage error ‖w_k(x) − R_k‖². The PIFS operator

    W(x) = ⊕_k w_k(x)    (block k written into the pixels of R_k)

is affine, W(x) = L x + c, with a sparse linear part L (:func:`operator_matrix`):
each row holds four entries s_k/4.

*Contractivity.* The paper writes s_k ∈ [0, 1). Here the encoder **clamps**
s_k into [0, s_max] (or [−s_max, s_max] with ``allow_negative=True``) with
s_max < 1. That clamp is the codec's contractivity constraint: every row of L
has absolute sum |s_k| ≤ s_max, so W is a contraction with factor max_k |s_k|
in the sup metric ℓ∞ (Theorem 4 then gives a unique attractor x* reached from
every start). In the Euclidean metric ℓ2 it need **not** be: a domain block
read by several range blocks makes a column of L heavy, and ‖L‖₂ can exceed 1
(:func:`operator_lipschitz` computes it exactly by power iteration). The
iteration still converges (the spectral radius of L is ≤ ‖L‖∞ < 1), but the
Collage bound (6) with the ℓ2 Lipschitz constant is then void.

**IFS attractors** (Hutchinson, 1981; Barnsley, 1988): the chaos game
(:func:`ifs_attractor`), the similarity dimension of a self-similar set from the
Moran equation Σ r_i^d = 1 (:func:`moran_dimension`) and a box-counting
estimate (:func:`box_counting_dimension`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "N_SYMMETRIES",
    "apply_symmetry",
    "symmetry_permutations",
    "compose_symmetries",
    "inverse_symmetry",
    "downsample",
    "least_squares_contrast",
    "FractalCode",
    "encode",
    "operator_matrix",
    "collage",
    "decode",
    "fixed_point",
    "OperatorNorms",
    "operator_norm_l2",
    "operator_lipschitz",
    "psnr",
    "sierpinski_maps",
    "ifs_attractor",
    "moran_dimension",
    "box_counting_dimension",
]

#: Order of the dihedral group D4 (rotations and reflections of the square).
N_SYMMETRIES = 8


# ---------------------------------------------------------------------------
# The 8 symmetries of the square
# ---------------------------------------------------------------------------
def _check_symmetry(a):
    if isinstance(a, (bool, np.bool_)) or int(a) != a or not 0 <= int(a) < N_SYMMETRIES:
        raise ValueError(f"a: expected a symmetry index in 0..7, got {a!r}")
    return int(a)


def apply_symmetry(block, a: int) -> np.ndarray:
    """Apply symmetry ``a`` of the dihedral group D4 to a square block.

    Index convention: ``a = 0..3`` rotates counter-clockwise by 90°·a
    (``numpy.rot90(block, a)``); ``a = 4..7`` first reflects left–right
    (``block[:, ::-1]``) and then rotates by 90°·(a − 4).

    Parameters
    ----------
    block : array_like, shape (..., r, r)
        One block or a stack of blocks (symmetry acts on the last two axes).
    a : int in 0..7

    Returns
    -------
    numpy.ndarray, same shape and dtype.

    Raises
    ------
    ValueError
        If ``a`` is not in 0..7 or the last two axes are not square.

    References
    ----------
    The "discrete set of symmetries" A_k of the PIFS maps, paper §2.2 (Jacquin, 1992).
    """
    a = _check_symmetry(a)
    b = np.asarray(block)
    if b.ndim < 2 or b.shape[-1] != b.shape[-2]:
        raise ValueError(f"block: expected shape (..., r, r), got {b.shape}")
    if a >= 4:
        b = b[..., :, ::-1]
    return np.rot90(b, a % 4, axes=(-2, -1)).copy()


def symmetry_permutations(r: int) -> np.ndarray:
    """The 8 symmetries of an r×r block as index permutations.

    ``apply_symmetry(B, a).ravel() == B.ravel()[perms[a]]`` for every r×r block B.

    Parameters
    ----------
    r : int >= 1

    Returns
    -------
    numpy.ndarray, int64, shape (8, r*r)

    Raises
    ------
    ValueError
        If ``r`` is not a positive integer.
    """
    if isinstance(r, bool) or int(r) != r or r < 1:
        raise ValueError(f"r: expected a positive integer block size, got {r!r}")
    r = int(r)
    base = np.arange(r * r).reshape(r, r)
    return np.stack([apply_symmetry(base, a).ravel() for a in range(N_SYMMETRIES)])


def compose_symmetries(a: int, b: int) -> int:
    """The index c with A_c = A_a ∘ A_b (apply b first, then a).

    Parameters
    ----------
    a, b : int in 0..7

    Returns
    -------
    int in 0..7

    Raises
    ------
    ValueError
        For an index outside 0..7.
    """
    a, b = _check_symmetry(a), _check_symmetry(b)
    probe = np.arange(9).reshape(3, 3)  # no symmetry of a 3×3 block with distinct entries is trivial
    target = apply_symmetry(apply_symmetry(probe, b), a)
    for c in range(N_SYMMETRIES):
        if np.array_equal(apply_symmetry(probe, c), target):
            return c
    raise RuntimeError("D4 is not closed under composition (cannot happen)")  # pragma: no cover


def inverse_symmetry(a: int) -> int:
    """The index of A_a^{-1}: ``compose_symmetries(inverse_symmetry(a), a) == 0``.

    Raises
    ------
    ValueError
        For an index outside 0..7.
    """
    a = _check_symmetry(a)
    for c in range(N_SYMMETRIES):
        if compose_symmetries(c, a) == 0:
            return c
    raise RuntimeError("no inverse found (cannot happen)")  # pragma: no cover


# ---------------------------------------------------------------------------
# Block operations
# ---------------------------------------------------------------------------
def downsample(block) -> np.ndarray:
    """The spatial downsampling DS of §2.2: average of each 2×2 pixel group.

    Parameters
    ----------
    block : array_like, shape (..., 2r, 2r)

    Returns
    -------
    numpy.ndarray, float64, shape (..., r, r)

    Raises
    ------
    ValueError
        If the last two axes are not equal and even.
    """
    b = np.asarray(block, dtype=np.float64)
    if b.ndim < 2 or b.shape[-1] != b.shape[-2] or b.shape[-1] % 2:
        raise ValueError(f"block: expected shape (..., 2r, 2r), got {b.shape}")
    r = b.shape[-1] // 2
    return b.reshape(b.shape[:-2] + (r, 2, r, 2)).mean(axis=(-3, -1))


def _s_bounds(s_max, allow_negative):
    if s_max is None:
        return -np.inf, np.inf
    if not (isinstance(s_max, (int, float, np.floating, np.integer)) and not isinstance(s_max, bool)):
        raise TypeError(f"s_max: expected a float in (0, 1), got {type(s_max).__name__}")
    if not 0.0 < float(s_max) < 1.0:
        raise ValueError(f"s_max: expected a contractivity bound in (0, 1), got {s_max!r}")
    return (-float(s_max) if allow_negative else 0.0), float(s_max)


def least_squares_contrast(domain, range_, s_max=None, allow_negative: bool = False):
    """Least-squares contrast s and offset o fitting ``s·domain + o ≈ range_``.

    Minimises ‖s d + o 1 − r‖² over o ∈ ℝ and s ∈ [s_lo, s_hi] with
    [s_lo, s_hi] = [0, s_max] (default, the paper's s_k ∈ [0, 1)) or
    [−s_max, s_max] (``allow_negative``). The unconstrained optimum is
    s = cov(d, r)/var(d), o = mean(r) − s mean(d); since the objective is a
    convex quadratic in s after eliminating o, the constrained optimum is the
    unconstrained s clamped into the interval, with o re-fitted. A flat domain
    (var(d) = 0) gets s = 0 (the clamp interval always contains 0).

    Parameters
    ----------
    domain, range_ : array_like, shape (..., n)
        Flattened (downsampled, transformed) domain blocks and range blocks;
        leading axes broadcast.
    s_max : float in (0, 1) or None
        Contractivity bound; None solves the unconstrained problem.
    allow_negative : bool

    Returns
    -------
    s, o, err : numpy.ndarray, float64, broadcast leading shape
        Contrast, offset and the block collage error ‖s d + o − r‖².

    Raises
    ------
    ValueError
        If ``s_max`` is not in (0, 1), or the last axes differ.

    References
    ----------
    Paper §2.2 (s_k, o_k); Jacquin (1992); Fisher (1995), ch. 3.
    """
    d = np.asarray(domain, dtype=np.float64)
    r = np.asarray(range_, dtype=np.float64)
    if d.shape[-1:] != r.shape[-1:]:
        raise ValueError(f"domain, range_: last axes must match, got {d.shape} and {r.shape}")
    lo, hi = _s_bounds(s_max, allow_negative)
    dm, rm = d.mean(-1), r.mean(-1)
    dc, rc = d - dm[..., None], r - rm[..., None]
    var = (dc * dc).sum(-1)
    cov = (dc * rc).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(var > 0, cov / np.where(var > 0, var, 1.0), 0.0)
    s = np.minimum(np.maximum(s, lo), hi)
    o = rm - s * dm
    err = ((s[..., None] * d + o[..., None] - r) ** 2).sum(-1)
    return s, o, err


# ---------------------------------------------------------------------------
# The code and the operator W
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FractalCode:
    """A PIFS fractal code of a grayscale image (paper §2.2).

    Range block k (row-major, ``k = row·(W/r) + col``) has its top-left pixel at
    ``(r·row, r·col)`` and is coded by w_k(x) = s_k A_{sym_k}(DS(x[D_k])) + o_k,
    D_k the 2r×2r domain block with top-left pixel ``domain_pos[k]``.

    Attributes
    ----------
    shape : (int, int)
        Image shape (H, W); both multiples of ``range_size``.
    range_size : int
        Range block side r.
    domain_stride : int
        Step of the domain-block grid the encoder searched.
    domain_pos : numpy.ndarray, int64, shape (M, 2)
        Top-left (row, col) of the domain block of each range block.
    symmetry : numpy.ndarray, int64, shape (M,)
        Symmetry index in 0..7 (:func:`apply_symmetry`).
    s, o : numpy.ndarray, float64, shape (M,)
        Contrast (|s_k| ≤ s_max < 1) and offset (grey levels).
    s_max : float
        The clamp used by the encoder (the contractivity constraint).
    allow_negative : bool
        Whether negative contrasts were allowed.
    collage_error : numpy.ndarray, float64, shape (M,)
        Per-block collage error ‖w_k(x) − R_k‖² on the encoded image.
    """

    shape: tuple
    range_size: int
    domain_stride: int
    domain_pos: np.ndarray
    symmetry: np.ndarray
    s: np.ndarray
    o: np.ndarray
    s_max: float
    allow_negative: bool = False
    collage_error: np.ndarray = field(default=None, repr=False)

    def __post_init__(self):
        """Validate and normalise the arrays (raises ValueError naming the field)."""
        if len(tuple(self.shape)) != 2:
            raise ValueError(f"shape: expected (H, W), got {self.shape!r}")
        H, W = (int(v) for v in self.shape)
        r = _check_int(self.range_size, "range_size")
        _check_int(self.domain_stride, "domain_stride")
        if H % r or W % r or H < 2 * r or W < 2 * r:
            raise ValueError(f"shape: {(H, W)} must be multiples of range_size={r} and at least {2 * r}")
        M = (H // r) * (W // r)
        pos = np.asarray(self.domain_pos, dtype=np.int64)
        sym = np.asarray(self.symmetry, dtype=np.int64)
        s = np.asarray(self.s, dtype=np.float64)
        o = np.asarray(self.o, dtype=np.float64)
        if pos.shape != (M, 2):
            raise ValueError(f"domain_pos: expected shape ({M}, 2), got {pos.shape}")
        if (pos < 0).any() or (pos[:, 0] > H - 2 * r).any() or (pos[:, 1] > W - 2 * r).any():
            raise ValueError("domain_pos: every 2r×2r domain block must lie inside the image")
        if sym.shape != (M,) or (sym < 0).any() or (sym >= N_SYMMETRIES).any():
            raise ValueError(f"symmetry: expected {M} indices in 0..7")
        if s.shape != (M,) or o.shape != (M,) or not (np.isfinite(s).all() and np.isfinite(o).all()):
            raise ValueError(f"s, o: expected {M} finite values each")
        if not 0 < float(self.s_max) < 1 or (np.abs(s) > self.s_max).any():
            raise ValueError(f"s: expected |s_k| <= s_max < 1 (s_max = {self.s_max!r}, max |s_k| = {np.abs(s).max():.4g})")
        for name, val in (("shape", (H, W)), ("domain_pos", pos), ("symmetry", sym), ("s", s), ("o", o)):
            object.__setattr__(self, name, val)

    @property
    def n_blocks(self) -> int:
        """Number M of range blocks."""
        return int(self.s.size)

    @property
    def range_pos(self) -> np.ndarray:
        """Top-left (row, col) of each range block, int64, shape (M, 2), row-major."""
        H, W = self.shape
        r = self.range_size
        rr, cc = np.meshgrid(np.arange(0, H, r), np.arange(0, W, r), indexing="ij")
        return np.stack([rr.ravel(), cc.ravel()], axis=1).astype(np.int64)


def _check_image(image, name="image"):
    x = np.asarray(image)
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"{name}: expected a real numeric array, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a grayscale image of shape (H, W), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return x


def _check_int(v, name, lo=1):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name}: expected an integer >= {lo}, got {v!r}")
    return int(v)


def encode(image, range_size: int = 8, domain_stride: int = 8, s_max: float = 0.9,
           allow_negative: bool = False, chunk: int = 4_000_000) -> FractalCode:
    """Jacquin-style fractal encoder: full search over domains × symmetries.

    For every range block R_k, every domain block D_j on the grid
    {0, stride, 2·stride, …} × {same} (all with D_j inside the image) and every
    symmetry A ∈ D4, fit s, o by :func:`least_squares_contrast` (s clamped into
    [0, s_max] or [−s_max, s_max]) and keep the (j, A, s, o) with the smallest
    block collage error ‖s A(DS(D_j)) + o − R_k‖² (first minimum on ties).
    Vectorised: one matrix product of all transformed domains with a chunk of
    range blocks.

    Parameters
    ----------
    image : array_like, shape (H, W)
        Grayscale image, grey levels (conventionally [0, 255]; any finite floats work).
        H and W must be multiples of ``range_size`` and at least 2·range_size.
    range_size : int >= 1
        Range block side r (4 or 8 typical).
    domain_stride : int >= 1
        Step of the domain grid (domain blocks are 2r×2r).
    s_max : float in (0, 1)
        Contractivity clamp on |s_k|. The paper writes s_k ∈ [0, 1); the clamp
        s_max < 1 is what makes W an ℓ∞ contraction with factor ≤ s_max.
    allow_negative : bool
        Allow s_k ∈ [−s_max, 0) too (Fisher's codec does; the paper's default does not).
    chunk : int
        Maximum number of (domain × symmetry × range) scores held in memory at once.

    Returns
    -------
    FractalCode

    Raises
    ------
    ValueError
        For an image that is not 2-D, not finite, or not tiled by r×r blocks
        with room for a 2r×2r domain; for non-positive sizes or s_max ∉ (0, 1).
    TypeError
        For a non-numeric image or s_max.

    References
    ----------
    Paper §2.2; Jacquin (1992); Fisher (1995).
    """
    x = _check_image(image)
    r = _check_int(range_size, "range_size")
    stride = _check_int(domain_stride, "domain_stride")
    chunk = _check_int(chunk, "chunk")
    lo, hi = _s_bounds(s_max, allow_negative)
    H, W = x.shape
    if H % r or W % r:
        raise ValueError(f"image: shape {x.shape} is not a multiple of range_size={r}")
    if H < 2 * r or W < 2 * r:
        raise ValueError(f"image: shape {x.shape} too small for {2 * r}×{2 * r} domain blocks")
    n = r * r
    # range blocks (M, n), row-major
    R = x.reshape(H // r, r, W // r, r).transpose(0, 2, 1, 3).reshape(-1, n)
    # domain pool, downsampled: (P, r, r)
    di = np.arange(0, H - 2 * r + 1, stride)
    dj = np.arange(0, W - 2 * r + 1, stride)
    win = np.lib.stride_tricks.sliding_window_view(x, (2 * r, 2 * r))[::stride, ::stride]
    pos = np.stack(np.meshgrid(di, dj, indexing="ij"), axis=-1).reshape(-1, 2)
    Dds = downsample(win.reshape(-1, 2 * r, 2 * r))
    P = Dds.shape[0]
    # all symmetries: (8, P, n) -> (8P, n); candidate c = a·P + p
    perms = symmetry_permutations(r)
    Dflat = Dds.reshape(P, n)
    D = Dflat[:, perms].transpose(1, 0, 2).reshape(N_SYMMETRIES * P, n)
    Dm = D.mean(1)
    Dc = D - Dm[:, None]
    var = (Dc * Dc).sum(1)
    Rm = R.mean(1)
    Rc = R - Rm[:, None]
    Rvar = (Rc * Rc).sum(1)
    M = R.shape[0]
    best_c = np.empty(M, dtype=np.int64)
    best_s = np.empty(M)
    best_err = np.empty(M)
    step = max(1, chunk // D.shape[0])
    safe_var = np.where(var > 0, var, 1.0)
    for k0 in range(0, M, step):
        k1 = min(M, k0 + step)
        cov = Dc @ Rc[k0:k1].T  # (8P, m)
        s = np.where(var[:, None] > 0, cov / safe_var[:, None], 0.0)
        s = np.clip(s, lo, hi)  # the contractivity clamp (documented, intentional)
        # ‖s dc − rc‖² with o = mean(r) − s mean(d) re-fitted
        err = s * s * var[:, None] - 2.0 * s * cov + Rvar[k0:k1][None, :]
        c = np.argmin(err, axis=0)
        cols = np.arange(k1 - k0)
        best_c[k0:k1] = c
        best_s[k0:k1] = s[c, cols]
        best_err[k0:k1] = np.maximum(err[c, cols], 0.0)
    sym = best_c // P
    p = best_c % P
    o = Rm - best_s * Dm[best_c]
    return FractalCode(
        shape=(H, W), range_size=r, domain_stride=stride, domain_pos=pos[p].astype(np.int64),
        symmetry=sym.astype(np.int64), s=best_s, o=o, s_max=float(s_max),
        allow_negative=bool(allow_negative), collage_error=best_err,
    )


def _check_code(code):
    if not isinstance(code, FractalCode):
        raise TypeError(f"code: expected a FractalCode, got {type(code).__name__}")
    return code


def _gather_index(code: FractalCode):
    """Source pixel indices (M, n, 4) and target pixel indices (M, n) of W."""
    W = code.shape[1]
    r = code.range_size
    n = r * r
    p_, q_ = np.divmod(np.arange(n), r)  # DS entry (p, q) of flat position m
    u = np.array([0, 0, 1, 1])
    v = np.array([0, 1, 0, 1])
    perms = symmetry_permutations(r)
    m_src = perms[code.symmetry]  # (M, n): output position m reads DS entry m_src
    pp, qq = p_[m_src], q_[m_src]  # (M, n)
    rows = code.domain_pos[:, 0, None, None] + 2 * pp[..., None] + u  # (M, n, 4)
    cols = code.domain_pos[:, 1, None, None] + 2 * qq[..., None] + v
    src = rows * W + cols
    rp = code.range_pos
    tgt = (rp[:, 0, None] + p_[None, :]) * W + rp[:, 1, None] + q_[None, :]
    return src, tgt


def operator_matrix(code: FractalCode):
    """The affine PIFS operator W(x) = L x + c as a sparse matrix and a vector.

    Pixels are flattened row-major (index i·W + j). Row ``t`` of L (a pixel of
    range block k) has four entries s_k/4 at the four source pixels that DS
    averages into it after the symmetry A_k; c holds o_k on the pixels of R_k.

    Parameters
    ----------
    code : FractalCode

    Returns
    -------
    L : scipy.sparse.csr_matrix, float64, shape (H·W, H·W)
    c : numpy.ndarray, float64, shape (H·W,)

    Raises
    ------
    TypeError
        If ``code`` is not a FractalCode.
    """
    from scipy import sparse

    code = _check_code(code)
    H, W = code.shape
    src, tgt = _gather_index(code)
    n = tgt.shape[1]
    vals = np.broadcast_to((code.s / 4.0)[:, None, None], src.shape)
    L = sparse.csr_matrix(
        (vals.ravel(), (np.repeat(tgt.ravel(), 4), src.ravel())), shape=(H * W, H * W)
    )
    c = np.empty(H * W)
    c[tgt.ravel()] = np.repeat(code.o, n)
    return L, c


def collage(code: FractalCode, image) -> np.ndarray:
    """Apply the PIFS operator once: W(image) = ⊕_k [s_k A_k(DS(image[D_k])) + o_k].

    Parameters
    ----------
    code : FractalCode
    image : array_like, shape code.shape

    Returns
    -------
    numpy.ndarray, float64, shape (H, W). ``collage(code, x)`` for the encoded
    image x is its *collage*; ‖x − W(x)‖ is the collage error of Theorem 5.

    Raises
    ------
    TypeError, ValueError
        For a wrong code type or an image of the wrong shape.
    """
    code = _check_code(code)
    x = _check_image(image)
    if x.shape != tuple(code.shape):
        raise ValueError(f"image: expected shape {tuple(code.shape)}, got {x.shape}")
    src, tgt = _gather_index(code)
    out = np.empty(x.size)
    out[tgt.ravel()] = (code.s[:, None] * x.ravel()[src].mean(-1) + code.o[:, None]).ravel()
    return out.reshape(x.shape)


def decode(code: FractalCode, n_iter: int = 10, start=None, return_history: bool = False):
    """Decode by iterating the PIFS operator: x_{k+1} = W(x_k) (Theorem 4).

    Parameters
    ----------
    code : FractalCode
    n_iter : int >= 0
        Number of applications of W.
    start : array_like, shape code.shape, optional
        Initial image x_0; default a uniform mid-grey 128. Any start converges
        to the same attractor x* at rate ‖x_k − x*‖∞ ≤ (max_k |s_k|)^k ‖x_0 − x*‖∞.
    return_history : bool
        Also return every iterate.

    Returns
    -------
    numpy.ndarray, float64, shape (H, W)
        x_{n_iter} (grey levels; not clipped to [0, 255]).
    history : numpy.ndarray, float64, shape (n_iter + 1, H, W)
        Only with ``return_history``: x_0, …, x_{n_iter}.

    Raises
    ------
    TypeError, ValueError
        For a wrong code, a negative ``n_iter`` or a start of the wrong shape.
    """
    code = _check_code(code)
    n_iter = _check_int(n_iter, "n_iter", lo=0)
    H, W = code.shape
    if start is None:
        x = np.full((H, W), 128.0)
    else:
        x = _check_image(start, "start")
        if x.shape != (H, W):
            raise ValueError(f"start: expected shape {(H, W)}, got {x.shape}")
    L, c = operator_matrix(code)
    v = x.ravel().copy()
    hist = [v.reshape(H, W).copy()] if return_history else None
    for _ in range(n_iter):
        v = L @ v + c
        if return_history:
            hist.append(v.reshape(H, W).copy())
    out = v.reshape(H, W)
    if return_history:
        return out, np.stack(hist)
    return out


def fixed_point(code: FractalCode, rtol: float = 1e-13) -> np.ndarray:
    """The attractor x* of the code: the unique solution of (I − L) x = c.

    Solved with a Krylov method (scipy.sparse.linalg.gmres, restart 50) rather than
    by iterating W, so it is an independent reference for :func:`decode`. (A
    direct sparse LU suffers heavy fill-in: minutes at 256×256.) I − L is
    invertible because the spectral radius of L is ≤ ‖L‖∞ = max |s_k| < 1.

    Parameters
    ----------
    code : FractalCode
    rtol : float > 0
        Relative residual tolerance of GMRES.

    Returns
    -------
    numpy.ndarray, float64, shape (H, W)

    Raises
    ------
    TypeError
        If ``code`` is not a FractalCode.
    ValueError
        If ``rtol`` is not positive.
    RuntimeError
        If GMRES does not reach ``rtol`` (residual reported).
    """
    from scipy import sparse
    from scipy.sparse.linalg import gmres

    if not rtol > 0:
        raise ValueError(f"rtol: expected > 0, got {rtol!r}")
    L, c = operator_matrix(code)
    A = sparse.identity(L.shape[0], format="csr") - L
    x, info = gmres(A, c, rtol=rtol, atol=0.0, restart=50, maxiter=2000)
    res = float(np.linalg.norm(A @ x - c) / max(np.linalg.norm(c), 1e-300))
    if info != 0 or res > 100 * rtol:
        raise RuntimeError(f"fixed_point: GMRES did not converge (info={info}, relative residual {res:.3g})")
    return x.reshape(code.shape)


@dataclass(frozen=True)
class OperatorNorms:
    """Lipschitz constants of the affine PIFS operator W(x) = L x + c.

    Attributes
    ----------
    linf : float
        ‖L‖∞ = max row |·|-sum = max_k |s_k|: the contraction factor of W in ℓ∞.
    l1 : float
        ‖L‖₁ = max column |·|-sum (grows with how many range blocks share a pixel).
    l2 : float
        ‖L‖₂ = largest singular value, by power iteration on LᵀL: W's exact
        Lipschitz constant in the Euclidean metric. May exceed 1.
    l2_upper : float
        √(‖L‖₁ ‖L‖∞), the Riesz–Thorin / Schur bound on ‖L‖₂.
    l2_iterations : int
        Power iterations used.
    l2_converged : bool
        Whether the relative change fell below ``tol``.
    """

    linf: float
    l1: float
    l2: float
    l2_upper: float
    l2_iterations: int
    l2_converged: bool


def operator_norm_l2(code: FractalCode, power: int = 1, tol: float = 1e-10, max_iter: int = 5000,
                     seed: int = 0):
    """Spectral norm ‖L^power‖₂ of the linear part of W, by power iteration.

    Iterates v ← (L^p)ᵀ L^p v / ‖·‖ from a seeded Gaussian start; the estimate
    √‖(L^p)ᵀ L^p v‖ increases monotonically to the largest singular value.
    ‖L^p‖₂ is the ℓ2 Lipschitz constant of W^p (p-fold decoding).

    Parameters
    ----------
    code : FractalCode
    power : int >= 1
    tol : float > 0
        Stop when successive estimates differ by at most ``tol`` relatively.
    max_iter : int >= 1
    seed : int

    Returns
    -------
    sigma : float
    iterations : int
    converged : bool

    Raises
    ------
    TypeError
        If ``code`` is not a FractalCode.
    ValueError
        For non-positive ``power``, ``tol`` or ``max_iter``.
    """
    L, _ = operator_matrix(code)
    power = _check_int(power, "power")
    if not tol > 0:
        raise ValueError(f"tol: expected > 0, got {tol!r}")
    max_iter = _check_int(max_iter, "max_iter")
    LT = L.T.tocsr()
    v = np.random.default_rng(seed).standard_normal(L.shape[1])
    v /= np.linalg.norm(v)
    sigma, converged, it = 0.0, False, 0
    for it in range(1, max_iter + 1):
        w = v
        for _ in range(power):
            w = L @ w
        for _ in range(power):
            w = LT @ w
        lam = float(np.linalg.norm(w))  # → σ_max² as v → the top right singular vector
        if lam == 0.0:
            return 0.0, it, True
        v = w / lam
        new = float(np.sqrt(lam))
        if abs(new - sigma) <= tol * new:
            sigma, converged = new, True
            break
        sigma = new
    return sigma, it, converged


def operator_lipschitz(code: FractalCode, tol: float = 1e-10, max_iter: int = 5000, seed: int = 0) -> OperatorNorms:
    """Contraction factors of W in ℓ∞ (exact, closed form) and ℓ2 (power iteration).

    In ℓ∞, ‖W(x) − W(y)‖∞ ≤ max_k |s_k| ‖x − y‖∞ (each output pixel is s_k times an
    average of 4 inputs), with equality for x − y constant: the codec's clamp
    s_max < 1 makes W a contraction there. In ℓ2 the factor is ‖L‖₂
    (:func:`operator_norm_l2`), which is not bounded by max |s_k|: a 2r×2r domain
    block read by m range blocks contributes m copies of s·DS with ‖DS‖₂ = 1/2,
    and ‖L‖₂ can reach max|s|·√m/2.

    Parameters
    ----------
    code : FractalCode
    tol : float > 0
        Relative tolerance on successive estimates of ‖L‖₂.
    max_iter : int
    seed : int
        Seed of the random start vector.

    Returns
    -------
    OperatorNorms

    Raises
    ------
    TypeError
        If ``code`` is not a FractalCode.
    ValueError
        For non-positive ``tol`` or ``max_iter``.
    """
    L, _ = operator_matrix(code)
    A = abs(L)
    linf = float(A.sum(axis=1).max())
    l1 = float(A.sum(axis=0).max())
    sigma, it, converged = operator_norm_l2(code, 1, tol=tol, max_iter=max_iter, seed=seed)
    return OperatorNorms(linf=linf, l1=l1, l2=float(sigma), l2_upper=float(np.sqrt(l1 * linf)),
                         l2_iterations=it, l2_converged=converged)


def psnr(x, reference, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio 10 log10(peak² / MSE) in dB.

    Parameters
    ----------
    x, reference : array_like, same shape
        Images on the same grey scale (default [0, 255]).
    peak : float > 0

    Returns
    -------
    float (inf for identical images)

    Raises
    ------
    ValueError
        For mismatched shapes or a non-positive peak.
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"x, reference: shapes differ, {a.shape} vs {b.shape}")
    if not peak > 0:
        raise ValueError(f"peak: expected > 0, got {peak!r}")
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)


# ---------------------------------------------------------------------------
# IFS attractors
# ---------------------------------------------------------------------------
def sierpinski_maps() -> np.ndarray:
    """The Sierpiński triangle IFS: three similarities w_i(z) = z/2 + b_i of ratio 1/2.

    Vertices (0, 0), (1, 0), (1/2, √3/2); b_i = vertex_i / 2.

    Returns
    -------
    numpy.ndarray, float64, shape (3, 2, 3)
        Affine maps as [A | b] with A of shape (2, 2).
    """
    verts = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    maps = np.zeros((3, 2, 3))
    maps[:, :, :2] = 0.5 * np.eye(2)
    maps[:, :, 2] = verts / 2
    return maps


def _check_maps(maps):
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim != 3 or m.shape[1:] != (2, 3) or m.shape[0] < 1:
        raise ValueError(f"maps: expected affine maps of shape (N, 2, 3) = [A | b], got {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("maps: contains NaN or inf")
    norms = np.linalg.norm(m[:, :, :2], ord=2, axis=(1, 2))
    if (norms >= 1).any():
        raise ValueError(f"maps: every linear part must be a contraction (‖A‖₂ < 1); got {norms.max():.4g}")
    return m


def ifs_attractor(maps, n_points: int = 100_000, seed: int = 0, probabilities=None,
                  n_chains: int = 1000, burn_in: int = 60) -> np.ndarray:
    """Points on the attractor of a planar IFS by the chaos game (random iteration).

    Runs ``n_chains`` independent chains z ← w_i(z), i drawn with
    ``probabilities`` (default ∝ |det A_i|, uniform for equal similarities),
    from uniform starts in [0, 1]²; after ``burn_in`` steps every chain is within
    (max ‖A_i‖)^burn_in · diam of the attractor A* (Hutchinson, 1981), and all
    later states are returned.

    Parameters
    ----------
    maps : array_like, shape (N, 2, 3)
        Affine contractions [A_i | b_i]: w_i(z) = A_i z + b_i with ‖A_i‖₂ < 1.
    n_points : int >= 1
    seed : int
    probabilities : array_like, shape (N,), optional
        Positive, summing to 1.
    n_chains : int >= 1
    burn_in : int >= 0

    Returns
    -------
    numpy.ndarray, float64, shape (n_points, 2)

    Raises
    ------
    ValueError
        For malformed or non-contractive maps, or bad probabilities / counts.

    References
    ----------
    Hutchinson (1981); Barnsley (1988), the chaos game; paper §2.2.
    """
    m = _check_maps(maps)
    n_points = _check_int(n_points, "n_points")
    n_chains = _check_int(n_chains, "n_chains")
    burn_in = _check_int(burn_in, "burn_in", lo=0)
    N = m.shape[0]
    if probabilities is None:
        w = np.abs(np.linalg.det(m[:, :, :2]))
        p = w / w.sum() if w.sum() > 0 else np.full(N, 1.0 / N)
        p = np.where(p > 0, p, 1e-3)
        p = p / p.sum()
    else:
        p = np.asarray(probabilities, dtype=np.float64)
        if p.shape != (N,) or (p <= 0).any() or not np.isclose(p.sum(), 1.0):
            raise ValueError(f"probabilities: expected {N} positive numbers summing to 1, got {probabilities!r}")
    rng = np.random.default_rng(seed)
    n_chains = min(n_chains, n_points)
    steps = -(-n_points // n_chains)
    z = rng.random((n_chains, 2))
    A, b = m[:, :, :2], m[:, :, 2]
    out = np.empty((steps, n_chains, 2))
    for k in range(burn_in + steps):
        i = rng.choice(N, size=n_chains, p=p)
        z = np.einsum("cij,cj->ci", A[i], z) + b[i]
        if k >= burn_in:
            out[k - burn_in] = z
    return out.reshape(-1, 2)[:n_points]


def moran_dimension(ratios) -> float:
    """Similarity dimension of a self-similar set: the root d of Σ_i r_i^d = 1.

    Moran's equation (Moran 1946; Falconer 1990, Thm 9.3): under the open set
    condition it is the Hausdorff and box dimension of the attractor of the
    IFS of similarities with ratios r_i. Solved with scipy.optimize.brentq on
    [0, d_hi], g(d) = Σ r_i^d − 1 being strictly decreasing.

    Parameters
    ----------
    ratios : array_like, shape (N,), values in (0, 1)

    Returns
    -------
    float (log 3 / log 2 for the Sierpiński triangle; 0 when N = 1)

    Raises
    ------
    ValueError
        If a ratio is outside (0, 1) or the list is empty.

    Notes
    -----
    Not to be confused with the *discrete* Moran equation (45) of §5
    (:func:`pifs.geometry.moran_threshold`), which the paper models on this one.
    """
    from scipy.optimize import brentq

    r = np.asarray(ratios, dtype=np.float64).ravel()
    if r.size == 0 or not np.isfinite(r).all() or (r <= 0).any() or (r >= 1).any():
        raise ValueError(f"ratios: expected contraction ratios in (0, 1), got {ratios!r}")
    if r.size == 1:
        return 0.0

    def g(d):
        return float(np.sum(r**d) - 1.0)

    hi = 1.0
    while g(hi) > 0:
        hi *= 2.0
    return float(brentq(g, 0.0, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps))


def box_counting_dimension(points, epsilons=None):
    """Box-counting dimension estimate: slope of log N(ε) against log(1/ε).

    The points are scaled into the unit square by their bounding box (largest
    side → 1); N(ε) is the number of ε-grid boxes containing a point; the
    dimension is the least-squares slope over the given ε.

    Parameters
    ----------
    points : array_like, shape (n, 2) (or (n, D))
    epsilons : array_like, optional
        Box sides in (0, 1]; default 2^-2 … 2^-8.

    Returns
    -------
    dim : float
    epsilons : numpy.ndarray, shape (K,)
    counts : numpy.ndarray, int64, shape (K,)

    Raises
    ------
    ValueError
        For fewer than 2 points, a degenerate point set, or ε ∉ (0, 1].

    Notes
    -----
    A finite sample under-counts boxes at small ε (N(ε) saturates at the number of
    points); keep n ≫ ε_min^-dim.
    """
    z = np.asarray(points, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"points: expected an array of shape (n >= 2, D), got {z.shape}")
    eps = np.asarray(2.0 ** -np.arange(2, 9) if epsilons is None else epsilons, dtype=np.float64)
    if eps.ndim != 1 or eps.size < 2 or (eps <= 0).any() or (eps > 1).any():
        raise ValueError(f"epsilons: expected at least two box sides in (0, 1], got {epsilons!r}")
    lo = z.min(0)
    span = float((z.max(0) - lo).max())
    if span == 0:
        raise ValueError("points: all points coincide")
    u = (z - lo) / span
    counts = np.empty(eps.size, dtype=np.int64)
    for i, e in enumerate(eps):
        nb = int(np.ceil(1.0 / e))
        idx = np.minimum(np.floor(u / e), nb - 1).astype(np.int64)  # the point u = 1 joins the last box
        key = np.ravel_multi_index(tuple(idx.T), (nb,) * idx.shape[1]) if nb ** idx.shape[1] < 2**62 else None
        counts[i] = np.unique(key).size if key is not None else np.unique(idx, axis=0).shape[0]
    slope = np.polyfit(np.log(1.0 / eps), np.log(counts), 1)[0]
    return float(slope), eps, counts
