"""pifs.geometry against the printed formulas (mpmath), autograd Jacobians, brentq and hypothesis.

Independent references used here:
- eqs. (5), (10), (26), (27) evaluated exactly as printed with mpmath at 50 digits
  (the module evaluates cancellation-free rewritings);
- the autograd Jacobian (torch.func.jacrev, float64) of Φ_t (eq. 4) under the exact
  Gaussian score ε*(x) = √v_t (ᾱ_t Σ + v_t I)^{-1} x, written out here;
- scipy brentq for λ*(t), mpmath findroot for λ** (eq. 45);
- the exact Gaussian KL divergence for IG_t (Definition 31).
"""
import math

import mpmath as mp
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import optimize

from pifs import geometry as G
from pifs import schedules as S

mp.mp.dps = 50

SCHEDULES = {
    "linear": S.linear(1000),
    "cosine0": S.cosine(1000, s=0.0),
    "cosine008": S.cosine(1000, s=0.008),
    "ddim50": S.subsample(S.cosine(1000, s=0.008), np.arange(20, 1001, 20)),
    "ddim49": S.subsample(S.cosine(1000, s=0.008), np.arange(20, 981, 20)),
}
STEPS = [1, 2, 3, 50, 349, 500, 998, 999]  # clipped to the chain length below


def _steps(a):
    T = a.size - 1
    return sorted({min(t, T - 1) for t in STEPS} | {1})  # t = T (ᾱ_T may be 0) tested separately


def _mp(a, t):
    return mp.mpf(float(a[t - 1])), mp.mpf(float(a[t]))


def printed_b(ap, at):  # eq. (5)
    return mp.sqrt(1 - ap) - mp.sqrt(ap) * mp.sqrt(1 - at) / mp.sqrt(at)


def printed_L(ap, at):  # eq. (10)
    return (mp.sqrt(ap / at) - 1) / abs(printed_b(ap, at))


def printed_f(lam, ap, at):  # eq. (26)
    vt = 1 - at
    return mp.sqrt(ap / at) - abs(printed_b(ap, at)) * mp.sqrt(vt) / (lam * at + vt)


def printed_lamstar(ap, at):  # eq. (27)
    vt, vp = 1 - at, 1 - ap
    return mp.sqrt(vt) * (mp.sqrt(vt) - mp.sqrt(vp)) / ((mp.sqrt(ap) - mp.sqrt(at)) * mp.sqrt(at))


# -- closed forms against the printed formulas -----------------------------------------------


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_closed_forms_match_printed_formulas(name):
    a = SCHEDULES[name]
    b, L, ls = G.score_step_coefficient(a), G.contraction_threshold(a), G.expansion_threshold(a)
    ef = G.expansion_factor(a)
    lams = [0.5, 1.0, 1.0025, 19.05, 44.6]
    f = G.expansion_function(np.array(lams), a)
    for t in _steps(a):
        ap, at = _mp(a, t)
        assert b[t - 1] == pytest.approx(float(printed_b(ap, at)), rel=1e-12)
        assert L[t - 1] == pytest.approx(float(printed_L(ap, at)), rel=1e-12)
        assert ls[t - 1] == pytest.approx(float(printed_lamstar(ap, at)), rel=1e-12)
        assert ef[t - 1] == pytest.approx(float(mp.sqrt(ap / at)), rel=1e-14)
        for i, lam in enumerate(lams):
            assert f[i, t - 1] == pytest.approx(float(printed_f(mp.mpf(lam), ap, at)), rel=1e-13)


