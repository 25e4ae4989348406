r"""Simulation-based calibration (Talts et al. 2018): ranks of the truth among a sampler's draws.

For problems (x*, y) with x* from the prior and y from the likelihood, and L draws x^(1..L) from a
sampler given y, the sampler targets the posterior exactly only if, for every statistic f, the rank

    r = #{l : f(x^(l)) < f(x*)}   (ties broken uniformly at random)

is uniform on {0, ..., L} (Talts et al. 2018, Theorem 1). Ties are not a corner case here: in noiseless
inpainting every draw copies the observed coordinates of x*, and random tie-breaking makes their rank
uniform, as it should be. Statistics are computed batch by batch, so the draws of all problems are never
held at once.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..likelihoods import Likelihood
from ..operators import Mask, Operator
from .result import SBCResult
from .simulate import check_generator, resolve_operator

__all__ = ["sbc", "compute_ranks", "STATISTICS"]

STATISTICS = ("coordinates", "directions", "fit")

Sampler = Callable[[Tensor], Tensor]
"""``sampler(y: (b, *observation_shape)) -> (b, L, *event_shape)`` draws, given a batch of observations."""


def compute_ranks(truth: Tensor, draws: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Ranks of ``truth`` among ``draws`` with ties broken uniformly at random.

    Parameters
    ----------
    truth : (R, S) the statistics of x*.
    draws : (R, L, S) the statistics of the draws.
    generator : torch.Generator, optional; draws the tie-breaking uniforms (on ``truth``'s device).

    Returns
    -------
    ranks : (R, S) int64 in 0..L, #{l : draws[:, l] < truth} + U with U uniform on {0, ..., #ties}.
    """
    check_generator(generator)
    if not isinstance(truth, Tensor) or not isinstance(draws, Tensor):
        raise ValueError("truth and draws must be tensors")
    if truth.ndim != 2:
        raise ValueError(f"truth must have shape (R, S), got {tuple(truth.shape)}")
    if draws.ndim != 3 or draws.shape[0] != truth.shape[0] or draws.shape[2] != truth.shape[1]:
        raise ValueError(f"draws must have shape (R, L, S) = ({truth.shape[0]}, L, {truth.shape[1]}), got {tuple(draws.shape)}")
    if torch.isnan(truth).any() or torch.isnan(draws).any():
        raise ValueError("truth and draws must not contain NaN")
    t = truth[:, None, :]
    below = (draws < t).sum(1)
    ties = (draws == t).sum(1)
    u = torch.rand(truth.shape, generator=generator, dtype=torch.float64, device=truth.device)
    extra = torch.minimum((u * (ties + 1).to(torch.float64)).floor().to(torch.int64), ties)
    return below + extra


def _check_statistics(statistics: Sequence[str], operator, directions) -> tuple[str, ...]:
    if isinstance(statistics, str):
        statistics = (statistics,)
    statistics = tuple(statistics)
    if not statistics or any(s not in STATISTICS for s in statistics) or len(set(statistics)) != len(statistics):
        raise ValueError(f"statistics must be a non-empty selection without repeats of {STATISTICS}, got {statistics!r}")
    if "fit" in statistics and operator is None:
        raise ValueError("operator is required for the 'fit' statistic ||A x - y||^2 (or leave 'fit' out of statistics)")
    if "directions" in statistics and (isinstance(directions, bool) or not isinstance(directions, int) or directions < 1):
        raise ValueError(f"directions must be a positive integer, got {directions!r}")
    return statistics


def _rows(op: Operator, start: int, stop: int) -> Operator:
    """The operator of problems ``start:stop`` (a per-row mask is sliced; a shared operator is itself)."""
    if op.s.ndim == len(op.coef_shape):
        return op
    if isinstance(op, Mask):
        return Mask(op.mask[start:stop], per_row=True)
    raise ValueError("operator: an operator with a different matrix per problem is supported only as a mask")


def _fit(op: Operator | Likelihood, x: Tensor, y: Tensor) -> Tensor:
    """||A x - y||^2, or -log p(y | x) for a likelihood: ``x (b, m, *event)``, ``y (b, *obs)`` -> ``(b, m)``."""
    b, m = x.shape[:2]
    flat = x.reshape(b * m, *x.shape[2:])
    if isinstance(op, Likelihood):
        with torch.no_grad():
            return -op.log_prob(y.repeat_interleave(m, 0), flat).reshape(b, m).to(x.dtype)
    if isinstance(op, Mask) and op.per_row:
        op = Mask(op.mask.to(x.device).repeat_interleave(m, 0), per_row=True)
    resid = op.A(flat).reshape(b, m, *y.shape[1:]) - y[:, None].to(x.dtype)
    return resid.reshape(b, m, -1).square().sum(-1)


def _statistics(x: Tensor, y: Tensor, op: Operator | None, which: tuple[str, ...], u: Tensor | None) -> Tensor:
    """The statistics of ``x: (b, m, *event)`` -> ``(b, m, S)``, in the order of :func:`_names`."""
    flat = x.reshape(*x.shape[:2], -1)
    out = []
    for name in which:
        if name == "coordinates":
            out.append(flat)
        elif name == "directions":
            out.append(flat @ u.to(flat).T)
        else:
            out.append(_fit(op, x, y)[..., None])
    return torch.cat(out, -1)


def _names(which: tuple[str, ...], dim: int, k: int) -> list[str]:
    names: list[str] = []
    for name in which:
        if name == "coordinates":
            names += [f"x[{i}]" for i in range(dim)]
        elif name == "directions":
            names += [f"u{i}" for i in range(k)]
        else:
            names.append("fit")
    return names


