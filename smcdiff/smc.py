r"""Sequential Monte Carlo on the forward-noised trajectory of the observation (SMCDiff).

Seed: "Conditional Sampling with Score-Based Generative Models" (the SMC algorithm), Trippe et al.
2022. Coordinates split into observed y (``mask`` True) and unobserved x. Under the discretised
reverse model, given the state at t_k the next observed and unobserved coordinates are independent
(the Euler-Maruyama kernel has diagonal noise), so with a forward trajectory y_{t_0..t_N} of the
observation the particle system is

    initialise:  x_N^i ~ prior, observed coordinates set to y_{t_N}, i = 1..M
    for k = N .. 1:
        (mu^i, v)  = reverse kernel from (x_k^i, y_{t_k}) at t_k, step h_k
        log w^i   += sum_obs log N(y_{t_{k-1}}; mu^i_obs, v_obs)                 (potential)
        resample when ESS < ess_threshold * M
        x_{k-1}^i  = mu^i_unobs + sqrt(v_unobs) z,  observed set to y_{t_{k-1}}   (proposal)

and returns sum_i w^i delta_{x_0^i}, with observed coordinates equal to y.

The observation trajectory is drawn *backwards* through the exact Gaussian bridge (:meth:`SDE.bridge`):
y_{t_N} ~ N(alpha_N y, sigma_N^2), then y_{t_{k-1}} | y_{t_k}, y ~ N(bridge mean, bridge var). This has
the same joint law as running the forward SDE from y and keeps only the current y_{t_k} in memory.

The log-evidence estimate is log p(y_{t_N}) + sum_k log (sum_i w_{k}^i G_k^i): an unbiased (in Z)
estimate of the likelihood of the observed trajectory under the discretised model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor

from .resampling import RESAMPLERS, Resampling, ess, normalize_log_weights, resample
from .sampling import _check_common, checked_score, time_steps
from .score import ScoreFn, check_chunk_size
from .sde import SDE, _normal_log_prob

__all__ = ["smc_sample", "WeightedSamples", "StepInfo", "observation_trajectory"]


@dataclass(frozen=True)
class WeightedSamples:
    """Weighted particles sum_i w_i delta_{x_i} per observation.

    Attributes
    ----------
    particles : (B, M, *event_shape)
    log_weights : (B, M) float64, normalised (``logsumexp`` over M is 0).
    ess : (steps, B) effective sample size after reweighting at each step (step N first).
    resampled : (steps, B) bool, whether each row resampled at each step.
    log_evidence : (B,) float64 estimate of log p(y_{t_0..t_N}); NaN for unweighted baselines.
    """

    particles: Tensor
    log_weights: Tensor
    ess: Tensor
    resampled: Tensor
    log_evidence: Tensor

    @property
    def weights(self) -> Tensor:
        """Normalised weights ``(B, M)``, float64."""
        return self.log_weights.exp()

    def mean(self) -> Tensor:
        """Weighted mean ``(B, *event_shape)``, in float64."""
        w = self.weights.reshape(*self.log_weights.shape, *([1] * (self.particles.ndim - 2)))
        return (w * self.particles.to(torch.float64)).sum(1)

    def cov(self) -> Tensor:
        """Weighted covariance ``(B, d, d)`` of flat particles ``(B, M, d)``, in float64."""
        if self.particles.ndim != 3:
            raise ValueError(f"cov() needs flat particles (B, M, d), got {tuple(self.particles.shape)}")
        w = self.weights
        centred = self.particles.to(torch.float64) - self.mean()[:, None, :]
        return torch.einsum("bm,bmi,bmj->bij", w, centred, centred)

    def resample(self, k: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``k`` equally weighted particles per row, i.i.d. from sum_i w_i delta_{x_i}: ``(B, k, *event_shape)``."""
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        idx = torch.multinomial(self.weights, k, replacement=True, generator=generator)
        return self.particles[torch.arange(idx.shape[0], device=idx.device)[:, None], idx]


@dataclass(frozen=True)
class StepInfo:
    """What the sampler reports to ``callback`` after each step.

    ``particles: (B, M, *event_shape)`` at ``t``; ``log_weights, ess, resampled`` as in
    :class:`WeightedSamples` for this step; ``ancestors: (B, M)`` (identity where no resampling).
    """

    step: int
    t: float
    particles: Tensor
    log_weights: Tensor
    ess: Tensor
    resampled: Tensor
    ancestors: Tensor


