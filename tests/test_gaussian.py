"""The Gaussian oracle: scores against autograd of the exact density, posteriors against closed forms.

The diffused densities take alpha(t) and sigma(t)^2 from :mod:`reference` (the tests' own closed forms),
not from the library's SDEs.
"""

import pytest
import reference as ref
import torch

from smcdiff import (
    OU,
    VE,
    VP,
    GaussianMixtureScore,
    GaussianScore,
    LogLinearVP,
    gaussian_mixture_posterior,
    gaussian_posterior,
)


def random_spd(d, generator, scale=1.0):
    a = torch.randn(d, d, generator=generator, dtype=torch.float64)
    return scale * (a @ a.T / d + 0.2 * torch.eye(d, dtype=torch.float64))


T_END = torch.linspace(0.3, 1.0, 5, dtype=torch.float64)
SDES = {
    "OU": (OU(), ref.ou()),
    "VP": (VP(), ref.vp()),
    "VE": (VE(sigma_max=10.0), ref.ve(sigma_max=10.0)),
    "LogLinearVP": (LogLinearVP(t_end=T_END), ref.loglinear_vp(t_end=T_END)),
}


def schedule_at(schedule, t, d):
    """alpha and sigma^2 of ``schedule`` at times ``t: (n,)``, each ``(n, d)``."""
    values = [schedule.coefficients(v, d) for v in t.tolist()]
    return torch.stack([v[0] for v in values]), torch.stack([v[1] for v in values])


@pytest.mark.parametrize("name", sorted(SDES))
def test_mixture_score_is_gradient_of_log_density(name):
    """score == grad log p_t, with log p_t computed independently from the diffused mixture."""
    sde, schedule = SDES[name]
    g = torch.Generator().manual_seed(0)
    d, k = 5, 3
    means = torch.randn(k, d, generator=g, dtype=torch.float64)
    covs = torch.stack([random_spd(d, g) for _ in range(k)])
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    score = GaussianMixtureScore(weights, means, covs, sde)
    x = torch.randn(7, d, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0.05, 0.9, 7, dtype=torch.float64)
    a, s2 = schedule_at(schedule, t, d)
    cov_t = a[:, None, :, None] * covs[None] * a[:, None, None, :] + torch.diag_embed(s2)[:, None]
    mvn = torch.distributions.MultivariateNormal(a[:, None] * means[None], covariance_matrix=cov_t)
    log_p = torch.logsumexp(weights.log() + mvn.log_prob(x[:, None]), dim=1)
    (grad,) = torch.autograd.grad(log_p.sum(), x)
    got, got_log_p = score.score_and_log_prob(x.detach(), t)
    assert torch.allclose(got, grad, atol=1e-9)
    assert torch.allclose(got_log_p, log_p.detach(), atol=1e-9)


def test_gaussian_score_is_one_component_mixture():
    g = torch.Generator().manual_seed(1)
    d = 4
    mean, cov = torch.randn(d, generator=g, dtype=torch.float64), random_spd(d, g)
    sde = VP()
    x, t = torch.randn(3, d, generator=g, dtype=torch.float64), torch.full((3,), 0.4, dtype=torch.float64)
    alpha, sigma2, _, _ = ref.vp().coefficients(0.4, 1)
    cov_t = alpha**2 * cov + sigma2 * torch.eye(d, dtype=torch.float64)
    expected = -torch.linalg.solve(cov_t, (x - alpha * mean).T).T
    assert torch.allclose(GaussianScore(mean, cov, sde)(x, t), expected, atol=1e-10)


