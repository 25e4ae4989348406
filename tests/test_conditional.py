"""CDE / CDiffE / CMDE ("Non-Uniform Diffusion Models" §3.4): losses and weightings against hand
computations, the conditional samplers against exact Gaussian posteriors (Theorems 2 and 4), the
network, its files and a short training run.

Gaussian checks. z = (x, y) ~ N(m, S) with x, y in R^2. The exact conditional scores come from the
oracle: for CDE the score of p(x_t | y) (a :class:`GaussianScore` of the exact posterior of
:func:`gaussian_posterior`); for CDiffE / CMDE the x-block of the exact joint score of (x_t, y_t)
with y diffused by its own VE speed. Sampling then goes through the package's code path
(:func:`conditional_score`, :class:`ConditionalScore`, :func:`smcdiff.sample`).
"""

from __future__ import annotations

import math
import sys

import pytest
import torch
from scipy.stats import chi2
from torch import nn

from smcdiff import VE, GaussianScore, gaussian_posterior, sample
from smcdiff.adapters import ConditionalScore
from smcdiff.baselines import sample_conditional
from smcdiff.msdiff.conditional import (
    ConditionalConfig,
    ConditionalEstimator,
    average_pool,
    condition,
    conditional_score,
    joint_ve,
    likelihood_weighting,
    load_conditional,
    observe,
    score_matching_loss,
    train,
    weighted_score_loss,
)

DX, DY = 2, 2
SIGMA_MIN, SIGMA_MAX = 0.01, 10.0
F64 = torch.float64


# ----------------------------------------------------------------------------------------------
# exact Gaussian estimators (the estimator protocol of smcdiff.msdiff.conditional)
# ----------------------------------------------------------------------------------------------
def gaussian_model() -> tuple[torch.Tensor, torch.Tensor]:
    m = torch.tensor([0.5, -0.3, 0.2, 0.1], dtype=F64)
    lower = torch.tensor([[1.0, 0, 0, 0], [0.6, 0.5, 0, 0], [0.8, -0.3, 0.4, 0], [0.2, 0.7, 0.1, 0.3]], dtype=F64)
    return m, lower @ lower.T


class ExactCDE(nn.Module):
    """grad_x log p(x_t | y) of the Gaussian model: the score of N(post_mean(y), post_cov) diffused by VE."""

    kind = "cde"
    x_channels = DX
    sde_y = None

    def __init__(self, m: torch.Tensor, s: torch.Tensor) -> None:
        super().__init__()
        self.sde_x = self.sde = VE(SIGMA_MIN, SIGMA_MAX)
        # the posterior mean is affine in y: read its offset and gain off the oracle at y = 0, e_1, e_2
        basis = torch.cat([torch.zeros(DY + 1, DX, dtype=F64), torch.cat([torch.zeros(1, DY), torch.eye(DY)]).to(F64)], 1)
        post_mean, post_cov = gaussian_posterior(m, s, self.observed, basis)
        self.offset = post_mean[0, :DX]
        self.gain = (post_mean[1:, :DX] - self.offset).T  # (DX, DY)
        self.post_cov = post_cov[0, :DX, :DX]
        self.centred = GaussianScore(torch.zeros(DX, dtype=F64), self.post_cov, self.sde_x)

    observed = torch.tensor([False] * DX + [True] * DY)

    def post_mean(self, y: torch.Tensor) -> torch.Tensor:
        return self.offset + y @ self.gain.T

    def forward(self, x_t, t, cond):
        return self.centred(x_t - self.post_mean(cond), t)  # alpha = 1 for VE


class ExactJoint(nn.Module):
    """The exact joint score of (x_t, y_t), x at speed SIGMA_MAX and y at ``sigma_y_max``."""

    x_channels = DX

    def __init__(self, m: torch.Tensor, s: torch.Tensor, sigma_y_max: float) -> None:
        super().__init__()
        self.kind = "cdiffe" if sigma_y_max == SIGMA_MAX else "cmde"
        self.sde_x = VE(SIGMA_MIN, SIGMA_MAX)
        self.sde_y = VE(SIGMA_MIN, sigma_y_max)
        self.sde = joint_ve(SIGMA_MIN, SIGMA_MAX, sigma_y_max, DX, DY, event_ndim=1)
        self.joint = GaussianScore(m, s, self.sde)

    def forward(self, z_t, t, cond):
        assert cond is None
        return self.joint(z_t, t)


