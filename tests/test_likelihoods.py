"""Any differentiable likelihood through the twisted proposal, against closed forms (float64, fixed seeds).

The target of the sampler is the discretised model's posterior p_disc(x_0) p(y | x_0) / p(y), where p_disc is the
law of the unconditional reverse chain (ancestral kernel, STEPS steps) started from the prior. For Gaussian data
p_disc is Gaussian and given by :func:`reference.discretised_law` (independent of smcdiff's code), so:

- a probit likelihood Phi(w^T x + b) has a closed-form evidence, posterior mean and covariance;
- y = |x_i| + noise and a quantised x + noise factorise over coordinates for diagonal data: 1-d quadrature;
- a two-component mixture with a classifier p(c | x) (the exact Bayes classifier of the components at t = 0)
  is checked against a large unconditional sample of the discretised chain, reweighted by p(c | x).

The sharp classifier (the exact Bayes classifier, temperature 1) makes the weights heavy-tailed at small M: its
twist p(c | x0_hat(x_t)) is over-confident at high noise, so at M = 256 the weighted mean sat 4 SE from the target
(a finite-M bias, shrinking with M: 1.3 SE at M = 2,048); that test runs 1,024 particles.

Each observation is repeated REPS times in independent rows; group means of the rows' weighted estimates
are compared with the reference within 4 standard errors of the mean over rows, plus, for variances, the
finite-M shrinkage allowance of the linear-Gaussian tests (4 var / distinct lineages). E[Z_hat] = Z within 4 SE.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

import reference as ref
from smcdiff import RunOptions, smc_sample
from smcdiff.likelihoods import Classifier, GaussianLinear, GaussianNonlinear, Likelihood, Quantised, log_interval_prob
from smcdiff.operators import Dense, Mask
from smcdiff.oracle import GaussianMixtureScore, GaussianScore
from smcdiff.sampling import sample
from smcdiff.sde import VP

F64 = torch.float64
REPS, M, STEPS = 24, 256, 40
KERNEL = "ancestral"


class Probit(Likelihood):
    """p(y = 1 | x) = Phi(w^T x + b), y in {0, 1} (a user-defined likelihood: only log_prob)."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        self.w, self.b, self.event_shape = w, b, (w.numel(),)

    def log_prob(self, y, x0):
        a = x0 @ self.w + self.b
        return torch.special.log_ndtr(torch.where(y > 0.5, a, -a))


def run(score, sde, y, likelihood, seed, particles=M, **kw):
    return smc_sample(score, sde, y.repeat_interleave(REPS, 0), likelihood, proposal="twisted", particles=particles,
                      steps=STEPS, kernel=KERNEL, generator=torch.Generator().manual_seed(seed), **kw)


def grouped(v: torch.Tensor, groups: int) -> torch.Tensor:
    return v.reshape(groups, REPS, *v.shape[1:])


def assert_moments(out, groups: int, mean: torch.Tensor, var: torch.Tensor) -> None:
    """Weighted means and variances ``(groups, d)`` against the reference (see the module's docs)."""
    est = grouped(out.mean(), groups)
    se = est.std(1) / math.sqrt(REPS)
    z = (est.mean(1) - mean).abs() / (se + 1e-12)
    assert (z <= 4).all(), f"mean off by {z.max():.2f} SE"
    w = out.weights.reshape(*out.weights.shape, 1)
    v = (w * (out.particles.double() - out.mean()[:, None]) ** 2).sum(1)
    est = grouped(v, groups)
    se = est.std(1) / math.sqrt(REPS)
    lineages = grouped(out.lineages[0].double(), groups).mean(1, keepdim=True)
    allowance = 4 * var / lineages
    assert ((est.mean(1) - var).abs() <= 4 * se + allowance + 1e-12).all(), ((est.mean(1) - var).abs() / (se + 1e-12)).max()


