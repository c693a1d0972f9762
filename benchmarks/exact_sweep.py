"""Timings of the exact reference models (issue 12): one dense DDIM-step Jacobian per model, and the
§7 exact sweep (pifs.exact_sweep) at the `small` sizes; plus the memorisation boundary and the
locality calibration against the project's network.

small sizes: the 50-step DDIM chain of the linear schedule, SEEDS seeds, global norms (exact and
K_PI = 20) at all 50 steps, dense block measurements at BLOCK steps, diagonal blocks at the 13
steps of Table 9, S_k,t at Table 3's 11 steps; CIFAR-10 subset (5,397 training images).

    PIFS_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/exact_sweep.py [--sweep] [--calibrate]
"""
import os
import sys
import time

import numpy as np
import torch

torch.set_num_threads(1)
os.environ.setdefault("PIFS_DATA_DIR", "/work/shared/data")
from pifs import experiments as E  # noqa: E402
from pifs.exact_sweep import TABLE_STEPS, exact_sweep  # noqa: E402
from pifs.reference_models import (LocalScoreMachine, calibrate_locality, ddim_step_jacobian,  # noqa: E402
                                   gaussian_from_images, ideal_denoiser, memorisation_boundary)
from pifs.schedules import linear  # noqa: E402

SEEDS = (0, 1)
BLOCK = (981, 601, 281, 201, 41)


def tm(f):
    t0 = time.perf_counter()
    r = f()
    return r, time.perf_counter() - t0


ab = linear(1000)
X, note = E.load_images(show=False)
Xt, _ = E.load_images(train=False, show=False)
print(note)
stats = E.patch_statistics(X, 8)
x = torch.as_tensor(np.sqrt(ab[601]) * X[0] + np.sqrt(1 - ab[601]) * np.random.default_rng(0).standard_normal(X[0].shape))
gauss, tg = tm(lambda: gaussian_from_images(X, ab))
print(f"Gaussian construction (3072×3072 eigh): {tg:.1f} s")
ideal = ideal_denoiser(X, ab)
local = LocalScoreMachine(X, ab, 5)
for name, m in (("Gaussian", gauss), ("ideal denoiser (5,397 images)", ideal), ("local machine P=5", local)):
    _, t1 = tm(lambda: ddim_step_jacobian(m, x, 601, 581))
    print(f"one dense DDIM-step Jacobian, {name}, t=601: {t1:.1f} s")
if "--memo" in sys.argv or "--all" in sys.argv:
    (per_t, summ), tmem = tm(lambda: memorisation_boundary(ideal, test_images=Xt, n_points=8, seed=0))
    print(f"memorisation boundary ({tmem:.1f} s):\n{summ.to_string(index=False)}")
    print(per_t[per_t.t.isin([201, 241, 281, 301, 341, 401, 501])].to_string(index=False))
if "--calibrate" in sys.argv or "--all" in sys.argv:
    info = E.load_model("small", show=False)
    net = info.model
    (best, grid), tc = tm(lambda: calibrate_locality(net, Xt[:6], [101, 301, 501, 701, 901], [1, 3, 5, 7, 9, 11],
                                                     train_images=X))
    print(f"locality calibration ({tc:.1f} s):\n{best.to_string(index=False)}")
if "--sweep" in sys.argv or "--all" in sys.argv:
    for name, m in (("Gaussian", gauss), ("ideal denoiser", ideal), ("local machine P=5", local)):
        res = exact_sweep(m, stats, seeds=SEEDS, block_steps=BLOCK, diag_steps=TABLE_STEPS["table9"][::3],
                          s_steps=(101, 461, 841))
        g = res["global"]
        print(f"exact sweep, {name}: {res['seconds']:.1f} s; K_PI=20 bias: max {g.bias.max():.2e}, "
              f"median {g.bias.median():.2e}, min {g.bias.min():.2e}; at t=981 {g[g.t == 981].bias.mean():.2e}; "
              f"s_hat exact {res['s_hat'].s_hat_exact.round(2).tolist()} pi {res['s_hat'].s_hat_pi.round(2).tolist()}")
        print(res["blocks"].groupby("t")[["kappa_diag", "kappa_diag_pi", "delta_cross", "delta_cross_pi"]].mean()
              .to_string())
        print(res["slack"].groupby(["t", "stride"])[["mean", "min", "frac_violated", "mean_pi"]].mean().to_string())
