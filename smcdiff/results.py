r"""Keep a run: :func:`save_result` / :func:`load_result` for :class:`smcdiff.RestoreResult`.

A result file holds the weighted particles and everything needed to read them again: the
log-weights, the per-step history (ESS, resampling, distinct lineages), the log-evidence, the
observation y, the operator (its class and parameters, a mask or a matrix as a tensor), sigma_y, the
method, the proposal and the run's settings. Two formats, neither of which can run code when read:

- ``.npz``: NumPy arrays, read back with ``allow_pickle=False``; the metadata is one JSON string;
- ``.safetensors``: the tensors, with the JSON metadata in the safetensors header.

Both read back in Python with numpy or safetensors alone (names below), for other tools:

    samples (B, M, *event)  log_weights (B, M)  y (B, *obs)  ess (steps, B)  resampled (steps, B)
    log_evidence (B,)  lineages (steps, B)  operator.<name> (operator tensors)  + JSON metadata
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .operators import Blur, Dense, Downsample, Grayscale, Mask, Operator
from .feynman_kac import WeightedSamples
from .restore import RestoreResult

__all__ = ["save_result", "load_result", "describe_operator", "build_operator", "ResultFileError", "RESULT_SUFFIXES"]

FORMAT = "smcdiff.result"
VERSION = 1
RESULT_SUFFIXES = (".npz", ".safetensors")
_METADATA_KEY = "__metadata__"  # the JSON string in an .npz file; the header key in .safetensors
_REQUIRED = ("samples", "log_weights", "y", "ess", "resampled", "log_evidence")


class ResultFileError(ValueError):
    """A file that is not a readable smcdiff result."""


# ---- operators as (JSON description, tensors) ----
def describe_operator(op: Operator) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """A JSON-able description of ``op`` (class name and parameters) and its tensor parameters.

    Known classes (``Mask``, ``Downsample``, ``Blur``, ``Grayscale``, ``Dense``) are described fully
    and rebuilt by :func:`build_operator`; any other operator is recorded by class and ``repr`` only.
    """
    desc: dict[str, Any] = {"class": type(op).__name__, "module": type(op).__module__, "repr": repr(op)}
    tensors: dict[str, Tensor] = {}
    shape = getattr(op, "in_shape", None)
    if shape is not None:
        desc["in_shape"] = [int(v) for v in shape]
    kind = type(op)
    if kind is Mask:
        desc["per_row"] = bool(op.per_row)
        tensors["mask"] = op.mask
    elif kind is Downsample:
        desc["factor"] = int(op.factor)
    elif kind is Blur:
        desc["rtol"] = float(op.rtol)
        tensors["kernel_h"], tensors["kernel_w"] = op.kernels
    elif kind is Grayscale:
        desc["channels"] = int(op.channels)
    elif kind is Dense:
        tensors["matrix"] = op.matrix
    else:
        desc["rebuild"] = False
    return desc, tensors


def build_operator(desc: dict[str, Any], tensors: dict[str, Tensor]) -> Operator:
    """The operator described by :func:`describe_operator`, bound to its recorded input shape.

    Raises ``ValueError`` for a class it cannot rebuild (a user-defined operator).
    """
    name = desc.get("class")
    in_shape = tuple(desc["in_shape"]) if "in_shape" in desc else None
    try:
        if name == "Mask" and desc.get("rebuild", True):
            return Mask(tensors["mask"].to(torch.bool), per_row=bool(desc.get("per_row", False)))
        if name == "Downsample" and desc.get("rebuild", True):
            op: Operator = Downsample(int(desc["factor"]))
        elif name == "Blur" and desc.get("rebuild", True):
            op = Blur((tensors["kernel_h"], tensors["kernel_w"]), rtol=float(desc["rtol"]))
        elif name == "Grayscale" and desc.get("rebuild", True):
            op = Grayscale(int(desc["channels"]))
        elif name == "Dense" and desc.get("rebuild", True):
            return Dense(tensors["matrix"], in_shape=in_shape)
        else:
            raise ValueError(
                f"cannot rebuild operator {desc.get('repr', name)!r} (class {name}): pass operator= to load_result"
            )
    except KeyError as err:
        raise ValueError(f"the result file's operator {name} lacks its parameter {err.args[0]!r}") from None
    return op.bind(in_shape) if in_shape is not None else op


# ---- metadata ----
def _jsonable(value: Any) -> Any:
    """``value`` with tensors, paths and other objects turned into JSON values (numbers, strings, lists)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Tensor):
        return _jsonable(value.item() if value.numel() == 1 else value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in RESULT_SUFFIXES:
        raise ValueError(f"a result file must end in .npz or .safetensors, got {path.name!r}")
    return suffix


# ---- save / load ----
def save_result(result: RestoreResult, path: str | Path) -> Path:
    """Write ``result`` to ``path`` (``.npz`` or ``.safetensors``, chosen by the suffix); returns the path.

    Tensors are written from the CPU in their own dtypes (bfloat16 and float16 as float32 in ``.npz``);
    nothing is pickled.
    """
    if not isinstance(result, RestoreResult):
        raise ValueError(f"result must be a RestoreResult (from smcdiff.restore or smcdiff.inpaint), got {type(result).__name__}")
    path = Path(path)
    suffix = _check_suffix(path)
    w = result.weighted
    tensors: dict[str, Tensor] = {
        "samples": result.samples,
        "log_weights": result.log_weights,
        "y": result.y,
        "ess": w.ess,
        "resampled": w.resampled,
        "log_evidence": w.log_evidence,
    }
    if w.lineages is not None:
        tensors["lineages"] = w.lineages
    op_desc, op_tensors = describe_operator(result.operator)
    tensors.update({f"operator.{k}": v for k, v in op_tensors.items()})
    seen: set[int] = set()
    for k, v in tensors.items():  # safetensors refuses tensors that share memory (e.g. a Blur's two kernels)
        v = v.detach().cpu().contiguous()
        ptr = v.untyped_storage().data_ptr()
        tensors[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    from .version import __version__

    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "smcdiff_version": __version__,
        "method": result.method,
        "proposal": result.proposal,
        "noise_std": _jsonable(float(result.noise_std)),
        "model_evaluations": int(result.model_evaluations),
        "seconds": _jsonable(float(result.seconds)),
        "operator": op_desc,
        "settings": _jsonable(dict(result.settings)),
        "populations": int(w.populations),
    }
    text = json.dumps(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npz":
        arrays = {k: (v.float() if v.dtype in (torch.bfloat16, torch.float16) else v).numpy() for k, v in tensors.items()}
        with open(path, "wb") as fh:  # a file object: numpy would otherwise append its own suffix
            np.savez_compressed(fh, **arrays, **{_METADATA_KEY: np.array(text)})
    else:
        from safetensors.torch import save_file

        save_file(tensors, str(path), metadata={_METADATA_KEY: text})
    return path


def _read(path: Path, suffix: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            if _METADATA_KEY not in data.files:
                raise ResultFileError(f"{path} is not an smcdiff result file (no metadata)")
            text = str(data[_METADATA_KEY].item())
            tensors = {k: torch.from_numpy(np.array(data[k])) for k in data.files if k != _METADATA_KEY}
    else:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
            if _METADATA_KEY not in header:
                raise ResultFileError(f"{path} is not an smcdiff result file (no metadata)")
            text = header[_METADATA_KEY]
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    return tensors, json.loads(text)


def _populations(meta: dict[str, Any], path: Path, log_weights: Tensor) -> int:
    p = meta.get("populations", 1)
    if isinstance(p, bool) or not isinstance(p, int) or p < 1 or log_weights.ndim != 2 or log_weights.shape[1] % p:
        raise ResultFileError(f"{path} records populations={p!r}, which does not divide its particles")
    return p


_UNWEIGHTED_METHODS = ("replacement",)
"""Methods whose particles are unweighted draws: their log-evidence is NaN (``WeightedSamples.unweighted``)."""


def _check_tensors(tensors: dict[str, Tensor], meta: dict[str, Any], path: Path, operator: Operator) -> int:
    """Check the arrays of a result file against each other, the operator and what a run can hold;
    returns the number of populations.

    Shapes: samples (B, M, *in_shape), log_weights (B, M), y (B, *out_shape), ess, resampled and
    lineages (steps, B), log_evidence (B,), populations dividing M. Values: finite samples, y and ESS
    (in [0, M]); log-weights without NaN or +inf (-inf is a zero weight) whose logsumexp over M is 0;
    lineages in [1, M]; a finite log-evidence (NaN only for unweighted methods).

    Raises ``ResultFileError`` naming the first field that does not fit (a file cut or altered).
    """

    def bad(name: str, why: str) -> ResultFileError:
        return ResultFileError(f"{path}: {name} {why} (the file was cut or altered)")

    samples, log_w, y = tensors["samples"], tensors["log_weights"], tensors["y"]
    ess, resampled, log_z, lineages = tensors["ess"], tensors["resampled"], tensors["log_evidence"], tensors.get("lineages")
    for name in ("samples", "log_weights", "y", "ess", "log_evidence"):
        if not tensors[name].is_floating_point():
            raise bad(name, f"has dtype {tensors[name].dtype}, not a floating-point type")
    if resampled.is_floating_point() or resampled.is_complex():
        raise bad("resampled", f"has dtype {resampled.dtype}, not bool")
    if lineages is not None and (lineages.is_floating_point() or lineages.is_complex() or lineages.dtype == torch.bool):
        raise bad("lineages", f"has dtype {lineages.dtype}, not an integer type")
    # shapes, against samples (B, M, *event) and the operator
    if samples.ndim < 3:
        raise bad("samples", f"has shape {tuple(samples.shape)}, not (B, M, *event_shape)")
    b, m = samples.shape[:2]
    in_shape, out_shape = getattr(operator, "in_shape", None), getattr(operator, "out_shape", None)
    if in_shape is not None and tuple(samples.shape[2:]) != tuple(in_shape):
        raise bad("samples", f"have event shape {tuple(samples.shape[2:])} but the operator {operator!r} takes {tuple(in_shape)}")
    if tuple(log_w.shape) != (b, m):
        raise bad("log_weights", f"has shape {tuple(log_w.shape)}, not (B, M) = {(b, m)} as samples")
    if y.ndim < 1 or y.shape[0] != b:
        raise bad("y", f"has shape {tuple(y.shape)}, not {b} observations as samples")
    if out_shape is not None and tuple(y.shape[1:]) != tuple(out_shape):
        raise bad("y", f"has event shape {tuple(y.shape[1:])} but the operator {operator!r} gives {tuple(out_shape)}")
    if isinstance(operator, Mask) and operator.per_row and operator.mask.shape[0] != b:
        raise bad("operator.mask", f"has {operator.mask.shape[0]} rows, not {b} as samples")
    if ess.ndim != 2 or ess.shape[1] != b:
        raise bad("ess", f"has shape {tuple(ess.shape)}, not (steps, B) with B = {b}")
    steps = ess.shape[0]
    for name, value in (("resampled", resampled), ("lineages", lineages)):
        if value is not None and tuple(value.shape) != (steps, b):
            raise bad(name, f"has shape {tuple(value.shape)}, not (steps, B) = {(steps, b)} as ess")
    if tuple(log_z.shape) != (b,):
        raise bad("log_evidence", f"has shape {tuple(log_z.shape)}, not (B,) = {(b,)}")
    populations = _populations(meta, path, log_w)
    # values
    for name, value in (("samples", samples), ("y", y), ("ess", ess)):
        if not torch.isfinite(value).all():
            raise bad(name, "holds NaN or infinite values")
    if torch.isnan(log_w).any() or (log_w == math.inf).any():
        raise bad("log_weights", "hold NaN or +inf")
    total = torch.logsumexp(log_w.to(torch.float64), dim=1)
    if not (total.abs() <= 1e-6).all():  # all -inf (no weight left) included
        worst = total[~(total.abs() <= 1e-6)][0].item()
        raise bad("log_weights", f"are not normalised (logsumexp over the particles is {worst:.4g}, not 0)")
    if resampled.dtype != torch.bool and ((resampled != 0) & (resampled != 1)).any():
        raise bad("resampled", "holds values other than 0 and 1")
    if ((ess < 0) | (ess > m * (1 + 1e-6))).any():
        raise bad("ess", f"leaves [0, M] = [0, {m}]")
    if lineages is not None and ((lineages < 1) | (lineages > m)).any():
        raise bad("lineages", f"leave [1, M] = [1, {m}]")
    if torch.isinf(log_z).any():
        raise bad("log_evidence", "is infinite")
    method = meta.get("method")
    if method not in _UNWEIGHTED_METHODS and torch.isnan(log_z).any():
        raise bad("log_evidence", f"is NaN in a weighted run (method {method!r})")
    return populations


def load_result(path: str | Path, operator: Operator | None = None) -> RestoreResult:
    """Read a result written by :func:`save_result` (never unpickles anything).

    ``operator`` replaces the recorded one; it is needed only for operator classes that
    :func:`build_operator` cannot rebuild. Tensors come back on the CPU.

    Raises ``ResultFileError`` (a ``ValueError``) for a file that is not a readable smcdiff result.
    """
    path = Path(path)
    suffix = _check_suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such result file: {path}")
    try:
        tensors, meta = _read(path, suffix)
    except ResultFileError:
        raise
    except Exception as err:  # zip, safetensors and JSON errors of a damaged file
        raise ResultFileError(f"cannot read result file {path}: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ResultFileError(f"{path} is not an smcdiff result file")
    if int(meta.get("version", 0)) > VERSION:
        raise ResultFileError(f"{path} was written by a newer smcdiff (result format {meta['version']}); upgrade smcdiff")
    missing = [k for k in _REQUIRED if k not in tensors]
    if missing:
        raise ResultFileError(f"{path} lacks {', '.join(missing)}")
    if operator is None:
        if not isinstance(meta.get("operator"), dict):
            raise ResultFileError(f"{path}: its metadata does not describe the operator")
        op_tensors = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("operator.")}
        operator = build_operator(meta["operator"], op_tensors)
    populations = _check_tensors(tensors, meta, path, operator)
    weighted = WeightedSamples(
        tensors["samples"], tensors["log_weights"], tensors["ess"], tensors["resampled"].to(torch.bool),
        tensors["log_evidence"], tensors.get("lineages"), populations=populations,
    )
    try:
        return RestoreResult(
            samples=tensors["samples"],
            log_weights=tensors["log_weights"],
            y=tensors["y"],
            operator=operator,
            noise_std=float(meta["noise_std"]),
            weighted=weighted,
            method=str(meta["method"]),
            proposal=meta.get("proposal"),
            model_evaluations=int(meta["model_evaluations"]),
            seconds=float(meta["seconds"]),
            settings=dict(meta.get("settings", {})),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ResultFileError(f"{path}: its metadata lacks or garbles {err}") from None
