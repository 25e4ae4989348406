r"""The seed slides' 2-d toy problems: a Gaussian and a two-component mixture over (Y, X), with their
exact scores, marginal and posterior densities.

The sampler-against-oracle table built on them (``smcdiff gaussian``) is :mod:`smcdiff.toy_table`;
the figure is :func:`smcdiff.plotting.plot_gaussian_toy`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..sde import SDE
from .gaussian import GaussianMixtureScore, gaussian_mixture_posterior

__all__ = ["ToyProblem", "slides_gaussian", "slides_mixture", "toy_problems"]


@dataclass(frozen=True)
class ToyProblem:
    """A 2-d mixture over (Y, X) (Y observed, coordinate 0) with its observation y."""

    name: str
    weights: Tensor  # (K,)
    means: Tensor  # (K, 2)
    covs: Tensor  # (K, 2, 2)
    y: float

    def score(self, sde: SDE) -> GaussianMixtureScore:
        return GaussianMixtureScore(self.weights, self.means, self.covs, sde)

    def posterior(self) -> tuple[Tensor, Tensor, Tensor]:
        """Exact law of X | Y = y: component weights (K,), means (K,), variances (K,)."""
        w, m, c = gaussian_mixture_posterior(
            self.weights, self.means, self.covs, torch.tensor([True, False]), torch.tensor([[self.y, 0.0]])
        )
        return w[0], m[0, :, 1], c[0, :, 1, 1]

    def posterior_density(self, x: Tensor) -> Tensor:
        w, m, v = self.posterior()
        return (w * torch.exp(-0.5 * (x[:, None] - m) ** 2 / v) / torch.sqrt(2 * math.pi * v)).sum(1)

    def marginal_density(self, x: Tensor) -> Tensor:
        """Exact density of X (coordinate 1), unconditionally."""
        m, v = self.means[:, 1], self.covs[:, 1, 1]
        return (self.weights * torch.exp(-0.5 * (x[:, None] - m) ** 2 / v) / torch.sqrt(2 * math.pi * v)).sum(1)


def slides_gaussian() -> ToyProblem:
    """(Y, X) ~ N(0, [[1, 1.5], [1.5, 5]]), y = 1: X | Y = 1 ~ N(1.5, 2.75)."""
    return ToyProblem(
        "gaussian",
        torch.ones(1, dtype=torch.float64),
        torch.zeros(1, 2, dtype=torch.float64),
        torch.tensor([[[1.0, 1.5], [1.5, 5.0]]], dtype=torch.float64),
        1.0,
    )


def slides_mixture() -> ToyProblem:
    """Two well-separated modes in X, weakly told apart by Y; y = 2."""
    return ToyProblem(
        "mixture",
        torch.tensor([0.5, 0.5], dtype=torch.float64),
        torch.tensor([[0.0, -4.0], [1.5, 4.0]], dtype=torch.float64),
        torch.tensor([[1.0, 0.3], [0.3, 1.0]], dtype=torch.float64).expand(2, 2, 2).clone(),
        2.0,
    )


def toy_problems() -> list[ToyProblem]:
    """The slides' problems in table order: the Gaussian, then the mixture."""
    return [slides_gaussian(), slides_mixture()]
