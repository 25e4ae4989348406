"""``smcdiff calibrate``: simulation-based calibration of one sampler setting on the model's own prior.

Draws R problems (x*, y = A x* + noise) from the model's discretised prior (:func:`smcdiff.calibration.
simulate_problems`, on the sampler's own kernel and grid), asks the chosen setting for L draws given each y
and tests whether the rank of x* among the draws is uniform (:func:`smcdiff.calibration.sbc`). Prints a
table (uniformity p-values corrected over the statistics, coverage of central intervals against nominal)
and a one-line verdict; optionally writes the rank ECDF-difference plot and the ranks.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from .cli_common import UserError, _configure, _generator, _image_out, _load_model_or_fail

__all__ = ["cmd_calibrate", "calibration_sampler"]

LEVELS = (0.5, 0.8, 0.9, 0.95)


def calibration_sampler(
    model, operator, *, draws: int, noise_std: float, steps: int, kernel: str, generator: torch.Generator,
    method: str = "smc", proposal=None, particles: int = 16, populations: int = 1, chunk_size: int | None = None,
):
    """A sampler setting as the callable SBC needs, ``y (b, *obs) -> (b, L, *event)``, and its network evaluations
    per draw.

    SMC: P = ``populations`` independent runs of M = ``particles`` per problem and L = ``draws`` draws, draw j from
    run j mod P (P = L: one draw per independent run; P = 1: all L draws from one run). Replacement: L independent
    samples. The data-range check is off: draws of the model's own prior may leave [-1, 1].
    """
    from .options import RunOptions
    from .restore import restore

    common = dict(steps=steps, kernel=kernel, noise_std=noise_std, generator=generator, check_data_range=False)
    if method == "replacement":
        options = RunOptions(chunk_size=chunk_size, threads="torch")

        def sample(y: torch.Tensor) -> torch.Tensor:
            return restore(model, y, operator, particles=draws, method="replacement", options=options, **common).samples

        return sample, float(steps)
    options = RunOptions(chunk_size=chunk_size, populations=populations, threads="torch")

    def sample(y: torch.Tensor) -> torch.Tensor:
        return restore(model, y, operator, particles=particles, proposal=proposal, options=options, **common).draw(draws, generator)

    return sample, steps * proposal.evaluations_per_step * particles * populations / draws


def _task_operator(args: argparse.Namespace, shape: tuple[int, int, int]):
    from .masks import box_mask
    from .operators import Blur, Downsample, Mask

    c, h, w = shape
    if args.task == "sr":
        if h % args.factor or w % args.factor:
            raise UserError(f"--factor {args.factor} does not divide the model's {w}x{h} images")
        return Downsample(args.factor), f"{args.factor}x super-resolution"
    if args.task == "deblur":
        return Blur.gaussian(args.blur_sigma), f"deblurring (Gaussian blur, sigma {args.blur_sigma:g} px)"
    if args.task == "denoise":
        return Mask(torch.ones(shape, dtype=torch.bool)), "denoising"
    box = args.box if args.box is not None else (w // 4, h // 4, w // 2, h // 2)
    try:
        mask = box_mask(h, w, box).expand(1, c, h, w)[0]
    except ValueError as err:
        raise UserError(f"--box: {err}") from None
    return Mask(mask), f"inpainting of the {box[2]}x{box[3]} box at ({box[0]}, {box[1]})"


def _check(args: argparse.Namespace) -> None:
    if args.factor is not None and args.task != "sr":
        raise UserError(f"--factor applies to --task sr, not {args.task}")
    if args.blur_sigma is not None and args.task != "deblur":
        raise UserError(f"--blur-sigma applies to --task deblur, not {args.task}")
    if args.box is not None and args.task != "inpaint":
        raise UserError(f"--box applies to --task inpaint, not {args.task}")
    if args.task == "denoise" and args.noise == 0:
        raise UserError("--task denoise needs --noise S > 0")
    args.factor = 4 if args.factor is None and args.task == "sr" else args.factor
    args.blur_sigma = 1.0 if args.blur_sigma is None and args.task == "deblur" else args.blur_sigma
    if args.populations is None:
        args.populations = args.draws if args.method == "smc" else 1
    if args.method == "replacement" and args.noise > 0:
        raise UserError("--method replacement overwrites the observation and needs --noise 0")
    if args.method == "replacement" and args.populations != 1:
        raise UserError("--populations applies to --method smc (replacement draws are already independent)")
    if args.problems < 2:
        raise UserError("--problems must be at least 2")
    if args.plot is not None:
        from .cli_common import _check_plotting

        _check_plotting("--plot")
        args.plot = _image_out(args.plot, "--plot")
    if args.save is not None:
        args.save = args.save if args.save.suffix else args.save.with_name(args.save.name + ".npz")
        if args.save.suffix.lower() != ".npz":
            raise UserError(f"--save {args.save}: calibration results are saved as .npz")
    for flag, path in (("--plot", args.plot), ("--save", args.save)):
        if path is not None and not path.parent.resolve().is_dir():
            raise UserError(f"{flag} {path}: the folder {path.parent} does not exist")


def _table(result, seconds: float, per_draw: float) -> str:
    head = f"{'statistics':<13} {'count':>5} {'corrected p':>11} " + " ".join(f"{f'cov {int(q * 100)}%':>8}" for q in LEVELS)
    lines = [head]
    for group in (*dict.fromkeys(result.groups), None):
        idx = slice(None) if group is None else [i for i, n in enumerate(result.names) if _group(n) == group]
        count = result.ranks.shape[1] if group is None else len(idx)
        p = result.p_value if group is None else float(min(1.0, result.adjusted_p_values[idx].min()))
        cov = result.coverage(LEVELS, group=group)
        lines.append(f"{group or 'all':<13} {count:>5} {p:>11.3g} " + " ".join(f"{100 * cov[q]:>7.1f}%" for q in LEVELS))
    lines.append(f"MSE of the draws' mean against x*: {result.mse:.4g}; {per_draw:.0f} network evaluations per draw; {seconds:.1f} s")
    return "\n".join(lines)


def _group(name: str) -> str:
    from .calibration import statistic_group

    return statistic_group(name)


def cmd_calibrate(args: argparse.Namespace) -> None:
    from .calibration import sbc, simulate_problems
    from .proposals import build_proposal

    _check(args)
    proposal = None
    if args.method == "smc":
        from .cli_restore import _proposal_values

        try:
            proposal = build_proposal(args.proposal, args.noise, _proposal_values(args), spell=lambda n: f"--{n.replace('_', '-')}")
        except ValueError as err:
            raise UserError(str(err)) from None
    elif args.proposal is not None:
        raise UserError("--proposal applies to --method smc")
    device, threads = _configure(args)
    model = _load_model_or_fail(args.model, device)
    shape = tuple(model.event_shape)
    operator, what = _task_operator(args, shape)
    setting = "replacement" if proposal is None else f"smc ({proposal}), M = {args.particles}, P = {args.populations} run(s)"
    print(
        f"Calibration of {setting}: {what}, noise {args.noise:g}, {args.steps} steps ({args.kernel}); {args.problems} "
        f"problems from the model's own prior, {args.draws} draws each; model {args.model!r}, {device}, {threads} thread(s). "
        "The test is exact at any step count: the prior is the sampler's own chain."
    )
    t0 = time.perf_counter()
    try:
        x_star, y = simulate_problems(
            model, model.sde, operator, args.noise, args.problems, steps=args.steps, kernel=args.kernel,
            generator=_generator(args.seed, device), chunk_size=args.chunk_size, progress=True,
        )
        sampler, per_draw = calibration_sampler(
            model, operator, draws=args.draws, noise_std=args.noise, steps=args.steps, kernel=args.kernel,
            generator=_generator(args.seed + 1, device), method=args.method, proposal=proposal,
            particles=args.particles, populations=args.populations, chunk_size=args.chunk_size,
        )
        result = sbc(
            sampler, x_star, y, args.draws, operator=operator, directions=args.directions, batch_size=args.batch,
            generator=_generator(args.seed + 2, device), progress=True,
        )
    except ValueError as err:
        raise UserError(" ".join(str(err).split())) from None
    seconds = time.perf_counter() - t0
    print(_table(result, seconds, per_draw))
    print(result.verdict(args.level))
    if args.save is not None:
        import dataclasses

        meta = dict(task=args.task, noise=args.noise, method=args.method, proposal=str(proposal), particles=args.particles,
                    populations=args.populations, steps=args.steps, kernel=args.kernel, model=str(args.model),
                    seed=args.seed, seconds=seconds, evaluations_per_draw=per_draw)
        path = dataclasses.replace(result, meta={**result.meta, **meta}).save(args.save)
        print(f"saved the ranks to {path}")
    if args.plot is not None:
        print(f"wrote {result.plot(args.plot, title=f'{what}: {setting}')}")


def add_calibrate_parser(sub, sampling_options, proposal_options) -> None:
    from .cli_common import _non_negative_float, _parse_box, _positive

    p = sub.add_parser(
        "calibrate",
        help="simulation-based calibration of a sampler setting on the model's own prior",
        description="Draws --problems signals x* from the model's discretised prior, observes them (y = A x* + noise), "
        "asks the sampler setting for --draws draws given each y and tests whether the rank of x* among the draws "
        "is uniform for every pixel, K random directions and the data fit (Talts et al. 2018; bands of Saeilynoja "
        "et al. 2022). A calibrated sampler covers x* with its central 90%% intervals 90%% of the time.",
    )
    p.add_argument("--task", choices=("inpaint", "sr", "deblur", "denoise"), required=True, help="the observation")
    p.add_argument("--factor", type=_positive(int), default=None, help="--task sr: downsampling factor (default 4)")
    p.add_argument("--blur-sigma", type=_positive(float), default=None, help="--task deblur: blur in pixels (default 1)")
    p.add_argument("--box", type=_parse_box, default=None, metavar="X,Y,W,H",
                   help="--task inpaint: the hidden box (default: the central half of each side)")
    p.add_argument("--noise", type=_non_negative_float, default=0.0, help="sigma_y, in [-1, 1] units (default %(default)s)")
    p.add_argument("--method", choices=("smc", "replacement"), default="smc", help="(default %(default)s)")
    proposal_options(p)
    p.add_argument("--populations", type=_positive(int), default=None, metavar="P",
                   help="independent SMC runs per problem; draw j comes from run j mod P (default: --draws, one "
                   "draw per run; 1: all draws from one run)")
    p.add_argument("--problems", type=_positive(int), default=64, metavar="R", help="simulated problems (default %(default)s)")
    p.add_argument("--draws", type=_positive(int), default=7, metavar="L", help="draws per problem (default %(default)s)")
    p.add_argument("--directions", type=_positive(int), default=8, metavar="K", help="random unit directions tested (default %(default)s)")
    p.add_argument("--level", type=float, default=0.01, help="test level of the verdict (default %(default)s)")
    p.add_argument("--batch", type=_positive(int), default=16, help="problems per sampler call (default %(default)s)")
    p.add_argument("--plot", type=Path, default=None, metavar="CALIB.png", help="rank ECDF-difference plot with 95%% bands (needs matplotlib)")
    p.add_argument("--save", type=Path, default=None, metavar="CALIB.npz", help="keep the ranks and settings (smcdiff.calibration.load_sbc)")
    sampling_options(p)
    # the benchmark's grid: the calibration test is exact at any step count (the prior is the same chain), and
    # R = 64 problems with L = 7 draws of 7 independent runs of 16 particles take minutes, not an hour
    p.set_defaults(func=cmd_calibrate, particles=16, steps=50, kernel="ancestral")
