"""Train the digit classifiers: ``smcdiff/assets/classifier`` (8x8 digits) and ``smcdiff/assets/mnist_classifier``.

Cross-entropy on the training split of :func:`smcdiff.data.load_digits_images` (``--dataset mnist``:
:func:`smcdiff.data.load_mnist_images`), AdamW with cosine
decay (:func:`smcdiff.training.fit`, one shuffled pass over the data per epoch), and random
translations by at most one pixel (background-padded) as augmentation; no flips, since digits are
not flip-symmetric. Reports the accuracy on the held-out split and stores it in
``config.json`` next to ``model.safetensors``.

Examples (the shipped classifiers, and the independent judges of the class-conditional benchmark: another
seed and architecture, kept under ``benchmarks/assets``)::

    python examples/train_classifier.py --threads 1
    python examples/train_classifier.py --threads 1 --dataset mnist --epochs 20 --out smcdiff/assets/mnist_classifier
    python examples/train_classifier.py --threads 1 --seed 1 --channels 16,32 --feature-dim 48 --out benchmarks/assets/judge_digits
    python examples/train_classifier.py --threads 1 --dataset mnist --epochs 20 --seed 1 --channels 16,32 \
        --feature-dim 48 --out benchmarks/assets/judge_mnist
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from smcdiff.classifier import ASSET_DIR, DigitClassifier, DigitClassifierConfig, save_digit_classifier
from smcdiff.data import load_digits_images, load_mnist_images
from smcdiff.training import fit


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=("digits", "mnist"), default="digits")
    p.add_argument("--channels", default="32,64", help="widths of the two convolution stages, 'c1,c2'")
    p.add_argument("--feature-dim", type=int, default=64)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ASSET_DIR)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def random_shift(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image by an independent offset in {-1, 0, 1}^2, filling with background -1.

    Parameters
    ----------
    x : torch.Tensor, shape (N, C, H, W)
    generator : torch.Generator, optional

    Returns
    -------
    torch.Tensor, shape (N, C, H, W)
    """
    n, _, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    off = torch.randint(0, 3, (n, 2), generator=generator, device=x.device)
    rows = (off[:, 0, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (off[:, 1, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


@torch.no_grad()
def accuracy(model: DigitClassifier, x: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of ``x`` classified as ``labels``, in eval mode (the model's mode is restored)."""
    was_training = model.training
    value = (model.eval()(x).argmax(dim=1) == labels).float().mean().item()
    model.train(was_training)
    return value


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load = load_digits_images if args.dataset == "digits" else load_mnist_images
    x_train, y_train = (t.to(device) for t in load("train", return_labels=True))
    x_test, y_test = (t.to(device) for t in load("test", return_labels=True))
    config = DigitClassifierConfig(channels=tuple(int(c) for c in args.channels.split(",")), feature_dim=args.feature_dim,
                                   image_size=x_train.shape[-1])

    # torch.nn layers draw their initial weights from the global generator; seed it inside a
    # forked RNG scope so that the caller's global state is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = DigitClassifier(config).to(device)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    perm = torch.empty(0, dtype=torch.long)

    def loss_fn(step: int) -> torch.Tensor:
        nonlocal perm
        b = step % steps_per_epoch
        if b == 0:
            perm = torch.randperm(len(x_train), generator=gen, device=device)
        idx = perm[b * args.batch_size : (b + 1) * args.batch_size]
        return F.cross_entropy(model(random_shift(x_train[idx], generator=gen)), y_train[idx])

    t0 = time.time()

    def report(net: DigitClassifier, step: int, loss: float) -> None:
        acc = accuracy(net, x_test, y_test)
        print(f"epoch {step // steps_per_epoch:3d}  loss {loss:.4f}  held-out accuracy {acc:.4f}  {time.time() - t0:.0f}s")

    fit(
        model, loss_fn, steps=args.epochs * steps_per_epoch, lr=args.lr, weight_decay=args.weight_decay,
        schedule="cosine", generator=gen, progress=False, desc="train classifier", checkpoint=report,
        checkpoint_every=10 * steps_per_epoch,
    )

    train_acc = accuracy(model, x_train, y_train)
    test_acc = accuracy(model, x_test, y_test)
    print(f"train accuracy {train_acc:.4f}, held-out accuracy {test_acc:.4f} ({int(round(test_acc * len(x_test)))}/{len(x_test)})")
    save_digit_classifier(model, args.out, test_accuracy=round(test_acc, 4), train_accuracy=round(train_acc, 4))
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
