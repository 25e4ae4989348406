r"""Unconditional sampling: the reverse SDE (Euler-Maruyama) or the probability-flow ODE (Euler).

Both integrate from the prior at ``T`` down to ``eps`` on ``sde.time_grid(steps)``:

    sde:  x_{k-1} = x_k + h (-f x_k + g^2 s(x_k, t_k)) + g sqrt(h) z     (eq. 3)
    ode:  x_{k-1} = x_k - h (f x_k - g^2 s(x_k, t_k) / 2)

Optionally the last state is denoised with Tweedie's formula, E[x_0 | x_eps].
"""

from __future__ import annotations

from typing import Callable, Iterator, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .score import ScoreFn, check_chunk_size, evaluate_score
from .sde import SDE

__all__ = ["sample", "time_steps", "checked_score", "resolve_grid", "reverse_step", "KERNELS"]

StepCallback = Callable[[int, float, Tensor], None]


Kernel = Literal["euler", "ancestral"]
KERNELS = ("euler", "ancestral")
DEFAULT_STEPS = 500


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
    ``sde.time_grid(steps)``); it is cast once to ``like``'s dtype and device.
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


def check_kernel(kernel: str) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")


def checked_score(score: ScoreFn, x: Tensor, t: Tensor, chunk_size: int | None, step: int) -> Tensor:
    """:func:`evaluate_score`, raising a ``ValueError`` that names the step if the score is not finite."""
    s = evaluate_score(score, x, t, chunk_size)
    if not torch.isfinite(s).all():
        raise ValueError(f"score returned non-finite values at step {step} (t = {t[0].item():.6g})")
    return s


def _check_common(score: ScoreFn, steps: int | None, progress: bool, callback) -> None:
    if not callable(score):
        raise ValueError(f"score must be callable as score(x, t), got {type(score).__name__}")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if callback is not None and not callable(callback):
        raise ValueError("callback must be callable as callback(step, t, x) or None")


@torch.no_grad()
def sample(
    score: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...],
    *,
    steps: int | None = None,
    method: Literal["sde", "ode"] = "sde",
    kernel: Kernel = "euler",
    grid: Tensor | None = None,
    generator: torch.Generator | None = None,
    denoise_last: bool = False,
    chunk_size: int | None = None,
    progress: bool = False,
    callback: StepCallback | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    x_T: Tensor | None = None,
) -> Tensor:
    """Draw ``shape = (n, *event_shape)`` samples of the model defined by ``score`` and ``sde``.

    Parameters
    ----------
    score : callable ``score(x, t)``
    sde : SDE
    shape : tuple ``(n, *event_shape)``
    steps : number of reverse steps N on ``sde.time_grid(N)`` (default 500).
    method : ``"sde"`` (the reverse SDE, stepped by ``kernel``) or ``"ode"`` (Euler on the probability flow).
    kernel : ``"euler"`` (Euler-Maruyama) or ``"ancestral"`` (exact-in-time given Tweedie's denoiser);
        see :func:`reverse_step`. Used by ``method="sde"``.
    grid : explicit decreasing times ``(N + 1,)`` instead of ``sde.time_grid(steps)``.
    generator : torch.Generator, optional; the only source of randomness.
    denoise_last : apply Tweedie's formula at ``t = eps`` to return E[x_0 | x_eps].
    chunk_size : at most this many rows per score call.
    progress : show a tqdm progress bar.
    callback : called as ``callback(k, t_{k-1}, x_{k-1})`` after each step.
    dtype, device : of the samples (ignored when ``x_T`` is given).
    x_T : (n, *event_shape), optional starting state instead of a prior draw.

    Returns
    -------
    x : (n, *event_shape)
    """
    _check_common(score, steps, progress, callback)
    check_chunk_size(chunk_size)
    if method not in ("sde", "ode"):
        raise ValueError(f"method must be 'sde' or 'ode', got {method!r}")
    check_kernel(kernel)
    grid = resolve_grid(sde, steps, grid)
    shape = tuple(shape)
    if len(shape) < 2 or any(not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"shape must be (n, *event_shape) of positive integers, got {shape}")
    sde.check_event_shape(shape[1:], "shape")
    if x_T is None:
        x = sde.prior_sample(shape, generator=generator, dtype=dtype, device=device)
    else:
        if tuple(x_T.shape) != shape:
            raise ValueError(f"x_T must have shape {shape}, got {tuple(x_T.shape)}")
        x = x_T.clone()
    n = shape[0]
    for k, t, s, h in time_steps(sde, grid, n, x, progress):
        sc = checked_score(score, x, t, chunk_size, k)
        if method == "sde":
            mean, var = reverse_step(sde, kernel, x, t, s, h, sc)
            x = mean + var.sqrt() * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        else:
            x = sde.ode_step(x, t, h, sc)
        if callback is not None:
            callback(k - 1, s[0].item(), x)
    if denoise_last:
        t = torch.full((n,), grid[-1].item(), dtype=x.dtype, device=x.device)
        x = sde.tweedie(x, t, checked_score(score, x, t, chunk_size, 0))
    return x
