"""pifs.scores against independent computations.

Exact models: ε* = −√v_t ∇ log p_t with p_t written out as a torch.distributions
density and differentiated by autograd; Tweedie's formulas (first and second
order) for the posterior mean and covariance; a 1-D quadrature for the mixture
posterior covariance. Diffusers adapter: the t ↔ τ = t − 1 shift against a direct
UNet call, forward-mode AD against central finite differences and the adjoint
identity ⟨w, J u⟩ = ⟨Jᵀ w, u⟩.
"""
import numpy as np
import pytest
import torch
from scipy import integrate, stats

from pifs import patches, schedules
from pifs.scores import DiffusersScore, EmpiricalScore, GaussianMixtureScore, GaussianScore, tiny_unet

torch.set_num_threads(1)
AB = schedules.linear(1000)
F64 = torch.float64


def _spd(n, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=F64)
    return scale * A @ A.T / n + 1e-3 * torch.eye(n, dtype=F64)


def _score_autograd(logp, x):
    xr = x.clone().requires_grad_(True)
    return torch.autograd.grad(logp(xr).sum(), xr)[0]


@pytest.mark.parametrize("t", [1, 250, 999])
def test_gaussian_matches_autograd_log_density(t):
    n = 10
    S = _spd(n, 0)
    mean = torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=F64)
    m = GaussianScore(S, AB, mean=mean)
    a, v = AB[t], 1 - AB[t]
    p = torch.distributions.MultivariateNormal(np.sqrt(a) * mean, a * S + v * torch.eye(n, dtype=F64))
    x = torch.randn(4, n, dtype=F64)
    g = _score_autograd(p.log_prob, x)
    torch.testing.assert_close(m(x, t), -np.sqrt(v) * g, rtol=1e-9, atol=1e-10)
    # Tweedie: E[x0|xt] = (x + v ∇log p)/√ᾱ
    torch.testing.assert_close(m.posterior_mean(x, t), (x + v * g) / np.sqrt(a), rtol=1e-8, atol=1e-9)
    Jref = torch.func.jacrev(lambda z: -np.sqrt(v) * torch.func.grad(p.log_prob)(z))(x[0])
    torch.testing.assert_close(m.jacobian(x, t)[0], Jref, rtol=1e-9, atol=1e-10)
    # posterior covariance: Σ − ᾱ Σ (ᾱΣ + vI)^{-1} Σ
    C = S - a * S @ torch.linalg.solve(a * S + v * torch.eye(n, dtype=F64), S)
    torch.testing.assert_close(m.posterior_cov(x, t)[0], C, rtol=1e-8, atol=1e-10)


