"""SMC exactness suite: closed-form Gaussian and mixture posteriors, a Kalman filter for the
discretised model and its evidence, the bridge trajectory, and the replacement baseline's bias.

The discretised model's target comes from :mod:`reference` (the tests' own closed forms), not from
the library's SDEs and oracle. Runs are batched as rows; standard errors come from the spread over
independent rows.
"""

import math

import pytest
import reference as ref
import torch

from smcdiff import (
    OU,
    VP,
    GaussianMixtureScore,
    GaussianScore,
    LogLinearVP,
    RunOptions,
    gaussian_mixture_posterior,
    gaussian_posterior,
    observation_trajectory,
    replacement_sample,
    smc_sample,
)
from smcdiff.oracle.linear_gaussian import kalman_smc_target

F64 = torch.float64


def weighted_var(out, i):
    mu = out.mean()[:, i]
    return (out.weights * (out.particles[..., i] - mu[:, None]) ** 2).sum(1)


# --- the seed slides' example -------------------------------------------------------------------
@pytest.fixture(scope="module")
def slides_runs():
    sde = OU()
    cov = torch.tensor([[1.0, 1.5], [1.5, 5.0]], dtype=F64)
    score = GaussianScore(torch.zeros(2, dtype=F64), cov, sde)
    r = 48
    y = torch.zeros(r, 2, dtype=F64)
    y[:, 0] = 1.0
    mask = torch.tensor([True, False])
    g = torch.Generator().manual_seed(0)
    smc = smc_sample(score, sde, y, mask, particles=1000, steps=500, generator=g)
    rep = replacement_sample(score, sde, y, mask, particles=1000, steps=500, generator=g)
    return smc, rep


@pytest.mark.slow
def test_slides_example_smc_is_exact(slides_runs):
    """(Y, X) ~ N(0, [[1, 1.5], [1.5, 5]]), y = 1: posterior mean 1.5 and variance 2.75, within 4 SE."""
    smc, _ = slides_runs
    mean, var = smc.mean()[:, 1], weighted_var(smc, 1)
    r = mean.shape[0]
    assert abs(mean.mean().item() - 1.5) <= 4 * mean.std().item() / math.sqrt(r)
    assert abs(var.mean().item() - 2.75) <= 4 * var.std().item() / math.sqrt(r)
    assert (smc.particles[..., 0] == 1.0).all()


def test_slides_example_replacement_is_biased(slides_runs):
    """The slides' figure as a test: replacement's posterior mean is off by more than 10 SE."""
    _, rep = slides_runs
    mean = rep.mean()[:, 1]
    se = mean.std().item() / math.sqrt(mean.shape[0])
    assert abs(mean.mean().item() - 1.5) > 10 * se
    assert torch.isnan(rep.log_evidence).all()
    assert torch.allclose(rep.log_weights, torch.full_like(rep.log_weights, -math.log(1000)))


# --- random d = 16 Gaussians: Kalman filter of the discretised model ---------------------------
D, GROUPS, REPS, M, STEPS = 16, 4, 32, 400, 150
BETA_MAX = torch.linspace(8.0, 20.0, D, dtype=F64)
SDES = {"vp": (VP(), ref.vp()), "vp-nonuniform": (VP(beta_max=BETA_MAX), ref.vp(beta_max=BETA_MAX))}


