"""§7 set-up (models, images, patch statistics, directional probes) and a backward-compatible shim.

Moved to their own homes (issue 12 §4) and re-exported here for the notebooks:
:func:`training_index`, :func:`trajectories`, :func:`clear_cache`, :func:`forward_marginal` →
:mod:`pifs.setup7`; :func:`paired_difference_proxy`, :func:`loglog_fit` → :mod:`pifs.proxy`
(Table 10, Figure 1); :func:`suppressed_moran_threshold` → :mod:`pifs.suppressed_dimension`
(Table 11); the block statistics → :mod:`pifs.block_jacobian`; the exact reference models →
:mod:`pifs.reference_models`.

The §7 notebooks stay narrative; what they measure on a network goes through here:

======================================  ==========================================================
:func:`load_model`                      the profile's score network (shipped checkpoint, clear
                                        fallback note, or the paper's pretrained model in ``full``)
:func:`load_images`                     CIFAR-10 in [−1, 1] with the bundled-image fallback
:func:`load_image_folder`               a folder of pictures (CelebA-HQ for §7.7 in ``full``)
:func:`patch_statistics`                λ_k, v_k^(1), Σ_k of the data and the Gaussian surrogate
:func:`training_index`, :func:`chain`   the paper's printed timesteps ↔ our training indices
:func:`trajectories`                    DDIM trajectories from noise, cached per session
:func:`forward_marginal`                x_t ~ q(x_t) from data images
:func:`directional_probe`               one batched JVP per (point, patch) along v_k^(1), and every
                                        directional quantity of §7.1–7.2 derived from it
:func:`block_row_exact`                 the exact block row [J ε̂]_k,: of one patch (reverse mode)
:func:`spearman_table`                  ρ(λ_k, ·) per timestep with two-sided p (Table 3)
:func:`bootstrap_ci`                    percentile bootstrap (scipy.stats.bootstrap)
:func:`loglog_fit`                      OLS in log–log with t-interval and one-sided slope test
:func:`paired_difference_proxy`         ‖Δ̂_t‖ of eq. (65)
:func:`suppressed_moran_threshold`      λ*** solving ∏_t g_t(λ) = 1 (Theorem 27, eq. 48)
======================================  ==========================================================

Conventions
-----------
* Images: float32 tensors (B, C, H, W) in [−1, 1]. Patches: :mod:`pifs.patches`
  (row-major patch index, channel-major n_k = C p² values).
* Timesteps: our training index t = 1..T (``alpha_bar[t]`` = ᾱ_t, ``alpha_bar[0] = 1``);
  a model is called as ``model(x, t)``. diffusers' timestep τ = t − 1. The paper prints
  DDIM-50 steps as diffusers' τ (980, 900, …, 20: :func:`training_index` adds 1) and
  its Table 3 steps as 1, 101, … (already τ + 1 on the DDIM-50 grid).
* A step of a chain goes from training index ``t`` to ``t_prev`` (``t_prev = t − 1``
  is the paper's stride-1 step Φ_t; the 50-step DDIM sampler uses ``t_prev = t − 20``).
"""
from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "ModelInfo",
    "load_model",
    "show_note",
    "load_images",
    "load_image_folder",
    "PatchStats",
    "patch_statistics",
    "training_index",
    "trajectories",
    "clear_cache",
    "forward_marginal",
    "Probe",
    "directional_probe",
    "block_row_exact",
    "spearman_table",
    "bootstrap_ci",
    "loglog_fit",
    "paired_difference_proxy",
    "suppressed_moran_threshold",
]

from .profiles import PROFILES  # noqa: E402  ("smoke", "small", "full")
# moved to their own homes (issue 12 §4); re-exported here so that the notebooks keep working
from .proxy import loglog_fit, paired_difference_proxy  # noqa: E402,F401
from .setup7 import clear_cache, forward_marginal, trajectories, training_index  # noqa: E402,F401
from .setup7 import model_device as _model_device  # noqa: E402,F401
from .suppressed_dimension import suppressed_moran_threshold  # noqa: E402,F401


