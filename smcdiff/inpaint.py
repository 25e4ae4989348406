r"""Plug-and-play inpainting with an unconditionally trained diffusion model.

Inpainting is :func:`smcdiff.restore` with a bool mask as the operator: ``mask`` True marks observed
pixels. ``method="smc"`` converges, as the particles grow, to the posterior of the discretised model;
``method="replacement"`` is the RePaint-style baseline (no resampling, no jumps). This module also
resolves models by name (:func:`load_model`).
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from .dynamics import Callback, Kernel
from .particles import Population
from .proposals import Proposal
from .resampling import Resampling
from .restore import (
    DEFAULT_KERNEL,
    DEFAULT_PARTICLES,
    DEFAULT_STEPS,
    RestoreResult,
    restore,
)
from .score import ScoreModel

__all__ = ["inpaint", "InpaintResult", "load_model", "DEFAULT_MODEL_PATH", "DEFAULT_STEPS"]

DEFAULT_MODEL_PATH = resources.files("smcdiff") / "assets" / "digits"


InpaintResult = RestoreResult
"""The result of :func:`inpaint`: a :class:`smcdiff.restore.RestoreResult` with a :class:`~smcdiff.operators.Mask`
operator (``image`` is the input, ``mask`` the observed pixels)."""


@functools.lru_cache(maxsize=4)
def _load_cached(path: str) -> ScoreModel:
    from smcdiff.adapters import DiffusersScore

    return DiffusersScore.from_pretrained(path)


def load_model(model: ScoreModel | str | Path = "digits", device: torch.device | str | None = None) -> ScoreModel:
    """Resolve ``model``: a score module (returned as is, or moved to ``device``), ``"digits"`` (the
    shipped default), a local directory or a hub id of a diffusers UNet2DModel with its scheduler.

    Loaded models are cached on the CPU, once per process; asking for another device returns a copy
    on that device, so one caller's device never moves another caller's model.
    """
    if isinstance(model, torch.nn.Module) and hasattr(model, "sde"):
        return model if device is None else model.to(device)
    if isinstance(model, (str, Path)):
        path = str(DEFAULT_MODEL_PATH) if str(model) == "digits" else str(model)
        cached = _load_cached(path)
        if device is None or torch.device(device) == torch.device("cpu"):
            return cached
        return copy.deepcopy(cached).to(device)
    raise ValueError(f"model must be a score module with .sde, 'digits', a directory or a hub id, got {type(model).__name__}")


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
    proposal: Proposal | None = None,
    kernel: Kernel = DEFAULT_KERNEL,
    resampling: Resampling = "systematic",
    ess_threshold: float = 0.5,
    corrector_steps: int = 0,
    corrector_size: float = 1.0,
    twist_variance: float | Tensor = 1.0,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    device: torch.device | str | None = None,
    population: Population | None = None,
    populations: int = 1,
) -> RestoreResult | None:
    """Inpaint ``image`` where ``mask`` is False with an unconditional diffusion model.

    The mask case of :func:`smcdiff.restore`.

    Parameters
    ----------
    model : score module with ``.sde``, ``"digits"`` (the shipped 8x8 digits UNet), a directory or hub id.
    image : (B, C, H, W) or (C, H, W) in the model's range ([-1, 1] for diffusers models).
    mask : bool, (H, W), (B, H, W), (B, 1, H, W) or the image's shape; True = observed pixel.
    noise_std : sigma_y >= 0, noise on the observed pixels, in the data's units.
    particles : M, particles (SMC) or independent samples (replacement) per image.
    steps, grid : reverse steps (default 250) or explicit times, as in :func:`smcdiff.restore`.
    method : "smc" (weighted; converges as M grows to the posterior of the discretised model) or
        "replacement" (RePaint-style baseline; biased even with an exact score).
    proposal, kernel, resampling, ess_threshold, corrector_steps, corrector_size, twist_variance : SMC options, see
        :func:`smcdiff.smc_sample`.
    generator : torch.Generator, the only source of randomness.
    chunk_size : at most this many particles per network call.
    progress : tqdm progress bar.
    callback : called with a :class:`~smcdiff.dynamics.StepInfo` after each step.
    device : where the model and the particles run.
    population : where the particles live (see :func:`smcdiff.restore`).
    populations : P independent SMC runs per image, for independent draws (see :func:`smcdiff.restore`).
    """
    score = load_model(model, device=device)
    if not hasattr(score, "sde"):
        raise ValueError("model must carry its forward SDE as .sde (use an adapter from smcdiff.adapters)")
    image, mask = _prepare(score, image, mask)
    if method not in ("smc", "replacement"):
        raise ValueError(f"method must be 'smc' or 'replacement', got {method!r}")
    return restore(
        score, image, mask, noise_std=noise_std, particles=particles, steps=steps, grid=grid, method=method,
        proposal=proposal, kernel=kernel, resampling=resampling, ess_threshold=ess_threshold,
        corrector_steps=corrector_steps, corrector_size=corrector_size, twist_variance=twist_variance, generator=generator,
        chunk_size=chunk_size, progress=progress, callback=callback, device=device, population=population,
        populations=populations,
    )
