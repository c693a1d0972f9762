"""Tests of pifs.attention_toy: eq. (41) in closed form against autograd, softmax rows, limits."""
import numpy as np
import pytest
import torch

from pifs.attention_toy import PatchAttentionLayer, block_op_norms, theorem23_bounds


def _eq41(layer, p):
    """∂p'_k/∂p_ℓ by hand (eq. 41): A_kℓ W_V + Σ_j W_V p_j ∂A_kj/∂p_ℓ with the softmax derivative."""
    M, nk = layer.M, layer.n_k
    P = p.reshape(M, nk).numpy()
    WQ, WK, WV = layer.W_Q.numpy(), layer.W_K.numpy(), layer.W_V.numpy()
    c = 1.0 / (layer.temperature * np.sqrt(layer.d))
    Z = c * (P @ WQ.T) @ (P @ WK.T).T
    A = np.exp(Z - Z.max(1, keepdims=True)); A /= A.sum(1, keepdims=True)
    J = np.zeros((M * nk, M * nk))
    for k in range(M):
        for l in range(M):
            dz = np.zeros((M, nk))  # ∂z_kj/∂p_ℓ for each j
            for j in range(M):
                g = np.zeros(nk)
                if l == k:
                    g += c * WQ.T @ (WK @ P[j])
                if l == j:
                    g += c * WK.T @ (WQ @ P[k])
                dz[j] = g
            dA = A[k][:, None] * (dz - (A[k][:, None] * dz).sum(0))  # softmax chain rule, (M, nk)
            blk = A[k, l] * WV + (WV @ P.T) @ dA
            J[k * nk:(k + 1) * nk, l * nk:(l + 1) * nk] = blk
    return J, A


@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_attention_jacobian_matches_eq41(tau):
    layer = PatchAttentionLayer.random(M=4, n_k=3, d=2, seed=1, temperature=tau)
    p = torch.as_tensor(np.random.default_rng(0).normal(size=12))
    J_ad = torch.autograd.functional.jacobian(lambda z: layer.attention_output(z[None])[0], p).numpy()
    J_41, A = _eq41(layer, p)
    np.testing.assert_allclose(J_ad, J_41, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.attention(p[None])[0].numpy(), A, rtol=1e-12)
    np.testing.assert_allclose(A.sum(1), 1.0, rtol=1e-14)


def test_feedforward_is_blockdiagonal_and_lipschitz_bound():
    layer = PatchAttentionLayer.random(M=3, n_k=2, d=2, seed=2)
    y = torch.as_tensor(np.random.default_rng(1).normal(size=6))
    JF = torch.autograd.functional.jacobian(lambda z: layer.feedforward(z[None])[0], y).numpy()
    bn = block_op_norms(JF, layer.patch_idx)
    assert np.all(bn[~np.eye(3, dtype=bool)] == 0)
    assert np.diag(bn).max() <= layer.ff_lipschitz() + 1e-12


def test_block_op_norms_brute_force():
    rng = np.random.default_rng(3)
    J = rng.normal(size=(6, 6))
    idx = np.arange(6).reshape(3, 2)
    out = block_op_norms(J, idx)
    for k in range(3):
        for j in range(3):
            s = np.linalg.svd(J[2 * k:2 * k + 2, 2 * j:2 * j + 2], compute_uv=False)[0]
            assert out[k, j] == pytest.approx(s, rel=1e-12)


def test_hard_attention_limit_and_residual():
    layer = PatchAttentionLayer.random(M=4, n_k=3, d=2, seed=0)
    p = torch.as_tensor(np.random.default_rng(7).normal(size=12) * 2.0)
    r = theorem23_bounds(layer.with_temperature(1e-3), p)
    js = r["A"].argmax(1)
    np.testing.assert_allclose(r["A"].max(1), 1.0, atol=1e-12)
    mask = ~np.eye(4, dtype=bool)
    mask[np.arange(4), js] = False
    assert r["blocks"][mask].max() < 1e-12
    # residual: J(p + p') − J(p') = I
    Ja = torch.autograd.functional.jacobian(lambda z: layer.attention_output(z[None])[0], p)
    Jr = torch.autograd.functional.jacobian(lambda z: (z[None] + layer.attention_output(z[None]))[0], p)
    np.testing.assert_allclose((Jr - Ja).numpy(), np.eye(12), atol=1e-14)


def test_bad_inputs():
    layer = PatchAttentionLayer.random(M=2, n_k=2, d=1)
    with pytest.raises(ValueError, match="x"):
        layer(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="temperature"):
        layer.with_temperature(0.0)
    with pytest.raises(ValueError, match="W_V"):
        PatchAttentionLayer(layer.W_Q, layer.W_K, torch.zeros(3, 3), layer.W1, layer.c1, layer.W2, layer.c2, 2)
    with pytest.raises(TypeError, match="W_Q"):
        PatchAttentionLayer(np.zeros((1, 2)), layer.W_K, layer.W_V, layer.W1, layer.c1, layer.W2, layer.c2, 2)
