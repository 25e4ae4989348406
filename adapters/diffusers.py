r"""A diffusers ``UNet2DModel`` with its scheduler, as a continuous-time VP score.

The scheduler's ``alphas_cumprod`` define a :class:`smcdiff.TabulatedVP` (exposed as ``.sde``) whose
noise law equals the scheduler's at every training step; forward time t maps to the (fractional)
timestep ``t N - 1``. The network's ``prediction_type`` (epsilon, sample or v_prediction) is read from
the scheduler config once, at construction, and the base class :class:`smcdiff.ScoreModel` converts
the prediction to a score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from smcdiff.score import ScoreModel
from smcdiff.sde import TabulatedVP

__all__ = ["DiffusersScore"]

_PREDICTIONS = {"epsilon": "epsilon", "sample": "sample", "v_prediction": "v_prediction"}


class DiffusersScore(ScoreModel):
    """Score of a diffusers ``UNet2DModel`` trained with a DDPM-family scheduler.

    Parameters
    ----------
    unet : diffusers.UNet2DModel
    scheduler : a diffusers scheduler (any with ``alphas_cumprod`` and a ``prediction_type`` config),
        or its config dict.

    Attributes
    ----------
    sde : TabulatedVP matching the scheduler.
    event_shape : (C, H, W) the UNet accepts.
    """

    def __init__(self, unet: Any, scheduler: Any) -> None:
        from diffusers import DDPMScheduler, UNet2DModel

        if not isinstance(unet, UNet2DModel):
            raise ValueError(f"unet must be a diffusers UNet2DModel, got {type(unet).__name__}")
        if isinstance(scheduler, dict):
            scheduler = DDPMScheduler.from_config(scheduler)
        if not hasattr(scheduler, "alphas_cumprod") or not hasattr(scheduler, "config"):
            raise ValueError("scheduler must be a diffusers scheduler with alphas_cumprod, or its config dict")
        prediction = getattr(scheduler.config, "prediction_type", "epsilon")
        if prediction not in _PREDICTIONS:
            raise ValueError(f"unsupported prediction_type {prediction!r}; expected one of {sorted(_PREDICTIONS)}")
        super().__init__(TabulatedVP(scheduler.alphas_cumprod), _PREDICTIONS[prediction])
        self.unet = unet.eval()
        self.scheduler_config = dict(scheduler.config)
        size = unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        self.event_shape = (unet.config.in_channels, h, w)

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"x must have shape (n, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}")
        param = next(self.unet.parameters())
        timestep = self.sde.timestep(t).to(device=param.device, dtype=torch.float32)
        out = self.unet(x.to(param.device, param.dtype), timestep).sample
        return out.to(x.dtype)

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | Path,
        subfolder: str | None = None,
        torch_dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> "DiffusersScore":
        """Load a UNet and its scheduler from a local directory or a hub id (one code path for both).

        The layout of a diffusers pipeline (``unet/`` and ``scheduler/`` subfolders) is found by itself;
        ``subfolder`` names the UNet's folder otherwise, with ``scheduler_config.json`` beside it or in
        a ``scheduler/`` folder of the root. Weights load through safetensors (diffusers never unpickles
        them when ``use_safetensors=True``).
        """
        from diffusers import DDPMScheduler, UNet2DModel

        root = str(path_or_hub_id)
        if not Path(root).expanduser().exists() and _looks_like_a_path(path_or_hub_id):
            raise ValueError(f"no such model directory: {root!r} (a hub id has the form 'owner/name')")
        root = str(Path(root).expanduser()) if Path(root).expanduser().exists() else root
        unet = None
        errors = []
        for sub in [subfolder] if subfolder is not None else ["unet", None]:
            try:
                unet = UNet2DModel.from_pretrained(
                    root, subfolder=sub, torch_dtype=torch_dtype, use_safetensors=True, low_cpu_mem_usage=False
                )
                break
            except (OSError, ValueError, EnvironmentError) as err:
                errors.append(f"{sub or '.'}: {err}")
        if unet is None:
            raise ValueError(f"no UNet2DModel (safetensors) found at {root!r}: " + "; ".join(errors))
        config = None
        for sub in ["scheduler", subfolder, None]:
            try:
                config = DDPMScheduler.load_config(root, subfolder=sub)
                break
            except (OSError, ValueError, EnvironmentError):
                continue
        if config is None:
            raise ValueError(
                f"no scheduler config found at {root!r} (looked for scheduler/scheduler_config.json): the noise "
                "schedule must come from the model's own scheduler, smcdiff does not guess it"
            )
        model = cls(unet, DDPMScheduler.from_config(config))
        return model.to(device) if device is not None else model


def _looks_like_a_path(value: str | Path) -> bool:
    """A local path rather than a hub id ``owner/name``: a Path, absolute, ``.``/``~``-relative or deeper."""
    text = str(value)
    return isinstance(value, Path) or text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text
