r"""Denoisers D(x, sigma) of the variance-exploding convention as scores, and scores as denoisers.

Many libraries ship their networks as *denoisers*: EDM (Karras et al. 2022), k-diffusion and deepinv
all call ``D(x, sigma) ~ E[x_0 | x_0 + sigma z = x]``, with ``z ~ N(0, I)`` and ``x_0`` in the library's
own data range (deepinv: [0, 1]; EDM and k-diffusion: [-1, 1]). smcdiff samples data in [-1, 1] with a
forward SDE x_t = alpha(t) x_0 + sigma(t) eps. The two meet through two exact identities.

**VE variable.** x_t / alpha = x_0 + (sigma / alpha) eps, so the SDE's x_t is a VE-noisy sample at
noise level varsigma(t) = sigma(t) / alpha(t) after division by alpha(t) (alpha = 1 for VE).

**Data range.** With the affine map u = a x + b from [-1, 1] onto the denoiser's range [lo, hi],
a = (hi - lo) / 2 and b = (hi + lo) / 2, a VE-noisy sample at level varsigma becomes u_0 + a varsigma z:
the denoiser is called at noise level a varsigma, and its estimate maps back by x0_hat = (u0_hat - b) / a.

Then Tweedie's formula gives the score of the diffused data (the ``"sample"`` hook of
:class:`smcdiff.score.ScoreModel`),

    s(x_t, t) = -(x_t - alpha x0_hat) / sigma^2,
    x0_hat = (D(a x_t / alpha + b, a sigma / alpha) - b) / a,

which for VE and the range [-1, 1] is s = (D(x, sigma) - x) / sigma^2. :class:`DenoiserScore` is this
map; :func:`as_denoiser` (:class:`ScoreDenoiser`) is its inverse: it finds the time t with
varsigma(t) = sigma / a by bisection and returns a (x0_hat from Tweedie) + b.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal, get_args

import torch
from torch import Tensor, nn

from smcdiff.score import ScoreModel
from smcdiff.sde import SDE, VE

__all__ = ["DenoiserScore", "ScoreDenoiser", "as_denoiser", "SigmaShape"]

SigmaShape = Literal["vector", "broadcast"]
Denoiser = Callable[[Tensor, Tensor], Tensor]

_GRID = 1000  # times at which a schedule's noise-level range and monotonicity are checked


def _data_range(data_range: Any) -> tuple[float, float]:
    """``(lo, hi)`` as floats, or ``ValueError`` naming ``data_range``."""
    try:
        lo, hi = (float(v) for v in data_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"data_range must be a pair (low, high) such as (0, 1) or (-1, 1), got {data_range!r}"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"data_range must be a finite pair (low, high) with low < high, got {data_range!r}")
    return lo, hi


def _positive(name: str, value: Any) -> float:
    """A positive finite number (a Python number or a one-element tensor, e.g. k-diffusion's
    ``model.sigma_min``) as a float, or ``ValueError`` naming ``name``."""
    try:
        out = math.nan if isinstance(value, (bool, str, bytes)) else float(value)
    except (TypeError, ValueError, RuntimeError):
        out = math.nan
    if not 0 < out < math.inf:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return out


def _scalar_sde(sde: Any, name: str = "sde") -> SDE:
    if not isinstance(sde, SDE):
        raise ValueError(f"{name} must be an smcdiff SDE (VE, VP, TabulatedVP, ...), got {type(sde).__name__}")
    if sde.param_shape != torch.Size([]):
        raise ValueError(
            f"{name} has a per-coordinate schedule of shape {tuple(sde.param_shape)}; a denoiser takes one noise "
            "level per sample, so only SDEs with scalar schedules can be used"
        )
    return sde


def _noise_levels(sde: SDE, t: Tensor) -> Tensor:
    """varsigma(t) = sigma(t) / alpha(t), shape ``(n,)`` in ``t``'s dtype (smcdiff units)."""
    c = sde.coefficients(t)
    return (c.sigma2.sqrt() / c.alpha).reshape(-1)


def _schedule_range(sde: SDE) -> tuple[float, float, bool]:
    """min and max of varsigma over ``sde``'s times, and whether varsigma is non-decreasing in t."""
    levels = _noise_levels(sde, sde.time_grid(_GRID, dtype=torch.float64).flip(0))
    return levels.min().item(), levels.max().item(), bool((levels[1:] >= levels[:-1]).all())


def _module_placement(fn: Any) -> tuple[torch.device, torch.dtype] | None:
    """Device and dtype of an ``nn.Module``'s first floating parameter (what its inputs must be cast to)."""
    if isinstance(fn, nn.Module):
        for p in fn.parameters():
            if p.is_floating_point():
                return p.device, p.dtype
    return None


