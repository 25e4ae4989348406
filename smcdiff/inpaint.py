r"""Plug-and-play inpainting with an unconditionally trained diffusion model.

Inpainting is :func:`smcdiff.restore` with a bool mask as the operator: ``mask`` True marks observed
pixels. ``method="smc"`` converges, as the particles grow, to the posterior of the discretised model;
``method="replacement"`` is the RePaint-style baseline (no resampling, no jumps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from .dynamics import Kernel
from .options import RunOptions
from .proposals import Proposal, ProposalName
from .restore import DEFAULT_KERNEL, DEFAULT_PARTICLES, RestoreResult, _resolve_model, check_device, restore
from .score import ScoreModel

__all__ = ["inpaint", "InpaintResult"]

InpaintResult = RestoreResult
"""The result of :func:`inpaint`: a :class:`smcdiff.restore.RestoreResult` with a :class:`~smcdiff.operators.Mask`
operator (``image`` is the input, ``mask`` the observed pixels)."""


def _prepare(model: ScoreModel, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(image, Tensor) or not image.is_floating_point():
        raise ValueError("image must be a floating-point tensor (B, C, H, W) or (C, H, W) in the model's range")
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4:
        raise ValueError(f"image must have shape (B, C, H, W) or (C, H, W), got {tuple(image.shape)}")
    expected = getattr(model, "event_shape", None)
    if expected is not None and tuple(image.shape[1:]) != tuple(expected):
        raise ValueError(f"image has shape {tuple(image.shape[1:])} per item but the model expects {tuple(expected)}")
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise ValueError("mask must be a bool tensor (True = observed pixel) broadcastable to the image")
    if mask.ndim == 2:
        mask = mask[None, None]
    elif mask.ndim == 3:
        mask = mask[:, None]  # (B, H, W)
    try:
        mask = torch.broadcast_to(mask.to(image.device), image.shape)
    except RuntimeError as err:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to the image's shape {tuple(image.shape)}") from err
    empty = (~mask.flatten(1).any(1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"mask observes no pixel of image(s) {empty[:5]}: nothing to condition on (True marks observed pixels; "
            "for unconditional draws use smcdiff.sample)"
        )
    return image, mask


def inpaint(
    model: ScoreModel | str | Path,
    image: Tensor,
    mask: Tensor,
    *,
    noise_std: float = 0.0,
    particles: int = DEFAULT_PARTICLES,
    steps: int | None = None,
    grid: Tensor | None = None,
    method: Literal["smc", "replacement"] = "smc",
    proposal: Proposal | ProposalName | None = None,
    kernel: Kernel = DEFAULT_KERNEL,
    generator: torch.Generator | None = None,
    denoise_last: bool = False,
    device: torch.device | str | None = None,
    options: RunOptions | None = None,
) -> RestoreResult | None:
    """Inpaint ``image`` where ``mask`` is False with an unconditional diffusion model: :func:`smcdiff.restore`
    with the mask as the operator, after checking the image and the mask.

    Parameters
    ----------
    model : score module with ``.sde``, ``"digits"`` (the shipped 8x8 digits UNet), a directory or hub id.
    image : (B, C, H, W) or (C, H, W) in the model's range ([-1, 1] for diffusers models).
    mask : bool, (H, W), (B, H, W), (B, 1, H, W) or the image's shape; True = observed pixel. Every image
        must have at least one observed pixel.
    Everything else: as :func:`smcdiff.restore`.
    """
    score = _resolve_model(model, check_device(device))
    image, mask = _prepare(score, image, mask)
    return restore(
        score, image, mask, noise_std=noise_std, particles=particles, steps=steps, grid=grid, method=method,
        proposal=proposal, kernel=kernel, generator=generator, denoise_last=denoise_last, device=device,
        options=options,
    )
