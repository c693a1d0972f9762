"""Time the `full` §7 Jacobian work on google/ddpm-cifar10-32's architecture (issue 11).

    python benchmarks/gpu_full_jacobian.py [--precisions fp32,tf32] [--chunks 64,128,256,512] \
        [--out-md RESULTS_part.md] [--out-json timing.json]

Model: a randomly initialised diffusers ``UNet2DModel`` with google/ddpm-cifar10-32's exact
configuration (its published config.json, written out below: 35,746,307 parameters; the cost
does not depend on the weights), behind :class:`pifs.scores.DiffusersScore` with the explicit
(math) attention processor that forward-mode AD needs. The map is one step of the 50-step DDIM
chain, Φ: x_t ↦ x_{t−20} (:func:`pifs.ddim.step_fn`, t = 501 by default), at a random point
x ∈ R^{3×32×32} (n = 3,072).

Measured, for each precision (``fp32``: TF32 off for matmuls and cuDNN; ``tf32``: on for both;
``default``: PyTorch's defaults, TF32 in cuDNN convolutions only):

1. a sweep of chunk sizes (columns per vmap pass) of the batched JVP, on ``--sweep-columns``
   columns, with the peak GPU memory (a chunk that runs out of memory ends the sweep);
2. one dense 3,072 × 3,072 Jacobian by :func:`pifs.jacobian.dense_jacobian` at the best chunk
   (``--slice S``: only the 3·S² columns of the top-left S×S window, and the time of all n
   columns extrapolated from them: for tests on a CPU);
3. power iteration ‖JΦ‖_op with K_PI = ``--k-pi`` (:func:`pifs.jacobian.spectral_norm`);
4. the float64 SVD norm of the dense Jacobian and its 16 × 16 block norms (op, Frobenius),
   which the `full` notebooks take from every dense Jacobian;
5. one forward pass (batch 1).

From these and the `full` parameters in the front matter of notebooks/07_regimes_crossover.md
and 07_setup_suppression.md it estimates the time of the `full` §7 protocol on this machine
(07_deviation_dimension runs on the CelebA-HQ model and is not included). Prints markdown tables
for benchmarks/RESULTS.md; ``--out-md`` / ``--out-json`` are rewritten after every measurement,
so a run stopped at its limit keeps what it measured. ``--budget-s`` skips measurements that
would not fit.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.func import jvp, vmap  # noqa: E402

#: google/ddpm-cifar10-32's config.json (diffusers' published values).
GOOGLE_DDPM_CIFAR10_32 = dict(
    sample_size=32,
    in_channels=3,
    out_channels=3,
    center_input_sample=False,
    time_embedding_type="positional",
    freq_shift=1,
    flip_sin_to_cos=False,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(128, 256, 256, 256),
    layers_per_block=2,
    mid_block_scale_factor=1,
    downsample_padding=0,
    act_fn="silu",
    attention_head_dim=None,
    norm_num_groups=32,
    norm_eps=1e-6,
)
GOOGLE_N_PARAMS = 35_746_307

CONFIGS = {
    "google": GOOGLE_DDPM_CIFAR10_32,
    # the same layout, narrow (tests on a CPU)
    "tiny": {**GOOGLE_DDPM_CIFAR10_32, "block_out_channels": (8, 16, 16, 16), "norm_num_groups": 4,
             "layers_per_block": 1},
}


def set_precision(mode: str) -> None:
    """fp32: no TF32 anywhere; tf32: TF32 in matmuls and cuDNN; default: PyTorch's defaults."""
    mm, cudnn = {"fp32": (False, False), "tf32": (True, True), "default": (False, True)}[mode]
    torch.backends.cuda.matmul.allow_tf32 = mm
    torch.backends.cudnn.allow_tf32 = cudnn


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def is_oom(exc) -> bool:
    return isinstance(exc, getattr(torch.cuda, "OutOfMemoryError", ())) or "out of memory" in str(exc).lower()


def slice_columns(S: int, shape=(3, 32, 32)) -> torch.Tensor:
    """Flat (row-major) indices of the 3·S² input values of the top-left S×S window."""
    C, H, W = shape
    c, i, j = torch.meshgrid(torch.arange(C), torch.arange(S), torch.arange(S), indexing="ij")
    return (c * H * W + i * W + j).reshape(-1)


