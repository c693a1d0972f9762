"""Exact-model columns of the §7 tables: paper | exact Gaussian | ideal denoiser | local machine | network.

Issue 12 puts three exact, training-free score models of CIFAR-10 (:mod:`pifs.reference_models`)
beside the paper's value and our network's in every §7 table. This module holds what the
notebooks of §7 share for that:

* the measurement along trajectories: :func:`exact_trajectories` (deterministic DDIM
  trajectories of an exact model from the same noise as the network's, cached per build),
  :func:`patch_rayleigh` (⟨v_k, [J_x ε̂]_kk v_k⟩, closed form for the local score machine —
  a JVP through it costs ~20 s per point at 32 × 32 — and the ideal denoiser, by forward-mode
  JVP for any other model), :func:`suppression` (S_k,t of eq. 30) and :func:`step_rayleigh` (⟨v_k, [J_x Φ]_kk v_k⟩
  of the DDIM step, eq. 32);
* the display and the records: :class:`ColumnTable` (one table, one column per model, each
  column headed with its basis, each exact-model cell recorded with ``basis="exact-model"``)
  and :func:`findings` (per finding of the paper, shown / not shown on each model, what it
  follows from, and a paragraph generated from the measured values).

Conventions: pixel scale [−1, 1]; training index t = 1..T of ``alpha_bar`` (shape (T+1,),
``alpha_bar[0] = 1``); v_t = 1 − ᾱ_t; patches as :class:`pifs.experiments.PatchStats`
(row-major p × p tiles, channel-major inside a tile); float64.
"""
from __future__ import annotations

import numbers

import numpy as np
import torch

__all__ = ["EXACT_MODELS", "ORIGINS", "exact_trajectories", "patch_rayleigh", "suppression", "step_rayleigh",
           "ColumnTable", "findings"]

#: The three exact models, in the book's column order (:meth:`pifs.reference_models.ReferenceModels.items`).
EXACT_MODELS = ("exact Gaussian", "ideal denoiser", "local machine")

#: What a finding follows from, by the simplest model that shows it (:func:`findings`).
ORIGINS = ("the data distribution alone", "locality", "only a trained network", "none")


# ----------------------------------------------------------------------------- trajectories
def exact_trajectories(model, n: int, chain, *, seed: int = 0, key=None, shape=None) -> dict:
    """Deterministic DDIM trajectories of a score model, from the noise of the network's trajectories.

    Trajectory j starts from ``torch.randn((C, H, W), generator=torch.Generator().manual_seed(seed + j))``
    (float32 draws, as :func:`pifs.setup7.trajectories` draws them for the network), cast to float64,
    and runs :func:`pifs.ddim.ddim_chain` over ``chain`` in float64.

    Parameters
    ----------
    model : score model ``model(x, t)`` with ``alpha_bar``, float64
        An exact model of :mod:`pifs.reference_models`.
    n : int, ≥ 1
        Number of trajectories.
    chain : array_like of int, increasing, in 1..T
        The sampler's steps, e.g. ``pifs.schedules.ddim_timesteps(50, 1000)``.
    seed : int
    key : optional
        Anything :func:`pifs.cache.fingerprint` accepts that identifies the model (e.g. its name,
        training images and locality scales). Given, the result is stored in the build's cache
        (:func:`pifs.cache.cached`) so the notebooks of one build share it.
    shape : tuple (C, H, W), optional
        Image shape; default the model's ``C``, ``H``, ``W`` (local machine), else (3, 32, 32). Must
        match the model's ``n`` values per sample where it has one.

    Returns
    -------
    dict
        ``{t: torch.Tensor (n, C, H, W) float64}`` for every t of ``chain`` (the state at t, before the
        step t → t_prev) and ``0`` (the sample).

    Raises
    ------
    ValueError
        If ``n`` < 1, ``shape`` does not fit the model, or ``chain`` is not a valid chain
        (:func:`pifs.ddim.ddim_chain`).
    """
    from .cache import cached
    from .ddim import ddim_chain

    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n: expected a positive integer number of trajectories, got {n!r}")
    ts = np.asarray(chain, dtype=np.int64)
    if shape is None:
        shape = tuple(int(getattr(model, a, d)) for a, d in (("C", 3), ("H", 32), ("W", 32)))
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or int(np.prod(shape)) != int(getattr(model, "n", np.prod(shape))):
        raise ValueError(f"shape: expected (C, H, W) with C·H·W = the model's n = {getattr(model, 'n', '?')}, got {shape}")

    def run():
        noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(seed) + j))
                             for j in range(int(n))]).double()
        with torch.no_grad():
            _, traj = ddim_chain(model, noise, ts, return_trajectory=True)
        order = [int(s) for s in ts[::-1]] + [0]
        return {t: traj[i].clone() for i, t in enumerate(order)}

    if key is None:
        return run()
    return cached("exact-trajectories", {"key": key, "n": int(n), "chain": ts, "seed": int(seed),
                                         "shape": shape}, run)


