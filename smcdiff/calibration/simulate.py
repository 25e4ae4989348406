r"""Calibration problems from the model's own discretised prior: x* ~ the reverse chain, y = A x* + sigma_y eps.

If a conditional sampler targets the posterior of *this* prior (the reverse chain the model defines on
the sampler's grid), then for (x*, y) drawn here and draws x^(1..L) from the sampler given y, x* and the
draws are exchangeable given y, which is what :func:`smcdiff.calibration.sbc` tests (Talts et al. 2018).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..dynamics import Kernel, check_generator, check_noise_std
from ..likelihoods import Likelihood
from ..operators import Mask, Operator
from ..sampling import sample
from ..smc import linear_observation
from ..score import ScoreFn
from ..sde import SDE

__all__ = ["simulate_problems", "resolve_operator", "DEFAULT_STEPS"]

DEFAULT_STEPS = 250
"""Reverse steps when neither ``steps`` nor ``grid`` is given (the samplers' default, ``smcdiff.restore``)."""


def resolve_operator(operator: Operator | Tensor, event_shape: tuple[int, ...], rows: int, name: str = "operator") -> Operator:
    """``operator`` bound to ``event_shape``, for ``rows`` problems.

    A bool mask broadcastable to ``event_shape`` becomes one :class:`~smcdiff.operators.Mask`; one
    broadcastable to ``(rows, *event_shape)`` (a mask per problem) becomes a per-row mask. Raises
    ``ValueError`` naming ``name`` otherwise.
    """
    event_shape = tuple(event_shape)
    if isinstance(operator, Tensor):
        if operator.dtype != torch.bool:
            raise ValueError(
                f"{name} must be an smcdiff.operators.Operator or a bool mask tensor (True = observed), got dtype {operator.dtype}"
            )
        try:
            return Mask(torch.broadcast_to(operator, event_shape))
        except RuntimeError:
            pass
        try:
            return Mask(torch.broadcast_to(operator, (rows, *event_shape)), per_row=True)
        except RuntimeError as err:
            raise ValueError(
                f"{name}: a mask of shape {tuple(operator.shape)} broadcasts neither to the event shape {event_shape} "
                f"nor to ({rows}, *event_shape)"
            ) from err
    if not isinstance(operator, Operator):
        raise ValueError(f"{name} must be an smcdiff.operators.Operator or a bool mask tensor, got {type(operator).__name__}")
    try:
        op = operator.bind(event_shape)
        op.check_rows(rows)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from err
    return op


def _placement(score: ScoreFn, dtype: torch.dtype | None, device) -> tuple[torch.dtype, torch.device]:
    """dtype and device of the simulation: the arguments, else the model's parameters, else float32 on CPU."""
    tensors = [*score.parameters(), *score.buffers()] if isinstance(score, nn.Module) else []
    params = [p for p in (score.parameters() if isinstance(score, nn.Module) else []) if p.is_floating_point()]
    if dtype is None:
        dtype = params[0].dtype if params else torch.float32
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    if device is None:
        device = tensors[0].device if tensors else torch.device("cpu")
    return dtype, torch.device(device)


def _event_shape(score: ScoreFn, event_shape) -> tuple[int, ...]:
    if event_shape is None:
        event_shape = getattr(score, "event_shape", None)
        if event_shape is None and isinstance(getattr(score, "dim", None), int):
            event_shape = (score.dim,)  # the flat Gaussian oracle
        if event_shape is None:
            raise ValueError("event_shape: the score has no event_shape attribute; pass event_shape=(...)")
    event_shape = tuple(event_shape)
    if not event_shape or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in event_shape):
        raise ValueError(f"event_shape must be a non-empty tuple of positive integers, got {event_shape!r}")
    return event_shape


def simulate_problems(
    score: ScoreFn,
    sde: SDE,
    operator: Operator | Tensor,
    noise_std: float,
    n: int,
    *,
    steps: int | None = None,
    grid: Tensor | None = None,
    kernel: Kernel = "euler",
    event_shape: tuple[int, ...] | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw ``n`` calibration problems (x*, y) from the model's discretised prior.

    x* is the output of the reverse chain, :func:`smcdiff.sample` with ``method="sde"`` on the same
    grid a conditional sampler would use; y = A x* + noise_std * eps, eps ~ N(0, I), or y ~ p(y | x*) for a likelihood.

    Parameters
    ----------
    score : callable ``score(x, t)``; its ``event_shape`` (or ``dim`` for the flat oracle), parameters'
        dtype and device are the defaults below.
    sde : the forward SDE of the model.
    operator : :class:`smcdiff.operators.Operator`, or a bool mask broadcastable to ``event_shape``
        (or to ``(n, *event_shape)``: a mask per problem); True = observed. Or a
        :class:`~smcdiff.likelihoods.Likelihood` with a ``sample`` method: then y ~ p(y | x*) from it.
    noise_std : sigma_y >= 0 (0 with a likelihood, which carries its own noise).
    n : number of problems.
    steps, grid : the reverse grid. As in :func:`smcdiff.restore`: ``grid`` wins; otherwise a score with a
        ``time_grid(steps)`` method (a diffusers adapter) is sampled on ``score.time_grid(steps or 250)``;
        otherwise ``sde.time_grid(steps or 250)``.
    kernel : ``"euler"`` or ``"ancestral"``, the reverse kernel (:func:`smcdiff.sample`).
    event_shape : shape of one sample (default ``score.event_shape``).
    generator : torch.Generator, optional; the only source of randomness (x*, then the noise).
    chunk_size, progress : passed to :func:`smcdiff.sample`.
    dtype, device : of the samples (default: the score's parameters, else float32 on CPU).

    Returns
    -------
    x_star : (n, *event_shape)
    y : (n, *observation_shape)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    noise_std = check_noise_std(noise_std)
    check_generator(generator)
    if not isinstance(sde, SDE):
        raise ValueError(f"sde must be an smcdiff SDE, got {type(sde).__name__}")
    operator, noise_std = linear_observation(operator, noise_std)
    likelihood = operator if isinstance(operator, Likelihood) else None
    event_shape = _event_shape(score, event_shape if likelihood is None else (event_shape or likelihood.event_shape))
    op = None if likelihood is not None else resolve_operator(operator, event_shape, n)
    dtype, device = _placement(score, dtype, device)
    if grid is None and hasattr(score, "time_grid"):
        grid, steps = score.time_grid(DEFAULT_STEPS if steps is None else steps), None  # the model's training steps
    elif grid is None and steps is None:
        steps = DEFAULT_STEPS
    x_star = sample(
        score, sde, (n, *event_shape), steps=steps, grid=grid, kernel=kernel, generator=generator,
        chunk_size=chunk_size, progress=progress, dtype=dtype, device=device,
    )
    if likelihood is not None:
        return x_star, likelihood.sample(x_star, generator)
    y = op.A(x_star)
    if noise_std > 0:
        y = y + noise_std * torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    return x_star, y
