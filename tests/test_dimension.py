"""Tests of pifs.dimension against independent computations.

Oracles: hand-evaluated Kaplan–Yorke sums; eigenvalues (numpy.linalg.eigvals)
of constant matrices (Oseledets limit of the QR method); high-precision
(mpmath, 60 digits) SVD of explicit matrix products; brute-force products of
the closed-form Gaussian DDIM Jacobians built from eq. (4) and the exact
Gaussian score (not from pifs.geometry.expansion_function).
"""
import numpy as np
import pytest

from pifs import dimension as D
from pifs import schedules


# ----------------------------------------------------------------------------- eq. (44)
def test_ky_hand_example():
    # ℓ = (1, 0.5, −1, −2): partial sums 1, 1.5, 0.5, −1.5 → j* = 3, d = 3 + 0.5/2
    assert D.kaplan_yorke_dimension([-1.0, 0.5, -2.0, 1.0]) == pytest.approx(3.25, abs=1e-15)


def test_ky_lorenz_like():
    # Lorenz exponents (0.906, 0, −14.572): d = 2 + 0.906/14.572
    assert D.kaplan_yorke_dimension([0.906, 0.0, -14.572]) == pytest.approx(2 + 0.906 / 14.572, rel=1e-14)


def test_ky_all_negative_is_zero():
    d, info = D.kaplan_yorke_dimension([-0.1, -3.0, -0.2], return_info=True)
    assert d == 0.0 and info["j_star"] == 0


def test_ky_all_partial_sums_nonnegative_is_n():
    assert D.kaplan_yorke_dimension([2.0, 1.0, 0.0, 0.0]) == 4.0
    # partial sums 1, 0.5, 0 — all ≥ 0 — so j* = n even though exponents are negative
    assert D.kaplan_yorke_dimension([1.0, -0.5, -0.5]) == 3.0


def test_ky_ties_and_order_invariance():
    ell = [0.3, 0.3, -0.4, -0.4, -0.4]
    # partial sums .3 .6 .2 −.2 → j* = 3, d = 3 + 0.2/0.4
    rng = np.random.default_rng(0)
    for _ in range(5):
        assert D.kaplan_yorke_dimension(rng.permutation(ell)) == pytest.approx(3.5, abs=1e-12)


@pytest.mark.parametrize("bad", [[], [np.nan, 1.0], [np.inf, -1.0], [[1.0, -1.0]]])
def test_ky_bad_input(bad):
    with pytest.raises(ValueError, match="exponents"):
        D.kaplan_yorke_dimension(bad)


def test_ky_non_numeric():
    with pytest.raises(TypeError, match="exponents"):
        D.kaplan_yorke_dimension(["a", "b"])


# ----------------------------------------------------------------------------- eq. (43)
def _random_orth(n, rng):
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return q


def test_qr_constant_nonnormal_matrix_tends_to_log_abs_eigs():
    # Oseledets: for a constant (non-normal) A, the QR exponents tend to log|eig(A)|.
    rng = np.random.default_rng(1)
    n = 5
    V = rng.standard_normal((n, n))
    eig = np.array([2.0, 1.3, 0.9, 0.5, 0.1])
    A = V @ np.diag(eig) @ np.linalg.inv(V)
    ell = D.lyapunov_spectrum([A] * 3000, method="qr")
    np.testing.assert_allclose(ell, np.log(eig), atol=5e-3)  # O(1/T) transient


def test_qr_long_chain_is_stable():
    # 20,000 steps of exponents ±3 per step: the product over/underflows float64 by
    # e^{60000}; the QR accumulation must stay finite and exact for a diagonal chain.
    d = np.exp(np.array([3.0, 0.5, -1.0, -3.0]))
    ell = D.lyapunov_spectrum(np.broadcast_to(np.diag(d), (20000, 4, 4)), method="qr", q0=np.eye(4))
    np.testing.assert_allclose(ell, np.log(d), rtol=1e-12)