Y_OBS = torch.tensor([[1.0, -0.5]], dtype=F64)
N_SAMPLES, STEPS = 20000, 100
SIGMA_Y_GRID = (SIGMA_MAX, 3.0, 1.0, 0.3)  # CDiffE first, then CMDE with slower y


def kl_to(mean: torch.Tensor, cov: torch.Tensor, exact_mean: torch.Tensor, exact_cov: torch.Tensor) -> float:
    """KL(N(mean, cov) || N(exact_mean, exact_cov))."""
    prec = torch.linalg.inv(exact_cov)
    d = mean - exact_mean
    k = exact_cov.shape[0]
    return float(0.5 * (torch.trace(prec @ cov) + d @ prec @ d - k + torch.logdet(exact_cov) - torch.logdet(cov)))


@pytest.fixture(scope="module")
def gaussian_runs():
    """Samples (N_SAMPLES, DX) of CDE and of the joint estimators for each sigma_y_max, seed 0."""
    m, s = gaussian_model()
    runs = {}
    for key in ("cde", *SIGMA_Y_GRID):
        est = ExactCDE(m, s) if key == "cde" else ExactJoint(m, s, key)
        g = torch.Generator().manual_seed(0)
        runs[key] = sample_conditional(est, Y_OBS, samples=N_SAMPLES, steps=STEPS, generator=g, denoise_last=False).particles[0]
    cde = ExactCDE(m, s)
    return runs, cde.post_mean(Y_OBS)[0], cde.post_cov


