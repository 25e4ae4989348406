"""Model files: weights in safetensors, configuration and metadata in JSON, one folder per model.

Every in-house model (the multiscale and uniform diffusion models, the CDE / CDiffE / CMDE
estimators, the digit classifier) is stored in one layout::

    DIR/model.safetensors    the state dict (tensors only; never a pickle)
    DIR/config.json          {"kind": "<model kind>", "config": {...}, "metadata": {...}}

``kind`` names the model class, ``config`` holds the arguments of its configuration dataclass
(``Config(**config)`` rebuilds it) and ``metadata`` whatever the writer recorded (training steps,
seconds, losses, accuracy). :class:`Pretrained` gives a model class ``save_pretrained`` and
``from_pretrained`` in this layout; :func:`read_config` reads the JSON part alone, e.g. to choose
the class before building the model. Folders written by smcdiff 0.1 (the configuration's arguments at
the top level of ``config.json``, beside an optional ``kind`` and ``metadata``) still load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = ["WEIGHTS_NAME", "CONFIG_NAME", "SavedConfig", "Pretrained", "save_model", "read_config", "load_weights"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

_Model = TypeVar("_Model", bound="Pretrained")


@dataclass(frozen=True)
class SavedConfig:
    """The JSON part of a model folder: ``kind``, the configuration's arguments and the metadata."""

    kind: str
    config: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)


def save_model(
    directory: str | Path,
    model: nn.Module,
    kind: str,
    config: dict[str, Any],
    metadata: dict[str, Any] | None = None,
    *,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model``'s state dict and its ``config.json`` to ``directory`` (created if needed).

    Parameters
    ----------
    directory : the model folder.
    model : its ``state_dict()`` is stored.
    kind : the model kind, checked when loading.
    config : JSON-serialisable arguments of the model's configuration.
    metadata : JSON-serialisable extras (training statistics, ...).
    dtype : store floating-point tensors in this type (e.g. ``torch.float16``, to save space);
        loading casts them back to the model's dtype.

    Returns
    -------
    The folder.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(tensors, str(directory / WEIGHTS_NAME))
    record = dict(kind=kind, config=config, metadata=dict(metadata or {}))
    (directory / CONFIG_NAME).write_text(json.dumps(record, indent=2) + "\n")
    return directory


def read_config(
    directory: str | Path, kinds: tuple[str, ...] | None = None, config_class: type | None = None
) -> SavedConfig:
    """The :class:`SavedConfig` of a model folder.

    Parameters
    ----------
    directory : a folder written by :func:`save_model`.
    kinds : accepted kinds; None accepts any.
    config_class : the configuration dataclass, used to read a 0.1 folder (its top-level keys that are
        not fields of the class are metadata there).

    Raises
    ------
    ValueError
        Naming the path, when the folder lacks a file, ``config.json`` is not valid JSON in the layout
        of this module, or its kind is not among ``kinds``.
    """
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not path.is_file() or not (directory / WEIGHTS_NAME).is_file():
        raise ValueError(f"directory {directory} must hold {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        raw = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if isinstance(raw, dict) and "config" not in raw:
        raw = _from_flat_layout(raw, kinds, config_class)
    if not isinstance(raw, dict) or not isinstance(raw.get("kind"), str) or not isinstance(raw.get("config"), dict):
        raise ValueError(f"{path} must hold an object with 'kind' (a string), 'config' (an object) and 'metadata'")
    record = SavedConfig(raw["kind"], raw["config"], dict(raw.get("metadata") or {}))
    if kinds is not None and record.kind not in kinds:
        raise ValueError(f"{path} describes a {record.kind!r} model, expected one of {kinds}")
    return record


def _from_flat_layout(raw: dict[str, Any], kinds: tuple[str, ...] | None, config_class: type | None) -> dict[str, Any]:
    """smcdiff 0.1's ``config.json`` in this module's layout: the configuration's arguments sat at the top
    level beside an optional ``kind`` (absent when only one kind was possible) and ``metadata`` or metrics."""
    raw = dict(raw)
    kind = raw.pop("kind", kinds[0] if kinds is not None and len(kinds) == 1 else None)
    metadata = dict(raw.pop("metadata", None) or {})
    if config_class is not None:
        names = {f.name for f in fields(config_class)}
        metadata.update({k: raw.pop(k) for k in list(raw) if k not in names})
    return dict(kind=kind, metadata=metadata, config=raw)


def load_weights(model: nn.Module, directory: str | Path, device: torch.device | str | None = None) -> nn.Module:
    """Load ``directory/model.safetensors`` into ``model``; return it on ``device`` (CPU by default), in eval
    mode with gradients off. A ``ValueError`` names the file if it is unreadable or does not fit ``model``."""
    path = Path(directory) / WEIGHTS_NAME
    try:
        state = load_file(str(path), device="cpu")
    except (OSError, SafetensorError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"the weights in {path} do not fit the model its config.json describes: {err}") from None
    return model.to(device if device is not None else "cpu").eval().requires_grad_(False)


class Pretrained:
    """Mixin for ``nn.Module`` classes built as ``cls(config)``: files in the layout of this module.

    A subclass sets ``model_kind`` (the ``kind`` of its files) and ``config_class`` (a dataclass with
    ``to_dict()``, rebuilt as ``config_class(**config)``), and holds its configuration as ``self.config``.
    """

    model_kind: ClassVar[str]
    config_class: ClassVar[type]

    def save_pretrained(
        self, directory: str | Path, *, dtype: torch.dtype | None = None, **metadata: float | int | str
    ) -> None:
        """Write ``model.safetensors`` and ``config.json`` (kind, config and ``metadata``) to ``directory``.

        ``dtype`` (e.g. ``torch.float16``) stores the floating-point weights in that type to save space;
        :meth:`from_pretrained` casts them back to the model's dtype.
        """
        save_model(directory, self, self.model_kind, self.config.to_dict(), metadata, dtype=dtype)

    @classmethod
    def from_pretrained(cls: type[_Model], directory: str | Path, device: torch.device | str | None = None) -> _Model:
        """Load a folder written by :meth:`save_pretrained` (eval mode, gradients off)."""
        record = read_config(directory, (cls.model_kind,), cls.config_class)
        try:
            config = cls.config_class(**record.config)
        except TypeError as err:
            raise ValueError(f"{Path(directory) / CONFIG_NAME} does not hold a {cls.config_class.__name__}: {err}") from None
        return load_weights(cls(config), directory, device)
