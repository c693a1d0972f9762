"""pifs.schedules against diffusers, the printed eq. (2) and the validation rules (§2.1).

Independent references: diffusers' DDPMScheduler / DDIMScheduler (float32, timestep τ
indexed from 0: its alphas_cumprod[τ] is our ᾱ_{τ+1}), eq. (2) evaluated term by term
with mpmath, and the definitions SNR = ᾱ/(1−ᾱ), logSNR = log SNR (eq. 3).
"""
import math

import mpmath as mp
import numpy as np
import pytest

from pifs import schedules as S

diffusers = pytest.importorskip("diffusers")


# -- linear schedule ---------------------------------------------------------------------


def test_linear_matches_diffusers_ddpm():
    ours = S.linear(1000)
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").alphas_cumprod.double().numpy()
    assert ours.shape == (1001,) and ours[0] == 1.0
    # diffusers accumulates in float32: agreement to float32 round-off of a product of 1000 terms
    np.testing.assert_allclose(ours[1:], ref, rtol=2e-5, atol=1e-7)


def test_linear_matches_product_of_betas_float64():
    T, b0, b1 = 1000, 1e-4, 0.02
    prod, ref = 1.0, [1.0]
    for s in range(1, T + 1):
        beta = b0 + (s - 1) * (b1 - b0) / (T - 1)
        prod *= 1.0 - beta
        ref.append(prod)
    np.testing.assert_allclose(S.linear(T, b0, b1), ref, rtol=1e-12)


# -- cosine schedule (eq. 2) ---------------------------------------------------------------


@pytest.mark.parametrize("s_off", [0.0, 0.008])
def test_cosine_matches_eq2_mpmath(s_off):
    T = 1000
    a = S.cosine(T, s=s_off)
    mp.mp.dps = 40
    s = mp.mpf(s_off)

    def f(t):
        return mp.cos((mp.mpf(t) / T + s) / (1 + s) * mp.pi / 2) ** 2

    for t in [0, 1, 2, 3, 10, 260, 500, 777, 990, 999]:
        ref = f(t) / f(0)
        assert a[t] == pytest.approx(float(ref), rel=1e-12, abs=1e-300)
    assert a[0] == 1.0 and a[T] == 0.0  # ᾱ_T = cos²(π/2) = 0, set exactly


def test_cosine_matches_diffusers_squaredcos_before_clipping():
    # diffusers builds β_t = min(1 − ᾱ(t)/ᾱ(t−1), 0.999): identical to eq. (2) until the clip acts
    ours = S.cosine(1000, s=0.008)
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2").alphas_cumprod
    ref = ref.double().numpy()
    np.testing.assert_allclose(ours[1:996], ref[:995], rtol=1e-4, atol=2e-7)


def test_cosine_first_step_matches_eq59():
    # v_1 of the cosine schedule, eq. (59) evaluated directly
    for s_off in (0.0, 0.008):
        a = S.cosine(1000, s=s_off)
        v1 = 1 - math.cos((1 / 1000 + s_off) / (1 + s_off) * math.pi / 2) ** 2 / math.cos(
            s_off / (1 + s_off) * math.pi / 2) ** 2
        assert 1 - a[1] == pytest.approx(v1, rel=1e-9)


# -- derived quantities ---------------------------------------------------------------------


def test_v_snr_log_snr_definitions():
    a = S.linear(50)
    np.testing.assert_array_equal(S.v(a), 1 - a)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(S.snr(a)[1:], a[1:] / (1 - a[1:]), rtol=1e-14)
        np.testing.assert_allclose(S.log_snr(a)[1:], np.log(a[1:] / (1 - a[1:])), rtol=1e-12)
    assert S.snr(a)[0] == np.inf
    c = S.cosine(20, s=0.0)
    assert S.snr(c)[-1] == 0.0 and S.log_snr(c)[-1] == -np.inf


# -- subsample -----------------------------------------------------------------------------


def test_subsample_is_indexing_with_clean_start():
    a = S.cosine(1000)
    ts = np.arange(20, 1001, 20)
    ch = S.subsample(a, ts)
    assert ch.shape == (51,) and ch[0] == 1.0
    np.testing.assert_array_equal(ch[1:], [a[t] for t in ts])


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_subsample_diffusers_ddim_timesteps(spacing):
    sch = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", timestep_spacing=spacing)
    sch.set_timesteps(50)
    tau = np.sort(sch.timesteps.numpy())  # diffusers indices, descending → ascending
    ch = S.subsample(S.linear(1000), tau + 1)  # our t = τ + 1
    ref = sch.alphas_cumprod.double().numpy()[tau]
    np.testing.assert_allclose(ch[1:], ref, rtol=2e-5, atol=1e-7)


