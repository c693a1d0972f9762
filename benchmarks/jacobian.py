"""Benchmark: dense Jacobians of a small diffusers UNet by batched JVP vs a per-column loop,
and power iteration vs SVD for the spectral norm ‖J_x Φ_t‖_op.

Run:  .venv/bin/python benchmarks/jacobian.py [--threads 1] [--columns 128] [--exact]

Model (``--model``): ``small`` (default) is the project's UNet of the ``small`` profile
(:func:`pifs.models.build_small_unet`, 1.1 M parameters, attention at 16×16 and 8×8,
randomly initialised: cost does not depend on the weights); ``tiny`` is
:func:`pifs.scores.tiny_unet` (channels (32, 64), one attention block). Inputs 32×32×3
(n = 3072), float32, the DDIM step Φ_t of the linear schedule at t = 500. The batched JVP
is timed for each chunk size of ``--chunks`` (columns per vmap pass); the best is reported. Throughputs are estimated on
a subset of columns (``--columns`` for the batched JVP and for batched reverse-mode
rows, a sixteenth of it for the loop). With ``--exact`` the full dense Jacobian
(n columns, about 10 min on one shared core) and its SVD are computed and power
iteration is compared with the exact norm; by default only their cost is estimated.
Prints the figures; asserts nothing (target: batched ≥ 5× the loop).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.func import jvp, vmap

from pifs import schedules
from pifs import jacobian as jac
from pifs.ddim import step_fn
from pifs.scores import DiffusersScore, tiny_unet


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--columns", type=int, default=128, help="columns for the batched-JVP throughput")
    ap.add_argument("--chunks", default="8,16,32,64", help="columns per vmap pass (comma-separated sweep)")
    ap.add_argument("--model", choices=("small", "tiny"), default="small")
    ap.add_argument("--iters", type=int, default=20, help="power iterations")
    ap.add_argument("--exact", action="store_true", help="also compute the full dense Jacobian + SVD")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.model == "small":
        from pifs.models import build_small_unet

        unet = build_small_unet(seed=0)
    else:
        unet = tiny_unet(sample_size=32, channels=(32, 64), attention=True, seed=0)
    chunks = [int(c) for c in args.chunks.split(",")]
    for p in unet.parameters():
        p.requires_grad_(False)
    model = DiffusersScore(unet, schedules.linear(1000))
    f = step_fn(model, 500)
    x = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(0))
    n = x.numel()
    print(f"model: UNet2DModel 32×32×3, {sum(p.numel() for p in unet.parameters()):,} parameters; "
          f"n = {n}; torch threads = {torch.get_num_threads()}")

    t0 = time.perf_counter()
    with torch.no_grad():
        f(x)
    t_fwd = time.perf_counter() - t0
    print(f"one forward pass: {t_fwd * 1e3:.1f} ms")

    xf = x.reshape(-1)
    g = lambda z: f(z.reshape(x.shape)).reshape(-1)
    eye = torch.eye(n)

    # per-column JVP loop
    n_loop = max(4, args.columns // 16)
    jvp(g, (xf,), (eye[0],))  # warm-up
    t0 = time.perf_counter()
    for j in range(n_loop):
        jvp(g, (xf,), (eye[j],))
    t_loop = time.perf_counter() - t0
    loop_rate = n_loop / t_loop

    # batched (vmap) JVP, chunked: sweep the chunk size
    col = vmap(lambda u: jvp(g, (xf,), (u,))[1])
    sweep = {}
    for chunk in chunks:
        col(eye[:chunk])  # warm-up
        t0 = time.perf_counter()
        done = 0
        for s in range(0, args.columns, chunk):
            col(eye[s : s + chunk])
            done += min(chunk, args.columns - s)
        sweep[chunk] = done / (time.perf_counter() - t0)
        print(f"batched JVP, chunk {chunk:3d}: {sweep[chunk]:8.1f} columns/s")
    best = max(sweep, key=sweep.get)
    vmap_rate, t_vmap = sweep[best], done / sweep[best]
    args.chunk = best
    # batched reverse mode: rows e_iᵀ J
    from torch.func import vjp as _vjp
    _, vjp_fn = _vjp(g, xf)
    row = vmap(lambda w: vjp_fn(w)[0])
    row(eye[: args.chunk])  # warm-up
    t0 = time.perf_counter()
    for s in range(0, args.columns, args.chunk):
        row(eye[s : s + args.chunk])
    t_rows = time.perf_counter() - t0
    rows_rate = done / t_rows
    print(f"per-column JVP loop : {loop_rate:8.1f} columns/s  ({n_loop} columns in {t_loop:.2f} s)")
    print(f"batched JVP (vmap)  : {vmap_rate:8.1f} columns/s  ({done} columns, chunk {args.chunk}, {t_vmap:.2f} s)")
    print(f"batched VJP rows    : {rows_rate:8.1f} rows/s     ({done} rows, dense_jacobian(mode='vjp'))")
    print(f"speed-up batched/loop: {vmap_rate / loop_rate:.1f}×  (target ≥ 5×); one JVP = "
          f"{1 / loop_rate / t_fwd:.1f} forward passes")
    print(f"estimated full dense Jacobian ({n} columns): batched {n / vmap_rate:.1f} s, loop {n / loop_rate:.1f} s")

    # power iteration
    t0 = time.perf_counter()
    est, hist = jac.spectral_norm(f, x, iters=args.iters, seed=0, return_history=True)
    t_pi = time.perf_counter() - t0
    print(f"power iteration: {args.iters} iterations = {2 * args.iters} passes (JVP + VJP) + 1 forward, "
          f"{t_pi:.2f} s; σ̂ = {est:.6f}")

    print(f"power iteration vs exact: exact needs {n} JVP columns (≈ {n / vmap_rate:.0f} s here) + an "
          f"SVD of a {n}×{n} matrix; K power iterations need 2K passes (≈ {t_pi / args.iters:.2f} s each)")
    if args.exact:
        t0 = time.perf_counter()
        J = jac.dense_jacobian(f, x, chunk=args.chunk)
        t_dense = time.perf_counter() - t0
        t0 = time.perf_counter()
        s = torch.linalg.svdvals(J.double())
        t_svd = time.perf_counter() - t0
        exact = float(s[0])
        print(f"exact: dense Jacobian {t_dense:.1f} s + SVD {t_svd:.1f} s = {t_dense + t_svd:.1f} s; "
              f"σ_1 = {exact:.6f}, σ_2/σ_1 = {float(s[1] / s[0]):.5f}")
        for tol in (1e-2, 1e-3, 1e-4):
            hit = np.flatnonzero(np.abs(hist - exact) <= tol * exact)
            if hit.size:
                k = int(hit[0]) + 1
                print(f"  power iteration within {tol:.0e} relative after K = {k:3d} iterations "
                      f"({2 * k} passes, ≈ {t_pi * k / args.iters:.2f} s)")
            else:
                print(f"  power iteration not within {tol:.0e} relative after {args.iters} iterations "
                      f"(final rel. error {abs(hist[-1] - exact) / exact:.1e})")


if __name__ == "__main__":
    main()
