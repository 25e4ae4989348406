r"""The exact oracle: scores and posteriors of Gaussian and Gaussian-mixture data.

For data N(m, Sigma) diffused by any SDE of :mod:`smcdiff.sde` (uniform or per coordinate),

    x_t ~ N(A_t m, A_t Sigma A_t + S_t^2),   A_t = diag(alpha(t)),  S_t = diag(sigma(t)),

so the score is -(A_t Sigma A_t + S_t^2)^{-1} (x - A_t m). A mixture sum_k w_k N(m_k, Sigma_k) stays a
mixture with the same weights; its score is the responsibility-weighted sum of component scores.

Conditioning on observed coordinates uses the masked-identity trick, which handles a different mask
per row without gathering: with P = diag(mask) and Sigma~ = P Sigma P + (I - P),

    post_mean = m + Sigma P Sigma~^{-1} P (y - m),   post_cov = Sigma - Sigma P Sigma~^{-1} P Sigma,

which equals the usual Schur-complement formulas on the unobserved block, gives y with zero variance
on the observed block, and log N(y_o; m_o, Sigma_oo) through Sigma~ (the identity block adds nothing).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..sde import SDE

__all__ = [
    "GaussianScore",
    "GaussianMixtureScore",
    "gaussian_posterior",
    "gaussian_mixture_posterior",
    "linear_gaussian_posterior",
    "linear_gaussian_mixture_posterior",
]


def _check_finite(name: str, value: Tensor) -> None:
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} must be finite")


def _check_spd(name: str, cov: Tensor) -> None:
    _check_finite(name, cov)
    if not torch.allclose(cov, cov.transpose(-1, -2), rtol=1e-6, atol=1e-8 * cov.abs().max().item()):
        raise ValueError(f"{name} must be symmetric")
    if torch.linalg.cholesky_ex(cov).info.any():
        raise ValueError(f"{name} must be positive definite")


class GaussianMixtureScore(nn.Module):
    """Exact score of sum_k w_k N(m_k, Sigma_k) data diffused by ``sde``.

    Parameters
    ----------
    weights : (K,) non-negative, normalised here.
    means : (K, d)
    covs : (K, d, d) symmetric positive definite.
    sde : SDE whose schedule broadcasts to ``(d,)``.

    Notes
    -----
    For an SDE with scalar schedules the covariances are diagonalised once, Sigma_k = U diag(l) U^T,
    and A Sigma A + S^2 = U diag(alpha^2 l + sigma^2) U^T at every time: each call costs O(K n d^2)
    with a different time per row allowed. For per-coordinate schedules the covariance at each distinct
    time of the batch is factorised by Cholesky (the samplers use one time per step).
    """

    def __init__(self, weights: Tensor, means: Tensor, covs: Tensor, sde: SDE) -> None:
        super().__init__()
        weights, means, covs = (torch.as_tensor(v, dtype=torch.float64) for v in (weights, means, covs))
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, d), got {tuple(means.shape)}")
        k, d = means.shape
        if weights.shape != (k,):
            raise ValueError(f"weights must have shape (K,) = ({k},), got {tuple(weights.shape)}")
        if covs.shape != (k, d, d):
            raise ValueError(f"covs must have shape (K, d, d) = ({k}, {d}, {d}), got {tuple(covs.shape)}")
        _check_finite("weights", weights)
        _check_finite("means", means)
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        _check_spd("covs", covs)
        sde.check_event_shape((d,), "means")
        self.sde = sde
        self.dim = d
        self.register_buffer("log_weights", (weights / weights.sum()).log())
        self.register_buffer("means", means)
        self.register_buffer("covs", covs)
        self.uniform = sde.param_shape == torch.Size([])
        if self.uniform:
            evals, evecs = torch.linalg.eigh(covs)
            self.register_buffer("evals", evals)
            self.register_buffer("evecs", evecs)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.score_and_log_prob(x, t)[0]

    def log_prob(self, x: Tensor, t: Tensor) -> Tensor:
        """log p_t(x), shape ``(n,)``."""
        return self.score_and_log_prob(x, t)[1]

    def score_and_log_prob(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Score ``(n, d)`` and log density ``(n,)`` of the diffused mixture at ``x: (n, d)``, ``t: (n,)``."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}), got {tuple(x.shape)}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape (n,) = ({x.shape[0]},), got {tuple(t.shape)}")
        b = self._buffers_like(x)
        c = self.sde.coefficients(t, 1, like=x)  # alpha, sigma2: (n, 1) or (n, d)
        resid = x[None] - c.alpha[None] * b["means"][:, None, :]  # (K, n, d)
        if self.uniform:
            score_k, quad, logdet = self._uniform_terms(resid, c.alpha, c.sigma2, b)
        else:
            score_k, quad, logdet = self._general_terms(resid, t, c.alpha, c.sigma2, b)
        log_comp = b["log_weights"][:, None] - 0.5 * (quad + logdet + self.dim * math.log(2 * math.pi))  # (K, n)
        log_p = torch.logsumexp(log_comp, dim=0)
        resp = torch.softmax(log_comp, dim=0)
        return torch.einsum("kn,knd->nd", resp, score_k), log_p

    def _buffers_like(self, x: Tensor) -> dict[str, Tensor]:
        """The buffers in ``x``'s dtype and device, cast once per (device, dtype) and cached."""
        key = (x.device, x.dtype, *(b.data_ptr() for b in self.buffers()))
        if getattr(self, "_cast_key", None) != key:
            self._cast = {n: v.to(x) for n, v in self.named_buffers()}
            self._cast_key = key
        return self._cast

    @staticmethod
    def _uniform_terms(resid, alpha, sigma2, b):
        lam = alpha[None] ** 2 * b["evals"][:, None, :] + sigma2[None]  # (K, n, d)
        proj = torch.einsum("knd,kde->kne", resid, b["evecs"])
        score_k = -torch.einsum("kne,kde->knd", proj / lam, b["evecs"])
        return score_k, (proj**2 / lam).sum(-1), lam.log().sum(-1)

    @staticmethod
    def _general_terms(resid, t, alpha, sigma2, b):
        score_k = torch.empty_like(resid)
        quad = resid.new_empty(resid.shape[:2])
        logdet = resid.new_empty(resid.shape[:2])
        times, inverse = torch.unique(t, return_inverse=True)
        for j in range(times.shape[0]):  # distinct times: one per sampler step
            rows = (inverse == j).nonzero().squeeze(1)
            a, s2 = alpha[rows[0]], sigma2[rows[0]]
            cov_t = a[:, None] * b["covs"] * a[None, :] + torch.diag_embed(s2.expand(a.shape))
            chol = torch.linalg.cholesky(cov_t)  # (K, d, d)
            r = resid[:, rows, :].transpose(1, 2)  # (K, d, m)
            z = torch.linalg.solve_triangular(chol, r, upper=False)
            score_k[:, rows, :] = -torch.cholesky_solve(r, chol).transpose(1, 2)
            quad[:, rows] = (z**2).sum(1)
            logdet[:, rows] = 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1, keepdim=True)
        return score_k, quad, logdet


