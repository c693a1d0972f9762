"""Denoising score matching (DSM) training of the small UNet of :mod:`pifs.models`.

Objective (Ho et al. 2020, eq. 14; the paper's eq. (20) / Proposition 12): for
x_0 from the data, t uniform in 1..T and ε ~ N(0, I),

    L(θ) = E_t [ w_t · ‖ε̂_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t) − ε‖² / n ],

with w_t = 1 (plain DSM) or the Min-SNR-γ weight w_t = min(SNR_t, γ)/SNR_t (Hang et al.
2023; paper §6.5.3, Proposition 34), SNR_t = ᾱ_t/(1 − ᾱ_t). Optionally the PIFS collage
regulariser of Theorem 15, μ_reg Σ_{j≠k} ‖[J_x ε̂_θ]_{kj}‖_F² (a stochastic estimate from
:func:`pifs.jacobian.collage_regulariser`), is added.

Training is seeded and resumable: the full state (weights, EMA weights, optimiser, RNG,
data order, log) is saved atomically to a state folder every ``ckpt_every`` steps, and
the EMA weights are exported as a diffusers checkpoint (:func:`pifs.models.save_checkpoint`)
together with ``metadata.json`` and ``train_log.csv``.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import math
import os
import platform
import shlex
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from pifs import models
from pifs.schedules import ddim_timesteps
from pifs.scores import DiffusersScore

__all__ = [
    "min_snr_weight",
    "EMA",
    "TrainConfig",
    "images_sha256",
    "load_training_images",
    "dsm_loss",
    "Trainer",
    "train",
    "finalize",
]


def min_snr_weight(snr, gamma: float):
    """Min-SNR-γ loss weight for ε-prediction: w_t = min(SNR_t, γ) / SNR_t.

    Paper §6.5.3 (Proposition 34); Hang et al. (2023), eq. for ε-prediction. Equals 1
    where SNR_t ≤ γ (high noise) and γ/SNR_t where SNR_t > γ (low noise).

    Parameters
    ----------
    snr : float, numpy.ndarray or torch.Tensor
        SNR_t = ᾱ_t/(1 − ᾱ_t) > 0 (may be +inf: weight 0).
    gamma : float, > 0

    Returns
    -------
    Same type and shape as ``snr``.

    Raises
    ------
    ValueError
        If ``gamma`` ≤ 0 or an SNR is ≤ 0 or NaN.
    """
    if not (isinstance(gamma, (int, float)) and gamma > 0 and math.isfinite(gamma)):
        raise ValueError(f"gamma: expected a finite number > 0, got {gamma!r}")
    if isinstance(snr, torch.Tensor):
        if torch.isnan(snr).any() or (snr <= 0).any():
            raise ValueError("snr: expected values > 0")
        return torch.clamp(snr, max=gamma) / snr
    s = np.asarray(snr, dtype=np.float64)
    if np.isnan(s).any() or (s <= 0).any():
        raise ValueError("snr: expected values > 0")
    with np.errstate(invalid="ignore"):
        w = np.minimum(s, gamma) / s
    w = np.where(np.isinf(s), 0.0, w)
    return float(w) if w.ndim == 0 else w


class EMA:
    """Exponential moving average of a model's parameters (and copies of its buffers).

    θ_ema ← d θ_ema + (1 − d) θ after every optimiser step, with the warm-up
    d = min(decay, (1 + n)/(10 + n)) at update n (as in common DDPM implementations), so
    early averages are not dominated by the random initialisation.

    Parameters
    ----------
    model : torch.nn.Module
    decay : float in [0, 1)
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay: expected a value in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards ``model``'s current parameters."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for pe, p in zip(self.model.parameters(), model.parameters()):
            pe.mul_(d).add_(p.detach(), alpha=1 - d)
        for be, b in zip(self.model.buffers(), model.buffers()):
            be.copy_(b)

    def state_dict(self) -> dict:
        """Weights and update count."""
        return {"model": self.model.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, sd: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.model.load_state_dict(sd["model"])
        self.updates = int(sd["updates"])
        self.decay = float(sd["decay"])


@dataclass
class TrainConfig:
    """Options of a training run (all recorded in ``metadata.json``).

    Attributes
    ----------
    out : str
        Checkpoint folder receiving the exported EMA model.
    state_dir : str or None
        Folder of the resumable training state (default ``<out>/training_state``).
    steps : int
        Total optimiser steps (a resumed run continues up to this number).
    batch_size : int
    seed : int
    lr : float
        Adam learning rate after a linear warm-up of ``warmup`` steps.
    warmup : int
    grad_clip : float
        Global gradient-norm clip (DDPM: 1.0); 0 disables.
    ema_decay : float
    min_snr_gamma : float or None
        γ of the Min-SNR weight; None = plain DSM (w_t = 1).
    pifs_reg : float
        μ_reg of Theorem 15 (0 = off).
    pifs_reg_batch : int
        Samples of the batch on which the regulariser is estimated.
    patch : int
        Patch side p for the regulariser's block partition (8 → M = 16 patches).
    hflip : bool
        Random horizontal flips.
    data : {"cifar10", "bundled"}
        The data set (``cifar10`` falls back to ``bundled`` with a note when missing).
    data_root : str or None
        Passed to :func:`pifs.data.load_cifar10` (default: ``$PIFS_DATA_DIR``, user cache).
    limit : int or None
        Use only the first ``limit`` training images.
    log_every, ckpt_every : int
    max_minutes : float or None
        Stop (and checkpoint) after this much wall time in this process.
    threads : int
        ``torch.set_num_threads``.
    model_overrides : dict
        Overrides of :data:`pifs.models.SMALL_UNET_CONFIG` (tests use a tiny net).
    """

    out: str = "checkpoints/cifar10-small"
    state_dir: str | None = None
    steps: int = 1000
    batch_size: int = 32
    seed: int = 0
    lr: float = 2e-4
    warmup: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    min_snr_gamma: float | None = None
    pifs_reg: float = 0.0
    pifs_reg_batch: int = 2
    patch: int = 8
    hflip: bool = True
    data: str = "cifar10"
    data_root: str | None = None
    limit: int | None = None
    log_every: int = 25
    ckpt_every: int = 500
    max_minutes: float | None = None
    threads: int = 1
    model_overrides: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ValueError for an out-of-range option (naming it)."""
        for name in ("steps", "batch_size", "log_every", "ckpt_every", "threads", "pifs_reg_batch", "patch"):
            v = getattr(self, name)
            if int(v) != v or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected > 0, got {self.lr!r}")
        if self.warmup < 0 or self.grad_clip < 0 or self.pifs_reg < 0:
            raise ValueError("warmup, grad_clip, pifs_reg: expected values >= 0")
        if self.min_snr_gamma is not None and not self.min_snr_gamma > 0:
            raise ValueError(f"min_snr_gamma: expected > 0 or None, got {self.min_snr_gamma!r}")
        if self.data not in ("cifar10", "bundled"):
            raise ValueError(f"data: expected 'cifar10' or 'bundled', got {self.data!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay: expected a value in [0, 1), got {self.ema_decay!r}")
        if 32 % self.patch:
            raise ValueError(f"patch: must divide the image side 32, got {self.patch}")


def images_sha256(images: np.ndarray) -> str:
    """SHA-256 of a uint8 image array (its shape, then its bytes in C order).

    Identifies the exact training set (and order) of a checkpoint.
    """
    a = np.ascontiguousarray(images)
    if a.dtype != np.uint8:
        raise TypeError(f"images: expected uint8, got {a.dtype}")
    h = hashlib.sha256(repr(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def load_training_images(data: str = "cifar10", root=None, limit=None, seed: int = 0):
    """The training images (uint8, (N, 3, 32, 32)) and a description of where they came from.

    ``data="cifar10"`` reads the CIFAR-10 training batches via :func:`pifs.data.load_cifar10`
    (no download); when they are missing it prints a note and falls back to
    :func:`pifs.data.bundled_images` (5,000 crops).

    Returns
    -------
    images : numpy.ndarray, uint8, (N, 3, 32, 32)
    description : dict
        ``name``, ``n_images``, ``sha256``, ``source`` and ``note``.
    """
    from pifs import data as pdata

    note = ""
    if data == "cifar10":
        try:
            x, _ = pdata.load_cifar10(root, train=True, download=False, limit=limit)
            folder = pdata.find_cifar10(root)
            desc = {"name": "CIFAR-10 training batches (Krizhevsky 2009)"
                            + (" (a subset of the 50,000 images)" if x.shape[0] < 50000 else ""),
                    "source": str(folder)}
        except pdata.DatasetNotFoundError as exc:
            note = f"CIFAR-10 not found ({str(exc).splitlines()[0]}); falling back to bundled scikit-image crops"
            print("NOTE:", note, file=sys.stderr)
            data = "bundled"
    if data == "bundled":
        x = pdata.bundled_images(n=5000 if limit is None else int(limit), seed=seed)
        desc = {"name": "bundled scikit-image photograph crops (pifs.data.bundled_images)", "source": "skimage.data"}
    desc.update(n_images=int(x.shape[0]), sha256=images_sha256(x), note=note)
    return x, desc


def dsm_loss(model, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor,
             min_snr_gamma: float | None = None):
    """Denoising score matching loss (ε-prediction), optionally Min-SNR-γ weighted.

    Parameters
    ----------
    model : callable
        ``model(x, t) -> eps_hat`` with t training indices 1..T (:class:`pifs.scores.DiffusersScore`).
    x0 : torch.Tensor, (B, C, H, W), float32 in [−1, 1]
    t : torch.Tensor, (B,), long, in 1..T
    noise : torch.Tensor, like ``x0``, standard normal
    alpha_bar : torch.Tensor, (T+1,), ``alpha_bar[0] = 1``
    min_snr_gamma : float or None

    Returns
    -------
    loss : torch.Tensor, scalar — mean over the batch of w_t · mean-squared ε error
    mse : torch.Tensor, (B,) — unweighted per-sample mean-squared ε error (detached)
    """
    a = alpha_bar.to(x0.dtype)[t].view(-1, 1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    err = (model(xt, t) - noise).pow(2).flatten(1).mean(1)
    if min_snr_gamma is not None:
        ab = alpha_bar[t].double()
        w = min_snr_weight(ab / (1 - ab), float(min_snr_gamma)).to(err.dtype)
        loss = (w * err).mean()
    else:
        loss = err.mean()
    return loss, err.detach()


def _command_line() -> str:
    """The command that started this process (``python -m pifs.models ...`` when so)."""
    if not sys.argv or not sys.argv[0]:
        return ""
    head = "python -m pifs.models" if sys.argv[0].endswith(("pifs/models.py", "pifs\\models.py", "pifs/cli.py", "pifs\\cli.py")) else sys.argv[0]
    return " ".join([head] + [shlex.quote(a) for a in sys.argv[1:]])


_LOG_FIELDS = ["step", "loss", "mse", "reg", "lr", "wall_s"]


class Trainer:
    """Seeded, resumable DSM training loop (see the module docstring).

    Parameters
    ----------
    cfg : TrainConfig
    images : numpy.ndarray, uint8 (N, 3, H, W), optional
        Training images; default :func:`load_training_images` from ``cfg``.
    data_description : dict, optional
        Required with ``images``.
    progress : bool
        tqdm progress bar.
    """

    def __init__(self, cfg: TrainConfig, images=None, data_description=None, progress: bool = True):
        cfg.validate()
        self.cfg = cfg
        self.progress = progress
        torch.set_num_threads(int(cfg.threads))
        if images is None:
            images, data_description = load_training_images(cfg.data, cfg.data_root, cfg.limit, cfg.seed)
        elif data_description is None:
            data_description = {"name": "images passed by the caller", "n_images": int(images.shape[0]),
                                "sha256": images_sha256(np.asarray(images))}
        from pifs.data import to_model_scale

        self.x = torch.from_numpy(to_model_scale(np.asarray(images)))
        self.data_description = data_description
        self.alpha_bar = torch.from_numpy(models.ddpm_alpha_bar())
        self.unet = models.build_small_unet(seed=cfg.seed, **cfg.model_overrides).train()
        # forward-mode AD (the PIFS regulariser's JVPs) needs the explicit attention processor
        self.model = DiffusersScore(self.unet, models.ddpm_alpha_bar(), forward_ad=cfg.pifs_reg > 0)
        self.ema = EMA(self.unet, cfg.ema_decay)
        self.opt = torch.optim.Adam(self.unet.parameters(), lr=cfg.lr)
        self.gen = torch.Generator().manual_seed(int(cfg.seed))
        self.step = 0
        self.epoch = 0
        self.perm = torch.randperm(self.x.shape[0], generator=self.gen)
        self.pos = 0
        self.log: list[dict] = []
        self.wall_prev = 0.0  # wall seconds of earlier processes (resume)
        self._t0 = time.perf_counter()
        self._acc = {"loss": 0.0, "mse": 0.0, "reg": 0.0, "n": 0}
        self._stop = False
        self.out = Path(cfg.out)
        self.state_dir = Path(cfg.state_dir) if cfg.state_dir else self.out / "training_state"

    # -- state
    def wall(self) -> float:
        """Total training wall time in seconds (all processes of a resumed run)."""
        return self.wall_prev + time.perf_counter() - self._t0

    def state_dict(self) -> dict:
        """Everything needed to resume bit-identically (CPU)."""
        return {
            "unet": self.unet.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
            "gen": self.gen.get_state(), "step": self.step, "epoch": self.epoch, "perm": self.perm,
            "pos": self.pos, "log": json.dumps(self.log), "wall": self.wall(),
            "config": json.dumps(asdict(self.cfg)), "data_sha256": self.data_description["sha256"],
        }

    def save_state(self) -> Path:
        """Write the state to ``<state_dir>/state.pt`` atomically."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / "state.pt"
        tmp = path.with_name("state.pt.tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)
        return path

    def load_state(self) -> None:
        """Resume from ``<state_dir>/state.pt``.

        Raises
        ------
        FileNotFoundError
            If there is no saved state.
        ValueError
            If the saved run used other data, seed, batch size or model.
        """
        path = self.state_dir / "state.pt"
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no training state at {path}")
        sd = torch.load(path, map_location="cpu", weights_only=True)
        old = json.loads(sd["config"])
        for k in ("seed", "batch_size", "model_overrides", "hflip", "min_snr_gamma", "pifs_reg"):
            if json.loads(json.dumps(old.get(k))) != json.loads(json.dumps(asdict(self.cfg).get(k))):
                raise ValueError(f"--resume: option {k} differs from the saved run ({old.get(k)!r} vs "
                                 f"{asdict(self.cfg).get(k)!r})")
        if sd["data_sha256"] != self.data_description["sha256"]:
            raise ValueError("--resume: the training images differ from the saved run (sha256 mismatch)")
        self.unet.load_state_dict(sd["unet"])
        self.ema.load_state_dict(sd["ema"])
        self.opt.load_state_dict(sd["opt"])
        self.gen.set_state(sd["gen"])
        self.step, self.epoch, self.pos = int(sd["step"]), int(sd["epoch"]), int(sd["pos"])
        self.perm = sd["perm"]
        self.log = json.loads(sd["log"])
        self.wall_prev = float(sd["wall"])
        self._t0 = time.perf_counter()

    # -- one step
    def next_batch(self) -> torch.Tensor:
        """The next batch of training images (epoch-wise random order, optional flips)."""
        B = self.cfg.batch_size
        n = self.x.shape[0]
        chunks, need = [], B
        while need > 0:
            if self.pos >= n:
                self.epoch += 1
                self.perm = torch.randperm(n, generator=self.gen)
                self.pos = 0
            take = min(need, n - self.pos)
            chunks.append(self.perm[self.pos: self.pos + take])
            self.pos += take
            need -= take
        idx = [torch.cat(chunks)]
        x0 = self.x[idx[0]]
        if self.cfg.hflip:
            flip = torch.rand(B, generator=self.gen) < 0.5
            x0 = torch.where(flip.view(-1, 1, 1, 1), x0.flip(-1), x0)
        return x0

    def lr_at(self, step: int) -> float:
        """Learning rate at optimiser step ``step`` (1-based): linear warm-up, then constant."""
        w = self.cfg.warmup
        return self.cfg.lr * (min(1.0, step / w) if w > 0 else 1.0)

    def train_step(self) -> dict:
        """One optimiser step; returns ``{"loss", "mse", "reg"}`` of this batch."""
        cfg = self.cfg
        x0 = self.next_batch()
        T = self.alpha_bar.numel() - 1
        t = torch.randint(1, T + 1, (x0.shape[0],), generator=self.gen)
        noise = torch.randn(x0.shape, generator=self.gen)
        loss, mse = dsm_loss(self.model, x0, t, noise, self.alpha_bar, cfg.min_snr_gamma)
        reg = torch.zeros(())
        if cfg.pifs_reg > 0:
            from pifs.jacobian import collage_regulariser  # another module; imported on use

            rb = min(cfg.pifs_reg_batch, x0.shape[0])
            a = self.alpha_bar.float()[t[:rb]].view(-1, 1, 1, 1)
            xt = a.sqrt() * x0[:rb] + (1 - a).sqrt() * noise[:rb]
            tr = t[:rb]
            from pifs.patches import patch_indices

            idx = patch_indices(tuple(x0.shape[1:]), cfg.patch)
            # collage_regulariser evaluates f on stacked copies of xt: repeat the timesteps to match.
            reg = collage_regulariser(lambda z: self.model(z, tr.repeat(z.shape[0] // rb)), xt, idx,
                                      n_probes=1, generator=self.gen)
            loss = loss + cfg.pifs_reg * reg
        self.step += 1
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.unet.parameters(), cfg.grad_clip)
        self.opt.step()
        self.ema.update(self.unet)
        return {"loss": float(loss.detach()), "mse": float(mse.mean()), "reg": float(reg.detach())}

    # -- export
    def metadata(self) -> dict:
        """The ``metadata.json`` of the exported checkpoint."""
        import diffusers

        tail = [r["loss"] for r in self.log[-8:]]
        tail_mse = [r["mse"] for r in self.log[-8:]]
        return {
            "description": "pifs-book small CIFAR-10 DDPM (diffusers UNet2DModel, epsilon-prediction); "
                           "weights are the EMA weights",
            "weights": "ema",
            "steps": self.step,
            "epochs": self.step * self.cfg.batch_size / self.x.shape[0],
            "wall_time_s": round(self.wall(), 1),
            "final_loss": float(np.mean(tail)) if tail else None,
            "final_mse": float(np.mean(tail_mse)) if tail_mse else None,
            "final_loss_note": f"mean of the last {len(tail)} logged values (each a mean over "
                               f"{self.cfg.log_every} batches)",
            "data": self.data_description,
            "schedule": {"type": "linear beta", "T": models.T_TRAIN, "beta_start": models.BETA_START,
                         "beta_end": models.BETA_END, "prediction": "epsilon",
                         "timestep_convention": "diffusers tau = t - 1, t = 1..T"},
            "options": asdict(self.cfg),
            "n_parameters": sum(p.numel() for p in self.unet.parameters()),
            "loss_curve": [[r["step"], r["loss"]] for r in self.log],
            "command": _command_line(),
            "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                         "python": platform.python_version()},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def write_log(self) -> None:
        """Write ``<out>/train_log.csv`` (step, loss, mse, reg, lr, wall_s) atomically."""
        self.out.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=_LOG_FIELDS)
        w.writeheader()
        for r in self.log:
            w.writerow({k: r[k] for k in _LOG_FIELDS})
        models._atomic_write_text(self.out / "train_log.csv", buf.getvalue())

    def checkpoint(self) -> None:
        """Save the resumable state, export the EMA model, metadata and log."""
        self.save_state()
        models.save_checkpoint(self.out, self.ema.model, metadata=self.metadata())
        self.write_log()

    # -- loop
    def run(self) -> "Trainer":
        """Train up to ``cfg.steps`` steps (or ``max_minutes``, or SIGTERM/SIGINT), checkpointing."""
        cfg = self.cfg
        start_wall = time.perf_counter()
        old_handlers = {}

        def stop(signum, frame):
            self._stop = True

        if hasattr(signal, "SIGTERM"):
            try:
                for s in (signal.SIGTERM, signal.SIGINT):
                    old_handlers[s] = signal.signal(s, stop)
            except ValueError:  # not in the main thread
                old_handlers = {}
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, desc="DSM", mininterval=10, smoothing=0.05)
        try:
            while self.step < cfg.steps and not self._stop:
                r = self.train_step()
                for k in ("loss", "mse", "reg"):
                    self._acc[k] += r[k]
                self._acc["n"] += 1
                if bar is not None:
                    bar.update(1)
                    if self.step % cfg.log_every == 0:
                        bar.set_postfix(loss=f"{r['loss']:.4f}")
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    n = self._acc["n"]
                    self.log.append({"step": self.step, "loss": round(self._acc["loss"] / n, 6),
                                     "mse": round(self._acc["mse"] / n, 6), "reg": round(self._acc["reg"] / n, 6),
                                     "lr": self.lr_at(self.step), "wall_s": round(self.wall(), 1)})
                    self._acc = {"loss": 0.0, "mse": 0.0, "reg": 0.0, "n": 0}
                if self.step % cfg.ckpt_every == 0:
                    self.checkpoint()
                if cfg.max_minutes is not None and time.perf_counter() - start_wall > 60 * cfg.max_minutes:
                    print(f"max_minutes={cfg.max_minutes} reached at step {self.step}", file=sys.stderr)
                    break
            self.checkpoint()
        finally:
            if bar is not None:
                bar.close()
            for s, h in old_handlers.items():
                signal.signal(s, h)
        return self


def train(cfg: TrainConfig, resume: bool = False, images=None, data_description=None, progress: bool = True) -> Trainer:
    """Train (or resume) and return the :class:`Trainer` (its ``.ema.model`` is the result).

    Parameters
    ----------
    cfg : TrainConfig
    resume : bool
        Continue from ``<state_dir>/state.pt`` up to ``cfg.steps``.
    images, data_description, progress
        See :class:`Trainer`.
    """
    tr = Trainer(cfg, images=images, data_description=data_description, progress=progress)
    if resume:
        tr.load_state()
    return tr.run()


# --------------------------------------------------------------------------- finalize


def _readme(meta: dict, out: Path, sample_cmd: str | None) -> str:
    d = meta["data"]
    o = meta["options"]
    lines = [
        f"# {out.name}: the project's small CIFAR-10 diffusion model",
        "",
        "A diffusers `UNet2DModel` (ε-prediction) trained by denoising score matching with",
        "`pifs.training` on the linear β schedule of google/ddpm-cifar10-32 (T = 1000, β 1e-4 → 0.02).",
        f"Architecture: `pifs.models.SMALL_UNET_CONFIG` ({meta['n_parameters']:,} parameters; self-attention",
        "at 16×16 and in the 8×8 mid block, one head). The weights here are the **EMA** weights",
        f"(decay {o['ema_decay']}). Load with `pifs.models.load_pretrained('{out.name}')` or",
        f"`diffusers.UNet2DModel.from_pretrained('{out}')`; the UNet takes diffusers' timestep τ = t − 1.",
        "",
        "| | |",
        "|---|---|",
        f"| data | {d['name']}: {d['n_images']:,} images, random horizontal flips |",
        f"| data sha256 | `{d['sha256']}` (uint8 array (N, 3, 32, 32), `pifs.training.images_sha256`) |",
        f"| steps | {meta['steps']:,} (batch {o['batch_size']}, {meta['epochs']:.1f} epochs) |",
        f"| optimiser | Adam, lr {o['lr']:g} (linear warm-up {o['warmup']} steps), grad-norm clip {o['grad_clip']} |",
        f"| loss weighting | {'Min-SNR-γ, γ = %g' % o['min_snr_gamma'] if o['min_snr_gamma'] else 'none (plain DSM)'}"
        f"; PIFS regulariser μ = {o['pifs_reg']} |",
        f"| final loss | {meta['final_loss']:.4f} ({meta['final_loss_note']}) |",
        f"| wall time | {meta['wall_time_s'] / 60:.1f} min on {o['threads']} CPU thread(s) |",
        f"| seed | {o['seed']} |",
        "",
        "Training command (resumable with `--resume`):",
        "",
        "```",
        meta.get("command") or "(not recorded)",
        "```",
        "",
        "Files: `config.json` + `diffusion_pytorch_model.safetensors` (UNet, EMA weights),",
        "`scheduler_config.json` (DDPMScheduler), `metadata.json` (all options, data hash, loss curve),",
        "`train_log.csv` (step, loss = mean weighted DSM loss over the last log interval, mse = unweighted,",
        "reg, lr, wall_s).",
    ]
    if sample_cmd:
        lines += ["", "`samples.png`: 16 samples, 50-step DDIM (η = 0, the paper's eq. (4), no clipping) from the EMA "
                  "weights, made with", "", f"```\n{sample_cmd}\n```"]
    return "\n".join(lines) + "\n"


def finalize(out, state_dir=None, samples: bool = True, delete_state: bool = False, notes: str = "") -> Path:
    """Finish a checkpoint folder: EMA export from the latest state, README, samples.

    Parameters
    ----------
    out : path-like
        The checkpoint folder.
    state_dir : path-like, optional
        Default ``<out>/training_state``. When it holds a state, the EMA weights,
        metadata and log are re-exported from it.
    samples : bool
        Write ``samples.png`` (16 samples, 50-step DDIM, seed 0).
    delete_state : bool
        Remove ``state.pt`` (and the state folder when empty) afterwards.
    notes : str
        Extra markdown appended to the README (e.g. what the samples look like).

    Returns
    -------
    pathlib.Path
        ``<out>/README.md``.
    """
    out = Path(out)
    sdir = Path(state_dir) if state_dir else out / "training_state"
    st = sdir / "state.pt"
    if st.is_file():
        sd = torch.load(st, map_location="cpu", weights_only=True)
        cfg = TrainConfig(**json.loads(sd["config"]))
        meta_old = json.loads((out / "metadata.json").read_text()) if (out / "metadata.json").is_file() else {}
        images, desc = load_training_images(cfg.data, cfg.data_root, cfg.limit, cfg.seed)
        tr = Trainer(cfg, images=images, data_description=desc, progress=False)
        tr.load_state()
        tr.wall_prev, tr._t0 = float(sd["wall"]), time.perf_counter()
        meta = tr.metadata()
        meta["wall_time_s"] = round(float(sd["wall"]), 1)
        meta["command"] = meta_old.get("command", "")
        models.save_checkpoint(out, tr.ema.model, metadata=meta)
        tr.write_log()
    meta = json.loads((out / "metadata.json").read_text())
    sample_cmd = None
    if samples:
        sample_cmd = f"python -m pifs.models sample --checkpoint {out} --n 16 --steps 50 --seed 0 --scale 3 --out {out}/samples.png"
        pre = models.load_checkpoint(out)
        g = torch.Generator().manual_seed(0)
        x_T = torch.randn((16, 3, 32, 32), generator=g)
        ts = ddim_timesteps(50)
        x0 = models.ddim_sample(pre.model, x_T, pre.alpha_bar, ts)
        models.save_image_grid(x0, out / "samples.png", nrow=4, scale=3)
        outside = float((x0.abs() > 1).float().mean())
        xc = models.ddim_sample(pre.model, x_T, pre.alpha_bar, ts, clip_x0=True)
        models.save_image_grid(xc, out / "samples_clip.png", nrow=4, scale=3)
        sample_cmd += (f"\n```\n\n{outside:.0%} of the values of these unclipped samples lie outside [−1, 1] "
                       f"(range [{float(x0.min()):.2f}, {float(x0.max()):.2f}]; clamped for display). "
                       "`samples_clip.png`: the same noise with x̂_0 clamped to [−1, 1] at every step "
                       "(diffusers' `DDIMScheduler` default), made with\n\n```\n"
                       + sample_cmd.replace("samples.png", "samples_clip.png") + " --clip-x0")
    text = _readme(meta, out, sample_cmd) + (("\n" + notes.strip() + "\n") if notes else "")
    models._atomic_write_text(out / "README.md", text)
    if delete_state and st.is_file():
        st.unlink()
        if sdir.is_dir() and not any(sdir.iterdir()):
            sdir.rmdir()
    return out / "README.md"


# --------------------------------------------------------------------------- CLI glue


def add_train_arguments(p) -> None:
    """Arguments of ``python -m pifs.models train``."""
    d = TrainConfig()
    p.add_argument("--out", default=d.out, help="checkpoint folder (EMA export, metadata, log)")
    p.add_argument("--state-dir", default=None, help="resumable state folder (default OUT/training_state)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--grad-clip", type=float, default=d.grad_clip)
    p.add_argument("--ema-decay", type=float, default=d.ema_decay)
    p.add_argument("--min-snr-gamma", type=float, default=None, help="Min-SNR-γ weighting (e.g. 5)")
    p.add_argument("--pifs-reg", type=float, default=0.0, help="μ_reg of the PIFS collage regulariser (Thm 15)")
    p.add_argument("--pifs-reg-batch", type=int, default=d.pifs_reg_batch)
    p.add_argument("--no-hflip", action="store_true")
    p.add_argument("--data", choices=("cifar10", "bundled"), default=d.data)
    p.add_argument("--data-root", default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")


def train_from_args(a) -> Trainer:
    """Run ``train`` from parsed arguments."""
    cfg = TrainConfig(out=a.out, state_dir=a.state_dir, steps=a.steps, batch_size=a.batch_size, seed=a.seed,
                      lr=a.lr, warmup=a.warmup, grad_clip=a.grad_clip, ema_decay=a.ema_decay,
                      min_snr_gamma=a.min_snr_gamma, pifs_reg=a.pifs_reg, pifs_reg_batch=a.pifs_reg_batch,
                      hflip=not a.no_hflip, data=a.data, data_root=a.data_root, limit=a.limit,
                      log_every=a.log_every, ckpt_every=a.ckpt_every, max_minutes=a.max_minutes, threads=a.threads)
    tr = train(cfg, resume=a.resume, progress=not a.no_progress)
    print(f"trained to step {tr.step}; EMA checkpoint in {cfg.out}")
    return tr


def add_finalize_arguments(p) -> None:
    """Arguments of ``python -m pifs.models finalize``."""
    p.add_argument("--out", required=True)
    p.add_argument("--state-dir", default=None)
    p.add_argument("--no-samples", action="store_true")
    p.add_argument("--delete-state", action="store_true")
    p.add_argument("--notes", default="", help="markdown appended to the README")
    p.add_argument("--threads", type=int, default=1)


def finalize_from_args(a) -> None:
    """Run ``finalize`` from parsed arguments."""
    torch.set_num_threads(a.threads)
    path = finalize(a.out, a.state_dir, samples=not a.no_samples, delete_state=a.delete_state, notes=a.notes)
    print(f"wrote {path}")
