"""The ``smcdiff`` command (also ``python -m smcdiff``): ``demo``, ``restore``, ``inpaint`` and ``gaussian``.

User errors (a missing file, an image the model cannot take, a mask of the wrong size, a bad box or
argument) print one line to stderr and exit with status 2, before any long work where they can be
known in advance. Nothing here does mathematics: the sampling is :func:`smcdiff.restore`.

Threads: sampling is many small network calls, and torch's thread pool on a machine shared with
other work can make it several times slower than one thread. Unless ``--threads`` or
``OMP_NUM_THREADS`` says otherwise, the commands use 1 thread on machines with at most 2 CPUs and
torch's default (one per physical core) capped at the CPUs this process may use elsewhere
(:func:`default_threads`).

Several processes: under ``torchrun --nproc-per-node N -m smcdiff restore ...`` (or ``inpaint``) each
process holds particles / N of every image's particles (:mod:`smcdiff.distributed`: gloo on CPU, nccl
on CUDA with one GPU per process); rank 0 prints and writes the outputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch

from . import __version__

__all__ = ["main", "build_parser", "default_threads", "MIN_STEPS"]

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


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse


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


# ---- smcdiff gaussian ----
def cmd_gaussian(args: argparse.Namespace) -> None:
    from .toy import conditional_rows, format_rows, unconditional_rows

    if args.out is not None:  # fail now, not after the sampling
        _check_plotting("--out")
        import matplotlib.pyplot as plt

        args.out = args.out.with_name(args.out.name + ".png") if args.out.suffix == "" else args.out
        fig = plt.figure()
        supported = fig.canvas.get_supported_filetypes()
        plt.close(fig)
        if args.out.suffix.lower().lstrip(".") not in supported:
            raise UserError(f"--out {args.out}: cannot write figures of type {args.out.suffix!r}; use .png")
    torch.set_num_threads(args.threads if args.threads is not None else default_threads())
    g = _generator(args.seed)
    t0 = time.perf_counter()
    rows_u, draws = unconditional_rows(args.samples, args.steps, g, progress=True)
    print(f"Unconditional reverse SDE (OU, exact score, {args.steps} steps, {args.samples} samples):")
    print(format_rows(rows_u))
    rows_c, pooled = conditional_rows(args.particles, args.steps, args.runs, g, progress=True)
    print(f"\nConditional X | Y = y ({args.particles} particles, {args.steps} steps, SE over {args.runs} runs):")
    print(format_rows(rows_c))
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    if args.out is not None:
        from .plotting import plot_gaussian_toy

        path = plot_gaussian_toy(draws, pooled, args.out)
        print(f"wrote {path}")


# ---- smcdiff demo ----
def _method_table(results: dict, images: torch.Tensor, consistent, draws: int, generator, classifier) -> tuple[str, dict]:
    """One line per method: PSNR to the original, consistency, label kept, lineages, time; and the draws."""
    from .metrics import psnr

    with torch.no_grad():
        labels = classifier(images).argmax(1)
    head = f"{'method':<22} {'PSNR (dB)':>9} {'consistency (dB)':>16} {'label kept':>10} {'lineages':>9} {'s / image':>9}"
    lines = [head]
    picks = {}
    for name, res in results.items():
        x = res.draw(draws, generator).cpu().float()  # (B, k, C, H, W)
        picks[name] = x
        flat = x.flatten(0, 1)
        p = psnr(flat, images.repeat_interleave(draws, 0)).mean().item()
        c = consistent(flat).mean().item()
        with torch.no_grad():
            kept = (classifier(flat).argmax(1) == labels.repeat_interleave(draws)).double().mean().item()
        lineages = res.weighted.distinct_final().double().mean().item()
        c_text = "exact" if c == float("inf") else f"{c:.2f}"
        m = res.samples.shape[1]
        lines.append(
            f"{name:<22} {p:>9.2f} {c_text:>16} {kept:>10.1%} {f'{lineages:.1f}/{m}':>9} {res.seconds / images.shape[0]:>9.3f}"
        )
    return "\n".join(lines), picks


def cmd_demo(args: argparse.Namespace) -> None:
    from .classifier import load_digit_classifier
    from .data import load_digits_images
    from .inpaint import inpaint
    from .masks import random_square_masks
    from .metrics import consistency, masked_psnr
    from .operators import Downsample
    from .plotting import GridSection, save_image_sections
    from .restore import restore

    out = _image_out(args.out)
    device, threads = _configure(args)
    model = _load_model_or_fail(args.model, device)
    images = load_digits_images("test")[: args.images]
    if tuple(getattr(model, "event_shape", ())) != tuple(images.shape[1:]):
        raise UserError(f"the demo uses 8x8 greyscale digits; model {args.model!r} expects {tuple(model.event_shape)}")
    masks = random_square_masks(images.shape[0], 8, 8, 0.25, generator=_generator(args.seed))
    b, k, m = images.shape[0], args.draws, args.particles
    print(
        f"Inpainting {b} held-out digits, a random 4x4 square (25%) hidden in each; {m} particles, "
        f"{args.steps} steps ({args.kernel}), model {args.model!r}, {device}, {threads} thread(s)."
    )
    _warn_few_steps(args.steps, args.kernel)
    common = dict(particles=m, steps=args.steps, kernel=args.kernel, progress=True, device=device)
    results = {
        method: inpaint(model, images, masks, method=method, generator=_generator(args.seed + 1, device), **common)
        for method in ("smc", "replacement")
    }
    classifier = load_digit_classifier()
    reps = masks.repeat_interleave(k, 0)
    table, picks = _method_table(
        results, images, lambda x: masked_psnr(x, images.repeat_interleave(k, 0), reps), k,
        _generator(args.seed + 2, device), classifier,
    )
    print(table)

    factor = 4
    op = Downsample(factor).bind(tuple(images.shape[1:]))
    low = op.A(images)  # (B, 1, 2, 2) block means
    print(f"\n{factor}x super-resolution of the same digits (8x8 -> {low.shape[-1]}x{low.shape[-2]} block means):")
    sr = {"smc (bootstrap)": restore(model, low, Downsample(factor), proposal="bootstrap",
                                     generator=_generator(args.seed + 3, device), **common)}
    sr_table, sr_picks = _method_table(
        sr, images, lambda x: consistency(x, low.repeat_interleave(k, 0), op.A), k, _generator(args.seed + 4, device),
        classifier,
    )
    print(sr_table)
    print(
        "PSNR: against the original digit, over equally weighted draws. consistency: PSNR of the observation "
        "(observed pixels; block means) of the draws against y ('exact': kept exactly). label kept: the digit "
        "classifier gives the completion the original's label. lineages: distinct starting particles of the "
        "final particles, mean over images (of M; a collapsed genealogy has few)."
    )
    masked = torch.where(masks, images, torch.zeros_like(images))
    up = torch.nn.functional.interpolate(low, size=images.shape[-2:], mode="nearest")
    sections = [
        GridSection(
            [torch.cat([images[i : i + 1], masked[i : i + 1], picks["smc"][i], picks["replacement"][i]]) for i in range(b)],
            ["original", "masked", ("SMC draws", k), ("replacement draws", k)],
            "inpainting (random 25% square hidden)",
        ),
        GridSection(
            [torch.cat([images[i : i + 1], up[i : i + 1], sr_picks["smc (bootstrap)"][i]]) for i in range(b)],
            ["original", f"{low.shape[-1]}x{low.shape[-2]} input", ("SMC draws", k)],
            f"{factor}x super-resolution",
        ),
    ]
    path = save_image_sections(sections, out, scale=args.scale or 8)
    print(
        f"wrote {path}: inpainting (original | masked | {k} SMC draws | {k} replacement draws), then "
        f"{factor}x super-resolution (original | low-resolution input | {k} SMC draws)"
    )


# ---- smcdiff restore / inpaint ----
@dataclasses.dataclass
class _Job:
    """One input and where its outputs go."""

    input: Path
    out: Path
    save: Path | None = None
    diagnostics: Path | None = None
    truth: Path | None = None
    y: torch.Tensor | None = None  # (1, *observation)
    mask: torch.Tensor | None = None  # inpainting: (1, 1, H, W) bool
    truth_image: torch.Tensor | None = None  # (1, C, H, W)
    notes: list[str] = dataclasses.field(default_factory=list)


def _check_task_options(args: argparse.Namespace) -> None:
    task = args.task
    if task == "inpaint" and args.mask is None and args.box is None:
        raise UserError("--task inpaint needs --mask M.png or --box X,Y,W,H")
    if args.mask is not None and not args.mask.is_file():
        raise UserError(f"no such mask file: {args.mask}")
    if task != "inpaint" and (args.mask is not None or args.box is not None):
        raise UserError(f"--mask and --box apply to --task inpaint, not {task}")
    if args.factor is not None and task != "sr":
        raise UserError(f"--factor applies to --task sr, not {task}")
    if args.blur_sigma is not None and task != "deblur":
        raise UserError(f"--blur-sigma applies to --task deblur, not {task}")
    if task == "denoise" and args.noise == 0:
        raise UserError("--task denoise needs the noise level of the input: --noise S > 0 (in [-1, 1] units)")
    if task == "sr" and args.factor is None:
        args.factor = DEFAULT_FACTOR
    if task == "deblur" and args.blur_sigma is None:
        args.blur_sigma = DEFAULT_BLUR_SIGMA
    if args.method == "replacement":
        if args.noise > 0:
            raise UserError("--method replacement overwrites the observation and needs --noise 0")
        if args.proposal is not None:
            raise UserError("--proposal applies to --method smc")


def _expand_inputs(paths: list[Path]) -> tuple[list[Path], bool]:
    """The input files (folders expanded to their images) and whether this is a batch."""
    from .io import image_files

    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = image_files(p)
            if not found:
                raise UserError(f"no image files in the folder {p}")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"no such image file: {p}")
    stems = [f.stem for f in files]
    batch = len(files) > 1 or any(p.is_dir() for p in paths)
    if batch and len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})[0]
        raise UserError(f"two inputs are named {dup!r}: the outputs of a batch are named after the inputs")
    return files, batch


def _plan(args: argparse.Namespace, files: list[Path], batch: bool) -> list[_Job]:
    """Output paths: files for one input; for a batch, folders holding one file per input, named after it."""
    if args.diagnostics is not None:
        _check_plotting("--diagnostics")
    if not batch:
        out = args.out / f"{files[0].stem}.png" if args.out.is_dir() else _image_out(args.out)
        job = _Job(files[0], out)
        stem = files[0].stem
        if args.save is not None:
            job.save = args.save / f"{stem}.npz" if args.save.is_dir() else _result_out(args.save)
        if args.diagnostics is not None:
            d = args.diagnostics
            job.diagnostics = d / f"{stem}-diagnostics.png" if d.is_dir() else _image_out(d, "--diagnostics")
        if args.truth is not None:
            if not args.truth.is_file():
                raise UserError(f"no such truth file: {args.truth}")
            job.truth = args.truth
        return [job]
    for flag, value in (("--out", args.out), ("--save", args.save), ("--diagnostics", args.diagnostics), ("--truth", args.truth)):
        if value is not None and (value.is_file() or (flag != "--truth" and value.suffix and not value.is_dir())):
            raise UserError(f"with several inputs, {flag} names a folder (one file per input), got {value}")
    if args.truth is not None and not args.truth.is_dir():
        raise UserError(f"no such truth folder: {args.truth}")
    jobs = []
    for f in files:
        job = _Job(f, args.out / f"{f.stem}.png")
        job.save = args.save / f"{f.stem}.npz" if args.save is not None else None
        job.diagnostics = args.diagnostics / f"{f.stem}-diagnostics.png" if args.diagnostics is not None else None
        if args.truth is not None:
            job.truth = args.truth / f.name
            if not job.truth.is_file():
                raise UserError(f"no truth for {f.name}: {job.truth} does not exist (the truth folder holds files named as the inputs)")
        jobs.append(job)
    return jobs


def _operator(args: argparse.Namespace, shape: tuple[int, int, int]):
    """The observation operator of the task (inpainting: built per image from its mask)."""
    from .operators import Blur, Downsample, Mask

    c, h, w = shape
    if args.task == "sr":
        f = args.factor
        if h % f or w % f:
            raise UserError(f"--factor {f} does not divide the model's {w}x{h} images")
        return Downsample(f)
    if args.task == "deblur":
        return Blur.gaussian(args.blur_sigma)
    if args.task == "denoise":
        return Mask(torch.ones(shape, dtype=torch.bool))
    return None


def _read_job(args: argparse.Namespace, job: _Job, shape: tuple[int, int, int], operator) -> None:
    """Read the input (and mask, truth) of ``job``; an image the model cannot take is a user error."""
    from PIL import Image

    from .io import ImageMismatchError, describe_shape, read_image, read_mask
    from .masks import box_mask

    c, h, w = shape
    in_shape = operator.bind(shape).out_shape if operator is not None else shape
    try:
        job.y, job.notes = read_image(job.input, tuple(in_shape), resize=args.resize, what="input")
        if job.truth is not None:
            job.truth_image, notes = read_image(job.truth, shape, resize=args.resize, what="truth")
            job.notes += [f"truth: {n}" for n in notes]
    except ImageMismatchError as err:
        what = f"; for --task sr the input is the low-resolution image ({describe_shape(*in_shape)} for --factor {args.factor})" if args.task == "sr" else ""
        raise UserError(f"{err}{what}; pass --resize to convert and resize it") from None
    except ValueError as err:
        raise UserError(str(err)) from None
    if args.task != "inpaint":
        return
    with Image.open(job.input) as img:
        size = (img.height, img.width)
    try:
        if args.mask is not None:
            mask = read_mask(args.mask, size, resize_to=(h, w))
        else:
            mask = box_mask(size[0], size[1], args.box)
            if size != (h, w):
                mask = torch.nn.functional.interpolate(mask.float(), size=(h, w), mode="area") >= 0.5
    except (ValueError, OSError) as err:  # ImageMismatchError included
        raise UserError(str(err)) from None
    if mask.all():
        raise UserError(f"the mask observes every pixel of {job.input.name}: nothing to inpaint")
    if not mask.any():
        raise UserError(f"the mask hides every pixel of {job.input.name}: nothing is observed")
    job.mask = mask


def _distributed(args: argparse.Namespace, device: torch.device):
    """Under torchrun with several processes: the process group (gloo on CPU, nccl on CUDA; ended by
    :func:`main` when made here) and a sharded population over it; None in one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch.distributed as dist

    from .distributed import ShardedPopulation, init_from_env

    args.owns_group = not dist.is_initialized()
    init_from_env("nccl" if device.type == "cuda" else "gloo")
    return ShardedPopulation()


