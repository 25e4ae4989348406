"""The ``smcdiff`` command (also ``python -m smcdiff``): ``demo``, ``restore``, ``inpaint``, ``generate``, ``calibrate``
and ``gaussian``.

User errors (a missing file, an image the model cannot take, a mask of the wrong size, a bad box or
argument) print one line to stderr and exit with status 2, before any long work where they can be
known in advance. Nothing here does mathematics: the sampling is :func:`smcdiff.restore`.

Threads: sampling is many small network calls, and torch's thread pool on a machine shared with
other work can make it several times slower than one thread. Unless ``--threads`` or
``OMP_NUM_THREADS`` says otherwise, the commands use 1 thread on machines with at most 2 CPUs and
torch's default (one per physical core) capped at the CPUs this process may use elsewhere
(:func:`default_threads`).

Several processes: under ``torchrun --nproc-per-node N -m smcdiff restore ...`` (or ``inpaint``) each
process holds particles / N of every image's particles (:mod:`smcdiff.distributed`: gloo on CPU, nccl
on CUDA with one GPU per process); rank 0 prints and writes the outputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch

from .version import __version__

__all__ = ["main", "build_parser", "default_threads", "MIN_STEPS"]

from .cli_common import (  # noqa: F401  (re-exported where tests and users look)
    DEFAULT_BLUR_SIGMA,
    DEFAULT_FACTOR,
    DEFAULT_LEVELS,
    SLIDES,
    TASKS,
    UserError,
    _check_plotting,
    _configure,
    _generator,
    _image_out,
    _join_option_values,
    _load_model_or_fail,
    _non_negative_float,
    _parse_box,
    _Parser,
    _positive,
    _warn_few_steps,
    default_threads,
)
from .cli_calibrate import add_calibrate_parser
from .cli_generate import add_generate_parser
from .cli_restore import cmd_inpaint, cmd_restore
from .restore import DEFAULT_PARTICLES, DEFAULT_POPULATIONS, MIN_STEPS  # noqa: E402  (the library's defaults)


# ---- smcdiff gaussian ----
def cmd_gaussian(args: argparse.Namespace) -> None:
    from .toy_table import conditional_rows, format_rows, unconditional_rows

    if args.out is not None:  # fail now, not after the sampling
        _check_plotting("--out")
        import matplotlib.pyplot as plt

        args.out = args.out.with_name(args.out.name + ".png") if args.out.suffix == "" else args.out
        fig = plt.figure()
        supported = fig.canvas.get_supported_filetypes()
        plt.close(fig)
        if args.out.suffix.lower().lstrip(".") not in supported:
            raise UserError(f"--out {args.out}: cannot write figures of type {args.out.suffix!r}; use .png")
    torch.set_num_threads(args.threads if args.threads is not None else default_threads())
    g = _generator(args.seed)
    t0 = time.perf_counter()
    rows_u, draws = unconditional_rows(args.samples, args.steps, g, progress=True)
    print(f"Unconditional reverse SDE (OU, exact score, {args.steps} steps, {args.samples} samples):")
    print(format_rows(rows_u))
    rows_c, pooled = conditional_rows(args.particles, args.steps, args.runs, g, progress=True)
    print(f"\nConditional X | Y = y ({args.particles} particles, {args.steps} steps, SE over {args.runs} runs):")
    print(format_rows(rows_c))
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    if args.out is not None:
        from .oracle.toy import toy_problems
        from .plotting import plot_gaussian_toy

        path = plot_gaussian_toy(toy_problems(), draws, pooled, args.out)
        print(f"wrote {path}")


# ---- smcdiff demo ----
def _method_table(results: dict, images: torch.Tensor, consistent, draws: int, generator, classifier) -> tuple[str, dict]:
    """One line per method: PSNR to the original, consistency, label kept, lineages, time; and the draws."""
    from .metrics import psnr

    with torch.no_grad():
        labels = classifier(images).argmax(1)
    head = f"{'method':<22} {'PSNR (dB)':>9} {'consistency (dB)':>16} {'label kept':>10} {'lineages':>9} {'s / image':>9}"
    lines = [head]
    picks = {}
    for name, res in results.items():
        x = res.draw(draws, generator).cpu().float()  # (B, k, C, H, W)
        picks[name] = x
        flat = x.flatten(0, 1)
        p = psnr(flat, images.repeat_interleave(draws, 0)).mean().item()
        c = consistent(flat).mean().item()
        with torch.no_grad():
            kept = (classifier(flat).argmax(1) == labels.repeat_interleave(draws)).double().mean().item()
        lineages = res.weighted.distinct_final().double().mean().item()
        c_text = "exact" if c == float("inf") else f"{c:.2f}"
        m = res.samples.shape[1]
        lines.append(
            f"{name:<22} {p:>9.2f} {c_text:>16} {kept:>10.1%} {f'{lineages:.1f}/{m}':>9} {res.seconds / images.shape[0]:>9.3f}"
        )
    return "\n".join(lines), picks


def cmd_demo(args: argparse.Namespace) -> None:
    from .classifier import SHIPPED_CLASSIFIERS, load_digit_classifier
    from .data import load_digits_images, load_mnist_samples
    from .inpaint import inpaint
    from .masks import random_square_masks
    from .metrics import consistency, masked_psnr
    from .operators import Downsample
    from .options import RunOptions
    from .plotting import GridSection, save_image_sections
    from .restore import restore

    out = _image_out(args.out)
    if args.model not in SHIPPED_CLASSIFIERS:
        raise UserError(f"the demo runs on the shipped models {sorted(SHIPPED_CLASSIFIERS)} (their held-out images and "
                        f"classifiers); got --model {args.model!r}. For your own model use 'smcdiff restore' or 'inpaint'")
    device, threads = _configure(args)
    model = _load_model_or_fail(args.model, device)
    images = (load_digits_images("test") if args.model == "digits" else load_mnist_samples()[0])[: args.images]
    side = images.shape[-1]
    if tuple(getattr(model, "event_shape", ())) != tuple(images.shape[1:]):
        raise UserError(f"the demo uses {side}x{side} greyscale digits; model {args.model!r} expects {tuple(model.event_shape)}")
    masks = random_square_masks(images.shape[0], side, side, 0.25, generator=_generator(args.seed))
    b, k, m = images.shape[0], args.draws, args.particles
    runs = "" if args.populations == 1 else f" (SMC: in each of {args.populations} independent runs)"
    print(
        f"Inpainting {b} held-out digits, a random 4x4 square (25%) hidden in each; {m} particles{runs}, "
        f"{args.steps} steps ({args.kernel}), model {args.model!r}, {device}, {threads} thread(s)."
    )
    _warn_few_steps(args.steps, args.kernel)
    common = dict(particles=m, steps=args.steps, kernel=args.kernel, device=device)
    run = RunOptions(progress=True, chunk_size=args.chunk_size, threads="torch")  # the command set the threads
    smc_run = run.replace(populations=args.populations)
    results = {
        method: inpaint(model, images, masks, method=method, generator=_generator(args.seed + 1, device), **common,
                        options=smc_run if method == "smc" else run)
        for method in ("smc", "replacement")
    }
    classifier = load_digit_classifier(directory=SHIPPED_CLASSIFIERS[args.model])
    reps = masks.repeat_interleave(k, 0)
    table, picks = _method_table(
        results, images, lambda x: masked_psnr(x, images.repeat_interleave(k, 0), reps), k,
        _generator(args.seed + 2, device), classifier,
    )
    print(table)

    factor = 4
    op = Downsample(factor).bind(tuple(images.shape[1:]))
    low = op.A(images)  # (B, 1, 2, 2) block means
    print(f"\n{factor}x super-resolution of the same digits ({side}x{side} -> {low.shape[-1]}x{low.shape[-2]} block means):")
    sr = {"smc (bootstrap)": restore(model, low, Downsample(factor), proposal="bootstrap",
                                     generator=_generator(args.seed + 3, device), **common, options=smc_run)}
    sr_table, sr_picks = _method_table(
        sr, images, lambda x: consistency(x, low.repeat_interleave(k, 0), op.A), k, _generator(args.seed + 4, device),
        classifier,
    )
    print(sr_table)
    print(
        "PSNR: against the original digit, over equally weighted draws. consistency: PSNR of the observation "
        "(observed pixels; block means) of the draws against y ('exact': kept exactly). label kept: the digit "
        "classifier gives the completion the original's label. lineages: distinct starting particles of the "
        "final particles, mean over images (of M, or of P x M for P runs; a collapsed genealogy has few)."
    )
    fewest = min(float(r.weighted.distinct_final().double().mean()) for r in (results["smc"], sr["smc (bootstrap)"]))
    if args.populations == 1 and fewest < k:
        print(
            f"The {k} SMC draws of a digit come from one run whose particles descend from {fewest:.1f} ancestors on "
            f"average, so some draws are near copies. --populations {k} draws them from {k} independent runs "
            f"({k} times the cost; --particles {max(1, m // k)} keeps it)."
        )
    masked = torch.where(masks, images, torch.zeros_like(images))
    up = torch.nn.functional.interpolate(low, size=images.shape[-2:], mode="nearest")
    sections = [
        GridSection(
            [torch.cat([images[i : i + 1], masked[i : i + 1], picks["smc"][i], picks["replacement"][i]]) for i in range(b)],
            ["original", "masked", ("SMC draws", k), ("replacement draws", k)],
            "inpainting (random 25% square hidden)",
        ),
        GridSection(
            [torch.cat([images[i : i + 1], up[i : i + 1], sr_picks["smc (bootstrap)"][i]]) for i in range(b)],
            ["original", f"{low.shape[-1]}x{low.shape[-2]} input", ("SMC draws", k)],
            f"{factor}x super-resolution",
        ),
    ]
    path = save_image_sections(sections, out, scale=args.scale or max(1, 64 // side))
    print(
        f"wrote {path}: inpainting (original | masked | {k} SMC draws | {k} replacement draws), then "
        f"{factor}x super-resolution (original | low-resolution input | {k} SMC draws)"
    )


# ---- the parser ----
DEMO_PARTICLES, DEMO_POPULATIONS = DEFAULT_PARTICLES, DEFAULT_POPULATIONS  # restore's defaults


def _sampling_options(p: argparse.ArgumentParser) -> None:
    from .restore import DEFAULT_KERNEL, DEFAULT_PARTICLES, DEFAULT_STEPS

    p.add_argument("--model", default="digits", help="'digits' (the shipped 8x8 digits model, default), 'mnist' (the shipped "
                   "28x28 MNIST model), a directory or a hub id")
    p.add_argument("--particles", type=_positive(int), default=DEFAULT_PARTICLES, help="particles per image, per run with --populations (default %(default)s)")
    p.add_argument("--steps", type=_positive(int), default=DEFAULT_STEPS, help="reverse steps (default %(default)s)")
    p.add_argument("--kernel", choices=("euler", "ancestral"), default=DEFAULT_KERNEL,
                   help="reverse kernel: Euler-Maruyama or the exact-in-time DDPM ancestral step (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    p.add_argument("--chunk-size", type=_positive(int), default=None, metavar="N",
                   help="at most N particles per network call (default: all at once, or chunks that fit in memory)")
    p.add_argument("--device", default=None, help="where to sample: cpu, cuda, cuda:1, ... (default: cuda when available, else cpu)")
    _threads_option(p)


def _populations_option(p: argparse.ArgumentParser, default: int | None) -> None:
    from .restore import DEFAULT_POPULATIONS

    shown = DEFAULT_POPULATIONS if default is None else default
    p.add_argument("--populations", type=_positive(int), default=default, metavar="P",
                   help="SMC: P independent runs of --particles each (P times the cost); draw j comes from run j mod P, "
                        f"so P draws share no ancestor (default {shown}; 1: all draws from one run, which may share "
                        "one lineage and is not calibrated)")


def _proposal_options(p: argparse.ArgumentParser) -> None:
    """``--proposal`` and one flag per proposal option, all read off the registry (:mod:`smcdiff.proposals`)."""
    from .proposals import PROPOSALS, proposal_flags

    p.add_argument("--proposal", choices=sorted(PROPOSALS), default=None,
                   help="SMC proposal (default: bootstrap when --noise is 0, else twisted; mcgdiff for a model without autograd)")
    for name, f in proposal_flags().items():
        owners = " and ".join(n for n, c in PROPOSALS.items() if name in {g.name for g in dataclasses.fields(c)})
        p.add_argument(f"--{name.replace('_', '-')}", type=f.metadata["type"], default=None, dest=name,
                       metavar=name.split("_")[-1].upper(), help=f"{owners} only: {f.metadata['help']}")


def _threads_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=_positive(int), default=None,
                   help="CPU threads for torch (default: OMP_NUM_THREADS if set, else 1 on machines with at most "
                   "2 CPUs, else torch's default capped at the CPUs available)")


def _restore_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=("smc", "replacement"), default="smc",
                   help="smc (weighted, exact as the particles grow) or the replacement baseline (default %(default)s)")
    _proposal_options(p)
    _populations_option(p, default=None)
    p.add_argument("--draws", type=_positive(int), default=4, help="equally weighted draws to show (default %(default)s)")
    p.add_argument("--truth", type=Path, default=None, metavar="GT.png",
                   help="ground truth at the model's size: adds a column and PSNR (a folder of files named as the inputs in batch mode)")
    p.add_argument("--resize", action="store_true",
                   help="convert inputs of another size or colour mode to the model's (area resize, luminance); "
                   "without it such inputs are refused")
    p.add_argument("--out", type=Path, required=True, metavar="GRID.png",
                   help="output grid (.png appended when there is no suffix); a folder when there are several inputs")
    p.add_argument("--scale", type=_positive(int), default=None,
                   help="nearest-neighbour upscaling of the grid (default: to about 64 pixels per image)")
    p.add_argument("--save", type=Path, default=None, metavar="RUN.npz",
                   help="keep the run: particles, weights, ESS/lineage history, y, operator, settings (.npz or "
                   ".safetensors, no pickle; smcdiff.results.load_result reads it); a folder in batch mode (.npz)")
    p.add_argument("--overwrite", action="store_true", help="allow outputs to replace existing input files")
    p.add_argument("--diagnostics", type=Path, default=None, metavar="FILE.png",
                   help="plot ESS and surviving lineages against the step (needs matplotlib); a folder in batch mode")
    _sampling_options(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="smcdiff",
        description="Conditional sampling with diffusion models trained without the condition.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "gaussian",
        help=f"validate the samplers with exact scores on {SLIDES}",
        description=f"Unconditional and conditional sampling of {SLIDES}, and of a 2-component mixture, with exact "
        "scores; prints exact vs sampled statistics with standard errors and optionally writes the slides' figure.",
    )
    p.add_argument("--out", type=Path, default=None, help="write the figure here (PNG; needs matplotlib, checked first)")
    p.add_argument("--particles", type=_positive(int), default=1000, help="SMC particles per run (default %(default)s)")
    p.add_argument("--runs", type=_positive(int), default=32, help="independent runs for standard errors (default %(default)s)")
    p.add_argument("--samples", type=_positive(int), default=20000, help="unconditional samples (default %(default)s)")
    p.add_argument("--steps", type=_positive(int), default=500, help="reverse steps (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    _threads_option(p)
    p.set_defaults(func=cmd_gaussian)

    p = sub.add_parser(
        "demo",
        help="inpaint and 4x super-resolve held-out digits; SMC and replacement side by side",
        description="Inpaints held-out digits (random 4x4 squares, 25%% of the image, hidden) with SMC and "
        "replacement, and super-resolves them 4x (2x2 block means) with SMC; prints PSNR, "
        "consistency, label kept, distinct final lineages and time per image, and writes a labelled PNG grid.",
    )
    p.add_argument("--images", type=_positive(int), default=8, help="held-out digits (default %(default)s)")
    p.add_argument("--draws", type=_positive(int), default=4, help="draws shown per method (default %(default)s)")
    _populations_option(p, default=DEMO_POPULATIONS)
    p.add_argument("--out", type=Path, default=Path("smcdiff-demo.png"), help="PNG grid (default %(default)s)")
    p.add_argument("--scale", type=_positive(int), default=None, help="nearest-neighbour upscaling of the grid (default: about 64 pixels per image)")
    _sampling_options(p)
    # restore's defaults: each of the 4 draws per digit comes from its own independent run (calibrated on the
    # digits' own prior, where the draws of one run are not; BENCHMARKS.md, "Calibration (simulation-based)")
    p.set_defaults(func=cmd_demo, particles=DEMO_PARTICLES)

    p = sub.add_parser(
        "restore",
        help="restore degraded image files: inpainting, super-resolution, deblurring, denoising",
        description="Sample the model's posterior given each degraded INPUT (a file or a folder; several give one "
        "output per input). --task sr: INPUT is the low-resolution image (the model's size / --factor); deblur: the "
        "blurred image; denoise: the noisy image (--noise required); quantise: an image of --levels grey levels (the twisted "
        "proposal conditions on the bins; --noise is the noise before quantisation); inpaint: the image and --mask or --box. Writes a "
        "labelled grid (input | weighted mean | draws | truth) and prints time, final ESS, distinct final lineages, "
        "consistency and, with --truth, PSNR.",
    )
    p.add_argument("inputs", type=Path, nargs="+", metavar="INPUT")
    p.add_argument("--task", choices=TASKS, required=True, help="what degraded the input")
    p.add_argument("--factor", type=_positive(int), default=None, help=f"--task sr: downsampling factor (default {DEFAULT_FACTOR})")
    p.add_argument("--blur-sigma", type=_positive(float), default=None,
                   help=f"--task deblur: standard deviation of the Gaussian blur in pixels (default {DEFAULT_BLUR_SIGMA:g})")
    p.add_argument("--levels", type=_positive(int), default=None,
                   help=f"--task quantise: grey levels of the input, equal bins on [-1, 1] (default {DEFAULT_LEVELS})")
    p.add_argument("--noise", type=_non_negative_float, default=0.0,
                   help="standard deviation of the observation noise, in the [-1, 1] units of the data (default %(default)s; "
                   "--task quantise: the noise before quantisation, needed > 0)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--mask", type=Path, metavar="M.png", help="--task inpaint: PNG of the input's size, white = keep, black = fill")
    where.add_argument("--box", type=_parse_box, metavar="X,Y,W,H", help="--task inpaint: fill this box (pixels of the input)")
    _restore_options(p)
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser(
        "inpaint",
        help="inpaint image files",
        description="Inpaint each IMAGE (a file or a folder) where the mask is black (or inside --box); the same "
        "as 'smcdiff restore --task inpaint'. The output shows input | masked | weighted mean | draws.",
    )
    p.add_argument("inputs", type=Path, nargs="+", metavar="IMAGE")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--mask", type=Path, metavar="M.png", help="PNG of the image's size: white = keep, black = fill")
    where.add_argument("--box", type=_parse_box, metavar="X,Y,W,H", help="fill this box (pixels of IMAGE)")
    p.add_argument("--noise", type=_non_negative_float, default=0.0,
                   help="standard deviation of the noise on the kept pixels, in [-1, 1] units (default %(default)s)")
    _restore_options(p)
    p.set_defaults(func=cmd_inpaint)

    add_calibrate_parser(sub, _sampling_options, _proposal_options)
    add_generate_parser(sub, _sampling_options, _populations_option)
    return parser


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.filterwarnings("ignore", message=r"steps=\d+ is far below", category=UserWarning)  # said once, below
    parser = build_parser()
    args = parser.parse_args(_join_option_values(list(sys.argv[1:] if argv is None else argv)))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and args.command not in ("restore", "inpaint"):
        print(f"smcdiff {args.command}: error: runs in one process; under torchrun use 'restore' or 'inpaint'", file=sys.stderr)
        return 2
    try:
        args.func(args)
    except UserError as err:
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every process has the error; one says it
            print(f"smcdiff {args.command}: error: {err}", file=sys.stderr)
        return 2
    finally:
        if getattr(args, "owns_group", False):
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