# -- shift_log_snr (eq. 61) ----------------------------------------------------------------


@pytest.mark.parametrize("c", [-2 * math.log(4), -1.0, 0.3, 2.0])
def test_shift_log_snr_shifts_logsnr_by_c(c):
    a = S.cosine(200, s=0.008)
    b = S.shift_log_snr(a, c)
    assert b[0] == 1.0 and b[-1] == 0.0
    inner = slice(1, -1)
    np.testing.assert_allclose(np.log(b[inner] / (1 - b[inner])) - np.log(a[inner] / (1 - a[inner])), c,
                               atol=1e-9)
    # SNR'_t = e^c SNR_t, i.e. ᾱ' = e^c ᾱ / (1 − ᾱ + e^c ᾱ)
    np.testing.assert_allclose(b[inner], math.exp(c) * a[inner] / (1 - a[inner] + math.exp(c) * a[inner]),
                               rtol=1e-12)


def test_shift_log_snr_zero_and_composition():
    a = S.linear(300)
    np.testing.assert_allclose(S.shift_log_snr(a, 0.0), a, rtol=1e-12)
    np.testing.assert_allclose(S.shift_log_snr(S.shift_log_snr(a, 0.7), -1.9), S.shift_log_snr(a, -1.2),
                               rtol=1e-10)


# -- validation: every invalid input raises ValueError naming the argument ---------------


@pytest.mark.parametrize(
    "bad, match",
    [
        ([1.0, 0.9, 0.9, 0.5], "strictly decreasing"),
        ([1.0, 0.5, 0.7, 0.1], "strictly decreasing"),
        ([0.99, 0.5, 0.1], r"alpha_bar\[0\]"),
        ([1.0, 0.5, -0.1], r"\[0, 1\]"),
        ([1.0, 1.2, 0.5], r"\[0, 1\]"),
        ([1.0, np.nan, 0.1], "NaN"),
        ([1.0], "shape"),
        ([[1.0, 0.5], [1.0, 0.5]], "shape"),
    ],
)
def test_validate_rejects(bad, match):
    with pytest.raises(ValueError, match=match) as err:
        S.validate(bad)
    assert "alpha_bar" in str(err.value)


@pytest.mark.parametrize("fn", [S.v, S.snr, S.log_snr, lambda a: S.shift_log_snr(a, 0.1),
                                lambda a: S.subsample(a, [1])])
def test_every_function_validates(fn):
    with pytest.raises(ValueError, match="alpha_bar"):
        fn([1.0, 0.5, 0.6])


def test_validate_accepts_terminal_zero_and_returns_float64():
    out = S.validate(np.array([1, 0.5, 0.0], dtype=np.float32))
    assert out.dtype == np.float64


@pytest.mark.parametrize("T", [0, -3, 2.5])
def test_bad_T(T):
    with pytest.raises(ValueError, match="T"):
        S.linear(T)
    with pytest.raises(ValueError, match="T"):
        S.cosine(T)


def test_bad_parameters():
    with pytest.raises(ValueError, match="s"):
        S.cosine(10, s=-0.01)
    with pytest.raises(ValueError, match="s"):
        S.cosine(10, s=float("nan"))
    with pytest.raises(ValueError, match="beta_start"):
        S.linear(10, beta_start=0.0)
    with pytest.raises(ValueError, match="beta_end"):
        S.linear(10, beta_end=1.0)
    with pytest.raises(ValueError, match="c"):
        S.shift_log_snr(S.linear(10), float("inf"))
    with pytest.raises(ValueError, match="c"):
        S.shift_log_snr(S.linear(10), float("nan"))


@pytest.mark.parametrize("ts", [[3, 2], [0, 5], [5, 11], [1.0, 2.0], [], [[1, 2]]])
def test_subsample_rejects(ts):
    with pytest.raises(ValueError, match="timesteps"):
        S.subsample(S.linear(10), ts)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("n", [1, 7, 49, 50])
def test_ddim_timesteps_match_diffusers(spacing, n):
    from diffusers import DDIMScheduler

    from pifs.schedules import ddim_timesteps

    sched = DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
    sched.set_timesteps(n)
    # diffusers' τ indexes alphas_cumprod from 0; ours is t = τ + 1
    np.testing.assert_array_equal(ddim_timesteps(n, 1000, spacing), np.sort(sched.timesteps.numpy()) + 1)


def test_ddim_timesteps_rejects_bad_input():
    from pifs.schedules import ddim_timesteps

    with pytest.raises(ValueError, match="n_steps"):
        ddim_timesteps(0)
    with pytest.raises(ValueError, match="spacing"):
        ddim_timesteps(10, spacing="middle")
