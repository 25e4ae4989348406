"""``smcdiff restore`` and ``smcdiff inpaint``: one degraded image (or a folder of them) in, a labelled grid,
metrics and optionally the saved run out; sharded over processes under torchrun."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import torch

from .cli_common import (
    DEFAULT_BLUR_SIGMA,
    DEFAULT_FACTOR,
    DEFAULT_LEVELS,
    UserError,
    _check_plotting,
    _configure,
    _generator,
    _image_out,
    _load_model_or_fail,
    _result_out,
    _warn_few_steps,
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
    observation: torch.Tensor | None = None  # --task quantise: the bin indices of y
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
    if getattr(args, "levels", None) is not None and task != "quantise":
        raise UserError(f"--levels applies to --task quantise, not {task}")
    if task == "quantise":
        if args.noise == 0:
            raise UserError("--task quantise needs the noise before quantisation (the dither): --noise S > 0, e.g. 0.05")
        if args.method == "replacement":
            raise UserError("--method replacement overwrites observed pixels; --task quantise observes bins, not pixels")
        if args.proposal not in (None, "twisted"):
            raise UserError(f"--task quantise needs --proposal twisted (a non-linear likelihood), got {args.proposal}")
        args.proposal = "twisted"
        args.levels = DEFAULT_LEVELS if args.levels is None else args.levels
    if task == "sr" and args.factor is None:
        args.factor = DEFAULT_FACTOR
    if task == "deblur" and args.blur_sigma is None:
        args.blur_sigma = DEFAULT_BLUR_SIGMA
    args.proposal_object = None
    if args.method == "replacement":
        if args.noise > 0:
            raise UserError("--method replacement overwrites the observation and needs --noise 0")
        given = [f"--{name.replace('_', '-')}" for name in _proposal_values(args)]
        if args.proposal is not None or given:
            raise UserError(f"{(['--proposal'] if args.proposal else given)[0]} applies to --method smc")
        if args.populations not in (None, 1):
            raise UserError("--populations applies to --method smc (replacement draws are already independent)")
        args.populations = 1
        return
    from .restore import DEFAULT_POPULATIONS

    args.populations = DEFAULT_POPULATIONS if args.populations is None else args.populations
    from .proposals import build_proposal

    try:
        args.proposal_object = build_proposal(
            args.proposal, args.noise, _proposal_values(args), spell=lambda name: f"--{name.replace('_', '-')}"
        )
    except ValueError as err:
        raise UserError(str(err)) from None


def _proposal_values(args: argparse.Namespace) -> dict:
    """The proposal options the user set on the command line, by field name."""
    from .proposals import proposal_flags

    return {name: getattr(args, name) for name in proposal_flags() if getattr(args, name, None) is not None}


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
    """Output paths: files for one input; for a batch, folders holding one file per input, named after it.

    Checked before any work: no output may replace an input file (the images, the mask, the truth)
    unless ``--overwrite``, no two outputs may be one file, and every output must be writable.
    """
    from .cli_common import check_outputs

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
        jobs = [job]
    else:
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
    outputs = [(flag, path) for job in jobs for flag, path in
               (("--out", job.out), ("--save", job.save), ("--diagnostics", job.diagnostics)) if path is not None]
    inputs = [path for job in jobs for path in (job.input, job.truth) if path is not None]
    inputs += [args.mask] if getattr(args, "mask", None) is not None else []
    check_outputs(outputs, inputs, overwrite=getattr(args, "overwrite", False))
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
    if args.task == "quantise":
        from .likelihoods import Quantised

        return Quantised.uniform(args.levels, args.noise)
    return None


def _read_job(args: argparse.Namespace, job: _Job, shape: tuple[int, int, int], operator) -> None:
    """Read the input (and mask, truth) of ``job``; an image the model cannot take is a user error."""
    from PIL import Image

    from .io import ImageMismatchError, describe_shape, read_image, read_mask
    from .masks import box_mask
    from .operators import Operator

    c, h, w = shape
    in_shape = operator.bind(shape).out_shape if isinstance(operator, Operator) else shape
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
    if args.task == "quantise":  # the image shows the bins; the likelihood conditions on their indices
        job.observation = operator.quantise(job.y)
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
    :func:`main` when made here) and a sharded placement over it; None in one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch.distributed as dist

    from .distributed import ShardedPlacement, init_from_env

    args.owns_group = not dist.is_initialized()
    init_from_env("nccl" if device.type == "cuda" else "gloo")
    return ShardedPlacement()


def _sample(args: argparse.Namespace, model, job: _Job, operator, device: torch.device, placement=None):
    from .inpaint import inpaint
    from .options import RunOptions
    from .restore import restore

    options = RunOptions(
        chunk_size=args.chunk_size, progress=placement is None or placement.rank == 0, placement=placement,
        populations=args.populations, threads="torch",  # the command set the threads already
    )
    common = dict(
        particles=args.particles, steps=args.steps, method=args.method, proposal=args.proposal_object,
        kernel=args.kernel, noise_std=args.noise, generator=_generator(args.seed, device), device=device, options=options,
    )
    try:
        if args.task == "inpaint":
            return inpaint(model, job.y, job.mask, **common)
        if args.task == "quantise":  # the noise is part of the likelihood
            return restore(model, job.observation, operator, **{**common, "noise_std": 0.0})
        return restore(model, job.y, operator, **common)
    except ValueError as err:
        raise UserError(" ".join(str(err).split())) from None


def _metric_lines(res, draws: torch.Tensor, truth: torch.Tensor | None) -> list[str]:
    """PSNR against the truth (when given) and consistency of the draws with y."""
    from .likelihoods import Quantised
    from .metrics import masked_psnr, psnr
    from .operators import Mask

    k = draws.shape[0]
    lines = []
    if truth is not None:
        p_mean = psnr(res.mean()[:1].float().cpu(), truth).item()
        p_draws = psnr(draws, truth.expand_as(draws)).mean().item()
        lines.append(f"PSNR against the truth: weighted mean {p_mean:.2f} dB, draws {p_draws:.2f} dB (mean of {k})")
    op = res.operator
    if isinstance(op, Quantised):
        kept = (op.quantise(draws) == res.y[:1].cpu().to(draws)).float().mean().item()
        lines.append(f"consistency: {kept:.1%} of the pixels of the draws fall in their observed bin (mean of {k} draws)")
        return lines
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
    from .cli_common import write_output
    from .plotting import plot_diagnostics, save_image_grid
    from .results import save_result

    _check_task_options(args)
    files, batch = _expand_inputs(args.inputs)
    jobs = _plan(args, files, batch)
    device, threads = _configure(args)
    placement = _distributed(args, device)  # torchrun: the particles of each image spread over the processes
    processes = 1 if placement is None else placement.world_size
    if args.particles % processes:
        raise UserError(f"--particles {args.particles} must be a multiple of the number of processes ({processes})")
    lead = placement is None or placement.rank == 0  # rank 0 reports and writes
    say = print if lead else (lambda *a, **k: None)
    model = _load_model_or_fail(args.model, device)
    shape = tuple(model.event_shape)
    operator = _operator(args, shape)
    for job in jobs:  # every input is read and checked before any sampling
        _read_job(args, job, shape, operator)
    what = {"inpaint": "inpainting", "sr": f"{args.factor}x super-resolution",
            "deblur": f"deblurring (Gaussian blur, sigma {args.blur_sigma} px)", "denoise": "denoising",
            "quantise": f"dequantisation ({getattr(args, 'levels', None)} levels, dither {args.noise:g})"}[args.task]
    method = args.method if args.method == "replacement" else f"smc ({args.proposal_object})"
    where = "" if processes == 1 else f" on {processes} processes ({args.particles // processes} particles each)"
    runs = "" if args.populations == 1 else f" in each of {args.populations} independent runs"
    say(
        f"{what} of {len(jobs)} image(s), {method}, noise {args.noise:g}; {args.particles} particles{runs}, {args.steps} steps "
        f"({args.kernel}), model {args.model!r}, {device}, {threads} thread(s){where}."
    )
    if lead:
        _warn_few_steps(args.steps, args.kernel)
    for i, job in enumerate(jobs):
        prefix = f"[{i + 1}/{len(jobs)}] {job.input.name}: " if batch else ""
        for note in job.notes:
            say(f"{prefix or job.input.name + ': '}{note}")
        res = _sample(args, model, job, operator, device, placement)
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
        path = write_output("--out", job.out, lambda: save_image_grid(rows, job.out, scale=scale, labels=labels))
        ess = res.weighted.ess[-1, 0].item()
        lineages = int(res.weighted.distinct_final()[0])
        m = args.particles * args.populations
        print(f"{prefix}wrote {path} ({res.seconds:.1f} s, final ESS {ess:.1f} of {m}, {lineages} distinct final lineages of {m})")
        for line in _metric_lines(res, draws, job.truth_image):
            print(f"  {line}")
        if job.save is not None:
            print(f"  saved the run to {write_output('--save', job.save, lambda: save_result(res, job.save))}")
        if job.diagnostics is not None:
            title = f"{job.input.name}: {what}, {method}, {args.particles} particles{runs}, {args.steps} steps"
            plot = lambda: plot_diagnostics({method: res.weighted}, job.diagnostics, title=title)  # noqa: E731
            print(f"  wrote {write_output('--diagnostics', job.diagnostics, plot)}")


def cmd_inpaint(args: argparse.Namespace) -> None:
    args.task = "inpaint"
    args.factor = args.blur_sigma = None
    cmd_restore(args)