# ----------------------------------------------------------------------------- notes
def show_note(text: str, kind: str = "note") -> str:
    """Display ``text`` as a visible admonition box in a notebook (print it elsewhere).

    Parameters
    ----------
    text : str
        Plain text; ``**bold**`` and ```code``` spans are rendered.
    kind : {"note", "warning", "important"}

    Returns
    -------
    str
        The text (so a caller can also record it).
    """
    if kind not in ("note", "warning", "important"):
        raise ValueError(f"kind: expected 'note', 'warning' or 'important', got {kind!r}")
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display

        if get_ipython() is not None:
            import html
            import re

            body = html.escape(text)
            body = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", body)
            body = re.sub(r"`(.+?)`", r"<code>\1</code>", body)
            # an HTML admonition: rendered as such by the book's theme and by Jupyter
            display(HTML(f"<div class='admonition {kind}'><p class='admonition-title'>{kind.capitalize()}</p>"
                         f"<p>{body}</p></div>"))
            return text
    except ImportError:  # pragma: no cover - IPython is a dependency of the book
        pass
    print(f"[{kind.upper()}] {text}")
    return text


# ----------------------------------------------------------------------------- models
@dataclass
class ModelInfo:
    """The score network of a §7 notebook and where it came from.

    Attributes
    ----------
    model : pifs.scores.DiffusersScore
        ``model(x, t) -> eps_hat`` with t = 1..T, prepared for forward-mode AD.
    alpha_bar : numpy.ndarray, float64, shape (T+1,)
        The model's training schedule (``alpha_bar[0] = 1``).
    source : str
        Folder or hub name, or ``"untrained (random init, seed s)"``.
    trained : bool
        False when the notebook fell back to an untrained network.
    note : str
        Human-readable provenance, shown in the notebook.
    metadata : dict
        ``metadata.json`` of our checkpoints (training steps, data), else empty.
    paper_checkpoint : bool
        True only for one of the paper's checkpoints (:data:`PAPER_CHECKPOINTS`): loaded by its
        hub name, or from a folder whose ``config.json`` names it in ``_name_or_path`` (as
        ``save_pretrained`` of the hub model writes). Only then may a measurement on the
        network carry basis ``paper``.
    """

    model: object
    alpha_bar: np.ndarray
    source: str
    trained: bool
    note: str
    metadata: dict = field(default_factory=dict)
    paper_checkpoint: bool = False


#: The checkpoints the paper measured (§7.1).
PAPER_CHECKPOINTS = ("google/ddpm-cifar10-32", "google/ddpm-celebahq-256")


def is_paper_checkpoint(name_or_path, unet=None) -> bool:
    """Whether a checkpoint is one of the paper's (:data:`PAPER_CHECKPOINTS`).

    Parameters
    ----------
    name_or_path : str or path-like
        The hub name or folder it was loaded from.
    unet : diffusers.UNet2DModel, optional
        The loaded network; its config's ``_name_or_path`` is read too.

    Returns
    -------
    bool
        True for the hub name itself, or a folder whose ``config.json`` (or ``unet``'s config)
        records ``_name_or_path`` as one of them.
    """
    import json

    names = {str(name_or_path)}
    if unet is not None:
        names.add(str(getattr(unet.config, "_name_or_path", "") or ""))
    cfg = Path(str(name_or_path)).expanduser() / "config.json"
    if cfg.is_file():
        try:
            names.add(str(json.loads(cfg.read_text()).get("_name_or_path", "")))
        except (OSError, ValueError):
            pass
    return bool(names & set(PAPER_CHECKPOINTS))


def display_source(source) -> str:
    """A model or data location as a reader may see it: repository-relative, or just its last folder name.

    The build machine's own paths (``/home/…``, ``/tmp/…``) never appear in the book.
    """
    text = str(source)
    p = Path(text)
    if not p.is_absolute():
        return text
    root = Path(__file__).resolve().parents[1]
    try:
        return str(p.resolve().relative_to(root))
    except ValueError:
        return p.name or text


