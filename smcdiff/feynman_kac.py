r"""The particle loop: one generic SMC over a Feynman-Kac model (a proposal and a log-potential).

A *particle model* (:class:`ParticleModel`, one file per model in :mod:`smcdiff.proposals`) says how
particles start, how they move from t_k to t_{k-1} and how much each move is worth; this loop does
everything else, once: reweighting in float64 log space, ESS, adaptive resampling, the log-evidence,
lineage bookkeeping, chunked score calls, callbacks and the :class:`WeightedSamples` output.

    x_N^i, log Z   = model.initial()                          (B, M particles; log Z (B,))
    for k = N .. 1:
        pred^i      = model.predict(x_k^i, step)               (network call: the reverse kernel)
        log G^i     = model.log_potential(x_k^i, pred^i, step)  (weight increment, before moving)
        log w      += log G;  log Z += log sum_i w^i G^i;  normalise
        if ESS < ess_threshold * M: resample ancestors a^i; x, pred <- x[a], pred[a]
        x_{k-1}^i   = model.move(x_k^i, pred^i, step)
    log w += model.final_log_potential(x_0)   (models that weigh a move after making it)
    x_0 = model.finalize(x_0)

Weighting before moving is the auxiliary-particle-filter order of SMCDiff (Trippe et al. 2022) and of MCGdiff's
locally optimal proposal (Cardoso et al. 2024): the weight of a move depends only on where a particle starts, so
resampling first spends the particles on the promising starts. What involves a row's particles together (weights,
ESS, ancestors, reordering, output) goes through a :class:`Placement`: by default all M particles live in this
process; :mod:`smcdiff.distributed` spreads them over processes with the same loop.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ContextManager

import torch
from torch import Tensor

from .dynamics import Kernel, StepInfo, checked_score, reverse_step, time_steps
from .likelihoods import Likelihood
from .operators import Operator
from .resampling import Resampling, ess, normalize_log_weights, resample
from .score import ScoreFn
from .sde import SDE

__all__ = ["WeightedSamples", "StepInfo", "Step", "Problem", "ParticleModel", "Placement", "Streams", "run_particles"]


def check_populations(populations: int) -> int:
    """``populations`` if it is a positive int (independent SMC runs per observation), else ``ValueError``."""
    if isinstance(populations, bool) or not isinstance(populations, int) or populations < 1:
        raise ValueError(f"populations must be a positive integer (independent runs per observation), got {populations!r}")
    return populations


@dataclass(frozen=True)
class WeightedSamples:
    """Weighted particles sum_i w_i delta_{x_i} per observation.

    Attributes
    ----------
    particles : (B, M, *event_shape)
    log_weights : (B, M) float64, normalised (``logsumexp`` over M is 0).
    ess : (steps, B) effective sample size after reweighting at each step (step N first).
    resampled : (steps, B) bool, whether each row resampled at each step.
    log_evidence : (B,) float64 estimate of the likelihood of what the model conditioned on (see the
        proposal's docs); NaN for unweighted baselines.
    lineages : (steps, B) int64, the number of distinct ancestors, at each step, of the final particles
        (M where the genealogy never coalesced; a small number is a collapsed genealogy).
    populations : P, the number of independent SMC runs pooled in each row (``smc_sample(populations=P)``):
        the M particles are P contiguous blocks of M / P, each an independent run's particles, weighted
        by that run's normalised weights times 1 / P (see :meth:`pool`). 1 for a single run.
    """

    particles: Tensor
    log_weights: Tensor
    ess: Tensor
    resampled: Tensor
    log_evidence: Tensor
    lineages: Tensor | None = None
    populations: int = 1

    @property
    def weights(self) -> Tensor:
        """Normalised weights ``(B, M)``, float64."""
        return self.log_weights.exp()

    def mean(self) -> Tensor:
        """Weighted mean ``(B, *event_shape)``, in float64."""
        w = self.weights.reshape(*self.log_weights.shape, *([1] * (self.particles.ndim - 2)))
        return (w * self.particles.to(torch.float64)).sum(1)

    def cov(self) -> Tensor:
        """Weighted covariance ``(B, d, d)`` of flat particles ``(B, M, d)``, in float64."""
        if self.particles.ndim != 3:
            raise ValueError(f"cov() needs flat particles (B, M, d), got {tuple(self.particles.shape)}")
        w = self.weights
        centred = self.particles.to(torch.float64) - self.mean()[:, None, :]
        return torch.einsum("bm,bmi,bmj->bij", w, centred, centred)

    def draw(self, k: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``k`` equally weighted particles per row from sum_i w_i delta_{x_i}: ``(B, k, *event_shape)``.

        From a single run the draws are i.i.d. from the weights. From P pooled runs draw j comes from run
        j mod P (from its own weights), so the first P draws share no ancestor.
        (:func:`smcdiff.resample` is the other operation: ancestor indices for the particle loop.)
        """
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        b, p = self.log_weights.shape[0], self.populations
        if p == 1:
            idx = torch.multinomial(self.weights, k, replacement=True, generator=generator)
        else:
            per_run = self.log_weights.shape[1] // p
            which = torch.arange(k, device=self.log_weights.device) % p  # (k,) placement of each draw
            w = self.weights.reshape(b, p, per_run)[:, which]  # (B, k, M / P), each summing to 1 / P
            within = torch.multinomial(w.reshape(b * k, per_run), 1, generator=generator).reshape(b, k)
            idx = which * per_run + within
        return self.particles[torch.arange(b, device=idx.device)[:, None], idx]

    def pool(self, populations: int) -> "WeightedSamples":
        """Pool consecutive rows into one: rows ``b * P .. b * P + P - 1`` are P independent runs for the
        same observation, and become row ``b`` with ``P * M`` particles, each run weighted 1 / P.

        The pooled weights estimate posterior expectations by the average of the P runs' estimates, and
        the log-evidence is the log of the average of their evidence estimates (unbiased in Z). The ESS
        per step is that of the pooled weights, P^2 / sum_j 1 / ESS_j; ``resampled`` marks the steps at
        which any of the runs resampled; lineages add up (the runs share no ancestor).
        """
        p = check_populations(populations)
        rows, m = self.log_weights.shape
        if rows % p != 0:
            raise ValueError(f"cannot pool {rows} rows into populations of {p}: not a multiple")
        if self.populations != 1:
            raise ValueError("these samples are already pooled")
        if p == 1:
            return self
        b, steps = rows // p, self.ess.shape[0]
        return WeightedSamples(
            self.particles.reshape(b, p * m, *self.particles.shape[2:]),
            self.log_weights.reshape(b, p * m) - math.log(p),
            p**2 / (1.0 / self.ess.reshape(steps, b, p)).sum(-1),
            self.resampled.reshape(steps, b, p).any(-1),
            torch.logsumexp(self.log_evidence.reshape(b, p), dim=-1) - math.log(p),
            None if self.lineages is None else self.lineages.reshape(steps, b, p).sum(-1),
            populations=p,
        )

    @classmethod
    def unweighted(cls, particles: Tensor, steps: int) -> "WeightedSamples":
        """Equally weighted draws ``(B, M, *event_shape)`` of a sampler without weights (independent
        samples, replacement): ESS M at each of ``steps`` steps, nothing resampled, NaN evidence."""
        b, m = particles.shape[:2]
        device = particles.device
        return cls(
            particles,
            torch.full((b, m), -math.log(m), dtype=torch.float64, device=device),
            torch.full((steps, b), float(m), dtype=torch.float64, device=device),
            torch.zeros((steps, b), dtype=torch.bool, device=device),
            torch.full((b,), float("nan"), dtype=torch.float64, device=device),
            torch.full((steps, b), m, dtype=torch.int64, device=device),
        )

    def distinct_final(self) -> Tensor:
        """``(B,)`` distinct lineages of the final particles at the first step (how many independent
        starting points survive); M when nothing was resampled."""
        if self.lineages is None or self.lineages.shape[0] == 0:
            return torch.full((self.particles.shape[0],), self.particles.shape[1], dtype=torch.int64)
        return self.lineages[0]


@dataclass(frozen=True)
class Step:
    """One reverse step from ``t = t_k`` to ``s = t_{k-1}``; times ``(B * M,)`` in the particles' dtype."""

    k: int
    t: Tensor
    s: Tensor
    h: Tensor
    index: int  # position on the grid of t_k (0 = the first step, at T)

    @property
    def last(self) -> bool:
        return self.k == 1


@dataclass(frozen=True, eq=False)
class Problem:
    """A resolved conditional sampling problem: what every particle model needs, checked once.

    Tensors in the singular basis of ``operator`` ("coefficients", ``(B, 1, *coef_shape)`` so that they broadcast
    against particles ``(B, M, *coef_shape)``): ``ybar`` = Ut(y) / s on observed coefficients, 0 elsewhere;
    ``observed``, bool; ``r``, the observation variance of each coefficient, sigma_y^2 / s_i^2 (0 when noiseless).

    A non-linear :class:`~smcdiff.likelihoods.Likelihood` comes as ``likelihood`` and ``target`` (its y); ``operator``
    then observes nothing and ``y`` holds zeros of the particles' shape, dtype and device.
    """

    score: ScoreFn
    sde: SDE
    operator: Operator
    y: Tensor
    noise_std: float
    local_particles: int  # M in this process (all M unless a sharded placement spreads a row's particles)
    grid: Tensor  # (N + 1,) float64, decreasing
    kernel: Kernel
    chunk_size: int | None
    likelihood: Likelihood | None = None
    target: Tensor | None = None  # (B, ...): what the likelihood conditions on
    ybar: Tensor = field(init=False)
    observed: Tensor = field(init=False)
    r: Tensor = field(init=False)
    _coefficients: dict = field(init=False, repr=False, compare=False, default_factory=dict)  # recent t -> coefficients_at(t)

    def __post_init__(self) -> None:
        op, y = self.operator, self.y
        set_ = lambda name, v: object.__setattr__(self, name, v)  # noqa: E731 (frozen dataclass)
        set_("ybar", op.coefficients(y)[:, None])
        obs = torch.broadcast_to(op.observed.to(y.device), (y.shape[0], *op.coef_shape))[:, None]
        set_("observed", obs)
        s = torch.broadcast_to(op.s.to(device=y.device, dtype=y.dtype), obs.shape[:1] + obs.shape[2:])[:, None]
        r = (self.noise_std**2) / torch.where(obs, s, torch.ones_like(s)) ** 2
        set_("r", torch.where(obs, r, torch.zeros_like(r)))

    # ---- shapes ----
    @property
    def batch(self) -> int:
        return self.y.shape[0]

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.operator.in_shape)

    @property
    def coef_dims(self) -> tuple[int, ...]:
        """Dimensions of the coefficient grid in ``(B, M, *coef_shape)``."""
        return tuple(range(2, 2 + len(self.operator.coef_shape)))

    @property
    def steps(self) -> int:
        return self.grid.numel() - 1

    def to_coef(self, x: Tensor) -> Tensor:
        """``(B, M, *event) -> (B, M, *coef)``: V^T x per particle."""
        b, m = x.shape[:2]
        return self.operator.Vt(x.reshape(b * m, *x.shape[2:])).reshape(b, m, *self.operator.coef_shape)

    def from_coef(self, c: Tensor) -> Tensor:
        """``(B, M, *coef) -> (B, M, *event)``: V c per particle."""
        b, m = c.shape[:2]
        return self.operator.V(c.reshape(b * m, *c.shape[2:])).reshape(b, m, *self.event_shape)

    def schedule_to_coef(self, v: Tensor) -> Tensor:
        """A per-particle schedule quantity ``(B, M, *event)`` (or broadcastable) on the coefficient grid.

        For a mask (V = I) it is used as is; otherwise the SDE is uniform (checked by :func:`check_sde`), so one
        value per particle describes every coefficient.
        """
        if self.operator.coordinatewise:
            return v
        b, m = v.shape[:2]
        return v.reshape(b, m, -1)[..., :1].reshape(b, m, *([1] * len(self.operator.coef_shape)))

    def coefficients_at(self, t: float) -> tuple[Tensor, Tensor]:
        """alpha(t) and sigma(t)^2 on the coefficient grid, ``(1, 1, *coef)`` or ``(1, 1, 1, ...)``; the last 4 times kept."""
        if t not in self._coefficients:
            if len(self._coefficients) >= 4:  # a step asks for t_k and t_{k-1} only; per-coordinate schedules are large
                self._coefficients.pop(next(iter(self._coefficients)))
            c = self.sde.coefficients(torch.tensor([t], dtype=self.y.dtype, device=self.y.device), len(self.event_shape))
            alpha, sigma2 = (v.expand(1, *self.event_shape)[None] for v in (c.alpha, c.sigma2))
            self._coefficients[t] = (self.schedule_to_coef(alpha), self.schedule_to_coef(sigma2))
        return self._coefficients[t]

    def prior_var_coef(self) -> Tensor:
        """Variance of the prior at T on the coefficient grid, ``(1, 1, *coef)`` or ``(1, 1, 1, ...)``."""
        std = self.sde.prior_std(like=self.y)
        var = torch.broadcast_to(std**2, self.event_shape)[None, None]
        return self.schedule_to_coef(var)

    # ---- the reverse kernel, shared by every model ----
    def kernel_step(self, x: Tensor, step: Step) -> tuple[Tensor, Tensor]:
        """Mean ``(B, M, *event)`` and variance ``(B, M, *event)`` of the reverse kernel from every particle.

        All B * M particles go through the score in one call (or in chunks of ``chunk_size``).
        """
        b, m = x.shape[:2]
        flat = x.reshape(b * m, *self.event_shape)
        sc = checked_score(self.score, flat, step.t, self.chunk_size, step.k)
        mean, var = reverse_step(self.sde, self.kernel, flat, step.t, step.s, step.h, sc)
        return mean.view(b, m, *self.event_shape), var.expand_as(flat).reshape(b, m, *self.event_shape)

    def noise(self, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
        return torch.randn(shape, generator=generator, dtype=self.y.dtype, device=self.y.device)


class ParticleModel(ABC):
    """A Feynman-Kac model on the particle loop: where particles start, how they move, what they weigh.

    Subclasses implement the four hooks below; ``predict`` returns a dict of per-particle tensors
    ``(B, M, ...)`` that the loop reorders by the ancestors when it resamples.
    """

    reweights: bool = True
    """False for unweighted baselines: the loop then never resamples and reports no evidence."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem

    @abstractmethod
    def initial(self, generator: torch.Generator | None, shared_generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """``x_N: (B, M, *event)`` and the initial log-evidence term ``(B,)`` float64.

        ``generator`` draws the particles; ``shared_generator`` draws what all particles of a row share
        (an observation trajectory), which must be the same wherever the row's particles live: every
        process of a sharded run draws the same values from it. In one process both are the user's generator.
        """

    @abstractmethod
    def predict(self, x: Tensor, step: Step, generator: torch.Generator | None) -> dict[str, Tensor]:
        """Everything the potential and the move need from ``x_k`` (typically the reverse kernel)."""

    def log_potential(self, x: Tensor, pred: dict[str, Tensor], step: Step) -> Tensor:
        """Log weight increment ``(B, M)`` float64 of each particle at this step."""
        return torch.zeros(x.shape[:2], dtype=torch.float64, device=x.device)

    @abstractmethod
    def move(self, x: Tensor, pred: dict[str, Tensor], step: Step, generator: torch.Generator | None) -> Tensor:
        """``x_{k-1}: (B, M, *event)`` from the (resampled) ``x_k`` and ``pred``."""

    def final_log_potential(self, x: Tensor) -> Tensor | None:
        """Log weight increment ``(B, M)`` after the last move (for models that weigh a move after it is
        made, like twisted proposals); None when there is none."""
        return None

    def finalize(self, x: Tensor) -> Tensor:
        """The output particles from ``x_0`` (e.g. observed coordinates set exactly to y)."""
        return x


# ---- where the particles live: the loop's placement-wide steps (the seam of smcdiff.distributed) ----
@dataclass(frozen=True)
class Streams:
    """The random streams of one run: ``local`` draws this process's particles (initial draws,
    proposal noise); ``shared`` draws what must be identical wherever a row's particles live (an
    observation trajectory, global resampling uniforms). In one process both are the user's generator."""

    local: torch.Generator | None
    shared: torch.Generator | None


