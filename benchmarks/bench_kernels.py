"""Discretisation error of the reverse kernels vs the number of steps, on Gaussians (exact, no Monte Carlo).

With an exact affine score the sampler's chain is Gaussian, so the law it targets is computed in closed
form (:func:`smcdiff.oracle.linear_gaussian.discretised_law`): for the unconditional sampler directly, and for
the MCGdiff-style SMC as that law conditioned on y (its limit as M grows). The error against the exact
law isolates the discretisation: relative error of the posterior mean (in posterior standard deviations)
and relative Frobenius error of the posterior covariance, for kernel = euler and ancestral.

``--variants N`` adds, at N steps, the kernels and grids one would try next (not in the library):
time grids uniform in log-SNR or in sigma^(1/rho) (EDM), DDIM-eta steps between the deterministic
DDIM step (eta = 0) and the ancestral one (eta = 1), and the ancestral step with Var(x_0 | x_t) added
back (the exact Gaussian transition when it is the full covariance; its isotropic and diagonal parts).

    python benchmarks/bench_kernels.py --threads 1
    python benchmarks/bench_kernels.py --threads 1 --steps 20 250 --variants 20
"""

from __future__ import annotations

import argparse
import math

import torch

from smcdiff import VP, GaussianScore, linear_gaussian_posterior
from smcdiff.oracle.linear_gaussian import affine_score, discretised_law, em_kernel
from smcdiff.operators import Mask


