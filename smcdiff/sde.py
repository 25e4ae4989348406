r"""Forward SDEs with exact Gaussian marginals, uniform or per coordinate ("non-uniform").

Every SDE here is linear with a diagonal diffusion (eq. 8-9 of "Non-Uniform Diffusion Models"),

    dx^i = f_i(t) x^i dt + g_i(t) dw^i,

so the marginal given data is Gaussian, x_t = alpha(t) x_0 + sigma(t) eps, with

    f(t) = d log alpha / dt,        g(t)^2 = d sigma^2 / dt - 2 f(t) sigma(t)^2.

A subclass supplies ``log_alpha``, ``sigma2`` and their derivatives; everything else (transitions,
bridges, reverse kernels, the prior) is derived here, once.

Schedule parameters may be tensors broadcastable to the event shape: then each coordinate diffuses at
its own speed (CMDE's slower condition channels, multiscale diffusion's per-group terminal times). All
coefficients returned by ``coefficients`` have shape ``(n, *param_shape)``; ``_expand`` right-aligns
them against an event of any rank.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["SDE", "OU", "VP", "VE", "LogLinearVP", "TabulatedVP", "Coefficients"]


@dataclass(frozen=True)
class Coefficients:
    """Schedule values at a batch of times, each of shape ``(n, *param_shape)``."""

    alpha: Tensor
    sigma2: Tensor
    drift: Tensor  # f(t) = d log alpha / dt
    g2: Tensor  # g(t)^2


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
        cs = self.coefficients(s, event_ndim, like)
        ct = self.coefficients(t, event_ndim, like)
        a = ct.alpha / cs.alpha
        return a, (ct.sigma2 - a**2 * cs.sigma2).clamp_min(0.0)

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
        cs = self.coefficients(s, event_ndim, like=x0)
        a, var_ts = self._transition_coefficients(s, t, event_ndim, like=x0)
        var_t = var_ts + a**2 * cs.sigma2
        mean = (var_ts * cs.alpha * x0 + a * cs.sigma2 * x_t) / var_t
        var = cs.sigma2 * var_ts / var_t
        return mean, var.clamp_min(0.0).sqrt().expand_as(x0)

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
        return _normal_log_prob(x, torch.zeros_like(x), std**2)

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


def _normal_log_prob(x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    return -0.5 * ((x - mean) ** 2 / var + torch.log(2 * math.pi * var))


class OU(SDE):
    r"""Ornstein-Uhlenbeck process of the seed slides, dU = -U dt + sqrt(2) dB.

    alpha(t) = e^{-t}, sigma(t)^2 = 1 - e^{-2t}; stationary law N(0, I). Its long horizon (T = 5 by
    default, so that alpha_T^2 < 5e-5) is sampled on a quadratic grid, which halves the Euler-Maruyama
    bias at equal step count compared with a uniform grid.
    """

    grid_power = 2.0

    def __init__(self, T: float = 5.0, eps: float = 1e-3) -> None:
        super().__init__(T=T, eps=eps)

    def _log_alpha(self, t, p):
        return -t

    def _sigma2(self, t, p):
        return -torch.expm1(-2 * t)

    def _drift(self, t, p):
        return -torch.ones_like(t)

    def _dsigma2(self, t, p):
        return 2 * torch.exp(-2 * t)


class VP(SDE):
    r"""Variance-preserving SDE with linear beta (Ho et al. 2020; Song et al. 2021).

    dx = -beta(t)/2 x dt + sqrt(beta(t)) dw,  beta(t) = beta_min + t (beta_max - beta_min),
    log alpha(t) = -(beta_min t + (beta_max - beta_min) t^2 / 2) / 2,  sigma^2 = 1 - alpha^2.
    ``beta_min`` and ``beta_max`` may be per-coordinate tensors.
    """

    def __init__(
        self, beta_min: float | Tensor = 0.1, beta_max: float | Tensor = 20.0, T: float = 1.0, eps: float = 1e-3
    ) -> None:
        super().__init__(T=T, eps=eps, beta_min=beta_min, beta_max=beta_max)
        bmin, bmax = self._params["beta_min"], self._params["beta_max"]
        if (bmin <= 0).any() or (bmax < bmin).any():
            raise ValueError(f"need 0 < beta_min <= beta_max, got beta_min={beta_min}, beta_max={beta_max}")

    def _log_alpha(self, t, p):
        return -0.5 * (p["beta_min"] * t + 0.5 * (p["beta_max"] - p["beta_min"]) * t**2)

    def _sigma2(self, t, p):
        return -torch.expm1(2 * self._log_alpha(t, p))

    def _drift(self, t, p):
        return -0.5 * (p["beta_min"] + t * (p["beta_max"] - p["beta_min"]))

    def _dsigma2(self, t, p):
        return -2 * self._drift(t, p) * torch.exp(2 * self._log_alpha(t, p))


class VE(SDE):
    r"""Variance-exploding SDE, sigma(t) = sigma_min (sigma_max / sigma_min)^t (Song et al. 2021).

    dx = sqrt(d sigma^2 / dt) dw, alpha = 1. ``sigma_max`` (and ``sigma_min``) may be per-coordinate
    tensors: CMDE diffuses the condition channels with a smaller ``sigma_max``.
    """

    def __init__(
        self, sigma_min: float | Tensor = 0.01, sigma_max: float | Tensor = 50.0, T: float = 1.0, eps: float = 1e-5
    ) -> None:
        super().__init__(T=T, eps=eps, sigma_min=sigma_min, sigma_max=sigma_max)
        smin, smax = self._params["sigma_min"], self._params["sigma_max"]
        if (smin <= 0).any() or (smax <= smin).any():
            raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")

    def _log_alpha(self, t, p):
        return torch.zeros_like(t)

    def _sigma2(self, t, p):
        return p["sigma_min"] ** 2 * (p["sigma_max"] / p["sigma_min"]) ** (2 * t)

    def _drift(self, t, p):
        return torch.zeros_like(t)

    def _dsigma2(self, t, p):
        return 2 * torch.log(p["sigma_max"] / p["sigma_min"]) * self._sigma2(t, p)


class LogLinearVP(SDE):
    r"""Variance-preserving SDE whose log-SNR falls linearly in time, per coordinate.

    log SNR(t) = log snr_max + (t - eps) / (t_end - eps) (log snr_min - log snr_max) for t <= t_end,
    and constant afterwards: a coordinate reaches ``snr_min`` at its own terminal time ``t_end`` and is
    then frozen (f = g = 0). With alpha^2 = sigmoid(lambda), sigma^2 = sigmoid(-lambda):

        f(t) = lambda'(t) sigma^2 / 2,   g(t)^2 = -lambda'(t) sigma^2.

    Multiscale diffusion (§3.3) uses ``t_end`` = i/(n+1) for the Haar detail group d_i and 1 for a_n.
    """

    def __init__(
        self,
        snr_max: float = 1e4,
        snr_min: float = 1e-4,
        t_end: float | Tensor = 1.0,
        T: float = 1.0,
        eps: float = 1e-3,
    ) -> None:
        if not (0 < snr_min < snr_max):
            raise ValueError(f"need 0 < snr_min < snr_max, got snr_min={snr_min}, snr_max={snr_max}")
        t_end_t = torch.as_tensor(t_end, dtype=torch.float64)
        if (t_end_t <= eps).any() or (t_end_t > T).any():
            raise ValueError(f"t_end must lie in (eps, T] = ({eps}, {T}], got {t_end}")
        super().__init__(
            T=T, eps=eps, log_snr_max=math.log(snr_max), log_snr_min=math.log(snr_min), t_end=t_end_t
        )

    def _slope(self, p):
        return (p["log_snr_min"] - p["log_snr_max"]) / (p["t_end"] - self.eps)

    def _lam(self, t, p):
        return p["log_snr_max"] + (torch.minimum(t, p["t_end"]) - self.eps) * self._slope(p)

    def _log_alpha(self, t, p):
        return 0.5 * torch.nn.functional.logsigmoid(self._lam(t, p))

    def _sigma2(self, t, p):
        return torch.sigmoid(-self._lam(t, p))

    def _dlam(self, t, p):
        return torch.where(t <= p["t_end"], self._slope(p), torch.zeros_like(self._slope(p)))

    def _drift(self, t, p):
        return 0.5 * self._dlam(t, p) * self._sigma2(t, p)

    def _dsigma2(self, t, p):
        lam = self._lam(t, p)
        return -self._dlam(t, p) * torch.sigmoid(lam) * torch.sigmoid(-lam)


class TabulatedVP(SDE):
    r"""Variance-preserving SDE whose schedule is a table of cumulative products, as in DDPM schedulers.

    Discrete step k = 0..N-1 of a scheduler with ``alphas_cumprod`` abar_k sits at continuous time
    t_k = (k + 1) / N; log alpha(t)^2 is the piecewise-linear interpolation of log abar_k (and 0 at
    t = 0), sigma^2 = 1 - alpha^2. Then f = d log alpha / dt is piecewise constant and, because
    alpha^2 + sigma^2 = 1, g^2 = -2 f. The noise law of ``x_t`` equals the scheduler's at every t_k,
    so an eps-, x0- or v-predicting network trained with that scheduler is a score for this SDE with
    timestep ``t N - 1``. Defaults: T = 1 (step N-1) and eps = 1/N (step 0).
    """

    def __init__(self, alphas_cumprod: Tensor, T: float = 1.0, eps: float | None = None) -> None:
        abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64).detach().cpu()
        if abar.ndim != 1 or abar.numel() < 2:
            raise ValueError(f"alphas_cumprod must be a 1-d table with at least 2 entries, got shape {tuple(abar.shape)}")
        if not ((abar > 0) & (abar <= 1)).all() or (abar[1:] > abar[:-1]).any():
            raise ValueError("alphas_cumprod must be positive, at most 1 and non-increasing")
        n = abar.numel()
        self.num_train_timesteps = n
        self._knots = torch.arange(n + 1, dtype=torch.float64) / n
        self._log_abar = torch.cat([torch.zeros(1, dtype=torch.float64), abar.log()])
        self._tables: dict[tuple, tuple[Tensor, Tensor, Tensor]] = {}
        super().__init__(T=T, eps=1.0 / n if eps is None else eps)

    def timestep(self, t: Tensor) -> Tensor:
        """The scheduler's (fractional) timestep index ``t N - 1`` for forward time ``t``."""
        return t * self.num_train_timesteps - 1

    def _table(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        key = (like.device, like.dtype)
        if key not in self._tables:
            knots = self._knots.to(like.device, like.dtype)
            vals = self._log_abar.to(like.device, like.dtype)
            slopes = (vals[1:] - vals[:-1]) / (knots[1:] - knots[:-1])
            self._tables[key] = (knots, vals, slopes)
        return self._tables[key]

    def _segment(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        knots, vals, slopes = self._table(t)
        idx = torch.searchsorted(knots, t.reshape(-1).contiguous(), right=True).clamp(1, slopes.numel()) - 1
        idx = idx.reshape(t.shape)
        return knots[idx], vals[idx], slopes[idx]

    def _log_alpha(self, t, p):
        k0, v0, slope = self._segment(t)
        return 0.5 * (v0 + slope * (t - k0))

    def _sigma2(self, t, p):
        return -torch.expm1(2 * self._log_alpha(t, p))

    def _drift(self, t, p):
        return 0.5 * self._segment(t)[2]

    def _dsigma2(self, t, p):
        return -2 * self._drift(t, p) * torch.exp(2 * self._log_alpha(t, p))

    def __repr__(self) -> str:
        return f"TabulatedVP(N={self.num_train_timesteps}, T={self.T:g}, eps={self.eps:g})"
