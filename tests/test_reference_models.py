"""pifs.reference_models and the exact-vs-estimator tools of pifs.block_jacobian, against autograd."""
import numpy as np
import pytest
import torch

from pifs import schedules
from pifs.block_jacobian import block_power_iteration, dense_step_measurement, exact_norm, matrix_power_iteration
from pifs.ddim import step_fn
from pifs.jacobian import dense_jacobian
from pifs.patches import patch_indices
from pifs.reference_models import (LocalScoreMachine, calibrate_locality, ddim_step_jacobian, gaussian_from_images,
                                   ideal_denoiser, memorisation_boundary, posterior_concentration, step_operator)

torch.set_num_threads(1)
AB = schedules.linear(1000)
G = torch.Generator().manual_seed(0)
X = torch.rand(7, 2, 5, 4, generator=G, dtype=torch.float64) * 2 - 1
x = torch.randn(2, 5, 4, generator=G, dtype=torch.float64) * 0.7


def _autograd(model, x, t):
    return torch.func.jacrev(lambda z: model(z[None], t)[0])(x).reshape(x.numel(), x.numel())


def _models():
    return {"gaussian": gaussian_from_images(X, AB), "ideal": ideal_denoiser(X, AB),
            "local3": LocalScoreMachine(X, AB, 3), "equiv3": LocalScoreMachine(X, AB, 3, equivariant=True)}


@pytest.mark.parametrize("name", ["gaussian", "ideal", "local3", "equiv3"])
@pytest.mark.parametrize("t", [40, 500])
def test_closed_form_jacobian_equals_autograd_and_ddim_step(name, t):
    m = _models()[name]
    J = m.jacobian(x[None], t)[0]
    Ja = _autograd(m, x, t)
    assert torch.allclose(J, Ja, rtol=1e-9, atol=1e-9 * float(Ja.abs().max()))
    Js = ddim_step_jacobian(m, x, t, t - 20)
    Jd = dense_jacobian(step_fn(m, t, t - 20), x)
    assert torch.allclose(Js, Jd, rtol=1e-9, atol=1e-10)
    op, sym = step_operator(m, x, t, t - 20)
    assert np.allclose(op.matmat(np.eye(x.numel())), Js.numpy(), atol=1e-10)
    assert abs(exact_norm(op, symmetric=sym) - float(torch.linalg.matrix_norm(Js, 2))) < 1e-9


