r"""deepinv interoperability (optional: ``pip install deepinv``; the core never imports this module).

Three bridges:

- :func:`from_deepinv_physics`: a deepinv linear physics (its forward operator and Gaussian noise model)
  as an :class:`smcdiff.operators.Operator` and the noise std, so that smcdiff's samplers can
  condition on deepinv measurements;
- :class:`DeepinvDenoiser` / :func:`digits_denoiser`: an smcdiff score model (e.g. the shipped digits
  model) as a ``deepinv.models.Denoiser``, for deepinv's plug-and-play and diffusion solvers;
- :class:`DiffUNetScore`: deepinv's ``DiffUNet`` (the guided-diffusion / ADM architecture, e.g. the
  FFHQ or ImageNet checkpoints deepinv downloads) as an epsilon-predicting score for the DDPM schedule
  it was trained with. (Any deepinv denoiser, ``DiffUNet.forward`` included, also works through
  :class:`smcdiff.adapters.DenoiserScore` with ``data_range=(0, 1)``.)

The last two live in :mod:`smcdiff.adapters.deepinv_models` and are importable from here.

Data ranges
-----------
deepinv's images live in [0, 1], smcdiff's in [-1, 1]: u = a x + b with a = 1/2, b = 1/2 by default
(``data_range``). A linear physics y = A u + sigma_y eps then reads, for smcdiff's x,

    (y - A(b 1)) / a = A x + (sigma_y / a) eps,

so the operator is A itself, the noise std is sigma_y / a, and :meth:`DeepinvOperator.measurement`
turns a deepinv ``y`` into the smcdiff measurement; :meth:`DeepinvOperator.to_physics_range` maps
samples back.

Which physics are supported
---------------------------
An smcdiff operator needs a real SVD A = U diag(s) V^T with V square and orthogonal (the samplers move
particles between the data and the full coefficient grid). This module takes:

1. matrix-free, at any size: ``DecomposablePhysics`` whose ``V_adjoint`` maps onto a real grid of the
   input's size with ``V`` its inverse (checked on random probes): ``Inpainting``, ``Demosaicing``,
   ``Denoising``, ``SinglePixelCamera(fast=True)`` (Hadamard), single-coil ``MRI`` (deepinv's real
   2-channel images; the orthonormal FFT is a real orthogonal map of them) and user-defined
   decomposable physics of that kind; ``Decolorize`` (its 1-channel V is completed here to an
   orthogonal channel basis); ``Downsampling(filter=None)`` (bare decimation, a mask on the sub-grid);
2. as an explicit matrix (its SVD computed once, :class:`smcdiff.operators.Dense`), any real
   ``LinearPhysics`` whose input has at most ``max_dense`` elements: ``CompressedSensing``,
   ``SinglePixelCamera(fast=False)``, ``Blur``, ``BlurFFT``, filtered ``Downsampling``,
   ``Tomography``, ... on small images.

Refused with ``ValueError``: non-linear physics, complex-valued ones (``CompressedSensing`` with
``dtype=torch.cfloat``), and physics without a real square-V SVD larger than ``max_dense`` (e.g.
``BlurFFT``, whose SVD is complex, on the rfft half-spectrum; ``Blur``; filtered ``Downsampling``;
``MultiCoilMRI``). Noise models: ``GaussianNoise`` (a scalar, or one value for all rows) and
``ZeroNoise``; others raise ``ValueError``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from deepinv.physics import (
    Decolorize,
    Downsampling,
    GaussianNoise,
    LinearPhysics,
    Physics,
    ZeroNoise,
)
from deepinv.physics.forward import DecomposablePhysics
from torch import Tensor

from smcdiff.operators import ChannelBasis, Dense, Operator, basis_with_first

from .deepinv_models import DeepinvDenoiser, DiffUNetScore, digits_denoiser
from .denoiser import _data_range

__all__ = [
    "from_deepinv_physics",
    "noise_std_of",
    "DeepinvOperator",
    "DeepinvDenoiser",
    "digits_denoiser",
    "DiffUNetScore",
    "SUPPORTED_PHYSICS",
]

SUPPORTED_PHYSICS = (
    "supported deepinv physics: matrix-free at any size, DecomposablePhysics with a real square orthogonal V "
    "(Inpainting, Demosaicing, Denoising, SinglePixelCamera(fast=True), MRI, Decolorize) and "
    "Downsampling(filter=None); "
    "as an explicit matrix, any real LinearPhysics with at most max_dense input elements (CompressedSensing, "
    "SinglePixelCamera(fast=False), Blur, BlurFFT, filtered Downsampling, Tomography, ... on small images). "
    "Not supported: non-linear or complex-valued physics (complex CompressedSensing), and larger physics "
    "without a real square-V SVD (BlurFFT's is complex; Blur, filtered Downsampling, MultiCoilMRI)"
)

_ZERO_SINGULAR = 1e-5  # deepinv's A_dagger treats singular values <= 1e-5 as 0; so does this module
_PROBE_RTOL = 1e-4  # deepinv stores its operators in float32: maps are checked to this relative accuracy


# ---------------------------------------------------------------------------------------------------
# operators
# ---------------------------------------------------------------------------------------------------


class DeepinvOperator(Operator):
    """An smcdiff operator made from a deepinv physics (see :func:`from_deepinv_physics`).

    Attributes
    ----------
    physics : the deepinv physics.
    data_range : (low, high), the physics' data range; smcdiff's is [-1, 1], u = a x + b.
    """

    physics: Physics
    data_range: tuple[float, float]

    def _set_range(self, data_range: tuple[float, float]) -> None:
        lo, hi = data_range
        self.data_range = (lo, hi)
        self._a, self._b = (hi - lo) / 2, (hi + lo) / 2

    def measurement(self, y: Tensor) -> Tensor:
        """The smcdiff measurement (y - A(b 1)) / a of a deepinv measurement ``y: (B, *out_shape)``."""
        offset = self.A(torch.full((1, *self.in_shape), self._b, dtype=y.dtype, device=y.device))
        return (y - offset) / self._a

    def to_physics_range(self, x: Tensor) -> Tensor:
        """smcdiff samples ``x`` (in [-1, 1]) in the physics' data range: a x + b."""
        return self._a * x + self._b

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.physics).__name__}, in_shape={tuple(self.in_shape)})"


