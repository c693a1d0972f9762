"""Tests of pifs.suppression against closed forms, finite differences and brute force."""
import numpy as np
import pytest
import torch

from pifs import geometry, schedules
from pifs.patches import patch_indices
from pifs.scores import GaussianMixtureScore, GaussianScore
from pifs.suppression import (
    block_rayleigh,
    diagonal_rayleigh,
    gaussian_patch_loss,
    release_times,
    step_coefficient,
    suppression_field,
    suppression_margin,
)

SHAPE = (2, 4, 4)  # C, H, W; 2x2 patches -> M = 4, n_k = 8, n = 32
P = 2


def _spd(rng, n, scale=1.0):
    A = rng.normal(size=(n, n))
    return scale * (A @ A.T / n + 0.1 * np.eye(n))


def _unit_rows(rng, M, nk):
    d = rng.normal(size=(M, nk))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def _b_eq5(a, t, tp):
    """eq. (5) as printed: b = sqrt(1 - a_prev) - sqrt(a_prev) sqrt(1 - a_t) / sqrt(a_t)."""
    return np.sqrt(1 - a[tp]) - np.sqrt(a[tp]) * np.sqrt(1 - a[t]) / np.sqrt(a[t])


@pytest.mark.parametrize("t,tp", [(300, None), (50, 30), (10, 0)])
def test_step_coefficient_matches_eq5(t, tp):
    a = schedules.linear(1000)
    expect = _b_eq5(a, t, t - 1 if tp is None else tp)
    assert step_coefficient(a, t, tp) == pytest.approx(expect, rel=1e-9)


@pytest.mark.parametrize("t,tp,flat", [(400, None, False), (120, 80, True)])
def test_suppression_field_gaussian_vs_gaussian_closed_form(t, tp, flat):
    """S for GaussianScore(Σ_A) against surrogate GaussianScore(Σ_B): dense numpy inverse."""
    rng = np.random.default_rng(0)
    a = schedules.linear(1000)
    n = int(np.prod(SHAPE))
    SA, SB = _spd(rng, n, 2.0), _spd(rng, n, 0.7)
    idx = patch_indices(SHAPE, P)
    d = _unit_rows(rng, *idx.shape)
    model, surr = GaussianScore(SA, a), GaussianScore(SB, a)
    B = 3
    x = torch.as_tensor(rng.normal(size=(B,) + SHAPE))
    if flat:
        x = x.reshape(B, -1)
    S = suppression_field(model, surr, x, t, d, idx, alpha_bar=a, t_prev=tp).numpy()
    at, vt = a[t], 1 - a[t]
    JA = np.sqrt(vt) * np.linalg.inv(at * SA + vt * np.eye(n))
    JB = np.sqrt(vt) * np.linalg.inv(at * SB + vt * np.eye(n))
    b = _b_eq5(a, t, t - 1 if tp is None else tp)
    expect = np.array([abs(b) * d[k] @ (JA - JB)[np.ix_(idx[k], idx[k])] @ d[k] for k in range(idx.shape[0])])
    assert S.shape == (B, idx.shape[0])
    np.testing.assert_allclose(S, np.broadcast_to(expect, S.shape), rtol=1e-10, atol=1e-14)


def test_eq32_kappa_equals_f_minus_S_for_block_diagonal_surrogate():
    """κ^diag (direct) = f_t(λ_k) − S_k,t when v_k is an eigenvector of the surrogate block Σ_k."""
    rng = np.random.default_rng(1)
    a = schedules.cosine(1000)
    idx = patch_indices(SHAPE, P)
    M, nk = idx.shape
    lam = np.array([3.0, 10.0, 25.0, 44.0])
    blocks, dirs = [], []
    for k in range(M):
        Q, _ = np.linalg.qr(rng.normal(size=(nk, nk)))
        ev = np.concatenate([[lam[k]], rng.uniform(0.1, 0.9, nk - 1) * lam[k]])
        blocks.append((Q * ev) @ Q.T)
        dirs.append(Q[:, 0])
    surr = GaussianScore((np.array(blocks), idx), a)
    model = GaussianScore(_spd(rng, idx.size, 5.0), a)  # a different, dense covariance
    x = torch.as_tensor(rng.normal(size=(1,) + SHAPE))  # B = 1 (expanded views must be materialised)
    for t in (700, 200, 3):
        S = suppression_field(model, surr, x, t, np.array(dirs), idx, alpha_bar=a).numpy()
        kap = diagonal_rayleigh(model, x, t, np.array(dirs), idx, alpha_bar=a).numpy()
        f = geometry.expansion_function(lam, a)[:, t - 1]
        np.testing.assert_allclose(kap, f - S, rtol=0, atol=1e-12)
        # and the surrogate's own κ is f_t(λ_k) (Theorem 17, closed form of eq. 26 as printed)
        kapN = diagonal_rayleigh(surr, x, t, np.array(dirs), idx, alpha_bar=a).numpy()
        b = abs(_b_eq5(a, t, t - 1))
        f26 = np.sqrt(a[t - 1] / a[t]) - b * np.sqrt(1 - a[t]) / (lam * a[t] + 1 - a[t])
        np.testing.assert_allclose(kapN, np.broadcast_to(f26, kapN.shape), rtol=1e-12)
        gam = suppression_margin(S, f)
        np.testing.assert_allclose(gam, 1.0 - kap, atol=1e-12)  # γ = 1 − κ (eqs. 31, 32)


