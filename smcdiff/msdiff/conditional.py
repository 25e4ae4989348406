r"""Conditional score estimators of "Non-Uniform Diffusion Models" §3.4: CDE, CDiffE and CMDE.

The target is the conditional score grad_x log p(x_t | y) that drives the conditional reverse SDE
(eq. 11). Three estimators share one backbone (a diffusers ``UNet2DModel`` whose input is the
diffused target concatenated with the condition along the channels, App. B) and the VE SDE of §4.2,
sigma(t) = sigma_min (sigma_max / sigma_min)^t:

CDE (eq. 12)
    s_theta(x_t, y, t) learns grad_{x_t} log p(x_t | x_0); by Theorem 2 its minimiser is
    grad_{x_t} log p(x_t | y). The network sees ``[x_t, y, aux]`` and returns C_x channels.
CDiffE (eq. 13)
    s_theta(z_t, t) learns the joint score of z_t = (x_t, y_t), x and y diffused by the same VE SDE;
    grad_{x_t} log p(x_t | y) is approximated by the x-block of the joint score at
    (x_t, y^_t), y^_t ~ p(y_t | y) (§3.4.2). The network sees ``[x_t, y_t, aux]`` and returns
    C_x + C_y channels.
CMDE (eq. 14)
    as CDiffE, but y diffuses more slowly, sigma^y(t) = sigma_min (sigma^y_max / sigma_min)^t with
    sigma^y_max < sigma_max: the smaller sigma^y_max, the closer p(x_t | y_t) is to p(x_t | y)
    (Theorem 4).

All three are trained with the likelihood weighting: the objective is

    L(theta) = 1/2 E_{t ~ U(eps, T), z_0, z_t | z_0} [ v^T Lambda(t) v ],
    v = grad_{z_t} log p(z_t | z_0) - s_theta(z_t, t),

with Lambda = Lambda_MLE(t) = diag(g_i(t)^2) of Theorem 3, g_i(t)^2 = d sigma_i(t)^2 / dt the squared
diffusion coefficient of coordinate i (for CDE z = x and Lambda = g(t)^2 I, the scalar likelihood
weighting of Song et al. 2021). For the VE SDE g_i^2 / sigma_i^2 = 2 log(sigma_max,i / sigma_min), so
in noise space the weighting is a constant per coordinate group.

The network predicts the noise, s = -eps_hat / sigma (the conversion of
:class:`smcdiff.score.ScoreModel`), after scaling each diffused channel by
1 / sqrt(sigma_i(t)^2 + sigma_data^2) so that its input has unit scale at every time.

Observations ("tasks") are images of the target's size, as App. B feeds them to the network:

- ``"inpaint"``: A keeps the pixels outside a random square hole covering ``mask_fraction`` of the
  image (§4.2.1). y is x on the observed pixels and 0 in the hole; the mask itself is an extra
  input channel ``aux`` that is not diffused (it is part of the operator, not of the data).
- ``"sr"``: A is ``sr_factor`` x average pooling (§4.2.2 uses bicubic down-scaling); y is the low
  resolution image brought back to full size by nearest-neighbour interpolation (App. B).

Estimator protocol (what :func:`conditional_score` and the adapter
:class:`smcdiff.adapters.ConditionalScore` use, so that exact Gaussian oracles plug in too):
``kind`` in {"cde", "cdiffe", "cmde"}; ``x_channels``; ``sde`` (the SDE of the diffused variable:
x for CDE, z = (x, y) otherwise); ``sde_x``; ``sde_y`` (None for CDE); and
``__call__(v_t, t, cond) -> score of v_t``, with ``cond`` concatenated after ``v_t`` along dim 1.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal, get_args

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..masks import random_square_masks
from ..score import ScoreModel
from ..sde import SDE, VE
from .backbone import unet2d

__all__ = [
    "Estimator",
    "Task",
    "ConditionalConfig",
    "Observation",
    "ConditionalEstimator",
    "TrainResult",
    "average_pool",
    "condition",
    "observe",
    "joint_ve",
    "likelihood_weighting",
    "weighted_score_loss",
    "score_matching_loss",
    "conditional_score",
    "train",
    "load_conditional",
    "SHIPPED",
]

Estimator = Literal["cde", "cdiffe", "cmde"]
Task = Literal["inpaint", "sr"]

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "conditional"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
SHIPPED = ("cde", "cdiffe", "cmde_0.5", "cmde_1", "sr_cde", "sr_cdiffe", "sr_cmde_0.5")
"""Names of the shipped digit models under ``smcdiff/assets/conditional`` (``sr_*``: 4x super-resolution)."""


# ----------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConditionalConfig:
    """Estimator, SDE, observation operator and backbone of a :class:`ConditionalEstimator`.

    Attributes
    ----------
    estimator : {"cde", "cdiffe", "cmde"}
    task : {"inpaint", "sr"}
        The observation operator A (see the module docstring).
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
        d = asdict(self)
        d["block_out_channels"] = list(self.block_out_channels)
        d["attention_levels"] = list(self.attention_levels)
        return d