def test_svd_matches_mpmath_product_svd():
    mpmath = pytest.importorskip("mpmath")
    rng = np.random.default_rng(2)
    n, T = 4, 12
    mats = []
    for _ in range(T):  # spread singular values e^{±2.5} per step: product condition ~ e^{60}
        U, V = _random_orth(n, rng), _random_orth(n, rng)
        mats.append(U @ np.diag(np.exp([2.5, 0.7, -0.8, -2.5])) @ V.T)
    ell = D.lyapunov_spectrum(mats, method="svd", tol=1e-14, max_iter=500)
    mpmath.mp.dps = 60
    P = mpmath.eye(n)
    for J in mats:  # application order: P = J_T ⋯ J_1
        P = mpmath.matrix(J.tolist()) * P
    s = mpmath.svd_r(P, compute_uv=False)
    ref = np.sort([float(mpmath.log(s[i])) for i in range(n)])[::-1] / T
    np.testing.assert_allclose(ell, ref, atol=1e-10)
    # the naive SVD of the float64 product loses the smallest singular value entirely
    Pf = np.linalg.multi_dot(mats[::-1])
    naive = np.log(np.linalg.svd(Pf, compute_uv=False)) / T
    assert abs(naive[-1] - ref[-1]) > 1e-3


def test_qr_single_pass_depends_on_frame_but_total_does_not():
    rng = np.random.default_rng(3)
    mats = [rng.standard_normal((4, 4)) for _ in range(6)]
    exact = D.lyapunov_spectrum(mats, method="svd")
    qr1 = D.lyapunov_spectrum(mats, method="qr", seed=0)
    qr2 = D.lyapunov_spectrum(mats, method="qr", seed=1)
    logdet = sum(np.linalg.slogdet(J)[1] for J in mats) / 6
    assert qr1.sum() == pytest.approx(logdet, abs=1e-10)
    assert qr2.sum() == pytest.approx(logdet, abs=1e-10)
    assert exact.sum() == pytest.approx(logdet, abs=1e-8)
    # top QR exponent never exceeds the top exact one (volume growth ≤ Σ log s_j)
    assert qr1[0] <= exact[0] + 1e-12 and qr2[0] <= exact[0] + 1e-12


def test_jvp_route_matches_dense_first_k():
    rng = np.random.default_rng(4)
    mats = [rng.standard_normal((6, 6)) * 0.7 for _ in range(10)]
    q0 = np.linalg.qr(rng.standard_normal((6, 2)))[0]
    dense = D.lyapunov_spectrum(mats, method="qr", q0=q0, k=2)
    jvp = D.lyapunov_spectrum(jvp_fn=lambda i, V: mats[i] @ V, n_steps=10, dim=6, k=2, q0=q0)
    np.testing.assert_allclose(jvp, dense, rtol=1e-12)


def test_lyapunov_bad_inputs():
    with pytest.raises(ValueError, match="jacobians / jvp_fn"):
        D.lyapunov_spectrum()
    with pytest.raises(ValueError, match="method"):
        D.lyapunov_spectrum([np.eye(2)], method="lu")
    with pytest.raises(ValueError, match="jacobians"):
        D.lyapunov_spectrum([np.eye(2), np.eye(3)])
    with pytest.raises(ValueError, match="k"):
        D.lyapunov_spectrum([np.eye(2)], k=3)
    with pytest.raises(ValueError, match="method"):
        D.lyapunov_spectrum(jvp_fn=lambda i, V: V, n_steps=2, dim=2, method="svd")
    with pytest.raises(ValueError, match="non-finite"):
        D.lyapunov_spectrum([np.full((2, 2), np.nan)])


# ----------------------------------------------------------------------------- Theorem 26
def _gaussian_chain_jacobians(lam, n_k, alpha_bar):
    """Closed-form J Φ_t = √(ᾱ_{t−1}/ᾱ_t) I + b_t √v_t (ᾱ_t Σ + v_t I)^{-1} (eqs. 4, 5, 7), printed b_t."""
    a = np.asarray(alpha_bar)
    sig = np.repeat(lam, n_k)
    out = []
    for t in range(a.size - 1, 0, -1):  # application order: t = T first
        v_t, v_p = 1 - a[t], 1 - a[t - 1]
        b = np.sqrt(v_p) - np.sqrt(a[t - 1]) * np.sqrt(v_t) / np.sqrt(a[t])
        out.append(np.diag(np.sqrt(a[t - 1] / a[t]) + b * np.sqrt(v_t) / (a[t] * sig + v_t)))
    return out


