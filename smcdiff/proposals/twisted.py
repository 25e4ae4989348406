r"""Twisted SMC (TDS, Wu et al. 2023): proposals and weights twisted by a Tweedie approximation of p(y | x_t).

The twisting function at grid time t_k approximates the likelihood of the observation given x_k by
replacing x_0 with Tweedie's denoiser x0_hat(x_k) = (x_k + sigma_k^2 s(x_k, t_k)) / alpha_k:

    log p~_k(y | x_k) = sum_obs log N(y_bar_i; (V^T x0_hat(x_k))_i, r_i + rho_k),

with r_i = sigma_y^2 / s_i^2 the observation variance of coefficient i and rho_k the variance of x_0
given x_t for Gaussian data of variance c^2 (the pseudo-inverse-guidance choice),

    rho_k = c^2 sigma_k^2 / (alpha_k^2 c^2 + sigma_k^2)        (c^2 = ``twist_variance``, default 1;
                                                               a number or one per coefficient),

which covers p(x_0 | x_t)'s spread at high noise (rho -> c^2), so the guidance stays bounded there, and
vanishes as t -> 0. c^2 = 1 suits data of unit scale (images in [-1, 1]); data on a larger scale need
their own variance, or c^2 = inf (rho_k = sigma_k^2 / alpha_k^2, no scale assumed). Too small a c^2
over-trusts the twist at high noise, where p(x_0 | x_t) is multimodal, and sends the particles to few
modes (BENCHMARKS.md: on the 25-mode mixture, whose coordinates have variance ~130, c^2 = 1 leaves one
lineage; c^2 = 137 or inf keep 200-250). :meth:`TwistedModel.log_twist` can be overridden with any
other twist (an exact one where it is known, as the mixture benchmark does).
Each step moves the particles in two parts. The free (unobserved) coefficients follow the reverse kernel
N(mu, v) shifted by the twist's gradient (TDS),

    q(x_{k-1} | x_k) = N(mu(x_k) + v grad_x log p~_k(y | x_k), v)        (autograd through the score),

with the shift capped at the size of the step's own noise, ||v grad|| <= sqrt(sum_free v) per particle (an
imperfect network's Jacobian, amplified by 1/alpha_t at high noise, can otherwise throw particles off the
data). The observed coefficients take the locally optimal Gaussian move toward the twist at the
*destination* time t_{k-1}: the twist's own Gaussian model of x_0 given x_s (spread rho_s, and Tweedie
slope J_s = alpha_s c^2 / (alpha_s^2 c^2 + sigma_s^2), or 1 / alpha_s for c^2 = inf) makes
log p~_{k-1} linear-Gaussian in x_bar_{k-1}, anchored at the current x0_hat(x_k) (along the exact reverse process
the denoiser is a martingale, E[x0_hat(x_{k-1}) | x_k] = x0_hat(x_k)), so per observed coefficient

    x_bar_{k-1} ~ N(mu + v J (y_bar - x0_hat) / (R + v J^2),  v R / (R + v J^2)),     R = r + rho_{k-1}.

A first-order gradient step uses the twist at t_k instead and cannot follow it where it sharpens
(rho_t shrinks in proportion to t near the data): in 64-256 dimensions that concentrated the weights
on a handful of particles in the last steps (BENCHMARKS.md, "Effective independent samples").
Every move is weighed by  p(x_{k-1} | x_k) p~_{k-1}(y | x_{k-1}) / (q(x_{k-1} | x_k) p~_k(y | x_k)). The last step
targets the likelihood itself: observed coefficients are drawn from the product of the kernel with
N(y_bar; ., r) (the point y_bar when sigma_y = 0, as in :mod:`.mcgdiff`) and weighed by N(y_bar; mu, v + r).
The weights use the moves actually made (capped shift, linearised twist), so these choices change the
variance, not the limit.
Any twist keeps the limit: the weighted particles converge, as M grows, to the posterior of the
discretised model given y. The weight of a move is known only after the move, so the loop applies
it at the next step (before resampling) and once more after the last move.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..dynamics import reverse_step
from ..particles import ParticleModel, Problem
from ..sde import _normal_log_prob

__all__ = ["TwistedModel", "is_default_twist_variance"]


def is_default_twist_variance(value: object) -> bool:
    """Whether ``twist_variance`` was left at its default (the samplers refuse other values for other proposals)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 1.0