class _SVDPhysics(DeepinvOperator):
    """Matrix-free: ``Vt``/``V``/``Ut``/``U`` call the physics' ``V_adjoint``/``V``/``U_adjoint``/``U``.

    s = |mask| broadcast to the coefficient grid (0 where |mask| <= 1e-5), and the signs of the mask
    are moved into U so that singular values are non-negative: U' = U diag(sign), U'^T = diag(sign) U^T.
    """

    def __init__(self, physics, in_shape, coef_shape, out_shape, mask: Tensor, coordinatewise: bool, data_range):
        self.physics = physics
        self._dtype, self._device = _placement(physics)
        self.in_shape, self.coef_shape, self.out_shape = tuple(in_shape), tuple(coef_shape), tuple(out_shape)
        self.coordinatewise = coordinatewise
        self._set_range(data_range)
        mask = mask.detach().to("cpu", torch.float64)
        grid = _on_grid(mask, self.coef_shape)
        self._sign = torch.where(grid < 0, -1.0, 1.0).to(torch.float64)
        self._s = torch.where(grid.abs() > _ZERO_SINGULAR, grid.abs(), torch.zeros_like(grid))

    @property
    def s(self):
        return self._s

    def _zero_unobserved(self, c: Tensor) -> Tensor:
        return torch.where(self.observed.to(c.device), c, torch.zeros((), dtype=c.dtype, device=c.device))

    def _call(self, fn: Callable[[Tensor], Tensor], v: Tensor) -> Tensor:
        """A physics map on ``v`` in the physics' dtype and device; the result in ``v``'s."""
        return fn(v.to(self._device, self._dtype)).to(v.device, v.dtype)

    def Vt(self, x):
        return self._call(self.physics.V_adjoint, x)

    def V(self, c):
        return self._call(self.physics.V, c)

    def Ut(self, y):
        return self._zero_unobserved(self._like(self._sign, y) * self._call(self.physics.U_adjoint, y))

    def U(self, c):
        return self._call(self.physics.U, self._like(self._sign, c) * self._zero_unobserved(c))


