"""How diverse is the digits model's own posterior, and where does a small SMC run lose its lineages?

Held-out digits, the shipped digits UNet, noiseless inpainting (a random 25% = 4x4 square hidden,
mask seed 0, as in ``bench_corrector_digits.py``) or 4x super-resolution (``--task sr``), one SMC run of
M particles per digit (:func:`smcdiff.restore`, 100 steps on the model's timesteps) for each
``PROPOSAL:M`` given. Reported per run:

- PSNR of the first draw, and *diversity*: the mean per-pixel standard deviation over K = 5 draws from the
  weighted particles (``res.draw``), the measure of issue 11's target and of ``bench_peers.py``;
- *weighted sd*: the mean per-pixel standard deviation of the weighted particles themselves, times
  c4(5) = 0.940 (the mean sample sd of 5 independent normal draws, relative to the sd): about what 5
  independent draws from the particle approximation would show. As M grows both approach the diversity of
  the model's own posterior, which is what an exact sampler of this model shows;
- distinct final lineages and resampling events per digit in the first tenth of the steps, the middle
  and the last tenth;
- for the twisted proposal, per step, the spread over particles (std, mean over digits) of the log-weight
  increment and of its two parts, the move's log p/q and the twist's ratio log p~_{k-1} - log p~_k,
  averaged over the same three phases: where the weight variance that collapses the genealogy arises.

The spec ``cde`` (M ignored) draws the K reconstructions from the shipped trained CDE estimator of the task
(``cde`` / ``sr_cde``, 100 steps, as in ``examples/compare_cmde.py``), whose diversity issue 11's target
refers to, on the same digits and masks.

    python benchmarks/bench_digits_genealogy.py --threads 1 --images 16 --runs bootstrap:8 twisted:8 bootstrap:32 bootstrap:128
    python benchmarks/bench_digits_genealogy.py --threads 1 --images 16 --runs bootstrap:512 twisted:128
    python benchmarks/bench_digits_genealogy.py --threads 1 --images 16 --runs cde:5
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass
from typing import ClassVar

import torch

from smcdiff import RunOptions, restore
from smcdiff.baselines import sample_conditional
from smcdiff.data import load_digits_images
from smcdiff.masks import random_square_masks
from smcdiff.metrics import diversity, psnr
from smcdiff.msdiff.conditional import ASSET_DIR, average_pool, condition, load_conditional
from smcdiff.operators import Downsample
from smcdiff.proposals import PROPOSALS, Twisted, TwistedModel

C4_5 = 0.9400  # E[sample sd of 5 normal draws] / sd


class RecordingTwistedModel(TwistedModel):
    """The twisted proposal, recording per step the std over particles of each part of the weight increment."""

    records: ClassVar[list[tuple[int, float, float, float]]] = []

    def log_potential(self, x, pred, step):
        move, twist = self._pending, pred["log_twist"] - self._prev_twist
        self.records.append((step.k, *(float(v.std(1).mean()) for v in (move, twist, move + twist))))
        return super().log_potential(x, pred, step)


@dataclass(frozen=True, eq=False)
class RecordingTwisted(Twisted):
    """The twisted proposal whose particle model records its weight increments (:class:`RecordingTwistedModel`)."""

    def build(self, problem) -> RecordingTwistedModel:
        return RecordingTwistedModel(problem, self.twist_variance, self.corrector_steps, self.corrector_size)


def phases(steps: int) -> list[tuple[str, slice]]:
    """The first tenth, the middle and the last tenth of the loop's step indices (0 = the first step, from T)."""
    tenth = max(1, steps // 10)
    return [("first tenth", slice(0, tenth)), ("middle", slice(tenth, steps - tenth)), ("last tenth", slice(steps - tenth, steps))]


def cde_draws(task: str, images: torch.Tensor, mask: torch.Tensor | None, k: int, steps: int, seed: int) -> torch.Tensor:
    """K reconstructions per digit from the shipped trained CDE estimator of ``task``, ``(B, K, 1, 8, 8)``."""
    est = load_conditional(ASSET_DIR / ("cde" if task == "inpaint" else "sr_cde"))
    if task == "inpaint":
        obs = condition(est.config, torch.where(mask, images, torch.zeros_like(images)), mask)
    else:
        obs = condition(est.config, average_pool(images, est.config.sr_factor))
    return sample_conditional(est, obs.y, obs.aux, samples=k, steps=steps, generator=torch.Generator().manual_seed(seed),
                              denoise_last=True).particles


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--runs", nargs="+", default=["bootstrap:8", "twisted:8", "bootstrap:32"], metavar="PROPOSAL:M")
    p.add_argument("--task", choices=("inpaint", "sr"), default="inpaint")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--populations", type=int, default=1,
                   help="P independent runs of M particles per digit (restore(populations=P)); the K draws come "
                        "from runs j mod P. Lineages are then summed over the P runs, and a resampling event is a step at "
                        "which any of them resampled.")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    images = load_digits_images("test")[: args.images]
    mask = None
    if args.task == "inpaint":
        mask = random_square_masks(images.shape[0], 8, 8, 0.25, generator=torch.Generator().manual_seed(args.seed))
        y, operator = torch.where(mask, images, torch.zeros_like(images)), mask
    else:
        operator = Downsample(4)
        y = operator.bind((1, 8, 8)).A(images)
    runs = "" if args.populations == 1 else f", {args.populations} independent runs of M particles per digit"
    print(f"{images.shape[0]} held-out digits, {args.task}, {args.steps} steps, {args.draws} draws per digit{runs}")
    print("| proposal | M | PSNR (dB) | diversity | weighted sd × c4(5) | distinct final lineages "
          "| resampling events (first tenth / middle / last tenth) | s / digit |")
    print("|---|---|---|---|---|---|---|---|")
    splits = []
    for spec in args.runs:
        proposal, m = spec.split(":")[0], int(spec.split(":")[1])
        if proposal == "cde":
            t0 = time.perf_counter()
            draws = cde_draws(args.task, images, mask, args.draws, args.steps, args.seed + 1).clamp(-1, 1)
            seconds = time.perf_counter() - t0
            print(f"| trained CDE | – | {psnr(draws[:, 0], images).mean():.2f} | {diversity(draws):.4f} | – | – | – "
                  f"| {seconds / images.shape[0]:.2f} |", flush=True)
            continue
        RecordingTwistedModel.records = []
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # few-steps advice
            res = restore(
                "digits", y, operator, particles=m, steps=args.steps,
                generator=torch.Generator().manual_seed(args.seed + 1),
                proposal=RecordingTwisted() if proposal == "twisted" else PROPOSALS[proposal](),
                options=RunOptions(populations=args.populations),
            )
        seconds = time.perf_counter() - t0
        draws = res.draw(args.draws, torch.Generator().manual_seed(args.seed + 2))
        ws = res.weighted
        x = ws.particles.double().clamp(-1, 1)
        w = ws.weights.reshape(*ws.weights.shape, *([1] * (x.ndim - 2)))
        sd = (w * (x - (w * x).sum(1, keepdim=True)) ** 2).sum(1).sqrt().mean().item()
        events = ws.resampled.double()  # (steps, B)
        counts = " / ".join(f"{events[s].sum(0).mean():.1f}" for _, s in phases(events.shape[0]))
        print(f"| {proposal} | {m} | {psnr(draws[:, 0], images).mean():.2f} | {diversity(draws):.4f} | {C4_5 * sd:.4f} "
              f"| {ws.distinct_final().double().mean():.2f} | {counts} | {seconds / images.shape[0]:.2f} |", flush=True)
        if RecordingTwistedModel.records:
            rec = torch.tensor(RecordingTwistedModel.records)  # per step: k, std move, std twist, std total
            splits.append((m, [(name, rec[s, 1:].mean(0)) for name, s in phases(rec.shape[0])]))
    for m, rows in splits:
        print(f"\ntwisted, M = {m}: per-step std over particles of the log-weight increment (mean over digits and steps)")
        print("| phase | move log p/q | twist ratio | increment |\n|---|---|---|---|")
        for name, v in rows:
            print(f"| {name} | {v[0]:.3f} | {v[1]:.3f} | {v[2]:.3f} |")


if __name__ == "__main__":
    main()