def gaussian_problem(seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(D, D, generator=g, dtype=F64)
    cov = a @ a.T / D + 0.2 * torch.eye(D, dtype=F64)
    mean = torch.randn(D, generator=g, dtype=F64)
    x = mean + torch.randn(GROUPS, D, generator=g, dtype=F64) @ torch.linalg.cholesky(cov).T
    mask = torch.rand(GROUPS, D, generator=g) < 0.5
    mask[:, 0], mask[:, 1] = True, False
    return mean, cov, x, mask


@pytest.fixture(scope="module", params=sorted(SDES))
def gaussian_runs(request):
    sde, schedule = SDES[request.param]
    mean, cov, x, mask = gaussian_problem(1)
    score = GaussianScore(mean, cov, sde)
    y = x.repeat_interleave(REPS, 0)  # rows: GROUPS observations x REPS independent runs
    masks = mask.repeat_interleave(REPS, 0)
    trajectory = []
    record = lambda info: trajectory.append(info.particles[:, 0].clone())
    out = smc_sample(
        score, sde, y, masks, particles=M, steps=STEPS, generator=torch.Generator().manual_seed(2),
        options=RunOptions(callback=record),
    )
    k_mean, k_cov, k_logz = ref.kalman_smc_target(schedule, mean, cov, STEPS, masks, trajectory)
    avg_mean, _, _ = ref.kalman_smc_target(schedule, mean, cov, STEPS, mask, ref.mean_trajectory(schedule, x, STEPS))
    return dict(mean=mean, cov=cov, y=y, mask=masks, out=out, k_mean=k_mean, k_cov=k_cov, k_logz=k_logz, avg_mean=avg_mean)


def grouped(v):
    return v.reshape(GROUPS, REPS, *v.shape[1:])


@pytest.mark.parametrize("kernel", ["euler", "ancestral"])
@pytest.mark.parametrize("name", ["vp", "vp-nonuniform"])
def test_reference_kalman_filter_agrees_with_the_oracle(name, kernel):
    """The tests' own Kalman filter (closed-form schedule, grid, kernels) equals smcdiff.oracle's to 1e-10."""
    sde, schedule = SDES[name]
    mean, cov, x, mask = gaussian_problem(5)
    ys = ref.forward_trajectory(schedule, x, 30, torch.Generator().manual_seed(6))
    got = ref.kalman_smc_target(schedule, mean, cov, 30, mask, ys, kernel)
    oracle = kalman_smc_target(GaussianScore(mean, cov, sde), sde, 30, mask, ys, kernel)
    for a, b in zip(got, oracle):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10), (a - b).abs().max()


@pytest.mark.slow
def test_smc_matches_discretised_posterior(gaussian_runs):
    """SMC mean and covariance vs the Kalman filter's exact target, within 4 SE over independent runs."""
    r = gaussian_runs
    out = r["out"]
    for est, exact in [(out.mean(), r["k_mean"]), (out.cov(), r["k_cov"])]:
        err = grouped(est - exact)
        se = err.std(1) / math.sqrt(REPS)
        assert (err.mean(1).abs() <= 4 * se + 1e-9).all(), (err.mean(1).abs() / (se + 1e-12)).max()


def test_smc_matches_exact_posterior_within_se_plus_discretisation_gap(gaussian_runs):
    """SMC vs gaussian_posterior: 4 SE plus the discretised model's exact gap to p(x | y) at STEPS steps.

    The gap is computed, not estimated: the Kalman mean is affine in the observed trajectory, so its
    average over forward trajectories is the Kalman mean at the mean trajectory alpha(t_k) y, and the
    Kalman covariance does not depend on the trajectory. At 150 steps the gap is at most 0.0115 (mean)
    and 0.0148 (covariance) for "vp", 0.0105 and 0.0092 for "vp-nonuniform" (whose prior at T = 1 is
    off from p_T: alpha_T = 0.13 for beta_max = 8), against posterior standard deviations of 0.68 to 1.48.
    """
    r = gaussian_runs
    out = r["out"]
    post_mean, post_cov = gaussian_posterior(r["mean"], r["cov"], r["mask"], r["y"])
    gaps = [(r["avg_mean"] - grouped(post_mean)[:, 0]).abs(), (r["k_cov"] - post_cov).abs()]
    assert gaps[0].max() < 0.012 and gaps[1].max() < 0.015, [g.max() for g in gaps]
    for est, gap, exact in [(out.mean(), gaps[0], post_mean), (out.cov(), grouped(gaps[1])[:, 0], post_cov)]:
        est, exact = grouped(est), grouped(exact)
        se = est.std(1) / math.sqrt(REPS)
        err = (est.mean(1) - exact.mean(1)).abs()
        assert (err <= 4 * se + gap + 1e-9).all(), ((err - gap) / (se + 1e-12)).max()


def test_log_evidence_is_unbiased(gaussian_runs):
    """E[Z_hat] = Z: the ratio Z_hat / Z (Kalman filter, closed form) averages to 1 within 4 SE."""
    r = gaussian_runs
    ratio = torch.exp(r["out"].log_evidence - r["k_logz"])
    se = ratio.std() / math.sqrt(ratio.numel())
    assert abs(ratio.mean().item() - 1.0) <= 4 * se.item()
    assert (r["out"].log_evidence - r["k_logz"]).abs().max() < 1.0


