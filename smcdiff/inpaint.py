r"""Plug-and-play inpainting with an unconditionally trained diffusion model.

Inpainting is the conditional problem of :func:`smcdiff.smc_sample` with the visible pixels as the
observation: ``mask`` True marks observed pixels. ``method="smc"`` is asymptotically exact in the
number of particles; ``method="replacement"`` is the RePaint-style baseline (no resampling, no jumps).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from .baselines import replacement_sample
from .resampling import Resampling
from .score import ScoreModel
from .smc import WeightedSamples, smc_sample

__all__ = ["inpaint", "InpaintResult", "load_model", "DEFAULT_MODEL_PATH"]

DEFAULT_MODEL_PATH = resources.files("smcdiff") / "assets" / "digits"
DEFAULT_STEPS = 250


@dataclass(frozen=True)
class InpaintResult:
    """Weighted inpaintings of each image.

    Attributes
    ----------
    samples : (B, M, C, H, W) particles; observed pixels equal the input image.
    log_weights : (B, M) float64, normalised (uniform for ``method="replacement"``).
    image, mask : the inputs, ``(B, C, H, W)`` and bool broadcast to it.
    weighted : the underlying :class:`WeightedSamples` (ESS per step, log-evidence, ...).
    method : "smc" or "replacement".
    model_evaluations : score-network evaluations spent (B * M * steps).
    seconds : wall-clock time of the sampler.
    """

    samples: Tensor
    log_weights: Tensor
    image: Tensor
    mask: Tensor
    weighted: WeightedSamples
    method: str
    model_evaluations: int
    seconds: float

    def mean(self) -> Tensor:
        """Weighted mean inpainting ``(B, C, H, W)`` (the posterior-mean estimate)."""
        return self.weighted.mean().to(self.samples.dtype)

    def draw(self, k: int, generator: torch.Generator | None = None) -> Tensor:
        """``k`` equally weighted inpaintings per image, ``(B, k, C, H, W)``, drawn i.i.d. from the weights."""
        return self.weighted.resample(k, generator)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, device: str | None) -> ScoreModel:
    from smcdiff.adapters import DiffusersScore

    return DiffusersScore.from_pretrained(path, device=device)


def load_model(model: ScoreModel | str | Path = "digits", device: torch.device | str | None = None) -> ScoreModel:
    """Resolve ``model``: a score module (returned as is), ``"digits"`` (the shipped default), a local
    directory or a hub id of a diffusers UNet2DModel with its scheduler."""
    if isinstance(model, ScoreModel):
        return model if device is None else model.to(device)
    if isinstance(model, (str, Path)):
        path = str(DEFAULT_MODEL_PATH) if str(model) == "digits" else str(model)
        return _load_cached(path, None if device is None else str(device))
    raise ValueError(f"model must be a ScoreModel, 'digits', a directory or a hub id, got {type(model).__name__}")


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
    particles: int = 32,
    steps: int = DEFAULT_STEPS,
    method: Literal["smc", "replacement"] = "smc",
    generator: torch.Generator | None = None,
    resampling: Resampling = "systematic",
    ess_threshold: float = 0.5,
    chunk_size: int | None = None,
    progress: bool = False,
) -> InpaintResult:
    """Inpaint ``image`` where ``mask`` is False with an unconditional diffusion model.

    Parameters
    ----------
    model : score module with ``.sde``, ``"digits"`` (the shipped 8x8 digits UNet), a directory or hub id.
    image : (B, C, H, W) or (C, H, W) in the model's range ([-1, 1] for diffusers models).
    mask : bool, (H, W), (B, H, W), (B, 1, H, W) or the image's shape; True = observed pixel.
    particles : M, particles (SMC) or independent samples (replacement) per image.
    steps : reverse Euler-Maruyama steps.
    method : "smc" (weighted, exact as M grows) or "replacement" (RePaint-style baseline).
    generator : torch.Generator, the only source of randomness.
    resampling, ess_threshold : SMC options, see :func:`smcdiff.smc_sample`.
    chunk_size : at most this many particles per network call.
    progress : tqdm progress bar.
    """
    score = load_model(model)
    if not hasattr(score, "sde"):
        raise ValueError("model must carry its forward SDE as .sde (use an adapter from smcdiff.adapters)")
    image, mask = _prepare(score, image, mask)
    if method not in ("smc", "replacement"):
        raise ValueError(f"method must be 'smc' or 'replacement', got {method!r}")
    t0 = time.perf_counter()
    if method == "smc":
        out = smc_sample(
            score, score.sde, image, mask, particles=particles, steps=steps, resampling=resampling,
            ess_threshold=ess_threshold, generator=generator, chunk_size=chunk_size, progress=progress,
        )
    else:
        out = replacement_sample(
            score, score.sde, image, mask, particles=particles, steps=steps, generator=generator,
            chunk_size=chunk_size, progress=progress,
        )
    seconds = time.perf_counter() - t0
    return InpaintResult(
        out.particles, out.log_weights, image, mask, out, method, image.shape[0] * particles * steps, seconds
    )
