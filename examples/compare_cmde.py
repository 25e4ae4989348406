"""CDE, CDiffE and CMDE against SMC on an unconditional model: Table 3 of "Non-Uniform Diffusion Models" on digits.

Inpainting: held-out 8x8 digits with one random square hole covering 25% of the image (§4.2.1).
Rows: the three conditional estimators trained in-house (``examples/train_conditional.py``; CMDE
with sigma^y_max = 0.5 and 1), SMC with M = 16 and 64 particles on the default unconditional digits
model, and the replacement baseline on the same model. Super-resolution: A = 4x average pooling
(8x8 -> 2x2), rows CDE, CDiffE, CMDE (sigma^y_max = 0.5). Noisy inpainting (``--tasks noisy-inpaint``):
the same holes with y = x + sigma_y eps on the observed pixels (``--noise``, default 0.05); the
inpainting estimators receive the noisy y as it is (CMDE was trained on noised y, CDE and CDiffE on
clean y), SMC conditions on y = A x + sigma_y eps (``inpaint(..., noise_std=sigma_y)``), its
consistency is measured against the noisy y, as for the estimators (sigma_y = 0.05 caps it near 32 dB
for a reconstruction that denoises).

Columns (:mod:`smcdiff.metrics`): PSNR/SSIM of one reconstruction against the truth; UFID/JFID, the
Fréchet distances in digit-classifier features between reconstructions and truths, alone and
jointly with the observation (:func:`smcdiff.metrics.ufid`, :func:`smcdiff.metrics.jfid`);
consistency, the PSNR between A x_hat and y (over the observed pixels for inpainting); diversity,
the mean per-pixel standard deviation over K = 5 reconstructions of each observation; network
evaluations and seconds per reconstruction.

How each method gives its K reconstructions: the estimators and the replacement baseline draw K
independent samples; SMC runs one particle system of M particles per observation and draws K
particles from its weights (their evaluations and seconds are those of the whole system). All
reconstructions are clipped to [-1, 1].

Examples::

    python examples/compare_cmde.py --threads 2 --markdown cmde_table.md --json cmde_table.json
    python examples/compare_cmde.py --n-test 8 --steps 4 --smc-steps 4 --particles 2 4   # smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from smcdiff.baselines import sample_conditional
from smcdiff.classifier import load_digit_classifier
from smcdiff.data import load_digits_images
from smcdiff.masks import random_square_masks
from smcdiff.metrics import consistency, digit_fid, diversity, jfid, masked_psnr, psnr, ssim, ufid
from smcdiff.msdiff.conditional import ASSET_DIR, ConditionalEstimator, average_pool, condition, load_conditional

INPAINT_MODELS = {"CDE": "cde", "CDiffE": "cdiffe", "CMDE (σ^y_max = 0.5)": "cmde_0.5", "CMDE (σ^y_max = 1)": "cmde_1"}
SR_MODELS = {"CDE": "sr_cde", "CDiffE": "sr_cdiffe", "CMDE (σ^y_max = 0.5)": "sr_cmde_0.5"}


@dataclass
class Row:
    """One line of the table; metrics are means over the held-out images."""

    task: str
    method: str
    psnr: float
    ssim: float
    ufid: float
    jfid: float
    consistency: float
    diversity: float
    evaluations: float
    seconds: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-test", type=int, default=None, help="first N held-out images (all 297 by default)")
    p.add_argument("--samples", type=int, default=5, help="K reconstructions per observation (diversity)")
    p.add_argument("--steps", type=int, default=100, help="reverse steps of the conditional estimators")
    p.add_argument("--smc-steps", type=int, default=100, help="reverse steps of SMC and replacement")
    p.add_argument("--particles", type=int, nargs="*", default=[16, 64], help="SMC particle counts M")
    p.add_argument("--smc-proposals", nargs="+", choices=("bootstrap", "mcgdiff", "twisted"), default=["mcgdiff"],
                   help="SMC proposals of the super-resolution rows")
    p.add_argument("--smc-kernels", nargs="+", choices=("euler", "ancestral"), default=["euler"],
                   help="reverse kernels of the SMC super-resolution rows")
    p.add_argument("--tasks", nargs="+", choices=("inpaint", "sr", "noisy-inpaint"), default=["inpaint", "sr"])
    p.add_argument("--noise", type=float, default=0.05, help="sigma_y of noisy-inpaint ([-1, 1] units)")
    p.add_argument("--models-dir", type=Path, default=ASSET_DIR, help="folder holding the estimators' folders")
    p.add_argument("--unconditional", default="digits", help="model for SMC / replacement ('digits' = shipped)")
    p.add_argument("--no-smc", action="store_true", help="skip the SMC and replacement rows")
    p.add_argument("--batch-rows", type=int, default=2048, help="rows per estimator sampler run")
    p.add_argument("--chunk-size", type=int, default=4096, help="particles per network call in SMC")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None, help="write the rows as JSON")
    p.add_argument("--markdown", type=Path, default=None, help="write the table as markdown")
    p.add_argument("--progress", action="store_true")
    return p.parse_args(argv)


def score_rows(
    task: str,
    method: str,
    samples: torch.Tensor,
    x: torch.Tensor,
    y_image: torch.Tensor,
    consistency_fn: Callable[[torch.Tensor], torch.Tensor],
    evaluations: float,
    seconds: float,
    classifier,
) -> Row:
    """Metrics of ``samples: (N, K, 1, 8, 8)`` against truths ``x: (N, 1, 8, 8)``; the first draw is "the" reconstruction."""
    samples = samples.clamp(-1, 1).float()
    x_hat = samples[:, 0]
    return Row(
        task=task,
        method=method,
        psnr=psnr(x_hat, x).mean().item(),
        ssim=ssim(x_hat, x).mean().item(),
        ufid=ufid(x_hat, x, classifier),
        jfid=jfid(x_hat, x, y_image, classifier),
        consistency=consistency_fn(x_hat).mean().item(),
        diversity=diversity(samples) if samples.shape[1] > 1 else float("nan"),
        evaluations=evaluations,
        seconds=seconds,
    )


def run_estimator(
    est: ConditionalEstimator, y: torch.Tensor, aux: torch.Tensor | None, args: argparse.Namespace, generator: torch.Generator
) -> tuple[torch.Tensor, float]:
    """K samples per observation and the wall-clock seconds per sample."""
    t0 = time.perf_counter()
    out = sample_conditional(
        est, y, aux, samples=args.samples, steps=args.steps, generator=generator, denoise_last=True,
        chunk_size=args.batch_rows, progress=args.progress,
    ).particles
    return out, (time.perf_counter() - t0) / (y.shape[0] * args.samples)


def inpainting_rows(x: torch.Tensor, args: argparse.Namespace, classifier) -> list[Row]:
    from smcdiff import RunOptions, inpaint, load_model

    n = x.shape[0]
    g = torch.Generator().manual_seed(args.seed)
    mask = random_square_masks(n, 8, 8, 0.25, generator=g)
    measurement = torch.where(mask, x, torch.zeros_like(x))
    cons = lambda xh: masked_psnr(xh, x, mask)  # noqa: E731  (y = x on the observed pixels)
    rows = []
    for method, name in INPAINT_MODELS.items():
        est = load_conditional(args.models_dir / name)
        obs = condition(est.config, measurement, mask)
        samples, sec = run_estimator(est, obs.y, obs.aux, args, torch.Generator().manual_seed(args.seed + 1))
        rows.append(score_rows("inpaint", method, samples, x, obs.y, cons, args.steps + 1, sec, classifier))
        print(_line(rows[-1]), flush=True)
    if args.no_smc:
        return rows
    model = load_model(args.unconditional)
    for m in args.particles:
        g = torch.Generator().manual_seed(args.seed + 2)
        res = inpaint(
            model, x, mask, particles=m, steps=args.smc_steps, method="smc", generator=g,
            options=RunOptions(chunk_size=args.chunk_size, progress=args.progress, populations=1),
        )
        draws = res.draw(args.samples, g)
        rows.append(
            score_rows(
                "inpaint", f"SMC, M = {m}", draws, x, measurement, cons, res.model_evaluations / n, res.seconds / n,
                classifier,
            )
        )
        print(_line(rows[-1]), flush=True)
    g = torch.Generator().manual_seed(args.seed + 3)
    res = inpaint(
        model, x, mask, particles=args.samples, steps=args.smc_steps, method="replacement", generator=g,
        options=RunOptions(chunk_size=args.chunk_size, progress=args.progress, populations=1),
    )
    rows.append(
        score_rows(
            "inpaint", "replacement", res.samples, x, measurement, cons, args.smc_steps,
            res.seconds / (n * args.samples), classifier,
        )
    )
    print(_line(rows[-1]), flush=True)
    return rows


def noisy_inpainting_rows(x: torch.Tensor, args: argparse.Namespace, classifier) -> list[Row]:
    """Inpainting with y = x + sigma_y eps on the observed pixels: the estimators and SMC (every proposal
    and kernel asked for that accepts noise: ``mcgdiff`` and ``twisted``)."""
    from smcdiff import RunOptions, inpaint, load_model

    n, task = x.shape[0], "noisy-inpaint"
    mask = random_square_masks(n, 8, 8, 0.25, generator=torch.Generator().manual_seed(args.seed))
    noise = args.noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(args.seed + 5))
    measurement = torch.where(mask, x + noise, torch.zeros_like(x))
    cons = lambda xh: masked_psnr(xh, measurement, mask)  # noqa: E731  (against the noisy y)
    rows = []
    for method, name in INPAINT_MODELS.items():
        est = load_conditional(args.models_dir / name)
        obs = condition(est.config, measurement, mask)
        samples, sec = run_estimator(est, obs.y, obs.aux, args, torch.Generator().manual_seed(args.seed + 1))
        rows.append(score_rows(task, method, samples, x, obs.y, cons, args.steps + 1, sec, classifier))
        print(_line(rows[-1]), flush=True)
    if args.no_smc:
        return rows
    model = load_model(args.unconditional)
    proposals = [p for p in args.smc_proposals if p != "bootstrap"] or ["mcgdiff"]
    for m, proposal, kernel in ((m, p, k) for m in args.particles for p in proposals for k in args.smc_kernels):
        g = torch.Generator().manual_seed(args.seed + 2)
        res = inpaint(
            model, measurement, mask, noise_std=args.noise, particles=m, steps=args.smc_steps, kernel=kernel,
            generator=g, proposal=proposal, options=RunOptions(chunk_size=args.chunk_size, progress=args.progress, populations=1),
        )
        draws = res.draw(args.samples, g)
        name = f"SMC ({proposal}, {kernel}), M = {m}"
        rows.append(score_rows(task, name, draws, x, measurement, cons, res.model_evaluations / n, res.seconds / n,
                               classifier))
        print(_line(rows[-1]) + f" lineages {res.weighted.distinct_final().double().mean().item():.1f}", flush=True)
    return rows


def super_resolution_rows(x: torch.Tensor, args: argparse.Namespace, classifier) -> list[Row]:
    rows = []
    for method, name in SR_MODELS.items():
        est = load_conditional(args.models_dir / name)
        factor = est.config.sr_factor
        low = average_pool(x, factor)
        obs = condition(est.config, low)
        cons = lambda xh: consistency(xh, low, lambda z: average_pool(z, factor))  # noqa: E731
        samples, sec = run_estimator(est, obs.y, obs.aux, args, torch.Generator().manual_seed(args.seed + 1))
        rows.append(score_rows("sr", method, samples, x, obs.y, cons, args.steps + 1, sec, classifier))
        print(_line(rows[-1]), flush=True)
    if args.no_smc:
        return rows
    from smcdiff import RunOptions, load_model, restore
    from smcdiff.operators import Downsample

    model = load_model(args.unconditional)
    n, factor = x.shape[0], 4
    low = average_pool(x, factor)
    cons = lambda xh: consistency(xh, low, lambda z: average_pool(z, factor))  # noqa: E731
    for m, proposal, kernel in ((m, p, k) for m in args.particles for p in args.smc_proposals for k in args.smc_kernels):
        g = torch.Generator().manual_seed(args.seed + 2)
        res = restore(
            model, low, Downsample(factor), particles=m, steps=args.smc_steps, kernel=kernel, generator=g,
            proposal=proposal, options=RunOptions(chunk_size=args.chunk_size, progress=args.progress, populations=1),
        )
        draws = res.draw(args.samples, g)
        name = f"SMC ({proposal}, {kernel}), M = {m}"
        y_image = torch.nn.functional.interpolate(low, scale_factor=factor, mode="nearest")  # as the estimators' y
        rows.append(score_rows("sr", name, draws, x, y_image, cons, res.model_evaluations / n, res.seconds / n, classifier))
        print(_line(rows[-1]) + f" lineages {res.weighted.distinct_final().double().mean().item():.1f}", flush=True)
    return rows


def _fmt(v: float, digits: int = 2) -> str:
    return "∞" if math.isinf(v) else ("–" if math.isnan(v) else f"{v:.{digits}f}")


def _line(r: Row) -> str:
    return (
        f"| {r.method} | {_fmt(r.psnr)}/{_fmt(r.ssim, 3)} | {_fmt(r.ufid)}/{_fmt(r.jfid)} | {_fmt(r.consistency)} "
        f"| {_fmt(r.diversity, 3)} | {r.evaluations:,.0f} | {r.seconds * 1e3:.1f} |"
    )


def markdown_table(rows: list[Row], floor: float | None = None) -> str:
    """Rows grouped by task in the layout of the paper's Table 3, plus cost columns."""
    head = (
        "| estimator | PSNR/SSIM ↑ | UFID/JFID ↓ | consistency ↑ | diversity ↑ | network evaluations / sample | ms / sample |\n"
        "|---|---|---|---|---|---|---|"
    )
    titles = {"inpaint": "Inpainting (25% square hole)", "sr": "Super-resolution (4x average pooling, 8x8 from 2x2)",
              "noisy-inpaint": "Noisy inpainting (25% square hole, sigma_y on the observed pixels)"}
    parts = []
    for task in ("inpaint", "sr", "noisy-inpaint"):
        sel = [r for r in rows if r.task == task]
        if sel:
            parts.append(f"**{titles[task]}**\n\n{head}\n" + "\n".join(_line(r) for r in sel))
    text = "\n\n".join(parts)
    if floor is not None:
        text += (
            f"\n\nReference: UFID between the held-out images and as many training images, {floor:.2f} (two "
            "independent sets of real digits; not a floor for the rows above, whose reconstructions each keep "
            "the observed part of their own truth)."
        )
    return text


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for name in ("samples", "steps", "smc_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    x = load_digits_images("test")
    if args.n_test is not None:
        x = x[: args.n_test]
    classifier = load_digit_classifier()
    rows: list[Row] = []
    if "inpaint" in args.tasks:
        rows += inpainting_rows(x, args, classifier)
    if "sr" in args.tasks:
        rows += super_resolution_rows(x, args, classifier)
    if "noisy-inpaint" in args.tasks:
        rows += noisy_inpainting_rows(x, args, classifier)
    floor = digit_fid(x, load_digits_images("train")[: x.shape[0]], classifier)
    table = markdown_table(rows, floor)
    print(table)
    if args.markdown is not None:
        args.markdown.write_text(table + "\n")
    if args.json is not None:
        meta = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        args.json.write_text(json.dumps({"args": meta, "ufid_floor": floor, "rows": [asdict(r) for r in rows]}, indent=2))
    return rows


if __name__ == "__main__":
    main()