class GaussianScore(GaussianMixtureScore):
    """Exact score of N(mean, cov) data diffused by ``sde``; ``mean: (d,)``, ``cov: (d, d)``."""

    def __init__(self, mean: Tensor, cov: Tensor, sde: SDE) -> None:
        mean, cov = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(cov, dtype=torch.float64)
        if mean.ndim != 1:
            raise ValueError(f"mean must have shape (d,), got {tuple(mean.shape)}")
        if cov.shape != (mean.shape[0], mean.shape[0]):
            raise ValueError(f"cov must have shape (d, d) = ({mean.shape[0]}, {mean.shape[0]}), got {tuple(cov.shape)}")
        super().__init__(torch.ones(1, dtype=torch.float64), mean[None], cov[None], sde)


def _condition(mean: Tensor, cov: Tensor, mask: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Broadcasting core: posterior mean ``(..., d)``, covariance ``(..., d, d)``, log N(y_o; m_o, Sigma_oo) ``(...)``."""
    p = mask.to(cov.dtype)
    cov_tilde = p[..., :, None] * cov * p[..., None, :] + torch.diag_embed(1 - p)
    chol = torch.linalg.cholesky(cov_tilde)
    resid = p * (y - mean)
    sol = torch.cholesky_solve(resid[..., None], chol)[..., 0]  # Sigma~^{-1} P (y - m)
    post_mean = mean + (cov @ (p * sol)[..., None])[..., 0]
    gain = torch.cholesky_solve(p[..., :, None] * cov, chol)  # Sigma~^{-1} P Sigma
    post_cov = cov - (cov * p[..., None, :]) @ gain
    post_cov = 0.5 * (post_cov + post_cov.transpose(-1, -2))
    n_obs = p.sum(-1)
    log_lik = -0.5 * ((resid * sol).sum(-1) + 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)) - 0.5 * n_obs * math.log(
        2 * math.pi
    )
    return post_mean, post_cov, log_lik


def _observation(mask: Tensor, y: Tensor, d: int) -> tuple[Tensor, Tensor]:
    mask, y = torch.as_tensor(mask), torch.as_tensor(y, dtype=torch.float64)
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor, got dtype {mask.dtype}")
    y = y.reshape(1, -1) if y.ndim == 1 else y
    if y.ndim != 2 or y.shape[1] != d:
        raise ValueError(f"y must have shape (B, {d}) or ({d},), got {tuple(y.shape)}")
    try:
        mask = torch.broadcast_to(mask, y.shape)
    except RuntimeError as err:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to y's shape {tuple(y.shape)}") from err
    _check_finite("y", torch.where(mask, y, torch.zeros_like(y)))
    return mask, torch.where(mask, y, torch.zeros_like(y))


def gaussian_posterior(mean: Tensor, cov: Tensor, mask: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Exact law of x given its observed coordinates, for x ~ N(mean, cov).

    Parameters
    ----------
    mean : (d,) or (B, d)
    cov : (d, d) or (B, d, d)
    mask : bool, broadcastable to ``(B, d)``; True = observed.
    y : (B, d) or (d,); values where ``mask`` is False are ignored.

    Returns
    -------
    post_mean : (B, d), equal to ``y`` on observed coordinates.
    post_cov : (B, d, d), zero on observed rows and columns.
    """
    mean, cov = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(cov, dtype=torch.float64)
    d = mean.shape[-1]
    if cov.shape[-2:] != (d, d):
        raise ValueError(f"cov must have shape (..., {d}, {d}), got {tuple(cov.shape)}")
    _check_finite("mean", mean)
    _check_spd("cov", cov)
    mask, y = _observation(mask, y, d)
    post_mean, post_cov, _ = _condition(mean, cov, mask, y)
    return post_mean, post_cov


def _check_mixture(weights, means, covs) -> tuple[Tensor, Tensor, Tensor]:
    """The mixture's parameters in float64, checked: weights (K,), means (K, d), covs (K, d, d) SPD."""
    weights, means, covs = (torch.as_tensor(v, dtype=torch.float64) for v in (weights, means, covs))
    if means.ndim != 2:
        raise ValueError(f"means must have shape (K, d), got {tuple(means.shape)}")
    k, d = means.shape
    if weights.shape != (k,) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"weights must be non-negative with shape ({k},) and a positive sum")
    if covs.shape != (k, d, d):
        raise ValueError(f"covs must have shape ({k}, {d}, {d}), got {tuple(covs.shape)}")
    _check_spd("covs", covs)
    return weights, means, covs


