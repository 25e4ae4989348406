r"""SMCDiff: the bootstrap particle filter on a sampled forward trajectory of the observation.

Seed: "Conditional Sampling with Score-Based Generative Models" (the SMC algorithm), Trippe et al.
2022. In the operator's singular basis the observed coefficients y_bar = Ut(y) / s are exact values of
x_bar_0 (noiseless observation). Under the discretised reverse model, given the state at t_k the next
observed and unobserved coefficients are independent (the reverse kernel's noise is isotropic, or
diagonal for a mask), so with a forward trajectory y_bar_{t_0..t_N} the particle system is

    initialise:  x_N^i ~ prior, observed coefficients set to y_bar_{t_N}, i = 1..M
    for k = N .. 1:
        (mu^i, v)  = reverse kernel from x_k^i at t_k (in coefficients: V^T mu^i)
        log w^i   += sum_obs log N(y_bar_{t_{k-1}}; (V^T mu^i)_obs, v_obs)            (potential)
        resample when ESS < ess_threshold * M
        x_{k-1}^i  = V [observed: y_bar_{t_{k-1}}; free: V^T mu^i + sqrt(v) z]        (proposal)

and returns sum_i w^i delta_{x_0^i}, with observed coefficients equal to y_bar.

The trajectory is drawn *backwards* through the exact Gaussian bridge
(:func:`smcdiff.dynamics.observation_trajectory`): same joint law as the forward SDE from y_bar, O(B d)
memory whatever the number of steps. The log-evidence is log p(y_bar_{t_N}) + sum_k log sum_i w_k^i G_k^i,
an unbiased (in Z) estimate of the likelihood of the observed *trajectory* under the discretised model.

With ``reweight=False`` this is the replacement baseline (RePaint without jumps): same moves, no weights.

Corrector moves (``corrector_steps > 0``, resample-move rejuvenation): after each move, K steps of
unadjusted Langevin dynamics on the free coefficients at the new time s, observed ones held at y_bar_s,

    c_free <- c_free + eps (V^T score(x, s))_free + sqrt(2 eps) z,     eps = corrector_size * sigma(s)^2,

as the corrector of score-SDE predictor-corrector sampling. The forward SDE diffuses the coefficients
independently, so given the observed trajectory the free coefficients at s follow p_s(x_free | x_obs =
y_bar_s) in the continuous-time limit; Langevin moves towards that law spread the copies that resampling
made. They cost K score evaluations per step and are not Metropolis-adjusted: the limit in M is no longer
exactly the discretised model's posterior (BENCHMARKS.md, "Effective independent samples"); off by default.
eps <= 2 sigma(s)^2 keeps the dynamics stable (p_s given x_obs has variance at least sigma(s)^2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..densities import normal_log_prob
from ..dynamics import checked_score, observation_trajectory
from ..feynman_kac import ParticleModel, Problem
from .base import CORRECTOR_HELP, Proposal, check_corrector

__all__ = ["Bootstrap", "BootstrapModel"]


@dataclass(frozen=True)
class Bootstrap(Proposal):
    """SMCDiff's bootstrap proposal (noiseless observations only); see the module's docs.

    Parameters
    ----------
    corrector_steps : K unadjusted Langevin steps on the free coefficients with every move (resample-move
        rejuvenation; K more score evaluations per step; a small bias). Default 0: off.
    corrector_size : their step, ``corrector_size * sigma(t)^2``, in (0, 2).
    """

    corrector_steps: int = field(default=0, metadata={"help": CORRECTOR_HELP["corrector_steps"], "type": int})
    corrector_size: float = field(default=1.0, metadata={"help": CORRECTOR_HELP["corrector_size"], "type": float})

    name = "bootstrap"
    noiseless_only = True

    def __post_init__(self) -> None:
        check_corrector(self.corrector_steps, self.corrector_size)

    @property
    def evaluations_per_step(self) -> int:
        return 1 + self.corrector_steps

    def build(self, problem: Problem) -> "BootstrapModel":
        return BootstrapModel(problem, corrector_steps=self.corrector_steps, corrector_size=float(self.corrector_size))


class BootstrapModel(ParticleModel):
    """SMCDiff (``reweight=True``) or the replacement baseline (``reweight=False``) on a :class:`Problem`."""

    def __init__(
        self, problem: Problem, reweight: bool = True, corrector_steps: int = 0, corrector_size: float = 1.0
    ) -> None:
        super().__init__(problem)
        check_corrector(corrector_steps, corrector_size)
        self.corrector_steps, self.corrector_size = corrector_steps, float(corrector_size)
        if problem.noise_std > 0:
            raise ValueError(
                "proposal='bootstrap' follows the noiseless observation trajectory and needs noise_std=0; "
                "use proposal='mcgdiff' for noisy observations"
            )
        self.reweights = reweight
        self._trajectory = None

    def initial(self, generator, shared_generator):
        pb = self.problem
        b, m = pb.batch, pb.local_particles
        ybar = pb.ybar[:, 0]
        # one trajectory per row, whichever process holds the row's particles
        self._trajectory = observation_trajectory(pb.sde, ybar, pb.steps, shared_generator, grid=pb.grid)
        _, y_k = next(self._trajectory)
        x = pb.sde.prior_sample((b * m, *pb.event_shape), generator=generator, dtype=pb.y.dtype, device=pb.y.device)
        x = pb.to_coef(x.view(b, m, *pb.event_shape))
        x = pb.from_coef(torch.where(pb.observed, y_k[:, None], x))
        log_prior = pb.sde.prior_log_prob(y_k.double(), len(pb.operator.coef_shape))
        log_z = (log_prior * pb.observed[:, 0]).flatten(1).sum(1)
        return x, log_z

    def predict(self, x, step, generator):
        pb = self.problem
        _, y_next = next(self._trajectory)
        mean, var = pb.kernel_step(x, step)
        return {"mean": pb.to_coef(mean), "var": pb.schedule_to_coef(var), "y_next": y_next[:, None].expand(x.shape[0], x.shape[1], *y_next.shape[1:])}

    def log_potential(self, x, pred, step):
        pb = self.problem
        mean, var = pred["mean"].double(), pred["var"].double()
        moving = var > 0  # coordinates frozen by a non-uniform SDE carry no information
        log_g = normal_log_prob(pred["y_next"].double(), mean, torch.where(moving, var, torch.ones_like(var)))
        log_g = torch.where(pb.observed & moving, log_g, torch.zeros_like(log_g))
        return log_g.sum(pb.coef_dims)

    def move(self, x, pred, step, generator):
        pb = self.problem
        mean, var = pred["mean"], pred["var"]
        free = mean + var.sqrt() * pb.noise(mean.shape, generator)
        coef = torch.where(pb.observed, pred["y_next"], free)
        for _ in range(self.corrector_steps):
            coef = self._langevin(coef, step, generator)
        return pb.from_coef(coef)

    def _langevin(self, coef: Tensor, step, generator) -> Tensor:
        """One unadjusted Langevin step at time ``step.s`` on the free coefficients ``(B, M, *coef)``."""
        pb = self.problem
        b, m = coef.shape[:2]
        x = pb.from_coef(coef)
        score = checked_score(pb.score, x.reshape(b * m, *pb.event_shape), step.s, pb.chunk_size, step.k - 1)
        sigma2 = pb.sde.coefficients(step.s, len(pb.event_shape), like=coef).sigma2
        eps = self.corrector_size * pb.schedule_to_coef(sigma2.expand(b * m, *pb.event_shape).reshape(b, m, *pb.event_shape))
        moved = coef + eps * pb.to_coef(score.view(b, m, *pb.event_shape)) + (2 * eps).sqrt() * pb.noise(coef.shape, generator)
        return torch.where(pb.observed, coef, moved)

    def finalize(self, x: Tensor) -> Tensor:
        pb = self.problem
        return pb.from_coef(torch.where(pb.observed, pb.ybar, pb.to_coef(x)))
