"""Particle models on the generic loop of :mod:`smcdiff.particles`, registered by name.

- ``"bootstrap"``: SMCDiff (Trippe et al. 2022; the seed slides): observed coefficients follow a sampled
  forward trajectory of y, the reverse kernel moves the rest, weights are the kernel's density of the
  trajectory's next value. Noiseless observations only. Its unweighted variant is the replacement
  (RePaint-style) baseline.
- ``"mcgdiff"``: the MCGdiff-style sampler (Cardoso et al. 2024): observed coefficients are twisted
  toward the noised observation by the locally optimal Gaussian proposal; any operator, any sigma_y >= 0.

Adding a proposal is one file: a :class:`smcdiff.particles.ParticleModel` subclass registered in
:data:`PROPOSALS`.
"""

from __future__ import annotations

from typing import Literal

from .bootstrap import BootstrapModel
from .mcgdiff import MCGdiffModel

__all__ = ["PROPOSALS", "Proposal", "BootstrapModel", "MCGdiffModel"]

Proposal = Literal["bootstrap", "mcgdiff"]

PROPOSALS = {
    "bootstrap": BootstrapModel,
    "mcgdiff": MCGdiffModel,
}
