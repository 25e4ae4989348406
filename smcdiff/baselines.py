r"""The replacement ("RePaint without jumps") baseline.

At every reverse step the observed coordinates are overwritten with the forward-noised observation
(Zhang et al. 2025, DiffPuter's imputation step; RePaint with jump_length = jump_n_sample = 1):

    x_{t_{k-1}} <- M * y_{t_{k-1}} + (1 - M) * (reverse Euler-Maruyama step from x_{t_k}).

It ignores how plausible y_{t_{k-1}} is under each particle, so it is biased even with the exact score
(the seed slides' Gaussian example); :func:`smcdiff.smc_sample` corrects exactly this by reweighting.
It shares the particle loop of :mod:`smcdiff.smc` with the weighting switched off.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .score import ScoreFn
from .sde import SDE
from .smc import StepInfo, WeightedSamples, conditional_sample

__all__ = ["replacement_sample"]


def replacement_sample(
    score: ScoreFn,
    sde: SDE,
    y: Tensor,
    mask: Tensor,
    *,
    particles: int,
    steps: int = 500,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    denoise_last: bool = False,
    progress: bool = False,
    callback: Callable[[StepInfo], None] | None = None,
) -> WeightedSamples:
    """Replacement sampling; arguments as :func:`smcdiff.smc_sample` (no resampling options).

    Returns :class:`WeightedSamples` with uniform weights, ``ess`` equal to M, no resampling and a NaN
    ``log_evidence`` (the method estimates none).
    """
    return conditional_sample(
        score, sde, y, mask, particles=particles, steps=steps, reweight=False, generator=generator,
        chunk_size=chunk_size, denoise_last=denoise_last, progress=progress, callback=callback,
    )
