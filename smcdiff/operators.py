r"""Linear observation operators given matrix-free through their singular value decomposition.

An observation is y = A x + sigma_y eps with A = U diag(s) V^T. Every operator here exposes

- ``Vt(x)``: the coefficients x_bar = V^T x of ``x: (n, *in_shape)``, shape ``(n, *coef_shape)``;
- ``V(c)``: the inverse map ``(n, *coef_shape) -> (n, *in_shape)`` (V is orthogonal);
- ``Ut(y)``: U^T y laid out on the coefficient grid, ``(n, *out_shape) -> (n, *coef_shape)`` (zero on
  coefficients that are not observed);
- ``U(c)``: ``(n, *coef_shape) -> (n, *out_shape)``, reading only the observed coefficients;
- ``s``: the singular values on the coefficient grid (zero where nothing is observed) and ``observed``,
  the bool grid of observed coefficients; both may carry a leading batch dimension (a mask per row).

From these, once, here: ``A(x) = U(s * Vt(x))``, ``At(y) = V(s * Ut(y))`` and the pseudo-inverse
``A_pinv(y) = V(Ut(y) / s)`` on observed coefficients. In the singular basis each observed coefficient
is seen on its own, y_bar_i = (Ut(y) / s)_i = x_bar_i + (sigma_y / s_i) eps_i, which is what the
samplers of :mod:`smcdiff.proposals` work with (Cardoso et al. 2024, MCGdiff, §3). A bool mask is the
operator with V = I and s = mask.

Operators that do not fix the image size (``Downsample``, ``Blur``, ``Grayscale``) read it from the
data: :meth:`Operator.bind` returns the operator for a given input event shape and checks it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Sequence

import torch
from einops import rearrange
from torch import Tensor

__all__ = ["Operator", "Mask", "Downsample", "Blur", "Grayscale", "Dense", "as_operator"]


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


def basis_with_first(v: Tensor) -> Tensor:
    """An orthogonal ``(k, k)`` matrix (float64) whose first column is ``v / |v|`` (completed by QR)."""
    v = torch.as_tensor(v, dtype=torch.float64).reshape(-1)
    a = torch.eye(v.numel(), dtype=torch.float64)
    a[:, 0] = v
    q, r = torch.linalg.qr(a)
    return q * torch.sign(r.diagonal())[None, :]  # first column +v/|v|, not -v/|v|


def _basis_with_constant_first(k: int) -> Tensor:
    """An orthogonal ``(k, k)`` matrix whose first column is the constant 1/sqrt(k)."""
    return basis_with_first(torch.ones(k))


class ChannelBasis:
    """Vt, V, Ut, U of an operator that maps ``(C, H, W)`` to one channel, y = w^T x per pixel.

    With an orthogonal channel basis ``self._q`` whose first column is w / |w|, V^T x = Q^T x per pixel
    (coefficients ``(C, H, W)``), the only singular value |w| sits on channel 0 and U = I there.
    Used by :class:`Grayscale` and by adapters of other libraries' colour-to-grey operators.
    """

    _q: Tensor
    coef_shape: tuple[int, ...]

    def Vt(self, x):
        return torch.einsum("nchw,cd->ndhw", x, self._q.to(device=x.device, dtype=x.dtype))

    def V(self, c):
        return torch.einsum("ndhw,cd->nchw", c, self._q.to(device=c.device, dtype=c.dtype))

    def Ut(self, y):
        out = y.new_zeros(y.shape[0], *self.coef_shape)
        out[:, :1] = y
        return out

    def U(self, c):
        return c[:, :1]


class _ShapeFree(Operator):
    """Operators on images ``(C, H, W)`` whose matrices follow from the image size, fixed by :meth:`bind`."""

    def __init__(self) -> None:
        self._bound: tuple[int, ...] | None = None

    def bind(self, in_shape):
        in_shape = tuple(in_shape)
        if len(in_shape) != 3:
            raise ValueError(f"observation: {self!r} acts on images (C, H, W), got event shape {in_shape}")
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._setup(in_shape)
        new._bound = in_shape
        return new

    def _require_bound(self) -> None:
        if self._bound is None:
            raise ValueError(f"{self!r} is not bound to an image size: call .bind((C, H, W)) first")

    @abstractmethod
    def _setup(self, in_shape: tuple[int, int, int]) -> None: ...


class Downsample(_ShapeFree):
    """Block averaging by ``factor`` (super-resolution): ``(C, H, W) -> (C, H / f, W / f)``.

    Each f x f block's row of A is (1 / f^2) 1^T, with norm 1 / f: in an orthogonal basis of the block
    whose first vector is the constant 1 / f, A has the single singular value 1 / f on that vector.
    Coefficients are laid out as ``(C, H / f, W / f, f^2)``, the block mean's direction first.
    """

    preserves_range = True

    def __init__(self, factor: int) -> None:
        super().__init__()
        if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor!r}")
        self.factor = factor
        self._q = _basis_with_constant_first(factor * factor)

    def _setup(self, in_shape):
        c, h, w = in_shape
        f = self.factor
        if h % f or w % f:
            raise ValueError(f"observation: Downsample({f}) needs H and W divisible by {f}, got {h}x{w}")
        self.in_shape, self.out_shape = in_shape, (c, h // f, w // f)
        self.coef_shape = (c, h // f, w // f, f * f)
        s = torch.zeros(self.coef_shape, dtype=torch.float64)
        s[..., 0] = 1.0 / f
        self._s = s

    def input_shape(self, out_shape):
        c, h, w = out_shape
        return (c, h * self.factor, w * self.factor)

    @property
    def s(self):
        self._require_bound()
        return self._s

    def Vt(self, x):
        f = self.factor
        blocks = rearrange(x, "n c (h a) (w b) -> n c h w (a b)", a=f, b=f)
        return blocks @ self._like(self._q, x)

    def V(self, c):
        f = self.factor
        return rearrange(c @ self._like(self._q, c).T, "n c h w (a b) -> n c (h a) (w b)", a=f, b=f)

    def Ut(self, y):
        out = y.new_zeros(*y.shape, self.factor * self.factor)
        out[..., 0] = y
        return out

    def U(self, c):
        return c[..., 0]

    def __repr__(self) -> str:
        return f"Downsample({self.factor})"


def _conv_matrix(kernel: Tensor, n: int) -> Tensor:
    """``(n, n)`` matrix of the 'same'-size 1-D correlation with ``kernel`` and zero padding."""
    k = kernel.numel()
    a = torch.zeros(n, n, dtype=torch.float64)
    for j in range(k):  # k small: one diagonal per tap
        offset = j - k // 2
        if abs(offset) < n:
            a += kernel[j] * torch.diag(torch.ones(n - abs(offset), dtype=torch.float64), offset)
    return a


class Blur(_ShapeFree):
    """Separable blur (deblurring): every channel is filtered along H and W by 1-D kernels, zero padding.

    A = A_H (x) A_W per channel; each 1-D matrix has its own SVD A_H = U_H S_H V_H^T (torch.linalg.svd),
    so V^T x = V_H^T x V_W and s = outer(s_H, s_W). Singular values below ``rtol * max(s)`` count as
    unobserved (a kernel whose spectrum vanishes there carries no information about those coefficients).

    Parameters
    ----------
    kernel : 1-D tensor (used along both axes) or a pair ``(kernel_h, kernel_w)`` of odd length.
    rtol : relative threshold below which a singular value is treated as 0.
    """

    def __init__(self, kernel: Tensor | Sequence[Tensor], rtol: float = 1e-6) -> None:
        super().__init__()
        kernels = (kernel, kernel) if isinstance(kernel, Tensor) else tuple(kernel)
        if len(kernels) != 2:
            raise ValueError("kernel must be a 1-D tensor or a pair of 1-D tensors")
        checked = []
        for name, k in zip(("kernel_h", "kernel_w"), kernels):
            k = torch.as_tensor(k, dtype=torch.float64)
            if k.ndim != 1 or k.numel() % 2 == 0 or not torch.isfinite(k).all():
                raise ValueError(f"{name} must be a finite 1-D tensor of odd length, got shape {tuple(k.shape)}")
            checked.append(k)
        if not 0 <= rtol < 1:
            raise ValueError(f"rtol must lie in [0, 1), got {rtol}")
        self.kernels, self.rtol = tuple(checked), rtol
        self.preserves_range = all(bool((k >= 0).all()) and abs(k.sum().item() - 1) < 1e-6 for k in checked)

    @staticmethod
    def gaussian(sigma: float, radius: int | None = None, rtol: float = 1e-6) -> "Blur":
        """An isotropic Gaussian blur of standard deviation ``sigma`` pixels (normalised kernel)."""
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        radius = max(1, math.ceil(2 * sigma)) if radius is None else radius
        x = torch.arange(-radius, radius + 1, dtype=torch.float64)
        k = torch.exp(-0.5 * (x / sigma) ** 2)
        return Blur(k / k.sum(), rtol=rtol)

    def _setup(self, in_shape):
        c, h, w = in_shape
        uh, sh, vht = torch.linalg.svd(_conv_matrix(self.kernels[0], h))
        uw, sw, vwt = torch.linalg.svd(_conv_matrix(self.kernels[1], w))
        self.in_shape = self.out_shape = self.coef_shape = in_shape
        self._uh, self._vh, self._uw, self._vw = uh, vht.T, uw, vwt.T
        s = (sh[:, None] * sw[None, :]).expand(c, h, w).clone()
        self._s = torch.where(s > self.rtol * s.max(), s, torch.zeros_like(s))

    def input_shape(self, out_shape):
        return tuple(out_shape)

    @property
    def s(self):
        self._require_bound()
        return self._s

    def _sandwich(self, left: Tensor, x: Tensor, right: Tensor) -> Tensor:
        return torch.einsum("ai,nciw,wb->ncab", self._like(left, x), x, self._like(right, x))

    def Vt(self, x):
        return self._sandwich(self._vh.T, x, self._vw)

    def V(self, c):
        return self._sandwich(self._vh, c, self._vw.T)

    def Ut(self, y):
        return self._sandwich(self._uh.T, y, self._uw)

    def U(self, c):
        return self._sandwich(self._uh, c, self._uw.T)

    def __repr__(self) -> str:
        return f"Blur(taps={self.kernels[0].numel()}x{self.kernels[1].numel()})"


class Grayscale(ChannelBasis, _ShapeFree):
    """Channel averaging: ``(C, H, W) -> (1, H, W)``, y = mean over channels.

    The row (1/C) 1^T has norm 1/sqrt(C): one singular value 1/sqrt(C) per pixel, on the channel
    direction 1/sqrt(C); the other C - 1 channel directions are unobserved.
    """

    preserves_range = True

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        if not isinstance(channels, int) or channels < 2:
            raise ValueError(f"channels must be an integer >= 2, got {channels!r}")
        self.channels = channels
        self._q = _basis_with_constant_first(channels)

    def _setup(self, in_shape):
        c, h, w = in_shape
        if c != self.channels:
            raise ValueError(f"observation: Grayscale({self.channels}) needs {self.channels} channels, got {c}")
        self.in_shape = self.coef_shape = in_shape
        self.out_shape = (1, h, w)
        s = torch.zeros(in_shape, dtype=torch.float64)
        s[0] = 1.0 / math.sqrt(c)
        self._s = s

    def input_shape(self, out_shape):
        return (self.channels, *out_shape[1:])

    @property
    def s(self):
        self._require_bound()
        return self._s

    def __repr__(self) -> str:
        return f"Grayscale({self.channels})"


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
