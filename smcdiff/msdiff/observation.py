"""Observations ("tasks") of the CDE / CDiffE / CMDE estimators, as App. B feeds them to the network.

Observations are images of the target's size:

- ``"inpaint"``: A keeps the pixels outside a random square hole covering ``mask_fraction`` of the
  image (§4.2.1). y is x on the observed pixels and 0 in the hole; the mask itself is an extra
  input channel ``aux`` that is not diffused (it is part of the operator, not of the data).
- ``"sr"``: A is ``sr_factor`` x average pooling (§4.2.2 uses bicubic down-scaling); y is the low
  resolution image brought back to full size by nearest-neighbour interpolation (App. B).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..masks import random_square_masks
from .conditional_config import ConditionalConfig

__all__ = ["Observation", "average_pool", "condition", "observe"]


@dataclass(frozen=True)
class Observation:
    """An observation in the form the estimators take.

    Attributes
    ----------
    y : (n, C, H, W)
        Condition image: x on the observed pixels and 0 in the hole (inpainting), or the
        nearest-neighbour up-sampling of the low-resolution image (SR).
    aux : (n, 1, H, W) or None
        The mask as 0/1 floats (inpainting); None for SR.
    measurement : Tensor
        A x itself: ``(n, C, H, W)`` masked image (inpainting) or ``(n, C, H/f, W/f)`` (SR).
    mask : (n, 1, H, W) bool or None
        True = observed (inpainting only).
    """

    y: Tensor
    aux: Tensor | None
    measurement: Tensor
    mask: Tensor | None = None

    def repeat(self, k: int) -> "Observation":
        """Each row repeated ``k`` times in place (row i becomes rows i k .. i k + k - 1)."""
        rep = lambda v: None if v is None else v.repeat_interleave(k, dim=0)  # noqa: E731
        return Observation(rep(self.y), rep(self.aux), rep(self.measurement), rep(self.mask))


def average_pool(x: Tensor, factor: int) -> Tensor:
    """The super-resolution operator A: ``factor`` x average pooling, ``(n, C, H, W) -> (n, C, H/f, W/f)``."""
    if x.ndim != 4:
        raise ValueError(f"x must have shape (n, C, H, W), got {tuple(x.shape)}")
    if x.shape[-1] % factor or x.shape[-2] % factor:
        raise ValueError(f"factor {factor} must divide the image size {tuple(x.shape[-2:])}")
    return F.avg_pool2d(x, factor)


def condition(config: ConditionalConfig, measurement: Tensor, mask: Tensor | None = None) -> Observation:
    """Build the estimators' inputs from a measurement A x.

    Parameters
    ----------
    config : ConditionalConfig
    measurement : Tensor
        Inpainting: ``(n, C, H, W)`` image whose values in the hole are ignored. SR: the
        low-resolution image ``(n, C, H/f, W/f)``.
    mask : (n, 1, H, W) or (n, C, H, W) bool, True = observed; required for inpainting only.
    """
    c, size = config.channels, config.image_size
    if config.task == "inpaint":
        if measurement.ndim != 4 or tuple(measurement.shape[1:]) != (c, size, size):
            raise ValueError(f"measurement must have shape (n, {c}, {size}, {size}), got {tuple(measurement.shape)}")
        if mask is None or mask.dtype != torch.bool:
            raise ValueError("mask must be a bool tensor (True = observed) for inpainting")
        if mask.ndim != 4 or mask.shape[0] != measurement.shape[0] or mask.shape[-2:] != measurement.shape[-2:]:
            raise ValueError(f"mask must have shape (n, 1, {size}, {size}), got {tuple(mask.shape)}")
        mask = mask.to(measurement.device)[:, :1]
        y = torch.where(mask, measurement, torch.zeros_like(measurement))
        return Observation(y, mask.to(measurement.dtype), y, mask)
    low = size // config.sr_factor
    if mask is not None:
        raise ValueError("mask must be None for super-resolution")
    if measurement.ndim != 4 or tuple(measurement.shape[1:]) != (c, low, low):
        raise ValueError(f"measurement must have shape (n, {c}, {low}, {low}), got {tuple(measurement.shape)}")
    y = F.interpolate(measurement, scale_factor=config.sr_factor, mode="nearest")
    return Observation(y, None, measurement, None)


def observe(
    config: ConditionalConfig, x0: Tensor, *, mask: Tensor | None = None, generator: torch.Generator | None = None
) -> Observation:
    """Apply the config's operator A to clean images ``x0: (n, C, H, W)``.

    For inpainting a ``mask`` may be given; otherwise one square hole covering ``mask_fraction`` of
    the image is drawn per image at a uniform position (:func:`smcdiff.masks.random_square_masks`).
    """
    if config.task == "inpaint":
        if mask is None:
            size = config.image_size
            mask = random_square_masks(x0.shape[0], size, size, config.mask_fraction, generator=generator)
            mask = mask.to(x0.device)
        return condition(config, x0, mask)
    if mask is not None:
        raise ValueError("mask must be None for super-resolution")
    return condition(config, average_pool(x0, config.sr_factor))
