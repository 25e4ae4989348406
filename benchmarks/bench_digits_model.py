"""Sample quality of the shipped diffusion models: Fréchet distance in classifier features.

Draws ``--num-samples`` unconditional samples from a shipped UNet (``smcdiff/assets/digits``, or with
``--dataset mnist`` ``smcdiff/assets/mnist`` and its classifier) and
reports :func:`smcdiff.metrics.digit_fid` against the held-out split, next to the same distance
between the real training and held-out images (the floor that finite samples allow), the held-out
accuracy of the classifier and the histogram of predicted classes of the samples.

Samplers: ``ddpm`` is ancestral sampling with diffusers' ``DDPMScheduler`` over all 1000 training
steps (Ho et al. 2020, Algorithm 2); ``ddim`` is diffusers' ``DDIMScheduler`` (eta = 0) over
``--inference-steps`` steps (250 by default).

Examples::

    python benchmarks/bench_digits_model.py --threads 1 --grid /tmp/digits_samples.png
    python benchmarks/bench_digits_model.py --threads 1 --dataset mnist --num-samples 500 --sampler ddim --grid /tmp/mnist.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from smcdiff.classifier import SHIPPED_CLASSIFIERS, load_digit_classifier
from smcdiff.data import load_digits_images, load_mnist_images
from smcdiff.metrics import digit_fid

ASSETS = Path(__file__).resolve().parents[1] / "smcdiff" / "assets"


@torch.no_grad()
def sample_digits(
    unet: UNet2DModel,
    scheduler_config: dict,
    n: int,
    sampler: Literal["ddpm", "ddim"] = "ddpm",
    inference_steps: int | None = None,
    batch_size: int = 500,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Unconditional samples of the UNet, shape (n, C, H, W), in [-1, 1].

    A fresh scheduler is built from ``scheduler_config`` for each call, so ``set_timesteps`` never
    changes a scheduler the caller holds.
    """
    if sampler == "ddpm":
        scheduler = DDPMScheduler.from_config(scheduler_config)
        steps = inference_steps or scheduler.config.num_train_timesteps
        step_kwargs = {}
    elif sampler == "ddim":
        scheduler = DDIMScheduler.from_config(scheduler_config)
        steps = inference_steps or 250
        step_kwargs = {"eta": 0.0}
    else:
        raise ValueError(f"sampler must be 'ddpm' or 'ddim'; got {sampler!r}")
    scheduler.set_timesteps(steps)
    param = next(unet.parameters())
    shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    out = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        x = torch.randn((m, *shape), generator=generator, device=param.device, dtype=param.dtype)
        for t in scheduler.timesteps:
            eps = unet(x, t).sample
            x = scheduler.step(eps, t, x, generator=generator, **step_kwargs).prev_sample
        out.append(x.clamp(-1.0, 1.0).cpu())
    return torch.cat(out)


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8, scale: int = 8) -> None:
    """Write images (N, 1, H, W) in [-1, 1] as a PNG grid, each pixel ``scale`` x ``scale``."""
    from PIL import Image

    n, _, h, w = images.shape
    ncol = (n + nrow - 1) // nrow
    pad = 1
    grid = np.ones((ncol * (h + pad) + pad, nrow * (w + pad) + pad), dtype=np.float32)
    x = ((images[:, 0].numpy() + 1.0) / 2.0).clip(0, 1)
    for i in range(n):
        r, c = divmod(i, nrow)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = 1 - x[i]
    img = Image.fromarray((grid * 255).astype(np.uint8)).resize(
        (grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST
    )
    img.save(path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=("digits", "mnist"), default="digits")
    p.add_argument("--model", type=Path, default=None, help="folder with unet/ and scheduler/ (default: the shipped one)")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--sampler", choices=["ddpm", "ddim"], default="ddpm")
    p.add_argument("--inference-steps", type=int, default=None, help="default: 1000 (ddpm), 250 (ddim)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--grid", type=Path, default=None, help="write a PNG grid of the first 64 samples")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    args.model = args.model or ASSETS / args.dataset
    unet = UNet2DModel.from_pretrained(args.model, subfolder="unet", low_cpu_mem_usage=False).to(device).eval()
    scheduler_config = DDPMScheduler.load_config(args.model, subfolder="scheduler")
    classifier = load_digit_classifier(device, SHIPPED_CLASSIFIERS[args.dataset])
    load = load_digits_images if args.dataset == "digits" else load_mnist_images
    x_train = load("train").to(device)
    x_test, y_test = (t.to(device) for t in load("test", return_labels=True))
    n_params = sum(q.numel() for q in unet.parameters())

    gen = torch.Generator(device=device).manual_seed(args.seed)
    t0 = time.time()
    samples = sample_digits(
        unet, scheduler_config, args.num_samples, args.sampler, args.inference_steps, args.batch_size, gen
    )
    elapsed = time.time() - t0
    steps = args.inference_steps or (1000 if args.sampler == "ddpm" else 250)

    with torch.no_grad():
        acc = (classifier(x_test).argmax(1) == y_test).float().mean().item()
        pred = classifier(samples.to(device)).argmax(1).cpu()
    counts = torch.bincount(pred, minlength=10).tolist()
    print(f"model: {args.model} ({n_params:,} parameters)")
    print(f"sampler: {args.sampler}, {steps} steps, {args.num_samples} samples, seed {args.seed}: {elapsed:.1f}s")
    print(f"classifier held-out accuracy: {acc:.4f}")
    print(f"predicted classes of samples (0..9): {counts}")
    print(f"digit FID  samples vs held-out ({args.num_samples} vs {len(x_test)}): {digit_fid(samples.to(device), x_test, classifier):.3f}")
    print(f"digit FID  train vs held-out   ({len(x_train)} vs {len(x_test)}): {digit_fid(x_train, x_test, classifier):.3f}")
    print(f"digit FID  samples vs train    ({args.num_samples} vs {len(x_train)}): {digit_fid(samples.to(device), x_train, classifier):.3f}")
    if args.grid is not None:
        save_grid(samples[:64], args.grid, scale=max(1, 64 // samples.shape[-1]))
        print(f"grid of 64 samples written to {args.grid}")


if __name__ == "__main__":
    main()
