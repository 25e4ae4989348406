r"""Multiscale non-uniform diffusion ("Non-Uniform Diffusion Models" §3.2-3.3, §4.1) and its uniform baseline.

The public names of the multiscale side of :mod:`smcdiff.msdiff`, each defined in the module that
holds its concern:

- :mod:`~smcdiff.msdiff.process`: the forward process on packed Haar coefficients
  (:class:`MultiscaleProcess`, :func:`snr_range`), the :class:`ScaleScores` protocol and the exact
  Gaussian scores :class:`GaussianScales`;
- :mod:`~smcdiff.msdiff.networks`: the UNet backbone family (:class:`UNetSpec`);
- :mod:`~smcdiff.msdiff.configs`: :class:`MultiscaleConfig`, :class:`UniformConfig`,
  :func:`group_rms` and :func:`matched_configs` (equal parameter counts, §4.1);
- :mod:`~smcdiff.msdiff.models`: :class:`MultiscaleModel`, :class:`UniformModel`, their losses and
  :func:`load_multiscale` (the shipped digits models by name, under :data:`ASSET_DIR`);
- :mod:`~smcdiff.msdiff.sampler`: :func:`multiscale_sample`, the sampler of §3.3.2;
- :mod:`~smcdiff.msdiff.trainers`: :func:`train` (on :func:`smcdiff.training.fit`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..score import TIME_SCALE
from ..training import TrainResult
from .configs import MultiscaleConfig, UniformConfig, group_rms, matched_configs
from .models import ASSET_DIR, MultiscaleModel, UniformModel, Weighting, load_multiscale
from .networks import UNetSpec
from .process import GaussianScales, MultiscaleProcess, ScaleScores, snr_range
from .sampler import multiscale_sample
from .trainers import train_multiscale as train

__all__ = [
    "Weighting",
    "UNetSpec",
    "MultiscaleProcess",
    "MultiscaleConfig",
    "MultiscaleModel",
    "UniformConfig",
    "UniformModel",
    "GaussianScales",
    "ScaleScores",
    "snr_range",
    "group_rms",
    "matched_configs",
    "multiscale_sample",
    "train",
    "TrainResult",
    "load_multiscale",
    "load_model",
    "ASSET_DIR",
    "TIME_SCALE",
]


def load_model(path: str | Path, device: torch.device | str | None = None) -> MultiscaleModel | UniformModel:
    """Deprecated alias of :func:`load_multiscale` (``smcdiff.load_model`` is the loader of score models)."""
    warnings.warn(
        "smcdiff.msdiff.multiscale.load_model is deprecated; use load_multiscale", DeprecationWarning, stacklevel=2
    )
    return load_multiscale(path, device)
