"""The proposal contract: a small frozen object that owns its options and builds its particle model.

A proposal (:class:`Proposal`) is what a user picks — ``Bootstrap()``, ``MCGdiff()``, ``Twisted(twist_variance=4.0)``
or its registered name as a string — and what the entry points pass through untouched. It

- validates its options when it is constructed (a ``ValueError`` naming the option);
- says which observations it supports (:meth:`Proposal.check`, e.g. noiseless only);
- says what a step costs (network evaluations and backward passes per particle);
- builds its :class:`~smcdiff.feynman_kac.ParticleModel` for a resolved :class:`~smcdiff.feynman_kac.Problem`.

Options are dataclass fields; ``metadata={"help": ..., "type": ...}`` on a field makes it a command-line
flag (``--corrector-steps``) with no other change (:func:`smcdiff.proposals.proposal_flags`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from torch import Tensor

from ..feynman_kac import ParticleModel, Problem

__all__ = ["Proposal", "check_corrector", "CORRECTOR_HELP"]


class Proposal(ABC):
    """Base class of the proposals; subclasses are frozen dataclasses registered in :data:`smcdiff.proposals.PROPOSALS`."""

    name: ClassVar[str]
    """The registered name (``proposal="..."`` in the API, ``--proposal`` in the CLI)."""
    noiseless_only: ClassVar[bool] = False
    """True for proposals that need ``noise_std == 0``."""
    any_likelihood: ClassVar[bool] = False
    """True for proposals that condition on any :class:`~smcdiff.likelihoods.Likelihood`, not only y = A x + noise."""

    @abstractmethod
    def build(self, problem: Problem) -> ParticleModel:
        """The particle model of this proposal on ``problem``."""

    def check(self, noise_std: float) -> None:
        """A ``ValueError`` if this proposal cannot condition on observations with noise ``noise_std``."""
        if self.noiseless_only and noise_std > 0:
            raise ValueError(
                f"proposal={self.name!r} conditions on a noiseless observation and needs noise_std=0, got "
                f"noise_std={noise_std:g}; use proposal='mcgdiff' or 'twisted' for noisy observations"
            )

    @property
    def evaluations_per_step(self) -> int:
        """Network evaluations per particle and reverse step."""
        return 1

    @property
    def backward_passes_per_step(self) -> int:
        """Backward passes through the network per particle and reverse step."""
        return 0

    def options(self) -> dict[str, Any]:
        """The proposal's options, by field name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def __str__(self) -> str:
        """The name, with the options that differ from their defaults: ``twisted(twist_variance=4.0)``."""
        changed = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                changed.append(f"{f.name}=<tensor {tuple(v.shape)}>")
            elif v != f.default:
                changed.append(f"{f.name}={v!r}")
        return f"{self.name}({', '.join(changed)})" if changed else self.name


CORRECTOR_HELP = {
    "corrector_steps": "K unadjusted Langevin corrector steps with every move, which spread the copies resampling "
    "makes (K more network calls per step; a small bias; default 0: off)",
    "corrector_size": "the corrector's step in units of sigma(t)^2, in (0, 2) (default 1.0)",
}


def check_corrector(steps: object, size: object) -> None:
    """A ``ValueError`` unless ``corrector_steps`` is a non-negative integer and ``corrector_size`` lies in (0, 2)
    (the step in units of sigma(t)^2)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"corrector_steps must be a non-negative integer, got {steps!r}")
    if not isinstance(size, (int, float)) or isinstance(size, bool) or not 0 < size < 2:
        raise ValueError(f"corrector_size must lie in (0, 2) (the step in units of sigma(t)^2), got {size!r}")
