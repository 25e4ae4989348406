r"""Twisted SMC (TDS, Wu et al. 2023): proposals and weights twisted by a Tweedie approximation of p(y | x_t).

**Twist.** At grid time t_k the likelihood of y given x_k is approximated by replacing x_0 with Tweedie's
denoiser x0_hat(x_k) = (x_k + sigma_k^2 s(x_k, t_k)) / alpha_k:

    log p~_k(y | x_k) = sum_obs log N(y_bar_i; (V^T x0_hat(x_k))_i, r_i + rho_k),     r_i = sigma_y^2 / s_i^2.

rho_k is the variance the reverse chain adds to its output after t_k for Gaussian data of variance c^2
(``twist_variance``): the denoiser is then linear with slope J_t = alpha_t c^2 / (alpha_t^2 c^2 + sigma_t^2), and

    rho_k = sum_{j <= k} J_{j-1}^2 v_j          (v_j the variance of reverse step j, J_0 = 1, rho_0 = 0).

In continuous time this is Var[x_0 | x_t] = c^2 sigma_t^2 / (alpha_t^2 c^2 + sigma_t^2) (pseudo-inverse
guidance); summing the kernel's own variances instead keeps the twist from asking the last steps for a
spread the chain cannot produce. c^2 = 1 suits data of unit scale (images in [-1, 1]); c^2 = inf is the
scale-free slope 1 / alpha_t. Too small a c^2 over-trusts the twist at high noise and collapses the particles
onto few modes (BENCHMARKS.md, "Mode weights on a 25-mode mixture"). At t_1 the twist is the last reverse step's own
likelihood N(y_bar; V^T mu(x_1), v_1 + r), exact for the discretised model (:meth:`TwistedModel.log_last_likelihood`).
:meth:`TwistedModel.log_twist` may be overridden with any other twist.

**Moves.** Free (unobserved) coefficients follow the kernel N(mu, v) shifted by the twist's gradient,

    q(x_{k-1} | x_k) = N(mu(x_k) + v grad_x log p~_k(y | x_k), v)        (autograd through the score),

the shift capped at the step's own noise, ||v grad|| <= sqrt(sum_free v) per particle. Observed coefficients
take the locally optimal Gaussian move toward the twist at the destination time t_{k-1}, linearised about
the current denoiser (a martingale along the exact reverse process):

    x_bar_{k-1} ~ N(mu + v J (y_bar - x0_hat) / (R + v J^2),  v R / (R + v J^2)),     R = r + rho_{k-1}

(toward t_1: anchor a x0_hat + b mu, slope a J + b, R = r + v_1, where a x0_hat(x_1) + b x_1 is the last
step's mean). The last move draws observed coefficients from the kernel times N(y_bar; ., r).

**Weights.** Every move is weighed by p(x_{k-1} | x_k) p~_{k-1}(y | x_{k-1}) / (q(x_{k-1} | x_k) p~_k(y | x_k)),
computed for the move actually made (capped, linearised), so these choices change the variance, not the
limit: the weighted particles converge, as M grows, to the posterior of the discretised model given y.
A move's weight is known after it is made, so the loop applies it at the next step and once after the last.

**Any likelihood** (:mod:`smcdiff.likelihoods`; :class:`LikelihoodTwistedModel`): nothing is observed
coordinate-wise, so every coordinate takes the capped gradient move, the last one included; the twist is the
likelihood's own ``log_twist(y, x0_hat(x_k), rho_k)`` (at t_1: at the last step's mean a x0_hat + b x_1 with
its variance v_1), and the last weight carries log p(y | x_0) itself, which keeps the same limit.

**Correctors** (``corrector_steps = K > 0``): before each move, K unadjusted Langevin steps at t_k on the free
coefficients toward p_k(x) p~_k(y | x),

    c_free <- c_free + eps (V^T (score(x, t_k) + grad_x log p~_k(y | x)))_free + sqrt(2 eps) z,   eps = corrector_size * sigma_k^2,

K more network calls and backward passes per step; not Metropolis-adjusted, so the limit carries a small
bias (BENCHMARKS.md, "Effective independent samples"; bounded in ``tests/test_corrector.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..densities import normal_log_prob
from ..dynamics import reverse_step
from ..feynman_kac import ParticleModel, Problem
from .base import CORRECTOR_HELP, Proposal, check_corrector

__all__ = ["Twisted", "TwistedModel", "LikelihoodTwistedModel"]


@dataclass(frozen=True, eq=False)
class Twisted(Proposal):
    """TDS's twisted proposal (any noise level; a score that supports autograd); see the module's docs.

    Parameters
    ----------
    twist_variance : c^2, the data's variance per observed coefficient (a number, ``float("inf")``, or a
        tensor broadcastable to the operator's coefficient shape, e.g. ``op.Vt(x_train).var(0)``); sets the
        twist's spread. 1.0 suits data of unit scale such as images in [-1, 1]; any value keeps the limit in M.
    corrector_steps : K unadjusted Langevin steps toward the twisted target before each move (K more
        network calls and backward passes per step; a small bias). Default 0: off.
    corrector_size : their step, ``corrector_size * sigma(t)^2``, in (0, 2).
    """

    twist_variance: float | Tensor = field(default=1.0, metadata={
        "help": "the data's variance per observed coefficient, which sets the twist's spread (default 1.0, for "
        "images in [-1, 1]; 'inf' for the scale-free sigma_t^2 / alpha_t^2)", "type": float})
    corrector_steps: int = field(default=0, metadata={"help": CORRECTOR_HELP["corrector_steps"], "type": int})
    corrector_size: float = field(default=1.0, metadata={"help": CORRECTOR_HELP["corrector_size"], "type": float})

    name = "twisted"
    any_likelihood = True

    def __post_init__(self) -> None:
        check_corrector(self.corrector_steps, self.corrector_size)
        check_twist_variance(self.twist_variance)

    @property
    def evaluations_per_step(self) -> int:
        return 1 + self.corrector_steps

    @property
    def backward_passes_per_step(self) -> int:
        return 1 + self.corrector_steps

    def build(self, problem: Problem) -> "TwistedModel":
        model = TwistedModel if problem.likelihood is None else LikelihoodTwistedModel
        return model(problem, self.twist_variance, self.corrector_steps, float(self.corrector_size))


def check_twist_variance(value: object) -> None:
    """A ``ValueError`` unless ``twist_variance`` is a positive number (``inf`` allowed) or a floating-point
    tensor of positive values."""
    if isinstance(value, Tensor):
        if not value.is_floating_point() or not bool((value > 0).all()) or bool(value.isnan().any()):
            raise ValueError("twist_variance must be a floating-point tensor of positive values (inf allowed)")
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value) or not value > 0:
        raise ValueError(f"twist_variance must be a positive number (or float('inf')) or a tensor, got {value!r}")


def _twist_variance_tensor(value: float | Tensor, coef_shape: tuple[int, ...], like: Tensor) -> Tensor:
    """``twist_variance`` (checked) as a tensor like ``like`` broadcastable to the coefficient grid."""
    check_twist_variance(value)
    if not isinstance(value, Tensor):
        return torch.tensor(float(value), dtype=like.dtype, device=like.device)
    try:
        shape = torch.broadcast_shapes(value.shape, coef_shape)
    except RuntimeError:
        shape = None
    if shape != coef_shape:
        raise ValueError(
            f"twist_variance of shape {tuple(value.shape)} does not broadcast to the operator's coefficient shape {coef_shape}"
        )
    return value.detach().to(dtype=like.dtype, device=like.device)


class TwistedModel(ParticleModel):
    """The twisted (TDS) particle model on a :class:`Problem`; needs a score that supports autograd."""

    linearised_observed: bool = True
    """Move observed coefficients by the locally optimal step toward the linearised twist of :meth:`spread`;
    a subclass whose :meth:`log_twist` is not that Gaussian model sets False to shift them by the gradient too."""

    def __init__(
        self, problem: Problem, twist_variance: float | Tensor = 1.0, corrector_steps: int = 0, corrector_size: float = 1.0
    ) -> None:
        super().__init__(problem)
        check_corrector(corrector_steps, corrector_size)
        self.corrector_steps, self.corrector_size = corrector_steps, float(corrector_size)
        self.twist_variance = _twist_variance_tensor(twist_variance, tuple(problem.operator.coef_shape), problem.y)
        self._pending: Tensor | None = None  # log p/q of the last move, per current particle
        self._prev_twist: Tensor | None = None  # log p~ at each current particle's parent
        self._last: tuple[Tensor, Tensor, Tensor] | None = None  # see last_kernel
        self._spreads: Tensor | None = None  # see spreads

    def initial(self, generator, shared_generator):
        pb = self.problem
        b, m = pb.batch, pb.local_particles
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
                    "proposal='twisted' (the default for noisy observations) differentiates log p~(y | x_t) through "
                    "the score, but the score's output does not depend on x through autograd (computed under no_grad "
                    "or outside torch); use proposal='mcgdiff' (any noise) or 'bootstrap' (noiseless) with this score"
                )
            log_p = self.log_last_likelihood(xg, t, s, rows) if k == 1 else self.log_twist(xg, t, s, rows)
            (grad,) = torch.autograd.grad(log_p.sum(), xg)
        if not (torch.isfinite(s).all() and torch.isfinite(grad).all()):
            raise ValueError(f"score or twist gradient returned non-finite values at step {k} (t = {t[0].item():.6g})")
        return s.detach(), log_p.detach(), grad

    def slope(self, t: float) -> Tensor:
        """The slope of Tweedie's denoiser in x_t for the twist's Gaussian model of the data (variance c^2 per
        coefficient), ``(1, 1, *coef)``: J_t = alpha_t c^2 / (alpha_t^2 c^2 + sigma_t^2), or 1 / alpha_t for c^2 = inf."""
        alpha, sigma2 = self.problem.coefficients_at(t)
        c2 = self.twist_variance
        inf = torch.isinf(c2)
        finite = torch.where(inf, torch.ones_like(c2), c2)
        return torch.where(inf, 1 / alpha, alpha * finite / (alpha**2 * finite + sigma2))

    def spreads(self) -> Tensor:
        """rho at every grid time, ``(N + 1, 1, 1, *coef)`` from t_N = T down to rho_0 = 0 at t_0: the variance
        the reverse chain adds to its output x_{t_0} after t_k, sum_{j <= k} J_{j-1}^2 v_j (v_j the variance of
        step j, J_0 = 1), for the twist's Gaussian model of the data."""
        if self._spreads is None:
            pb = self.problem
            like = pb.y
            grid = pb.grid.to(device=like.device, dtype=like.dtype)
            n = grid.numel() - 1
            zeros = torch.zeros(1, *pb.event_shape, dtype=like.dtype, device=like.device)
            rho = [torch.zeros_like(torch.broadcast_to(self.twist_variance, (1, 1, *pb.operator.coef_shape)))]
            for k in range(1, n + 1):  # step k: t_k = grid[n - k] -> t_{k-1} = grid[n - k + 1]
                t, s = grid[n - k].reshape(1), grid[n - k + 1].reshape(1)
                _, v = reverse_step(pb.sde, pb.kernel, zeros, t, s, t - s, zeros)  # the variance needs no score
                v = pb.schedule_to_coef(torch.broadcast_to(v, zeros.shape)[None])
                j = torch.ones_like(v) if k == 1 else self.slope(float(s))
                rho.append(rho[-1] + j**2 * v)
            self._spreads = torch.stack(rho[::-1])
        return self._spreads

    def spread(self, t: float) -> tuple[Tensor, Tensor]:
        """The twist's model of x_0 given x_t at grid time ``t``, ``(1, 1, *coef)`` each: its variance rho_t
        (:meth:`spreads`) and the slope J_t of Tweedie's denoiser (:meth:`slope`)."""
        grid = self.problem.grid
        return self.spreads()[int((grid - t).abs().argmin())], self.slope(t)

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
        log_p = normal_log_prob(pb.ybar[rows, 0].double(), xbar0.double(), torch.where(obs, var, torch.ones_like(var)).double())
        return torch.where(obs, log_p, torch.zeros_like(log_p)).flatten(1).sum(1)

    def last_kernel(self) -> tuple[Tensor, Tensor, Tensor]:
        """The last reverse step (t_1 -> t_0) on the coefficient grid, ``(1, 1, *coef)`` each: its mean is
        ``a x0_hat(x_1) + b x_1`` (affine in Tweedie's denoiser and the particle for every kernel, since the
        score is (alpha x0_hat - x) / sigma^2) and ``v`` its variance. Read off the kernel itself."""
        if self._last is None:
            pb = self.problem
            like = pb.y
            t, s = (pb.grid[i].to(like.dtype).to(like.device).reshape(1) for i in (-2, -1))
            c = pb.sde.coefficients(t, len(pb.event_shape), like=like)
            zeros = torch.zeros(1, *pb.event_shape, dtype=like.dtype, device=like.device)
            alpha, sigma2 = (torch.broadcast_to(v, zeros.shape) for v in (c.alpha, c.sigma2))
            a, var = reverse_step(pb.sde, pb.kernel, zeros, t, s, t - s, alpha / sigma2)  # x = 0, x0_hat = 1
            b, _ = reverse_step(pb.sde, pb.kernel, zeros + 1, t, s, t - s, -1 / sigma2)  # x = 1, x0_hat = 0
            self._last = tuple(pb.schedule_to_coef(torch.broadcast_to(v, zeros.shape)[None]) for v in (a, b, var))
        return self._last

    def log_last_likelihood(self, x: Tensor, t: Tensor, score: Tensor, rows: Tensor) -> Tensor:
        """The twist at t_1, ``(c,)`` float64: log p(y | x_1) under the last reverse step itself,
        sum_obs log N(y_bar; (V^T mean(x_1))_obs, v + r), exact for the discretised model, so the last
        step adds no weight variance."""
        pb = self.problem
        a, b, v = (u[0] for u in self.last_kernel())
        mean = a * pb.operator.Vt(pb.sde.tweedie(x, t, score)) + b * pb.operator.Vt(x)
        obs = pb.observed[rows, 0]
        var = pb.r[rows, 0] + v
        log_p = normal_log_prob(pb.ybar[rows, 0].double(), mean.double(), torch.where(obs, var, torch.ones_like(var)).double())
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
            "score": pb.to_coef(score.view(b, m, *pb.event_shape)),
        }

    def log_potential(self, x, pred, step):
        return self._pending + pred["log_twist"] - self._prev_twist

    def _capped(self, grad: Tensor, var: Tensor, shifted: Tensor) -> Tensor:
        """``grad`` on the ``shifted`` coefficients (zero elsewhere), scaled per particle so that the shift
        ``var * grad`` is at most the step's own noise there, ||var g|| <= sqrt(sum var)."""
        grad = torch.where(shifted, grad, torch.zeros_like(grad))
        norm = (var * grad).flatten(2).norm(dim=-1)
        cap = torch.where(shifted, var, torch.zeros_like(var)).flatten(2).sum(-1).sqrt()
        scale = torch.where(norm > cap, cap / norm.clamp_min(torch.finfo(norm.dtype).tiny), torch.ones_like(norm))
        return grad * scale.reshape(*scale.shape, *([1] * len(self.problem.coef_dims)))

    def _langevin(self, x: Tensor, pred: dict[str, Tensor], step, generator) -> tuple[Tensor, dict[str, Tensor]]:
        """One unadjusted Langevin step on the free coefficients of ``x: (B, M, *event)`` toward the twisted
        target p_k(x) p~_k(y | x) at t_k (the twist's pull capped as in the move), and the prediction at the
        new position."""
        pb = self.problem
        coef = pb.to_coef(x)
        eps = torch.broadcast_to(self.corrector_size * pb.coefficients_at(float(step.t[0]))[1], coef.shape)
        free = ~pb.observed.expand_as(coef)
        drift = pred["score"] + self._capped(pred["grad"], eps, free)
        moved = coef + eps * drift + (2 * eps).sqrt() * pb.noise(coef.shape, generator)
        x = pb.from_coef(torch.where(free, moved, coef))
        return x, self.predict(x, step, generator)

    def move(self, x, pred, step, generator):
        pb = self.problem
        for _ in range(self.corrector_steps):
            x, pred = self._langevin(x, pred, step, generator)
        mean, grad, obs = pred["mean"], pred["grad"], pb.observed
        var = torch.broadcast_to(pred["var"], mean.shape)
        z = pb.noise(mean.shape, generator)
        # free coefficients: the kernel shifted by v g, capped at the step's noise, ||v g|| <= sqrt(sum v) over them
        # (none at the last step: given x_1 the free coefficients of x_0 do not meet the likelihood)
        if step.last:
            shifted = torch.zeros_like(obs)
        else:
            shifted = ~obs if self.linearised_observed else torch.ones_like(obs)
        grad = self._capped(grad, var, shifted.expand_as(mean))
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
            log_obs = normal_log_prob(ybar.double(), mean.double(), safe.double())
            log_ratio = torch.where(obs, log_obs, log_ratio)
        elif self.linearised_observed:  # observed coefficients: locally optimal move toward the linearised twist at t_{k-1}
            # the twist at t_{k-1} as a Gaussian in x_bar_{k-1}: N(y_bar; anchor + slope (x_bar_{k-1} - mu), R)
            rho, slope = self.spread(float(step.s[0]))
            anchor, big_r = pred["x0"], pb.r + rho
            if step.k == 2:  # the destination's twist is the last step's likelihood, mean a x0_hat + b x_1
                a, b, v_last = self.last_kernel()
                anchor, slope, big_r = a * pred["x0"] + b * mean, a * slope + b, pb.r + v_last
            denom = big_r + var * slope**2
            obs_mean = mean + var * slope * (pb.ybar - anchor) / denom
            obs_var = var * big_r / denom
            moved = obs_mean + obs_var.sqrt() * z
            x64 = moved.double()
            log_obs = normal_log_prob(x64, mean.double(), var.double()) - normal_log_prob(x64, obs_mean.double(), obs_var.double())
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