@pytest.mark.slow
def test_cde_sampling_recovers_exact_posterior(gaussian_runs):
    """Theorem 2: with the exact p(x_t | y) score, the conditional reverse SDE samples p(x | y)."""
    runs, mean, cov = gaussian_runs
    x = runs["cde"]
    n = x.shape[0]
    se_mean = (cov.diagonal() / n).sqrt()
    assert ((x.mean(0) - mean).abs() < 4 * se_mean).all()
    se_cov = ((cov.diagonal()[:, None] * cov.diagonal()[None] + cov**2) / n).sqrt()  # Wishart
    assert ((torch.cov(x.T) - cov).abs() < 4 * se_cov).all()
    # 2 n KL(fitted || exact) is asymptotically chi^2 with DX + DX (DX + 1) / 2 degrees of freedom
    bound = chi2.ppf(1 - 1e-4, DX + DX * (DX + 1) // 2) / (2 * n)
    assert kl_to(x.mean(0), torch.cov(x.T), mean, cov) < bound


@pytest.mark.slow
def test_cmde_sampling_error_shrinks_as_sigma_y_max_decreases(gaussian_runs):
    """CDiffE (sigma_y = sigma_x) carries the approximation error; CMDE shrinks it towards CDE."""
    runs, mean, cov = gaussian_runs
    n = N_SAMPLES
    bound = chi2.ppf(1 - 1e-4, DX + DX * (DX + 1) // 2) / (2 * n)
    kls = [kl_to(runs[sy].mean(0), torch.cov(runs[sy].T), mean, cov) for sy in SIGMA_Y_GRID]
    # the grid is chosen so that consecutive KLs differ by > 5 of their Monte Carlo standard deviations
    assert all(a > b for a, b in zip(kls, kls[1:])), kls
    assert kls[0] > 100 * bound  # CDiffE is measurably wrong
    assert kls[-1] < 0.01 * kls[0]


@pytest.mark.parametrize("t", [0.35, 0.5])
def test_theorem4_score_error_decreases_to_zero(t):
    """E_{y_t ~ p(y_t | y)} ||grad log p(x_t | y_t) - grad log p(x_t | y)||^2 -> 0 as sigma_y_max -> 0.

    The joint score is affine in y_t, s(y_t) = s(y) + B (y_t - y), so the expectation is
    ||s(y) - s*||^2 + sigma_y(t)^2 ||B||_F^2 in closed form; the Monte Carlo average of
    :func:`conditional_score` (fresh y^_t per row) must match it within 4 standard errors.
    """
    m, s = gaussian_model()
    n = 20000
    x_t = torch.tensor([[0.8, -0.2]], dtype=F64).expand(n, DX)
    tt = torch.full((n,), t, dtype=F64)
    y = Y_OBS.expand(n, DY)
    exact = conditional_score(ExactCDE(m, s), x_t[:1], tt[:1], y[:1])[0]
    closed = []
    for sy in (SIGMA_MAX, 3.0, 1.0, 0.3, 0.1, 0.03):
        est = ExactJoint(m, s, sy)
        at = lambda yy: est(torch.cat([x_t[:1], yy], 1), tt[:1], None)[0, :DX]  # noqa: E731
        s_y = at(Y_OBS)
        jac = torch.stack([at(Y_OBS + torch.eye(DY, dtype=F64)[j]) - s_y for j in range(DY)], 1)
        sigma_y2 = est.sde_y.coefficients(torch.tensor([t], dtype=F64)).sigma2.item()
        value = ((s_y - exact) ** 2).sum().item() + sigma_y2 * (jac**2).sum().item()
        g = torch.Generator().manual_seed(1)
        err = ((conditional_score(est, x_t, tt, y, generator=g) - exact) ** 2).sum(1)
        assert abs(err.mean().item() - value) < 4 * err.std().item() / math.sqrt(n)
        closed.append(value)
    assert all(a > b for a, b in zip(closed, closed[1:])), closed
    assert closed[-1] < 0.05 * closed[0]


def test_diffusive_score_draws_y_t_from_p_y_t_given_y():
    """§3.4.2: the condition handed to the joint network is y^_t ~ N(y, sigma_y(t)^2), fresh per row."""

    class Echo(nn.Module):
        kind, x_channels = "cmde", 1
        sde_x, sde_y = VE(0.01, 10.0), VE(0.01, 0.5)
        sde = joint_ve(0.01, 10.0, 0.5, 1, 1, event_ndim=1)

        def forward(self, z_t, t, cond):
            return z_t.flip(1)  # the x-block of the output is y_t

    n, t = 40000, 0.7
    y = torch.full((n, 1), 0.3, dtype=F64)
    g = torch.Generator().manual_seed(3)
    out = conditional_score(Echo(), torch.zeros(n, 1, dtype=F64), torch.full((n,), t, dtype=F64), y, generator=g)
    sigma = 0.01 * (0.5 / 0.01) ** t
    assert abs(out.mean().item() - 0.3) < 4 * sigma / math.sqrt(n)
    assert abs(out.var().item() / sigma**2 - 1) < 4 * math.sqrt(2 / n)


# ----------------------------------------------------------------------------------------------
# weighting and losses against hand computations
# ----------------------------------------------------------------------------------------------
def test_likelihood_weighting_is_g_squared_per_speed():
    """Lambda_MLE(t) = diag(sigma^x(t)^2, sigma^y(t)^2) of Theorem 3, sigma^.(t)^2 = d sigma(t)^2 / dt."""
    # sigma_min = 0.01: sigma_x(1/2) = 0.01 sqrt(1e4) = 1, g_x^2 = 2 ln(1e4); sigma_y(1/2) = 0.1, g_y^2 = 2 ln(100) 0.01
    sde = joint_ve(0.01, 100.0, 1.0, 2, 1)
    like = torch.zeros(1, 3, 2, 2, dtype=F64)
    lam = likelihood_weighting(sde, torch.tensor([0.5], dtype=F64), like)
    assert lam.shape == (1, 3, 1, 1)
    expected = [2 * math.log(1e4), 2 * math.log(1e4), 2 * math.log(100.0) * 0.01]
    torch.testing.assert_close(lam.flatten(), torch.tensor(expected, dtype=F64))
    scalar = likelihood_weighting(VE(0.01, 100.0), torch.tensor([0.5], dtype=F64), like)
    torch.testing.assert_close(scalar.flatten(), torch.tensor([2 * math.log(1e4)], dtype=F64))


def test_weighted_score_loss_hand_computed():
    score = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    target = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    weight = torch.tensor([[2.0, 0.5]])
    # rows: 2*1 + 0.5*4 = 4 and 2*1 + 0.5*4 = 4; 1/2 mean = 2
    assert weighted_score_loss(score, target, weight).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="target"):
        weighted_score_loss(score, target[:1], weight)


class Linear(nn.Module):
    """Stub estimator s(v_t) = -c v_t that records the condition it was given."""

    x_channels = 1

    def __init__(self, kind: str, sde, c: float = 0.0) -> None:
        super().__init__()
        self.kind, self.sde, self.c = kind, sde, c
        self.seen = None

    def forward(self, v_t, t, cond):
        self.seen = (v_t, cond)
        return -self.c * v_t


def test_loss_of_zero_score_is_log_speed_ratio():
    """With s = 0 and noise = 1: 1/2 sum_i g_i^2 / sigma_i^2 = sum_i ln(sigma_max,i / sigma_min), any t."""
    x0, y, aux = torch.zeros(3, 1, 1, 1, dtype=F64), torch.zeros(3, 1, 1, 1, dtype=F64), torch.ones(3, 1, 1, 1, dtype=F64)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=F64)
    cde = Linear("cde", VE(0.01, 10.0))
    loss = score_matching_loss(cde, x0, y, aux, t=t, noise=torch.ones(3, 1, 1, 1, dtype=F64))
    assert loss.item() == pytest.approx(math.log(1000.0))
    assert cde.seen[1].shape == (3, 2, 1, 1)  # CDE: cond = (y, aux)
    cmde = Linear("cmde", joint_ve(0.01, 10.0, 0.5, 1, 1))
    loss = score_matching_loss(cmde, x0, y, aux, t=t, noise=torch.ones(3, 2, 1, 1, dtype=F64))
    assert loss.item() == pytest.approx(math.log(1000.0) + math.log(50.0))
    assert cmde.seen[1] is aux  # joint: cond = aux, y is diffused inside v_t


