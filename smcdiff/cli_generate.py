"""``smcdiff generate``: images of a chosen class from the unconditional model and a classifier (twisted SMC).

No mathematics here: the sampling is :func:`smcdiff.generate`. User errors print one line (exit status 2)
before any sampling.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from .cli_common import (
    UserError, _configure, _generator, _image_out, _load_model_or_fail, _warn_few_steps, check_outputs, write_output,
)

__all__ = ["add_generate_parser", "cmd_generate"]


def _classifier(args: argparse.Namespace, device: torch.device):
    from .classifier import SHIPPED_CLASSIFIERS, load_digit_classifier

    source = args.classifier if args.classifier is not None else SHIPPED_CLASSIFIERS.get(args.model)
    if source is None:
        raise UserError(f"--classifier is required with --model {args.model!r} (classifiers ship for {sorted(SHIPPED_CLASSIFIERS)})")
    try:
        return load_digit_classifier(device, source)
    except (ValueError, OSError) as err:
        raise UserError(f"cannot load the classifier {str(source)!r}: {' '.join(str(err).split())}") from None


def cmd_generate(args: argparse.Namespace) -> None:
    from .generate import generate
    from .options import RunOptions
    from .plotting import save_image_grid
    from .proposals import Twisted, build_proposal
    from .restore import DEFAULT_POPULATIONS

    out = _image_out(args.out)
    check_outputs([("--out", out)], [], args.overwrite)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Twisted) if getattr(args, f.name, None) is not None}
    try:
        proposal = build_proposal("twisted", 0.0, values, spell=lambda name: "--" + name.replace("_", "-"))
    except ValueError as err:
        raise UserError(str(err)) from None
    args.populations = DEFAULT_POPULATIONS if args.populations is None else args.populations
    device, threads = _configure(args)
    model = _load_model_or_fail(args.model, device)
    classifier = _classifier(args, device)
    classes = classifier.config.num_classes
    bad = [c for c in args.label if not 0 <= c < classes]
    if bad:
        raise UserError(f"--label must lie in 0..{classes - 1}, got {bad}")
    size = classifier.config.image_size
    if tuple(model.event_shape) != (1, size, size):
        raise UserError(f"the classifier takes (1, {size}, {size}) images but the model makes {tuple(model.event_shape)}")
    shown = "" if str(proposal) == "twisted" else f" ({proposal})"
    print(f"class-conditional generation of {args.label}, twisted SMC{shown}; {args.particles} particles in each of "
          f"{args.populations} independent runs, {args.steps} steps ({args.kernel}), model {args.model!r}, {device}, "
          f"{threads} thread(s).")
    _warn_few_steps(args.steps, args.kernel)
    res = generate(args.label, model, classifier=classifier, temperature=args.temperature, particles=args.particles,
                   steps=args.steps, kernel=args.kernel, proposal=proposal, generator=_generator(args.seed, device),
                   options=RunOptions(populations=args.populations, chunk_size=args.chunk_size, progress=True, threads="torch"))
    draws = res.draw(args.draws, _generator(args.seed + 1, device)).float().cpu()  # (B, k, C, H, W)
    with torch.no_grad():
        seen = classifier(draws.flatten(0, 1).to(device)).argmax(1).view(len(args.label), args.draws).cpu()
    scale = args.scale or max(1, 64 // size)
    labels = [(f"{args.draws} draws of class {', '.join(map(str, args.label))} (one row each)", args.draws)]
    rows = list(draws)
    path = write_output("--out", out, lambda: save_image_grid(rows, out, scale=scale, labels=labels))
    m = args.particles * args.populations
    print(f"wrote {path} ({res.seconds:.1f} s; {res.model_evaluations} network evaluations and as many backward passes)")
    for i, c in enumerate(args.label):
        ess = res.weighted.ess[-1, i].item()
        lineages = int(res.weighted.distinct_final()[i])
        agree = (seen[i] == c).float().mean().item()
        print(f"  class {c}: final ESS {ess:.1f} of {m}, {lineages} distinct final lineages; the guiding classifier "
              f"labels {agree:.0%} of the draws {c}")


def add_generate_parser(sub, sampling_options, populations_option) -> None:
    from .cli_common import _positive as positive
    from .proposals import Twisted

    p = sub.add_parser(
        "generate",
        help="draw images of a chosen class from the unconditional model and a classifier",
        description="Class-conditional generation without a conditional model: twisted SMC (Wu et al. 2023) conditions "
        "the unconditional model on p(class | x) from a classifier. As the particles grow the draws converge to the "
        "model's own images of that class (as the classifier sees them). Writes one row of draws per --label.",
    )
    p.add_argument("--label", type=int, nargs="+", required=True, metavar="C", help="the class(es) to draw")
    p.add_argument("--draws", type=positive(int), default=8, help="equally weighted draws per class (default %(default)s)")
    p.add_argument("--classifier", type=Path, default=None, metavar="DIR",
                   help="a classifier folder (smcdiff.classifier.save_digit_classifier); default: the one shipped with --model")
    p.add_argument("--temperature", type=positive(float), default=1.0,
                   help="divide the classifier's logits by this (above 1: weaker conditioning; default %(default)s)")
    for f in dataclasses.fields(Twisted):  # the twisted proposal's own flags, from its fields
        if "type" in f.metadata:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=f.metadata["type"], default=None, dest=f.name,
                           metavar=f.name.split("_")[-1].upper(), help=f.metadata["help"])
    populations_option(p, default=None)
    p.add_argument("--out", type=Path, default=Path("smcdiff-generate.png"), metavar="GRID.png", help="PNG grid (default %(default)s)")
    p.add_argument("--scale", type=positive(int), default=None, help="nearest-neighbour upscaling (default: about 64 pixels per image)")
    p.add_argument("--overwrite", action="store_true", help="allow --out to replace an existing input file")
    sampling_options(p)
    p.set_defaults(func=cmd_generate, steps=100, kernel="ancestral")
