"""Simulation-based calibration of every sampler setting on the shipped digits UNet's own prior.

For each task, R problems (x*, y = A x* + sigma_y eps) are drawn from the model's discretised prior on the
samplers' own kernel and grid (:func:`smcdiff.calibration.simulate_problems`); every setting then draws L
samples given each y and :func:`smcdiff.calibration.sbc` tests whether the rank of x* among them is uniform
for every pixel, 8 random unit directions and the data fit ||A x - y||^2 (chi-square per statistic,
Bonferroni over the 73 statistics). A sampler that draws from the discretised model's posterior passes at
any step count: the prior it is tested on is the same chain.

Tasks: ``sr`` (4x super-resolution, sigma_y = 0.05), ``inpaint`` (the central 4x4 box hidden, sigma_y = 0.05),
``inpaint0`` (the same box, noiseless); and two likelihoods for the twisted proposal, ``class`` (y a label drawn from
the shipped classifier's p(c | x*)) and ``quantise`` (4 levels after a 0.05 dither), where y is drawn from the
likelihood and the fit statistic is -log p(y | x). Settings are ``PROPOSAL:M:MODE[:KERNEL]`` with MODE ``runs`` (L
independent runs of M, one draw each) or ``one`` (one run of M, L draws) (``twisted@C``: the twisted proposal with
``twist_variance`` C, e.g. ``twisted@inf:16:runs``; ``twisted@data``: the training images' variance per
coefficient), or ``replacement[:KERNEL]``; the peers ``ddrm[:STEPS]``, ``diffpir[:STEPS]`` and ``dps[:STEPS]``
(``benchmarks/common.py``, L independent draws, default 100 steps on the model's grid) take the identical test.

    OMP_NUM_THREADS=1 python benchmarks/bench_calibration.py --task sr --settings mcgdiff:4:runs mcgdiff:4:one
    OMP_NUM_THREADS=1 python benchmarks/bench_calibration.py --model mnist --task sr --problems 64 --draws 7 --settings mcgdiff:4:runs

``--model gaussian`` replaces the UNet by the exact score of the Gaussian fitted to the digits' training images (mean
and covariance, on the digits model's SDE and time grid): the same test where the only error left is the sampler's,
cheap enough for M in the hundreds.

    OMP_NUM_THREADS=1 python benchmarks/bench_calibration.py --model gaussian --task sr --settings mcgdiff:4:runs mcgdiff:256:runs

A long setting can run in pieces (on several machines, or over several days): ``--shard I/N`` samples the I-th of N
slices of the same R problems, and ``--report`` stacks the N shards' ranks into one row once all are in.

    for i in 0 1 2 3; do OMP_NUM_THREADS=1 python benchmarks/bench_calibration.py --task sr --settings twisted:64:runs \
        --shard $i/4 --json calib.jsonl --save-dir ranks; done

Columns: network evaluations per draw (and backward passes), the corrected uniformity p-value, coverage of
central 50 / 90 % intervals against nominal, the draws' mean ||A x - y||^2 over the truth's (observed coefficients
only; above 1: the draws fit y worse than x* does), the MSE of the draws' mean against x*, seconds. One line per
setting is printed as it finishes (``--json`` appends the figures to a file).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from smcdiff.calibration import sbc, simulate_problems
from smcdiff.classifier import SHIPPED_CLASSIFIERS, load_digit_classifier
from smcdiff.cli_calibrate import calibration_sampler
from smcdiff.likelihoods import Classifier, Likelihood, Quantised
from smcdiff.masks import box_mask
from smcdiff.models import load_model
from smcdiff.operators import Downsample, Mask
from smcdiff.proposals import PROPOSALS

class DigitsGaussian(torch.nn.Module):
    """The exact score of N(mean, cov) fitted to the digits' training images, shaped (1, 8, 8), on the digits model's
    SDE and time grid (``--model gaussian``)."""

    def __init__(self) -> None:
        super().__init__()
        from smcdiff.data import load_digits_images
        from smcdiff.oracle import GaussianScore

        unet = load_model("digits")
        x = load_digits_images("train").flatten(1).double()
        cov = torch.cov(x.T) + 1e-3 * torch.eye(x.shape[1], dtype=torch.float64)
        self.sde, self.event_shape, self.time_grid = unet.sde, unet.event_shape, unet.time_grid
        self.score = GaussianScore(x.mean(0), cov, unet.sde)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.score(x.flatten(1).double(), t).to(x.dtype).view_as(x)


def _box(side: int) -> Mask:
    """The central box of half the side hidden (4x4 of the digits' 8x8, 14x14 of MNIST's 28x28)."""
    return Mask(box_mask(side, side, (side // 4, side // 4, side // 2, side // 2))[0])


TASKS = {  # name: (make the observation for a model and image side, sigma_y, description)
    "sr": (lambda model, side: Downsample(4), 0.05, "4x super-resolution, sigma_y = 0.05"),
    "inpaint": (lambda model, side: _box(side), 0.05, "central box inpainting (half the side), sigma_y = 0.05"),
    "inpaint0": (lambda model, side: _box(side), 0.0, "central box inpainting (half the side), noiseless"),
    # likelihoods (twisted only): y ~ p(y | x*) from the likelihood; the fit statistic is -log p(y | x)
    "class": (lambda model, side: Classifier(load_digit_classifier(directory=SHIPPED_CLASSIFIERS[model])), 0.0,
              "class-conditional: y ~ the shipped classifier's p(c | x*)"),
    "quantise": (lambda model, side: Quantised.uniform(4, 0.05), 0.0, "4-level quantisation after a 0.05 dither"),
}


def observed_fit(op, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """||A x - y||^2 over the observed coefficients only (U^T of the residual where the operator observes), per row:
    the noise on unobserved entries of y, which the data-fit statistic also counts, is left out."""
    c = op.Ut(op.A(x) - y)
    return torch.where(op.observed, c, torch.zeros_like(c)).flatten(1).square().sum(1)


def run_setting(model, op, noise, spec: str, x_star, y, args) -> dict:
    parts = spec.split(":")
    if parts[0] in PEERS:
        return run_peer(model, op, noise, spec, x_star, y, args)
    if parts[0] == "replacement":
        kernel = parts[1] if len(parts) > 1 else args.kernel
        method, proposal, m, mode = "replacement", None, args.draws, "runs"
    else:
        name, m, mode = parts[0], int(parts[1]), parts[2]
        kernel = parts[3] if len(parts) > 3 else args.kernel
        name, _, twist = name.partition("@")
        variance = None if not twist else data_variance(args.model, op, model) if twist == "data" else float(twist)
        method, proposal = "smc", PROPOSALS[name](**({} if variance is None else {"twist_variance": variance}))
    if kernel != args.kernel:
        raise SystemExit(f"{spec}: the problems were simulated with --kernel {args.kernel}; run kernels separately")
    populations = args.draws if mode == "runs" else 1
    g = torch.Generator().manual_seed(sampler_seed(args))
    sampler, per_draw = calibration_sampler(
        model, op, draws=args.draws, noise_std=noise, steps=args.steps, kernel=kernel, generator=g, method=method,
        proposal=proposal, particles=m, populations=populations, chunk_size=args.chunk_size,
    )
    return finish(spec, kernel, sampler, per_draw, backward_per_draw(proposal, per_draw), op, model, x_star, y, args)


def data_variance(name: str, op, model) -> torch.Tensor:
    """The training images' variance per coefficient of the operator, ``op.Vt(x_train).var(0)`` (``twisted@data``)."""
    from smcdiff.data import load_digits_images, load_mnist_images

    x = {"digits": load_digits_images, "mnist": load_mnist_images}[name]("train")
    return op.bind(tuple(model.event_shape)).Vt(x.double()).var(0).float().clamp_min(1e-4)


