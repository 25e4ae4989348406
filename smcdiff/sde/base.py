"""The linear forward SDE with Gaussian marginals: everything derived from a schedule's alpha and sigma^2."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from ..densities import normal_log_prob



@dataclass(frozen=True)
class Coefficients:
    """Schedule values at a batch of times, each of shape ``(n, *param_shape)``."""

    alpha: Tensor
    sigma2: Tensor
    drift: Tensor  # f(t) = d log alpha / dt
    g2: Tensor  # g(t)^2


def _transition(cs: Coefficients, ct: Coefficients) -> tuple[Tensor, Tensor]:
    """alpha_{t|s} and sigma_{t|s}^2 from the coefficients at s and at t."""
    a = ct.alpha / cs.alpha
    return a, (ct.sigma2 - a**2 * cs.sigma2).clamp_min(0.0)


def bridge_law(x0: Tensor, x_t: Tensor, cs: Coefficients, ct: Coefficients) -> tuple[Tensor, Tensor]:
    """Mean and std of ``x_s | x_t, x_0`` from the coefficients at s and t (:meth:`SDE.bridge`, whose formula this is),
    for callers that evaluate the schedule once for a whole time grid."""
    a, var_ts = _transition(cs, ct)
    var_t = var_ts + a**2 * cs.sigma2
    mean = (var_ts * cs.alpha * x0 + a * cs.sigma2 * x_t) / var_t
    var = cs.sigma2 * var_ts / var_t
    return mean, var.clamp_min(0.0).sqrt().expand_as(x0)


def _as_param(name: str, value: float | Tensor) -> Tensor:
    value = torch.as_tensor(value, dtype=torch.float64)
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} must be finite, got {value}")
    return value.detach().cpu()


class SDE(ABC):
    """Linear forward SDE on ``[eps, T]`` with diagonal, possibly per-coordinate schedules.

    Parameters
    ----------
    T : float
        Terminal time (the prior is sampled at ``T``).
    eps : float
        Smallest time the samplers reach; ``t = 0`` is data.
    params : dict of str to float or Tensor
        Schedule parameters; tensors broadcast together to ``param_shape`` which must broadcast,
        right-aligned, to the event shape of the data.
    """

    def __init__(self, *, T: float, eps: float, **params: float | Tensor) -> None:
        if not (0.0 < eps < T and math.isfinite(T)):
            raise ValueError(f"need 0 < eps < T < inf, got eps={eps}, T={T}")
        self.T = float(T)
        self.eps = float(eps)
        self._params = {name: _as_param(name, v) for name, v in params.items()}
        try:
            self.param_shape = torch.broadcast_shapes(*(p.shape for p in self._params.values()))
        except RuntimeError as err:
            shapes = {n: tuple(p.shape) for n, p in self._params.items()}
            raise ValueError(f"schedule parameters do not broadcast together: {shapes}") from err
        self._cache: dict[tuple, dict[str, Tensor]] = {}

    # ---- hooks: t has shape (n, 1, ..., 1) with len(param_shape) trailing ones ----
    @abstractmethod
    def _log_alpha(self, t: Tensor, p: dict[str, Tensor]) -> Tensor: ...

    @abstractmethod
    def _sigma2(self, t: Tensor, p: dict[str, Tensor]) -> Tensor: ...

    @abstractmethod
    def _drift(self, t: Tensor, p: dict[str, Tensor]) -> Tensor:
        """f(t) = d log alpha / dt."""

    @abstractmethod
    def _dsigma2(self, t: Tensor, p: dict[str, Tensor]) -> Tensor:
        """d sigma^2 / dt."""

    # ---- helpers ----
    def _p(self, like: Tensor) -> dict[str, Tensor]:
        """The hooks' parameters at the times ``like`` (here: the schedule's constants on its device and dtype)."""
        key = (like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = {n: v.to(device=like.device, dtype=like.dtype) for n, v in self._params.items()}
        return self._cache[key]

    def _t(self, t: Tensor | float, like: Tensor | None = None) -> Tensor:
        if not isinstance(t, Tensor):
            ref = like if like is not None else torch.empty((), dtype=torch.float64)
            t = torch.tensor(t, dtype=ref.dtype, device=ref.device)
        if t.ndim == 0:
            t = t.reshape(1)
        if t.ndim != 1:
            raise ValueError(f"t must be a scalar or have shape (n,), got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"t must be a floating-point tensor, got dtype {t.dtype}")
        return t.reshape(-1, *([1] * len(self.param_shape)))

    def check_times(self, t: Tensor | float, name: str = "t") -> None:
        """Raise ``ValueError`` naming ``name`` if any time is not finite or lies outside ``[eps, T]``."""
        t = t if isinstance(t, Tensor) else torch.as_tensor(t, dtype=torch.float64, device="cpu")
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} must be finite")
        tol = 1e-6 * self.T
        if (t < self.eps - tol).any() or (t > self.T + tol).any():
            raise ValueError(
                f"{name} must lie in [eps, T] = [{self.eps:g}, {self.T:g}], "
                f"got values in [{t.min().item():g}, {t.max().item():g}]"
            )

    def check_event_shape(self, event_shape: tuple[int, ...], name: str = "x") -> None:
        """Raise ``ValueError`` if the schedule's parameter shape does not broadcast to ``event_shape``."""
        try:
            ok = torch.broadcast_shapes(self.param_shape, tuple(event_shape)) == tuple(event_shape)
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"{name} has event shape {tuple(event_shape)} but this SDE's per-coordinate schedule has "
                f"shape {tuple(self.param_shape)}, which does not broadcast to it"
            )

    def _expand(self, v: Tensor, event_ndim: int) -> Tensor:
        """Right-align ``v: (n, *param_shape)`` against ``(n, *event_shape)``."""
        extra = event_ndim - len(self.param_shape)
        if extra < 0:
            raise ValueError(f"event rank {event_ndim} is smaller than the schedule's rank {len(self.param_shape)}")
        return v.reshape(v.shape[0], *([1] * extra), *self.param_shape)

    # ---- schedule ----
    def coefficients(self, t: Tensor | float, event_ndim: int | None = None, like: Tensor | None = None) -> Coefficients:
        """alpha, sigma^2, f and g^2 at times ``t: (n,)``, each ``(n, *param_shape)`` or right-aligned to ``event_ndim``."""
        tt = self._t(t, like)
        p = self._p(tt)
        log_alpha = self._log_alpha(tt, p)
        sigma2 = self._sigma2(tt, p)
        drift = self._drift(tt, p)
        g2 = (self._dsigma2(tt, p) - 2 * drift * sigma2).clamp_min(0.0)
        shape = (tt.shape[0], *self.param_shape)
        out = [v.expand(shape) for v in (log_alpha.exp(), sigma2, drift, g2)]
        if event_ndim is not None:
            out = [self._expand(v, event_ndim) for v in out]
        return Coefficients(*out)

    def alpha(self, t: Tensor | float) -> Tensor:
        """Signal scale ``alpha(t)``, shape ``(n, *param_shape)``."""
        return self.coefficients(t).alpha

    def sigma(self, t: Tensor | float) -> Tensor:
        """Noise scale ``sigma(t)``, shape ``(n, *param_shape)``."""
        return self.coefficients(t).sigma2.sqrt()

    def log_snr(self, t: Tensor | float) -> Tensor:
        """``log(alpha^2 / sigma^2)``, shape ``(n, *param_shape)``."""
        c = self.coefficients(t)
        return 2 * c.alpha.log() - c.sigma2.log()

    # ---- exact laws ----
    def marginal(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and std of ``x_t | x_0``; ``x0: (n, *event)``, ``t: (n,)``."""
        self.check_times(t)
        c = self.coefficients(t, x0.ndim - 1, like=x0)
        return c.alpha * x0, c.sigma2.sqrt().expand_as(x0)

    def transition(self, x_s: Tensor, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and std of the exact transition ``x_t | x_s`` for ``s <= t``.

        alpha_{t|s} = alpha_t / alpha_s and sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2.
        """
        self.check_times(s, "s")
        self.check_times(t, "t")
        if (torch.as_tensor(s) > torch.as_tensor(t)).any():
            raise ValueError("transition needs s <= t")
        a, var = self._transition_coefficients(s, t, x_s.ndim - 1, like=x_s)
        return a * x_s, var.sqrt().expand_as(x_s)

    def _transition_coefficients(self, s: Tensor, t: Tensor, event_ndim: int, like: Tensor) -> tuple[Tensor, Tensor]:
        return _transition(self.coefficients(s, event_ndim, like), self.coefficients(t, event_ndim, like))

    def bridge(self, x0: Tensor, x_t: Tensor, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        r"""Mean and std of ``x_s | x_t, x_0`` for ``0 < s < t`` (the exact Gaussian bridge).

        With x_s | x_0 ~ N(alpha_s x_0, sigma_s^2) and x_t | x_s ~ N(alpha_{t|s} x_s, sigma_{t|s}^2),

            var  = (1 / sigma_s^2 + alpha_{t|s}^2 / sigma_{t|s}^2)^{-1}
                 = sigma_s^2 sigma_{t|s}^2 / sigma_t^2,
            mean = var (alpha_s x_0 / sigma_s^2 + alpha_{t|s} x_t / sigma_{t|s}^2)
                 = (sigma_{t|s}^2 alpha_s x_0 + alpha_{t|s} sigma_s^2 x_t) / sigma_t^2.

        A coordinate that does not move between ``s`` and ``t`` (sigma_{t|s} = 0, a frozen group of a
        non-uniform SDE) gets ``x_s = x_t / alpha_{t|s}`` exactly.
        """
        event_ndim = x0.ndim - 1
        return bridge_law(x0, x_t, self.coefficients(s, event_ndim, like=x0), self.coefficients(t, event_ndim, like=x0))

    # ---- prior and reverse-time kernels ----
    def prior_std(self, like: Tensor | None = None) -> Tensor:
        """Std of the prior N(0, alpha_T^2 + sigma_T^2) per coordinate, shape ``param_shape``.

        This is the marginal at ``T`` of unit-variance data: 1 for VP and OU, sqrt(1 + sigma_max^2) for VE.
        """
        c = self.coefficients(self.T, like=like)
        return (c.alpha**2 + c.sigma2).sqrt()[0]

    def prior_sample(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw ``shape = (n, *event_shape)`` from the prior."""
        self.check_event_shape(tuple(shape[1:]))
        z = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        return z * self.prior_std(like=z)

    def prior_log_prob(self, x: Tensor, event_dims: int) -> Tensor:
        """Elementwise log density of the prior at ``x`` (not summed)."""
        std = self._expand(self.prior_std(like=x)[None], event_dims)
        return normal_log_prob(x, torch.zeros_like(x), std**2)

    def reverse_kernel(self, x: Tensor, t: Tensor, h: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
        r"""Euler-Maruyama step of the reverse SDE from ``t`` to ``t - h`` (eq. 3).

        mean = x + h (-f(t) x + g(t)^2 s(x, t)),  var = g(t)^2 h, per coordinate.

        Parameters
        ----------
        x, score : (n, *event_shape)
        t, h : (n,) forward time and step size.

        Returns
        -------
        mean : (n, *event_shape)
        var : broadcastable to ``(n, *event_shape)``
        """
        c = self.coefficients(t, x.ndim - 1, like=x)
        hh = h.reshape(-1, *([1] * (x.ndim - 1))).to(x)
        return x + hh * (-c.drift * x + c.g2 * score), c.g2 * hh

    def ancestral_kernel(self, x: Tensor, t: Tensor, s: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
        r"""Exact-in-time step from ``t`` to ``s < t`` given the denoiser (DDPM ancestral / exponential integrator).

        x_0 is estimated by Tweedie's formula, x0_hat = (x + sigma_t^2 s(x, t)) / alpha_t, and the step
        draws from the exact Gaussian bridge x_s | x_t, x_0 = x0_hat (:meth:`bridge`): the kernel that is
        exact when the data given x_t are a point mass at x0_hat. With a DDPM schedule this is the DDPM
        posterior q(x_{t-1} | x_t, x_0) of Ho et al. 2020, eq. 7.

        Parameters
        ----------
        x, score : (n, *event_shape)
        t, s : (n,) forward times, s < t.

        Returns
        -------
        mean : (n, *event_shape)
        var : (n, *event_shape)
        """
        mean, std = self.bridge(self.tweedie(x, t, score), x, s, t)
        return mean, std**2

    def ode_step(self, x: Tensor, t: Tensor, h: Tensor, score: Tensor) -> Tensor:
        r"""Euler step of the probability-flow ODE dx/dt = f x - g^2 s / 2 from ``t`` to ``t - h``."""
        c = self.coefficients(t, x.ndim - 1, like=x)
        hh = h.reshape(-1, *([1] * (x.ndim - 1))).to(x)
        return x - hh * (c.drift * x - 0.5 * c.g2 * score)

    def tweedie(self, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
        r"""Tweedie's denoiser E[x_0 | x_t] = (x_t + sigma_t^2 s(x_t, t)) / alpha_t."""
        c = self.coefficients(t, x.ndim - 1, like=x)
        return (x + c.sigma2 * score) / c.alpha

    grid_power: float = 1.0
    """Spacing of the default grid: t_i = eps + (T - eps) (i / N)^grid_power (1 = uniform)."""

    def time_grid(self, steps: int, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
        """Default grid ``t_N = T > ... > t_0 = eps``, shape ``(steps + 1,)``, decreasing.

        Uniform in time unless the class sets ``grid_power`` > 1, which puts more steps near the data.
        """
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        u = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64, device=device)
        return (self.eps + (self.T - self.eps) * u**self.grid_power).to(dtype)

    def __repr__(self) -> str:
        params = ", ".join(
            f"{n}={v.item():g}" if v.ndim == 0 else f"{n}=<tensor {tuple(v.shape)}>" for n, v in self._params.items()
        )
        return f"{type(self).__name__}({params}, T={self.T:g}, eps={self.eps:g})"
