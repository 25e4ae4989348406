r"""Conditional sampling of p(x | y) for y = A x + sigma_y eps by SMC: the public entry point.

:func:`smc_sample` resolves the observation (a bool mask, the shorthand of SMCDiff's inpainting, or an
operator of :mod:`smcdiff.operators`), checks every argument once, builds the particle model named by
``proposal`` (:mod:`smcdiff.proposals`) and runs the one particle loop of :mod:`smcdiff.particles`.

- ``proposal="bootstrap"``: SMCDiff (Trippe et al. 2022, the seed slides): a forward-noised trajectory
  of the observed coefficients, the reverse kernel elsewhere, weights from the kernel's law of the
  observed coefficients. The weighted particles converge, as M grows, to the posterior of the
  discretised model given the sampled trajectory of y.
- ``proposal="mcgdiff"``: the MCGdiff-style locally optimal proposal (Cardoso et al. 2024) for any
  operator and noise level; converges to the posterior of the discretised model given y.
- ``proposal="twisted"``: TDS (Wu et al. 2023): every move shifted by the gradient of a Tweedie
  approximation of log p(y | x_t), the weights correcting the approximation; the same limit as
  ``"mcgdiff"``, at the price of a backward pass through the score per step.

All approach p(x | y) as the steps shrink with an exact score; ``log_evidence`` estimates the likelihood
of what was conditioned on (the sampled trajectory for ``"bootstrap"``, y otherwise).
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import Tensor

from .dynamics import (
    DEFAULT_STEPS,
    Callback,
    Kernel,
    check_callback,
    check_kernel,
    check_score,
    check_steps,
    resolve_grid,
)
from .operators import Mask, Operator, as_operator
from .particles import Population, Problem, StepInfo, WeightedSamples, check_populations, run_particles
from .proposals import PROPOSALS, Proposal
from .proposals.twisted import is_default_twist_variance
from .resampling import RESAMPLERS, Resampling
from .score import ScoreFn, check_chunk_size
from .sde import SDE

__all__ = ["smc_sample", "WeightedSamples", "StepInfo", "observation_trajectory", "build_problem", "check_sde"]


def _check_y(y: Tensor) -> None:
    if not isinstance(y, Tensor) or not y.is_floating_point():
        raise ValueError("y must be a floating-point tensor of shape (B, *observation_shape)")
    if y.ndim < 2:
        raise ValueError(f"y must have shape (B, *observation_shape), got {tuple(y.shape)}")


def _check_noise_std(noise_std: float) -> float:
    if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or not math.isfinite(noise_std) or noise_std < 0:
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
    return float(noise_std)


def check_sde(sde: SDE, operator: Operator, grid: Tensor) -> None:
    """Raise ``ValueError`` if the SDE's reverse kernel is not diagonal in the operator's singular basis.

    A mask (V = I) takes any per-coordinate schedule. Any other operator needs the schedule to be the
    same for every coordinate (checked on the grid), so that the kernel stays isotropic under V.
    """
    if not isinstance(sde, SDE):
        raise ValueError(f"sde must be an smcdiff SDE, got {type(sde).__name__}")
    sde.check_event_shape(tuple(operator.in_shape), "x (the operator's input)")
    if operator.coordinatewise or sde.param_shape == torch.Size([]):
        return
    c = sde.coefficients(grid, len(operator.in_shape))
    for name, v in (("alpha", c.alpha), ("sigma^2", c.sigma2), ("g^2", c.g2)):
        flat = v.reshape(v.shape[0], -1)
        if not torch.allclose(flat, flat[:, :1].expand_as(flat), rtol=1e-6, atol=1e-12):
            raise ValueError(
                f"sde: {sde!r} has a per-coordinate schedule ({name} differs between coordinates), which is not "
                f"constant on the singular basis of {operator!r}; only a Mask observation supports non-uniform SDEs"
            )


def observation_trajectory(
    sde: SDE, y: Tensor, steps: int, generator: torch.Generator | None = None, grid: Tensor | None = None
) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(k, y_{t_k})`` for k = N ... 0, a forward-noised trajectory of ``y: (B, *event)`` drawn backwards.

    y_{t_N} ~ N(alpha(t_N) y, sigma(t_N)^2); then y_{t_{k-1}} ~ bridge(y_{t_k}, y) (see :meth:`SDE.bridge`).
    Memory is O(B d) whatever the number of steps. ``grid`` (decreasing, ``(steps + 1,)``) replaces
    ``sde.time_grid(steps)``.
    """
    grid = (sde.time_grid(steps) if grid is None else grid).to(device=y.device, dtype=y.dtype)
    b = y.shape[0]
    mean, std = sde.marginal(y, grid[0].expand(b))
    y_k = mean + std * torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    yield steps, y_k
    for i in range(steps):
        mean, std = sde.bridge(y, y_k, grid[i + 1].expand(b), grid[i].expand(b))
        y_k = mean + std * torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        yield steps - i - 1, y_k


