"""Tests of pifs.block_jacobian (§7.4–7.5 measurement helpers).

Every check is against an independent computation: numpy SVD / norms of an explicit
matrix, torch.autograd's reverse-mode Jacobian, brute-force loops, closed forms
(2/n! for a perfect ranking, log L for uniform attention) or diffusers' own scheduler.
"""
import itertools
import math

import numpy as np
import pytest
import torch

from pifs import block_jacobian as bs
from pifs.patches import patch_indices
from pifs.schedules import ddim_timesteps

torch.set_num_threads(1)

SHAPE = (3, 4, 4)  # n = 48, patches 2×2 → M = 4, n_k = 12
IDX = patch_indices(SHAPE, 2)


def _block_matrix(seed=0):
    """A 48×48 float64 matrix whose diagonal blocks have well-separated top singular values."""
    rng = np.random.default_rng(seed)
    n, (M, nk) = 48, IDX.shape
    A = 0.05 * rng.standard_normal((n, n))
    for k in range(M):
        Q, _ = np.linalg.qr(rng.standard_normal((nk, nk)))
        R, _ = np.linalg.qr(rng.standard_normal((nk, nk)))
        s = np.r_[2.0 + k, np.linspace(0.9, 0.1, nk - 1)]
        A[np.ix_(IDX[k], IDX[k])] = Q @ np.diag(s) @ R.T
    return A


def _linmap(A):
    At = torch.as_tensor(A)
    return lambda x: (At @ x.reshape(-1)).reshape(x.shape)


def _blocks(A, ord):
    M = IDX.shape[0]
    return np.array([[np.linalg.norm(A[np.ix_(IDX[k], IDX[j])], ord) for j in range(M)] for k in range(M)])