def _sample(args: argparse.Namespace, model, job: _Job, operator, device: torch.device, population=None):
    from .inpaint import inpaint
    from .restore import restore

    common = dict(
        particles=args.particles, steps=args.steps, method=args.method, proposal=args.proposal, kernel=args.kernel,
        noise_std=args.noise, generator=_generator(args.seed, device), progress=population is None or population.rank == 0,
        device=device, population=population,
    )
    try:
        if args.task == "inpaint":
            return inpaint(model, job.y, job.mask, **common)
        return restore(model, job.y, operator, **common)
    except ValueError as err:
        raise UserError(" ".join(str(err).split())) from None


def _metric_lines(res, draws: torch.Tensor, truth: torch.Tensor | None) -> list[str]:
    """PSNR against the truth (when given) and consistency of the draws with y."""
    from .metrics import masked_psnr, psnr
    from .operators import Mask

    k = draws.shape[0]
    lines = []
    if truth is not None:
        p_mean = psnr(res.mean()[:1].float().cpu(), truth).item()
        p_draws = psnr(draws, truth.expand_as(draws)).mean().item()
        lines.append(f"PSNR against the truth: weighted mean {p_mean:.2f} dB, draws {p_draws:.2f} dB (mean of {k})")
    op = res.operator
    y = res.y[:1].to(draws)
    with torch.no_grad():
        ax = op.A(draws.to(res.y.device, res.y.dtype)).cpu().to(draws)
        if isinstance(op, Mask):
            mask = torch.broadcast_to(op.mask.cpu()[0] if op.per_row else op.mask.cpu(), draws.shape[1:])
            yy = torch.where(mask, y[0], torch.zeros_like(y[0])).expand_as(ax)
            c = masked_psnr(draws, y.expand_as(draws), mask.expand_as(draws)).mean().item()
        else:
            yy = y.expand_as(ax)
            c = psnr(ax, yy).mean().item() if ax.ndim == 4 else float("nan")
    norm = (ax - yy).flatten(1).norm(dim=1).mean().item()
    c_text = "exact" if c == float("inf") else f"{c:.2f} dB"
    seen = int(mask.sum()) if isinstance(op, Mask) else yy[0].numel()
    noise = f" (noise_std {res.noise_std:g}: about {res.noise_std * seen**0.5:.3g} expected)" if res.noise_std > 0 else ""
    lines.append(f"consistency: ||A x - y|| = {norm:.4g}{noise}, PSNR(A x, y) = {c_text} (mean of {k} draws)")
    return lines


