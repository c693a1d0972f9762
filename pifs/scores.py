"""Score models behind one interface: ``model(x, t) -> eps_hat`` (paper §2.1, §3, §4.1).

Every model answers the noise prediction ε̂(x, t) at noise level ᾱ_t of its own
schedule ``model.alpha_bar`` (numpy float64, shape (T+1,), the
:mod:`pifs.schedules` convention: ``alpha_bar[0] = 1``, training index
t = 1..T). The exact models return the optimal predictor of the paper (§2.1)

    ε*(x, t) = −√v_t ∇_x log p_t(x),     p_t = law of √ᾱ_t x_0 + √v_t ε,

which makes them the test oracles of every Jacobian tool: their Jacobians are
known in closed form. By second-order Tweedie (the exact form of eq. (24) of
Theorem 16), for *any* data law

    J_x ε*(x, t) = (1/√v_t) I − (ᾱ_t / v_t^{3/2}) Cov(x_0 | x_t = x),

so ``jacobian`` of the exact models is evaluated from ``posterior_cov``.

Calling convention
------------------
``x``
    torch tensor of shape (B, n) or (B, C, H, W) (images in the pixel scale
    [−1, 1]); exact models flatten each sample row-major (``x.reshape(B, -1)``)
    and return ε̂ with ``x``'s shape. float32 or float64: the output follows
    ``x``'s dtype and device.
``t``
    a Python int in 1..T, or a (B,) integer tensor of training indices.

All models are batched and differentiable with ``torch.func`` (``jvp``, ``vjp``,
``vmap``, ``jacfwd``/``jacrev``).
"""
from __future__ import annotations

import numbers

import numpy as np
import torch

from .schedules import validate

__all__ = [
    "ScoreModel",
    "GaussianScore",
    "GaussianMixtureScore",
    "EmpiricalScore",
    "DiffusersScore",
    "prepare_unet_for_forward_ad",
    "MathAttnProcessor",
    "tiny_unet",
]


# ----------------------------------------------------------------------------- helpers
def _as_float64(a, name):
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected a numeric array or tensor, got {type(a).__name__}") from exc
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return arr


def _sym_eig(cov, name):
    """Eigen-decomposition of a batch of symmetric PSD matrices (..., n, n) in float64."""
    if cov.ndim < 2 or cov.shape[-1] != cov.shape[-2]:
        raise ValueError(f"{name}: expected square matrices (..., n, n), got shape {cov.shape}")
    scale = max(float(np.abs(cov).max()), 1e-300)
    asym = float(np.abs(cov - np.swapaxes(cov, -1, -2)).max())
    if asym > 1e-8 * scale:
        raise ValueError(f"{name}: covariance must be symmetric (max |Σ − Σᵀ| = {asym:.3g})")
    lam, U = np.linalg.eigh(0.5 * (cov + np.swapaxes(cov, -1, -2)))
    if lam.min() < -1e-10 * scale:
        raise ValueError(f"{name}: covariance must be positive semi-definite (smallest eigenvalue {lam.min():.3g})")
    # Round-off negatives (> −1e-10·max|Σ|) are kept as they are: ᾱλ + v stays > 0.
    return lam, U