def assert_evidence(out, groups: int, log_z: torch.Tensor) -> None:
    ratio = grouped(torch.exp(out.log_evidence - log_z.repeat_interleave(REPS)), groups)
    se = ratio.std(1) / math.sqrt(REPS)
    assert ((ratio.mean(1) - 1).abs() <= 4 * se + 1e-3).all(), (ratio.mean(1), se)


# ---- a Gaussian prior and a probit likelihood: evidence, mean and covariance in closed form ----

def probit_posterior(m: torch.Tensor, c: torch.Tensor, w: torch.Tensor, b: float, y: float):
    """log Z, mean and covariance of N(m, c) times Phi(s (w^T x + b)), s = +1 for y = 1 and -1 for y = 0."""
    sign = 1.0 if y > 0.5 else -1.0
    w, b = sign * w, sign * b
    scale = torch.sqrt(1 + w @ c @ w)
    a = (w @ m + b) / scale
    log_z = torch.special.log_ndtr(a)
    lam = torch.exp(-0.5 * a**2 - 0.5 * math.log(2 * math.pi) - log_z)
    cw = c @ w
    return log_z, m + cw * lam / scale, c - torch.outer(cw, cw) * lam * (a + lam) / scale**2


@pytest.fixture(scope="module")
def probit_runs():
    g = torch.Generator().manual_seed(3)
    d = 3
    a = torch.randn(d, d, generator=g, dtype=F64)
    mean, cov = torch.randn(d, generator=g, dtype=F64) * 0.5, a @ a.T / d + 0.3 * torch.eye(d, dtype=F64)
    w, b = torch.tensor([1.5, -1.0, 0.5], dtype=F64), 0.8
    sde = VP()
    ys = torch.tensor([1.0, 0.0], dtype=F64)
    out = run(GaussianScore(mean, cov, sde), sde, ys, Probit(w, b), seed=1)
    m, c = ref.discretised_law(ref.vp(), mean, cov, STEPS, KERNEL)
    post = [probit_posterior(m, c, w, b, float(y)) for y in ys]
    return out, post


@pytest.mark.slow
def test_probit_posterior_moments(probit_runs):
    out, post = probit_runs
    mean = torch.stack([p[1] for p in post])
    var = torch.stack([p[2].diagonal() for p in post])
    assert_moments(out, 2, mean, var)


@pytest.mark.slow
def test_probit_evidence_is_unbiased(probit_runs):
    out, post = probit_runs
    assert_evidence(out, 2, torch.stack([p[0] for p in post]))


# ---- coordinate-wise non-linear likelihoods: |x| + noise and quantisation, by quadrature ----

DIAG_MEAN = torch.tensor([0.3, -0.6], dtype=F64)
DIAG_VAR = torch.tensor([0.8, 0.4], dtype=F64)


def quadrature(m: torch.Tensor, c: torch.Tensor, log_lik) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """log Z, mean and variance per row of y of the posterior N(m_i, c_i) x lik_i, product over coordinates:
    ``log_lik(x: (n, d) grid) -> (n, d)`` log-likelihood per coordinate for one observation."""
    sd = c.sqrt()
    u = torch.linspace(-12, 12, 48001, dtype=F64)[:, None]
    x = m + sd * u
    log_w = -0.5 * u**2 - 0.5 * math.log(2 * math.pi) + log_lik(x)  # density in u
    du = u[1, 0] - u[0, 0]
    log_zi = torch.logsumexp(log_w, 0) + torch.log(du)
    p = torch.exp(log_w - torch.logsumexp(log_w, 0))
    mean = (p * x).sum(0)
    return log_zi.sum(), mean, (p * (x - mean) ** 2).sum(0)


