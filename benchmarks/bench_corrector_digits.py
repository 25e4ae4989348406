"""Langevin corrector moves on digits inpainting: do they spread the draws of one SMC run?

Held-out digits, a random 4x4 square hidden in each, the shipped digits UNet, bootstrap (or, with
``--proposal twisted``, twisted) SMC with M particles and N steps on the model's training timesteps (:func:`smcdiff.inpaint`), with K corrector
steps of ``size * sigma(t)^2`` after every move (``corrector_steps=K``; K = 0 is plain SMCDiff).
Metrics over ``--draws`` equally weighted draws per digit: PSNR against the original, label kept (the
digit classifier gives the original's label), Fréchet distance in classifier features to the held-out
digits, diversity (mean per-pixel standard deviation across the draws) and the distinct final
lineages of the M particles; network evaluations per digit M N (1 + K) (twisted: each with a backward pass).

    python benchmarks/bench_corrector_digits.py --threads 1 --images 64 --correctors 0:1 1:1 1:0.5 3:0.5
    python benchmarks/bench_corrector_digits.py --threads 1 --images 64 --particles 8 --proposal twisted --correctors 0:1 1:1
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from smcdiff import RunOptions, inpaint
from smcdiff.proposals import PROPOSALS
from smcdiff.classifier import load_digit_classifier
from smcdiff.data import load_digits_images
from smcdiff.masks import random_square_masks
from smcdiff.metrics import classifier_features, diversity, frechet_distance, psnr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--particles", type=int, default=16)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--draws", type=int, default=4)
    p.add_argument("--correctors", nargs="+", default=["0:1", "1:1", "1:0.5"], metavar="K:SIZE")
    p.add_argument("--proposal", choices=("bootstrap", "twisted"), default="bootstrap")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    images = load_digits_images("test")[: args.images]
    masks = random_square_masks(images.shape[0], 8, 8, 0.25, generator=torch.Generator().manual_seed(args.seed))
    classifier = load_digit_classifier()
    with torch.no_grad():
        labels = classifier(images).argmax(1)
        real = classifier_features(load_digits_images("test"), classifier)
    print(f"{images.shape[0]} held-out digits, {args.proposal}, M = {args.particles}, {args.steps} steps, "
          f"{args.draws} draws per digit")
    print("| K | size | PSNR (dB) | label kept | Fréchet distance | diversity | distinct final lineages | NFE / digit | s / digit |")
    print("|---|---|---|---|---|---|---|---|---|")
    for spec in args.correctors:
        k, size = int(spec.split(":")[0]), float(spec.split(":")[1])
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # few-steps advice
            res = inpaint(
                "digits", images, masks, particles=args.particles, steps=args.steps,
                generator=torch.Generator().manual_seed(args.seed + 1),
                proposal=PROPOSALS[args.proposal](corrector_steps=k, corrector_size=size),
                options=RunOptions(populations=1),  # one run of M, as the figures in BENCHMARKS.md
            )
        seconds = time.perf_counter() - t0
        draws = res.draw(args.draws, torch.Generator().manual_seed(args.seed + 2))
        flat = draws.flatten(0, 1)
        with torch.no_grad():
            kept = (classifier(flat).argmax(1) == labels.repeat_interleave(args.draws)).double().mean().item()
            fd = frechet_distance(classifier_features(flat, classifier), real)
        quality = psnr(flat, images.repeat_interleave(args.draws, 0)).mean().item()
        lineages = res.weighted.distinct_final().double().mean().item()
        nfe = args.particles * args.steps * (1 + k)
        print(f"| {k} | {size:g} | {quality:.2f} | {kept:.1%} | {fd:.2f} | {diversity(draws):.3f} | {lineages:.1f} "
              f"| {nfe} | {seconds / images.shape[0]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