class ScoreModel:
    """Base class: schedule bookkeeping and the ``t`` convention shared by all models.

    Subclasses implement ``forward(x, t)``. ``model(x, t)`` validates ``x`` and
    ``t`` and calls it.

    Attributes
    ----------
    alpha_bar : numpy.ndarray, float64, shape (T+1,)
        The schedule at which the model answers (``alpha_bar[t]`` = ᾱ_t).
    T : int
        Number of training steps.
    """

    def __init__(self, alpha_bar):
        self.alpha_bar = validate(alpha_bar, "alpha_bar")
        self.T = self.alpha_bar.size - 1
        self._ab_cache = {}

    # -- t handling ---------------------------------------------------------------
    def _check_t(self, t, B):
        if isinstance(t, torch.Tensor):
            if t.dtype.is_floating_point or t.dtype == torch.bool or t.dtype.is_complex:
                raise TypeError(f"t: expected an integer tensor of training indices, got dtype {t.dtype}")
            if t.ndim == 0:
                t = t.reshape(1).expand(B)
            if t.shape != (B,):
                raise ValueError(f"t: expected an int or a tensor of shape (B,) = ({B},), got shape {tuple(t.shape)}")
            if bool((t < 1).any()) or bool((t > self.T).any()):
                raise ValueError(f"t: training indices must lie in 1..T = 1..{self.T}, got [{int(t.min())}, {int(t.max())}]")
            return t.long()
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Integral):
            raise TypeError(f"t: expected an int training index or a (B,) integer tensor, got {type(t).__name__}")
        if not 1 <= int(t) <= self.T:
            raise ValueError(f"t: training index must lie in 1..T = 1..{self.T}, got {t}")
        return int(t)

    def _coef(self, t, x):
        """ᾱ_t and v_t as tensors broadcastable to (B, 1) in x's dtype/device."""
        key = (x.dtype, x.device)
        if key not in self._ab_cache:
            self._ab_cache[key] = torch.as_tensor(self.alpha_bar, dtype=x.dtype, device=x.device)
            self._ab_cache[key + ("v",)] = torch.as_tensor(1.0 - self.alpha_bar, dtype=x.dtype, device=x.device)
        ab, v = self._ab_cache[key], self._ab_cache[key + ("v",)]
        if isinstance(t, int):
            return ab[t], v[t]
        return ab[t.to(x.device)][:, None], v[t.to(x.device)][:, None]

    def _check_x(self, x, n=None):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if not x.dtype.is_floating_point:
            raise TypeError(f"x: expected a floating tensor (float32 or float64), got {x.dtype}")
        if x.ndim not in (2, 4):
            raise ValueError(f"x: expected shape (B, n) or (B, C, H, W), got {tuple(x.shape)}")
        if n is not None and int(np.prod(x.shape[1:])) != n:
            raise ValueError(f"x: each sample must have n = {n} values, got shape {tuple(x.shape)}")

    def __call__(self, x, t):
        return self.forward(x, t)

    def forward(self, x, t):  # pragma: no cover - abstract
        """ε̂(x, t): x (B, n) or (B, C, H, W), t an int in 1..T or a (B,) tensor; returns x's shape."""
        raise NotImplementedError