def test_loss_hand_computed_cmde():
    """Eq. 14 at t = 1/2 with s = -v_t, x_0 = 1, y = -1, noise = (1, 2)."""
    t = torch.tensor([0.5], dtype=F64)
    x0, y = torch.ones(1, 1, 1, 1, dtype=F64), -torch.ones(1, 1, 1, 1, dtype=F64)
    noise = torch.tensor([1.0, 2.0], dtype=F64).reshape(1, 2, 1, 1)
    est = Linear("cmde", joint_ve(0.01, 100.0, 1.0, 1, 1), c=1.0)
    loss = score_matching_loss(est, x0, y, None, t=t, noise=noise)
    # x: sigma = 1, g^2 = 2 ln 1e4, x_t = 2, target = -1, s = -2 -> v = 1
    # y: sigma = 0.1, g^2 = 2 ln 100 * 0.01, y_t = -0.8, target = -20, s = 0.8 -> v = -20.8
    expected = 0.5 * (2 * math.log(1e4) * 1.0 + 2 * math.log(100.0) * 0.01 * 20.8**2)
    assert loss.item() == pytest.approx(expected)
    torch.testing.assert_close(est.seen[0].flatten(), torch.tensor([2.0, -0.8], dtype=F64))


def test_loss_argument_errors():
    est = Linear("cde", VE(0.01, 10.0))
    x = torch.zeros(2, 1, 1, 1)
    with pytest.raises(ValueError, match="t must"):
        score_matching_loss(est, x, x, t=torch.ones(3))
    with pytest.raises(ValueError, match="noise"):
        score_matching_loss(est, x, x, noise=torch.ones(2, 2, 1, 1))
    with pytest.raises(ValueError, match="y"):
        score_matching_loss(est, x, x[:1])
    with pytest.raises(ValueError, match="t must lie"):
        score_matching_loss(est, x, x, t=torch.full((2,), 2.0))


