"""Timings of the exact reference models (issue 12): one dense DDIM-step Jacobian per model per step,
its exact norm, its diagonal blocks alone, and the §7 exact sweep (pifs.exact_sweep) at the `small`
sizes; optionally the memorisation boundary and the locality calibration against the project's network.

At 32 × 32 (n = 3072) on the CIFAR-10 subset (5,397 training images), float64, one thread:

* per step (t = 981, 601, 281, 21 of the 50-step chain; a noised training image as x_t):
  dense J (`dense_step_jacobian`: Gaussian U diag(g) Uᵀ, ideal denoiser c0 I + c1 YᵀY, local
  machine by matrix products), the exact norm (`step_norm`: closed form / Lanczos), the 16 diagonal
  8 × 8 blocks alone (`step_diag_blocks`), and `--old` the previous routes (ARPACK eigsh tol = 0 on
  `step_operator`, the banded scatter of the local machine) for comparison;
* `--sweep`: exact_sweep with SEEDS seeds, global κ (exact and K_PI = 20) at all 50 steps, dense
  block measurements at BLOCK, diagonal blocks at every third step of Table 9, S_k,t at 3 steps.

    PIFS_DATA_DIR=/work/shared/data OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/exact_sweep.py \
        [--old] [--sweep] [--memo] [--calibrate] [--all]
"""
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
os.environ.setdefault("PIFS_DATA_DIR", "/work/shared/data")
from pifs import experiments as E  # noqa: E402
from pifs.block_jacobian import exact_norm  # noqa: E402
from pifs.exact_sweep import TABLE_STEPS, exact_sweep  # noqa: E402
from pifs.reference_models import (LocalScoreMachine, calibrate_locality, dense_step_jacobian,  # noqa: E402
                                   gaussian_from_images, ideal_denoiser, memorisation_boundary, step_diag_blocks,
                                   step_norm, step_operator)
from pifs.schedules import linear  # noqa: E402

SEEDS = (0, 1)
BLOCK = (981, 601, 281, 201, 41)
STEPS = (981, 601, 281, 21)


def tm(f):
    t0 = time.perf_counter()
    r = f()
    return r, time.perf_counter() - t0


def load():
    return os.getloadavg()[0]


ab = linear(1000)
X, note = E.load_images(None, seed=0, show=False)
X = np.asarray(X, np.float64)
Xt, _ = E.load_images(train=False, seed=0, show=False)
print(note)
print(f"load average at start: {load():.2f}")
stats = E.patch_statistics(X, 8)
gauss, tg = tm(lambda: gaussian_from_images(X, ab))
print(f"Gaussian construction (3072×3072 covariance + eigh): {tg:.1f} s")
ideal = ideal_denoiser(X, ab)
local = LocalScoreMachine(X, ab, 5)
models = (("exact Gaussian", gauss), ("ideal denoiser (5,397 images)", ideal), ("local machine P=5", local))
rng = np.random.default_rng(0)
print("| model | t | dense J (s) | exact norm (s) | diag blocks (s) | κ_t |" + (" old norm (s) |" if "--old" in sys.argv
                                                                             else ""))
for t in STEPS:
    x = torch.as_tensor(np.sqrt(ab[t]) * X[0] + np.sqrt(1 - ab[t]) * rng.standard_normal(X[0].shape))
    for name, m in models:
        J, tj = tm(lambda: dense_step_jacobian(m, x, t, t - 20))
        k, tn = tm(lambda: step_norm(m, x, t, t - 20, J=J if m is local else None))
        _, td = tm(lambda: step_diag_blocks(m, x, t, t - 20, stats.patch_idx))
        row = f"| {name} | {t} | {tj:.2f} | {tn:.2f} | {td:.2f} | {k:.6f} |"
        if "--old" in sys.argv:
            def old():
                if m is local:  # the previous local route: band + sparse assembly
                    Cb, P = m.band(x, t)
                    return None
                op, sym = step_operator(m, x, t, t - 20)
                return exact_norm(op, symmetric=sym)
            _, to = tm(old)
            row += f" {to:.1f} |"
        print(row + f"  (load {load():.1f})", flush=True)
        del J
if "--memo" in sys.argv or "--all" in sys.argv:
    (per_t, summ), tmem = tm(lambda: memorisation_boundary(ideal, test_images=Xt, n_points=8, seed=0))
    print(f"memorisation boundary ({tmem:.1f} s):\n{summ.to_string(index=False)}")
if "--calibrate" in sys.argv or "--all" in sys.argv:
    info = E.load_model("small", show=False)
    (best, grid), tc = tm(lambda: calibrate_locality(info.model, Xt[:3], [901, 601, 301, 101], [3, 5, 9, 15],
                                                     train_images=X))
    print(f"locality calibration ({tc:.1f} s):\n{best.to_string(index=False)}")
if "--sweep" in sys.argv or "--all" in sys.argv:
    tot = 0.0
    for name, m in models:
        res = exact_sweep(m, stats, seeds=SEEDS, block_steps=BLOCK, diag_steps=TABLE_STEPS["table9"][::3],
                          s_steps=(101, 461, 841))
        tot += res["seconds"]
        g = res["global"]
        print(f"exact sweep, {name}: {res['seconds']:.1f} s (load {load():.1f}); K_PI=20 bias: max {g.bias.max():.2e}, "
              f"median {g.bias.median():.2e}; at t=981 {g[g.t == 981].bias.mean():.2e}; "
              f"s_hat exact {res['s_hat'].s_hat_exact.round(3).tolist()} pi {res['s_hat'].s_hat_pi.round(3).tolist()}",
              flush=True)
    print(f"whole exact sweep (3 models, {len(SEEDS)} seeds): {tot:.1f} s")
