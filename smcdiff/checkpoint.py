"""Resumable training state without pickle: ``state.safetensors`` + ``state.json`` in one folder.

The tensors file holds the model, its EMA copy, the optimiser's per-parameter moments and the
``torch.Generator`` state; the JSON file holds whatever the training loop needs besides (step, loss
history, configuration). Both are written to temporary names first and then renamed, so an
interrupted save leaves the previous checkpoint intact. Used by :func:`smcdiff.msdiff.multiscale.train`
and ``examples/train_digits.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

__all__ = ["save_training_state", "read_training_meta", "load_training_state"]

TENSORS_NAME = "state.safetensors"
META_NAME = "state.json"


def save_training_state(
    path: str | Path,
    model: torch.nn.Module,
    ema: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator | None,
    meta: dict,
) -> None:
    """Write the training state to the folder ``path`` (created if needed); ``meta`` must be JSON-serialisable."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    for i, state in optimizer.state_dict()["state"].items():
        for k, v in state.items():
            tensors[f"opt.{i}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    if generator is not None:
        tensors["generator"] = generator.get_state()
    save_file(tensors, str(path / f"{TENSORS_NAME}.tmp"))
    (path / f"{META_NAME}.tmp").write_text(json.dumps(meta))
    (path / f"{TENSORS_NAME}.tmp").replace(path / TENSORS_NAME)
    (path / f"{META_NAME}.tmp").replace(path / META_NAME)


def read_training_meta(path: str | Path) -> dict:
    """The JSON part of a training state, e.g. to check that it belongs to the model before loading."""
    path = Path(path)
    if not (path / TENSORS_NAME).is_file() or not (path / META_NAME).is_file():
        raise ValueError(f"no training state in {str(path)!r} (expected {TENSORS_NAME} and {META_NAME})")
    return json.loads((path / META_NAME).read_text())


def load_training_state(
    path: str | Path,
    model: torch.nn.Module,
    ema: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator | None,
) -> dict:
    """Restore a state written by :func:`save_training_state` in place and return its ``meta``."""
    meta = read_training_meta(path)
    tensors = load_file(str(Path(path) / TENSORS_NAME))
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")})
    moments: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            moments.setdefault(int(i), {})[name] = v
    opt_state = optimizer.state_dict()
    opt_state["state"] = moments
    optimizer.load_state_dict(opt_state)
    if generator is not None and "generator" in tensors:
        generator.set_state(tensors["generator"])
    return meta
