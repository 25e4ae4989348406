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

__all__ = ["sample", "time_steps", "checked_score"]

StepCallback = Callable[[int, float, Tensor], None]


def time_steps(
    sde: SDE, steps: int, n: int, like: Tensor, progress: bool = False, desc: str = "sampling"
) -> Iterator[tuple[int, Tensor, Tensor, Tensor]]:
    """Iterate the reverse-time grid: yields ``(k, t_k, t_{k-1}, h)`` for k = N ... 1, each time ``(n,)``.

    The grid is computed once (float64) and cast to ``like``'s dtype and device.
    """
    grid = sde.time_grid(steps, device=like.device)
    grid_x = grid.to(like.dtype)
    for i in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        k = steps - i
        t, s = grid_x[i].expand(n), grid_x[i + 1].expand(n)
        yield k, t, s, (grid[i] - grid[i + 1]).to(like.dtype).expand(n)


def checked_score(score: ScoreFn, x: Tensor, t: Tensor, chunk_size: int | None, step: int) -> Tensor:
    """:func:`evaluate_score`, raising a ``ValueError`` that names the step if the score is not finite."""
    s = evaluate_score(score, x, t, chunk_size)
    if not torch.isfinite(s).all():
        raise ValueError(f"score returned non-finite values at step {step} (t = {t[0].item():.6g})")
    return s


def _check_common(score: ScoreFn, steps: int, progress: bool, callback) -> None:
    if not callable(score):
        raise ValueError(f"score must be callable as score(x, t), got {type(score).__name__}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if callback is not None and not callable(callback):
        raise ValueError("callback must be callable as callback(step, t, x) or None")


@torch.no_grad()
def sample(
    score: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...],
    *,
    steps: int = 500,
    method: Literal["sde", "ode"] = "sde",
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
    steps : number of reverse steps N.
    method : ``"sde"`` (Euler-Maruyama on the reverse SDE) or ``"ode"`` (Euler on the probability flow).
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
    for k, t, s, h in time_steps(sde, steps, n, x, progress):
        sc = checked_score(score, x, t, chunk_size, k)
        if method == "sde":
            mean, var = sde.reverse_kernel(x, t, h, sc)
            x = mean + var.sqrt() * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        else:
            x = sde.ode_step(x, t, h, sc)
        if callback is not None:
            callback(k - 1, s[0].item(), x)
    if denoise_last:
        t = torch.full((n,), sde.eps, dtype=x.dtype, device=x.device)
        x = sde.tweedie(x, t, checked_score(score, x, t, chunk_size, 0))
    return x
