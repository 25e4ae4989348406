r"""An independent reference for the exactness tests: the discretised linear-Gaussian model from its formulas.

Nothing here calls smcdiff. The forward SDEs' schedules, the time grid, the score of Gaussian data, the
two reverse kernels and the Kalman filter of the discretised SMC are written out again from their
closed forms, so that a bug in :mod:`smcdiff.sde`, :mod:`smcdiff.dynamics` or :mod:`smcdiff.oracle`
cannot pass unnoticed by being used both by a sampler and by its own target.

Schedules (per coordinate, float64; x_t = alpha(t) x_0 + sigma(t) eps, f = d log alpha / dt,
g^2 = d sigma^2 / dt - 2 f sigma^2):

- OU:  alpha = e^{-t}, sigma^2 = 1 - e^{-2t}, f = -1, g^2 = 2; grid t_i = eps + (T - eps) (i / N)^2.
- VP:  beta(t) = beta_min + t (beta_max - beta_min), log alpha = -(beta_min t + (beta_max - beta_min) t^2 / 2) / 2,
  sigma^2 = 1 - alpha^2, f = -beta / 2, g^2 = beta; uniform grid.
- VE:  alpha = 1, sigma^2 = sigma_min^2 (sigma_max / sigma_min)^{2t}, f = 0, g^2 = 2 log(sigma_max / sigma_min) sigma^2.
- log-linear VP: lambda(t) = log snr_max + (min(t, t_end) - eps) / (t_end - eps) (log snr_min - log snr_max),
  alpha^2 = sigmoid(lambda), sigma^2 = sigmoid(-lambda), f = lambda' sigma^2 / 2, g^2 = -lambda' sigma^2
  (lambda' = 0 after t_end).

Data N(m, Sigma) diffused to t is N(alpha m, diag(alpha) Sigma diag(alpha) + diag(sigma^2)), whose score is
affine, s(x) = J x + c with J = -Sigma_t^{-1} and c = Sigma_t^{-1} alpha m. One reverse step from t to s is then
x' = A x + b + N(0, diag(D)):

- Euler-Maruyama (h = t - s):  A = I + h (-diag(f) + diag(g^2) J),  b = h g^2 c,  D = h g^2;
- ancestral (DDPM posterior q(x_s | x_t, x_0) at Tweedie's x0_hat = (x + sigma_t^2 s(x)) / alpha_t): with
  a = alpha_t / alpha_s and v = sigma_t^2 - a^2 sigma_s^2,
  x' = (v alpha_s x0_hat + a sigma_s^2 x) / sigma_t^2 + N(0, sigma_s^2 v / sigma_t^2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch
from torch import Tensor

F64 = torch.float64
Kernel = Literal["euler", "ancestral"]
Coefficients = tuple[Tensor, Tensor, Tensor, Tensor]


@dataclass(frozen=True)
class Schedule:
    """A forward SDE by its closed forms: ``coefficients(t, d)`` gives alpha, sigma^2, f, g^2, each ``(d,)``."""

    T: float
    eps: float
    grid_power: float
    closed_form: Callable[[float], Coefficients]

    def coefficients(self, t: float, d: int) -> Coefficients:
        """alpha(t), sigma^2(t), f(t), g^2(t), each ``(d,)`` float64."""
        return tuple(torch.as_tensor(v, dtype=F64).expand(d).clone() for v in self.closed_form(t))

    def time_grid(self, steps: int) -> list[float]:
        """t_N = T > ... > t_0 = eps, with t_i = eps + (T - eps) (i / N)^grid_power."""
        return [self.eps + (self.T - self.eps) * ((steps - j) / steps) ** self.grid_power for j in range(steps + 1)]

    def prior_var(self, d: int) -> Tensor:
        """The variance of the sampler's prior at T, alpha_T^2 + sigma_T^2 (the marginal of unit-variance data)."""
        alpha, sigma2, _, _ = self.coefficients(self.T, d)
        return alpha**2 + sigma2


def ou(T: float = 5.0, eps: float = 1e-3) -> Schedule:
    """The OU process dU = -U dt + sqrt(2) dB on a quadratic grid (smcdiff's ``OU()``)."""

    def closed_form(t: float) -> Coefficients:
        return (torch.tensor(math.exp(-t), dtype=F64), torch.tensor(1 - math.exp(-2 * t), dtype=F64),
                torch.tensor(-1.0, dtype=F64), torch.tensor(2.0, dtype=F64))

    return Schedule(T, eps, 2.0, closed_form)


