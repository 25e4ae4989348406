"""SMC against replacement on the seed slides' Gaussian, where the answer is known in closed form.

(Y, X) ~ N(0, [[1, 1.5], [1.5, 5]]) diffused by the OU process dU = -U dt + sqrt(2) dB; we observe
Y = 1, so X | Y = 1 ~ N(1.5, 2.75). Both samplers use the exact score of the diffused Gaussian, so
any gap to the exact column is the sampler's own: Monte Carlo error for SMC, a bias for replacement.

    python examples/gaussian_toy.py                        # table for the 2-d Gaussian
    python examples/gaussian_toy.py --figure toy.png       # + the slides' figure, Gaussian and mixture

The full table with the 2-component mixture is ``smcdiff gaussian``.
"""

from __future__ import annotations

import argparse
import math

import torch

from smcdiff import OU, GaussianScore, gaussian_posterior, replacement_sample, smc_sample


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--particles", type=int, default=1000)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--runs", type=int, default=32, help="independent runs, for the standard errors")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--figure", default=None, help="also write the slides' figure (needs matplotlib)")
    args = p.parse_args()

    g = torch.Generator().manual_seed(args.seed)
    sde = OU()
    mean = torch.zeros(2, dtype=torch.float64)
    cov = torch.tensor([[1.0, 1.5], [1.5, 5.0]], dtype=torch.float64)
    score = GaussianScore(mean, cov, sde)
    y = torch.tensor([1.0, 0.0], dtype=torch.float64).expand(args.runs, 2)  # one run per row
    mask = torch.tensor([True, False])  # Y observed, X not

    post_mean, post_cov = gaussian_posterior(mean, cov, mask, y[:1])
    exact = {"E[X | Y=1]": post_mean[0, 1].item(), "Var[X | Y=1]": post_cov[0, 1, 1].item()}
    print(f"{'':<14}{'exact':>8}{'SMC':>24}{'replacement':>24}")
    results = {}
    for name, fn in (("SMC", smc_sample), ("replacement", replacement_sample)):
        out = fn(score, sde, y, mask, particles=args.particles, steps=args.steps, generator=g, progress=True)
        x, w = out.particles[..., 1], out.weights
        m = (w * x).sum(1)
        v = (w * (x - m[:, None]) ** 2).sum(1)
        results[name] = {"E[X | Y=1]": m, "Var[X | Y=1]": v}
    worst = dict.fromkeys(results, 0.0)
    for stat, value in exact.items():
        cells = ""
        for name in ("SMC", "replacement"):
            est = results[name][stat]
            se = est.std().item() / math.sqrt(args.runs)
            z = abs(est.mean().item() - value) / se
            worst[name] = max(worst[name], z)
            cells += f"{est.mean().item():>9.3f} ± {se:.3f} ({z:4.1f} SE)"
        print(f"{stat:<14}{value:>8.3f}{cells}")
    for name, z in worst.items():
        verdict = "within 4 standard errors of" if z <= 4 else f"{z:.1f} standard errors away from"
        print(f"{name}: {verdict} the exact posterior")

    if args.figure:
        from smcdiff.oracle.toy import toy_problems
        from smcdiff.plotting import plot_gaussian_toy
        from smcdiff.toy_table import conditional_rows, unconditional_rows

        _, draws = unconditional_rows(20_000, args.steps, g, progress=True)
        _, pooled = conditional_rows(args.particles, args.steps, args.runs, g, progress=True)
        print(f"wrote {plot_gaussian_toy(toy_problems(), draws, pooled, args.figure)}")


if __name__ == "__main__":
    main()