# ----------------------------------------------------------------------------- Gaussian
class GaussianScore(ScoreModel):
    """Exact ε* for Gaussian data x_0 ~ N(mean, Σ).

    ε*(x, t) = √v_t (ᾱ_t Σ + v_t I)^{-1} (x − √ᾱ_t mean), an affine map of x
    with Jacobian √v_t (ᾱ_t Σ + v_t I)^{-1} (the Gaussian surrogate of
    Theorems 16–17; for Σ_k = λ_k I the diagonal blocks of J Φ_t are f_t(λ_k) I).

    Parameters
    ----------
    cov : torch.Tensor or array_like, shape (n, n); or a tuple ``(blocks, patch_idx)``
        Dense covariance Σ (symmetric PSD), or a block-diagonal one given per
        patch: ``blocks`` of shape (M, n_k, n_k) (one symmetric PSD matrix per
        patch) and ``patch_idx`` of shape (M, n_k) from
        :func:`pifs.patches.patch_indices` (must be a permutation of 0..n−1 laid
        out as M rows). The block form is solved patch by patch (O(M n_k²)).
    alpha_bar : array_like, shape (T+1,)
        Schedule (:mod:`pifs.schedules`).
    mean : array_like, shape (n,) or (C, H, W), optional
        Data mean (default 0), pixel scale [−1, 1].

    Raises
    ------
    ValueError
        If Σ is not square, symmetric or PSD, ``patch_idx`` is not a partition of
        0..n−1, the shapes disagree, or the schedule is invalid.
    TypeError
        If an argument is not numeric.

    Notes
    -----
    The eigen-decomposition Σ = U diag(λ) Uᵀ is done once in float64; each call
    applies U diag(√v/(ᾱλ + v)) Uᵀ in ``x``'s dtype.
    """

    def __init__(self, cov, alpha_bar, mean=None):
        super().__init__(alpha_bar)
        if isinstance(cov, tuple):
            if len(cov) != 2:
                raise ValueError("cov: a block spec must be the pair (blocks, patch_idx)")
            blocks = _as_float64(cov[0], "cov[0] (blocks)")
            idx = np.asarray(cov[1])
            if blocks.ndim != 3 or blocks.shape[1] != blocks.shape[2]:
                raise ValueError(f"cov[0] (blocks): expected shape (M, n_k, n_k), got {blocks.shape}")
            if idx.ndim != 2 or idx.shape != blocks.shape[:2] or not np.issubdtype(idx.dtype, np.integer):
                raise ValueError(f"cov[1] (patch_idx): expected integers of shape (M, n_k) = {blocks.shape[:2]}, got {idx.shape}")
            n = idx.size
            if not np.array_equal(np.sort(idx.reshape(-1)), np.arange(n)):
                raise ValueError("cov[1] (patch_idx): must list every index 0..n−1 exactly once (a partition)")
            self.n = n
            self.patch_idx = idx.astype(np.int64)
            self._lam, self._U = _sym_eig(blocks, "cov[0] (blocks)")  # (M, nk), (M, nk, nk)
            self._inv_perm = np.argsort(self.patch_idx.reshape(-1))
            self.block = True
        else:
            c = _as_float64(cov, "cov")
            if c.ndim != 2:
                raise ValueError(f"cov: expected shape (n, n) or a (blocks, patch_idx) pair, got {c.shape}")
            self.n = c.shape[0]
            self._lam, self._U = _sym_eig(c, "cov")
            self.block = False
        if mean is None:
            self._mean = np.zeros(self.n)
        else:
            m = _as_float64(mean, "mean").reshape(-1)
            if m.size != self.n:
                raise ValueError(f"mean: expected n = {self.n} values, got {m.size}")
            self._mean = m
        self._cache = {}

    def _tensors(self, x):
        key = (x.dtype, x.device)
        if key not in self._cache:
            kw = dict(dtype=x.dtype, device=x.device)
            d = {"lam": torch.as_tensor(self._lam, **kw), "U": torch.as_tensor(self._U, **kw),
                 "mean": torch.as_tensor(self._mean, **kw)}
            if self.block:
                d["idx"] = torch.as_tensor(self.patch_idx, device=x.device)
                d["inv"] = torch.as_tensor(self._inv_perm, device=x.device)
            self._cache[key] = d
        return self._cache[key]

    @property
    def cov(self):
        """Σ as a dense float64 numpy array, shape (n, n)."""
        if not self.block:
            return (self._U * self._lam[None, :]) @ self._U.T
        out = np.zeros((self.n, self.n))
        for k in range(self._lam.shape[0]):
            i = self.patch_idx[k]
            out[np.ix_(i, i)] = (self._U[k] * self._lam[k][None, :]) @ self._U[k].T
        return out

    def _apply(self, y, g, d):
        """Apply U diag(g(λ)) Uᵀ to rows of y (B, n); g has shape broadcastable to λ (with a batch axis)."""
        U, B = d["U"], y.shape[0]
        if not self.block:
            z = y @ U  # (B, n)
            return (z * g) @ U.T
        p = y[:, d["idx"]]  # (B, M, nk)
        z = torch.einsum("bmi,mij->bmj", p, U)
        z = z * g
        q = torch.einsum("bmj,mij->bmi", z, U)
        return q.reshape(B, -1)[:, d["inv"]]

    def _gain(self, t, x, fn):
        ab, v = self._coef(t, x)
        lam = self._tensors(x)["lam"]
        if isinstance(t, int):
            return fn(ab, v, lam)
        shp = (-1,) + (1,) * lam.ndim
        return fn(ab.reshape(shp), v.reshape(shp), lam)

    def forward(self, x, t):
        """ε*(x, t), shape and dtype of ``x``. See the class docstring."""
        self._check_x(x, self.n)
        t = self._check_t(t, x.shape[0])
        d = self._tensors(x)
        ab, v = self._coef(t, x)
        y = x.reshape(x.shape[0], -1) - torch.sqrt(ab) * d["mean"]
        g = self._gain(t, x, lambda a, vv, lam: torch.sqrt(vv) / (a * lam + vv))
        return self._apply(y, g, d).reshape(x.shape)

    def posterior_mean(self, x, t):
        """E[x_0 | x_t = x] = mean + √ᾱ_t Σ (ᾱ_t Σ + v_t I)^{-1}(x − √ᾱ_t mean), shape (B, n)."""
        self._check_x(x, self.n)
        t = self._check_t(t, x.shape[0])
        d = self._tensors(x)
        ab, _ = self._coef(t, x)
        y = x.reshape(x.shape[0], -1) - torch.sqrt(ab) * d["mean"]
        g = self._gain(t, x, lambda a, vv, lam: torch.sqrt(a) * lam / (a * lam + vv))
        return d["mean"] + self._apply(y, g, d)

    def _dense(self, t, x, fn):
        """Dense U diag(fn(ᾱ_t, v_t, λ)) Uᵀ for each sample, shape (B, n, n)."""
        d = self._tensors(x)
        B = x.shape[0]
        eye = torch.eye(self.n, dtype=x.dtype, device=x.device)
        ts = [t] * B if isinstance(t, int) else [int(s) for s in t]
        mats = {s: self._apply(eye, self._gain(s, x, fn), d) for s in set(ts)}  # symmetric matrices
        return torch.stack([mats[s] for s in ts])

    def posterior_cov(self, x, t):
        """Cov(x_0 | x_t = x) = U diag(λ v_t/(ᾱ_t λ + v_t)) Uᵀ (independent of x), shape (B, n, n)."""
        self._check_x(x, self.n)
        t = self._check_t(t, x.shape[0])
        return self._dense(t, x, lambda a, vv, lam: lam * vv / (a * lam + vv))

    def jacobian(self, x, t):
        """Closed-form J_x ε*(x, t) = √v_t (ᾱ_t Σ + v_t I)^{-1}, shape (B, n, n), x's dtype.

        Row-major flattening of each sample; the same matrix for every x.
        """
        self._check_x(x, self.n)
        t = self._check_t(t, x.shape[0])
        return self._dense(t, x, lambda a, vv, lam: torch.sqrt(vv) / (a * lam + vv))