# ----------------------------------------------------------------------------- indexing
def test_chebyshev_distances_brute_force():
    for rows, cols in [(4, 4), (2, 3)]:
        D = bs.chebyshev_distances((rows, cols))
        for k, j in itertools.product(range(rows * cols), repeat=2):
            assert D[k, j] == max(abs(k // cols - j // cols), abs(k % cols - j % cols))
    with pytest.raises(ValueError):
        bs.chebyshev_distances((0, 4))
    with pytest.raises(ValueError):
        bs.chebyshev_distances("ab")


def test_chain_indices_match_diffusers():
    from diffusers import DDIMScheduler

    sch = DDIMScheduler(num_train_timesteps=1000)
    sch.set_timesteps(50)
    taus = [int(t) for t in sch.timesteps]
    assert taus == list(bs.DDIM50_PAPER_T)
    assert list(ddim_timesteps(50, 1000)) == sorted(t + 1 for t in taus)
    assert bs.paper_t_to_index(980) == 981
    with pytest.raises(ValueError):
        bs.paper_t_to_index(-1)
    with pytest.raises(TypeError):
        bs.paper_t_to_index(1.5)


# ----------------------------------------------------------------------------- power iteration
def test_power_iteration_lower_bounds_and_converges():
    from pifs.jacobian import spectral_norm

    a, b_ = np.random.default_rng(5).standard_normal((2, 48))
    A = _block_matrix(1) + 8.0 * np.outer(a / np.linalg.norm(a), b_ / np.linalg.norm(b_))  # a dominant direction
    f = _linmap(A)
    x = torch.zeros(48, dtype=torch.float64)
    smax = np.linalg.norm(A, 2)
    sig, hist, u = bs.power_iteration(f, x, 200, seed=3)
    assert np.all(hist <= smax * (1 + 1e-12))
    assert sig == pytest.approx(smax, rel=1e-8)
    assert float(u.norm()) == pytest.approx(1.0)
    # same recursion as the toolkit's power iteration from the same start
    u0 = torch.randn(48, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    a = bs.power_iteration(f, x, 5, u0=u0)[0]
    ref = spectral_norm(f, x, iters=5, u0=u0)
    assert a == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError):
        bs.power_iteration(f, x, 0)
    with pytest.raises(ValueError):
        bs.power_iteration(f, x, 3, u0=torch.zeros(48, dtype=torch.float64))


# ----------------------------------------------------------------------------- one point, linear maps
def test_measure_step_dense_equals_numpy():
    A = _block_matrix(2)
    rng = np.random.default_rng(0)
    V = rng.standard_normal(IDX.shape)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    m = bs.measure_step(_linmap(A), torch.zeros(SHAPE, dtype=torch.float64), IDX, V, method="dense", k_pi=50)
    np.testing.assert_allclose(m.block_op, _blocks(A, 2), rtol=1e-10)
    np.testing.assert_allclose(m.block_fro, _blocks(A, "fro"), rtol=1e-10)
    assert m.kappa_exact == pytest.approx(np.linalg.norm(A, 2), rel=1e-10)
    assert m.kappa <= m.kappa_exact * (1 + 1e-12)
    ray = [V[k] @ A[np.ix_(IDX[k], IDX[k])] @ V[k] for k in range(4)]
    np.testing.assert_allclose(m.rayleigh, ray, rtol=1e-10)
    off = _blocks(A, 2) - np.diag(np.diag(_blocks(A, 2)))
    np.testing.assert_allclose(m.C, off.sum(1), rtol=1e-10)
    assert m.delta_cross == pytest.approx(off.sum(1).max())
    assert m.kappa_diag == pytest.approx(np.diag(_blocks(A, 2)).max())


def test_measure_step_sketch_bounds_and_estimates():
    A = _block_matrix(3)
    f = _linmap(A)
    x = torch.zeros(SHAPE, dtype=torch.float64)
    rng = np.random.default_rng(1)
    V = rng.standard_normal(IDX.shape)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    op, fro = _blocks(A, 2), _blocks(A, "fro")
    m = bs.measure_step(f, x, IDX, V, method="sketch", k_pi=3, k_diag=2, n_probes=3, seed=0)
    assert np.all(m.block_op_lo <= op * (1 + 1e-10))          # certified lower bounds
    assert np.all(m.C_lo <= (op - np.diag(np.diag(op))).sum(1) * (1 + 1e-10))
    ray = [V[k] @ A[np.ix_(IDX[k], IDX[k])] @ V[k] for k in range(4)]
    np.testing.assert_allclose(m.rayleigh, ray, rtol=1e-10)   # eq. (32) exactly
    assert m.n_jvp == 3 + 4 * 2 + 4 * 3 and m.n_vjp == 3 + 4 * 2
    # diagonal power iteration converges to the block norms (separated top singular values)
    m2 = bs.measure_step(f, x, IDX, V, method="sketch", k_pi=1, k_diag=60, n_probes=0)
    np.testing.assert_allclose(m2.diag_op, np.diag(op), rtol=1e-8)
    # Frobenius estimate: E‖Aω‖² = ‖A‖_F², many probes → within a few per cent
    m3 = bs.measure_step(f, x, IDX, None, method="sketch", k_pi=1, k_diag=1, n_probes=3000, seed=4)
    np.testing.assert_allclose(m3.block_fro, fro, rtol=0.06)
    assert np.isnan(m3.rayleigh).all()


def test_measure_step_rejects_bad_input():
    f = _linmap(_block_matrix(0))
    x = torch.zeros(SHAPE, dtype=torch.float64)
    with pytest.raises(ValueError):
        bs.measure_step(f, x, IDX, method="svd")
    with pytest.raises(ValueError):
        bs.measure_step(f, x, IDX[:2])
    with pytest.raises(ValueError):
        bs.measure_step(f, x, IDX, np.ones((4, 5)))
    with pytest.raises(ValueError):
        bs.measure_step(f, x, IDX, k_diag=0)
    with pytest.raises(TypeError):
        bs.measure_step(f, np.zeros(SHAPE), IDX)


# ----------------------------------------------------------------------------- a network
@pytest.fixture(scope="module")
def tiny():
    from pifs.models import build_small_unet, ddpm_alpha_bar
    from pifs.scores import DiffusersScore

    unet = build_small_unet(0, sample_size=8, block_out_channels=(8, 16, 16), norm_num_groups=4)
    return unet, DiffusersScore(unet, ddpm_alpha_bar())


def test_dense_and_sketch_on_a_unet_against_autograd(tiny):
    from pifs.ddim import step_fn

    _, model = tiny
    f = step_fn(model, 201, 181)
    x = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(0))
    idx = patch_indices((3, 8, 8), 4)
    J = torch.autograd.functional.jacobian(lambda z: f(z.reshape(3, 8, 8)).reshape(-1), x.reshape(-1)).double().numpy()
    M = idx.shape[0]
    op = np.array([[np.linalg.norm(J[np.ix_(idx[k], idx[j])], 2) for j in range(M)] for k in range(M)])
    m = bs.measure_step(f, x, idx, method="dense", k_pi=5)
    np.testing.assert_allclose(m.block_op, op, rtol=2e-3, atol=1e-6)
    assert m.kappa_exact == pytest.approx(np.linalg.norm(J, 2), rel=2e-3)
    assert m.expand == pytest.approx(f.expand) and m.b == pytest.approx(f.b) and (m.t, m.t_prev) == (201, 181)
    s = bs.measure_step(f, x, idx, method="sketch", k_pi=3, k_diag=2, n_probes=2)
    assert np.all(s.block_op_lo <= op * (1 + 1e-3) + 1e-6)
    assert s.kappa <= np.linalg.norm(J, 2) * (1 + 1e-3)


def test_attention_entropy_uniform_is_log_L(tiny):
    unet, model = tiny
    import copy

    u2 = copy.deepcopy(unet)
    from pifs.models import attention_modules
    from pifs.scores import DiffusersScore

    for mod in attention_modules(u2).values():
        torch.nn.init.zeros_(mod.to_q.weight)
        if mod.to_q.bias is not None:
            torch.nn.init.zeros_(mod.to_q.bias)
    m2 = DiffusersScore(u2, model.alpha_bar)
    H = bs.attention_entropies(u2, m2, torch.randn(2, 3, 8, 8), 500)
    assert H
    for h, L in H.values():
        assert h == pytest.approx(math.log(L), abs=1e-5)


def test_study_trajectory_cache_and_s_hat(tiny):
    from pifs.ddim import ddim_chain

    _, model = tiny
    chain = np.array([1, 201, 401, 601, 801])
    idx = patch_indices((3, 8, 8), 4)
    st = bs.JacobianStudy(model, chain, [801, 201], [3], idx, shape=(3, 8, 8), k_pi=2, k_diag=1, n_probes=1, k_chain=1)
    st.run()
    with torch.no_grad():
        _, tr = ddim_chain(model, torch.randn((1, 3, 8, 8), generator=torch.Generator().manual_seed(3)), chain,
                           return_trajectory=True)
    torch.testing.assert_close(st.trajectory(3), tr[:, 0])
    torch.testing.assert_close(st.point(3, 401), tr[2, 0])
    assert st.t_prev(201) == 1 and st.t_prev(1) == 0
    m = st.get(3, 201)
    st.run()
    assert st.get(3, 201) is m                                # cached, not recomputed
    assert st.s_hat(3) == pytest.approx(np.prod(list(st.chain_kappa[3].values())))
    assert len(st.frame()) == 2
    with pytest.raises(ValueError):
        bs.JacobianStudy(model, chain, [300], [1], idx, shape=(3, 8, 8))


# ----------------------------------------------------------------------------- tables
def test_coupling_by_distance_brute_force():
    rng = np.random.default_rng(0)
    D = bs.chebyshev_distances((4, 4))
    N = rng.random((3, 16, 16))
    out = bs.coupling_by_distance(N, D)
    for d in (1, 2, 3):
        vals = [0.5 * (N[s, k, j] + N[s, j, k]) for s in range(3) for k in range(16) for j in range(k + 1, 16)
                if D[k, j] == d]
        assert out[d][0] == pytest.approx(np.mean(vals))
        assert out[d][1] == pytest.approx(np.std(vals))
        assert out[d][2] == len(vals)
    with pytest.raises(ValueError):
        bs.coupling_by_distance(N[:, :4, :4], D)


def test_pc_slack():
    np.testing.assert_allclose(bs.pc_slack([0.9, 1.1], [0.05, 0.0]), [0.05, -0.1])
    with pytest.raises(ValueError):
        bs.pc_slack([1.0, 1.0], [0.1])


def test_spearman_exact_permutation():
    from scipy import stats

    rho, p = bs.spearman_exact_permutation(np.arange(8.0), -np.arange(8.0))
    assert rho == pytest.approx(-1.0)
    assert p == pytest.approx(2 / math.factorial(8))
    assert bs.spearman_exact_permutation(np.arange(8.0), np.arange(8.0), "greater")[1] == pytest.approx(1 / math.factorial(8))
    x, y = np.random.default_rng(2).random((2, 6))
    rho, p = bs.spearman_exact_permutation(x, y)
    r0 = stats.spearmanr(x, y).statistic
    null = [stats.spearmanr(x, y[list(q)]).statistic for q in itertools.permutations(range(6))]
    assert rho == pytest.approx(r0)
    assert p == pytest.approx(np.mean(np.abs(null) >= abs(r0) - 1e-12))
    with pytest.raises(ValueError):
        bs.spearman_exact_permutation([1, 2], [2, 1])
    with pytest.raises(ValueError):
        bs.spearman_exact_permutation(x, y, "both")
