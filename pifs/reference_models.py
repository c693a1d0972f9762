"""Exact, training-free reference models of CIFAR-10 for the §7 measurements (issue 12).

Three score models answer the one interface ``model(x, t) -> eps_hat`` of
:mod:`pifs.scores` (x of shape (B, C, H, W) or (B, n) in [−1, 1]; t an int 1..T or a
(B,) long tensor; float32 or float64, the output follows x) and give their Jacobian
J_x ε̂(x, t) in closed form, dense (``model.jacobian(x, t)``, shape (B, n, n), row-major
flattening of each sample):

==============================  ===========================================================
:func:`gaussian_from_images`    the exact Gaussian N(mean, Σ) with the data's full covariance
                                (3072 × 3072 on CIFAR-10): :class:`pifs.scores.GaussianScore`;
                                its Jacobian √v_t(ᾱ_t Σ + v_t I)^{-1} does not depend on x
:func:`ideal_denoiser`          the exact empirical score of the training images (what a
                                perfectly trained network converges to):
                                :class:`pifs.scores.EmpiricalScore`; Jacobian
                                (1/√v_t) I − (ᾱ_t/v_t^{3/2}) Cov_w(x_0 | x_t)
:class:`LocalScoreMachine`      the optimal denoiser under locality of Kamb & Ganguli (ICML
                                2025, arXiv:2412.20292), and its equivariant variant; banded
                                Jacobian
==============================  ===========================================================

and the tools built on them: :func:`ddim_step_jacobian` (the dense Jacobian of one DDIM step
x_t → x_{t'} of :mod:`pifs.ddim`, expand·I + b·J_x ε̂), :func:`dense_step_jacobian` (the same in
float64 by the fastest exact route: the Gaussian's eigenbasis, the ideal denoiser's low-rank
form, the local machine's weighted covariance by matrix products), :func:`step_norm` (its exact
operator norm, in closed form for the Gaussian and the ideal denoiser), :func:`step_diag_blocks`
(its diagonal patch blocks without the dense matrix), :func:`step_operator` (a
matrix-free :class:`scipy.sparse.linalg.LinearOperator` of it), :func:`posterior_concentration` and :func:`memorisation_boundary` (where the
ideal denoiser memorises), :func:`calibrate_locality` (the locality scale P per timestep that
best predicts a network, as Kamb & Ganguli calibrate it).

Conventions: pixel scale [−1, 1]; training index t = 1..T of ``alpha_bar`` (shape (T+1,),
``alpha_bar[0] = 1``, :mod:`pifs.schedules`); v_t = 1 − ᾱ_t; x̂_0 = (x − √v_t ε̂)/√ᾱ_t.
Computations are float64 unless the input is float32.
"""
from __future__ import annotations

import numbers
import typing

import numpy as np
import torch
import torch.nn.functional as F

from .scores import EmpiricalScore, GaussianScore, ScoreModel

__all__ = [
    "ReferenceModels",
    "reference_models",
    "gaussian_from_images",
    "ideal_denoiser",
    "LocalScoreMachine",
    "ddim_step_jacobian",
    "step_operator",
    "dense_step_jacobian",
    "step_norm",
    "step_diag_blocks",
    "posterior_concentration",
    "memorisation_boundary",
    "calibrate_locality",
]


def _box(z, P):
    """Sum of z (N, H, W) over the P × P window centred at each pixel, zero padding (integral image)."""
    r = P // 2
    zp = F.pad(z, (r + 1, r, r + 1, r))  # one leading zero row/column for the cumulative sums
    c = zp.cumsum(1).cumsum(2)
    H, W = z.shape[-2:]
    return c[:, P:P + H, P:P + W] - c[:, :H, P:P + W] - c[:, P:P + H, :W] + c[:, :H, :W]