# ----------------------------------------------------------------------------- mixture
class GaussianMixtureScore(ScoreModel):
    """Exact ε* of a Gaussian mixture x_0 ~ Σ_i w_i N(μ_i, Σ_i).

    The noised marginal is p_t = Σ_i w_i N(√ᾱ_t μ_i, S_i), S_i = ᾱ_t Σ_i + v_t I,
    so with responsibilities r_i(x) = w_i N(x; √ᾱ_t μ_i, S_i) / p_t(x)

        ε*(x, t) = √v_t Σ_i r_i(x) S_i^{-1}(x − √ᾱ_t μ_i).

    Parameters
    ----------
    weights : array_like, shape (K,)
        Mixture weights, ≥ 0, summing to 1 (within 1e-8).
    means : array_like, shape (K, n)
    covs : array_like, shape (K, n, n)
        Symmetric PSD covariances (zero matrices allowed: point masses).
    alpha_bar : array_like, shape (T+1,)

    Raises
    ------
    ValueError
        For inconsistent shapes, negative or unnormalised weights, non-PSD
        covariances, or an invalid schedule.
    """

    def __init__(self, weights, means, covs, alpha_bar):
        super().__init__(alpha_bar)
        w = _as_float64(weights, "weights").reshape(-1)
        mu = _as_float64(means, "means")
        cv = _as_float64(covs, "covs")
        if mu.ndim != 2 or mu.shape[0] != w.size:
            raise ValueError(f"means: expected shape (K, n) with K = {w.size}, got {mu.shape}")
        K, n = mu.shape
        if cv.shape != (K, n, n):
            raise ValueError(f"covs: expected shape (K, n, n) = {(K, n, n)}, got {cv.shape}")
        if (w < 0).any() or abs(w.sum() - 1.0) > 1e-8:
            raise ValueError(f"weights: expected non-negative weights summing to 1, got sum {w.sum()!r}")
        self.n, self.K = n, K
        self.weights, self.means = w, mu
        self._lam, self._U = _sym_eig(cv, "covs")  # (K, n), (K, n, n)
        self._cache = {}

    def _tensors(self, x):
        key = (x.dtype, x.device)
        if key not in self._cache:
            kw = dict(dtype=x.dtype, device=x.device)
            with np.errstate(divide="ignore"):
                logw = np.log(self.weights)
            self._cache[key] = {"lam": torch.as_tensor(self._lam, **kw), "U": torch.as_tensor(self._U, **kw),
                                "mu": torch.as_tensor(self.means, **kw), "logw": torch.as_tensor(logw, **kw)}
        return self._cache[key]

    def _components(self, x, t):
        """Per-component quantities: responsibilities r (B, K), rotated residuals, gains."""
        self._check_x(x, self.n)
        t = self._check_t(t, x.shape[0])
        d = self._tensors(x)
        ab, v = self._coef(t, x)  # scalars or (B, 1)
        if not isinstance(t, int):
            ab, v = ab[:, :, None], v[:, :, None]  # (B, 1, 1)
        xf = x.reshape(x.shape[0], -1)
        y = xf[:, None, :] - torch.sqrt(ab) * d["mu"][None]  # (B, K, n)
        z = torch.einsum("bki,kij->bkj", y, d["U"])  # coordinates in each eigenbasis
        s = ab * d["lam"][None] + v  # (B|1, K, n) eigenvalues of S_k
        logdet = torch.log(s).sum(-1)  # (B|1, K)
        maha = (z * z / s).sum(-1)  # (B, K)
        logits = d["logw"][None] - 0.5 * (logdet + maha)
        r = torch.softmax(logits, dim=-1)
        return t, d, ab, v, z, s, r

    def forward(self, x, t):
        """ε*(x, t), shape and dtype of ``x``."""
        t, d, ab, v, z, s, r = self._components(x, t)
        sinv_y = torch.einsum("bkj,kij->bki", z / s, d["U"])  # S_k^{-1}(x − √ᾱ μ_k)
        eps = torch.sqrt(v).reshape(-1, 1) * (r[..., None] * sinv_y).sum(1)
        return eps.reshape(x.shape)

    def _comp_post(self, x, t):
        t, d, ab, v, z, s, r = self._components(x, t)
        # m_k = μ_k + √ᾱ Σ_k S_k^{-1}(x − √ᾱ μ_k) = μ_k + U diag(√ᾱ λ/s) Uᵀ y
        mk = d["mu"][None] + torch.einsum("bkj,kij->bki", torch.sqrt(ab) * d["lam"][None] / s * z, d["U"])
        # C_k = Σ_k − ᾱ Σ_k S_k^{-1} Σ_k = U diag(λ v/s) Uᵀ
        ck_eig = d["lam"][None] * v / s  # (B|1, K, n)
        return d, r, mk, ck_eig

    def posterior_mean(self, x, t):
        """E[x_0 | x_t = x] = Σ_k r_k(x) m_k(x), shape (B, n) (flattened samples)."""
        d, r, mk, _ = self._comp_post(x, t)
        return (r[..., None] * mk).sum(1)

    def posterior_cov(self, x, t):
        """Cov(x_0 | x_t = x) by the law of total covariance, shape (B, n, n).

        Σ_k r_k (C_k + m_k m_kᵀ) − m mᵀ with C_k = Σ_k − ᾱ_t Σ_k S_k^{-1} Σ_k the
        component posterior covariance and m_k its posterior mean.
        """
        d, r, mk, ck_eig = self._comp_post(x, t)
        U = d["U"]
        ck = torch.einsum("kij,bkj,klj->bkil", U, ck_eig.expand(r.shape[0], -1, -1), U)
        m = (r[..., None] * mk).sum(1)
        second = (r[..., None, None] * (ck + mk[..., :, None] * mk[..., None, :])).sum(1)
        return second - m[:, :, None] * m[:, None, :]

    def jacobian(self, x, t):
        """Closed-form J_x ε* = (1/√v_t) I − (ᾱ_t / v_t^{3/2}) Cov(x_0 | x_t), shape (B, n, n)."""
        return _jac_from_cov(self, x, t, self.posterior_cov(x, t))


