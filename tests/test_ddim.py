"""pifs.ddim against the x̂_0 form of the DDIM update and diffusers' DDIMScheduler."""
import numpy as np
import pytest
import torch

from pifs import geometry, schedules
from pifs.ddim import ddim_chain, ddim_step, step_coefficients, step_fn
from pifs.scores import DiffusersScore, GaussianScore, tiny_unet

torch.set_num_threads(1)
F64 = torch.float64


def test_step_equals_x0_form_of_song_et_al():
    # x_{t'} = √ᾱ_{t'} x̂0 + √(1−ᾱ_{t'}) ε̂,  x̂0 = (x − √(1−ᾱ_t) ε̂)/√ᾱ_t  (Song et al. 2021a, η = 0)
    ab = schedules.cosine(1000, 0.008)
    m = GaussianScore(torch.diag(torch.linspace(0.1, 2.0, 6, dtype=F64)), ab)
    x = torch.randn(4, 6, dtype=F64)
    for t, tp in [(1, 0), (500, 499), (999, 979), (700, 0)]:
        eps = m(x, t)
        x0 = (x - np.sqrt(1 - ab[t]) * eps) / np.sqrt(ab[t])
        ref = np.sqrt(ab[tp]) * x0 + np.sqrt(1 - ab[tp]) * eps
        torch.testing.assert_close(ddim_step(m, x, t, tp), ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ddim_step(m, x, 300), ddim_step(m, x, 300, 299))


def test_coefficients_match_eq5_and_geometry():
    ab = schedules.linear(1000)
    for t in (1, 10, 500, 1000):
        e, b = step_coefficients(ab, t, t - 1)
        b_printed = np.sqrt(1 - ab[t - 1]) - np.sqrt(ab[t - 1]) * np.sqrt(1 - ab[t]) / np.sqrt(ab[t])
        assert abs(b - b_printed) <= 1e-9 * abs(b_printed) and b < 0
        assert abs(b - geometry.score_step_coefficient(ab)[t - 1]) <= 1e-15 * abs(b)
        assert e == pytest.approx(np.sqrt(ab[t - 1] / ab[t]), rel=1e-15)


def test_errors():
    ab = schedules.cosine(100, 0.0)  # ᾱ_T = 0
    m = GaussianScore(torch.eye(2, dtype=F64), ab)
    x = torch.zeros(1, 2, dtype=F64)
    with pytest.raises(ValueError, match="t_prev"):
        ddim_step(m, x, 10, 10)
    with pytest.raises(ValueError, match="t:"):
        ddim_step(m, x, 100, 99)  # ᾱ_100 = 0
    with pytest.raises(ValueError, match="timesteps"):
        ddim_chain(m, x, [5, 3])
    with pytest.raises(TypeError, match="t"):
        step_fn(m, 2.5)


def test_chain_of_linear_gaussian_is_closed_form():
    # 1-D data N(0, λ): ε* = √v x/(ᾱλ+v), so each step multiplies x by f_t(λ) (Theorem 17), the chain by ∏ f_t
    ab = schedules.linear(50)
    lam = 0.7
    m = GaussianScore(torch.tensor([[lam]], dtype=F64), ab)
    x = torch.tensor([[1.3]], dtype=F64)
    out, traj = ddim_chain(m, x, np.arange(1, 51), return_trajectory=True)
    assert traj.shape == (51, 1, 1)
    prod = np.prod(geometry.expansion_function(lam, ab))
    assert float(out) == pytest.approx(1.3 * prod, rel=1e-12)
    f = step_fn(m, 20)
    assert float(f(torch.tensor([1.0], dtype=F64))) == pytest.approx(geometry.expansion_function(lam, ab)[19], rel=1e-12)


def test_chain_equals_diffusers_ddim_scheduler():
    from diffusers import DDIMScheduler

    unet = tiny_unet(sample_size=8, channels=(8, 16), attention=True, seed=1)
    sch = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                        set_alpha_to_one=True, clip_sample=False, timestep_spacing="leading", steps_offset=0)
    sch.set_timesteps(10)
    model = DiffusersScore(unet, sch)
    x_T = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    x = x_T.clone()
    with torch.no_grad():
        for tau in sch.timesteps:
            eps = unet(x, tau).sample
            x = sch.step(eps, tau, x, eta=0.0).prev_sample
        ours = ddim_chain(model, x_T, np.sort(sch.timesteps.numpy()) + 1)
    assert ours.dtype == torch.float32
    err = float((ours - x).abs().max())
    assert err <= 2e-5 * float(x.abs().max()), err
