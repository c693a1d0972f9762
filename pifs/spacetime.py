"""Spacetime geometry of denoising (Karczewski et al., arXiv:2505.17517): the tools of Appendix B.

A point of *spacetime* is z = (x_t, t): the noisy sample and its noise level. It indexes
the denoising distribution p(x_0 | x_t), which is an exponential family (eq. numbers
refer to arXiv:2505.17517; our notation is that of :mod:`pifs.schedules`):

    p(x_0 | x_t) ∝ p_data(x_0) exp(⟨η(z), T(x_0)⟩),   T(x_0) = (‖x_0‖², x_0),
    η(z) = (−α_t² / (2σ_t²),  α_t x_t / σ_t²)                       (natural parameter),
    μ(z) = (E[‖x_0‖² | x_t],  E[x_0 | x_t])                         (expectation parameter),
    E[‖x_0‖² | x_t] = tr Cov(x_0 | x_t) + ‖E[x_0 | x_t]‖²,
    tr Cov(x_0 | x_t) = (σ_t² / α_t) div_x E[x_0 | x_t]             (second-order Tweedie),

with x_t = α_t x_0 + σ_t ε (α_t = √ᾱ_t, σ_t² = 1 − ᾱ_t for a VP schedule). For two members
of one exponential family ⟨μ_p − μ_q, η_p − η_q⟩ = KL(p‖q) + KL(q‖p), so the energy of a
curve discretised at z_0, …, z_N is (the paper's discrete energy, up to the factor N)

    E = Σ_i ⟨μ(z_{i+1}) − μ(z_i), η(z_{i+1}) − η(z_i)⟩,

and its length is L = Σ_i √⟨Δμ_i, Δη_i⟩. Geodesics minimise E over curves with fixed end
points; :class:`SpacetimeSpline` is the curve family (a cubic spline with fixed ends),
:func:`fit_geodesic` the optimiser.

Conventions
-----------
* A curve is a torch tensor ``z`` of shape (N, 1 + n): column 0 the time coordinate
  (t ∈ [0, 1] for the toy schedule, or the log-SNR λ = log(α²/σ²) for images), columns
  1.. the flattened sample x_t. float64 unless stated.
* A *posterior* callable ``posterior(x, tcoord) -> (mean, second)`` returns
  E[x_0 | x_t] (N, n) and E[‖x_0‖² | x_t] (N,), differentiable in both arguments
  (exact: :class:`MixturePosterior1D`, :class:`EmpiricalPosterior`; a network:
  :class:`HutchinsonPosterior`, whose energy gradient is a double backward).
* A *schedule* callable ``schedule(tcoord) -> (alpha, sigma)`` returns α_t, σ_t (N,).
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

__all__ = [
    "linear_logsnr",
    "logsnr_alpha_sigma",
    "natural_parameter",
    "expectation_parameter",
    "segment_divergences",
    "curve_divergences",
    "curve_energy",
    "curve_length",
    "SpacetimeSpline",
    "fit_geodesic",
    "MixturePosterior1D",
    "EmpiricalPosterior",
    "HutchinsonPosterior",
    "gaussian_geodesic_1d",
    "hutchinson_trace",
    "metric_space_block_gaussian",
    "bridge_threshold",
]

TOY_MEANS = (-2.5, 0.5, 2.5)
TOY_STD = 0.75
TOY_WEIGHTS = (0.275, 0.45, 0.275)


def _tensor(a, name, ndim=None):
    if not isinstance(a, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(a).__name__}")
    if not a.dtype.is_floating_point:
        raise ValueError(f"{name}: expected a floating tensor, got dtype {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(a.shape)}")
    return a


# ----------------------------------------------------------------------------- schedules
def linear_logsnr(t, lam_min: float = -10.0, lam_max: float = 10.0):
    """(α_t, σ_t) of the public code's toy schedule: log(α²/σ²) = λ_max + (λ_min − λ_max) t.

    Parameters
    ----------
    t : torch.Tensor, float, any shape
        Time in [0, 1] (0 = data). Values outside are allowed (the formula extends).
    lam_min, lam_max : float
        Log-SNR at t = 1 and t = 0 (default −10, 10: the public code's toy).

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        α_t = √sigmoid(λ), σ_t = √sigmoid(−λ), shape and dtype of ``t``; α² + σ² = 1.

    Raises
    ------
    ValueError
        If ``t`` is not a floating tensor or ``lam_min >= lam_max``.
    """
    _tensor(t, "t")
    if not lam_min < lam_max:
        raise ValueError(f"lam_min: expected lam_min < lam_max, got {lam_min} >= {lam_max}")
    lam = lam_max + (lam_min - lam_max) * t
    return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()


def logsnr_alpha_sigma(lam):
    """(α, σ) of a variance-preserving process at log-SNR λ = log(α²/σ²).

    Parameters
    ----------
    lam : torch.Tensor, float, any shape

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        √sigmoid(λ), √sigmoid(−λ), shape and dtype of ``lam``.

    Raises
    ------
    ValueError
        If ``lam`` is not a floating tensor.
    """
    _tensor(lam, "lam")
    return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()


# ----------------------------------------------------------------------------- exponential family
def natural_parameter(x, alpha, sigma):
    """Natural parameter η(x_t, t) = (−α²/(2σ²), α x_t/σ²) of p(x_0 | x_t) (paper eq. 18).

    Parameters
    ----------
    x : torch.Tensor, shape (N, n)
        Noisy samples x_t (flattened).
    alpha, sigma : torch.Tensor, shape (N,)
        α_t and σ_t > 0 of each point.

    Returns
    -------
    eta_t : torch.Tensor, shape (N,)
        Coefficient of ‖x_0‖².
    eta_x : torch.Tensor, shape (N, n)
        Coefficient of x_0.

    Raises
    ------
    ValueError
        If the shapes disagree or a tensor is not floating.
    """
    _tensor(x, "x", 2)
    _tensor(alpha, "alpha", 1)
    _tensor(sigma, "sigma", 1)
    if alpha.shape[0] != x.shape[0] or sigma.shape[0] != x.shape[0]:
        raise ValueError(f"alpha: expected shape ({x.shape[0]},) like x's rows, got {tuple(alpha.shape)}, "
                         f"sigma {tuple(sigma.shape)}")
    s2 = sigma ** 2
    return -0.5 * alpha ** 2 / s2, (alpha / s2)[:, None] * x


def expectation_parameter(mean, trace_cov):
    """Expectation parameter μ = (E‖x_0‖², E x_0) = (tr Cov + ‖m‖², m) (paper eq. 22).

    Parameters
    ----------
    mean : torch.Tensor, shape (N, n)
        Denoiser output E[x_0 | x_t].
    trace_cov : torch.Tensor, shape (N,)
        tr Cov(x_0 | x_t) (exact, or a Hutchinson estimate of (σ²/α) div_x E[x_0 | x_t]).

    Returns
    -------
    mu_t : torch.Tensor, shape (N,)
    mu_x : torch.Tensor, shape (N, n) (``mean`` itself)

    Raises
    ------
    ValueError
        If the shapes disagree.
    """
    _tensor(mean, "mean", 2)
    _tensor(trace_cov, "trace_cov", 1)
    if trace_cov.shape[0] != mean.shape[0]:
        raise ValueError(f"trace_cov: expected shape ({mean.shape[0]},), got {tuple(trace_cov.shape)}")
    return trace_cov + (mean * mean).sum(-1), mean


def segment_divergences(mu, eta):
    """Per-segment ⟨μ_{i+1} − μ_i, η_{i+1} − η_i⟩ = KL(p_i‖p_{i+1}) + KL(p_{i+1}‖p_i) (eq. 23).

    Parameters
    ----------
    mu, eta : tuple (torch.Tensor (N,), torch.Tensor (N, n))
        Expectation and natural parameters of N points along a curve, as returned by
        :func:`expectation_parameter` and :func:`natural_parameter`.

    Returns
    -------
    torch.Tensor, shape (N − 1,)
        Symmetrised KL of each pair of neighbours (≥ 0 up to round-off and estimator noise).

    Raises
    ------
    ValueError
        If fewer than two points or the shapes disagree.
    """
    (mt, mx), (et, ex) = mu, eta
    if mt.shape != et.shape or mx.shape != ex.shape:
        raise ValueError(f"mu: shapes {tuple(mt.shape)}, {tuple(mx.shape)} do not match eta's "
                         f"{tuple(et.shape)}, {tuple(ex.shape)}")
    if mt.shape[0] < 2:
        raise ValueError("mu: a curve needs at least two points")
    return (mt[1:] - mt[:-1]) * (et[1:] - et[:-1]) + ((mx[1:] - mx[:-1]) * (ex[1:] - ex[:-1])).sum(-1)


def _params_along(z, posterior, schedule):
    _tensor(z, "z", 2)
    if z.shape[1] < 2:
        raise ValueError(f"z: expected shape (N, 1 + n) with n >= 1, got {tuple(z.shape)}")
    tc, x = z[:, 0], z[:, 1:]
    alpha, sigma = schedule(tc)
    mean, second = posterior(x, tc)
    return (second, mean), natural_parameter(x, alpha, sigma)


def curve_divergences(z, posterior, schedule):
    """Per-segment symmetrised KL ⟨Δμ_i, Δη_i⟩ along a spacetime curve (paper eq. 23, unsummed).

    Parameters
    ----------
    z : torch.Tensor, shape (N, 1 + n)
        Curve points (time coordinate, then x_t).
    posterior : callable ``(x (N, n), tcoord (N,)) -> (mean (N, n), second (N,))``
    schedule : callable ``tcoord (N,) -> (alpha (N,), sigma (N,))``

    Returns
    -------
    torch.Tensor, shape (N − 1,)
        Non-negative for an exact posterior; a negative entry flags a metric that is not PSD
        (e.g. a network's Hutchinson divergence off the data manifold).

    Raises
    ------
    ValueError
        For a malformed ``z``.
    """
    mu, eta = _params_along(z, posterior, schedule)
    return segment_divergences(mu, eta)


NEGATIVE_RULES = ("keep", "abs", "clamp")


def _apply_negative(d, negative):
    if negative not in NEGATIVE_RULES:
        raise ValueError(f"negative: expected one of {NEGATIVE_RULES}, got {negative!r}")
    if negative == "abs":
        return d.abs()
    if negative == "clamp":
        return d.clamp_min(0)
    return d


def curve_energy(z, posterior, schedule, negative: str = "keep"):
    """Discrete energy E = Σ_i ⟨Δμ_i, Δη_i⟩ of a spacetime curve (paper eq. 23, without the factor N).

    Parameters
    ----------
    z : torch.Tensor, shape (N, 1 + n)
        Curve points (time coordinate, then x_t).
    posterior : callable ``(x (N, n), tcoord (N,)) -> (mean (N, n), second (N,))``
        E[x_0 | x_t] and E[‖x_0‖² | x_t].
    schedule : callable ``tcoord (N,) -> (alpha (N,), sigma (N,))``
    negative : {"keep", "abs", "clamp"}
        What a negative segment term d_i = ⟨Δμ_i, Δη_i⟩ contributes. For an exact posterior
        every d_i ≥ 0 and the three agree. For a network's metric, which need not be PSD,
        ``"keep"`` (the paper's sum, default) is unbounded below along directions where the
        estimate is negative; ``"abs"`` sums |d_i| (bounded below by 0, and a negative
        estimate costs as much as a positive one, so the minimiser gains nothing by seeking
        non-PSD regions); ``"clamp"`` sums max(d_i, 0) (such segments become free).

    Returns
    -------
    torch.Tensor, scalar, differentiable in ``z``.

    Raises
    ------
    ValueError
        For a malformed ``z`` or an unknown ``negative``.
    """
    mu, eta = _params_along(z, posterior, schedule)
    return _apply_negative(segment_divergences(mu, eta), negative).sum()


def curve_length(z, posterior, schedule, negative: str = "clamp"):
    """Fisher–Rao length L = Σ_i √d_i, d_i = ⟨Δμ_i, Δη_i⟩, of a discretised curve.

    Same arguments as :func:`curve_energy`. ``negative`` says how a negative d_i (estimator
    noise, or a network's non-PSD metric) enters the square root: ``"clamp"`` (default) as 0,
    ``"abs"`` as |d_i|; ``"keep"`` is not allowed here.

    Returns
    -------
    torch.Tensor, scalar.

    Raises
    ------
    ValueError
        For a malformed ``z`` or ``negative`` not in {"clamp", "abs"}.
    """
    if negative == "keep":
        raise ValueError("negative: a length needs \"clamp\" or \"abs\" (√ of a negative term)")
    mu, eta = _params_along(z, posterior, schedule)
    return _apply_negative(segment_divergences(mu, eta), negative).sqrt().sum()


# ----------------------------------------------------------------------------- curves
class SpacetimeSpline(torch.nn.Module):
    """A curve s ↦ z(s), s ∈ [0, 1], with fixed end points: the straight segment plus a natural cubic spline.

    z(s) = (1 − s) z_a + s z_b + Σ_j W_j(s) P_j, where W_j is the natural cubic spline
    through the knots s_j = j/K (j = 0..K) that is 1 at interior knot j and 0 at the
    others (including both ends), and P (K − 1, D) are the free parameters (initialised
    at 0: the straight segment). Because every W_j vanishes at s = 0 and 1, the end points
    are exactly z_a and z_b whatever P is (the public code's ``CubicSpline`` imposes the
    same constraint through a null-space basis).

    Parameters
    ----------
    za, zb : torch.Tensor, shape (D,)
        End points (e.g. D = 1 + n spacetime coordinates).
    n_nodes : int, >= 2
        Number of spline pieces K (K − 1 free interior knots).

    Raises
    ------
    ValueError
        If the end points are not 1-D tensors of one shape, or ``n_nodes`` < 2.
    """

    def __init__(self, za, zb, n_nodes: int = 4):
        super().__init__()
        _tensor(za, "za", 1)
        _tensor(zb, "zb", 1)
        if za.shape != zb.shape:
            raise ValueError(f"zb: expected the shape of za {tuple(za.shape)}, got {tuple(zb.shape)}")
        if isinstance(n_nodes, bool) or not isinstance(n_nodes, numbers.Integral) or n_nodes < 2:
            raise ValueError(f"n_nodes: expected an integer >= 2, got {n_nodes!r}")
        self.K = int(n_nodes)
        self.register_buffer("za", za.detach().clone())
        self.register_buffer("zb", zb.detach().clone())
        self.params = torch.nn.Parameter(torch.zeros(self.K - 1, za.shape[0], dtype=za.dtype))
        self._basis = {}

    def basis(self, s):
        """W(s): the (len(s), K − 1) spline weights at parameters s (numpy float64, in [0, 1])."""
        from scipy.interpolate import CubicSpline

        s = np.asarray(s, dtype=np.float64)
        key = s.tobytes()
        if key not in self._basis:
            knots = np.linspace(0.0, 1.0, self.K + 1)
            W = np.zeros((s.size, self.K - 1))
            for j in range(1, self.K):
                y = np.zeros(self.K + 1)
                y[j] = 1.0
                W[:, j - 1] = CubicSpline(knots, y, bc_type="natural")(s)
            W[(s == 0.0) | (s == 1.0)] = 0.0   # exact zeros at the ends
            self._basis[key] = W
        return self._basis[key]

    def forward(self, n_points: int = 32):
        """Points z(s_i) at s_i = i/(n_points − 1), shape (n_points, D); row 0 is z_a, the last z_b.

        Raises
        ------
        ValueError
            If ``n_points`` < 2.
        """
        if isinstance(n_points, bool) or not isinstance(n_points, numbers.Integral) or n_points < 2:
            raise ValueError(f"n_points: expected an integer >= 2, got {n_points!r}")
        s = np.linspace(0.0, 1.0, int(n_points))
        W = torch.as_tensor(self.basis(s), dtype=self.params.dtype, device=self.params.device)
        st = torch.as_tensor(s, dtype=self.params.dtype, device=self.params.device)[:, None]
        return (1 - st) * self.za + st * self.zb + W @ self.params


def fit_geodesic(energy_fn, za, zb, *, n_nodes: int = 4, n_points: int = 32, steps: int = 300,
                 lr: float = 0.05, init=None, callback=None, cosine: bool = False):
    """Minimise a curve energy over :class:`SpacetimeSpline` curves with Adam (the public code's method).

    Parameters
    ----------
    energy_fn : callable ``z (n_points, D) -> scalar tensor``
        E.g. ``lambda z: curve_energy(z, posterior, schedule)``.
    za, zb : torch.Tensor, shape (D,)
        Fixed end points.
    n_nodes : int
        Spline pieces (see :class:`SpacetimeSpline`).
    n_points : int
        Discretisation N of the curve.
    steps : int, >= 0
        Adam steps.
    lr : float, > 0
        Adam learning rate.
    init : torch.Tensor, shape (n_nodes − 1, D), optional
        Initial spline parameters (default 0: the straight segment).
    callback : callable ``(step, energy) -> None``, optional
    cosine : bool
        Anneal the learning rate from ``lr`` to 0 along a half cosine over the ``steps``
        (default False: constant, the public code's choice). With few steps on a stiff energy
        (a network's, warm-started) it stops Adam's late oscillation.

    Returns
    -------
    curve : SpacetimeSpline
        The optimised curve (call ``curve(n)`` for points).
    history : numpy.ndarray, float64, shape (steps + 1,)
        Energy before each step and after the last.

    Raises
    ------
    ValueError
        If ``steps`` < 0, ``lr`` ≤ 0, or the energy is not finite at the start.
    """
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"steps: expected a non-negative integer, got {steps!r}")
    if not (isinstance(lr, numbers.Real) and lr > 0):
        raise ValueError(f"lr: expected a positive number, got {lr!r}")
    curve = SpacetimeSpline(za, zb, n_nodes)
    if init is not None:
        with torch.no_grad():
            curve.params.copy_(init)
    opt = torch.optim.Adam(curve.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(int(steps), 1)) if cosine else None
    hist = []
    for k in range(int(steps)):
        opt.zero_grad()
        e = energy_fn(curve(n_points))
        if k == 0 and not torch.isfinite(e):
            raise ValueError("energy_fn: the energy of the initial curve is not finite")
        hist.append(float(e.detach()))
        if callback is not None:
            callback(k, hist[-1])
        e.backward()
        opt.step()
        if sched is not None:
            sched.step()
    with torch.no_grad():
        hist.append(float(energy_fn(curve(n_points))))
    return curve, np.asarray(hist)


# ----------------------------------------------------------------------------- exact posteriors
class MixturePosterior1D:
    """Exact denoising posterior of 1-D Gaussian-mixture data Σ_k w_k N(m_k, s_k²) (continuous time).

    p(x_0 | x_t) is again a mixture: component k has variance c_k = s_k² σ² / (α² s_k² + σ²),
    mean a_k = c_k (m_k / s_k² + α x_t / σ²) and weight ∝ w_k N(x_t; α m_k, α² s_k² + σ²)
    (Bayes for each component; the public code's ``get_means_and_variances``).

    Parameters
    ----------
    weights, means, stds : sequence of float, length K
        Mixture weights (≥ 0, sum 1), component means and standard deviations (> 0).
        Default: the public code's toy, means (−2.5, 0.5, 2.5), std 0.75, weights
        (0.275, 0.45, 0.275).
    schedule : callable ``t -> (alpha, sigma)``
        Default :func:`linear_logsnr`.

    Raises
    ------
    ValueError
        For unequal lengths, negative / unnormalised weights or non-positive stds.
    """

    def __init__(self, weights=TOY_WEIGHTS, means=TOY_MEANS, stds=None, schedule=linear_logsnr):
        w = np.asarray(weights, np.float64)
        m = np.asarray(means, np.float64)
        s = np.full(m.shape, TOY_STD) if stds is None else np.asarray(stds, np.float64)
        if not (w.ndim == m.ndim == s.ndim == 1 and w.size == m.size == s.size and w.size >= 1):
            raise ValueError(f"weights: weights, means, stds must be 1-D of one length, got {w.shape}, {m.shape}, {s.shape}")
        if (w < 0).any() or abs(w.sum() - 1) > 1e-8:
            raise ValueError(f"weights: expected non-negative weights summing to 1, got {w.tolist()}")
        if (s <= 0).any():
            raise ValueError(f"stds: expected positive standard deviations, got {s.tolist()}")
        self.w, self.m, self.s = (torch.as_tensor(a) for a in (w, m, s))
        self.schedule = schedule

    def components(self, x, t):
        """Posterior mixture (weights (N, K), means (N, K), variances (N, K)) at x_t = x (N,), time t (N,)."""
        alpha, sigma = self.schedule(t)
        a, s2 = alpha[:, None], sigma[:, None] ** 2
        v0 = self.s.to(x) ** 2
        m0 = self.m.to(x)
        c = v0 * s2 / (a ** 2 * v0 + s2)
        mean = c * (m0 / v0 + a * x[:, None] / s2)
        pv = a ** 2 * v0 + s2
        logw = torch.log(self.w.to(x)) - 0.5 * (torch.log(2 * math.pi * pv) + (x[:, None] - a * m0) ** 2 / pv)
        return torch.softmax(logw, -1), mean, c

    def __call__(self, x, t):
        """(E[x_0 | x_t] (N, 1), E[x_0² | x_t] (N,)) for x of shape (N, 1) or (N,) and t (N,)."""
        xx = x.reshape(-1)
        r, mean, c = self.components(xx, t)
        m1 = (r * mean).sum(-1)
        return m1[:, None], (r * (c + mean ** 2)).sum(-1)

    def log_density(self, x0, x, t):
        """log p(x_0 | x_t = x) on a grid ``x0`` (G,) for scalar tensors x, t; returns (G,) (logsumexp, no underflow)."""
        r, mean, c = self.components(x.reshape(1), t.reshape(1))
        return torch.logsumexp(torch.log(r[0]) - (x0[:, None] - mean[0]) ** 2 / (2 * c[0])
                               - 0.5 * torch.log(2 * math.pi * c[0]), -1)

    def density(self, x0, x, t):
        """p(x_0 | x_t = x) on a grid ``x0`` (G,) for scalar tensors x, t; returns (G,)."""
        return self.log_density(x0, x, t).exp()


class EmpiricalPosterior:
    """Exact denoising posterior of the empirical distribution of a data set (the ideal denoiser).

    With x_t = α x_0 + σ ε and p_data = (1/N) Σ_i δ_{x^(i)}: weights
    w_i = softmax_i((α ⟨x_t, x^(i)⟩ − α²‖x^(i)‖²/2) / σ²), E[x_0 | x_t] = Σ_i w_i x^(i) and
    E[‖x_0‖² | x_t] = Σ_i w_i ‖x^(i)‖² — exact, no trace estimator needed. The time coordinate
    is the log-SNR λ (α, σ from :func:`logsnr_alpha_sigma`).

    Parameters
    ----------
    data : torch.Tensor or numpy.ndarray, shape (N, n) or (N, C, H, W)
        The data set (pixel scale [−1, 1]); flattened row-major.
    dtype : torch.dtype
        Working dtype (default float64).

    Raises
    ------
    ValueError
        If ``data`` is empty or not finite.
    """

    def __init__(self, data, dtype=torch.float64):
        X = torch.as_tensor(np.asarray(data) if not isinstance(data, torch.Tensor) else data).to(dtype)
        if X.ndim < 2 or X.shape[0] < 1:
            raise ValueError(f"data: expected a non-empty array (N, ...), got shape {tuple(X.shape)}")
        X = X.reshape(X.shape[0], -1)
        if not torch.isfinite(X).all():
            raise ValueError("data: contains NaN or inf")
        self.X, self.sq = X, (X * X).sum(1)

    def weights(self, x, lam):
        """Posterior weights (N_points, N_data) at x (N_points, n), log-SNR lam (N_points,)."""
        alpha, sigma = logsnr_alpha_sigma(lam)
        a, s2 = alpha[:, None], sigma[:, None] ** 2
        return torch.softmax((a * (x @ self.X.T) - 0.5 * a ** 2 * self.sq) / s2, -1)

    def __call__(self, x, lam):
        """(E[x_0 | x_t] (N, n), E[‖x_0‖² | x_t] (N,))."""
        w = self.weights(x, lam)
        return w @ self.X, w @ self.sq


class HutchinsonPosterior:
    """Denoiser mean and E[‖x_0‖² | x_t] of a network, differentiable to second order (paper eq. 22, 24).

    mean = D(x_t, t),  E[‖x_0‖² | x_t] = (σ_t²/α_t) · (1/P) Σ_p r_pᵀ J_x D(x_t, t) r_p + ‖D(x_t, t)‖²,

    the second-order Tweedie identity with Hutchinson's trace estimator. The P Rademacher
    probes r_p ∈ {−1, 1}ⁿ are drawn once at construction and shared by every point of a curve
    and every call (common random numbers), so an energy built on it is a deterministic,
    smooth function of the curve that an optimiser can minimise. Each r_pᵀ J_x D r_p is a
    vector–Jacobian product (``torch.autograd.grad``); when gradients are enabled it is taken
    with ``create_graph=True``, so the energy's gradient with respect to the curve (x *and* the
    time coordinate) is a double backward through the denoiser (reverse over reverse). All N
    points of a curve go through the denoiser in one batched call.

    Parameters
    ----------
    denoiser : callable ``(x (N, n), tcoord (N,)) -> (N, n)``
        E[x_0 | x_t] estimate (e.g. (x − σ ε̂(x, t)) / α of an ε-network), differentiable in
        both arguments, twice in x. Acts row-wise.
    schedule : callable ``tcoord (N,) -> (alpha (N,), sigma (N,))``
        The same schedule as the curve's energy (e.g. :func:`logsnr_alpha_sigma`).
    n : int, >= 1
        Data dimension (flattened sample size).
    n_probes : int, >= 1
        Number P of fixed probes.
    seed : int
        Seed of the probes' generator.
    dtype : torch.dtype
        Dtype of the probes (cast to the denoiser's output dtype when used).

    Raises
    ------
    ValueError
        For a non-callable ``denoiser`` / ``schedule``, ``n`` or ``n_probes`` < 1; on call, for
        x not (N, n), tcoord not (N,), or a denoiser output of the wrong shape.
    """

    def __init__(self, denoiser, schedule, n: int, n_probes: int = 1, seed: int = 0, dtype=torch.float64):
        if not callable(denoiser):
            raise ValueError(f"denoiser: expected a callable (x, tcoord) -> mean, got {type(denoiser).__name__}")
        if not callable(schedule):
            raise ValueError(f"schedule: expected a callable tcoord -> (alpha, sigma), got {type(schedule).__name__}")
        for name, v in (("n", n), ("n_probes", n_probes)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        self.denoiser, self.schedule, self.n = denoiser, schedule, int(n)
        gen = torch.Generator().manual_seed(int(seed))
        self.probes = (torch.randint(0, 2, (int(n_probes), self.n), generator=gen) * 2 - 1).to(dtype)

    def __call__(self, x, tcoord):
        """(E[x_0 | x_t] (N, n), E[‖x_0‖² | x_t] (N,)) at x (N, n), tcoord (N,); see the class docstring."""
        _tensor(x, "x", 2)
        _tensor(tcoord, "tcoord", 1)
        if x.shape[1] != self.n or tcoord.shape[0] != x.shape[0]:
            raise ValueError(f"x: expected shape (N, {self.n}) with tcoord (N,), got {tuple(x.shape)} and {tuple(tcoord.shape)}")
        outer = torch.is_grad_enabled()
        with torch.enable_grad():
            xx = x if (outer and x.requires_grad) else x.detach().requires_grad_(True)
            tc = tcoord if outer else tcoord.detach()
            D = self.denoiser(xx, tc)
            if not isinstance(D, torch.Tensor) or D.shape != x.shape:
                raise ValueError(f"denoiser: expected an output of shape {tuple(x.shape)}, "
                                 f"got {tuple(getattr(D, 'shape', ()))}")
            quad = torch.zeros(x.shape[0], dtype=D.dtype, device=D.device)
            for r in self.probes.to(D):
                g, = torch.autograd.grad((D * r).sum(), xx, create_graph=outer, retain_graph=True)
                quad = quad + (g * r).sum(-1)
            alpha, sigma = self.schedule(tc)
            trace = (sigma ** 2 / alpha).to(D) * quad / self.probes.shape[0]
            second = trace + (D * D).sum(-1)
        if not outer:
            D, second = D.detach(), second.detach()
        return D, second


# ----------------------------------------------------------------------------- closed forms
def gaussian_geodesic_1d(m, s, za, zb, n_points: int = 65, lam_min: float = -10.0, lam_max: float = 10.0):
    """Closed-form spacetime geodesic for 1-D Gaussian data N(m, s²) under :func:`linear_logsnr`.

    The denoising law is N(a(x, t), c(t)) with c = s²σ²/(α²s² + σ²) and
    a = m + α s²(x − α m)/(α² s² + σ²). The Fisher–Rao metric of N(a, c) is
    (da² + 2 dς²)/ς² (ς = √c): in u = a/√2 the hyperbolic half-plane times 2, whose geodesics
    are half-circles centred on ς = 0 (vertical lines when u_a = u_b). The spacetime geodesic
    is that half-circle mapped back to (t, x); it stays inside spacetime when its top is
    below ς = s (the posterior std at t = 1).

    Parameters
    ----------
    m, s : float
        Data mean and standard deviation (s > 0).
    za, zb : sequence of two floats
        End points (t, x_t), t ∈ (0, 1).
    n_points : int
        Points along the geodesic (uniform in the hyperbolic arc length).
    lam_min, lam_max : float
        Schedule of :func:`linear_logsnr`.

    Returns
    -------
    path : numpy.ndarray, float64, shape (n_points, 2)
        (t, x) along the geodesic.
    length : float
        Fisher–Rao distance √2 · arccosh(1 + ((u_b − u_a)² + (ς_b − ς_a)²)/(2 ς_a ς_b)).

    Raises
    ------
    ValueError
        If s ≤ 0, an end point is not in (0, 1) × R, or the geodesic leaves spacetime.
    """
    if not s > 0:
        raise ValueError(f"s: expected a positive standard deviation, got {s!r}")
    za, zb = np.asarray(za, np.float64), np.asarray(zb, np.float64)
    for name, z in (("za", za), ("zb", zb)):
        if z.shape != (2,) or not 0 < z[0] < 1:
            raise ValueError(f"{name}: expected (t, x) with t in (0, 1), got {z.tolist()}")

    def al_si(t):
        lam = lam_max + (lam_min - lam_max) * t
        return np.sqrt(1 / (1 + np.exp(-lam))), np.sqrt(1 / (1 + np.exp(lam)))

    def to_hyp(z):
        a, g = al_si(z[0])
        d = a * a * s * s + g * g
        return (m + a * s * s * (z[1] - a * m) / d) / np.sqrt(2), s * g / np.sqrt(d)

    (u1, q1), (u2, q2) = to_hyp(za), to_hyp(zb)
    length = float(np.sqrt(2) * np.arccosh(1 + ((u2 - u1) ** 2 + (q2 - q1) ** 2) / (2 * q1 * q2)))
    # points at equal hyperbolic arc length: the Möbius picture; parametrise by angle on the circle
    if abs(u2 - u1) < 1e-12 * max(1.0, abs(u1)):
        qs = q1 * (q2 / q1) ** np.linspace(0, 1, n_points)
        us = np.full(n_points, u1)
    else:
        c = (u2 ** 2 - u1 ** 2 + q2 ** 2 - q1 ** 2) / (2 * (u2 - u1))
        R = np.hypot(u1 - c, q1)
        th1, th2 = np.arctan2(q1, u1 - c), np.arctan2(q2, u2 - c)
        # arc length on the half-circle: ds = dθ / sin θ ⇒ s(θ) = log tan(θ/2)
        g1, g2 = np.log(np.tan(th1 / 2)), np.log(np.tan(th2 / 2))
        th = 2 * np.arctan(np.exp(np.linspace(g1, g2, n_points)))
        us, qs = c + R * np.cos(th), R * np.sin(th)
    if qs.max() >= s:
        raise ValueError("zb: the hyperbolic geodesic between these end points leaves spacetime (ς ≥ s)")
    # back to (t, x): ς² = s²σ²/(s² + σ²(1 − s²)) (α² = 1 − σ²) ⇒ σ² = ς² s² / (s² − ς²(1 − s²))
    q2s = qs ** 2
    sig2 = q2s * s * s / (s * s - q2s * (1 - s * s))
    alpha2 = 1 - sig2
    lam = np.log(alpha2 / sig2)
    t = (lam - lam_max) / (lam_min - lam_max)
    a = np.sqrt(alpha2)
    d = alpha2 * s * s + sig2
    x = a * m + (us * np.sqrt(2) - m) * d / (a * s * s)
    return np.stack([t, x], 1), length


def hutchinson_trace(fn, x, n_probes: int = 1, generator=None):
    """Hutchinson estimate of tr J_x fn(x) per sample, with Rademacher probes (VJPs).

    Parameters
    ----------
    fn : callable ``(B, n) -> (B, n)``
        A batched map acting row-wise (e.g. a denoiser at fixed noise level).
    x : torch.Tensor, shape (B, n)
    n_probes : int, >= 1
    generator : torch.Generator, optional

    Returns
    -------
    mean : torch.Tensor, shape (B,)
        (1/P) Σ_p r_pᵀ J r_p.
    stderr : torch.Tensor, shape (B,)
        Standard error over the probes (0 when ``n_probes`` = 1).

    Raises
    ------
    ValueError
        If ``x`` is not (B, n) or ``n_probes`` < 1.
    """
    _tensor(x, "x", 2)
    if isinstance(n_probes, bool) or not isinstance(n_probes, numbers.Integral) or n_probes < 1:
        raise ValueError(f"n_probes: expected a positive integer, got {n_probes!r}")
    est = []
    for _ in range(int(n_probes)):
        r = torch.randint(0, 2, x.shape, generator=generator).to(x) * 2 - 1
        xx = x.detach().requires_grad_(True)
        y = fn(xx)
        g, = torch.autograd.grad((y * r).sum(), xx)
        est.append((g * r).sum(-1))
    E = torch.stack(est)
    se = E.std(0) / math.sqrt(E.shape[0]) if E.shape[0] > 1 else torch.zeros_like(E[0])
    return E.mean(0), se


def metric_space_block_gaussian(lam, alpha_bar):
    """Eigenvalue of the spacetime metric's space block for Gaussian data of variance λ, per step.

    G_xx = (α²/σ⁴) Cov(x_0 | x_t) and Cov = λ v/(ᾱ λ + v) along an eigen-direction, so
    g_t(λ) = ᾱ_t λ / (v_t (ᾱ_t λ + v_t)) (ᾱ_t = α_t², v_t = σ_t²).

    Parameters
    ----------
    lam : float or array_like, > 0
    alpha_bar : array_like, shape (T+1,)
        A :mod:`pifs.schedules` schedule; steps t = 1..T on the last axis.

    Returns
    -------
    numpy.ndarray, float64, shape ``np.shape(lam) + (T,)``

    Raises
    ------
    ValueError
        If λ ≤ 0 or the schedule is invalid.
    """
    from .schedules import validate

    lam = np.asarray(lam, np.float64)
    if (lam <= 0).any() or np.isnan(lam).any():
        raise ValueError("lam: expected positive variances")
    a = validate(alpha_bar)[1:]
    v = 1 - a
    with np.errstate(divide="ignore"):
        return a * lam[..., None] / (v * (a * lam[..., None] + v))


def bridge_threshold(alpha_bar):
    """The bridge J_x Φ_t = √(v_{t−1}/v_t) I + |b_t| √v_t G_xx: the metric level where f_t = 1.

    For the exact score, J_x Φ_t = c_t I + |b_t| √v_t G_xx(x_t, t) with c_t = √(v_{t−1}/v_t),
    so the Rayleigh quotient of J Φ_t along a unit direction u exceeds 1 iff
    uᵀ G_xx u > g*_t = (1 − c_t) / (|b_t| √v_t). For Gaussian data of variance λ,
    g_t(λ*(t)) = g*_t (λ*(t) of :func:`pifs.geometry.expansion_threshold`).

    Parameters
    ----------
    alpha_bar : array_like, shape (T+1,)

    Returns
    -------
    c : numpy.ndarray, float64, shape (T,)
        √(v_{t−1}/v_t).
    k : numpy.ndarray, float64, shape (T,)
        |b_t| √v_t, the coefficient of G_xx.
    g_star : numpy.ndarray, float64, shape (T,)
        (1 − c_t)/k_t; +inf where ᾱ_t = 0.

    Raises
    ------
    ValueError
        For an invalid schedule.
    """
    from .geometry import score_step_coefficient
    from .schedules import validate

    a = validate(alpha_bar)
    v_prev, v_t = 1 - a[:-1], 1 - a[1:]
    c = np.sqrt(v_prev / v_t)
    k = np.abs(score_step_coefficient(a)) * np.sqrt(v_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (1 - c) / k
    return c, k, g