def _grid(args: argparse.Namespace, job: _Job, res, draws: torch.Tensor, shape) -> tuple[list[torch.Tensor], list]:
    """The row of pictures for ``job`` and its column labels."""
    c, h, w = shape
    y = job.y.cpu().float()
    k = draws.shape[0]
    cols: list[torch.Tensor] = []
    labels: list = []
    if args.task == "inpaint":
        cols += [y, torch.where(job.mask, y, torch.zeros_like(y))]
        labels += ["input", "masked"]
    elif args.task == "sr":
        cols.append(torch.nn.functional.interpolate(y, size=(h, w), mode="nearest"))
        labels.append(f"input ({y.shape[-1]}x{y.shape[-2]})")
    else:
        cols.append(y)
        labels.append("input")
    cols += [res.mean()[:1].float().cpu(), draws]
    labels += ["weighted mean", (f"{k} draws" if k > 1 else "draw", k)]
    if job.truth_image is not None:
        cols.append(job.truth_image)
        labels.append("truth")
    return [torch.cat(cols)], labels


def cmd_restore(args: argparse.Namespace) -> None:
    from .plotting import plot_diagnostics, save_image_grid
    from .results import save_result

    _check_task_options(args)
    files, batch = _expand_inputs(args.inputs)
    jobs = _plan(args, files, batch)
    device, threads = _configure(args)
    population = _distributed(args, device)  # torchrun: the particles of each image spread over the processes
    processes = 1 if population is None else population.world_size
    if args.particles % processes:
        raise UserError(f"--particles {args.particles} must be a multiple of the number of processes ({processes})")
    lead = population is None or population.rank == 0  # rank 0 reports and writes
    say = print if lead else (lambda *a, **k: None)
    model = _load_model_or_fail(args.model, device)
    shape = tuple(model.event_shape)
    operator = _operator(args, shape)
    for job in jobs:  # every input is read and checked before any sampling
        _read_job(args, job, shape, operator)
    what = {"inpaint": "inpainting", "sr": f"{args.factor}x super-resolution",
            "deblur": f"deblurring (Gaussian blur, sigma {args.blur_sigma} px)", "denoise": "denoising"}[args.task]
    method = args.method if args.method == "replacement" else f"smc ({args.proposal or ('bootstrap' if args.noise == 0 else 'mcgdiff')})"
    where = "" if processes == 1 else f" on {processes} processes ({args.particles // processes} particles each)"
    say(
        f"{what} of {len(jobs)} image(s), {method}, noise {args.noise:g}; {args.particles} particles, {args.steps} steps "
        f"({args.kernel}), model {args.model!r}, {device}, {threads} thread(s){where}."
    )
    if lead:
        _warn_few_steps(args.steps, args.kernel)
    for i, job in enumerate(jobs):
        prefix = f"[{i + 1}/{len(jobs)}] {job.input.name}: " if batch else ""
        for note in job.notes:
            say(f"{prefix or job.input.name + ': '}{note}")
        res = _sample(args, model, job, operator, device, population)
        if res is None:  # another process gathers the particles and writes the outputs
            continue
        settings = {**res.settings, "task": args.task, "model": args.model, "seed": args.seed, "particles": args.particles,
                    "input": str(job.input), "device": str(device), "threads": threads}
        settings.update({"processes": processes} if processes > 1 else {})
        settings.update({"factor": args.factor} if args.task == "sr" else {})
        settings.update({"blur_sigma": args.blur_sigma} if args.task == "deblur" else {})
        res = dataclasses.replace(res, settings=settings)
        draws = res.draw(args.draws, _generator(args.seed + 1, device))[0].cpu().float()
        rows, labels = _grid(args, job, res, draws, shape)
        scale = args.scale or max(1, 64 // max(shape[1:]))
        path = save_image_grid(rows, job.out, scale=scale, labels=labels)
        ess = res.weighted.ess[-1, 0].item()
        lineages = int(res.weighted.distinct_final()[0])
        m = args.particles
        print(f"{prefix}wrote {path} ({res.seconds:.1f} s, final ESS {ess:.1f} of {m}, {lineages} distinct final lineages of {m})")
        for line in _metric_lines(res, draws, job.truth_image):
            print(f"  {line}")
        if job.save is not None:
            print(f"  saved the run to {save_result(res, job.save)}")
        if job.diagnostics is not None:
            title = f"{job.input.name}: {what}, {method}, {m} particles, {args.steps} steps"
            print(f"  wrote {plot_diagnostics({method: res.weighted}, job.diagnostics, title=title)}")


def cmd_inpaint(args: argparse.Namespace) -> None:
    args.task = "inpaint"
    args.factor = args.blur_sigma = None
    cmd_restore(args)


# ---- the parser ----
def _sampling_options(p: argparse.ArgumentParser) -> None:
    from .restore import DEFAULT_KERNEL, DEFAULT_PARTICLES, DEFAULT_STEPS

    p.add_argument("--model", default="digits", help="'digits' (the shipped 8x8 digits model, default), a directory or a hub id")
    p.add_argument("--particles", type=_positive(int), default=DEFAULT_PARTICLES, help="particles per image (default %(default)s)")
    p.add_argument("--steps", type=_positive(int), default=DEFAULT_STEPS, help="reverse steps (default %(default)s)")
    p.add_argument("--kernel", choices=("euler", "ancestral"), default=DEFAULT_KERNEL,
                   help="reverse kernel: Euler-Maruyama or the exact-in-time DDPM ancestral step (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    p.add_argument("--device", default=None, help="where to sample: cpu, cuda, cuda:1, ... (default: cuda when available, else cpu)")
    _threads_option(p)


def _threads_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=_positive(int), default=None,
                   help="CPU threads for torch (default: OMP_NUM_THREADS if set, else 1 on machines with at most "
                   "2 CPUs, else torch's default capped at the CPUs available)")


def _restore_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=("smc", "replacement"), default="smc",
                   help="smc (weighted, exact as the particles grow) or the replacement baseline (default %(default)s)")
    p.add_argument("--proposal", choices=("bootstrap", "mcgdiff", "twisted"), default=None,
                   help="SMC proposal (default: bootstrap when --noise is 0, else mcgdiff)")
    p.add_argument("--draws", type=_positive(int), default=4, help="equally weighted draws to show (default %(default)s)")
    p.add_argument("--truth", type=Path, default=None, metavar="GT.png",
                   help="ground truth at the model's size: adds a column and PSNR (a folder of files named as the inputs in batch mode)")
    p.add_argument("--resize", action="store_true",
                   help="convert inputs of another size or colour mode to the model's (area resize, luminance); "
                   "without it such inputs are refused")
    p.add_argument("--out", type=Path, required=True, metavar="GRID.png",
                   help="output grid (.png appended when there is no suffix); a folder when there are several inputs")
    p.add_argument("--scale", type=_positive(int), default=None,
                   help="nearest-neighbour upscaling of the grid (default: to about 64 pixels per image)")
    p.add_argument("--save", type=Path, default=None, metavar="RUN.npz",
                   help="keep the run: particles, weights, ESS/lineage history, y, operator, settings (.npz or "
                   ".safetensors, no pickle; smcdiff.results.load_result reads it); a folder in batch mode (.npz)")
    p.add_argument("--diagnostics", type=Path, default=None, metavar="FILE.png",
                   help="plot ESS and surviving lineages against the step (needs matplotlib); a folder in batch mode")
    _sampling_options(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="smcdiff",
        description="Conditional sampling with diffusion models trained without the condition.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "gaussian",
        help=f"validate the samplers with exact scores on {SLIDES}",
        description=f"Unconditional and conditional sampling of {SLIDES}, and of a 2-component mixture, with exact "
        "scores; prints exact vs sampled statistics with standard errors and optionally writes the slides' figure.",
    )
    p.add_argument("--out", type=Path, default=None, help="write the figure here (PNG; needs matplotlib, checked first)")
    p.add_argument("--particles", type=_positive(int), default=1000, help="SMC particles per run (default %(default)s)")
    p.add_argument("--runs", type=_positive(int), default=32, help="independent runs for standard errors (default %(default)s)")
    p.add_argument("--samples", type=_positive(int), default=20000, help="unconditional samples (default %(default)s)")
    p.add_argument("--steps", type=_positive(int), default=500, help="reverse steps (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    _threads_option(p)
    p.set_defaults(func=cmd_gaussian)

    p = sub.add_parser(
        "demo",
        help="inpaint and 4x super-resolve held-out digits; SMC and replacement side by side",
        description="Inpaints held-out digits (random 4x4 squares, 25%% of the image, hidden) with SMC and "
        "replacement, and super-resolves them 4x (2x2 block means) with SMC; prints PSNR, "
        "consistency, label kept, distinct final lineages and time per image, and writes a labelled PNG grid.",
    )
    p.add_argument("--images", type=_positive(int), default=8, help="held-out digits (default %(default)s)")
    p.add_argument("--draws", type=_positive(int), default=4, help="draws shown per method (default %(default)s)")
    p.add_argument("--out", type=Path, default=Path("smcdiff-demo.png"), help="PNG grid (default %(default)s)")
    p.add_argument("--scale", type=_positive(int), default=None, help="nearest-neighbour upscaling of the grid (default 8)")
    _sampling_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "restore",
        help="restore degraded image files: inpainting, super-resolution, deblurring, denoising",
        description="Sample the model's posterior given each degraded INPUT (a file or a folder; several give one "
        "output per input). --task sr: INPUT is the low-resolution image (the model's size / --factor); deblur: the "
        "blurred image; denoise: the noisy image (--noise required); inpaint: the image and --mask or --box. Writes a "
        "labelled grid (input | weighted mean | draws | truth) and prints time, final ESS, distinct final lineages, "
        "consistency and, with --truth, PSNR.",
    )
    p.add_argument("inputs", type=Path, nargs="+", metavar="INPUT")
    p.add_argument("--task", choices=TASKS, required=True, help="what degraded the input")
    p.add_argument("--factor", type=_positive(int), default=None, help=f"--task sr: downsampling factor (default {DEFAULT_FACTOR})")
    p.add_argument("--blur-sigma", type=_positive(float), default=None,
                   help=f"--task deblur: standard deviation of the Gaussian blur in pixels (default {DEFAULT_BLUR_SIGMA:g})")
    p.add_argument("--noise", type=_non_negative_float, default=0.0,
                   help="standard deviation of the observation noise, in the [-1, 1] units of the data (default %(default)s)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--mask", type=Path, metavar="M.png", help="--task inpaint: PNG of the input's size, white = keep, black = fill")
    where.add_argument("--box", type=_parse_box, metavar="X,Y,W,H", help="--task inpaint: fill this box (pixels of the input)")
    _restore_options(p)
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser(
        "inpaint",
        help="inpaint image files",
        description="Inpaint each IMAGE (a file or a folder) where the mask is black (or inside --box); the same "
        "as 'smcdiff restore --task inpaint'. The output shows input | masked | weighted mean | draws.",
    )
    p.add_argument("inputs", type=Path, nargs="+", metavar="IMAGE")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--mask", type=Path, metavar="M.png", help="PNG of the image's size: white = keep, black = fill")
    where.add_argument("--box", type=_parse_box, metavar="X,Y,W,H", help="fill this box (pixels of IMAGE)")
    p.add_argument("--noise", type=_non_negative_float, default=0.0,
                   help="standard deviation of the noise on the kept pixels, in [-1, 1] units (default %(default)s)")
    _restore_options(p)
    p.set_defaults(func=cmd_inpaint)
    return parser


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.filterwarnings("ignore", message=r"steps=\d+ is far below", category=UserWarning)  # said once, below
    parser = build_parser()
    args = parser.parse_args(_join_option_values(list(sys.argv[1:] if argv is None else argv)))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and args.command not in ("restore", "inpaint"):
        print(f"smcdiff {args.command}: error: runs in one process; under torchrun use 'restore' or 'inpaint'", file=sys.stderr)
        return 2
    try:
        args.func(args)
    except UserError as err:
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every process has the error; one says it
            print(f"smcdiff {args.command}: error: {err}", file=sys.stderr)
        return 2
    finally:
        if getattr(args, "owns_group", False):
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