def build_problem(
    score: ScoreFn,
    sde: SDE,
    y: Tensor,
    observation: Tensor | Operator,
    *,
    noise_std: float = 0.0,
    particles: int,
    steps: int | None = None,
    grid: Tensor | None = None,
    kernel: Kernel = "euler",
    chunk_size: int | None = None,
) -> Problem:
    """Check every argument of a conditional sampler once and resolve them into a :class:`Problem`."""
    check_score(score)
    check_steps(steps)
    _check_y(y)
    if not isinstance(particles, int) or isinstance(particles, bool) or particles < 1:
        raise ValueError(f"particles must be a positive integer, got {particles!r}")
    check_chunk_size(chunk_size)
    check_kernel(kernel)
    noise_std = _check_noise_std(noise_std)
    if not isinstance(sde, SDE):
        raise ValueError(f"sde must be an smcdiff SDE, got {type(sde).__name__}")
    event_shape = getattr(score, "event_shape", None)
    if isinstance(observation, Tensor) or event_shape is None:
        event_shape = None  # a mask has y's shape; otherwise read the input shape off the operator
    op = as_operator(observation, y, None if event_shape is None else tuple(event_shape))
    observed = torch.broadcast_to(op.observed.to(y.device), (y.shape[0], *op.coef_shape))
    ybar = op.coefficients(y)
    if not torch.isfinite(torch.where(observed, ybar, torch.zeros_like(ybar))).all():
        raise ValueError("y must be finite where it is observed")
    grid = resolve_grid(sde, steps, grid, DEFAULT_STEPS)
    check_sde(sde, op, grid)
    return Problem(score, sde, op, y, noise_std, particles, grid.to(y.device), kernel, chunk_size)


def check_smc_args(ess_threshold: float, resampling: str, proposal: str, callback) -> None:
    if not (isinstance(ess_threshold, (int, float)) and 0.0 <= ess_threshold <= 1.0):
        raise ValueError(f"ess_threshold must lie in [0, 1], got {ess_threshold!r}")
    if resampling not in RESAMPLERS:
        raise ValueError(f"resampling must be one of {sorted(RESAMPLERS)}, got {resampling!r}")
    if proposal not in PROPOSALS:
        raise ValueError(f"proposal must be one of {sorted(PROPOSALS)}, got {proposal!r}")
    check_callback(callback)


def repeat_rows(y: Tensor, observation: Tensor | Operator, repeats: int) -> tuple[Tensor, Tensor | Operator]:
    """``y`` and its observation with every row repeated ``repeats`` times in place (row b becomes rows
    ``b * repeats .. b * repeats + repeats - 1``): per-row masks are repeated with their rows; an operator
    shared by all rows stays as it is."""
    _check_y(y)
    if isinstance(observation, Tensor):
        if observation.dtype != torch.bool:
            raise ValueError("mask must be a bool tensor broadcastable to y's shape (True = observed), or an Operator")
        observation = as_operator(observation, y)
    if isinstance(observation, Mask) and observation.per_row:
        observation = Mask(observation.mask.repeat_interleave(repeats, dim=0), per_row=True)
    return y.repeat_interleave(repeats, dim=0), observation