def gaussian_mixture_posterior(
    weights: Tensor, means: Tensor, covs: Tensor, mask: Tensor, y: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Exact law of x given its observed coordinates, for x ~ sum_k w_k N(m_k, Sigma_k).

    The posterior is a mixture of the conditioned components with weights proportional to
    w_k N(y_o; m_{k,o}, Sigma_{k,oo}).

    Returns
    -------
    post_weights : (B, K)
    post_means : (B, K, d)
    post_covs : (B, K, d, d)
    """
    weights, means, covs = _check_mixture(weights, means, covs)
    d = means.shape[1]
    mask, y = _observation(mask, y, d)
    post_means, post_covs, log_lik = _condition(means[None], covs[None], mask[:, None, :], y[:, None, :])
    post_weights = torch.softmax((weights / weights.sum()).log()[None] + log_lik, dim=-1)
    return post_weights, post_means, post_covs


# ---- linear observations y = A x + sigma_y eps ----------------------------------------------------
def _singular_observation(operator, y: Tensor, noise_std: float, d: int):
    """(H (B, r, d), y_bar (B, r), noise variances (B, r), observed (B, r)) of y = A x + sigma_y eps in
    the singular basis: the rows of H are the observed right singular vectors (padded rows are masked)."""
    from ..operators import as_operator

    y = torch.as_tensor(y, dtype=torch.float64)
    if not (isinstance(noise_std, (int, float)) and math.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
    op = as_operator(operator, y)
    if math.prod(op.in_shape) != d:
        raise ValueError(f"the operator takes {math.prod(op.in_shape)} inputs but the prior has dimension {d}")
    basis = op.Vt(torch.eye(d, dtype=torch.float64).reshape(d, *op.in_shape)).reshape(d, -1).T  # (coefs, d): V^T
    b = y.shape[0]
    observed = torch.broadcast_to(op.observed, (b, *op.coef_shape)).reshape(b, -1)
    s = torch.broadcast_to(op.s.to(torch.float64), (b, *op.coef_shape)).reshape(b, -1)
    ybar = op.coefficients(y).reshape(b, -1)
    _check_finite("y", torch.where(observed, ybar, torch.zeros_like(ybar)))
    noise = torch.where(observed, noise_std**2 / torch.where(observed, s, torch.ones_like(s)) ** 2, torch.ones_like(s))
    return basis, ybar, noise, observed


def _condition_linear(mean: Tensor, cov: Tensor, basis: Tensor, ybar: Tensor, noise: Tensor, observed: Tensor):
    """Posterior mean (..., d), covariance (..., d, d) and log N(y_bar_obs; H m, H Sigma H^T + R) (...).

    Unobserved coefficients enter with a unit-variance identity block that is cut from the prior's
    coupling (the masked-identity trick of :func:`_condition`), so rows with different masks stack.
    """
    p = observed.to(cov.dtype)
    proj_cov = basis @ cov  # (..., r, d): H Sigma
    s_mat = p[..., :, None] * (proj_cov @ basis.T) * p[..., None, :] + torch.diag_embed(p * noise + (1 - p))
    chol = torch.linalg.cholesky(s_mat)
    resid = p * (ybar - (basis @ mean[..., None])[..., 0])
    sol = torch.cholesky_solve(resid[..., None], chol)[..., 0]
    gain_t = p[..., :, None] * proj_cov  # (..., r, d)
    post_mean = mean + (gain_t.transpose(-1, -2) @ sol[..., None])[..., 0]
    post_cov = cov - gain_t.transpose(-1, -2) @ torch.cholesky_solve(gain_t, chol)
    post_cov = 0.5 * (post_cov + post_cov.transpose(-1, -2))
    n_obs = p.sum(-1)
    log_lik = -0.5 * ((resid * sol).sum(-1) + 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)) - 0.5 * n_obs * math.log(2 * math.pi)
    return post_mean, post_cov, log_lik


def linear_gaussian_posterior(mean: Tensor, cov: Tensor, operator, y: Tensor, noise_std: float = 0.0) -> tuple[Tensor, Tensor]:
    """Exact law of x given y = A x + noise_std * eps, for x ~ N(mean, cov) (flat, ``d`` coordinates).

    Parameters
    ----------
    mean : (d,); cov : (d, d) symmetric positive definite.
    operator : an :class:`smcdiff.operators.Operator` on inputs of ``d`` elements, or a bool mask.
    y : (B, *observation_shape).
    noise_std : sigma_y >= 0 (0: the observed singular coefficients are known exactly).

    Returns
    -------
    post_mean : (B, d)
    post_cov : (B, d, d)

    Notes
    -----
    In the singular basis y_bar = H x + N(0, R) with H the observed rows of V^T and R = sigma_y^2 / s^2,
    so post_mean = m + Sigma H^T S^{-1} (y_bar - H m), post_cov = Sigma - Sigma H^T S^{-1} H Sigma with
    S = H Sigma H^T + R; R = 0 is allowed because S stays positive definite.
    """
    mean, cov = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(cov, dtype=torch.float64)
    d = mean.shape[-1]
    _check_finite("mean", mean)
    _check_spd("cov", cov)
    basis, ybar, noise, observed = _singular_observation(operator, y, noise_std, d)
    post_mean, post_cov, _ = _condition_linear(mean, cov, basis, ybar, noise, observed)
    return post_mean, post_cov


def linear_gaussian_mixture_posterior(
    weights: Tensor, means: Tensor, covs: Tensor, operator, y: Tensor, noise_std: float = 0.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Exact law of x given y = A x + noise_std * eps, for x ~ sum_k w_k N(m_k, Sigma_k).

    A mixture of the conditioned components with weights proportional to w_k N(y_bar; H m_k, H Sigma_k H^T + R)
    (see :func:`linear_gaussian_posterior`).

    Returns
    -------
    post_weights : (B, K); post_means : (B, K, d); post_covs : (B, K, d, d)
    """
    weights, means, covs = _check_mixture(weights, means, covs)
    d = means.shape[1]
    basis, ybar, noise, observed = _singular_observation(operator, y, noise_std, d)
    post_means, post_covs, log_lik = _condition_linear(
        means[None], covs[None], basis, ybar[:, None], noise[:, None], observed[:, None]
    )
    post_weights = torch.softmax((weights / weights.sum()).log()[None] + log_lik, dim=-1)
    return post_weights, post_means, post_covs
