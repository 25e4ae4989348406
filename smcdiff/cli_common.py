"""Shared pieces of the ``smcdiff`` command: argument types, one-line user errors, threads and device,
output paths and model loading (used by :mod:`smcdiff.cli` and :mod:`smcdiff.cli_restore`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from .restore import MIN_STEPS  # noqa: E402  (one table of step counts for the library and the CLI)
from .threads import default_threads

TASKS = ("inpaint", "sr", "deblur", "denoise", "quantise")
DEFAULT_LEVELS = 4
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


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: the same resolved path, or (both existing) one inode."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _check_destination(flag: str, path: Path) -> None:
    """A ``UserError`` unless ``path`` can be written: its nearest existing folder must be a folder in which
    this process can create files (probed with a file that is removed at once; no folder is created)."""
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; name a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path}: the file exists and is read-only")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # folders that writing will create
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"{flag} {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: cannot write in {folder} (permission denied)")
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".smcdiff-check-")
    except OSError as err:  # read-only file systems, /proc, ...; root passes os.access everywhere
        raise UserError(f"{flag} {path}: cannot write in {folder} ({err.strerror or err})") from None
    os.close(fd)
    os.unlink(probe)


def check_outputs(outputs: list[tuple[str, Path]], inputs: list[Path], overwrite: bool = False) -> None:
    """Before any work: a ``UserError`` if an output (``(flag, path)`` pairs) would replace one of the run's
    ``inputs`` (unless ``overwrite``), if two outputs are the same file, or if an output cannot be written."""
    for i, (flag, path) in enumerate(outputs):
        for other_flag, other in outputs[:i]:
            if _same_file(path, other):
                raise UserError(f"{other_flag} and {flag} would both write {path}; give them different paths")
        if not overwrite:
            for source in inputs:
                if _same_file(path, source):
                    raise UserError(f"{flag} {path} would replace the input file {source}; write elsewhere or pass --overwrite")
    for flag, path in outputs:
        _check_destination(flag, path)


def write_output(flag: str, path: Path, write):
    """``write()`` (which writes ``path``), with an ``OSError`` reported as a one-line ``UserError``."""
    try:
        return write()
    except OSError as err:
        raise UserError(f"{flag} {path}: cannot write it ({err.strerror or err})") from None


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
    from .models import load_model

    try:
        return load_model(name, device=device)
    except (ValueError, OSError) as err:
        raise UserError(f"cannot load model {name!r}: {' '.join(str(err).split())}") from None


