r"""The reverse-time loop every sampler shares: time grids, the step iterator, reverse kernels, checked
score calls and the per-step report handed to callbacks.

A sampler runs on a decreasing grid ``t_N = T' > ... > t_0`` (:func:`resolve_grid`), iterates it with
:func:`time_steps`, evaluates the score with :func:`checked_score` and moves with :func:`reverse_step`:

    euler:      x_{k-1} ~ N(x_k + h (-f x_k + g^2 s(x_k, t_k)), g^2 h)                 (eq. 3)
    ancestral:  x_{k-1} ~ q(x_{t_{k-1}} | x_{t_k}, x_0 = x0_hat(x_k))   (exact in time given Tweedie)

:func:`smcdiff.sample`, the particle loop of :mod:`smcdiff.feynman_kac` and the multiscale sampler of
:mod:`smcdiff.msdiff` are written on these pieces. Callbacks of every sampler receive a :class:`StepInfo`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .score import ScoreFn, evaluate_score
from .sde import SDE, Coefficients
from .sde.base import bridge_law

__all__ = [
    "DEFAULT_STEPS",
    "KERNELS",
    "Kernel",
    "StepInfo",
    "Callback",
    "resolve_grid",
    "time_steps",
    "reverse_step",
    "checked_score",
    "check_score",
    "check_kernel",
    "check_steps",
    "check_callback",
    "observation_trajectory",
    "check_generator",
    "check_noise_std",
]

Kernel = Literal["euler", "ancestral"]
KERNELS = ("euler", "ancestral")
DEFAULT_STEPS = 500


@dataclass(frozen=True)
class StepInfo:
    """What a sampler reports to ``callback`` for its initial state (step N) and after each step.

    ``step`` is k - 1 after the step from t_k (N for the initial state) and ``t`` its time. ``particles``
    is the state: ``(B, M, *event_shape)`` for the particle samplers, ``(n, *event_shape)`` for
    :func:`smcdiff.sample`. The particle samplers also fill ``log_weights (B, M)``, ``ess (B,)``,
    ``resampled (B,)`` and ``ancestors (B, M)`` (identity where nothing was resampled); samplers
    without weights leave them None.
    """

    step: int
    t: float
    particles: Tensor
    log_weights: Tensor | None = None
    ess: Tensor | None = None
    resampled: Tensor | None = None
    ancestors: Tensor | None = None


Callback = Callable[[StepInfo], None]


def resolve_grid(sde: SDE, steps: int | None, grid: Tensor | None, default_steps: int = DEFAULT_STEPS) -> Tensor:
    """The decreasing time grid ``t_N = T' > ... > t_0`` (float64, shape ``(N + 1,)``) a sampler runs on.

    ``grid`` (any decreasing times in ``[eps, T]``, e.g. a scheduler's training timesteps, see
    :meth:`smcdiff.adapters.DiffusersScore.time_grid`) wins; otherwise ``sde.time_grid(steps)``. Giving
    both with ``steps != len(grid) - 1`` is an error.
    """
    if grid is None:
        return sde.time_grid(default_steps if steps is None else steps, device="cpu")  # host-side; moved by the caller
    if not isinstance(grid, Tensor) or grid.ndim != 1 or grid.numel() < 2 or not grid.is_floating_point():
        raise ValueError("grid must be a 1-d floating-point tensor of at least 2 decreasing times")
    grid = grid.detach().to(torch.float64)
    if steps is not None and steps != grid.numel() - 1:
        raise ValueError(f"steps={steps} disagrees with a grid of {grid.numel()} times ({grid.numel() - 1} steps)")
    sde.check_times(grid, "grid")
    if not (grid[1:] < grid[:-1]).all():
        raise ValueError("grid must be strictly decreasing (from near T down to near eps)")
    return grid


def time_steps(
    sde: SDE, grid: Tensor | int, n: int, like: Tensor, progress: bool = False, desc: str = "sampling"
) -> Iterator[tuple[int, Tensor, Tensor, Tensor]]:
    """Iterate the reverse-time grid: yields ``(k, t_k, t_{k-1}, h)`` for k = N ... 1, each time ``(n,)``.

    ``grid`` is a decreasing float64 grid from :func:`resolve_grid` (or a step count, for
    ``sde.time_grid(steps)``); it is cast once to ``like``'s dtype and device. Steps are ``t_k - t_{k-1}``
    computed in float64, then cast.
    """
    if isinstance(grid, int):
        grid = sde.time_grid(grid)
    grid = grid.to(like.device)
    grid_x = grid.to(like.dtype)
    steps = grid.numel() - 1
    for i in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        k = steps - i
        t, s = grid_x[i].expand(n), grid_x[i + 1].expand(n)
        yield k, t, s, (grid[i] - grid[i + 1]).to(like.dtype).expand(n)


def reverse_step(sde: SDE, kernel: Kernel, x: Tensor, t: Tensor, s: Tensor, h: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``(n, *event)`` and variance (broadcastable to it) of one reverse step from ``t`` to ``s = t - h``.

    ``kernel="euler"``: Euler-Maruyama on the reverse SDE (:meth:`SDE.reverse_kernel`, eq. 3);
    ``kernel="ancestral"``: the exact-in-time Gaussian step given Tweedie's denoiser
    (:meth:`SDE.ancestral_kernel`).
    """
    if kernel == "euler":
        return sde.reverse_kernel(x, t, h, score)
    return sde.ancestral_kernel(x, t, s, score)


