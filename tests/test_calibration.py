"""Simulation-based calibration (smcdiff.calibration) against closed forms.

Laws checked: (1) an exact posterior sampler on a linear-Gaussian problem gives uniform ranks, nominal
coverage and the closed-form mean squared error; (2) draws scaled by 0.7 or 1.3 about the posterior
mean are rejected, with the number of problems R from the power calculation below; (3) the ECDF bands
hold their simultaneous level; (4) ties are broken uniformly; (5) simulated problems follow the law of
the discretised reverse chain and y - A x* has standard deviation noise_std.

Power calculation (:func:`_problems_needed`). For a Gaussian posterior and a linear statistic f with
posterior mean m and variance v, draws scaled by c about m give f(draw) ~ N(m, c^2 v) while f(x*) ~
N(m, v); given Z = (f(x*) - m) / sqrt(v) ~ N(0, 1) each draw falls below the truth with probability
Phi(Z / c), so rank ~ Binomial(L, Phi(Z / c)) mixed over Z. Central coverage of level q is then
2 Phi(c z_q) - 1 (L -> infinity): at q = 0.9, 75.0 % for c = 0.7 and 96.8 % for c = 1.3. The chi-square
test on B = 10 bins has noncentrality R * sum_b (p_b - 1/B)^2 / (1/B); at the Bonferroni level
0.01 / S (S = 6 coordinates + 8 directions + fit = 15 statistics) it rejects with probability >= 0.99
from R = 610 problems (c = 1.3, the harder case; c = 0.7 needs 280) with L = 99 draws. We take R = 800,
which leaves room for the noncentral chi-square approximation; the data-fit statistic only adds power.
The exact sampler passes with probability >= 0.99 by the Bonferroni bound.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from smcdiff.calibration import (
    SBCResult,
    compute_ranks,
    concat_sbc,
    ecdf_bands,
    ecdf_p_values,
    load_sbc,
    sbc,
    simulate_problems,
)
from smcdiff.calibration.bands import ecdf_counts, evaluation_indices
from smcdiff.operators import Dense
from smcdiff.oracle import GaussianScore, linear_gaussian_posterior
from smcdiff.oracle.linear_gaussian import discretised_law
from smcdiff.sde import OU

F64 = torch.float64
D, M, NOISE = 6, 3, 0.5
R_POWER, L_POWER, BINS, STATS = 800, 99, 10, 15
ALPHA = 0.01


def _gaussian(seed: int = 0, d: int = D, m: int = M):
    g = torch.Generator().manual_seed(seed)
    b = torch.randn(d, d, generator=g, dtype=F64)
    cov = b @ b.T / d + 0.3 * torch.eye(d, dtype=F64)
    mean = torch.randn(d, generator=g, dtype=F64)
    return mean, cov, torch.randn(m, d, generator=g, dtype=F64)


MEAN, COV, A = _gaussian()
OP = Dense(A)


def _problems(n: int, g: torch.Generator, operator=OP, noise: float = NOISE):
    """x* from the exact prior N(MEAN, COV) (the exact posterior is the target), y = A x* + noise eps."""
    x = MEAN + torch.randn(n, D, generator=g, dtype=F64) @ torch.linalg.cholesky(COV).T
    y = operator.A(x)
    return x, y + noise * torch.randn(y.shape, generator=g, dtype=F64)


def _sampler(draws: int, g: torch.Generator, scale: float = 1.0, operator=OP, noise: float = NOISE, mask=None):
    """Draws from the closed-form posterior, scaled by ``scale`` about its mean; ``mask``: copy y there."""

    def sample(y):
        mean, cov = linear_gaussian_posterior(MEAN, COV, operator, y, noise)
        chol = torch.linalg.cholesky(cov + 1e-12 * torch.eye(D, dtype=F64))
        eps = torch.randn(y.shape[0], draws, D, generator=g, dtype=F64)
        x = mean[:, None] + scale * eps @ chol.transpose(-1, -2)
        return x if mask is None else torch.where(mask, y[:, None], x)

    return sample


def _rank_law(scale: float, draws: int) -> np.ndarray:
    """P(rank = r), r = 0..L, for a linear statistic when the draws are scaled by ``scale`` (docstring)."""
    z, w = np.polynomial.hermite_e.hermegauss(200)
    p = stats.norm.cdf(z / scale)
    return (stats.binom.pmf(np.arange(draws + 1)[:, None], draws, p[None]) * w / w.sum()).sum(1)


def _problems_needed(scale: float, draws: int, bins: int, alpha: float, power: float = 0.99) -> int:
    """Smallest R (multiple of 10) at which the chi-square test on ``bins`` bins rejects with ``power``."""
    idx = np.arange(draws + 1) * bins // (draws + 1)
    p1 = np.bincount(idx, weights=_rank_law(scale, draws), minlength=bins)
    p0 = np.bincount(idx, minlength=bins) / (draws + 1)
    lam = ((p1 - p0) ** 2 / p0).sum()
    crit = stats.chi2.isf(alpha, bins - 1)
    r = 10
    while stats.ncx2.sf(crit, bins - 1, r * lam) < power:
        r += 10
    return r


def _expected_coverage(scale: float, draws: int, q: float) -> float:
    """Expected fractional-rule coverage at level q of a linear statistic under scaling (finite L)."""
    r = np.arange(draws + 1)
    frac = np.clip(np.minimum((r + 1) / (draws + 1), 0.5 + q / 2) - np.maximum(r / (draws + 1), 0.5 - q / 2), 0, None)
    return float((_rank_law(scale, draws) * frac * (draws + 1)).sum())


def _run(scale: float, seed: int, n: int = R_POWER, draws: int = L_POWER) -> SBCResult:
    g = torch.Generator().manual_seed(seed)
    x, y = _problems(n, g)
    return sbc(_sampler(draws, g, scale), x, y, draws, operator=OP, generator=g)


# ---- the power calculation and the decision ----------------------------------------------------------
def test_power_calculation_supports_the_number_of_problems():
    assert _rank_law(1.0, 9) == pytest.approx(np.full(10, 0.1), abs=1e-10)  # exact: uniform
    assert 2 * stats.norm.cdf(0.7 * stats.norm.ppf(0.95)) - 1 == pytest.approx(0.750, abs=1e-3)
    assert 2 * stats.norm.cdf(1.3 * stats.norm.ppf(0.95)) - 1 == pytest.approx(0.968, abs=1e-3)
    for scale in (0.7, 1.3):
        assert _problems_needed(scale, L_POWER, BINS, ALPHA / STATS) <= R_POWER
    assert _run(1.0, 0).bins() == BINS


def test_exact_sampler_is_calibrated():
    res = _run(1.0, seed=1)
    assert res.ranks.shape == (R_POWER, STATS) and len(res.names) == STATS
    assert res.calibrated(ALPHA), res.verdict()
    assert res.dispersion() == "calibrated"
    assert res.verdict(ALPHA).startswith("consistent with calibrated at level 0.01 (corrected p = ")
    # coverage = nominal within 4 Monte Carlo standard errors (per-problem means are independent)
    for q, cov in res.coverage().items():
        assert abs(cov - q) < 4 * res.coverage_se(q), (q, cov)
    # mse: the mean of L exact draws misses x* by N(0, (1 + 1/L) Sigma_post) per problem
    _, post_cov = linear_gaussian_posterior(MEAN, COV, OP, torch.zeros(1, M, dtype=F64), NOISE)
    sigma = post_cov[0] * (1 + 1 / L_POWER)
    expected = torch.trace(sigma).item() / D
    se = math.sqrt(2 * torch.trace(sigma @ sigma).item() / D**2 / R_POWER)
    assert abs(res.mse - expected) < 4 * se


@pytest.mark.parametrize("scale, kind", [(0.7, "under-dispersed"), (1.3, "over-dispersed")])
def test_scaled_samplers_are_rejected(scale, kind):
    res = _run(scale, seed=2)
    assert not res.calibrated(ALPHA)
    assert res.dispersion() == kind
    assert res.verdict(ALPHA).startswith(f"rejects calibration: {kind}, coverage ")
    # the linear statistics' coverage matches the closed form (finite-L fractional rule) within 4 SE
    for group in ("coordinates", "directions"):
        cov = res.coverage((0.9,), group=group)[0.9]
        assert abs(cov - _expected_coverage(scale, L_POWER, 0.9)) < 4 * res.coverage_se(0.9, group=group), (group, cov)


# ---- ties ------------------------------------------------------------------------------------------
def test_ties_are_broken_uniformly():
    g = torch.Generator().manual_seed(3)
    truth = torch.zeros(4000, 2, dtype=F64)
    draws = torch.zeros(4000, 9, 2, dtype=F64)
    draws[:, :3, 1] = -1.0  # statistic 1: 3 draws below, 6 tied -> uniform on {3..9}
    ranks = compute_ranks(truth, draws, generator=g)
    for s, lo in ((0, 0), (1, 3)):
        counts = np.bincount(ranks[:, s].numpy() - lo, minlength=10 - lo)
        assert len(counts) == 10 - lo
        assert stats.chisquare(counts).pvalue > 1e-3, counts


def test_noiseless_inpainting_ties_give_uniform_ranks():
    """Every draw copies the observed coordinates of x*: their ranks come from tie-breaking alone."""
    g = torch.Generator().manual_seed(4)
    mask = torch.tensor([True, False, True, False, False, False])
    x, y = _problems(600, g, operator=_mask_op(mask), noise=0.0)
    res = sbc(_sampler(49, g, operator=mask, noise=0.0, mask=mask), x, y, 49, operator=mask, generator=g)
    assert res.calibrated(ALPHA), res.verdict()
    observed = [res.names.index("x[0]"), res.names.index("x[2]"), res.names.index("fit")]
    assert (res.p_values[observed] > ALPHA / len(res.names)).all()
    tied = SBCResult(res.ranks[:, observed], [res.names[i] for i in observed], res.draws)
    assert abs(tied.coverage((0.5,))[0.5] - 0.5) < 4 * tied.coverage_se(0.5)


def _mask_op(mask):
    from smcdiff.operators import Mask

    return Mask(mask)


@given(
    r=st.integers(1, 6), s=st.integers(1, 4), draws=st.integers(1, 12), seed=st.integers(0, 2**31 - 1),
)
def test_ranks_property(r, s, draws, seed):
    g = torch.Generator().manual_seed(seed)
    truth = torch.randint(0, 3, (r, s), generator=g).to(F64)  # few values: many ties
    d = torch.randint(0, 3, (r, draws, s), generator=g).to(F64)
    ranks = compute_ranks(truth, d, generator=g)
    assert ranks.shape == (r, s) and ranks.dtype == torch.int64
    assert ((ranks >= 0) & (ranks <= draws)).all()
    below = (d < truth[:, None]).sum(1)
    assert ((ranks >= below) & (ranks <= below + (d == truth[:, None]).sum(1))).all()


# ---- ECDF bands ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, draws", [(200, 49), (100, 9)])
def test_ecdf_bands_hold_their_level(n, draws):
    sims, fresh = 4000, 4000
    z, lower, upper = ecdf_bands(n, draws, level=0.95, simulations=sims)
    assert z.shape == lower.shape == upper.shape and (lower <= 0).all() and (upper >= 0).all()
    g = torch.Generator().manual_seed(5)
    ranks = torch.randint(0, draws + 1, (n, fresh), generator=g).numpy()
    diff = ecdf_counts(ranks, evaluation_indices(n, draws)) / n - z
    inside = ((diff >= lower - 0.5 / n) & (diff <= upper + 0.5 / n)).all(1).mean()
    se = math.sqrt(0.95 * 0.05 / fresh + 0.95 * 0.05 / sims)  # fresh sets + the simulated quantile
    assert abs(inside - 0.95) < 4 * se, inside
    # the simultaneous test p-value agrees with the band
    p = ecdf_p_values(ranks[:, :500], draws, simulations=sims)
    assert ((p > 0.05) == ((diff[:500] >= lower - 0.5 / n) & (diff[:500] <= upper + 0.5 / n)).all(1)).mean() > 0.98


def test_ecdf_bands_cache_and_generator():
    a = ecdf_bands(30, 19)
    assert all(np.array_equal(u, v) for u, v in zip(a, ecdf_bands(30, 19)))
    b = ecdf_bands(30, 19, generator=torch.Generator().manual_seed(1), simulations=500)
    assert np.array_equal(a[0], b[0])
    with pytest.raises(ValueError, match="level"):
        ecdf_bands(30, 19, level=1.5)
    with pytest.raises(ValueError, match="n_ranks"):
        ecdf_bands(1, 19)
    with pytest.raises(ValueError, match="evaluation_points"):
        ecdf_bands(30, 19, evaluation_points=100)


# ---- simulate_problems -----------------------------------------------------------------------------
def test_simulate_problems_follows_the_discretised_chain():
    sde, d, n, steps = OU(), 3, 4000, 40
    mean, cov = MEAN[:d], COV[:d, :d]
    score = GaussianScore(mean, cov, sde)
    op = Dense(A[:2, :d])
    g = torch.Generator().manual_seed(6)
    x, y = simulate_problems(score, sde, op, 0.3, n, steps=steps, generator=g, dtype=F64)
    assert x.shape == (n, d) and y.shape == (n, 2) and x.dtype == F64
    law_mean, law_cov = discretised_law(score, sde, steps, d)
    se = (law_cov.diagonal() / n).sqrt()
    assert ((x.mean(0) - law_mean).abs() < 4 * se).all()
    var_se = law_cov.diagonal() * math.sqrt(2 / n)
    assert ((x.var(0) - law_cov.diagonal()).abs() < 4 * var_se).all()
    resid = y - x @ A[:2, :d].T
    assert abs(resid.std().item() - 0.3) < 4 * 0.3 / math.sqrt(2 * resid.numel())
    assert abs(resid.mean().item()) < 4 * 0.3 / math.sqrt(resid.numel())


class _RecordingScore(torch.nn.Module):
    """A Gaussian score that records the times it is queried at."""

    def __init__(self, sde):
        super().__init__()
        self.inner = GaussianScore(MEAN[:2], COV[:2, :2], sde)
        self.sde, self.event_shape, self.times = sde, (2,), set()

    def forward(self, x, t):
        self.times.update(t.tolist())
        return self.inner(x, t)


class _GridScore(_RecordingScore):
    """... with a diffusers-style ``time_grid`` (the model's training steps)."""

    def __init__(self, sde):
        super().__init__(sde)
        self.asked = []

    def time_grid(self, steps):
        self.asked.append(steps)
        return torch.linspace(self.sde.T, self.sde.eps, steps + 1, dtype=F64)  # not OU's quadratic grid


def test_simulate_problems_grid_rule_and_masks():
    sde = OU()
    score = _GridScore(sde)
    mask = torch.tensor([True, False])
    x, y = simulate_problems(score, sde, mask, 0.0, 5, steps=7, generator=torch.Generator().manual_seed(0))
    assert score.asked == [7] and len(score.times) == 7 and x.dtype == torch.float32  # float32: no parameters
    grid = score.time_grid(7)[:-1].float()
    assert sorted(score.times) == pytest.approx(sorted(grid.tolist()))
    assert torch.equal(y[:, 0], x[:, 0]) and (y[:, 1] == 0).all()
    simulate_problems(score, sde, mask, 0.0, 2, generator=torch.Generator().manual_seed(0))
    assert score.asked[-1] == 250  # the samplers' default steps
    plain = _RecordingScore(sde)  # no time_grid: the SDE's grid, 250 steps by default
    simulate_problems(plain, sde, mask, 0.0, 2, generator=torch.Generator().manual_seed(0))
    assert sorted(plain.times) == pytest.approx(sorted(sde.time_grid(250)[:-1].float().tolist()))
    plain.times.clear()
    simulate_problems(plain, sde, mask, 0.0, 2, steps=9, generator=torch.Generator().manual_seed(0))
    assert len(plain.times) == 9
    per_row = torch.tensor([[True, False], [False, True], [True, True]])
    x, y = simulate_problems(score, sde, per_row, 0.0, 3, steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, torch.where(per_row, x, torch.zeros_like(x)))


def test_simulate_problems_errors():
    sde = OU()
    score = GaussianScore(MEAN[:2], COV[:2, :2], sde)
    mask = torch.tensor([True, False])
    good = dict(steps=2)
    for kwargs, name in [
        (dict(n=0), "n"),
        (dict(noise_std=-1.0), "noise_std"),
        (dict(noise_std=float("nan")), "noise_std"),
        (dict(operator=torch.ones(2)), "operator"),
        (dict(operator=torch.ones(3, dtype=torch.bool)), "operator"),
        (dict(operator=Dense(torch.ones(1, 3))), "operator"),
        (dict(operator="mask"), "operator"),
        (dict(generator=0), "generator"),
        (dict(event_shape=(0,)), "event_shape"),
        (dict(steps=0), "steps"),
        (dict(dtype=torch.int64), "dtype"),
    ]:
        args = dict(operator=mask, noise_std=0.1, n=2) | good | kwargs
        with pytest.raises(ValueError, match=name):
            simulate_problems(score, sde, args.pop("operator"), args.pop("noise_std"), args.pop("n"), **args)
    with pytest.raises(ValueError, match="event_shape"):
        simulate_problems(lambda x, t: -x, sde, mask, 0.1, 2, steps=2)


# ---- sbc: batches, statistics, errors ----------------------------------------------------------------
def test_sbc_batches_statistics_and_per_row_masks():
    g = torch.Generator().manual_seed(7)
    n, draws = 10, 5
    x = torch.randn(n, 2, 3, generator=g, dtype=F64)
    masks = torch.rand(n, 2, 3, generator=g) < 0.5
    y = torch.where(masks, x, torch.zeros_like(x))
    fixed = torch.randn(n, draws, 2, 3, generator=g, dtype=F64)  # no ties with x
    sizes = []

    def sampler(yb):  # the draws of the next problems, in order
        start = sum(sizes) % n
        sizes.append(yb.shape[0])
        return fixed[start : start + yb.shape[0]]

    whole = sbc(sampler, x, y, draws, operator=masks, directions=3, generator=torch.Generator().manual_seed(1))
    sizes.clear()
    parts = sbc(sampler, x, y, draws, operator=masks, directions=3, batch_size=4, generator=torch.Generator().manual_seed(1))
    assert sizes == [4, 4, 2]
    assert np.array_equal(whole.ranks, parts.ranks) and whole.mse == pytest.approx(parts.mse)
    assert whole.names[:2] == ("x[0]", "x[1]") and whole.names[6:] == ("u0", "u1", "u2", "fit")
    assert set(whole.groups) == {"coordinates", "directions", "fit"}
    fit_truth = ((torch.where(masks, x, 0) - y) ** 2).sum((1, 2))  # = 0
    fit_draws = ((torch.where(masks[:, None], fixed, 0) - y[:, None]) ** 2).sum((2, 3))
    assert np.array_equal(whole.ranks[:, -1], (fit_draws < fit_truth[:, None]).sum(1).numpy())
    assert whole.mse == pytest.approx(((fixed.mean(1) - x) ** 2).mean().item())
    only = sbc(sampler, x, y, draws, statistics=("directions",), directions=2)
    assert only.names == ("u0", "u1")


def test_sbc_errors_name_the_argument():
    g = torch.Generator().manual_seed(8)
    x, y = _problems(4, g)
    good = _sampler(3, g)
    for call, name in [
        (lambda: sbc(good, x, y, 3), "operator"),  # 'fit' without an operator
        (lambda: sbc(good, x, y, 0, operator=OP), "draws"),
        (lambda: sbc(good, x, y, 3, operator=OP, batch_size=0), "batch_size"),
        (lambda: sbc(good, x, y, 3, operator=OP, statistics=("mean",)), "statistics"),
        (lambda: sbc(good, x, y, 3, operator=OP, directions=0), "directions"),
        (lambda: sbc(good, x, y[:3], 3, operator=OP), "y"),
        (lambda: sbc(good, x, y, 3, operator=OP, generator=1), "generator"),
        (lambda: sbc(good, x, y, 4, operator=OP), "sampler"),  # returns 3 draws, not 4
        (lambda: sbc(lambda yb: torch.full((yb.shape[0], 3, D), float("nan")), x, y, 3, operator=OP), "sampler"),
        (lambda: sbc(good, x, torch.zeros(4, 5, dtype=F64), 3, operator=OP), "y"),
        (lambda: sbc("sampler", x, y, 3, operator=OP), "sampler"),
    ]:
        with pytest.raises(ValueError, match=name):
            call()


# ---- the result: tests, files, figure ---------------------------------------------------------------
def test_result_small_and_holm():
    res = _run(1.0, seed=9, n=30, draws=9)
    assert res.bins() == 5 and res.p_values.shape == (STATS,)
    adj = res.adjusted_p_values
    assert (adj >= res.p_values - 1e-15).all() and adj.min() == pytest.approx(res.p_value)
    assert set(res.coverage()) == {0.5, 0.8, 0.9, 0.95}
    tiny = SBCResult(np.zeros((3, 1), dtype=np.int64), ["x[0]"], 99)
    assert tiny.bins() == 0 and math.isnan(tiny.p_value)
    with pytest.raises(ValueError, match="too few problems"):
        tiny.calibrated()
    with pytest.raises(ValueError, match="ranks"):
        SBCResult(np.full((3, 1), 100), ["x[0]"], 99)
    with pytest.raises(ValueError, match="names"):
        SBCResult(np.zeros((3, 2), dtype=np.int64), ["a", "a"], 9)
    with pytest.raises(ValueError, match="level"):
        res.calibrated(level=2)
    with pytest.raises(ValueError, match="group"):
        res.coverage(group="pixels")
    assert res.inside_bands().shape == (STATS,)


def test_uniform_ranks_coverage_is_exact():
    """Expected fractional coverage is exactly q: every rank value once gives coverage q exactly."""
    one = SBCResult(np.array([[0], [1], [3]]), ["x[0]"], 3)  # PIT intervals [0, 1/4], [1/4, 1/2], [3/4, 1]
    assert one.coverage((0.9, 0.5)) == pytest.approx({0.9: (0.8 + 1 + 0.8) / 3, 0.5: (0 + 1 + 0) / 3})
    ranks = np.arange(8)[:, None].repeat(2, 1)
    res = SBCResult(ranks, ["x[0]", "u0"], 7)
    for q, cov in res.coverage((0.1, 0.5, 0.9, 0.95)).items():
        assert cov == pytest.approx(q, abs=1e-12)


def test_save_load_round_trip(tmp_path):
    names = [f"x[{i}]" for i in range(D)] + [f"u{k}" for k in range(8)] + ["fit"]
    res = SBCResult(_run(1.0, seed=10, n=20, draws=7).ranks, names, 7, 0.25, {"sampler": "exact"})
    path = res.save(tmp_path / "sbc.npz")
    back = load_sbc(path)
    assert np.array_equal(back.ranks, res.ranks) and back.names == res.names
    assert (back.draws, back.mse, back.meta) == (7, 0.25, {"sampler": "exact"})
    assert back.p_value == res.p_value
    with pytest.raises(ValueError, match="path"):
        res.save(tmp_path / "sbc.txt")
    np.savez(tmp_path / "other.npz", ranks=res.ranks)
    with pytest.raises(ValueError, match="path"):
        load_sbc(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="path"):
        load_sbc(tmp_path / "missing.npz")


def test_concat_of_parts_equals_the_whole_run():
    """SBC done in two pieces (same generator seed, so the same directions) and stacked is the SBC of all problems."""
    x, y = _problems(40, torch.Generator().manual_seed(12))
    chol = torch.linalg.cholesky(linear_gaussian_posterior(MEAN, COV, OP, y[:1], NOISE)[1][0])

    def fixed_draws(yb):  # draws that depend on y only, so that a problem gets the same draws in any batch
        eps = torch.sin(1e3 * yb[:, :1, None] * torch.arange(1, 7 * D + 1, dtype=F64).view(1, 7, D))
        return linear_gaussian_posterior(MEAN, COV, OP, yb, NOISE)[0][:, None] + eps @ chol.T

    run = lambda a, b: sbc(fixed_draws, x[a:b], y[a:b], 7, operator=OP, generator=torch.Generator().manual_seed(5))  # noqa: E731
    whole, merged = run(0, 40), concat_sbc([run(0, 15), run(15, 40)])
    assert np.array_equal(merged.ranks, whole.ranks) and merged.names == whole.names
    assert merged.mse == pytest.approx(whole.mse, rel=1e-12) and merged.p_value == whole.p_value
    assert merged.meta["parts"] == 2
    with pytest.raises(ValueError, match="parts"):
        concat_sbc([])
    with pytest.raises(ValueError, match=r"parts\[1\]"):
        concat_sbc([whole, SBCResult(whole.ranks.clip(0, 5), whole.names, 5)])


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    res = _run(1.3, seed=11, n=40, draws=19)
    path = res.plot(tmp_path / "sbc.png", title="scaled 1.3")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="path"):
        res.plot(tmp_path / "sbc.pdf")