def _check_twist_variance(value: float | Tensor, coef_shape: tuple[int, ...], like: Tensor) -> Tensor:
    """``twist_variance`` as a tensor like ``like`` broadcastable to the coefficient grid, every entry > 0."""
    if isinstance(value, Tensor):
        if not value.is_floating_point() or not bool((value > 0).all()):
            raise ValueError("twist_variance must be a floating-point tensor of positive values (inf allowed)")
        try:
            shape = torch.broadcast_shapes(value.shape, coef_shape)
        except RuntimeError:
            shape = None
        if shape != coef_shape:
            raise ValueError(
                f"twist_variance of shape {tuple(value.shape)} does not broadcast to the operator's coefficient "
                f"shape {coef_shape}"
            )
        return value.detach().to(dtype=like.dtype, device=like.device)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"twist_variance must be a positive number (or float('inf')) or a tensor, got {value!r}")
    return torch.tensor(float(value), dtype=like.dtype, device=like.device)


class TwistedModel(ParticleModel):
    """The twisted (TDS) particle model on a :class:`Problem`; needs a score that supports autograd."""

    linearised_observed: bool = True
    """Move observed coefficients by the locally optimal step toward the linearised twist of :meth:`spread`;
    a subclass whose :meth:`log_twist` is not that Gaussian model sets False to shift them by the gradient too."""

    def __init__(self, problem: Problem, twist_variance: float | Tensor = 1.0) -> None:
        super().__init__(problem)
        self.twist_variance = _check_twist_variance(twist_variance, tuple(problem.operator.coef_shape), problem.y)
        self._pending: Tensor | None = None  # log p/q of the last move, per current particle
        self._prev_twist: Tensor | None = None  # log p~ at each current particle's parent

    def initial(self, generator, shared_generator):
        pb = self.problem
        b, m = pb.batch, pb.particles
        x = pb.sde.prior_sample((b * m, *pb.event_shape), generator=generator, dtype=pb.y.dtype, device=pb.y.device)
        zeros = torch.zeros(b, m, dtype=torch.float64, device=pb.y.device)
        self._pending, self._prev_twist = zeros, zeros
        return x.view(b, m, *pb.event_shape), torch.zeros(b, dtype=torch.float64, device=pb.y.device)

    def _twist_chunk(self, x: Tensor, t: Tensor, rows: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
        """Score, log p~ and its gradient for a chunk ``x: (c, *event)`` whose rows of y are ``rows: (c,)``."""
        pb = self.problem
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            s = pb.score(xg, t)
            if not isinstance(s, Tensor) or s.shape != x.shape:
                raise ValueError(f"score returned shape {tuple(getattr(s, 'shape', ()))} for input of shape {tuple(x.shape)}")
            if not s.requires_grad:
                raise ValueError(
                    "proposal='twisted' differentiates log p~(y | x_t) through the score, but the score's output "
                    "does not depend on x through autograd (computed under no_grad or outside torch); use "
                    "proposal='mcgdiff' or 'bootstrap' with this score"
                )
            log_p = self.log_twist(xg, t, s, rows)
            (grad,) = torch.autograd.grad(log_p.sum(), xg)
        if not (torch.isfinite(s).all() and torch.isfinite(grad).all()):
            raise ValueError(f"score or twist gradient returned non-finite values at step {k} (t = {t[0].item():.6g})")
        return s.detach(), log_p.detach(), grad

    def spread(self, t: float) -> tuple[Tensor, Tensor]:
        """The twist's model of x_0 given x_t on the coefficient grid, ``(1, 1, *coef)`` each: its variance
        rho_t = c^2 sigma_t^2 / (alpha_t^2 c^2 + sigma_t^2) and the slope of Tweedie's denoiser in x_t,
        J_t = alpha_t c^2 / (alpha_t^2 c^2 + sigma_t^2) (for c^2 = inf: sigma_t^2 / alpha_t^2 and 1 / alpha_t)."""
        alpha, sigma2 = self.problem.coefficients_at(t)
        c2 = self.twist_variance
        inf = torch.isinf(c2)
        finite = torch.where(inf, torch.ones_like(c2), c2)
        denom = alpha**2 * finite + sigma2
        rho = torch.where(inf, sigma2 / alpha**2, finite * sigma2 / denom)
        slope = torch.where(inf, 1 / alpha, alpha * finite / denom)
        return rho, slope

    def log_twist(self, x: Tensor, t: Tensor, score: Tensor, rows: Tensor) -> Tensor:
        """log p~(y | x_t) per particle ``(c,)`` float64, differentiable in ``x`` through ``score``.

        ``x: (c, *event)`` particles at times ``t: (c,)`` whose observations are the rows ``rows: (c,)``
        of y. Override to use another twist; any function of x_t keeps the sampler's limit.
        """
        pb = self.problem
        x0 = pb.sde.tweedie(x, t, score)
        xbar0 = pb.operator.Vt(x0)
        rho, _ = self.spread(float(t[0]))
        var = pb.r[rows, 0] + rho[0]
        obs = pb.observed[rows, 0]
        # per-coordinate terms in float64 before the sum over coordinates (thousands for an image)
        log_p = _normal_log_prob(pb.ybar[rows, 0].double(), xbar0.double(), torch.where(obs, var, torch.ones_like(var)).double())
        return torch.where(obs, log_p, torch.zeros_like(log_p)).flatten(1).sum(1)

    def predict(self, x, step, generator):
        pb = self.problem
        b, m = x.shape[:2]
        n = b * m
        flat = x.reshape(n, *pb.event_shape)
        rows = torch.arange(b, device=x.device).repeat_interleave(m)
        size = n if pb.chunk_size is None else pb.chunk_size
        parts = [self._twist_chunk(xc, tc, rc, step.k) for xc, tc, rc in zip(flat.split(size), step.t.split(size), rows.split(size))]
        score, log_twist, grad = (torch.cat(v) for v in zip(*parts))
        mean, var = reverse_step(pb.sde, pb.kernel, flat, step.t, step.s, step.h, score)
        var = var.expand_as(flat).reshape(b, m, *pb.event_shape)
        x0 = pb.sde.tweedie(flat, step.t, score)
        return {
            "mean": pb.to_coef(mean.view(b, m, *pb.event_shape)),
            "var": pb.schedule_to_coef(var),
            "grad": pb.to_coef(grad.view(b, m, *pb.event_shape)),
            "x0": pb.to_coef(x0.view(b, m, *pb.event_shape)),
            "log_twist": log_twist.view(b, m),
        }

    def log_potential(self, x, pred, step):
        return self._pending + pred["log_twist"] - self._prev_twist

    def move(self, x, pred, step, generator):
        pb = self.problem
        mean, grad, obs = pred["mean"], pred["grad"], pb.observed
        var = torch.broadcast_to(pred["var"], mean.shape)
        z = pb.noise(mean.shape, generator)
        # free coefficients: the kernel shifted by v g, capped at the step's noise, ||v g|| <= sqrt(sum v) over them
        shifted = ~obs if self.linearised_observed or step.last else torch.ones_like(obs)  # moved by the gradient
        grad = torch.where(shifted, grad, torch.zeros_like(grad))
        norm = (var * grad).flatten(2).norm(dim=-1)
        cap = torch.where(shifted, var, torch.zeros_like(var)).flatten(2).sum(-1).sqrt()
        scale = torch.where(norm > cap, cap / norm.clamp_min(torch.finfo(norm.dtype).tiny), torch.ones_like(norm))
        grad = grad * scale.reshape(*scale.shape, *([1] * len(pb.coef_dims)))
        xbar = mean + var * grad + var.sqrt() * z
        # log N(x'; mu, v) - log N(x'; mu + v g, v) = -(v g^2 / 2 + sqrt(v) g z), per coordinate
        log_ratio = -(0.5 * var * grad**2 + var.sqrt() * grad * z).double()
        if step.last:  # the likelihood itself: N(y_bar; x_bar_0, r), exact
            r, ybar = pb.r, pb.ybar
            total = var + r
            safe = torch.where(total > 0, total, torch.ones_like(total))
            obs_mean = torch.where(total > 0, (r * mean + var * ybar) / safe, mean)
            obs_var = torch.where(total > 0, var * r / safe, torch.zeros_like(total))
            xbar = torch.where(obs, obs_mean + obs_var.sqrt() * z, xbar)
            log_obs = _normal_log_prob(ybar.double(), mean.double(), safe.double())
            log_ratio = torch.where(obs, log_obs, log_ratio)
        elif self.linearised_observed:  # observed coefficients: locally optimal move toward the linearised twist at t_{k-1}
            rho, slope = self.spread(float(step.s[0]))
            big_r = pb.r + rho
            denom = big_r + var * slope**2
            obs_mean = mean + var * slope * (pb.ybar - pred["x0"]) / denom
            obs_var = var * big_r / denom
            moved = obs_mean + obs_var.sqrt() * z
            x64 = moved.double()
            log_obs = _normal_log_prob(x64, mean.double(), var.double()) - _normal_log_prob(x64, obs_mean.double(), obs_var.double())
            xbar = torch.where(obs, moved, xbar)
            log_ratio = torch.where(obs, log_obs, log_ratio)
        self._pending = log_ratio.sum(pb.coef_dims)
        self._prev_twist = pred["log_twist"]
        return pb.from_coef(xbar)

    def final_log_potential(self, x: Tensor) -> Tensor:
        return self._pending - self._prev_twist

    def finalize(self, x: Tensor) -> Tensor:
        pb = self.problem
        if pb.noise_std > 0:
            return x
        return pb.from_coef(torch.where(pb.observed, pb.ybar, pb.to_coef(x)))
