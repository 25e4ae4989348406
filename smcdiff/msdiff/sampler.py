r"""The multiscale sampler of "Non-Uniform Diffusion Models" §3.3.2.

a_n ~ N(0, 1) at t = 1; Euler-Maruyama on a_n down to n/(n+1); draw d_n from its stationary law;
continue on [a_n, d_n] down to (n-1)/(n+1); ...; on c_1 down to eps. The total step count is split
between the ranges in proportion to their lengths (:meth:`MultiscaleProcess.split_steps`), and each
step evaluates only the score of the current scale on the moving coefficients. The steps are those
every sampler of smcdiff takes (:mod:`smcdiff.dynamics`: :func:`~smcdiff.dynamics.time_steps`,
:func:`~smcdiff.dynamics.checked_score`, :func:`~smcdiff.dynamics.reverse_step`).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from ..dynamics import Callback, StepInfo, check_callback, checked_score, reverse_step, time_steps
from ..score import check_chunk_size
from .process import MultiscaleProcess, ScaleScores, check_positive_int

__all__ = ["multiscale_sample"]


@torch.no_grad()
def multiscale_sample(
    scales: ScaleScores,
    n: int,
    *,
    steps: int = 256,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """The multiscale sampler of §3.3.2, returning packed coefficients c(eps).

    1. a_n ~ N(0, prior var) at t = 1.
    2. For i = n+1, n, ..., 1: if i <= n append d_i ~ N(0, prior var) (its stationary law at
       t = i/(n+1)); then ``k_i`` Euler-Maruyama steps of the reverse SDE of c_i (eq. 3, with
       scale i's SDE and ``scales.scale_score(i, .)``) on the uniform grid of R_i.

    Parameters
    ----------
    scales : a :class:`~smcdiff.msdiff.models.MultiscaleModel`, :class:`~smcdiff.msdiff.process.GaussianScales`
        or anything with ``.process`` and ``.scale_score(i, c_i, t)``.
    n : number of samples.
    steps : total steps N, split by :meth:`MultiscaleProcess.split_steps`.
    generator : the only source of randomness.
    chunk_size : at most this many rows per score call.
    progress : tqdm bar over the steps of each scale.
    callback : called after each step with a :class:`~smcdiff.dynamics.StepInfo` whose ``step``
        counts down over all scales (N - 1, ..., 0) and whose ``particles`` are the moving
        coefficients c_i, ``(n, D_i)``.
    dtype, device : of the samples.

    Returns
    -------
    c : (n, D) packed coefficients [a_n, d_n, ..., d_1] at t = eps.
    """
    check_positive_int("n", n)
    check_chunk_size(chunk_size)
    check_callback(callback)
    process = getattr(scales, "process", None)
    if not isinstance(process, MultiscaleProcess) or not callable(getattr(scales, "scale_score", None)):
        raise ValueError("scales must have a MultiscaleProcess as .process and a method scale_score(i, c_i, t)")
    counts = process.split_steps(steps)
    prior_std = process.sde.prior_std(like=torch.empty((), dtype=dtype, device=device))
    top = process.num_scales
    x = process.scale_sde(top).prior_sample((n, process.scale_dim(top)), generator=generator, dtype=dtype, device=device)
    for i in range(top, 0, -1):
        d_i = process.scale_dim(i)
        if d_i > x.shape[1]:  # 2. the new detail group starts from its stationary law
            z = torch.randn((n, d_i - x.shape[1]), generator=generator, dtype=dtype, device=x.device)
            x = torch.cat([x, z * prior_std[x.shape[1] : d_i]], dim=1)
        sde = process.scale_sde(i)
        score = partial(scales.scale_score, i)
        finer = sum(counts[: i - 1])  # steps left on the finer scales after this one
        grid = process.scale_grid(i, counts[i - 1])
        for k, t, s, h in time_steps(sde, grid, n, x, progress, desc=f"multiscale sampling, scale {i}"):
            mean, var = reverse_step(sde, "euler", x, t, s, h, checked_score(score, x, t, chunk_size, finer + k))
            x = mean + var.sqrt() * torch.randn(x.shape, generator=generator, dtype=dtype, device=x.device)
            if callback is not None:
                callback(StepInfo(finer + k - 1, s[0].item(), x))
    return x
