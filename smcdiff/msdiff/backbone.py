"""The in-house models' backbone: a diffusers ``UNet2DModel`` with attention at chosen levels.

diffusers draws initial weights from torch's global generator; :func:`unet2d` draws them inside
:func:`torch.random.fork_rng` seeded from the caller's ``generator`` (0 when None), so the caller's
global random state is neither used nor changed and the weights depend only on ``generator``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["unet2d"]


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