class Placement:
    """All M particles of every row in this process: the loop's placement-wide steps, once.

    The loop calls these hooks for everything that involves the particles of a row together
    (normalising the weights, the ESS, drawing ancestors, reordering particle rows, the output); a
    subclass in :mod:`smcdiff.distributed` spreads each row's particles over processes. Log-weights are
    in the placement's own layout (here ``(B, M)``, float64); particles ``x: (B, M_local, *event)``.
    """

    rank: int = 0
    world_size: int = 1

    def local_particles(self, particles: int) -> int:
        """Particles per row in this process for ``particles`` (M) in all."""
        return particles

    def total(self, local: int) -> int:
        """M, the particles per row in all processes, from this process's count."""
        return local

    def streams(self, generator: torch.Generator | None, device: torch.device) -> Streams:
        return Streams(generator, generator)

    def guard(self) -> ContextManager:
        """Wraps a run: a sharded placement re-raises an error of one process on every process."""
        return contextlib.nullcontext()

    def start(self, b: int, local: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Uniform log-weights -log M and the identity ancestors ``(B, M)``."""
        m = self.total(local)
        return torch.full((b, m), -math.log(m), dtype=torch.float64, device=device), torch.arange(m, device=device).expand(b, m)

    def reweight(self, log_w: Tensor, log_g: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised ``log w + log G`` and the increment log sum_i w^i G^i ``(B,)``; ``log_g: (B, M_local)``."""
        increment = torch.logsumexp(log_w + log_g, dim=-1)
        return log_w + log_g - increment[:, None], increment

    def ess(self, log_w: Tensor) -> Tensor:
        """ESS of each row over all M particles, ``(B,)``."""
        return ess(log_w)

    def resample(self, log_w: Tensor, do: Tensor, scheme: Resampling, streams: Streams, identity: Tensor) -> tuple[Tensor, Tensor]:
        """Ancestors for the rows where ``do: (B,)`` (identity elsewhere) and the log-weights after it."""
        ancestors = torch.where(do[:, None], resample(log_w, scheme, streams.shared), identity)
        uniform = torch.full_like(log_w, -math.log(log_w.shape[1]))
        return ancestors, torch.where(do[:, None], uniform, log_w)

    def select(self, x: Tensor, pred: dict[str, Tensor], ancestors: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The particles and their per-particle ``pred`` tensors ``(B, M, ...)`` reordered by ``ancestors``."""
        b, m = x.shape[:2]
        rows = torch.arange(b, device=x.device)[:, None]
        return x[rows, ancestors], {name: v[rows, ancestors] if v.shape[:2] == (b, m) else v for name, v in pred.items()}

    def finish(self, x: Tensor, log_w: Tensor, ess_hist: Tensor, resampled: Tensor, log_z: Tensor, lineages: Tensor) -> WeightedSamples | None:
        return WeightedSamples(x, normalize_log_weights(log_w), ess_hist, resampled, log_z, lineages)


def _lineage_counts(ancestry: list[tuple[int, Tensor]], steps: int, b: int, m: int, device) -> Tensor:
    """Distinct ancestors of the final particles at each step, ``(steps, B)``, traced back through ``ancestry``."""
    counts = torch.full((steps, b), m, dtype=torch.int64, device=device)
    lineage = torch.arange(m, device=device).expand(b, m)
    rows = torch.arange(b, device=device)[:, None]
    done = steps
    for index, anc in reversed(ancestry):
        counts[index + 1 : done] = _distinct(lineage)[None]
        lineage = anc.long()[rows, lineage]
        done = index + 1
    counts[:done] = _distinct(lineage)[None]
    return counts


def _distinct(idx: Tensor) -> Tensor:
    """Number of distinct values in each row of ``idx: (B, M)``."""
    srt = idx.sort(dim=1).values
    return 1 + (srt[:, 1:] != srt[:, :-1]).sum(1)


def run_particles(
    model: ParticleModel,
    *,
    resampling: Resampling = "systematic",
    ess_threshold: float = 0.5,
    generator: torch.Generator | None = None,
    denoise_last: bool = False,
    progress: bool = False,
    desc: str = "smc",
    callback: Callable[[StepInfo], None] | None = None,
    placement: Placement | None = None,
) -> WeightedSamples | None:
    """Run ``model`` through the reverse-time grid of its problem; the one SMC loop of the library.

    Arguments as in :func:`smcdiff.smc_sample`. Returns :class:`WeightedSamples` whose log-evidence is
    the sum of the initial term and log sum_i w_i G_i over the steps (NaN when the model does not reweight).
    ``placement`` says where the particles live (default: all here, :class:`Placement`); a sharded one
    (:mod:`smcdiff.distributed`) holds ``model.problem.local_particles`` of each row in this process and returns
    the output where its ``gather`` says (None on the other processes).
    """
    pop = Placement() if placement is None else placement
    with pop.guard():
        return _run(model, pop, resampling, ess_threshold, generator, denoise_last, progress, desc, callback)


def _run(model, pop, resampling, ess_threshold, generator, denoise_last, progress, desc, callback) -> WeightedSamples | None:
    pb = model.problem
    b, steps, device = pb.batch, pb.steps, pb.y.device
    n, m = b * pb.local_particles, pop.total(pb.local_particles)  # n particles here; M per row in all
    streams = pop.streams(generator, device)
    x, log_z = model.initial(streams.local, streams.shared)
    log_w, identity = pop.start(b, pb.local_particles, device)
    ess_hist = torch.full((steps, b), float(m), dtype=torch.float64, device=device)
    resampled_hist = torch.zeros(steps, b, dtype=torch.bool, device=device)
    ancestry: list[tuple[int, Tensor]] = []
    if callback is not None:
        full = torch.full((b,), float(m), dtype=torch.float64, device=device)
        callback(StepInfo(steps, float(pb.grid[0]), x, log_w, full, torch.zeros(b, dtype=torch.bool, device=device), identity))

    for index, (k, t, s, h) in enumerate(time_steps(pb.sde, pb.grid, n, x, progress, desc=desc)):
        step = Step(k, t, s, h, index)
        pred = model.predict(x, step, streams.local)
        ancestors = identity
        if model.reweights:
            log_w, increment = pop.reweight(log_w, model.log_potential(x, pred, step))
            if not torch.isfinite(increment).all():
                raise ValueError(f"all particle weights vanished or became non-finite at step {k} (t = {t[0].item():.6g})")
            log_z = log_z + increment
            ess_k = pop.ess(log_w)
            do = (ess_k < ess_threshold * m) | torch.tensor(ess_threshold >= 1.0, device=device)
            ess_hist[index] = ess_k
            resampled_hist[index] = do
            if ess_threshold > 0 and bool(do.any()):
                ancestors, log_w = pop.resample(log_w, do, resampling, streams, identity)
                x, pred = pop.select(x, pred, ancestors)
                ancestry.append((index, ancestors.to(torch.int32)))
        x = model.move(x, pred, step, streams.local)
        if callback is not None:
            callback(StepInfo(k - 1, s[0].item(), x, log_w, ess_hist[index], resampled_hist[index], ancestors))

    final = model.final_log_potential(x) if model.reweights else None
    if final is not None:
        log_w, increment = pop.reweight(log_w, final)
        if not torch.isfinite(increment).all():
            raise ValueError("all particle weights vanished or became non-finite at the last step")
        log_z = log_z + increment
    if denoise_last:
        flat = x.reshape(n, *pb.event_shape)
        t0 = torch.full((n,), float(pb.grid[-1]), dtype=x.dtype, device=device)
        x = pb.sde.tweedie(flat, t0, checked_score(pb.score, flat, t0, pb.chunk_size, 0)).view_as(x)
    x = model.finalize(x)
    if not model.reweights:
        log_z = torch.full((b,), float("nan"), dtype=torch.float64, device=device)
    lineages = _lineage_counts(ancestry, steps, b, identity.shape[1], device)
    return pop.finish(x, log_w, ess_hist, resampled_hist, log_z, lineages)
