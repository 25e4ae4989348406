r"""Multiscale non-uniform diffusion ("Non-Uniform Diffusion Models" §3.2-3.3, §4.1) and its uniform baseline.

Forward process (§3.3, §4.1). Images x are mapped to the packed n-level Haar coefficients
c = [a_n, d_n, ..., d_1] (:class:`~smcdiff.msdiff.haar.HaarPacking`). Every coefficient diffuses by a
variance-preserving SDE with log-linear SNR (:class:`smcdiff.sde.LogLinearVP`, eq. 8-9 with a
per-coordinate terminal time): all groups start from the same ``snr_max`` at ``eps``, reach the
same ``snr_min`` at their own terminal time

    T_{a_n} = 1,    T_{d_i} = i / (n + 1),

and are frozen afterwards (f = g = 0), so in the time range

    R_i = [(i - 1)/(n + 1), i/(n + 1)]   (R_1 = [eps, 1/(n + 1)])

only c_i = [a_n, d_n, ..., d_i] moves. By default ``snr_max`` and ``snr_min`` are those of the
uniform baseline, the beta-linear VP SDE, at ``eps`` and at 1 (§4.1).

Score models (§3.3.1). Scale i has its own network s_i(c_i, t), a diffusers ``UNet2DModel`` that
sees the image of c_i (its inverse Haar transform, of size H / 2^(i-1)); the network predicts the
noise of c_i in image coordinates and the orthonormal transform maps it back exactly. Inputs are
preconditioned per coordinate by 1 / sqrt(alpha^2 rms^2 + sigma^2) (rms = the root mean square of
the coefficient's group in the training data), so that every scale sees unit-scale inputs.

Losses. Denoising score matching on scale i with t ~ U(R_i) (eq. 10):

- ``"likelihood"``: 1/2 v^T Lambda(t) v with v = grad log p(c_t | c_0) - s_i(c_t, t) and the
  likelihood weighting Lambda = G G^T = diag(g^2) of Theorem 1. For the log-linear VP,
  g^2 / sigma^2 = -d lambda / dt is a constant per group, so in noise space this is the simple
  loss with group weights (lambda_max - lambda_min) / (T_group - eps).
- ``"simple"``: || eps - eps_hat ||^2 (Ho et al. 2020), which §4.1 uses for the uniform baseline.

Both are divided by the number of coordinates D_i (a constant factor, so that the gradient scale
does not depend on the image size).

Sampling (§3.3.2). a_n ~ N(0, 1) at t = 1; Euler-Maruyama (:meth:`smcdiff.sde.SDE.reverse_kernel`)
on a_n down to n/(n+1); draw d_n from the stationary law; continue on [a_n, d_n] down to
(n-1)/(n+1); ...; on c_1 down to eps; inverse Haar. The total step count is split between the ranges
in proportion to their lengths, and each step evaluates only the network of the current scale on
the moving coefficients.

Uniform baseline (§4.1). :class:`UniformModel`: the beta-linear :class:`smcdiff.sde.VP` with one
``UNet2DModel`` at full resolution, eps-prediction and the same preconditioning.

Architectures. :func:`matched_configs` builds both models from one backbone family (channel
multipliers (1, 2, 2, 2), self-attention in the second level, depth limited by the resolution) and
picks per-scale widths, non-increasing from fine to coarse, so that the multiscale model's total
parameter count is as close as possible to the uniform model's (§4.1).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal, Protocol, get_args

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..checkpoint import load_training_state, read_training_meta, save_training_state
from ..oracle.gaussian import GaussianScore
from ..score import ScoreModel
from ..sde import SDE, VP, LogLinearVP
from .backbone import unet2d
from .haar import HaarPacking

__all__ = [
    "Weighting",
    "UNetSpec",
    "MultiscaleProcess",
    "MultiscaleConfig",
    "MultiscaleModel",
    "UniformConfig",
    "UniformModel",
    "GaussianScales",
    "ScaleScores",
    "snr_range",
    "group_rms",
    "matched_configs",
    "multiscale_sample",
    "train",
    "TrainResult",
    "load_model",
    "ASSET_DIR",
]

Weighting = Literal["likelihood", "simple"]

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "multiscale"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
TIME_SCALE = 1000.0
"""Networks receive the timestep ``t * TIME_SCALE``."""


def _positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def snr_range(sde: SDE) -> tuple[float, float]:
    """``(snr_max, snr_min)``: alpha^2 / sigma^2 of a scalar-schedule SDE at ``eps`` and at ``T``."""
    if sde.param_shape != torch.Size([]):
        raise ValueError("sde must have a scalar schedule (one speed for all coordinates)")
    log_snr = sde.log_snr(torch.tensor([sde.eps, sde.T], dtype=torch.float64))
    return math.exp(log_snr[0].item()), math.exp(log_snr[1].item())


# ----------------------------------------------------------------------------------------------
# forward process
# ----------------------------------------------------------------------------------------------
class MultiscaleProcess:
    """The non-uniform forward process of §3.3 on packed Haar coefficients.

    Parameters
    ----------
    packing : HaarPacking with n = ``packing.levels`` >= 1.
    snr_max, snr_min : SNR of every group at ``eps`` and at its terminal time.
    eps : smallest time.

    Attributes
    ----------
    sde : LogLinearVP on the full vector, ``param_shape == (D,)``, ``t_end`` = level / (n + 1).
    num_scales : n + 1.
    """

    def __init__(self, packing: HaarPacking, snr_max: float, snr_min: float, eps: float = 1e-3) -> None:
        if not isinstance(packing, HaarPacking):
            raise ValueError(f"packing must be a HaarPacking, got {type(packing).__name__}")
        if packing.levels < 1:
            raise ValueError(f"packing.levels must be at least 1 for a multiscale process, got {packing.levels}")
        self.packing = packing
        self.levels = packing.levels
        self.num_scales = packing.levels + 1
        self.t_end = packing.group_level() / self.num_scales  # (D,)
        self.sde = LogLinearVP(snr_max=snr_max, snr_min=snr_min, t_end=self.t_end, T=1.0, eps=eps)
        self.eps = self.sde.eps
        # The same SDE restricted to the prefix c_i (one LogLinearVP, another parameter tensor).
        self._scale_sdes = [
            LogLinearVP(snr_max=snr_max, snr_min=snr_min, t_end=self.t_end[: packing.scale_dim(i)], T=1.0, eps=eps)
            for i in range(1, self.num_scales + 1)
        ]

    def _check_scale(self, i: int) -> None:
        self.packing._check_scale(i)

    def scale_dim(self, i: int) -> int:
        """D_i = dim c_i."""
        return self.packing.scale_dim(i)

    def scale_sde(self, i: int) -> LogLinearVP:
        """The forward SDE of c_i: :attr:`sde` restricted to the first D_i coordinates."""
        self._check_scale(i)
        return self._scale_sdes[i - 1]

    def time_range(self, i: int) -> tuple[float, float]:
        """R_i = ``((i - 1)/(n + 1), i/(n + 1))``, with ``eps`` as the lower end of R_1."""
        self._check_scale(i)
        return (self.eps if i == 1 else (i - 1) / self.num_scales, i / self.num_scales)

    def scale_of(self, t: Tensor) -> Tensor:
        """Scale index i (1..n+1) whose range holds each time, ``(n,)`` long.

        Boundary times belong to the finer scale (``t = i/(n+1)`` -> i): exactly the coordinates with
        ``t <= t_end`` move in the SDE, and the comparison is made in ``t``'s dtype as there.
        """
        if not isinstance(t, Tensor) or t.ndim != 1 or not t.is_floating_point():
            raise ValueError(f"t must be a floating-point tensor of shape (n,), got {getattr(t, 'shape', t)!r}")
        bounds = (torch.arange(1, self.num_scales, dtype=torch.float64) / self.num_scales).to(t)
        return 1 + (t[:, None] > bounds[None]).sum(1)

    def split_steps(self, steps: int) -> list[int]:
        """Steps per scale ``[k_1, ..., k_{n+1}]`` summing to ``steps``, proportional to |R_i| (largest remainders)."""
        _positive_int("steps", steps)
        if steps < self.num_scales:
            raise ValueError(f"steps must be at least the number of scales ({self.num_scales}), got {steps}")
        lengths = [hi - lo for lo, hi in map(self.time_range, range(1, self.num_scales + 1))]
        ideal = [steps * ln / sum(lengths) for ln in lengths]
        counts = [max(1, math.floor(v)) for v in ideal]
        order = sorted(range(len(ideal)), key=lambda k: ideal[k] - math.floor(ideal[k]), reverse=True)
        for k in itertools.islice(itertools.cycle(order), max(0, steps - sum(counts))):
            counts[k] += 1
        while sum(counts) > steps:  # only when a short range was raised to one step
            counts[counts.index(max(counts))] -= 1
        return counts

    def scale_grid(self, i: int, steps: int) -> Tensor:
        """Uniform decreasing grid on R_i, ``(steps + 1,)`` float64, from i/(n+1) to its lower end."""
        _positive_int("steps", steps)
        lo, hi = self.time_range(i)
        return torch.linspace(hi, lo, steps + 1, dtype=torch.float64)

    def __repr__(self) -> str:
        p = self.packing
        return f"MultiscaleProcess(levels={self.levels}, image={p.image_shape}, sde={self.sde!r})"


class ScaleScores(Protocol):
    """What the multiscale sampler and the adapter need: the process and one score per scale."""

    process: MultiscaleProcess

    def scale_score(self, i: int, c_i: Tensor, t: Tensor) -> Tensor:
        """Score of c_i(t): ``c_i: (n, D_i)``, ``t: (n,)`` in R_i -> ``(n, D_i)``."""


class GaussianScales:
    """Exact per-scale scores of N(mean, cov) data in Haar coordinates (the non-uniform Gaussian oracle).

    Scale i gets the exact score of the marginal of c_i(t), a :class:`smcdiff.GaussianScore` of the
    sub-vector ``mean[:D_i]``, ``cov[:D_i, :D_i]`` under :meth:`MultiscaleProcess.scale_sde`.

    Parameters
    ----------
    process : MultiscaleProcess
    mean : (D,) and cov : (D, D), the law of the packed coefficients c_0.
    """

    def __init__(self, process: MultiscaleProcess, mean: Tensor, cov: Tensor) -> None:
        d = process.packing.dim
        mean, cov = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(cov, dtype=torch.float64)
        if mean.shape != (d,):
            raise ValueError(f"mean must have shape ({d},), got {tuple(mean.shape)}")
        if cov.shape != (d, d):
            raise ValueError(f"cov must have shape ({d}, {d}), got {tuple(cov.shape)}")
        self.process = process
        self.scores = [
            GaussianScore(mean[: process.scale_dim(i)], cov[: process.scale_dim(i), : process.scale_dim(i)], process.scale_sde(i))
            for i in range(1, process.num_scales + 1)
        ]

    def scale_score(self, i: int, c_i: Tensor, t: Tensor) -> Tensor:
        self.process._check_scale(i)
        return self.scores[i - 1](c_i, t)


# ----------------------------------------------------------------------------------------------
# architectures
# ----------------------------------------------------------------------------------------------
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
            _positive_int(name, getattr(self, name))
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


def _blocks_for(size: int, max_blocks: int) -> int:
    return max(1, min(max_blocks, int(math.log2(size)) + 1))


class _EpsUNet(nn.Module):
    """A ``UNet2DModel`` called as ``eps_hat = net(image, t)`` with timestep ``t * TIME_SCALE``."""

    def __init__(self, spec: UNetSpec, sample_size: int, channels: int, generator: torch.Generator | None) -> None:
        super().__init__()
        self.unet = spec.build(sample_size, channels, generator)

    def forward(self, image: Tensor, t: Tensor) -> Tensor:
        param = next(self.unet.parameters())
        out = self.unet(image.to(param), (t * TIME_SCALE).to(param)).sample
        return out.to(device=image.device, dtype=image.dtype)


# ----------------------------------------------------------------------------------------------
# configurations
# ----------------------------------------------------------------------------------------------
def _baseline_snrs(eps: float) -> tuple[float, float]:
    return snr_range(VP(beta_min=0.1, beta_max=20.0, eps=eps))


@dataclass(frozen=True)
class MultiscaleConfig:
    """Shape, forward process and per-scale networks of a :class:`MultiscaleModel`.

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
        return dict(
            kind="multiscale",
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
        _positive_int("channels", self.channels)
        _positive_int("image_size", self.image_size)
        if not isinstance(self.unet, UNetSpec):
            object.__setattr__(self, "unet", UNetSpec(**self.unet))
        self.unet.check_resolution(self.image_size, "unet")
        if not (self.data_rms > 0 and math.isfinite(self.data_rms)):
            raise ValueError(f"data_rms must be positive, got {self.data_rms}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["unet"] = self.unet.to_dict()
        return dict(kind="uniform", **d)


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
    _positive_int("max_blocks", max_blocks)
    blocks = min(max_blocks, max(1, int(math.log2(image_size))))
    uniform_spec = UNetSpec(base=base, blocks=blocks, norm_num_groups=norm_num_groups)
    target = uniform_spec.num_parameters(channels)
    scale_blocks = [_blocks_for(packing.scale_shape(i)[1], blocks) for i in range(1, levels + 2)]
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


# ----------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------
class _Saveable(nn.Module):
    config: MultiscaleConfig | UniformConfig

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, directory: str | Path, *, dtype: torch.dtype | None = None, **metadata: float | int | str) -> None:
        """Write ``model.safetensors`` and ``config.json`` (the config plus ``metadata``) to ``directory``.

        ``dtype`` (e.g. ``torch.float16``) stores the floating-point weights in that type to save space;
        :meth:`from_pretrained` casts them back to the model's dtype.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        if dtype is not None:
            tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
        save_file(tensors, str(directory / WEIGHTS_NAME))
        config = self.config.to_dict()
        config["metadata"] = metadata
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")


def _check_images(model, x0: Tensor) -> None:
    shape = (model.config.channels, model.config.image_size, model.config.image_size)
    if not isinstance(x0, Tensor) or x0.ndim != 4 or tuple(x0.shape[1:]) != shape:
        raise ValueError(f"x0 must have shape (B, {', '.join(map(str, shape))}), got {tuple(getattr(x0, 'shape', ()))}")


def _check_weighting(weighting: str) -> None:
    if weighting not in get_args(Weighting):
        raise ValueError(f"weighting must be one of {get_args(Weighting)}, got {weighting!r}")


def _denoising_loss(
    sde: SDE, eps_fn, c0: Tensor, t: Tensor, noise: Tensor, weighting: Weighting
) -> Tensor:
    """Eq. 10 on one scale: c_t = alpha c_0 + sigma noise; mean over coordinates and rows.

    ``"likelihood"``: 1/2 v^T diag(g^2) v / D with v = grad log p(c_t | c_0) - s = (eps_hat - noise) / sigma.
    ``"simple"``: || eps_hat - noise ||^2 / D.
    """
    mean, std = sde.marginal(c0, t)
    c_t = mean + std * noise
    eps_hat = eps_fn(c_t, t)
    if weighting == "simple":
        return (eps_hat - noise).pow(2).flatten(1).mean(1).mean()
    co = sde.coefficients(t, c0.ndim - 1, like=c0)
    target = ScoreModel._from_epsilon(c_t, noise, co.alpha, co.sigma2)  # -noise / sigma
    score = ScoreModel._from_epsilon(c_t, eps_hat, co.alpha, co.sigma2)
    return 0.5 * (co.g2 * (target - score) ** 2).flatten(1).mean(1).mean()


class MultiscaleModel(_Saveable):
    """The per-scale score networks s_1..s_{n+1} of §3.3.1 with their forward process.

    Parameters
    ----------
    config : MultiscaleConfig
    generator : torch.Generator, optional; seeds the initial weights (see :meth:`UNetSpec.build`).

    Attributes
    ----------
    process : MultiscaleProcess
    packing : HaarPacking
    nets : ``nets[i - 1]`` is s_i, a UNet at the size of scale i.
    default_weighting : ``"likelihood"``, the weighting of Theorem 1 that §3.3.1 trains with.
    """

    default_weighting: Weighting = "likelihood"

    def __init__(self, config: MultiscaleConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(config, MultiscaleConfig):
            raise ValueError(f"config must be a MultiscaleConfig, got {type(config).__name__}")
        self.config = config
        self.packing = config.packing
        self.process = MultiscaleProcess(self.packing, config.snr_max, config.snr_min, config.eps)
        self.nets = nn.ModuleList(
            _EpsUNet(spec, self.packing.scale_shape(i)[1], config.channels, generator)
            for i, spec in enumerate(config.unets, start=1)
        )
        levels = self.packing.group_level(torch.float32)
        rms = torch.tensor(config.data_rms, dtype=torch.float32)
        group = (self.config.levels + 1 - levels).long()  # a_n -> 0, d_i -> n + 1 - i
        self.register_buffer("rms", rms[group], persistent=False)  # (D,)

    def scale_parameters(self) -> list[int]:
        """Parameter count of each s_i."""
        return [sum(p.numel() for p in net.parameters()) for net in self.nets]

    def networks(self) -> list[nn.Module]:
        return list(self.nets)

    def _check_scale_input(self, i: int, c_i: Tensor, t: Tensor) -> None:
        self.packing._check_scale(i)
        d = self.packing.scale_dim(i)
        if not isinstance(c_i, Tensor) or c_i.ndim != 2 or c_i.shape[1] != d:
            raise ValueError(f"c_i must have shape (n, {d}) for scale {i}, got {tuple(getattr(c_i, 'shape', ()))}")
        if not isinstance(t, Tensor) or t.shape != (c_i.shape[0],):
            raise ValueError(f"t must have shape ({c_i.shape[0]},), got {tuple(getattr(t, 'shape', ()))}")

    def scale_eps(self, i: int, c_i: Tensor, t: Tensor) -> Tensor:
        """Noise prediction of s_i in Haar coordinates.

        Parameters
        ----------
        i : scale, 1..n+1.
        c_i : (n, D_i), the moving coefficients [a_n, d_n, ..., d_i] at time t.
        t : (n,) times in R_i.

        Returns
        -------
        eps_hat : (n, D_i)
        """
        self._check_scale_input(i, c_i, t)
        co = self.process.scale_sde(i).coefficients(t, 1, like=c_i)
        rms = self.rms[: c_i.shape[1]].to(c_i)
        c_in = c_i / (co.alpha**2 * rms**2 + co.sigma2).sqrt()
        eps_image = self.nets[i - 1](self.packing.to_image(c_in, i), t)
        return self.packing.from_image(eps_image, i)

    def scale_score(self, i: int, c_i: Tensor, t: Tensor) -> Tensor:
        """s_i(c_i, t) = -eps_hat / sigma(t), ``(n, D_i)``."""
        co = self.process.scale_sde(i).coefficients(t, 1, like=c_i)
        return ScoreModel._from_epsilon(c_i, self.scale_eps(i, c_i, t), co.alpha, co.sigma2)

    def loss(
        self,
        x0: Tensor,
        *,
        weighting: Weighting = "likelihood",
        generator: torch.Generator | None = None,
        t: Tensor | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """Per-scale denoising losses (eq. 10, module docstring), shape ``(n + 1,)``.

        1. c_0 = Haar(x_0); scale i uses its prefix c_{0,i}.
        2. t ~ U(R_i) per row and scale; c_t = alpha(t) c_0 + sigma(t) noise under scale i's SDE.
        3. ``weighting``: Lambda = G G^T (Theorem 1) or the simple eps loss.

        Parameters
        ----------
        x0 : (B, C, H, W) images.
        generator : draws t and the noise when they are not given.
        t : (n + 1, B), optional, row i-1 in R_i.
        noise : (n + 1, B, D), optional standard normal; scale i uses ``noise[i-1, :, :D_i]``.
        """
        _check_images(self, x0)
        _check_weighting(weighting)
        k, b, d = self.process.num_scales, x0.shape[0], self.packing.dim
        if t is not None and (not isinstance(t, Tensor) or t.shape != (k, b)):
            raise ValueError(f"t must have shape ({k}, {b}), got {tuple(getattr(t, 'shape', ()))}")
        if noise is not None and (not isinstance(noise, Tensor) or noise.shape != (k, b, d)):
            raise ValueError(f"noise must have shape ({k}, {b}, {d}), got {tuple(getattr(noise, 'shape', ()))}")
        c0 = self.packing.forward(x0)
        losses = []
        for i in range(1, k + 1):
            lo, hi = self.process.time_range(i)
            d_i = self.packing.scale_dim(i)
            t_i = lo + (hi - lo) * torch.rand(b, generator=generator, dtype=x0.dtype, device=x0.device) if t is None else t[i - 1]
            z = torch.randn((b, d_i), generator=generator, dtype=x0.dtype, device=x0.device) if noise is None else noise[i - 1, :, :d_i]
            eps_fn = lambda c, s, i=i: self.scale_eps(i, c, s)  # noqa: E731
            losses.append(_denoising_loss(self.process.scale_sde(i), eps_fn, c0[:, :d_i], t_i, z, weighting))
        return torch.stack(losses)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        steps: int = 256,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> Tensor:
        """Images ``(n, C, H, W)`` by the multiscale sampler of §3.3.2 (:func:`multiscale_sample`)."""
        param = next(self.parameters())
        c = multiscale_sample(self, n, steps=steps, generator=generator, dtype=param.dtype, device=param.device, progress=progress)
        return self.packing.inverse(c)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: torch.device | str | None = None) -> "MultiscaleModel":
        """Load a folder written by :meth:`save_pretrained` (eval mode, gradients off)."""
        raw = _read_config(directory, "multiscale")
        config = MultiscaleConfig(**raw)
        return _load_weights(cls(config), directory, device)


class UniformModel(ScoreModel, _Saveable):
    """The uniform baseline of §4.1: VP(beta_min, beta_max) with one eps-predicting UNet; a score ``model(x, t)``.

    Parameters
    ----------
    config : UniformConfig
    generator : seeds the initial weights.

    Attributes
    ----------
    default_weighting : ``"simple"``, the objective of the uniform baseline in §4.1.
    """

    default_weighting: Weighting = "simple"

    def __init__(self, config: UniformConfig, *, generator: torch.Generator | None = None) -> None:
        if not isinstance(config, UniformConfig):
            raise ValueError(f"config must be a UniformConfig, got {type(config).__name__}")
        super().__init__(VP(config.beta_min, config.beta_max, T=1.0, eps=config.eps), "epsilon")
        self.config = config
        self.net = _EpsUNet(config.unet, config.image_size, config.channels, generator)
        self.event_shape = (config.channels, config.image_size, config.image_size)

    def networks(self) -> list[nn.Module]:
        return [self.net]

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        """eps_hat(x_t, t) for ``x: (n, C, H, W)``, ``t: (n,)``."""
        if not isinstance(x, Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"x must have shape (n, {', '.join(map(str, self.event_shape))}), got {tuple(getattr(x, 'shape', ()))}")
        if not isinstance(t, Tensor) or t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},), got {tuple(getattr(t, 'shape', ()))}")
        co = self.sde.coefficients(t, x.ndim - 1, like=x)
        return self.net(x / (co.alpha**2 * self.config.data_rms**2 + co.sigma2).sqrt(), t)

    def loss(
        self,
        x0: Tensor,
        *,
        weighting: Weighting = "simple",
        generator: torch.Generator | None = None,
        t: Tensor | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """Denoising loss with t ~ U(eps, 1) (the simple objective of §4.1 by default), shape ``(1,)``."""
        _check_images(self, x0)
        _check_weighting(weighting)
        b = x0.shape[0]
        if t is None:
            t = self.sde.eps + (self.sde.T - self.sde.eps) * torch.rand(b, generator=generator, dtype=x0.dtype, device=x0.device)
        elif not isinstance(t, Tensor) or t.shape != (b,):
            raise ValueError(f"t must have shape ({b},), got {tuple(getattr(t, 'shape', ()))}")
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        elif not isinstance(noise, Tensor) or noise.shape != x0.shape:
            raise ValueError(f"noise must have shape {tuple(x0.shape)}, got {tuple(getattr(noise, 'shape', ()))}")
        return _denoising_loss(self.sde, self.predict, x0, t, noise, weighting)[None]

    @torch.no_grad()
    def sample(self, n: int, *, steps: int = 256, generator: torch.Generator | None = None, progress: bool = False) -> Tensor:
        """Images ``(n, C, H, W)``: Euler-Maruyama on the reverse VP SDE (:func:`smcdiff.sample`)."""
        from ..sampling import sample

        param = next(self.parameters())
        return sample(self, self.sde, (n, *self.event_shape), steps=steps, generator=generator, dtype=param.dtype, device=param.device, progress=progress)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: torch.device | str | None = None) -> "UniformModel":
        """Load a folder written by :meth:`save_pretrained` (eval mode, gradients off)."""
        return _load_weights(cls(UniformConfig(**_read_config(directory, "uniform"))), directory, device)


def _read_config(directory: str | Path, kind: str) -> dict:
    directory = Path(directory)
    if not (directory / CONFIG_NAME).is_file() or not (directory / WEIGHTS_NAME).is_file():
        raise ValueError(f"directory {directory} must hold {CONFIG_NAME} and {WEIGHTS_NAME}")
    raw = json.loads((directory / CONFIG_NAME).read_text())
    if raw.pop("kind", None) != kind:
        raise ValueError(f"{directory / CONFIG_NAME} does not describe a {kind} model")
    raw.pop("metadata", None)
    return raw


def _load_weights(model: nn.Module, directory: str | Path, device) -> nn.Module:
    model.load_state_dict(load_file(str(Path(directory) / WEIGHTS_NAME), device="cpu"))
    return model.to(device if device is not None else "cpu").eval().requires_grad_(False)


def load_model(path: str | Path, device: torch.device | str | None = None) -> MultiscaleModel | UniformModel:
    """Load a :class:`MultiscaleModel` or :class:`UniformModel` folder, or a shipped one by name
    (``"multiscale"`` or ``"uniform"``, under ``smcdiff/assets/multiscale``)."""
    directory = ASSET_DIR / path if isinstance(path, str) and path in ("multiscale", "uniform") else Path(path)
    if not (directory / CONFIG_NAME).is_file():
        raise ValueError(f"path must be 'multiscale', 'uniform' or a model folder holding {CONFIG_NAME}, got {path!r}")
    kind = json.loads((directory / CONFIG_NAME).read_text()).get("kind")
    if kind == "multiscale":
        return MultiscaleModel.from_pretrained(directory, device)
    if kind == "uniform":
        return UniformModel.from_pretrained(directory, device)
    raise ValueError(f"{directory / CONFIG_NAME} has unknown kind {kind!r}")


# ----------------------------------------------------------------------------------------------
# sampling
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def multiscale_sample(
    scales: ScaleScores,
    n: int,
    *,
    steps: int = 256,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> Tensor:
    """The multiscale sampler of §3.3.2, returning packed coefficients c(eps).

    1. a_n ~ N(0, prior var) at t = 1.
    2. For i = n+1, n, ..., 1: if i <= n append d_i ~ N(0, prior var) (its stationary law at
       t = i/(n+1)); then ``k_i`` Euler-Maruyama steps of the reverse SDE of c_i (eq. 3, with
       scale i's SDE and ``scales.scale_score(i, .)``) on the uniform grid of R_i.

    Parameters
    ----------
    scales : a :class:`MultiscaleModel`, :class:`GaussianScales` or anything with ``.process`` and
        ``.scale_score(i, c_i, t)``.
    n : number of samples.
    steps : total steps, split by :meth:`MultiscaleProcess.split_steps`.
    generator : the only source of randomness.
    dtype, device : of the samples.
    progress : tqdm bar over all steps.

    Returns
    -------
    c : (n, D) packed coefficients [a_n, d_n, ..., d_1] at t = eps.
    """
    _positive_int("n", n)
    process = getattr(scales, "process", None)
    if not isinstance(process, MultiscaleProcess) or not callable(getattr(scales, "scale_score", None)):
        raise ValueError("scales must have a MultiscaleProcess as .process and a method scale_score(i, c_i, t)")
    counts = process.split_steps(steps)
    prior_std = process.sde.prior_std(like=torch.empty((), dtype=dtype, device=device))
    top = process.num_scales
    x = process.scale_sde(top).prior_sample((n, process.scale_dim(top)), generator=generator, dtype=dtype, device=device)
    bar = tqdm(total=steps, desc="multiscale sampling", disable=not progress, leave=False)
    for i in range(top, 0, -1):
        d_i = process.scale_dim(i)
        if d_i > x.shape[1]:  # 2. the new detail group starts from its stationary law
            z = torch.randn((n, d_i - x.shape[1]), generator=generator, dtype=dtype, device=x.device)
            x = torch.cat([x, z * prior_std[x.shape[1] : d_i]], dim=1)
        sde = process.scale_sde(i)
        grid = process.scale_grid(i, counts[i - 1]).to(x.device)
        grid_x = grid.to(dtype)
        for k in range(counts[i - 1]):
            t = grid_x[k].expand(n)
            h = (grid[k] - grid[k + 1]).to(dtype).expand(n)
            score = scales.scale_score(i, x, t)
            if not torch.isfinite(score).all():
                raise ValueError(f"scale {i} score returned non-finite values at t = {grid[k].item():.6g}")
            mean, var = sde.reverse_kernel(x, t, h, score)
            x = mean + var.sqrt() * torch.randn(x.shape, generator=generator, dtype=dtype, device=x.device)
            bar.update(1)
    bar.close()
    return x


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """Outcome of :func:`train`: the EMA model, the loss history ``[(step, smoothed loss)]``, steps and seconds."""

    model: nn.Module
    history: list[tuple[int, float]]
    steps: int
    seconds: float


def _learning_rate(step: int, peak: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then constant (budgets are in wall-clock time)."""
    return peak * min(1.0, (step + 1) / max(1, warmup))


def _load_state(path: Path, model, ema, opt, gen) -> dict:
    if read_training_meta(path).get("config") != model.config.to_dict():
        raise ValueError(f"the training state in {path} was written for another model configuration")
    return load_training_state(path, model, ema, opt, gen)


def train(
    model: MultiscaleModel | UniformModel,
    images: Tensor,
    *,
    steps: int | None = None,
    max_seconds: float | None = None,
    weighting: Weighting | None = None,
    batch_size: int = 128,
    lr: float = 2e-3,
    warmup: int = 200,
    weight_decay: float = 1e-4,
    ema_decay: float = 0.999,
    generator: torch.Generator | None = None,
    progress: bool = True,
    state_dir: str | Path | None = None,
    checkpoint_every: int = 500,
    resume: bool = False,
    clock: Literal["wall", "process"] = "wall",
) -> TrainResult:
    """Train a :class:`MultiscaleModel` (all scales, each on its own loss) or a :class:`UniformModel`.

    Each step draws one batch with replacement from ``images`` and, for every network, its own
    times and noise (:meth:`MultiscaleModel.loss`); the networks have disjoint parameters, so one
    AdamW step on the summed loss, with gradients clipped to norm 1 per network, trains each of them
    separately (§3.3.1). The learning rate warms up linearly and then stays constant; an exponential
    moving average of the weights (decay ``min(ema_decay, (1 + k)/(10 + k))``) is returned.

    Parameters
    ----------
    model : trained in place.
    images : (N, C, H, W).
    steps, max_seconds : stop at whichever comes first (at least one must be given). Seconds count
        the training loop only, not checkpoint writing, and carry over when resuming.
    clock : ``"wall"`` (``time.perf_counter``) or ``"process"`` (``time.process_time``, the CPU time
        of this process: with one thread, the wall-clock time the loop would take on an idle core,
        which keeps budgets comparable on a shared machine).
    weighting : ``"likelihood"`` (Theorem 1) or ``"simple"``; None = ``model.default_weighting``.
    generator : draws batches, times and noise; its state is part of the checkpoint.
    state_dir : folder for resumable checkpoints (``state.safetensors`` + ``state.json``, no pickle),
        written every ``checkpoint_every`` steps and at the end.
    resume : continue from ``state_dir``; reproduces the uninterrupted run when stopping by ``steps``.

    Returns
    -------
    TrainResult with the EMA model in eval mode.
    """
    _check_images(model, images)
    weighting = model.default_weighting if weighting is None else weighting
    _check_weighting(weighting)
    if steps is None and max_seconds is None:
        raise ValueError("steps or max_seconds must be given")
    if steps is not None:
        _positive_int("steps", steps)
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    _positive_int("batch_size", batch_size)
    _positive_int("checkpoint_every", checkpoint_every)
    if resume and state_dir is None:
        raise ValueError("resume needs state_dir")
    if clock not in ("wall", "process"):
        raise ValueError(f"clock must be 'wall' or 'process', got {clock!r}")
    now = time.perf_counter if clock == "wall" else time.process_time
    device = next(model.parameters()).device
    images = images.to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    step, seconds, history = 0, 0.0, []
    state_path = None if state_dir is None else Path(state_dir)
    if resume:
        meta = _load_state(state_path, model, ema, opt, generator)
        step, seconds, history = int(meta["step"]), float(meta["seconds"]), [tuple(h) for h in meta["history"]]

    def checkpoint() -> None:
        if state_path is not None:
            meta = dict(step=step, seconds=seconds, history=history, config=model.config.to_dict(), weighting=weighting, clock=clock)
            save_training_state(state_path, model, ema, opt, generator, meta)

    model.train()
    running = history[-1][1] if history else float("nan")
    bar = tqdm(total=steps, initial=step, desc=f"train {model.config.to_dict()['kind']}", disable=not progress, dynamic_ncols=True, mininterval=2.0)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    while (steps is None or step < steps) and (max_seconds is None or seconds < max_seconds):
        start = now()
        for group in opt.param_groups:
            group["lr"] = _learning_rate(step, lr, warmup)
        idx = torch.randint(0, images.shape[0], (batch_size,), generator=generator, device=gen_device).to(device)
        losses = model.loss(images[idx], weighting=weighting, generator=generator)
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        for net in model.networks():
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(ema_decay, (1.0 + step) / (10.0 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1.0 - decay)
        step += 1
        value = losses.sum().item()
        running = value if math.isnan(running) else 0.98 * running + 0.02 * value
        seconds += now() - start
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}", refresh=False)
        if step % 50 == 0:
            history.append((step, running))
        if step % checkpoint_every == 0:
            checkpoint()
    bar.close()
    if step and (not history or history[-1][0] != step):
        history.append((step, running))
    checkpoint()
    model.eval()
    return TrainResult(ema.eval(), history, step, seconds)
