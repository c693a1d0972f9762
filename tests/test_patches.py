"""pifs.patches: the partition against explicit slicing, covariances against numpy.cov,
spectra against a synthetic image set whose sample covariance is known exactly."""
import numpy as np
import pytest
import torch

from pifs import patches as P


def sliced_patches(x, p):
    """(N, M, n_k) by explicit slicing: tiles row-major, each flattened channel-major."""
    N, C, H, W = x.shape
    out = []
    for r in range(H // p):
        for c in range(W // p):
            out.append(x[:, :, r * p:(r + 1) * p, c * p:(c + 1) * p].reshape(N, C * p * p))
    return np.stack(out, axis=1)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    base = rng.uniform(-1, 1, size=(60, 3, 8, 12))
    # add correlated structure so covariances are not near-diagonal
    return np.clip(base + 0.5 * base.mean(axis=1, keepdims=True), -1, 1)


# -- the partition (existing functions) --------------------------------------------------------


@pytest.mark.parametrize("p", [1, 2, 4])
def test_to_patches_matches_slicing_and_roundtrips(images, p):
    pt = P.to_patches(images, p)
    np.testing.assert_array_equal(pt, sliced_patches(images, p))
    np.testing.assert_array_equal(P.from_patches(pt, images.shape[1:]), images)
    xt = torch.from_numpy(images)
    np.testing.assert_array_equal(P.to_patches(xt, p).numpy(), pt)
    np.testing.assert_array_equal(P.from_patches(P.to_patches(xt, p), images.shape[1:]).numpy(), images)


def test_patch_indices_cover_image_once():
    idx = P.patch_indices((3, 32, 32), 8)
    assert idx.shape == (16, 192)
    np.testing.assert_array_equal(np.sort(idx.ravel()), np.arange(3 * 32 * 32))


# -- covariances -------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [2, 4])
def test_patch_covariances_match_numpy_cov(images, p):
    cov = P.patch_covariances(images, p, chunk_size=7)  # chunks that do not divide N
    sl = sliced_patches(images, p)
    assert cov.shape == (sl.shape[1], sl.shape[2], sl.shape[2]) and cov.dtype == np.float64
    for k in range(sl.shape[1]):
        np.testing.assert_allclose(cov[k], np.cov(sl[:, k, :], rowvar=False), rtol=1e-12, atol=1e-14)


def test_patch_covariances_torch_float32_and_chunking(images):
    ref = P.patch_covariances(images, 4)
    x32 = torch.from_numpy(images.astype(np.float32))
    got = P.patch_covariances(x32, 4, chunk_size=1)
    # float32 inputs, float64 accumulation: equal to the float64 result on the rounded data
    np.testing.assert_allclose(got, P.patch_covariances(images.astype(np.float32).astype(np.float64), 4),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_covariance_is_shift_invariant_and_stable():
    # a large common offset must not destroy precision (two-pass centring)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 1, 4, 4)) * 1e-3
    a = P.patch_covariances(x, 2)
    b = P.patch_covariances(x + 1e3, 2)
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-16)


# -- spectra on an image set with exactly known patch covariance ------------------------------


def known_block_covariance_images(N=400, C=2, H=8, W=8, p=4, seed=3):
    """Images whose per-patch *sample* covariance is exactly Q_k diag(μ_k) Q_kᵀ.

    For each patch, Z (N, n_k) is centred and whitened so that Zᵀ Z / (N − 1) = I exactly,
    then mapped through Q_k diag(√μ_k); the patches are written into the images by slicing.
    """
    rng = np.random.default_rng(seed)
    nk, M = C * p * p, (H // p) * (W // p)
    mus, Qs = [], []
    x = np.empty((N, C, H, W))
    k = 0
    for r in range(H // p):
        for c in range(W // p):
            mu = np.sort(rng.uniform(0.01, 1.0, nk))[::-1] * (k + 1.5)
            mu[0] = mu[1] * 1.5 + 0.1  # a clear gap: well-defined top eigenvector
            Q, _ = np.linalg.qr(rng.normal(size=(nk, nk)))
            Z = rng.normal(size=(N, nk))
            Z -= Z.mean(0)
            L = np.linalg.cholesky(Z.T @ Z / (N - 1))
            Z = np.linalg.solve(L, Z.T).T  # now Zᵀ Z/(N−1) = I
            patches = Z @ np.diag(np.sqrt(mu)) @ Q.T  # sample covariance Q diag(μ) Qᵀ
            x[:, :, r * p:(r + 1) * p, c * p:(c + 1) * p] = patches.reshape(N, C, p, p)
            mus.append(mu)
            Qs.append(Q)
            k += 1
    assert k == M
    return x, np.array(mus), np.array(Qs)


def test_spectra_and_top_eigenpairs_on_known_covariance():
    x, mus, Qs = known_block_covariance_images()
    spec = P.patch_spectra(x, 4)
    np.testing.assert_allclose(spec, mus, rtol=1e-9, atol=1e-12)
    lam, vec = P.patch_top_eigenvalues(x, 4, return_vectors=True)
    np.testing.assert_allclose(lam, mus[:, 0], rtol=1e-10)
    assert vec.shape == (mus.shape[0], mus.shape[1])
    for k in range(len(lam)):
        q = Qs[k][:, 0]
        q = q * np.sign(q[np.argmax(np.abs(q))])  # the documented sign convention
        np.testing.assert_allclose(vec[k], q, atol=1e-8)
        assert np.linalg.norm(vec[k]) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(P.patch_top_eigenvalues(x, 4), lam)
    # the sign does not depend on the sign of the data
    np.testing.assert_allclose(P.patch_top_eigenvalues(-x, 4, return_vectors=True)[1], vec, atol=1e-10)


def test_spectra_descending_and_psd(images):
    spec = P.patch_spectra(images, 4)
    assert (np.diff(spec, axis=1) <= 1e-15).all()
    assert spec.min() > -1e-12


def test_uncorrelated_pixels_have_known_top_eigenvalue():
    # independent pixels with per-channel variance s_c²: Σ_k = diag; the top eigenvalue is max s_c²
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20000, 3, 4, 4)) * np.array([0.1, 0.3, 0.2])[None, :, None, None]
    lam = P.patch_top_eigenvalues(x, 2)
    # max of 4 sample variances of 0.09 (each with sd 0.09·√(2/N)): within a few % of 0.09
    np.testing.assert_allclose(lam, 0.09, rtol=0.05)


# -- errors ------------------------------------------------------------------------------------


def test_errors():
    x = np.zeros((5, 3, 32, 32))
    with pytest.raises(ValueError, match="patch_size"):
        P.patch_covariances(x, 5)
    with pytest.raises(ValueError, match="patch_size"):
        P.patch_top_eigenvalues(x, 0)
    with pytest.raises(ValueError, match="images"):
        P.patch_covariances(np.zeros((3, 32, 32)), 8)
    with pytest.raises(ValueError, match="N >= 2"):
        P.patch_spectra(np.zeros((1, 3, 32, 32)), 8)
    with pytest.raises(TypeError, match="uint8"):
        P.patch_covariances(np.zeros((5, 3, 32, 32), dtype=np.uint8), 8)
    with pytest.raises(TypeError, match="images"):
        P.patch_covariances(torch.zeros((5, 3, 32, 32), dtype=torch.int64), 8)
    bad = np.zeros((5, 3, 8, 8))
    bad[2, 1, 3, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        P.patch_covariances(bad, 4)
    with pytest.raises(ValueError, match="chunk_size"):
        P.patch_covariances(np.zeros((5, 3, 8, 8)), 4, chunk_size=0)
