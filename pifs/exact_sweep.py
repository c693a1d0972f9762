"""The §7 protocol on an exact reference model: Tables 3–5, 7–9 with exact values and the paper's estimators.

:func:`exact_sweep` walks the 50-step DDIM chain (:func:`pifs.schedules.ddim_timesteps`) of an
exact model of :mod:`pifs.reference_models` from ``seeds`` noise draws and measures, with the
measurement functions of their homes (:mod:`pifs.suppression`, :mod:`pifs.block_jacobian`):

* every step (or ``global_steps``): κ_t exact (:func:`pifs.reference_models.step_norm`: closed form
  for the Gaussian and the ideal denoiser, the dense Jacobian for the local machine) and the paper's
  cold PowerIter with K_PI = 20, its bias, ŝ = ∏ κ (Table 4);
* ``block_steps``: the dense J (closed form) → κ_diag, δ_cross, κ^pc exact and by per-block
  PowerIter K_PI = 10 (Table 5), ‖[J]_kj‖_F for Table 7, the (PC) slack exact and K_PI = 30 at the
  chain's stride and at stride 1 (Table 8);
* ``diag_steps``: ‖[J]_kk‖_op per patch (Table 9, Spearman against λ_k), from the diagonal
  blocks alone (:func:`pifs.reference_models.step_diag_blocks`) where J is not formed anyway;
* ``s_steps``: S_k,t along v_k^(1) against the block-diagonal Gaussian surrogate (Table 3).

Table 10 is :func:`pifs.proxy.proxy_table`, Table 11 :func:`pifs.suppressed_dimension.suppressed_dimension_table`.
Steps are our training indices t = τ + 1 (the paper prints τ for Tables 4–9, t for Table 3).
"""
from __future__ import annotations

import time

import numpy as np
import torch

__all__ = ["TABLE_STEPS", "exact_sweep", "clear_cache"]

_MEMO_ATTR = "_exact_sweep_memo"


def _memo(model):
    """Per-model memo of trajectories and measurements (lives on the model object, dies with it)."""
    d = model.__dict__.get(_MEMO_ATTR)
    if d is None:
        d = {}
        model.__dict__[_MEMO_ATTR] = d
    return d


def clear_cache(model) -> None:
    """Forget the trajectories and measurements :func:`exact_sweep` memoised on ``model``.

    Parameters
    ----------
    model : object
        A model previously passed to :func:`exact_sweep`.
    """
    model.__dict__.pop(_MEMO_ATTR, None)


def _model_key(model):
    """What the measurements of a model depend on besides (seed, t): the local machine's P(t)."""
    from .reference_models import LocalScoreMachine

    if isinstance(model, LocalScoreMachine):
        return ("P", tuple(model.patch_size_at(t) for t in range(1, model.T + 1)), model.equivariant)
    return ()


def _gauss_power_iteration(model, g, iters, seed):
    """:func:`pifs.block_jacobian.matrix_power_iteration` of U diag(g) Uᵀ, run in the eigenbasis.

    Same start u_0 (torch Generator ``seed``), same iterates up to an orthogonal change of basis,
    so the same σ_k to round-off, for two matrix-vector products instead of 2·iters."""
    n = g.size
    u = torch.randn(n, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64).numpy()
    y = model._U.T @ (u / np.linalg.norm(u))
    hist = []
    for _ in range(int(iters)):
        w = g * y
        z = g * w
        nw, nz = np.linalg.norm(w), np.linalg.norm(z)
        if not (nw > 0 and nz > 0):
            hist.append(0.0)
            break
        hist.append(nz / nw)
        y = z / nz
    return np.asarray(hist + [hist[-1]] * (int(iters) - len(hist)))


#: The steps the paper prints, as our training indices (τ + 1 for Tables 4–9; Table 3 as printed).
TABLE_STEPS = {
    "table3": (1, 101, 201, 381, 461, 601, 721, 841, 861, 881, 941),
    "table4": (981, 901, 801, 601, 401, 301, 201, 21),
    "table5": (981, 801, 601, 401, 281, 221, 101, 21),
    "table8": (981, 801, 701, 601, 281, 201, 161, 41),
    "table9": (261, 241, 221, 201, 181, 161, 141, 121, 101, 81, 61, 41, 21),
}


