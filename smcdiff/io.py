"""Small image I/O helpers: PNG files and PIL images to tensors in the model range, and back.

Kept apart from the mathematics: samplers only ever see tensors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["load_image", "load_mask", "to_tensor_image"]


def to_tensor_image(image, channels: int | None = None) -> Tensor:
    """A PIL image to ``(1, C, H, W)`` float32 in [-1, 1]; ``channels`` 1 (grey) or 3 (RGB) converts."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise ValueError(f"image must be a PIL image, got {type(image).__name__}")
    if channels is not None:
        image = image.convert("L" if channels == 1 else "RGB")
    arr = np.asarray(image, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[..., None]
    return torch.from_numpy(arr).permute(2, 0, 1)[None] * 2 - 1


def load_image(path: str | Path, channels: int | None = None, size: tuple[int, int] | None = None) -> Tensor:
    """Read an image file as ``(1, C, H, W)`` in [-1, 1].

    ``size = (H, W)`` resizes with area averaging (for example a large PNG of a digit down to 8x8).
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image file: {path}")
    with Image.open(path) as img:
        img.load()
        if size is not None:
            img = img.convert("L" if channels == 1 else "RGB") if channels else img
            img = img.resize((size[1], size[0]), Image.Resampling.BOX)
        return to_tensor_image(img, channels)


def load_mask(path: str | Path, size: tuple[int, int] | None = None) -> Tensor:
    """Read a mask PNG as bool ``(1, 1, H, W)``: white (>= 50% grey) = observed pixel, black = to fill."""
    img = load_image(path, channels=1, size=size)
    return img > 0