def sampler_seed(args) -> int:
    """The samplers' seed: ``--seed`` + 1, and for shard I of ``--shard`` a seed of its own."""
    return args.seed + 1 if args.shard is None else args.seed + 1 + 1000 * (args.shard[0] + 1)


def backward_per_draw(proposal, per_draw: float) -> float:
    return 0 if proposal is None else per_draw * proposal.backward_passes_per_step / proposal.evaluations_per_step


PEERS = ("ddrm", "diffpir", "dps")


def run_peer(model, op, noise, spec: str, x_star, y, args) -> dict:
    """A peer sampler (``ddrm``, ``diffpir``, ``dps``; ``:STEPS``, default 100) on the identical test: L independent
    draws per problem, one network evaluation (DPS: and one backward pass) per step."""
    from common import ddrm_sample, diffpir_sample, dps_sample

    parts = spec.split(":")
    steps = int(parts[1]) if len(parts) > 1 else 100
    if isinstance(op, Likelihood):
        raise SystemExit(f"{spec}: the peers take linear-Gaussian tasks only")
    g = torch.Generator().manual_seed(sampler_seed(args))
    bound = op.bind(tuple(model.event_shape))

    def sampler(yb: torch.Tensor) -> torch.Tensor:
        yk = yb.repeat_interleave(args.draws, 0)
        if parts[0] == "dps":
            d = dps_sample(model, lambda x0: yk - bound.A(x0), yk.shape[0], steps, g)
        else:
            d = (ddrm_sample if parts[0] == "ddrm" else diffpir_sample)(model, bound, yk, noise, steps, g)
        return d.detach().view(yb.shape[0], args.draws, *model.event_shape)

    return finish(spec, "–", sampler, float(steps), float(steps) if parts[0] == "dps" else 0.0, op, model, x_star, y, args)


