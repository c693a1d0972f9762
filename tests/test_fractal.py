"""Tests of pifs.fractal: Jacquin PIFS codec and IFS attractors (paper §2.2).

Every assertion compares with an independent computation: numpy's rot90/fliplr
for D4, numpy.linalg.lstsq / scipy.optimize.lsq_linear for the block fits, a
loop-and-slicing re-implementation of the operator W, a dense matrix norm for the
ℓ2 Lipschitz constant, closed forms (log 3 / log 2) and the Banach / Collage
inequalities.
"""
import numpy as np
import pytest
from scipy.optimize import lsq_linear

from pifs import fractal as F


# --------------------------------------------------------------------------- helpers
def _sym_reference(b, a):
    """D4 element a as documented: a < 4 → rot90^a, a >= 4 → rot90^(a−4) ∘ fliplr."""
    return np.rot90(b if a < 4 else np.fliplr(b), a % 4)


def _W_loop(code, x):
    """The PIFS operator by explicit slicing, one range block at a time."""
    r = code.range_size
    out = np.empty(code.shape)
    for k, (ri, rj) in enumerate(code.range_pos):
        di, dj = code.domain_pos[k]
        D = x[di:di + 2 * r, dj:dj + 2 * r]
        ds = 0.25 * (D[0::2, 0::2] + D[0::2, 1::2] + D[1::2, 0::2] + D[1::2, 1::2])
        out[ri:ri + r, rj:rj + r] = code.s[k] * _sym_reference(ds, int(code.symmetry[k])) + code.o[k]
    return out


def _dense_linear_part(code):
    H, W = code.shape
    c = _W_loop(code, np.zeros((H, W))).ravel()
    cols = []
    for i in range(H * W):
        e = np.zeros(H * W)
        e[i] = 1.0
        cols.append(_W_loop(code, e.reshape(H, W)).ravel() - c)
    return np.array(cols).T, c


def _smooth_image(n, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n] / n
    img = 128 + 60 * np.sin(2 * np.pi * (xx + 0.3 * yy)) + 30 * np.cos(5 * yy) + 10 * rng.standard_normal((n, n))
    return img


