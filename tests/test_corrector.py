"""Langevin corrector moves of the bootstrap and twisted proposals (``Bootstrap(corrector_steps=K)``, ``Twisted(corrector_steps=K)``).

The corrector is unadjusted Langevin on the unobserved coefficients: it is not exact in the limit, so
the tests bound its bias on a Gaussian (measured allowance, documented below) and check that the
moves keep what must be kept (observed coordinates, shapes, determinism) and refuse what they cannot do.
"""

import math

import pytest
import torch

from smcdiff import VP, Bootstrap, GaussianScore, RunOptions, Twisted, gaussian_posterior, restore, smc_sample
from smcdiff.proposals import PROPOSALS
from smcdiff.operators import Dense

F64 = torch.float64


def gaussian(d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=F64)
    cov = a @ a.T / d + 0.2 * torch.eye(d, dtype=F64)
    mean = 0.5 * torch.randn(d, generator=g, dtype=F64)
    mask = torch.zeros(d, dtype=torch.bool)
    mask[: d // 2] = True
    x = mean + torch.linalg.cholesky(cov) @ torch.randn(d, generator=g, dtype=F64)
    return mean, cov, mask, x


@pytest.mark.slow
@pytest.mark.parametrize("proposal, size", [("bootstrap", 0.5), ("bootstrap", 1.0), ("twisted", 0.5), ("twisted", 1.0)])
def test_corrector_stays_near_the_exact_posterior(proposal, size):
    """16 runs of M = 500, 100 steps, K = 5: pooled mean within 4 SE + 0.05 sd of the exact posterior and
    pooled variance within 10% of it (measured, bootstrap: |bias| <= 0.01 sd and variance ratios 1.01-1.03,
    against 0.02 sd and 1.01-1.03 without the corrector; twisted: <= 0.04 sd and 1.00-1.03, against 0.01 sd and
    0.99-1.05 without). A wrong noise scale
    (sqrt(eps) instead of sqrt(2 eps)) or sign moves the variance ratio outside."""
    d, runs = 8, 16
    mean, cov, mask, x = gaussian(d)
    sde = VP()
    score = GaussianScore(mean, cov, sde)
    y = x[None].expand(runs, d).clone()
    out = smc_sample(
        score, sde, y, mask, particles=500, steps=100, generator=torch.Generator().manual_seed(3),
        proposal=PROPOSALS[proposal](corrector_steps=5, corrector_size=size),
    )
    post_mean, post_cov = gaussian_posterior(mean, cov, mask, x[None])
    free = ~mask
    sd = post_cov[0].diagonal()[free].sqrt()
    run_means = out.mean()[:, free]
    se = run_means.std(0) / math.sqrt(runs)
    assert ((run_means.mean(0) - post_mean[0, free]).abs() <= 4 * se + 0.05 * sd).all()
    centred = out.particles[..., free] - run_means[:, None]
    ratio = (out.weights[..., None] * centred**2).sum(1).mean(0) / sd**2
    assert ((ratio - 1).abs() < 0.10).all(), ratio
    assert torch.equal(out.particles[..., mask], y[:, None, mask].expand(runs, 500, d // 2))


def test_corrector_keeps_the_observation_of_any_operator_exactly():
    d = 16
    mean, cov, _, x = gaussian(d)
    sde = VP()
    score = GaussianScore(mean, cov, sde)
    a = torch.randn(5, d, generator=torch.Generator().manual_seed(1), dtype=F64)
    op = Dense(a, (d,))
    y = (a @ x)[None]
    out = smc_sample(
        score, sde, y, op, particles=16, steps=20, generator=torch.Generator().manual_seed(0),
        proposal=Bootstrap(corrector_steps=2),
    )
    assert out.particles.shape == (1, 16, d)
    assert torch.allclose(out.particles[0] @ a.T, y.expand(16, 5), atol=1e-9)


@pytest.mark.parametrize("proposal", ["bootstrap", "twisted"])
def test_no_corrector_is_the_plain_proposal_and_runs_are_reproducible(proposal):
    mean, cov, mask, x = gaussian()
    sde = VP()
    score = GaussianScore(mean, cov, sde)
    run = lambda **kw: smc_sample(score, sde, x[None], mask, particles=32, steps=10,  # noqa: E731
                                  proposal=PROPOSALS[proposal](**kw), generator=torch.Generator().manual_seed(1))
    assert torch.equal(run().particles, run(corrector_steps=0).particles)
    assert torch.equal(run(corrector_steps=2).particles, run(corrector_steps=2).particles)
    assert not torch.equal(run().particles, run(corrector_steps=2).particles)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Bootstrap(corrector_steps=-1), "corrector_steps"),
        (lambda: Bootstrap(corrector_steps=1.5), "corrector_steps"),
        (lambda: Bootstrap(corrector_steps=1, corrector_size=2.0), "corrector_size"),
        (lambda: Bootstrap(corrector_steps=1, corrector_size=0.0), "corrector_size"),
        (lambda: Twisted(corrector_steps=1, corrector_size=-1.0), "corrector_size"),
    ],
)
def test_bad_corrector_arguments_name_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_mcgdiff_has_no_corrector():
    from smcdiff import MCGdiff
    from smcdiff.proposals import build_proposal

    with pytest.raises(TypeError, match="corrector_steps"):
        MCGdiff(corrector_steps=1)
    with pytest.raises(ValueError, match="corrector_steps applies to proposal bootstrap or twisted, not mcgdiff"):
        build_proposal("mcgdiff", 0.0, {"corrector_steps": 1})


def test_restore_counts_the_corrector_evaluations_and_refuses_it_for_replacement():
    image = torch.zeros(1, 1, 8, 8)
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[..., :4] = True
    with pytest.warns(UserWarning, match="steps"):
        res = restore(
            "digits", image, mask, particles=2, steps=3, generator=torch.Generator().manual_seed(0),
            proposal=Bootstrap(corrector_steps=1), options=RunOptions(populations=1),
        )
    assert res.model_evaluations == 2 * 3 * 2 and res.settings["proposal_options"]["corrector_steps"] == 1
    with pytest.raises(ValueError, match="proposal applies to method='smc'"):
        restore(
            "digits", image, mask, particles=2, steps=3, method="replacement",
            proposal=Bootstrap(corrector_steps=1),
        )


def test_the_twisted_corrector_caps_the_pull_of_an_imperfect_network():
    """A score whose denoiser has a large Jacobian at high noise (a network's error amplified by 1/alpha_t)
    gives the twist a huge gradient there; the corrector caps its pull as the move does, so the particles
    stay on the data's scale (measured: at most 4.1; uncapped, 211)."""
    mean, cov, mask, x = gaussian()
    sde = VP()
    exact = GaussianScore(mean, cov, sde)

    def rough(xt, t):
        sigma = sde.coefficients(t, 1, like=xt).sigma2.sqrt()
        return exact(xt, t) + 0.05 * torch.sin(500 * xt.sum(-1, keepdim=True)) / sigma  # mixes the coordinates

    out = smc_sample(
        rough, sde, x[None], mask, particles=64, steps=20, generator=torch.Generator().manual_seed(0),
        proposal=Twisted(corrector_steps=2),
    )
    assert torch.isfinite(out.particles).all()
    assert out.particles.abs().max() < 20
