"""Proposals: how the particles move and what each move is worth, one file each, registered by name.

- ``"bootstrap"`` (:class:`Bootstrap`): SMCDiff (Trippe et al. 2022; the seed slides): observed coefficients
  follow a sampled forward trajectory of y, the reverse kernel moves the rest, weights are the kernel's
  density of the trajectory's next value. Noiseless observations only. Its unweighted variant is the
  replacement (RePaint-style) baseline.
- ``"mcgdiff"`` (:class:`MCGdiff`): the MCGdiff-style sampler (Cardoso et al. 2024): observed coefficients are
  drawn by the locally optimal Gaussian proposal toward the noised observation; any operator, any sigma_y >= 0.
- ``"twisted"`` (:class:`Twisted`): TDS (Wu et al. 2023): a Tweedie approximation of log p(y | x_t) (autograd
  through the score) twists the moves and the weights correct the approximation.

A proposal is a frozen dataclass (:class:`Proposal`) that validates its options at construction, says which
noise levels it supports and builds its particle model. Entry points take ``proposal=`` as a name or an
object and pass it through untouched; :func:`resolve_proposal` holds the one default rule (noiseless:
bootstrap; noisy: twisted, the setting that passes simulation-based calibration on a real network).

Adding a proposal with options is one new file plus its line in :data:`PROPOSALS`::

    # smcdiff/proposals/tempered.py
    from dataclasses import dataclass, field
    from .base import Proposal
    from .mcgdiff import MCGdiffModel

    @dataclass(frozen=True)
    class Tempered(Proposal):
        power: float = field(default=1.0, metadata={"help": "likelihood power in (0, 1]", "type": float})
        name = "tempered"

        def __post_init__(self):
            if not 0 < self.power <= 1:
                raise ValueError(f"power must lie in (0, 1], got {self.power!r}")

        def build(self, problem):
            return TemperedModel(problem, self.power)   # a ParticleModel subclass in the same file

    # and here: PROPOSALS = {..., "tempered": Tempered}

``smc_sample(..., proposal=Tempered(power=0.5))``, ``proposal="tempered"`` and ``smcdiff restore --proposal
tempered --power 0.5`` then work with no other change.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Literal

from .base import Proposal
from .bootstrap import Bootstrap, BootstrapModel
from .mcgdiff import MCGdiff, MCGdiffModel
from .twisted import Twisted, TwistedModel

__all__ = [
    "PROPOSALS",
    "ProposalName",
    "Proposal",
    "Bootstrap",
    "MCGdiff",
    "Twisted",
    "BootstrapModel",
    "MCGdiffModel",
    "TwistedModel",
    "resolve_proposal",
    "default_proposal",
    "build_proposal",
    "proposal_flags",
]

ProposalName = Literal["bootstrap", "mcgdiff", "twisted"]

PROPOSALS: dict[str, type[Proposal]] = {
    "bootstrap": Bootstrap,
    "mcgdiff": MCGdiff,
    "twisted": Twisted,
}
"""The registered proposals by name."""


def default_proposal(noise_std: float) -> Proposal:
    """The default rule, in one place: the bootstrap for noiseless observations, the twisted proposal otherwise.

    Chosen by simulation-based calibration on the shipped digits UNet (BENCHMARKS.md, "Calibration"): with noise,
    independent twisted runs of 16 particles pass every statistic on 4x super-resolution and every pixel on box
    inpainting, where MCGdiff-style runs of the same size fit y worse than the truth does. The twisted proposal
    needs a score with autograd (a clear error says so otherwise; pass ``proposal="mcgdiff"`` then) and costs a
    backward pass per network evaluation."""
    return Bootstrap() if noise_std == 0 else Twisted()


def resolve_proposal(proposal: Proposal | str | None, noise_std: float) -> Proposal:
    """``proposal`` as a :class:`Proposal` object, checked against the noise level.

    None picks :func:`default_proposal`; a string is a registered name with default options; an object is
    used as is. A ``ValueError`` names the argument when it is none of these or cannot take ``noise_std``.
    """
    if proposal is None:
        proposal = default_proposal(noise_std)
    elif isinstance(proposal, str):
        if proposal not in PROPOSALS:
            raise ValueError(f"proposal must be one of {sorted(PROPOSALS)} or a Proposal object, got {proposal!r}")
        proposal = PROPOSALS[proposal]()
    elif not isinstance(proposal, Proposal):
        raise ValueError(
            f"proposal must be a name ({', '.join(sorted(PROPOSALS))}), a Proposal object such as "
            f"smcdiff.proposals.Twisted(...), or None, got {type(proposal).__name__}"
        )
    proposal.check(noise_std)
    return proposal


def proposal_flags() -> dict[str, dataclasses.Field]:
    """Every option of the registered proposals that declares a command-line ``type``, by field name (the
    first proposal's field wins where several share a name, as ``corrector_steps`` does)."""
    flags: dict[str, dataclasses.Field] = {}
    for cls in PROPOSALS.values():
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if "type" in f.metadata:
                flags.setdefault(f.name, f)
    return flags


def build_proposal(
    name: str | None, noise_std: float, options: dict[str, Any], spell: Callable[[str], str] = str
) -> Proposal:
    """The one builder from flat options (the command line's flags) to a proposal object.

    ``name`` None follows :func:`default_proposal`; ``options`` holds only the options the user set (field
    name -> value). An option the proposal does not have is a ``ValueError`` that names it (``spell`` turns a
    field name into the user's spelling, e.g. a flag) and the proposals that have it.
    """
    cls = type(default_proposal(noise_std)) if name is None else PROPOSALS.get(name)
    if cls is None:
        raise ValueError(f"{spell('proposal')} must be one of {sorted(PROPOSALS)}, got {name!r}")
    own = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for option in options:
        if option not in own:
            owners = [n for n, c in PROPOSALS.items() if option in {f.name for f in dataclasses.fields(c)}]  # type: ignore[arg-type]
            raise ValueError(
                f"{spell(option)} applies to {spell('proposal')} {' or '.join(owners)}, not {cls.name}"
                + (" (the default for this noise level)" if name is None else "")
            )
    try:
        proposal = cls(**options)
    except ValueError as err:  # the option's own check, in the user's spelling
        message = str(err)
        for option in own:
            message = re.sub(rf"\b{option}\b", spell(option), message)
        raise ValueError(message) from None
    proposal.check(noise_std)
    return proposal
