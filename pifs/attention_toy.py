"""A single-head attention + token-wise feed-forward layer on patch tokens (Theorem 23, eq. 42).

The score network of Theorem 23 is ε̂(p) = FF(A(p) W_V p) without residual
connections, where p = (p_1, ..., p_M) ∈ R^n, n = M n_k, are patch tokens,

    A_kj(p) = softmax_j( (W_Q p_k)ᵀ (W_K p_j) / (τ √d) ),          p'_k = Σ_j A_kj W_V p_j   (eq. 42)

and FF acts token-wise, FF(p')_k = W_2 tanh(W_1 p'_k + c_1) + c_2, so its
Jacobian is block-diagonal with ‖[J FF]_kk‖_op ≤ L_ff := ‖W_2‖_op ‖W_1‖_op
(tanh is 1-Lipschitz). τ is a softmax temperature (τ = 1 is eq. 42; τ → 0 is
the hard-attention limit of Theorem 23(d)).

Token layout: a flat input x of shape (B, n) holds token k at positions
k·n_k .. (k+1)·n_k − 1, i.e. ``patch_idx = arange(n).reshape(M, n_k)``
(:meth:`PatchAttentionLayer.patch_idx`). This is a toy for the book, not a
trained model; float64 throughout by default.
"""
from __future__ import annotations

import numbers

import numpy as np
import torch

__all__ = ["PatchAttentionLayer", "block_op_norms", "theorem23_bounds"]


class PatchAttentionLayer:
    """ε̂(p) = FF(A(p) W_V p) on M tokens of size n_k (Theorem 23).

    Parameters
    ----------
    W_Q, W_K : torch.Tensor, shape (d, n_k)
        Query / key projections.
    W_V : torch.Tensor, shape (n_k, n_k)
        Value projection (applied per token).
    W1 : torch.Tensor, shape (h, n_k); c1 : shape (h,)
    W2 : torch.Tensor, shape (n_k, h); c2 : shape (n_k,)
        Token-wise feed-forward FF(y) = W2 tanh(W1 y + c1) + c2.
    M : int
        Number of tokens (patches).
    temperature : float, > 0
        Softmax temperature τ (scores divided by τ √d).
    residual : bool
        If True, FF is applied to p + A W_V p (a within-block residual, remark 2
        after Theorem 23) instead of A W_V p.

    Raises
    ------
    ValueError
        For inconsistent shapes, M < 1 or τ ≤ 0.
    TypeError
        If a weight is not a floating torch tensor.
    """

    def __init__(self, W_Q, W_K, W_V, W1, c1, W2, c2, M, temperature=1.0, residual=False):
        for name, w in (("W_Q", W_Q), ("W_K", W_K), ("W_V", W_V), ("W1", W1), ("c1", c1), ("W2", W2), ("c2", c2)):
            if not isinstance(w, torch.Tensor) or not w.dtype.is_floating_point:
                raise TypeError(f"{name}: expected a floating torch.Tensor, got {type(w).__name__}")
        d, nk = W_Q.shape
        h = W1.shape[0]
        shapes = {"W_K": (W_K, (d, nk)), "W_V": (W_V, (nk, nk)), "W1": (W1, (h, nk)), "c1": (c1, (h,)),
                  "W2": (W2, (nk, h)), "c2": (c2, (nk,))}
        for name, (w, shp) in shapes.items():
            if tuple(w.shape) != shp:
                raise ValueError(f"{name}: expected shape {shp}, got {tuple(w.shape)}")
        if isinstance(M, bool) or not isinstance(M, numbers.Integral) or M < 1:
            raise ValueError(f"M: expected a positive number of tokens, got {M!r}")
        if not float(temperature) > 0:
            raise ValueError(f"temperature: expected τ > 0, got {temperature!r}")
        self.W_Q, self.W_K, self.W_V, self.W1, self.c1, self.W2, self.c2 = W_Q, W_K, W_V, W1, c1, W2, c2
        self.M, self.n_k, self.d, self.n = int(M), nk, d, int(M) * nk
        self.temperature = float(temperature)
        self.residual = bool(residual)

    @classmethod
    def random(cls, M=4, n_k=3, d=2, hidden=8, seed=0, scale=1.0, dtype=torch.float64, **kw):
        """A layer with i.i.d. N(0, scale²/fan_in) weights (seeded); extra keywords go to the constructor."""
        g = torch.Generator().manual_seed(int(seed))

        def w(*shape):
            return torch.randn(*shape, generator=g, dtype=dtype) * scale / np.sqrt(shape[-1])

        return cls(w(d, n_k), w(d, n_k), w(n_k, n_k), w(hidden, n_k), w(hidden) * 0.1, w(n_k, hidden),
                   w(n_k) * 0.1, M, **kw)

    def with_temperature(self, temperature):
        """A copy with another softmax temperature τ."""
        return PatchAttentionLayer(self.W_Q, self.W_K, self.W_V, self.W1, self.c1, self.W2, self.c2, self.M,
                                   temperature, self.residual)

    @property
    def patch_idx(self) -> np.ndarray:
        """Flat positions of each token, int64 array of shape (M, n_k)."""
        return np.arange(self.n).reshape(self.M, self.n_k)

    def _tokens(self, x):
        if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
            raise TypeError("x: expected a floating torch.Tensor of shape (B, n)")
        if x.ndim != 2 or x.shape[1] != self.n:
            raise ValueError(f"x: expected shape (B, n) = (B, {self.n}), got {tuple(x.shape)}")
        return x.reshape(x.shape[0], self.M, self.n_k)

    def attention(self, x) -> torch.Tensor:
        """Attention weights A(p), shape (B, M, M), rows sum to 1 (eq. 42 with temperature τ)."""
        p = self._tokens(x)
        q = p @ self.W_Q.T
        k = p @ self.W_K.T
        z = q @ k.transpose(1, 2) / (self.temperature * np.sqrt(self.d))
        return torch.softmax(z, dim=-1)

    def attention_output(self, x) -> torch.Tensor:
        """p' = A(p) W_V p (eq. 42), flattened, shape (B, n)."""
        p = self._tokens(x)
        return (self.attention(x) @ (p @ self.W_V.T)).reshape(x.shape[0], self.n)

    def feedforward(self, y) -> torch.Tensor:
        """Token-wise FF(y)_k = W2 tanh(W1 y_k + c1) + c2, y of shape (B, n) → (B, n)."""
        yt = y.reshape(y.shape[0], self.M, self.n_k)
        return (torch.tanh(yt @ self.W1.T + self.c1) @ self.W2.T + self.c2).reshape(y.shape[0], self.n)

    def __call__(self, x, t=None):
        """ε̂(p) = FF(A W_V p) (or FF(p + A W_V p) when ``residual``); ``t`` is ignored."""
        y = self.attention_output(x)
        if self.residual:
            y = y + x
        return self.feedforward(y)

    def ff_lipschitz(self) -> float:
        """Global per-token Lipschitz bound L_ff = ‖W2‖_op ‖W1‖_op of FF (tanh is 1-Lipschitz)."""
        return float(torch.linalg.matrix_norm(self.W2, 2) * torch.linalg.matrix_norm(self.W1, 2))