def test_diagnostics_shapes(gaussian_runs):
    out = gaussian_runs["out"]
    b = GROUPS * REPS
    assert out.particles.shape == (b, M, D) and out.log_weights.shape == (b, M)
    assert out.log_weights.dtype == F64 and torch.allclose(torch.logsumexp(out.log_weights, 1), torch.zeros(b, dtype=F64))
    assert out.ess.shape == (STEPS, b) and out.resampled.shape == (STEPS, b)
    assert ((out.ess > 0) & (out.ess <= M + 1e-6)).all()
    assert out.resampled.any() and not out.resampled.all()
    assert (out.particles[gaussian_runs["mask"][:, None].expand_as(out.particles)] == gaussian_runs["y"][:, None].expand_as(out.particles)[gaussian_runs["mask"][:, None].expand_as(out.particles)]).all()


# --- a well-separated mixture ------------------------------------------------------------------
@pytest.mark.slow
def test_mixture_posterior_weights():
    """SMC recovers the exact posterior component weights within 4 SE; replacement does not."""
    sde = VP()
    means = torch.tensor([[0.0, -4.0], [1.5, 4.0]], dtype=F64)
    covs = torch.tensor([[1.0, 0.3], [0.3, 1.0]], dtype=F64).expand(2, 2, 2)
    weights = torch.tensor([0.5, 0.5], dtype=F64)
    score = GaussianMixtureScore(weights, means, covs, sde)
    r = 32
    y = torch.tensor([[2.0, 0.0]], dtype=F64).expand(r, 2)
    mask = torch.tensor([True, False])
    post_w = gaussian_mixture_posterior(weights, means, covs, mask, y[:1])[0][0, 1].item()
    g = torch.Generator().manual_seed(3)
    fractions = {}
    for name, fn in [("smc", smc_sample), ("replacement", replacement_sample)]:
        out = fn(score, sde, y, mask, particles=500, steps=200, generator=g)
        fractions[name] = (out.weights * (out.particles[..., 1] > 0)).sum(1)
    se = fractions["smc"].std().item() / math.sqrt(r)
    assert abs(fractions["smc"].mean().item() - post_w) <= 4 * se
    se_rep = fractions["replacement"].std().item() / math.sqrt(r)
    assert abs(fractions["replacement"].mean().item() - post_w) > 10 * max(se_rep, se)


# --- the backward bridge reproduces the forward trajectory --------------------------------------
def test_backward_bridge_reproduces_forward_joint():
    sde = VP()
    n, steps = 100_000, 4
    y = torch.full((n, 1), 0.8, dtype=F64)
    traj = torch.stack([yk[:, 0] for _, yk in observation_trajectory(sde, y, steps, torch.Generator().manual_seed(4))], 1)
    coefficients = [ref.vp().coefficients(t, 1) for t in ref.vp().time_grid(steps)]  # traj[:, i] is y at grid[i]
    alpha, var = (torch.cat([c[j] for c in coefficients]) for j in (0, 1))
    exp_mean = alpha * 0.8
    # Cov(y_s, y_t) = alpha_t / alpha_s * sigma_s^2 for s <= t.
    exp_cov = torch.empty(steps + 1, steps + 1, dtype=F64)
    for i in range(steps + 1):
        for j in range(steps + 1):
            s, t = max(i, j), min(i, j)  # larger index = smaller time
            exp_cov[i, j] = alpha[t] / alpha[s] * var[s]
    se_mean = (exp_cov.diagonal() / n).sqrt()
    assert ((traj.mean(0) - exp_mean).abs() <= 4 * se_mean).all()
    v = exp_cov.diagonal()
    se_cov = ((v[:, None] * v[None] + exp_cov**2) / n).sqrt()
    assert ((torch.cov(traj.T) - exp_cov).abs() <= 4 * se_cov).all()


@pytest.mark.parametrize("sde", [VP(), OU(), LogLinearVP(t_end=torch.tensor([0.3, 0.6, 1.0], dtype=F64))],
                         ids=["vp", "ou", "frozen-groups"])
