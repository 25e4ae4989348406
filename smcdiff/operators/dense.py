"""An explicit matrix as an operator, its SVD from ``torch.linalg.svd``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Operator


class Dense(Operator):
    """An explicit matrix ``A: (m, d)`` (random projections, compressed sensing, small problems).

    The SVD comes from ``torch.linalg.svd`` (float64) once, at construction. Singular values below
    ``rtol * max(s)`` count as 0 (unobserved directions).

    Parameters
    ----------
    A : (m, d) matrix.
    in_shape : event shape of x, of ``d`` elements (default ``(d,)``); y has event shape ``(m,)``.
    """

    def __init__(self, A: Tensor, in_shape: tuple[int, ...] | None = None, rtol: float = 1e-10) -> None:
        a = torch.as_tensor(A, dtype=torch.float64)
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
            raise ValueError(f"A must be a matrix of shape (m, d), got {tuple(a.shape)}")
        if not torch.isfinite(a).all():
            raise ValueError("A must be finite")
        m, d = a.shape
        in_shape = (d,) if in_shape is None else tuple(in_shape)
        if math.prod(in_shape) != d:
            raise ValueError(f"in_shape {in_shape} has {math.prod(in_shape)} elements but A has {d} columns")
        u, sv, vh = torch.linalg.svd(a, full_matrices=True)
        s = torch.zeros(d, dtype=torch.float64)
        s[: sv.numel()] = sv
        self.matrix = a
        self.in_shape, self.out_shape, self.coef_shape = in_shape, (m,), (d,)
        self._u, self._vh, self._r = u, vh, min(m, d)
        self._s = torch.where(s > rtol * s.max(), s, torch.zeros_like(s)) if s.max() > 0 else s

    @property
    def s(self):
        return self._s

    def Vt(self, x):
        return x.reshape(x.shape[0], -1) @ self._like(self._vh, x).T

    def V(self, c):
        return (c @ self._like(self._vh, c)).reshape(c.shape[0], *self.in_shape)

    def Ut(self, y):
        c = y @ self._like(self._u, y)[:, : self._r]
        return torch.nn.functional.pad(c, (0, self.coef_shape[0] - self._r))

    def U(self, c):
        return c[:, : self._r] @ self._like(self._u, c)[:, : self._r].T

    def __repr__(self) -> str:
        return f"Dense({self.out_shape[0]}x{self.coef_shape[0]}, rank {int(self.observed.sum())})"
