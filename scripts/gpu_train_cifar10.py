#!/usr/bin/env python
"""Train a UNet of the DDPM CIFAR-10 family on a GPU for a fixed wall-time budget (issue 11).

The network is a diffusers ``UNet2DModel`` laid out like google/ddpm-cifar10-32 (Ho et al. 2020):
four resolutions 32 → 16 → 8 → 4, channels (C, 2C, 2C, 2C), two ResNet layers per block,
self-attention (one head) at 16×16 and in the 4×4 mid block, google's time embedding
(``flip_sin_to_cos=False``, ``freq_shift=1``) and ``norm_eps=1e-6``; only the width C (and the
GroupNorm group count, C/4) is smaller. It predicts ε, on the linear β schedule of
google/ddpm-cifar10-32 (β 1e-4 → 0.02, T = 1000; :func:`pifs.models.ddpm_alpha_bar`).

Training: the CIFAR-10 training images found by :func:`pifs.data.load_cifar10`
(``--data-root`` or ``$PIFS_DATA_DIR``; no download, no fallback), held on the GPU, random
horizontal flips, plain DSM loss (Ho et al. 2020, eq. 14; the formula of
:func:`pifs.training.dsm_loss`), Adam with linear warm-up, grad-norm clipping, EMA of the
weights (the warm-up rule of :class:`pifs.training.EMA`), bf16 autocast (``--precision``).
It runs for ``--minutes`` of wall time and, every ``--ckpt-minutes``, writes into ``--out``:

* ``config.json`` + ``diffusion_pytorch_model.safetensors`` (EMA weights, ``save_pretrained``;
  stored in fp16 when fp32 would exceed 16 MiB) + ``scheduler_config.json``,
* ``metadata.json`` (as ``checkpoints/cifar10-small/metadata.json``, plus device, steps/s,
  precision, config and, at the end, the held-out DSM loss),
* ``train_log.csv`` (step, loss, mse, lr, wall_s, steps_per_s),

so a run killed at its time limit still leaves its latest weights.

Held-out DSM loss (``heldout_dsm_loss``): the mean over the CIFAR-10 test images found (1,017 in
the project's subset) and over the 10 fixed training indices t = 50, 150, …, 950 of the per-pixel
squared ε error, with fixed noise (one CPU ``torch.Generator`` seeded 20261202, one
(N, 3, 32, 32) float32 draw per t in increasing t), evaluated in float32 from the weights as
saved. ``--eval-only FOLDER`` computes it for any checkpoint (e.g. ``checkpoints/cifar10-small``).

Usage::

    # on the GPU machine (see scripts/README_gpu.md and scripts/device_issue11.sh)
    python3 scripts/gpu_train_cifar10.py --out $OUT/ckpt --minutes 7 --candidate ddpm-c32
    # CPU, tiny end-to-end test
    python scripts/gpu_train_cifar10.py --out /tmp/t --minutes 0.2 --candidate tiny --precision fp32 \
        --batch-size 8 --ckpt-minutes 0.05 --heldout-limit 16
    # held-out DSM loss of an existing checkpoint
    python scripts/gpu_train_cifar10.py --eval-only checkpoints/cifar10-small
    # CPU cost of the candidate sizes (one thread)
    python scripts/gpu_train_cifar10.py --cpu-cost
"""
from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

#: The layout of google/ddpm-cifar10-32 (its published config.json), without the widths.
DDPM_CIFAR10_LAYOUT = dict(
    sample_size=32,
    in_channels=3,
    out_channels=3,
    layers_per_block=2,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=None,
    add_attention=True,
    downsample_padding=0,
    flip_sin_to_cos=False,
    freq_shift=1,
    norm_eps=1e-6,
    act_fn="silu",
    mid_block_scale_factor=1,
    time_embedding_type="positional",
    center_input_sample=False,
)


