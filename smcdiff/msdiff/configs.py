r"""Configurations of the multiscale model and of its uniform baseline, with matched architectures (§4.1).

:func:`matched_configs` builds both models from one backbone family (channel multipliers
(1, 2, 2, 2), self-attention in the second level, depth limited by the resolution) and picks
per-scale widths, non-increasing from fine to coarse, so that the multiscale model's total
parameter count is as close as possible to the uniform model's (§4.1). Inputs are preconditioned by
the root mean square of each coefficient group (:func:`group_rms`), so that every scale sees
unit-scale inputs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from ..sde import VP
from .haar import HaarPacking
from .networks import UNetSpec, blocks_for
from .process import check_positive_int, snr_range

__all__ = ["MultiscaleConfig", "UniformConfig", "group_rms", "matched_configs"]


def _baseline_snrs(eps: float) -> tuple[float, float]:
    return snr_range(VP(beta_min=0.1, beta_max=20.0, eps=eps))


@dataclass(frozen=True)
class MultiscaleConfig:
    """Shape, forward process and per-scale networks of a :class:`~smcdiff.msdiff.models.MultiscaleModel`.

    Attributes
    ----------
    channels, image_size : images are (channels, image_size, image_size).
    levels : n, the number of Haar levels (n + 1 scales).
    unets : n + 1 :class:`UNetSpec`, for scales 1..n+1 (finest first).
    snr_max, snr_min : None = those of the baseline VP(0.1, 20) at ``eps`` and at 1.
    eps : smallest time.
    data_rms : n + 1 root-mean-square values of the groups [a_n, d_n, ..., d_1] for the input
        preconditioning (see :func:`group_rms`).
    """

    channels: int = 1
    image_size: int = 8
    levels: int = 2
    unets: tuple[UNetSpec, ...] = ()
    snr_max: float | None = None
    snr_min: float | None = None
    eps: float = 1e-3
    data_rms: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        packing = HaarPacking(self.channels, self.image_size, self.image_size, self.levels)
        if self.levels < 1:
            raise ValueError(f"levels must be at least 1, got {self.levels}")
        unets = tuple(u if isinstance(u, UNetSpec) else UNetSpec(**u) for u in self.unets)
        if len(unets) != self.levels + 1:
            raise ValueError(f"unets must hold levels + 1 = {self.levels + 1} specs, got {len(unets)}")
        for i, u in enumerate(unets, start=1):
            u.check_resolution(packing.scale_shape(i)[1], f"unets[{i - 1}] (scale {i})")
        object.__setattr__(self, "unets", unets)
        if self.snr_max is None or self.snr_min is None:
            hi, lo = _baseline_snrs(self.eps)
            object.__setattr__(self, "snr_max", float(hi if self.snr_max is None else self.snr_max))
            object.__setattr__(self, "snr_min", float(lo if self.snr_min is None else self.snr_min))
        rms = (1.0,) * (self.levels + 1) if self.data_rms is None else tuple(float(v) for v in self.data_rms)
        if len(rms) != self.levels + 1 or not all(v > 0 and math.isfinite(v) for v in rms):
            raise ValueError(f"data_rms must hold levels + 1 = {self.levels + 1} positive values, got {self.data_rms}")
        object.__setattr__(self, "data_rms", rms)

    @property
    def packing(self) -> HaarPacking:
        return HaarPacking(self.channels, self.image_size, self.image_size, self.levels)

    def to_dict(self) -> dict:
        """The constructor's arguments as JSON values (``MultiscaleConfig(**config.to_dict()) == config``)."""
        return dict(
            channels=self.channels,
            image_size=self.image_size,
            levels=self.levels,
            unets=[u.to_dict() for u in self.unets],
            snr_max=self.snr_max,
            snr_min=self.snr_min,
            eps=self.eps,
            data_rms=list(self.data_rms),
        )


