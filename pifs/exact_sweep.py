"""The §7 protocol on an exact reference model: Tables 3–5, 7–9 with exact values and the paper's estimators.

:func:`exact_sweep` walks the 50-step DDIM chain (:func:`pifs.schedules.ddim_timesteps`) of an
exact model of :mod:`pifs.reference_models` from ``seeds`` noise draws and measures, with the
measurement functions of their homes (:mod:`pifs.suppression`, :mod:`pifs.block_jacobian`):

* every step: κ_t exact (Lanczos on the matrix-free J_x Φ, :func:`pifs.reference_models.step_operator`)
  and the paper's cold PowerIter with K_PI = 20, its bias, ŝ = ∏ κ (Table 4);
* ``block_steps``: the dense J (closed form) → κ_diag, δ_cross, κ^pc exact and by per-block
  PowerIter K_PI = 10 (Table 5), ‖[J]_kj‖_F for Table 7, the (PC) slack exact and K_PI = 30 at the
  chain's stride and at stride 1 (Table 8);
* ``diag_steps``: ‖[J]_kk‖_op per patch (Table 9, Spearman against λ_k);
* ``s_steps``: S_k,t along v_k^(1) against the block-diagonal Gaussian surrogate (Table 3).

Table 10 is :func:`pifs.proxy.proxy_table`, Table 11 :func:`pifs.suppressed_dimension.suppressed_dimension_table`.
Steps are our training indices t = τ + 1 (the paper prints τ for Tables 4–9, t for Table 3).
"""
from __future__ import annotations

import time

import numpy as np
import torch

__all__ = ["TABLE_STEPS", "exact_sweep"]

#: The steps the paper prints, as our training indices (τ + 1 for Tables 4–9; Table 3 as printed).
TABLE_STEPS = {
    "table3": (1, 101, 201, 381, 461, 601, 721, 841, 861, 881, 941),
    "table4": (981, 901, 801, 601, 401, 301, 201, 21),
    "table5": (981, 801, 601, 401, 281, 221, 101, 21),
    "table8": (981, 801, 701, 601, 281, 201, 161, 41),
    "table9": (261, 241, 221, 201, 181, 161, 141, 121, 101, 81, 61, 41, 21),
}


