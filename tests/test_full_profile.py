"""The `full` profile's code paths, end to end, on stand-ins small enough for a CPU test.

Every §7 notebook is executed with ``profile = "full"`` — its front matter's `full` values
(dense Jacobians, the estimators, every table), the paper's bases — with sizes overridden
down and three stand-ins:

* a tiny randomly initialised diffusers ``UNet2DModel`` (32×32×3, attention at 16×16),
  saved with ``save_pretrained`` together with the DDPM linear ``DDPMScheduler``: it stands
  in for both google/ddpm-cifar10-32 and google/ddpm-celebahq-256 (``--param
  cifar10_checkpoint=…`` / ``celeba_checkpoint=…`` take a saved folder);
* a CIFAR-10 folder in the official python format (``cifar-10-batches-py``: five training
  batches, the test batch, ``batches.meta``) with a few hundred random images, found through
  ``PIFS_DATA_DIR``;
* a folder of PNG images standing in for CelebA-HQ (``celeba_dir``).

So no `full` code path runs for the first time on a user's GPU. The numbers are those of
random weights and random images: only the plumbing is tested (each notebook runs, and
records claims on the basis `paper` where the `full` profile's paper basis applies). The
pre-flight (:func:`pifs.build.preflight_full`) is tested separately: with everything missing
it lists everything at once.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
S7 = ("07_setup_suppression", "07_regimes_crossover", "07_deviation_dimension", "07_reference_models")
N_TRAIN_PER_BATCH = 40          # 200 training images in five batches
N_TEST = 40
N_FACES = 20                    # the CelebA-HQ stand-in


def make_checkpoint(folder: Path) -> Path:
    """A tiny random UNet2DModel (with attention) + the DDPM linear scheduler, saved with save_pretrained."""
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(2, 4, 4),
                           layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=1,
                           attention_head_dim=4)
    unet.save_pretrained(folder)
    # it stands in for the paper's checkpoints: its config names them, as save_pretrained of the hub model does
    # (pifs.experiments.is_paper_checkpoint); a folder without that name is measured on basis our-model
    cfg = json.loads((folder / "config.json").read_text())
    cfg["_name_or_path"] = "google/ddpm-cifar10-32"
    (folder / "config.json").write_text(json.dumps(cfg))
    DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                  beta_schedule="linear").save_pretrained(folder)
    return folder


def make_cifar10(parent: Path, seed: int = 0) -> Path:
    """``parent/cifar-10-batches-py`` in the official python pickle format, random uint8 images."""
    rng = np.random.default_rng(seed)
    folder = parent / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, n in [(f"data_batch_{i}", N_TRAIN_PER_BATCH) for i in range(1, 6)] + [("test_batch", N_TEST)]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": rng.integers(0, 10, n).tolist(),
                         b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"filenames": [f"{i}.png".encode() for i in range(n)]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"class{i}".encode() for i in range(10)], b"num_cases_per_batch": N_TRAIN_PER_BATCH,
                     b"num_vis": 3072}, f)
    return parent


def make_faces(folder: Path, n: int = N_FACES, size: int = 64, seed: int = 0) -> Path:
    """A folder of random RGB PNG images (the CelebA-HQ stand-in)."""
    from skimage import io

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(n):
        io.imsave(folder / f"{i:05d}.png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8), check_contrast=False)
    return folder


def overrides(ckpt: Path, faces: Path) -> dict[str, dict]:
    """Per notebook: the `full` values that are sizes, overridden down (every code path kept)."""
    common = {"cifar10_checkpoint": str(ckpt)}
    return {
        "07_setup_suppression": {**common, "n_seeds": 2, "s_timesteps": [1, 601, 941], "inv_timesteps": [21],
                                 "inv_seeds": 1, "k_pi": 2, "n_show": 4, "sample_steps": 5, "exact_seeds": 1, "local_seeds": 1},
        "07_regimes_crossover": {**common, "n_seeds": 1, "t_measure": [980, 600, 20], "k_pi": 2, "k_chain": 1,
                                 "k_diag": 2, "ref_size": 8, "ref_seeds": 1, "ref_block_steps": [981, 601, 21],
                                 "ref_diag_steps": [261, 21], "ref_t6_steps": [981, 601, 21], "net_estimator_t": [600]},
        "07_deviation_dimension": {**common, "celeba_checkpoint": str(ckpt), "celeba_dir": str(faces), "n_proxy": 3,
                                   "proxy_timesteps": [999, 900, 800, 600], "n_traj": 2, "n_s_timesteps": 2, "n_q": 2,
                                   "ky_eval_every": 48, "n_ky_images": 0, "exact_size": 16, "exact_proxy": 3,
                                   "local_proxy": 1, "exact_traj": 2, "local_traj": 1, "exact_q": 2, "local_q": 1},
        "07_reference_models": {**common, "image_size": 32, "n_seeds": 1, "memo_points": 2, "est_steps": [981, 21],
                                "gauss_all_steps": False, "est_block_steps": [21],
                                "net_steps": [981]},
    }


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    base = tmp_path_factory.mktemp("full")
    return {"ckpt": make_checkpoint(base / "tiny-unet"), "data": make_cifar10(base / "data"),
            "faces": make_faces(base / "faces"), "base": base}


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_full_profile_runs_every_s7_notebook(stand_ins, tmp_path, monkeypatch):
    from pifs.build import _kernel_env, execute_notebook

    monkeypatch.setenv("PIFS_DATA_DIR", str(stand_ins["data"]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for k, v in _kernel_env(tmp_path, 1).items():
        monkeypatch.setenv(k, v)
    ov = overrides(stand_ins["ckpt"], stand_ins["faces"])
    with cf.ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda s: execute_notebook(s, "full", ROOT, tmp_path, 0, 600, ov[s]), S7))
    for rec in runs:
        assert rec["status"] == "ok", (f"{rec['notebook']} failed in the full profile (cell {rec['cell']}): "
                                       f"{rec['error']}; see {tmp_path / 'executed' / (rec['notebook'] + '.ipynb')}")
        assert rec["parameters"]["profile"] == "full"
        for k, v in ov[rec["notebook"]].items():
            assert rec["parameters"][k] == v, f"{rec['notebook']}: override {k} not applied"
    recs = {s: _records(tmp_path / "claims" / f"{s}.jsonl") for s in S7}
    for s, rs in recs.items():
        assert rs, f"{s}: no claim records"
        assert {r["profile"] for r in rs} == {"full"}
    paper = {s: {r["id"] for r in rs if r["basis"] == "paper"} for s, rs in recs.items()}

    def has(s, prefix):
        return any(i.startswith(prefix) for i in paper[s])

    # the network's measurements carry the paper's basis in full (the checkpoint parameter is the paper's model)
    assert has("07_setup_suppression", "Table 3"), sorted(paper["07_setup_suppression"])
    assert has("07_regimes_crossover", "Table 4 · t="), sorted(paper["07_regimes_crossover"])
    assert has("07_regimes_crossover", "Table 5 · t="), sorted(paper["07_regimes_crossover"])
    from pifs.claims import validate   # §7.4–7.5 on the paper's checkpoint: every deviation lists its readings
    assert not validate(recs["07_regimes_crossover"], strict=True), validate(recs["07_regimes_crossover"], strict=True)
    assert has("07_deviation_dimension", "Table 10 · t = 999 · E‖Δ̂_t‖"), sorted(paper["07_deviation_dimension"])
    assert has("07_deviation_dimension", "Table 11 · patch 0 · Λ_pred"), sorted(paper["07_deviation_dimension"])
    for s, rs in recs.items():   # no "needs the full profile" left for what full measures
        left = [r["id"] for r in rs if r["status"] == "needs full profile"]
        assert not [i for i in left if "google/ddpm" in i], f"{s}: {left}"
    # the exact-model columns run in full too, and every deviation on the paper's checkpoint lists its readings
    from pifs.claims import validate

    for s, tabs in (("07_setup_suppression", ("Table 3",)), ("07_deviation_dimension", ("Table 10", "Figure 1", "Table 11"))):
        for tab in tabs:
            assert any(r["basis"] == "exact-model" and r["id"].startswith(tab) for r in recs[s]), f"{s}: no exact {tab}"
        problems = validate(recs[s], strict=True)
        assert not problems, f"{s}: " + "; ".join(problems)
    problems = validate([r for rs in recs.values() for r in rs], strict=True)   # all of §7, as the build checks them
    assert not problems, "; ".join(problems)
    # §7.7 in full runs the paper's 49-step chain
    nb = json.loads((tmp_path / "executed" / "07_deviation_dimension.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    assert "49-step DDIM chain" in text


def test_full_preflight_lists_everything_missing(tmp_path, monkeypatch, capsys):
    from pifs.build import build

    monkeypatch.setenv("PIFS_DATA_DIR", str(tmp_path / "nothing"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))          # an empty hub cache
    monkeypatch.setattr("pifs.data._cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr("pifs.data._download", lambda: (_ for _ in ()).throw(OSError("offline")))
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    code = build("full", root=ROOT, build_dir=tmp_path / "out",
                 params=[f"cifar10_checkpoint={tmp_path / 'no-cifar'}", f"celeba_checkpoint={tmp_path / 'no-celeba'}"])
    err = capsys.readouterr().err
    assert code == 1
    assert "before executing anything" in err
    for what in ("CUDA", "no-cifar", "no-celeba", "CIFAR-10", "CelebA-HQ", "celeba_dir"):
        assert what in err, f"pre-flight does not mention {what!r}:\n{err}"
    assert not (tmp_path / "out" / "executed").exists(), "nothing may execute before the pre-flight passes"


def test_full_unknown_param_names_the_declared_parameters(tmp_path):
    from pifs.build import build

    with pytest.raises(ValueError) as exc:
        build("full", root=ROOT, build_dir=tmp_path, only=list(S7), params=["celeb_dir=/data"])
    msg = str(exc.value)
    assert "celeb_dir" in msg
    for name in ("celeba_dir", "cifar10_checkpoint", "celeba_checkpoint", "n_seeds"):
        assert name in msg, f"the error does not name the declared parameter {name!r}: {msg}"


def test_full_preflight_passes_when_everything_is_present(stand_ins, tmp_path, monkeypatch):
    """All 50,000 CIFAR-10 training images (official format, blank pixels), two saved checkpoints,
    a folder of 200 images and a CUDA device (faked: this machine has none): nothing is reported."""
    from pifs.build import FULL_CELEBA_MIN, FULL_CIFAR10_TRAIN, PreflightFailed, preflight_full

    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    per = FULL_CIFAR10_TRAIN // 5
    for name, n in [(f"data_batch_{i}", per) for i in range(1, 6)] + [("test_batch", 10)]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": [0] * n, b"data": np.zeros((n, 3072), np.uint8),
                         b"filenames": [b"x.png"] * n}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"class{i}".encode() for i in range(10)], b"num_cases_per_batch": per,
                     b"num_vis": 3072}, f)
    faces = make_faces(tmp_path / "faces", n=FULL_CELEBA_MIN, size=8)
    monkeypatch.setenv("PIFS_DATA_DIR", str(tmp_path / "cifar"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    params = {"cifar10_checkpoint": str(stand_ins["ckpt"]), "celeba_checkpoint": str(stand_ins["ckpt"]),
              "celeba_dir": str(faces)}
    try:
        preflight_full(params)
    except PreflightFailed as exc:  # pragma: no cover - the failure message is the point
        pytest.fail(f"pre-flight refused a complete set-up: {exc}")
    with pytest.raises(PreflightFailed, match="holds 199 images"):   # one image short is refused
        (faces / "00000.png").unlink()
        preflight_full(params)