def columns(g, xf, cols: torch.Tensor, chunk: int) -> torch.Tensor:
    """J[:, cols] by chunked batched JVP: the loop of :func:`pifs.jacobian.dense_jacobian`."""
    n = xf.numel()
    col = vmap(lambda u: jvp(g, (xf,), (u,))[1])
    out = []
    for s in range(0, cols.numel(), chunk):
        c = cols[s:s + chunk].to(xf.device)
        E = torch.zeros(c.numel(), n, dtype=xf.dtype, device=xf.device)
        E[torch.arange(c.numel(), device=xf.device), c] = 1
        out.append(col(E).detach().T)
    return torch.cat(out, 1)


def protocol_counts(root: Path = ROOT) -> dict:
    """Network products and dense-matrix operations of the `full` §7 protocol (from the notebooks)."""
    from pifs.profiles import notebook_parameters

    chain = 50
    M = 16  # 8×8 patches of a 32×32 image
    rc = notebook_parameters(root / "notebooks" / "07_regimes_crossover.md", "full")
    su = notebook_parameters(root / "notebooks" / "07_setup_suppression.md", "full")
    n_meas = len(set(int(t) for t in rc["t_measure"]))
    c = {"regimes": {}, "setup": {}}
    r = c["regimes"]
    r["dense"] = rc["n_seeds"] * n_meas if rc["method"] == "dense" else 0
    r["svd"] = r["dense"]
    r["block_norms"] = 2 * r["dense"]  # op and Frobenius
    r["pi_runs"] = rc["n_seeds"] * (chain - n_meas) if rc["k_chain"] else 0
    r["pi_k"] = int(rc["k_chain"])
    r["probe_jvps"] = 0
    r["forwards"] = rc["n_seeds"] * chain
    s = c["setup"]
    inv, seeds = list(su["inv_timesteps"]), int(su["inv_seeds"])
    dense = su["jacobian_method"] == "dense"
    # step-size check: traj and stride-1 points at each timestep; at t = 981 both are the same (cached)
    s["dense"] = (2 * len(inv) - (1 if 981 in inv else 0)) * seeds if dense else 0
    s["block_norms"] = 2 * len(inv) * seeds if dense else 0
    s["svd"] = len(inv) * seeds if dense and su["k_pi"] else 0
    s["pi_runs"] = len(inv) * seeds if dense and su["k_pi"] else 0
    s["pi_k"] = int(su["k_pi"])
    n_s = chain if isinstance(su["s_timesteps"], str) else len(su["s_timesteps"])
    s["probe_jvps"] = n_s * max(int(su["n_seeds"]), seeds) * M
    s["forwards"] = max(int(su["n_seeds"]), seeds) * chain + 20 * (len(inv) - 1) * seeds
    c["params"] = {"07_regimes_crossover": rc, "07_setup_suppression": su}
    return c