def exact_sweep(model, stats, *, chain=None, seeds=(0, 1, 2), block_steps=None, diag_steps=None, s_steps=None,
                k_pi: int = 20, k_block: int = 10, k_slack: int = 30, log=None) -> dict:
    """Run the §7 Jacobian measurements on an exact model along its DDIM chain.

    Parameters
    ----------
    model : GaussianScore (dense), EmpiricalScore or LocalScoreMachine
        With ``alpha_bar``; float64 throughout.
    stats : pifs.experiments.PatchStats
        8 × 8 patch statistics (patch_idx, λ_k, v_k^(1), the surrogate of Table 3).
    chain : array_like of int, optional
        Default ``ddim_timesteps(50, T)`` (t = 1, 21, …, 981).
    seeds : iterable of int
        x_T ~ N(0, I) from ``torch.Generator().manual_seed(seed)`` per trajectory.
    block_steps, diag_steps, s_steps : iterable of int, optional
        Chain steps for the dense block measurement (default Tables 5 ∪ 8), the diagonal-only one
        (default Table 9) and S_k,t (default Table 3). Steps not on the chain are an error.
    k_pi, k_block, k_slack : int
        The paper's K_PI: 20 (global), 10 (per block, Table 5), 30 (Table 8).
    log : callable, optional

    Returns
    -------
    dict of pandas.DataFrame
        ``global`` (seed, t, kappa_exact, kappa_pi, bias), ``s_hat`` (seed, exact, pi),
        ``blocks`` (seed, t, kappa_diag, delta_cross, kappa_pc and their K = 10 estimates),
        ``slack`` (seed, t, stride, mean/min/frac_violated exact and K = 30), ``coupling``
        (Table 7, ``{d: (mean, std, count)}`` as a frame), ``diag`` (seed, t, patch, diag_op,
        diag_pi, rayleigh), ``S`` (t, patch, S mean over seeds), and ``seconds``.

    Raises
    ------
    ValueError
        If a requested step is not on the chain.
    """
    import pandas as pd

    from .block_jacobian import (chebyshev_distances, coupling_by_distance, dense_step_measurement, exact_norm,
                                 matrix_power_iteration, slack_at_strides)
    from .ddim import ddim_chain, step_coefficients
    from .reference_models import step_operator
    from .schedules import ddim_timesteps
    from .suppression import suppression_field

    log = log or (lambda s: None)
    ab = model.alpha_bar
    ts = ddim_timesteps(50, model.T) if chain is None else np.asarray(chain, dtype=np.int64)
    on = set(int(t) for t in ts)
    block_steps = sorted(set(TABLE_STEPS["table5"]) | set(TABLE_STEPS["table8"])) if block_steps is None else block_steps
    diag_steps = TABLE_STEPS["table9"] if diag_steps is None else diag_steps
    s_steps = TABLE_STEPS["table3"] if s_steps is None else s_steps
    for name, st in (("block_steps", block_steps), ("diag_steps", diag_steps), ("s_steps", s_steps)):
        bad = [int(t) for t in st if int(t) not in on]
        if bad:
            raise ValueError(f"{name}: not steps of the chain: {bad}")
    prev = {int(t): (int(ts[i - 1]) if i > 0 else 0) for i, t in enumerate(ts)}
    shape = tuple(stats.shape)
    n = int(np.prod(shape))
    idx = stats.patch_idx
    grid = (shape[1] // stats.patch_size, shape[2] // stats.patch_size)
    sur = stats.surrogate(ab)
    t0 = time.perf_counter()
    G, SH, BL, SL, DG, SS, FRO = [], [], [], [], [], [], []
    state_free = type(model).__name__ == "GaussianScore"
    cache = {}
    for seed in seeds:
        xT = torch.randn((1, *shape), generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
        with torch.no_grad():
            _, traj = ddim_chain(model, xT, ts, return_trajectory=True)
        pts = {int(t): traj[i, 0] for i, t in enumerate(ts[::-1])}
        logk, logp = 0.0, 0.0
        for t in ts[::-1]:
            t = int(t)
            x = pts[t]
            op, sym = step_operator(model, x, t, prev[t])
            ke = exact_norm(op, symmetric=sym)
            kp = float(matrix_power_iteration(op, k_pi, seed=seed * 1000 + t)[-1])
            G.append({"seed": seed, "t": t, "kappa_exact": ke, "kappa_pi": kp, "bias": ke - kp})
            logk, logp = logk + np.log(ke), logp + np.log(kp)
            want_b, want_d = t in set(int(s) for s in block_steps), t in set(int(s) for s in diag_steps)
            if want_b or want_d:
                key = t if state_free else (seed, t)
                if key not in cache:
                    J = op.matmat(np.eye(n))
                    c, b = step_coefficients(ab, t, prev[t])
                    m = dense_step_measurement(J, idx, stats.vecs, blocks=want_b, k_pi=k_pi, k_block=k_block,
                                               k_slack=k_slack, seed=seed * 1000 + t, kappa_exact=ke)
                    if want_b:  # Table 8 at the chain's stride and at stride 1 (same score Jacobian)
                        Js = (J - c * np.eye(n)) / b
                        m["strides"] = slack_at_strides(Js, ab, t, (prev[t], t - 1), idx, k_slack=k_slack,
                                                        seed=seed * 1000 + t)
                    cache[key] = m
                m = cache[key]
                for k in range(idx.shape[0]):
                    DG.append({"seed": seed, "t": t, "patch": k, "lam": float(stats.lam[k]),
                               "diag_op": float(m["diag_op"][k]), "diag_pi": float(m["diag_pi"][k]),
                               "rayleigh": float(m["rayleigh"][k])})
                if want_b:
                    BL.append({"seed": seed, "t": t, **{q: m[q] for q in ("kappa_diag", "delta_cross", "kappa_pc",
                                                                           "kappa_diag_pi", "delta_cross_pi")},
                               "delta_cross_score": m["delta_cross"] / abs(step_coefficients(ab, t, prev[t])[1])})
                    FRO.append(m["block_fro"])
                    for tp, r in m["strides"].items():
                        SL.append({"seed": seed, "t": t, "stride": t - tp,
                                   **{q: r[q] for q in ("mean", "min", "frac_violated", "mean_pi", "min_pi",
                                                        "frac_violated_pi")}})
            if t in set(int(s) for s in s_steps):
                S = suppression_field(model, sur, x[None], t, stats.vecs, idx, alpha_bar=ab, t_prev=prev[t])[0]
                for k in range(idx.shape[0]):
                    SS.append({"seed": seed, "t": t, "patch": k, "lam": float(stats.lam[k]), "S": float(S[k])})
        SH.append({"seed": seed, "s_hat_exact": float(np.exp(logk)), "s_hat_pi": float(np.exp(logp))})
        log(f"seed {seed}: {time.perf_counter() - t0:.1f} s")
    coup = coupling_by_distance(np.stack(FRO), chebyshev_distances(grid)) if FRO else {}
    return {"global": pd.DataFrame(G), "s_hat": pd.DataFrame(SH), "blocks": pd.DataFrame(BL),
            "slack": pd.DataFrame(SL), "diag": pd.DataFrame(DG), "S": pd.DataFrame(SS),
            "coupling": pd.DataFrame([{"d": d, "mean": v[0], "std": v[1], "count": v[2]} for d, v in coup.items()]),
            "seconds": time.perf_counter() - t0}
