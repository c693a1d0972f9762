"""Profiles: named parameter sets for the notebooks (smoke / small / full).

A profile is a set of notebook parameters. Each notebook declares its own
parameter values per profile in its MyST front matter, next to the code that
uses them, under the key ``pifs``::

    ---
    pifs:
      section: "§6"
      profiles:
        smoke: {n_images: 64}
        small: {n_images: 5000}
        full:  {n_images: 50000}
    ---

The notebook's cell tagged ``parameters`` holds the ``small`` values, so a
notebook opened and run by hand is the default build. The build injects
``profile`` and ``seed`` plus the profile's values with papermill.

==========  ======================================================================
``smoke``   every notebook end to end in seconds: tiny sizes, few steps (tests)
``small``   CPU, the whole book in minutes: the default build and CI
``full``    the paper's protocol on a GPU with internet: google/ddpm-cifar10-32,
            google/ddpm-celebahq-256, N = 50,000, 50-step DDIM, all seeds
==========  ======================================================================
"""
from __future__ import annotations

from pathlib import Path

import yaml

__all__ = ["PROFILES", "DEFAULT_PROFILE", "front_matter", "notebook_parameters", "declared_parameters",
           "parse_param_overrides"]

PROFILES = ("smoke", "small", "full")
DEFAULT_PROFILE = "small"


def front_matter(md_path) -> dict:
    """Parse the YAML front matter of a MyST markdown notebook.

    Parameters
    ----------
    md_path : str or path-like

    Returns
    -------
    dict (empty when the file has no front matter)

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the front matter is not valid YAML or not a mapping.
    """
    text = Path(md_path).read_text(encoding="utf-8")
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    if end < 0:
        raise ValueError(f"{md_path}: front matter opened with '---' but never closed")
    try:
        meta = yaml.safe_load(text[3:end]) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{md_path}: invalid YAML front matter: {exc}") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{md_path}: front matter must be a mapping")
    return meta


def notebook_parameters(md_path, profile: str = DEFAULT_PROFILE, seed: int = 0) -> dict:
    """The papermill parameters of one notebook under one profile.

    Parameters
    ----------
    md_path : str or path-like
        The notebook's ``.md`` source.
    profile : {"smoke", "small", "full"}
    seed : int
        Base seed; notebooks seed numpy and torch from it.

    Returns
    -------
    dict
        ``{"profile": profile, "seed": seed, **front_matter["pifs"]["profiles"][profile]}``.

    Raises
    ------
    ValueError
        For an unknown profile, or front matter without values for it.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile: expected one of {PROFILES}, got {profile!r}")
    meta = front_matter(md_path).get("pifs", {}) or {}
    profiles = meta.get("profiles") or {}
    if profiles and profile not in profiles:
        raise ValueError(f"{md_path}: front matter 'pifs.profiles' has no entry for profile {profile!r}")
    values = dict(profiles.get(profile) or {})
    return {"profile": profile, "seed": int(seed), **values}


def declared_parameters(md_path) -> dict:
    """The parameters a notebook declares in its cell tagged ``parameters``, with their defaults.

    Parameters
    ----------
    md_path : str or path-like
        The notebook's ``.md`` source (MyST, jupytext).

    Returns
    -------
    dict
        ``{name: default value}`` (literal values; a default that is not a literal maps to None).

    Raises
    ------
    ValueError
        If the notebook has no cell tagged ``parameters``.
    """
    import ast
    import re

    text = Path(md_path).read_text(encoding="utf-8")
    m = re.search(r"```\{code-cell\}[^\n]*\n:tags: \[parameters\]\n(.*?)```", text, re.S)
    if not m:
        raise ValueError(f"{md_path}: no code cell tagged `parameters`")
    out = {}
    for node in ast.parse(m.group(1)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                out[node.targets[0].id] = None
    return out


def _type_ok(default, value) -> bool:
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return True


def parse_param_overrides(items, md_paths) -> dict:
    """Parse ``NAME=VALUE`` command-line settings and check them against the notebooks.

    Parameters
    ----------
    items : list of str
        Settings such as ``["celeba_dir=/data/celeba", "n_seeds=3"]``; a VALUE is read as
        YAML (``3`` → int, ``0.5`` → float, ``true`` → bool, ``[1, 2]`` → list, else a string).
    md_paths : list of path-like
        The notebooks of the build (their ``parameters`` cells declare what may be set).

    Returns
    -------
    dict
        ``{name: value}``.

    Raises
    ------
    ValueError
        For a setting without ``=``, a name no notebook declares (naming the notebooks'
        parameters), ``profile`` or ``seed`` (use ``--profile`` / ``--seed``), or a value whose
        type differs from the declared default (naming the notebooks that declare it).
    """
    out = {}
    declared = {Path(p).stem: declared_parameters(p) for p in md_paths}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--param: expected NAME=VALUE, got {item!r}")
        name, raw = item.split("=", 1)
        name = name.strip()
        if name in ("profile", "seed"):
            raise ValueError(f"--param: set {name!r} with --{name}, not --param")
        value = yaml.safe_load(raw) if raw.strip() else ""
        if value is None:
            value = raw
        where = {nb: d[name] for nb, d in declared.items() if name in d}
        if not where:
            known = sorted({k for d in declared.values() for k in d} - {"profile", "seed"})
            raise ValueError(f"--param: no notebook of this build declares a parameter {name!r}; "
                             f"declared parameters: {', '.join(known)}")
        for nb, default in where.items():
            if not _type_ok(default, value):
                if isinstance(default, str):
                    value = str(raw)  # a string parameter takes the text as typed ("0123", "true")
                    continue
                raise ValueError(f"--param {name}: expected a value of type {type(default).__name__} "
                                 f"(declared in {', '.join(sorted(where))}), got {raw!r}")
        out[name] = value
    return out