# ----------------------------------------------------------------------------------------------
# configuration, operators, network, files
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(estimator="ddpm"), "estimator"),
        (dict(estimator="cmde"), "sigma_y_max"),
        (dict(estimator="cmde", sigma_y_max=20.0), "sigma_y_max"),
        (dict(estimator="cde", sigma_y_max=0.5), "sigma_y_max"),
        (dict(estimator="cdiffe", sigma_y_max=0.5), "sigma_y_max"),
        (dict(estimator="cde", task="edges"), "task"),
        (dict(estimator="cde", task="sr", sr_factor=3), "sr_factor"),
        (dict(estimator="cde", sigma_min=20.0), "sigma_min"),
        (dict(estimator="cde", attention_levels=(False,)), "attention_levels"),
        (dict(estimator="cde", mask_fraction=1.5), "mask_fraction"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConditionalConfig(**kwargs)


def test_cdiffe_diffuses_y_at_the_speed_of_x():
    assert ConditionalConfig("cdiffe").sigma_y_max == ConditionalConfig("cdiffe").sigma_max


def test_inpainting_observation():
    cfg = ConditionalConfig("cde")
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    obs = observe(cfg, x, generator=torch.Generator().manual_seed(0))
    assert obs.mask.shape == (5, 1, 8, 8) and obs.mask.dtype == torch.bool
    assert ((~obs.mask).flatten(1).sum(1) == 16).all()  # a 4 x 4 hole: 25%
    torch.testing.assert_close(obs.y, torch.where(obs.mask, x, torch.zeros_like(x)))
    torch.testing.assert_close(obs.aux, obs.mask.float())
    rep = obs.repeat(3)
    assert rep.y.shape == (15, 1, 8, 8) and torch.equal(rep.mask[3:6], obs.mask[1:2].expand(3, -1, -1, -1))
    with pytest.raises(ValueError, match="mask"):
        condition(cfg, x)
    with pytest.raises(ValueError, match="measurement"):
        condition(cfg, x[:, :, :4], obs.mask)


def test_super_resolution_observation():
    cfg = ConditionalConfig("cde", task="sr")
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    obs = observe(cfg, x)
    torch.testing.assert_close(obs.measurement, torch.tensor([[[[13.5, 17.5], [45.5, 49.5]]]]))
    torch.testing.assert_close(obs.y[0, 0, :4, :4], torch.full((4, 4), 13.5))  # nearest up-sampling
    assert obs.aux is None and obs.mask is None
    torch.testing.assert_close(average_pool(x, 4), obs.measurement)
    with pytest.raises(ValueError, match="mask"):
        observe(cfg, x, mask=torch.ones(1, 1, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="measurement"):
        condition(cfg, x)


TINY = dict(block_out_channels=(8, 16), attention_levels=(False, False), attention_head_dim=8)


def tiny(estimator: str, **kwargs) -> ConditionalEstimator:
    sy = 0.5 if estimator == "cmde" else None
    return ConditionalEstimator(ConditionalConfig(estimator, sigma_y_max=sy, **TINY, **kwargs), generator=torch.Generator().manual_seed(0))


def test_network_shapes_and_errors():
    x = torch.zeros(3, 1, 8, 8)
    t = torch.full((3,), 0.5)
    cde, cmde, sr = tiny("cde"), tiny("cmde"), tiny("cdiffe", task="sr")
    assert cde(x, t, torch.zeros(3, 2, 8, 8)).shape == (3, 1, 8, 8)
    assert cmde(torch.zeros(3, 2, 8, 8), t, torch.zeros(3, 1, 8, 8)).shape == (3, 2, 8, 8)
    assert sr(torch.zeros(3, 2, 8, 8), t, None).shape == (3, 2, 8, 8)
    with pytest.raises(ValueError, match="v_t"):
        cmde(x, t, torch.zeros(3, 1, 8, 8))
    with pytest.raises(ValueError, match="cond"):
        cde(x, t, torch.zeros(3, 1, 8, 8))
    with pytest.raises(ValueError, match="cond"):
        sr(torch.zeros(3, 2, 8, 8), t, torch.zeros(3, 1, 8, 8))
    with pytest.raises(ValueError, match="t must"):
        cde(x, t[:2], torch.zeros(3, 2, 8, 8))


def test_adapter_binds_rows_and_samples():
    est = tiny("cmde").eval()
    obs = observe(est.config, torch.zeros(2, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    score = ConditionalScore.from_observation(est, obs, generator=g)
    assert score.sde is est.sde_x
    x = sample(score, score.sde, (2, 1, 8, 8), steps=3, generator=g)
    assert x.shape == (2, 1, 8, 8) and torch.isfinite(x).all()
    with pytest.raises(ValueError, match="rows"):
        score(torch.zeros(4, 1, 8, 8), torch.full((4,), 0.5))
    with pytest.raises(ValueError, match="estimator"):
        ConditionalScore(nn.Linear(2, 2), obs.y)
    with pytest.raises(ValueError, match="aux"):
        ConditionalScore(est, obs.y, obs.aux[:1])
    out = sample_conditional(est, obs.y, obs.aux, samples=3, steps=2, generator=g, chunk_size=4)
    assert out.particles.shape == (2, 3, 1, 8, 8) and out.ess.shape == (2, 2)
    assert torch.allclose(out.weights, torch.full((2, 3), 1 / 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="samples"):
        sample_conditional(est, obs.y, obs.aux, samples=0)
    with pytest.raises(ValueError, match="chunk_size"):
        sample_conditional(est, obs.y, obs.aux, chunk_size=0)
    seen = []
    sample_conditional(est, obs.y, obs.aux, samples=3, steps=2, generator=g, chunk_size=4, callback=lambda info: seen.append((info.step, info.particles.shape[0])))
    assert seen == [(1, 4), (0, 4), (1, 2), (0, 2)]  # one sampler run per chunk of rows


def test_save_load_round_trip(tmp_path):
    est = tiny("cmde").eval()
    est.save_pretrained(tmp_path / "m", steps=3)
    back = load_conditional(tmp_path / "m")
    assert back.config == est.config
    z, t, aux = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(0)), torch.full((2,), 0.3), torch.ones(2, 1, 8, 8)
    torch.testing.assert_close(back(z, t, aux), est(z, t, aux))
    with pytest.raises(ValueError, match="name"):
        load_conditional("no-such-model")


def test_construction_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = tiny("cde"), tiny("cde")
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["cde", "cdiffe", "cmde"])
def test_short_training_lowers_the_loss(estimator):
    from smcdiff.data import load_digits_images

    images = load_digits_images("train")[:256]
    est = tiny(estimator)

    @torch.no_grad()
    def held_out(model) -> float:
        g = torch.Generator().manual_seed(7)
        x = images.repeat(2, 1, 1, 1)
        obs = observe(model.config, x, generator=g)
        return score_matching_loss(model, x, obs.y, obs.aux, generator=g).item()

    before = held_out(est.eval())
    result = train(est, images, steps=60, batch_size=64, lr=5e-3, warmup=5, ema_decay=0.5, generator=torch.Generator().manual_seed(1), progress=False)
    assert result.steps == 60 and [step for step, _ in result.history] == [50, 60]
    assert held_out(result.model) < 0.8 * before
    with pytest.raises(ValueError, match="images"):
        train(est, images[:, :, :4], steps=1)
    with pytest.raises(ValueError, match="steps"):
        train(est, images, steps=0)


def test_shipped_models_load():
    from smcdiff.msdiff.conditional import ASSET_DIR, SHIPPED

    present = [name for name in SHIPPED if (ASSET_DIR / name / "model.safetensors").is_file()]
    if not present:
        pytest.skip("no shipped conditional models")
    for name in present:
        est = load_conditional(name)
        assert est.num_parameters < 2_000_000
        assert isinstance(est.config, ConditionalConfig)


@pytest.mark.slow
def test_compare_script_runs_end_to_end(tmp_path, monkeypatch):
    """examples/compare_cmde.py on tiny untrained models: every row of both tables, finite metrics."""
    import importlib.util
    import json
    from pathlib import Path

    from diffusers import DDPMScheduler, UNet2DModel

    path = Path(__file__).resolve().parents[1] / "examples" / "compare_cmde.py"
    spec = importlib.util.spec_from_file_location("compare_cmde", path)
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "compare_cmde", script)  # dataclasses look their module up
    spec.loader.exec_module(script)

    for name in list(script.INPAINT_MODELS.values()) + list(script.SR_MODELS.values()):
        task = "sr" if name.startswith("sr_") else "inpaint"
        estimator = name.removeprefix("sr_").split("_")[0]
        sy = float(name.rsplit("_", 1)[1]) if estimator == "cmde" else None
        cfg = ConditionalConfig(estimator, task=task, sigma_y_max=sy, **TINY)
        ConditionalEstimator(cfg).save_pretrained(tmp_path / "models" / name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DModel(
            sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), norm_num_groups=8,
            down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), layers_per_block=1,
        )
    unet.save_pretrained(tmp_path / "uncond" / "unet")
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(tmp_path / "uncond" / "scheduler")

    out_json, out_md = tmp_path / "rows.json", tmp_path / "table.md"
    rows = script.main([
        "--n-test", "6", "--samples", "2", "--steps", "2", "--smc-steps", "2", "--particles", "2", "4",
        "--models-dir", str(tmp_path / "models"), "--unconditional", str(tmp_path / "uncond"),
        "--json", str(out_json), "--markdown", str(out_md),
    ])
    methods = [(r.task, r.method) for r in rows]
    assert methods == [("inpaint", m) for m in script.INPAINT_MODELS] + [
        ("inpaint", "SMC, M = 2"), ("inpaint", "SMC, M = 4"), ("inpaint", "replacement")
    ] + [("sr", m) for m in script.SR_MODELS] + [("sr", "SMC (mcgdiff, euler), M = 2"), ("sr", "SMC (mcgdiff, euler), M = 4")]
    for r in rows:
        assert math.isfinite(r.psnr) and math.isfinite(r.ufid) and math.isfinite(r.jfid) and r.diversity >= 0
    assert [r.evaluations for r in rows if r.method.startswith("SMC")] == [4, 8, 4, 8]
    assert all(math.isinf(r.consistency) for r in rows if r.method.startswith("SMC") and r.task == "inpaint")
    assert all(not math.isnan(r.consistency) for r in rows if r.task == "sr")  # clipping to [-1, 1] can break A x = y
    assert len(json.loads(out_json.read_text())["rows"]) == len(rows)
    assert "Super-resolution" in out_md.read_text()
