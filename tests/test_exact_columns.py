"""pifs.exact_columns: closed-form Rayleigh quotients against autograd, the table and findings helpers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pifs.claims import ClaimBook
from pifs.exact_columns import (EXACT_MODELS, ColumnTable, exact_trajectories, findings, patch_rayleigh,
                                step_rayleigh, suppression)
from pifs.experiments import patch_statistics
from pifs.reference_models import LocalScoreMachine, ddim_step_jacobian, gaussian_from_images, ideal_denoiser
from pifs.schedules import linear
from pifs.suppression import block_rayleigh, suppression_field

AB = linear(1000)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = np.tanh(rng.normal(size=(24, 3, 8, 8)) + rng.normal(size=(24, 3, 1, 1)))   # correlated channels
    return X, patch_statistics(X, 4)


@pytest.mark.parametrize("P,t", [(3, 501), (5, 101), (9, 901), (1, 301)])
def test_local_machine_rayleigh_matches_forward_mode_autograd(data, P, t):
    X, st = data
    m = LocalScoreMachine(X, AB, P)
    x = torch.as_tensor(np.sqrt(AB[t]) * X[:2] + np.sqrt(1 - AB[t]) * np.random.default_rng(1).normal(size=X[:2].shape))
    closed = patch_rayleigh(m, x, t, st)
    jvp = block_rayleigh(lambda z: m(z, t), x, st.vecs, st.patch_idx).numpy()      # the model's own forward
    np.testing.assert_allclose(closed, jvp, rtol=1e-9, atol=1e-9 / np.sqrt(1 - AB[t]))


@pytest.mark.parametrize("t", [981, 501, 101, 21])
def test_ideal_denoiser_rayleigh_matches_forward_mode_autograd(data, t):
    X, st = data
    m = ideal_denoiser(X, AB)
    x = torch.as_tensor(np.sqrt(AB[t]) * X[3:6] + np.sqrt(1 - AB[t]) * np.random.default_rng(4).normal(size=X[3:6].shape))
    jvp = block_rayleigh(lambda z: m(z, t), x, st.vecs, st.patch_idx).numpy()
    np.testing.assert_allclose(patch_rayleigh(m, x, t, st), jvp, rtol=1e-9, atol=1e-9 / np.sqrt(1 - AB[t]))


def test_suppression_matches_suppression_field_against_the_surrogate(data):
    X, st = data
    sur = st.surrogate(AB)
    x = torch.as_tensor(np.random.default_rng(2).normal(size=(2, 3, 8, 8)))
    for model in (gaussian_from_images(X, AB), ideal_denoiser(X, AB), LocalScoreMachine(X, AB, 5)):
        for t, tp in ((601, 600), (601, 581), (41, 21)):
            ref = suppression_field(model, sur, x, t, st.vecs, st.patch_idx, alpha_bar=AB, t_prev=tp).numpy()
            np.testing.assert_allclose(suppression(model, x, t, st, t_prev=tp), ref, rtol=1e-8, atol=1e-10)


def test_step_rayleigh_is_the_quadratic_form_of_the_dense_step_jacobian(data):
    X, st = data
    m = LocalScoreMachine(X, AB, 3)
    x = torch.as_tensor(np.random.default_rng(3).normal(size=(1, 3, 8, 8)))
    J = ddim_step_jacobian(m, x[0], 201, 181)
    J = (J[0] if J.ndim == 3 else J).numpy()
    want = [st.vecs[k] @ J[np.ix_(st.patch_idx[k], st.patch_idx[k])] @ st.vecs[k] for k in range(st.M)]
    np.testing.assert_allclose(step_rayleigh(m, x, 201, st, t_prev=181)[0], want, rtol=1e-9)


def test_exact_trajectories_start_from_the_network_noise_and_follow_ddim(data):
    from pifs.ddim import ddim_chain

    X, _ = data
    m = ideal_denoiser(X.reshape(24, -1), AB)
    chain = np.array([1, 21, 41, 61])
    tr = exact_trajectories(m, 2, chain, seed=5, shape=(3, 8, 8))
    noise = torch.stack([torch.randn((3, 8, 8), generator=torch.Generator().manual_seed(5 + j)) for j in range(2)])
    np.testing.assert_array_equal(tr[61].numpy(), noise.double().numpy())
    want = ddim_chain(m, noise.double(), chain)
    np.testing.assert_allclose(tr[0].numpy(), want.numpy(), rtol=0, atol=1e-12)
    assert tr[0].dtype == torch.float64 and sorted(tr) == [0, 1, 21, 41, 61]
    with pytest.raises(ValueError, match="n:"):
        exact_trajectories(m, 0, chain, shape=(3, 8, 8))
    with pytest.raises(ValueError, match="shape:"):
        exact_trajectories(m, 1, chain)          # (3, 32, 32) does not fit n = 192


def test_bad_inputs_name_the_argument(data):
    X, st = data
    m = LocalScoreMachine(X, AB, 3)
    with pytest.raises(TypeError, match="x:"):
        patch_rayleigh(m, np.zeros((1, 3, 8, 8)), 10, st)
    with pytest.raises(ValueError, match="t:"):
        patch_rayleigh(m, torch.zeros(1, 3, 8, 8, dtype=torch.float64), 0, st)
    with pytest.raises(ValueError, match="stats:"):
        patch_rayleigh(m, torch.zeros(1, 3, 8, 8, dtype=torch.float64), 10, patch_statistics(np.zeros((3, 3, 16, 16)) +
                                                                                         np.arange(3)[:, None, None, None], 4))


def test_column_table_records_exact_cells_with_their_basis(tmp_path):
    book = ClaimBook("t_cols", "§7", claims_dir=tmp_path, display=False)
    tab = ColumnTable(book, "Table 3", quantity="ρ", network_basis="our-model")
    tab.paper(601, "+0.953")
    for i, m in enumerate(EXACT_MODELS):
        tab.exact(601, m, 0.1 * i, text=f"{0.1 * i:+.2f}")
    tab.network(601, 0.5, text="+0.50")
    f = tab.frame()
    assert list(f.columns.get_level_values(0)) == ["paper", *EXACT_MODELS, "our network"]
    assert list(f.columns.get_level_values(1)) == ["paper", "exact-model", "exact-model", "exact-model", "our-model"]
    assert f.loc[601].tolist() == ["+0.953", "+0.00", "+0.10", "+0.20", "+0.50"]
    assert [r["basis"] for r in book.records] == ["exact-model"] * 3
    assert {r["status"] for r in book.records} == {"not comparable"}
    assert book.records[1]["id"] == "Table 3 · t = 601 · ρ · ideal denoiser" and book.records[1]["paper"] == "+0.953"
    with pytest.raises(ValueError, match="model:"):
        tab.exact(601, "network", 1.0)
    with pytest.raises(ValueError, match="network_basis"):
        ColumnTable(book, "Table 3", network_basis="ours")


def test_findings_classifies_by_the_simplest_model_that_shows_it(tmp_path):
    book = ClaimBook("t_find", "§7", claims_dir=tmp_path, display=False)
    items = [
        {"finding": "A", "paper": "p", "exact": {m: (m == "ideal denoiser", "x") for m in EXACT_MODELS}, "network": (False, "n")},
        {"finding": "B", "paper": "p", "exact": {m: (m == "local machine", "x") for m in EXACT_MODELS}, "network": (True, "n")},
        {"finding": "C", "paper": "p", "exact": {m: (False, "x") for m in EXACT_MODELS}, "network": (True, "n=0.9")},
        {"finding": "D", "paper": "p", "exact": {m: (False, "x") for m in EXACT_MODELS}, "network": (False, "n")},
    ]
    df, text = findings(book, "Table 3", items)
    assert df["follows from"].tolist() == ["the data distribution alone", "locality", "only a trained network", "none"]
    assert df.loc[0, "ideal denoiser"] == "shown" and df.loc[0, "our network"] == "not shown"
    assert len(book.records) == 12 and {r["basis"] for r in book.records} == {"exact-model"}
    assert "our network shows it (n=0.9)" in text and text.count("\n") == 3
    with pytest.raises(ValueError, match="items"):
        findings(book, "Table 3", [{"finding": "E", "paper": "p", "exact": {"network": (True, "")}}])
