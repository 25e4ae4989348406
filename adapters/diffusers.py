r"""A diffusers ``UNet2DModel`` with its scheduler, as a continuous-time VP score.

The scheduler's ``alphas_cumprod`` define a :class:`smcdiff.TabulatedVP` (exposed as ``.sde``) whose
noise law equals the scheduler's at every training step; forward time t maps to the (fractional)
timestep ``t N - 1``. The network's ``prediction_type`` (epsilon, sample or v_prediction) is read from
the scheduler config once, at construction, and the base class :class:`smcdiff.ScoreModel` converts
the prediction to a score.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from smcdiff.score import ScoreModel
from smcdiff.sde import TabulatedVP

__all__ = ["DiffusersScore"]

SHIPPED_MODELS = {"digits": resources.files("smcdiff") / "assets" / "digits"}
"""Models shipped with smcdiff, reachable by name wherever a path or hub id is accepted."""

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

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

    def time_grid(self, steps: int, spacing: str = "trailing") -> Tensor:
        """A decreasing grid ``(steps + 1,)`` (float64) whose points are the model's training timesteps.

        Timestep k of the scheduler sits at continuous time (k + 1) / N (see :class:`smcdiff.TabulatedVP`).
        ``spacing="trailing"`` (DDIM's "trailing"): k = round(N - 1 - i (N - 1) / steps), i = 0..steps,
        so the first point is the last training step (t = T) and the last is step 0 (t = eps); the UNet
        is never queried between training steps. Pass it to any sampler as ``grid=``.
        """
        n = self.sde.num_train_timesteps
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= n - 1:
            raise ValueError(f"steps must be an integer in [1, {n - 1}] for a {n}-step scheduler, got {steps!r}")
        if spacing != "trailing":
            raise ValueError(f"spacing must be 'trailing', got {spacing!r}")
        k = torch.round(torch.linspace(n - 1, 0, steps + 1, dtype=torch.float64))
        return (k + 1) / n

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

        ``"digits"`` names the shipped 8x8 digits model (:data:`SHIPPED_MODELS`). A hub id is looked up
        in the local Hugging Face cache only when the hub is unreachable or ``HF_HUB_OFFLINE=1``, and
        fails at once with one message if it is not there.

        Raises
        ------
        ValueError
            No such directory; a hub id that is neither cached nor reachable; a corrupt safetensors
            file ("corrupt weights file"); pickle-only weights (``.bin``, refused); no UNet or no
            scheduler config.
        """
        root = _resolve(path_or_hub_id)
        _check_weights(root, subfolder)
        from diffusers import (  # slow to import: after the quick checks
            DDPMScheduler,
            UNet2DModel,
        )

        unet = None
        errors = []
        for sub in [subfolder] if subfolder is not None else ["unet", None]:
            try:
                unet = UNet2DModel.from_pretrained(
                    root, subfolder=sub, torch_dtype=torch_dtype, use_safetensors=True, low_cpu_mem_usage=False
                )
                break
            except (OSError, ValueError, EnvironmentError) as err:
                if "Unable to load weights" in str(err):
                    raise ValueError(f"corrupt weights file in {root!r}: {' '.join(str(err).split())}") from None
                errors.append(f"{sub or '.'}: {' '.join(str(err).split())}")
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


def _resolve(path_or_hub_id: str | Path) -> str:
    """A local directory for ``path_or_hub_id``, or the hub id itself when the hub can be reached.

    Shipped names map to their folders; when offline (``HF_HUB_OFFLINE=1``, or no connection to the
    hub's endpoint within a few seconds), a hub id resolves to its snapshot in the local cache or
    fails with one line instead of the hub client's minute of retries.
    """
    text = str(path_or_hub_id)
    if not isinstance(path_or_hub_id, Path) and text in SHIPPED_MODELS:
        return str(SHIPPED_MODELS[text])
    local = Path(text).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ValueError(f"{text!r} is a file; a model is a directory (a diffusers UNet2DModel with its scheduler)")
        return str(local)
    if _looks_like_a_path(path_or_hub_id):
        raise ValueError(f"no such model directory: {text!r} (a hub id has the form 'owner/name')")
    reason = _offline_reason()
    if reason is None:
        return text
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(text, local_files_only=True)
    except Exception:  # LocalEntryNotFoundError, a malformed id, ...
        raise ValueError(
            f"hub model {text!r} is not in the local Hugging Face cache and the hub cannot be used ({reason}); "
            "download it where there is network, or give a local directory"
        ) from None


def _offline_reason() -> str | None:
    """Why the hub cannot be used now (``HF_HUB_OFFLINE`` set, or its endpoint unreachable), or None."""
    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    try:
        from huggingface_hub import constants

        offline = bool(constants.HF_HUB_OFFLINE) or flag in {"1", "ON", "YES", "TRUE"}
        endpoint = constants.ENDPOINT
    except ImportError:  # pragma: no cover - diffusers depends on huggingface_hub
        offline, endpoint = flag in {"1", "ON", "YES", "TRUE"}, "https://huggingface.co"
    if offline:
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # a proxy decides what is reachable: leave it to the hub client
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=3).close()
    except OSError as err:
        return f"no connection to {url.hostname}:{port}: {err.strerror or err}"
    return None


def _check_weights(root: str, subfolder: str | None) -> None:
    """Refuse, with a precise message, a local model whose UNet weights are corrupt or pickle-only."""
    base = Path(root)
    if not base.is_dir():
        return  # a hub id: the hub client downloads safetensors only
    for folder in [base / subfolder] if subfolder is not None else [base / "unet", base]:
        if not (folder / "config.json").is_file():
            continue
        weights = sorted(folder.glob("*.safetensors"))
        if not weights:
            pickles = sorted(p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES)
            if pickles:
                raise ValueError(
                    f"{folder / pickles[0]}: pickle weights are refused: convert to safetensors "
                    "(in a trusted environment: UNet2DModel.from_pretrained(dir).save_pretrained(dir))"
                )
            raise ValueError(f"no weights file (diffusion_pytorch_model.safetensors) in {folder}")
        from safetensors import safe_open

        for path in weights:
            try:
                with safe_open(str(path), framework="pt") as fh:
                    fh.keys()
            except Exception as err:  # SafetensorError, OSError: a damaged or truncated file
                raise ValueError(f"corrupt weights file {path}: {' '.join(str(err).split())}") from None
        return