def finish(spec, kernel, sampler, per_draw, backward, op, model, x_star, y, args) -> dict:
    """Run :func:`sbc` on ``sampler`` and collect the figures of one setting."""
    fits = []
    if not isinstance(op, Likelihood):
        op = op.bind(tuple(model.event_shape))
        inner = sampler

        def sampler(yb: torch.Tensor) -> torch.Tensor:  # records the draws' fit to y for the fit ratio
            d = inner(yb)
            fits.append(observed_fit(op, d.flatten(0, 1), yb.repeat_interleave(d.shape[1], 0)))
            return d

    t0 = time.perf_counter()
    # the same directions in every shard: sbc draws them first from this generator
    res = sbc(sampler, x_star, y, args.draws, operator=op, batch_size=args.batch, generator=torch.Generator().manual_seed(args.seed + 2))
    seconds = time.perf_counter() - t0
    if args.save_dir is not None:
        args.save_dir.mkdir(parents=True, exist_ok=True)
        res.save(args.save_dir / ranks_name(args.task, spec, kernel, args.shard))
    fit_draws = float(torch.cat(fits).mean()) if fits else float("nan")
    fit_truth = float(observed_fit(op, x_star, y).mean()) if fits else float("nan")
    shard = {} if args.shard is None else {"shard": "{}/{}".format(*args.shard), "shard_problems": res.n_problems}
    return dict(setting=spec, kernel=kernel, **figures(res, ratio(fit_draws, fit_truth)), evaluations_per_draw=per_draw,
                backward_per_draw=backward, fit_draws=fit_draws, fit_truth=fit_truth, seconds=seconds, **shard)


def ratio(draws: float, truth: float) -> float:
    """The draws' fit over the truth's; nan where the truth fits exactly (noiseless) or there is no fit."""
    return draws / truth if truth > 0 else float("nan")


def figures(res, fit_ratio: float) -> dict:
    """The table's figures of an :class:`~smcdiff.calibration.SBCResult` (one run, or shards stacked)."""
    cov, nan = res.coverage((0.5, 0.9)), float("nan")
    out = dict(fit_ratio=fit_ratio, coverage50=cov[0.5], coverage90=cov[0.9], coverage90_se=res.coverage_se(0.9), mse=res.mse)
    try:
        adjusted = res.adjusted_p_values
    except ValueError as err:  # a shard too small for a test of its own: the stacked shards are tested
        return dict(out, p=nan, p_fit=nan, p_pixels=nan, verdict=str(err))
    fit = [i for i, n in enumerate(res.names) if n == "fit"]
    rest = [i for i, n in enumerate(res.names) if n != "fit"]
    return dict(out, p=res.p_value, p_fit=float(adjusted[fit].min()) if fit else nan, p_pixels=float(adjusted[rest].min()),
                verdict=res.verdict(0.01))


def ranks_name(task: str, spec: str, kernel: str, shard: tuple[int, int] | None = None) -> str:
    """The file a setting's ranks are kept in (``--save-dir``); a kernel other than the ancestral one is part of the
    name, so that the same setting on both kernels keeps both, and so is the shard."""
    suffix = "" if kernel in ("ancestral", "–") else f"-{kernel}"
    part = "" if shard is None else f".shard{shard[0]}of{shard[1]}"
    return f"{task}-{spec.replace(':', '-')}{suffix}{part}.npz"


