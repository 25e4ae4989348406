"""Shared pieces of the ``smcdiff`` command: argument types, one-line user errors, threads and device,
output paths and model loading (used by :mod:`smcdiff.cli` and :mod:`smcdiff.cli_restore`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from .restore import MIN_STEPS  # noqa: E402  (one table of step counts for the library and the CLI)

TASKS = ("inpaint", "sr", "deblur", "denoise")
DEFAULT_FACTOR = 4
DEFAULT_BLUR_SIGMA = 1.0
SLIDES = (
    "the 2-d Gaussian example of Strasman et al.'s slides 'Conditional Sampling with Score-Based Generative Models'"
)


class UserError(Exception):
    """An error in what the user asked for: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """Argument errors in one line (with a pointer to ``--help``) instead of the full usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _at_least_zero(kind, strict: bool):
    """An argparse type: ``kind(text)``, > 0 (``strict``) or >= 0."""
    word = "positive" if strict else "non-negative"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {word} {kind.__name__}, got {text!r}") from None
        if not (value > 0 if strict else value >= 0):
            raise argparse.ArgumentTypeError(f"expected a {word} {kind.__name__}, got {text!r}")
        return value

    return parse


def _positive(kind):
    return _at_least_zero(kind, strict=True)


def _non_negative_int(text: str) -> int:
    return _at_least_zero(int, strict=False)(text)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _parse_box(text: str) -> tuple[int, int, int, int]:
    try:
        box = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--box takes X,Y,W,H as four integers, got {text!r}") from None
    if len(box) != 4:
        raise argparse.ArgumentTypeError(f"--box takes X,Y,W,H as four integers, got {text!r}")
    if min(box[:2]) < 0 or min(box[2:]) < 1:
        raise argparse.ArgumentTypeError(
            f"{text}: the box must lie inside the image (X, Y >= 0 from the top-left corner; W, H >= 1)"
        )
    return box


def _join_option_values(argv: list[str], options: tuple[str, ...] = ("--box",)) -> list[str]:
    """``--box -2,2,4,4`` as ``--box=-2,2,4,4``: argparse would take the value for an unknown option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in options and i + 1 < len(argv) and argv[i + 1].startswith("-") and argv[i + 1][1:2].isdigit():
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


# ---- the machine: threads and device ----
def default_threads(cpus: int | None = None) -> int:
    """The thread count the commands use when ``--threads`` is not given.

    ``OMP_NUM_THREADS`` (or ``TORCH_NUM_THREADS``), when set, wins: torch's current count. Otherwise
    1 on machines with at most 2 CPUs (a busy 2-core machine ran 3-25x slower with torch's default),
    else torch's default (one per physical core) capped at ``cpus``, the CPUs this process may use.
    """
    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("TORCH_NUM_THREADS"):
        return torch.get_num_threads()
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cpus <= 2:
        return 1
    return max(1, min(torch.get_num_threads(), cpus))


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _configure(args: argparse.Namespace) -> tuple[torch.device, int]:
    """Set torch's thread count and check the device; returns both."""
    threads = args.threads if args.threads is not None else default_threads()
    torch.set_num_threads(threads)
    name = args.device if args.device is not None else _default_device()
    if name == "cuda" and "LOCAL_RANK" in os.environ:  # torchrun: one GPU per process
        name = f"cuda:{os.environ['LOCAL_RANK']}"
    try:
        device = torch.device(name)
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"--device {name}: not available here ({first})") from None
    return device, threads


def _generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _warn_few_steps(steps: int, kernel: str) -> None:
    need = MIN_STEPS.get(kernel)
    if need is not None and steps < need:
        print(
            f"smcdiff: warning: {steps} steps is far below what the {kernel!r} kernel needs (about {need} or more); "
            "expect samples that look nothing like the data",
            file=sys.stderr,
        )


# ---- files ----
def _image_out(path: Path, flag: str = "--out") -> Path:
    """``path`` with ``.png`` appended when it has no suffix; a suffix Pillow cannot write is an error."""
    from .io import writable_image_suffixes

    if path.suffix == "":
        return path.with_name(path.name + ".png")
    if path.suffix.lower() not in writable_image_suffixes():
        raise UserError(f"{flag} {path}: cannot write images of type {path.suffix!r}; use .png")
    return path


def _result_out(path: Path) -> Path:
    from .results import RESULT_SUFFIXES

    if path.suffix == "":
        return path.with_name(path.name + ".npz")
    if path.suffix.lower() not in RESULT_SUFFIXES:
        raise UserError(f"--save {path}: a run is saved as .npz or .safetensors, got {path.suffix!r}")
    return path


def _check_plotting(flag: str) -> None:
    from .plotting import check_can_plot

    try:
        check_can_plot()
    except RuntimeError as err:
        raise UserError(f"{flag} needs matplotlib ({err})") from None


def _load_model_or_fail(name: str, device: torch.device | None = None):
    from .inpaint import load_model

    try:
        return load_model(name, device=device)
    except (ValueError, OSError) as err:
        raise UserError(f"cannot load model {name!r}: {' '.join(str(err).split())}") from None