@dataclass(frozen=True)
class UniformConfig:
    """The uniform baseline: beta-linear VP(beta_min, beta_max) and one full-resolution UNet."""

    channels: int = 1
    image_size: int = 8
    unet: UNetSpec = field(default_factory=UNetSpec)
    beta_min: float = 0.1
    beta_max: float = 20.0
    eps: float = 1e-3
    data_rms: float = 1.0

    def __post_init__(self) -> None:
        check_positive_int("channels", self.channels)
        check_positive_int("image_size", self.image_size)
        if not isinstance(self.unet, UNetSpec):
            object.__setattr__(self, "unet", UNetSpec(**self.unet))
        self.unet.check_resolution(self.image_size, "unet")
        if not (self.data_rms > 0 and math.isfinite(self.data_rms)):
            raise ValueError(f"data_rms must be positive, got {self.data_rms}")

    def to_dict(self) -> dict:
        """The constructor's arguments as JSON values (``UniformConfig(**config.to_dict()) == config``)."""
        d = asdict(self)
        d["unet"] = self.unet.to_dict()
        return d


def group_rms(packing: HaarPacking, images: Tensor) -> tuple[float, ...]:
    """Root mean square of each coefficient group [a_n, d_n, ..., d_1] of ``images: (N, C, H, W)``."""
    c = packing.forward(images.to(torch.float64))
    return tuple(float(p.pow(2).mean().sqrt().clamp_min(1e-3)) for p in c.split(packing.group_sizes(), dim=1))


def matched_configs(
    image_size: int,
    levels: int,
    *,
    channels: int = 1,
    base: int = 32,
    max_blocks: int | None = None,
    norm_num_groups: int = 8,
    images: Tensor | None = None,
    eps: float = 1e-3,
) -> tuple[UniformConfig, MultiscaleConfig]:
    """Uniform and multiscale configurations of one backbone family with matched parameter counts (§4.1).

    The uniform UNet has ``blocks = min(max_blocks, log2(image_size))`` levels and width ``base``;
    scale i's UNet has ``min(blocks, log2(size_i) + 1)`` levels at its size ``image_size / 2^(i-1)``.
    The per-scale widths, multiples of ``norm_num_groups`` between ``norm_num_groups`` and ``base``
    and non-increasing from fine to coarse (a lower-dimensional distribution needs a less expressive
    network, §4.1), are those whose total parameter count is closest to the uniform model's.

    Parameters
    ----------
    max_blocks : None = 3 for images up to 8x8, 4 above.
    images : (N, C, H, W), optional training images for the preconditioning RMS values.
    """
    packing = HaarPacking(channels, image_size, image_size, levels)
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    if max_blocks is None:
        max_blocks = 3 if image_size <= 8 else 4
    check_positive_int("max_blocks", max_blocks)
    blocks = min(max_blocks, max(1, int(math.log2(image_size))))
    uniform_spec = UNetSpec(base=base, blocks=blocks, norm_num_groups=norm_num_groups)
    target = uniform_spec.num_parameters(channels)
    scale_blocks = [blocks_for(packing.scale_shape(i)[1], blocks) for i in range(1, levels + 2)]
    widths = range(norm_num_groups, base + 1, norm_num_groups)
    best = None
    for ws in itertools.product(widths, repeat=levels + 1):
        if any(a < b for a, b in zip(ws, ws[1:])):
            continue
        total = sum(UNetSpec(base=w, blocks=b, norm_num_groups=norm_num_groups).num_parameters(channels) for w, b in zip(ws, scale_blocks))
        key = (abs(total - target), tuple(-w for w in ws))
        if best is None or key < best[0]:
            best = (key, ws)
    specs = tuple(UNetSpec(base=w, blocks=b, norm_num_groups=norm_num_groups) for w, b in zip(best[1], scale_blocks))
    if images is not None:
        pixel_rms = float(images.to(torch.float64).pow(2).mean().sqrt())
        rms: tuple[float, ...] | None = group_rms(packing, images)
    else:
        pixel_rms, rms = 1.0, None
    uniform = UniformConfig(channels, image_size, uniform_spec, eps=eps, data_rms=pixel_rms)
    multiscale = MultiscaleConfig(channels, image_size, levels, specs, eps=eps, data_rms=rms)
    return uniform, multiscale