def _jac_from_cov(model, x, t, cov):
    t = model._check_t(t, x.shape[0])
    ab, v = model._coef(t, x)
    if not isinstance(t, int):
        ab, v = ab[:, :, None], v[:, :, None]
    eye = torch.eye(cov.shape[-1], dtype=x.dtype, device=x.device)
    return eye / torch.sqrt(v) - ab / v ** 1.5 * cov


# ----------------------------------------------------------------------------- empirical
class EmpiricalScore(ScoreModel):
    """Exact ε* of the empirical distribution of a finite data set (the ideal denoiser).

    For p_data = (1/N) Σ_i δ_{x^(i)}, p_t = (1/N) Σ_i N(√ᾱ_t x^(i), v_t I) and

        E[x_0 | x_t = x] = Σ_i w_i(x) x^(i),   w = softmax_i(−‖x − √ᾱ_t x^(i)‖² / (2 v_t)),
        ε*(x, t) = (x − √ᾱ_t E[x_0 | x_t = x]) / √v_t.

    The softmax logits are evaluated as (√ᾱ_t ⟨x, x^(i)⟩ − ᾱ_t ‖x^(i)‖²/2) / v_t
    (the ‖x‖² term is common to all i and cancels) and normalised by
    ``torch.softmax`` (max-subtracted), so small v_t (t near 1) is stable.

    Parameters
    ----------
    data : torch.Tensor or array_like, shape (N, n) or (N, C, H, W)
        The data set in the pixel scale [−1, 1]; samples are flattened row-major.
    alpha_bar : array_like, shape (T+1,)

    Raises
    ------
    ValueError
        If ``data`` is empty, not 2-D/4-D, or not finite; invalid schedule.
    """

    def __init__(self, data, alpha_bar):
        super().__init__(alpha_bar)
        arr = _as_float64(data, "data")
        if arr.ndim not in (2, 4) or arr.shape[0] < 1:
            raise ValueError(f"data: expected a non-empty array of shape (N, n) or (N, C, H, W), got {arr.shape}")
        self.data = arr.reshape(arr.shape[0], -1)
        self.N, self.n = self.data.shape
        self._cache = {}

    def _tensors(self, x):
        key = (x.dtype, x.device)
        if key not in self._cache:
            X = torch.as_tensor(self.data, dtype=x.dtype, device=x.device)
            self._cache[key] = (X, (X * X).sum(1))
        return self._cache[key]

    def weights(self, x, t):
        """Posterior weights w_i(x) = P(x_0 = x^(i) | x_t = x), shape (B, N)."""
        self._check_x(x, self.n)
        t = self._check_t(t, x.shape[0])
        X, sq = self._tensors(x)
        ab, v = self._coef(t, x)
        logits = (torch.sqrt(ab) * (x.reshape(x.shape[0], -1) @ X.T) - 0.5 * ab * sq) / v
        return torch.softmax(logits, dim=-1)

    def posterior_mean(self, x, t):
        """E[x_0 | x_t = x], shape (B, n)."""
        return self.weights(x, t) @ self._tensors(x)[0]

    def posterior_cov(self, x, t):
        """Cov(x_0 | x_t = x) = Σ_i w_i x^(i) x^(i)ᵀ − m mᵀ, shape (B, n, n)."""
        w = self.weights(x, t)
        X = self._tensors(x)[0]
        m = w @ X
        return torch.einsum("bi,ij,ik->bjk", w, X, X) - m[:, :, None] * m[:, None, :]

    def forward(self, x, t):
        """ε*(x, t), shape and dtype of ``x``."""
        m = self.posterior_mean(x, t)
        tt = self._check_t(t, x.shape[0])
        ab, v = self._coef(tt, x)
        return ((x.reshape(x.shape[0], -1) - torch.sqrt(ab) * m) / torch.sqrt(v)).reshape(x.shape)

    def jacobian(self, x, t):
        """Closed-form J_x ε* = (1/√v_t) I − (ᾱ_t / v_t^{3/2}) Cov(x_0 | x_t), shape (B, n, n)."""
        return _jac_from_cov(self, x, t, self.posterior_cov(x, t))


