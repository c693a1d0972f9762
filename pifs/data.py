"""Data: CIFAR-10 in the official python format, and a small bundled image set.

Lookup order for the CIFAR-10 folder ``cifar-10-batches-py``:

1. the ``root`` argument,
2. the ``PIFS_DATA_DIR`` environment variable,
3. the user cache (``pooch.os_cache("pifs")``, e.g. ``~/.cache/pifs``).

In each place both ``<place>/cifar-10-batches-py`` and ``<place>`` itself (when it
*is* that folder) are accepted. When nothing is found and ``download=True`` the
official archive is fetched with pooch into the user cache and its MD5 checked;
offline, a :class:`DatasetNotFoundError` says where we looked and what to do.

Images are returned as uint8 arrays (N, 3, 32, 32), channel-major (R, G, B
planes), exactly as stored; :func:`to_model_scale` maps them to [−1, 1].
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

__all__ = [
    "CIFAR10_URL",
    "CIFAR10_MD5",
    "DatasetNotFoundError",
    "find_cifar10",
    "load_cifar10",
    "to_model_scale",
    "bundled_images",
    "bundled_photograph",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
#: MD5 of the official archive (Krizhevsky, 2009), as published on its page.
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
_FOLDER = "cifar-10-batches-py"
_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_TEST = ["test_batch"]


class DatasetNotFoundError(FileNotFoundError):
    """A data set is not on disk and could not be downloaded."""


def _cache_dir() -> Path:
    import pooch

    return Path(pooch.os_cache("pifs"))


def _candidates(root):
    places = []
    if root is not None:
        places.append(("root argument", Path(root)))
    env = os.environ.get("PIFS_DATA_DIR")
    if env:
        places.append(("$PIFS_DATA_DIR", Path(env)))
    places.append(("user cache", _cache_dir()))
    return places


def find_cifar10(root=None) -> Path | None:
    """Return the first ``cifar-10-batches-py`` folder found in the lookup order, else None.

    Parameters
    ----------
    root : str or path-like, optional
        A folder that contains ``cifar-10-batches-py`` or is it.
    """
    for _, place in _candidates(root):
        for cand in (place / _FOLDER, place):
            if (cand / "batches.meta").is_file() and (cand / "test_batch").is_file():
                return cand
    return None


def _download() -> Path:
    import pooch

    cache = _cache_dir()
    pooch.retrieve(
        CIFAR10_URL,
        known_hash=f"md5:{CIFAR10_MD5}",
        fname="cifar-10-python.tar.gz",
        path=cache,
        processor=pooch.Untar(extract_dir="."),
        progressbar=True,
    )
    return cache / _FOLDER


def _read_batch(path: Path):
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="latin1")
    d = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in d.items()}
    data = np.asarray(d["data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: expected 'data' of shape (n, 3072), got {data.shape}")
    return data.reshape(-1, 3, 32, 32), np.asarray(d["labels"], dtype=np.int64)


def load_cifar10(root=None, train: bool = True, download: bool = True, limit: int | None = None):
    """Load CIFAR-10 from the official python-format folder.

    Parameters
    ----------
    root : str or path-like, optional
        Folder containing ``cifar-10-batches-py`` (or that folder itself).
        Default: ``$PIFS_DATA_DIR``, then the user cache.
    train : bool
        The five training batches (True) or the test batch (False). Missing
        training batch files are an error, not silently skipped.
    download : bool
        When not found, download the official archive (170 MB, MD5-checked)
        into the user cache. Needs internet.
    limit : int, optional
        Return only the first ``limit`` images (in file order).

    Returns
    -------
    images : numpy.ndarray, uint8, shape (N, 3, 32, 32)
        Channel-major R, G, B planes, values 0..255.
    labels : numpy.ndarray, int64, shape (N,)

    Raises
    ------
    DatasetNotFoundError
        When the folder is not found and cannot be downloaded; the message lists
        the places searched and how to provide the data.
    ValueError
        For a malformed batch file.

    Notes
    -----
    The data set is Krizhevsky (2009), *Learning Multiple Layers of Features
    from Tiny Images*. Numbers computed on a subset differ from the paper's
    (computed on all 50,000 training images): always report N.
    """
    folder = find_cifar10(root)
    if folder is None and download:
        try:
            folder = _download()
        except Exception as exc:  # network errors come in many types
            folder = None
            reason = f"download from {CIFAR10_URL} failed: {exc}"
        else:
            reason = ""
    else:
        reason = "download disabled" if not download else ""
    if folder is None:
        searched = "\n".join(f"  - {label}: {p}" for label, p in _candidates(root))
        raise DatasetNotFoundError(
            "CIFAR-10 (folder 'cifar-10-batches-py') not found. Searched:\n"
            f"{searched}\n({reason})\n"
            f"Get it from {CIFAR10_URL}, unpack it, and point PIFS_DATA_DIR at the folder that "
            "contains 'cifar-10-batches-py' (or pass root=...)."
        )
    names = _TRAIN if train else _TEST
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DatasetNotFoundError(f"{folder}: missing batch files {missing}")
    if limit is not None and (int(limit) != limit or limit < 1):
        raise ValueError(f"limit: expected a positive integer, got {limit!r}")
    xs, ys, have = [], [], 0
    for n in names:  # read batches in order, only as many as needed
        x, y = _read_batch(folder / n)
        xs.append(x)
        ys.append(y)
        have += len(x)
        if limit is not None and have >= limit:
            break
    x, y = np.concatenate(xs), np.concatenate(ys)
    if limit is not None:
        x, y = x[: int(limit)], y[: int(limit)]
    return x, y


def to_model_scale(images_uint8):
    """Map uint8 images to float32 in [−1, 1] (x / 127.5 − 1), the DDPM checkpoints' scale.

    Parameters
    ----------
    images_uint8 : numpy.ndarray, uint8, shape (..., C, H, W)

    Returns
    -------
    numpy.ndarray, float32, same shape.

    Raises
    ------
    TypeError
        If the array is not uint8 (to avoid scaling twice).
    """
    x = np.asarray(images_uint8)
    if x.dtype != np.uint8:
        raise TypeError(f"images_uint8: expected dtype uint8, got {x.dtype}")
    return x.astype(np.float32) / 127.5 - 1.0


_BUNDLED = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")


def bundled_images(n: int = 2048, size: int = 32, seed: int = 0):
    """Random ``size``×``size`` RGB crops from photographs shipped inside scikit-image.

    The fallback natural-image set when CIFAR-10 is unavailable (no download
    needed): crops of the colour photographs ``astronaut``, ``chelsea``,
    ``coffee``, ``rocket`` and ``hubble_deep_field`` of
    ``skimage.data``, each first downscaled by 4 so a crop holds object-scale
    structure as CIFAR-10 images do.

    Parameters
    ----------
    n : int
        Number of crops.
    size : int
        Crop side in pixels.
    seed : int

    Returns
    -------
    numpy.ndarray, uint8, shape (n, 3, size, size)
    """
    from skimage import data as skdata
    from skimage.transform import rescale

    rng = np.random.default_rng(seed)
    pics = []
    for name in _BUNDLED:
        im = getattr(skdata, name)()
        im = rescale(im, 0.25, channel_axis=-1, anti_aliasing=True, preserve_range=True).astype(np.uint8)
        pics.append(im)
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    for i in range(n):
        im = pics[rng.integers(len(pics))]
        r = rng.integers(im.shape[0] - size + 1)
        c = rng.integers(im.shape[1] - size + 1)
        out[i] = im[r : r + size, c : c + size].transpose(2, 0, 1)
    return out


def bundled_photograph(name: str = "camera"):
    """A grayscale photograph shipped inside scikit-image, as float64 in [0, 255].

    Parameters
    ----------
    name : {"camera", "astronaut", "coffee", "chelsea"}
        ``camera`` is the 512×512 cameraman; colour images are converted to
        luminance (ITU-R 601).

    Returns
    -------
    numpy.ndarray, float64, shape (H, W)
    """
    from skimage import data as skdata

    if name not in ("camera", "astronaut", "coffee", "chelsea"):
        raise ValueError(f"name: expected one of camera, astronaut, coffee, chelsea; got {name!r}")
    im = np.asarray(getattr(skdata, name)(), dtype=np.float64)
    if im.ndim == 3:
        im = im[..., :3] @ np.array([0.299, 0.587, 0.114])
    return im