# ----------------------------------------------------------------------------------------------
# observation operators
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Observation:
    """An observation in the form the estimators take.

    Attributes
    ----------
    y : (n, C, H, W)
        Condition image: x on the observed pixels and 0 in the hole (inpainting), or the
        nearest-neighbour up-sampling of the low-resolution image (SR).
    aux : (n, 1, H, W) or None
        The mask as 0/1 floats (inpainting); None for SR.
    measurement : Tensor
        A x itself: ``(n, C, H, W)`` masked image (inpainting) or ``(n, C, H/f, W/f)`` (SR).
    mask : (n, 1, H, W) bool or None
        True = observed (inpainting only).
    """

    y: Tensor
    aux: Tensor | None
    measurement: Tensor
    mask: Tensor | None = None

    def repeat(self, k: int) -> "Observation":
        """Each row repeated ``k`` times in place (row i becomes rows i k .. i k + k - 1)."""
        rep = lambda v: None if v is None else v.repeat_interleave(k, dim=0)  # noqa: E731
        return Observation(rep(self.y), rep(self.aux), rep(self.measurement), rep(self.mask))


def average_pool(x: Tensor, factor: int) -> Tensor:
    """The super-resolution operator A: ``factor`` x average pooling, ``(n, C, H, W) -> (n, C, H/f, W/f)``."""
    if x.ndim != 4:
        raise ValueError(f"x must have shape (n, C, H, W), got {tuple(x.shape)}")
    if x.shape[-1] % factor or x.shape[-2] % factor:
        raise ValueError(f"factor {factor} must divide the image size {tuple(x.shape[-2:])}")
    return F.avg_pool2d(x, factor)


def condition(config: ConditionalConfig, measurement: Tensor, mask: Tensor | None = None) -> Observation:
    """Build the estimators' inputs from a measurement A x.

    Parameters
    ----------
    config : ConditionalConfig
    measurement : Tensor
        Inpainting: ``(n, C, H, W)`` image whose values in the hole are ignored. SR: the
        low-resolution image ``(n, C, H/f, W/f)``.
    mask : (n, 1, H, W) or (n, C, H, W) bool, True = observed; required for inpainting only.
    """
    c, size = config.channels, config.image_size
    if config.task == "inpaint":
        if measurement.ndim != 4 or tuple(measurement.shape[1:]) != (c, size, size):
            raise ValueError(f"measurement must have shape (n, {c}, {size}, {size}), got {tuple(measurement.shape)}")
        if mask is None or mask.dtype != torch.bool:
            raise ValueError("mask must be a bool tensor (True = observed) for inpainting")
        if mask.ndim != 4 or mask.shape[0] != measurement.shape[0] or mask.shape[-2:] != measurement.shape[-2:]:
            raise ValueError(f"mask must have shape (n, 1, {size}, {size}), got {tuple(mask.shape)}")
        mask = mask.to(measurement.device)[:, :1]
        y = torch.where(mask, measurement, torch.zeros_like(measurement))
        return Observation(y, mask.to(measurement.dtype), y, mask)
    low = size // config.sr_factor
    if mask is not None:
        raise ValueError("mask must be None for super-resolution")
    if measurement.ndim != 4 or tuple(measurement.shape[1:]) != (c, low, low):
        raise ValueError(f"measurement must have shape (n, {c}, {low}, {low}), got {tuple(measurement.shape)}")
    y = F.interpolate(measurement, scale_factor=config.sr_factor, mode="nearest")
    return Observation(y, None, measurement, None)


