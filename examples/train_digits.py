"""Train the default digits diffusion model shipped in ``smcdiff/assets/digits``.

A diffusers ``UNet2DModel`` (8x8, one channel) learns to predict the noise of a DDPM with a linear
beta schedule (Ho et al. 2020, Eq. 14: ``E || eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t)
eps, t) ||^2``) on the training split of :func:`smcdiff.data.load_digits_images`. No data
augmentation: digits are not flip-symmetric. An exponential moving average (EMA) of the weights is
kept and is what gets shipped.

Output (diffusers layout, loadable with ``UNet2DModel.from_pretrained(out, subfolder="unet")`` and
``DDPMScheduler.from_pretrained(out, subfolder="scheduler")``)::

    OUT/unet/config.json, OUT/unet/diffusion_pytorch_model.safetensors   (EMA weights)
    OUT/scheduler/scheduler_config.json

Training is :func:`smcdiff.training.fit`: AdamW, linear warm-up then cosine decay, gradients clipped
to norm 1, EMA with decay ``min(ema_decay, (1 + k) / (10 + k))``.

Resuming. Every ``--checkpoint-every`` steps the full training state is written to
``--checkpoint-dir`` without pickle: ``state.safetensors`` (model, EMA, AdamW moments, generator
state) and ``state.json`` (step, loss history, arguments). ``--resume`` continues from there and
reproduces the uninterrupted run: batches are drawn with replacement from one explicit generator
whose state is saved, and the learning rate is a pure function of the step.

Example::

    python examples/train_digits.py --threads 1 --steps 15000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel
from tqdm import tqdm

from smcdiff.data import load_digits_images
from smcdiff.training import fit

UNET_CONFIG = dict(
    sample_size=8,
    in_channels=1,
    out_channels=1,
    block_out_channels=(32, 64, 64),
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    layers_per_block=1,
    norm_num_groups=8,
    attention_head_dim=32,
)
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_schedule="linear",
    beta_start=1e-4,
    beta_end=0.02,
    prediction_type="epsilon",
    clip_sample=True,
    clip_sample_range=1.0,
)


def parse_args(argv: list[str] | None = None, **defaults) -> argparse.Namespace:
    """The training options; ``defaults`` overrides the digits defaults (``examples/train_mnist.py``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=15000, help="optimiser steps in total")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    p.add_argument("--warmup", type=int, default=500, help="linear warm-up steps")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("smcdiff/assets/digits"))
    p.add_argument("--checkpoint-dir", type=Path, default=Path("runs/train_digits"))
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir")
    p.set_defaults(**defaults)
    return p.parse_args(argv)


def train_unet(args: argparse.Namespace, data: torch.Tensor, unet_config: dict, desc: str) -> None:
    """Train a ``UNet2DModel(**unet_config)`` on ``data`` (N, C, H, W) in [-1, 1] with the DDPM loss and
    save its EMA weights and the scheduler to ``args.out`` (the diffusers layout of the module docstring)."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = data.to(device)
    scheduler = DDPMScheduler(**SCHEDULER_CONFIG)
    abar = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)

    # diffusers' layers draw their initial weights from the global generator; seed it inside a
    # forked RNG scope so that the caller's global state is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = UNet2DModel(**unet_config).to(device)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"UNet2DModel: {n_params:,} parameters; {len(data)} training images")
    if args.resume:
        print(f"resuming from {args.checkpoint_dir}")

    def loss_fn(step: int) -> torch.Tensor:
        # 1. x_0 from the data (with replacement), t ~ U{0..999}, eps ~ N(0, I).
        idx = torch.randint(0, len(data), (args.batch_size,), generator=gen, device=device)
        x0 = data[idx]
        t = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch_size,), generator=gen, device=device)
        eps = torch.randn(x0.shape, generator=gen, device=device)
        # 2. x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps  (Ho et al. 2020, Eq. 4).
        a = abar[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1.0 - a).sqrt() * eps
        # 3. Simple loss (Ho et al. 2020, Eq. 14).
        return torch.nn.functional.mse_loss(model(xt, t).sample, eps)

    t0 = time.time()

    def report(ema: torch.nn.Module, step: int, loss: float) -> None:
        tqdm.write(f"step {step}: loss(ema-smoothed) {loss:.4f}, {time.time() - t0:.0f}s")

    result = fit(
        model, loss_fn, steps=args.steps, lr=args.lr, weight_decay=args.weight_decay, warmup=args.warmup,
        schedule="cosine", ema_decay=args.ema_decay, clipped=[model], generator=gen, desc=desc,
        state_dir=args.checkpoint_dir, resume=args.resume, meta=dict(args={k: str(v) for k, v in vars(args).items()}),
        checkpoint=report, checkpoint_every=args.checkpoint_every,
    )

    result.model.save_pretrained(args.out / "unet", safe_serialization=True)
    scheduler.save_pretrained(args.out / "scheduler")
    print(f"saved EMA weights to {args.out / 'unet'} and scheduler to {args.out / 'scheduler'}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    train_unet(args, load_digits_images("train"), UNET_CONFIG, "train digits")


if __name__ == "__main__":
    main()