def test_gaussian_spectrum_matches_brute_force():
    a = schedules.subsample(schedules.linear(1000), np.arange(25, 1000, 40))  # 25 steps, ᾱ_T > 0
    lam, nk = np.array([0.2, 0.8, 1.3, 4.0]), np.array([3, 2, 3, 1])
    J = _gaussian_chain_jacobians(lam, nk, a)
    R = _random_orth(nk.sum(), np.random.default_rng(5))
    J = [R @ M @ R.T for M in J]  # rotate: not diagonal in the coordinate basis any more
    brute = D.lyapunov_spectrum(J, method="svd")
    np.testing.assert_allclose(D.gaussian_lyapunov_spectrum(lam, nk, a), brute, atol=1e-12)


def test_gaussian_ky_formula_47_and_condition():
    a = schedules.subsample(schedules.linear(1000), np.arange(25, 1000, 40))
    from pifs.geometry import moran_threshold, mean_lyapunov_exponent

    lss = moran_threshold(a)
    lam = np.array([0.3, lss * 0.7, lss * 1.02, lss * 1.05])
    res = D.gaussian_kaplan_yorke(lam, 3, a)
    Lam = mean_lyapunov_exponent(lam, a)
    assert res.n_plus == 6 and res.k_star == 1
    expected = 6 + 3 * (Lam[2] + Lam[3]) / abs(Lam[1])
    assert res.condition and res.formula == pytest.approx(expected, rel=1e-12)
    assert res.d_ky == pytest.approx(expected, rel=1e-12)


def test_gaussian_ky_saturated_and_empty():
    a = schedules.linear(200)
    res = D.gaussian_kaplan_yorke([30.0, 40.0], 192, a)
    assert res.d_ky == 384.0 and res.formula is None and res.n_plus == 384
    res0 = D.gaussian_kaplan_yorke([0.5, 0.9], 3, a)
    assert res0.d_ky == 0.0 and res0.formula == 0.0 and res0.n_plus == 0


def test_gaussian_bad_inputs():
    with pytest.raises(ValueError, match="lam"):
        D.gaussian_lyapunov_spectrum([1.0, -2.0], 3, schedules.linear(10))
    with pytest.raises(ValueError, match="n_k"):
        D.gaussian_lyapunov_spectrum([1.0, 2.0], [3, 0], schedules.linear(10))
    with pytest.raises(ValueError, match="n_k"):
        D.gaussian_lyapunov_spectrum([1.0, 2.0], [3, 2, 1], schedules.linear(10))


# ----------------------------------------------------------------------------- Theorem 27
def test_suppressed_exponents_by_hand_and_zero_suppression():
    a = schedules.linear(50)
    from pifs.geometry import expansion_function, mean_lyapunov_exponent

    lam = np.array([2.0, 5.0])
    f = expansion_function(lam, a)
    rng = np.random.default_rng(6)
    S = rng.uniform(0, 0.5, size=(7, 2, 50)) * (f - 0.5)[None] * 0 + rng.uniform(0, 0.1, size=(7, 2, 50))
    got = D.suppressed_exponents(lam, S, a)
    want = np.array([np.mean([np.log(f[k] - S[s, k]).mean() for s in range(7)]) for k in range(2)])
    np.testing.assert_allclose(got, want, rtol=1e-13)
    np.testing.assert_allclose(D.suppressed_exponents(lam, np.zeros((2, 50)), a), mean_lyapunov_exponent(lam, a),
                               rtol=1e-13)


def test_suppressed_raises_when_S_reaches_f():
    a = schedules.linear(20)
    from pifs.geometry import expansion_function

    S = np.zeros((1, 20))
    S[0, 4] = expansion_function([3.0], a)[0, 4]
    with pytest.raises(ValueError, match="Theorem 27"):
        D.suppressed_exponents([3.0], S, a)
    with pytest.raises(ValueError, match="S: expected shape"):
        D.suppressed_exponents([3.0], np.zeros((2, 20)), a)


def test_suppressed_ky_formula_50():
    a = schedules.linear(100)
    from pifs.geometry import expansion_function

    lam = np.array([0.5, 3.0, 6.0])
    f = expansion_function(lam, a)
    S = np.zeros((3, 100))
    S[2] = 0.3 * (f[2] - 1).clip(min=0)  # mild suppression of the top patch
    res = D.suppressed_kaplan_yorke(lam, 2, S, a)
    Le = np.log(f - S).mean(-1)
    assert np.all(Le[1:] > 0) and Le[0] < 0
    assert res.n_plus == 4 and res.k_star == 0
    assert res.formula == pytest.approx(4 + 2 * (Le[1] + Le[2]) / abs(Le[0]), rel=1e-12)
