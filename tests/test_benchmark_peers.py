"""The peers the image benchmarks compare against (benchmarks/common.py: DDRM, DiffPIR, DPS on smcdiff's operators).

Not part of the library, but every comparative figure in BENCHMARKS.md rests on them: on an exact Gaussian score they
must return the event shape, finite values, and honour a noiseless observation up to the noise left at the last grid
time (DDRM and DiffPIR end with the observed coefficients at y plus noise of the last level; DPS only approaches y).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from smcdiff.operators import Downsample, Mask
from smcdiff.oracle import GaussianScore
from smcdiff.sde import VP

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from common import ddrm_sample, diffpir_sample, dps_sample  # noqa: E402

SHAPE = (1, 4, 4)


class _Model(torch.nn.Module):
    """The exact score of N(0, C) on 4x4 images (a smooth covariance), as a model with ``event_shape`` and ``time_grid``."""

    def __init__(self) -> None:
        super().__init__()
        i = torch.arange(4, dtype=torch.float64)
        yy, xx = torch.meshgrid(i, i, indexing="ij")
        pos = torch.stack([yy.flatten(), xx.flatten()], 1)
        cov = 0.5 * torch.exp(-torch.cdist(pos, pos) ** 2 / 4) + 0.05 * torch.eye(16, dtype=torch.float64)
        self.sde, self.event_shape = VP(), SHAPE
        self.score = GaussianScore(torch.zeros(16, dtype=torch.float64), cov, self.sde)

    def time_grid(self, steps):
        return self.sde.time_grid(steps)

    def forward(self, x, t):
        return self.score(x.flatten(1).double(), t).float().view_as(x)


def _problem(op, n=64):
    model = _Model()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 16, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(model.score.covs[0]).T
    x = x.float().view(n, *SHAPE)
    return model, op.bind(SHAPE), x


@pytest.mark.parametrize("sampler", [ddrm_sample, diffpir_sample])
@pytest.mark.parametrize("op", [Mask(torch.rand(SHAPE, generator=torch.Generator().manual_seed(1)) < 0.5), Downsample(2)],
                         ids=["mask", "downsample"])
def test_svd_peers_honour_a_noiseless_observation(sampler, op):
    model, op, x = _problem(op)
    y = op.A(x)
    d = sampler(model, op, y, 0.0, 50, torch.Generator().manual_seed(2))
    assert d.shape == x.shape and torch.isfinite(d).all()
    grid = model.time_grid(50)
    last = float(model.sde.sigma(grid[-1]) / model.sde.alpha(grid[-1]))  # the noise left at the last grid time
    assert (op.A(d) - y).abs().max() < 6 * last
    assert (d - x).square().mean() > 1e-3  # the unobserved part is sampled, not copied


def test_dps_moves_towards_the_observation():
    model, op, x = _problem(Downsample(2))
    y = op.A(x)
    d = dps_sample(model, lambda x0: y - op.A(x0), x.shape[0], 50, torch.Generator().manual_seed(2))
    prior = dps_sample(model, lambda x0: y - op.A(x0), x.shape[0], 50, torch.Generator().manual_seed(2), zeta=0.0)
    assert d.shape == x.shape and torch.isfinite(d).all()
    assert (op.A(d) - y).square().mean() < 0.5 * (op.A(prior) - y).square().mean()
