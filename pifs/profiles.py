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

__all__ = ["PROFILES", "DEFAULT_PROFILE", "front_matter", "notebook_parameters"]

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
