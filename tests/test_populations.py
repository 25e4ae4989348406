"""Independent populations (``populations=P``): P SMC runs per observation in one batched call, pooled
with equal weights, draws stratified over the runs."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smcdiff import GaussianScore, OU, RunOptions, VP, restore, smc_sample
from smcdiff.cli import main
from smcdiff.data import load_digits_images
from smcdiff.operators import Downsample
from smcdiff.feynman_kac import WeightedSamples
from smcdiff.results import ResultFileError, load_result, save_result

F64 = torch.float64


def _random_runs(rows: int, m: int, seed: int, event: tuple[int, ...] = (3,)) -> WeightedSamples:
    """Weighted samples of ``rows`` runs whose ESS history ends with the ESS of their final weights."""
    g = torch.Generator().manual_seed(seed)
    log_w = torch.log_softmax(3 * torch.randn(rows, m, generator=g, dtype=F64), dim=1)
    ess_final = 1.0 / (log_w.exp() ** 2).sum(1)
    ess = torch.stack([torch.rand(rows, generator=g, dtype=F64) * (m - 1) + 1, ess_final])
    return WeightedSamples(
        torch.randn(rows, m, *event, generator=g, dtype=F64), log_w, ess, torch.rand(2, rows, generator=g) > 0.5,
        torch.randn(rows, generator=g, dtype=F64), torch.randint(1, m + 1, (2, rows), generator=g),
    )


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 3), p=st.integers(1, 4), m=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_pool_keeps_each_run_and_weighs_it_equally(b, p, m, seed):
    runs = _random_runs(b * p, m, seed)
    pooled = runs.pool(p)
    assert pooled.particles.shape == (b, p * m, 3) and pooled.populations == p
    mass = pooled.weights.reshape(b, p, m).sum(-1)
    torch.testing.assert_close(mass, torch.full((b, p), 1.0 / p, dtype=F64))
    torch.testing.assert_close(pooled.particles.reshape(b, p, m, 3), runs.particles.reshape(b, p, m, 3), rtol=0, atol=0)
    # estimates: the average of the runs' estimates; evidence: the log of the average evidence
    torch.testing.assert_close(pooled.mean(), runs.mean().reshape(b, p, 3).mean(1))
    torch.testing.assert_close(pooled.log_evidence, runs.log_evidence.reshape(b, p).exp().mean(1).log())
    # the pooled ESS is the ESS of the pooled weights; lineages add up; any run's resampling shows
    torch.testing.assert_close(pooled.ess[-1], 1.0 / (pooled.weights**2).sum(1))
    assert torch.equal(pooled.lineages, runs.lineages.reshape(2, b, p).sum(-1))
    assert torch.equal(pooled.resampled, runs.resampled.reshape(2, b, p).any(-1))
    assert ((pooled.ess >= 1 - 1e-9) & (pooled.ess <= p * m + 1e-9)).all()


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 3), p=st.integers(2, 4), m=st.integers(1, 5), k=st.integers(1, 9), seed=st.integers(0, 10_000))
def test_draw_j_comes_from_run_j_mod_p(b, p, m, k, seed):
    runs = _random_runs(b * p, m, seed)
    tagged = WeightedSamples(  # each particle carries its run's index
        torch.arange(b * p, dtype=F64).remainder(p)[:, None, None].expand(b * p, m, 1).clone(),
        runs.log_weights, runs.ess, runs.resampled, runs.log_evidence, runs.lineages,
    ).pool(p)
    draws = tagged.draw(k, torch.Generator().manual_seed(seed))
    assert draws.shape == (b, k, 1)
    assert torch.equal(draws[..., 0], (torch.arange(k) % p).to(F64).expand(b, k))


def test_draw_within_a_run_follows_its_weights():
    """Draws from a pooled run are drawn from that run's normalised weights (frequencies within 4 SE)."""
    log_w = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=F64))
    runs = WeightedSamples(torch.arange(6, dtype=F64).reshape(2, 3, 1), log_w, torch.ones(1, 2, dtype=F64),
                           torch.zeros(1, 2, dtype=torch.bool), torch.zeros(2, dtype=F64)).pool(2)
    n = 20_000
    draws = runs.draw(2 * n, torch.Generator().manual_seed(0))[0, :, 0]
    for run, weights in ((0, log_w[0].exp()), (1, log_w[1].exp())):
        picked = draws[run::2]
        freq = torch.stack([(picked == 3 * run + i).double().mean() for i in range(3)])
        se = (weights * (1 - weights) / n).sqrt()
        assert ((freq - weights).abs() <= 4 * se).all(), (freq, weights)


def test_pool_refuses_what_it_cannot_pool():
    runs = _random_runs(6, 4, 0)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="populations"):
            runs.pool(bad)
    with pytest.raises(ValueError, match="multiple"):
        runs.pool(4)
    with pytest.raises(ValueError, match="already pooled"):
        runs.pool(2).pool(3)
    assert runs.pool(1) is runs


