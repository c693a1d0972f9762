"""Tests of pifs.spacetime: exponential-family identities, spline, energy gradient, 1-D Gaussian geodesic."""
import numpy as np
import pytest
import torch

from pifs import spacetime as ST

torch.set_num_threads(1)
DT = torch.float64


def _gauss_kl(m1, v1, m2, v2):
    return 0.5 * (v1 / v2 + (m2 - m1) ** 2 / v2 - 1 + np.log(v2 / v1))


def test_symmetrised_kl_gaussian_exact():
    post = ST.MixturePosterior1D([1.0], [0.3], [0.8])
    z = torch.tensor([[0.3, -0.5], [0.6, 1.1]], dtype=DT)
    ip = float(ST.curve_energy(z, post, ST.linear_logsnr))
    r, mean, c = post.components(z[:, 1], z[:, 0])
    m1, m2, v1, v2 = float(mean[0, 0]), float(mean[1, 0]), float(c[0, 0]), float(c[1, 0])
    assert ip == pytest.approx(_gauss_kl(m1, v1, m2, v2) + _gauss_kl(m2, v2, m1, v1), rel=1e-10)


def test_symmetrised_kl_mixture_quadrature():
    post = ST.MixturePosterior1D()
    za, zb = (0.3, -2.0), (0.35, 1.5)
    grid = torch.linspace(-8, 8, 20001, dtype=DT)
    la = post.log_density(grid, torch.tensor(za[1], dtype=DT), torch.tensor(za[0], dtype=DT))
    lb = post.log_density(grid, torch.tensor(zb[1], dtype=DT), torch.tensor(zb[0], dtype=DT))
    skl = float(((la.exp() - lb.exp()) * (la - lb)).sum() * (grid[1] - grid[0]))
    ip = float(ST.curve_energy(torch.tensor([za, zb], dtype=DT), post, ST.linear_logsnr))
    assert ip == pytest.approx(skl, rel=1e-6)


def test_second_moment_is_trace_plus_mean_and_tweedie():
    post = ST.MixturePosterior1D()
    x = torch.tensor([-1.0, 0.2, 1.7], dtype=DT, requires_grad=True)
    t = torch.tensor([0.3, 0.45, 0.6], dtype=DT)
    mean, second = post(x, t)
    var = second - mean[:, 0] ** 2
    a, s = ST.linear_logsnr(t)
    div, = torch.autograd.grad(mean.sum(), x)
    assert torch.allclose(s ** 2 / a * div, var, rtol=1e-9, atol=1e-12)   # second-order Tweedie


def test_empirical_posterior_second_moment():
    X = torch.randn(50, 6, dtype=DT, generator=torch.Generator().manual_seed(0))
    post = ST.EmpiricalPosterior(X)
    x, lam = torch.randn(4, 6, dtype=DT), torch.tensor([0.0, 1.0, 2.0, -1.0], dtype=DT)
    w = post.weights(x, lam)
    m, sec = post(x, lam)
    cov_tr = torch.einsum("bi,ij,ij->b", w, X, X) - (m * m).sum(1)
    mu_t, _ = ST.expectation_parameter(m, cov_tr)
    assert torch.allclose(mu_t, sec, rtol=1e-12)


def test_spline_end_points_fixed():
    za, zb = torch.tensor([0.2, -1.0, 3.0], dtype=DT), torch.tensor([0.5, 2.0, -1.0], dtype=DT)
    c = ST.SpacetimeSpline(za, zb, 5)
    with torch.no_grad():
        c.params.normal_()
    z = c(17)
    assert torch.equal(z[0], za) and torch.equal(z[-1], zb)
    curve, _ = ST.fit_geodesic(lambda z: (z[1:] - z[:-1]).pow(2).sum() + z[:, 0].sin().sum(), za, zb,
                               n_nodes=4, n_points=9, steps=5, lr=0.1)
    z = curve(9)
    assert torch.equal(z[0], za) and torch.equal(z[-1], zb)