def _check_observation(y: Tensor, mask: Tensor, sde: SDE) -> Tensor:
    if not isinstance(y, Tensor) or not y.is_floating_point():
        raise ValueError("y must be a floating-point tensor of shape (B, *event_shape)")
    if y.ndim < 2:
        raise ValueError(f"y must have shape (B, *event_shape), got {tuple(y.shape)}")
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise ValueError("mask must be a bool tensor broadcastable to y's shape (True = observed)")
    try:
        mask = torch.broadcast_to(mask.to(y.device), y.shape)
    except RuntimeError as err:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to y's shape {tuple(y.shape)}") from err
    if not torch.isfinite(y[mask]).all():
        raise ValueError("y must be finite where mask is True")
    sde.check_event_shape(tuple(y.shape[1:]), "y")
    return mask


def observation_trajectory(
    sde: SDE, y: Tensor, steps: int, generator: torch.Generator | None = None
) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(k, y_{t_k})`` for k = N ... 0, a forward-noised trajectory of ``y: (B, *event)`` drawn backwards.

    y_{t_N} ~ N(alpha(t_N) y, sigma(t_N)^2); then y_{t_{k-1}} ~ bridge(y_{t_k}, y) (see :meth:`SDE.bridge`).
    Memory is O(B d) whatever the number of steps.
    """
    grid = sde.time_grid(steps, device=y.device).to(y.dtype)
    b = y.shape[0]
    mean, std = sde.marginal(y, grid[0].expand(b))
    y_k = mean + std * torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    yield steps, y_k
    for i in range(steps):
        mean, std = sde.bridge(y, y_k, grid[i + 1].expand(b), grid[i].expand(b))
        y_k = mean + std * torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        yield steps - i - 1, y_k


def _check_smc_args(particles: int, ess_threshold: float, resampling: str) -> None:
    if not isinstance(particles, int) or isinstance(particles, bool) or particles < 1:
        raise ValueError(f"particles must be a positive integer, got {particles!r}")
    if not (isinstance(ess_threshold, (int, float)) and 0.0 <= ess_threshold <= 1.0):
        raise ValueError(f"ess_threshold must lie in [0, 1], got {ess_threshold!r}")
    if resampling not in RESAMPLERS:
        raise ValueError(f"resampling must be one of {sorted(RESAMPLERS)}, got {resampling!r}")


@torch.no_grad()
def conditional_sample(
    score: ScoreFn,
    sde: SDE,
    y: Tensor,
    mask: Tensor,
    *,
    particles: int,
    steps: int,
    reweight: bool,
    resampling: Resampling = "systematic",
    ess_threshold: float = 0.5,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    denoise_last: bool = False,
    progress: bool = False,
    callback: Callable[[StepInfo], None] | None = None,
) -> WeightedSamples:
    """The particle loop shared by :func:`smc_sample` (``reweight=True``) and the replacement baseline.

    Without reweighting every particle keeps weight 1/M and nothing is resampled: the observed
    coordinates are simply overwritten by y_{t_{k-1}} after each reverse step.
    """
    _check_common(score, steps, progress, None)
    _check_smc_args(particles, ess_threshold, resampling)
    check_chunk_size(chunk_size)
    if callback is not None and not callable(callback):
        raise ValueError("callback must be callable as callback(info: StepInfo) or None")
    mask = _check_observation(y, mask, sde)
    b, m, event = y.shape[0], particles, tuple(y.shape[1:])
    n, event_dims = b * m, tuple(range(2, 2 + len(event)))
    y0 = torch.where(mask, y, torch.zeros_like(y))
    obs = mask[:, None]  # (B, 1, *event)
    rows = torch.arange(b, device=y.device)[:, None]
    identity = torch.arange(m, device=y.device).expand(b, m)

    trajectory = observation_trajectory(sde, y0, steps, generator)
    _, y_k = next(trajectory)
    x = sde.prior_sample((n, *event), generator=generator, dtype=y.dtype, device=y.device).view(b, m, *event)
    x = torch.where(obs, y_k[:, None], x)
    log_w = torch.full((b, m), -math.log(m), dtype=torch.float64, device=y.device)
    log_z = (sde.prior_log_prob(y_k, len(event)) * mask).flatten(1).sum(1).double()
    ess_hist = torch.empty(steps, b, dtype=torch.float64, device=y.device)
    resampled_hist = torch.zeros(steps, b, dtype=torch.bool, device=y.device)
    if callback is not None:
        full = torch.full((b,), float(m), dtype=torch.float64, device=y.device)
        callback(StepInfo(steps, sde.T, x, log_w, full, torch.zeros(b, dtype=torch.bool, device=y.device), identity))

    for (k, t, s, h), (_, y_next) in zip(time_steps(sde, steps, n, y, progress, desc="smc"), trajectory):
        x_flat = x.reshape(n, *event)
        mean, var = sde.reverse_kernel(x_flat, t, h, checked_score(score, x_flat, t, chunk_size, k))
        mean = mean.view(b, m, *event)
        var = var.expand(n, *event).reshape(b, m, *event)
        ancestors = identity
        if reweight:
            moving = var > 0  # coordinates frozen by a non-uniform SDE carry no information
            log_g = _normal_log_prob(y_next[:, None], mean, torch.where(moving, var, torch.ones_like(var)))
            log_g = torch.where(obs & moving, log_g, torch.zeros_like(log_g)).sum(event_dims).double()
            increment = torch.logsumexp(log_w + log_g, dim=-1)
            if not torch.isfinite(increment).all():
                raise ValueError(f"all particle weights vanished or became non-finite at step {k} (t = {t[0].item():.6g})")
            log_w = log_w + log_g - increment[:, None]
            log_z = log_z + increment
            ess_k = ess(log_w)
            do = (ess_k < ess_threshold * m) | torch.tensor(ess_threshold >= 1.0, device=y.device)
            ess_hist[steps - k] = ess_k
            resampled_hist[steps - k] = do
            if ess_threshold > 0:
                ancestors = torch.where(do[:, None], resample(log_w, resampling, generator), identity)
                mean = mean[rows, ancestors]
                log_w = torch.where(do[:, None], torch.full_like(log_w, -math.log(m)), log_w)
        else:
            ess_hist[steps - k] = m
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        x = torch.where(obs, y_next[:, None], mean + var.sqrt() * noise)
        if callback is not None:
            callback(StepInfo(k - 1, s[0].item(), x, log_w, ess_hist[steps - k], resampled_hist[steps - k], ancestors))

    if denoise_last:
        x_flat = x.reshape(n, *event)
        t0 = torch.full((n,), sde.eps, dtype=y.dtype, device=y.device)
        x = sde.tweedie(x_flat, t0, checked_score(score, x_flat, t0, chunk_size, 0)).view(b, m, *event)
    x = torch.where(obs, y0[:, None], x)
    if not reweight:
        log_z = torch.full((b,), float("nan"), dtype=torch.float64, device=y.device)
    return WeightedSamples(x, normalize_log_weights(log_w), ess_hist, resampled_hist, log_z)


def smc_sample(
    score: ScoreFn,
    sde: SDE,
    y: Tensor,
    mask: Tensor,
    *,
    particles: int,
    steps: int = 500,
    resampling: Resampling = "systematic",
    ess_threshold: float = 0.5,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    denoise_last: bool = False,
    progress: bool = False,
    callback: Callable[[StepInfo], None] | None = None,
) -> WeightedSamples:
    """Sample p(x | y) with SMC on the forward-noised observation trajectory.

    Parameters
    ----------
    score : callable ``score(x, t)``, an unconditional score for ``sde``.
    sde : SDE (uniform or non-uniform).
    y : (B, *event_shape) observations; values where ``mask`` is False are ignored.
    mask : bool, broadcastable to ``y``'s shape; True = observed. Rows may differ.
    particles : M, particles per observation.
    steps : N, reverse Euler-Maruyama steps on ``sde.time_grid(steps)``.
    resampling : scheme name, see :mod:`smcdiff.resampling`.
    ess_threshold : resample a row when its ESS < ``ess_threshold * M``; 1.0 resamples at every step
        (SMCDiff as published), 0.0 never.
    generator : torch.Generator, optional; the only source of randomness.
    chunk_size : at most this many particles per score call (all B*M go in one call by default).
    denoise_last : Tweedie-denoise the unobserved coordinates at ``t = eps``.
    progress : tqdm progress bar.
    callback : called with a :class:`StepInfo` for the initial state (step N) and after each step.

    Returns
    -------
    WeightedSamples
        ``particles (B, M, *event_shape)`` with observed coordinates equal to ``y``.
    """
    return conditional_sample(
        score, sde, y, mask, particles=particles, steps=steps, reweight=True, resampling=resampling,
        ess_threshold=ess_threshold, generator=generator, chunk_size=chunk_size, denoise_last=denoise_last,
        progress=progress, callback=callback,
    )
