"""SMC accuracy versus particles, overhead versus the unconditional sampler, and peak memory.

    python benchmarks/bench_smc.py [--threads 1] [--runs 32] [--steps 100]

1. Accuracy vs M (100, 1,000, 10,000) on a d = 16 Gaussian with half the coordinates observed:
   posterior-mean RMSE and covariance error (Frobenius, unobserved block) over independent runs, for
   SMC (systematic, adaptive ESS < 0.5 M), SMC as published (multinomial, every step) and replacement.
   Errors are measured against the exact posterior (``gaussian_posterior``, includes the Euler-Maruyama
   floor) and against the exact target of the discretised model (a Kalman filter, Monte Carlo error only).
   Targets: error ~ 1/sqrt(M) down to the floor; adaptive systematic MSE <= 1/3 of multinomial-every-step.
2. Overhead: time(smc_sample) / time(sample) at equal score, steps and particles.
   Targets: <= 1.10 with the digits UNet2DModel on 8x8; <= 2.0 with the exact Gaussian score at d = 64.
3. Peak memory (resident set of a fresh process) with and without ``chunk_size``, and vs steps.
"""

from __future__ import annotations

import argparse
import math

import torch

from common import digits_score, peak_rss_mb, timed
from smcdiff import VP, GaussianScore, gaussian_posterior, replacement_sample, sample, smc_sample
from smcdiff.oracle.linear_gaussian import kalman_smc_target

D = 16


def problem():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(D, D, generator=g, dtype=torch.float64)
    cov = a @ a.T / D + 0.2 * torch.eye(D, dtype=torch.float64)
    mean = torch.randn(D, generator=g, dtype=torch.float64)
    x = mean + torch.linalg.cholesky(cov) @ torch.randn(D, generator=g, dtype=torch.float64)
    mask = torch.arange(D) % 2 == 0
    return mean, cov, x, mask


METHODS = {
    "SMC systematic, adaptive (ESS < 0.5 M)": dict(fn=smc_sample, resampling="systematic", ess_threshold=0.5),
    "SMC multinomial, every step (published)": dict(fn=smc_sample, resampling="multinomial", ess_threshold=1.0),
    "replacement": dict(fn=replacement_sample),
}


def accuracy(runs: int, steps: int) -> None:
    sde = VP()
    mean, cov, x, mask = problem()
    score = GaussianScore(mean, cov, sde)
    y = x.expand(runs, D).clone()
    masks = mask.expand(runs, D)
    post_mean, post_cov = gaussian_posterior(mean, cov, masks, y)
    u = ~mask
    print(f"\n### Accuracy vs particles (d = {D}, {int(mask.sum())} observed, VP, {steps} steps, {runs} runs)\n")
    print("| method | M | mean RMSE vs exact | cov error vs exact | mean RMSE vs discretised target | cov error vs discretised target |")
    print("|---|---|---|---|---|---|")
    mse = {}
    for name, spec in METHODS.items():
        kw = {k: v for k, v in spec.items() if k != "fn"}
        for m in (100, 1000, 10000):
            traj = []
            cb = lambda info: traj.append(info.particles[:, 0].clone())
            out = spec["fn"](score, sde, y, masks, particles=m, steps=steps, generator=torch.Generator().manual_seed(m), callback=cb, **kw)
            k_mean, k_cov, _ = kalman_smc_target(score, sde, steps, masks, traj)
            est_mean, est_cov = out.mean(), out.cov()
            cu = lambda c: c[:, u][:, :, u]
            rmse = lambda a, b: ((a - b)[:, u] ** 2).mean().sqrt().item()
            cerr = lambda a, b: ((cu(a) - cu(b)) ** 2).sum((1, 2)).sqrt().mean().item()
            mse[name, m] = ((est_mean - k_mean)[:, u] ** 2).mean().item()
            print(
                f"| {name} | {m:,} | {rmse(est_mean, post_mean):.4f} | {cerr(est_cov, post_cov):.4f} | "
                f"{rmse(est_mean, k_mean):.4f} | {cerr(est_cov, k_cov):.4f} |",
                flush=True,
            )
    a, b = list(METHODS)[:2]
    print("\nMSE of the posterior mean against the discretised target, adaptive systematic / multinomial every step:")
    for m in (100, 1000, 10000):
        print(f"- M = {m:,}: {mse[a, m] / mse[b, m]:.3f}")
    print("Slope of log RMSE vs log M (adaptive systematic, discretised target): "
          f"{(math.log(mse[a, 10000]) - math.log(mse[a, 100])) / 2 / math.log(100):.3f} (-0.5 is 1/sqrt(M))")


