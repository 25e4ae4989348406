r"""The Gaussian toy validation table: samplers against the exact answers of the seed slides' problems.

Everything is computed with the exact oracle scores (:mod:`smcdiff.oracle.toy`), so any gap between a
sampler and the exact column is the sampler's (Monte Carlo or bias), never the network's. Used by
``smcdiff gaussian`` and ``examples/gaussian_toy.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .baselines import replacement_sample
from .oracle.toy import toy_problems
from .sampling import sample
from .sde import OU
from .options import RunOptions
from .smc import smc_sample

__all__ = ["ToyRow", "unconditional_rows", "conditional_rows", "format_rows"]


@dataclass(frozen=True)
class ToyRow:
    """One line of the printed table: a statistic, its exact value and estimates with standard errors."""

    problem: str
    statistic: str
    exact: float
    estimates: dict[str, tuple[float, float]]  # method -> (value, standard error)


def _mode_weight(x: Tensor, w: Tensor) -> Tensor:
    """Weighted fraction of X > 0 per row (the mixture's upper mode); x, w: (R, M)."""
    return (w * (x > 0)).sum(1)


def unconditional_rows(
    n: int, steps: int, generator: torch.Generator, progress: bool = False
) -> tuple[list[ToyRow], dict[str, Tensor]]:
    """Sample X unconditionally with the exact score; compare mean, variance and mode weight."""
    sde = OU()
    rows, draws = [], {}
    for prob in toy_problems():
        x = sample(
            prob.score(sde), sde, (n, 2), steps=steps, generator=generator, dtype=torch.float64, progress=progress
        )[:, 1]
        draws[prob.name] = x
        m, v, w = prob.means[:, 1], prob.covs[:, 1, 1], prob.weights
        mean = (w * m).sum().item()
        var = (w * (v + m**2)).sum().item() - mean**2
        se_mean, se_var = math.sqrt(var / n), var * math.sqrt(2 / n)
        rows.append(ToyRow(prob.name, "mean of X", mean, {"sampler": (x.mean().item(), se_mean)}))
        rows.append(ToyRow(prob.name, "var of X", var, {"sampler": (x.var().item(), se_var)}))
        if prob.weights.numel() > 1:
            p = (x > 0).double().mean().item()
            rows.append(ToyRow(prob.name, "weight of mode X>0", w[1].item(), {"sampler": (p, math.sqrt(p * (1 - p) / n))}))
    return rows, draws


def conditional_rows(
    particles: int, steps: int, runs: int, generator: torch.Generator, progress: bool = False
) -> tuple[list[ToyRow], dict[str, dict[str, tuple[Tensor, Tensor]]]]:
    """X | Y = y by SMC and by replacement, ``runs`` independent runs batched as rows.

    Returns the table rows (standard errors over runs) and, per problem and method, the pooled
    particles and weights for histograms.
    """
    sde = OU()
    rows, pooled = [], {}
    for prob in toy_problems():
        score = prob.score(sde)
        y = torch.tensor([[prob.y, 0.0]], dtype=torch.float64).expand(runs, 2)
        mask = torch.tensor([True, False])
        w_exact, m_exact, v_exact = prob.posterior()
        mean_exact = (w_exact * m_exact).sum().item()
        var_exact = (w_exact * (v_exact + m_exact**2)).sum().item() - mean_exact**2
        stats: dict[str, dict[str, tuple[float, float]]] = {"mean": {}, "var": {}, "mode": {}}
        pooled[prob.name] = {}
        for method, fn in (("SMC", smc_sample), ("replacement", replacement_sample)):
            out = fn(score, sde, y, mask, particles=particles, steps=steps, generator=generator,
                     options=RunOptions(progress=progress))
            x, w = out.particles[..., 1], out.weights
            mean = (w * x).sum(1)
            var = (w * (x - mean[:, None]) ** 2).sum(1)
            mode = _mode_weight(x, w)
            for key, v in (("mean", mean), ("var", var), ("mode", mode)):
                stats[key][method] = (v.mean().item(), v.std().item() / math.sqrt(runs))
            pooled[prob.name][method] = (x.reshape(-1), (w / runs).reshape(-1))
        rows.append(ToyRow(prob.name, f"E[X | Y={prob.y:g}]", mean_exact, stats["mean"]))
        rows.append(ToyRow(prob.name, f"Var[X | Y={prob.y:g}]", var_exact, stats["var"]))
        if prob.weights.numel() > 1:
            rows.append(ToyRow(prob.name, f"P(X>0 | Y={prob.y:g})", w_exact[1].item(), stats["mode"]))
    return rows, pooled


def format_rows(rows: list[ToyRow]) -> str:
    """A plain-text table: exact value, then each method as value ± SE and its distance in SE."""
    methods = list(dict.fromkeys(m for r in rows for m in r.estimates))
    head = f"{'problem':<10} {'statistic':<20} {'exact':>8}" + "".join(f" {m:>30}" for m in methods)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = ""
        for m in methods:
            value, se = r.estimates[m]
            z = abs(value - r.exact) / se if se > 0 else float("inf")
            cells += f" {f'{value:.4f} ± {se:.4f} ({z:.1f} SE)':>30}"
        lines.append(f"{r.problem:<10} {r.statistic:<20} {r.exact:>8.4f}{cells}")
    return "\n".join(lines)
