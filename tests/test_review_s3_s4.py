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