def parse_shard(text: str | None, problems: int) -> tuple[int, int] | None:
    """``--shard I/N`` -> (I, N), 0 <= I < N <= R."""
    if text is None:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise SystemExit(f"--shard: expected I/N, e.g. 0/8, got {text!r}") from None
    if not 0 <= i < n <= problems:
        raise SystemExit(f"--shard: expected 0 <= I < N <= --problems = {problems}, got {text!r}")
    return i, n


def unobserved_coverage(res, task: str) -> dict[float, float] | None:
    """Coverage of central 50 / 90 % intervals over the unobserved pixels only (inpainting tasks)."""
    from smcdiff.calibration.result import interval_coverage

    if res is None or not task.startswith("inpaint"):
        return None
    side = round(sum(n.startswith("x[") for n in res.names) ** 0.5)  # one grey channel
    hidden = ~_box(side).mask.flatten()
    cols = [i for i, n in enumerate(res.names) if n.startswith("x[") and bool(hidden[int(n[2:-1])])]
    return {q: float(interval_coverage(res.ranks[:, cols], res.draws, q).mean()) for q in (0.5, 0.9)}


def merge_shards(rows: dict, ranks: Path | None) -> dict:
    """Replace the lines of a sharded setting by one line for the stacked ranks when all N shards are in (their ranks
    under ``ranks``); a setting with shards missing gets a line that says how many are in, with the figures of the
    shards in so far stacked (an interim result on fewer problems, so less power)."""
    from smcdiff.calibration import concat_sbc, load_sbc

    out, groups = {}, {}
    for key, r in rows.items():
        if "shard" not in r:
            out[key] = r
            continue
        i, n = (int(v) for v in r["shard"].split("/"))
        groups.setdefault((*key[:3], n), {})[i] = r
    for (task, spec, kernel, n), parts in groups.items():
        files = {i: None if ranks is None else ranks / ranks_name(task, spec, kernel, (i, n)) for i in sorted(parts)}
        present = [i for i, f in files.items() if f is not None and f.is_file()]
        if not present:
            out[(task, spec, kernel, n)] = dict(parts[min(parts)], incomplete=f"{len(parts)} of {n} shards")
            continue
        res = concat_sbc([load_sbc(files[i]) for i in present])
        weight = {i: parts[i]["shard_problems"] for i in present}
        fit = ratio(sum(w * parts[i]["fit_draws"] for i, w in weight.items()),
                    sum(w * parts[i]["fit_truth"] for i, w in weight.items()))
        row = dict(parts[present[0]], **figures(res, fit), seconds=sum(parts[i]["seconds"] for i in present),
                   merged=res, shards=n)
        if len(present) < n:
            row["partial"] = f"{len(present)} of {n} shards in, {sum(weight.values())} problems"
        out[(task, spec, kernel, n)] = row
    return out


