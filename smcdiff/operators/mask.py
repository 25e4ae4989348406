"""Inpainting masks as operators (V = U = I), and the resolution of a sampler's ``observation`` argument."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Operator, _check_observed


class Mask(Operator):
    """Inpainting: ``mask`` True = observed coordinate (V = U = I, s = mask).

    Parameters
    ----------
    mask : bool, ``(*event_shape)`` (the same for every row) or ``(B, *event_shape)`` with ``per_row=True``.
    per_row : the first dimension of ``mask`` indexes rows of y.

    y has the input's shape; its values where ``mask`` is False are ignored.
    """

    coordinatewise = True
    preserves_range = True

    def __init__(self, mask: Tensor, per_row: bool = False) -> None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise ValueError("mask must be a bool tensor (True = observed)")
        if per_row and mask.ndim < 2:
            raise ValueError(f"a per-row mask must have shape (B, *event_shape), got {tuple(mask.shape)}")
        self.mask = mask
        self.per_row = per_row
        self.in_shape = self.out_shape = self.coef_shape = tuple(mask.shape[1:] if per_row else mask.shape)

    @property
    def s(self) -> Tensor:
        return self.mask.to(torch.float64)

    @property
    def observed(self) -> Tensor:
        return self.mask

    def Vt(self, x):
        return x

    def V(self, c):
        return c

    def Ut(self, y):
        return torch.where(self.mask.to(y.device), y, torch.zeros((), dtype=y.dtype, device=y.device))

    def U(self, c):
        return self.Ut(c)

    def __repr__(self) -> str:
        return f"Mask({'per-row ' if self.per_row else ''}{tuple(self.mask.shape)}, {self.mask.float().mean().item():.0%} observed)"


def as_operator(observation: Tensor | Operator, y: Tensor, event_shape: tuple[int, ...] | None = None) -> Operator:
    """Resolve ``observation`` (a bool mask broadcastable to ``y`` or an :class:`Operator`) for ``y: (B, ...)``.

    A mask becomes a per-row :class:`Mask` of y's shape. An operator is bound to ``event_shape`` (the
    model's, when known; otherwise the input shape that produces y's shape) and checked against y.
    Raises ``ValueError`` naming the argument when shapes do not fit.
    """
    if isinstance(observation, Tensor):
        if observation.dtype != torch.bool:
            raise ValueError("mask must be a bool tensor broadcastable to y's shape (True = observed), or an Operator")
        try:
            mask = torch.broadcast_to(observation.to(y.device), y.shape)
        except RuntimeError as err:
            raise ValueError(
                f"mask of shape {tuple(observation.shape)} does not broadcast to y's shape {tuple(y.shape)}"
            ) from err
        op: Operator = Mask(mask, per_row=True)
    elif isinstance(observation, Operator):
        op = observation
    else:
        raise ValueError(
            f"observation must be a bool mask or an smcdiff.operators.Operator, got {type(observation).__name__}"
        )
    if event_shape is None:
        event_shape = op.input_shape(tuple(y.shape[1:]))
    op = op.bind(tuple(event_shape))
    if tuple(y.shape[1:]) != tuple(op.out_shape):
        raise ValueError(
            f"y has event shape {tuple(y.shape[1:])} but {op!r} on inputs of shape {tuple(op.in_shape)} "
            f"produces {tuple(op.out_shape)}"
        )
    op.check_rows(y.shape[0])
    _check_observed(op.s, op.observed)
    return op