@pytest.mark.parametrize("eq", [False, True])
def test_local_machine_jacobian_is_banded(eq):
    P = 3
    m = LocalScoreMachine(X, AB, P, equivariant=eq)
    J = m.jacobian(x[None], 300)[0].reshape(2, 5, 4, 2, 5, 4)
    h, w = np.meshgrid(np.arange(5), np.arange(4), indexing="ij")
    far = (np.abs(h[:, :, None, None] - h[None, None]) > P // 2) | (np.abs(w[:, :, None, None] - w[None, None]) > P // 2)
    far = torch.as_tensor(far)[None, :, :, None].expand(2, 5, 4, 2, 5, 4)
    assert float(J[far].abs().max()) == 0.0
    assert float(J[~far].abs().max()) > 0.0


def test_local_machine_with_whole_image_patch_is_ideal_denoiser():
    big = LocalScoreMachine(X, AB, 2 * 5 - 1)
    ideal = ideal_denoiser(X, AB)
    for t in (10, 300, 900):
        assert torch.allclose(big(x[None], t), ideal(x[None], t), atol=1e-12)
        assert torch.allclose(big.jacobian(x[None], t), ideal.jacobian(x[None], t), atol=1e-10)


def test_memorisation_boundary_two_points_closed_form():
    # data {+1, −1} in one dimension: from x_t = √ᾱ a + √v ε the weight of a is σ(z),
    # z = 2√ᾱ x_t / v  (logit difference of the two images); concentrated iff max w > 0.9 (N_eff < 1.5 follows).
    data = np.array([[1.0], [-1.0]])
    m = ideal_denoiser(data, AB)
    xs = torch.tensor([[0.3], [-2.0]], dtype=torch.float64)
    t = 500
    mw, ne = posterior_concentration(m, xs, t)
    z = 2 * np.sqrt(AB[t]) * xs[:, 0].numpy() / (1 - AB[t])
    w = 1 / (1 + np.exp(-np.abs(z)))
    assert np.allclose(mw, w) and np.allclose(ne, 1 / (w ** 2 + (1 - w) ** 2))
    chain = schedules.ddim_timesteps(50, 1000)
    per_t, summary = memorisation_boundary(m, chain, test_images=np.array([[1.0]]), n_points=1, seed=3)
    # closed form for the "test" source: same ε generator order as the function (noise first, then test ε)
    g = torch.Generator().manual_seed(3)
    torch.randn(1, 1, generator=g, dtype=torch.float64)
    eps = float(torch.randn(1, 1, generator=g, dtype=torch.float64))
    conc = []
    for t in chain:
        a = AB[t]
        xt = np.sqrt(a) * 1.0 + np.sqrt(1 - a) * eps
        zz = 2 * np.sqrt(a) * xt / (1 - a)
        ww = 1 / (1 + np.exp(-abs(zz)))
        conc.append(ww > 0.9 and 1 / (ww ** 2 + (1 - ww) ** 2) < 1.5)
    expect = max((int(t) for t, c in zip(chain, conc) if c), default=np.nan)
    assert summary.set_index("source").loc["test", "boundary_t"] == expect


def test_power_iteration_underestimates_the_exact_norm():
    rng = np.random.default_rng(1)
    U, _ = np.linalg.qr(rng.standard_normal((60, 60)))
    V, _ = np.linalg.qr(rng.standard_normal((60, 60)))
    s = np.linspace(1.0, 0.999, 60)  # clustered: the paper's high-noise situation
    A = (U * s) @ V.T
    assert abs(exact_norm(A) - 1.0) < 1e-12
    for K in (1, 5, 20):
        est = matrix_power_iteration(A, K, seed=2)
        assert np.all(est <= 1.0 + 1e-12) and 1.0 - est[-1] >= 0
    blocks = torch.as_tensor(np.stack([A, 2 * A]))
    est = block_power_iteration(blocks, 10).numpy()
    assert np.all(est <= np.array([1.0, 2.0]) + 1e-12)


def test_dense_step_measurement_exact_against_svd():
    rng = np.random.default_rng(0)
    J = np.eye(16) + 0.1 * rng.standard_normal((16, 16))
    idx = patch_indices((1, 4, 4), 2)
    m = dense_step_measurement(J, idx, k_pi=20, k_block=10, k_slack=30)
    assert abs(m["kappa_exact"] - np.linalg.norm(J, 2)) < 1e-12 and m["kappa_pi_bias"] >= -1e-12
    blk = np.array([[np.linalg.norm(J[np.ix_(a, b)], 2) for b in idx] for a in idx])
    assert np.allclose(m["block_op"], blk)
    assert np.all(m["block_pi"] <= blk + 1e-12)
    C = blk.sum(1) - np.diag(blk)
    assert np.allclose(m["slack"], 1 - np.diag(blk) - C)


def test_calibrate_locality_picks_the_true_scale():
    truth = LocalScoreMachine(X, AB, 3)  # a "network" that is the P = 3 machine itself
    imgs = X[:3] * 0.9
    best, grid = calibrate_locality(truth, imgs, [100, 400], [1, 3, 5], train_images=X)
    assert list(best.P) == [3, 3] and np.allclose(best.r2_median, 1.0)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="patch_size"):
        LocalScoreMachine(X, AB, 4)
    with pytest.raises(ValueError, match="images"):
        gaussian_from_images(np.zeros((3, 4)), AB)
    with pytest.raises(TypeError, match="model"):
        posterior_concentration(gaussian_from_images(X, AB), x[None], 10)
    with pytest.raises(ValueError, match="n_points"):
        memorisation_boundary(ideal_denoiser(X, AB), n_points=0)


# ----------------------------------------------------------------------------- fast exact routes (issue 12)
from pifs.reference_models import dense_step_jacobian, step_diag_blocks, step_norm  # noqa: E402

G8 = torch.Generator().manual_seed(5)
X8 = torch.rand(20, 3, 8, 8, generator=G8, dtype=torch.float64) * 2 - 1  # 20 images, n = 192
x8 = torch.randn(3, 8, 8, generator=G8, dtype=torch.float64) * 0.8
IDX8 = patch_indices((3, 8, 8), 4)


@pytest.mark.parametrize("P", [3, 5, 15])
@pytest.mark.parametrize("t", [30, 400, 950])
def test_fast_local_machine_jacobian_equals_autograd(P, t):
    m = LocalScoreMachine(X8, AB, P)
    Ja = _autograd(m, x8, t)  # independent: reverse-mode autodiff through the forward pass
    J = m.jacobian(x8[None], t)[0]  # matrix products over the training images
    assert torch.allclose(J, Ja, rtol=1e-9, atol=1e-9 * float(Ja.abs().max()))
    Js = dense_step_jacobian(m, x8, t, t - 20)
    Jd = dense_jacobian(step_fn(m, t, t - 20), x8).numpy()
    assert np.allclose(Js, Jd, rtol=1e-9, atol=1e-10)
    D = step_diag_blocks(m, x8, t, t - 20, IDX8)
    assert np.allclose(D, Jd[IDX8[:, :, None], IDX8[:, None, :]], atol=1e-10)
    assert abs(step_norm(m, x8, t, t - 20) - np.linalg.norm(Jd, 2)) < 1e-10