def test_block_rayleigh_nonlinear_model_against_finite_differences():
    """Gaussian-mixture score (non-linear in x): JVP quotients vs central differences."""
    rng = np.random.default_rng(2)
    a = schedules.linear(1000)
    n = int(np.prod(SHAPE))
    K = 3
    gm = GaussianMixtureScore(np.full(K, 1 / K), rng.normal(size=(K, n)), np.stack([_spd(rng, n, 0.3) for _ in range(K)]), a)
    idx = patch_indices(SHAPE, P)
    d = _unit_rows(rng, *idx.shape)
    x = torch.as_tensor(rng.normal(size=(2,) + SHAPE))
    t = 250
    rq = block_rayleigh(lambda z: gm(z, t), x, d, idx, chunk=3).numpy()
    h = 1e-5
    fd = np.zeros_like(rq)
    for k in range(idx.shape[0]):
        u = np.zeros(n)
        u[idx[k]] = d[k]
        U = torch.as_tensor(u).reshape((1,) + SHAPE)
        diff = ((gm(x + h * U, t) - gm(x - h * U, t)) / (2 * h)).reshape(2, -1).numpy()
        fd[:, k] = diff[:, idx[k]] @ d[k]
    np.testing.assert_allclose(rq, fd, rtol=1e-6, atol=1e-8)


def test_release_times_brute_force():
    rng = np.random.default_rng(3)
    ts = rng.permutation(np.arange(1, 41))
    g = rng.normal(size=(40, 5, 7))
    g[:, 0, 0] = np.abs(g[:, 0, 0]) + 0.1  # never released
    out = release_times(g, ts)
    assert out.shape == (5, 7)
    for i in range(5):
        for j in range(7):
            rel = [t for t, gg in zip(ts, g[:, i, j]) if gg <= 0]
            if rel:
                assert out[i, j] == max(rel)
            else:
                assert np.isnan(out[i, j])
    # γ exactly 0 counts as released (eq. 33 uses ≤)
    assert release_times(np.array([[0.0], [1.0]]), np.array([5, 9]))[0] == 5


def test_suppression_margin_broadcast():
    S = np.arange(6.0).reshape(2, 3)
    f = np.array([1.5, 1.0, 0.5])
    np.testing.assert_array_equal(suppression_margin(S, f), S - (f - 1))
    with pytest.raises(ValueError, match="f_t_of_lam"):
        suppression_margin(S, np.ones(4))
    with pytest.raises(ValueError, match="S"):
        suppression_margin(np.array([np.nan]), np.ones(1))


def test_gaussian_patch_loss_is_posterior_variance_monte_carlo():
    """eq. (38): E(x̂_0 − x_0)² per direction for x_0 ~ N(0, λ), brute-force Monte Carlo."""
    rng = np.random.default_rng(4)
    a = schedules.linear(1000)
    lam, t = 7.0, 500
    x0 = rng.normal(size=400_000) * np.sqrt(lam)
    xt = np.sqrt(a[t]) * x0 + np.sqrt(1 - a[t]) * rng.normal(size=x0.size)
    x0hat = np.sqrt(a[t]) * lam / (a[t] * lam + 1 - a[t]) * xt
    mc = np.mean((x0hat - x0) ** 2)
    assert gaussian_patch_loss(lam, a)[t - 1] == pytest.approx(mc, rel=1e-2)


def test_bad_inputs():
    a = schedules.linear(100)
    idx = patch_indices(SHAPE, P)
    d = _unit_rows(np.random.default_rng(0), *idx.shape)
    g = GaussianScore(np.eye(idx.size), a)
    x = torch.zeros((1,) + SHAPE, dtype=torch.float64)
    with pytest.raises(ValueError, match="unit"):
        suppression_field(g, g, x, 5, 2 * d, idx, alpha_bar=a)
    with pytest.raises(ValueError, match="directions"):
        suppression_field(g, g, x, 5, d[:, :3], idx, alpha_bar=a)
    with pytest.raises(ValueError, match="t_prev"):
        suppression_field(g, g, x, 5, d, idx, alpha_bar=a, t_prev=5)
    with pytest.raises(TypeError, match="t"):
        suppression_field(g, g, x, 5.0, d, idx, alpha_bar=a)
    with pytest.raises(ValueError, match="patch_idx"):
        block_rayleigh(lambda z: z, x, d, idx + 100)
    with pytest.raises(ValueError, match="ᾱ"):
        step_coefficient(schedules.cosine(50, s=0.0), 50)
    with pytest.raises(ValueError, match="timesteps"):
        release_times(np.zeros((2, 3)), np.array([1, 1]))
    with pytest.raises(TypeError, match="timesteps"):
        release_times(np.zeros((2, 3)), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="chunk"):
        block_rayleigh(lambda z: z, x, d, idx, chunk=0)
