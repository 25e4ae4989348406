"""Particle models on the generic loop of :mod:`smcdiff.particles`, registered by name.

- ``"bootstrap"``: SMCDiff (Trippe et al. 2022; the seed slides): observed coefficients follow a sampled
  forward trajectory of y, the reverse kernel moves the rest, weights are the kernel's density of the
  trajectory's next value. Noiseless observations only. Its unweighted variant is the replacement
  (RePaint-style) baseline.
- ``"mcgdiff"``: the MCGdiff-style sampler (Cardoso et al. 2024): observed coefficients are twisted
  toward the noised observation by the locally optimal Gaussian proposal; any operator, any sigma_y >= 0.
- ``"twisted"``: TDS (Wu et al. 2023): a Tweedie approximation of log p(y | x_t) (autograd through the
  score) twists the moves (free coefficients shifted by its gradient, observed ones drawn by the locally
  optimal step toward it) and the weights correct the approximation.

Adding a proposal is one file: a :class:`smcdiff.particles.ParticleModel` subclass registered in
:data:`PROPOSALS`.
"""

from __future__ import annotations

from typing import Literal

from .bootstrap import BootstrapModel
from .mcgdiff import MCGdiffModel
from .twisted import TwistedModel

__all__ = ["PROPOSALS", "Proposal", "BootstrapModel", "MCGdiffModel", "TwistedModel"]

Proposal = Literal["bootstrap", "mcgdiff", "twisted"]

PROPOSALS = {
    "bootstrap": BootstrapModel,
    "mcgdiff": MCGdiffModel,
    "twisted": TwistedModel,
}