def test_terminal_step_with_zero_alpha_bar():
    a = S.cosine(100, s=0.0)  # ᾱ_T = 0
    assert G.contraction_threshold(a)[-1] == 1.0  # limit of eq. (10) as ᾱ_T → 0
    assert G.score_step_coefficient(a)[-1] == -np.inf
    assert G.expansion_threshold(a)[-1] == np.inf
    assert G.expansion_factor(a)[-1] == np.inf
    # eq. (26) as ᾱ_T → 0: f_T(λ) → √v_{T−1}, for every λ
    np.testing.assert_allclose(G.expansion_function([0.3, 3.0, 300.0], a)[:, -1], math.sqrt(1 - a[-2]), rtol=1e-14)
    for eps in (1e-20, 1e-30):  # the printed form approaches it
        ap, at = mp.mpf(float(a[-2])), mp.mpf(eps)
        assert float(printed_L(ap, at)) == pytest.approx(1.0, abs=1e-8)


# -- f_t(λ) is the eigenvalue of the autograd Jacobian of Φ_t (Theorem 17) -----------------


@pytest.mark.parametrize("name", ["linear", "cosine008", "ddim50"])
def test_expansion_function_is_jacobian_eigenvalue(name):
    a = SCHEDULES[name]
    T = a.size - 1
    gen = torch.Generator().manual_seed(0)
    lam = torch.tensor([0.2, 1.0, 1.003, 5.0, 19.0, 44.4], dtype=torch.float64)
    n = lam.numel()
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    Sigma = Q @ torch.diag(lam) @ Q.T
    x0 = torch.randn(n, generator=gen, dtype=torch.float64)
    for t in sorted({1, 2, T // 3, T // 2, T - 1}):
        ap, at = float(a[t - 1]), float(a[t])
        vp, vt = 1.0 - ap, 1.0 - at
        b_t = math.sqrt(vp) - math.sqrt(ap) * math.sqrt(vt) / math.sqrt(at)  # eq. (5)

        def eps_star(x):  # exact Gaussian ε* = −√v_t ∇ log p_t = √v_t (ᾱ_t Σ + v_t I)^{-1} x
            return math.sqrt(vt) * torch.linalg.solve(at * Sigma + vt * torch.eye(n, dtype=torch.float64), x)

        def phi(x):  # eq. (4)
            return math.sqrt(ap / at) * x + b_t * eps_star(x)

        J = torch.func.jacrev(phi)(x0)
        eig = torch.linalg.eigvalsh(0.5 * (J + J.T)).numpy()
        # the eigenvector of Σ with eigenvalue λ is one of J with eigenvalue f_t(λ)
        ev = (Q.T @ J @ Q).diagonal().numpy()
        np.testing.assert_allclose(ev, G.expansion_function(lam.numpy(), a)[:, t - 1], rtol=1e-10)
        np.testing.assert_allclose(np.sort(eig), np.sort(ev), rtol=1e-10)
        # spectral norm of the (symmetric) block is f_t(λ_max) (Theorem 17)
        assert np.abs(eig).max() == pytest.approx(G.expansion_function(44.4, a)[t - 1], rel=1e-10)


# -- λ*(t) and λ** as roots -------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_expansion_threshold_solves_f_equal_one(name):
    a = SCHEDULES[name]
    ls = G.expansion_threshold(a)
    for t in _steps(a):
        ap, at = float(a[t - 1]), float(a[t])
        vp, vt = 1 - ap, 1 - at
        absb = abs(math.sqrt(vp) - math.sqrt(ap * vt / at))

        def g(lam):  # f_t(λ) − 1 with f_t as printed in eq. (26)
            return math.sqrt(ap / at) - absb * math.sqrt(vt) / (lam * at + vt) - 1.0

        root = optimize.brentq(g, 1.0, 1e6, xtol=1e-15, rtol=1e-15)
        assert ls[t - 1] == pytest.approx(root, rel=1e-9)


@pytest.mark.parametrize("name", ["linear", "ddim49"])
def test_moran_threshold_against_mpmath(name):
    a = SCHEDULES[name]
    mp.mp.dps = 30
    am = [mp.mpf(float(x)) for x in a]

    def H(lam):  # Σ_t log f_t(λ), eq. (45) in logs, f_t as printed (26)
        s = mp.mpf(0)
        for t in range(1, len(am)):
            s += mp.log(printed_f(lam, am[t - 1], am[t]))
        return s

    root = mp.findroot(H, (mp.mpf(1), mp.mpf(2)), solver="illinois", tol=mp.mpf(10) ** -40)
    mp.mp.dps = 50
    lss, info = G.moran_threshold(a, return_info=True)
    assert lss == pytest.approx(float(root), rel=1e-11)
    assert info["residual"] < 1e-10


def test_moran_threshold_no_root_raises():
    # ᾱ_T = 0 with ᾱ_{T−1} > 1/2: ∏ f_t(λ) → √(v_{T−1}/ᾱ_{T−1}) < 1 as λ → ∞, no solution
    with pytest.raises(ValueError, match="alpha_bar"):
        G.moran_threshold([1.0, 0.9, 0.8, 0.0])


# -- other quantities --------------------------------------------------------------------------


def test_information_gain_exact_is_gaussian_kl():
    a = S.cosine(200, s=0.008)[:-1]  # drop ᾱ_T = 0
    lam = np.array([19.0, 25.0, 44.0])
    n = np.array([192, 192, 48])
    ig = G.information_gain(lam, n, a, exact=True)
    for t in (1, 7, 100, 198):
        kl = 0.0
        for lk, nk in zip(lam, n):  # KL(N(0, s1 I) ‖ N(0, s0 I)), s1 at t−1, s0 at t
            s1, s0 = a[t - 1] * lk + 1 - a[t - 1], a[t] * lk + 1 - a[t]
            kl += 0.5 * nk * (s1 / s0 - 1 - math.log(s1 / s0))
        assert ig[t - 1] == pytest.approx(kl, rel=1e-9)


def test_information_gain_approximation_is_leading_order():
    lam, n = np.array([19.0, 30.0, 44.0]), 192

    def max_rel_err(T):
        a = S.cosine(T, s=0.008)
        keep = slice(T // 100, T - T // 20)  # u = t/T in [0.01, 0.95]: away from v_{t−1} ≈ 0 and ᾱ_t ≈ 0
        ex = G.information_gain(lam, n, a, exact=True)[keep]
        ap = G.information_gain(lam, n, a)[keep]
        np.testing.assert_allclose(ap, (n * np.log(G.expansion_function(lam, a)) ** 2).sum(0)[keep])
        return np.abs(ap / ex - 1).max()

    e1, e2 = max_rel_err(1000), max_rel_err(4000)
    assert e1 < 0.05 and e2 < 0.4 * e1  # the relative error is O(Δᾱ): it shrinks with the step


def test_dimension_growth_is_sum_over_expanding_patches():
    a = S.linear(1000)
    lss = G.moran_threshold(a)
    lam = np.array([0.5, 1.0, lss * 1.0001, 20.0])
    dd = G.dimension_growth(lam, 192, a)
    ref = 192 * (np.log(G.expansion_function(lam[2], a)) + np.log(G.expansion_function(lam[3], a)))
    np.testing.assert_allclose(dd, ref, rtol=1e-12)


def test_step_density_and_optimal_timesteps():
    a = S.linear(1000)
    L = G.contraction_threshold(a)
    rho = G.step_density(a)
    assert rho.sum() == pytest.approx(1.0) and np.allclose(rho * L, rho[0] * L[0])  # ρ* ∝ 1/L* (64)
    for N in (1, 10, 50):
        ts = G.optimal_timesteps(a, N)
        assert ts.shape == (N,) and ts.dtype == np.int64
        assert ts[0] >= 1 and ts[-1] <= 1000 and (np.diff(ts) > 0).all()
        # brute force: the first training index whose cumulative mass reaches (i − ½)/N,
        # pushed up by one where it would repeat the previous timestep
        cdf = np.cumsum(rho)
        expected, prev = [], 0
        for i in range(N):
            t = 1 + next(j for j in range(1000) if cdf[j] >= (i + 0.5) / N)
            prev = max(t, prev + 1)
            expected.append(prev)
        np.testing.assert_array_equal(ts, expected)
    # concentration at the fine-detail end, where L*_t is smallest (Theorem 35)
    ts = G.optimal_timesteps(a, 10)
    assert (np.diff(ts) > 0).all() and ts[0] < 1000 / 20 and np.diff(ts)[0] < np.diff(ts)[-1]
    np.testing.assert_array_equal(G.optimal_timesteps(S.linear(20), 20), np.arange(1, 21))
    for bad in (0, 1001, 2.5):
        with pytest.raises(ValueError, match="n_steps"):
            G.optimal_timesteps(a, bad)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan])
def test_nonpositive_lambda_rejected(bad):
    a = S.linear(10)
    with pytest.raises(ValueError, match="λ|lam"):
        G.expansion_function(bad, a)
    with pytest.raises(ValueError):
        G.information_gain([1.0, bad], 192, a)


def test_invalid_schedule_rejected_everywhere():
    bad = [1.0, 0.5, 0.5]
    for fn in (G.score_step_coefficient, G.contraction_threshold, G.expansion_threshold, G.moran_threshold,
               G.step_density):
        with pytest.raises(ValueError, match="alpha_bar"):
            fn(bad)


# -- property-based: random strictly decreasing schedules -------------------------------------


@st.composite
def schedules(draw, min_T=2, max_T=40):
    T = draw(st.integers(min_T, max_T))
    betas = draw(st.lists(st.floats(1e-3, 0.5, exclude_max=True), min_size=T, max_size=T))
    a = np.concatenate([[1.0], np.cumprod(1.0 - np.asarray(betas))])
    if draw(st.booleans()):
        a[-1] = 0.0  # ends in pure noise (legal, as the cosine schedule)
    return a


PROP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROP
@given(schedules())
def test_prop3_b_negative(a):
    assert (G.score_step_coefficient(a) < 0).all()


@PROP
@given(schedules())
def test_thm17b_threshold_above_one(a):
    assert (G.expansion_threshold(a) > 1).all()
    assert (G.expansion_function(1.0, a) < 1).all()  # f_t(1) < 1, the proof of (b)


@PROP
@given(schedules(), st.floats(0.01, 100.0))
def test_thm17c_f_increasing(a, lam):
    f1, f2 = G.expansion_function(np.array([lam, 1.5 * lam]), a)
    pos = a[1:] > 0  # at a step with ᾱ_t = 0, f_t ≡ √v_{t−1} does not depend on λ
    assert (f2 > f1)[pos].all() and np.allclose(f2[~pos], f1[~pos])
    # and (a): f_t(λ) < 1 ⟺ λ < λ*(t)
    ls = G.expansion_threshold(a)
    far = np.abs(lam / ls - 1) > 1e-9
    assert ((f1 < 1) == (lam < ls))[far].all()


@PROP
@given(schedules(min_T=2))
def test_thm25_unique_root_and_above_min_threshold(a):
    a_t, a_p = a[1:], a[:-1]
    with np.errstate(divide="ignore"):
        lim = np.where(a_t > 0, 0.5 * (np.log(a_p) - np.log(a_t)), 0.5 * np.log(1 - a_p)).sum()
    assume(lim > 1e-3)  # a root exists (the λ → ∞ limit of ∏ f_t exceeds 1)
    u = np.linspace(-5, 25, 3001)
    h = np.log(G.expansion_function(np.exp(u), a)).sum(axis=-1)
    assert (np.diff(np.sign(h)) != 0).sum() == 1  # one sign change: a unique root
    lss = G.moran_threshold(a)
    assert lss > 1
    ls = G.expansion_threshold(a)
    v = 1 - a
    ratio = v[2:] / v[1:-1]
    if a.size > 3 and np.ptp(ratio[np.isfinite(ratio)]) > 1e-6:  # v_t/v_{t−1} not constant
        assert lss > ls.min()  # Theorem 25(c)


@PROP
@given(schedules(min_T=3))
def test_thm28_contraction_threshold_not_constant(a):
    L = G.contraction_threshold(a)
    assert np.ptp(L) > 1e-12
