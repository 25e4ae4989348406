"""Train a CDE, CDiffE or CMDE estimator on the 8x8 digits ("Non-Uniform Diffusion Models" §3.4).

The estimator (:class:`smcdiff.msdiff.conditional.ConditionalEstimator`, a diffusers UNet2DModel with
the condition concatenated to its input channels) is trained by
:func:`smcdiff.msdiff.conditional.train` on the training split of
:func:`smcdiff.data.load_digits_images`, with the likelihood-weighted objective (eq. 12-14) of its
estimator and, for inpainting, a fresh random square hole covering 25% of each training image.

Output: ``OUT/model.safetensors`` (EMA weights) and ``OUT/config.json`` (architecture, SDE, operator
and training metadata: steps, seconds, smoothed training loss and held-out loss), written every
``--checkpoint-every`` steps and at the end; load with ``smcdiff.msdiff.conditional.load_conditional(OUT)``.

Examples::

    python examples/train_conditional.py --estimator cde --threads 1
    python examples/train_conditional.py --estimator cmde --sigma-y-max 0.5 --task sr --threads 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from smcdiff.data import load_digits_images
from smcdiff.msdiff.conditional import (
    ASSET_DIR,
    ConditionalConfig,
    ConditionalEstimator,
    observe,
    score_matching_loss,
    train,
)


def default_name(estimator: str, sigma_y_max: float | None, task: str) -> str:
    """Asset folder name: ``cde``, ``cdiffe``, ``cmde_<sigma_y_max>``, prefixed by ``sr_`` for super-resolution."""
    name = estimator if estimator != "cmde" else f"cmde_{sigma_y_max:g}"
    return name if task == "inpaint" else f"{task}_{name}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--estimator", choices=("cde", "cdiffe", "cmde"), required=True)
    p.add_argument("--sigma-y-max", type=float, default=None, help="terminal noise of y (CMDE only)")
    p.add_argument("--task", choices=("inpaint", "sr"), default="inpaint")
    p.add_argument("--sigma-max", type=float, default=10.0, help="terminal noise of x")
    p.add_argument("--sigma-min", type=float, default=0.01)
    p.add_argument("--steps", type=int, default=3000, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--max-minutes", type=float, default=15.0, help="stop early after this wall-clock time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the shipped asset folder)")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


@torch.no_grad()
def held_out_loss(model: ConditionalEstimator, images: torch.Tensor, repeats: int = 8, seed: int = 1234) -> float:
    """Mean objective on the test split, with observations, times and noise from a fixed generator."""
    g = torch.Generator(device=images.device).manual_seed(seed)
    x = images.repeat(repeats, 1, 1, 1)
    obs = observe(model.config, x, generator=g)
    return float(score_matching_loss(model, x, obs.y, obs.aux, generator=g))


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = ConditionalConfig(
        args.estimator, task=args.task, sigma_min=args.sigma_min, sigma_max=args.sigma_max, sigma_y_max=args.sigma_y_max
    )
    out = args.out if args.out is not None else ASSET_DIR / default_name(args.estimator, args.sigma_y_max, args.task)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    model = ConditionalEstimator(config, generator=gen).to(device)
    data = load_digits_images("train").to(device)
    test = load_digits_images("test").to(device)
    print(f"{config.estimator}/{config.task}: {model.num_parameters:,} parameters; {len(data)} training images -> {out}")

    def checkpoint(ema: ConditionalEstimator, step: int, loss: float) -> None:
        ema.save_pretrained(out, steps=step, train_loss=loss, parameters=model.num_parameters, seed=args.seed)

    result = train(
        model, data, steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
        ema_decay=args.ema_decay, max_seconds=60.0 * args.max_minutes, generator=gen,
        progress=not args.no_progress, checkpoint=checkpoint, checkpoint_every=args.checkpoint_every,
    )
    test_loss = held_out_loss(result.model, test)
    result.model.save_pretrained(
        out,
        steps=result.steps,
        train_seconds=round(result.seconds, 1),
        train_loss=result.history[-1][1] if result.history else float("nan"),
        test_loss=test_loss,
        parameters=model.num_parameters,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    print(f"{result.steps} steps in {result.seconds:.0f}s; held-out loss {test_loss:.2f}; saved to {out}")
    return out


if __name__ == "__main__":
    main()
