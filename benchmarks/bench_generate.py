"""Class-conditional generation from the unconditional model and a classifier: twisted SMC against guidance.

Every row draws K images of each class c = 0..9 from the shipped unconditional model, conditioned on
p(c | x_0) of the shipped classifier (the one that guides). They are judged by a *second* classifier, trained
independently (another seed and architecture: ``benchmarks/assets/judge_<model>``, made by
``examples/train_classifier.py``; see its docstring):

- accuracy: the share of draws the judge labels c (all classes; and the worst class);
- Fréchet distance per class: the K draws of class c against the held-out images of class c, in the judge's
  feature space, averaged over classes (small samples: comparable between rows, not with other tables), and
  pooled: all 10 K draws against all held-out images;
- diversity: the mean per-pixel standard deviation of the K draws of a class;
- network evaluations and backward passes per draw, seconds for all draws.

Rows:

- ``twisted M, runs``: K independent twisted SMC runs of M particles per class, one draw each;
- ``twisted M, one run``: one run of M particles per class, K draws from its weights;
- ``guidance``: plain classifier guidance, DPS-style and unweighted: the reverse kernel with the score
  s(x_t) + grad_x log p(c | x0_hat(x_t)) (one network evaluation and one backward pass per step); at the step
  count of the SMC rows and at 4 times as many (the cost of M = 4 per draw);
- ``azula TDS`` (``--peers azula``; ``pip install --no-deps azula``): azula 0.11's ``TDSSampler`` with the same
  model as its denoiser and log p(c | x0_hat) as its twist, K independent runs of M = 4 particles per class.

Example (the figures in BENCHMARKS.md, "Class-conditional generation")::

    OMP_NUM_THREADS=1 python benchmarks/bench_generate.py --model digits --draws 32 --steps 100 --peers azula
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from smcdiff import RunOptions, generate, load_model
from smcdiff.classifier import SHIPPED_CLASSIFIERS, load_digit_classifier
from smcdiff.dynamics import reverse_step
from smcdiff.metrics import classifier_features, diversity, frechet_distance

FEATURES: dict[str, torch.Tensor] = {}  # the judge's features of every row's draws, (10, K, F)
JUDGES = {"digits": Path(__file__).parent / "assets" / "judge_digits", "mnist": Path(__file__).parent / "assets" / "judge_mnist"}


def held_out(model: str) -> tuple[torch.Tensor, torch.Tensor]:
    from smcdiff.data import load_digits_images, load_mnist_images

    return (load_digits_images if model == "digits" else load_mnist_images)("test", return_labels=True)


def guidance(model, clf, labels: torch.Tensor, k: int, steps: int, generator: torch.Generator) -> torch.Tensor:
    """Plain classifier guidance: the ancestral kernel with the score s(x) + grad_x log p(c | x0_hat(x)); ``(B, k, ...)``."""
    b = labels.numel()
    c = labels.repeat_interleave(k)
    x = model.sde.prior_sample((b * k, *model.event_shape), generator=generator, dtype=torch.float32)
    grid = model.time_grid(steps).float()
    for t_, s_ in zip(grid[:-1], grid[1:]):
        t, s = t_.expand(b * k), s_.expand(b * k)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            score = model(xg, t)
            x0 = model.sde.tweedie(xg, t, score)
            log_p = torch.log_softmax(clf(x0), -1).gather(1, c[:, None]).sum()
            (g,) = torch.autograd.grad(log_p, xg)
        mean, var = reverse_step(model.sde, "ancestral", x, t, s, t - s, score.detach() + g)
        x = mean + var.sqrt() * torch.randn(x.shape, generator=generator)
    return x.view(b, k, *model.event_shape)


def azula_tds(model, clf, labels: torch.Tensor, k: int, m: int, steps: int, seed: int) -> torch.Tensor:
    """azula's TDSSampler, one run of ``m`` particles per draw; draws taken uniformly from its final particles."""
    from azula.guidance.tds import TDSSampler

    from common import azula_denoiser

    torch.manual_seed(seed)  # azula draws from torch's global generator
    out = []
    for c in labels.tolist():
        twist = lambda x_hat, _, c=c: torch.log_softmax(clf(x_hat), -1)[:, c]  # noqa: E731
        sampler = TDSSampler(azula_denoiser(model), twist, steps=steps, silent=True)
        draws = []
        for _ in range(k):
            x = sampler(sampler.init((m, *model.event_shape)))
            draws.append(x[torch.randint(0, m, (1,))])
        out.append(torch.cat(draws))
    return torch.stack(out)


def fd_per_class(feats: torch.Tensor, labels, feats_ref, ref_labels, pick: torch.Tensor | None = None) -> float:
    """Mean over classes of the Fréchet distance of the draws of class c ``feats[c, pick[c]]`` to its held-out images."""
    k = feats.shape[1]
    pick = torch.arange(k).expand(len(labels), k) if pick is None else pick
    return float(np.mean([frechet_distance(feats[i, pick[i]], feats_ref[ref_labels == c]) for i, c in enumerate(labels.tolist())]))


