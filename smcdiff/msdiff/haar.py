r"""The n-level orthonormal 2-D Haar transform and the packing [a_n, d_n, ..., d_1] ("Non-Uniform Diffusion Models" §3.3).

One level maps each 2x2 block [[x00, x01], [x10, x11]] of every channel to

    a  = (x00 + x01 + x10 + x11) / 2        (approximation)
    dh = (x00 - x01 + x10 - x11) / 2        (detail across columns)
    dv = (x00 + x01 - x10 - x11) / 2        (detail across rows)
    dd = (x00 - x01 - x10 + x11) / 2        (diagonal detail)

i.e. multiplication by K = H_2 (x) H_2 / 2 with H_2 = [[1, 1], [1, -1]]. K is symmetric and orthogonal,
so it is its own inverse and the transform preserves the Euclidean norm. Applying it again to the
approximation ``a`` gives the next level: ``a_0 = x``, ``(a_i, d_i) = haar_step(a_{i-1})``.

Shapes, for x: (B, C, H, W) and level i: a_i is (B, C, H/2^i, W/2^i) and d_i is (B, C, 3, H/2^i, W/2^i)
with the orientations (dh, dv, dd) on axis 2.

Packing. The coefficients of n levels are concatenated into one flat vector per image,

    c = [a_n, d_n, d_{n-1}, ..., d_1] in R^D,   D = C H W,

each group flattened in C-order. Scale i in 1..n+1 of the multiscale model works on the prefix
c_i = [a_n, d_n, ..., d_i] (c_{n+1} = a_n) of length D_i = D / 4^(i-1) (D / 4^n for i = n+1), which is
the (n + 1 - i)-level packing of the image a_{i-1} of size (C, H/2^(i-1), W/2^(i-1)). Because the
transform is orthonormal, a score (or a noise) maps between that image and c_i by the same linear map:
if c = K x with K orthogonal, grad_c log p(c) = K grad_x log p(x).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor

__all__ = ["haar_step", "inverse_haar_step", "haar", "inverse_haar", "HaarPacking"]


def _kernel(like: Tensor) -> Tensor:
    """K = H_2 (x) H_2 / 2, shape (4, 4); rows (a, dh, dv, dd), columns (x00, x01, x10, x11)."""
    return torch.tensor(
        [[1.0, 1.0, 1.0, 1.0], [1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0], [1.0, -1.0, -1.0, 1.0]],
        dtype=like.dtype,
        device=like.device,
    ).mul_(0.5)


def _check_image(x: Tensor, name: str, factor: int) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4:
        raise ValueError(f"{name} must be a tensor of shape (B, C, H, W), got {getattr(x, 'shape', type(x).__name__)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    h, w = x.shape[-2:]
    if h % factor or w % factor or h == 0 or w == 0:
        raise ValueError(f"{name} has spatial size {h}x{w}, which must be a positive multiple of {factor}")


def _check_levels(levels: int) -> None:
    if not isinstance(levels, int) or isinstance(levels, bool) or levels < 0:
        raise ValueError(f"levels must be a non-negative integer, got {levels!r}")


def haar_step(x: Tensor) -> tuple[Tensor, Tensor]:
    """One level of the orthonormal Haar transform.

    Parameters
    ----------
    x : (B, C, H, W) with H and W even.

    Returns
    -------
    a : (B, C, H/2, W/2)
    d : (B, C, 3, H/2, W/2), orientations (dh, dv, dd).
    """
    _check_image(x, "x", 2)
    blocks = rearrange(x, "b c (h p) (w q) -> b c h w (p q)", p=2, q=2)
    coef = blocks @ _kernel(x).T  # (B, C, h, w, 4)
    a = coef[..., 0]
    d = rearrange(coef[..., 1:], "b c h w k -> b c k h w")
    return a, d


def inverse_haar_step(a: Tensor, d: Tensor) -> Tensor:
    """Inverse of :func:`haar_step`: ``a: (B, C, h, w)``, ``d: (B, C, 3, h, w)`` -> ``(B, C, 2h, 2w)``."""
    _check_image(a, "a", 1)
    if not isinstance(d, Tensor) or d.shape != (*a.shape[:2], 3, *a.shape[2:]):
        raise ValueError(f"d must have shape {(*a.shape[:2], 3, *a.shape[2:])}, got {tuple(getattr(d, 'shape', ()))}")
    coef = torch.cat([a[..., None], rearrange(d, "b c k h w -> b c h w k")], dim=-1)
    blocks = coef @ _kernel(a)  # K is symmetric and orthogonal: K^{-1} = K = K^T
    return rearrange(blocks, "b c h w (p q) -> b c (h p) (w q)", p=2, q=2)


def haar(x: Tensor, levels: int) -> tuple[Tensor, list[Tensor]]:
    """``levels``-level Haar transform.

    Parameters
    ----------
    x : (B, C, H, W), H and W multiples of 2^levels.
    levels : n >= 0.

    Returns
    -------
    a_n : (B, C, H/2^n, W/2^n)
    details : [d_n, d_{n-1}, ..., d_1], d_i of shape (B, C, 3, H/2^i, W/2^i) (coarsest first).
    """
    _check_levels(levels)
    _check_image(x, "x", 2**levels)
    details = []
    a = x
    for _ in range(levels):
        a, d = haar_step(a)
        details.append(d)
    return a, details[::-1]


def inverse_haar(a: Tensor, details: list[Tensor]) -> Tensor:
    """Inverse of :func:`haar`: ``a = a_n``, ``details = [d_n, ..., d_1]`` -> ``(B, C, H, W)``."""
    x = a
    for d in details:
        x = inverse_haar_step(x, d)
    return x


@dataclass(frozen=True)
class HaarPacking:
    """Packing of the ``levels``-level Haar coefficients of (C, H, W) images into flat vectors.

    Parameters
    ----------
    channels, height, width : the image shape; height and width must be multiples of 2^levels.
    levels : n >= 0 (n = 0 packs the image itself).

    Notes
    -----
    Groups are numbered in packing order g = 0..n: group 0 is a_n and group g >= 1 is d_{n+1-g}.
    :meth:`group_level` gives, per coordinate, the level of its group (i for d_i, n + 1 for a_n): the
    multiscale forward process uses t_end = level / (n + 1).
    """

    channels: int
    height: int
    width: int
    levels: int

    def __post_init__(self) -> None:
        for name in ("channels", "height", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        _check_levels(self.levels)
        f = 2**self.levels
        if self.height % f or self.width % f:
            raise ValueError(f"height and width ({self.height}x{self.width}) must be multiples of 2^levels = {f}")

    @property
    def dim(self) -> int:
        """D = C H W."""
        return self.channels * self.height * self.width

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def num_scales(self) -> int:
        """n + 1 scales (and n + 1 coefficient groups)."""
        return self.levels + 1

    def _check_scale(self, i: int) -> None:
        if not isinstance(i, int) or isinstance(i, bool) or not 1 <= i <= self.num_scales:
            raise ValueError(f"scale must be an integer in 1..{self.num_scales}, got {i!r}")

    def scale_shape(self, i: int) -> tuple[int, int, int]:
        """Image shape of c_i: ``(C, H / 2^(i-1), W / 2^(i-1))``; for i = n + 1 this is a_n's shape."""
        self._check_scale(i)
        f = 2 ** (i - 1)
        return (self.channels, self.height // f, self.width // f)

    def scale_dim(self, i: int) -> int:
        """D_i, the length of c_i = [a_n, d_n, ..., d_i] (c_{n+1} = a_n)."""
        c, h, w = self.scale_shape(i)
        return c * h * w

    def group_sizes(self) -> list[int]:
        """Sizes of the groups in packing order [a_n, d_n, ..., d_1]."""
        n, c = self.levels, self.channels
        a = c * (self.height >> n) * (self.width >> n)
        return [a] + [3 * c * (self.height >> i) * (self.width >> i) for i in range(n, 0, -1)]

    def group_level(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """Per coordinate, the level of its group: i for d_i, n + 1 for a_n; shape ``(D,)``."""
        n = self.levels
        levels = [n + 1] + list(range(n, 0, -1))
        return torch.cat([torch.full((s,), float(lv), dtype=dtype) for s, lv in zip(self.group_sizes(), levels)])

    # ---- packing ----
    def pack(self, a: Tensor, details: list[Tensor]) -> Tensor:
        """``a_n: (B, C, h, w)``, ``details = [d_n, ..., d_k]`` -> flat ``(B, D')``."""
        return torch.cat([a.flatten(1)] + [d.flatten(1) for d in details], dim=1)

    def unpack(self, c: Tensor, i: int = 1) -> tuple[Tensor, list[Tensor]]:
        """Split c_i ``(B, D_i)`` into ``a_n`` and ``[d_n, ..., d_i]``."""
        self._check_scale(i)
        self._check_flat(c, i)
        n, ch = self.levels, self.channels
        sizes = self.group_sizes()[: n + 2 - i]
        parts = c.split(sizes, dim=1)
        a = parts[0].reshape(c.shape[0], ch, self.height >> n, self.width >> n)
        details = [
            p.reshape(c.shape[0], ch, 3, self.height >> lv, self.width >> lv) for p, lv in zip(parts[1:], range(n, 0, -1))
        ]
        return a, details

    def _check_flat(self, c: Tensor, i: int) -> None:
        d = self.scale_dim(i)
        if not isinstance(c, Tensor) or c.ndim != 2 or c.shape[1] != d:
            raise ValueError(f"c must have shape (B, {d}) for scale {i}, got {tuple(getattr(c, 'shape', ()))}")

    # ---- transforms ----
    def forward(self, x: Tensor) -> Tensor:
        """Packed coefficients ``c = [a_n, d_n, ..., d_1]`` of images ``x: (B, C, H, W)``, shape ``(B, D)``."""
        return self.from_image(x, 1)

    def inverse(self, c: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` of packed coefficients ``c: (B, D)``."""
        return self.to_image(c, 1)

    def to_image(self, c: Tensor, i: int) -> Tensor:
        """The image of c_i: the (n + 1 - i)-level inverse Haar transform, ``(B, D_i) -> (B, *scale_shape(i))``.

        For i >= 2 this is a_{i-1}, the approximation at resolution H / 2^(i-1) (2^(i-1) times the
        local mean of the image, by orthonormality).
        """
        a, details = self.unpack(c, i)
        return inverse_haar(a, details)

    def from_image(self, x: Tensor, i: int) -> Tensor:
        """Inverse of :meth:`to_image`: ``(B, *scale_shape(i)) -> c_i (B, D_i)``."""
        self._check_scale(i)
        shape = self.scale_shape(i)
        if not isinstance(x, Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"x must have shape (B, {', '.join(map(str, shape))}), got {tuple(getattr(x, 'shape', ()))}")
        a, details = haar(x, self.levels + 1 - i)
        return self.pack(a, details)