def _images(images, name="images"):
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.ndim != 4 or x.shape[0] < 1:
        raise ValueError(f"{name}: expected a non-empty array of shape (N, C, H, W), got {x.shape}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return x


# ----------------------------------------------------------------------------- Gaussian / ideal
def gaussian_from_images(images, alpha_bar, *, ddof: int = 1) -> GaussianScore:
    """The exact Gaussian score of N(mean, Σ) fitted to images, with the full covariance.

    Σ = (1/(N − ddof)) Σ_i (x_i − m)(x_i − m)ᵀ over the row-major flattened images (n = C·H·W;
    3072 × 3072 for CIFAR-10), m the mean; the model is the paper's Gaussian surrogate with
    all cross-patch covariances kept (Theorems 16–17).

    Parameters
    ----------
    images : numpy.ndarray or torch.Tensor, float, shape (N, C, H, W), pixel scale [−1, 1]
    alpha_bar : array_like, shape (T+1,)
    ddof : int, 0 or 1
        Delta degrees of freedom of the covariance (default 1, as :func:`pifs.experiments.patch_statistics`).

    Returns
    -------
    pifs.scores.GaussianScore
        Dense (non-block) model; ``model.jacobian(x, t)`` is √v_t (ᾱ_t Σ + v_t I)^{-1}.

    Raises
    ------
    ValueError
        If ``images`` is not 4-D with N > ddof, or ``ddof`` is not 0 or 1.

    Notes
    -----
    Cost: one n × n eigen-decomposition (≈ 20 s in float64 on one core for n = 3072).
    """
    x = _images(images)
    if ddof not in (0, 1):
        raise ValueError(f"ddof: expected 0 or 1, got {ddof!r}")
    if x.shape[0] <= ddof:
        raise ValueError(f"images: need more than ddof = {ddof} images, got {x.shape[0]}")
    flat = x.reshape(x.shape[0], -1)
    mean = flat.mean(0)
    c = flat - mean
    cov = c.T @ c / (flat.shape[0] - ddof)
    return GaussianScore(0.5 * (cov + cov.T), alpha_bar, mean=mean)


def ideal_denoiser(images, alpha_bar) -> EmpiricalScore:
    """The ideal denoiser: the exact score of the empirical distribution of the training images.

    E[x_0 | x_t] = Σ_i w_i x^(i), w = softmax(−‖x_t − √ᾱ_t x^(i)‖²/(2 v_t)) over the N images
    (:class:`pifs.scores.EmpiricalScore`). Its Jacobian (1/√v_t) I − (ᾱ_t/v_t^{3/2}) Cov_w is
    symmetric, of rank ≤ N in its data part.

    Parameters
    ----------
    images : array_like, float, shape (N, C, H, W) or (N, n), pixel scale [−1, 1]
    alpha_bar : array_like, shape (T+1,)

    Returns
    -------
    pifs.scores.EmpiricalScore

    Raises
    ------
    ValueError
        As :class:`pifs.scores.EmpiricalScore`.
    """
    return EmpiricalScore(images, alpha_bar)


# ----------------------------------------------------------------------------- local machine
class LocalScoreMachine(ScoreModel):
    """The local score machine of Kamb & Ganguli (ICML 2025, arXiv:2412.20292).

    The exact optimal denoiser under locality: the output x̂_0 at pixel i (all C channels) is
    the posterior-weighted mean of the centre pixel of the training patches,

        x̂_0(x)_i = Σ_n w_{i,n}(x) x^n_i,
        w_{i,·} = softmax_n(−‖P_i(x) − √ᾱ_t P_i(x^n)‖² / (2 v_t)),

    with P_i the C × P × P patch centred at pixel i, **zero padding** (values outside the image
    are 0 in both x and the training images, so they drop out of the distance). This is the
    "local" machine (LS: training patches at the same location i). With
    ``equivariant=True`` it is the equivariant machine (ELS): the weights run over a bank of
    training patches taken at all locations (of all images, zero padded), and the output is
    their centre pixel. ε̂ = (x − √ᾱ_t x̂_0)/√v_t.

    Jacobian (banded: output pixel i depends only on the pixels of P_i):
    ∂x̂_0(x)_{i,c}/∂x_j = (√ᾱ_t/v_t) Cov_{w_i}(centre_c, value at j) for j in P_i, else 0, so
    J_x ε̂ = (1/√v_t) I − (ᾱ_t/v_t^{3/2}) C with C that banded weighted covariance. With a patch
    covering the whole image from every pixel (P ≥ 2·max(H, W) − 1) the local machine is the
    ideal denoiser.

    Parameters
    ----------
    images : array_like, float, shape (N, C, H, W), pixel scale [−1, 1]
        Training images.
    alpha_bar : array_like, shape (T+1,)
    patch_size : int (odd, ≥ 1), or dict {t: P}, or callable t ↦ P
        Locality scale P; a dict or callable gives P per timestep (e.g. the result of
        :func:`calibrate_locality`); a dict must hold every t it is called with.
    equivariant : bool
        Local (False, default) or equivariant machine.
    n_bank : int, optional
        Equivariant only: number of training patches in the bank, drawn uniformly without
        replacement from all N·H·W (image, location) pairs with ``seed`` (default: all of them
        up to 20,000 — the subsample is the affordable form; say so when reporting).
    seed : int
        Seed of the bank.

    Raises
    ------
    ValueError
        For a bad image array, an even or non-positive patch size, or ``n_bank`` < 1.

    Notes
    -----
    Cost of one forward: N·n (local; the distances are box filters of x·x^n) or n_bank·n·P²
    (equivariant, a convolution with the bank). The dense Jacobian costs N·C²·P²·H·W more.
    """

    def __init__(self, images, alpha_bar, patch_size, *, equivariant: bool = False, n_bank=None, seed: int = 0):
        super().__init__(alpha_bar)
        X = _images(images)
        self.data = X
        self.N, self.C, self.H, self.W = X.shape
        self.n = self.C * self.H * self.W
        self.equivariant = bool(equivariant)
        self._P = patch_size
        if not callable(patch_size) and not isinstance(patch_size, dict):
            self._check_P(patch_size)
        if n_bank is not None and (isinstance(n_bank, bool) or not isinstance(n_bank, numbers.Integral) or n_bank < 1):
            raise ValueError(f"n_bank: expected a positive integer or None, got {n_bank!r}")
        self.n_bank = n_bank
        self.seed = int(seed)
        self._cache = {}

    @staticmethod
    def _check_P(P):
        if isinstance(P, bool) or not isinstance(P, numbers.Integral) or P < 1 or P % 2 == 0:
            raise ValueError(f"patch_size: expected an odd positive integer, got {P!r}")
        return int(P)

    def patch_size_at(self, t: int) -> int:
        """The locality scale P used at training index t (odd int)."""
        P = self._P
        if isinstance(P, dict):
            if int(t) not in P:
                raise ValueError(f"patch_size: no patch size given for t = {t}")
            P = P[int(t)]
        elif callable(P):
            P = P(int(t))
        return self._check_P(P)

    # -- precomputation ------------------------------------------------------
    def _tensors(self, P, dtype, device):
        key = (P, dtype, device)
        if key in self._cache:
            return self._cache[key]
        X = torch.as_tensor(self.data, dtype=dtype, device=device)
        r = P // 2
        if not self.equivariant:
            d = {"X": X, "sq": _box((X * X).sum(1), P)}  # (N, H, W) = ‖P_i(x^n)‖²
        else:
            Xp = F.pad(X, (r, r, r, r))
            pats = Xp.unfold(2, P, 1).unfold(3, P, 1)  # (N, C, H, W, P, P)
            pats = pats.permute(0, 2, 3, 1, 4, 5).reshape(-1, self.C, P, P)  # (N·H·W, C, P, P)
            K = pats.shape[0] if self.n_bank is None else min(self.n_bank, pats.shape[0])
            K = min(K, 20000) if self.n_bank is None else K
            if K < pats.shape[0]:
                pick = np.sort(np.random.default_rng(self.seed).choice(pats.shape[0], K, replace=False))
                pats = pats[torch.as_tensor(pick, device=device)]
            bank = pats.contiguous()
            d = {"bank": bank, "sq": (bank * bank).sum((1, 2, 3)), "ctr": bank[:, :, r, r].contiguous()}
        self._cache[key] = d
        return d

    def _weights(self, x1, t, P):
        """Posterior weights for one sample x1 (C, H, W): (N or K, H, W), softmax over axis 0."""
        d = self._tensors(P, x1.dtype, x1.device)
        ab, v = self._coef(t, x1)
        r = P // 2
        if not self.equivariant:
            cross = _box((x1[None] * d["X"]).sum(1), P)
        else:
            cross = F.conv2d(x1[None], d["bank"], padding=r)[0]  # (K, H, W)
            d_sq = d["sq"][:, None, None]
            return torch.softmax((torch.sqrt(ab) * cross - 0.5 * ab * d_sq) / v, dim=0)
        return torch.softmax((torch.sqrt(ab) * cross - 0.5 * ab * d["sq"]) / v, dim=0)

    def _mean1(self, x1, t, P):
        d = self._tensors(P, x1.dtype, x1.device)
        w = self._weights(x1, t, P)
        if not self.equivariant:
            return (w[:, None] * d["X"]).sum(0)  # (C, H, W)
        return torch.einsum("khw,kc->chw", w, d["ctr"])

    def _ts(self, t, B):
        t = self._check_t(t, B)
        return [t] * B if isinstance(t, int) else [int(s) for s in t]

    def posterior_mean(self, x, t):
        """x̂_0(x) of the machine, shape (B, n) (flattened), x's dtype.

        Parameters
        ----------
        x : torch.Tensor, (B, C, H, W) or (B, n)
        t : int 1..T or (B,) integer tensor
        """
        self._check_x(x, self.n)
        ts = self._ts(t, x.shape[0])
        xi = x.reshape(x.shape[0], self.C, self.H, self.W)
        return torch.stack([self._mean1(xi[b], ts[b], self.patch_size_at(ts[b])) for b in range(x.shape[0])]
                           ).reshape(x.shape[0], -1)

    def forward(self, x, t):
        """ε̂(x, t) = (x − √ᾱ_t x̂_0)/√v_t, shape and dtype of ``x``."""
        m = self.posterior_mean(x, t)
        ab, v = self._coef(self._check_t(t, x.shape[0]), x)
        return ((x.reshape(x.shape[0], -1) - torch.sqrt(ab) * m) / torch.sqrt(v)).reshape(x.shape)

    def band(self, x1, t):
        """The banded weighted covariance of one sample: C[c, d, dy, dx, h, w].

        ∂x̂_0[c, h, w]/∂x[d, h + dy − r, w + dx − r] = (√ᾱ_t/v_t) C[c, d, dy, dx, h, w] (r = P//2;
        entries pointing outside the image are 0).

        Parameters
        ----------
        x1 : torch.Tensor, (C, H, W) or (n,)
        t : int, 1..T

        Returns
        -------
        (torch.Tensor of shape (C, C, P, P, H, W), int P)
        """
        t = self._check_t(t, 1)
        P = self.patch_size_at(t)
        x1 = x1.reshape(self.C, self.H, self.W)
        d = self._tensors(P, x1.dtype, x1.device)
        w = self._weights(x1, t, P)  # (N|K, H, W)
        r = P // 2
        C, H, W = self.C, self.H, self.W
        out = torch.zeros(C, C, P, P, H, W, dtype=x1.dtype, device=x1.device)
        if not self.equivariant:
            # A[c, (d, dy, dx)] = Σ_n w_n x^n_c(i) x^n_d(i + o) per pixel i, by batched matmul over row blocks
            keep = w.amax((1, 2)) > 1e-18  # images that carry weight at some pixel (the rest add < 1e-18)
            X, w = d["X"][keep], w[keep]
            N = X.shape[0]
            m = (w[:, None] * X).sum(0)  # (C, H, W)
            Xp = F.pad(X, (r, r, r, r))
            hb = max(1, int(2 ** 26 // max(1, N * C * P * P * W)))  # rows per block: ≈ 0.5 GB of float64
            for h0 in range(0, H, hb):
                h1 = min(H, h0 + hb)
                L = (h1 - h0) * W
                U = F.unfold(Xp[:, :, h0:h1 + 2 * r], P).permute(2, 0, 1)  # (L, N, C·P·P)
                wl = w[:, h0:h1].reshape(N, L).T  # (L, N)
                wX = wl[:, None, :] * X[:, :, h0:h1].reshape(N, C, L).permute(2, 1, 0)  # (L, C, N)
                A = torch.bmm(wX, U)  # (L, C, C·P·P)
                mS = torch.bmm(wl[:, None, :], U)  # (L, 1, C·P·P)
                blk = A - m[:, h0:h1].reshape(C, L).T[:, :, None] * mS
                out[..., h0:h1, :] = blk.reshape(h1 - h0, W, C, C, P, P).permute(2, 3, 4, 5, 0, 1)
        else:
            bank, ctr = d["bank"], d["ctr"]  # (K, C, P, P), (K, C)
            m = torch.einsum("khw,kc->chw", w, ctr)
            A = torch.einsum("khw,kc,kdyx->cdyxhw", w, ctr, bank)
            mS = torch.einsum("khw,kdyx->dyxhw", w, bank)
            out = A - m[:, None, None, None] * mS[None]
            # entries that point outside the image are not derivatives (padding is constant)
            hh = torch.arange(H, device=x1.device)[None, :, None] + torch.arange(P, device=x1.device)[:, None, None] - r
            valid_h = ((hh >= 0) & (hh < H))  # (P, H, 1)
            wv = torch.arange(W, device=x1.device)[None, :] + torch.arange(P, device=x1.device)[:, None] - r
            valid_w = ((wv >= 0) & (wv < W))  # (P, W)
            mask = valid_h[:, None, :, :] & valid_w[None, :, None, :]  # (P, P, H, W)
            out = out * mask.to(out.dtype)
        return out, P

    def _posterior(self, x1, t):
        """Weights and data of the local machine at one sample: (P, X (N', C, H·W), W (N', H·W), m (C, H·W)).

        Only images with a nonzero weight at some pixel are kept (the rest contribute exactly 0).
        """
        P = self.patch_size_at(t)
        d = self._tensors(P, x1.dtype, x1.device)
        w = self._weights(x1, t, P)  # (N, H, W)
        keep = w.amax((1, 2)) > 0
        X = d["X"][keep].reshape(-1, self.C, self.H * self.W)
        Wf = w[keep].reshape(-1, self.H * self.W)
        return P, X, Wf, (Wf[:, None, :] * X).sum(0)

    def weighted_covariance(self, x1, t, rows, cols):
        """Blocks of the masked weighted covariance whose (√ᾱ_t/v_t) multiple is J_x x̂_0.

        For flat indices a = (c, p) (output channel c at pixel p) and j = (d, q) of the row-major
        (C, H, W) flattening, Cov[a, j] = mask(p, q) · (Σ_n w_{p,n} X^n_a X^n_j − m_a Σ_n w_{p,n} X^n_j),
        with mask(p, q) = 1 when q lies in the P × P window centred at p (|Δh|, |Δw| ≤ P//2; the
        zero-padding convention of the class: pixels outside the image are not variables), w the
        local posterior weights and m = x̂_0. Computed by matrix products over the training images
        (cost B·|rows|·|cols|·N), not by the banded scatter of :meth:`band`.

        Parameters
        ----------
        x1 : torch.Tensor, (C, H, W) or (n,)
        t : int, 1..T
        rows, cols : array_like of int, shape (B, r) and (B, q)
            Flat indices in 0..n−1 of each block's rows and columns.

        Returns
        -------
        torch.Tensor, shape (B, r, q), x1's dtype.

        Raises
        ------
        ValueError
            For the equivariant machine (use :meth:`band`) or indices out of range.
        """
        if self.equivariant:
            raise ValueError("weighted_covariance: only for the local (non-equivariant) machine; use band()")
        t = self._check_t(t, 1)
        rows = torch.as_tensor(np.asarray(rows), dtype=torch.long, device=x1.device)
        cols = torch.as_tensor(np.asarray(cols), dtype=torch.long, device=x1.device)
        for nm, ix in (("rows", rows), ("cols", cols)):
            if ix.ndim != 2 or (ix.numel() and (int(ix.min()) < 0 or int(ix.max()) >= self.n)):
                raise ValueError(f"{nm}: expected a 2-D array of flat indices in 0..{self.n - 1}")
        P, X, Wf, m = self._posterior(x1.reshape(self.C, self.H, self.W), t)
        return self._cov_blocks(X, Wf, m, P, rows, cols)

    def _cov_blocks(self, X, Wf, m, P, rows, cols):
        HW = self.H * self.W
        Xf = X.reshape(X.shape[0], -1)  # (N, n)
        pr, pc = rows % HW, cols % HW
        Xr = Xf[:, rows].permute(1, 2, 0)  # (B, r, N)
        Wr = Wf[:, pr].permute(1, 2, 0)  # (B, r, N)
        Xc = Xf[:, cols].permute(1, 0, 2)  # (B, N, q)
        A = torch.bmm(Wr * Xr, Xc)  # Σ_n w_{p,n} X_a X_j
        mu = torch.bmm(Wr, Xc)  # Σ_n w_{p,n} X_j
        blk = A - m.reshape(-1)[rows][:, :, None] * mu
        r = P // 2
        hr, wr, hc, wc = pr // self.W, pr % self.W, pc // self.W, pc % self.W
        mask = ((hr[:, :, None] - hc[:, None, :]).abs() <= r) & ((wr[:, :, None] - wc[:, None, :]).abs() <= r)
        return blk * mask.to(blk.dtype)

    def _x0_jacobian_fast(self, x1, t):
        """Dense J_x x̂_0 (n, n) by batched matrix products, one vertical offset at a time (non-equivariant).

        Output pixel row h against input pixel row h + δ (|δ| ≤ P//2): A = (w_h ⊙ X_h)ᵀ X_{h+δ} and
        μ = w_hᵀ X_{h+δ} over the training images, batched over h; then the |Δw| ≤ P//2 mask."""
        P, X, Wf, m = self._posterior(x1, t)
        ab, v = self._coef(t, x1)
        C, H, W = self.C, self.H, self.W
        N, r, CW = X.shape[0], P // 2, self.C * self.W
        Xh = X.reshape(N, C, H, W).permute(2, 0, 1, 3).reshape(H, N, CW)  # (H, N, C·W): pixel row h
        Wh = Wf.reshape(N, H, W).permute(1, 2, 0)  # (H, W, N)
        WXt = (Wh[:, None, :, :] * Xh.reshape(H, N, C, W).permute(0, 2, 3, 1)).reshape(H, CW, N)
        mh = m.reshape(C, H, W).permute(1, 0, 2).reshape(H, CW)  # (H, C·W)
        ww = torch.arange(W, device=x1.device)
        mask = ((ww[:, None] - ww[None, :]).abs() <= r).to(X.dtype)  # (W, W')
        mask = mask[None, :, None, :].expand(C, W, C, W).reshape(CW, CW)
        Jp = torch.zeros(H, H, CW, CW, dtype=x1.dtype, device=x1.device)  # (h, h', (c, w), (d, w'))
        for dlt in range(-r, r + 1):
            h0, h1 = max(0, -dlt), min(H, H - dlt)  # output rows h with 0 ≤ h + δ < H
            if h1 <= h0:
                continue
            Xs = Xh[h0 + dlt:h1 + dlt]  # (L, N, C·W)
            A = torch.bmm(WXt[h0:h1], Xs)  # (L, C·W, C·W)
            mu = torch.bmm(Wh[h0:h1], Xs)  # (L, W, C·W)
            blk = A - mh[h0:h1, :, None] * mu[:, None, :, :].expand(-1, C, -1, -1).reshape(h1 - h0, CW, CW)
            hs = torch.arange(h0, h1, device=x1.device)
            Jp[hs, hs + dlt] = blk * mask
        J = Jp.reshape(H, H, C, W, C, W).permute(2, 0, 3, 4, 1, 5).reshape(self.n, self.n)
        return (torch.sqrt(ab) / v) * J

    def _x0_jacobian1(self, x1, t):
        if not self.equivariant:
            return self._x0_jacobian_fast(x1, t)
        Cb, P = self.band(x1, t)
        ab, v = self._coef(t, x1)
        C, H, W = self.C, self.H, self.W
        r = P // 2
        J = torch.zeros(C, H, W, C, H + 2 * r, W + 2 * r, dtype=x1.dtype, device=x1.device)
        hh = torch.arange(H, device=x1.device)
        ww = torch.arange(W, device=x1.device)
        for dy in range(P):
            for dx in range(P):
                # J[c, h, w, d, h + dy, w + dx] (padded coordinates) = C[c, d, dy, dx, h, w]
                J[:, hh[:, None], ww[None, :], :, hh[:, None] + dy, ww[None, :] + dx] = \
                    Cb[:, :, dy, dx].permute(2, 3, 0, 1)
        J = J[..., r:r + H, r:r + W].reshape(self.n, self.n)
        return (torch.sqrt(ab) / v) * J

    def jacobian(self, x, t):
        """Closed-form dense J_x ε̂(x, t) = (1/√v_t) I − (√ᾱ_t/√v_t) J_x x̂_0, shape (B, n, n).

        Row-major flattening (C, H, W); banded: row (c, i) is zero outside the patch P_i.

        Parameters
        ----------
        x : torch.Tensor, (B, C, H, W) or (B, n)
        t : int 1..T or (B,) integer tensor
        """
        self._check_x(x, self.n)
        ts = self._ts(t, x.shape[0])
        eye = torch.eye(self.n, dtype=x.dtype, device=x.device)
        out = []
        for b in range(x.shape[0]):
            ab, v = self._coef(ts[b], x)
            Jx0 = self._x0_jacobian1(x[b].reshape(self.C, self.H, self.W), ts[b])
            out.append(eye / torch.sqrt(v) - torch.sqrt(ab) / torch.sqrt(v) * Jx0)
        return torch.stack(out)


# ----------------------------------------------------------------------------- DDIM step
def _one_point(x, name="x"):
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
        raise TypeError(f"{name}: expected a floating torch.Tensor, got {type(x).__name__}")
    if x.ndim not in (1, 3):
        raise ValueError(f"{name}: expected one sample of shape (n,) or (C, H, W), got {tuple(x.shape)}")
    return x[None]


def ddim_step_jacobian(model, x, t, t_prev=None):
    """Dense closed-form Jacobian of one DDIM step Φ: x_t → x_{t_prev} (eq. 4, :mod:`pifs.ddim`).

    J_x Φ = √(ᾱ_{t_prev}/ᾱ_t) I + b J_x ε̂(x, t), with b of eq. (5)
    (:func:`pifs.ddim.step_coefficients`) and ``model.jacobian`` the model's closed form.

    Parameters
    ----------
    model : exact score model with ``jacobian(x, t)`` and ``alpha_bar``
        :class:`pifs.scores.GaussianScore`, :class:`pifs.scores.EmpiricalScore`,
        :class:`LocalScoreMachine`, :class:`pifs.scores.GaussianMixtureScore`.
    x : torch.Tensor, one sample (n,) or (C, H, W)
    t : int, 1..T
    t_prev : int, 0..t−1, optional (default t − 1; a 50-step chain uses the previous chain index)

    Returns
    -------
    torch.Tensor, shape (n, n), x's dtype; row-major flattening; equals
    ``pifs.jacobian.dense_jacobian(pifs.ddim.step_fn(model, t, t_prev), x)``.

    Raises
    ------
    TypeError
        If ``model`` has no closed-form ``jacobian`` or ``x`` is not a floating tensor.
    ValueError
        For a batched ``x`` or bad indices (:func:`pifs.ddim.step_coefficients`).
    """
    from .ddim import step_coefficients

    if not callable(getattr(model, "jacobian", None)):
        raise TypeError(f"model: expected an exact model with a closed-form jacobian(x, t), got {type(model).__name__}")
    xb = _one_point(x)
    if t_prev is None:
        t_prev = int(t) - 1
    expand, b = step_coefficients(model.alpha_bar, t, t_prev)
    Je = model.jacobian(xb, int(t))[0]
    return expand * torch.eye(Je.shape[0], dtype=Je.dtype, device=Je.device) + b * Je


def _ideal_parts(model, xb, t, t_prev):
    """Ideal denoiser at one point: c0, c1 and Y = √w (X − m) over the images with weight > 1e-300.

    J_x Φ = c0 I + c1 YᵀY (Cov_w = YᵀY)."""
    from .ddim import step_coefficients

    expand, b = step_coefficients(model.alpha_bar, t, t_prev)
    a = float(model.alpha_bar[int(t)])
    v = 1.0 - a
    with torch.no_grad():
        w = model.weights(xb, int(t))[0].numpy()
    keep = w > 1e-300
    X = model.data[keep]
    wk = w[keep]
    Y = np.sqrt(wk)[:, None] * (X - wk @ X)
    return expand + b / np.sqrt(v), -b * a / v ** 1.5, Y


def _gram_top_eigenvalue(Y, maxiter: int = 30) -> float:
    """σ_max(Y)² to float64 round-off: Lanczos (ARPACK, tol = 0) on z ↦ Yᵀ(Y z) (or Y(Yᵀ z), the
    smaller side), without forming the Gram matrix; the dense Gram and a symmetric eigen-solver
    when Lanczos has not converged after ``maxiter`` restarts."""
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    N, n = Y.shape
    if min(N, n) <= 64:
        return float(np.linalg.norm(Y, 2) ** 2) if Y.size else 0.0
    small = N < n
    k = N if small else n
    mv = (lambda z: Y @ (Y.T @ z)) if small else (lambda z: Y.T @ (Y @ z))
    op = LinearOperator((k, k), matvec=mv, matmat=mv, rmatvec=mv, dtype=np.float64)
    try:
        return float(eigsh(op, k=1, which="LA", tol=0, maxiter=maxiter, return_eigenvectors=False,
                           v0=np.random.default_rng(0).standard_normal(k))[0])
    except ArpackNoConvergence:
        Yt = torch.from_numpy(Y)
        G = Yt @ Yt.T if small else Yt.T @ Yt
        return float(torch.linalg.eigvalsh(0.5 * (G + G.T))[-1])


def _gauss_gain(model, t, t_prev):
    from .ddim import step_coefficients

    expand, b = step_coefficients(model.alpha_bar, t, t_prev)
    a = float(model.alpha_bar[int(t)])
    v = 1.0 - a
    return expand + b * np.sqrt(v) / (a * model._lam + v)  # eigenvalues of J_x Φ in the eigenbasis U


def _fast_kind(model):
    if isinstance(model, GaussianScore) and not model.block:
        return "gaussian"
    if isinstance(model, EmpiricalScore):
        return "ideal"
    if isinstance(model, LocalScoreMachine) and not model.equivariant:
        return "local"
    return None


def dense_step_jacobian(model, x, t, t_prev=None) -> np.ndarray:
    """Dense J_x Φ of one DDIM step x_t → x_{t_prev} in float64, by the fastest exact route.

    Exact Gaussian: U diag(g) Uᵀ with g = √(ᾱ_{t'}/ᾱ_t) + b √v_t/(ᾱ_t λ + v_t) (Σ = U diag(λ) Uᵀ);
    ideal denoiser: c0 I + c1 YᵀY with c0 = √(ᾱ_{t'}/ᾱ_t) + b/√v_t, c1 = −b ᾱ_t/v_t^{3/2},
    Y = √w (X − x̂_0) (the images with posterior weight > 1e-300); local machine: the masked
    weighted covariance of :meth:`LocalScoreMachine.weighted_covariance`, one output pixel row at
    a time (matrix products over the training images). Other models: :func:`ddim_step_jacobian`.

    Parameters
    ----------
    model : GaussianScore, EmpiricalScore, LocalScoreMachine (or any model with ``jacobian``)
    x : torch.Tensor, one sample (n,) or (C, H, W)
    t : int, 1..T
    t_prev : int, 0..t−1, optional (default t − 1)

    Returns
    -------
    numpy.ndarray, float64, shape (n, n), row-major flattening; equals
    :func:`ddim_step_jacobian` (to float64 round-off).

    Raises
    ------
    TypeError, ValueError
        As :func:`ddim_step_jacobian`.
    """
    xb = _one_point(x).double()
    t_prev = int(t) - 1 if t_prev is None else int(t_prev)
    kind = _fast_kind(model)
    if kind == "gaussian":
        g = _gauss_gain(model, t, t_prev)
        U = model._U
        return (U * g[None, :]) @ U.T
    if kind == "ideal":
        c0, c1, Y = _ideal_parts(model, xb, t, t_prev)
        J = c1 * (Y.T @ Y)
        J[np.diag_indices_from(J)] += c0
        return J
    with torch.no_grad():
        return ddim_step_jacobian(model, xb[0], t, t_prev).numpy()


def step_norm(model, x, t, t_prev=None, *, J=None) -> float:
    """Exact ‖J_x Φ‖_op of one DDIM step (κ_t of Table 4), in closed form where there is one.

    Exact Gaussian: max_i |g_i| over the eigenvalues g of J_x Φ = U diag(g) Uᵀ (symmetric);
    ideal denoiser: J_x Φ = c0 I + c1 YᵀY is symmetric with eigenvalues c0 + c1 σ_i²(Y), plus c0
    itself when Y (N_w × n) has fewer rows than n; on a DDIM step c0 = √(v_{t'}/v_t) > 0 and c1 ≥ 0,
    so the norm is c0 + c1 σ_max²(Y), σ_max² by Lanczos to round-off on the smaller Gram operator
    (Y Yᵀ or YᵀY, never formed; the dense Gram and a symmetric eigen-solver when Lanczos stalls;
    for other signs all σ² by the dense eigen-solver); local machine: Lanczos (tol = 0) on the sparse
    form of its banded dense Jacobian (:func:`dense_step_jacobian`, or ``J`` when given), the dense
    route of :func:`pifs.block_jacobian.exact_norm` when Lanczos stalls; other models: that
    :func:`pifs.block_jacobian.exact_norm` of the dense Jacobian. Exact to float64
    round-off; not an estimate.

    Parameters
    ----------
    model : GaussianScore, EmpiricalScore, LocalScoreMachine
    x : torch.Tensor, one sample (n,) or (C, H, W)
    t : int, 1..T
    t_prev : int, 0..t−1, optional (default t − 1)
    J : array_like (n, n), optional
        The dense J_x Φ at this point when already formed (used for models without a closed-form norm).

    Returns
    -------
    float

    Raises
    ------
    TypeError, ValueError
        As :func:`ddim_step_jacobian`.
    """
    from .block_jacobian import exact_norm

    xb = _one_point(x).double()
    t_prev = int(t) - 1 if t_prev is None else int(t_prev)
    kind = _fast_kind(model)
    if kind == "gaussian":
        return float(np.abs(_gauss_gain(model, t, t_prev)).max())
    if kind == "ideal":
        return _ideal_norm(*_ideal_parts(model, xb, t, t_prev))
    if J is None:
        J = dense_step_jacobian(model, xb[0], t, t_prev)
    if kind == "local":
        return _banded_norm(J)
    return float(exact_norm(J))


def _banded_norm(J, maxiter: int = 50) -> float:
    """‖J‖_op of a banded dense J: Lanczos (ARPACK svds, tol = 0) on its sparse form (the local
    machine's J has ≈ 3P²/n of its entries nonzero); the dense route of
    :func:`pifs.block_jacobian.exact_norm` when Lanczos has not converged after ``maxiter`` restarts."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import ArpackNoConvergence, svds

    from .block_jacobian import exact_norm

    J = np.asarray(J, dtype=np.float64)
    A = sp.csr_matrix(J)
    if A.nnz > 0.25 * J.size:
        return float(exact_norm(J))
    try:
        return float(svds(A, k=1, tol=0, maxiter=maxiter, v0=np.random.default_rng(0).standard_normal(J.shape[1]),
                          return_singular_vectors=False)[0])
    except ArpackNoConvergence:
        return float(exact_norm(J))


def _ideal_norm(c0, c1, Y):
    """‖c0 I + c1 YᵀY‖_op exactly (see :func:`step_norm`)."""
    if c0 >= 0 and c1 >= 0:  # every DDIM step t' < t: c0 = √(v_{t'}/v_t) > 0, c1 = −b ᾱ_t/v_t^{3/2} ≥ 0
        return float(c0 + c1 * _gram_top_eigenvalue(Y))  # the eigenvalues c0 + c1 σ² ≥ c0 are positive
    Yt = torch.from_numpy(Y)
    gram = Yt @ Yt.T if Y.shape[0] < Y.shape[1] else Yt.T @ Yt
    s2 = torch.linalg.eigvalsh(0.5 * (gram + gram.T)).numpy()
    vals = c0 + c1 * s2
    if Y.shape[0] < Y.shape[1]:
        vals = np.append(vals, c0)
    return float(np.abs(vals).max())


def step_diag_blocks(model, x, t, t_prev, patch_idx) -> np.ndarray:
    """The diagonal blocks [J_x Φ]_kk of one DDIM step, without forming the dense Jacobian.

    Exact Gaussian: U_k diag(g) U_kᵀ (U_k the rows of patch k of the eigenbasis); ideal denoiser:
    c0 I + c1 Y_kᵀ Y_k (Y_k the columns of patch k); local machine: c0 I + c1 Cov_kk of
    :meth:`LocalScoreMachine.weighted_covariance`; other models: blocks of :func:`dense_step_jacobian`.

    Parameters
    ----------
    model : GaussianScore, EmpiricalScore, LocalScoreMachine
    x : torch.Tensor, one sample (n,) or (C, H, W)
    t : int, 1..T
    t_prev : int, 0..t−1 or None (t − 1)
    patch_idx : array_like of int, shape (M, n_k)
        :func:`pifs.patches.patch_indices`.

    Returns
    -------
    numpy.ndarray, float64, shape (M, n_k, n_k): [J]_kk[i, j] = J[patch_idx[k, i], patch_idx[k, j]].

    Raises
    ------
    ValueError
        For indices out of range.
    """
    from .ddim import step_coefficients

    xb = _one_point(x).double()
    t_prev = int(t) - 1 if t_prev is None else int(t_prev)
    idx = np.asarray(patch_idx, dtype=np.int64)
    n = xb[0].numel()
    if idx.ndim != 2 or idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"patch_idx: expected (M, n_k) flat indices in 0..{n - 1}, got shape {idx.shape}")
    kind = _fast_kind(model)
    eye = np.eye(idx.shape[1])
    if kind == "gaussian":
        Uk = torch.from_numpy(model._U[idx])  # (M, nk, n)
        g = torch.from_numpy(_gauss_gain(model, t, t_prev))
        return torch.bmm(Uk * g, Uk.transpose(1, 2)).numpy()
    if kind == "ideal":
        c0, c1, Y = _ideal_parts(model, xb, t, t_prev)
        Yk = torch.from_numpy(Y[:, idx]).permute(1, 0, 2)  # (M, N_w, nk)
        return c0 * eye + c1 * torch.bmm(Yk.transpose(1, 2), Yk).numpy()
    if kind == "local":
        expand, b = step_coefficients(model.alpha_bar, t, t_prev)
        a = float(model.alpha_bar[int(t)])
        v = 1.0 - a
        with torch.no_grad():
            cov = model.weighted_covariance(xb[0], int(t), idx, idx).numpy()
        return (expand + b / np.sqrt(v)) * eye - b * a / v ** 1.5 * cov
    J = dense_step_jacobian(model, xb[0], t, t_prev)
    return J[idx[:, :, None], idx[:, None, :]]


def step_operator(model, x, t, t_prev=None):
    """J_x Φ of one DDIM step as a matrix-free float64 LinearOperator (exact norms by Lanczos).

    Parameters
    ----------
    model : GaussianScore (dense), EmpiricalScore or LocalScoreMachine
    x : torch.Tensor, one sample (n,) or (C, H, W)
    t : int, 1..T
    t_prev : int, 0..t−1, optional (default t − 1)

    Returns
    -------
    (scipy.sparse.linalg.LinearOperator of shape (n, n), bool symmetric)
        Products cost O(n²) (Gaussian: in its eigenbasis), O(N_w n) (ideal denoiser: only the
        images with posterior weight > 1e-300 enter) or O(n C P²) (local machine: a sparse
        banded matrix). ``symmetric`` is True for the Gaussian and the ideal denoiser.

    Raises
    ------
    TypeError
        For an unsupported model or a non-tensor x.
    ValueError
        For bad indices.
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import LinearOperator, aslinearoperator

    from .ddim import step_coefficients

    xb = _one_point(x).double()
    t_prev = int(t) - 1 if t_prev is None else int(t_prev)
    expand, b = step_coefficients(model.alpha_bar, t, t_prev)
    a = float(model.alpha_bar[int(t)])
    v = 1.0 - a
    n = xb[0].numel()
    if isinstance(model, GaussianScore) and not model.block:
        g = expand + b * np.sqrt(v) / (a * model._lam + v)
        U = model._U

        def mv(z):
            return U @ (g[:, None] * (U.T @ z.reshape(n, -1)))

        op = LinearOperator((n, n), matvec=mv, rmatvec=mv, matmat=mv, dtype=np.float64)
        return op, True
    if isinstance(model, EmpiricalScore):
        w = model.weights(xb, int(t))[0].numpy()
        keep = w > 1e-300
        X = model.data[keep]
        wk = w[keep]
        m = wk @ X
        Y = np.sqrt(wk)[:, None] * (X - m)  # Cov = Yᵀ Y
        c0, c1 = expand + b / np.sqrt(v), -b * a / v ** 1.5

        def mv(z):
            z = z.reshape(n, -1)
            return c0 * z + c1 * (Y.T @ (Y @ z))

        return LinearOperator((n, n), matvec=mv, rmatvec=mv, matmat=mv, dtype=np.float64), True
    if isinstance(model, LocalScoreMachine) and not model.equivariant:
        Jd = dense_step_jacobian(model, xb[0], int(t), t_prev)
        return aslinearoperator(sp.csr_matrix(Jd)), False
    if isinstance(model, LocalScoreMachine):
        Cb, P = model.band(xb[0], int(t))
        Cb = Cb.numpy()
        r = P // 2
        Cc, H, W = model.C, model.H, model.W
        c, d, dy, dx, h, ww = np.meshgrid(np.arange(Cc), np.arange(Cc), np.arange(P), np.arange(P), np.arange(H),
                                          np.arange(W), indexing="ij")
        hj, wj = h + dy - r, ww + dx - r
        ok = (hj >= 0) & (hj < H) & (wj >= 0) & (wj < W)
        rows = (c * H + h) * W + ww
        cols = (d * H + np.clip(hj, 0, H - 1)) * W + np.clip(wj, 0, W - 1)
        scale = -b * np.sqrt(a) / np.sqrt(v) * np.sqrt(a) / v
        Jx = sp.csr_matrix((scale * Cb[ok], (rows[ok], cols[ok])), shape=(n, n))
        A = sp.identity(n, format="csr") * (expand + b / np.sqrt(v)) + Jx
        return aslinearoperator(A), False
    raise TypeError(f"model: no matrix-free Jacobian for {type(model).__name__}")


# ----------------------------------------------------------------------------- memorisation
def posterior_concentration(model, x, t):
    """Maximum posterior weight and effective number 1/Σ_i w_i² of the ideal denoiser.

    Parameters
    ----------
    model : pifs.scores.EmpiricalScore
    x : torch.Tensor, (B, C, H, W) or (B, n), at training index t
    t : int, 1..T

    Returns
    -------
    (numpy.ndarray, numpy.ndarray), each float64 of shape (B,)
        max_i w_i(x) ∈ (0, 1] and N_eff = 1/Σ w_i² ∈ [1, N].

    Raises
    ------
    TypeError
        If ``model`` is not an EmpiricalScore.
    """
    if not isinstance(model, EmpiricalScore):
        raise TypeError(f"model: expected a pifs.scores.EmpiricalScore (ideal denoiser), got {type(model).__name__}")
    with torch.no_grad():
        w = model.weights(x.double(), t)
    return w.max(1).values.numpy(), (1.0 / (w * w).sum(1)).numpy()


def memorisation_boundary(model, chain=None, *, test_images=None, train_images=None, n_points: int = 8,
                          seed: int = 0, max_weight: float = 0.9, max_neff: float = 1.5, fraction: float = 0.5):
    """Where the ideal denoiser memorises along the DDIM chain (issue 12; a finding, not a paper number).

    At every step t of the chain (default the paper's 50-step DDIM chain of the model's schedule,
    :func:`pifs.schedules.ddim_timesteps`), a point x_t is *concentrated* when its posterior
    weights sit on one training image: max_i w_i > ``max_weight`` and N_eff = 1/Σ w_i² <
    ``max_neff``. Three sources of points:

    (i) ``noise``: deterministic DDIM trajectories of the ideal denoiser itself from x_T ~ N(0, I)
        (seeds ``seed + j``, as :func:`pifs.experiments.trajectories`);
    (ii) ``test``: x_t = √ᾱ_t x_0 + √v_t ε from held-out test images (same ε at every t);
    (iii) ``train``: the same from training images (``train_images``, default the model's data).

    The boundary of a source is the largest chain t at which at least ``fraction`` of its points
    are concentrated (NaN if none); the per-point boundary (largest t at which that point is
    concentrated) is summarised by its median.

    Parameters
    ----------
    model : pifs.scores.EmpiricalScore
    chain : array_like of int, optional
        Increasing training indices.
    test_images, train_images : array_like (N', C, H, W) or (N', n), optional
        Sources (ii) and (iii); ``n_points`` are drawn from each with ``seed``. A source not given
        is skipped, except (iii), which defaults to the model's own images.
    n_points : int, ≥ 1
    seed : int
    max_weight : float in (0, 1); max_neff : float ≥ 1; fraction : float in (0, 1]

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        Per (source, t): ``frac_concentrated``, ``median_max_w``, ``median_neff``; and per source:
        ``boundary_t`` (largest t with ≥ ``fraction`` concentrated), ``median_point_boundary``,
        ``n_points``.

    Raises
    ------
    TypeError
        If ``model`` is not an EmpiricalScore.
    ValueError
        For bad thresholds, ``n_points`` < 1, or image shapes that do not match the model.
    """
    import pandas as pd

    from .ddim import ddim_chain
    from .schedules import ddim_timesteps

    if not isinstance(model, EmpiricalScore):
        raise TypeError(f"model: expected a pifs.scores.EmpiricalScore (ideal denoiser), got {type(model).__name__}")
    if isinstance(n_points, bool) or not isinstance(n_points, numbers.Integral) or n_points < 1:
        raise ValueError(f"n_points: expected a positive integer, got {n_points!r}")
    if not 0 < max_weight < 1:
        raise ValueError(f"max_weight: expected a value in (0, 1), got {max_weight!r}")
    if not max_neff >= 1:
        raise ValueError(f"max_neff: expected a value >= 1, got {max_neff!r}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction: expected a value in (0, 1], got {fraction!r}")
    ts = ddim_timesteps(50, model.T) if chain is None else np.asarray(chain, dtype=np.int64)
    rng = np.random.default_rng(seed)
    a = model.alpha_bar
    sources = {}

    def pick(imgs, name):
        arr = imgs.detach().cpu().numpy() if isinstance(imgs, torch.Tensor) else np.asarray(imgs)
        arr = arr.reshape(arr.shape[0], -1).astype(np.float64)
        if arr.shape[1] != model.n:
            raise ValueError(f"{name}: each image must have n = {model.n} values, got shape {arr.shape}")
        k = min(n_points, arr.shape[0])
        return torch.as_tensor(arr[np.sort(rng.choice(arr.shape[0], k, replace=False))])

    g = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(n_points, model.n, generator=g, dtype=torch.float64)
    with torch.no_grad():
        _, traj = ddim_chain(model, noise, ts, return_trajectory=True)
    sources["noise"] = {int(t): traj[i] for i, t in enumerate(ts[::-1])}
    for name, imgs in (("test", test_images), ("train", model.data if train_images is None else train_images)):
        if imgs is None:
            continue
        x0 = pick(imgs, f"{name}_images")
        eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
        sources[name] = {int(t): np.sqrt(a[t]) * x0 + np.sqrt(1 - a[t]) * eps for t in ts}
    rows, summary = [], []
    for name, pts in sources.items():
        conc = {}
        for t in ts:
            mw, ne = posterior_concentration(model, pts[int(t)], int(t))
            c = (mw > max_weight) & (ne < max_neff)
            conc[int(t)] = c
            rows.append({"source": name, "t": int(t), "frac_concentrated": float(c.mean()),
                         "median_max_w": float(np.median(mw)), "median_neff": float(np.median(ne))})
        tt = np.array(sorted(conc))
        C = np.stack([conc[int(t)] for t in tt])  # (steps, points)
        frac = C.mean(1)
        bt = float(tt[frac >= fraction].max()) if (frac >= fraction).any() else float("nan")
        per_point = np.where(C.any(0), np.where(C, tt[:, None], -1).max(0), np.nan).astype(float)
        summary.append({"source": name, "boundary_t": bt,
                        "median_point_boundary": float(np.nanmedian(per_point)) if np.isfinite(per_point).any()
                        else float("nan"), "n_points": int(C.shape[1])})
    return pd.DataFrame(rows), pd.DataFrame(summary)


# ----------------------------------------------------------------------------- calibration
def _x0_hat(model, x, t):
    a = float(model.alpha_bar[int(t)])
    eps = model(x, int(t))
    return ((x - np.sqrt(1 - a) * eps) / np.sqrt(a)).reshape(x.shape[0], -1)


def calibrate_locality(network, images, timesteps, sizes, *, train_images, equivariant: bool = False,
                       n_bank=None, seed: int = 0, alpha_bar=None):
    """Calibrate the local machine's locality scale P per timestep against a network (Kamb & Ganguli).

    At each t, x_t = √ᾱ_t x_0 + √v_t ε from ``images`` (held-out images; the same ε at every t),
    the network's x̂_0 and the machine's x̂_0 (for every P in ``sizes``) are compared on the same
    x_t by r² = 1 − ‖x̂_0^net − x̂_0^mach‖² / ‖x̂_0^net − mean(x̂_0^net)‖² per image; P(t)
    maximises the median r² over images (the statistic Kamb & Ganguli report).

    Parameters
    ----------
    network : callable ``network(x, t)`` with ``alpha_bar`` (e.g. :class:`pifs.scores.DiffusersScore`)
    images : array_like, float, (B, C, H, W), pixel scale [−1, 1]
    timesteps : iterable of int in 1..T
    sizes : iterable of odd ints
        Candidate P.
    train_images : array_like, float, (N, C, H, W)
        The machine's training images.
    equivariant, n_bank, seed
        As :class:`LocalScoreMachine`; ``seed`` also seeds ε.
    alpha_bar : array_like, optional
        Defaults to ``network.alpha_bar``.

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        Per t: ``t``, ``P`` (best), ``r2_median`` (at the best P), ``r2_mean``; and the full grid
        (t, P, r2_median, r2_mean).

    Raises
    ------
    ValueError
        For empty ``sizes``/``timesteps``, even sizes, or shape mismatches.
    """
    import pandas as pd

    ab = network.alpha_bar if alpha_bar is None else alpha_bar
    x0 = torch.as_tensor(_images(images))
    sizes = [LocalScoreMachine._check_P(P) for P in sizes]
    ts = [int(t) for t in timesteps]
    if not sizes or not ts:
        raise ValueError("sizes, timesteps: expected non-empty lists")
    machine = LocalScoreMachine(train_images, ab, sizes[0], equivariant=equivariant, n_bank=n_bank, seed=seed)
    if (machine.C, machine.H, machine.W) != tuple(x0.shape[1:]):
        raise ValueError(f"images: shape {tuple(x0.shape[1:])} differs from train_images {(machine.C, machine.H, machine.W)}")
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
    dev = next((p.device for p in network.parameters()), torch.device("cpu")) if hasattr(network, "parameters") \
        else torch.device("cpu")
    pdt = next((p.dtype for p in network.parameters()), torch.float32) if hasattr(network, "parameters") else torch.float64
    grid = []
    for t in ts:
        a = float(ab[t])
        xt = np.sqrt(a) * x0 + np.sqrt(1 - a) * eps
        with torch.no_grad():
            net = _x0_hat(network, xt.to(device=dev, dtype=pdt), t).double().cpu()
            tot = ((net - net.mean(1, keepdim=True)) ** 2).sum(1)
            for P in sizes:
                machine._P = P
                mach = machine.posterior_mean(xt, t)
                r2 = (1 - ((net - mach) ** 2).sum(1) / tot).numpy()
                grid.append({"t": t, "P": P, "r2_median": float(np.median(r2)), "r2_mean": float(r2.mean())})
    G = pd.DataFrame(grid)
    best = G.loc[G.groupby("t")["r2_median"].idxmax()].sort_values("t", ascending=False).reset_index(drop=True)
    return best, G


# ----------------------------------------------------------------------------- the three models
class ReferenceModels(typing.NamedTuple):
    """The three exact reference models of one data set (:func:`reference_models`).

    Attributes
    ----------
    gaussian : pifs.scores.GaussianScore
        Full-covariance Gaussian of the images (eigen-decomposed).
    ideal : pifs.scores.EmpiricalScore
        The ideal denoiser (exact empirical score) of the images.
    local : LocalScoreMachine
        The local machine with the calibrated P(t) (nearest calibrated t).
    calibration : pandas.DataFrame
        ``t``, ``P``, ``r2_median``, ``r2_mean`` (best P per calibrated t), as
        :func:`calibrate_locality`; ``grid`` holds every (t, P).
    grid : pandas.DataFrame
    patch_size : dict {t: P} for t = 1..T
    """

    gaussian: object
    ideal: object
    local: object
    calibration: object
    grid: object
    patch_size: dict

    def items(self):
        """(name, model) in the book's column order: exact Gaussian, ideal denoiser, local machine."""
        return (("exact Gaussian", self.gaussian), ("ideal denoiser", self.ideal), ("local machine", self.local))


def reference_models(images, alpha_bar, *, network=None, test_images=None, cal_t=(901, 601, 301, 101),
                     cal_sizes=(3, 5, 9, 15), cal_images: int = 3, seed: int = 0, default_P: int = 5):
    """Build the exact Gaussian, the ideal denoiser and the calibrated local machine of ``images``.

    The local machine's locality scale is calibrated against ``network`` as Kamb & Ganguli do
    (:func:`calibrate_locality` on ``test_images[:cal_images]``); at a t that was not calibrated
    the P of the nearest calibrated t is used. The calibration is the expensive part (network
    and machine denoisers on every (t, P)); it goes through :func:`pifs.cache.cached`, keyed by
    the network's weights, the images and the arguments, so the notebooks of one build share it.

    Parameters
    ----------
    images : array_like, float, (N, C, H, W), pixel scale [−1, 1]
        Training images of all three models.
    alpha_bar : array_like, shape (T+1,)
    network : callable ``network(x, t)`` with ``alpha_bar``, optional
        The network to calibrate against (:class:`pifs.scores.DiffusersScore`). None: no
        calibration, P = ``default_P`` at every t, and ``calibration`` is an empty frame.
    test_images : array_like, (B, C, H, W), optional
        Held-out images for the calibration (required with ``network``).
    cal_t, cal_sizes : iterables of int
        Calibrated timesteps (1..T) and candidate odd P.
    cal_images : int ≥ 1
    seed : int
    default_P : int, odd

    Returns
    -------
    ReferenceModels

    Raises
    ------
    ValueError
        If ``network`` is given without ``test_images``, or for bad sizes (as
        :func:`calibrate_locality`).
    """
    import pandas as pd

    from .cache import cached

    X = _images(images)
    ab = np.asarray(alpha_bar, dtype=np.float64)
    T = ab.size - 1
    gauss = gaussian_from_images(X, ab)
    ideal = ideal_denoiser(X, ab)
    if network is None:
        best = pd.DataFrame(columns=["t", "P", "r2_median", "r2_mean"])
        grid = best.copy()
        P_of = {t: LocalScoreMachine._check_P(default_P) for t in range(1, T + 1)}
    else:
        if test_images is None:
            raise ValueError("test_images: required to calibrate the local machine against a network")
        if isinstance(cal_images, bool) or not isinstance(cal_images, numbers.Integral) or cal_images < 1:
            raise ValueError(f"cal_images: expected a positive integer, got {cal_images!r}")
        Xt = _images(test_images, "test_images")[: int(cal_images)]
        cal_t, cal_sizes = [int(t) for t in cal_t], [int(P) for P in cal_sizes]
        key = {"net": getattr(network, "unet", network), "X": X, "Xt": Xt, "t": cal_t, "P": cal_sizes,
               "seed": int(seed), "ab": ab}
        best, grid = cached("locality-calibration", key,
                            lambda: calibrate_locality(network, Xt, cal_t, cal_sizes, train_images=X, seed=seed,
                                                       alpha_bar=ab))
        at = {int(r.t): int(r.P) for r in best.itertuples()}
        P_of = {t: at[min(at, key=lambda c: (abs(c - t), c))] for t in range(1, T + 1)}
    local = LocalScoreMachine(X, ab, P_of)
    return ReferenceModels(gauss, ideal, local, best, grid, P_of)
