"""pifs.jacobian against closed-form Jacobians of the exact models, numpy SVD and brute force."""
import numpy as np
import pytest
import torch

from pifs import geometry, patches, schedules
from pifs import jacobian as jac
from pifs.ddim import step_fn
from pifs.scores import DiffusersScore, EmpiricalScore, GaussianScore, tiny_unet

torch.set_num_threads(1)
F64 = torch.float64
AB = schedules.linear(1000)
IDX = patches.patch_indices((3, 4, 4), 2)  # M = 4 patches of n_k = 12, n = 48


def _linear_map(A):
    return lambda z: (A @ z.reshape(-1)).reshape(z.shape)


def _brute_block_norms(A, idx, ord):
    M = idx.shape[0]
    out = np.zeros((M, M))
    for k in range(M):
        for j in range(M):
            blk = A[np.ix_(idx[k], idx[j])]
            out[k, j] = np.linalg.norm(blk, 2 if ord == "op" else "fro")
    return out


def test_dense_jacobian_equals_closed_form_of_exact_models():
    gen = torch.Generator().manual_seed(0)
    data = torch.rand(30, 3, 4, 4, generator=gen, dtype=F64) * 2 - 1
    m = EmpiricalScore(data, AB)
    x = torch.randn(3, 4, 4, generator=gen, dtype=F64)
    t = 400
    f = step_fn(m, t)
    Jref = f.expand * torch.eye(48, dtype=F64) + f.b * m.jacobian(x[None], t)[0]
    for chunk in (None, 7):
        torch.testing.assert_close(jac.dense_jacobian(f, x, chunk=chunk), Jref, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(jac.dense_jacobian(f, x, chunk=20, mode="vjp"), Jref, rtol=1e-9, atol=1e-11)
    with pytest.raises(ValueError, match="chunk"):
        jac.dense_jacobian(f, x, chunk=0)


def test_spectral_norm_converges_to_svd():
    gen = torch.Generator().manual_seed(1)
    A = torch.randn(48, 48, generator=gen, dtype=F64)
    f = _linear_map(A)
    x = torch.zeros(3, 4, 4, dtype=F64)
    s_np = np.linalg.svd(A.numpy(), compute_uv=False)
    assert jac.exact_spectral_norm(f, x) == pytest.approx(s_np[0], rel=1e-12)
    est, hist = jac.spectral_norm(f, x, iters=300, seed=0, return_history=True)
    assert hist.shape == (300,)
    assert np.all(hist <= s_np[0] * (1 + 1e-12))  # every iterate is a lower bound
    assert np.all(np.diff(hist) >= -1e-10 * s_np[0])  # monotone for a fixed linear map (Rayleigh quotients of JᵀJ)
    gap = (s_np[1] / s_np[0]) ** 2
    assert est == pytest.approx(s_np[0], rel=max(1e-8, 4 * gap ** 300))


def test_spectral_norm_of_gaussian_step_matches_expansion_function():
    # Σ = diag(λ): J Φ_t = diag(f_t(λ_i)), ‖J‖ = max f_t(λ) (Theorem 17, closed form in pifs.geometry)
    lam = np.linspace(0.02, 4.0, 48)
    m = GaussianScore(torch.diag(torch.as_tensor(lam)), AB)
    t = 100
    f = step_fn(m, t)
    exact = geometry.expansion_function(lam, AB)[:, t - 1].max()
    assert jac.exact_spectral_norm(f, torch.zeros(48, dtype=F64)) == pytest.approx(exact, rel=1e-12)


def test_block_norms_brute_force_and_power():
    gen = torch.Generator().manual_seed(2)
    A = torch.randn(48, 48, generator=gen, dtype=F64)
    for ord in ("op", "fro"):
        np.testing.assert_allclose(jac.block_norms(A, IDX, ord).numpy(), _brute_block_norms(A.numpy(), IDX, ord), rtol=1e-12)
    est = jac.block_norms_power(_linear_map(A), torch.zeros(3, 4, 4, dtype=F64), IDX, iters=200, chunk=5)
    ref = _brute_block_norms(A.numpy(), IDX, "op")
    assert np.all(est.numpy() <= ref * (1 + 1e-12))
    np.testing.assert_allclose(est.numpy(), ref, rtol=1e-5)
    with pytest.raises(ValueError, match="patch_idx"):
        jac.block_norms(A, IDX[:, :6])
    with pytest.raises(ValueError, match="ord"):
        jac.block_norms(A, IDX, "nuc")


def test_block_decomposition_block_diagonal_gaussian():
    # Σ_k = λ_k I per patch: [J Φ_t]_kk = f_t(λ_k) I, off-diagonal blocks 0 (Theorem 17)
    lam = np.array([0.05, 0.4, 1.5, 6.0])
    blocks = torch.stack([float(l) * torch.eye(12, dtype=F64) for l in lam])
    m = GaussianScore((blocks, IDX), AB)
    t = 150
    f = step_fn(m, t)
    bd = jac.block_decomposition(f, torch.zeros(3, 4, 4, dtype=F64), IDX, b_t=f.b)
    ft = geometry.expansion_function(lam, AB)[:, t - 1]
    np.testing.assert_allclose(bd.diag.numpy(), ft, rtol=1e-12)
    assert bd.delta_cross == 0.0 and bd.kappa_diag == pytest.approx(ft.max(), rel=1e-12)
    assert bd.kappa_pc == pytest.approx(ft.max(), rel=1e-12)
    assert bool(bd.violating[3]) == (ft[3] >= 1)


def test_block_decomposition_definitions_on_a_matrix():
    gen = torch.Generator().manual_seed(3)
    A = 0.1 * torch.randn(48, 48, generator=gen, dtype=F64)
    bd = jac.block_decomposition(A, patch_idx=IDX, b_t=-0.5)
    ref = _brute_block_norms(A.numpy(), IDX, "op")
    C = ref.sum(1) - np.diag(ref)
    assert bd.kappa_diag == pytest.approx(np.diag(ref).max(), rel=1e-12)
    assert bd.delta_cross == pytest.approx(C.max(), rel=1e-12)
    assert bd.kappa_pc == pytest.approx(np.diag(ref).max() + C.max(), rel=1e-12)
    assert bd.kappa_pc_rowmax == pytest.approx((np.diag(ref) + C).max(), rel=1e-12)
    np.testing.assert_allclose(bd.C_score.numpy(), C / 0.5, rtol=1e-12)
    bp = jac.block_decomposition(_linear_map(A), torch.zeros(48, dtype=F64), IDX, method="power", iters=150)
    assert bp.kappa_pc == pytest.approx(bd.kappa_pc, rel=1e-4)


def test_block_max_lipschitz_bound_theorem9():
    # ‖Φ(x) − Φ(y)‖_{∞,M} ≤ κ_pc ‖x − y‖_{∞,M} for an affine Φ (exact: J constant)
    gen = torch.Generator().manual_seed(4)
    A = 0.2 * torch.randn(48, 48, generator=gen, dtype=F64)
    bd = jac.block_decomposition(A, patch_idx=IDX)
    X, Y = torch.randn(200, 48, generator=gen, dtype=F64), torch.randn(200, 48, generator=gen, dtype=F64)
    ratio = jac.block_max_norm((X - Y) @ A.T, IDX) / jac.block_max_norm(X - Y, IDX)
    assert float(ratio.max()) <= bd.kappa_pc_rowmax * (1 + 1e-12) <= bd.kappa_pc * (1 + 1e-12)


def test_rayleigh_quotient():
    gen = torch.Generator().manual_seed(5)
    A = torch.randn(48, 48, generator=gen, dtype=F64)
    V = torch.randn(6, 3, 4, 4, generator=gen, dtype=F64)
    q = jac.rayleigh_quotient(_linear_map(A), torch.zeros(3, 4, 4, dtype=F64), V)
    Vf = V.reshape(6, -1)
    ref = torch.einsum("ki,ij,kj->k", Vf, A, Vf) / (Vf * Vf).sum(1)
    torch.testing.assert_close(q, ref, rtol=1e-12, atol=1e-12)
    assert jac.rayleigh_quotient(_linear_map(A), torch.zeros(48, dtype=F64), Vf[0]).shape == ()
    with pytest.raises(ValueError, match="v"):
        jac.rayleigh_quotient(_linear_map(A), torch.zeros(48, dtype=F64), torch.zeros(48, dtype=F64))


@pytest.mark.parametrize("mode", ["jvp", "vjp"])
def test_collage_regulariser_unbiased_and_differentiable(mode):
    # f(x) = A x per sample: Σ_{k≠j}‖A_kj‖_F² exactly; d/dA of it = 2 A_off (A with diagonal blocks zeroed)
    gen = torch.Generator().manual_seed(6)
    A0 = torch.randn(48, 48, generator=gen, dtype=F64)
    A = A0.clone().requires_grad_(True)
    f = lambda z: (z.reshape(z.shape[0], -1) @ A.T).reshape(z.shape)
    fro = _brute_block_norms(A0.numpy(), IDX, "fro") ** 2
    exact = fro.sum() - np.trace(fro)
    A_off = A0.clone()
    for k in range(IDX.shape[0]):
        A_off[np.ix_(IDX[k], IDX[k])] = 0
    x = torch.zeros(1024, 3, 4, 4, dtype=F64)  # 1024 samples × 16 probes = 16384 independent estimates
    est = jac.collage_regulariser(f, x, IDX, n_probes=16, generator=torch.Generator().manual_seed(7), mode=mode)
    # per-estimate relative sd ≲ 1.5 (Gaussian quadratic form over random splits); 16384 draws → ≈ 1.2 %; allow 5σ
    assert abs(float(est.detach()) - exact) <= 0.06 * exact
    est.backward()
    # the gradient estimate's relative Frobenius error is ≈ √(n / draws) ≈ 0.05 here
    rel = float((A.grad - 2 * A_off).norm() / (2 * A_off).norm())
    assert rel < 0.12
    # block-diagonal map: the estimate is exactly 0 for every probe
    Bd = A0 - A_off
    z = jac.collage_regulariser(lambda y: (y.reshape(y.shape[0], -1) @ Bd.T).reshape(y.shape), x[:4], IDX, mode=mode)
    assert float(z) == 0.0


def test_collage_regulariser_backpropagates_through_a_unet():
    unet = tiny_unet(sample_size=8, channels=(8, 16), attention=True, seed=0)
    model = DiffusersScore(unet, AB)
    idx = patches.patch_indices((3, 8, 8), 4)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([300, 20])  # per-sample timesteps, as a trainer passes them
    loss = jac.collage_regulariser(lambda z: model(z, t), x, idx, generator=torch.Generator().manual_seed(1))
    loss.backward()
    grads = [p.grad for p in unet.parameters() if p.grad is not None]
    assert float(loss) > 0 and len(grads) > 0 and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