def load_model(profile: str, *, checkpoint: str = "cifar10-small", pretrained: str = "google/ddpm-cifar10-32",
               device="cpu", fallback_seed: int = 0, show: bool = True) -> ModelInfo:
    """Load the score network a §7 notebook runs on, by profile.

    * ``full``: the paper's checkpoint ``pretrained`` through
      :func:`pifs.models.load_pretrained`; a missing checkpoint raises its clear
      :class:`~pifs.models.PretrainedNotFoundError` (never a fallback).
    * ``small`` / ``smoke``: the project's shipped checkpoint ``checkpoint``
      (``checkpoints/cifar10-small``); if it is not there, a randomly initialised
      network of the same configuration (:func:`pifs.models.build_small_unet`),
      with a visible warning that every model number is then from an *untrained*
      network.

    Parameters
    ----------
    profile : {"smoke", "small", "full"}
    checkpoint : str
        Shipped checkpoint name or folder (small/smoke).
    pretrained : str
        Hub name or folder (full), e.g. ``"google/ddpm-celebahq-256"`` for §7.7.
    device : str or torch.device
    fallback_seed : int
        Seed of the untrained fallback's weights.
    show : bool
        Display the provenance note in the notebook.

    Returns
    -------
    ModelInfo

    Raises
    ------
    ValueError
        For an unknown profile.
    pifs.models.PretrainedNotFoundError
        In ``full`` when ``pretrained`` cannot be loaded.
    """
    from .models import PretrainedNotFoundError, build_small_unet, ddpm_alpha_bar, load_pretrained
    from .scores import DiffusersScore

    if profile not in PROFILES:
        raise ValueError(f"profile: expected one of {PROFILES}, got {profile!r}")
    if profile == "full":
        pre = load_pretrained(pretrained, device=device)
        model = DiffusersScore(pre.unet, pre.alpha_bar)
        note = f"Model: `{display_source(pretrained)}`, T = {pre.alpha_bar.size - 1}."
        paper = is_paper_checkpoint(pretrained, pre.unet)
        if not paper:
            note += (" It is **not** one of the paper's checkpoints (its config does not name "
                     f"{' or '.join(PAPER_CHECKPOINTS)}): its numbers are shown beside the paper's, never as errata.")
        info = ModelInfo(model, pre.alpha_bar, display_source(pre.source), True, note, dict(pre.metadata), paper)
    else:
        try:
            pre = load_pretrained(checkpoint, device=device)
        except PretrainedNotFoundError:
            pre = None
        if pre is not None:
            meta = dict(pre.metadata)
            steps = meta.get("steps") or meta.get("train_steps") or "?"
            note = (f"Model: this project's own small CIFAR-10 UNet (`{display_source(pre.source)}`, "
                    f"{sum(p.numel() for p in pre.unet.parameters()) / 1e6:.2f} M parameters, "
                    f"{steps} training steps), **not** the paper's google/ddpm-cifar10-32: its numbers "
                    "are shown beside the paper's as *not comparable*.")
            model = DiffusersScore(pre.unet, pre.alpha_bar)
            info = ModelInfo(model, pre.alpha_bar, display_source(pre.source), True, note, meta)
        else:
            unet = build_small_unet(fallback_seed).to(device)
            a = ddpm_alpha_bar()
            note = (f"The shipped checkpoint `{checkpoint}` was not found: falling back to an **untrained**, "
                    f"randomly initialised network of the same configuration (seed {fallback_seed}). "
                    "Every number measured on the model below is then a property of random weights, "
                    "not of a trained score: the qualitative checks are expected to fail.")
            info = ModelInfo(DiffusersScore(unet, a), a, f"untrained (random init, seed {fallback_seed})",
                             False, note, {})
    if show:
        show_note(info.note, "note" if info.trained else "warning")
    return info


