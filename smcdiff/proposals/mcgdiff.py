r"""MCGdiff-style SMC for linear observations y = A x + sigma_y eps (Cardoso et al. 2024).

In the singular basis of A = U diag(s) V^T each observed coefficient is seen on its own,

    y_bar_i = (Ut(y) / s)_i = x_bar_{0,i} + sqrt(r_i) eps_i,   r_i = sigma_y^2 / s_i^2,

that is, y_bar_i is x_bar_i diffused to the time tau_i where sigma(tau_i)^2 / alpha(tau_i)^2 = r_i (a
noiseless mask has tau_i = 0). The sampler targets p_model(x_{t_0}) N(y_bar; x_bar_{t_0}, r) through
the intermediate potentials

    g_k(x_k) = prod_obs N(x_bar_{k,i}; alpha_k y_bar_i, w_{k,i}),   w_{k,i} = sigma_k^2 + alpha_k^2 r_i,

the law of x_bar_{t_k} given y_bar when x_bar_0 is replaced by its Gaussian proxy (alpha, sigma of the
SDE at t_k; for sigma_y = 0 these are MCGdiff's potentials N(x_bar_t; alpha_t y, sigma_t^2)). At t_0
the potential is the likelihood itself (alpha = 1, w = r; a point mass when sigma_y = 0). Each step
uses the locally optimal proposal for the observed coefficients, the product of the reverse kernel
N(mu, v) (mu = V^T of the kernel mean) with g_{k-1}:

    observed:  x_bar_{k-1,i} ~ N((w mu_i + v alpha y_bar_i) / (v + w), v w / (v + w))
    free:      x_bar_{k-1,i} ~ N(mu_i, v)
    log G_k  = sum_obs log N(alpha_{k-1} y_bar_i; mu_i, v + w_{k-1,i}) - log g_k(x_k)

(the increment depends only on x_k, so particles are resampled before they move). The start is the
prior at T times g_N. The weighted particles converge as M grows to the posterior of the discretised
model given y, which approaches p(x | y) as the steps shrink with an exact score.
``log_evidence`` estimates log p(y_bar) (the density of the observed coefficients).

The reverse kernel's variance must be the same for every coefficient of one particle (an isotropic
kernel: any uniform SDE), or the operator a mask; :func:`smcdiff.smc.check_sde` enforces this.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..densities import normal_log_prob
from ..feynman_kac import ParticleModel, Problem
from .base import Proposal

__all__ = ["MCGdiff", "MCGdiffModel"]


@dataclass(frozen=True)
class MCGdiff(Proposal):
    """The MCGdiff-style locally optimal proposal: any linear operator, any noise level; no options."""

    name = "mcgdiff"

    def build(self, problem: Problem) -> "MCGdiffModel":
        return MCGdiffModel(problem)


class MCGdiffModel(ParticleModel):
    """The MCGdiff-style particle model on a :class:`Problem` (any operator, ``noise_std >= 0``)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem)
        self._grid = [float(t) for t in problem.grid]

    def _twist(self, index: int) -> tuple[Tensor, Tensor]:
        """(alpha, w) of the potential at grid position ``index`` (the last one is the likelihood)."""
        pb = self.problem
        if index == len(self._grid) - 1:
            return torch.ones_like(pb.r), pb.r
        alpha, sigma2 = pb.coefficients_at(self._grid[index])
        return alpha, sigma2 + alpha**2 * pb.r

    def _log_twist(self, xbar: Tensor, index: int) -> Tensor:
        pb = self.problem
        alpha, w = self._twist(index)
        log_g = normal_log_prob(xbar.double(), (alpha * pb.ybar).double(), w.double())
        return torch.where(pb.observed, log_g, torch.zeros_like(log_g)).sum(pb.coef_dims)

    def initial(self, generator, shared_generator):
        pb = self.problem
        b, m = pb.batch, pb.local_particles
        p = pb.prior_var_coef()
        alpha, w = self._twist(0)
        z = pb.noise((b, m, *pb.operator.coef_shape), generator)
        obs_mean, obs_var = p * alpha * pb.ybar / (p + w), p * w / (p + w)
        xbar = torch.where(pb.observed, obs_mean + obs_var.sqrt() * z, p.sqrt() * z)
        log_z = normal_log_prob((alpha * pb.ybar).double(), torch.zeros((), dtype=torch.float64, device=pb.y.device), (p + w).double())
        log_z = torch.where(pb.observed, log_z, torch.zeros_like(log_z)).sum(pb.coef_dims)[:, 0]
        return pb.from_coef(xbar), log_z

    def predict(self, x, step, generator):
        pb = self.problem
        mean, var = pb.kernel_step(x, step)
        return {"mean": pb.to_coef(mean), "var": pb.schedule_to_coef(var), "xbar": pb.to_coef(x)}

    def log_potential(self, x, pred, step):
        pb = self.problem
        alpha, w = self._twist(step.index + 1)
        mean, var = pred["mean"].double(), pred["var"].double()
        log_next = normal_log_prob((alpha * pb.ybar).double(), mean, var + w.double())
        log_next = torch.where(pb.observed, log_next, torch.zeros_like(log_next)).sum(pb.coef_dims)
        return log_next - self._log_twist(pred["xbar"], step.index)

    def move(self, x, pred, step, generator):
        pb = self.problem
        alpha, w = self._twist(step.index + 1)
        mean, var = pred["mean"], pred["var"]
        z = pb.noise(mean.shape, generator)
        total = var + w
        safe = torch.where(total > 0, total, torch.ones_like(total))
        obs_mean = torch.where(total > 0, (w * mean + var * alpha * pb.ybar) / safe, mean)
        obs_var = torch.where(total > 0, var * w / safe, torch.zeros_like(total))
        xbar = torch.where(pb.observed, obs_mean + obs_var.sqrt() * z, mean + var.sqrt() * z)
        return pb.from_coef(xbar)

    def finalize(self, x: Tensor) -> Tensor:
        pb = self.problem
        if pb.noise_std > 0:
            return x
        return pb.from_coef(torch.where(pb.observed, pb.ybar, pb.to_coef(x)))