def checked_score(score: ScoreFn, x: Tensor, t: Tensor, chunk_size: int | None, step: int) -> Tensor:
    """:func:`smcdiff.score.evaluate_score`, raising a ``ValueError`` naming the step if the score is not finite."""
    s = evaluate_score(score, x, t, chunk_size)
    if not torch.isfinite(s).all():
        raise ValueError(f"score returned non-finite values at step {step} (t = {t[0].item():.6g})")
    return s


def check_score(score: ScoreFn) -> None:
    """A ``ValueError`` unless ``score`` is callable as ``score(x, t)``."""
    if not callable(score):
        raise ValueError(f"score must be callable as score(x, t), got {type(score).__name__}")


def check_kernel(kernel: str) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")


def check_steps(steps: int | None, name: str = "steps") -> None:
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise ValueError(f"{name} must be a positive integer, got {steps!r}")


def check_callback(callback: Callback | None) -> None:
    if callback is not None and not callable(callback):
        raise ValueError("callback must be callable as callback(info: StepInfo) or None")


def observation_trajectory(
    sde: SDE, y: Tensor, steps: int, generator: torch.Generator | None = None, grid: Tensor | None = None
) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(k, y_{t_k})`` for k = N ... 0, a forward-noised trajectory of ``y: (B, *event)`` drawn backwards.

    y_{t_N} ~ N(alpha(t_N) y, sigma(t_N)^2); then y_{t_{k-1}} ~ bridge(y_{t_k}, y) (see :meth:`SDE.bridge`).
    Memory is O(B d) whatever the number of steps. ``grid`` (decreasing, ``(steps + 1,)``) replaces
    ``sde.time_grid(steps)``.
    """
    grid = (sde.time_grid(steps) if grid is None else grid).to(device=y.device, dtype=y.dtype)
    sde.check_times(grid, "grid")
    mean, std = sde.marginal(y, grid[0].expand(y.shape[0]))
    y_k = mean + std * torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    yield steps, y_k
    c = sde.coefficients(grid, y.ndim - 1, like=y)  # the schedule at every grid time in one call
    at = [Coefficients(*(v[i : i + 1] for v in (c.alpha, c.sigma2, c.drift, c.g2))) for i in range(steps + 1)]
    for i in range(steps):  # SDE.bridge from t = grid[i] to s = grid[i + 1]
        mean, std = bridge_law(y, y_k, at[i + 1], at[i])
        y_k = mean + std * torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        yield steps - i - 1, y_k


def check_generator(generator: object) -> None:
    """A ``ValueError`` unless ``generator`` is a ``torch.Generator`` or None (a seed is not a generator)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        hint = f"; for a seed use torch.Generator().manual_seed({generator!r})" if isinstance(generator, int) else ""
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}{hint}")


def check_noise_std(noise_std: object) -> float:
    """``noise_std`` as a float if it is a finite number >= 0, else a ``ValueError`` naming it."""
    if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or not math.isfinite(noise_std) or noise_std < 0:
        raise ValueError(f"noise_std must be a finite number >= 0 (the observation noise's standard deviation), got {noise_std!r}")
    return float(noise_std)