def family_config(width: int, groups: int | None = None, dropout: float = 0.1, layers: int = 2) -> dict:
    """``UNet2DModel`` keywords of a DDPM-CIFAR-10-family net of base width ``width``.

    block_out_channels (C, 2C, 2C, 2C); GroupNorm with ``groups`` groups (default C/4, so 4
    channels per group at the first level, as google's 128/32).
    """
    groups = groups or max(1, width // 4)
    cfg = dict(DDPM_CIFAR10_LAYOUT)
    cfg.update(block_out_channels=(width, 2 * width, 2 * width, 2 * width), norm_num_groups=groups,
               dropout=float(dropout), layers_per_block=int(layers))
    return cfg


#: Candidate sizes. ``google`` is google/ddpm-cifar10-32's exact configuration (35.7 M, for reference).
CANDIDATES = {
    "ddpm-c32": family_config(32),   # 2.25 M parameters, 9.0 MB fp32
    "ddpm-c48": family_config(48),   # 5.04 M parameters, 10.1 MB fp16
    "ddpm-c64": family_config(64),   # 8.95 M parameters, 17.9 MB fp16 (over 16 MiB: not shippable unsharded)
    "tiny": family_config(8, groups=4, layers=1),  # tests
    "google": family_config(128, groups=32, dropout=0.1),
}

MiB = 1024 * 1024
MAX_FILE = 16 * MiB
HELDOUT_T = tuple(range(50, 1000, 100))
HELDOUT_SEED = 20261202


def build_unet(cfg: dict, seed: int = 0):
    """A randomly initialised ``UNet2DModel`` of ``cfg`` (seeded, global RNG untouched)."""
    from diffusers import UNet2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return UNet2DModel(**cfg)


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def weights_dtype(n: int, choice: str = "auto") -> torch.dtype:
    """fp32 when the weights file fits 16 MiB (with 0.25 MiB for the header), else fp16."""
    if choice == "fp32":
        return torch.float32
    if choice == "fp16":
        return torch.float16
    return torch.float32 if 4 * n <= MAX_FILE - MiB // 4 else torch.float16


# --------------------------------------------------------------------------- held-out loss


@torch.no_grad()
def heldout_dsm_loss(unet, images_uint8, device="cpu", batch: int = 256, ts=HELDOUT_T, seed: int = HELDOUT_SEED,
                     log=None) -> dict:
    """Held-out DSM loss of an ε-prediction UNet (diffusers timestep τ = t − 1), float32.

    For each t of ``ts`` (in order) one standard normal draw ε of shape (N, 3, 32, 32) from a CPU
    generator seeded ``seed``; x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε computed on the CPU in float32;
    the loss at t is the mean over images of mean-over-pixels (ε̂(x_t, t) − ε)².

    Returns
    -------
    dict with ``loss`` (mean over t), ``per_t`` ({t: loss}), ``n_images``, ``timesteps``, ``seed``
    and ``spec`` (a sentence saying how it was computed).
    """
    from pifs.data import to_model_scale
    from pifs.models import ddpm_alpha_bar

    x0 = torch.from_numpy(to_model_scale(np.asarray(images_uint8))).float()
    N = x0.shape[0]
    ab = ddpm_alpha_bar()
    g = torch.Generator().manual_seed(int(seed))
    was_training = unet.training
    unet.eval()
    dev = torch.device(device)
    p0 = next(unet.parameters())
    per_t = {}
    try:
        for t in ts:
            noise = torch.randn(x0.shape, generator=g, dtype=torch.float32)
            a = float(ab[int(t)])
            xt = math.sqrt(a) * x0 + math.sqrt(1.0 - a) * noise
            sse = 0.0
            for s in range(0, N, batch):
                xb = xt[s:s + batch].to(dev, p0.dtype)
                tau = torch.full((xb.shape[0],), int(t) - 1, device=dev, dtype=torch.long)
                eps = unet(xb, tau).sample.float().cpu()
                sse += float((eps - noise[s:s + batch]).pow(2).flatten(1).mean(1).double().sum())
            per_t[int(t)] = sse / N
            if log:
                log(f"  held-out t = {t}: {per_t[int(t)]:.6f}")
    finally:
        unet.train(was_training)
    return {"loss": float(np.mean(list(per_t.values()))), "per_t": per_t, "n_images": int(N),
            "timesteps": [int(t) for t in ts], "seed": int(seed),
            "spec": ("mean over the CIFAR-10 test images and over t in timesteps of the per-pixel mean squared "
                     "epsilon error; fixed noise: torch.Generator(CPU).manual_seed(seed), one float32 "
                     "randn((N, 3, 32, 32)) per t in increasing t; x_t formed on the CPU in float32; "
                     "model in float32 (weights as saved), diffusers timestep tau = t - 1; "
                     "scripts/gpu_train_cifar10.py heldout_dsm_loss")}


def load_test_images(data_root=None, limit=None):
    from pifs import data as pdata

    x, _ = pdata.load_cifar10(data_root, train=False, download=False, limit=limit)
    return x


# --------------------------------------------------------------------------- EMA


class FastEMA:
    """EMA of the parameters with :class:`pifs.training.EMA`'s warm-up d = min(decay, (1+n)/(10+n)),
    updated with fused foreach kernels (one launch per step instead of one per tensor)."""

    def __init__(self, model, decay: float):
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0
        self._pe = [p for p in self.model.parameters()]

    @torch.no_grad()
    def update(self, model) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self._pe, [p.detach() for p in model.parameters()], 1.0 - d)
        for be, b in zip(self.model.buffers(), model.buffers()):
            be.copy_(b)


