r"""The replacement ("RePaint without jumps") baseline.

At every reverse step the observed coordinates are overwritten with the forward-noised observation
(Zhang et al. 2025, DiffPuter's imputation step; RePaint with jump_length = jump_n_sample = 1):

    x_{t_{k-1}} <- M * y_{t_{k-1}} + (1 - M) * (reverse Euler-Maruyama step from x_{t_k}).

It ignores how plausible y_{t_{k-1}} is under each particle, so it is biased even with the exact score
(the seed slides' Gaussian example); :func:`smcdiff.smc_sample` corrects exactly this by reweighting.
It is the bootstrap particle model of :mod:`smcdiff.proposals.bootstrap` with the weighting switched off.

The trained-conditional baseline, :func:`sample_conditional`, needs no particles: it integrates the
conditional reverse SDE (eq. 11 of "Non-Uniform Diffusion Models") with a CDE / CDiffE / CMDE
estimator of grad_x log p(x_t | y) (:mod:`smcdiff.msdiff.conditional`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .dynamics import Callback, Kernel, check_callback, check_generator
from .feynman_kac import WeightedSamples, run_particles
from .likelihoods import Likelihood
from .operators import Operator
from .options import RunOptions, check_options
from .proposals import BootstrapModel
from .sampling import sample
from .score import ScoreFn, check_chunk_size
from .sde import SDE
from .smc import build_problem, linear_observation
from .threads import torch_threads

if TYPE_CHECKING:
    from .msdiff.estimator import ConditionalEstimator

__all__ = ["replacement_sample", "sample_conditional"]


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
    denoise_last: bool = False,
    options: RunOptions | None = None,
) -> WeightedSamples | None:
    """Replacement sampling; arguments as :func:`smcdiff.smc_sample` for a noiseless observation.

    Of ``options``, the chunking, progress bar, callback, placement and threads apply; resampling,
    ``ess_threshold`` and ``populations`` do not (nothing is weighted; the draws are already independent)
    and are refused when set. Returns :class:`WeightedSamples` with uniform weights, ``ess`` equal to M, no
    resampling and a NaN ``log_evidence`` (the method estimates none).
    """
    options = check_options(options)
    unused = options.changed("resampling", "ess_threshold") + (["populations"] if options.runs() != 1 else [])
    if unused:
        raise ValueError(f"options {', '.join(unused)} apply to SMC only; the replacement baseline neither weighs nor resamples")
    check_generator(generator)
    observation, noise_std = linear_observation(observation, 0.0)
    if isinstance(observation, Likelihood) or noise_std != 0:
        raise ValueError("the replacement baseline overwrites observed pixels: it needs a noiseless mask or operator, "
                         f"not {observation!r}" + (f" with noise_std={noise_std:g}" if noise_std else ""))
    placement = options.where
    problem = build_problem(
        score, sde, y, observation, particles=placement.local_particles(particles), steps=steps, grid=grid,
        kernel=kernel, chunk_size=options.chunk_size,
    )
    with torch_threads(options.threads):
        return run_particles(
            BootstrapModel(problem, reweight=False), generator=generator, denoise_last=denoise_last,
            progress=options.progress, desc="replacement", callback=options.callback, placement=placement,
        )


@torch.no_grad()
def sample_conditional(
    estimator: ConditionalEstimator,
    y: Tensor,
    aux: Tensor | None = None,
    *,
    samples: int = 1,
    steps: int = 500,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    denoise_last: bool = True,
) -> WeightedSamples:
    """Draw ``samples`` reconstructions per observation with the conditional reverse SDE (§3.4.2).

    Euler-Maruyama from the VE prior at T down to eps (:func:`smcdiff.sample`) with the estimator bound
    to each observation (:class:`smcdiff.adapters.ConditionalScore`), optionally Tweedie-denoised at eps.

    Parameters
    ----------
    estimator : ConditionalEstimator, or any object with its protocol (:mod:`smcdiff.msdiff.conditional_losses`).
    y : (B, C_y, ...) conditions.
    aux : (B, A, ...) operator channels (the inpainting mask) or None.
    samples : M reconstructions per observation.
    steps : reverse steps N; the network is evaluated N (+1 with ``denoise_last``) times per sample.
    generator : torch.Generator, optional; the only source of randomness.
    chunk_size : at most this many of the B * M rows per sampler run (bounds memory); the rows of a
        run share one score call per step.
    progress : tqdm progress bar.
    callback : handed to each sampler run (one per chunk of rows), called with a
        :class:`~smcdiff.dynamics.StepInfo` after each of its steps.
    denoise_last : apply Tweedie's formula at ``t = eps``.

    Returns
    -------
    WeightedSamples
        ``particles (B, M, C_x, ...)``, equally weighted independent draws (as :func:`replacement_sample`
        returns them: ESS M at every step, NaN ``log_evidence``).
    """
    from .adapters.conditional import ConditionalScore

    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    check_chunk_size(chunk_size)
    check_callback(callback)
    b = y.shape[0]
    y_rep = y.repeat_interleave(samples, 0)
    aux_rep = None if aux is None else aux.repeat_interleave(samples, 0)
    event = (estimator.x_channels, *y.shape[2:])
    n = b * samples
    size = n if chunk_size is None else chunk_size
    out = []
    for lo in range(0, n, size):
        hi = min(n, lo + size)
        score = ConditionalScore(estimator, y_rep[lo:hi], None if aux_rep is None else aux_rep[lo:hi], generator=generator)
        out.append(
            sample(
                score, score.sde, (hi - lo, *event), steps=steps, generator=generator, progress=progress,
                callback=callback, denoise_last=denoise_last, dtype=y.dtype, device=y.device,
            )
        )
    return WeightedSamples.unweighted(torch.cat(out).reshape(b, samples, *event), steps)