def diagonal_case(likelihood: Likelihood, ys: torch.Tensor, log_lik, seed: int):
    sde = VP()
    cov = torch.diag(DIAG_VAR)
    out = run(GaussianScore(DIAG_MEAN, cov, sde), sde, ys, likelihood, seed=seed)
    m, c = ref.discretised_law(ref.vp(), DIAG_MEAN, cov, STEPS, KERNEL)
    assert torch.allclose(c, torch.diag(c.diagonal()), atol=1e-12)  # diagonal data stay diagonal
    post = [quadrature(m, c.diagonal(), lambda x, y=y: log_lik(y, x)) for y in ys]
    return out, post


@pytest.fixture(scope="module", params=["abs", "quantised"])
def coordinatewise_runs(request):
    if request.param == "abs":
        sigma = 0.2
        ys = torch.tensor([[0.9, 0.1], [0.2, 1.1]], dtype=F64)
        lik = GaussianNonlinear(torch.abs, sigma, event_shape=(2,))
        log_lik = lambda y, x: -0.5 * ((y - x.abs()) / sigma) ** 2 - math.log(sigma * math.sqrt(2 * math.pi))  # noqa: E731
    else:
        sigma = 0.1
        lik = Quantised.uniform(4, sigma, event_shape=(2,))
        ys = torch.tensor([[2.0, 1.0], [3.0, 0.0]], dtype=F64)
        edges = np.concatenate([[-np.inf], lik.edges.numpy(), [np.inf]])

        def log_lik(y, x):
            k = y.long().numpy()
            hi, lo = edges[k + 1], edges[k]
            with np.errstate(divide="ignore"):  # far outside the bin: log 0
                return torch.from_numpy(np.log(norm.cdf((hi - x.numpy()) / sigma) - norm.cdf((lo - x.numpy()) / sigma)))
    return diagonal_case(lik, ys, log_lik, seed=2), len(ys)


@pytest.mark.slow
def test_coordinatewise_posterior_moments(coordinatewise_runs):
    (out, post), groups = coordinatewise_runs
    assert_moments(out, groups, torch.stack([p[1] for p in post]), torch.stack([p[2] for p in post]))


@pytest.mark.slow
def test_coordinatewise_evidence_is_unbiased(coordinatewise_runs):
    (out, post), groups = coordinatewise_runs
    assert_evidence(out, groups, torch.stack([p[0] for p in post]))


# ---- a two-component mixture and the classifier of its components ----

MIX_W = torch.tensor([0.5, 0.5], dtype=F64)
MIX_MEANS = torch.tensor([[1.2, 0.4], [-1.2, -0.4]], dtype=F64)
MIX_COVS = torch.stack([0.3 * torch.eye(2, dtype=F64), torch.tensor([[0.4, 0.1], [0.1, 0.2]], dtype=F64)])


class ComponentClassifier(torch.nn.Module):
    """Logits log w_c + log N(x; m_c, S_c): the exact posterior of the component at t = 0."""

    def forward(self, x):
        dist = torch.distributions.MultivariateNormal(MIX_MEANS, MIX_COVS)
        return torch.log(MIX_W) + dist.log_prob(x[:, None, :])


@pytest.fixture(scope="module")
def mixture_runs():
    sde = VP()
    score = GaussianMixtureScore(MIX_W, MIX_MEANS, MIX_COVS, sde)
    labels = torch.tensor([0, 1])
    lik = Classifier(ComponentClassifier(), event_shape=(2,))
    out = run(score, sde, labels, lik, seed=4, particles=4 * M)  # a sharp classifier: heavier-tailed weights
    # reference: the unconditional discretised chain, reweighted by p(c | x)
    n = 200_000
    x = sample(score, sde, (n, 2), steps=STEPS, kernel=KERNEL, generator=torch.Generator().manual_seed(5), dtype=F64)
    p = torch.softmax(ComponentClassifier()(x), dim=-1)  # (n, 2)
    refs = []
    for c in (0, 1):
        w = p[:, c]
        z = w.mean()
        mean = (w[:, None] * x).mean(0) / z
        var = (w[:, None] * (x - mean) ** 2).mean(0) / z
        # standard errors of the self-normalised estimates (delta method)
        se_z = w.std() / math.sqrt(n)
        se_mean = ((w[:, None] * (x - mean)).std(0) / z) / math.sqrt(n)
        refs.append((z, se_z, mean, se_mean, var))
    return out, refs


