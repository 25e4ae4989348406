"""smcdiff: conditional sampling with diffusion models trained without the condition.

See ``DESIGN.md``-style overview in the README. Public names:

- forward SDEs: :class:`OU`, :class:`VP`, :class:`VE`, :class:`LogLinearVP`
- exact oracle: :class:`GaussianScore`, :class:`GaussianMixtureScore`, :func:`gaussian_posterior`,
  :func:`gaussian_mixture_posterior`
- samplers: :func:`sample` (unconditional), :func:`smc_sample` (conditional SMC for y = A x + noise),
  :func:`replacement_sample` (the biased baseline), :class:`WeightedSamples`
- observation operators: :mod:`smcdiff.operators` (``Mask``, ``Downsample``, ``Blur``, ``Grayscale``, ``Dense``)
- user surface: :func:`restore` (any operator), :func:`inpaint` (a mask), :class:`RestoreResult`
"""

from . import operators
from .baselines import replacement_sample
from .inpaint import InpaintResult, inpaint, load_model
from .oracle import (
    GaussianMixtureScore,
    GaussianScore,
    gaussian_mixture_posterior,
    gaussian_posterior,
    linear_gaussian_mixture_posterior,
    linear_gaussian_posterior,
)
from .particles import StepInfo, WeightedSamples
from .resampling import ess, resample
from .restore import RestoreResult, restore
from .results import load_result, save_result
from .sampling import sample
from .score import ScoreModel
from .sde import OU, SDE, VE, VP, LogLinearVP, TabulatedVP
from .smc import observation_trajectory, smc_sample

__version__ = "0.1.0"

__all__ = [
    "SDE",
    "OU",
    "VP",
    "VE",
    "LogLinearVP",
    "TabulatedVP",
    "ScoreModel",
    "GaussianScore",
    "GaussianMixtureScore",
    "gaussian_posterior",
    "gaussian_mixture_posterior",
    "sample",
    "smc_sample",
    "replacement_sample",
    "WeightedSamples",
    "StepInfo",
    "observation_trajectory",
    "resample",
    "ess",
    "inpaint",
    "InpaintResult",
    "restore",
    "RestoreResult",
    "save_result",
    "load_result",
    "linear_gaussian_posterior",
    "linear_gaussian_mixture_posterior",
    "operators",
    "load_model",
]