def block_op_norms(J, patch_idx) -> np.ndarray:
    """Operator norms ‖J_kj‖_op of all patch blocks of a dense Jacobian.

    Parameters
    ----------
    J : array_like or torch.Tensor, shape (n, n)
    patch_idx : array_like of int, shape (M, n_k)

    Returns
    -------
    numpy.ndarray, float64, shape (M, M); entry (k, j) = largest singular value of block (k, j).
    """
    J = J.detach().cpu().numpy() if isinstance(J, torch.Tensor) else np.asarray(J, dtype=np.float64)
    idx = np.asarray(patch_idx)
    if J.ndim != 2 or J.shape[0] != J.shape[1] or idx.size != J.shape[0]:
        raise ValueError(f"J: expected a square (n, n) matrix with n = patch_idx.size = {idx.size}, got {J.shape}")
    M = idx.shape[0]
    blocks = np.stack([np.stack([J[np.ix_(idx[k], idx[j])] for j in range(M)]) for k in range(M)])
    return np.linalg.norm(blocks, ord=2, axis=(-2, -1))


def theorem23_bounds(layer: PatchAttentionLayer, x, b=1.0) -> dict:
    """Exact Jacobian blocks of ε̂ at one point and the right-hand sides of Theorem 23(a)–(c).

    Parameters
    ----------
    layer : PatchAttentionLayer
    x : torch.Tensor, shape (n,) or (1, n)
        One input p (float64 recommended).
    b : float
        The step coefficient b_t (only |b| enters (b)).

    Returns
    -------
    dict with numpy float64 entries
        ``J`` (n, n) dense Jacobian (autograd); ``blocks`` (M, M) block norms
        ‖[J ε̂]_kj‖_op; ``A`` (M, M); ``gradA`` (M, M) = ‖∇_x A_kℓ‖_2;
        ``L_ff`` (global bound) and ``L_ff_local`` (M,) = ‖[J FF]_kk‖_op at
        p' (the tightest admissible per-patch constants at this point);
        ``WV``; ``p_norm``; ``pk_norm`` (M,);
        ``rhs_a`` (M, M), ``rhs_c`` (M,) with the local constants;
        ``C`` (M,) = |b| Σ_{j≠k} blocks[k, j] (eq. 16 at x) and ``rhs_b`` the
        right-hand side of (40) evaluated at x with L_ff = max_k L_ff_local.
    """
    x = x.reshape(1, -1)
    J = torch.autograd.functional.jacobian(lambda z: layer(z.reshape(1, -1))[0], x[0])
    JA = torch.autograd.functional.jacobian(lambda z: layer.attention(z.reshape(1, -1))[0], x[0])  # (M, M, n)
    y = layer.attention_output(x)
    if layer.residual:
        y = y + x
    JF = torch.autograd.functional.jacobian(lambda z: layer.feedforward(z.reshape(1, -1))[0], y[0])
    idx = layer.patch_idx
    blocks = block_op_norms(J, idx)
    L_loc = np.diag(block_op_norms(JF, idx))
    A = layer.attention(x)[0].detach().numpy()
    gradA = torch.linalg.vector_norm(JA, dim=-1).detach().numpy()
    WV = float(torch.linalg.matrix_norm(layer.W_V, 2))
    p = x[0].detach().numpy()
    p_norm = float(np.linalg.norm(p))
    pk = np.linalg.norm(p.reshape(layer.M, layer.n_k), axis=1)
    rhs_a = L_loc[:, None] * (A * WV + p_norm * gradA * WV)
    rhs_c = L_loc * (np.diag(A) * WV + pk * np.diag(gradA) * WV)
    off = ~np.eye(layer.M, dtype=bool)
    C = abs(b) * (blocks * off).sum(1)
    rhs_b = abs(b) * L_loc.max() * (1 + p_norm * gradA.max()) * WV * (A * off).sum(1).max()
    return {"J": J.detach().numpy(), "blocks": blocks, "A": A, "gradA": gradA, "L_ff": layer.ff_lipschitz(),
            "L_ff_local": L_loc, "WV": WV, "p_norm": p_norm, "pk_norm": pk, "rhs_a": rhs_a, "rhs_c": rhs_c,
            "C": C, "rhs_b": rhs_b}
