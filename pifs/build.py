"""Build the book: jupytext → papermill (profile parameters) → Jupyter Book 1.x HTML.

``python -m pifs.build --profile small`` (what ``make book`` runs):

1. removes any previous ``_build/html`` (a failed build never leaves a book that looks whole);
2. converts each notebook listed in ``_toc.yml`` (``notebooks/*.md``, MyST via jupytext)
   to ``.ipynb`` and executes it with papermill under the profile's parameters
   (:mod:`pifs.profiles`), ``--jobs`` at a time, with a progress bar; each notebook's
   wall time and status are recorded; claim records go to ``_build/claims/``;
3. on the first notebook that raises: prints the notebook, the cell and the error,
   keeps the executed copies (``_build/executed/``) for inspection, exits 1;
4. collects all claim records into ``_build/claims.json`` and generates the
   *Reproducibility report* and *Errata* pages from them;
5. builds the HTML with Jupyter Book (execution off) with warnings as errors
   (``-W -n --keep-going``) in a staging folder, and moves it to ``_build/html``
   only when the build succeeded.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .claims import load_records, validate
from .profiles import (DEFAULT_PROFILE, PROFILES, declared_parameters, front_matter, notebook_parameters,
                       parse_param_overrides)

__all__ = ["toc_notebooks", "execute_notebook", "preflight_full", "PreflightFailed", "build", "main",
           "prepare_chapter", "is_plumbing", "profile_parameters_page"]


class NotebookFailed(RuntimeError):
    """A notebook raised during execution."""


def toc_notebooks(root=".") -> list[str]:
    """Notebook stems listed in ``_toc.yml`` (entries ``notebooks/NAME``), in book order.

    Raises
    ------
    FileNotFoundError
        If ``_toc.yml`` or a listed notebook's ``.md`` source is missing.
    """
    root = Path(root)
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            f = node.get("file") or node.get("root")
            if isinstance(f, str):
                files.append(f)
            for v in node.values():
                if isinstance(v, (list, dict)):
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc)
    out = []
    for f in files:
        p = Path(f)
        if p.parts and p.parts[0] == "notebooks":
            md = root / "notebooks" / f"{p.stem}.md"
            if not md.is_file():
                raise FileNotFoundError(f"_toc.yml lists {f} but {md} does not exist")
            out.append(p.stem)
    return out


def _kernel_env(build_dir: Path, threads: int) -> dict:
    """Environment for the kernels: this interpreter as kernel ``python3``, thread caps."""
    kdir = build_dir / "jupyter" / "kernels" / "python3"
    kdir.mkdir(parents=True, exist_ok=True)
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (pifs)",
        "language": "python",
    }))
    env = dict(os.environ)
    env["JUPYTER_PATH"] = os.pathsep.join([str((build_dir / "jupyter").resolve()), env.get("JUPYTER_PATH", "")])
    env["PIFS_CLAIMS_DIR"] = str((build_dir / "claims").resolve())
    env["PIFS_CACHE_DIR"] = str((build_dir / "cache").resolve())  # pifs.cache: results shared by notebooks
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # figures are captured in the notebook
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    # tqdm.auto (imported by diffusers) warns in a kernel without ipywidgets; progress bars
    # are not part of the book
    env["PYTHONWARNINGS"] = "ignore:IProgress not found"
    env["PYTHONHASHSEED"] = "0"  # same profile, same numbers (SymPy's algorithms follow set order)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    return env


KERNEL_START_ATTEMPTS = 3


def _kernel_start_failure(exc: BaseException) -> bool:
    """True for a kernel that died while starting (no cell ran), e.g. two kernels started at
    once on the same TCP port ("Address already in use"); such a start is retried."""
    text = f"{type(exc).__name__}: {exc}"
    return "Kernel died before replying to kernel_info" in text or "Address already in use" in text


def execute_notebook(stem: str, profile: str, root=".", build_dir="_build", seed: int = 0,
                     timeout: int = 3600, overrides: dict | None = None) -> dict:
    """Convert ``notebooks/<stem>.md`` and execute it under ``profile``.

    Parameters
    ----------
    stem : str
        Notebook name without extension.
    profile : {"smoke", "small", "full"}
    root, build_dir : path-like
        Repository root and build folder (executed copy: ``<build_dir>/executed/<stem>.ipynb``).
    seed : int
    timeout : int
        Per-cell timeout in seconds.
    overrides : dict, optional
        Parameters set for this build (``--param``); applied where the notebook declares them.

    Notes
    -----
    The kernel inherits this process's environment: :func:`build` sets it up
    (kernel spec, claims folder, thread caps) before executing anything.

    Returns
    -------
    dict with ``notebook``, ``status`` ("ok" or "failed"), ``seconds``, ``error``, ``cell``.
    """
    import jupytext
    import papermill as pm

    root, build_dir = Path(root), Path(build_dir)
    md = root / "notebooks" / f"{stem}.md"
    params = notebook_parameters(md, profile, seed)
    if overrides:
        declared = declared_parameters(md)
        params.update({k: v for k, v in overrides.items() if k in declared})
    (build_dir / "executed").mkdir(parents=True, exist_ok=True)
    (build_dir / "claims").mkdir(parents=True, exist_ok=True)
    src = build_dir / "executed" / f"{stem}.source.ipynb"
    out = build_dir / "executed" / f"{stem}.ipynb"
    nb = jupytext.read(md)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    jupytext.write(nb, src, fmt="ipynb")
    t0 = time.perf_counter()
    rec = {"notebook": stem, "section": (front_matter(md).get("pifs") or {}).get("section", ""),
           "profile": profile, "parameters": params, "status": "ok", "error": "", "cell": None}
    try:
        for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
            rec["attempts"] = attempt
            try:
                pm.execute_notebook(str(src), str(out), parameters=params, kernel_name="python3", cwd=str(root),
                                    progress_bar=False, log_output=False, execution_timeout=timeout)
            except pm.PapermillExecutionError as exc:
                rec.update(status="failed", cell=exc.exec_count, error=f"{exc.ename}: {exc.evalue}")
            except Exception as exc:  # kernel died, timeout, ...
                if _kernel_start_failure(exc) and attempt < KERNEL_START_ATTEMPTS:
                    time.sleep(attempt)  # a port taken by a kernel starting beside it: start again
                    continue
                rec.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            break
    finally:
        src.unlink(missing_ok=True)
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    return rec


def _environment() -> dict:
    import importlib.metadata as md

    versions = {}
    for pkg in ("numpy", "scipy", "sympy", "torch", "diffusers", "matplotlib", "pandas", "jupyter-book",
                "sphinx", "sphinx-proof", "papermill", "jupytext"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = "not installed"
    gpu = "none"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:
        pass
    from .data import find_cifar10

    cifar = find_cifar10()
    if cifar:
        from .data import load_cifar10

        try:
            n_train = len(load_cifar10(train=True, download=False)[0])
            cifar = f"found ({n_train:,} training images; folder given by PIFS_DATA_DIR or the user cache)"
        except Exception:  # noqa: BLE001 - the report says what it can
            cifar = "found"
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "packages": versions,
        "cifar10": str(cifar) if cifar else "not found (bundled images used where needed)",
    }


def _generate_pages(claims: list[dict], runs: list[dict], env: dict, profile: str, out_dir: Path, titles=None,
                    overrides=None):
    from .report import errata_page, report_page

    (out_dir / "report.md").write_text(report_page(claims, runs, env, profile, overrides), encoding="utf-8")
    (out_dir / "errata.md").write_text(errata_page(claims, profile, titles), encoding="utf-8")


def profile_parameters_page(root: Path, stems: list[str]) -> str:
    """A markdown fragment: each notebook's parameters under each profile (for *Re-running this book*)."""
    lines = []
    for stem in stems:
        md = Path(root) / "notebooks" / f"{stem}.md"
        per = {p: notebook_parameters(md, p) for p in PROFILES}
        declared = declared_parameters(md)
        names = [k for k in declared if k not in ("profile", "seed")]
        if not names:
            continue
        lines += [f"**{stem}**", "", "| parameter | " + " | ".join(f"`{p}`" for p in PROFILES) + " |",
                  "|---|" + "---|" * len(PROFILES)]
        for k in names:
            cells = []
            for p in PROFILES:
                v = per[p].get(k, declared[k])
                t = str(v)
                cells.append("`" + (t if len(t) <= 40 else t[:37] + "…") + "`" if t != "" else "`\"\"`")
            lines.append(f"| `{k}` | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def is_plumbing(source: str) -> bool:
    """True for a code cell that checks claims (its input is folded behind a toggle in the book).

    A cell that calls ``claims.<method>`` (a claim check or the summary) is a checking
    cell: the reader sees its claim table and figures, and the code one click away.
    Code that teaches lives in cells without claim calls and stays visible; a cell
    tagged ``show-input`` is never folded.
    """
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
               and isinstance(node.func.value, ast.Name) and node.func.value.id == "claims"
               for node in ast.walk(tree))