def estimate(counts: dict, m: dict) -> dict:
    """Seconds of the protocol from per-operation times ``m`` (one precision)."""
    out = {}
    for name in ("regimes", "setup"):
        c = counts[name]
        parts = {
            "dense Jacobians": c["dense"] * m["dense_s"],
            "power iterations": c["pi_runs"] * c["pi_k"] * m["pi_iter_s"],
            "SVDs (fp64)": c["svd"] * (m.get("svd_s") or 0.0),
            "block norms": c["block_norms"] * (m.get("block_norm_s") or 0.0),
            "directional probes": c["probe_jvps"] / m["jvp_cols_per_s"],
            "forwards": c["forwards"] * m["forward_s"],
        }
        out[name] = {"parts": parts, "total_s": sum(parts.values())}
    out["total_s"] = out["regimes"]["total_s"] + out["setup"]["total_s"]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="google")
    ap.add_argument("--t", type=int, default=501, help="training index of the DDIM step t → t − 20")
    ap.add_argument("--chunks", default="64,128,256,512,1024")
    ap.add_argument("--sweep-columns", type=int, default=1024)
    ap.add_argument("--slice", type=int, default=None, help="only the 3·S² columns of an S×S window (tests)")
    ap.add_argument("--image-size", type=int, default=32, help="input side (tests: e.g. 8 for n = 192)")
    ap.add_argument("--precisions", default=None, help="default fp32,tf32 on a GPU, fp32 on a CPU")
    ap.add_argument("--k-pi", type=int, default=20)
    ap.add_argument("--no-svd", action="store_true")
    ap.add_argument("--budget-s", type=float, default=1e9, help="skip measurements that would end after this")
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--date", default=time.strftime("%Y-%m-%d"))
    ap.add_argument("--out-md", default=None)
    ap.add_argument("--out-json", default=None)
    a = ap.parse_args(argv)
    T0 = time.perf_counter()
    from diffusers import UNet2DModel

    from pifs import jacobian as jac
    from pifs.ddim import step_fn
    from pifs.models import ddpm_alpha_bar
    from pifs.patches import patch_indices
    from pifs.scores import DiffusersScore

    dev = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cpu":
        torch.set_num_threads(a.threads)
        dev_name = f"{platform.machine()} CPU, {torch.get_num_threads()} thread(s)"
    else:
        torch.backends.cudnn.benchmark = True
        dev_name = torch.cuda.get_device_name(dev)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(a.seed)
        unet = UNet2DModel(**{**CONFIGS[a.config], "sample_size": a.image_size})
    unet = unet.to(dev).eval().requires_grad_(False)
    npar = sum(p.numel() for p in unet.parameters())
    if a.config == "google" and npar != GOOGLE_N_PARAMS:
        raise SystemExit(f"parameter count {npar:,} != google/ddpm-cifar10-32's {GOOGLE_N_PARAMS:,}")
    model = DiffusersScore(unet, ddpm_alpha_bar())  # math attention processor (forward-mode AD)
    f = step_fn(model, a.t, a.t - 20)
    shape = (3, a.image_size, a.image_size)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(a.seed)).to(dev)
    g, xf = (lambda z: f(z.reshape(x.shape)).reshape(-1)), x.reshape(-1)
    n = xf.numel()
    cols = slice_columns(a.slice, shape) if a.slice else torch.arange(n)
    chunks = [int(c) for c in a.chunks.split(",")]
    precisions = (a.precisions or ("fp32,tf32" if dev.type == "cuda" else "fp32")).split(",")
    idx = patch_indices(shape, a.image_size // 4)  # 8×8 patches at 32×32: M = 16
    counts = protocol_counts()
    R = {"device": dev_name, "date": a.date, "config": a.config, "n_parameters": npar, "t": a.t, "n": n,
         "columns": int(cols.numel()), "torch": torch.__version__, "k_pi": a.k_pi, "precisions": {},
         "counts": {k: v for k, v in counts.items() if k != "params"}}
    print(f"{dev_name}: UNet2DModel ({a.config}), {npar:,} parameters; DDIM step t = {a.t} → {a.t - 20}; "
          f"n = {n}; columns measured: {cols.numel()}; torch {torch.__version__}", flush=True)

    def left():
        return a.budget_s - (time.perf_counter() - T0)

    def dump():
        if a.out_json:
            Path(a.out_json).write_text(json.dumps(R, indent=1, default=float))
        if a.out_md:
            Path(a.out_md).write_text(markdown(R))

    J_ref = None
    for prec in precisions:
        set_precision(prec)
        P = R["precisions"][prec] = {"sweep": {}}
        # forward pass (batch 1)
        with torch.no_grad():
            f(x); sync(dev)
            t0 = time.perf_counter()
            for _ in range(5):
                f(x)
            sync(dev)
        P["forward_s"] = (time.perf_counter() - t0) / 5
        # chunk sweep
        sw_cols = cols[: min(a.sweep_columns, cols.numel())]
        for chunk in chunks:
            if left() <= 0:
                P["sweep"][chunk] = {"skipped": "budget"}
                continue
            try:
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(dev)
                columns(g, xf, sw_cols[:chunk], chunk); sync(dev)  # warm-up (cuDNN autotuning)
                t0 = time.perf_counter()
                columns(g, xf, sw_cols, chunk); sync(dev)
                dt = time.perf_counter() - t0
                P["sweep"][chunk] = {"cols_per_s": sw_cols.numel() / dt, "seconds": dt, "columns": int(sw_cols.numel()),
                                     "peak_gib": torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None}
                print(f"[{prec}] chunk {chunk:5d}: {sw_cols.numel() / dt:9.1f} columns/s "
                      f"({sw_cols.numel()} columns, {dt:.2f} s)", flush=True)
            except RuntimeError as exc:
                if not is_oom(exc):
                    raise
                P["sweep"][chunk] = {"oom": True}
                print(f"[{prec}] chunk {chunk}: out of memory; larger chunks skipped", flush=True)
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                break
            dump()
        ok = {c: v for c, v in P["sweep"].items() if "cols_per_s" in v}
        if not ok:
            print(f"[{prec}] no chunk size ran; stopping this precision", flush=True)
            continue
        best = max(ok, key=lambda c: ok[c]["cols_per_s"])
        P["best_chunk"], P["jvp_cols_per_s"] = best, ok[best]["cols_per_s"]
        # dense Jacobian
        pred = cols.numel() / P["jvp_cols_per_s"]
        J = None
        if pred > left():
            P["dense_s"], P["dense_note"] = n / P["jvp_cols_per_s"], "estimated from the sweep (budget)"
        else:
            t0 = time.perf_counter()
            if cols.numel() == n:
                J = jac.dense_jacobian(f, x, chunk=best)
            else:
                J = columns(g, xf, cols, best)
            sync(dev)
            dt = time.perf_counter() - t0
            P["dense_s"] = dt * n / cols.numel()
            P["dense_note"] = "measured" if cols.numel() == n else f"{cols.numel()} columns measured, scaled to {n}"
        print(f"[{prec}] dense {n}×{n} Jacobian: {P['dense_s']:.2f} s ({P['dense_note']}, chunk {best})", flush=True)
        dump()
        if J is not None and J.shape[1] == n:
            k = min(8, n)  # the sweep's column loop agrees with dense_jacobian
            P["columns_check_max_abs"] = float((columns(g, xf, cols[:k], k) - J[:, :k]).abs().max())
            if J_ref is None:
                J_ref, R["reference_precision"] = J.double(), prec
            else:
                d = float((J.double() - J_ref).norm() / J_ref.norm())
                P["rel_diff_vs_" + R["reference_precision"]] = d
                print(f"[{prec}] ‖J − J_{R['reference_precision']}‖_F / ‖J_{R['reference_precision']}‖_F = {d:.2e}")
        # power iteration
        if left() > 0:
            sig, _ = jac.spectral_norm(f, x, iters=1, seed=a.seed, return_history=True)  # warm-up
            sync(dev)
            t0 = time.perf_counter()
            sig, hist = jac.spectral_norm(f, x, iters=a.k_pi, seed=a.seed, return_history=True)
            sync(dev)
            dt = time.perf_counter() - t0
            P.update(pi_s=dt, pi_iter_s=dt / a.k_pi, pi_sigma=sig, pi_history=[float(h) for h in hist])
            print(f"[{prec}] power iteration K = {a.k_pi}: {dt:.2f} s; σ̂ = {sig:.6f}", flush=True)
        else:
            P["pi_iter_s"] = 2 / P["jvp_cols_per_s"]
            P["pi_note"] = "estimated as 2 column-times (budget)"
        # SVD and block norms (float64, as the notebooks)
        if not a.no_svd and left() > 0:
            Jd = J.double() if J is not None and J.shape[1] == n else \
                torch.randn(n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).to(dev)
            sync(dev)
            t0 = time.perf_counter()
            s_max = float(torch.linalg.matrix_norm(Jd, ord=2))
            sync(dev)
            P["svd_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            jac.block_norms(Jd, idx, "op"); sync(dev)
            P["block_norm_s"] = time.perf_counter() - t0
            if J is not None and J.shape[1] == n:
                P["svd_sigma"] = s_max
                if "pi_sigma" in P:
                    P["pi_rel_gap"] = (s_max - P["pi_sigma"]) / s_max
            print(f"[{prec}] SVD norm (fp64): {P['svd_s']:.2f} s; block op norms: {P['block_norm_s']:.2f} s"
                  + (f"; σ_max = {s_max:.6f}" if "svd_sigma" in P else " (random matrix)"), flush=True)
            del Jd
        del J
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        P["estimate"] = estimate(counts, P)
        print(f"[{prec}] `full` §7 estimate: {P['estimate']['total_s'] / 60:.1f} min", flush=True)
        dump()
    R["seconds"] = time.perf_counter() - T0
    dump()
    print()
    print(markdown(R))


def markdown(R: dict) -> str:
    """The tables for benchmarks/RESULTS.md."""
    what = "google/ddpm-cifar10-32 architecture" if R["config"] == "google" else f"`{R['config']}` test network"
    L = [f"### Dense Jacobian of a DDIM step, {what} ({R['device']}, {R['date']})", "",
         f"`benchmarks/gpu_full_jacobian.py` (config `{R['config']}`): randomly initialised UNet2DModel, "
         f"{R['n_parameters']:,} parameters, math attention, DDIM step t = {R['t']} → {R['t'] - 20}, n = {R['n']}; "
         f"torch {R['torch']}." + ("" if R["columns"] == R["n"] else
                                   f" Only {R['columns']} columns measured; times for {R['n']} scaled from them."), "",
         "| precision | chunk | columns/s | peak memory (GiB) |", "|---|---:|---:|---:|"]
    for prec, P in R["precisions"].items():
        for c, v in P["sweep"].items():
            if "cols_per_s" in v:
                pk = f"{v['peak_gib']:.1f}" if v.get("peak_gib") is not None else "—"
                L.append(f"| {prec} | {c} | {v['cols_per_s']:.4g} | {pk} |")
            else:
                L.append(f"| {prec} | {c} | {'out of memory' if v.get('oom') else 'skipped'} | — |")
    L += ["", f"| precision | best chunk | dense {R['n']}×{R['n']} (s) | PI K={R['k_pi']} (s) | SVD fp64 (s) | "
              "block norms (s) | forward B=1 (ms) | `full` §7 estimate (min) |",
          "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for prec, P in R["precisions"].items():
        if "dense_s" not in P:
            continue
        fm = lambda k, s="{:.2f}": s.format(P[k]) if P.get(k) is not None else "—"  # noqa: E731
        pi = f"{P['pi_s']:.2f}" if "pi_s" in P else (f"≈ {P['pi_iter_s'] * R['k_pi']:.2f} *" if "pi_iter_s" in P else "—")
        est = f"{P['estimate']['total_s'] / 60:.1f}" if "estimate" in P else "—"
        L.append(f"| {prec} | {P['best_chunk']} | {P['dense_s']:.2f}"
                 f"{'' if P.get('dense_note') == 'measured' else ' *'} | {pi} | {fm('svd_s')} | {fm('block_norm_s')} | "
                 f"{1e3 * P['forward_s']:.1f} | {est} |")
    parts = [(prec, P["estimate"]) for prec, P in R["precisions"].items() if "estimate" in P]
    if parts:
        names = list(parts[0][1]["regimes"]["parts"])
        L += ["", "`full` §7 estimate by part (minutes):", "",
              "| precision | " + " | ".join(names) + " | total |", "|---|" + "---:|" * (len(names) + 1)]
        for prec, e in parts:
            vals = [(e["regimes"]["parts"][k] + e["setup"]["parts"][k]) / 60 for k in names]
            L.append(f"| {prec} | " + " | ".join(f"{v:.3g}" for v in vals) + f" | {e['total_s'] / 60:.3g} |")
    notes = []
    for prec, P in R["precisions"].items():
        for k, v in P.items():
            if k.startswith("rel_diff_vs_"):
                notes.append(f"{prec}: ‖J − J_{k[12:]}‖_F/‖J_{k[12:]}‖_F = {v:.1e}")
        if "columns_check_max_abs" in P:
            notes.append(f"{prec}: sweep's column loop vs dense_jacobian, max |Δ| = {P['columns_check_max_abs']:.1e}")
        if "pi_rel_gap" in P:
            notes.append(f"{prec}: (σ_max − PI_{R['k_pi']})/σ_max = {P['pi_rel_gap']:.1e}")
    c = R["counts"]
    L += ["", "\\* not a full measurement (scaled or estimated)." if any(
        P.get("dense_note") != "measured" for P in R["precisions"].values() if "dense_s" in P) else "",
          "`full` §7 estimate: 07_regimes_crossover "
          f"({c['regimes']['dense']} dense Jacobians + SVDs, {c['regimes']['pi_runs']} power iterations of "
          f"K = {c['regimes']['pi_k']} at the other chain steps) + 07_setup_suppression ({c['setup']['dense']} dense "
          f"Jacobians, {c['setup']['pi_runs']} power iterations of K = {c['setup']['pi_k']} with SVDs, "
          f"{c['setup']['probe_jvps']:,} directional JVPs); 07_deviation_dimension (CelebA-HQ model) not included."]
    if notes:
        L += ["", "Checks: " + "; ".join(notes) + "."]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