def check_population(population: Population | None) -> Population:
    """``population``, or the single-process default for None; anything else is a ``ValueError``."""
    if population is None:
        return Population()
    if not isinstance(population, Population):
        raise ValueError(f"population must be a smcdiff Population (see smcdiff.distributed) or None, got {type(population).__name__}")
    return population


@torch.no_grad()
def smc_sample(
    score: ScoreFn,
    sde: SDE,
    y: Tensor,
    observation: Tensor | Operator,
    *,
    noise_std: float = 0.0,
    particles: int,
    steps: int | None = None,
    grid: Tensor | None = None,
    proposal: Proposal | None = None,
    kernel: Kernel = "euler",
    resampling: Resampling = "systematic",
    ess_threshold: float = 0.5,
    corrector_steps: int = 0,
    corrector_size: float = 1.0,
    twist_variance: float | Tensor = 1.0,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    denoise_last: bool = False,
    population: Population | None = None,
    populations: int = 1,
) -> WeightedSamples | None:
    """Sample p(x | y) for y = A x + noise_std * eps with SMC on an unconditional score.

    Parameters
    ----------
    score : callable ``score(x, t)``, an unconditional score for ``sde``.
    sde : SDE (uniform; or non-uniform with a mask observation).
    y : (B, *observation_shape) observations, one row per problem. For a mask, y has the data's shape
        and values where the mask is False are ignored.
    observation : a bool mask broadcastable to ``y`` (True = observed; rows may differ) or an operator
        of :mod:`smcdiff.operators` (``Mask``, ``Downsample``, ``Blur``, ``Grayscale``, ``Dense``, ...).
    noise_std : sigma_y >= 0, the standard deviation of the observation noise.
    particles : M, particles per observation.
    steps : N, reverse steps on ``sde.time_grid(N)`` (default 500).
    grid : explicit decreasing times ``(N + 1,)`` in ``[eps, T]`` instead of ``sde.time_grid(steps)``.
    proposal : ``"bootstrap"`` (SMCDiff; noiseless only), ``"mcgdiff"`` (locally optimal, any noise) or
        ``"twisted"`` (TDS; needs a score that supports autograd). Default: ``"bootstrap"`` when
        ``noise_std == 0``, ``"mcgdiff"`` otherwise.
    kernel : ``"euler"`` (Euler-Maruyama) or ``"ancestral"`` (exact in time given Tweedie's denoiser);
        every proposal uses the kernel's own law, so the limit in M is the discretised model's posterior.
    resampling : scheme name, see :mod:`smcdiff.resampling`.
    ess_threshold : resample a row when its ESS < ``ess_threshold * M``; 1.0 resamples at every step
        (SMCDiff as published), 0.0 never.
    corrector_steps, corrector_size : ``proposal="bootstrap"`` or ``"twisted"``: K unadjusted Langevin steps
        of size ``corrector_size * sigma(t)^2`` on the unobserved coefficients with every move (resample-move
        rejuvenation; K more score evaluations per step; twisted: toward the twisted target, with the
        twist's gradient). They spread the copies that resampling makes,
        at the price of a small bias: the limit is no longer exactly the discretised model's posterior
        (see :mod:`smcdiff.proposals.bootstrap` and BENCHMARKS.md). Default 0: off.
    twist_variance : ``proposal="twisted"`` only: the data's variance c^2 per observed coefficient (a number,
        or a tensor broadcastable to the operator's coefficient shape, e.g. ``op.Vt(x_train).var(0)``), which
        sets the twist's variance c^2 sigma_t^2 / (alpha_t^2 c^2 + sigma_t^2) (the spread of x_0 given x_t
        for Gaussian data of that variance). 1.0 (the default) suits data scaled to unit range, like
        images in [-1, 1]; data on a larger scale need their own variance, or ``float("inf")`` for the
        scale-free sigma_t^2 / alpha_t^2. Too small a value over-trusts the twist at high noise and
        collapses the particles onto few modes (BENCHMARKS.md, the 25-mode mixture). Any value keeps the
        limit in M.
    generator : torch.Generator, optional; the only source of randomness.
    chunk_size : at most this many particles per score call (all B*M go in one call by default).
    progress : tqdm progress bar.
    callback : called with a :class:`StepInfo` for the initial state (step N) and after each step.
    denoise_last : Tweedie-denoise the particles at the last grid time.
    population : where the particles live; default all in this process. A
        :class:`smcdiff.distributed.ShardedPopulation` spreads each row's M particles over the processes
        of a ``torch.distributed`` group (M a multiple of their number), with exact global resampling.
    populations : P, independent SMC runs of M particles per observation, all in the same batched network
        calls (P times the cost of one run). They are pooled with equal weights (:meth:`WeightedSamples.pool`)
        and ``draw(k)`` takes draw j from run j mod P, so P draws share no ancestor. One run's particles
        often descend from a single ancestor (``lineages``); its draws then differ only in the last steps'
        noise. Independent runs give independent draws, each with the law of one draw from an M-particle
        run: biased at small M (the bias falls as M grows, not as P grows) but not collapsed. The pooled
        estimates and log-evidence keep the limit in M. Callbacks see the B * P runs as rows. Default 1.

    Returns
    -------
    WeightedSamples
        ``particles (B, P * M, *event_shape)``; with a noiseless observation A x equals y exactly on the
        observed part. ``lineages`` shows how many distinct ancestors the final particles have.
        A sharded population returns it where its ``gather`` says and None on the other processes.
    """
    if check_populations(populations) > 1:
        y, observation = repeat_rows(y, observation, populations)
        out = smc_sample(
            score, sde, y, observation, noise_std=noise_std, particles=particles, steps=steps, grid=grid,
            proposal=proposal, kernel=kernel, resampling=resampling, ess_threshold=ess_threshold,
            corrector_steps=corrector_steps, corrector_size=corrector_size, twist_variance=twist_variance,
            generator=generator, chunk_size=chunk_size, progress=progress, callback=callback,
            denoise_last=denoise_last, population=population,
        )
        return None if out is None else out.pool(populations)
    noise_std = _check_noise_std(noise_std)
    proposal = ("bootstrap" if noise_std == 0 else "mcgdiff") if proposal is None else proposal
    check_smc_args(ess_threshold, resampling, proposal, callback)
    population = check_population(population)
    problem = build_problem(
        score, sde, y, observation, noise_std=noise_std, particles=population.local_particles(particles), steps=steps,
        grid=grid, kernel=kernel, chunk_size=chunk_size,
    )
    if proposal == "mcgdiff" and corrector_steps != 0:
        raise ValueError(f"corrector_steps applies to proposal='bootstrap' or 'twisted', got proposal={proposal!r}")
    if proposal != "twisted" and not is_default_twist_variance(twist_variance):
        raise ValueError(f"twist_variance applies to proposal='twisted' only, got proposal={proposal!r}")
    if proposal == "bootstrap":
        model = PROPOSALS[proposal](problem, corrector_steps=corrector_steps, corrector_size=corrector_size)
    elif proposal == "twisted":
        model = PROPOSALS[proposal](
            problem, twist_variance=twist_variance, corrector_steps=corrector_steps, corrector_size=corrector_size
        )
    else:
        model = PROPOSALS[proposal](problem)
    return run_particles(
        model, resampling=resampling, ess_threshold=ess_threshold, generator=generator,
        denoise_last=denoise_last, progress=progress, desc=f"smc ({proposal})", callback=callback, population=population,
    )