def test_posterior_matches_schur_complement_per_row():
    g = torch.Generator().manual_seed(2)
    d, b = 6, 4
    mean, cov = torch.randn(d, generator=g, dtype=torch.float64), random_spd(d, g)
    mask = torch.rand(b, d, generator=g) < 0.5
    mask[0] = False
    mask[1] = True
    y = torch.randn(b, d, generator=g, dtype=torch.float64)
    post_mean, post_cov = gaussian_posterior(mean, cov, mask, y)
    for r in range(b):
        o, u = mask[r], ~mask[r]
        exp_mean, exp_cov = mean.clone(), torch.zeros(d, d, dtype=torch.float64)
        exp_mean[o] = y[r, o]
        if o.any():
            gain = cov[u][:, o] @ torch.linalg.inv(cov[o][:, o])
            exp_mean[u] = mean[u] + gain @ (y[r, o] - mean[o])
            cond = cov[u][:, u] - gain @ cov[o][:, u]
        else:
            cond = cov[u][:, u]
        exp_cov[u.nonzero()[:, 0][:, None], u.nonzero()[:, 0][None, :]] = cond
        assert torch.allclose(post_mean[r], exp_mean, atol=1e-10)
        assert torch.allclose(post_cov[r], exp_cov, atol=1e-10)


def test_slides_example_posterior():
    cov = torch.tensor([[1.0, 1.5], [1.5, 5.0]], dtype=torch.float64)
    m, c = gaussian_posterior(torch.zeros(2), cov, torch.tensor([True, False]), torch.tensor([1.0, 0.0]))
    assert m[0, 1].item() == pytest.approx(1.5) and c[0, 1, 1].item() == pytest.approx(2.75)


def test_mixture_posterior_weights_by_bayes_rule():
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
    covs = torch.eye(2, dtype=torch.float64).expand(2, 2, 2)
    w = torch.tensor([0.3, 0.7], dtype=torch.float64)
    y = torch.tensor([[0.5, 0.0]], dtype=torch.float64)
    pw, pm, pc = gaussian_mixture_posterior(w, means, covs, torch.tensor([True, False]), y)
    lik = torch.exp(-0.5 * (0.5 - means[:, 0]) ** 2)
    assert torch.allclose(pw[0], w * lik / (w * lik).sum(), atol=1e-12)
    assert torch.allclose(pm[0, :, 1], means[:, 1])
    assert pm.shape == (1, 2, 2) and pc.shape == (1, 2, 2, 2)


def test_bad_inputs():
    sde = OU()
    bad = torch.tensor([[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="cov.*positive definite"):
        GaussianScore(torch.zeros(2), bad, sde)
    with pytest.raises(ValueError, match="symmetric"):
        GaussianScore(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]), sde)
    with pytest.raises(ValueError, match="cov must have shape"):
        GaussianScore(torch.zeros(2), torch.eye(3), sde)
    with pytest.raises(ValueError, match="mean"):
        GaussianScore(torch.tensor([0.0, float("inf")]), torch.eye(2), sde)
    with pytest.raises(ValueError, match="weights"):
        GaussianMixtureScore(torch.tensor([-1.0, 2.0]), torch.zeros(2, 2), torch.eye(2).expand(2, 2, 2), sde)
    with pytest.raises(ValueError, match="means"):
        GaussianScore(torch.zeros(3), torch.eye(3), VP(beta_max=torch.full((2,), 20.0)))
    score = GaussianScore(torch.zeros(2), torch.eye(2), sde)
    with pytest.raises(ValueError, match="x must have shape"):
        score(torch.zeros(3, 5), torch.ones(3))
    with pytest.raises(ValueError, match="t must have shape"):
        score(torch.zeros(3, 2), torch.ones(2))
    with pytest.raises(ValueError, match="mask"):
        gaussian_posterior(torch.zeros(2), torch.eye(2), torch.tensor([1, 0]), torch.zeros(2))
    with pytest.raises(ValueError, match="y must have shape"):
        gaussian_posterior(torch.zeros(2), torch.eye(2), torch.tensor([True, False]), torch.zeros(3))
    with pytest.raises(ValueError, match="y must be finite"):
        gaussian_posterior(torch.zeros(2), torch.eye(2), torch.tensor([True, False]), torch.tensor([float("nan"), 0.0]))
