"""SMC and replacement against diffusers' own RePaint on held-out digits, same UNet, same step count.

    python benchmarks/bench_inpaint.py [--threads 1] [--images 297] [--particles 8] [--steps 250]

Every held-out digit gets a random 4x4 square (25% of the image) hidden, the protocol of the
Non-Uniform Diffusion Models paper. Each method spends the same number of UNet evaluations,
images x particles x steps:

* ``smc``: :func:`smcdiff.smc_sample` (systematic resampling when ESS < M/2), M particles per digit;
* ``replacement``: :func:`smcdiff.replacement_sample`, M independent replacement chains per digit;
* ``RePaint (diffusers)``: ``RePaintPipeline`` with ``RePaintScheduler`` built from the model's own
  scheduler config, ``jump_length = jump_n_sample = 1`` (no resampling jumps: the replacement method),
  ``eta = 1`` (ancestral DDPM steps, the stochastic sampler that RePaint builds on), on a batch holding
  every digit M times.

Metrics over ``--draws`` equally weighted reconstructions per digit (SMC: drawn from its weights;
the others: their first ``--draws`` chains): PSNR against the original; consistency, the PSNR of the
observed pixels against y (both samplers keep them by construction, so it is infinite or at float
rounding for all three; shown to make that visible); label kept, the share of reconstructions that
the digit classifier gives the original's label (whether the completion agrees with what is
visible); Fréchet distance in classifier features to the held-out digits (the UFID of the paper);
seconds per image and per 1,000 UNet evaluations.

Speed per model evaluation of all three is then timed separately on ``--speed-images`` digits (the
seconds per image of the quality table are single runs and shift with whatever else the machine is
doing): the three alternate ``--speed-repeats`` times, and the ratios are medians over the paired repeats, so
that other jobs on the machine do not bias them.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from common import device_name, digits_score
from smcdiff import RunOptions, replacement_sample, smc_sample
from smcdiff.classifier import load_digit_classifier
from smcdiff.data import load_digits_images
from smcdiff.masks import random_square_masks
from smcdiff.metrics import classifier_features, frechet_distance, masked_psnr, psnr


def repaint(score, images: torch.Tensor, masks: torch.Tensor, particles: int, steps: int, seed: int, eta: float):
    """diffusers' RePaintPipeline on every image repeated ``particles`` times: ``(B, M, C, H, W)``."""
    from diffusers import RePaintPipeline, RePaintScheduler

    scheduler = RePaintScheduler.from_config(score.scheduler_config)
    pipe = RePaintPipeline(unet=score.unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    batch = images.repeat_interleave(particles, 0)
    keep = masks.repeat_interleave(particles, 0).float()
    out = pipe(
        batch, keep, num_inference_steps=steps, eta=eta, jump_length=1, jump_n_sample=1,
        generator=torch.Generator().manual_seed(seed), output_type="np",
    ).images  # (B*M, H, W, C) in [0, 1]
    x = torch.from_numpy(out).permute(0, 3, 1, 2) * 2 - 1
    return x.reshape(images.shape[0], particles, *images.shape[1:])


def evaluate(name, draws, images, masks, classifier, real_features, seconds, evaluations):
    b, k = draws.shape[:2]
    flat = draws.flatten(0, 1).float()
    ref = images.repeat_interleave(k, 0)
    cons = masked_psnr(flat, ref, masks.repeat_interleave(k, 0))
    with torch.no_grad():
        labels = classifier(images).argmax(1).repeat_interleave(k)
        kept = (classifier(flat.clamp(-1, 1)).argmax(1) == labels).double().mean().item()
    fd = frechet_distance(classifier_features(flat.clamp(-1, 1), classifier), real_features)
    finite = cons[torch.isfinite(cons)]
    cons_text = "exact (all)" if finite.numel() == 0 else f"{cons.clamp(max=200).mean().item():.1f} ({(~torch.isfinite(cons)).double().mean().item():.0%} exact)"
    return dict(
        method=name, psnr=psnr(flat, ref).mean().item(), consistency=cons_text, label_kept=kept, fd=fd,
        s_per_image=seconds / b, s_per_kilo_eval=1000 * seconds / evaluations, evaluations=evaluations,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--images", type=int, default=297, help="held-out digits (at most 297)")
    p.add_argument("--particles", type=int, default=8)
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--draws", type=int, default=4, help="reconstructions per digit for the metrics")
    p.add_argument("--eta", type=float, default=1.0, help="RePaint's eta (1: DDPM ancestral, 0: DDIM)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-size", type=int, default=None, help="particles per UNet call (default: all)")
    p.add_argument("--speed-images", type=int, default=64, help="digits for the speed comparison")
    p.add_argument("--speed-steps", type=int, default=100, help="steps for the speed comparison")
    p.add_argument("--speed-repeats", type=int, default=3)
    p.add_argument("--skip-quality", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.draws > args.particles:
        p.error("--draws must not exceed --particles")

    score = digits_score()
    images = load_digits_images("test")[: args.images]
    masks = random_square_masks(images.shape[0], 8, 8, 0.25, generator=torch.Generator().manual_seed(args.seed))
    classifier = load_digit_classifier()
    real = classifier_features(images, classifier)
    print(
        f"{images.shape[0]} held-out digits, 4x4 squares hidden; M = {args.particles}, {args.steps} steps, "
        f"{images.shape[0] * args.particles * args.steps:,} UNet evaluations per method; {device_name()}"
    )

    if not args.skip_quality:
        quality(args, score, images, masks, classifier, real)
    speed(args, score, images[: args.speed_images], masks[: args.speed_images])


def speed(args, score, images, masks) -> None:
    b, m, n = images.shape[0], args.particles, args.speed_steps
    runs = {
        "SMC (smcdiff)": lambda: smc_sample(score, score.sde, images, masks, particles=m, steps=n,
                                            generator=torch.Generator().manual_seed(0)),
        "replacement (smcdiff)": lambda: replacement_sample(score, score.sde, images, masks, particles=m, steps=n,
                                                            generator=torch.Generator().manual_seed(0)),
        "RePaint (diffusers)": lambda: repaint(score, images, masks, m, n, 0, args.eta),
    }
    times = {name: [] for name in runs}
    for _ in range(args.speed_repeats):
        for name, run in runs.items():
            t0 = time.perf_counter()
            with torch.no_grad():
                run()
            times[name].append(time.perf_counter() - t0)
    evaluations = b * m * n
    median = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    paired = lambda a, c: median([x / y for x, y in zip(times[a], times[c])])  # noqa: E731
    print(f"\nSpeed, {b} digits x M = {m} x {n} steps = {evaluations:,} UNet evaluations, {args.speed_repeats} alternating repeats:\n")
    print("| method | best seconds | median seconds | ms / UNet evaluation (best) |")
    print("|---|---|---|---|")
    for name, sec in times.items():
        print(f"| {name} | {min(sec):.2f} | {median(sec):.2f} | {1000 * min(sec) / evaluations:.4f} |")
    ratio = paired("RePaint (diffusers)", "replacement (smcdiff)")
    print(
        f"\nRePaint time / replacement time, median of the {args.speed_repeats} paired repeats: {ratio:.3f} "
        f"(each repeat: {', '.join(f'{x / y:.3f}' for x, y in zip(times['RePaint (diffusers)'], times['replacement (smcdiff)']))}; "
        "target >= 1: replacement at least as fast per evaluation)"
    )
    print(f"SMC time / replacement time, median: {paired('SMC (smcdiff)', 'replacement (smcdiff)'):.3f} (the cost of weighting and resampling)")


def quality(args, score, images, masks, classifier, real) -> None:
    b, m, n = images.shape[0], args.particles, args.steps
    evaluations = b * m * n
    rows = []
    g = lambda k: torch.Generator().manual_seed(args.seed + k)  # noqa: E731
    for name, run in [
        ("SMC (systematic, ESS < M/2)", lambda: smc_sample(
            score, score.sde, images, masks, particles=m, steps=n, generator=g(1),
            options=RunOptions(chunk_size=args.chunk_size, progress=True),
        )),
        ("replacement (smcdiff)", lambda: replacement_sample(
            score, score.sde, images, masks, particles=m, steps=n, generator=g(2),
            options=RunOptions(chunk_size=args.chunk_size, progress=True),
        )),
        (f"RePaint (diffusers, eta = {args.eta:g})", lambda: repaint(score, images, masks, m, n, args.seed + 3, args.eta)),
    ]:
        t0 = time.perf_counter()
        with torch.no_grad():
            out = run()
        seconds = time.perf_counter() - t0
        if isinstance(out, torch.Tensor):
            draws = out[:, : args.draws]
        elif name.startswith("SMC"):
            draws = out.draw(args.draws, g(4))
        else:
            draws = out.particles[:, : args.draws]
        rows.append(evaluate(name, draws, images, masks, classifier, real, seconds, evaluations))
        print(f"  {name}: {seconds:.1f} s", flush=True)

    other = frechet_distance(classifier_features(load_digits_images("train")[: b * args.draws], classifier), real)
    print(
        f"\nFor scale: Fréchet distance between {b * args.draws} training digits and the {b} held-out ones: "
        f"{other:.3f} (different digits altogether; an inpainting shares 75% of its pixels with its original)\n"
    )
    print("| method | PSNR (dB) | consistency (dB) | label kept | Fréchet distance | s / image | s / 1k UNet evals |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['psnr']:.2f} | {r['consistency']} | {r['label_kept']:.1%} | {r['fd']:.3f} | "
            f"{r['s_per_image']:.3f} | {r['s_per_kilo_eval']:.3f} |"
        )
    se = math.sqrt(0.25 / (b * args.draws))
    print(f"\n(label kept: binomial standard error at most {se:.1%}, fewer independent draws than that suggests)")


if __name__ == "__main__":
    main()
