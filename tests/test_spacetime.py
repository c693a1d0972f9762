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


# ----------------------------------------------------------------------------- network energy (HutchinsonPosterior)
class _TinyDenoiser(torch.nn.Module):
    """A smooth, time-dependent stand-in for a network denoiser D(x, λ) (float64)."""

    def __init__(self, n, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W1 = torch.randn(n, 16, generator=g, dtype=DT) / n ** 0.5
        self.W2 = torch.randn(16, n, generator=g, dtype=DT) / 4
        self.c = torch.randn(16, generator=g, dtype=DT)

    def forward(self, x, lam):
        h = torch.tanh(x @ self.W1 + lam[:, None] * self.c)
        return torch.sigmoid(lam)[:, None] * x + h @ self.W2


def _fd_check(post, za, zb, entries, h, rel, negative="keep"):
    c = ST.SpacetimeSpline(za, zb, 3)
    with torch.no_grad():
        c.params.copy_(0.3 * torch.randn(c.params.shape, generator=torch.Generator().manual_seed(1), dtype=DT))
        c.params[:, 0] -= 0.8                      # dip towards higher noise, as a geodesic does
    e = ST.curve_energy(c(5), post, ST.logsnr_alpha_sigma, negative=negative)
    g, = torch.autograd.grad(e, c.params)
    for idx in entries:
        with torch.no_grad():
            c.params[idx] += h
            ep = float(ST.curve_energy(c(5), post, ST.logsnr_alpha_sigma, negative=negative))
            c.params[idx] -= 2 * h
            em = float(ST.curve_energy(c(5), post, ST.logsnr_alpha_sigma, negative=negative))
            c.params[idx] += h
        assert float(g[idx]) == pytest.approx((ep - em) / (2 * h), rel=rel, abs=1e-7), idx


def test_hutchinson_posterior_energy_gradient_tiny_module():
    n = 12
    post = ST.HutchinsonPosterior(_TinyDenoiser(n), ST.logsnr_alpha_sigma, n, n_probes=2, seed=3)
    g = torch.Generator().manual_seed(0)
    za = torch.cat([torch.tensor([2.0], dtype=DT), torch.randn(n, generator=g, dtype=DT)])
    zb = torch.cat([torch.tensor([1.5], dtype=DT), torch.randn(n, generator=g, dtype=DT)])
    # column 0 is the log-SNR: its gradient runs through σ²/α, η and the probe term's t-dependence
    _fd_check(post, za, zb, [(0, 0), (1, 0), (0, 3), (1, 7)], h=1e-6, rel=1e-6)


def test_hutchinson_posterior_energy_gradient_tiny_unet():
    from pifs.scores import prepare_unet_for_forward_ad, tiny_unet

    unet = prepare_unet_for_forward_ad(tiny_unet(sample_size=8, channels=(8, 16), attention=True)).double()
    for p in unet.parameters():
        p.requires_grad_(False)
    n = 3 * 8 * 8

    def denoiser(x, lam):                          # D = (x − σ ε̂(x, τ(λ))) / α, τ an affine map of λ
        a, s = ST.logsnr_alpha_sigma(lam)
        eps = unet(x.reshape(-1, 3, 8, 8), 5.0 + 2.0 * lam).sample.reshape(x.shape[0], -1)
        return (x - s[:, None] * eps) / a[:, None]

    post = ST.HutchinsonPosterior(denoiser, ST.logsnr_alpha_sigma, n, n_probes=1, seed=0)
    g = torch.Generator().manual_seed(0)
    za = torch.cat([torch.tensor([2.0], dtype=DT), 0.5 * torch.randn(n, generator=g, dtype=DT)])
    zb = torch.cat([torch.tensor([2.0], dtype=DT), 0.5 * torch.randn(n, generator=g, dtype=DT)])
    # pixel columns: double backward through the UNet (math attention path), tight
    _fd_check(post, za, zb, [(0, 5), (1, 100)], h=1e-5, rel=1e-5)
    # time column: diffusers' timestep embedding runs in float32, so a looser tolerance
    _fd_check(post, za, zb, [(0, 0), (1, 0)], h=1e-3, rel=2e-2)
    # the end points stay fixed under the network energy's optimisation
    curve, hist = ST.fit_geodesic(lambda z: ST.curve_energy(z, post, ST.logsnr_alpha_sigma, negative="abs"),
                                  za, zb, n_nodes=3, n_points=5, steps=3, lr=0.05, cosine=True)
    z = curve(5)
    assert torch.equal(z[0], za) and torch.equal(z[-1], zb)
    assert np.isfinite(hist).all() and hist.shape == (4,)


def test_hutchinson_posterior_linear_denoiser_and_no_grad():
    n = 10
    A = torch.randn(n, n, generator=torch.Generator().manual_seed(0), dtype=DT)
    A = A @ A.T / n
    post = ST.HutchinsonPosterior(lambda x, lam: x @ A, ST.logsnr_alpha_sigma, n, n_probes=4000, seed=1)
    x, lam = torch.randn(3, n, dtype=DT), torch.tensor([0.0, 1.0, -1.0], dtype=DT)
    with torch.no_grad():
        m, sec = post(x, lam)
    assert not m.requires_grad and not sec.requires_grad
    a, s = ST.logsnr_alpha_sigma(lam)
    R = post.probes
    quad = torch.einsum("pi,ij,pj->p", R, A, R).mean()        # the estimator, exactly
    assert torch.allclose(sec, s ** 2 / a * quad + (m * m).sum(1), rtol=1e-12)
    assert float(quad) == pytest.approx(float(torch.trace(A)), rel=0.05)   # and it is unbiased


def test_negative_rules():
    z = torch.tensor([[0.3, -0.5], [0.6, 1.1], [0.4, 0.0]], dtype=DT)
    post = ST.MixturePosterior1D()
    bad = lambda x, t: (lambda m, s: (m, -s))(*post(x, t))  # second moment of the wrong sign: a non-PSD "metric"
    d = ST.curve_divergences(z, bad, ST.linear_logsnr)
    assert (d < 0).any()
    assert float(ST.curve_energy(z, bad, ST.linear_logsnr, negative="abs")) == pytest.approx(float(d.abs().sum()))
    assert float(ST.curve_energy(z, bad, ST.linear_logsnr, negative="clamp")) == pytest.approx(float(d.clamp_min(0).sum()))
    assert float(ST.curve_length(z, bad, ST.linear_logsnr, negative="abs")) == pytest.approx(float(d.abs().sqrt().sum()))
    with pytest.raises(ValueError, match="negative"):
        ST.curve_energy(z, post, ST.linear_logsnr, negative="drop")
    with pytest.raises(ValueError, match="negative"):
        ST.curve_length(z, post, ST.linear_logsnr, negative="keep")


@pytest.mark.parametrize("call, arg", [
    (lambda: ST.HutchinsonPosterior(3, ST.logsnr_alpha_sigma, 4), "denoiser"),
    (lambda: ST.HutchinsonPosterior(lambda x, t: x, None, 4), "schedule"),
    (lambda: ST.HutchinsonPosterior(lambda x, t: x, ST.logsnr_alpha_sigma, 0), "n"),
    (lambda: ST.HutchinsonPosterior(lambda x, t: x, ST.logsnr_alpha_sigma, 4, n_probes=0), "n_probes"),
    (lambda: ST.HutchinsonPosterior(lambda x, t: x, ST.logsnr_alpha_sigma, 4)(torch.zeros(2, 3, dtype=DT),
                                                                                torch.zeros(2, dtype=DT)), "x"),
    (lambda: ST.HutchinsonPosterior(lambda x, t: x[:, :2], ST.logsnr_alpha_sigma, 4)(torch.zeros(2, 4, dtype=DT),
                                                                                     torch.zeros(2, dtype=DT)), "denoiser"),
])
def test_hutchinson_posterior_bad_input(call, arg):
    with pytest.raises(ValueError, match=arg):
        call()