def _random_code(n=16, r=4, stride=4, seed=0, s_max=0.9, allow_negative=False):
    """A valid random FractalCode (not produced by the encoder)."""
    rng = np.random.default_rng(seed)
    M = (n // r) ** 2
    grid = np.arange(0, n - 2 * r + 1, stride)
    pos = np.stack([rng.choice(grid, M), rng.choice(grid, M)], axis=1)
    lo = -s_max if allow_negative else 0.0
    return F.FractalCode(shape=(n, n), range_size=r, domain_stride=stride, domain_pos=pos,
                         symmetry=rng.integers(0, 8, M), s=rng.uniform(lo, s_max, M),
                         o=rng.uniform(0, 100, M), s_max=s_max, allow_negative=allow_negative)


# --------------------------------------------------------------------------- D4
def test_symmetries_match_numpy_rot_flip_and_form_a_group():
    rng = np.random.default_rng(1)
    B = rng.standard_normal((5, 5))
    imgs = [F.apply_symmetry(B, a) for a in range(8)]
    refs = [_sym_reference(B, a) for a in range(8)]
    for a in range(8):
        np.testing.assert_array_equal(imgs[a], refs[a])
    # 8 distinct elements
    assert len({im.tobytes() for im in imgs}) == 8
    # closure: applying any two gives one of the 8 (checked by array comparison)
    for a in range(8):
        for b in range(8):
            comp = _sym_reference(_sym_reference(B, b), a)
            matches = [c for c in range(8) if np.array_equal(comp, refs[c])]
            assert len(matches) == 1
            assert F.compose_symmetries(a, b) == matches[0]
    # identity and inverses
    np.testing.assert_array_equal(F.apply_symmetry(B, 0), B)
    for a in range(8):
        ainv = F.inverse_symmetry(a)
        np.testing.assert_array_equal(_sym_reference(_sym_reference(B, a), ainv), B)
        np.testing.assert_array_equal(_sym_reference(_sym_reference(B, ainv), a), B)
    # the permutation form agrees
    perms = F.symmetry_permutations(5)
    for a in range(8):
        np.testing.assert_array_equal(B.ravel()[perms[a]], refs[a].ravel())
    with pytest.raises(ValueError, match="a:"):
        F.apply_symmetry(B, 8)


# --------------------------------------------------------------------------- least squares
def test_least_squares_contrast_matches_lstsq_and_bounded_lsq():
    rng = np.random.default_rng(2)
    for trial in range(30):
        d = rng.standard_normal(16) * 20 + 100
        r = 0.7 * rng.standard_normal() * d + rng.standard_normal(16) * 5 + 30
        A = np.column_stack([d, np.ones(16)])
        (s_ref, o_ref), *_ = np.linalg.lstsq(A, r, rcond=None)
        s, o, err = F.least_squares_contrast(d, r, s_max=None)
        assert s == pytest.approx(s_ref, rel=1e-9, abs=1e-12)
        assert o == pytest.approx(o_ref, rel=1e-9, abs=1e-9)
        assert err == pytest.approx(np.sum((A @ [s_ref, o_ref] - r) ** 2), rel=1e-9, abs=1e-9)
        for allow_negative in (False, True):
            lo = -0.9 if allow_negative else 0.0
            ref = lsq_linear(A, r, bounds=([lo, -np.inf], [0.9, np.inf]), method="bvls", tol=1e-14)
            s, o, err = F.least_squares_contrast(d, r, s_max=0.9, allow_negative=allow_negative)
            assert s == pytest.approx(ref.x[0], abs=1e-8)
            assert o == pytest.approx(ref.x[1], abs=1e-6)
            assert err == pytest.approx(2 * ref.cost, rel=1e-8, abs=1e-8)
    # flat domain: s = 0, o = mean(range)
    s, o, err = F.least_squares_contrast(np.full(4, 3.0), np.array([1.0, 2, 3, 4]), s_max=0.5)
    assert s == 0 and o == pytest.approx(2.5)
    with pytest.raises(ValueError, match="s_max"):
        F.least_squares_contrast(d, r, s_max=1.0)


def test_encoder_finds_the_brute_force_minimum():
    img = _smooth_image(16, 3)
    r = 4
    for allow_negative in (False, True):
        code = F.encode(img, range_size=r, domain_stride=4, s_max=0.8, allow_negative=allow_negative)
        grid = range(0, 16 - 2 * r + 1, 4)
        lo = -0.8 if allow_negative else 0.0
        for k, (ri, rj) in enumerate(code.range_pos):
            R = img[ri:ri + r, rj:rj + r].ravel()
            best = np.inf
            for di in grid:
                for dj in grid:
                    D = img[di:di + 2 * r, dj:dj + 2 * r].reshape(r, 2, r, 2).mean(axis=(1, 3))
                    for a in range(8):
                        A = np.column_stack([_sym_reference(D, a).ravel(), np.ones(r * r)])
                        res = lsq_linear(A, R, bounds=([lo, -np.inf], [0.8, np.inf]), method="bvls")
                        best = min(best, 2 * res.cost)
            assert code.collage_error[k] == pytest.approx(best, rel=1e-6, abs=1e-6)
            assert lo <= code.s[k] <= 0.8
        # the reported block errors are those of the collage
        W = _W_loop(code, img)
        blocks = ((W - img).reshape(4, r, 4, r) ** 2).sum(axis=(1, 3)).ravel()
        np.testing.assert_allclose(code.collage_error, blocks, rtol=1e-8, atol=1e-7)


# --------------------------------------------------------------------------- operator W
def test_collage_and_operator_matrix_match_loop_reference():
    code = _random_code(n=16, seed=4, allow_negative=True)
    x = np.random.default_rng(5).uniform(0, 255, (16, 16))
    np.testing.assert_allclose(F.collage(code, x), _W_loop(code, x), rtol=1e-12, atol=1e-10)
    L, c = F.operator_matrix(code)
    Ld, cd = _dense_linear_part(code)
    np.testing.assert_allclose(L.toarray(), Ld, atol=1e-12)
    np.testing.assert_allclose(c, cd, atol=1e-12)


def test_operator_lipschitz_linf_and_l2_against_dense_norms():
    code = _random_code(n=16, seed=6, allow_negative=True)
    Ld, _ = _dense_linear_part(code)
    norms = F.operator_lipschitz(code)
    assert norms.linf == pytest.approx(np.abs(Ld).sum(1).max(), rel=1e-12)
    assert norms.linf == pytest.approx(np.abs(code.s).max(), rel=1e-12)
    assert norms.l1 == pytest.approx(np.abs(Ld).sum(0).max(), rel=1e-12)
    assert norms.l2_converged
    assert norms.l2 == pytest.approx(np.linalg.norm(Ld, 2), rel=1e-6)
    assert norms.l2 <= norms.l2_upper + 1e-12
    for p in (2, 3):
        sig, _, ok = F.operator_norm_l2(code, power=p)
        assert ok and sig == pytest.approx(np.linalg.norm(np.linalg.matrix_power(Ld, p), 2), rel=1e-6)
    # ℓ2 can exceed 1: all m = 16 range blocks (r = 2) of an 8×8 image read the same 4×4
    # domain with s = 0.9. L stacks m copies of 0.9·DS and ‖DS‖₂ = 1/2 (rows of four 1/4's,
    # mutually orthogonal), so ‖L‖₂ = 0.9·√m/2 = 1.8 while ‖L‖∞ = 0.9.
    shared = F.FractalCode(shape=(8, 8), range_size=2, domain_stride=2, domain_pos=np.zeros((16, 2), int),
                           symmetry=np.zeros(16, int), s=np.full(16, 0.9), o=np.zeros(16), s_max=0.95)
    Ls, _ = _dense_linear_part(shared)
    n2 = F.operator_lipschitz(shared)
    assert n2.linf == pytest.approx(0.9)
    assert np.linalg.norm(Ls, 2) == pytest.approx(1.8, rel=1e-12)
    assert n2.l2 == pytest.approx(1.8, rel=1e-8)


def test_decode_converges_from_two_starts_at_the_banach_rate():
    img = _smooth_image(32, 7)
    code = F.encode(img, range_size=4, domain_stride=4, s_max=0.7)
    s = np.abs(code.s).max()
    rng = np.random.default_rng(8)
    a0, b0 = np.zeros_like(img), rng.uniform(0, 255, img.shape)
    _, ha = F.decode(code, 40, start=a0, return_history=True)
    _, hb = F.decode(code, 40, start=b0, return_history=True)
    gaps = np.abs(ha - hb).max(axis=(1, 2))
    k = np.arange(41)
    assert np.all(gaps <= s**k * gaps[0] * (1 + 1e-9) + 1e-9)  # contraction in ℓ∞, Theorem 4
    assert gaps[-1] < 1e-4 * gaps[0]
    # the limit is a fixed point of the independently implemented W
    xs = F.fixed_point(code)
    np.testing.assert_allclose(_W_loop(code, xs), xs, atol=1e-8)
    d = np.abs(ha - xs).max(axis=(1, 2))
    assert np.all(d <= s**k * d[0] * (1 + 1e-9) + 1e-8)
    np.testing.assert_allclose(ha[-1], xs, atol=1e-3)


def test_decoding_a_self_similar_image_returns_it():
    # x* = attractor of a random code is exactly self-similar: encoding it again gives
    # collage error 0 and decoding that new code returns x* (Collage theorem with zero error).
    code = _random_code(n=16, seed=9, s_max=0.8)
    xs = F.decode(code, 300, start=np.zeros((16, 16)))
    np.testing.assert_allclose(_W_loop(code, xs), xs, atol=1e-9)
    code2 = F.encode(xs, range_size=4, domain_stride=4, s_max=0.8)
    assert code2.collage_error.max() < 1e-12 * np.sum(xs**2)
    back = F.decode(code2, 300, start=np.full((16, 16), 255.0))
    np.testing.assert_allclose(back, xs, atol=1e-8)


def test_collage_bound_in_sup_norm():
    # ‖x − x*‖∞ ≤ ‖x − W(x)‖∞ / (1 − s), s = max|s_k| (eq. (6) analogue, ℓ∞ metric)
    img = _smooth_image(16, 10)
    for allow_negative in (False, True):
        code = F.encode(img, range_size=4, domain_stride=2, s_max=0.6, allow_negative=allow_negative)
        s = np.abs(code.s).max()
        xs = F.decode(code, 200, start=np.zeros_like(img))
        np.testing.assert_allclose(_W_loop(code, xs), xs, atol=1e-8)
        rng = np.random.default_rng(11)
        for x in (img, rng.uniform(0, 255, img.shape), xs + rng.standard_normal(img.shape)):
            lhs = np.abs(x - xs).max()
            rhs = np.abs(x - _W_loop(code, x)).max() / (1 - s)
            assert lhs <= rhs * (1 + 1e-9) + 1e-8
            # and the lower bound ‖x − W x‖ ≤ (1 + s)‖x − x*‖
            assert np.abs(x - _W_loop(code, x)).max() <= (1 + s) * lhs * (1 + 1e-9) + 1e-8


def test_encode_input_validation():
    img = _smooth_image(16, 0)
    with pytest.raises(ValueError, match="range_size"):
        F.encode(img[:15], range_size=4)
    with pytest.raises(ValueError, match="image"):
        F.encode(img[:4, :4], range_size=4)
    with pytest.raises(ValueError, match="s_max"):
        F.encode(img, range_size=4, s_max=1.0)
    with pytest.raises(ValueError, match="image"):
        F.encode(np.stack([img, img]), range_size=4)
    with pytest.raises(ValueError, match="NaN"):
        F.encode(np.full((16, 16), np.nan), range_size=4)
    with pytest.raises(TypeError, match="code"):
        F.decode("not a code")
    code = F.encode(img, range_size=4)
    with pytest.raises(ValueError, match="domain_pos"):
        F.FractalCode(shape=(16, 16), range_size=4, domain_stride=4, domain_pos=np.full((16, 2), 12),
                      symmetry=np.zeros(16, int), s=np.zeros(16), o=np.zeros(16), s_max=0.9)
    with pytest.raises(ValueError, match="s_max"):
        F.FractalCode(shape=(16, 16), range_size=4, domain_stride=4, domain_pos=np.zeros((16, 2), int),
                      symmetry=np.zeros(16, int), s=np.full(16, 0.95), o=np.zeros(16), s_max=0.9)
    with pytest.raises(ValueError, match="start"):
        F.decode(code, start=np.zeros((8, 8)))


# --------------------------------------------------------------------------- IFS
def test_moran_dimension_closed_forms():
    assert F.moran_dimension([0.5, 0.5, 0.5]) == pytest.approx(np.log(3) / np.log(2), rel=1e-13)
    assert F.moran_dimension([1 / 3, 1 / 3]) == pytest.approx(np.log(2) / np.log(3), rel=1e-13)  # Cantor
    assert F.moran_dimension([0.5] * 4) == pytest.approx(2.0, rel=1e-13)  # the unit square
    r = np.array([0.2, 0.35, 0.6])
    d = F.moran_dimension(r)
    assert np.sum(r**d) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="ratios"):
        F.moran_dimension([0.5, 1.0])