# --------------------------------------------------------------------------- training


def _device_info(dev: torch.device) -> dict:
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        return {"type": "cuda", "name": torch.cuda.get_device_name(dev), "capability": f"{p.major}.{p.minor}",
                "memory_gib": round(p.total_memory / 2**30, 1), "multiprocessors": p.multi_processor_count,
                "cuda": torch.version.cuda}
    return {"type": "cpu", "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}


def _command_line() -> str:
    return " ".join(["python", "scripts/gpu_train_cifar10.py"] + [shlex.quote(a) for a in sys.argv[1:]])


def _meta_text(meta: dict) -> str:
    """metadata.json text, formatted as :func:`pifs.models.save_checkpoint` does."""
    import re

    from pifs.models import _json_default

    text = json.dumps(meta, indent=1, default=_json_default)
    return re.sub(r"\[\s+(-?[\d.e+-]+),\s+(-?[\d.e+-]+|null)\s+\]", r"[\1, \2]", text)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


LOG_FIELDS = ["step", "loss", "mse", "lr", "wall_s", "steps_per_s"]


class Run:
    """State of one training run (see the module docstring)."""

    def __init__(self, a):
        from pifs import models, training
        from pifs.data import to_model_scale

        self.a = a
        self.t_start = time.perf_counter()
        self.dev = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.dev.type == "cpu":
            torch.set_num_threads(int(a.threads))
        else:
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(a.seed)
        images, desc = training.load_training_images("cifar10", a.data_root, a.limit, a.seed)
        if desc.get("note"):
            raise SystemExit(f"CIFAR-10 training images not found ({desc['note']}): pass --data-root or set "
                             "PIFS_DATA_DIR (no fallback to other data here)")
        self.data_description = desc
        self.x = torch.from_numpy(to_model_scale(images)).to(self.dev)
        self.N = self.x.shape[0]
        self.cfg = dict(CANDIDATES[a.candidate])
        if a.dropout is not None:
            self.cfg["dropout"] = float(a.dropout)
        self.unet = build_unet(self.cfg, a.seed).to(self.dev).train()
        self.n = n_params(self.unet)
        self.wdtype = weights_dtype(self.n, a.weights_dtype)
        size = self.n * (4 if self.wdtype == torch.float32 else 2)
        if size > MAX_FILE - MiB // 4:
            raise SystemExit(f"{a.candidate}: {self.n:,} parameters = {size / MiB:.1f} MiB in {self.wdtype}: "
                             "over the 16 MiB a returned file may have")
        self.ema = FastEMA(self.unet, a.ema_decay)
        kw = {"fused": True} if self.dev.type == "cuda" else {}
        self.opt = torch.optim.Adam(self.unet.parameters(), lr=a.lr, **kw)
        self.ab = torch.as_tensor(models.ddpm_alpha_bar(), dtype=torch.float32, device=self.dev)
        self.T = self.ab.numel() - 1
        self.gen = torch.Generator(device=self.dev).manual_seed(int(a.seed))
        self.autocast = a.precision == "bf16"
        self.step = 0
        self.log: list[dict] = []
        self.out = Path(a.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.train_seconds = 0.0
        self.heldout = None
        self.setup_s = time.perf_counter() - self.t_start
        print(f"{a.candidate}: {self.n:,} parameters; {self.N:,} training images on {self.dev} "
              f"({_device_info(self.dev)['name']}); precision {a.precision}; weights stored as {self.wdtype}; "
              f"setup {self.setup_s:.1f} s", flush=True)

    def lr_at(self, step: int) -> float:
        w = self.a.warmup
        return self.a.lr * (min(1.0, step / w) if w > 0 else 1.0)

    def train_step(self):
        """One optimiser step; returns the batch loss as a device tensor (no host sync)."""
        a, B = self.a, self.a.batch_size
        idx = torch.randint(0, self.N, (B,), device=self.dev, generator=self.gen)
        x0 = self.x[idx]
        if not a.no_hflip:
            flip = torch.rand(B, device=self.dev, generator=self.gen) < 0.5
            x0 = torch.where(flip.view(-1, 1, 1, 1), x0.flip(-1), x0)
        t = torch.randint(1, self.T + 1, (B,), device=self.dev, generator=self.gen)
        noise = torch.randn(x0.shape, device=self.dev, generator=self.gen)
        ab = self.ab[t].view(-1, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        with torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.autocast):
            eps = self.unet(xt, t - 1).sample
        loss = (eps.float() - noise).pow(2).flatten(1).mean(1).mean()  # pifs.training.dsm_loss, w_t = 1
        self.step += 1
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.unet.parameters(), a.grad_clip, foreach=True)
        self.opt.step()
        self.ema.update(self.unet)
        return loss.detach()

    def metadata(self) -> dict:
        import diffusers

        from pifs import models

        a = self.a
        tail = [r["loss"] for r in self.log[-8:]]
        sps = self.step / self.train_seconds if self.train_seconds > 0 else None
        return {
            "description": f"pifs-book CIFAR-10 DDPM trained on a GPU ({a.candidate}: diffusers UNet2DModel of the "
                           "DDPM CIFAR-10 family, epsilon-prediction); weights are the EMA weights",
            "weights": "ema",
            "steps": self.step,
            "epochs": self.step * a.batch_size / self.N,
            "wall_time_s": round(self.train_seconds, 1),
            "final_loss": float(np.mean(tail)) if tail else None,
            "final_mse": float(np.mean(tail)) if tail else None,
            "final_loss_note": f"mean of the last {len(tail)} logged values (each a mean over {a.log_every} batches; "
                               f"bf16 autocast)" if self.autocast else f"mean of the last {len(tail)} logged values",
            "data": self.data_description,
            "schedule": {"type": "linear beta", "T": models.T_TRAIN, "beta_start": models.BETA_START,
                         "beta_end": models.BETA_END, "prediction": "epsilon",
                         "timestep_convention": "diffusers tau = t - 1, t = 1..T"},
            "options": vars(a),
            "candidate": a.candidate,
            "unet_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.cfg.items()},
            "n_parameters": self.n,
            "device": _device_info(self.dev),
            "steps_per_s": round(sps, 3) if sps else None,
            "precision": {"training": "bf16 autocast (fp32 master weights, fp32 loss)" if self.autocast else "fp32",
                          "tf32": self.dev.type == "cuda",
                          "weights_stored": str(self.wdtype).replace("torch.", ""),
                          "heldout_eval": "fp32"},
            "setup_s": round(self.setup_s, 1),
            "heldout_dsm_loss": self.heldout,
            "loss_curve": [[r["step"], r["loss"]] for r in self.log],
            "command": _command_line(),
            "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                         "python": platform.python_version()},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def checkpoint(self) -> None:
        from pifs import models

        t0 = time.perf_counter()
        m = copy.deepcopy(self.ema.model).to("cpu")
        if self.wdtype != torch.float32:
            torch.nn.Module.to(m, self.wdtype)  # (diffusers' own .to(dtype) only adds a warning here)
        models.save_checkpoint(self.out, m, metadata=self.metadata())
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=LOG_FIELDS)
        w.writeheader()
        for r in self.log:
            w.writerow({k: r[k] for k in LOG_FIELDS})
        _atomic_text(self.out / "train_log.csv", buf.getvalue())
        print(f"checkpoint at step {self.step} ({time.perf_counter() - t0:.1f} s)", flush=True)

    def run(self) -> "Run":
        a = self.a
        budget = 60.0 * a.minutes
        t0 = time.perf_counter()
        next_ckpt = t0 + 60.0 * a.ckpt_minutes
        acc, acc_n, last_t, last_step = None, 0, t0, 0
        while time.perf_counter() - t0 < budget and (a.steps is None or self.step < a.steps):
            loss = self.train_step()
            acc = loss if acc is None else acc + loss
            acc_n += 1
            if self.step % a.log_every == 0:
                now = time.perf_counter()
                mean = float(acc) / acc_n  # host sync once per log interval
                self.train_seconds = now - t0
                self.log.append({"step": self.step, "loss": round(mean, 6), "mse": round(mean, 6),
                                 "lr": self.lr_at(self.step), "wall_s": round(self.train_seconds, 1),
                                 "steps_per_s": round((self.step - last_step) / (now - last_t), 2)})
                if not math.isfinite(mean):
                    raise SystemExit(f"loss is {mean} at step {self.step}")
                acc, acc_n, last_t, last_step = None, 0, now, self.step
                if a.print_every and self.step % a.print_every == 0:
                    r = self.log[-1]
                    print(f"step {self.step}: loss {r['loss']:.4f}, {r['steps_per_s']:.1f} steps/s, "
                          f"{r['wall_s']:.0f} s", flush=True)
            if time.perf_counter() >= next_ckpt:
                if self.dev.type == "cuda":
                    torch.cuda.synchronize()
                self.train_seconds = time.perf_counter() - t0
                self.checkpoint()
                next_ckpt = time.perf_counter() + 60.0 * a.ckpt_minutes
        if self.dev.type == "cuda":
            torch.cuda.synchronize()
        self.train_seconds = time.perf_counter() - t0
        if acc_n:  # the last partial interval
            mean = float(acc) / acc_n
            self.log.append({"step": self.step, "loss": round(mean, 6), "mse": round(mean, 6),
                             "lr": self.lr_at(self.step), "wall_s": round(self.train_seconds, 1),
                             "steps_per_s": round((self.step - last_step) / max(1e-9, time.perf_counter() - last_t), 2)})
        print(f"trained {self.step} steps in {self.train_seconds:.1f} s "
              f"({self.step / self.train_seconds:.2f} steps/s)", flush=True)
        self.checkpoint()
        if a.heldout:
            self.evaluate()
        return self

    def evaluate(self) -> None:
        """Held-out DSM loss of the weights as saved (reloaded from ``--out``), then metadata again."""
        from pifs import models

        t0 = time.perf_counter()
        pre = models.load_checkpoint(self.out, device=self.dev)
        test = load_test_images(self.a.data_root, self.a.heldout_limit)
        self.heldout = heldout_dsm_loss(pre.unet, test, self.dev)
        self.heldout["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"held-out DSM loss ({self.heldout['n_images']} test images): {self.heldout['loss']:.6f} "
              f"({self.heldout['seconds']} s)", flush=True)
        _atomic_text(self.out / "metadata.json", _meta_text(self.metadata()))


# --------------------------------------------------------------------------- CPU cost of candidates


def cpu_cost(names, repeats: int = 3) -> list[dict]:
    """Forward (batch 1 and 8) and JVP (batch 1) times of each candidate on one CPU thread (best of ``repeats``)."""
    from pifs.models import SMALL_UNET_CONFIG
    from pifs.scores import DiffusersScore
    from pifs.models import ddpm_alpha_bar

    torch.set_num_threads(1)
    cfgs = {"small (cifar10-small)": dict(SMALL_UNET_CONFIG)}
    cfgs.update({n: CANDIDATES[n] for n in names})
    rows = []

    def tm(fn, r):  # the fastest of r calls after a warm-up: robust to other load on a shared machine
        fn()
        best = math.inf
        for _ in range(r):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best

    for name, cfg in cfgs.items():
        unet = build_unet(cfg, 0).eval().requires_grad_(False)
        n = n_params(unet)
        g = torch.Generator().manual_seed(0)
        x1, x8 = torch.randn(1, 3, 32, 32, generator=g), torch.randn(8, 3, 32, 32, generator=g)
        tau1, tau8 = torch.full((1,), 499), torch.full((8,), 499)
        with torch.no_grad():
            f1 = tm(lambda: unet(x1, tau1).sample, repeats)
            f8 = tm(lambda: unet(x8, tau8).sample, repeats)
        m = DiffusersScore(copy.deepcopy(unet), ddpm_alpha_bar())  # math attention: forward-mode AD
        u = torch.randn_like(x1)
        j1 = tm(lambda: torch.func.jvp(lambda z: m(z, 500), (x1,), (u,)), repeats)
        wd = weights_dtype(n)
        rows.append({"model": name, "params": n, "ship": f"{str(wd).replace('torch.', '')} "
                     f"{n * (4 if wd == torch.float32 else 2) / 1e6:.1f} MB",
                     "fwd_b1_ms": 1e3 * f1, "fwd_b8_ms": 1e3 * f8, "jvp_b1_ms": 1e3 * j1})
        r = rows[-1]
        r0 = rows[0]
        print(f"| {name} | {n:,} | {r['ship']} | {r['fwd_b1_ms']:.1f} | {r['fwd_b8_ms']:.1f} | "
              f"{r['jvp_b1_ms']:.1f} | {r['fwd_b1_ms'] / r0['fwd_b1_ms']:.2f}× / {r['fwd_b8_ms'] / r0['fwd_b8_ms']:.2f}× / "
              f"{r['jvp_b1_ms'] / r0['jvp_b1_ms']:.2f}× |", flush=True)
    return rows


# --------------------------------------------------------------------------- CLI


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="checkpoint folder (weights, metadata.json, train_log.csv)")
    ap.add_argument("--candidate", choices=sorted(CANDIDATES), default="ddpm-c32")
    ap.add_argument("--minutes", type=float, default=8.0, help="wall-time budget of the training loop")
    ap.add_argument("--steps", type=int, default=None, help="optional cap on optimiser steps")
    ap.add_argument("--ckpt-minutes", type=float, default=1.0, help="write checkpoint + log this often")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--ema-decay", type=float, default=0.9995)
    ap.add_argument("--dropout", type=float, default=None, help="override the candidate's dropout (0.1)")
    ap.add_argument("--no-hflip", action="store_true")
    ap.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    ap.add_argument("--weights-dtype", choices=("auto", "fp32", "fp16"), default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default=None, help="folder with cifar-10-batches-py (default $PIFS_DATA_DIR)")
    ap.add_argument("--limit", type=int, default=None, help="first LIMIT training images only (tests)")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--print-every", type=int, default=1000)
    ap.add_argument("--no-heldout", dest="heldout", action="store_false", help="skip the held-out DSM loss")
    ap.add_argument("--heldout-limit", type=int, default=None, help="first N test images only (tests)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch threads on a CPU")
    ap.add_argument("--eval-only", default=None, metavar="CHECKPOINT",
                    help="print (and with --write, store in its metadata.json) the held-out DSM loss of a checkpoint")
    ap.add_argument("--write", action="store_true", help="with --eval-only: add heldout_dsm_loss to metadata.json")
    ap.add_argument("--cpu-cost", nargs="*", default=None, metavar="CANDIDATE",
                    help="time forward/JVP of candidates on one CPU thread (default ddpm-c32 ddpm-c48 ddpm-c64)")
    ap.add_argument("--repeats", type=int, default=5, help="with --cpu-cost: timed calls per figure (best kept)")
    a = ap.parse_args(argv)
    if a.cpu_cost is not None:
        print("| model | parameters | shipped | forward B=1 (ms) | forward B=8 (ms) | JVP B=1 (ms) | vs small (fwd B=1 / B=8 / JVP) |")
        print("|---|---:|---|---:|---:|---:|---:|")
        cpu_cost(a.cpu_cost or ["ddpm-c32", "ddpm-c48", "ddpm-c64"], repeats=a.repeats)
        return
    if a.eval_only:
        from pifs import models

        dev = torch.device(a.device or "cpu")
        if dev.type == "cpu":
            torch.set_num_threads(a.threads)
        t0 = time.perf_counter()
        pre = models.load_checkpoint(a.eval_only, device=dev)
        res = heldout_dsm_loss(pre.unet, load_test_images(a.data_root, a.heldout_limit), dev, log=print)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        res["device"] = _device_info(dev)
        print(json.dumps(res, indent=1))
        if a.write:
            p = Path(a.eval_only) / "metadata.json"
            meta = json.loads(p.read_text())
            meta["heldout_dsm_loss"] = res
            _atomic_text(p, _meta_text(meta))
            print(f"wrote heldout_dsm_loss into {p}")
        return
    if not a.out:
        ap.error("--out is required for training")
    Run(a).run()


if __name__ == "__main__":
    main()