@pytest.mark.parametrize("proposal", ["bootstrap", "twisted"])
def test_populations_are_the_rows_repeated_and_pooled(proposal):
    """smc_sample(populations=P) is exactly P rows per observation run together, then pooled."""
    sde = VP()
    cov = torch.tensor([[1.0, 0.8, 0.3], [0.8, 1.0, 0.5], [0.3, 0.5, 1.0]], dtype=F64)
    score = GaussianScore(torch.zeros(3, dtype=F64), cov, sde)
    y = torch.tensor([[0.5, 0.0, 0.0], [-1.0, 0.0, 0.0]], dtype=F64)
    mask = torch.tensor([[True, False, False], [True, True, False]])
    common = dict(particles=5, steps=12, proposal=proposal)
    got = smc_sample(
        score, sde, y, mask, generator=torch.Generator().manual_seed(4), options=RunOptions(populations=3),
        **common,
    )
    rows = smc_sample(score, sde, y.repeat_interleave(3, 0), mask.repeat_interleave(3, 0),
                      generator=torch.Generator().manual_seed(4), **common).pool(3)
    for name in ("particles", "log_weights", "ess", "resampled", "log_evidence", "lineages"):
        assert torch.equal(getattr(got, name), getattr(rows, name)), name
    assert got.populations == 3 and got.particles.shape == (2, 15, 3)


@pytest.mark.slow
def test_pooled_runs_estimate_the_posterior_and_the_evidence():
    """The seed slides' Gaussian, (Y, X) ~ N(0, [[1, 1.5], [1.5, 5]]), y = 1: posterior mean 1.5, variance
    2.75. Pooled estimates of 4 runs of 250 particles within 4 SE over independent rows; the pooled
    evidence, an average of unbiased estimates, averages to Z = N(1; 0, 1) within 4 SE (the bootstrap's
    evidence is of the sampled trajectory of y, whose expectation over trajectories is p(y))."""
    sde = OU()
    cov = torch.tensor([[1.0, 1.5], [1.5, 5.0]], dtype=F64)
    score = GaussianScore(torch.zeros(2, dtype=F64), cov, sde)
    r = 32
    y = torch.zeros(r, 2, dtype=F64)
    y[:, 0] = 1.0
    out = smc_sample(
        score, sde, y, torch.tensor([True, False]), particles=250, steps=300,
        generator=torch.Generator().manual_seed(0), options=RunOptions(populations=4),
    )
    assert out.particles.shape == (r, 1000, 2)
    mean = out.mean()[:, 1]
    var = (out.weights * (out.particles[..., 1] - mean[:, None]) ** 2).sum(1)
    assert abs(mean.mean().item() - 1.5) <= 4 * mean.std().item() / math.sqrt(r)
    assert abs(var.mean().item() - 2.75) <= 4 * var.std().item() / math.sqrt(r)
    ratio = torch.exp(out.log_evidence - (-0.5 - 0.5 * math.log(2 * math.pi)))
    assert abs(ratio.mean().item() - 1.0) <= 4 * ratio.std().item() / math.sqrt(r)


@pytest.fixture(scope="module")
def sr_run():
    images = load_digits_images("test")[:2]
    low = Downsample(4).bind((1, 8, 8)).A(images)
    return restore(
        "digits", low, Downsample(4), particles=3, steps=4, generator=torch.Generator().manual_seed(0),
        proposal="mcgdiff", options=RunOptions(populations=2),
    )


def test_restore_with_populations_counts_every_run(sr_run):
    res = sr_run
    assert res.samples.shape == (2, 6, 1, 8, 8) and res.weighted.populations == 2
    assert res.model_evaluations == 2 * 2 * 3 * 4 and res.settings["populations"] == 2
    assert res.draw(4, torch.Generator().manual_seed(1)).shape == (2, 4, 1, 8, 8)


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_populations_survive_save_and_load(sr_run, tmp_path, fmt):
    back = load_result(save_result(sr_run, tmp_path / f"run.{fmt}"))
    assert back.weighted.populations == 2
    g1, g2 = (torch.Generator().manual_seed(5) for _ in range(2))
    assert torch.equal(sr_run.draw(5, g1), back.draw(5, g2))


def test_a_file_whose_populations_do_not_divide_its_particles_is_refused(sr_run, tmp_path):
    import dataclasses

    bad = dataclasses.replace(sr_run, weighted=dataclasses.replace(sr_run.weighted, populations=4))
    path = save_result(bad, tmp_path / "bad.npz")
    with pytest.raises(ResultFileError, match="populations"):
        load_result(path)


def test_bad_populations_name_the_argument():
    images = load_digits_images("test")[:1]
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[..., :4, :] = True
    for bad in (0, -2, 2.0, True):
        with pytest.raises(ValueError, match="populations"):
            restore("digits", images, mask, particles=2, steps=2, options=RunOptions(populations=bad))
    with pytest.raises(ValueError, match="options populations apply to SMC only"):
        restore("digits", images, mask, particles=2, steps=2, method="replacement", options=RunOptions(populations=2))


def test_cli_populations(tmp_path, capsys):
    from PIL import Image
    import numpy as np

    x = load_digits_images("test")[0, 0]
    Image.fromarray(((x.numpy() + 1) * 127.5).round().astype(np.uint8), mode="L").save(tmp_path / "d.png")
    base = ["inpaint", str(tmp_path / "d.png"), "--box", "2,2,4,4", "--particles", "2", "--steps", "3"]
    assert main([*base, "--populations", "3", "--out", str(tmp_path / "o.png"), "--save", str(tmp_path / "r.npz")]) == 0
    out = capsys.readouterr().out
    assert "2 particles in each of 3 independent runs" in out and "of 6)" in out
    assert load_result(tmp_path / "r.npz").weighted.populations == 3
    with pytest.raises(SystemExit):
        main([*base, "--populations", "0", "--out", str(tmp_path / "o.png")])
    assert main([*base, "--populations", "2", "--method", "replacement", "--out", str(tmp_path / "o.png")]) == 2
    assert "--populations" in capsys.readouterr().err