def bootstrap_fd(feats: dict[str, torch.Tensor], labels, feats_ref, ref_labels, base: str, reps: int = 200) -> dict[str, tuple]:
    """Per-class Fréchet distance of each row minus the base row's, with a 95 % bootstrap interval: each replicate
    resamples the K draws of every class, independently per row (the rows' draws are independent)."""
    g = torch.Generator().manual_seed(0)
    b, k = feats[base].shape[:2]
    out = {}
    for name, f in feats.items():
        diffs = []
        for _ in range(reps):
            mine, theirs = (torch.randint(0, k, (b, k), generator=g) for _ in range(2))
            diffs.append(fd_per_class(f, labels, feats_ref, ref_labels, mine) - fd_per_class(feats[base], labels, feats_ref, ref_labels, theirs))
        d = torch.tensor(diffs)
        out[name] = (fd_per_class(f, labels, feats_ref, ref_labels) - fd_per_class(feats[base], labels, feats_ref, ref_labels),
                     float(d.quantile(0.025)), float(d.quantile(0.975)))
    return out


def evaluate(name: str, draws: torch.Tensor, labels, judge, feats_ref, ref_labels, evals: float, backward: float, seconds: float) -> dict:
    draws = draws.float().clamp(-1, 1)
    b, k = draws.shape[:2]
    flat = draws.flatten(0, 1)
    with torch.no_grad():
        seen = judge(flat).argmax(1).view(b, k)
    correct = (seen == labels[:, None]).float()
    feats = classifier_features(flat, judge).view(b, k, -1)
    FEATURES[name] = feats
    return dict(
        row=name, accuracy=float(correct.mean()), worst_class_accuracy=float(correct.mean(1).min()),
        fd_per_class=fd_per_class(feats, labels, feats_ref, ref_labels), fd_pooled=frechet_distance(feats.flatten(0, 1), feats_ref),
        diversity=diversity(draws), evaluations_per_draw=evals, backward_per_draw=backward, seconds=seconds,
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(SHIPPED_CLASSIFIERS), default="digits")
    p.add_argument("--draws", type=int, default=32, help="K draws per class")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--particles", type=int, nargs="+", default=[4, 16, 64])
    p.add_argument("--peers", nargs="*", default=[], choices=["azula"])
    p.add_argument("--runs-up-to", type=int, default=16, help="independent-runs rows for M up to this (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/generate.jsonl"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model(args.model)
    clf = load_digit_classifier(directory=SHIPPED_CLASSIFIERS[args.model])
    judge = load_digit_classifier(directory=JUDGES[args.model])
    ref, ref_labels = held_out(args.model)
    feats_ref = classifier_features(ref, judge)
    labels = torch.arange(10)
    k, n = args.draws, args.steps
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []

    def record(name, run, evals, backward):
        t0 = time.perf_counter()
        draws = run()
        row = evaluate(name, draws, labels, judge, feats_ref, ref_labels, evals, backward, time.perf_counter() - t0)
        rows.append(row)
        print(json.dumps(row), flush=True)
        with args.out.open("a") as f:
            f.write(json.dumps({**row, "model": args.model, "draws": k, "steps": n}) + "\n")

    g = lambda: torch.Generator().manual_seed(args.seed)  # noqa: E731
    for m in args.particles:
        def runs(m=m):
            gen = g()
            return generate(labels.tolist(), args.model, particles=m, steps=n, kernel="ancestral", generator=gen,
                            options=RunOptions(populations=k)).draw(k, gen)

        def one_run(m=m):
            gen = g()
            return generate(labels.tolist(), args.model, particles=m, steps=n, kernel="ancestral", generator=gen,
                            options=RunOptions(populations=1)).draw(k, gen)

        if m <= args.runs_up_to:
            record(f"twisted M={m}, runs", runs, m * n, m * n)
        record(f"twisted M={m}, one run", one_run, m * n / k, m * n / k)
    record(f"guidance, {n} steps", lambda: guidance(model, clf, labels, k, n, g()), n, n)
    record(f"guidance, {4 * n} steps", lambda: guidance(model, clf, labels, k, 4 * n, g()), 4 * n, 4 * n)
    if "azula" in args.peers:
        record("azula TDS M=4, runs", lambda: azula_tds(model, clf, labels, k, 4, n, args.seed), 4 * n, 4 * n)
    base = f"guidance, {4 * n} steps"
    diffs = bootstrap_fd(FEATURES, labels, feats_ref, ref_labels, base)
    print(f"\n{args.model}: K = {k} draws per class, {n} ancestral steps; judged by an independent classifier; FD per class "
          f"minus that of '{base}' with a 95 % bootstrap interval over draws\n")
    print("| row | evaluations (backward) per draw | accuracy (worst class) | FD per class (difference) | FD pooled | diversity | s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        d, lo, hi = diffs[r["row"]]
        diff = "" if r["row"] == base else f" ({d:+.2f} [{lo:+.2f}, {hi:+.2f}])"
        print(f"| {r['row']} | {r['evaluations_per_draw']:g} ({r['backward_per_draw']:g}) | {100 * r['accuracy']:.1f} % "
              f"({100 * r['worst_class_accuracy']:.0f} %) | {r['fd_per_class']:.2f}{diff} | {r['fd_pooled']:.2f} | "
              f"{r['diversity']:.3f} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