def report(lines: Path, ranks: Path | None) -> None:
    """The table of every setting appended to ``lines`` (``--json``), with coverage over the unobserved pixels
    where the ranks were kept (``--save-dir``); the last line of a setting (or shard) wins, and the shards of a
    setting are stacked into one row once all are in."""
    from smcdiff.calibration import load_sbc

    rows: dict[tuple, dict] = {}
    for line in lines.read_text().splitlines():
        r = json.loads(line)
        rows[(r["task"], r["setting"], r.get("kernel", "ancestral"), r.get("shard"))] = r
    rows = merge_shards(rows, ranks)
    print("| task | setting | evaluations (backward) per draw | corrected p: all (pixels and directions; fit) "
          "| coverage 50 % / 90 % | unobserved pixels: 50 % / 90 % | fit / truth's fit | MSE of the mean | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (task, spec, kernel, *_), r in rows.items():
        label = (spec if kernel in ("ancestral", "–") else f"{spec}, {kernel}")
        label += f" ({r['partial']})" if "partial" in r else (f" ({r['shards']} shards)" if "shards" in r else "")
        if "incomplete" in r:
            print(f"| {task} | {label} | {r['evaluations_per_draw']:.0f} ({r['backward_per_draw']:.0f}) | "
                  f"{r['incomplete']} in | | | | | |")
            continue
        path = None if ranks is None else ranks / ranks_name(task, spec, kernel)
        res = r.get("merged") or (load_sbc(path) if path is not None and path.is_file() else None)
        hidden = unobserved_coverage(res, task)
        split = f" ({r['p_pixels']:.2g}; {r['p_fit']:.2g})" if "p_fit" in r else ""
        hid = "–" if hidden is None else f"{100 * hidden[0.5]:.1f} / {100 * hidden[0.9]:.1f}"
        print(f"| {task} | {label} | {r['evaluations_per_draw']:.0f} ({r['backward_per_draw']:.0f}) | {r['p']:.2g}{split} | "
              f"{100 * r['coverage50']:.1f} / {100 * r['coverage90']:.1f} | {hid} | {r.get('fit_ratio', float('nan')):.3f} | "
              f"{r['mse']:.4f} | {r['seconds']:.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=[*sorted(SHIPPED_CLASSIFIERS), "gaussian"], default="digits",
                   help="a shipped model, or gaussian: the exact score of the digits' Gaussian fit (default %(default)s)")
    p.add_argument("--task", choices=sorted(TASKS))
    p.add_argument("--settings", nargs="+", metavar="PROPOSAL:M:MODE")
    p.add_argument("--report", type=Path, default=None, metavar="LINES.jsonl",
                   help="print the table of the settings appended to this --json file (with --save-dir: coverage over "
                   "the unobserved pixels too) and exit")
    p.add_argument("--problems", type=int, default=256, help="R (default %(default)s)")
    p.add_argument("--draws", type=int, default=15, help="L (default %(default)s)")
    p.add_argument("--steps", type=int, default=50, help="reverse steps on the model's grid (default %(default)s)")
    p.add_argument("--kernel", choices=("euler", "ancestral"), default="ancestral")
    p.add_argument("--batch", type=int, default=32, help="problems per sampler call (default %(default)s)")
    p.add_argument("--chunk-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="append one JSON line per setting here")
    p.add_argument("--save-dir", type=Path, default=None, help="keep each setting's ranks here (smcdiff.calibration.load_sbc)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="sample only the I-th (from 0) of N equal slices of the R problems, with a seed of its own; "
                   "needs --save-dir and --json, and --report stacks the N shards into one row once all are in")
    args = p.parse_args()
    args.shard = parse_shard(args.shard, args.problems)
    if args.shard is not None and (args.save_dir is None or args.json is None):
        p.error("--shard needs --save-dir and --json (to stack the shards later)")
    if args.report is not None:
        report(args.report, args.save_dir)
        return
    if args.task is None or not args.settings:
        p.error("--task and --settings are required (or --report)")
    torch.set_num_threads(args.threads)
    model = DigitsGaussian() if args.model == "gaussian" else load_model(args.model)
    make_op, noise, what = TASKS[args.task]
    op = make_op("digits" if args.model == "gaussian" else args.model, model.event_shape[-1])
    t0 = time.perf_counter()
    x_star, y = simulate_problems(model, model.sde, op, noise, args.problems, steps=args.steps, kernel=args.kernel,
                                  generator=torch.Generator().manual_seed(args.seed))
    print(f"{what}: R = {args.problems} problems from the model's prior ({args.steps} {args.kernel} steps, "
          f"{time.perf_counter() - t0:.0f} s), L = {args.draws} draws each")
    if args.shard is not None:
        i, n = args.shard
        lo, hi = i * args.problems // n, (i + 1) * args.problems // n
        x_star, y = x_star[lo:hi], y[lo:hi]
        print(f"shard {i} of {n}: problems {lo} to {hi - 1}")
    print("| setting | evaluations (backward) per draw | corrected p: all (pixels and directions; fit) | coverage 50 % "
          "| coverage 90 % | fit / truth's fit | MSE of the mean | s |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in args.settings:
        r = run_setting(model, op, noise, spec, x_star, y, args)
        print(f"| {spec} | {r['evaluations_per_draw']:.0f} ({r['backward_per_draw']:.0f}) | {r['p']:.2g} ({r['p_pixels']:.2g}; {r['p_fit']:.2g}) | "
              f"{100 * r['coverage50']:.1f} | {100 * r['coverage90']:.1f} ± {100 * r['coverage90_se']:.1f} | "
              f"{r['fit_ratio']:.3f} | {r['mse']:.4f} | {r['seconds']:.0f} |", flush=True)
        if args.json is not None:
            with args.json.open("a") as f:
                f.write(json.dumps({"model": args.model, "task": args.task, "problems": args.problems, "draws": args.draws,
                                    "steps": args.steps, **r}) + "\n")


if __name__ == "__main__":
    main()
