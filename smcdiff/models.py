"""Models by name: the shipped models, a local directory or a hub id, resolved to a score module.

``load_model("digits")`` is the shipped 8x8 digits UNet (a diffusers ``UNet2DModel`` trained by
``examples/train_digits.py``, under ``smcdiff/assets/digits``), ``load_model("mnist")`` the shipped 28x28 MNIST
UNet (``examples/train_mnist.py``, ``smcdiff/assets/mnist``); a directory is a diffusers model folder
(``unet/`` with ``config.json`` and ``diffusion_pytorch_model.safetensors``, and ``scheduler/`` with
``scheduler_config.json``, as ``save_pretrained`` writes them); any other string is tried as a hub id
(needs the network). Weights are read from safetensors; nothing is unpickled.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from pathlib import Path

import torch

from .score import ScoreModel

__all__ = ["load_model", "SHIPPED_MODELS", "DEFAULT_MODEL_PATH"]

_ASSETS = resources.files("smcdiff") / "assets"
SHIPPED_MODELS = {"digits": _ASSETS / "digits", "mnist": _ASSETS / "mnist"}
"""Names of the models that ship with the package and their folders."""
DEFAULT_MODEL_PATH = SHIPPED_MODELS["digits"]


@functools.lru_cache(maxsize=4)
def _load_cached(path: str) -> ScoreModel:
    from smcdiff.adapters import DiffusersScore

    return DiffusersScore.from_pretrained(path)


def load_model(model: ScoreModel | str | Path = "digits", device: torch.device | str | None = None) -> ScoreModel:
    """Resolve ``model``: a score module (returned as is, or moved to ``device``), the name of a shipped
    model (:data:`SHIPPED_MODELS`), a local directory or a hub id of a diffusers UNet2DModel with its scheduler.

    Loaded models are cached on the CPU, once per process; asking for another device returns a copy
    on that device, so one caller's device never moves another caller's model.
    """
    if isinstance(model, torch.nn.Module) and hasattr(model, "sde"):
        return model if device is None else model.to(device)
    if isinstance(model, (str, Path)):
        path = str(SHIPPED_MODELS.get(str(model), model))
        cached = _load_cached(path)
        if device is None or torch.device(device) == torch.device("cpu"):
            return cached
        return copy.deepcopy(cached).to(device)
    raise ValueError(
        f"model must be a score module with .sde, one of {sorted(SHIPPED_MODELS)}, a directory or a hub id, "
        f"got {type(model).__name__}"
    )
