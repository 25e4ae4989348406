"""A non-linear observation end to end: dequantising digits (4 grey levels after a small dither).

Each held-out digit x is observed as y = the bin of x + sigma eps among 4 equal bins on [-1, 1] (sigma = 0.05;
``smcdiff.likelihoods.Quantised.uniform(4, 0.05)``), and reconstructed by

- ``twisted M = m, runs``: K independent twisted SMC runs of m particles per digit, one draw each (``restore``);
- ``DPS`` (Chung et al. 2023, Algorithm 1, ``benchmarks/common.py``, ``dps_sample``, zeta = 1): the residual is the
  distance of x0_hat to the observed bin, pixel by pixel (the dither ignored), the quantised analogue of y - A x0_hat.
  deepinv's DPS takes linear-Gaussian physics only and cannot be installed next to a CPU torch here. At the step
  count of the SMC rows and at m times as many (equal network evaluations and backward passes per draw).

Per row: PSNR of the first draw against the truth and the share of first draws whose label (shipped classifier)
is the truth's, each with a paired 95 % interval of the difference to DPS at the SMC rows' cost over digits; the
Fréchet distance of all K draws of every digit against the N truths (shipped classifier's features), with a
paired bootstrap interval over digits (200 replicates); diversity; the share of pixels in their observed bin;
network evaluations and backward passes per draw; seconds.

Example (the figures in BENCHMARKS.md, "A non-linear observation: quantised digits")::

    OMP_NUM_THREADS=1 python benchmarks/bench_quantise.py --n 297 --draws 4 --steps 100 --particles 4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from common import dps_sample, fd_bootstrap, paired_difference
from smcdiff import RunOptions, load_model, restore
from smcdiff.classifier import load_digit_classifier
from smcdiff.data import load_digits_images, load_mnist_images
from smcdiff.likelihoods import Quantised
from smcdiff.metrics import classifier_features, diversity, psnr


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=("digits", "mnist"), default="digits")
    p.add_argument("--n", type=int, default=297, help="held-out digits")
    p.add_argument("--draws", type=int, default=4, help="K draws per digit")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--particles", type=int, nargs="+", default=[4])
    p.add_argument("--levels", type=int, default=4)
    p.add_argument("--dither", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/quantise.jsonl"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model(args.model)
    clf = load_digit_classifier(directory=None if args.model == "digits" else "smcdiff/assets/mnist_classifier")
    x, _ = (load_digits_images if args.model == "digits" else load_mnist_images)("test", return_labels=True)
    x = x[: args.n]
    n, k, s = x.shape[0], args.draws, args.steps
    lik = Quantised.uniform(args.levels, args.dither)
    y = lik.sample(x, torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        truth_label = clf(x).argmax(1)
    rows: dict[str, dict] = {}
    draws: dict[str, torch.Tensor] = {}

    def record(name, run, evals, backward):
        t0 = time.perf_counter()
        d = run().float().clamp(-1, 1)  # (n, k, C, H, W)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            label = clf(d[:, 0]).argmax(1)
        draws[name] = d
        rows[name] = dict(row=name, evaluations_per_draw=evals, backward_per_draw=backward, seconds=seconds,
                          psnr=psnr(d[:, 0], x), label_kept=(label == truth_label).double(), diversity=diversity(d),
                          in_bin=float((lik.quantise(d) == y[:, None]).float().mean()))
        print(name, f"{seconds:.0f} s", flush=True)

    edges = torch.cat([torch.tensor([-torch.inf]), lik.edges.float(), torch.tensor([torch.inf])])
    bins = y.repeat_interleave(k, 0).long()
    low, high = edges[bins], edges[bins + 1]

    def residual(x0):  # distance to the observed bin
        return torch.clamp(low - x0, min=0) + torch.clamp(x0 - high, min=0)

    dps = []
    for scale in sorted({1, *args.particles}):
        name = f"DPS, {scale * s} steps"
        dps.append(name)
        record(name, lambda scale=scale: dps_sample(model, residual, n * k, scale * s, torch.Generator().manual_seed(args.seed + 1))
               .view(n, k, *x.shape[1:]), scale * s, scale * s)
    for m in args.particles:
        def run(m=m):
            g = torch.Generator().manual_seed(args.seed + 2)
            res = restore(model, y, lik, particles=m, steps=s, kernel="ancestral", generator=g, options=RunOptions(populations=k))
            return res.draw(k, g)
        record(f"twisted M={m}, runs", run, m * s, m * s)
    base = dps[-1]  # DPS at the SMC rows' cost per draw
    feats = {name: classifier_features(d.flatten(0, 1), clf).view(n, k, -1) for name, d in draws.items()}
    fds = fd_bootstrap(feats, classifier_features(x, clf), base)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    truth_in_bin = float((lik.quantise(x) == y).float().mean())
    print(f"\n{args.model}: {n} held-out digits, {k} draws each, {args.levels} levels, dither {args.dither:g}; "
          f"differences against '{base}' with paired 95 % intervals over digits; the truth's pixels lie in their "
          f"observed bin {100 * truth_in_bin:.1f} % of the time\n")
    print("| row | evaluations (backward) per draw | PSNR first draw (dB) | label kept | FD, all draws | diversity | in bin | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        dp = paired_difference(r["psnr"], rows[base]["psnr"])
        dl = paired_difference(r["label_kept"], rows[base]["label_kept"])
        f = fds[name]
        diff = "" if name == base else f" ({dp[0]:+.2f} ± {dp[1]:.2f})"
        diffl = "" if name == base else f" ({100 * dl[0]:+.1f} ± {100 * dl[1]:.1f})"
        difff = "" if name == base else f" ({f['diff']:+.2f} [{f['lo']:+.2f}, {f['hi']:+.2f}])"
        print(f"| {name} | {r['evaluations_per_draw']} ({r['backward_per_draw']}) | {float(r['psnr'].mean()):.2f}{diff} | "
              f"{100 * float(r['label_kept'].mean()):.1f} %{diffl} | {f['fd']:.2f}{difff} | {r['diversity']:.3f} | "
              f"{100 * r['in_bin']:.1f} % | {r['seconds']:.0f} |")
        with args.out.open("a") as fh:
            fh.write(json.dumps(dict(model=args.model, n=n, draws=k, steps=s, row=name, psnr=float(r["psnr"].mean()),
                                     psnr_diff=dp, label_kept=float(r["label_kept"].mean()), label_diff=dl, fd=f,
                                     diversity=r["diversity"], in_bin=r["in_bin"], seconds=r["seconds"],
                                     evaluations=r["evaluations_per_draw"])) + "\n")


if __name__ == "__main__":
    main()
