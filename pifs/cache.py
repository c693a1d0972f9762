"""A build-wide disk cache for results that several notebooks need and compute the same way.

:func:`cached` stores one picklable result under ``$PIFS_CACHE_DIR`` (set by :mod:`pifs.build`
to ``<build dir>/cache`` for the kernels it starts, and emptied at the start of every full
build), keyed by a SHA-256 of the inputs that determine it. Concurrent notebooks are
serialised by a lock file, so the first computes and the others wait and load. Without
``$PIFS_CACHE_DIR`` (a notebook run by hand) nothing is stored and ``compute`` simply runs.

Only deterministic results belong here: a cached value must be exactly what ``compute`` would
return again from the same key.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import pickle
from pathlib import Path

import numpy as np

__all__ = ["cache_dir", "fingerprint", "cached"]


def cache_dir() -> Path | None:
    """The cache folder ``$PIFS_CACHE_DIR`` (created), or None when unset or empty."""
    d = os.environ.get("PIFS_CACHE_DIR", "")
    if not d:
        return None
    p = Path(d)
    p.mkdir(parents=True, exist_ok=True)
    return p


def _feed(h, obj) -> None:
    import torch

    if isinstance(obj, torch.nn.Module):
        for k, v in sorted(obj.state_dict().items()):
            h.update(k.encode())
            _feed(h, v)
    elif isinstance(obj, torch.Tensor):
        _feed(h, obj.detach().cpu().contiguous().numpy())
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(f"nd{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    elif isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=repr):
            _feed(h, k)
            _feed(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for v in obj:
            _feed(h, v)
        h.update(b"]")
    elif obj is None or isinstance(obj, (bool, int, float, str, np.generic)):
        h.update(f"{type(obj).__name__}:{obj!r}".encode())
    else:
        raise TypeError(f"key: cannot fingerprint an object of type {type(obj).__name__}; "
                        "pass arrays, tensors, modules, numbers, strings, lists or dicts")


def fingerprint(key) -> str:
    """SHA-256 hex digest of a key made of arrays, tensors, ``torch.nn.Module`` s (their state
    dicts), numbers, strings, lists, tuples and dicts.

    Raises
    ------
    TypeError
        For any other object in ``key``.
    """
    h = hashlib.sha256()
    _feed(h, key)
    return h.hexdigest()


def cached(name: str, key, compute):
    """``compute()``, stored under ``$PIFS_CACHE_DIR/<name>-<fingerprint(key)>.pkl``.

    Parameters
    ----------
    name : str
        A file-name-safe label (letters, digits, ``-``, ``_``).
    key : see :func:`fingerprint`
        Everything the result depends on.
    compute : callable with no arguments
        Returns a picklable, deterministic result.

    Returns
    -------
    The result (loaded when another notebook of the same build computed it already).

    Raises
    ------
    ValueError
        For an unsafe ``name``.
    """
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"name: expected letters, digits, '-' or '_', got {name!r}")
    d = cache_dir()
    if d is None:
        return compute()
    path = d / f"{name}-{fingerprint(key)[:24]}.pkl"
    with open(d / f"{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if path.is_file():
                return pickle.loads(path.read_bytes())
            value = compute()
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(value))
            tmp.replace(path)
            return value
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
