"""Unconditional sampler: exact in law up to discretisation, on every SDE we support.

For Gaussian data the Euler-Maruyama chain is linear, so the law of the sampler's output is known
exactly; the tests take it, and the true law, from :mod:`reference` (the tests' own closed forms of the
schedules, grid and kernels), which must agree with ``smcdiff.oracle.linear_gaussian.discretised_law``.
Each test checks two things separately:
(1) Monte Carlo: sampled mean/covariance vs the discretised law, within 4 standard errors;
(2) discretisation: the discretised law vs the true law p_eps, an allowance that shrinks with steps.
"""

import math

import pytest
import reference as ref
import torch

from smcdiff import OU, VE, VP, GaussianMixtureScore, GaussianScore, LogLinearVP, sample
from smcdiff.oracle.linear_gaussian import discretised_law

D = 16


def problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(D, D, generator=g, dtype=torch.float64)
    cov = a @ a.T / D + 0.1 * torch.eye(D, dtype=torch.float64)
    return torch.randn(D, generator=g, dtype=torch.float64), cov


def true_law(schedule, mean, cov, t=None):
    """The law N(alpha m, alpha Sigma alpha + sigma^2) of the data diffused to ``t`` (default eps)."""
    a, s2, _, _ = schedule.coefficients(schedule.eps if t is None else t, D)
    return a * mean, a[:, None] * cov * a[None] + torch.diag(s2)


T_END = torch.linspace(0.25, 1.0, D, dtype=torch.float64)
SDES = {
    "ou": OU(),
    "vp": VP(),
    "ve": VE(sigma_max=30.0),
    "vp-nonuniform": LogLinearVP(snr_max=1e4, snr_min=1e-4, t_end=T_END),
}
SCHEDULES = {
    "ou": ref.ou(),
    "vp": ref.vp(),
    "ve": ref.ve(sigma_max=30.0),
    "vp-nonuniform": ref.loglinear_vp(snr_max=1e4, snr_min=1e-4, t_end=T_END),
}


def assert_moments_within(x, mean, cov, n_se=4.0):
    n = x.shape[0]
    var = cov.diagonal()
    se_mean = (var / n).sqrt()
    assert ((x.mean(0) - mean).abs() <= n_se * se_mean).all(), (x.mean(0) - mean).abs().max()
    se_cov = ((var[:, None] * var[None] + cov**2) / n).sqrt()
    emp = torch.cov(x.T)
    # Bonferroni over the d(d+1)/2 entries: 4 SE per entry is a 6e-5 two-sided level each.
    assert ((emp - cov).abs() <= n_se * se_cov + 1e-12).all(), ((emp - cov).abs() / se_cov).max()


@pytest.mark.parametrize("kernel", ["euler", "ancestral"])
@pytest.mark.parametrize("name", sorted(SDES))
def test_reference_law_agrees_with_the_oracle(name, kernel):
    """The tests' own discretised law (closed-form schedule, grid, kernels) equals smcdiff.oracle's to 1e-10."""
    sde, schedule = SDES[name], SCHEDULES[name]
    mean, cov = problem()
    score = GaussianScore(mean, cov, sde)
    start = true_law(schedule, mean, cov, schedule.T)
    for got, oracle in [
        (ref.discretised_law(schedule, mean, cov, 50, kernel), discretised_law(score, sde, 50, D, kernel=kernel)),
        (ref.discretised_law(schedule, mean, cov, 50, kernel, start), discretised_law(score, sde, 50, D, start, kernel)),
    ]:
        for a, b in zip(got, oracle):
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-10), (a - b).abs().max()