def vp(beta_min: float = 0.1, beta_max: float | Tensor = 20.0, T: float = 1.0, eps: float = 1e-3) -> Schedule:
    """The VP SDE with linear beta; ``beta_max`` may be per coordinate ``(d,)``."""
    bmax = torch.as_tensor(beta_max, dtype=F64)

    def closed_form(t: float) -> Coefficients:
        beta = beta_min + t * (bmax - beta_min)
        alpha = torch.exp(-0.5 * (beta_min * t + 0.5 * (bmax - beta_min) * t**2))
        return alpha, 1 - alpha**2, -0.5 * beta, beta

    return Schedule(T, eps, 1.0, closed_form)


def ve(sigma_min: float = 0.01, sigma_max: float = 50.0, T: float = 1.0, eps: float = 1e-5) -> Schedule:
    """The VE SDE with geometric sigma(t)."""

    def closed_form(t: float) -> Coefficients:
        sigma2 = sigma_min**2 * (sigma_max / sigma_min) ** (2 * t)
        return (torch.tensor(1.0, dtype=F64), torch.tensor(sigma2, dtype=F64), torch.tensor(0.0, dtype=F64),
                torch.tensor(2 * math.log(sigma_max / sigma_min) * sigma2, dtype=F64))

    return Schedule(T, eps, 1.0, closed_form)


def loglinear_vp(snr_max: float = 1e4, snr_min: float = 1e-4, t_end: float | Tensor = 1.0, T: float = 1.0,
                 eps: float = 1e-3) -> Schedule:
    """The VP SDE whose log-SNR falls linearly to ``snr_min`` at ``t_end`` (per coordinate ``(d,)``), then freezes."""
    t_end = torch.as_tensor(t_end, dtype=F64)
    slope = (math.log(snr_min) - math.log(snr_max)) / (t_end - eps)

    def closed_form(t: float) -> Coefficients:
        lam = math.log(snr_max) + (torch.clamp(t_end, max=t) - eps) * slope
        dlam = torch.where(t <= t_end, slope, torch.zeros_like(slope))
        alpha2, sigma2 = 1 / (1 + torch.exp(-lam)), 1 / (1 + torch.exp(lam))
        return alpha2.sqrt(), sigma2, 0.5 * dlam * sigma2, -dlam * sigma2

    return Schedule(T, eps, 1.0, closed_form)


# ---- the discretised model for Gaussian data --------------------------------------------------------
def gaussian_score(schedule: Schedule, mean: Tensor, cov: Tensor, t: float) -> tuple[Tensor, Tensor]:
    """(J (d, d), c (d,)) with the exact score of N(mean, cov) data at time t equal to J x + c."""
    d = mean.numel()
    alpha, sigma2, _, _ = schedule.coefficients(t, d)
    cov_t = alpha[:, None] * cov * alpha[None, :] + torch.diag(sigma2)
    precision = torch.linalg.inv(cov_t)
    return -precision, precision @ (alpha * mean)


def reverse_step(schedule: Schedule, mean: Tensor, cov: Tensor, t: float, s: float,
                 kernel: Kernel = "euler") -> tuple[Tensor, Tensor, Tensor]:
    """A (d, d), b (d,), D (d,) of the reverse step x' = A x + b + N(0, diag(D)) from t to s < t."""
    d = mean.numel()
    j, c = gaussian_score(schedule, mean, cov, t)
    alpha_t, sigma2_t, f, g2 = schedule.coefficients(t, d)
    eye = torch.eye(d, dtype=F64)
    if kernel == "euler":
        h = t - s
        return eye + h * (-torch.diag(f) + g2[:, None] * j), h * g2 * c, h * g2
    alpha_s, sigma2_s, _, _ = schedule.coefficients(s, d)
    a = alpha_t / alpha_s
    v = sigma2_t - a**2 * sigma2_s
    x0_a, x0_b = (eye + sigma2_t[:, None] * j) / alpha_t[:, None], sigma2_t * c / alpha_t
    coef_x0, coef_x = v * alpha_s / sigma2_t, a * sigma2_s / sigma2_t
    return coef_x0[:, None] * x0_a + torch.diag(coef_x), coef_x0 * x0_b, sigma2_s * v / sigma2_t