#: code cells at least this long (orchestration, tables, plotting) are folded too; tag ``show-input`` keeps one open
LONG_CELL_LINES = 12
_HIDE_TAGS = {"remove-cell", "remove-input", "hide-input", "hide-cell", "hide-output", "remove-output"}


def prepare_chapter(executed: Path, dest: Path, claims: list[dict], stem: str) -> str:
    """Copy an executed notebook into the book, shaped for a reader; return its title.

    - under the title: the chapter's verdict counts and links to its errata entries;
    - the notebook's default ``parameters`` cell is removed (the injected cell that shows
      this build's values stays); claim-recording cells (:func:`is_plumbing`) and code cells of
      :data:`LONG_CELL_LINES` lines or more get ``hide-input``, so their tables and figures show
      and their code is one click away (tag ``show-input`` keeps a cell open).
    """
    import nbformat

    from .report import chapter_header

    nb = nbformat.read(str(executed), as_version=4)
    pm = nb.metadata.get("papermill")
    if isinstance(pm, dict):  # the build machine's paths stay out of the downloadable notebook
        for k in ("input_path", "output_path"):
            pm.pop(k, None)
    title = stem
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("# "):
            title = cell.source.lstrip()[2:].splitlines()[0].strip()
            head = chapter_header(claims, stem)
            if head:
                nb.cells.insert(i + 1, nbformat.v4.new_markdown_cell(head))
            break
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = list(cell.metadata.get("tags", []))
        if "parameters" in tags and "injected-parameters" not in tags:
            tags.append("remove-cell")
        elif "injected-parameters" in tags:
            cell.source = "# Parameters of this build (the profile's values, injected by papermill)\n" + \
                "\n".join(ln for ln in cell.source.splitlines() if ln.strip() != "# Parameters")
        elif not (_HIDE_TAGS & set(tags)) and "show-input" not in tags and (
                is_plumbing(cell.source) or len(cell.source.splitlines()) >= LONG_CELL_LINES):
            tags.append("hide-input")
        if tags:
            cell.metadata["tags"] = tags
    nbformat.write(nb, str(dest))
    return title


