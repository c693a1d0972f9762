"""The build: dependencies in step, table of contents, profiles, and every notebook in `smoke`.

The smoke executions run each notebook end to end (papermill, a real kernel) with the
`smoke` profile's parameters: the contract that every notebook runs, not what it computes.
"""
import re
import shutil
from pathlib import Path

import pytest
import yaml

from pifs.build import build, toc_notebooks
from pifs.profiles import PROFILES, front_matter, notebook_parameters

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = toc_notebooks(ROOT)


def _names(reqs):
    return {re.split(r"[<>=!~ \[]", r.strip(), maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def test_environment_yml_matches_pyproject():
    import tomllib

    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    py = _names(proj["dependencies"])
    for extra in ("book", "test"):
        py |= _names(proj["optional-dependencies"][extra])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = _names(d for d in env["dependencies"] if isinstance(d, str))
    pip = [d for dep in env["dependencies"] if isinstance(dep, dict) for d in dep.get("pip", [])]
    conda |= _names(d for d in pip if not d.startswith("-e"))
    conda = {"torch" if n == "pytorch" else n for n in conda} - {"python", "pip"}
    assert py == conda, f"only in pyproject: {sorted(py - conda)}; only in environment.yml: {sorted(conda - py)}"


def test_every_notebook_is_in_the_toc():
    on_disk = {p.stem for p in (ROOT / "notebooks").glob("*.md") if not p.stem.startswith("_")}
    assert on_disk == set(NOTEBOOKS), f"not in _toc.yml: {sorted(on_disk - set(NOTEBOOKS))}"


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_profiles_declared_and_used(stem):
    md = ROOT / "notebooks" / f"{stem}.md"
    meta = front_matter(md)
    assert meta.get("kernelspec", {}).get("name") == "python3"
    assert (meta.get("pifs") or {}).get("section"), "front matter needs pifs.section"
    text = md.read_text()
    m = re.search(r"```\{code-cell\}[^\n]*\n:tags: \[parameters\]\n(.*?)```", text, re.S)
    assert m, "no cell tagged `parameters`"
    declared = set(re.findall(r"^([A-Za-z_]\w*)\s*=", m.group(1), re.M))
    for profile in PROFILES:
        params = notebook_parameters(md, profile)
        missing = set(params) - declared
        assert not missing, f"{profile}: parameters {sorted(missing)} not in the parameters cell"


def test_unknown_profile_rejected():
    with pytest.raises(ValueError, match="profile"):
        notebook_parameters(ROOT / "notebooks" / "_template.md", "huge")


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_notebook_runs_in_smoke_profile(stem, tmp_path):
    code = build("smoke", root=ROOT, build_dir=tmp_path, only=[stem])
    assert code == 0, f"{stem} failed in smoke profile; see {tmp_path / 'executed' / (stem + '.ipynb')}"
    assert (tmp_path / "claims" / f"{stem}.jsonl").read_text().strip(), "the notebook recorded no claim"


def test_failing_notebook_stops_the_build_and_leaves_no_html(tmp_path, capsys):
    root = tmp_path / "book"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", root)
    shutil.copytree(ROOT / "book", root / "book")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: notebooks/boom\n")
    (root / "notebooks" / "boom.md").write_text(
        "---\nkernelspec: {name: python3, display_name: Python 3, language: python}\n"
        "pifs: {section: '§0', profiles: {smoke: {}, small: {}, full: {}}}\n---\n# Boom\n\n"
        "```{code-cell} ipython3\n:tags: [parameters]\nprofile = 'small'\nseed = 0\n```\n\n"
        "```{code-cell} ipython3\nx = 1\n```\n\n```{code-cell} ipython3\nraise RuntimeError('kaboom')\n```\n")
    html = tmp_path / "out" / "html"
    html.mkdir(parents=True)
    (html / "index.html").write_text("stale")
    code = build("smoke", root=root, build_dir=tmp_path / "out")
    err = capsys.readouterr().err
    assert code == 1
    assert "boom" in err and "kaboom" in err and "cell" in err
    assert not html.exists(), "a failed build must not leave HTML that looks whole"
    assert (tmp_path / "out" / "executed" / "boom.ipynb").is_file(), "executed copy kept for inspection"


def test_full_profile_refuses_a_cifar10_subset(tmp_path, monkeypatch, capsys):
    """The `full` profile never silently runs on a subset of CIFAR-10."""
    import pickle

    import numpy as np

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({"labels": [0, 1], "data": np.zeros((2, 3072), np.uint8)}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": []}, f)
    monkeypatch.setenv("PIFS_DATA_DIR", str(tmp_path))
    code = build("full", root=ROOT, build_dir=tmp_path / "out")
    assert code == 1
    assert "50,000" in capsys.readouterr().err


def test_kernel_start_failure_is_retried_and_cell_errors_are_not(tmp_path, monkeypatch):
    """Two kernels started at once can collide on a port; that start is retried, a cell error is not."""
    import papermill as pm

    from pifs.build import execute_notebook

    calls = []

    def flaky(src, out, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")
        shutil.copy(src, out)

    monkeypatch.setattr(pm, "execute_notebook", flaky)
    rec = execute_notebook(NOTEBOOKS[0], "smoke", ROOT, tmp_path)
    assert rec["status"] == "ok" and rec["attempts"] == 2

    def broken(src, out, **kw):
        calls.append(1)
        raise pm.PapermillExecutionError(3, 3, "x = 1", "ValueError", "bad", [])

    calls.clear()
    monkeypatch.setattr(pm, "execute_notebook", broken)
    rec = execute_notebook(NOTEBOOKS[0], "smoke", ROOT, tmp_path)
    assert rec["status"] == "failed" and len(calls) == 1 and "ValueError" in rec["error"]