class _DecolorizePhysics(ChannelBasis, DeepinvOperator):
    """deepinv ``Decolorize``: y = sum_c srf_c x_c, one singular value |srf| per pixel.

    deepinv's V is the single channel direction q_0 = srf / |srf|; here it is completed to an orthogonal
    channel basis Q (first column q_0, by QR), so V^T x = Q^T x per pixel on a ``(C, H, W)`` grid with
    s = |srf| on channel 0 and 0 on the others, and U = I on channel 0.
    """

    def __init__(self, physics, in_shape, data_range):
        srf = physics.srf.detach().to("cpu", torch.float64).reshape(-1)
        c = srf.numel()
        if len(in_shape) != 3 or in_shape[0] != c:
            raise ValueError(f"in_shape must be ({c}, H, W) for this Decolorize physics, got {tuple(in_shape)}")
        self._q = basis_with_first(srf)
        self.physics = physics
        self.in_shape = self.coef_shape = tuple(in_shape)
        self.out_shape = (1, *in_shape[1:])
        self._set_range(data_range)
        s = torch.zeros(self.coef_shape, dtype=torch.float64)
        s[0] = srf.norm()
        self._s = s

    @property
    def s(self):
        return self._s


class _DecimationPhysics(DeepinvOperator):
    """deepinv ``Downsampling(filter=None)``: y = x[..., ::f, ::f], a mask on the sub-grid (V = I)."""

    coordinatewise = True

    def __init__(self, physics, in_shape, data_range):
        factor = physics.factor
        f = int(factor) if float(factor) == int(factor) else None
        if f is None or f < 1 or len(in_shape) != 3:
            raise ValueError(
                f"Downsampling(filter=None) needs an integer factor and in_shape (C, H, W), got {factor!r}, {in_shape}"
            )
        self.physics, self.factor = physics, f
        self.in_shape = self.coef_shape = tuple(in_shape)
        c, h, w = in_shape
        self.out_shape = (c, math.ceil(h / f), math.ceil(w / f))
        self._set_range(data_range)
        s = torch.zeros(self.coef_shape, dtype=torch.float64)
        s[:, ::f, ::f] = 1.0
        self._s = s
        self.coordinatewise = True

    @property
    def s(self):
        return self._s

    def Vt(self, x):
        return x

    def V(self, c):
        return c

    def Ut(self, y):
        out = y.new_zeros(y.shape[0], *self.coef_shape)
        out[..., :: self.factor, :: self.factor] = y
        return out

    def U(self, c):
        return c[..., :: self.factor, :: self.factor]


class _DensePhysics(DeepinvOperator):
    """Any small real linear physics as its explicit matrix, materialised once as A e_i for the unit
    vectors e_i (in the physics' dtype), with the SVD of :class:`smcdiff.operators.Dense`; y keeps the
    physics' output shape."""

    def __init__(self, physics, in_shape, data_range, dtype: torch.dtype, device: torch.device):
        n = math.prod(in_shape)
        columns = []
        with torch.no_grad():
            for start in range(0, n, 512):
                idx = torch.arange(start, min(n, start + 512), device=device)
                e = torch.zeros(idx.numel(), n, dtype=dtype, device=device)
                e[torch.arange(idx.numel(), device=device), idx] = 1.0
                out = physics.A(e.reshape(-1, *in_shape))
                if out.is_complex():
                    raise ValueError(f"physics {type(physics).__name__} is complex-valued; {SUPPORTED_PHYSICS}")
                columns.append(out.reshape(idx.numel(), -1).to("cpu", torch.float64))
            out_shape = tuple(out.shape[1:])
        matrix = torch.cat(columns).T  # (m, n): column i is A e_i
        self.physics = physics
        self._dense = Dense(matrix, in_shape, rtol=0.0)
        self.in_shape, self.coef_shape, self.out_shape = tuple(in_shape), self._dense.coef_shape, out_shape
        self._set_range(data_range)
        s = self._dense.s
        self._s = torch.where(s > _ZERO_SINGULAR, s, torch.zeros_like(s))

    @property
    def s(self):
        return self._s

    def Vt(self, x):
        return self._dense.Vt(x)

    def V(self, c):
        return self._dense.V(c)

    def Ut(self, y):
        c = self._dense.Ut(y.reshape(y.shape[0], -1))
        return torch.where(self.observed.to(c.device), c, torch.zeros((), dtype=c.dtype, device=c.device))

    def U(self, c):
        masked = torch.where(self.observed.to(c.device), c, torch.zeros((), dtype=c.dtype, device=c.device))
        return self._dense.U(masked).reshape(c.shape[0], *self.out_shape)


