"""Discretisation error of the reverse kernels vs the number of steps, on Gaussians (exact, no Monte Carlo).

With an exact affine score the sampler's chain is Gaussian, so the law it targets is computed in closed
form (:func:`smcdiff.linear_gaussian.discretised_law`): for the unconditional sampler directly, and for
the MCGdiff-style SMC as that law conditioned on y (its limit as M grows). The error against the exact
law isolates the discretisation: relative error of the posterior mean (in posterior standard deviations)
and relative Frobenius error of the posterior covariance, for kernel = euler and ancestral.

    python benchmarks/bench_kernels.py --threads 1
"""

from __future__ import annotations

import argparse

import torch

from smcdiff import VP, GaussianScore, linear_gaussian_posterior
from smcdiff.oracle.linear_gaussian import discretised_law
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dims", type=int, nargs="+", default=[16])
    p.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50, 100, 250, 500])
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


if __name__ == "__main__":
    main()