class LikelihoodTwistedModel(TwistedModel):
    """The twisted model for any :class:`~smcdiff.likelihoods.Likelihood` (``problem.likelihood``); see the
    module's docs. The problem's operator observes nothing, so the coefficients are x's coordinates."""

    linearised_observed = False

    def _checked(self, value: Tensor, n: int, what: str) -> Tensor:
        if not isinstance(value, Tensor) or value.shape != (n,):
            raise ValueError(f"the likelihood's {what} must return one value per row, ({n},); got "
                             f"{tuple(getattr(value, 'shape', ()))}")
        return value.double()

    def log_twist(self, x: Tensor, t: Tensor, score: Tensor, rows: Tensor) -> Tensor:
        pb = self.problem
        rho, _ = self.spread(float(t[0]))
        value = pb.likelihood.log_twist(pb.target[rows], pb.sde.tweedie(x, t, score), rho[0])
        return self._checked(value, x.shape[0], "log_twist")

    def log_last_likelihood(self, x: Tensor, t: Tensor, score: Tensor, rows: Tensor) -> Tensor:
        pb = self.problem
        a, b, v = (u[0] for u in self.last_kernel())
        mean = a * pb.sde.tweedie(x, t, score) + b * x
        return self._checked(pb.likelihood.log_twist(pb.target[rows], mean, v), x.shape[0], "log_twist")

    def _log_likelihood(self, x: Tensor) -> Tensor:
        """log p(y | x_0) per particle ``(B, M)`` float64, through the likelihood in chunks of ``chunk_size``."""
        pb = self.problem
        b, m = x.shape[:2]
        flat = x.reshape(b * m, *pb.event_shape)
        rows = torch.arange(b, device=x.device).repeat_interleave(m)
        size = b * m if pb.chunk_size is None else pb.chunk_size
        parts = [self._checked(pb.likelihood.log_prob(pb.target[r], xc), xc.shape[0], "log_prob")
                 for xc, r in zip(flat.split(size), rows.split(size))]
        log_p = torch.cat(parts).view(b, m)
        if bool(torch.isnan(log_p).any()) or bool((log_p == math.inf).any()):
            raise ValueError("the likelihood's log_prob returned NaN or +inf at the final particles")
        return log_p

    def move(self, x, pred, step, generator):
        pb = self.problem
        for _ in range(self.corrector_steps):
            x, pred = self._langevin(x, pred, step, generator)
        mean = pred["mean"]
        var = torch.broadcast_to(pred["var"], mean.shape)
        z = pb.noise(mean.shape, generator)
        grad = self._capped(pred["grad"], var, torch.ones_like(pb.observed).expand_as(mean))
        moved = pb.from_coef(mean + var * grad + var.sqrt() * z)
        # log N(x'; mu, v) - log N(x'; mu + v g, v) = -(v g^2 / 2 + sqrt(v) g z), per coordinate
        self._pending = (-(0.5 * var * grad**2 + var.sqrt() * grad * z).double()).sum(pb.coef_dims)
        if step.last:  # the likelihood itself at x_0
            self._pending = self._pending + self._log_likelihood(moved)
        self._prev_twist = pred["log_twist"]
        return moved