def _on_grid(mask: Tensor, coef_shape: tuple[int, ...]) -> Tensor:
    """deepinv's mask (a number, ``(*coef)``, ``(1, *coef)`` or ``(B, *coef)``, broadcastable) on the
    coefficient grid: ``coef_shape`` or ``(B, *coef_shape)`` for a mask per row."""
    rows = mask.shape[0] if mask.ndim == len(coef_shape) + 1 else 1
    if mask.ndim > len(coef_shape) + 1:
        raise ValueError(f"physics: its mask of shape {tuple(mask.shape)} does not fit the coefficient grid {coef_shape}")
    try:
        grid = torch.broadcast_to(mask, (rows, *coef_shape)).clone()
    except RuntimeError as err:
        raise ValueError(f"physics: its mask of shape {tuple(mask.shape)} does not broadcast to {coef_shape}") from err
    return grid[0] if rows == 1 else grid


def _placement(physics: Physics) -> tuple[torch.dtype, torch.device]:
    """dtype and device of the physics' first floating or complex buffer or parameter (float32 on CPU if none)."""
    for t in [*physics.buffers(), *physics.parameters()]:
        if t.is_floating_point() or t.is_complex():
            return t.dtype, t.device
    return torch.float32, torch.device("cpu")


def _close(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and bool((a - b).norm() <= _PROBE_RTOL * max(b.norm().item(), a.norm().item(), 1e-30))


def _try_svd(physics: DecomposablePhysics, in_shape, data_range, dtype, device) -> tuple[_SVDPhysics | None, str]:
    """The matrix-free operator, or None with the reason when deepinv's SVD is not real with a square orthogonal V."""
    if getattr(physics, "mask", None) is None:
        return None, "its mask (singular values) is not set"
    mask = torch.as_tensor(physics.mask)
    rows = mask.shape[0] if mask.ndim == len(in_shape) + 1 else 2  # a mask per row fixes the batch size
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(rows, *in_shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    try:
        return _probe_svd(physics, x, mask, data_range)
    except RuntimeError as err:  # a map that does not accept this input shape
        return None, f"its SVD maps fail on inputs of shape {tuple(x.shape)} ({err})"


def _probe_svd(physics, x: Tensor, mask: Tensor, data_range) -> tuple[_SVDPhysics | None, str]:
    in_shape = tuple(x.shape[1:])
    with torch.no_grad():
        coef = physics.V_adjoint(x)
        if coef.is_complex() or mask.is_complex():
            return None, "its SVD is complex-valued"
        if coef.shape[0] != x.shape[0] or coef[0].numel() != x[0].numel():
            return None, f"its V maps {tuple(in_shape)} to a coefficient grid {tuple(coef.shape[1:])} of another size"
        back = physics.V(coef)
        if not _close(back, x) or not _close(physics.V_adjoint(back), coef):
            return None, "its V is not orthogonal on the input grid"
        y = physics.A(x)
        coordinatewise = torch.equal(coef, x) and torch.equal(back, x)
        try:
            op = _SVDPhysics(physics, in_shape, coef.shape[1:], y.shape[1:], mask, coordinatewise, data_range)
        except ValueError as err:
            return None, str(err)
        if not _close(op.A(x), y):
            return None, "U diag(mask) V^T does not reproduce its A"
        c = op.Ut(y)
        if not _close(op.Ut(op.U(c)), c):
            return None, "its U is not orthogonal on the observed coefficients"
    return op, ""


def from_deepinv_physics(
    physics: Any,
    in_shape: tuple[int, ...],
    *,
    data_range: tuple[float, float] = (0.0, 1.0),
    max_dense: int = 4096,
) -> tuple[DeepinvOperator, float]:
    r"""A deepinv linear physics as an smcdiff operator, and its noise std in smcdiff units.

    Parameters
    ----------
    physics : deepinv.physics.LinearPhysics
        See the module docstring for which physics are supported matrix-free and which as a matrix.
    in_shape : tuple of int
        Event shape of the images, e.g. ``(C, H, W)`` (deepinv's ``img_size``).
    data_range : (low, high)
        The physics' data range, default deepinv's [0, 1]; smcdiff samples in [-1, 1].
    max_dense : int
        Largest number of input elements for which a physics without a usable SVD is materialised as an
        explicit matrix (O(n^2) memory, an O(n^3) SVD once).

    Returns
    -------
    operator : DeepinvOperator
        y = A x for ``x: (n, *in_shape)``, ``y: (n, *out_shape)`` with deepinv's output shape;
        ``A``, ``At`` and ``A_pinv`` agree with ``physics.A``, ``physics.A_adjoint`` and
        ``physics.A_dagger`` (up to float32 rounding). Use :meth:`DeepinvOperator.measurement` on a
        deepinv measurement before sampling, :meth:`DeepinvOperator.to_physics_range` on the samples.
    noise_std : float
        sigma_y / a: the physics' Gaussian noise std in smcdiff's units (0.0 for ``ZeroNoise``).

    Raises
    ------
    ValueError
        For an unsupported physics or noise model (the message lists the supported ones), or a bad
        ``in_shape``, ``data_range`` or ``max_dense``.
    """
    if not isinstance(physics, Physics):
        raise ValueError(f"physics must be a deepinv Physics, got {type(physics).__name__}; {SUPPORTED_PHYSICS}")
    if not isinstance(physics, LinearPhysics):
        raise ValueError(f"physics {type(physics).__name__} is not linear; {SUPPORTED_PHYSICS}")
    try:
        in_shape = tuple(int(d) for d in in_shape)
    except (TypeError, ValueError):
        raise ValueError(f"in_shape must be a tuple of positive sizes such as (C, H, W), got {in_shape!r}") from None
    if not in_shape or any(d < 1 for d in in_shape):
        raise ValueError(f"in_shape must be a non-empty tuple of positive sizes, got {in_shape!r}")
    if isinstance(max_dense, bool) or not isinstance(max_dense, int) or max_dense < 0:
        raise ValueError(f"max_dense must be a non-negative integer, got {max_dense!r}")
    data_range = _data_range(data_range)
    noise_std = noise_std_of(physics) / ((data_range[1] - data_range[0]) / 2)
    dtype, device = _placement(physics)
    if dtype.is_complex:
        raise ValueError(f"physics {type(physics).__name__} is complex-valued; {SUPPORTED_PHYSICS}")

    if isinstance(physics, Decolorize):
        return _DecolorizePhysics(physics, in_shape, data_range), noise_std
    if isinstance(physics, Downsampling) and physics.filter is None:
        return _DecimationPhysics(physics, in_shape, data_range), noise_std
    reason = "it is not a DecomposablePhysics"
    if isinstance(physics, DecomposablePhysics):
        op, reason = _try_svd(physics, in_shape, data_range, dtype, device)
        if op is not None:
            return op, noise_std
    n = math.prod(in_shape)
    if n > max_dense:
        raise ValueError(
            f"physics {type(physics).__name__} on inputs of shape {in_shape} has no usable SVD ({reason}) and "
            f"{n} > max_dense = {max_dense} elements to materialise as a matrix; {SUPPORTED_PHYSICS}"
        )
    return _DensePhysics(physics, in_shape, data_range, dtype, device), noise_std


def noise_std_of(physics: Physics) -> float:
    """The std of a physics' Gaussian noise model in its own units (0.0 for ``ZeroNoise``).

    Raises ``ValueError`` for any other noise model, or a ``GaussianNoise`` whose sigma differs between rows.
    """
    noise = getattr(physics, "noise_model", None)
    if noise is None or isinstance(noise, ZeroNoise):
        return 0.0
    if type(noise) is not GaussianNoise:
        raise ValueError(
            f"physics.noise_model is {type(noise).__name__}; smcdiff's observation model is y = A x + sigma_y eps, "
            "so only deepinv's GaussianNoise and ZeroNoise are supported"
        )
    sigma = torch.as_tensor(noise.sigma).detach().to("cpu", torch.float64).reshape(-1)
    if sigma.numel() == 0 or not torch.isfinite(sigma).all() or (sigma < 0).any():
        raise ValueError(f"physics.noise_model.sigma must be finite and >= 0, got {noise.sigma}")
    if not torch.all(sigma == sigma[0]):
        raise ValueError("physics.noise_model.sigma differs between rows; smcdiff takes one noise_std for all rows")
    return sigma[0].item()
