"""Patch partition of images and per-patch covariance spectra (§3.2, §4.1, §7.2).

Convention: an image (C, H, W) is cut into p×p tiles; the patch index is
row-major, k = row · (W/p) + col, and each patch is flattened channel-major
(all of channel 0's p×p pixels row by row, then channel 1, ...) into
n_k = C·p·p values. A flat image vector is the row-major flattening of
(C, H, W) (``x.reshape(-1)``), as torch and numpy do.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "patch_indices",
    "to_patches",
    "from_patches",
    "patch_covariances",
    "patch_spectra",
    "patch_top_eigenvalues",
]


def _check(shape, patch_size):
    if len(shape) != 3:
        raise ValueError(f"shape: expected (C, H, W), got {tuple(shape)!r}")
    C, H, W = (int(s) for s in shape)
    p = int(patch_size)
    if p != patch_size or p < 1:
        raise ValueError(f"patch_size: expected a positive integer, got {patch_size!r}")
    if H % p or W % p:
        raise ValueError(f"patch_size: {p} does not divide the image size H×W = {H}×{W}")
    return C, H, W, p


def patch_indices(shape, patch_size) -> np.ndarray:
    """Flat indices of each patch in the flattened image.

    Parameters
    ----------
    shape : tuple (C, H, W)
    patch_size : int
        Side p of the square patches; must divide H and W.

    Returns
    -------
    numpy.ndarray, int64, shape (M, n_k)
        Row k lists the positions in ``x.reshape(-1)`` of patch k's values,
        channel-major; M = (H/p)(W/p), n_k = C p².

    Raises
    ------
    ValueError
        If ``patch_size`` does not divide H and W, or ``shape`` is not (C, H, W).
    """
    C, H, W, p = _check(shape, patch_size)
    flat = np.arange(C * H * W).reshape(C, H // p, p, W // p, p)
    return flat.transpose(1, 3, 0, 2, 4).reshape((H // p) * (W // p), C * p * p).astype(np.int64)


def to_patches(x, patch_size):
    """Cut images into patch vectors.

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor, shape (B, C, H, W)
    patch_size : int

    Returns
    -------
    same array type, shape (B, M, n_k), patches in the order of :func:`patch_indices`.
    """
    if x.ndim != 4:
        raise ValueError(f"x: expected shape (B, C, H, W), got {tuple(x.shape)}")
    B, C, H, W = x.shape
    _check((C, H, W), patch_size)
    idx = patch_indices((C, H, W), patch_size)
    flat = x.reshape(B, -1)
    if hasattr(flat, "index_select"):  # torch
        import torch

        return flat[:, torch.as_tensor(idx, device=flat.device)]
    return flat[:, idx]


def from_patches(patches, shape):
    """Inverse of :func:`to_patches`: (B, M, n_k) patch vectors → (B, C, H, W) images."""
    if patches.ndim != 3:
        raise ValueError(f"patches: expected shape (B, M, n_k), got {tuple(patches.shape)}")
    C, H, W = shape
    B, M, nk = patches.shape
    if nk % C:
        raise ValueError(f"patches: n_k = {nk} is not a multiple of C = {C}")
    p = int(round((nk // C) ** 0.5))
    idx = patch_indices((C, H, W), p)
    if idx.shape != (M, nk):
        raise ValueError(f"patches: shape {(M, nk)} does not match image {shape} with p = {p}")
    if hasattr(patches, "index_select"):
        import torch

        out = patches.new_zeros((B, C * H * W))
        out[:, torch.as_tensor(idx.reshape(-1), device=patches.device)] = patches.reshape(B, -1)
        return out.reshape(B, C, H, W)
    out = np.zeros((B, C * H * W), dtype=patches.dtype)
    out[:, idx.reshape(-1)] = patches.reshape(B, -1)
    return out.reshape(B, C, H, W)



# -- per-patch covariance spectra (§4.1 Theorem 17, §6.3 Table 2, §7.2) ---------------


def _as_float_images(images, name="images") -> np.ndarray:
    """Images (N, C, H, W) as a float numpy array (no copy when already numpy float)."""
    if hasattr(images, "detach") and hasattr(images, "cpu"):  # torch.Tensor
        if images.is_complex():
            raise TypeError(f"{name}: expected a real floating tensor, got dtype {images.dtype}")
        if not images.is_floating_point():
            raise TypeError(
                f"{name}: expected floating images in [-1, 1], got dtype {images.dtype} "
                "(map uint8 images with pifs.data.to_model_scale first)"
            )
        images = images.detach().cpu().numpy()
    x = np.asarray(images)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(
            f"{name}: expected floating images in [-1, 1], got dtype {x.dtype} "
            "(map uint8 images with pifs.data.to_model_scale first)"
        )
    if x.ndim != 4:
        raise ValueError(f"{name}: expected shape (N, C, H, W), got {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"{name}: need N >= 2 images to estimate a covariance, got N = {x.shape[0]}")
    return x


def patch_covariances(images, patch_size, *, chunk_size: int = 1024) -> np.ndarray:
    """Centred covariance matrix Σ_k of every patch position over a set of images.

    Σ_k = (1/(N−1)) Σ_i (x_i^(k) − x̄^(k)) (x_i^(k) − x̄^(k))ᵀ, with x_i^(k) the
    patch vector of image i at position k (:func:`to_patches` order: row-major
    patch index, channel-major flattening). Two passes over the images in
    chunks of ``chunk_size`` (mean, then centred outer products), accumulated
    in float64, so memory stays O(chunk · C·H·W + M n_k²) whatever N is.

    Parameters
    ----------
    images : numpy.ndarray or torch.Tensor, float, shape (N, C, H, W)
        Pixel scale [−1, 1] by convention (``pifs.data.to_model_scale``); the
        range is not enforced (synthetic Gaussian test data leave it), but the
        values are then in the units of the data given. N >= 2.
    patch_size : int
        Side p of the square patches; must divide H and W.
    chunk_size : int, >= 1
        Images per accumulation chunk.

    Returns
    -------
    numpy.ndarray, float64, shape (M, n_k, n_k)
        M = (H/p)(W/p), n_k = C p²; symmetric positive semi-definite; unbiased
        (divisor N − 1, as ``numpy.cov``).

    Raises
    ------
    TypeError
        If ``images`` is not a real floating array (e.g. uint8: scale it first).
    ValueError
        If ``images`` is not 4-D, has N < 2, contains NaN/inf, or ``patch_size``
        does not divide H and W; if ``chunk_size < 1``.

    References
    ----------
    Paper Theorem 17 (Σ_k, the patch covariance of the block-diagonal Gaussian
    surrogate), §7.1 (estimated from the CIFAR-10 training images).
    """
    x = _as_float_images(images)
    N, C, H, W = x.shape
    _check((C, H, W), patch_size)
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    cs = int(chunk_size)
    idx = patch_indices((C, H, W), patch_size)
    M, nk = idx.shape
    total = np.zeros((M, nk))
    for s in range(0, N, cs):
        blk = np.asarray(x[s : s + cs], dtype=np.float64).reshape(-1, C * H * W)
        if not np.isfinite(blk).all():
            raise ValueError(f"images: non-finite values among images {s}..{s + blk.shape[0] - 1}")
        total += blk[:, idx].sum(axis=0)
    mean = total / N
    cov = np.zeros((M, nk, nk))
    for s in range(0, N, cs):
        blk = np.asarray(x[s : s + cs], dtype=np.float64).reshape(-1, C * H * W)[:, idx] - mean
        cov += np.einsum("bmi,bmj->mij", blk, blk, optimize=True)
    cov /= N - 1
    return 0.5 * (cov + cov.transpose(0, 2, 1))


def _eigh(images, patch_size, chunk_size):
    cov = patch_covariances(images, patch_size, chunk_size=chunk_size)
    w, V = np.linalg.eigh(cov)  # ascending
    return w[:, ::-1], V[:, :, ::-1]


def patch_spectra(images, patch_size, *, chunk_size: int = 1024) -> np.ndarray:
    """All eigenvalues μ_{k,1} ≥ … ≥ μ_{k,n_k} of every patch covariance Σ_k.

    Parameters
    ----------
    images : numpy.ndarray or torch.Tensor, float, shape (N, C, H, W), N >= 2
        Pixel scale [−1, 1] (see :func:`patch_covariances`).
    patch_size : int
        Side p of the square patches; must divide H and W.
    chunk_size : int
        Images per accumulation chunk.

    Returns
    -------
    numpy.ndarray, float64, shape (M, n_k)
        Row k: the spectrum of Σ_k in descending order (μ_{k,1} = λ_k).
        Tiny negative round-off eigenvalues of a singular Σ_k are returned as
        computed (of order 1e-16 · λ_k), not clipped.

    Raises
    ------
    TypeError, ValueError
        As :func:`patch_covariances`.

    References
    ----------
    Paper Theorem 25 (the eigenvalues μ_{k,i} of Σ_k enter the Lyapunov spectrum).
    """
    return _eigh(images, patch_size, chunk_size)[0]


def patch_top_eigenvalues(images, patch_size, return_vectors: bool = False, *, chunk_size: int = 1024):
    """Leading patch variance λ_k = ‖Σ_k‖_op and its eigenvector v_k^(1).

    Parameters
    ----------
    images : numpy.ndarray or torch.Tensor, float, shape (N, C, H, W), N >= 2
        Pixel scale [−1, 1] (see :func:`patch_covariances`); on the CIFAR-10
        training set with p = 8 the paper reports λ_k ∈ [18.7, 44.4] (§7.2).
    patch_size : int
        Side p of the square patches; must divide H and W.
    return_vectors : bool
        Also return the leading unit eigenvectors.
    chunk_size : int
        Images per accumulation chunk.

    Returns
    -------
    lam : numpy.ndarray, float64, shape (M,)
        λ_k, patch index k row-major.
    vectors : numpy.ndarray, float64, shape (M, n_k), only if ``return_vectors``
        Unit vectors v_k^(1) in the channel-major patch coordinates of
        :func:`to_patches`, with the deterministic sign convention that the
        entry of largest absolute value (the first one on ties) is positive.

    Raises
    ------
    TypeError, ValueError
        As :func:`patch_covariances`.

    References
    ----------
    Paper Theorem 17 (λ_k := ‖Σ_k‖_op), §7.1–7.2 (measured on CIFAR-10; v_k^(1)
    is the direction of the suppression field S_k,t).
    """
    w, V = _eigh(images, patch_size, chunk_size)
    lam = w[:, 0].copy()
    if not return_vectors:
        return lam
    v = V[:, :, 0].copy()
    piv = np.abs(v).argmax(axis=1)
    sign = np.sign(v[np.arange(v.shape[0]), piv])
    sign[sign == 0] = 1.0
    return lam, v * sign[:, None]