def observe(
    config: ConditionalConfig, x0: Tensor, *, mask: Tensor | None = None, generator: torch.Generator | None = None
) -> Observation:
    """Apply the config's operator A to clean images ``x0: (n, C, H, W)``.

    For inpainting a ``mask`` may be given; otherwise one square hole covering ``mask_fraction`` of
    the image is drawn per image at a uniform position (:func:`smcdiff.masks.random_square_masks`).
    """
    if config.task == "inpaint":
        if mask is None:
            size = config.image_size
            mask = random_square_masks(x0.shape[0], size, size, config.mask_fraction, generator=generator)
            mask = mask.to(x0.device)
        return condition(config, x0, mask)
    if mask is not None:
        raise ValueError("mask must be None for super-resolution")
    return condition(config, average_pool(x0, config.sr_factor))


# ----------------------------------------------------------------------------------------------
# SDEs, weighting and loss
# ----------------------------------------------------------------------------------------------
def joint_ve(
    sigma_min: float,
    sigma_max: float,
    sigma_y_max: float,
    x_channels: int,
    y_channels: int,
    event_ndim: int = 3,
    T: float = 1.0,
    eps: float = 1e-5,
) -> VE:
    """VE SDE of z = (x, y) stacked along the first event dimension, x and y at their own speeds.

    ``sigma_max`` is the per-channel tensor ``[sigma_max] * x_channels + [sigma_y_max] * y_channels``
    shaped ``(C, 1, ..., 1)`` with ``event_ndim - 1`` trailing ones (``(C, 1, 1)`` for images,
    ``(d,)`` for flat data).
    """
    smax = torch.tensor([float(sigma_max)] * x_channels + [float(sigma_y_max)] * y_channels, dtype=torch.float64)
    return VE(sigma_min, smax.reshape(-1, *([1] * (event_ndim - 1))), T=T, eps=eps)


def likelihood_weighting(sde: SDE, t: Tensor, like: Tensor) -> Tensor:
    """Lambda_MLE(t) of Theorem 3: the diagonal g_i(t)^2, right-aligned to ``like: (n, *event)``.

    For a scalar SDE this is the likelihood weighting lambda(t) = g(t)^2 of Song et al. (2021).
    """
    return sde.coefficients(t, like.ndim - 1, like=like).g2


