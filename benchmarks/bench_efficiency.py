"""Effective independent samples per SMC run on Gaussians (exact score), per proposal and kernel.

M_eff = 1 / mean over unobserved coordinates of (posterior-mean error / posterior sd)^2, the error of
one run's weighted posterior mean against the exact posterior, averaged over R independent runs (rows).
i.i.d. exact draws give M_eff = M; a collapsed genealogy gives a few. Also printed: the final per-step
ESS and the distinct final lineages, which per-step ESS hides.

``--correctors [proposal:]K:size ...`` adds bootstrap (or ``twisted:K:size``: twisted) runs with K Langevin
corrector steps of ``size * sigma(t)^2`` with every move (``smc_sample(corrector_steps=K, corrector_size=size)``). Their bias is shown by two
more columns over the R runs pooled: the mean over unobserved coordinates of |pooled mean - exact| in
posterior sd (Monte Carlo SE of that pooled mean: about 1 / sqrt(R M_eff)), and the pooled weighted
variance over the exact posterior variance.

    python benchmarks/bench_efficiency.py --threads 1 --dims 64 256 --proposals bootstrap mcgdiff
    python benchmarks/bench_efficiency.py --threads 1 --dims 256 --proposals --correctors 0:1 3:1 10:1
"""

from __future__ import annotations

import argparse
import time

import torch

from smcdiff import VP, GaussianScore, linear_gaussian_posterior, smc_sample
from smcdiff.operators import Mask


def gaussian(d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    cov = a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)
    mean = torch.randn(d, generator=g, dtype=torch.float64) * 0.5
    mask = torch.zeros(d, dtype=torch.bool)
    mask[: d // 2] = True
    x = mean + torch.linalg.cholesky(cov) @ torch.randn(d, generator=g, dtype=torch.float64)
    return mean, cov, mask, x


def m_eff(d: int, particles: int, steps: int, runs: int, proposal: str, kernel: str, seed: int = 1, **options):
    """M_eff, final ESS, distinct final lineages, seconds, pooled mean bias (in sd), pooled variance ratio."""
    mean, cov, mask, x = gaussian(d)
    sde = VP()
    score = GaussianScore(mean, cov, sde)
    y = x[None].expand(runs, d).clone()
    t0 = time.perf_counter()
    out = smc_sample(score, sde, y, mask, particles=particles, steps=steps, proposal=proposal, kernel=kernel,
                     generator=torch.Generator().manual_seed(seed), **options)
    seconds = time.perf_counter() - t0
    post_mean, post_cov = linear_gaussian_posterior(mean, cov, Mask(mask), x[None])
    free = ~mask
    sd = post_cov[0].diagonal()[free].sqrt()
    run_means = out.mean()[:, free]
    z2 = ((run_means - post_mean[0, free]) / sd) ** 2
    bias = ((run_means.mean(0) - post_mean[0, free]).abs() / sd).mean().item()
    centred = out.particles.double()[..., free] - run_means[:, None]
    var = (out.weights[..., None] * centred**2).sum(1).mean(0)
    ratio = (var / sd**2).mean().item()
    return 1.0 / z2.mean().item(), out.ess[-1].mean().item(), out.distinct_final().double().mean().item(), seconds, bias, ratio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dims", type=int, nargs="+", default=[64, 256])
    p.add_argument("--particles", type=int, default=1000)
    p.add_argument("--steps", type=int, nargs="+", default=[200])
    p.add_argument("--runs", type=int, default=16)
    p.add_argument("--proposals", nargs="*", default=["bootstrap", "mcgdiff"])
    p.add_argument("--kernels", nargs="+", default=["euler"])
    p.add_argument("--correctors", nargs="*", default=[], metavar="[PROPOSAL:]K:SIZE",
                   help="PROPOSAL (bootstrap by default, or twisted) with K corrector steps of SIZE")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"M = {args.particles}, {args.runs} runs, half the coordinates observed (noiseless), VP, exact score")
    print("| d | steps | proposal | kernel | M_eff | final ESS | distinct final lineages | s / run | pooled mean bias (sd) | variance ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    runs = [(p, k, {}) for p in args.proposals for k in args.kernels]
    for spec in args.correctors:
        parts = spec.split(":")
        proposal, (k, size) = (parts[0], parts[1:]) if len(parts) == 3 else ("bootstrap", parts)
        runs += [(f"{proposal} + {k} corrector (size {size})", kernel, dict(corrector_steps=int(k), corrector_size=float(size)))
                 for kernel in args.kernels]
    for d in args.dims:
        for steps in args.steps:
            for label, kernel, options in runs:
                proposal = label.split(" ")[0]
                me, e, lin, sec, bias, ratio = m_eff(d, args.particles, steps, args.runs, proposal, kernel, **options)
                print(f"| {d} | {steps} | {label} | {kernel} | {me:.1f} | {e:.0f} | {lin:.1f} | {sec / args.runs:.2f} "
                      f"| {bias:.3f} | {ratio:.3f} |", flush=True)


if __name__ == "__main__":
    main()
