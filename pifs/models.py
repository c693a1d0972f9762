"""The project's own small CIFAR-10 diffusion model, checkpoints, pretrained loading,
attention capture and a minimal DDIM sampler.

What the §7 notebooks need from a network is a score model ε̂_θ(x, t) on 32×32×3
images with self-attention at 16×16 (the DDPM CIFAR-10 layout, Ho et al. 2020), whose
Jacobian-vector products are cheap on a CPU. ``google/ddpm-cifar10-32`` (35.7 M
parameters) is the paper's model (``full`` profile); this module defines a small
diffusers :class:`~diffusers.UNet2DModel` with the same schedule, the same
ε-parametrisation and the same attention placement, trained by this project
(:mod:`pifs.training`) and shipped in ``checkpoints/cifar10-small``.

Conventions
-----------
* Images: float32 tensors (B, 3, 32, 32) in [−1, 1] (x / 127.5 − 1).
* Timesteps: our training index t = 1..T (``alpha_bar[t]`` = ᾱ_t, ``alpha_bar[0] = 1``,
  see :mod:`pifs.schedules`). diffusers' UNet/scheduler timestep τ = 0..T−1 indexes
  ``alphas_cumprod[τ]`` = ᾱ_{τ+1}, so the network is called with τ = t − 1.
  :class:`pifs.scores.DiffusersScore` does that conversion: ``DiffusersScore(unet, alpha_bar)(x, t) = unet(x, t − 1).sample``.
* Checkpoint folder (the layout of ``google/ddpm-cifar10-32``): ``config.json`` +
  ``diffusion_pytorch_model.safetensors`` (UNet2DModel, EMA weights),
  ``scheduler_config.json`` (DDPMScheduler), plus ``metadata.json`` (data set, its
  hash, steps, loss curve, options), ``train_log.csv`` and ``README.md``.

Command line::

    python -m pifs.models train --out checkpoints/cifar10-small --steps N --batch-size B --seed 0 \
        [--min-snr-gamma 5] [--pifs-reg 0.0] [--resume]
    python -m pifs.models sample --checkpoint checkpoints/cifar10-small --n 16 --steps 50 --out samples.png
    python -m pifs.models finalize --out checkpoints/cifar10-small [--samples] [--delete-state]
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .schedules import ddim_timesteps
from .scores import DiffusersScore, MathAttnProcessor

__all__ = [
    "T_TRAIN",
    "BETA_START",
    "BETA_END",
    "SMALL_UNET_CONFIG",
    "PretrainedNotFoundError",
    "small_unet_config",
    "build_small_unet",
    "ddpm_alpha_bar",
    "ddpm_scheduler",
    "Pretrained",
    "save_checkpoint",
    "load_checkpoint",
    "load_pretrained",
    "attention_modules",
    "capture_attention",
    "AttentionRecord",
    "attention_entropy",
    "ddim_sample",
    "save_image_grid",
    "main",
]

#: Training steps T and the linear β range of google/ddpm-cifar10-32 (Ho et al., 2020).
T_TRAIN = 1000
BETA_START = 1e-4
BETA_END = 0.02

#: The small UNet (diffusers ``UNet2DModel`` keyword arguments). Resolutions 32 → 16 → 8;
#: self-attention (one head, as DDPM) in the 16×16 down and up blocks and in the 8×8 mid
#: block. 1.11 M parameters, 4.5 MB in float32. Chosen by measurement (benchmarks in the
#: report of issue #5): a (64, 128, 128) variant has 4.4 M parameters and JVPs ~2–3× slower.
SMALL_UNET_CONFIG = dict(
    sample_size=32,
    in_channels=3,
    out_channels=3,
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=None,
    norm_num_groups=8,
    add_attention=True,
    dropout=0.0,
)

_WEIGHTS = "diffusion_pytorch_model.safetensors"
_REPO_CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"


class PretrainedNotFoundError(FileNotFoundError):
    """A pretrained model is neither a local folder nor available from the hub (offline)."""


# --------------------------------------------------------------------------- model


def small_unet_config(**overrides) -> dict:
    """The keyword arguments of the project's small ``UNet2DModel``, with overrides.

    Parameters
    ----------
    **overrides
        Any ``UNet2DModel`` keyword (e.g. ``block_out_channels=(8, 16, 16), norm_num_groups=4``
        for a tiny test model).

    Returns
    -------
    dict
        A fresh copy of :data:`SMALL_UNET_CONFIG` updated with ``overrides``.

    Raises
    ------
    TypeError
        If an override is not a ``UNet2DModel`` argument.
    """
    import inspect

    from diffusers import UNet2DModel

    allowed = set(inspect.signature(UNet2DModel.__init__).parameters) - {"self"}
    bad = sorted(set(overrides) - allowed)
    if bad:
        raise TypeError(f"overrides: not UNet2DModel arguments: {bad}")
    cfg = dict(SMALL_UNET_CONFIG)
    cfg.update(overrides)
    return cfg


def build_small_unet(seed: int | None = 0, **overrides):
    """Build the small CIFAR-10 UNet (randomly initialised, float32, eval mode).

    Parameters
    ----------
    seed : int or None
        Seed for the initial weights (``torch.manual_seed`` inside a forked RNG state, so
        the global RNG is untouched); None uses the current global RNG.
    **overrides
        See :func:`small_unet_config`.

    Returns
    -------
    diffusers.UNet2DModel
        Called as ``unet(x, tau).sample`` with x (B, 3, 32, 32) in [−1, 1] and the
        diffusers timestep tau = t − 1 ∈ 0..T−1; predicts ε (Ho et al., 2020, eq. 14).
    """
    from diffusers import UNet2DModel

    cfg = small_unet_config(**overrides)
    if seed is None:
        unet = UNet2DModel(**cfg)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            unet = UNet2DModel(**cfg)
    return unet.eval()


def ddpm_alpha_bar(T: int = T_TRAIN) -> np.ndarray:
    """ᾱ of google/ddpm-cifar10-32: linear β from 1e-4 to 0.02, shape (T+1,), float64.

    ``alpha_bar[0] = 1``; ``alpha_bar[t]`` for t = 1..T (see :func:`pifs.schedules.linear`).
    """
    from pifs.schedules import linear

    return linear(T, BETA_START, BETA_END)


def ddpm_scheduler(T: int = T_TRAIN):
    """The ``DDPMScheduler`` of google/ddpm-cifar10-32 (linear β 1e-4 → 0.02, ε-prediction).

    Its ``alphas_cumprod[τ]`` equals ``ddpm_alpha_bar()[τ + 1]`` (up to float32 round-off).
    """
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=int(T),
        beta_start=BETA_START,
        beta_end=BETA_END,
        beta_schedule="linear",
        prediction_type="epsilon",
        variance_type="fixed_large",
        clip_sample=True,
    )


# --------------------------------------------------------------------------- checkpoints


@dataclass
class Pretrained:
    """A loaded diffusion model.

    Attributes
    ----------
    unet : diffusers.UNet2DModel
        In eval mode, float32, on the requested device.
    scheduler : diffusers.DDPMScheduler
    alpha_bar : numpy.ndarray, float64, shape (T+1,)
        ᾱ in the project's convention (``alpha_bar[0] = 1``), from the scheduler's betas.
    model : pifs.scores.DiffusersScore
        ``model(x, t)`` with t = 1..T.
    source : str
        The folder or hub name it came from.
    metadata : dict
        ``metadata.json`` of our own checkpoints (empty for hub models).
    """

    unet: object
    scheduler: object
    alpha_bar: np.ndarray
    model: object
    source: str
    metadata: dict = field(default_factory=dict)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_checkpoint(folder, unet, *, scheduler=None, metadata: dict | None = None) -> Path:
    """Save a UNet (+ scheduler, + metadata) as a diffusers-loadable checkpoint folder.

    Each file is written to a temporary name and moved into place (``os.replace``), so
    a reader never sees a half-written file.

    Parameters
    ----------
    folder : str or path-like
        Created if needed. Receives ``config.json``, ``diffusion_pytorch_model.safetensors``,
        ``scheduler_config.json`` and (when given) ``metadata.json``.
    unet : diffusers.UNet2DModel
    scheduler : diffusers.DDPMScheduler, optional
        Default :func:`ddpm_scheduler`.
    metadata : dict, optional
        JSON-serialisable description (data set, hash, steps, loss curve, options).

    Returns
    -------
    pathlib.Path
        The folder.
    """
    import shutil
    import tempfile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scheduler = scheduler if scheduler is not None else ddpm_scheduler()
    with tempfile.TemporaryDirectory(dir=folder, prefix=".save-") as tmp:
        unet.save_pretrained(tmp, safe_serialization=True)
        scheduler.save_pretrained(tmp)
        for name in (_WEIGHTS, "config.json", "scheduler_config.json"):
            shutil.copyfile(Path(tmp) / name, folder / (name + ".tmp"))
            os.replace(folder / (name + ".tmp"), folder / name)
    if metadata is not None:
        import re

        text = json.dumps(metadata, indent=1, default=_json_default)
        # one line per short list of numbers (the loss curve's [step, loss] pairs)
        text = re.sub(r"\[\s+(-?[\d.e+-]+),\s+(-?[\d.e+-]+|null)\s+\]", r"[\1, \2]", text)
        _atomic_write_text(folder / "metadata.json", text)
    return folder


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.ndarray,)):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _alpha_bar_from_scheduler(scheduler) -> np.ndarray:
    betas = np.asarray(scheduler.betas.double().cpu().numpy(), dtype=np.float64)
    return np.concatenate([[1.0], np.cumprod(1.0 - betas)])


def _finish(unet, scheduler, source, metadata, device, dtype) -> Pretrained:
    import logging

    dlog = logging.getLogger("diffusers")  # quiet its "modules that should be kept in float32: []" notice
    old_level = dlog.level
    dlog.setLevel(logging.ERROR)
    try:
        if unet.dtype != dtype:
            unet = unet.to(dtype=dtype)
        unet = unet.to(device=device).eval()
    finally:
        dlog.setLevel(old_level)
    T = int(scheduler.config.num_train_timesteps)
    return Pretrained(unet, scheduler, _alpha_bar_from_scheduler(scheduler), DiffusersScore(unet, _alpha_bar_from_scheduler(scheduler), forward_ad=False), str(source), metadata)


def load_checkpoint(folder, *, device="cpu", dtype=torch.float32) -> Pretrained:
    """Load a local checkpoint folder (ours, or any saved with ``save_pretrained``).

    Accepts the flat layout (``config.json`` + weights [+ ``scheduler_config.json``] at the
    top, as google/ddpm-cifar10-32 and our checkpoints) and the pipeline layout
    (``unet/`` and ``scheduler/`` sub-folders, as ``DDPMPipeline.save_pretrained``).
    A missing scheduler config means the DDPM linear schedule (:func:`ddpm_scheduler`).

    Parameters
    ----------
    folder : str or path-like
    device : str or torch.device
    dtype : torch.dtype

    Returns
    -------
    Pretrained

    Raises
    ------
    PretrainedNotFoundError
        If the folder holds no UNet config.
    """
    from diffusers import DDPMScheduler, UNet2DModel

    folder = Path(folder)
    if (folder / "config.json").is_file():
        unet_dir, sched_dir = folder, folder
        sched_sub = None
    elif (folder / "unet" / "config.json").is_file():
        unet_dir, sched_dir = folder / "unet", folder
        sched_sub = "scheduler"
    else:
        raise PretrainedNotFoundError(
            f"{folder}: no 'config.json' (or 'unet/config.json'): not a diffusers UNet2DModel checkpoint folder"
        )
    unet = UNet2DModel.from_pretrained(unet_dir, local_files_only=True, low_cpu_mem_usage=False)
    if sched_sub is None and (sched_dir / "scheduler_config.json").is_file():
        scheduler = DDPMScheduler.from_pretrained(sched_dir, local_files_only=True)
    elif sched_sub is not None and (sched_dir / sched_sub / "scheduler_config.json").is_file():
        scheduler = DDPMScheduler.from_pretrained(sched_dir, subfolder=sched_sub, local_files_only=True)
    else:
        scheduler = ddpm_scheduler()
    meta = {}
    if (folder / "metadata.json").is_file():
        meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    return _finish(unet, scheduler, folder, meta, device, dtype)


def _hub_reachable(timeout: float) -> bool:
    """True if a TCP connection to the hub endpoint opens within ``timeout`` seconds.

    Name resolution has no timeout of its own, so the probe runs in a daemon thread.
    """
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    ok = []

    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    th = threading.Thread(target=probe, daemon=True)
    th.start()
    th.join(timeout + 0.5)
    return bool(ok)


def _hub_load(name: str, local_files_only: bool):
    from diffusers import DDPMScheduler, UNet2DModel

    errors = []
    for sub in (None, "unet"):
        try:
            unet = UNet2DModel.from_pretrained(name, subfolder=sub, local_files_only=local_files_only,
                                                    low_cpu_mem_usage=False)
            break
        except (OSError, ValueError, EnvironmentError) as exc:  # diffusers raises EnvironmentError
            errors.append(exc)
    else:
        raise errors[-1]
    try:
        scheduler = DDPMScheduler.from_pretrained(name, subfolder="scheduler" if sub else None,
                                                  local_files_only=local_files_only)
    except (OSError, ValueError, EnvironmentError):
        scheduler = ddpm_scheduler()
    return unet, scheduler


def load_pretrained(name_or_path, *, device="cpu", dtype=torch.float32, probe_timeout: float = 3.0) -> Pretrained:
    """Load a diffusion UNet and its scheduler: a local folder, a shipped checkpoint or a hub model.

    Resolution order:

    1. an existing local folder (:func:`load_checkpoint`);
    2. a checkpoint shipped with this repository, by folder name (``"cifar10-small"`` →
       ``checkpoints/cifar10-small``);
    3. a Hugging Face hub name (``"google/ddpm-cifar10-32"``, ``"google/ddpm-celebahq-256"``):
       first from the local hub cache only (``local_files_only=True``, no network); then,
       unless offline mode is on (``HF_HUB_OFFLINE``), the hub host is probed with a
       ``probe_timeout``-second TCP connect and, if it answers, downloaded.

    Offline it fails fast (a few seconds at most) with a message saying what is missing
    and how to get it.

    Parameters
    ----------
    name_or_path : str or path-like
    device : str or torch.device
    dtype : torch.dtype
    probe_timeout : float, > 0
        Seconds to wait for the hub host before declaring the machine offline.

    Returns
    -------
    Pretrained
        ``.unet`` (UNet2DModel, eval), ``.scheduler`` (DDPMScheduler), ``.alpha_bar``
        (float64, (T+1,), ``alpha_bar[0] = 1``), ``.model`` (``model(x, t)``, t = 1..T).

    Raises
    ------
    PretrainedNotFoundError
        Not a local folder, not in the hub cache, and the hub is unreachable / offline or
        does not have it.
    TypeError, ValueError
        For a bad ``name_or_path`` or ``probe_timeout``.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path: expected a hub name or a folder path, got {type(name_or_path).__name__}")
    if not probe_timeout > 0:
        raise ValueError(f"probe_timeout: expected seconds > 0, got {probe_timeout!r}")
    name = os.fspath(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        return load_checkpoint(path, device=device, dtype=dtype)
    if (_REPO_CHECKPOINTS / name).is_dir():
        return load_checkpoint(_REPO_CHECKPOINTS / name, device=device, dtype=dtype)
    if name.count("/") != 1 or name.startswith((".", "/", "~")):
        raise PretrainedNotFoundError(
            f"{name!r}: no such folder, and not a hub name of the form 'owner/model' "
            f"(shipped checkpoints: {sorted(p.name for p in _REPO_CHECKPOINTS.glob('*') if p.is_dir())})"
        )
    howto = (
        f"To get it: on a machine with internet run `huggingface-cli download {name}` (it fills the "
        f"hub cache, ~/.cache/huggingface/hub; copy that folder here or set HF_HOME), or save it with "
        f"`UNet2DModel.from_pretrained('{name}').save_pretrained(FOLDER)` (and its DDPMScheduler) and pass FOLDER."
    )
    import logging

    from huggingface_hub import constants

    # diffusers logs a long warning per failed cache lookup; keep the failure quiet and fast.
    dlog = logging.getLogger("diffusers")
    old_level = dlog.level
    dlog.setLevel(logging.ERROR)
    try:
        try:
            unet, scheduler = _hub_load(name, local_files_only=True)
            return _finish(unet, scheduler, name, {}, device, dtype)
        except (OSError, ValueError, EnvironmentError):
            pass
        if constants.HF_HUB_OFFLINE:
            raise PretrainedNotFoundError(
                f"{name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set. {howto}"
            )
        if not _hub_reachable(probe_timeout):
            raise PretrainedNotFoundError(
                f"{name!r} is not in the local Hugging Face cache and {constants.ENDPOINT} is unreachable "
                f"(no answer within {probe_timeout:g} s: offline?). {howto}"
            )
        try:
            unet, scheduler = _hub_load(name, local_files_only=False)
        except (OSError, ValueError, EnvironmentError) as exc:
            raise PretrainedNotFoundError(f"{name!r}: download from the hub failed: {exc}. {howto}") from exc
        return _finish(unet, scheduler, name, {}, device, dtype)
    finally:
        dlog.setLevel(old_level)


# --------------------------------------------------------------------------- attention


def attention_modules(model) -> dict:
    """The diffusers ``Attention`` modules of a model, by qualified name (in forward order).

    Parameters
    ----------
    model : torch.nn.Module
        E.g. a ``UNet2DModel`` or a :class:`pifs.scores.DiffusersScore` around one.

    Returns
    -------
    dict[str, diffusers.models.attention_processor.Attention]
    """
    from diffusers.models.attention_processor import Attention

    return {n: m for n, m in model.named_modules() if isinstance(m, Attention)}


@dataclass
class AttentionRecord:
    """Attention probabilities recorded by :func:`capture_attention`.

    Attributes
    ----------
    probs : dict[str, list[torch.Tensor]]
        Per attention module (qualified name), one tensor per forward call, each of shape
        (B, heads, L, L_k) with L = H·W of that module's feature map (256 at 16×16, 64 at
        8×8); rows sum to 1.
    """

    probs: dict

    def last(self) -> dict:
        """The probabilities of the most recent forward call, per module."""
        return {k: v[-1] for k, v in self.probs.items() if v}

    def clear(self) -> None:
        """Forget everything recorded so far (keeps capturing)."""
        for v in self.probs.values():
            v.clear()


@contextlib.contextmanager
def capture_attention(model, detach: bool = True):
    """Record the attention probabilities of every attention module during forward passes.

    Inside the ``with`` block each ``Attention`` module of ``model`` uses an
    :class:`pifs.scores.MathAttnProcessor` that stores softmax(QKᵀ/√d) (Vaswani et al. 2017; the
    A_t of the paper's Theorem 23 and Table 6); on exit the original processors are
    restored. The model's outputs are unchanged.

    Parameters
    ----------
    model : torch.nn.Module
        A diffusers ``UNet2DModel`` (or a module containing one).
    detach : bool
        Store detached copies (default).

    Yields
    ------
    AttentionRecord

    Raises
    ------
    ValueError
        If ``model`` has no attention module.

    Examples
    --------
    >>> with capture_attention(unet) as rec:          # doctest: +SKIP
    ...     unet(x, tau)
    >>> H = attention_entropy(rec.last()["down_blocks.1.attentions.0"])
    """
    mods = attention_modules(model)
    if not mods:
        raise ValueError("model: has no diffusers Attention module to capture")
    old = {n: m.processor for n, m in mods.items()}
    rec = AttentionRecord({n: [] for n in mods})
    try:
        for n, m in mods.items():
            m.set_processor(MathAttnProcessor(rec.probs[n], detach=detach))
        yield rec
    finally:
        for n, m in mods.items():
            m.set_processor(old[n])


def attention_entropy(probs, reduce: bool = True, atol: float = 1e-4):
    """Mean row entropy H(A) = −(1/L) Σ_i Σ_j A_ij log A_ij of attention matrices, in nats.

    The quantity H(A_t) of the paper's Table 6 (§7.4): the Shannon entropy of each query's
    attention distribution, averaged over queries (and over batch and heads). Ranges from
    0 (hard attention) to log L_k (uniform attention; log 256 ≈ 5.545 at 16×16).

    Parameters
    ----------
    probs : torch.Tensor or numpy.ndarray, shape (..., L, L_k)
        Row-stochastic matrices (non-negative, rows summing to 1), e.g. (B, heads, L, L_k)
        from :func:`capture_attention`. Entries equal to 0 contribute 0 (0 log 0 = 0).
    reduce : bool
        Return the mean over all rows (a float) or the per-row entropies, shape (..., L).
    atol : float
        Tolerance for the row sums.

    Returns
    -------
    float or torch.Tensor (float64)

    Raises
    ------
    ValueError
        If ``probs`` has fewer than 2 dimensions, negative entries or rows not summing to 1.
    """
    p = torch.as_tensor(probs).detach().to(torch.float64)
    if p.ndim < 2:
        raise ValueError(f"probs: expected shape (..., L, L_k), got {tuple(p.shape)}")
    if (p < 0).any():
        raise ValueError("probs: attention probabilities must be non-negative")
    dev = (p.sum(-1) - 1).abs().max().item() if p.numel() else 0.0
    if dev > atol:
        raise ValueError(f"probs: rows must sum to 1 (max deviation {dev:.3g} > atol={atol})")
    h = -torch.where(p > 0, p * torch.log(torch.where(p > 0, p, torch.ones_like(p))), torch.zeros_like(p)).sum(-1)
    return float(h.mean()) if reduce else h


# --------------------------------------------------------------------------- sampling


@torch.no_grad()
def ddim_sample(model, x_T: torch.Tensor, alpha_bar=None, timesteps=None, progress: bool = False,
                clip_x0: bool = False) -> torch.Tensor:
    """Deterministic DDIM sampling (η = 0; Song et al. 2021, the operator Φ_t of eq. (4)).

    x_{t_{i-1}} = √ᾱ_{t_{i-1}} x̂_0 + √(1 − ᾱ_{t_{i-1}}) ε̂, x̂_0 = (x_{t_i} − √(1 − ᾱ_{t_i}) ε̂)/√ᾱ_{t_i},
    with ε̂ = model(x_{t_i}, t_i), t_0 = 0 and ᾱ_0 = 1. No clipping of x̂_0 (eq. 4 has none).

    Parameters
    ----------
    model : callable
        ``model(x, t) -> eps_hat`` with t a training index 1..T (e.g. :class:`pifs.scores.DiffusersScore`).
    x_T : torch.Tensor, (B, C, H, W)
        Start noise (standard normal).
    alpha_bar : array_like, shape (T+1,), optional
        Default :func:`ddpm_alpha_bar`.
    timesteps : array_like of int, increasing, optional
        Default ``ddim_timesteps(50, T)``.
    progress : bool
        Show a tqdm bar.
    clip_x0 : bool
        Clamp x̂_0 to [−1, 1] at every step, keeping ε̂ (diffusers' default
        ``DDIMScheduler(clip_sample=True)`` with ``use_clipped_model_output=False``). Not the
        paper's operator; off by default.

    Returns
    -------
    torch.Tensor, same shape and dtype as ``x_T``: x_0 (not clipped unless ``clip_x0``).
    """
    from pifs.schedules import validate

    a = validate(ddpm_alpha_bar() if alpha_bar is None else alpha_bar)
    T = a.size - 1
    ts = ddim_timesteps(50, T) if timesteps is None else np.asarray(timesteps)
    if ts.ndim != 1 or ts.size == 0 or (np.diff(ts) <= 0).any() or ts[0] < 1 or ts[-1] > T:
        raise ValueError(f"timesteps: expected strictly increasing training indices in 1..{T}")
    chain = list(ts[::-1]) + [0]
    x = x_T
    it = range(len(chain) - 1)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="DDIM")
    for i in it:
        t, s = int(chain[i]), int(chain[i + 1])
        eps = model(x, t)
        x0 = (x - math.sqrt(1.0 - a[t]) * eps) / math.sqrt(a[t])
        if clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
        x = math.sqrt(a[s]) * x0 + math.sqrt(1.0 - a[s]) * eps
    return x