def discretised_law(schedule: Schedule, mean: Tensor, cov: Tensor, steps: int, kernel: Kernel = "euler",
                    start: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """Mean (d,) and covariance (d, d) of the unconditional sampler's output at t_0 for N(mean, cov) data.

    The chain starts from the prior N(0, alpha_T^2 + sigma_T^2) at T, or from ``start = (mean, cov)``.
    """
    d = mean.numel()
    grid = schedule.time_grid(steps)
    m, p = (torch.zeros(d, dtype=F64), torch.diag(schedule.prior_var(d))) if start is None else start
    for t, s in zip(grid[:-1], grid[1:]):
        a, b, dd = reverse_step(schedule, mean, cov, t, s, kernel)
        m, p = a @ m + b, a @ p @ a.T + torch.diag(dd)
    return m, p


def _log_normal(y: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    """log N(y; mean, cov) for rows ``y, mean: (n, k)`` and one ``cov: (k, k)``; 0 when k = 0."""
    k = y.shape[-1]
    if k == 0:
        return torch.zeros(y.shape[0], dtype=F64)
    chol = torch.linalg.cholesky(cov)
    z = torch.linalg.solve_triangular(chol, (y - mean).T, upper=False)
    return -0.5 * (z**2).sum(0) - chol.diagonal().log().sum() - 0.5 * k * math.log(2 * math.pi)


def _pin(m: Tensor, p: Tensor, obs: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Condition N(m (n, d), p (d, d)) on x_obs = y_obs (Schur complement); also log N(y_obs; m_obs, p_obs,obs)."""
    free = ~obs
    p_oo, p_fo = p[obs][:, obs], p[free][:, obs]
    gain = torch.linalg.solve(p_oo, p_fo.T).T  # p_fo p_oo^{-1}
    out_m, out_p = y.clone(), torch.zeros_like(p)
    out_m[:, free] = m[:, free] + (y[:, obs] - m[:, obs]) @ gain.T
    idx = free.nonzero()[:, 0]
    out_p[idx[:, None], idx[None, :]] = p[free][:, free] - gain @ p_fo.T
    return out_m, out_p, _log_normal(y[:, obs], m[:, obs], p_oo)


def kalman_smc_target(schedule: Schedule, mean: Tensor, cov: Tensor, steps: int, mask: Tensor,
                      ys: Sequence[Tensor], kernel: Kernel = "euler") -> tuple[Tensor, Tensor, Tensor]:
    """The exact target of the discretised SMC with a mask observation, by a Kalman filter.

    The state x_{t_k} follows the reverse chain from the prior; at every grid time the observed
    coordinates are seen without noise, x_{t_k, obs} = y_{t_k, obs}.

    Parameters
    ----------
    mask : (B, d) bool, True = observed; rows may differ.
    ys : sequence over k = N .. 0 of (B, d) observed trajectories y_{t_k}.

    Returns
    -------
    mean : (B, d) of x_{t_0} given the trajectory (observed coordinates equal to y_{t_0}).
    cov : (B, d, d), zero on observed rows and columns.
    log_z : (B,) log p(y_{t_0 .. t_N}) under the discretised model.
    """
    b, d = mask.shape
    grid = schedule.time_grid(steps)
    kernels = [reverse_step(schedule, mean, cov, t, s, kernel) for t, s in zip(grid[:-1], grid[1:])]
    out_m, out_p, out_z = torch.empty(b, d, dtype=F64), torch.empty(b, d, d, dtype=F64), torch.empty(b, dtype=F64)
    patterns, which = torch.unique(mask, dim=0, return_inverse=True)
    for g, obs in enumerate(patterns):
        rows = (which == g).nonzero()[:, 0]
        m = torch.zeros(rows.numel(), d, dtype=F64)
        m, p, log_z = _pin(m, torch.diag(schedule.prior_var(d)), obs, ys[0][rows])
        for (a, c, dd), y in zip(kernels, ys[1:]):
            m, p, inc = _pin(m @ a.T + c, a @ p @ a.T + torch.diag(dd), obs, y[rows])
            log_z = log_z + inc
        out_m[rows], out_p[rows], out_z[rows] = m, p, log_z
    return out_m, out_p, out_z


def mean_trajectory(schedule: Schedule, y: Tensor, steps: int) -> list[Tensor]:
    """E[y_{t_k}] = alpha(t_k) y over k = N .. 0 for ``y: (B, d)``: the Kalman mean is affine in the
    trajectory, so at this input it is the target's mean averaged over forward trajectories."""
    d = y.shape[-1]
    return [schedule.coefficients(t, d)[0] * y for t in schedule.time_grid(steps)]


def forward_trajectory(schedule: Schedule, x0: Tensor, steps: int, generator: torch.Generator) -> list[Tensor]:
    """A draw of x_{t_k} over k = N .. 0 from the forward SDE started at ``x0: (B, d)`` (exact transitions)."""
    d = x0.shape[-1]
    grid = schedule.time_grid(steps)[::-1]
    alpha, sigma2 = schedule.coefficients(grid[0], d)[:2]
    xs = [alpha * x0 + sigma2.sqrt() * torch.randn(x0.shape, generator=generator, dtype=F64)]
    for s, t in zip(grid[:-1], grid[1:]):
        (alpha_s, sigma2_s), (alpha_t, sigma2_t) = schedule.coefficients(s, d)[:2], schedule.coefficients(t, d)[:2]
        a = alpha_t / alpha_s
        xs.append(a * xs[-1] + (sigma2_t - a**2 * sigma2_s).sqrt() * torch.randn(x0.shape, generator=generator, dtype=F64))
    return xs[::-1]
