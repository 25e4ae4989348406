"""Train the multiscale model and the uniform baseline on the digits with the same training-time budget.

Both models come from :func:`smcdiff.msdiff.multiscale.matched_configs`: one UNet backbone family,
equal total parameter counts (within a few per cent), the same SNR range (§4.1 of "Non-Uniform
Diffusion Models"). Digits are 8x8, so the multiscale model uses n = 2 Haar levels: networks at
8x8 (s_1), 4x4 (s_2) and 2x2 (s_3, on a_2). The uniform baseline is the beta-linear VP SDE with one
8x8 UNet; both are trained with the "simple" eps objective by default (``--weighting likelihood``
uses the likelihood weighting of Theorem 1 for the multiscale model).

Budget. ``--minutes`` is measured on the process CPU clock (``time.process_time``); with
``--threads 1`` this is the wall-clock time the loop takes on an idle core, so the two budgets stay
equal when other jobs share the machine. ``--steps`` caps the steps as well.

Output::

    OUT/<model>/config.json, OUT/<model>/model.safetensors     (EMA weights, safetensors + JSON)
    STATE/<model>/state.safetensors, STATE/<model>/state.json   (resumable training state, no pickle)

``--ship`` also writes a float16 copy to ``smcdiff/assets/multiscale/<model>`` (the shipped weights,
loadable with ``smcdiff.msdiff.multiscale.load_multiscale("multiscale")`` or ``load_multiscale("uniform")``).

Examples::

    python examples/train_multiscale.py --model uniform --minutes 10 --threads 1
    python examples/train_multiscale.py --model multiscale --minutes 10 --threads 1
    python examples/train_multiscale.py --model multiscale --minutes 12 --threads 1 --resume   # 2 more minutes
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from smcdiff.data import load_digits_images
from smcdiff.msdiff.multiscale import ASSET_DIR, MultiscaleModel, UniformModel, matched_configs, train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=["multiscale", "uniform", "both"], default="both")
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per model (process CPU minutes)")
    p.add_argument("--steps", type=int, default=None, help="optional cap on optimiser steps")
    p.add_argument("--levels", type=int, default=2, help="Haar levels n of the multiscale model")
    p.add_argument("--base", type=int, default=32, help="width of the uniform UNet's first level")
    p.add_argument("--weighting", choices=["simple", "likelihood"], default="simple", help="multiscale loss")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/multiscale_digits/models"))
    p.add_argument("--state-dir", type=Path, default=Path("runs/multiscale_digits/state"))
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--resume", action="store_true", help="continue from --state-dir")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--ship", action="store_true", help="also write a float16 copy to smcdiff/assets/multiscale/<model>")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    images = load_digits_images("train")
    uniform_cfg, multiscale_cfg = matched_configs(8, args.levels, base=args.base, images=images)
    names = ["uniform", "multiscale"] if args.model == "both" else [args.model]
    for name in names:
        gen = torch.Generator().manual_seed(args.seed)
        if name == "uniform":
            model, weighting = UniformModel(uniform_cfg, generator=gen), "simple"
        else:
            model, weighting = MultiscaleModel(multiscale_cfg, generator=gen), args.weighting
        model = model.to(device)
        extra = f" (per scale {model.scale_parameters()})" if name == "multiscale" else ""
        print(f"{name}: {model.num_parameters:,} parameters{extra}; weighting {weighting}; {len(images)} images")
        result = train(
            model,
            images,
            steps=args.steps,
            max_seconds=60.0 * args.minutes,
            weighting=weighting,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup=args.warmup,
            ema_decay=args.ema_decay,
            generator=gen,
            progress=not args.no_progress,
            state_dir=args.state_dir / name,
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
            clock="process",
        )
        meta = dict(steps=result.steps, train_seconds=round(result.seconds, 1), weighting=weighting, clock="process")
        meta["final_loss"] = result.history[-1][1] if result.history else float("nan")
        result.model.save_pretrained(args.out / name, **meta)
        print(f"{name}: {json.dumps(meta)} -> {args.out / name}")
        if args.ship:
            result.model.save_pretrained(ASSET_DIR / name, dtype=torch.float16, **meta)
            print(f"{name}: float16 copy -> {ASSET_DIR / name}")


if __name__ == "__main__":
    main()