# ----------------------------------------------------------------------------- data
def load_images(n=None, *, train: bool = True, seed: int = 0, root=None, show: bool = True):
    """CIFAR-10 images in the model scale [−1, 1], with the bundled-image fallback.

    Parameters
    ----------
    n : int or None
        Number of images (a seeded random subset without replacement); None = all found.
    train : bool
        Training (True) or test split.
    seed : int
        Seed of the subset.
    root : path-like, optional
        Data folder (default ``$PIFS_DATA_DIR``, then the user cache; no download).
    show : bool
        Display the provenance note.

    Returns
    -------
    images : numpy.ndarray, float32, shape (N, 3, 32, 32), values in [−1, 1]
    note : str
        Where the images came from and N.

    Raises
    ------
    ValueError
        If ``n`` is not a positive integer or None.
    """
    from .data import DatasetNotFoundError, bundled_images, load_cifar10, to_model_scale

    if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1):
        raise ValueError(f"n: expected a positive integer or None, got {n!r}")
    try:
        x, _ = load_cifar10(root, train=train, download=False)
        src = f"CIFAR-10 {'training' if train else 'test'} images"
        kind = "note"
    except DatasetNotFoundError:
        x = bundled_images(2048 if n is None else int(n), 32, seed)
        src = "bundled scikit-image photograph crops (CIFAR-10 not found: numbers are NOT CIFAR-10's)"
        kind = "warning"
    if n is not None and n < len(x):
        idx = np.sort(np.random.default_rng(seed).choice(len(x), int(n), replace=False))
        x = x[idx]
    images = to_model_scale(x)
    note = f"Data: {src}, N = {len(images):,}."
    if show:
        show_note(note, kind)
    return images, note


def load_image_folder(folder, *, size: int = 64, n: int | None = None, seed: int = 0):
    """Images from a folder of picture files (e.g. CelebA-HQ for §7.7), resized, in [−1, 1].

    Parameters
    ----------
    folder : str or path-like
        A folder holding ``.png``/``.jpg``/``.jpeg`` files (searched recursively).
    size : int
        Output side (square resize with anti-aliasing, scikit-image); 64 in §7.7.
    n : int or None
        A seeded random subset of this many files (None: all).
    seed : int

    Returns
    -------
    images : numpy.ndarray, float32, (N, 3, size, size), values in [−1, 1]
    note : str

    Raises
    ------
    FileNotFoundError
        If ``folder`` is empty/unset, does not exist or holds no picture files; the
        message says what is expected.
    ValueError
        If ``size`` < 1.
    """
    from pathlib import Path

    from skimage import io
    from skimage.color import gray2rgb
    from skimage.transform import resize

    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"size: expected a positive integer, got {size!r}")
    if not folder:
        raise FileNotFoundError(
            "celeba_dir: no image folder given. §7.7 in the full profile needs CelebA-HQ images: download "
            "CelebA-HQ (e.g. the 256×256 or 1024×1024 release) and pass the folder of .png/.jpg files as the "
            "notebook parameter celeba_dir.")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"celeba_dir: {root} is not a folder (expected a folder of CelebA-HQ .png/.jpg files)")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise FileNotFoundError(f"celeba_dir: {root} holds no .png/.jpg/.jpeg files")
    if n is not None and n < len(files):
        pick = np.sort(np.random.default_rng(seed).choice(len(files), int(n), replace=False))
        files = [files[i] for i in pick]
    out = np.empty((len(files), 3, size, size), dtype=np.float32)
    for i, f in enumerate(files):
        im = io.imread(f)
        if im.ndim == 2:
            im = gray2rgb(im)
        im = im[..., :3].astype(np.float64) / (255.0 if im.dtype == np.uint8 else float(np.iinfo(im.dtype).max)
                                                if np.issubdtype(im.dtype, np.integer) else 1.0)
        im = resize(im, (size, size), anti_aliasing=True)
        out[i] = (im.transpose(2, 0, 1) * 2.0 - 1.0).astype(np.float32)
    return out, f"Data: {len(files)} images from {display_source(root)}, resized to {size}×{size}."