def weighted_score_loss(score: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """1/2 mean_n [ v^T diag(weight) v ], v = target - score, summed over the event (eq. 12-14).

    Parameters
    ----------
    score, target : (n, *event)
    weight : broadcastable to ``(n, *event)``, the diagonal of Lambda(t).
    """
    if score.shape != target.shape:
        raise ValueError(f"score shape {tuple(score.shape)} differs from target shape {tuple(target.shape)}")
    return 0.5 * (weight * (target - score) ** 2).flatten(1).sum(1).mean()


def _diffused_and_condition(estimator, x0: Tensor, y: Tensor, aux: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """(v_0, cond): v_0 = x_0 (CDE) or z_0 = (x_0, y) (joint); cond = (y, aux) (CDE) or aux (joint)."""
    if estimator.kind == "cde":
        return x0, torch.cat([y, aux], 1) if aux is not None else y
    return torch.cat([x0, y], 1), aux


def score_matching_loss(
    estimator,
    x0: Tensor,
    y: Tensor,
    aux: Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
    t: Tensor | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    r"""Denoising score matching with likelihood weighting: eq. 12 (CDE), 13 (CDiffE), 14 (CMDE).

    1. t ~ U(eps, T); v_0 = x_0 (CDE) or z_0 = (x_0, y) (joint).
    2. v_t = alpha(t) v_0 + sigma(t) noise with the estimator's SDE (per-channel speeds for CMDE).
    3. target = grad_{v_t} log p(v_t | v_0) = -noise / sigma(t).
    4. loss = 1/2 mean [ (target - s)^T Lambda_MLE(t) (target - s) ], Lambda_MLE = diag(g^2).

    Parameters
    ----------
    estimator : an estimator following the protocol of the module docstring.
    x0 : (n, C_x, ...) clean targets.
    y : (n, C_y, ...) condition (undiffused).
    aux : (n, A, ...) operator channels or None.
    generator : torch.Generator, optional; draws t and the noise when they are not given.
    t : (n,), optional fixed times in [eps, T].
    noise : like v_0, optional fixed standard normal noise.

    Returns
    -------
    Scalar loss.
    """
    if x0.ndim < 2 or y.ndim != x0.ndim or y.shape[0] != x0.shape[0]:
        raise ValueError(f"x0 {tuple(x0.shape)} and y {tuple(y.shape)} must have the same rank and batch size")
    if aux is not None and (aux.ndim != x0.ndim or aux.shape[0] != x0.shape[0]):
        raise ValueError(f"aux must have shape (n, A, ...) matching x0, got {tuple(aux.shape)}")
    sde = estimator.sde
    n = x0.shape[0]
    v0, cond = _diffused_and_condition(estimator, x0, y, aux)
    if t is None:
        u = torch.rand(n, generator=generator, dtype=x0.dtype, device=x0.device)
        t = sde.eps + (sde.T - sde.eps) * u
    elif t.shape != (n,):
        raise ValueError(f"t must have shape (n,) = ({n},), got {tuple(t.shape)}")
    if noise is None:
        noise = torch.randn(v0.shape, generator=generator, dtype=v0.dtype, device=v0.device)
    elif noise.shape != v0.shape:
        raise ValueError(f"noise must have shape {tuple(v0.shape)}, got {tuple(noise.shape)}")
    mean, std = sde.marginal(v0, t)
    v_t = mean + std * noise
    target = -noise / std
    return weighted_score_loss(estimator(v_t, t, cond), target, likelihood_weighting(sde, t, v0))


def conditional_score(
    estimator,
    x_t: Tensor,
    t: Tensor,
    y: Tensor,
    aux: Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Estimate of grad_{x_t} log p(x_t | y) used by the conditional reverse SDE (eq. 11, §3.4.2).

    CDE: s_theta(x_t, y, t). CDiffE / CMDE: draw y^_t ~ p(y_t | y) afresh (one draw per row and
    call) and return the x-block of the joint score s_theta((x_t, y^_t), t)[:C_x].

    Parameters
    ----------
    estimator : an estimator following the protocol of the module docstring.
    x_t : (n, C_x, ...)
    t : (n,) forward times.
    y : (n, C_y, ...) the (undiffused) condition.
    aux : (n, A, ...) or None.
    generator : torch.Generator, optional; draws y^_t.

    Returns
    -------
    (n, C_x, ...)
    """
    if y.shape[0] != x_t.shape[0] or y.ndim != x_t.ndim:
        raise ValueError(f"y {tuple(y.shape)} must have x_t's rank and batch size {tuple(x_t.shape)}")
    if estimator.kind == "cde":
        return estimator(x_t, t, torch.cat([y, aux], 1) if aux is not None else y)
    mean, std = estimator.sde_y.marginal(y, t)
    y_t = mean + std * torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    return estimator(torch.cat([x_t, y_t], 1), t, aux)[:, : estimator.x_channels]


# ----------------------------------------------------------------------------------------------
# the network
# ----------------------------------------------------------------------------------------------
class ConditionalEstimator(nn.Module):
    """CDE, CDiffE or CMDE score network on images, per :class:`ConditionalConfig`.

    Parameters
    ----------
    config : ConditionalConfig
    generator : torch.Generator, optional
        Seeds the initial weights. diffusers draws them from the global generator, so they are drawn
        inside :func:`torch.random.fork_rng` seeded from ``generator`` (0 when None): the caller's
        global random state is neither used nor changed.

    Attributes
    ----------
    kind : the estimator name.
    x_channels : C_x.
    sde_x, sde_y : VE SDEs of x and y (``sde_y`` None for CDE).
    sde : the SDE of the diffused variable, x (CDE) or z = (x, y) with per-channel ``sigma_max``.
    """

    def __init__(self, config: ConditionalConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        self.kind: Estimator = config.estimator
        self.x_channels = config.channels
        self.sde_x = VE(config.sigma_min, config.sigma_max)
        if config.diffusive:
            self.sde_y = VE(config.sigma_min, config.sigma_y_max)
            self.sde = joint_ve(config.sigma_min, config.sigma_max, config.sigma_y_max, config.channels, config.channels)
        else:
            self.sde_y = None
            self.sde = self.sde_x
        self.unet = unet2d(
            sample_size=config.image_size,
            in_channels=config.in_channels,
            out_channels=config.out_channels,
            block_out_channels=config.block_out_channels,
            attention=config.attention_levels,
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_num_groups,
            attention_head_dim=config.attention_head_dim,
            generator=generator,
        )

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, v_t: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        """Score of the diffused variable.

        Parameters
        ----------
        v_t : (n, D, H, W)
            x_t (CDE, D = C_x) or z_t = (x_t, y_t) (joint, D = C_x + C_y).
        t : (n,) forward times in [eps, T].
        cond : (n, in_channels - D, H, W) or None
            (y, aux) for CDE, aux for the joint estimators (None for super-resolution).

        Returns
        -------
        score : (n, D, H, W), s = -eps_hat / sigma(t).
        """
        cfg = self.config
        d = cfg.out_channels
        if v_t.ndim != 4 or tuple(v_t.shape[1:]) != (d, cfg.image_size, cfg.image_size):
            raise ValueError(f"v_t must have shape (n, {d}, {cfg.image_size}, {cfg.image_size}), got {tuple(v_t.shape)}")
        if t.shape != (v_t.shape[0],):
            raise ValueError(f"t must have shape (n,) = ({v_t.shape[0]},), got {tuple(t.shape)}")
        n_cond = cfg.in_channels - d
        got = 0 if cond is None else cond.shape[1]
        if got != n_cond or (cond is not None and (cond.shape[0] != v_t.shape[0] or cond.shape[2:] != v_t.shape[2:])):
            raise ValueError(
                f"cond must have shape (n, {n_cond}, {cfg.image_size}, {cfg.image_size}) for {self.kind}/{cfg.task}, "
                f"got {None if cond is None else tuple(cond.shape)}"
            )
        c = self.sde.coefficients(t, v_t.ndim - 1, like=v_t)
        inp = v_t / (c.sigma2 + cfg.sigma_data**2).sqrt()
        if cond is not None:
            inp = torch.cat([inp, cond.to(inp)], 1)
        eps_hat = self.unet(inp, t * 1000.0).sample
        return ScoreModel._from_epsilon(v_t, eps_hat, c.alpha, c.sigma2)

    # ---- files ----
    def save_pretrained(self, directory: str | Path, **metadata: float | int | str) -> None:
        """Write ``model.safetensors`` and ``config.json`` (config plus ``metadata``) to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(directory / WEIGHTS_NAME))
        config = self.config.to_dict()
        config["metadata"] = metadata
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: torch.device | str | None = None) -> "ConditionalEstimator":
        """Load a folder written by :meth:`save_pretrained`, in eval mode with gradients off."""
        directory = Path(directory)
        if not (directory / CONFIG_NAME).is_file() or not (directory / WEIGHTS_NAME).is_file():
            raise ValueError(f"directory {directory} must hold {CONFIG_NAME} and {WEIGHTS_NAME}")
        raw = json.loads((directory / CONFIG_NAME).read_text())
        raw.pop("metadata", None)
        raw["block_out_channels"] = tuple(raw["block_out_channels"])
        raw["attention_levels"] = tuple(raw["attention_levels"])
        model = cls(ConditionalConfig(**raw))
        model.load_state_dict(load_file(str(directory / WEIGHTS_NAME), device="cpu"))
        return model.to(device if device is not None else "cpu").eval().requires_grad_(False)


def load_conditional(name: str | Path, device: torch.device | str | None = None) -> ConditionalEstimator:
    """A shipped estimator by name (one of :data:`SHIPPED`) or any folder from :meth:`~ConditionalEstimator.save_pretrained`."""
    if isinstance(name, str) and name in SHIPPED:
        return ConditionalEstimator.from_pretrained(ASSET_DIR / name, device)
    path = Path(name)
    if not path.is_dir():
        raise ValueError(f"name must be one of {SHIPPED} or a model folder, got {name!r}")
    return ConditionalEstimator.from_pretrained(path, device)


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """Outcome of :func:`train`: the EMA model and the loss history ``[(step, smoothed loss)]``."""

    model: ConditionalEstimator
    history: list[tuple[int, float]] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0


def train(
    estimator: ConditionalEstimator,
    images: Tensor,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 2e-3,
    warmup: int = 200,
    weight_decay: float = 1e-4,
    ema_decay: float = 0.999,
    max_seconds: float | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    checkpoint: Callable[[ConditionalEstimator, int, float], None] | None = None,
    checkpoint_every: int = 1000,
) -> TrainResult:
    """Minimise :func:`score_matching_loss` on ``images`` with AdamW and an EMA of the weights.

    Each step draws a batch with replacement, an observation of it by the config's operator
    (:func:`observe`, a fresh random hole per image for inpainting), the times and the noise, all
    from ``generator``. The learning rate warms up linearly over ``warmup`` steps and then follows a
    cosine decay to 0 at ``steps``; gradients are clipped to norm 1. The EMA is
    :class:`torch.optim.swa_utils.AveragedModel` with decay ``min(ema_decay, (1 + k) / (10 + k))``
    after k updates (the usual warm-up, so that early weights are forgotten quickly).

    Parameters
    ----------
    estimator : ConditionalEstimator, trained in place.
    images : (N, C, H, W) training images.
    steps : optimiser steps.
    max_seconds : stop early after this much wall-clock time.
    checkpoint : called as ``checkpoint(ema_model, step, smoothed_loss)`` every ``checkpoint_every``
        steps and at the end.

    Returns
    -------
    TrainResult with the EMA model (eval mode).
    """
    cfg = estimator.config
    if images.ndim != 4 or tuple(images.shape[1:]) != (cfg.channels, cfg.image_size, cfg.image_size):
        raise ValueError(
            f"images must have shape (N, {cfg.channels}, {cfg.image_size}, {cfg.image_size}), got {tuple(images.shape)}"
        )
    for name, value in (("steps", steps), ("batch_size", batch_size), ("checkpoint_every", checkpoint_every)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if not 0 <= ema_decay < 1:
        raise ValueError(f"ema_decay must lie in [0, 1), got {ema_decay}")
    from torch.optim.swa_utils import AveragedModel

    def ema_fn(averaged: Tensor, current: Tensor, num_averaged: Tensor) -> Tensor:
        decay = min(ema_decay, (1.0 + float(num_averaged)) / (10.0 + float(num_averaged)))  # warm-up
        return averaged + (1.0 - decay) * (current - averaged)

    device = next(estimator.parameters()).device
    images = images.to(device)
    ema = AveragedModel(estimator, avg_fn=ema_fn, use_buffers=True)
    opt = torch.optim.AdamW(estimator.parameters(), lr=lr, weight_decay=weight_decay)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    estimator.train()
    history: list[tuple[int, float]] = []
    running = float("nan")
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=f"train {cfg.estimator}/{cfg.task}", disable=not progress, dynamic_ncols=True, mininterval=2.0)
    step = 0
    for step in bar:
        gen_device = generator.device if generator is not None else "cpu"
        idx = torch.randint(0, images.shape[0], (batch_size,), generator=generator, device=gen_device).to(device)
        x0 = images[idx]
        obs = observe(cfg, x0, generator=generator)
        loss = score_matching_loss(estimator, x0, obs.y, obs.aux, generator=generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(estimator.parameters(), 1.0)
        opt.step()
        sched.step()
        ema.update_parameters(estimator)
        value = loss.item()
        running = value if math.isnan(running) else 0.98 * running + 0.02 * value
        bar.set_postfix(loss=f"{running:.3f}", refresh=False)
        if (step + 1) % 50 == 0:
            history.append((step + 1, running))
        if checkpoint is not None and (step + 1) % checkpoint_every == 0:
            checkpoint(ema.module, step + 1, running)
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    bar.close()
    done = step + 1
    seconds = time.perf_counter() - start
    model = ema.module.eval()
    if checkpoint is not None and done % checkpoint_every:
        checkpoint(model, done, running)
    return TrainResult(model, history, done, seconds)
