r"""SDEs, likelihood weighting, losses and conditional scores of the CDE / CDiffE / CMDE estimators (§3.4).

All three estimators are trained with the likelihood weighting: the objective is

    L(theta) = 1/2 E_{t ~ U(eps, T), z_0, z_t | z_0} [ v^T Lambda(t) v ],
    v = grad_{z_t} log p(z_t | z_0) - s_theta(z_t, t),

with Lambda = Lambda_MLE(t) = diag(g_i(t)^2) of Theorem 3, g_i(t)^2 = d sigma_i(t)^2 / dt the squared
diffusion coefficient of coordinate i (for CDE z = x and Lambda = g(t)^2 I, the scalar likelihood
weighting of Song et al. 2021). For the VE SDE g_i^2 / sigma_i^2 = 2 log(sigma_max,i / sigma_min), so
in noise space the weighting is a constant per coordinate group.

Estimator protocol (what :func:`conditional_score`, :func:`score_matching_loss` and the adapter
:class:`smcdiff.adapters.ConditionalScore` use, so that exact Gaussian oracles plug in too):
``kind`` in {"cde", "cdiffe", "cmde"}; ``x_channels``; ``sde`` (the SDE of the diffused variable:
x for CDE, z = (x, y) otherwise); ``sde_x``; ``sde_y`` (None for CDE); and
``__call__(v_t, t, cond) -> score of v_t``, with ``cond`` concatenated after ``v_t`` along dim 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..sde import SDE, VE

__all__ = ["joint_ve", "likelihood_weighting", "weighted_score_loss", "score_matching_loss", "conditional_score"]


def joint_ve(
    sigma_min: float,
    sigma_max: float,
    sigma_y_max: float,
    x_channels: int,
    y_channels: int,
    event_ndim: int = 3,
    T: float = 1.0,
    eps: float = 1e-5,
) -> VE:
    """VE SDE of z = (x, y) stacked along the first event dimension, x and y at their own speeds.

    ``sigma_max`` is the per-channel tensor ``[sigma_max] * x_channels + [sigma_y_max] * y_channels``
    shaped ``(C, 1, ..., 1)`` with ``event_ndim - 1`` trailing ones (``(C, 1, 1)`` for images,
    ``(d,)`` for flat data).
    """
    smax = torch.tensor([float(sigma_max)] * x_channels + [float(sigma_y_max)] * y_channels, dtype=torch.float64)
    return VE(sigma_min, smax.reshape(-1, *([1] * (event_ndim - 1))), T=T, eps=eps)


def likelihood_weighting(sde: SDE, t: Tensor, like: Tensor) -> Tensor:
    """Lambda_MLE(t) of Theorem 3: the diagonal g_i(t)^2, right-aligned to ``like: (n, *event)``.

    For a scalar SDE this is the likelihood weighting lambda(t) = g(t)^2 of Song et al. (2021).
    """
    return sde.coefficients(t, like.ndim - 1, like=like).g2


def weighted_score_loss(score: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """1/2 mean_n [ v^T diag(weight) v ], v = target - score, summed over the event (eq. 12-14).

    Parameters
    ----------
    score, target : (n, *event)
    weight : broadcastable to ``(n, *event)``, the diagonal of Lambda(t).
    """
    if score.shape != target.shape:
        raise ValueError(f"score shape {tuple(score.shape)} differs from target shape {tuple(target.shape)}")
    return 0.5 * (weight * (target - score) ** 2).flatten(1).sum(1).mean()


def _diffused_and_condition(estimator, x0: Tensor, y: Tensor, aux: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """(v_0, cond): v_0 = x_0 (CDE) or z_0 = (x_0, y) (joint); cond = (y, aux) (CDE) or aux (joint)."""
    if estimator.kind == "cde":
        return x0, torch.cat([y, aux], 1) if aux is not None else y
    return torch.cat([x0, y], 1), aux


def score_matching_loss(
    estimator,
    x0: Tensor,
    y: Tensor,
    aux: Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
    t: Tensor | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    r"""Denoising score matching with likelihood weighting: eq. 12 (CDE), 13 (CDiffE), 14 (CMDE).

    1. t ~ U(eps, T); v_0 = x_0 (CDE) or z_0 = (x_0, y) (joint).
    2. v_t = alpha(t) v_0 + sigma(t) noise with the estimator's SDE (per-channel speeds for CMDE).
    3. target = grad_{v_t} log p(v_t | v_0) = -noise / sigma(t).
    4. loss = 1/2 mean [ (target - s)^T Lambda_MLE(t) (target - s) ], Lambda_MLE = diag(g^2).

    Parameters
    ----------
    estimator : an estimator following the protocol of the module docstring.
    x0 : (n, C_x, ...) clean targets.
    y : (n, C_y, ...) condition (undiffused).
    aux : (n, A, ...) operator channels or None.
    generator : torch.Generator, optional; draws t and the noise when they are not given.
    t : (n,), optional fixed times in [eps, T].
    noise : like v_0, optional fixed standard normal noise.

    Returns
    -------
    Scalar loss.
    """
    if x0.ndim < 2 or y.ndim != x0.ndim or y.shape[0] != x0.shape[0]:
        raise ValueError(f"x0 {tuple(x0.shape)} and y {tuple(y.shape)} must have the same rank and batch size")
    if aux is not None and (aux.ndim != x0.ndim or aux.shape[0] != x0.shape[0]):
        raise ValueError(f"aux must have shape (n, A, ...) matching x0, got {tuple(aux.shape)}")
    sde = estimator.sde
    n = x0.shape[0]
    v0, cond = _diffused_and_condition(estimator, x0, y, aux)
    if t is None:
        u = torch.rand(n, generator=generator, dtype=x0.dtype, device=x0.device)
        t = sde.eps + (sde.T - sde.eps) * u
    elif t.shape != (n,):
        raise ValueError(f"t must have shape (n,) = ({n},), got {tuple(t.shape)}")
    if noise is None:
        noise = torch.randn(v0.shape, generator=generator, dtype=v0.dtype, device=v0.device)
    elif noise.shape != v0.shape:
        raise ValueError(f"noise must have shape {tuple(v0.shape)}, got {tuple(noise.shape)}")
    mean, std = sde.marginal(v0, t)
    v_t = mean + std * noise
    target = -noise / std
    return weighted_score_loss(estimator(v_t, t, cond), target, likelihood_weighting(sde, t, v0))


def conditional_score(
    estimator,
    x_t: Tensor,
    t: Tensor,
    y: Tensor,
    aux: Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Estimate of grad_{x_t} log p(x_t | y) used by the conditional reverse SDE (eq. 11, §3.4.2).

    CDE: s_theta(x_t, y, t). CDiffE / CMDE: draw y^_t ~ p(y_t | y) afresh (one draw per row and
    call) and return the x-block of the joint score s_theta((x_t, y^_t), t)[:C_x].

    Parameters
    ----------
    estimator : an estimator following the protocol of the module docstring.
    x_t : (n, C_x, ...)
    t : (n,) forward times.
    y : (n, C_y, ...) the (undiffused) condition.
    aux : (n, A, ...) or None.
    generator : torch.Generator, optional; draws y^_t.

    Returns
    -------
    (n, C_x, ...)
    """
    if y.shape[0] != x_t.shape[0] or y.ndim != x_t.ndim:
        raise ValueError(f"y {tuple(y.shape)} must have x_t's rank and batch size {tuple(x_t.shape)}")
    if estimator.kind == "cde":
        return estimator(x_t, t, torch.cat([y, aux], 1) if aux is not None else y)
    mean, std = estimator.sde_y.marginal(y, t)
    y_t = mean + std * torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    return estimator(torch.cat([x_t, y_t], 1), t, aux)[:, : estimator.x_channels]
