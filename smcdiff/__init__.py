"""smcdiff: conditional sampling with diffusion models trained without the condition.

See the README for an overview. Public names:

- forward SDEs: :class:`OU`, :class:`VP`, :class:`VE`, :class:`LogLinearVP`
- exact oracle: :class:`GaussianScore`, :class:`GaussianMixtureScore`, :func:`gaussian_posterior`,
  :func:`gaussian_mixture_posterior`
- samplers: :func:`sample` (unconditional), :func:`smc_sample` (conditional SMC for y = A x + noise),
  :func:`replacement_sample` (the biased baseline), :class:`WeightedSamples`
- proposals, each owning its options: :class:`Bootstrap`, :class:`MCGdiff`, :class:`Twisted` (or their names);
  run-level options: :class:`RunOptions`
- observation operators: :mod:`smcdiff.operators` (``Mask``, ``Downsample``, ``Blur``, ``Grayscale``, ``Dense``)
- likelihoods: :mod:`smcdiff.likelihoods` (``Likelihood``, ``Classifier``, ``GaussianNonlinear``, ``Quantised``,
  ``GaussianLinear``), any log p(y | x_0) for the twisted proposal
- user surface: :func:`restore` (any operator or likelihood), :func:`inpaint` (a mask), :func:`generate` (a class,
  with a classifier), :class:`RestoreResult`, :func:`load_model` (shipped models by name, directories, hub ids)
"""

from . import likelihoods, operators
from .baselines import replacement_sample
from .dynamics import observation_trajectory
from .feynman_kac import StepInfo, WeightedSamples
from .generate import generate
from .inpaint import InpaintResult, inpaint
from .models import load_model
from .options import RunOptions
from .oracle import (
    GaussianMixtureScore,
    GaussianScore,
    gaussian_mixture_posterior,
    gaussian_posterior,
    linear_gaussian_mixture_posterior,
    linear_gaussian_posterior,
)
from .proposals import Bootstrap, MCGdiff, Twisted
from .resampling import ess, resample
from .restore import RestoreResult, restore
from .results import load_result, save_result
from .sampling import sample
from .score import ScoreModel
from .sde import OU, SDE, VE, VP, LogLinearVP, TabulatedVP
from .smc import smc_sample

from .version import __version__  # noqa: E402

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
    "RunOptions",
    "Bootstrap",
    "MCGdiff",
    "Twisted",
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
    "likelihoods",
    "generate",
    "load_model",
]
