"""Tests of pifs.flow_matching against independent computations.

Oracles: autograd Jacobians (torch.func.jacfwd); least-squares regression of
x_1 − x_0 on x_t from simulated pairs (the conditional mean of jointly Gaussian
variables is linear); the flow map obtained by integrating the ODE with
scipy's solve_ivp, which for Σ = diag(σ²) must be x_0 ↦ m + σ x_0 (quantile
transport between N(0, 1) and N(m, σ²)).
"""
import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from pifs import flow_matching as FM


def _cov(n, rng, lo=0.1, hi=3.0):
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return Q @ np.diag(rng.uniform(lo, hi, n)) @ Q.T


def test_jacobian_matches_autograd():
    rng = np.random.default_rng(0)
    S, m = _cov(4, rng), rng.standard_normal(4)
    x = torch.tensor(rng.standard_normal(4))
    for t in (0.0, 0.3, 0.9, 1.0):
        J_ad = torch.func.jacfwd(lambda z: FM.gaussian_velocity(z, t, S, m))(x).numpy()
        np.testing.assert_allclose(FM.gaussian_velocity_jacobian(t, S), J_ad, atol=1e-12)


def test_velocity_is_conditional_mean_by_regression():
    rng = np.random.default_rng(1)
    n, N, t = 3, 150_000, 0.4
    S, m = _cov(n, rng), np.array([0.5, -1.0, 0.2])
    x0 = rng.standard_normal((N, n))
    x1 = m + rng.standard_normal((N, n)) @ np.linalg.cholesky(S).T
    xt = t * x1 + (1 - t) * x0
    X = np.hstack([xt, np.ones((N, 1))])
    coef, *_ = np.linalg.lstsq(X, x1 - x0, rcond=None)
    probe = rng.standard_normal((5, n))
    pred = np.hstack([probe, np.ones((5, 1))]) @ coef
    np.testing.assert_allclose(FM.gaussian_velocity(probe, t, S, m), pred, atol=0.04)


def test_flow_map_transports_noise_to_data():
    sig2 = np.array([0.04, 0.5, 4.0])
    m = np.array([0.3, -0.2, 1.0])
    x0 = np.array([1.2, -0.7, 0.4])
    sol = solve_ivp(lambda t, x: FM.gaussian_velocity(x[None], min(t, 1.0), np.diag(sig2), m)[0], (0, 1), x0,
                    rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sol.y[:, -1], m + np.sqrt(sig2) * x0, rtol=1e-6, atol=1e-8)


def test_pcfm_constants_and_factor_bound_the_euler_jacobian():
    rng = np.random.default_rng(2)
    S, T = _cov(5, rng, 0.05, 0.5), 50
    for t in np.arange(T) / T:
        J = FM.gaussian_velocity_jacobian(t, S)
        mu, d = FM.pcfm_constants(J, t)
        # reconstruction: J = −μ/(1−t) I + R with ‖R‖ = δ̃
        R = J + mu / (1 - t) * np.eye(5)
        assert np.linalg.norm(R, 2) == pytest.approx(d, abs=1e-12)
        op = np.linalg.norm(np.eye(5) + J / T, 2)
        kappa = FM.contraction_factor(mu, d, t, T)
        assert op <= kappa + 1e-12
        if FM.pcfm_conditions(mu, mu, d, t, T)["all"]:
            assert 0 < kappa < 1


def test_point_mass_limit_gives_kappa_zero_at_last_step():
    # σ² → 0: v = (m − x)/(1 − t), μ = 1, so κ̃ at t = (T−1)/T is 0
    T = 20
    t = (T - 1) / T
    J = FM.gaussian_velocity_jacobian(t, 1e-14 * np.eye(2))
    mu, d = FM.pcfm_constants(J, t)
    assert mu == pytest.approx(1.0, abs=1e-9)
    assert float(FM.contraction_factor(mu, d, t, T)) == pytest.approx(0.0, abs=1e-8)


def test_bad_inputs():
    with pytest.raises(ValueError, match="t"):
        FM.gaussian_velocity_jacobian(1.5, np.eye(2))
    with pytest.raises(ValueError, match="cov"):
        FM.gaussian_velocity_jacobian(0.5, np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="cov"):
        FM.gaussian_velocity_jacobian(1.0, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="x"):
        FM.gaussian_velocity(np.zeros((2, 3)), 0.5, np.eye(2))
    with pytest.raises(ValueError, match="T"):
        FM.euler_step(lambda x, t: x, np.zeros((1, 2)), 0.5, 0)
    with pytest.raises(TypeError, match="t"):
        FM.gaussian_velocity_jacobian([0.5], np.eye(2))