@dataclass
class PatchStats:
    """Patch statistics of a data set and its Gaussian surrogate (§7.1, Definition 18).

    Attributes
    ----------
    patch_size : int
    shape : tuple (C, H, W)
    patch_idx : numpy.ndarray, int64, (M, n_k)
        :func:`pifs.patches.patch_indices`.
    lam : numpy.ndarray, float64, (M,)
        λ_k = top eigenvalue of the centred patch covariance Σ_k.
    vecs : numpy.ndarray, float64, (M, n_k)
        Unit top eigenvectors v_k^(1) (patch coordinates).
    cov : numpy.ndarray, float64, (M, n_k, n_k)
        Σ_k.
    mean : numpy.ndarray, float64, (C·H·W,)
        Data mean (flattened).
    n_images : int
    """

    patch_size: int
    shape: tuple
    patch_idx: np.ndarray
    lam: np.ndarray
    vecs: np.ndarray
    cov: np.ndarray
    mean: np.ndarray
    n_images: int

    @property
    def M(self) -> int:
        """Number of patches."""
        return int(self.lam.size)

    @property
    def n_k(self) -> int:
        """Values per patch."""
        return int(self.patch_idx.shape[1])

    def surrogate(self, alpha_bar):
        """The block-diagonal Gaussian surrogate ε^N of N(mean, diag(Σ_1..Σ_M)) (§4.1.1).

        Returns
        -------
        pifs.scores.GaussianScore
        """
        from .scores import GaussianScore

        return GaussianScore((self.cov, self.patch_idx), alpha_bar, mean=self.mean)


def patch_statistics(images, patch_size: int) -> PatchStats:
    """λ_k, v_k^(1), Σ_k and the mean of a set of images (§7.1–7.2).

    Parameters
    ----------
    images : numpy.ndarray, float, shape (N, C, H, W), N >= 2, pixel scale [−1, 1]
    patch_size : int
        Must divide H and W (8 → M = 16 on 32×32; 16 → M = 4).

    Returns
    -------
    PatchStats

    Raises
    ------
    ValueError
        For a bad shape or patch size (:mod:`pifs.patches`).
    """
    from .patches import patch_indices

    x = np.asarray(images)
    if x.ndim != 4 or x.shape[0] < 2:
        raise ValueError(f"images: expected shape (N >= 2, C, H, W), got {x.shape}")
    idx = patch_indices(x.shape[1:], patch_size)
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    mean = flat.mean(0)
    centred = flat - mean
    # one BLAS product per patch (the centred covariance of pifs.patches.patch_covariances, ddof = 1)
    cov = np.stack([centred[:, i].T @ centred[:, i] for i in idx]) / (x.shape[0] - 1)
    w, V = np.linalg.eigh(cov)  # ascending
    lam = w[:, -1].copy()
    vecs = V[:, :, -1].copy()
    # the sign convention of pifs.patches.patch_top_eigenvalues: largest |entry| positive
    piv = np.abs(vecs).argmax(axis=1)
    sign = np.sign(vecs[np.arange(vecs.shape[0]), piv])
    sign[sign == 0] = 1.0
    vecs *= sign[:, None]
    return PatchStats(int(patch_size), tuple(x.shape[1:]), idx, lam, vecs, np.asarray(cov, np.float64), mean,
                      int(x.shape[0]))