# ----------------------------------------------------------------------------- Rayleigh quotients
def _box(z, P):
    """Sum of z (B, H, W) over the P × P window centred at each pixel, zero outside (integral image)."""
    import torch.nn.functional as F

    r = P // 2
    zp = F.pad(z, (r + 1, r, r + 1, r))
    c = zp.cumsum(1).cumsum(2)
    H, W = z.shape[-2:]
    return c[:, P:P + H, P:P + W] - c[:, :H, P:P + W] - c[:, P:P + H, :W] + c[:, :H, :W]


def _tiling(stats):
    """Check that ``stats.patch_idx`` is the row-major p × p tiling; return (C, H, W, p, embedded v (C, H, W))."""
    C, H, W = (int(s) for s in stats.shape)
    p = int(stats.patch_size)
    idx = np.asarray(stats.patch_idx)
    if H % p or W % p or idx.shape != ((H // p) * (W // p), C * p * p):
        raise ValueError(f"stats: expected p × p tiles of a {C}×{H}×{W} image, got patch_idx {idx.shape}, p = {p}")
    c, h, w = np.unravel_index(idx, (C, H, W))
    k = np.arange(idx.shape[0])[:, None]
    if not ((h // p == k // (W // p)) & (w // p == k % (W // p))).all():
        raise ValueError("stats: patch_idx is not the row-major tiling of pifs.patches.patch_indices")
    V = np.zeros(C * H * W)
    V[idx.reshape(-1)] = np.asarray(stats.vecs, np.float64).reshape(-1)
    return C, H, W, p, V.reshape(C, H, W)


_LOCAL = {}


def _local_rayleigh(model, x, t, stats):
    """Closed-form ⟨v_k, [J_x ε̂]_kk v_k⟩ of a (non-equivariant) local score machine, (B, M) float64.

    J_x ε̂ = I/√v_t − (ᾱ_t/v_t^{3/2}) C with C_{(c,i),(d,j)} = Cov_{w_i}(x^n_c(i), x^n_d(j)) for j in the
    P × P window P_i (pifs.reference_models.LocalScoreMachine), so with a^n_i = Σ_c v_c(i) x^n_c(i) and
    b^n_i = Σ_{j ∈ P_i ∩ k} Σ_d v_d(j) x^n_d(j):  ⟨v_k, C_kk v_k⟩ = Σ_{i ∈ k} Cov_{w_i}(a_i, b_i).
    """
    C, H, W, p, V = _tiling(stats)
    if (model.C, model.H, model.W) != (C, H, W):
        raise ValueError(f"stats: patches of a {C}×{H}×{W} image, the model's images are {model.C}×{model.H}×{model.W}")
    P = model.patch_size_at(t)
    ab = float(model.alpha_bar[t])
    v = 1.0 - ab
    key = (id(model), p, V.tobytes(), P)
    if key not in _LOCAL:
        _LOCAL.clear()   # one (model, patching, P) at a time: each entry holds ~0.3 GB at 32 × 32
        X = torch.as_tensor(model.data, dtype=torch.float64)
        N = X.shape[0]
        a = torch.einsum("nchw,chw->nhw", X, torch.as_tensor(V))       # a^n_i
        gh, gw = H // p, W // p
        tiles = a.reshape(N, gh, p, gw, p).permute(0, 1, 3, 2, 4).reshape(N * gh * gw, p, p)
        b = _box(tiles, P).reshape(N, gh, gw, p, p).permute(0, 1, 3, 2, 4).reshape(N, H, W)   # window ∩ tile
        _LOCAL[key] = {"X": X, "a": a, "b": b, "sq": _box((X * X).sum(1), P)}
    d = _LOCAL[key]
    out = []
    for x1 in x.reshape(-1, C, H, W).to(torch.float64):
        cross = _box(torch.einsum("nchw,chw->nhw", d["X"], x1), P)
        w = torch.softmax((np.sqrt(ab) * cross - 0.5 * ab * d["sq"]) / v, dim=0)     # (N, H, W)
        da = d["a"] - (w * d["a"]).sum(0)
        db = d["b"] - (w * d["b"]).sum(0)
        cov = (w * da * db).sum(0)                                                       # (H, W)
        per_patch = cov.reshape(H // p, p, W // p, p).sum((1, 3)).reshape(-1)
        out.append(1.0 / np.sqrt(v) - ab / v ** 1.5 * per_patch.numpy())
    return np.stack(out)


def _ideal_rayleigh(model, x, t, stats):
    """Closed-form ⟨v_k, [J_x ε̂]_kk v_k⟩ of the ideal denoiser, (B, M) float64.

    J_x ε̂ = I/√v_t − (ᾱ_t/v_t^{3/2}) Cov_w(x_0 | x_t) (pifs.scores.EmpiricalScore), so with
    a^n_k = ⟨v_k, x^n⟩ (v_k embedded in patch k): ⟨v_k, [J ε̂]_kk v_k⟩ = 1/√v_t − (ᾱ_t/v_t^{3/2}) Var_w(a_k).
    """
    n = int(np.prod(stats.shape))
    if model.n != n:
        raise ValueError(f"stats: patches of images with n = {n} values, the model's have n = {model.n}")
    idx = np.asarray(stats.patch_idx)
    key = (id(model), idx.tobytes(), np.asarray(stats.vecs).tobytes())
    if key not in _IDEAL:
        _IDEAL.clear()
        U = np.zeros((n, idx.shape[0]))
        U[idx, np.arange(idx.shape[0])[:, None]] = np.asarray(stats.vecs, np.float64)
        _IDEAL[key] = torch.as_tensor(np.asarray(model.data, np.float64) @ U)           # (N, M): a^n_k
    a = _IDEAL[key]
    ab = float(model.alpha_bar[t])
    v = 1.0 - ab
    w = model.weights(x.reshape(x.shape[0], -1).to(torch.float64), t)                  # (B, N)
    da = a[None] - (w @ a)[:, None, :]                                                 # (B, N, M)
    var = (w[:, :, None] * da * da).sum(1)
    return (1.0 / np.sqrt(v) - ab / v ** 1.5 * var).numpy()


_IDEAL = {}


def patch_rayleigh(model, x, t: int, stats) -> np.ndarray:
    """Rayleigh quotients ⟨v_k, [J_x ε̂(x, t)]_kk v_k⟩ of a score model's diagonal Jacobian blocks.

    Parameters
    ----------
    model : score model ``model(x, t)`` with ``alpha_bar``
        A :class:`pifs.reference_models.LocalScoreMachine` (non-equivariant; its Jacobian is a banded
        weighted covariance) and the ideal denoiser :class:`pifs.scores.EmpiricalScore` (a weighted
        covariance) are evaluated in closed form; any other model by one batched forward-mode JVP
        per patch (:func:`pifs.suppression.block_rayleigh`).
    x : torch.Tensor, (B, C, H, W), float, pixel scale [−1, 1]
        Evaluation points.
    t : int, 1..T
    stats : pifs.experiments.PatchStats
        The patches and their unit top eigenvectors v_k^(1) (``patch_idx``, ``vecs``).

    Returns
    -------
    numpy.ndarray, float64, shape (B, M)

    Raises
    ------
    ValueError, TypeError
        For a bad ``x``, ``t`` or a patching that is not the row-major tiling (closed form).
    """
    from .reference_models import LocalScoreMachine
    from .scores import EmpiricalScore
    from .suppression import block_rayleigh

    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point or x.ndim != 4:
        raise TypeError(f"x: expected a floating torch.Tensor of shape (B, C, H, W), got {type(x).__name__} "
                        f"{tuple(getattr(x, 'shape', ()))}")
    t = int(t)
    if not 1 <= t <= model.alpha_bar.size - 1:
        raise ValueError(f"t: training index must lie in 1..{model.alpha_bar.size - 1}, got {t}")
    if isinstance(model, LocalScoreMachine) and not model.equivariant:
        return _local_rayleigh(model, x, t, stats)
    if isinstance(model, EmpiricalScore):
        return _ideal_rayleigh(model, x, t, stats)
    r = block_rayleigh(lambda z: model(z, t), x.to(torch.float64), stats.vecs, stats.patch_idx)
    return r.double().cpu().numpy()


def suppression(model, x, t: int, stats, *, t_prev=None, rayleigh=None) -> np.ndarray:
    """The directional suppression field S_k,t(x) = |b| ⟨v_k, [∇_x Δ_t]_kk v_k⟩ (eq. 30) of a score model.

    Δ_t = ε̂ − ε^N against the block-diagonal Gaussian surrogate of ``stats`` (Definition 18), whose
    Rayleigh quotient along the eigenvector v_k^(1) is exactly √v_t/(ᾱ_t λ_k + v_t), so
    S_k,t = |b| (⟨v_k, [J ε̂]_kk v_k⟩ − √v_t/(ᾱ_t λ_k + v_t)); b is the coefficient of the DDIM step
    t → ``t_prev`` (eq. 5), as :func:`pifs.suppression.suppression_field`.

    Parameters
    ----------
    model, x, t, stats
        As :func:`patch_rayleigh` (``model.alpha_bar`` is the schedule).
    t_prev : int, 0..t−1, optional
        Default ``t − 1`` (the stride-1 step of §7.2).
    rayleigh : numpy.ndarray (B, M), optional
        :func:`patch_rayleigh` at (x, t) if already computed.

    Returns
    -------
    numpy.ndarray, float64, shape (B, M)
    """
    from .suppression import step_coefficient

    ab = model.alpha_bar
    b = step_coefficient(ab, int(t), t_prev)
    rq = patch_rayleigh(model, x, t, stats) if rayleigh is None else np.asarray(rayleigh, np.float64)
    v = 1.0 - ab[int(t)]
    sur = np.sqrt(v) / (ab[int(t)] * np.asarray(stats.lam, np.float64) + v)
    return abs(b) * (rq - sur[None, :])


def step_rayleigh(model, x, t: int, stats, *, t_prev=None, rayleigh=None) -> np.ndarray:
    """⟨v_k, [J_x Φ]_kk v_k⟩ = c + b ⟨v_k, [J_x ε̂]_kk v_k⟩ of the DDIM step t → t_prev (eqs. 4, 32).

    Parameters
    ----------
    model, x, t, stats, rayleigh
        As :func:`suppression`.
    t_prev : int, 0..t−1, optional
        Default ``t − 1``.

    Returns
    -------
    numpy.ndarray, float64, shape (B, M)
    """
    from .ddim import step_coefficients

    tp = int(t) - 1 if t_prev is None else int(t_prev)
    c, b = step_coefficients(model.alpha_bar, int(t), tp)
    rq = patch_rayleigh(model, x, t, stats) if rayleigh is None else np.asarray(rayleigh, np.float64)
    return c + b * rq


# ----------------------------------------------------------------------------- display and records
def _text(value):
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if value is None or (isinstance(value, numbers.Real) and not np.isfinite(float(value))):
        return "—" if value is None else str(float(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return f"{float(value):.4g}"


class ColumnTable:
    """One §7 table with one column per model: paper | exact Gaussian | ideal denoiser | local machine | network.

    Each column is headed by its basis (``paper``; ``exact-model`` for the three exact models;
    the network's ``network_basis``: ``our-model`` for our network, ``paper`` on the paper's
    checkpoint). :meth:`exact` records every exact-model cell with
    :meth:`pifs.claims.ClaimBook.other_model` (basis ``exact-model``: *not comparable*, shown beside
    the paper's value, never an erratum); :meth:`network` only displays (the notebook records the
    network's cells with its own checks, on the network's basis).

    Parameters
    ----------
    claims : pifs.claims.ClaimBook
    result : str
        The paper's numbered result, first field of every claim id (``"Table 3"``).
    quantity : str
        What a cell holds (``"ρ(λ_k, S_k,t)"``); part of the claim ids.
    index_name : str
        Name of the row key (``"t"``).
    network_label : str
        Header of the network's column (``"our network"``, or the checkpoint's name).
    network_basis : str
        Basis of the network's cells (``"our-model"`` or ``"paper"``).

    Examples
    --------
    >>> tab = ColumnTable(claims, "Table 3", quantity="ρ", network_basis="our-model")   # doctest: +SKIP
    >>> tab.paper(601, "+0.953"); tab.exact(601, "ideal denoiser", 0.41, text="+0.410 (p = 0.11)")  # doctest: +SKIP
    >>> tab.network(601, "+0.62 (p = 0.01)"); tab.show("Table 3")                        # doctest: +SKIP
    """

    def __init__(self, claims, result: str, *, quantity: str = "", index_name: str = "t",
                 network_label: str = "our network", network_basis: str = "our-model"):
        from .claims import BASES

        if network_basis not in BASES:
            raise ValueError(f"network_basis: expected one of {BASES}, got {network_basis!r}")
        if not result or not isinstance(result, str):
            raise ValueError("result: expected the paper's numbering, e.g. 'Table 3'")
        self.claims, self.result, self.quantity, self.index_name = claims, result, quantity, index_name
        self.network_label = network_label
        self.columns = ("paper", *EXACT_MODELS, network_label)
        self.bases = ("paper", *(["exact-model"] * len(EXACT_MODELS)), network_basis)
        self.values: dict = {}
        self._text: dict = {}
        self._paper: dict = {}
        self._rows: list = []

    def _row(self, row):
        if row not in self._rows:
            self._rows.append(row)

    def claim_id(self, row, model: str) -> str:
        """The claim id of an exact-model cell: ``"<result> · <index> = <row> · <quantity> · <model>"``."""
        parts = [self.result, f"{self.index_name} = {row}" if self.index_name else str(row), self.quantity, model]
        return " · ".join(p for p in parts if p)

    def paper(self, row, printed):
        """The paper's printed value of a row (text as printed; "—" where the paper prints none)."""
        self._row(row)
        self._paper[row] = printed
        self._text[(row, "paper")] = _text(printed)

    def exact(self, row, model: str, value, *, text=None, paper=None, note: str = "", record: bool = True):
        """One exact-model cell: shown (``text``, default the formatted ``value``) and recorded.

        Parameters
        ----------
        row : hashable
            Row key (e.g. the step t).
        model : str
            One of :data:`EXACT_MODELS`.
        value : number or str
            The computed value recorded in the claim.
        text : str, optional
            What the table shows (e.g. ``"+0.41 (p = 0.11)"``).
        paper : str, optional
            The paper's value the cell stands beside (default: the row's :meth:`paper` value, or "—").
        note : str
        record : bool
            Record the cell (default True).

        Raises
        ------
        ValueError
            For an unknown model.
        """
        if model not in EXACT_MODELS:
            raise ValueError(f"model: expected one of {EXACT_MODELS}, got {model!r}")
        self._row(row)
        self.values[(row, model)] = value
        self._text[(row, model)] = _text(value) if text is None else text
        if record:
            pv = paper if paper is not None else self._paper.get(row, "—")
            self.claims.other_model(self.claim_id(row, model), value, paper=str(pv), basis="exact-model", note=note)

    def network(self, row, value, *, text=None):
        """The network's cell of a row (display only; the notebook records it on the network's basis)."""
        self._row(row)
        self.values[(row, "network")] = value
        self._text[(row, self.network_label)] = _text(value) if text is None else text

    def frame(self):
        """The table as a pandas.DataFrame: rows × columns (model, basis), text cells ("" where empty)."""
        import pandas as pd

        cols = pd.MultiIndex.from_arrays([list(self.columns), list(self.bases)], names=["", "basis"])
        data = [[self._text.get((r, c), "") for c in self.columns] for r in self._rows]
        return pd.DataFrame(data, index=pd.Index(self._rows, name=self.index_name or None), columns=cols)

    def show(self, caption: str = "") -> None:
        """Display the table (IPython) with ``caption``.

        Returns None, so a ``show`` on a cell's last line does not display the table twice
        (use :meth:`frame` for the data).
        """
        sty = self.frame().style
        if caption:
            sty = sty.set_caption(caption)
        try:
            from IPython.display import display

            display(sty)
        except ImportError:  # pragma: no cover
            print(self.frame().to_string())


def _origin(shown):
    """What a finding follows from, given {column: bool or None}: (key of ORIGINS, the sentence)."""
    g, i, l_, n = (shown.get(k) for k in ("exact Gaussian", "ideal denoiser", "local machine", "network"))
    if g and i:
        return ORIGINS[0], "the data distribution alone (the exact Gaussian and the ideal denoiser show it)"
    if g:
        return ORIGINS[0], "the data distribution alone (its Gaussian part: the exact Gaussian shows it)"
    if i:
        return ORIGINS[0], ("the data distribution alone, through its empirical law (the ideal denoiser shows it, "
                            "the exact Gaussian does not)")
    if l_:
        return ORIGINS[1], "locality (the local machine shows it; neither the Gaussian nor the ideal denoiser does)"
    if n:
        return ORIGINS[2], "only a trained network (ours shows it; none of the three exact models does)"
    if n is None:
        return ORIGINS[3], "none of the three exact models (our network was not measured here)"
    return ORIGINS[3], "none of the four models measured"


def findings(claims, result: str, items, *, network_label: str = "our network"):
    """Per finding of one table: shown / not shown on each model, what it follows from, and the text.

    Records, for each finding and each exact model, :meth:`pifs.claims.ClaimBook.statement` with basis
    ``exact-model`` (*shown* / *not shown*), id ``"<result> · <finding> · <model>"``. The network's
    verdict is displayed, not recorded (the notebook records it with its own check, on the network's
    basis). The classification is by the simplest model that shows the finding: the exact Gaussian or
    the ideal denoiser (the data distribution alone), else the local machine (locality), else the
    network only, else none (:data:`ORIGINS`).

    Parameters
    ----------
    claims : pifs.claims.ClaimBook
    result : str
        ``"Table 3"``.
    items : list of dict
        Each with ``finding`` (short name, part of the claim id), ``paper`` (the paper's statement),
        ``exact`` ({model: (holds: bool, computed: str)} for the models of :data:`EXACT_MODELS`
        measured; a model left out is "not measured"), and optionally ``network`` ((holds, computed)
        or None).
    network_label : str
        Header of the network's column.

    Returns
    -------
    (pandas.DataFrame, str)
        One row per finding: columns ``finding``, the three exact models and ``network_label``
        ("shown" / "not shown" / "—"), ``follows from``; and a paragraph (markdown) that states each
        finding's verdicts with the measured values of ``computed``.

    Raises
    ------
    ValueError
        For an item without ``finding`` / ``paper`` / ``exact`` or an unknown model.
    """
    import pandas as pd

    rows, text = [], []
    for it in items:
        if not all(k in it for k in ("finding", "paper", "exact")):
            raise ValueError(f"items: each needs 'finding', 'paper' and 'exact', got {sorted(it)}")
        bad = set(it["exact"]) - set(EXACT_MODELS)
        if bad:
            raise ValueError(f"items: unknown models {sorted(bad)} (expected {EXACT_MODELS})")
        shown = {}
        for m in EXACT_MODELS:
            if m in it["exact"]:
                holds, comp = it["exact"][m]
                shown[m] = bool(holds)
                claims.statement(f"{result} · {it['finding']} · {m}", bool(holds), paper=it["paper"], computed=comp,
                                 basis="exact-model")
        net = it.get("network")
        shown["network"] = None if net is None else bool(net[0])
        key, why = _origin(shown)
        word = lambda s: "—" if s is None else ("shown" if s else "not shown")
        rows.append({"finding": it["finding"], **{m: word(shown.get(m)) for m in EXACT_MODELS},
                     network_label: word(shown["network"]), "follows from": key})
        parts = [f"{m} {'shows' if shown[m] else 'does not show'} it ({it['exact'][m][1]})"
                 for m in EXACT_MODELS if m in it["exact"]]
        if net is not None:
            parts.append(f"{network_label} {'shows' if net[0] else 'does not show'} it ({net[1]})")
        text.append(f"* **{it['finding']}** ({it['paper']}): " + "; ".join(parts) + f". It follows from {why}.")
    return pd.DataFrame(rows), "\n".join(text)