@pytest.mark.parametrize("name", ["gaussian", "ideal_few", "ideal_many"])
@pytest.mark.parametrize("t", [1, 21, 300, 981])
def test_closed_form_step_norms_equal_dense_svd(name, t):
    # ideal_few: 20 images < n = 192 (eigenvalue c0 of the null space enters); ideal_many: 300 > n
    data = X8 if name != "ideal_many" else torch.rand(300, 3, 8, 8, generator=torch.Generator().manual_seed(2),
                                                       dtype=torch.float64) * 2 - 1
    m = gaussian_from_images(data, AB) if name == "gaussian" else ideal_denoiser(data, AB)
    xt = np.sqrt(AB[t]) * data[3] + np.sqrt(1 - AB[t]) * x8  # a point near the data at noise level t
    tp = max(t - 20, 0)
    Jd = dense_jacobian(step_fn(m, t, tp), xt).numpy()  # autograd, independent of the closed forms
    assert abs(step_norm(m, xt, t, tp) - np.linalg.norm(Jd, 2)) < 1e-10 * max(1.0, np.linalg.norm(Jd, 2))
    assert np.allclose(dense_step_jacobian(m, xt, t, tp), Jd, atol=1e-10)
    assert np.allclose(step_diag_blocks(m, xt, t, tp, IDX8), Jd[IDX8[:, :, None], IDX8[:, None, :]], atol=1e-10)


def test_exact_norm_dense_fallback_on_a_clustered_spectrum():
    rng = np.random.default_rng(3)
    U, _ = np.linalg.qr(rng.standard_normal((120, 120)))
    V, _ = np.linalg.qr(rng.standard_normal((120, 120)))
    s = 1.0 + 1e-9 * np.arange(120)  # ARPACK cannot resolve this in one restart: the dense fallback answers
    for A in ((U * s) @ V.T, (U * s) @ U.T):
        assert abs(exact_norm(A, maxiter=1) - np.linalg.norm(A, 2)) < 1e-12
        assert abs(exact_norm(A) - np.linalg.norm(A, 2)) < 1e-12


def test_exact_sweep_fast_routes_match_independent_computations():
    from pifs import experiments as E
    from pifs.ddim import ddim_chain
    from pifs.exact_sweep import clear_cache, exact_sweep
    from pifs.suppression import suppression_field

    imgs = X8.numpy()
    st = E.patch_statistics(imgs, 4)
    chain = schedules.ddim_timesteps(50, 1000)
    for m in (gaussian_from_images(imgs, AB), ideal_denoiser(imgs, AB), LocalScoreMachine(imgs, AB, 3)):
        r = exact_sweep(m, st, chain=chain, seeds=(0,), block_steps=(281,), diag_steps=(101,), s_steps=(461,),
                        global_steps=(981, 281, 101))
        assert list(r["global"].t) == [981, 281, 101] and np.isnan(r["s_hat"].s_hat_exact).all()
        xT = torch.randn((1, 3, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        with torch.no_grad():
            _, traj = ddim_chain(m, xT, chain, return_trajectory=True)
        pts = {int(t): traj[i, 0] for i, t in enumerate(chain[::-1])}
        for t in (981, 281, 101):  # κ_t against the SVD of the autograd Jacobian
            Jd = dense_jacobian(step_fn(m, t, t - 20), pts[t]).numpy()
            k = float(r["global"].set_index("t").loc[t, "kappa_exact"])
            assert abs(k - np.linalg.norm(Jd, 2)) < 1e-10
            assert float(r["global"].set_index("t").loc[t, "kappa_pi"]) <= k + 1e-12
        S = suppression_field(m, st.surrogate(AB), pts[461][None], 461, st.vecs, st.patch_idx, alpha_bar=AB,
                              t_prev=441)[0].numpy()  # JVPs through the model
        assert np.allclose(r["S"].sort_values("patch").S.values, S, atol=1e-9)
        r2 = exact_sweep(m, st, chain=chain, seeds=(0,), block_steps=(281,), diag_steps=(), s_steps=(),
                         global_steps=(281,))  # memoised: same numbers
        assert r2["blocks"].kappa_diag.iloc[0] == r["blocks"].kappa_diag.iloc[0]
        clear_cache(m)
