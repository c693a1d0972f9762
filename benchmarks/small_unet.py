"""Print the size and CPU cost (one thread) of the small UNet of pifs.models.

    .venv/bin/python benchmarks/small_unet.py [--checkpoint cifar10-small] [--repeats 5]

Reports parameters, float32 size, forward time (batch 1), one JVP (torch.func.jvp through
the explicit attention processor), JVPs batched with vmap over 8 tangents (per JVP), one
VJP, and one training step at batch 32. Timings depend on machine load: a figure, not a test.
"""
from __future__ import annotations

import argparse
import time

import torch


def _time(fn, repeats):
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main():
    from pifs import models, training
    from pifs.scores import DiffusersScore

    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(1)
    unet = models.load_pretrained(a.checkpoint).unet if a.checkpoint else models.build_small_unet()
    unet.requires_grad_(False)
    m = DiffusersScore(unet, models.ddpm_alpha_bar())  # explicit attention: forward-mode AD works
    n = sum(p.numel() for p in unet.parameters())
    print(f"parameters: {n:,}  float32 size: {4 * n / 1e6:.2f} MB")
    x = torch.randn(1, 3, 32, 32)
    u = torch.randn_like(x)
    f = lambda z: m(z, 500)  # noqa: E731
    with torch.no_grad():
        print(f"forward (B=1):        {1e3 * _time(lambda: f(x), a.repeats):7.1f} ms")
    print(f"JVP (one tangent):    {1e3 * _time(lambda: torch.func.jvp(f, (x,), (u,)), a.repeats):7.1f} ms")
    U = torch.randn(8, 1, 3, 32, 32)
    vj = torch.func.vmap(lambda w: torch.func.jvp(f, (x,), (w,))[1])
    print(f"JVP (vmap 8, per JVP):{1e3 * _time(lambda: vj(U), max(1, a.repeats // 2)) / 8:7.1f} ms")

    def vjp():
        xx = x.clone().requires_grad_(True)
        return torch.autograd.grad(f(xx), xx, u)[0]

    print(f"VJP (one cotangent):  {1e3 * _time(vjp, a.repeats):7.1f} ms")
    unet.requires_grad_(True).train()
    opt = torch.optim.Adam(unet.parameters(), 1e-4)
    ab = torch.from_numpy(models.ddpm_alpha_bar())
    xb = torch.rand(32, 3, 32, 32) * 2 - 1

    def step():
        t = torch.randint(1, 1001, (32,))
        loss, _ = training.dsm_loss(m, xb, t, torch.randn_like(xb), ab)
        opt.zero_grad()
        loss.backward()
        opt.step()

    print(f"train step (B=32):    {_time(step, 2):7.2f} s")


if __name__ == "__main__":
    main()
