"""Configuration of the CDE / CDiffE / CMDE estimators ("Non-Uniform Diffusion Models" §3.4, App. B).

A :class:`ConditionalConfig` fixes the estimator, the VE SDE of x (and of y for the joint
estimators), the observation operator ("task") and the ``UNet2DModel`` backbone; see
:mod:`smcdiff.msdiff.conditional` for the estimators themselves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, get_args

__all__ = ["Estimator", "Task", "ConditionalConfig"]

Estimator = Literal["cde", "cdiffe", "cmde"]
Task = Literal["inpaint", "sr"]


@dataclass(frozen=True)
class ConditionalConfig:
    """Estimator, SDE, observation operator and backbone of a :class:`~smcdiff.msdiff.estimator.ConditionalEstimator`.

    Attributes
    ----------
    estimator : {"cde", "cdiffe", "cmde"}
    task : {"inpaint", "sr"}
        The observation operator A (see :mod:`smcdiff.msdiff.observation`).
    channels : int
        C_x = C_y, channels of the target image and of the condition image.
    image_size : int
        H = W.
    sigma_min, sigma_max : float
        VE schedule of x (and of y for CDiffE).
    sigma_y_max : float or None
        Terminal noise of y: required for CMDE (and must be below ``sigma_max``), set to
        ``sigma_max`` for CDiffE, None for CDE.
    mask_fraction : float
        Fraction of the image covered by the square hole (inpainting).
    sr_factor : int
        Down-sampling factor of the average pooling (super-resolution).
    sigma_data : float
        Data scale in the input preconditioning 1 / sqrt(sigma^2 + sigma_data^2).
    block_out_channels, layers_per_block, attention_levels, norm_num_groups, attention_head_dim
        ``UNet2DModel`` architecture; ``attention_levels[i]`` puts self-attention in level i.
    """

    estimator: Estimator
    task: Task = "inpaint"
    channels: int = 1
    image_size: int = 8
    sigma_min: float = 0.01
    sigma_max: float = 10.0
    sigma_y_max: float | None = None
    mask_fraction: float = 0.25
    sr_factor: int = 4
    sigma_data: float = 0.5
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    attention_levels: tuple[bool, ...] = (False, True, False)
    norm_num_groups: int = 8
    attention_head_dim: int = 32

    def __post_init__(self) -> None:
        if self.estimator not in get_args(Estimator):
            raise ValueError(f"estimator must be one of {get_args(Estimator)}, got {self.estimator!r}")
        if self.task not in get_args(Task):
            raise ValueError(f"task must be one of {get_args(Task)}, got {self.task!r}")
        for name in ("channels", "image_size", "sr_factor", "layers_per_block", "norm_num_groups", "attention_head_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={self.sigma_min}, sigma_max={self.sigma_max}")
        if self.estimator == "cde" and self.sigma_y_max is not None:
            raise ValueError("sigma_y_max must be None for the CDE estimator (y is not diffused)")
        if self.estimator == "cdiffe":
            if self.sigma_y_max is not None and self.sigma_y_max != self.sigma_max:
                raise ValueError(
                    f"sigma_y_max must equal sigma_max for CDiffE (same speed), got {self.sigma_y_max}; use 'cmde'"
                )
            object.__setattr__(self, "sigma_y_max", float(self.sigma_max))
        if self.estimator == "cmde":
            if self.sigma_y_max is None or not self.sigma_min < self.sigma_y_max < self.sigma_max:
                raise ValueError(
                    f"sigma_y_max must lie in (sigma_min, sigma_max) = ({self.sigma_min}, {self.sigma_max}) for CMDE, "
                    f"got {self.sigma_y_max}"
                )
        if not 0 < self.mask_fraction < 1:
            raise ValueError(f"mask_fraction must lie in (0, 1), got {self.mask_fraction}")
        if self.task == "sr" and self.image_size % self.sr_factor:
            raise ValueError(f"sr_factor ({self.sr_factor}) must divide image_size ({self.image_size})")
        if not self.sigma_data > 0:
            raise ValueError(f"sigma_data must be positive, got {self.sigma_data}")
        object.__setattr__(self, "block_out_channels", tuple(int(c) for c in self.block_out_channels))
        object.__setattr__(self, "attention_levels", tuple(bool(a) for a in self.attention_levels))
        if len(self.attention_levels) != len(self.block_out_channels):
            raise ValueError(
                f"attention_levels ({len(self.attention_levels)}) must have one entry per block_out_channels "
                f"({len(self.block_out_channels)})"
            )
        if any(c < 1 or c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(f"block_out_channels must be multiples of norm_num_groups, got {self.block_out_channels}")

    @property
    def diffusive(self) -> bool:
        """True for CDiffE and CMDE, whose network models the joint score of (x_t, y_t)."""
        return self.estimator != "cde"

    @property
    def aux_channels(self) -> int:
        """Channels of the undiffused operator input: the mask for inpainting, none for SR."""
        return 1 if self.task == "inpaint" else 0

    @property
    def out_channels(self) -> int:
        """C_x for CDE, C_x + C_y for the joint score (App. B: 3 vs 6 filters on RGB)."""
        return 2 * self.channels if self.diffusive else self.channels

    @property
    def in_channels(self) -> int:
        """Target, condition and operator channels."""
        return 2 * self.channels + self.aux_channels

    def to_dict(self) -> dict:
        """The constructor's arguments as JSON values (``ConditionalConfig(**config.to_dict()) == config``)."""
        d = asdict(self)
        d["block_out_channels"] = list(self.block_out_channels)
        d["attention_levels"] = list(self.attention_levels)
        return d