class DenoiserScore(ScoreModel):
    r"""A variance-exploding denoiser ``D(x, sigma)`` as a score for an smcdiff SDE.

    Parameters
    ----------
    denoiser : callable ``D(x, sigma) -> Tensor``
        ``x: (n, *event_shape)`` in the denoiser's ``data_range`` plus Gaussian noise of std ``sigma``;
        returns its estimate of the clean data, ``(n, *event_shape)``. An ``nn.Module`` receives its
        inputs on the device of its parameters (and is registered as a submodule).
    sigma_min, sigma_max : float (or one-element tensors)
        The noise levels the denoiser was trained for, **in its own data units**
        (e.g. EDM: 0.002 and 80 in [-1, 1]). A call outside ``[sigma_min, sigma_max]`` (up to a relative
        ``tolerance``) raises ``ValueError``.
    data_range : (low, high)
        The denoiser's data range: ``(0, 1)`` (deepinv) or ``(-1, 1)`` (EDM, k-diffusion); smcdiff
        always samples in [-1, 1] and maps x affinely, u = a x + b with a = (high - low) / 2,
        b = (high + low) / 2, so that sigma is scaled by ``a``.
    sde : SDE, optional
        The forward SDE to sample with. Default: ``VE(sigma_min / a, sigma_max / a)``, the denoiser's
        own noise range. Any SDE with scalar schedules works (``VP``, ``TabulatedVP``, ``OU``, ...):
        x_t = alpha x_0 + sigma eps is handed to the denoiser as x_t / alpha at level sigma / alpha,
        which must stay inside the declared range on ``[sde.eps, sde.T]`` (checked here).
    sigma_shape : {"vector", "broadcast"}
        How the denoiser takes its noise levels: ``"vector"``, a tensor of shape ``(n,)`` (k-diffusion,
        EDM, deepinv); ``"broadcast"``, shape ``(n, 1, ..., 1)`` with the rank of ``x``.
    event_shape : tuple of int, optional
        The data's event shape; when given, calls with another shape raise ``ValueError``.
    tolerance : float
        Relative slack of the range check, default 1e-3.
    dtype : torch.dtype, optional
        The dtype the denoiser is called in. Default: the dtype of its floating parameters when it is
        an ``nn.Module`` that has any (a float32 network then accepts float64 particles), else ``x``'s.
        Give ``torch.float64`` for a denoiser that handles dtypes itself, such as :class:`ScoreDenoiser`,
        to keep float64 arithmetic around a float32 network.

    Notes
    -----
    The score is (module docstring) s(x_t, t) = -(x_t - alpha x0_hat) / sigma^2 with
    x0_hat = (D(a x_t / alpha + b, a sigma / alpha) - b) / a; the last step is the ``"sample"``
    conversion of :class:`smcdiff.score.ScoreModel`. The score has ``x``'s dtype and device.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        *,
        sigma_min: float,
        sigma_max: float,
        data_range: tuple[float, float] = (-1.0, 1.0),
        sde: SDE | None = None,
        sigma_shape: SigmaShape = "vector",
        event_shape: tuple[int, ...] | None = None,
        tolerance: float = 1e-3,
        dtype: torch.dtype | None = None,
    ) -> None:
        if not callable(denoiser):
            raise ValueError(f"denoiser must be callable as D(x, sigma), got {type(denoiser).__name__}")
        lo, hi = _data_range(data_range)
        sigma_min, sigma_max = _positive("sigma_min", sigma_min), _positive("sigma_max", sigma_max)
        if not sigma_min < sigma_max:
            raise ValueError(f"need sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
        if sigma_shape not in get_args(SigmaShape):
            raise ValueError(f"sigma_shape must be one of {get_args(SigmaShape)}, got {sigma_shape!r}")
        if not (isinstance(tolerance, (int, float)) and 0 <= tolerance < 1):
            raise ValueError(f"tolerance must lie in [0, 1), got {tolerance!r}")
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating torch.dtype or None, got {dtype!r}")
        a, b = (hi - lo) / 2, (hi + lo) / 2
        sde = VE(sigma_min=sigma_min / a, sigma_max=sigma_max / a) if sde is None else _scalar_sde(sde)
        low, high, _ = _schedule_range(sde)
        if a * low < sigma_min * (1 - tolerance) or a * high > sigma_max * (1 + tolerance):
            raise ValueError(
                f"sde {sde!r} reaches noise levels sigma/alpha in [{a * low:.4g}, {a * high:.4g}] (denoiser units) "
                f"on [eps, T], outside the denoiser's [sigma_min, sigma_max] = [{sigma_min:g}, {sigma_max:g}]; "
                "use an SDE with a smaller T or a larger eps"
            )
        if event_shape is not None:
            try:
                event_shape = tuple(int(d) for d in event_shape)
            except (TypeError, ValueError):
                raise ValueError(f"event_shape must be a tuple of positive sizes, got {event_shape!r}") from None
            if not event_shape or any(d < 1 for d in event_shape):
                raise ValueError(f"event_shape must be a non-empty tuple of positive sizes, got {event_shape!r}")
        super().__init__(sde, "sample")
        self.denoiser = denoiser
        self.data_range = (lo, hi)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.sigma_shape = sigma_shape
        self.tolerance = float(tolerance)
        self._a, self._b = a, b
        self.call_dtype = dtype
        if event_shape is not None:
            self.event_shape = event_shape

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        """x0_hat in [-1, 1] units at ``x: (n, *event_shape)``, ``t: (n,)``."""
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 2:
            raise ValueError("x must be a floating-point tensor of shape (n, *event_shape)")
        expected = getattr(self, "event_shape", None)
        if expected is not None and tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must have shape (n, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        c = self.sde.coefficients(t, x.ndim - 1, like=x)  # (n, 1, ..., 1)
        level = self._a * c.sigma2.sqrt() / c.alpha  # the denoiser's noise level, its own units
        self._check_levels(level)
        u = self._a * (x / c.alpha) + self._b
        return (self._denoise(u, level) - self._b) / self._a

    def _check_levels(self, level: Tensor) -> None:
        lo, hi = self.sigma_min * (1 - self.tolerance), self.sigma_max * (1 + self.tolerance)
        if not torch.isfinite(level).all() or (level < lo).any() or (level > hi).any():
            raise ValueError(
                f"t gives denoiser noise levels in [{level.min().item():.4g}, {level.max().item():.4g}], outside "
                f"the declared [sigma_min, sigma_max] = [{self.sigma_min:g}, {self.sigma_max:g}]"
            )

    def _denoise(self, u: Tensor, level: Tensor) -> Tensor:
        placement = _module_placement(self.denoiser)  # looked up per call: the module may have been moved
        device, dtype = placement if placement is not None else (u.device, u.dtype)
        dtype = dtype if self.call_dtype is None else self.call_dtype
        sigma = level.reshape(-1) if self.sigma_shape == "vector" else level
        out = self.denoiser(u.to(device, dtype), sigma.to(device, dtype))
        if not isinstance(out, Tensor) or tuple(out.shape) != tuple(u.shape):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"denoiser returned {got} for an input of shape {tuple(u.shape)}; it must return x's shape")
        if not torch.isfinite(out).all():
            raise ValueError("denoiser returned non-finite values")
        return out.to(u.device, u.dtype)

    def extra_repr(self) -> str:
        return (
            f"data_range={self.data_range}, sigma=[{self.sigma_min:g}, {self.sigma_max:g}], "
            f"sigma_shape={self.sigma_shape!r}, sde={self.sde!r}"
        )


class ScoreDenoiser(nn.Module):
    r"""A score model as a denoiser ``D(x, sigma)`` of the VE convention (the inverse of :class:`DenoiserScore`).

    For noise level sigma (in ``data_range`` units) the time t solves sigma(t) / alpha(t) = sigma / a
    (bisection in float64: the schedule's varsigma is non-decreasing in t; for TabulatedVP this is
    abar(t) = 1 / (1 + (sigma / a)^2)), and

        x_t = alpha(t) (x - b) / a,   D(x, sigma) = a (x_t + sigma(t)^2 s(x_t, t)) / alpha(t) + b

    (Tweedie's formula, :meth:`smcdiff.SDE.tweedie`).

    Parameters
    ----------
    score : callable ``score(x, t)``, e.g. a :class:`smcdiff.score.ScoreModel`; registered as a submodule
        when it is one.
    sde : SDE, optional
        The SDE of ``score``; default ``score.sde``. Scalar schedules only.
    data_range : (low, high)
        The range the denoiser's inputs and outputs live in (``(0, 1)`` for deepinv); the score's data
        is in [-1, 1].
    tolerance : float
        Relative slack of the noise-level range check.

    Attributes
    ----------
    sigma_min, sigma_max : the noise levels the schedule covers on ``[eps, T]``, in ``data_range`` units.
    """

    def __init__(
        self,
        score: Callable[[Tensor, Tensor], Tensor],
        *,
        sde: SDE | None = None,
        data_range: tuple[float, float] = (-1.0, 1.0),
        tolerance: float = 1e-3,
    ) -> None:
        super().__init__()
        if not callable(score):
            raise ValueError(f"score must be callable as score(x, t), got {type(score).__name__}")
        sde = getattr(score, "sde", None) if sde is None else sde
        if sde is None:
            raise ValueError("sde must be given when score has no .sde attribute")
        self.sde = _scalar_sde(sde)
        lo, hi = _data_range(data_range)
        low, high, monotone = _schedule_range(self.sde)
        if not monotone or not low < high:
            raise ValueError(f"sde {self.sde!r} must have a noise level sigma/alpha that increases with t")
        if not (isinstance(tolerance, (int, float)) and 0 <= tolerance < 1):
            raise ValueError(f"tolerance must lie in [0, 1), got {tolerance!r}")
        self.score = score
        self.data_range = (lo, hi)
        self._a, self._b = (hi - lo) / 2, (hi + lo) / 2
        self.sigma_min, self.sigma_max = self._a * low, self._a * high
        self.tolerance = float(tolerance)
        if hasattr(score, "event_shape"):
            self.event_shape = tuple(score.event_shape)

    def time_of(self, sigma: Tensor) -> Tensor:
        """Forward times t with sigma(t) / alpha(t) = sigma (smcdiff units), float64 ``(n,)``, by bisection."""
        target = sigma.detach().to("cpu", torch.float64).reshape(-1)
        lo = torch.full_like(target, self.sde.eps)
        hi = torch.full_like(target, self.sde.T)
        for _ in range(64):  # the bracket halves each time: 64 halvings reach float64 resolution on [eps, T]
            mid = 0.5 * (lo + hi)
            above = _noise_levels(self.sde, mid) >= target
            hi, lo = torch.where(above, mid, hi), torch.where(above, lo, mid)
        return 0.5 * (lo + hi)

    def _sigma_vector(self, sigma: float | Tensor, x: Tensor) -> Tensor:
        n = x.shape[0]
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        if sigma.numel() == 1:
            sigma = sigma.reshape(1).expand(n)
        elif sigma.numel() == n and all(d == 1 for d in sigma.shape[1:]) and sigma.shape[0] == n:
            sigma = sigma.reshape(n)
        else:
            raise ValueError(
                f"sigma must be a number or have shape (n,) or (n, 1, ..., 1) with n = {n}, got {tuple(sigma.shape)}"
            )
        lo, hi = self.sigma_min * (1 - self.tolerance), self.sigma_max * (1 + self.tolerance)
        if not torch.isfinite(sigma).all() or (sigma < lo).any() or (sigma > hi).any():
            raise ValueError(
                f"sigma must lie in [{self.sigma_min:.4g}, {self.sigma_max:.4g}] (the score's schedule in "
                f"{self.data_range} units), got values in [{sigma.min().item():.4g}, {sigma.max().item():.4g}]"
            )
        return sigma

    def forward(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """Denoise ``x: (n, *event_shape)`` (``data_range`` units) at noise level ``sigma``.

        ``sigma``: a number, ``(n,)`` or ``(n, 1, ..., 1)``; returns ``(n, *event_shape)`` in ``x``'s dtype.
        """
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 2:
            raise ValueError("x must be a floating-point tensor of shape (n, *event_shape)")
        sigma = self._sigma_vector(sigma, x)
        t = self.time_of(sigma / self._a).to(device=x.device, dtype=x.dtype)
        c = self.sde.coefficients(t, x.ndim - 1, like=x)
        x_t = c.alpha * (x - self._b) / self._a
        x0 = self.sde.tweedie(x_t, t, self.score(x_t, t))
        return self._a * x0 + self._b

    def extra_repr(self) -> str:
        return f"data_range={self.data_range}, sigma=[{self.sigma_min:.4g}, {self.sigma_max:.4g}], sde={self.sde!r}"


def as_denoiser(
    score: Callable[[Tensor, Tensor], Tensor],
    *,
    sde: SDE | None = None,
    data_range: tuple[float, float] = (-1.0, 1.0),
) -> ScoreDenoiser:
    """``score`` (e.g. the shipped digits model, ``smcdiff.load_model("digits")``) as a denoiser ``D(x, sigma)``.

    See :class:`ScoreDenoiser`; ``DenoiserScore(as_denoiser(m), sigma_min=..., sigma_max=..., sde=m.sde)``
    is ``m`` again, up to rounding.
    """
    return ScoreDenoiser(score, sde=sde, data_range=data_range)
