"""Tests of pifs.experiments (the §7 measurement helpers).

Every check compares with an independent computation: closed-form Jacobians of exact
Gaussian score models, autograd, numpy/scipy formulas written out here, or diffusers.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats as sst

from pifs import experiments as E
from pifs.geometry import expansion_function, moran_threshold
from pifs.patches import patch_indices
from pifs.schedules import ddim_timesteps, linear, subsample
from pifs.scores import GaussianScore

SHAPE = (3, 8, 8)
P = 4  # patches of 4×4: M = 4, n_k = 48


def _random_images(n=300, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 1, 8, 8)) * 0.5
    return np.clip(base + 0.3 * rng.normal(size=(n, 3, 8, 8)), -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def setting():
    torch.manual_seed(0)
    a = linear(100)
    imgs = _random_images()
    st = E.patch_statistics(imgs, P)
    sur = st.surrogate(a)
    # a non-block-diagonal "model": exact score of a Gaussian with a dense covariance
    rng = np.random.default_rng(1)
    A = rng.normal(size=(192, 192)) / 12
    model = GaussianScore(A @ A.T + 0.05 * np.eye(192), a)
    return a, imgs, st, sur, model


# ----------------------------------------------------------------------------- timesteps
def test_chain_matches_diffusers_ddim():
    from diffusers import DDIMScheduler

    sch = DDIMScheduler(num_train_timesteps=1000)
    sch.set_timesteps(50)
    ours = ddim_timesteps(50, 1000)
    assert np.array_equal(np.sort(sch.timesteps.numpy()) + 1, ours)  # diffusers τ = t − 1
    assert E.training_index(980) == 981 and E.training_index(601, "ours") == 601
    assert np.array_equal(E.training_index(np.array([0, 20])), [1, 21])
    with pytest.raises(ValueError, match="n_steps"):
        ddim_timesteps(0)
    with pytest.raises(ValueError, match="convention"):
        E.training_index(3, "other")
    with pytest.raises(ValueError, match="printed"):
        E.training_index(-1)


# ----------------------------------------------------------------------------- data
def test_patch_statistics_against_numpy(setting):
    _, imgs, st, _, _ = setting
    idx = patch_indices(SHAPE, P)
    flat = imgs.reshape(len(imgs), -1).astype(np.float64)
    for k in range(idx.shape[0]):
        C = np.cov(flat[:, idx[k]], rowvar=False)
        np.testing.assert_allclose(st.cov[k], C, rtol=1e-10, atol=1e-12)
        w, V = np.linalg.eigh(C)
        assert st.lam[k] == pytest.approx(w[-1], rel=1e-10)
        assert abs(abs(st.vecs[k] @ V[:, -1]) - 1) < 1e-8
        assert st.vecs[k][np.abs(st.vecs[k]).argmax()] > 0
    assert (st.M, st.n_k, st.n_images) == (4, 48, len(imgs))
    with pytest.raises(ValueError, match="images"):
        E.patch_statistics(imgs[:1], P)


def test_load_images_fallback_and_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("PIFS_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("pifs.data._cache_dir", lambda: tmp_path / "cache", raising=False)
    x, note = E.load_images(6, root=tmp_path / "nothing", show=False)
    assert x.shape == (6, 3, 32, 32) and x.dtype == np.float32
    assert x.min() >= -1 and x.max() <= 1 and "NOT CIFAR-10" in note
    with pytest.raises(ValueError, match="n"):
        E.load_images(0, show=False)
    # image folder (CelebA-HQ reader)
    with pytest.raises(FileNotFoundError, match="celeba_dir"):
        E.load_image_folder("")
    with pytest.raises(FileNotFoundError, match="no .png"):
        E.load_image_folder(tmp_path)
    from skimage import io

    pic = (np.arange(40 * 40 * 3).reshape(40, 40, 3) % 256).astype(np.uint8)
    io.imsave(tmp_path / "a.png", pic, check_contrast=False)
    io.imsave(tmp_path / "b.png", np.zeros((20, 20, 3), np.uint8), check_contrast=False)
    y, _ = E.load_image_folder(tmp_path, size=16)
    assert y.shape == (2, 3, 16, 16) and y.min() >= -1 and y.max() <= 1
    assert np.allclose(y[1], -1.0)  # black image ↦ −1


def test_load_model_fallback_and_full_error(monkeypatch):
    from pifs.models import PretrainedNotFoundError
    from pifs.scores import tiny_unet

    built = []
    monkeypatch.setattr("pifs.models.build_small_unet",
                        lambda seed=0: built.append(seed) or tiny_unet(32, (8, 16), seed=seed))  # fast stand-in
    info = E.load_model("smoke", checkpoint="definitely-missing-checkpoint", fallback_seed=3, show=False)
    assert built == [3]
    assert not info.trained and "untrained" in info.source and "UNTRAINED".lower() in info.note.lower()
    x = torch.zeros(1, 3, 32, 32)
    assert info.model(x, 5).shape == x.shape
    with pytest.raises(PretrainedNotFoundError):
        E.load_model("full", pretrained="definitely-missing-checkpoint", show=False)
    with pytest.raises(ValueError, match="profile"):
        E.load_model("tiny", show=False)


# ----------------------------------------------------------------------------- probes
def _dense_eps_jacobian(model, x, t):
    return model.jacobian(x, t)[0].double().numpy()  # closed form √v (ᾱΣ + vI)^{-1}


def test_directional_probe_against_closed_form(setting):
    a, _, st, sur, model = setting
    t, t_prev = 40, 30
    x = torch.randn(2, *SHAPE, dtype=torch.float64)
    pr = E.directional_probe(model, sur, x, t, st)
    J = _dense_eps_jacobian(model, x[:1], t)
    JN = _dense_eps_jacobian(sur, x[:1], t)
    idx = st.patch_idx
    from pifs.ddim import step_coefficients

    c, b = step_coefficients(a, t, t_prev)
    assert c == pytest.approx(math.sqrt(a[t_prev] / a[t]))
    for k in range(st.M):
        v = st.vecs[k]
        Akk = J[np.ix_(idx[k], idx[k])]
        rq = v @ Akk @ v
        rqN = v @ JN[np.ix_(idx[k], idx[k])] @ v
        assert pr.rq_model[0, k] == pytest.approx(rq, rel=1e-9)
        assert pr.rq_surrogate[0, k] == pytest.approx(rqN, rel=1e-9)
        # eq. (30) with the chain's step, eq. (32), directional gain and column leakage
        assert pr.suppression(a, t_prev)[0, k] == pytest.approx(abs(b) * (rq - rqN), rel=1e-8, abs=1e-14)
        assert pr.diagonal_rayleigh(a, t_prev)[0, k] == pytest.approx(c + b * rq, rel=1e-10)
        assert pr.diagonal_gain(a, t_prev)[0, k] == pytest.approx(np.linalg.norm(c * v + b * Akk @ v), rel=1e-10)
        leak = sum(np.linalg.norm(J[np.ix_(idx[j], idx[k])] @ v) for j in range(st.M) if j != k)
        assert pr.cross_col[0, k] == pytest.approx(leak, rel=1e-9)
        assert pr.cross_gain(a, t_prev)[0, k] == pytest.approx(abs(b) * leak, rel=1e-9)
    # the surrogate's quotient in closed form (surrogate=None) equals its JVP measurement
    pr0 = E.directional_probe(model, None, x, t, st, alpha_bar=a)
    np.testing.assert_allclose(pr0.rq_surrogate, pr.rq_surrogate, rtol=1e-9)
    # chunked evaluation gives the same numbers
    pr2 = E.directional_probe(model, sur, x, t, st, chunk=3)
    np.testing.assert_allclose(pr2.rq_model, pr.rq_model, rtol=1e-12)
    with pytest.raises(ValueError, match="alpha_bar"):
        E.directional_probe(model, None, x, t, st)
    with pytest.raises(ValueError, match="x"):
        E.directional_probe(model, sur, x[:, :, :4], t, st)
    with pytest.raises(TypeError, match="t"):
        E.directional_probe(model, sur, x, 4.0, st)


def test_probe_rayleigh_matches_autograd_step_jacobian(setting):
    """⟨v, [J Φ]_kk v⟩ from the probe equals the autograd Jacobian of the DDIM step."""
    a, _, st, sur, model = setting
    from pifs.ddim import step_fn

    t, t_prev = 60, 40
    x = torch.randn(1, *SHAPE, dtype=torch.float64)
    f = step_fn(model, t, t_prev)
    J = torch.autograd.functional.jacobian(lambda z: f(z.reshape(SHAPE)).reshape(-1), x.reshape(-1)).numpy()
    pr = E.directional_probe(model, sur, x, t, st)
    for k in range(st.M):
        v, i = st.vecs[k], st.patch_idx[k]
        assert pr.diagonal_rayleigh(a, t_prev)[0, k] == pytest.approx(v @ J[np.ix_(i, i)] @ v, rel=1e-9)


def test_block_row_exact(setting):
    a, _, st, _, model = setting
    t, k = 25, 2
    x = torch.randn(*SHAPE, dtype=torch.float64)
    J = _dense_eps_jacobian(model, x[None], t)
    out = E.block_row_exact(model, x, t, k, st.patch_idx, chunk=16)
    np.testing.assert_allclose(out["rows"].numpy(), J[st.patch_idx[k]], rtol=1e-9, atol=1e-12)
    norms = [np.linalg.norm(J[np.ix_(st.patch_idx[k], st.patch_idx[j])], 2) for j in range(st.M)]
    np.testing.assert_allclose(out["block_norms"], norms, rtol=1e-9)
    assert out["diag"] == pytest.approx(norms[k]) and out["C"] == pytest.approx(sum(norms) - norms[k])
    with pytest.raises(ValueError, match="k"):
        E.block_row_exact(model, x, t, 9, st.patch_idx)


# ----------------------------------------------------------------------------- trajectories, proxy
def test_trajectories_against_manual_ddim(setting):
    a, _, _, _, model = setting
    ts = np.array([1, 11, 31, 61])
    tr = E.trajectories(model, 2, ts, seed=3, shape=SHAPE)
    x = torch.stack([torch.randn(SHAPE, generator=torch.Generator().manual_seed(3 + j)) for j in range(2)])
    assert torch.equal(tr[61], x)
    chain_ = [0, 1, 11, 31, 61]
    for i in range(len(chain_) - 1, 0, -1):
        t, s = chain_[i], chain_[i - 1]
        eps = model(x, t)
        x0 = (x - math.sqrt(1 - a[t]) * eps) / math.sqrt(a[t])
        x = math.sqrt(a[s]) * x0 + math.sqrt(1 - a[s]) * eps
        torch.testing.assert_close(tr[s], x, rtol=1e-5, atol=1e-6)
    assert E.trajectories(model, 1, ts, seed=3, shape=SHAPE)[61].shape[0] == 1  # cached, sliced
    with pytest.raises(ValueError, match="n"):
        E.trajectories(model, 0, ts)


def test_forward_marginal_and_proxy_closed_form(setting):
    a, imgs, _, _, _ = setting
    cov = np.diag(np.linspace(0.1, 2.0, 192))
    g = GaussianScore(cov, a)  # zero mean: ε*(x) = √v (ᾱΣ + vI)^{-1} x
    t = 70
    x0 = imgs[:5]
    xt, eps = E.forward_marginal(x0, t, a, seed=4)
    torch.testing.assert_close(xt - math.sqrt(a[t]) * torch.as_tensor(x0), math.sqrt(1 - a[t]) * eps, rtol=0, atol=1e-5)
    d = E.paired_difference_proxy(g, x0, t, a, seed=4)
    gain = math.sqrt(1 - a[t]) / (a[t] * np.diag(cov) + 1 - a[t])
    expect = np.linalg.norm(gain * math.sqrt(a[t]) * x0.reshape(5, -1), axis=1)
    np.testing.assert_allclose(d, expect, rtol=1e-4)
    with pytest.raises(ValueError, match="t"):
        E.forward_marginal(x0, 101, a)


# ----------------------------------------------------------------------------- statistics
def test_spearman_table_brute_force():
    rng = np.random.default_rng(5)
    lam = rng.uniform(10, 40, 16)
    V = np.stack([lam + rng.normal(0, s, 16) for s in (1.0, 30.0, 1e3)] + [-lam])
    tab = E.spearman_table(lam, V, [1, 2, 3, 4])
    for row, v in zip(tab.itertuples(), V):
        r = np.corrcoef(sst.rankdata(lam), sst.rankdata(v))[0, 1]
        tt = r * math.sqrt(14 / max(1 - r * r, 1e-300))
        p = 2 * sst.t.sf(abs(tt), 14) if abs(r) < 1 else 0.0
        assert row.rho == pytest.approx(r, abs=1e-12)
        assert row.p == pytest.approx(p, rel=1e-6, abs=1e-300)
        assert row.sig == ("**" if p < 0.01 else "*" if p < 0.05 else "n.s.")
    with pytest.raises(ValueError, match="values"):
        E.spearman_table(lam, V[:, :3], [1, 2, 3, 4])


def test_bootstrap_ci_normal_theory():
    v = np.random.default_rng(6).normal(3.0, 2.0, 400)
    lo, hi = E.bootstrap_ci(v, np.mean, n_resamples=4000, seed=1)
    half = 1.96 * v.std(ddof=1) / math.sqrt(v.size)
    assert lo == pytest.approx(v.mean() - half, abs=0.05) and hi == pytest.approx(v.mean() + half, abs=0.05)
    assert E.bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    with pytest.raises(ValueError, match="values"):
        E.bootstrap_ci([1.0])
    with pytest.raises(ValueError, match="confidence"):
        E.bootstrap_ci([1.0, 2.0], confidence=1.5)


def test_loglog_fit_against_normal_equations():
    rng = np.random.default_rng(7)
    x = np.geomspace(0.006, 0.04, 9)
    y = 22.0 * x ** 0.95 * np.exp(rng.normal(0, 0.03, x.size))
    fit = E.loglog_fit(x, y)
    X = np.column_stack([np.ones(x.size), np.log(x)])
    beta, res, *_ = np.linalg.lstsq(X, np.log(y), rcond=None)
    s2 = res[0] / (x.size - 2)
    se = math.sqrt(s2 * np.linalg.inv(X.T @ X)[1, 1])
    q = sst.t.ppf(0.975, x.size - 2)
    assert fit["slope"] == pytest.approx(beta[1]) and fit["intercept"] == pytest.approx(beta[0])
    assert fit["ci"][0] == pytest.approx(beta[1] - q * se) and fit["ci"][1] == pytest.approx(beta[1] + q * se)
    ss_tot = ((np.log(y) - np.log(y).mean()) ** 2).sum()
    assert fit["r2"] == pytest.approx(1 - res[0] / ss_tot)
    assert fit["p_less"] == pytest.approx(sst.t.cdf((beta[1] - 1) / se, x.size - 2))
    exact = E.loglog_fit(x, 2 * x ** 0.5)
    assert exact["slope"] == pytest.approx(0.5) and exact["intercept"] == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="positive"):
        E.loglog_fit([1, 2, -3], [1, 2, 3])


def test_suppressed_moran_threshold():
    a = linear(1000)
    sub = subsample(a, np.arange(20, 1000, 20))
    T = sub.size - 1
    # S = 0: the Gaussian Moran threshold λ** (eq. 45)
    lss, info = E.suppressed_moran_threshold(lambda lam: np.zeros(T), sub)
    assert info["status"] == "root" and lss == pytest.approx(moran_threshold(sub), rel=1e-9)
    # one step: f_1(λ) − S = 1 has the closed form λ = (1+S) v_1 / (√ᾱ_1 − (1+S) ᾱ_1)
    one = np.array([1.0, 0.9])
    S = 0.01
    lam1, _ = E.suppressed_moran_threshold(lambda lam: np.array([S]), one)
    assert lam1 == pytest.approx((1 + S) * 0.1 / (math.sqrt(0.9) - (1 + S) * 0.9), rel=1e-9)
    assert expansion_function(lam1, one)[0] - S == pytest.approx(1.0, abs=1e-10)
    # suppression larger than the λ → ∞ gain of every step: no root
    lim = np.sqrt(sub[:-1] / sub[1:])
    lss_inf, info = E.suppressed_moran_threshold(lambda lam: (lim - 1) * 1.5, sub)
    assert math.isinf(lss_inf) and info["limit"] < 0
    with pytest.raises(ValueError, match="bracket"):
        E.suppressed_moran_threshold(lambda lam: np.zeros(T), sub, bracket=(2, 1))
    with pytest.raises(ValueError, match="S_of_lam"):
        E.suppressed_moran_threshold(lambda lam: np.zeros(3), sub)


def test_is_paper_checkpoint_only_for_the_papers_models(tmp_path):
    import json

    from pifs.experiments import PAPER_CHECKPOINTS, is_paper_checkpoint

    assert all(is_paper_checkpoint(n) for n in PAPER_CHECKPOINTS)
    assert not is_paper_checkpoint("cifar10-small") and not is_paper_checkpoint("someone/ddpm-cifar10-32")
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "config.json").write_text(json.dumps({"_name_or_path": "google/ddpm-cifar10-32"}))
    assert is_paper_checkpoint(saved)  # save_pretrained of the hub model records its name
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"_name_or_path": "my/own-unet"}))
    assert not is_paper_checkpoint(other)
