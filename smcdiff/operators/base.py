"""The operator contract: y = A x given matrix-free by its SVD, and what follows from it once."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor


class Operator(ABC):
    """y = A x for ``x: (n, *in_shape)``, ``y: (n, *out_shape)``, given by its SVD on a coefficient grid.

    Attributes
    ----------
    in_shape, out_shape, coef_shape : event shapes of x, y and V^T x.
    coordinatewise : True when V is the identity (a mask): then a per-coordinate SDE schedule is
        still diagonal in the singular basis.
    """

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    coef_shape: tuple[int, ...]
    coordinatewise: bool = False
    preserves_range: bool = False
    """True when A maps the data range into itself (a mask, averages, a normalised non-negative blur)."""

    # ---- the SVD, matrix-free ----
    @abstractmethod
    def Vt(self, x: Tensor) -> Tensor: ...

    @abstractmethod
    def V(self, c: Tensor) -> Tensor: ...

    @abstractmethod
    def Ut(self, y: Tensor) -> Tensor: ...

    @abstractmethod
    def U(self, c: Tensor) -> Tensor: ...

    @property
    @abstractmethod
    def s(self) -> Tensor:
        """Singular values on the coefficient grid, ``(*coef_shape)`` or ``(B, *coef_shape)``; 0 = unobserved."""

    @property
    def observed(self) -> Tensor:
        """Bool grid of observed coefficients, broadcastable like :attr:`s`."""
        return self.s > 0

    # ---- derived once, here ----
    def A(self, x: Tensor) -> Tensor:
        """A x, ``(n, *in_shape) -> (n, *out_shape)``."""
        return self.U(self._like(self.s, x) * self.Vt(x))

    def At(self, y: Tensor) -> Tensor:
        """A^T y, ``(n, *out_shape) -> (n, *in_shape)``."""
        return self.V(self._like(self.s, y) * self.Ut(y))

    def A_pinv(self, y: Tensor) -> Tensor:
        """The pseudo-inverse A^+ y, ``(n, *out_shape) -> (n, *in_shape)``."""
        return self.V(self.coefficients(y))

    def coefficients(self, y: Tensor) -> Tensor:
        """y_bar = Ut(y) / s on observed coefficients, 0 elsewhere: ``(n, *coef_shape)``."""
        s, obs = self._like(self.s, y), self.observed.to(y.device)
        return torch.where(obs, self.Ut(y) / torch.where(obs, s, torch.ones_like(s)), torch.zeros((), dtype=y.dtype, device=y.device))

    def __call__(self, x: Tensor) -> Tensor:
        return self.A(x)

    # ---- shapes ----
    def bind(self, in_shape: tuple[int, ...]) -> "Operator":
        """This operator for inputs of event shape ``in_shape``; raises ``ValueError`` if it cannot take them."""
        if tuple(in_shape) != tuple(self.in_shape):
            raise ValueError(f"observation: {self!r} takes inputs of shape {tuple(self.in_shape)}, got {tuple(in_shape)}")
        return self

    def input_shape(self, out_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input event shape that produces outputs of ``out_shape`` (used when no model shape is known)."""
        return tuple(self.in_shape)

    def check_rows(self, batch: int) -> None:
        """Raise ``ValueError`` if a per-row operator does not have ``batch`` rows (or 1)."""
        rows = self.s.shape[0] if self.s.ndim > len(self.coef_shape) else 1
        if rows not in (1, batch):
            raise ValueError(f"observation has {rows} rows but y has {batch}")

    @staticmethod
    def _like(v: Tensor, ref: Tensor) -> Tensor:
        return v.to(device=ref.device, dtype=ref.dtype)


def _check_observed(s: Tensor, observed: Tensor) -> None:
    if (observed & ~(s > 0)).any():
        raise ValueError("observation: a singular value of 0 is declared observed")