def _stage_static(root: Path, src: Path) -> None:
    """Static files the HTML loads, all shipped with it: the book's CSS and MathJax 3 (SVG output).

    MathJax comes from the installed ``django-static-mathjax`` distribution (MathJax 3.2, Apache-2.0):
    its single-file ``tex-svg-full.js`` needs no fonts or further downloads, so math renders
    offline, over http and from file:// alike.
    """
    import importlib.util

    static = src / "_pifs_static"
    shutil.copytree(root / "book" / "_pifs_static", static, dirs_exist_ok=True)
    spec = importlib.util.find_spec("mathjax")
    mj = None
    if spec and spec.submodule_search_locations:
        mj = Path(list(spec.submodule_search_locations)[0]) / "static" / "mathjax" / "es5" / "tex-svg-full.js"
    if mj is None or not mj.is_file():
        raise FileNotFoundError("MathJax not found: install the book extras (pip install -e '.[book]', "
                                "which brings django-static-mathjax)")
    (static / "mathjax").mkdir(exist_ok=True)
    shutil.copy(mj, static / "mathjax" / "tex-svg-full.js")


FULL_CIFAR10_TRAIN = 50_000
FULL_CELEBA_MIN = 200  # §7.7: the paper's 200 CelebA-HQ images
FULL_CHECKPOINTS = {"cifar10_checkpoint": "google/ddpm-cifar10-32", "celeba_checkpoint": "google/ddpm-celebahq-256"}