@pytest.mark.slow
def test_classifier_picks_one_component(mixture_runs):
    out, refs = mixture_runs
    est = grouped(out.mean(), 2)
    se = est.std(1) / math.sqrt(REPS)
    for c, (_, _, mean, se_ref, var) in enumerate(refs):
        z = (est[c].mean(0) - mean).abs() / (se[c] + se_ref)
        assert (z <= 4).all(), (c, est[c].mean(0), mean, z)
        # the draws sit in the chosen component: its mean within 4 posterior sd / sqrt(M) of the exact one
        assert torch.allclose(est[c].mean(0), MIX_MEANS[c], atol=0.1)


@pytest.mark.slow
def test_classifier_evidence_is_unbiased(mixture_runs):
    out, refs = mixture_runs
    ratio = grouped(out.log_evidence.exp(), 2)
    for c, (z, se_z, *_) in enumerate(refs):
        se = ratio[c].std() / math.sqrt(REPS) + se_z
        assert abs(ratio[c].mean() - z) <= 4 * se, (ratio[c].mean(), z, se)


# ---- the Gaussian-linear observation as a likelihood, and what is refused ----

def test_gaussian_linear_samples_exactly_as_the_operator():
    sde = VP()
    mean, cov = torch.zeros(4, dtype=F64), torch.eye(4, dtype=F64)
    score = GaussianScore(mean, cov, sde)
    op = Dense(torch.randn(2, 4, generator=torch.Generator().manual_seed(0), dtype=F64))
    y = torch.randn(3, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    for proposal in ("mcgdiff", "twisted"):
        kw = dict(particles=8, steps=6, proposal=proposal)
        a = smc_sample(score, sde, y, op, noise_std=0.3, generator=torch.Generator().manual_seed(2), **kw)
        b = smc_sample(score, sde, y, GaussianLinear(op, 0.3), generator=torch.Generator().manual_seed(2), **kw)
        assert torch.equal(a.particles, b.particles) and torch.equal(a.log_evidence, b.log_evidence)


def test_gaussian_linear_log_prob_is_the_density_of_the_coefficients():
    op = Mask(torch.tensor([True, False, True]))
    lik = GaussianLinear(op, 0.5)
    x = torch.tensor([[0.1, 2.0, -0.3]], dtype=F64)
    y = torch.tensor([[0.4, 9.0, 0.2]], dtype=F64)
    expected = norm.logpdf([0.4, 0.2], loc=[0.1, -0.3], scale=0.5).sum()
    assert torch.allclose(lik.log_prob(y, x), torch.tensor([expected], dtype=F64))
    with pytest.raises(ValueError, match="noise_std > 0"):
        GaussianLinear(op, 0.0).log_prob(y, x)


def _small_problem():
    sde = VP()
    score = GaussianScore(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64), sde)
    return score, sde


@pytest.mark.parametrize("proposal", ["bootstrap", "mcgdiff"])
def test_linear_proposals_refuse_other_likelihoods(proposal):
    score, sde = _small_problem()
    lik = GaussianNonlinear(torch.tanh, 0.1, event_shape=(2,))
    with pytest.raises(ValueError, match=f"proposal='{proposal}' needs a linear-Gaussian observation.*twisted"):
        smc_sample(score, sde, torch.zeros(1, 2, dtype=F64), lik, proposal=proposal, particles=4, steps=3)


