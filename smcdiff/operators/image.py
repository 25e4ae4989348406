"""Operators on images ``(C, H, W)`` whose SVD follows from the image size: block averaging, separable blur,
channel averaging."""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Sequence

import torch
from einops import rearrange
from torch import Tensor

from .base import Operator


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