class PreflightFailed(RuntimeError):
    """The ``full`` profile lacks something it needs; ``.problems`` lists each with what to do."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("the full profile cannot run:\n" + "\n".join(f"  - {p}" for p in self.problems))


def _checkpoint_available(name: str) -> bool:
    """A checkpoint loadable without a download: a local folder, a shipped one, or in the hub cache."""
    from .models import _REPO_CHECKPOINTS

    path = Path(name).expanduser()
    if path.is_dir() or (_REPO_CHECKPOINTS / name).is_dir():
        return True
    if name.count("/") != 1:
        return False
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(name, local_files_only=True)
        return True
    except Exception:  # not cached (LocalEntryNotFoundError and friends)
        return False


def preflight_full(params: dict | None = None, *, require_cuda: bool = True) -> None:
    """Check, before hours of GPU time, that the ``full`` profile has everything; list all that is missing.

    Checks, all of them before raising:

    - a CUDA device (``torch.cuda.is_available()``);
    - the two checkpoints, google/ddpm-cifar10-32 and google/ddpm-celebahq-256 (or the folders
      given as ``--param cifar10_checkpoint=…`` / ``celeba_checkpoint=…``), as local folders or in
      the Hugging Face hub cache;
    - all 50,000 CIFAR-10 training images (a subset, such as a test fixture pointed to by
      ``PIFS_DATA_DIR``, is refused rather than silently used);
    - a CelebA-HQ folder (``--param celeba_dir=…``) with at least 200 images (§7.7).

    Parameters
    ----------
    params : dict, optional
        The build's ``--param`` settings.
    require_cuda : bool
        False only in tests that run the ``full`` code paths on the CPU.

    Raises
    ------
    PreflightFailed
        With one line per missing item, each saying what to do.
    """
    params = dict(params or {})
    problems = []
    if require_cuda:
        import torch

        if not torch.cuda.is_available():
            problems.append("no CUDA device: the full profile computes dense 3,072 × 3,072 Jacobians of a 35.7M-"
                            "parameter UNet; install a CUDA build of torch on a machine with a GPU "
                            "(`make` keeps an installed torch), or build the `small` profile")
    for key, default in FULL_CHECKPOINTS.items():
        name = str(params.get(key) or default)
        if not _checkpoint_available(name):
            problems.append(f"checkpoint {name!r} is neither a local folder nor in the Hugging Face cache: run "
                            f"`huggingface-cli download {default}` on a machine with internet (or pass a saved "
                            f"folder with --param {key}=FOLDER)")
    from .data import DatasetNotFoundError, find_cifar10, load_cifar10

    try:
        x, _ = load_cifar10(train=True, download=True)
        if len(x) < FULL_CIFAR10_TRAIN:
            problems.append(f"CIFAR-10: the full profile needs all {FULL_CIFAR10_TRAIN:,} training images; found "
                            f"{len(x):,} in {find_cifar10()} (a subset). Point PIFS_DATA_DIR at the complete official "
                            "'cifar-10-batches-py' (or unset it to download it into the user cache)")
    except DatasetNotFoundError as exc:
        problems.append(f"CIFAR-10: {exc}")
    celeba = str(params.get("celeba_dir") or "")
    if not celeba:
        problems.append("CelebA-HQ: §7.7 needs a folder of CelebA-HQ images: pass --param celeba_dir=FOLDER "
                        f"(at least {FULL_CELEBA_MIN} images; make book PROFILE=full PARAMS=\"celeba_dir=FOLDER\")")
    else:
        folder = Path(celeba).expanduser()
        exts = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
        n = sum(1 for f in folder.iterdir() if f.suffix.lower() in exts) if folder.is_dir() else 0
        if not folder.is_dir():
            problems.append(f"CelebA-HQ: celeba_dir={celeba!r} is not a folder")
        elif n < FULL_CELEBA_MIN:
            problems.append(f"CelebA-HQ: {celeba!r} holds {n} images; §7.7 needs at least {FULL_CELEBA_MIN}")
    if problems:
        raise PreflightFailed(problems)


def build(profile: str = DEFAULT_PROFILE, root=".", build_dir="_build", jobs: int = 1, only=None,
          html: bool = True, seed: int = 0, keep_going: bool = False, params=None,
          require_cuda: bool = True) -> int:
    """Run the whole build; returns the process exit code (0 on success).

    Parameters
    ----------
    profile : {"smoke", "small", "full"}
    jobs : int
        Notebooks executed at once (each kernel gets ``max(1, cpu_count // jobs)`` threads).
    only : list of str, optional
        Execute only these notebooks (no HTML is built).
    html : bool
        Build the HTML book after executing.
    keep_going : bool
        Execute the remaining notebooks after a failure (still exits 1, no HTML).
    params : list of str or dict, optional
        Notebook parameters for this build (``["celeba_dir=/data/celeba"]``, as ``--param``);
        each must be declared by at least one notebook, with a value of the declared type.
    require_cuda : bool
        ``full`` pre-flight demands a CUDA device (False only in tests of the full code paths).

    Raises
    ------
    ValueError
        For an unknown profile, an unknown notebook in ``only``, or a bad ``params`` setting.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile: expected one of {PROFILES}, got {profile!r}")
    root, build_dir = Path(root).resolve(), Path(build_dir).resolve()
    shutil.rmtree(build_dir / "html", ignore_errors=True)
    stems = toc_notebooks(root)
    if only:
        unknown = [s for s in only if not (root / "notebooks" / f"{s}.md").is_file()]
        if unknown:
            raise ValueError(f"only: no notebooks/{unknown[0]}.md")
        stems, html = list(only), False
    if isinstance(params, dict):
        params = [f"{k}={v}" for k, v in params.items()]
    overrides = parse_param_overrides(params, [root / "notebooks" / f"{s}.md" for s in stems])
    if profile == "full":
        try:
            preflight_full(overrides, require_cuda=require_cuda)
        except PreflightFailed as exc:
            print(f"BUILD FAILED before executing anything: {exc}", file=sys.stderr)
            return 1
    if not only:
        shutil.rmtree(build_dir / "claims", ignore_errors=True)
        shutil.rmtree(build_dir / "cache", ignore_errors=True)  # every full build recomputes what notebooks share
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    saved_env = dict(os.environ)
    os.environ.update(_kernel_env(build_dir, threads))  # once, before any kernel starts
    try:
        return _run(profile, root, build_dir, jobs, stems, html, seed, keep_going, overrides)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)


def _run(profile, root, build_dir, jobs, stems, html, seed, keep_going, overrides=None) -> int:
    from tqdm.auto import tqdm

    runs: list[dict] = []
    failed: list[dict] = []
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool, \
            tqdm(total=len(stems), desc=f"notebooks ({profile})", unit="nb") as bar:
        futures = {}
        for i, s in enumerate(stems):
            if i and i < jobs:
                time.sleep(1.0)  # stagger the first kernel starts
            futures[pool.submit(execute_notebook, s, profile, root, build_dir, seed, 3600, overrides)] = s
        for fut in cf.as_completed(futures):
            if fut.cancelled():  # not started: an earlier notebook failed
                continue
            rec = fut.result()
            runs.append(rec)
            bar.set_postfix_str(f"{rec['notebook']} {rec['status']} {rec['seconds']}s")
            bar.update(1)
            if rec["status"] != "ok":
                failed.append(rec)
                if not keep_going:
                    for f in futures:
                        f.cancel()
    runs.sort(key=lambda r: stems.index(r["notebook"]))
    (build_dir / "runs.json").write_text(json.dumps(runs, indent=1))
    for r in runs:
        print(f"  {r['notebook']:<28} {r['status']:<7} {r['seconds']:>7.1f} s")
    if failed:
        for r in failed:
            where = f"cell {r['cell']}" if r["cell"] is not None else "execution"
            print(f"\nBUILD FAILED: notebook {r['notebook']} ({where}): {r['error']}\n"
                  f"  executed copy kept for inspection: {build_dir / 'executed' / (r['notebook'] + '.ipynb')}",
                  file=sys.stderr)
        print("No HTML was built.", file=sys.stderr)
        return 1
    claims = load_records(build_dir / "claims")
    problems = validate(claims, strict=profile != "smoke")
    if problems:
        print("\nBUILD FAILED: the claim records break the rules of a verdict:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        print("No HTML was built.", file=sys.stderr)
        return 1
    env = _environment()
    meta = {"profile": profile, "seconds": round(time.perf_counter() - t0, 1), "environment": env, "runs": runs,
            "parameters_set": overrides or {}}
    (build_dir / "claims.json").write_text(json.dumps({"build": meta, "claims": claims}, indent=1, ensure_ascii=False))
    if not html:
        print(f"executed {len(runs)} notebook(s); {len(claims)} claim records in {build_dir / 'claims.json'}")
        return 0
    return _build_html(root, build_dir, claims, runs, env, profile, overrides)


def _build_html(root: Path, build_dir: Path, claims, runs, env, profile, overrides=None) -> int:
    src = build_dir / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for f in ("_config.yml", "_toc.yml"):
        shutil.copy(root / f, src / f)
    shutil.copytree(root / "book", src / "book")
    (src / "notebooks").mkdir()
    titles = {}
    for r in runs:
        titles[r["notebook"]] = prepare_chapter(build_dir / "executed" / f"{r['notebook']}.ipynb",
                                                src / "notebooks" / f"{r['notebook']}.ipynb", claims, r["notebook"])
    _stage_static(root, src)
    _generate_pages(claims, runs, env, profile, src / "book", titles, overrides)
    (src / "book" / "profile_parameters.md").write_text(
        profile_parameters_page(root, [r["notebook"] for r in runs]), encoding="utf-8")
    stage = build_dir / "jb"
    shutil.rmtree(stage, ignore_errors=True)
    # the `jupyter-book` command of this interpreter (jupyter_book has no __main__ module)
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(src),
           "--path-output", str(stage), "-W", "-n", "--keep-going"]
    print("building HTML: jupyter-book", " ".join(cmd[3:]))
    proc = subprocess.run(cmd, cwd=root)
    out = stage / "_build" / "html"
    if proc.returncode != 0 or not (out / "index.html").is_file():
        print("BUILD FAILED: Jupyter Book reported errors or warnings (see above); no HTML was kept.",
              file=sys.stderr)
        return 1
    shutil.move(str(out), str(build_dir / "html"))
    n = len(claims)
    print(f"book built: {build_dir / 'html' / 'index.html'} ({len(runs)} notebooks, {n} claims, profile {profile})")
    return 0


def main(argv=None) -> int:
    """Command line: ``python -m pifs.build [--profile P] [--jobs N] [--only NB ...] [--no-html]``."""
    ap = argparse.ArgumentParser(prog="python -m pifs.build", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES)
    ap.add_argument("--jobs", type=int, default=1, help="notebooks executed at once")
    ap.add_argument("--only", nargs="+", help="execute only these notebooks (no HTML)")
    ap.add_argument("--no-html", action="store_true", help="execute and collect claims only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep-going", action="store_true", help="execute all notebooks even after a failure")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="set a notebook parameter for this build (repeatable), e.g. celeba_dir=/data/celeba")
    ap.add_argument("--root", default=".")
    ap.add_argument("--build-dir", default="_build")
    a = ap.parse_args(argv)
    try:
        return build(a.profile, a.root, a.build_dir, a.jobs, a.only, not a.no_html, a.seed, a.keep_going, a.param)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
