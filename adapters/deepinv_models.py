r"""deepinv interoperability, the model direction (optional: ``pip install deepinv``): an smcdiff score
model as a ``deepinv.models.Denoiser`` (:class:`DeepinvDenoiser`, :func:`digits_denoiser`) and deepinv's
``DiffUNet`` as an smcdiff score (:class:`DiffUNetScore`). Imported by name from
:mod:`smcdiff.adapters.deepinv`, which also holds the physics direction.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from deepinv.models import Denoiser
from torch import Tensor

from smcdiff.score import ScoreModel
from smcdiff.sde import SDE, TabulatedVP

from .denoiser import ScoreDenoiser

__all__ = ["DeepinvDenoiser", "digits_denoiser", "DiffUNetScore"]


class DeepinvDenoiser(Denoiser):
    r"""An smcdiff score model as a ``deepinv.models.Denoiser`` (data in [0, 1] by default).

    ``forward(x, sigma)`` = :class:`smcdiff.adapters.ScoreDenoiser`: t solves sigma(t) / alpha(t) = sigma / a,
    and the result is a E[x_0 | x_t] + b by Tweedie's formula (a = 1/2, b = 1/2 for [0, 1]).

    Parameters
    ----------
    score : a score model with a scalar-schedule ``.sde`` (e.g. ``smcdiff.load_model("digits")``).
    sde : SDE, optional; default ``score.sde``.
    data_range : (low, high), the denoiser's data range, default deepinv's (0, 1).

    ``sigma`` is a number, a tensor of shape ``(n,)`` or ``(n, 1, ..., 1)``, in ``data_range`` units,
    inside ``[self.sigma_min, self.sigma_max]`` (the schedule's range).
    """

    def __init__(
        self,
        score: Callable[[Tensor, Tensor], Tensor],
        sde: SDE | None = None,
        data_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__()
        self.denoiser = ScoreDenoiser(score, sde=sde, data_range=data_range)
        self.sigma_min, self.sigma_max = self.denoiser.sigma_min, self.denoiser.sigma_max

    def forward(self, x: Tensor, sigma: float | Tensor, **kwargs: Any) -> Tensor:
        if kwargs:
            raise ValueError(f"DeepinvDenoiser takes no extra arguments, got {sorted(kwargs)}")
        if isinstance(sigma, list):
            sigma = torch.tensor(sigma, dtype=torch.float64)
        return self.denoiser(x, sigma)


def digits_denoiser(device: torch.device | str | None = None) -> DeepinvDenoiser:
    """The shipped digits model (1 x 8 x 8 images) as a deepinv denoiser on [0, 1] data."""
    from smcdiff.models import load_model

    return DeepinvDenoiser(load_model("digits", device=device))


class DiffUNetScore(ScoreModel):
    r"""deepinv's ``DiffUNet`` (guided-diffusion / ADM) as an epsilon-predicting score in [-1, 1].

    The checkpoints deepinv ships (FFHQ 256 from ILVR; ImageNet 256 from guided-diffusion) were trained
    with the linear DDPM schedule beta_k = 1e-4 .. 0.02 over N = 1000 steps and predict the noise in
    their first C output channels (the other C are learned variances, unused here). With
    abar_k = prod_{j <= k} (1 - beta_j) (float64, as in guided-diffusion) the score is that of
    :class:`smcdiff.TabulatedVP`, forward time t at (fractional) timestep t N - 1, and

        s(x_t, t) = -eps_hat(x_t, t N - 1) / sigma(t).

    Unlike ``DiffUNet.forward(x, sigma)`` (its denoiser mode, usable through ``DenoiserScore``), this calls
    the network at the exact time, without rounding to the nearest training step and without clipping.

    Parameters
    ----------
    unet : deepinv.models.DiffUNet (any ``nn.Module`` with ``forward_diffusion(x, timesteps)``).
    channels : C, the data channels (the network returns 2C channels).
    image_size : H = W of the images, a multiple of 32 (the UNet halves it 5 times).
    beta_start, beta_end, num_train_timesteps : the training schedule.
    """

    def __init__(
        self,
        unet: torch.nn.Module,
        channels: int = 3,
        image_size: int = 256,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        num_train_timesteps: int = 1000,
    ) -> None:
        if not hasattr(unet, "forward_diffusion"):
            raise ValueError(f"unet must be a deepinv DiffUNet (with forward_diffusion), got {type(unet).__name__}")
        for name, v in (("channels", channels), ("image_size", image_size), ("num_train_timesteps", num_train_timesteps)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32 (the UNet halves it 5 times), got {image_size}")
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
        super().__init__(TabulatedVP(torch.cumprod(1 - betas, 0)), "epsilon")
        self.unet = unet.eval()
        self.event_shape = (channels, image_size, image_size)

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"x must have shape (n, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}")
        param = next(self.unet.parameters())
        timestep = self.sde.timestep(t).to(device=param.device, dtype=torch.float32)
        out = self.unet.forward_diffusion(x.to(param.device, param.dtype), timestep)
        return out[:, : self.event_shape[0]].to(device=x.device, dtype=x.dtype)