def test_energy_gradient_against_finite_differences():
    post = ST.MixturePosterior1D()
    c = ST.SpacetimeSpline(torch.tensor([0.35, -2.3], dtype=DT), torch.tensor([0.4, 2.0], dtype=DT), 4)
    with torch.no_grad():
        c.params.copy_(torch.tensor([[0.1, 0.3], [0.2, -0.1], [0.05, 0.2]], dtype=DT))
    e = ST.curve_energy(c(16), post, ST.linear_logsnr)
    g, = torch.autograd.grad(e, c.params)
    h = 1e-6
    for idx in [(0, 0), (1, 1), (2, 0)]:
        with torch.no_grad():
            c.params[idx] += h
            ep = float(ST.curve_energy(c(16), post, ST.linear_logsnr))
            c.params[idx] -= 2 * h
            em = float(ST.curve_energy(c(16), post, ST.linear_logsnr))
            c.params[idx] += h
        assert float(g[idx]) == pytest.approx((ep - em) / (2 * h), rel=1e-5, abs=1e-8)


def test_gaussian_geodesic_against_closed_form():
    m, s = 0.3, 0.8
    post = ST.MixturePosterior1D([1.0], [m], [s])
    za, zb = torch.tensor([0.40, -0.6], dtype=DT), torch.tensor([0.45, 0.7], dtype=DT)
    path, L = ST.gaussian_geodesic_1d(m, s, za.numpy(), zb.numpy(), 32)
    assert np.allclose(path[0], za.numpy()) and np.allclose(path[-1], zb.numpy())
    # the closed-form path's discrete length is its distance
    assert float(ST.curve_length(torch.as_tensor(path), post, ST.linear_logsnr)) == pytest.approx(L, rel=2e-3)
    curve, hist = ST.fit_geodesic(lambda z: ST.curve_energy(z, post, ST.linear_logsnr), za, zb,
                                  n_nodes=4, n_points=32, steps=60, lr=0.03)
    Lfit = float(ST.curve_length(curve(32).detach(), post, ST.linear_logsnr))
    Lline = float(ST.curve_length(ST.SpacetimeSpline(za, zb, 4)(32).detach(), post, ST.linear_logsnr))
    assert abs(Lfit / L - 1) < 0.01 < abs(Lline / L - 1)


def test_bridge_threshold_matches_expansion_threshold():
    from pifs import geometry as G, schedules as S
    ab = S.linear(1000)
    c, k, g = ST.bridge_threshold(ab)
    lst = G.expansion_threshold(ab)
    ga = ST.metric_space_block_gaussian(lst, ab)[np.arange(999), np.arange(999)]
    assert np.allclose(ga, g[:-1], rtol=1e-8)
    f = c + k * ST.metric_space_block_gaussian(np.array([0.3, 30.0]), ab)
    assert np.allclose(f, G.expansion_function(np.array([0.3, 30.0]), ab), atol=1e-12)


@pytest.mark.parametrize("call, arg", [
    (lambda: ST.natural_parameter(torch.zeros(3, 2), torch.ones(2), torch.ones(3)), "alpha"),
    (lambda: ST.SpacetimeSpline(torch.zeros(2), torch.zeros(3)), "zb"),
    (lambda: ST.SpacetimeSpline(torch.zeros(2), torch.zeros(2), 1), "n_nodes"),
    (lambda: ST.linear_logsnr([0.1]), "t"),
    (lambda: ST.MixturePosterior1D([0.5, 0.6], [0, 1]), "weights"),
    (lambda: ST.gaussian_geodesic_1d(0, -1, (0.3, 0), (0.4, 1)), "s"),
    (lambda: ST.hutchinson_trace(lambda z: z, torch.zeros(2, 3), 0), "n_probes"),
    (lambda: ST.fit_geodesic(lambda z: z.sum(), torch.zeros(2), torch.ones(2), steps=-1), "steps"),
])
def test_bad_input_names_argument(call, arg):
    with pytest.raises(ValueError, match=arg):
        call()
