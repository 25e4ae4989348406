"""A small CNN classifier of the 8x8 digits; its penultimate layer is the feature map of the
Fréchet distance in :mod:`smcdiff.metrics` (the digits' analogue of Inception features in FID).

Architecture (inputs ``(N, 1, 8, 8)`` in [-1, 1])::

    conv3x3(1 -> c1) ReLU  conv3x3(c1 -> c2) ReLU  maxpool2   -> (N, c2, 4, 4)
    conv3x3(c2 -> c2) ReLU                        maxpool2   -> (N, c2, 2, 2)
    flatten  linear(4 c2 -> F) SiLU                           -> features (N, F)
    linear(F -> 10)                                           -> logits (N, 10)

The penultimate activation is SiLU rather than ReLU so that no feature is identically zero on
the data (dead ReLU units would leave the feature covariance of the Fréchet distance singular).

The shipped weights (``smcdiff/assets/classifier``) are trained by ``examples/train_classifier.py``
on the training split of :func:`smcdiff.data.load_digits_images`; the folder is in the layout of
:mod:`smcdiff.persistence` (kind ``"digit_classifier"``), its metadata holds the accuracies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .persistence import Pretrained

__all__ = ["DigitClassifier", "DigitClassifierConfig", "load_digit_classifier", "save_digit_classifier"]

ASSET_DIR = Path(__file__).resolve().parent / "assets" / "classifier"
SHIPPED_CLASSIFIERS = {"digits": ASSET_DIR, "mnist": ASSET_DIR.parent / "mnist_classifier"}
"""The classifier shipped with each shipped model, by the model's name."""


@dataclass(frozen=True)
class DigitClassifierConfig:
    """Architecture of :class:`DigitClassifier`.

    Attributes
    ----------
    channels : tuple of int
        Widths ``(c1, c2)`` of the convolutional layers.
    feature_dim : int
        F, the width of the penultimate layer returned by :meth:`DigitClassifier.features`.
    num_classes : int
        Number of output logits.
    image_size : int
        Height and width of the (square, one-channel) input: 8 for the digits, 28 for MNIST; a multiple of 4.
    """

    channels: tuple[int, int] = (32, 64)
    feature_dim: int = 64
    num_classes: int = 10
    image_size: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if len(self.channels) != 2 or min(self.channels) < 1:
            raise ValueError(f"channels must be two positive widths; got {self.channels!r}")
        if self.feature_dim < 1:
            raise ValueError(f"feature_dim must be positive; got {self.feature_dim}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2; got {self.num_classes}")
        if self.image_size < 4 or self.image_size % 4:
            raise ValueError(f"image_size must be a positive multiple of 4; got {self.image_size}")

    def to_dict(self) -> dict:
        """The constructor's arguments as JSON values."""
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d


class DigitClassifier(nn.Module, Pretrained):
    """CNN classifier of square grey digit images (8x8 digits or 28x28 MNIST; ``config.image_size``).

    Parameters
    ----------
    config : DigitClassifierConfig, optional
        Architecture; the default is the shipped one.
    """

    model_kind = "digit_classifier"
    config_class = DigitClassifierConfig

    def __init__(self, config: DigitClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = config or DigitClassifierConfig()
        c1, c2 = self.config.channels
        f = self.config.feature_dim
        self.body = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c2, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear((self.config.image_size // 4) ** 2 * c2, f),
            nn.SiLU(),
        )
        self.head = nn.Linear(f, self.config.num_classes)

    def _check(self, x: torch.Tensor) -> None:
        n = self.config.image_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, n, n):
            raise ValueError(f"x must have shape (N, 1, {n}, {n}); got {tuple(x.shape)}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer activations.

        Parameters
        ----------
        x : torch.Tensor, shape (N, 1, S, S)
            Images in [-1, 1].

        Returns
        -------
        torch.Tensor, shape (N, F)
            Features after the activation, ``F = config.feature_dim``.
        """
        self._check(x)
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits.

        Parameters
        ----------
        x : torch.Tensor, shape (N, 1, S, S)
            Images in [-1, 1].

        Returns
        -------
        torch.Tensor, shape (N, num_classes)
        """
        return self.head(self.features(x))


def save_digit_classifier(model: DigitClassifier, directory: str | Path, **metadata: float | int | str) -> None:
    """Write ``model.safetensors`` and ``config.json`` (architecture plus ``metadata``) to ``directory``."""
    model.save_pretrained(directory, **metadata)


def load_digit_classifier(
    device: torch.device | str | None = None, directory: str | Path | None = None
) -> DigitClassifier:
    """Load the shipped digit classifier, in eval mode, with gradients disabled.

    Parameters
    ----------
    device : torch.device or str, optional
        Where to put the weights; CPU by default.
    directory : str or Path, optional
        A folder written by :func:`save_digit_classifier`; the shipped ``smcdiff/assets/classifier``
        by default.

    Returns
    -------
    DigitClassifier
    """
    return DigitClassifier.from_pretrained(ASSET_DIR if directory is None else directory, device)