def exact_sweep(model, stats, *, chain=None, seeds=(0, 1, 2), block_steps=None, diag_steps=None, s_steps=None,
                k_pi: int = 20, k_block: int = 10, k_slack: int = 30, log=None, global_steps=None) -> dict:
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
        (default Table 9) and S_k,t (default Table 3). Steps not on the chain are an error; an
        empty list skips that measurement.
    k_pi, k_block, k_slack : int
        The paper's K_PI: 20 (global), 10 (per block, Table 5), 30 (Table 8).
    log : callable, optional
    global_steps : iterable of int, optional
        Chain steps at which κ_t (exact and K_PI = 20) is measured (default: every step, which ŝ
        needs; with fewer steps ``s_hat`` is NaN).

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

    Notes
    -----
    Trajectories and per-(seed, t) measurements are memoised on the model object (a second
    call with overlapping steps reuses them; :func:`clear_cache` forgets them). Dense Jacobians
    are formed only where needed: at block steps, and at every measured step of the local machine
    (whose norm has no closed form; :func:`pifs.reference_models.dense_step_jacobian` by matrix
    products, seconds at 32 × 32).
    """
    import pandas as pd

    from .block_jacobian import (chebyshev_distances, coupling_by_distance, dense_step_measurement,
                                 diag_block_measurement, exact_norm, matrix_power_iteration, slack_at_strides)
    from .ddim import ddim_chain, step_coefficients
    import scipy.sparse as sp
    from scipy.sparse.linalg import LinearOperator

    from .reference_models import (_fast_kind, _gauss_gain, _ideal_norm, _ideal_parts, dense_step_jacobian,
                                   step_diag_blocks, step_norm, step_operator)
    from .schedules import ddim_timesteps
    from .suppression import block_rayleigh, suppression_field

    log = log or (lambda s: None)
    ab = model.alpha_bar
    ts = ddim_timesteps(50, model.T) if chain is None else np.asarray(chain, dtype=np.int64)
    on = set(int(t) for t in ts)
    block_steps = sorted(set(TABLE_STEPS["table5"]) | set(TABLE_STEPS["table8"])) if block_steps is None else block_steps
    diag_steps = TABLE_STEPS["table9"] if diag_steps is None else diag_steps
    s_steps = TABLE_STEPS["table3"] if s_steps is None else s_steps
    global_steps = ts if global_steps is None else global_steps
    for name, st in (("block_steps", block_steps), ("diag_steps", diag_steps), ("s_steps", s_steps),
                     ("global_steps", global_steps)):
        bad = [int(t) for t in st if int(t) not in on]
        if bad:
            raise ValueError(f"{name}: not steps of the chain: {bad}")
    B_set, D_set, S_set = (set(int(t) for t in st) for st in (block_steps, diag_steps, s_steps))
    G_set = set(int(t) for t in global_steps)
    all_global = G_set == on
    prev = {int(t): (int(ts[i - 1]) if i > 0 else 0) for i, t in enumerate(ts)}
    shape = tuple(stats.shape)
    n = int(np.prod(shape))
    idx = stats.patch_idx
    grid = (shape[1] // stats.patch_size, shape[2] // stats.patch_size)
    sur = stats.surrogate(ab)
    t0 = time.perf_counter()
    G, SH, BL, SL, DG, SS, FRO = [], [], [], [], [], [], []
    kind = _fast_kind(model)
    state_free = kind == "gaussian"
    memo = _memo(model)
    mkey = _model_key(model)
    chain_key = tuple(int(t) for t in ts)
    for seed in seeds:
        tk = ("traj", int(seed), chain_key, mkey)
        if tk not in memo:
            xT = torch.randn((1, *shape), generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
            with torch.no_grad():
                _, traj = ddim_chain(model, xT, ts, return_trajectory=True)
            memo[tk] = {int(t): traj[i, 0] for i, t in enumerate(ts[::-1])}
        pts = memo[tk]
        logk, logp = 0.0, 0.0
        for t in ts[::-1]:
            t = int(t)
            x = pts[t]
            want_g, want_b, want_d = t in G_set, t in B_set, t in D_set
            sk = (seed, t, prev[t], mkey)
            gk = ("global",) + sk + (int(k_pi),)
            # the Gaussian's Jacobian does not depend on x: one measurement per t (first seed's start)
            bk = ("block", t if state_free else sk, int(k_pi), int(k_block), int(k_slack))
            dk = ("diag", t if state_free else sk, int(k_block))
            need_b = want_b and bk not in memo
            need_d = want_d and dk not in memo and not (bk in memo)
            need_g = want_g and gk not in memo
            J = None
            if need_b or (kind not in ("gaussian", "ideal") and (need_g or need_d)):
                J = dense_step_jacobian(model, x, t, prev[t])
            if need_g:
                if kind == "gaussian":
                    ke = step_norm(model, x, t, prev[t])
                    kp = float(_gauss_power_iteration(model, _gauss_gain(model, t, prev[t]), k_pi,
                                                      seed * 1000 + t)[-1])
                elif kind == "ideal":
                    c0, c1, Y = _ideal_parts(model, x[None].double(), t, prev[t])
                    ke = _ideal_norm(c0, c1, Y)
                    if J is not None:
                        A = J
                    else:
                        def mv(z, c0=c0, c1=c1, Y=Y):
                            z = z.reshape(n, -1)
                            return c0 * z + c1 * (Y.T @ (Y @ z))
                        A = LinearOperator((n, n), matvec=mv, rmatvec=mv, matmat=mv, dtype=np.float64)
                    kp = float(matrix_power_iteration(A, k_pi, seed=seed * 1000 + t)[-1])
                    del Y
                elif J is not None:
                    ke = step_norm(model, x, t, prev[t], J=J)
                    A = sp.csr_matrix(J) if kind == "local" else J  # banded: sparse products
                    kp = float(matrix_power_iteration(A, k_pi, seed=seed * 1000 + t)[-1])
                else:  # pragma: no cover - models without a dense route
                    op, sym = step_operator(model, x, t, prev[t])
                    ke = exact_norm(op, symmetric=sym)
                    kp = float(matrix_power_iteration(op, k_pi, seed=seed * 1000 + t)[-1])
                memo[gk] = (ke, kp)
            if want_g:
                ke, kp = memo[gk]
                G.append({"seed": seed, "t": t, "kappa_exact": ke, "kappa_pi": kp, "bias": ke - kp})
                logk, logp = logk + np.log(ke), logp + np.log(kp)
            if need_b:
                c, b = step_coefficients(ab, t, prev[t])
                ke = memo[gk][0] if gk in memo else None
                m = dense_step_measurement(J, idx, stats.vecs, blocks=True, k_pi=k_pi, k_block=k_block,
                                           k_slack=k_slack, seed=seed * 1000 + t, kappa_exact=ke)
                Js = (J - c * np.eye(n)) / b
                # the chain's stride is J itself (measured above); stride 1 from the same score Jacobian
                m["strides"] = {prev[t]: {"slack": m["slack"], "slack_pi": m["slack_pi"],
                                          "mean": float(m["slack"].mean()), "min": float(m["slack"].min()),
                                          "frac_violated": float((m["slack"] < 0).mean()),
                                          "mean_pi": float(m["slack_pi"].mean()),
                                          "min_pi": float(m["slack_pi"].min()),
                                          "frac_violated_pi": float((m["slack_pi"] < 0).mean())}}
                if t - 1 != prev[t]:
                    m["strides"].update(slack_at_strides(Js, ab, t, (t - 1,), idx, k_slack=k_slack,
                                                         seed=seed * 1000 + t))
                memo[bk] = m
            elif need_d:
                D = (np.asarray(J)[idx[:, :, None], idx[:, None, :]] if J is not None
                     else step_diag_blocks(model, x, t, prev[t], idx))
                memo[dk] = diag_block_measurement(D, stats.vecs, k_block=k_block, seed=seed * 1000 + t)
            del J
            if want_b or want_d:
                m = memo[bk] if bk in memo else memo[dk]
                for k in range(idx.shape[0]):
                    DG.append({"seed": seed, "t": t, "patch": k, "lam": float(stats.lam[k]),
                               "diag_op": float(m["diag_op"][k]), "diag_pi": float(m["diag_pi"][k]),
                               "rayleigh": float(m["rayleigh"][k])})
            if want_b:
                m = memo[bk]
                BL.append({"seed": seed, "t": t, **{q: m[q] for q in ("kappa_diag", "delta_cross", "kappa_pc",
                                                                       "kappa_diag_pi", "delta_cross_pi")},
                           "delta_cross_score": m["delta_cross"] / abs(step_coefficients(ab, t, prev[t])[1])})
                FRO.append(m["block_fro"])
                for tp, r in m["strides"].items():
                    SL.append({"seed": seed, "t": t, "stride": t - tp,
                               **{q: r[q] for q in ("mean", "min", "frac_violated", "mean_pi", "min_pi",
                                                    "frac_violated_pi")}})
            if t in S_set:
                ssk = ("S",) + sk
                if ssk not in memo and kind is None:
                    memo[ssk] = suppression_field(model, sur, x[None], t, stats.vecs, idx, alpha_bar=ab,
                                                  t_prev=prev[t])[0]
                elif ssk not in memo:  # eq. (30) from the exact diagonal blocks: ⟨v,[Jε]_kk v⟩ = (⟨v,[JΦ]_kk v⟩ − c)/b
                    c, b = step_coefficients(ab, t, prev[t])
                    md = memo.get(bk) or memo.get(dk)
                    rq_phi = md["rayleigh"] if md is not None else diag_block_measurement(
                        step_diag_blocks(model, x, t, prev[t], idx), stats.vecs, k_block=1)["rayleigh"]
                    rq_g = block_rayleigh(lambda z: sur(z, t), x[None], stats.vecs, idx)[0].numpy()
                    memo[ssk] = torch.as_tensor(abs(b) * ((rq_phi - c) / b - rq_g))
                S = memo[ssk]
                for k in range(idx.shape[0]):
                    SS.append({"seed": seed, "t": t, "patch": k, "lam": float(stats.lam[k]), "S": float(S[k])})
        SH.append({"seed": seed, "s_hat_exact": float(np.exp(logk)) if all_global else float("nan"),
                   "s_hat_pi": float(np.exp(logp)) if all_global else float("nan")})
        log(f"seed {seed}: {time.perf_counter() - t0:.1f} s")
    coup = coupling_by_distance(np.stack(FRO), chebyshev_distances(grid)) if FRO else {}
    return {"global": pd.DataFrame(G), "s_hat": pd.DataFrame(SH), "blocks": pd.DataFrame(BL),
            "slack": pd.DataFrame(SL), "diag": pd.DataFrame(DG), "S": pd.DataFrame(SS),
            "coupling": pd.DataFrame([{"d": d, "mean": v[0], "std": v[1], "count": v[2]} for d, v in coup.items()]),
            "seconds": time.perf_counter() - t0}