def problem(d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    cov = a @ a.T / d + 0.05 * torch.eye(d, dtype=torch.float64)  # near-singular directions
    mean = torch.randn(d, generator=g, dtype=torch.float64)
    mask = torch.zeros(d, dtype=torch.bool)
    mask[::2] = True
    x = mean + torch.linalg.cholesky(cov) @ torch.randn(d, generator=g, dtype=torch.float64)
    return mean, cov, Mask(mask), x[None]


def errors(d: int, steps: int, kernel: str):
    mean, cov, op, y = problem(d)
    sde = VP()
    score = GaussianScore(mean, cov, sde)
    dm, dc = discretised_law(score, sde, steps, d, kernel=kernel)
    pm, pc = linear_gaussian_posterior(mean, cov, op, y)
    km, kc = linear_gaussian_posterior(dm, dc, op, y)
    free = ~op.mask
    sd = pc[0].diagonal()[free].sqrt()
    mean_err = ((km[0] - pm[0])[free] / sd).abs().max().item()
    cov_err = ((kc[0] - pc[0]).norm() / pc[0].norm()).item()
    prior_cov_err = ((dc - cov).norm() / cov.norm()).item()
    return mean_err, cov_err, prior_cov_err


def _coefficients(sde, t: float) -> tuple[float, float]:
    c = sde.coefficients(torch.tensor([t], dtype=torch.float64), 1)
    return c.alpha[0].item(), c.sigma2[0].item()


def variant_law(score, sde, grid: torch.Tensor, d: int, kernel: str):
    """Mean and covariance of the chain's output for one variant kernel on ``grid`` (affine score).

    ``euler``; ``ddim:eta`` (x_s = alpha_s x0 + sqrt(sigma_s^2 - c^2) eps_hat + c z, c^2 = eta^2 times the
    bridge variance); ``ancestral+iso|diag|full``: the ancestral step plus b^2 Cov(x_0 | x_t), with
    Cov(x_0 | x_t) = (sigma_t^2 / alpha_t) d x0_hat / d x_t (second-order Tweedie), averaged, diagonal or full.
    """
    eye = torch.eye(d, dtype=torch.float64)
    mean, cov = torch.zeros(d, dtype=torch.float64), torch.diag(sde.prior_std().expand(d) ** 2)
    for i in range(grid.numel() - 1):
        t, s = grid[i].item(), grid[i + 1].item()
        if kernel == "euler":
            a, b, noise = em_kernel(score, sde, t, t - s, d)
            mean, cov = a @ mean + b, a @ cov @ a.T + torch.diag(noise)
            continue
        j, c = affine_score(score, t, d)
        alpha_t, var_t = _coefficients(sde, t)
        alpha_s, var_s = _coefficients(sde, s)
        p, q = (eye + var_t * j) / alpha_t, var_t * c / alpha_t  # x0_hat = p x + q
        bridge = var_s * (1 - (alpha_t / alpha_s) ** 2 * var_s / var_t)
        if kernel.startswith("ddim:"):
            c2 = float(kernel.split(":")[1]) ** 2 * bridge
            e, e0 = (eye - alpha_t * p) / var_t**0.5, -alpha_t * q / var_t**0.5  # eps_hat = e x + e0
            a = alpha_s * p + (var_s - c2) ** 0.5 * e
            b, extra = alpha_s * q + (var_s - c2) ** 0.5 * e0, c2 * eye
        else:
            kx, k0 = (alpha_t / alpha_s) * var_s / var_t, alpha_s * (1 - (alpha_t / alpha_s) ** 2 * var_s / var_t)
            a, b = kx * eye + k0 * p, k0 * q
            post = var_t / alpha_t * p
            part = kernel.split("+")[1]
            post = {"iso": post.diagonal().mean() * eye, "diag": torch.diag(post.diagonal()), "full": post}[part]
            extra = bridge * eye + k0**2 * post
        mean, cov = a @ mean + b, a @ cov @ a.T + extra
    return mean, cov


def _lambda(sde, t: torch.Tensor) -> torch.Tensor:
    c = sde.coefficients(t.reshape(-1), 1)
    return (c.alpha**2 / c.sigma2).log().reshape(-1)


def _time_of(sde, log_snr: torch.Tensor) -> torch.Tensor:
    lo, hi = torch.full_like(log_snr, sde.eps), torch.full_like(log_snr, sde.T)
    for _ in range(100):  # log-SNR decreases in t
        mid = (lo + hi) / 2
        above = _lambda(sde, mid) > log_snr
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    return (lo + hi) / 2


def variant_grid(sde, steps: int, name: str) -> torch.Tensor:
    """``uniform`` (the library's), ``logsnr`` (uniform in log-SNR) or ``edm:rho`` (uniform in sigma^(1/rho))."""
    if name == "uniform":
        return sde.time_grid(steps)
    ends = torch.tensor([sde.T, sde.eps], dtype=torch.float64)
    lam_T, lam_0 = _lambda(sde, ends).tolist()
    if name == "logsnr":
        lam = torch.linspace(lam_T, lam_0, steps + 1, dtype=torch.float64)
    else:
        rho = float(name.split(":")[1])
        s_max, s_min = math.exp(-lam_T / 2), math.exp(-lam_0 / 2)
        i = torch.arange(steps + 1, dtype=torch.float64) / steps
        lam = -2 * torch.log((s_max ** (1 / rho) + i * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho)
    grid = _time_of(sde, lam)
    grid[0], grid[-1] = sde.T, sde.eps
    return grid


def variants(d: int, steps: int) -> None:
    mean, cov, op, y = problem(d)
    sde = VP()
    score = GaussianScore(mean, cov, sde)
    _, pc = linear_gaussian_posterior(mean, cov, op, y)
    print("\n| d | N | grid | kernel | posterior cov rel. error | unconditional cov rel. error |")
    print("|---|---|---|---|---|---|")
    rows = [("uniform", k) for k in ("euler", "ddim:1", "ddim:0.5", "ddim:0", "ancestral+iso", "ancestral+diag", "ancestral+full")]
    rows += [(g, k) for g in ("logsnr", "edm:7", "edm:3") for k in ("euler", "ddim:1", "ddim:0")]
    for grid_name, kernel in rows:
        dm, dc = variant_law(score, sde, variant_grid(sde, steps, grid_name), d, kernel)
        _, kc = linear_gaussian_posterior(dm, dc, op, y)
        c = ((kc[0] - pc[0]).norm() / pc[0].norm()).item()
        u = ((dc - cov).norm() / cov.norm()).item()
        print(f"| {d} | {steps} | {grid_name} | {kernel} | {c:.4f} | {u:.4f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dims", type=int, nargs="+", default=[16])
    p.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50, 100, 250, 500])
    p.add_argument("--variants", type=int, default=None, metavar="N", help="also the variant kernels and grids at N steps")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print("| d | N | kernel | posterior mean error (max, in posterior sd) | posterior cov rel. error | unconditional cov rel. error |")
    print("|---|---|---|---|---|---|")
    for d in args.dims:
        for n in args.steps:
            for kernel in ("euler", "ancestral"):
                m, c, u = errors(d, n, kernel)
                print(f"| {d} | {n} | {kernel} | {m:.4f} | {c:.4f} | {u:.4f} |")
    if args.variants is not None:
        for d in args.dims:
            variants(d, args.variants)


if __name__ == "__main__":
    main()
