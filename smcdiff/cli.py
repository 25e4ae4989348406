"""The ``smcdiff`` command: ``demo``, ``inpaint`` and ``gaussian``.

User errors (a missing file, a mask of the wrong size, a bad box or argument) print one line to
stderr and exit with status 2; nothing here does mathematics.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

__all__ = ["main"]


class UserError(Exception):
    """An error in what the user asked for: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """Argument errors in one line (with a pointer to ``--help``) instead of the full usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse


# ---- smcdiff gaussian ----
def cmd_gaussian(args: argparse.Namespace) -> None:
    from .toy import conditional_rows, format_rows, unconditional_rows

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
        from .plotting import plot_gaussian_toy

        try:
            path = plot_gaussian_toy(draws, pooled, args.out)
        except RuntimeError as err:
            raise UserError(str(err)) from None
        print(f"wrote {path}")


# ---- smcdiff demo ----
def _method_table(results: dict, images: torch.Tensor, masks: torch.Tensor, draws: int, generator) -> tuple[str, dict]:
    from .metrics import masked_psnr, psnr
    from .classifier import load_digit_classifier

    classifier = load_digit_classifier()
    with torch.no_grad():
        labels = classifier(images).argmax(1)
    lines = [f"{'method':<12} {'PSNR (dB)':>10} {'consistency (dB)':>17} {'label kept':>11} {'s / image':>10}"]
    picks = {}
    for name, res in results.items():
        x = res.draw(draws, generator)  # (B, k, C, H, W)
        picks[name] = x
        flat = x.flatten(0, 1)
        ref = images.repeat_interleave(draws, 0)
        p = psnr(flat, ref).mean().item()
        c = masked_psnr(flat, ref, masks.repeat_interleave(draws, 0)).mean().item()
        with torch.no_grad():
            kept = (classifier(flat).argmax(1) == labels.repeat_interleave(draws)).double().mean().item()
        c_text = "exact" if c == float("inf") else f"{c:.2f}"
        lines.append(f"{name:<12} {p:>10.2f} {c_text:>17} {kept:>11.1%} {res.seconds / images.shape[0]:>10.3f}")
    return "\n".join(lines), picks


def cmd_demo(args: argparse.Namespace) -> None:
    from .data import load_digits_images
    from .inpaint import inpaint
    from .masks import random_square_masks
    from .plotting import save_image_grid

    model = _load_model_or_fail(args.model)
    images = load_digits_images("test")[: args.images]
    masks = random_square_masks(images.shape[0], 8, 8, 0.25, generator=_generator(args.seed))
    print(
        f"Inpainting {images.shape[0]} held-out digits, a random 4x4 square (25%) hidden in each; "
        f"{args.particles} particles, {args.steps} steps, model {args.model!r}."
    )
    results = {}
    for method in ("smc", "replacement"):
        results[method] = inpaint(
            model, images, masks, particles=args.particles, steps=args.steps, method=method,
            generator=_generator(args.seed + 1), progress=True,
        )
    table, picks = _method_table(results, images, masks, args.draws, _generator(args.seed + 2))
    print(table)
    print(
        "PSNR: against the original digit, over equally weighted draws. consistency: PSNR of the observed "
        "pixels against y ('exact': both methods keep them). label kept: the digit classifier gives the "
        "completion the original's label."
    )
    masked = torch.where(masks, images, torch.zeros_like(images))
    rows = [torch.cat([images[i : i + 1], masked[i : i + 1], picks["smc"][i], picks["replacement"][i]]) for i in range(images.shape[0])]
    path = save_image_grid(rows, args.out, scale=8)
    print(f"wrote {path}: columns original | masked | {args.draws} SMC draws | {args.draws} replacement draws")


# ---- smcdiff inpaint ----
def _load_model_or_fail(name: str):
    from .inpaint import load_model

    try:
        return load_model(name)
    except (ValueError, OSError) as err:
        raise UserError(f"cannot load model {name!r}: {err}") from None


def _parse_box(text: str) -> tuple[int, int, int, int]:
    try:
        box = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--box takes X,Y,W,H as four integers, got {text!r}") from None
    if len(box) != 4:
        raise argparse.ArgumentTypeError(f"--box takes X,Y,W,H as four integers, got {text!r}")
    return box


def cmd_inpaint(args: argparse.Namespace) -> None:
    from PIL import Image

    from .inpaint import inpaint
    from .io import load_image, load_mask
    from .masks import box_mask
    from .plotting import save_image_grid

    if not args.image.is_file():
        raise UserError(f"no such image file: {args.image}")
    if args.mask is not None and not args.mask.is_file():
        raise UserError(f"no such mask file: {args.mask}")
    model = _load_model_or_fail(args.model)
    channels, height, width = model.event_shape
    try:
        with Image.open(args.image) as img:
            size = (img.height, img.width)
        if args.mask is not None:
            Image.open(args.mask).close()
    except OSError as err:  # PIL.UnidentifiedImageError included
        raise UserError(f"cannot read image: {err}") from None
    image = load_image(args.image, channels=channels, size=(height, width))
    if args.mask is not None:
        with Image.open(args.mask) as img:
            if (img.height, img.width) != size:
                raise UserError(f"mask is {img.width}x{img.height} but the image is {size[1]}x{size[0]}; they must match")
        mask = load_mask(args.mask, size=(height, width))
    else:
        try:
            mask = box_mask(size[0], size[1], args.box)
        except ValueError as err:
            raise UserError(str(err)) from None
        if size != (height, width):
            grey = mask.float() * 255
            mask = torch.nn.functional.interpolate(grey, size=(height, width), mode="area") >= 128
    if size != (height, width):
        print(f"resized {size[1]}x{size[0]} to the model's {width}x{height}")
    if mask.all():
        raise UserError("the mask observes every pixel: nothing to inpaint")
    res = inpaint(
        model, image, mask, particles=args.particles, steps=args.steps, method=args.method,
        generator=_generator(args.seed), progress=True,
    )
    draws = res.draw(args.draws, _generator(args.seed + 1))[0]
    masked = torch.where(mask[0], image[0], torch.zeros_like(image[0]))
    row = torch.cat([image, masked[None], res.mean()[:1].float(), draws])
    path = save_image_grid([row], args.out, scale=max(1, 64 // max(height, width)))
    ess = res.weighted.ess[-1, 0].item()
    print(f"wrote {path}: input | masked | weighted mean | {args.draws} draws ({res.seconds:.1f} s, final ESS {ess:.1f} of {args.particles})")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="smcdiff",
        description="Conditional sampling with diffusion models trained without the condition.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "gaussian",
        help="validate the samplers on Gaussians with exact scores",
        description="Unconditional and conditional sampling of the seed slides' 2-d Gaussian and a "
        "2-component mixture with exact scores; prints exact vs sampled statistics with standard errors "
        "and optionally writes the slides' figure.",
    )
    p.add_argument("--out", type=Path, default=None, help="write the figure (PNG) here")
    p.add_argument("--particles", type=_positive(int), default=1000, help="SMC particles per run (default 1000)")
    p.add_argument("--runs", type=_positive(int), default=32, help="independent runs for standard errors (default 32)")
    p.add_argument("--samples", type=_positive(int), default=20000, help="unconditional samples (default 20000)")
    p.add_argument("--steps", type=_positive(int), default=500, help="reverse steps (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_gaussian)

    p = sub.add_parser(
        "demo",
        help="inpaint held-out digits with SMC and replacement side by side",
        description="Inpaints held-out digits (random 4x4 squares, 25% of the image, hidden) with the "
        "default model; prints PSNR, consistency, label kept and time per image for SMC and replacement and writes a "
        "PNG grid (original | masked | SMC draws | replacement draws).",
    )
    p.add_argument("--model", default="digits", help="'digits' (default), a directory or a hub id")
    p.add_argument("--images", type=_positive(int), default=8, help="held-out digits to inpaint (default 8)")
    p.add_argument("--particles", type=_positive(int), default=32, help="particles per image (default 32)")
    p.add_argument("--steps", type=_positive(int), default=250, help="reverse steps (default 250)")
    p.add_argument("--draws", type=_positive(int), default=4, help="draws shown per method (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("smcdiff-demo.png"), help="PNG grid (default smcdiff-demo.png)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "inpaint",
        help="inpaint one image file",
        description="Inpaint IMAGE where the mask is black (or inside --box). The image is resized to the "
        "model's resolution; the output PNG shows input | masked | weighted mean | draws.",
    )
    p.add_argument("image", type=Path, metavar="IMAGE")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--mask", type=Path, help="PNG of the image's size: white = keep, black = fill")
    where.add_argument("--box", type=_parse_box, metavar="X,Y,W,H", help="fill this box (pixels of IMAGE)")
    p.add_argument("--model", default="digits", help="'digits' (default), a directory or a hub id")
    p.add_argument("--method", choices=("smc", "replacement"), default="smc")
    p.add_argument("--particles", type=_positive(int), default=32)
    p.add_argument("--steps", type=_positive(int), default=250)
    p.add_argument("--draws", type=_positive(int), default=4, help="equally weighted draws to show (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output PNG")
    p.set_defaults(func=cmd_inpaint)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except UserError as err:
        print(f"smcdiff {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