# ----------------------------------------------------------------------------- directional probes
@dataclass
class Probe:
    """Directional measurements at B points and one training index t, per patch (§7.1–7.2).

    Built from one JVP of the score per (point, patch) along u_k = v_k^(1) embedded in
    patch k: A u_k with A = J_x ε̂(x, t). For a step t → t_prev with coefficients
    c = √(ᾱ_{t_prev}/ᾱ_t) and b (eq. 4–5), J Φ = c I + b A.

    Attributes
    ----------
    t : int
    rq_model : numpy.ndarray (B, M)
        ⟨v_k, [A]_kk v_k⟩.
    rq_surrogate : numpy.ndarray (B, M)
        Same for the Gaussian surrogate (closed form √v_t/(ᾱ_t λ_k + v_t) when v_k is
        an eigenvector of Σ_k).
    diag_vec : numpy.ndarray (B, M, n_k)
        [A]_kk v_k (to form ‖(c I + b A)_kk v_k‖ for any step).
    cross_col : numpy.ndarray (B, M)
        Σ_{j≠k} ‖[A]_jk v_k‖: the output leaking from patch k into the other patches.
    v : numpy.ndarray (M, n_k)
    """

    t: int
    rq_model: np.ndarray
    rq_surrogate: np.ndarray
    diag_vec: np.ndarray
    cross_col: np.ndarray
    v: np.ndarray

    def coefficients(self, alpha_bar, t_prev=None):
        """(c, b) of the step t → t_prev (default t − 1), eq. (4)–(5), float64."""
        from .ddim import step_coefficients

        return step_coefficients(alpha_bar, self.t, self.t - 1 if t_prev is None else t_prev)

    def suppression(self, alpha_bar, t_prev=None) -> np.ndarray:
        """S_k,t = |b| (⟨v, A v⟩ − ⟨v, A^N v⟩), eq. (30), shape (B, M)."""
        _, b = self.coefficients(alpha_bar, t_prev)
        return abs(b) * (self.rq_model - self.rq_surrogate)

    def diagonal_rayleigh(self, alpha_bar, t_prev=None) -> np.ndarray:
        """⟨v_k, [J Φ]_kk v_k⟩ = c + b ⟨v_k, [A]_kk v_k⟩, eq. (32), shape (B, M)."""
        c, b = self.coefficients(alpha_bar, t_prev)
        return c + b * self.rq_model

    def diagonal_gain(self, alpha_bar, t_prev=None) -> np.ndarray:
        """‖[J Φ]_kk v_k‖ = ‖c v_k + b [A]_kk v_k‖ ≤ ‖[J Φ]_kk‖_op, shape (B, M)."""
        c, b = self.coefficients(alpha_bar, t_prev)
        return np.linalg.norm(c * self.v[None] + b * self.diag_vec, axis=-1)

    def cross_gain(self, alpha_bar, t_prev=None) -> np.ndarray:
        """|b| Σ_{j≠k} ‖[A]_jk v_k‖ ≤ Σ_{j≠k} ‖[J Φ]_jk‖_op (column form), shape (B, M)."""
        _, b = self.coefficients(alpha_bar, t_prev)
        return abs(b) * self.cross_col


