"""Observation masks for inpainting: True = observed pixel, False = to be filled."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["box_mask", "random_square_masks"]


def box_mask(height: int, width: int, box: tuple[int, int, int, int]) -> Tensor:
    """Bool ``(1, 1, H, W)``, observed everywhere except the box ``(x, y, w, h)`` (pixels, top-left origin)."""
    x, y, w, h = box
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise ValueError(f"box {tuple(box)} (x, y, w, h) must lie inside the {width}x{height} image with w, h >= 1")
    mask = torch.ones(1, 1, height, width, dtype=torch.bool)
    mask[..., y : y + h, x : x + w] = False
    return mask


def random_square_masks(
    n: int, height: int, width: int, fraction: float = 0.25, generator: torch.Generator | None = None
) -> Tensor:
    """``(n, 1, H, W)`` masks hiding one square of ``fraction`` of the image area at a uniform random position.

    The protocol of "Non-Uniform Diffusion Models" §4.2.1 (25% of the image, random placement).
    The side is round(sqrt(fraction * H * W)), so 25% of 8x8 is a 4x4 square.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    side = max(1, round(math.sqrt(fraction * height * width)))
    if side > min(height, width):
        raise ValueError(f"a square of {fraction:.0%} of a {height}x{width} image does not fit")
    ys = torch.randint(0, height - side + 1, (n,), generator=generator)
    xs = torch.randint(0, width - side + 1, (n,), generator=generator)
    rows = torch.arange(height)[None, :, None]
    cols = torch.arange(width)[None, None, :]
    hidden = (rows >= ys[:, None, None]) & (rows < ys[:, None, None] + side) & (cols >= xs[:, None, None]) & (cols < xs[:, None, None] + side)
    return ~hidden[:, None]
