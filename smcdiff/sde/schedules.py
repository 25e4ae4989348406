"""The concrete noise schedules: OU, VP, VE, log-linear VP and tabulated (diffusers) VP."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import SDE


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

    def _p(self, t: Tensor) -> dict[str, Tensor]:
        """The table's segment at each time of ``t``, looked up once per :meth:`coefficients` call."""
        knots, vals, slopes = self._table(t)
        idx = torch.searchsorted(knots, t.reshape(-1).contiguous(), right=True).clamp(1, slopes.numel()) - 1
        idx = idx.reshape(t.shape)
        return {"k0": knots[idx], "v0": vals[idx], "slope": slopes[idx]}

    def _log_alpha(self, t, p):
        return 0.5 * (p["v0"] + p["slope"] * (t - p["k0"]))

    def _sigma2(self, t, p):
        return -torch.expm1(2 * self._log_alpha(t, p))

    def _drift(self, t, p):
        return 0.5 * p["slope"]

    def _dsigma2(self, t, p):
        return -2 * self._drift(t, p) * torch.exp(2 * self._log_alpha(t, p))

    def __repr__(self) -> str:
        return f"TabulatedVP(N={self.num_train_timesteps}, T={self.T:g}, eps={self.eps:g})"