def test_trajectory_is_the_marginal_then_successive_bridges(sde):
    """The trajectory (coefficients of the whole grid computed at once) is, draw for draw, the marginal at T then
    SDE.bridge step by step from the same generator, frozen coordinates of a per-coordinate schedule included."""
    y = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    steps, grid = 12, sde.time_grid(12).to(F64)
    got = [yk for _, yk in observation_trajectory(sde, y, steps, torch.Generator().manual_seed(1))]
    g = torch.Generator().manual_seed(1)
    mean, std = sde.marginal(y, grid[0].expand(5))
    want = [mean + std * torch.randn(y.shape, generator=g, dtype=F64)]
    for i in range(steps):
        mean, std = sde.bridge(y, want[-1], grid[i + 1].expand(5), grid[i].expand(5))
        want.append(mean + std * torch.randn(y.shape, generator=g, dtype=F64))
    assert len(got) == steps + 1
    torch.testing.assert_close(torch.stack(got), torch.stack(want), rtol=1e-12, atol=1e-12)


# --- behaviour and errors -----------------------------------------------------------------------
def toy():
    sde = VP()
    return GaussianScore(torch.zeros(3, dtype=F64), torch.eye(3, dtype=F64), sde), sde


def test_all_false_mask_is_unconditional_and_all_true_returns_y():
    score, sde = toy()
    y = torch.randn(2, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    out = smc_sample(score, sde, y, torch.zeros(3, dtype=torch.bool), particles=50, steps=20, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(out.log_weights, torch.full_like(out.log_weights, -math.log(50)))
    assert not out.resampled.any()
    out = smc_sample(score, sde, y, torch.ones(3, dtype=torch.bool), particles=5, steps=20, generator=torch.Generator().manual_seed(1))
    assert (out.particles == y[:, None]).all()


def test_images_rows_with_different_masks_and_chunks():
    sde = VP()
    score = lambda x, t: -x
    y = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[0, :, :2] = True
    mask[1, :, :, 3] = True
    run = RunOptions(resampling="stratified", ess_threshold=1.0)
    a = smc_sample(score, sde, y, mask, particles=6, steps=10, generator=torch.Generator().manual_seed(1), options=run)
    b = smc_sample(
        score, sde, y, mask, particles=6, steps=10, generator=torch.Generator().manual_seed(1),
        options=run.replace(chunk_size=5, progress=True),
    )
    assert a.particles.shape == (2, 6, 1, 4, 4) and a.mean().shape == (2, 1, 4, 4)
    assert torch.allclose(a.particles, b.particles, atol=1e-5)
    assert a.resampled.all()
    assert (a.particles[mask[:, None].expand_as(a.particles)] == y[:, None].expand_as(a.particles)[mask[:, None].expand_as(a.particles)]).all()
    draws = a.draw(9, torch.Generator().manual_seed(2))
    assert draws.shape == (2, 9, 1, 4, 4)


def test_bad_inputs():
    score, sde = toy()
    g = torch.Generator().manual_seed(0)
    y, mask = torch.zeros(2, 3), torch.tensor([True, False, False])
    with pytest.raises(ValueError, match="mask of shape"):
        smc_sample(score, sde, y, torch.ones(4, dtype=torch.bool), particles=4, steps=3, generator=g)
    with pytest.raises(ValueError, match="mask must be a bool"):
        smc_sample(score, sde, y, torch.ones(3), particles=4, steps=3, generator=g)
    with pytest.raises(ValueError, match="particles"):
        smc_sample(score, sde, y, mask, particles=0, steps=3, generator=g)
    with pytest.raises(ValueError, match="ess_threshold"):
        smc_sample(score, sde, y, mask, particles=4, steps=3, generator=g, options=RunOptions(ess_threshold=1.5))
    with pytest.raises(ValueError, match="resampling"):
        smc_sample(score, sde, y, mask, particles=4, steps=3, generator=g, options=RunOptions(resampling="nope"))
    with pytest.raises(ValueError, match="y must be finite"):
        smc_sample(score, sde, torch.tensor([[float("nan"), 0.0, 0.0]]), mask, particles=4, steps=3, generator=g)
    with pytest.raises(ValueError, match="y must have shape"):
        smc_sample(score, sde, torch.zeros(3), mask, particles=4, steps=3, generator=g)
    with pytest.raises(ValueError, match="non-finite values at step 3"):
        smc_sample(lambda x, t: x * float("nan"), sde, y, mask, particles=4, steps=3, generator=g)
    with pytest.raises(ValueError, match="event shape"):
        smc_sample(score, VP(beta_max=torch.full((4,), 20.0)), y, mask, particles=4, steps=3, generator=g)