def overhead(steps: int) -> None:
    print(f"\n### Overhead of SMC over the unconditional sampler ({steps} steps)\n")
    print("| score | B x M | time(sample) s | time(smc_sample) s | ratio | target |")
    print("|---|---|---|---|---|---|")
    unet = digits_score()
    b, m = 8, 32
    y = torch.zeros(b, 1, 8, 8)
    mask = torch.zeros(b, 1, 8, 8, dtype=torch.bool)
    mask[..., :, :4] = True
    with torch.no_grad():
        run_s = lambda: sample(unet, unet.sde, (b * m, 1, 8, 8), steps=steps, generator=torch.Generator().manual_seed(0))
        run_c = lambda: smc_sample(unet, unet.sde, y, mask, particles=m, steps=steps, generator=torch.Generator().manual_seed(0))
        pairs = [(timed(run_s, 1), timed(run_c, 1)) for _ in range(3)]
    ratio = sorted(c / s for s, c in pairs)[1]
    ts, tc = min(p[0] for p in pairs), min(p[1] for p in pairs)
    print(f"| digits UNet2DModel 8x8 | {b} x {m} | {ts:.2f} | {tc:.2f} | {ratio:.3f} | <= 1.10 |", flush=True)
    d = 64
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(1))
    sde = VP()
    score = GaussianScore(torch.zeros(d), a @ a.T / d + torch.eye(d), sde)
    b, m = 16, 256
    y = torch.zeros(b, d)
    mask = torch.arange(d) % 2 == 0
    run_s = lambda: sample(score, sde, (b * m, d), steps=steps, generator=torch.Generator().manual_seed(0))
    run_c = lambda: smc_sample(score, sde, y, mask, particles=m, steps=steps, generator=torch.Generator().manual_seed(0))
    pairs = [(timed(run_s, 1), timed(run_c, 1)) for _ in range(3)]
    ratio = sorted(c / s for s, c in pairs)[1]
    ts, tc = min(p[0] for p in pairs), min(p[1] for p in pairs)
    print(f"| exact Gaussian d = 64 | {b} x {m} | {ts:.2f} | {tc:.2f} | {ratio:.3f} | <= 2.0 |", flush=True)


MEMORY_PROBE = """
import torch
torch.set_num_threads({threads})
from smcdiff import smc_sample
from smcdiff.models import load_model
score = load_model('digits')
y = torch.zeros({b}, 1, 8, 8); mask = torch.zeros_like(y, dtype=torch.bool); mask[..., :4] = True
with torch.no_grad():
    {call}
"""


def memory(threads: int) -> None:
    print("\n### Peak memory (resident set of a fresh process, MB; the baseline process loads the model only)\n")
    print("| configuration | peak RSS MB | above baseline MB |")
    print("|---|---|---|")
    b, m = 16, 256  # 4,096 particles
    base = peak_rss_mb(MEMORY_PROBE.format(threads=threads, b=b, call="pass"))
    print(f"| baseline (model loaded) | {base:.0f} | 0 |")
    for steps, chunk in [(10, None), (40, None), (160, None), (40, 512), (160, 512)]:
        call = f"smc_sample(score, score.sde, y, mask, particles={m}, steps={steps}, chunk_size={chunk}, generator=torch.Generator().manual_seed(0))"
        peak = peak_rss_mb(MEMORY_PROBE.format(threads=threads, b=b, call=call))
        print(f"| {b} x {m} particles, {steps} steps, chunk_size={chunk} | {peak:.0f} | {peak - base:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--only", choices=["accuracy", "overhead", "memory"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU, {args.threads} thread(s)")
    if args.only in (None, "accuracy"):
        accuracy(args.runs, args.steps)
    if args.only in (None, "overhead"):
        overhead(50)
    if args.only in (None, "memory"):
        memory(args.threads)


if __name__ == "__main__":
    main()
