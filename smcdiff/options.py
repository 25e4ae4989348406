"""Run-level options of the particle samplers, grouped once: :class:`RunOptions`.

What a proposal does is the proposal's business (:mod:`smcdiff.proposals`); how a run is carried out —
the resampling scheme and when to resample, how many particles go through the network at once, where
the particles live, how many independent runs, progress, callbacks, CPU threads — is the same for every
proposal and travels from :func:`smcdiff.restore` / :func:`smcdiff.inpaint` down to
:func:`smcdiff.smc_sample` as one value::

    from smcdiff import RunOptions, smc_sample
    out = smc_sample(score, sde, y, mask, particles=64, options=RunOptions(ess_threshold=1.0, populations=4))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .dynamics import Callback, check_callback
from .feynman_kac import Placement, check_populations
from .resampling import RESAMPLERS, Resampling
from .score import check_chunk_size
from .threads import check_threads

__all__ = ["RunOptions", "check_options"]


@dataclass(frozen=True)
class RunOptions:
    """How a particle run is carried out; every field is checked at construction.

    Attributes
    ----------
    resampling : scheme name (``"systematic"``, ``"stratified"``, ``"residual"``, ``"multinomial"``; see
        :mod:`smcdiff.resampling`).
    ess_threshold : resample a row when its ESS < ``ess_threshold * M``; 1.0 resamples at every step
        (SMCDiff as published), 0.0 never.
    chunk_size : at most this many particles per network call (None: all B * M in one call; ``restore`` then
        picks chunks that fit memory and, on the CPU, calls of about a GiB of activations).
    progress : a tqdm progress bar.
    callback : called with a :class:`~smcdiff.dynamics.StepInfo` for the initial state and after each step.
    placement : where the particles live: None (all in this process) or a placement of
        :mod:`smcdiff.distributed` (``ShardedPlacement()``: each row's M particles spread over the processes
        of a ``torch.distributed`` group, exact global resampling).
    populations : P independent SMC runs of M particles per observation, batched into the same network
        calls (P times the cost), pooled with equal weights; ``draw(k)`` takes draw j from run j mod P, so
        P draws share no ancestor. None (default): the entry point's default, 1 for :func:`smcdiff.smc_sample`
        and :data:`smcdiff.restore.DEFAULT_POPULATIONS` for :func:`smcdiff.restore` / :func:`smcdiff.inpaint`. Independent runs give independent draws, each with the law of one draw
        from an M-particle run: biased at small M (the bias falls as M grows, not as P grows) but not
        collapsed onto one lineage. See :meth:`smcdiff.WeightedSamples.pool`.
    threads : CPU threads for the run: None (default) follows :func:`smcdiff.threads.default_threads`
        (``OMP_NUM_THREADS`` if set, else 1 thread on machines with at most 2 CPUs), an int sets it,
        ``"torch"`` leaves torch's setting; the caller's setting is restored afterwards.
    """

    resampling: Resampling = "systematic"
    ess_threshold: float = 0.5
    chunk_size: int | None = None
    progress: bool = False
    callback: Callback | None = None
    placement: Placement | None = None
    populations: int | None = None
    threads: int | str | None = None

    def __post_init__(self) -> None:
        if self.resampling not in RESAMPLERS:
            raise ValueError(f"resampling must be one of {sorted(RESAMPLERS)}, got {self.resampling!r}")
        t = self.ess_threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0:
            raise ValueError(f"ess_threshold must lie in [0, 1], got {t!r}")
        check_chunk_size(self.chunk_size)
        if not isinstance(self.progress, bool):
            raise ValueError(f"progress must be True or False, got {self.progress!r}")
        check_callback(self.callback)
        if self.placement is not None and not isinstance(self.placement, Placement):
            raise ValueError(
                f"placement must be None or a smcdiff Placement (see smcdiff.distributed), got {type(self.placement).__name__}"
            )
        if self.populations is not None:
            check_populations(self.populations)
        check_threads(self.threads)

    @property
    def where(self) -> Placement:
        """The placement in force (all particles in this process when ``placement`` is None)."""
        return Placement() if self.placement is None else self.placement

    def changed(self, *names: str) -> list[str]:
        """Which of the fields ``names`` differ from their defaults (for samplers that have no use for them)."""
        defaults = RunOptions()
        return [n for n in names if getattr(self, n) != getattr(defaults, n)]

    def runs(self, default: int = 1) -> int:
        """P, the independent runs per observation: ``populations``, or ``default`` when it is None."""
        return default if self.populations is None else self.populations

    def replace(self, **changes) -> "RunOptions":
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)


def check_options(options: RunOptions | None) -> RunOptions:
    """``options``, or the defaults for None; anything else is a ``ValueError``."""
    if options is None:
        return RunOptions()
    if not isinstance(options, RunOptions):
        raise ValueError(f"options must be a smcdiff RunOptions or None, got {type(options).__name__}")
    return options
