r"""Plug-and-play restoration: y = A x + sigma_y eps solved with an unconditionally trained diffusion model.

:func:`restore` is the general entry point (super-resolution, deblurring, noisy inpainting, colourisation,
random projections): a model, the degraded observation ``y`` and the operator ``A`` of
:mod:`smcdiff.operators`; :func:`smcdiff.inpaint` is its special case for a bool mask. Both return a
:class:`RestoreResult`. No mathematics here: the sampling is :func:`smcdiff.smc_sample` (weighted,
converging as the particles grow to the discretised model's posterior) or the replacement baseline.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from .baselines import replacement_sample
from .dynamics import Kernel, check_generator, check_noise_std, check_steps
from .feynman_kac import WeightedSamples
from .likelihoods import Likelihood
from .memory import cpu_call_rows, plan_chunk_size, planned_row_bytes
from .models import load_model
from .operators import Mask, Operator, as_operator
from .options import RunOptions, check_options
from .proposals import Proposal, ProposalName, resolve_proposal
from .score import ScoreModel
from .smc import check_proposal_observation, linear_observation, smc_sample

__all__ = ["restore", "RestoreResult", "DEFAULT_STEPS", "DEFAULT_KERNEL", "DEFAULT_PARTICLES", "DEFAULT_POPULATIONS"]

DEFAULT_STEPS = 250
DEFAULT_KERNEL: Kernel = "euler"
DEFAULT_PARTICLES = 16
DEFAULT_POPULATIONS = 4
"""Independent SMC runs per observation when ``options.populations`` is None (BENCHMARKS.md, "Calibration
(simulation-based)": the draws of one run are not calibrated; independent runs are)."""
DATA_RANGE = (-1.0, 1.0)
MIN_STEPS = {"euler": 100, "ancestral": 100}
"""Below these step counts :func:`restore` warns (BENCHMARKS.md, "Kernels")."""


@dataclass(frozen=True)
class RestoreResult:
    """Weighted restorations of each observation.

    Attributes
    ----------
    samples : (B, M, *event_shape) particles (for a noiseless observation, A x equals y exactly); (B, P * M, ...)
        with ``populations=P``, run by run.
    log_weights : (B, M) or (B, P * M) float64, normalised (uniform for ``method="replacement"``).
    y : (B, *observation_shape) the observation, as given.
    operator : the :class:`smcdiff.operators.Operator` (a :class:`~smcdiff.operators.Mask` for inpainting), or the
        :class:`~smcdiff.likelihoods.Likelihood` conditioned on.
    noise_std : sigma_y.
    weighted : the underlying :class:`WeightedSamples` (ESS per step, lineages, log-evidence, ...).
    method : "smc" or "replacement"; ``proposal``: the SMC proposal used (None for replacement).
    model_evaluations : score-network evaluations spent.
    seconds : wall-clock time of the sampler.
    settings : the run's other settings (steps, kernel, resampling, ess_threshold, seed if known).
    """

    samples: Tensor
    log_weights: Tensor
    y: Tensor
    operator: Operator | Likelihood
    noise_std: float
    weighted: WeightedSamples
    method: str
    proposal: str | None
    model_evaluations: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def image(self) -> Tensor:
        """The observation ``y`` (for inpainting: the input image)."""
        return self.y

    @property
    def mask(self) -> Tensor:
        """Bool ``(B, *event_shape)`` of observed pixels; only for inpainting (a :class:`Mask` operator)."""
        if not isinstance(self.operator, Mask):
            raise ValueError(f"mask is defined for inpainting only; this result's operator is {self.operator!r}")
        return torch.broadcast_to(self.operator.mask, self.samples.shape[:1] + self.samples.shape[2:])

    def mean(self) -> Tensor:
        """Weighted mean restoration ``(B, *event_shape)`` (the posterior-mean estimate)."""
        return self.weighted.mean().to(self.samples.dtype)

    def draw(self, k: int, generator: torch.Generator | None = None) -> Tensor:
        """``k`` equally weighted restorations per observation, ``(B, k, *event_shape)``, drawn from the weights
        (i.i.d.; with ``populations=P``, draw j from run j mod P)."""
        return self.weighted.draw(k, generator)


def check_range(name: str, value: Tensor, low: float, high: float, slack: float = 1e-3) -> None:
    """Raise ``ValueError`` if ``value`` leaves ``[low - slack, high + slack]`` (e.g. an image in [0, 255])."""
    lo, hi = value.min().item(), value.max().item()
    if lo < low - slack or hi > high + slack:
        raise ValueError(
            f"{name} has values in [{lo:.3g}, {hi:.3g}] but the model expects data in [{low:g}, {high:g}] "
            f"(images are scaled to [-1, 1]: x / 127.5 - 1 for 8-bit pixels)"
        )


def _resolve_model(model: ScoreModel | str | Path, device: torch.device | str | None) -> ScoreModel:
    score = load_model(model, device=device)
    if not hasattr(score, "sde"):
        raise ValueError("model must carry its forward SDE as .sde (use an adapter from smcdiff.adapters)")
    return score


def check_device(device: object) -> torch.device | None:
    """``device`` as a ``torch.device`` that works here (or None), else a ``ValueError`` naming it."""
    if device is None:
        return None
    try:
        where = torch.device(device)
        torch.empty(1, device=where)
    except (RuntimeError, AssertionError, TypeError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"device={device!r} is not available here ({first})") from None
    return where


def _observation(score, y: Tensor, operator: Operator | Tensor, device) -> tuple[Tensor, Operator]:
    """``y`` with a batch dimension, on the model's device, and the operator bound to the model's shape."""
    event_shape = getattr(score, "event_shape", None)
    if isinstance(operator, Operator) and event_shape is not None:
        out_ndim = len(operator.bind(tuple(event_shape)).out_shape)
    else:
        out_ndim = len(event_shape) if event_shape is not None else y.ndim - 1
    if y.ndim == out_ndim:
        y = y[None]
    if y.ndim != out_ndim + 1:
        raise ValueError(f"y must have shape (B, *observation_shape) with {out_ndim} observation dimensions, got {tuple(y.shape)}")
    param = next(iter(score.parameters()), None) if isinstance(score, torch.nn.Module) else None
    target = torch.device(device) if device is not None else (param.device if param is not None else y.device)
    y = y.to(target)
    if isinstance(operator, Tensor):
        operator = operator.to(target)
    op = as_operator(operator, y, None if (isinstance(operator, Tensor) or event_shape is None) else tuple(event_shape))
    if event_shape is not None and tuple(op.in_shape) != tuple(event_shape):
        raise ValueError(f"y has shape {tuple(y.shape[1:])} per item but the model expects {tuple(event_shape)}")
    return y, op


def restore(
    model: ScoreModel | str | Path,
    y: Tensor,
    operator: Operator | Tensor,
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
    check_data_range: bool = True,
    options: RunOptions | None = None,
) -> RestoreResult | None:
    """Sample x given y = A x + noise_std * eps with an unconditional diffusion model.

    Parameters
    ----------
    model : score module with ``.sde`` (and ``.event_shape``), the name of a shipped model (``"digits"``: 8x8
        grey digits in [-1, 1]), a diffusers model directory or a hub id (:func:`smcdiff.load_model`).
    y : (B, *observation_shape) or one observation without the batch dimension, in the model's data
        range ([-1, 1] for diffusers models) plus noise.
    operator : :mod:`smcdiff.operators` operator (``Downsample(4)``, ``Blur.gaussian(1.0)``, ...), a
        bool mask (inpainting; y then has the image's shape), or a :class:`~smcdiff.likelihoods.Likelihood`
        (a classifier, a non-linear measurement; y is then what it conditions on, the proposal the twisted one,
        and ``noise_std`` part of the likelihood).
    noise_std : sigma_y >= 0, in the data's units.
    particles : M, particles per independent SMC run (default 16) or independent samples (replacement) per
        observation.
    steps : reverse steps (default 250), or ``grid`` for explicit times. A model that offers
        ``time_grid(steps)`` (a :class:`~smcdiff.adapters.DiffusersScore`: its training timesteps) is
        sampled on that grid, so the network is never queried between its training steps.
    method : ``"smc"`` (weighted; converges as M grows to the posterior of the discretised model) or
        ``"replacement"`` (RePaint-style baseline, noiseless only; biased even with an exact score).
    proposal : ``"bootstrap"``, ``"mcgdiff"``, ``"twisted"`` or a proposal object with its options
        (:mod:`smcdiff.proposals`); default: bootstrap when noiseless, else twisted (a backward pass per step).
    kernel : ``"euler"`` or ``"ancestral"`` (see :func:`smcdiff.smc_sample`).
    generator : torch.Generator, the only source of randomness.
    denoise_last : Tweedie-denoise the particles at the last grid time.
    device : run the model and the particles here (default: the model's device).
    check_data_range : refuse a ``y`` outside the data range (plus 6 noise_std) when the operator maps
        the data range into itself (masks, averaging, blurs with a non-negative kernel); turn off for
        models whose data are not images in [-1, 1].
    options : :class:`smcdiff.RunOptions` (resampling, ESS threshold, chunking, progress, callback, placement,
        independent runs, threads). SMC runs P = ``populations`` independent runs of M particles, by default
        :data:`DEFAULT_POPULATIONS` = 4 (one run's draws share few ancestors and fail simulation-based
        calibration; BENCHMARKS.md, "Calibration (simulation-based)"): the result holds P * M particles, each
        run weighted 1 / P, and ``draw(k)`` takes draw j from run j mod P. ``populations=1`` is one run. When
        ``chunk_size`` is None and all particles would not fit in memory, they go through the network in
        chunks that fit (a warning says so); a run whose particles alone cannot fit is refused. On the CPU
        calls are also capped at about a GiB of activations (:func:`smcdiff.memory.cpu_call_rows`), past
        which they are slower per row.
    """
    options = check_options(options)
    noise_std = check_noise_std(noise_std)
    if method not in ("smc", "replacement"):
        raise ValueError(f"method must be 'smc' or 'replacement', got {method!r}")
    operator, noise_std = linear_observation(operator, noise_std)
    if isinstance(operator, Likelihood):
        return _restore_likelihood(model, y, operator, particles=particles, steps=steps, grid=grid, method=method,
                                   proposal=proposal, kernel=kernel, generator=generator, denoise_last=denoise_last,
                                   device=device, options=options)
    if method == "replacement":
        if noise_std != 0:
            raise ValueError("method='replacement' overwrites the observed part and needs noise_std=0")
        if proposal is not None:
            raise ValueError("proposal applies to method='smc' only")
    else:
        proposal = resolve_proposal(proposal, noise_std)
    check_generator(generator)
    device = check_device(device)
    if not isinstance(y, Tensor) or not y.is_floating_point():
        raise ValueError("y must be a floating-point tensor (B, *observation_shape) in the model's data range")
    score = _resolve_model(model, device)
    y, op = _observation(score, y, operator, device)
    if check_data_range and op.preserves_range:
        seen = y[torch.broadcast_to(op.observed.to(y.device), y.shape)] if isinstance(op, Mask) else y
        check_range("y", seen, *DATA_RANGE, slack=1e-3 + 6 * noise_std)
    _warn_steps(steps, grid, kernel)
    steps, grid = _model_grid(score, steps, grid)
    options = options.replace(populations=options.runs(DEFAULT_POPULATIONS if method == "smc" else 1))
    options = _fit_memory(score, y, particles, proposal, options)
    t0 = time.perf_counter()
    common = dict(particles=particles, steps=steps, kernel=kernel, grid=grid, generator=generator,
                  denoise_last=denoise_last, options=options)
    if method == "smc":
        out = smc_sample(score, score.sde, y, op, noise_std=noise_std, proposal=proposal, **common)
    else:
        out = replacement_sample(score, score.sde, y, op, **common)
    seconds = time.perf_counter() - t0
    return _result(out, y, op, noise_std, method, proposal, particles, options, kernel, denoise_last, seconds)


def _warn_steps(steps: int | None, grid: Tensor | None, kernel: str, stacklevel: int = 3) -> None:
    n_steps = grid.numel() - 1 if grid is not None else (DEFAULT_STEPS if steps is None else steps)
    if isinstance(n_steps, int) and not isinstance(n_steps, bool) and n_steps < MIN_STEPS.get(kernel, 0):
        warnings.warn(
            f"steps={n_steps} is far below what the {kernel!r} kernel needs (about {MIN_STEPS[kernel]} or more); "
            "expect samples of poor quality", stacklevel=stacklevel,
        )


def _model_grid(score, steps: int | None, grid: Tensor | None) -> tuple[int | None, Tensor | None]:
    """``steps`` and ``grid`` with the defaults applied: a model that offers ``time_grid`` is sampled on it."""
    steps = DEFAULT_STEPS if (steps is None and grid is None) else steps
    if grid is None and hasattr(score, "time_grid"):
        check_steps(steps)
        grid, steps = score.time_grid(steps), None  # on the model's training timesteps (DiffusersScore)
    return steps, grid


def _result(out, y, op, noise_std, method, proposal, particles, options, kernel, denoise_last, seconds) -> RestoreResult | None:
    """The :class:`RestoreResult` of a finished run, with its cost and settings (None where a sharded run did not gather)."""
    if out is None:  # a sharded run gathers the particles on another process
        return None
    n_steps = out.ess.shape[0]
    per_step = proposal.evaluations_per_step if method == "smc" else 1
    evaluations = y.shape[0] * options.populations * particles * (n_steps * per_step + int(denoise_last))
    settings = dict(steps=n_steps, kernel=kernel, resampling=options.resampling, ess_threshold=options.ess_threshold,
                    denoise_last=denoise_last, populations=options.populations,
                    **({"proposal_options": proposal.options()} if method == "smc" else {}))
    return RestoreResult(out.particles, out.log_weights, y, op, noise_std, out, method,
                         proposal.name if method == "smc" else None, evaluations, seconds, settings)


def _restore_likelihood(model, y, likelihood: Likelihood, *, particles, steps, grid, method, proposal, kernel, generator,
                        denoise_last, device, options) -> RestoreResult | None:
    """:func:`restore` for a non-linear :class:`~smcdiff.likelihoods.Likelihood` (the twisted proposal)."""
    if method != "smc":
        raise ValueError("method='replacement' overwrites observed pixels and needs an operator; a likelihood needs method='smc'")
    proposal = check_proposal_observation(proposal, likelihood, 0.0)
    check_generator(generator)
    device = check_device(device)
    score = _resolve_model(model, device)
    if not isinstance(y, Tensor):
        raise ValueError(f"y must be a tensor of the likelihood's observations, one row per problem, got {type(y).__name__}")
    param = next(iter(score.parameters()), None) if isinstance(score, torch.nn.Module) else None
    y = y.to(device if device is not None else (param.device if param is not None else y.device))
    likelihood.check_y(y)
    _warn_steps(steps, grid, kernel, stacklevel=4)
    steps, grid = _model_grid(score, steps, grid)
    options = options.replace(populations=options.runs(DEFAULT_POPULATIONS))
    particle_like = y if y.is_floating_point() else torch.zeros(y.shape[:1], device=y.device)
    options = _fit_memory(score, particle_like, particles, proposal, options)
    t0 = time.perf_counter()
    out = smc_sample(score, score.sde, y, likelihood, proposal=proposal, particles=particles, steps=steps, kernel=kernel,
                     grid=grid, generator=generator, denoise_last=denoise_last, options=options)
    seconds = time.perf_counter() - t0
    return _result(out, y, likelihood, 0.0, method, proposal, particles, options, kernel, denoise_last, seconds)


def _fit_memory(score, y: Tensor, particles: int, proposal: Proposal | None, options: RunOptions) -> RunOptions:
    """``options`` with a ``chunk_size`` when none was given and all B * P * M particles would not go
    through the network in one call: chunks that fit the machine's memory (:mod:`smcdiff.memory`; a
    warning says so), and on the CPU at most :func:`smcdiff.memory.cpu_call_rows` rows, past which calls are
    slower per row."""
    if options.chunk_size is not None or not isinstance(particles, int) or isinstance(particles, bool) or particles < 1:
        return options
    n = y.shape[0] * options.populations * options.where.local_particles(particles)
    backward = proposal is not None and proposal.backward_passes_per_step > 0
    event = tuple(score.event_shape)
    row = planned_row_bytes(score, event, y.dtype, y.device, backward)  # one probe of the network for both
    fits = plan_chunk_size(score, event, n, y.dtype, y.device, backward=backward, batch=y.shape[0], row_bytes=row)
    fastest = cpu_call_rows(score, event, y.dtype, y.device, backward=backward, row_bytes=row)
    chunk = min(v for v in (fits, fastest, n) if v is not None)
    if fits is not None and fits == chunk:  # memory binds, not the CPU's call size
        warnings.warn(f"{n} particles do not fit in memory in one network call; sampling in chunks of {chunk}", stacklevel=3)
    return options if chunk == n else options.replace(chunk_size=chunk)
