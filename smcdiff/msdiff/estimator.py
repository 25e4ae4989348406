r"""The CDE / CDiffE / CMDE score network of "Non-Uniform Diffusion Models" §3.4 and its files.

One backbone (a diffusers ``UNet2DModel`` whose input is the diffused target concatenated with the
condition along the channels, App. B) and the VE SDE of §4.2, sigma(t) = sigma_min (sigma_max /
sigma_min)^t. The network predicts the noise, s = -eps_hat / sigma
(:func:`smcdiff.score.prediction_to_score`), after scaling each diffused channel by
1 / sqrt(sigma_i(t)^2 + sigma_data^2) so that its input has unit scale at every time.

Files: :mod:`smcdiff.persistence` (kind ``"conditional"``); the shipped digit models live under
``smcdiff/assets/conditional`` and load by name with :func:`load_conditional`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..persistence import Pretrained
from ..score import network_timestep, prediction_to_score
from ..sde import VE
from .conditional_config import ConditionalConfig, Estimator
from .conditional_losses import joint_ve
from .networks import unet2d

__all__ = ["ConditionalEstimator", "load_conditional", "ASSET_DIR", "SHIPPED"]

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "conditional"
SHIPPED = ("cde", "cdiffe", "cmde_0.5", "cmde_1", "sr_cde", "sr_cdiffe", "sr_cmde_0.5")
"""Names of the shipped digit models under ``smcdiff/assets/conditional`` (``sr_*``: 4x super-resolution)."""


class ConditionalEstimator(nn.Module, Pretrained):
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

    model_kind = "conditional"
    config_class = ConditionalConfig

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
        eps_hat = self.unet(inp, network_timestep(t)).sample
        return prediction_to_score("epsilon", v_t, eps_hat, c.alpha, c.sigma2)


def load_conditional(name: str | Path, device: torch.device | str | None = None) -> ConditionalEstimator:
    """A shipped estimator by name (one of :data:`SHIPPED`) or any folder from :meth:`~ConditionalEstimator.save_pretrained`."""
    if isinstance(name, str) and name in SHIPPED:
        return ConditionalEstimator.from_pretrained(ASSET_DIR / name, device)
    path = Path(name)
    if not path.is_dir():
        raise ValueError(f"name must be one of {SHIPPED} or a model folder, got {name!r}")
    return ConditionalEstimator.from_pretrained(path, device)
