"""Throughput of the unconditional sampler, and its overhead over bare score calls.

    python benchmarks/bench_sampler.py [--threads 1]

Reports particle-steps per second of ``smcdiff.sample`` with the exact Gaussian score (d = 2 ... 1024)
and with the digits UNet2DModel score on 8x8 images, and the ratio
time(sample) / time(the same number of bare score calls). Target: ratio <= 1.05 with the UNet.
"""

from __future__ import annotations

import argparse

import torch

from common import device_name, digits_score, timed
from smcdiff import VP, GaussianScore, sample


def gaussian_rows(n: int, steps: int, device) -> list[str]:
    rows = []
    for d in (2, 16, 64, 256, 1024):
        g = torch.Generator(device=device).manual_seed(0)
        a = torch.randn(d, d, generator=torch.Generator().manual_seed(d), dtype=torch.float64)
        sde = VP()
        score = GaussianScore(torch.zeros(d), a @ a.T / d + torch.eye(d), sde).to(device)
        run = lambda: sample(score, sde, (n, d), steps=steps, generator=g, device=device)
        x = torch.randn(n, d, device=device)
        t = torch.full((n,), 0.5, device=device)
        bare = lambda: [score(x, t) for _ in range(steps)]
        ts, tb = timed(run, 2), timed(bare, 2)
        rows.append(f"| Gaussian d={d} | {n} | {steps} | {n * steps / ts:,.0f} | {ts / tb:.3f} |")
    return rows


def unet_row(n: int, steps: int, device) -> str:
    score = digits_score().to(device)
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n, 1, 8, 8, device=device)
    t = torch.full((n,), 0.5, device=device)
    with torch.no_grad():
        run = lambda: sample(score, score.sde, (n, 1, 8, 8), steps=steps, generator=g, device=device)
        bare = lambda: [score(x, t) for _ in range(steps)]
        ratios, ts_all = [], []
        for _ in range(3):  # interleaved, so a busy machine slows both alike
            ts, tb = timed(run, 1), timed(bare, 1)
            ratios.append(ts / tb)
            ts_all.append(ts)
    ratio = sorted(ratios)[1]
    return f"| UNet2DModel 8x8 ({sum(p.numel() for p in score.parameters()) / 1e6:.2f} M params) | {n} | {steps} | {n * steps / min(ts_all):,.0f} | {ratio:.3f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device: {device_name() if device.type == 'cuda' else f'CPU, {torch.get_num_threads()} thread(s)'}")
    print("| score | particles | steps | particle-steps / s | time(sample) / time(bare score calls) |")
    print("|---|---|---|---|---|")
    for row in gaussian_rows(1024, 50, device):
        print(row, flush=True)
    print(unet_row(256, 50, device), flush=True)


if __name__ == "__main__":
    main()