def _check_draws(d: object, expected: tuple[int, ...]) -> Tensor:
    if not isinstance(d, Tensor):
        raise ValueError(f"sampler must return a tensor of shape {expected}, got {type(d).__name__}")
    if tuple(d.shape) != expected:
        raise ValueError(f"sampler returned draws of shape {tuple(d.shape)}, expected (b, L, *event_shape) = {expected}")
    if not d.is_floating_point() or not torch.isfinite(d).all():
        raise ValueError("sampler returned draws that are not all finite floating-point values")
    return d.detach()  # a sampler may use autograd inside (twisted proposals); its draws are data here


def sbc(
    sampler: Sampler,
    x_star: Tensor,
    y: Tensor,
    draws: int,
    *,
    operator: Operator | Tensor | None = None,
    statistics: Sequence[str] = STATISTICS,
    directions: int = 8,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> SBCResult:
    """Simulation-based calibration of ``sampler`` on the problems ``(x_star, y)``.

    Parameters
    ----------
    sampler : callable ``y_batch (b, *observation_shape) -> (b, L, *event_shape)``, draws given y; it
        closes over its own settings and generator (any smcdiff setting or a peer method). It is called
        outside ``torch.no_grad``, so samplers that differentiate the score work unchanged.
    x_star : (R, *event_shape) the true signals, drawn from the prior the sampler is meant to condition
        (e.g. by :func:`simulate_problems`).
    y : (R, *observation_shape) their observations.
    draws : L, the number of draws the sampler returns per problem.
    operator : :class:`smcdiff.operators.Operator` or bool mask (as in :func:`simulate_problems`), or a
        :class:`~smcdiff.likelihoods.Likelihood`; needed for the ``"fit"`` statistic.
    statistics : any of ``"coordinates"`` (every coordinate of x, flattened; names ``"x[i]"``),
        ``"directions"`` (u_k . x for ``directions`` random unit vectors u_k; names ``"u{k}"``), ``"fit"``
        (the data fit ||A x - y||^2, or -log p(y | x) for a likelihood; name ``"fit"``).
    directions : K, the number of random directions, drawn once from ``generator``.
    batch_size : at most this many problems per sampler call (default: all at once).
    generator : torch.Generator, optional; draws the directions and the tie-breaking uniforms.
    progress : show a progress bar over batches.

    Returns
    -------
    SBCResult with ``ranks (R, S)`` and ``mse``, the squared error of the draws' mean against x*,
    averaged over coordinates and problems.

    Notes
    -----
    Ranks count draws strictly below the truth and break exact ties uniformly at random, so statistics
    that every draw reproduces exactly (observed coordinates and the data fit in noiseless inpainting)
    still have uniform ranks. With ``noise_std = 0`` and an operator that is not a mask, the data fit is
    zero only up to rounding, and its rank compares rounding errors: leave ``"fit"`` out there.
    """
    check_generator(generator)
    if not callable(sampler):
        raise ValueError("sampler must be callable as sampler(y_batch) -> (b, L, *event_shape)")
    if not isinstance(x_star, Tensor) or x_star.ndim < 2 or not x_star.is_floating_point():
        raise ValueError("x_star must be a floating-point tensor of shape (R, *event_shape)")
    if isinstance(operator, Likelihood):
        operator.check_y(y)
    elif not isinstance(y, Tensor) or y.ndim < 2 or not y.is_floating_point():
        raise ValueError("y must be a floating-point tensor of shape (R, *observation_shape)")
    if y.shape[0] != x_star.shape[0]:
        raise ValueError(f"y has {y.shape[0]} problems but x_star has {x_star.shape[0]}")
    if not torch.isfinite(x_star).all():
        raise ValueError("x_star must be finite")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive integer, got {draws!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    which = _check_statistics(statistics, operator, directions)
    n, event_shape = x_star.shape[0], tuple(x_star.shape[1:])
    dim = math.prod(event_shape)
    op = None
    if isinstance(operator, Likelihood):
        op = operator
    elif operator is not None:
        op = resolve_operator(operator, event_shape, n)
        if tuple(op.out_shape) != tuple(y.shape[1:]):
            raise ValueError(f"y has observation shape {tuple(y.shape[1:])} but the operator produces {tuple(op.out_shape)}")
    u = None
    if "directions" in which:
        u = torch.randn(directions, dim, generator=generator, dtype=torch.float64, device=x_star.device)
        u = u / u.norm(dim=1, keepdim=True)
    k = directions if "directions" in which else 0
    names = _names(which, dim, k)
    batch = n if batch_size is None else batch_size
    ranks, sq_err = [], x_star.new_zeros((), dtype=torch.float64)
    for start in tqdm(range(0, n, batch), desc="sbc", disable=not progress, leave=False):
        stop = min(n, start + batch)
        xb, yb = x_star[start:stop], y[start:stop]
        d = _check_draws(sampler(yb), (stop - start, draws, *event_shape)).to(x_star.device)
        dtype = torch.promote_types(d.dtype, x_star.dtype)
        d, xb = d.to(dtype), xb.to(dtype)
        opb = op if op is None or isinstance(op, Likelihood) else _rows(op, start, stop)
        truth = _statistics(xb[:, None], yb, opb, which, u)[:, 0]
        ranks.append(compute_ranks(truth, _statistics(d, yb, opb, which, u), generator=generator))
        sq_err = sq_err + (d.mean(1) - xb).reshape(stop - start, -1).square().to(torch.float64).mean(1).sum()
    return SBCResult(
        ranks=torch.cat(ranks).cpu().numpy().astype(np.int64),
        names=tuple(names),
        draws=draws,
        mse=float(sq_err / n),
    )
