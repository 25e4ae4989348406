"""Diagnostics: exact laws of the *discretised* samplers when the score is affine (Gaussian data).

With an affine score s(x, t) = J_t x + c_t, one Euler-Maruyama step is x' = A x + b + N(0, D), so the
law of the chain is Gaussian and propagates in closed form. These helpers give the exact target of the
discretised unconditional sampler (moment recursion) and of the discretised SMC (a Kalman filter over
the unobserved coordinates), so tests and benchmarks can separate Monte Carlo error from discretisation error.
"""

from __future__ import annotations

import torch

from .gaussian import _condition

__all__ = ["affine_score", "em_kernel", "discretised_law", "kalman_smc_target"]


def affine_score(score, t: float, d: int, dtype=torch.float64):
    """(J, c) with score(x, t) = x @ J.T + c, read off by evaluating at 0 and at the unit vectors."""
    pts = torch.cat([torch.zeros(1, d, dtype=dtype), torch.eye(d, dtype=dtype)])
    s = score(pts, torch.full((d + 1,), t, dtype=dtype))
    return (s[1:] - s[0]).T, s[0]


def em_kernel(score, sde, t: float, h: float, d: int, kernel: str = "euler"):
    """A (d, d), b (d,), D (d,) of the reverse step x' = A x + b + N(0, diag(D)) from t to t - h.

    ``kernel="euler"`` is written out from the SDE's f and g^2 (independently of the sampler's code);
    ``kernel="ancestral"`` is read off :meth:`SDE.ancestral_kernel`, which is affine in x when the score is.
    """
    j, c = affine_score(score, t, d)
    if kernel == "euler":
        co = sde.coefficients(torch.tensor([t], dtype=torch.float64), 1)
        f, g2 = co.drift[0].expand(d), co.g2[0].expand(d)
        a = torch.eye(d, dtype=torch.float64) + h * (-torch.diag(f) + g2[:, None] * j)
        return a, h * g2 * c, h * g2
    pts = torch.cat([torch.zeros(1, d, dtype=torch.float64), torch.eye(d, dtype=torch.float64)])
    tt = torch.full((d + 1,), t, dtype=torch.float64)
    mean, var = sde.ancestral_kernel(pts, tt, tt - h, pts @ j.T + c)
    return (mean[1:] - mean[0]).T, mean[0], var[0]


def discretised_law(score, sde, steps: int, d: int, start=None, kernel: str = "euler"):
    """Mean (d,) and covariance (d, d) of the output of ``sample(..., method='sde')``.

    ``start = (mean, cov)`` replaces the prior at T, e.g. by the exact p_T to isolate the
    discretisation error from the prior mismatch.
    """
    grid = sde.time_grid(steps)
    if start is None:
        std = sde.prior_std().expand(d)
        mean, cov = torch.zeros(d, dtype=torch.float64), torch.diag(std**2)
    else:
        mean, cov = start
    for i in range(steps):
        a, b, dd = em_kernel(score, sde, grid[i].item(), (grid[i] - grid[i + 1]).item(), d, kernel)
        mean, cov = a @ mean + b, a @ cov @ a.T + torch.diag(dd)
    return mean, cov


def kalman_smc_target(score, sde, steps: int, mask, ys, kernel: str = "euler"):
    """Exact target and log-evidence of the discretised SMC.

    mask: (B, d) bool; ys: list over k = N..0 of (B, d) observed trajectories y_{t_k}.
    Returns the posterior mean (B, d) and covariance (B, d, d) of x_{t_0} given the trajectory, with
    observed coordinates pinned to y_{t_0}, and log p(y_{t_0..t_N}) (B,).
    """
    b, d = ys[0].shape
    grid = sde.time_grid(steps)
    prior_var = sde.prior_std().expand(d) ** 2
    mean0 = torch.zeros(b, d, dtype=torch.float64)
    mean, cov, log_z = _condition(mean0, torch.diag(prior_var).expand(b, d, d), mask, ys[0])
    for i in range(steps):
        a, c, dd = em_kernel(score, sde, grid[i].item(), (grid[i] - grid[i + 1]).item(), d, kernel)
        pred_mean = mean @ a.T + c
        pred_cov = a @ cov @ a.T + torch.diag(dd)
        mean, cov, inc = _condition(pred_mean, pred_cov, mask, ys[i + 1])
        log_z = log_z + inc
    return mean, cov, log_z
