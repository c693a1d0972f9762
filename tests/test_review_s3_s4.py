"""Review of §3–§4: the counter-examples the notebooks rely on, checked outside the notebooks."""
import numpy as np
import torch

from pifs import jacobian as jac, patches
from pifs.attention_toy import PatchAttentionLayer, theorem23_bounds


def _ratios(layer, x):
    r = theorem23_bounds(layer, x)
    JA = torch.autograd.functional.jacobian(lambda q: layer.attention(q[None])[0], x).numpy()
    Frow = np.linalg.norm(JA.reshape(4, 4, 4, 3), axis=(1, 3))
    L, WV = r["L_ff_local"], r["WV"]
    rhs_cP = L * WV * (np.diag(r["A"]) + r["p_norm"] * np.diag(r["gradA"]))
    rhs_row = L[:, None] * WV * (r["A"] + r["p_norm"] * Frow)
    return (np.diag(r["blocks"]) / rhs_cP).max(), (r["blocks"] / rhs_row).max()


def test_theorem23c_repair_with_full_norm_fails_and_row_jacobian_bound_holds():
    base = PatchAttentionLayer.random(M=4, n_k=3, d=2, hidden=8, seed=0)
    eye3 = torch.eye(3, dtype=torch.float64)
    x = torch.tensor([1.0, 0, 0, 2, 0.5, 0, 2, -0.5, 0, -2, 0, 0], dtype=torch.float64)
    lay = PatchAttentionLayer(eye3[:2] * 6.0, eye3[:2], base.W_V, base.W1, base.c1, base.W2, base.c2, 4)
    cP, row = _ratios(lay, x)
    assert cP > 2.0            # ‖p‖ in place of ‖p_k‖ is violated
    assert row <= 1 + 1e-9     # the triangle/Cauchy–Schwarz bound with ‖∂A_k·/∂p_ℓ‖_F holds
    for s in range(5):
        lay = PatchAttentionLayer.random(M=4, n_k=3, d=2, hidden=8, seed=100 + s, scale=2.0)
        assert _ratios(lay, torch.randn(12, dtype=torch.float64, generator=torch.Generator().manual_seed(s)) * 2)[1] <= 1 + 1e-9


def test_theorem13_l2_bound_fails_under_pc():
    IDX = patches.patch_indices((3, 8, 8), 2)
    M, nk = IDX.shape
    n = M * nk
    J = torch.zeros(n, n, dtype=torch.float64)
    for k in range(1, M):
        J[np.ix_(IDX[k], IDX[0])] = 0.5 * torch.eye(nk, dtype=torch.float64)
    assert abs(jac.block_decomposition(J, patch_idx=IDX).kappa_pc - 0.5) < 1e-12
    R = torch.linalg.inv(torch.eye(n, dtype=torch.float64) - J)
    assert float(torch.linalg.svdvals(R)[0]) > 1 / (1 - 0.5) * 1.1


def test_theorem14_l2_bound_fails_under_pc_for_two_point_data():
    from pifs import schedules
    from pifs.ddim import step_coefficients
    F64 = torch.float64
    IDX = patches.patch_indices((3, 8, 8), 2)
    M, nk = IDX.shape
    n = M * nk
    J = torch.zeros(n, n, dtype=F64)
    for k in range(1, M):
        J[np.ix_(IDX[k], IDX[0])] = 0.5 * torch.eye(nk, dtype=F64)
    I = torch.eye(n, dtype=F64)
    Rinv = torch.linalg.inv(I - J)
    w = Rinv @ torch.linalg.svd(Rinv)[2][0]
    w = w / w.norm()
    ab = schedules.linear(1000)
    e, b = step_coefficients(ab, 1, 0)
    v, sa, a = 1 - ab[1], np.sqrt(ab[1]), 10.0
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 2, (4000,), generator=g).to(F64) * 2 - 1
    x = sa * a * s[:, None] * w[None] + np.sqrt(v) * torch.randn(4000, n, dtype=F64, generator=g)
    eps_star = (x - sa * a * w[None] * torch.tanh(sa * a * (x @ w) / v)[:, None]) / np.sqrt(v)
    eps_hat = x @ ((J - e * I) / b).T
    R = (e - 1) * x + b * eps_star
    assert torch.allclose(x @ (J - I).T, R + b * (eps_hat - eps_star))   # d_1 = R_1 + b_1 ξ_1
    rhs = (float((R ** 2).sum(1).mean()) ** 0.5 + abs(b) * float(((eps_hat - eps_star) ** 2).sum(1).mean()) ** 0.5) / 0.5
    assert float(x.norm(dim=1).mean()) > 1.1 * rhs                        # (22) in ‖·‖_2 fails
    assert float(jac.block_max_norm(x, IDX).mean()) < rhs                 # ... and holds in ‖·‖_∞,M


def test_definition18_gaussian_part_needs_block_diagonal_surrogate():
    # two patches of 2 values with cross-patch correlation: ⟨u_k, JΦ^N u_k⟩ = f_t(λ_k) only for the block-diagonal surrogate
    from pifs import geometry, schedules
    ab = schedules.linear(1000)
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 4)) * 1.5
    S0 = A @ A.T
    idx = [np.arange(2), np.arange(2, 4)]
    Sb = np.zeros_like(S0)
    for i in idx:
        Sb[np.ix_(i, i)] = S0[np.ix_(i, i)]
    b = geometry.score_step_coefficient(ab)
    lam, U = [], np.zeros((2, 4))
    for k, i in enumerate(idx):
        wv, V = np.linalg.eigh(S0[np.ix_(i, i)])
        lam.append(wv[-1]); U[k, i] = V[:, -1]
    f = geometry.expansion_function(np.array(lam), ab)
    for t in (1, 100, 500):
        at, v = ab[t], 1 - ab[t]
        e = np.sqrt(ab[t - 1] / at)
        rq = lambda S: np.array([u @ (e * u + b[t - 1] * np.sqrt(v) * np.linalg.solve(at * S + v * np.eye(4), u)) for u in U])
        assert np.allclose(rq(Sb), f[:, t - 1], rtol=0, atol=1e-12)
        assert np.abs(rq(S0) - f[:, t - 1]).max() > 1e-6


def test_corollary8_and_11_constants_sharp_under_worst_case_search():
    from scipy.optimize import minimize
    F64 = torch.float64
    M, nk, T = 3, 2, 2
    n = M * nk

    def kpc(J):
        return torch.linalg.matrix_norm(J.reshape(M, nk, M, nk).transpose(1, 2), 2).sum(1).max()

    def ratio(p):
        Js = p[: T * n * n].reshape(T, n, n); z = p[T * n * n:]
        Jz, den = z, 1.0
        for Jt in Js:
            Jz = Jt @ Jz; den = den * kpc(Jt)
        return Jz.reshape(M, nk).norm(dim=1).max() / (z.reshape(M, nk).norm(dim=1).max() * den)

    def fg(p):
        q = torch.tensor(p, dtype=F64, requires_grad=True); val = -ratio(q); val.backward()
        return float(val.detach()), q.grad.numpy().copy()

    g = np.random.default_rng(3)
    best = max(-minimize(fg, g.normal(size=T * n * n + n), jac=True, method="L-BFGS-B", options={"maxiter": 300}).fun for _ in range(8))
    assert 0.99 < best <= 1 + 1e-9