@pytest.mark.slow
@pytest.mark.parametrize("kernel, steps", [("euler", 100), ("ancestral", 25)])
@pytest.mark.parametrize("name", sorted(SDES))
def test_sampler_matches_discretised_law(name, kernel, steps):
    sde = SDES[name]
    mean, cov = problem()
    score = GaussianScore(mean, cov, sde)
    x = sample(score, sde, (20_000, D), steps=steps, kernel=kernel, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    d_mean, d_cov = ref.discretised_law(SCHEDULES[name], mean, cov, steps, kernel)
    assert_moments_within(x, d_mean, d_cov)


@pytest.mark.parametrize("name", sorted(SDES))
def test_discretisation_allowance_shrinks_with_steps(name):
    """The distance of the discretised law to the true p_eps decreases as steps grow, towards zero.

    The chain starts from the exact p_T so that only the discretisation error is measured (the prior
    mismatch at T is a separate, step-independent term, visible for VE whose mean never contracts).
    """
    schedule = SCHEDULES[name]
    mean, cov = problem()
    t_mean, t_cov = true_law(schedule, mean, cov)
    p_T = true_law(schedule, mean, cov, schedule.T)
    errors = []
    for steps in (50, 200, 800):
        d_mean, d_cov = ref.discretised_law(schedule, mean, cov, steps, start=p_T)
        errors.append(max((d_mean - t_mean).abs().max().item(), (d_cov - t_cov).abs().max().item()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.05 * t_cov.diagonal().max().item()


@pytest.mark.slow
def test_sampler_recovers_true_law_within_se_plus_allowance():
    """End to end against the true law: |error| <= 4 SE + the discretisation allowance at that step count."""
    sde = VP()
    mean, cov = problem(3)
    score = GaussianScore(mean, cov, sde)
    steps = 400
    x = sample(score, sde, (20_000, D), steps=steps, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    t_mean, t_cov = true_law(SCHEDULES["vp"], mean, cov)
    d_mean, d_cov = ref.discretised_law(SCHEDULES["vp"], mean, cov, steps)
    n, var = x.shape[0], t_cov.diagonal()
    allowance_mean = (d_mean - t_mean).abs()
    allowance_cov = (d_cov - t_cov).abs()
    assert ((x.mean(0) - t_mean).abs() <= 4 * (var / n).sqrt() + allowance_mean).all()
    se_cov = ((var[:, None] * var[None] + t_cov**2) / n).sqrt()
    assert ((torch.cov(x.T) - t_cov).abs() <= 4 * se_cov + allowance_cov).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ou", "vp", "ve", "vp-nonuniform"])
def test_mixture_weights_recovered(name):
    """A well-separated 2-component mixture: the fraction of samples near each mean matches its weight."""
    sde = SDES[name]
    d = 2
    means = torch.tensor([[-3.0, -3.0], [3.0, 3.0]], dtype=torch.float64)
    covs = 0.3 * torch.eye(d, dtype=torch.float64).expand(2, d, d)
    weights = torch.tensor([0.3, 0.7], dtype=torch.float64)
    sde2 = LogLinearVP(t_end=torch.tensor([0.5, 1.0], dtype=torch.float64)) if name == "vp-nonuniform" else sde
    score = GaussianMixtureScore(weights, means, covs, sde2)
    n = 10_000
    x = sample(score, sde2, (n, d), steps=200, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    frac = (x.sum(1) > 0).double().mean().item()
    se = math.sqrt(0.7 * 0.3 / n)
    allowance = 0.01  # Euler-Maruyama at 200 steps; the Gaussian tests above quantify the discretisation error
    assert abs(frac - 0.7) <= 4 * se + allowance


def test_ode_sampler_and_tweedie():
    """The probability-flow ODE reaches the same law; Tweedie's denoiser shrinks toward E[x0 | x_eps]."""
    sde = VP()
    mean, cov = problem(4)
    score = GaussianScore(mean, cov, sde)
    g = torch.Generator().manual_seed(5)
    x = sample(score, sde, (10_000, D), steps=200, method="ode", generator=g, dtype=torch.float64)
    t_mean, t_cov = true_law(SCHEDULES["vp"], mean, cov)
    n, var = x.shape[0], t_cov.diagonal()
    assert ((x.mean(0) - t_mean).abs() <= 4 * (var / n).sqrt() + 0.02).all()
    assert ((torch.cov(x.T) - t_cov).abs() <= 0.05 * var.max()).all()
    xd = sample(score, sde, (4, D), steps=20, denoise_last=True, generator=g, dtype=torch.float64)
    assert xd.shape == (4, D) and torch.isfinite(xd).all()


def test_callback_progress_and_chunks_do_not_change_results():
    sde = VP()
    mean, cov = problem()
    score = GaussianScore(mean, cov, sde)
    seen = []
    a = sample(score, sde, (10, D), steps=5, generator=torch.Generator().manual_seed(0), callback=lambda info: seen.append(info.step))
    b = sample(score, sde, (10, D), steps=5, generator=torch.Generator().manual_seed(0), chunk_size=3, progress=True)
    assert seen == [4, 3, 2, 1, 0]
    assert torch.allclose(a, b, atol=1e-5)


def test_images_and_float32():
    sde = VP()
    score = lambda x, t: -x  # N(0, 1)-ish toy score, image-shaped
    x = sample(score, sde, (3, 1, 4, 4), steps=10, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 4, 4) and x.dtype == torch.float32


def test_bad_inputs():
    sde = VP()
    score = GaussianScore(torch.zeros(2), torch.eye(2), sde)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="steps"):
        sample(score, sde, (3, 2), steps=0, generator=g)
    with pytest.raises(ValueError, match="method"):
        sample(score, sde, (3, 2), steps=2, method="heun", generator=g)
    with pytest.raises(ValueError, match="shape"):
        sample(score, sde, (3,), steps=2, generator=g)
    with pytest.raises(ValueError, match="score must be callable"):
        sample(None, sde, (3, 2), steps=2, generator=g)
    with pytest.raises(ValueError, match="score returned shape"):
        sample(lambda x, t: x[:, :1], sde, (3, 2), steps=2, generator=g)
    with pytest.raises(ValueError, match="non-finite values at step 2"):
        sample(lambda x, t: x * float("nan"), sde, (3, 2), steps=2, generator=g)
    with pytest.raises(ValueError, match="chunk_size"):
        sample(score, sde, (3, 2), steps=2, chunk_size=0, generator=g)