def save_image_grid(x: torch.Tensor, path, nrow: int | None = None, scale: int = 1) -> Path:
    """Write images in [−1, 1] as a PNG grid (values outside [−1, 1] are clamped *for display*).

    Parameters
    ----------
    x : torch.Tensor, (B, 3, H, W)
    path : str or path-like
    nrow : int, optional
        Images per row (default ⌈√B⌉).
    scale : int, >= 1
        Integer up-scaling (nearest neighbour) of the finished grid, for display.

    Returns
    -------
    pathlib.Path
    """
    import matplotlib.image as mpimg

    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"x: expected (B, 1 or 3, H, W), got {tuple(x.shape)}")
    B, C, H, W = x.shape
    nrow = nrow or math.ceil(math.sqrt(B))
    ncol = math.ceil(B / nrow)
    img = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    pad = 2
    grid = np.full((ncol * (H + pad) + pad, nrow * (W + pad) + pad, 3), 255, np.uint8)
    for i in range(B):
        r, c = divmod(i, nrow)
        tile = img[i].transpose(1, 2, 0)
        grid[pad + r * (H + pad): pad + r * (H + pad) + H, pad + c * (W + pad): pad + c * (W + pad) + W] = tile
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale: expected a positive integer, got {scale!r}")
    grid = grid.repeat(int(scale), axis=0).repeat(int(scale), axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mpimg.imsave(path, grid)
    return path


if __name__ == "__main__":  # ``python -m pifs.models ...`` is the command line of pifs.cli
    import runpy

    runpy.run_module("pifs.cli", run_name="__main__")
