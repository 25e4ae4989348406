r"""The replacement ("RePaint without jumps") baseline.

At every reverse step the observed coordinates are overwritten with the forward-noised observation
(Zhang et al. 2025, DiffPuter's imputation step; RePaint with jump_length = jump_n_sample = 1):

    x_{t_{k-1}} <- M * y_{t_{k-1}} + (1 - M) * (reverse Euler-Maruyama step from x_{t_k}).

It ignores how plausible y_{t_{k-1}} is under each particle, so it is biased even with the exact score
(the seed slides' Gaussian example); :func:`smcdiff.smc_sample` corrects exactly this by reweighting.
It is the bootstrap particle model of :mod:`smcdiff.proposals.bootstrap` with the weighting switched off.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .dynamics import Callback, Kernel, check_callback
from .operators import Operator
from .particles import Population, WeightedSamples, run_particles
from .proposals import BootstrapModel
from .score import ScoreFn
from .sde import SDE
from .smc import build_problem, check_population

__all__ = ["replacement_sample"]


@torch.no_grad()
def replacement_sample(
    score: ScoreFn,
    sde: SDE,
    y: Tensor,
    observation: Tensor | Operator,
    *,
    particles: int,
    steps: int | None = None,
    grid: Tensor | None = None,
    kernel: Kernel = "euler",
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    denoise_last: bool = False,
    population: Population | None = None,
) -> WeightedSamples | None:
    """Replacement sampling; arguments as :func:`smcdiff.smc_sample` (noiseless observations, no resampling options).

    Returns :class:`WeightedSamples` with uniform weights, ``ess`` equal to M, no resampling and a NaN
    ``log_evidence`` (the method estimates none).
    """
    check_callback(callback)
    population = check_population(population)
    problem = build_problem(
        score, sde, y, observation, particles=population.local_particles(particles), steps=steps, grid=grid,
        kernel=kernel, chunk_size=chunk_size,
    )
    return run_particles(
        BootstrapModel(problem, reweight=False), generator=generator, denoise_last=denoise_last,
        progress=progress, desc="replacement", callback=callback, population=population,
    )
