r"""Unconditional sampling: the reverse SDE (Euler-Maruyama) or the probability-flow ODE (Euler).

Both integrate from the prior at ``T`` down to ``eps`` on ``sde.time_grid(steps)``:

    sde:  x_{k-1} = x_k + h (-f x_k + g^2 s(x_k, t_k)) + g sqrt(h) z     (eq. 3)
    ode:  x_{k-1} = x_k - h (f x_k - g^2 s(x_k, t_k) / 2)

Optionally the last state is denoised with Tweedie's formula, E[x_0 | x_eps].
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .dynamics import (
    Callback,
    Kernel,
    StepInfo,
    check_callback,
    check_kernel,
    check_score,
    check_steps,
    checked_score,
    resolve_grid,
    reverse_step,
    time_steps,
)
from .score import ScoreFn, check_chunk_size
from .sde import SDE

__all__ = ["sample"]


@torch.no_grad()
def sample(
    score: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...],
    *,
    steps: int | None = None,
    grid: Tensor | None = None,
    method: Literal["sde", "ode"] = "sde",
    kernel: Kernel = "euler",
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    denoise_last: bool = False,
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
    callback : called with a :class:`~smcdiff.dynamics.StepInfo` (``step, t, particles``) after each step.
    dtype, device : of the samples (ignored when ``x_T`` is given).
    x_T : (n, *event_shape), optional starting state instead of a prior draw.

    Returns
    -------
    x : (n, *event_shape)
    """
    check_score(score)
    check_steps(steps)
    check_callback(callback)
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
            callback(StepInfo(k - 1, s[0].item(), x))
    if denoise_last:
        t = torch.full((n,), grid[-1].item(), dtype=x.dtype, device=x.device)
        x = sde.tweedie(x, t, checked_score(score, x, t, chunk_size, 0))
    return x
