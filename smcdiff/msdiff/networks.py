"""The in-house models' backbone: a diffusers ``UNet2DModel`` with attention at chosen levels.

:func:`unet2d` builds it for every in-house model (the multiscale and uniform noise predictors, the
CDE / CDiffE / CMDE estimators). diffusers draws initial weights from torch's global generator, so
:func:`unet2d` draws them inside :func:`torch.random.fork_rng` seeded from the caller's
``generator`` (0 when None): the caller's global random state is neither used nor changed and the
weights depend only on ``generator``.

:class:`UNetSpec` is the backbone family of the multiscale comparison (§4.1): widths
``base * channel_mult[:blocks]``, self-attention in one level; :class:`EpsUNet` calls such a UNet as
a noise predictor of forward time ``t``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import torch
from torch import Tensor, nn

from ..score import network_timestep
from .process import check_positive_int

__all__ = ["unet2d", "UNetSpec", "EpsUNet", "blocks_for"]


def unet2d(
    *,
    sample_size: int,
    in_channels: int,
    out_channels: int,
    block_out_channels: Sequence[int],
    attention: Sequence[bool],
    layers_per_block: int,
    norm_num_groups: int,
    attention_head_dim: int,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """A ``UNet2DModel`` with one down/up block per entry of ``block_out_channels``; ``attention[k]``
    selects the attention variant of level k. Under ``torch.device("meta")`` no weights are drawn."""
    from diffusers import UNet2DModel

    seed = 0 if generator is None else int(torch.randint(0, 2**62, (), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DModel(
            sample_size=sample_size,
            in_channels=in_channels,
            out_channels=out_channels,
            block_out_channels=tuple(block_out_channels),
            down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
            up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            attention_head_dim=attention_head_dim,
        )


@dataclass(frozen=True)
class UNetSpec:
    """A ``UNet2DModel`` of the backbone family: widths ``base * channel_mult[:blocks]``, attention in level 1.

    Attributes
    ----------
    base : channels of the first level (a multiple of ``norm_num_groups``).
    blocks : number of resolution levels (``blocks - 1`` down-samplings).
    channel_mult : multipliers of ``base`` per level.
    attention_level : level with self-attention (none if ``blocks`` is smaller).
    layers_per_block, norm_num_groups, attention_head_dim : as in diffusers.
    """

    base: int = 32
    blocks: int = 3
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)
    attention_level: int = 1
    layers_per_block: int = 1
    norm_num_groups: int = 8
    attention_head_dim: int = 8

    def __post_init__(self) -> None:
        for name in ("base", "blocks", "layers_per_block", "norm_num_groups", "attention_head_dim"):
            check_positive_int(name, getattr(self, name))
        object.__setattr__(self, "channel_mult", tuple(int(m) for m in self.channel_mult))
        if self.blocks > len(self.channel_mult):
            raise ValueError(f"blocks ({self.blocks}) exceeds len(channel_mult) ({len(self.channel_mult)})")
        if self.base % self.norm_num_groups:
            raise ValueError(f"base ({self.base}) must be a multiple of norm_num_groups ({self.norm_num_groups})")

    @property
    def block_out_channels(self) -> tuple[int, ...]:
        return tuple(self.base * m for m in self.channel_mult[: self.blocks])

    def check_resolution(self, size: int, name: str = "sample_size") -> None:
        """Raise ``ValueError`` naming ``name`` unless ``size`` survives the ``blocks - 1`` down-samplings."""
        if size % 2 ** (self.blocks - 1):
            raise ValueError(f"{name}: a UNet with {self.blocks} levels needs a size divisible by {2 ** (self.blocks - 1)}, got size {size}")

    def build(self, sample_size: int, channels: int, generator: torch.Generator | None = None) -> nn.Module:
        """The ``UNet2DModel``; initial weights drawn in a forked RNG scope seeded from ``generator`` (0 if None)."""
        self.check_resolution(sample_size)
        return unet2d(sample_size=sample_size, in_channels=channels, out_channels=channels, generator=generator, **self._unet_kwargs())

    def _unet_kwargs(self) -> dict:
        return dict(
            block_out_channels=self.block_out_channels,
            attention=[k == self.attention_level for k in range(self.blocks)],
            layers_per_block=self.layers_per_block,
            norm_num_groups=self.norm_num_groups,
            attention_head_dim=self.attention_head_dim,
        )

    def num_parameters(self, channels: int = 1) -> int:
        """Parameter count, computed on the meta device (no memory, no randomness)."""
        return _count_parameters(self, channels)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        return d


@lru_cache(maxsize=256)
def _count_parameters(spec: UNetSpec, channels: int) -> int:
    with torch.device("meta"):
        unet = unet2d(sample_size=2 ** (spec.blocks - 1), in_channels=channels, out_channels=channels, **spec._unet_kwargs())
    return sum(p.numel() for p in unet.parameters())


def blocks_for(size: int, max_blocks: int) -> int:
    """Resolution levels of a UNet at ``size``: ``log2(size) + 1``, between 1 and ``max_blocks``."""
    return max(1, min(max_blocks, int(math.log2(size)) + 1))


class EpsUNet(nn.Module):
    """A ``UNet2DModel`` called as ``eps_hat = net(image, t)`` with the timestep :func:`smcdiff.score.network_timestep` (t)."""

    def __init__(self, spec: UNetSpec, sample_size: int, channels: int, generator: torch.Generator | None) -> None:
        super().__init__()
        self.unet = spec.build(sample_size, channels, generator)

    def forward(self, image: Tensor, t: Tensor) -> Tensor:
        param = next(self.unet.parameters())
        out = self.unet(image.to(param), network_timestep(t).to(param)).sample
        return out.to(device=image.device, dtype=image.dtype)
