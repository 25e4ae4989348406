r"""Likelihoods: what an observation y says about the clean signal x_0, as log p(y | x_0).

A :class:`Likelihood` goes where an operator goes (``smc_sample(score, sde, y, likelihood, proposal="twisted")``).
It defines ``log_prob(y, x0)``: log p(y | x_0) per row, ``(n,)``, for ``x0: (n, *event_shape)`` and the matching
rows ``y: (n, ...)``, differentiable in x_0. The twisted proposal (TDS, Wu et al. 2023) conditions on any such
likelihood: at time t it weighs and steers the particles with a *twist*, an approximation of p(y | x_t),

    log p~_t(y | x_t) = log_twist(y, x0_hat(x_t), var_t),

where x0_hat is Tweedie's denoiser and ``var_t`` (broadcastable to x_0) is the twisted proposal's model of
Var[x_0 | x_t] (:class:`smcdiff.proposals.Twisted`'s ``twist_variance``; at the last step, the last reverse
step's own variance). The default twist is the likelihood at the denoiser, ``log_prob(y, x0_hat)``, as in TDS;
a likelihood may declare a better one (a variance inflation, as :class:`GaussianNonlinear` and
:class:`Quantised` do). The twist changes how many particles are needed, never the limit: the last weight
uses ``log_prob`` itself, so the weighted particles converge, as M grows, to the discretised model's
posterior p(x_0) p(y | x_0) / p(y), and the log-evidence estimates log p(y) unbiasedly in p(y).

Built-ins:

- :class:`GaussianLinear`: y = A x + sigma_y eps for an operator of :mod:`smcdiff.operators`; every proposal
  takes it, and the samplers treat it exactly as ``(operator, noise_std)``;
- :class:`Classifier`: y a class label, p(y | x_0) the (tempered) softmax of a classifier;
- :class:`GaussianNonlinear`: y = f(x) + sigma_y eps for a differentiable f (saturation, magnitudes, ...);
- :class:`Quantised`: y the bin of x + sigma_y eps among fixed edges (interval censoring), coordinate-wise.

``sample(x0, generator)`` draws y ~ p(y | x_0), which simulation-based calibration
(:func:`smcdiff.calibration.simulate_problems`) uses to simulate observations.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Callable

import torch
from torch import Tensor, nn

from .densities import normal_log_prob
from .operators import Operator

__all__ = ["Likelihood", "GaussianLinear", "Classifier", "GaussianNonlinear", "Quantised", "log_interval_prob"]


class Likelihood(ABC):
    """log p(y | x_0), differentiable in x_0; subclass and define :meth:`log_prob`.

    Attributes
    ----------
    event_shape : the shape of one x_0, or None to take it from the score (``score.event_shape``).
    linear_gaussian : True only for :class:`GaussianLinear`, which every proposal supports; the bootstrap and
        MCGdiff-style proposals refuse every other likelihood.
    """

    event_shape: tuple[int, ...] | None = None
    linear_gaussian: bool = False

    @abstractmethod
    def log_prob(self, y: Tensor, x0: Tensor) -> Tensor:
        """log p(y | x_0) per row, ``(n,)``, for ``x0: (n, *event_shape)`` and ``y: (n, ...)``; differentiable in ``x0``."""

    def log_twist(self, y: Tensor, x0_hat: Tensor, var: Tensor) -> Tensor:
        """The twist log p~(y | x_t) per row, ``(n,)``, from Tweedie's denoiser ``x0_hat: (n, *event_shape)`` and
        the proposal's model of Var[x_0 | x_t], ``var`` (broadcastable to x0_hat). Default: ``log_prob(y, x0_hat)``."""
        return self.log_prob(y, x0_hat)

    def sample(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """y ~ p(y | x_0) for every row of ``x0`` (used to simulate problems for calibration)."""
        raise NotImplementedError(f"{type(self).__name__} does not define sample(x0, generator), so it cannot simulate observations")

    def check_y(self, y: Tensor) -> None:
        """A ``ValueError`` naming ``y`` if it cannot be this likelihood's observations (one row per problem)."""
        if not isinstance(y, Tensor) or y.ndim < 1:
            raise ValueError(f"y must be a tensor with one row per problem, (B, ...), got {type(y).__name__}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _positive(name: str, value: object, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} finite number, got {value!r}")
    return float(value)


def _event_sum(v: Tensor) -> Tensor:
    """Sum over every dimension but the first, in float64: ``(n, ...) -> (n,)``."""
    return v.double().reshape(v.shape[0], -1).sum(1)


class GaussianLinear(Likelihood):
    """y = A x + sigma_y eps for an operator of :mod:`smcdiff.operators` (the observation every proposal takes).

    ``log_prob`` is the density of the observed singular coefficients y_bar = U^T y / s, which the samplers'
    log-evidence also reports: sum over observed coefficients of log N(y_bar_i; (V^T x_0)_i, sigma_y^2 / s_i^2).
    It needs ``noise_std > 0``; the samplers take ``noise_std = 0`` (a noiseless observation) by the operator.
    """

    linear_gaussian = True

    def __init__(self, operator: Operator, noise_std: float = 0.0) -> None:
        if not isinstance(operator, Operator):
            raise ValueError(f"operator must be an smcdiff.operators.Operator, got {type(operator).__name__}")
        self.operator = operator
        self.noise_std = _positive("noise_std", noise_std, allow_zero=True)
        self.event_shape = tuple(operator.in_shape)

    def log_prob(self, y: Tensor, x0: Tensor) -> Tensor:
        if self.noise_std == 0:
            raise ValueError("a noiseless GaussianLinear observation has no density; give noise_std > 0")
        op = self.operator
        obs = torch.broadcast_to(op.observed.to(x0.device), (x0.shape[0], *op.coef_shape))
        s = op._like(op.s, x0)
        var = self.noise_std**2 / torch.where(obs, s, torch.ones_like(s)) ** 2
        terms = normal_log_prob(op.coefficients(y).double(), op.Vt(x0).double(), torch.broadcast_to(var, obs.shape).double())
        return _event_sum(torch.where(obs, terms, torch.zeros_like(terms)))

    def sample(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        ax = self.operator.A(x0)
        return ax + self.noise_std * torch.randn(ax.shape, generator=generator, dtype=ax.dtype, device=ax.device)

    def __repr__(self) -> str:
        return f"GaussianLinear({self.operator!r}, noise_std={self.noise_std:g})"


class Classifier(Likelihood):
    """y a class label (``(n,)`` int64), p(y | x_0) = softmax(logits(x_0) / temperature)[y].

    Parameters
    ----------
    model : a classifier ``(n, *event_shape) -> (n, classes)`` logits, differentiable in its input (e.g. the
        shipped :func:`smcdiff.classifier.load_digit_classifier`). It is put in eval mode and never trained here.
    temperature : logits are divided by it; above 1 flattens p(y | x_0), below 1 sharpens it.
    event_shape : the shape of one x_0 (default: the score's).
    """

    def __init__(self, model: Callable[[Tensor], Tensor], temperature: float = 1.0, event_shape: tuple[int, ...] | None = None) -> None:
        if not callable(model):
            raise ValueError(f"model must be a callable classifier x -> logits, got {type(model).__name__}")
        self.model = model.eval() if isinstance(model, nn.Module) else model
        self.temperature = _positive("temperature", temperature)
        self.event_shape = None if event_shape is None else tuple(event_shape)

    def check_y(self, y: Tensor) -> None:
        if not isinstance(y, Tensor) or y.ndim != 1 or y.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"y must be class labels, an int64 tensor of shape (B,), got {getattr(y, 'dtype', type(y).__name__)} "
                             f"of shape {tuple(getattr(y, 'shape', ()))}")

    def logits(self, x0: Tensor) -> Tensor:
        """Tempered logits ``(n, classes)`` in float64."""
        logits = self.model(x0)
        if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != x0.shape[0]:
            raise ValueError(f"the classifier must return logits (n, classes); got shape {tuple(getattr(logits, 'shape', ()))} "
                             f"for {x0.shape[0]} inputs")
        return logits.double() / self.temperature

    def log_prob(self, y: Tensor, x0: Tensor) -> Tensor:
        log_p = torch.log_softmax(self.logits(x0), dim=-1)
        if bool(((y < 0) | (y >= log_p.shape[1])).any()):
            raise ValueError(f"y holds labels outside 0..{log_p.shape[1] - 1}")
        return log_p.gather(1, y.long().reshape(-1, 1))[:, 0]

    def sample(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            probs = torch.softmax(self.logits(x0), dim=-1)
        return torch.multinomial(probs, 1, generator=generator)[:, 0]

    def __repr__(self) -> str:
        return f"Classifier({type(self.model).__name__}, temperature={self.temperature:g})"


class GaussianNonlinear(Likelihood):
    """y = f(x) + sigma_y eps for any differentiable f: ``(n, *event_shape) -> (n, *observation_shape)``.

    The twist inflates the noise by the proposal's posterior variance of x_0, averaged over coordinates:
    N(y; f(x0_hat), sigma_y^2 + mean(var_t)), exact for f the identity and a first-order guess when f's slope
    is near 1 (``inflate=False``: plain N(y; f(x0_hat), sigma_y^2), the TDS default).
    """

    def __init__(self, f: Callable[[Tensor], Tensor], noise_std: float, inflate: bool = True,
                 event_shape: tuple[int, ...] | None = None) -> None:
        if not callable(f):
            raise ValueError(f"f must be a callable x -> f(x), got {type(f).__name__}")
        self.f = f
        self.noise_std = _positive("noise_std", noise_std)
        self.inflate = bool(inflate)
        self.event_shape = None if event_shape is None else tuple(event_shape)

    def _f(self, x0: Tensor) -> Tensor:
        out = self.f(x0)
        if not isinstance(out, Tensor) or out.shape[:1] != x0.shape[:1]:
            raise ValueError(f"f must return one row per input, (n, ...); got shape {tuple(getattr(out, 'shape', ()))} "
                             f"for {x0.shape[0]} inputs")
        return out

    def _log_normal(self, y: Tensor, x0: Tensor, var: float | Tensor) -> Tensor:
        fx = self._f(x0)
        if y.shape != fx.shape:
            raise ValueError(f"y has shape {tuple(y.shape)} but f(x) has shape {tuple(fx.shape)}")
        return _event_sum(normal_log_prob(y.double(), fx.double(), torch.as_tensor(var, dtype=torch.float64, device=y.device)))

    def log_prob(self, y: Tensor, x0: Tensor) -> Tensor:
        return self._log_normal(y, x0, self.noise_std**2)

    def log_twist(self, y: Tensor, x0_hat: Tensor, var: Tensor) -> Tensor:
        extra = var.double().mean() if self.inflate else 0.0
        return self._log_normal(y, x0_hat, self.noise_std**2 + extra)

    def sample(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            fx = self._f(x0)
        return fx + self.noise_std * torch.randn(fx.shape, generator=generator, dtype=fx.dtype, device=fx.device)

    def __repr__(self) -> str:
        return f"GaussianNonlinear({getattr(self.f, '__name__', type(self.f).__name__)}, noise_std={self.noise_std:g})"


def log_interval_prob(low: Tensor, high: Tensor) -> Tensor:
    """log(Phi(high) - Phi(low)) elementwise for standardised bounds ``low <= high`` (infinities allowed),
    accurate in both tails: computed on the side of zero where the interval lies."""
    flip = low > 0  # the interval lies right of 0: Phi(b) - Phi(a) = Phi(-a) - Phi(-b)
    a = torch.where(flip, -high, low)
    b = torch.where(flip, -low, high)
    # an open end (a = -inf or b = +inf; never both) gets a finite stand-in so that no branch of the
    # selection below produces inf or NaN, whose gradients would poison the selected branch
    open_low, open_high = torch.isinf(a), torch.isinf(b)
    a_safe = torch.where(open_low, torch.where(open_high, torch.zeros_like(b), b) - 1.0, a)
    b_safe = torch.where(open_high, a_safe + 1.0, b)
    log_b, log_a = torch.special.log_ndtr(b_safe), torch.special.log_ndtr(a_safe)
    d = (log_a - log_b).clamp_max(-1e-300)
    # log(1 - e^d), d < 0, stably on both sides of -log 2
    log1mexp = torch.where(d > -math.log(2.0), torch.log(-torch.expm1(d.clamp_min(-math.log(2.0)))),
                           torch.log1p(-torch.exp(d.clamp_max(-math.log(2.0)))))
    closed = log_b + log1mexp
    return torch.where(open_low, log_b, torch.where(open_high, torch.special.log_ndtr(-a_safe), closed))


class Quantised(Likelihood):
    """y the bin of x + sigma_y eps among fixed ``edges``, coordinate-wise (interval censoring).

    ``y`` has x's shape and holds bin indices 0..len(edges) (as floats or integers): bin k is
    ``(edges[k - 1], edges[k]]`` with edges[-1] = -inf and edges[len] = +inf, so values beyond the extreme
    edges saturate. p(y = k | x_0) = Phi((e_k - x_0) / sigma_y) - Phi((e_{k-1} - x_0) / sigma_y) per coordinate.
    The twist is the same with sigma_y^2 + var_t: exact when x_0 given x_t is Gaussian with that variance.

    Parameters
    ----------
    edges : increasing interior thresholds ``(K,)`` (K + 1 bins).
    noise_std : sigma_y > 0, the noise before quantisation (dither); it makes p(y | x_0) differentiable.
    """

    def __init__(self, edges: Tensor | list[float], noise_std: float, event_shape: tuple[int, ...] | None = None) -> None:
        edges = torch.as_tensor(edges, dtype=torch.float64)
        if edges.ndim != 1 or edges.numel() < 1 or not bool(torch.isfinite(edges).all()) or bool((edges.diff() <= 0).any()):
            raise ValueError(f"edges must be a non-empty increasing 1-d sequence of finite thresholds, got {edges.tolist()}")
        self.edges = edges
        if isinstance(noise_std, (int, float)) and not isinstance(noise_std, bool) and noise_std == 0:
            raise ValueError("noise_std must be positive: a noiseless quantisation has no gradient in x_0 for the "
                             "twisted proposal to follow (use a small dither, e.g. noise_std=0.02)")
        self.noise_std = _positive("noise_std", noise_std)
        self.event_shape = None if event_shape is None else tuple(event_shape)

    @classmethod
    def uniform(cls, levels: int, noise_std: float, low: float = -1.0, high: float = 1.0, **kw) -> "Quantised":
        """``levels`` equal bins on [low, high] (the extreme bins open): edges low + (high - low) i / levels."""
        if not isinstance(levels, int) or isinstance(levels, bool) or levels < 2:
            raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
        if not high > low:
            raise ValueError(f"high must exceed low, got low={low!r}, high={high!r}")
        return cls([low + (high - low) * i / levels for i in range(1, levels)], noise_std, **kw)

    def centres(self, y: Tensor) -> Tensor:
        """A representative value per bin (the midpoint; the extreme bins one bin width beyond their edge), y's shape."""
        e = self.edges.to(y.device)
        width = e.diff().mean() if e.numel() > 1 else torch.tensor(1.0, dtype=e.dtype, device=e.device)
        ext = torch.cat([e[:1] - width, e, e[-1:] + width])
        mid = (ext[:-1] + ext[1:]) / 2
        return mid[y.long()].to(y.dtype if y.is_floating_point() else torch.float32)

    def check_y(self, y: Tensor) -> None:
        super().check_y(y)
        k = self.edges.numel()
        if y.is_floating_point() and not bool((y == y.round()).all()):
            raise ValueError("y must hold bin indices (whole numbers 0..len(edges))")
        if bool(((y < 0) | (y > k)).any()):
            raise ValueError(f"y must hold bin indices 0..{k}, got values in [{y.min().item():g}, {y.max().item():g}]")

    def _log_bins(self, y: Tensor, x0: Tensor, std: Tensor | float) -> Tensor:
        if y.shape != x0.shape:
            raise ValueError(f"y has shape {tuple(y.shape)} but x0 has shape {tuple(x0.shape)}; bins are per coordinate")
        inf = torch.tensor([math.inf], dtype=torch.float64, device=x0.device)
        ext = torch.cat([-inf, self.edges.to(x0.device), inf])
        k = y.long()
        x = x0.double()
        lo, hi = (ext[k] - x) / std, (ext[k + 1] - x) / std
        return _event_sum(log_interval_prob(lo, hi))

    def log_prob(self, y: Tensor, x0: Tensor) -> Tensor:
        return self._log_bins(y, x0, self.noise_std)

    def log_twist(self, y: Tensor, x0_hat: Tensor, var: Tensor) -> Tensor:
        return self._log_bins(y, x0_hat, (self.noise_std**2 + var.double()).sqrt())

    def quantise(self, x: Tensor) -> Tensor:
        """The bin index of every coordinate of ``x`` (no noise), as ``x``'s dtype: what a quantised image shows."""
        return torch.bucketize(x.double(), self.edges.to(x.device)).to(x.dtype)

    def sample(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.quantise(x0 + self.noise_std * torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device))

    def __repr__(self) -> str:
        return f"Quantised({len(self.edges) + 1} bins, noise_std={self.noise_std:g})"