def test_gaussian_block_spec_equals_dense_and_image_shapes():
    idx = patches.patch_indices((3, 4, 4), 2)
    blocks = torch.stack([_spd(12, s) for s in range(4)])
    dense = torch.zeros(48, 48, dtype=F64)
    for k in range(4):
        dense[np.ix_(idx[k], idx[k])] = blocks[k]
    mb, md = GaussianScore((blocks, idx), AB), GaussianScore(dense, AB)
    x = torch.randn(3, 3, 4, 4, dtype=F64)
    t = torch.tensor([1, 500, 1000])
    out = mb(x, t)
    assert out.shape == x.shape and out.dtype == F64
    torch.testing.assert_close(out, md(x.reshape(3, -1), t).reshape(x.shape), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(mb.jacobian(x, t), md.jacobian(x, t), rtol=1e-10, atol=1e-12)
    assert mb(x.float(), 7).dtype == torch.float32


def test_gaussian_isotropic_blocks_give_expansion_function():
    # Theorem 17: Σ_k = λ_k I ⇒ [J Φ_t]_kk = f_t(λ_k) I with f_t from pifs.geometry (independent closed form)
    from pifs import geometry
    lam = np.array([0.05, 0.5, 3.0])
    idx = patches.patch_indices((1, 2, 6), 2)
    blocks = torch.stack([float(l) * torch.eye(4, dtype=F64) for l in lam])
    m = GaussianScore((blocks, idx), AB)
    t = 200
    expand, b = np.sqrt(AB[t - 1] / AB[t]), np.sqrt(1 - AB[t - 1]) - np.sqrt(AB[t - 1] * (1 - AB[t]) / AB[t])
    J = expand * np.eye(12) + b * m.jacobian(torch.zeros(1, 12, dtype=F64), t)[0].numpy()
    f = geometry.expansion_function(lam, AB)[:, t - 1]
    for k in range(3):
        np.testing.assert_allclose(J[np.ix_(idx[k], idx[k])], f[k] * np.eye(4), atol=1e-12)


@pytest.mark.parametrize("t", [3, 400, 990])
def test_mixture_matches_autograd_and_tweedie(t):
    n, K = 6, 3
    gen = torch.Generator().manual_seed(3)
    w = torch.tensor([0.2, 0.3, 0.5], dtype=F64)
    mu = 2 * torch.randn(K, n, generator=gen, dtype=F64)
    covs = torch.stack([_spd(n, 10 + k, 0.3 * (k + 1)) for k in range(K)])
    m = GaussianMixtureScore(w, mu, covs, AB)
    a, v = AB[t], 1 - AB[t]

    def logp(z):
        lp = torch.stack([torch.distributions.MultivariateNormal(np.sqrt(a) * mu[k], a * covs[k] + v * torch.eye(n, dtype=F64)).log_prob(z)
                          for k in range(K)], -1)
        return torch.logsumexp(lp + torch.log(w), -1)

    x = torch.randn(5, n, generator=gen, dtype=F64) * 1.5
    g = _score_autograd(logp, x)
    torch.testing.assert_close(m(x, t), -np.sqrt(v) * g, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(m.posterior_mean(x, t), (x + v * g) / np.sqrt(a), rtol=1e-7, atol=1e-8)
    # second-order Tweedie: ∇² log p_t = −I/v + (ᾱ/v²) Cov(x0|xt)  ⇒  Cov = (v²/ᾱ)(H + I/v)
    H = torch.func.hessian(lambda z: logp(z[None])[0])(x[0])
    torch.testing.assert_close(m.posterior_cov(x, t)[0], (v * v / a) * (H + torch.eye(n, dtype=F64) / v), rtol=1e-6, atol=1e-8)
    Jref = torch.func.jacrev(lambda z: m(z[None], t)[0])(x[0])
    torch.testing.assert_close(m.jacobian(x, t)[0], Jref, rtol=1e-7, atol=1e-9)


def test_mixture_posterior_cov_by_quadrature_1d():
    # n = 1: Cov(x0 | xt) by numerical integration of p(x0) N(xt; √ᾱ x0, v) over x0
    w, mu, sd = np.array([0.4, 0.6]), np.array([-1.0, 1.5]), np.array([0.3, 0.7])
    m = GaussianMixtureScore(w, mu[:, None], (sd ** 2)[:, None, None], AB)
    t, xt = 600, 0.4
    a, v = AB[t], 1 - AB[t]

    def dens(x0):
        return (w * stats.norm.pdf(x0, mu, sd)).sum() * stats.norm.pdf(xt, np.sqrt(a) * x0, np.sqrt(v))

    Z = integrate.quad(dens, -10, 10, epsabs=1e-13)[0]
    m1 = integrate.quad(lambda u: u * dens(u), -10, 10, epsabs=1e-13)[0] / Z
    m2 = integrate.quad(lambda u: u * u * dens(u), -10, 10, epsabs=1e-13)[0] / Z
    x = torch.tensor([[xt]], dtype=F64)
    assert abs(float(m.posterior_mean(x, t)[0, 0]) - m1) < 1e-8
    assert abs(float(m.posterior_cov(x, t)[0, 0, 0]) - (m2 - m1 ** 2)) < 1e-8


def test_empirical_matches_autograd_and_is_stable():
    gen = torch.Generator().manual_seed(5)
    data = torch.rand(40, 3, 2, 2, generator=gen, dtype=F64) * 2 - 1
    m = EmpiricalScore(data, AB)
    D = data.reshape(40, -1)
    x = torch.randn(4, 3, 2, 2, generator=gen, dtype=F64)
    for t in (2, 300, 1000):
        a, v = AB[t], 1 - AB[t]

        def logp(z):
            return torch.logsumexp(-((z[:, None, :] - np.sqrt(a) * D[None]) ** 2).sum(-1) / (2 * v), -1)

        g = _score_autograd(logp, x.reshape(4, -1))
        out = m(x, t)
        assert out.shape == x.shape
        torch.testing.assert_close(out.reshape(4, -1), -np.sqrt(v) * g, rtol=1e-8, atol=1e-8)
        Jref = torch.func.jacrev(lambda z: m(z[None], t)[0].reshape(-1))(x[0])
        torch.testing.assert_close(m.jacobian(x, t)[0], Jref.reshape(12, 12), rtol=1e-7, atol=1e-8)
    # t = 1 (v ≈ 1e-4) in float32 at a data point: finite and ≈ the noise-free answer
    x0 = data[:2].float() * np.sqrt(AB[1])
    out = m(x0, 1)
    assert torch.isfinite(out).all()
    assert m.weights(x0, 1).max(dim=1).values.min() > 0.999


def test_errors_name_the_argument():
    m = GaussianScore(torch.eye(4, dtype=F64), AB)
    x = torch.zeros(2, 4, dtype=F64)
    with pytest.raises(ValueError, match="t:"):
        m(x, 0)
    with pytest.raises(ValueError, match="t:"):
        m(x, 1001)
    with pytest.raises(TypeError, match="t:"):
        m(x, 1.5)
    with pytest.raises(ValueError, match="x:"):
        m(torch.zeros(2, 5, dtype=F64), 3)
    with pytest.raises(ValueError, match="t:"):
        m(x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="cov"):
        GaussianScore(torch.tensor([[1.0, 2.0], [0.0, 1.0]]), AB)
    with pytest.raises(ValueError, match="cov"):
        GaussianScore(-torch.eye(2), AB)
    with pytest.raises(ValueError, match="patch_idx"):
        GaussianScore((torch.eye(2)[None].repeat(2, 1, 1), np.array([[0, 1], [1, 2]])), AB)
    with pytest.raises(ValueError, match="weights"):
        GaussianMixtureScore([0.5, 0.6], torch.zeros(2, 3), torch.zeros(2, 3, 3), AB)
    with pytest.raises(ValueError, match="alpha_bar"):
        EmpiricalScore(torch.zeros(3, 2), np.array([1.0, 0.5, 0.7]))


# ----------------------------------------------------------------------------- diffusers
@pytest.fixture(scope="module")
def unet64():
    return tiny_unet(sample_size=8, channels=(8, 16), attention=True, seed=0).double()


def test_diffusers_indexing_and_schedule(unet64):
    from diffusers import DDPMScheduler

    sch = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    model = DiffusersScore(unet64, sch)
    ac = sch.alphas_cumprod.double().numpy()
    assert model.alpha_bar.shape == (1001,) and model.alpha_bar[0] == 1.0
    np.testing.assert_array_equal(model.alpha_bar[1:], ac)
    x = torch.randn(2, 3, 8, 8, dtype=F64)
    with torch.no_grad():
        torch.testing.assert_close(model(x, 37), unet64(x, 36).sample)
        torch.testing.assert_close(model(x, torch.tensor([1, 1000])),
                                   torch.cat([unet64(x[:1], 0).sample, unet64(x[1:], 999).sample]))


def test_diffusers_forward_ad_matches_finite_differences_and_adjoint(unet64):
    model = DiffusersScore(unet64, schedules.linear(1000))
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 8, 8, generator=gen, dtype=F64)
    u = torch.randn(3, 8, 8, generator=gen, dtype=F64)
    w = torch.randn(3, 8, 8, generator=gen, dtype=F64)
    f = lambda z: model(z[None], 500)[0]
    _, Ju = torch.func.jvp(f, (x,), (u,))
    h = 1e-5
    with torch.no_grad():
        fd = (f(x + h * u) - f(x - h * u)) / (2 * h)
    torch.testing.assert_close(Ju, fd, rtol=1e-6, atol=1e-7)
    _, vjp_fn = torch.func.vjp(f, x)
    (JTw,) = vjp_fn(w)
    lhs, rhs = float((w * Ju).sum()), float((JTw * u).sum())
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))
    # vmap over tangents (what dense_jacobian does) agrees with single JVPs
    U = torch.stack([u, w])
    JU = torch.func.vmap(lambda uu: torch.func.jvp(f, (x,), (uu,))[1])(U)
    torch.testing.assert_close(JU[0], Ju)