def test_chaos_game_sierpinski_and_box_counting():
    pts = F.ifs_attractor(F.sierpinski_maps(), 60_000, seed=0)
    assert pts.shape == (60_000, 2)
    # every point lies in the triangle with vertices (0,0), (1,0), (1/2, √3/2)
    y, x = pts[:, 1], pts[:, 0]
    tol = 1e-9
    assert (y >= -tol).all() and (y <= np.sqrt(3) * x + tol).all() and (y <= np.sqrt(3) * (1 - x) + tol).all()
    # and not in the removed middle triangle of level 1 (vertices (1/4,√3/4), (3/4,√3/4), (1/2,0))
    h = np.sqrt(3) / 4
    inside_hole = (y < h - 1e-6) & (y > np.sqrt(3) * (x - 0.5) + 1e-6) & (y > -np.sqrt(3) * (x - 0.5) + 1e-6)
    assert not inside_hole.any()
    d, eps, counts = F.box_counting_dimension(pts, 2.0 ** -np.arange(3, 8))
    assert d == pytest.approx(np.log(3) / np.log(2), abs=0.05)
    # box counting on sets of known dimension
    rng = np.random.default_rng(1)
    square = rng.random((60_000, 2))
    assert F.box_counting_dimension(square, 2.0 ** -np.arange(2, 6))[0] == pytest.approx(2.0, abs=0.02)
    t = rng.random(20_000)
    line = np.column_stack([t, 0.3 * t])
    assert F.box_counting_dimension(line, 2.0 ** -np.arange(2, 9))[0] == pytest.approx(1.0, abs=0.02)
    with pytest.raises(ValueError, match="maps"):
        F.ifs_attractor(np.zeros((3, 2, 2)))
    with pytest.raises(ValueError, match="contraction"):
        F.ifs_attractor(np.array([[[1.0, 0, 0], [0, 1.0, 0]]]))