# ----------------------------------------------------------------------------- diffusers
class MathAttnProcessor:
    """Attention processor for diffusers ``Attention`` modules, differentiable in forward mode.

    Computes softmax(QKᵀ · scale + mask) V explicitly (the classic
    ``AttnProcessor`` of diffusers), with two changes: the scores are up-cast
    to float32 only for half-precision inputs (diffusers' ``upcast_softmax``
    would otherwise *down*-cast a float64 model to float32 inside the softmax,
    and its finite differences and JVPs disagree at the 1e-3 level), and the
    output is made contiguous (it is a transposed view, on which the following
    GroupNorm fails under forward-mode AD).

    Parameters
    ----------
    store : list, optional
        If given, every call appends the attention probabilities softmax(QKᵀ·scale),
        shape (B, heads, L, L_k) (the A_t of Theorem 23 and Table 6); used by
        :func:`pifs.models.capture_attention`.
    detach : bool
        Store detached copies (default) or the live tensors (to differentiate through them).
    """

    def __init__(self, store: list | None = None, detach: bool = True):
        self.store = store
        self.detach = detach

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.reshape(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        query = attn.head_to_batch_dim(query)
        key = attn.head_to_batch_dim(key)
        value = attn.head_to_batch_dim(value)
        dtype = query.dtype
        half = dtype in (torch.float16, torch.bfloat16)
        if half and (attn.upcast_attention or attn.upcast_softmax):
            query, key = query.float(), key.float()
        scores = torch.matmul(query, key.transpose(-1, -2)) * attn.scale
        if attention_mask is not None:
            scores = scores + attention_mask.to(scores.dtype)
        probs = scores.softmax(dim=-1).to(dtype)
        if self.store is not None:  # (B·heads, L, L_k) → (B, heads, L, L_k): head_to_batch_dim is batch-major
            rec = probs.reshape(batch_size, attn.heads, probs.shape[-2], probs.shape[-1])
            self.store.append(rec.detach().clone() if self.detach else rec)
        hidden_states = torch.bmm(probs, value)
        hidden_states = attn.batch_to_head_dim(hidden_states)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        hidden_states = hidden_states / attn.rescale_output_factor
        return hidden_states.contiguous()


def prepare_unet_for_forward_ad(unet):
    """Make a diffusers model differentiable in forward mode (``torch.func.jvp``) on CPU.

    The default attention processor calls ``scaled_dot_product_attention``,
    whose CPU flash kernel has no forward derivative. Every
    ``diffusers.models.attention_processor.Attention`` module is switched to
    :class:`MathAttnProcessor` (the explicit math path, output made contiguous
    so that the next GroupNorm works under forward AD). The function is the same
    (up to round-off); idempotent; modifies ``unet`` in place and returns it.

    Parameters
    ----------
    unet : torch.nn.Module
        Typically a ``diffusers.UNet2DModel``.

    Returns
    -------
    the same module.
    """
    from diffusers.models.attention_processor import Attention

    for m in unet.modules():
        if isinstance(m, Attention) and not isinstance(m.processor, MathAttnProcessor):
            m.set_processor(MathAttnProcessor())
    return unet


def tiny_unet(sample_size: int = 8, channels=(16, 32), in_channels: int = 3, attention: bool = True, seed: int = 0):
    """A small randomly initialised diffusers ``UNet2DModel`` (tests, benchmarks, examples).

    Two resolution levels, one ResNet layer per block, GroupNorm with 8 groups,
    and (with ``attention``) a self-attention block at the lower resolution (an
    ``AttnDownBlock2D`` / ``AttnUpBlock2D`` pair, head dimension 8) so that the
    forward-mode AD path through attention is exercised.

    Parameters
    ----------
    sample_size : int
        Image side H = W (divisible by 2).
    channels : tuple of two ints
        ``block_out_channels`` (multiples of 8).
    in_channels : int
        C (= out_channels).
    attention : bool
    seed : int
        ``torch.manual_seed`` for the initialisation (the global RNG state is
        restored afterwards).

    Returns
    -------
    diffusers.UNet2DModel, float32, in eval mode.
    """
    from diffusers import UNet2DModel

    state = torch.random.get_rng_state()
    torch.manual_seed(int(seed))
    try:
        unet = UNet2DModel(
            sample_size=int(sample_size), in_channels=in_channels, out_channels=in_channels,
            block_out_channels=tuple(channels), layers_per_block=1,
            down_block_types=("DownBlock2D", "AttnDownBlock2D" if attention else "DownBlock2D"),
            up_block_types=("AttnUpBlock2D" if attention else "UpBlock2D", "UpBlock2D"),
            norm_num_groups=8, attention_head_dim=8,
        )
    finally:
        torch.random.set_rng_state(state)
    return unet.eval()


class DiffusersScore(torch.nn.Module, ScoreModel):
    """Adapter: a diffusers ε-prediction ``UNet2DModel`` behind ``model(x, t) -> eps_hat``.

    Indexing: diffusers' ``alphas_cumprod[τ]`` is our ᾱ_{τ+1} (its timestep
    τ = 0..T−1 is our training index t = τ + 1), so ``model(x, t)`` calls
    ``unet(x, t − 1)`` and ``model.alpha_bar = [1, *alphas_cumprod]``.

    The module is prepared for forward-mode AD at construction
    (:func:`prepare_unet_for_forward_ad`) unless ``forward_ad=False`` (training, which
    needs only reverse mode, keeps diffusers' fused attention). The output follows ``x``'s dtype only
    if the UNet's parameters have that dtype (``unet.double()`` for float64).

    Parameters
    ----------
    unet : diffusers.UNet2DModel
        Predicts ε (``prediction_type="epsilon"``); input/output (B, C, H, W).
    alpha_bar : array_like of shape (T+1,), or a diffusers scheduler, optional
        Either our schedule, or any scheduler with ``alphas_cumprod`` (then
        ``alpha_bar = [1, *scheduler.alphas_cumprod]`` in float64). If omitted,
        ``DDPMScheduler.from_config(unet.config)`` is not guessed: it is an error.
    forward_ad : bool
        Switch the UNet's attention to :class:`MathAttnProcessor` (default True).

    Raises
    ------
    TypeError
        If ``unet`` is not a torch module or ``alpha_bar`` is missing.
    ValueError
        If the schedule is invalid.
    """

    def __init__(self, unet, alpha_bar=None, forward_ad: bool = True):
        if not isinstance(unet, torch.nn.Module):
            raise TypeError(f"unet: expected a torch.nn.Module (diffusers UNet2DModel), got {type(unet).__name__}")
        if alpha_bar is None:
            raise TypeError("alpha_bar: pass the schedule (shape (T+1,)) or a diffusers scheduler")
        if hasattr(alpha_bar, "alphas_cumprod"):
            ac = alpha_bar.alphas_cumprod
            ac = ac.detach().cpu().double().numpy() if isinstance(ac, torch.Tensor) else np.asarray(ac, np.float64)
            alpha_bar = np.concatenate([[1.0], ac])
        torch.nn.Module.__init__(self)
        ScoreModel.__init__(self, alpha_bar)
        self.unet = prepare_unet_for_forward_ad(unet) if forward_ad else unet

    def forward(self, x, t):
        """ε̂(x, t) = unet(x, t − 1).sample, shape (B, C, H, W).

        Parameters
        ----------
        x : torch.Tensor, shape (B, C, H, W)
        t : int in 1..T, or (B,) integer tensor
        """
        self._check_x(x)
        if x.ndim != 4:
            raise ValueError(f"x: a UNet needs images (B, C, H, W), got shape {tuple(x.shape)}")
        t = self._check_t(t, x.shape[0])
        tau = (t - 1) if isinstance(t, int) else (t - 1).to(x.device)
        return self.unet(x, tau).sample

    __call__ = torch.nn.Module.__call__