def directional_probe(model, surrogate, x, t: int, stats: PatchStats, *, chunk=None, alpha_bar=None) -> Probe:
    """Directional JVPs of a score network along every patch's v_k^(1) at points x_t (§7.2).

    One forward-mode pass per (point, patch) — the paper's "directional JVP of the score
    network at trajectory points along v_k^(1)" — from which :class:`Probe` derives
    S_k,t (eq. 30), the diagonal Rayleigh quotient (eq. 32), the directional diagonal
    gain and the cross-patch leakage for any step size. The surrogate's quotients use
    :func:`pifs.suppression.block_rayleigh` (cheap: the surrogate is linear).

    Parameters
    ----------
    model : callable ``model(x, t)``
        Score network (prepared for forward-mode AD, e.g. :class:`pifs.scores.DiffusersScore`).
    surrogate : callable ``surrogate(x, t)``, or None
        Gaussian surrogate ε^N (:meth:`PatchStats.surrogate`), whose Rayleigh quotients
        are measured by JVP. None uses their closed form √v_t/(ᾱ_t λ_k + v_t), exact for
        the block-diagonal surrogate N(mean, diag(Σ_k)) because v_k is an eigenvector of
        Σ_k (Theorem 17); then ``alpha_bar`` is required.
    x : torch.Tensor, float32, (B, C, H, W)
        Points at training index t (pixel scale [−1, 1]).
    t : int, 1..T
    stats : PatchStats
    chunk : int, optional
        Patches per JVP call (memory: B·chunk samples at once); default all M.
    alpha_bar : array_like, shape (T+1,), optional
        Needed only with ``surrogate=None``.

    Returns
    -------
    Probe

    Raises
    ------
    TypeError, ValueError
        For a non-tensor x, a shape that does not match ``stats.shape``, or a bad chunk.
    """
    from .suppression import block_rayleigh

    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
        raise TypeError(f"x: expected a floating torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(stats.shape):
        raise ValueError(f"x: expected shape (B, *{tuple(stats.shape)}), got {tuple(x.shape)}")
    if isinstance(t, bool) or not isinstance(t, numbers.Integral):
        raise TypeError(f"t: expected an int training index, got {type(t).__name__}")
    M, nk = stats.patch_idx.shape
    step = M if chunk is None else int(chunk)
    if step < 1:
        raise ValueError(f"chunk: expected a positive integer, got {chunk!r}")
    B, n = x.shape[0], int(np.prod(x.shape[1:]))
    dev = x.device
    idx = torch.as_tensor(stats.patch_idx, dtype=torch.long, device=dev)
    d = torch.as_tensor(stats.vecs, dtype=x.dtype, device=dev)
    xf = x.detach()
    rq = np.empty((B, M))
    diag = np.empty((B, M, nk))
    cross = np.empty((B, M))
    t = int(t)
    for s in range(0, M, step):
        ks = list(range(s, min(M, s + step)))
        m = len(ks)
        tang = torch.zeros((m, n), dtype=x.dtype, device=dev)
        tang.scatter_(1, idx[ks], d[ks])
        # contiguous copies: an expanded view (stride 0) breaks in-place ops inside the network
        X = xf.unsqueeze(0).expand(m, *xf.shape).reshape(m * B, *xf.shape[1:]).contiguous()
        U = tang[:, None, :].expand(m, B, n).reshape(m * B, *xf.shape[1:]).contiguous()
        _, ju = torch.func.jvp(lambda z: model(z, t), (X,), (U,))
        ju = ju.detach().reshape(m, B, n).double().cpu()
        idx_c, d_c = idx.cpu(), d.cpu().double()
        for i, k in enumerate(ks):
            out = ju[i]  # (B, n) = A u_k
            blk = out[:, idx_c[k]]  # (B, nk)
            diag[:, k] = blk.numpy()
            rq[:, k] = (blk @ d_c[k]).numpy()
            others = out.clone()
            others[:, idx_c[k]] = 0.0
            cross[:, k] = others[:, idx_c].norm(dim=-1).sum(-1).numpy()  # Σ_{j≠k} ‖[A]_jk v_k‖
    if surrogate is None:
        from .schedules import validate

        if alpha_bar is None:
            raise ValueError("alpha_bar: required for the closed-form surrogate (surrogate=None)")
        a = validate(alpha_bar)
        rq_n = np.broadcast_to(np.sqrt(1.0 - a[t]) / (a[t] * stats.lam + 1.0 - a[t]), (B, M)).copy()
    else:
        rq_n = block_rayleigh(lambda z: surrogate(z, t), xf.double(), stats.vecs, stats.patch_idx).cpu().numpy()
    return Probe(t, rq, rq_n, diag, cross, np.asarray(stats.vecs, np.float64))


def block_row_exact(model, x, t: int, k: int, patch_idx, *, chunk: int = 64):
    """The exact block row [J_x ε̂(x, t)]_{k,:} of one patch by reverse mode (n_k VJPs).

    Row i of J is e_iᵀ J = (Jᵀ e_i)ᵀ, so the n_k rows of patch k cost n_k VJPs
    (``vmap``-ed, ``chunk`` at a time) instead of the n JVPs of a dense Jacobian.
    From it: ‖[J ε̂]_kk‖_op and the exact row coupling Σ_{j≠k}‖[J ε̂]_kj‖_op (eq. 16
    at the score level).

    Parameters
    ----------
    model : callable ``model(x, t)``
    x : torch.Tensor, (C, H, W) — one point
    t : int, 1..T
    k : int, 0..M−1
    patch_idx : array_like (M, n_k)
    chunk : int

    Returns
    -------
    dict
        ``rows`` (n_k, n) float64 tensor, ``block_norms`` (M,) = ‖[J ε̂]_kj‖_op for j = 0..M−1,
        ``diag`` = ‖[J ε̂]_kk‖_op, ``C`` = Σ_{j≠k} ‖[J ε̂]_kj‖_op.

    Raises
    ------
    ValueError
        For a bad patch index or point shape.
    """
    idx = np.asarray(patch_idx)
    if x.ndim != 3:
        raise ValueError(f"x: expected one point (C, H, W), got {tuple(x.shape)}")
    if not 0 <= int(k) < idx.shape[0]:
        raise ValueError(f"k: expected a patch index in 0..{idx.shape[0] - 1}, got {k!r}")
    xf = x.detach().reshape(-1)
    shape = x.shape
    t = int(t)
    g = lambda z: model(z.reshape(1, *shape), t).reshape(-1)  # noqa: E731
    _, fn = torch.func.vjp(g, xf)
    rows_idx = torch.as_tensor(idx[int(k)], dtype=torch.long)
    E = torch.zeros(rows_idx.numel(), xf.numel(), dtype=xf.dtype)
    E[torch.arange(rows_idx.numel()), rows_idx] = 1.0
    out = []
    for s in range(0, E.shape[0], int(chunk)):
        out.append(torch.vmap(fn)(E[s:s + int(chunk)])[0].detach())
    R = torch.cat(out).double()  # (n_k, n)
    I = torch.as_tensor(idx, dtype=torch.long)
    blocks = R[:, I].permute(1, 0, 2)  # (M, n_k, n_k)
    bn = torch.linalg.matrix_norm(blocks, ord=2)
    return {"rows": R, "block_norms": bn.numpy(), "diag": float(bn[int(k)]), "C": float(bn.sum() - bn[int(k)])}


# ----------------------------------------------------------------------------- statistics
def spearman_table(lam, values, timesteps, *, alpha=(0.05, 0.01)):
    """Spearman ρ(λ_k, value_k,t) across patches at each timestep, two-sided p (Table 3).

    Parameters
    ----------
    lam : array_like, shape (M,)
    values : array_like, shape (N_t, M)
        One row per timestep (e.g. S_k,t averaged over seeds).
    timesteps : array_like of int, shape (N_t,)
    alpha : (float, float)
        Levels of "*" and "**".

    Returns
    -------
    pandas.DataFrame
        Columns ``t``, ``rho``, ``p``, ``sig`` ("**", "*", "n.s."). ρ is NaN when a row is
        constant.

    Raises
    ------
    ValueError
        If the shapes disagree or M < 3.
    """
    import pandas as pd
    from scipy import stats as st

    lam = np.asarray(lam, np.float64)
    V = np.asarray(values, np.float64)
    ts = np.asarray(timesteps)
    if V.ndim != 2 or V.shape != (ts.size, lam.size):
        raise ValueError(f"values: expected shape (len(timesteps), M) = ({ts.size}, {lam.size}), got {V.shape}")
    if lam.size < 3:
        raise ValueError(f"lam: need at least 3 patches for a rank correlation, got {lam.size}")
    rows = []
    for t, v in zip(ts, V):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = st.spearmanr(lam, v)
        rho, p = float(r.statistic), float(r.pvalue)
        sig = "**" if p < alpha[1] else "*" if p < alpha[0] else "n.s."
        rows.append({"t": int(t), "rho": rho, "p": p, "sig": sig})
    return pd.DataFrame(rows)


def bootstrap_ci(values, statistic=np.mean, *, confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0):
    """Percentile bootstrap confidence interval of a statistic (scipy.stats.bootstrap).

    Parameters
    ----------
    values : array_like, shape (N,), N >= 2
        One value per independent unit (e.g. per trajectory).
    statistic : callable
        ``statistic(sample, axis=-1)`` (numpy reductions qualify).
    confidence : float in (0, 1)
    n_resamples : int
    seed : int

    Returns
    -------
    (float, float)
        Lower and upper bound. A constant sample gives a degenerate interval (v, v).

    Raises
    ------
    ValueError
        If fewer than 2 values or ``confidence`` outside (0, 1).
    """
    from scipy import stats as st

    v = np.asarray(values, np.float64).ravel()
    if v.size < 2:
        raise ValueError(f"values: need at least 2 values for a bootstrap, got {v.size}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a level in (0, 1), got {confidence!r}")
    if np.all(v == v[0]):
        s = float(statistic(v))
        return s, s
    res = st.bootstrap((v,), statistic, confidence_level=confidence, n_resamples=int(n_resamples),
                       method="percentile", random_state=np.random.default_rng(seed), vectorized=True)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