def test_a_likelihood_defaults_to_the_twisted_proposal_and_refuses_noise_std():
    score, sde = _small_problem()
    lik = GaussianNonlinear(torch.tanh, 0.1, event_shape=(2,))
    out = smc_sample(score, sde, torch.zeros(2, 2, dtype=F64), lik, particles=4, steps=3, generator=torch.Generator().manual_seed(0))
    assert out.particles.shape == (2, 4, 2) and torch.isfinite(out.log_evidence).all()
    with pytest.raises(ValueError, match="noise_std belongs to the likelihood"):
        smc_sample(score, sde, torch.zeros(1, 2, dtype=F64), lik, noise_std=0.1, particles=4, steps=3)
    with pytest.raises(ValueError, match="contradicts"):
        smc_sample(score, sde, torch.zeros(1, 1, dtype=F64), GaussianLinear(Dense(torch.ones(1, 2, dtype=F64)), 0.2),
                   noise_std=0.1, particles=4, steps=3)


def test_likelihood_errors_name_the_argument():
    score, sde = _small_problem()
    with pytest.raises(ValueError, match="event_shape"):
        smc_sample(lambda x, t: -x, sde, torch.zeros(1, 2, dtype=F64), GaussianNonlinear(torch.tanh, 0.1), particles=2, steps=2)
    with pytest.raises(ValueError, match="noise_std must be positive"):
        Quantised.uniform(4, 0.0)
    with pytest.raises(ValueError, match="edges"):
        Quantised([0.5, 0.1], 0.1)
    with pytest.raises(ValueError, match="levels"):
        Quantised.uniform(1, 0.1)
    with pytest.raises(ValueError, match="temperature"):
        Classifier(ComponentClassifier(), temperature=0)
    with pytest.raises(ValueError, match="class labels"):
        smc_sample(score, sde, torch.zeros(1, 2), Classifier(ComponentClassifier(), event_shape=(2,)), particles=2, steps=2)
    with pytest.raises(ValueError, match="bin indices"):
        Quantised.uniform(4, 0.1).check_y(torch.tensor([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="bin indices 0..3"):
        Quantised.uniform(4, 0.1).check_y(torch.tensor([[4.0, 1.0]]))

    class Scalar(Likelihood):
        event_shape = (2,)

        def log_prob(self, y, x0):
            return x0.sum()  # not one value per row

    with pytest.raises(ValueError, match=r"one value per row, \(4,\)"):
        smc_sample(score, sde, torch.zeros(1, 1, dtype=F64), Scalar(), particles=4, steps=2)
    with pytest.raises(NotImplementedError, match="cannot simulate"):
        Scalar().sample(torch.zeros(1, 2))


def test_likelihood_sample_draws_from_p_y_given_x():
    g = torch.Generator().manual_seed(0)
    x = torch.full((20000, 1), 0.1, dtype=F64)
    q = Quantised([0.0, 0.2], 0.1)
    y = q.sample(x, g)
    freq = torch.stack([(y == k).double().mean() for k in range(3)])
    expected = torch.tensor([norm.cdf(-1), norm.cdf(1) - norm.cdf(-1), 1 - norm.cdf(1)], dtype=F64)
    assert torch.allclose(freq, expected, atol=4 * math.sqrt(0.25 / 20000))
    lik = Classifier(ComponentClassifier(), event_shape=(2,))
    labels = lik.sample(MIX_MEANS[:1].expand(5000, 2).clone(), g)
    p0 = torch.softmax(ComponentClassifier()(MIX_MEANS[:1]), -1)[0, 0]
    assert abs((labels == 0).double().mean() - p0) <= 4 * math.sqrt(0.25 / 5000)


@settings(max_examples=200, deadline=None)
@given(st.floats(-40, 40), st.floats(1e-3, 20), st.booleans(), st.booleans())
def test_log_interval_prob_matches_scipy(low, width, open_low, open_high):
    lo = -math.inf if open_low else low
    hi = math.inf if (open_high and not open_low) else low + width
    got = log_interval_prob(torch.tensor([lo], dtype=F64), torch.tensor([hi], dtype=F64)).item()
    if lo > 0 and not math.isinf(hi):
        expected = norm.logsf(lo) + np.log1p(-np.exp(norm.logsf(hi) - norm.logsf(lo)))
    elif math.isinf(lo):
        expected = norm.logcdf(hi)
    elif math.isinf(hi):
        expected = norm.logsf(lo)
    else:
        expected = norm.logcdf(hi) + np.log1p(-np.exp(norm.logcdf(lo) - norm.logcdf(hi)))
    assert math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9), (lo, hi, got, expected)
    x = torch.tensor([0.0 if math.isinf(lo) else lo], dtype=F64, requires_grad=True)
    value = log_interval_prob(x if not math.isinf(lo) else torch.tensor([lo], dtype=F64), torch.tensor([hi], dtype=F64) + 0 * x)
    value.sum().backward()
    assert torch.isfinite(x.grad).all()


# ---- simulation-based calibration runs unchanged on a likelihood ----

@pytest.mark.slow
@pytest.mark.parametrize("case", ["classifier", "quantised"])
def test_sbc_of_independent_twisted_runs_on_a_likelihood(case):
    """x* from the discretised chain, y ~ p(y | x*) from the likelihood, L = 7 draws from 7 independent twisted
    runs of 64 particles: calibrated at level 0.01 (every coordinate, 4 directions and the fit -log p(y | x))."""
    from smcdiff.calibration import sbc, simulate_problems

    sde = VP()
    if case == "classifier":
        score = GaussianMixtureScore(MIX_W, MIX_MEANS, MIX_COVS, sde)
        lik = Classifier(ComponentClassifier(), temperature=2.0, event_shape=(2,))
    else:
        score = GaussianScore(DIAG_MEAN, torch.diag(DIAG_VAR), sde)
        lik = Quantised.uniform(4, 0.1, event_shape=(2,))
    g = torch.Generator().manual_seed(21)
    x_star, y = simulate_problems(score, sde, lik, 0.0, 200, steps=STEPS, kernel=KERNEL, event_shape=(2,), generator=g, dtype=F64)
    draws = 7

    def sampler(yb):
        out = smc_sample(score, sde, yb, lik, particles=64, steps=STEPS, kernel=KERNEL, generator=g,
                         options=RunOptions(populations=draws))
        return out.draw(draws, g)

    res = sbc(sampler, x_star, y, draws, operator=lik, directions=4, generator=g)
    assert "fit" in res.names
    assert res.calibrated(0.01), res.verdict()


def test_sbc_fit_statistic_of_a_likelihood_is_minus_log_p():
    from smcdiff.calibration import sbc

    lik = GaussianNonlinear(torch.abs, 0.5, event_shape=(1,))
    x_star = torch.tensor([[0.2], [-1.0]], dtype=F64)
    y = torch.tensor([[0.1], [0.9]], dtype=F64)
    # two draws per problem, one fitting y better than x* and one worse
    draws = torch.tensor([[[0.1], [2.0]], [[-0.9], [3.0]]], dtype=F64)
    res = sbc(lambda yb: draws, x_star, y, 2, operator=lik, statistics=("fit",))
    assert res.ranks[:, 0].tolist() == [1, 1]


def test_replacement_refuses_a_likelihood():
    from smcdiff import replacement_sample

    score, sde = _small_problem()
    with pytest.raises(ValueError, match="replacement baseline overwrites observed pixels"):
        replacement_sample(score, sde, torch.zeros(1, 2, dtype=F64), GaussianNonlinear(torch.tanh, 0.1, event_shape=(2,)),
                           particles=2, steps=2)
    with pytest.raises(ValueError, match="with noise_std=0.1"):
        replacement_sample(score, sde, torch.zeros(1, 2, dtype=F64), GaussianLinear(Mask(torch.tensor([True, False])), 0.1),
                           particles=2, steps=2)
