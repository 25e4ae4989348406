"""Device and precision handling: stray tensors are caught without a GPU, adapters return the input's
device and dtype, reduced precision agrees with float32 within Monte Carlo error, scheduler-aligned grids."""

from __future__ import annotations


import pytest
import torch

from smcdiff import GaussianScore, RunOptions, VP, inpaint, sample, smc_sample
from smcdiff.data import load_digits_images
from smcdiff.models import load_model
from smcdiff.masks import random_square_masks
from smcdiff.operators import Dense
from smcdiff.score import Autocast

F64 = torch.float64


@pytest.mark.parametrize("proposal", ["bootstrap", "mcgdiff", "twisted"])
@pytest.mark.parametrize("kernel", ["euler", "ancestral"])
def test_no_tensor_is_created_off_the_inputs_device(proposal, kernel):
    """With the default device set to 'meta', any tensor made without an explicit device lands on meta
    and breaks when it meets the CPU inputs: a stray tensor that would sit on the wrong device on a GPU."""
    sde = VP()
    score = GaussianScore(torch.zeros(4, dtype=F64), torch.eye(4, dtype=F64), sde)
    y = torch.zeros(2, 2, dtype=F64)
    op = Dense(torch.randn(2, 4, generator=torch.Generator().manual_seed(0), dtype=F64))
    g = torch.Generator().manual_seed(1)
    torch.set_default_device("meta")
    try:
        out = smc_sample(
            score, sde, y, op, particles=4, steps=3, kernel=kernel, generator=g, proposal=proposal,
            options=RunOptions(ess_threshold=1.0),
        )
        x = sample(score, sde, (3, 4), steps=3, kernel=kernel, generator=g, dtype=F64, device="cpu")
    finally:
        torch.set_default_device("cpu")
    for t in (out.particles, out.log_weights, out.ess, out.log_evidence, out.lineages, x):
        assert t.device.type == "cpu"


def test_adapter_returns_the_inputs_dtype_and_device():
    model = load_model("digits")
    x = torch.randn(2, 1, 8, 8, dtype=F64)
    with torch.no_grad():
        s = model(x, torch.full((2,), 0.5, dtype=F64))
    assert s.dtype == F64 and s.device == x.device


def test_load_model_for_another_device_is_a_copy():
    base = load_model("digits")
    other = load_model("digits", device="cpu")
    assert other is base  # the CPU request shares the cached module; other devices get their own copy


def test_scheduler_aligned_grid_sits_on_training_timesteps():
    model = load_model("digits")
    grid = model.time_grid(50)
    k = model.sde.timestep(grid)
    assert torch.allclose(k, k.round(), atol=1e-9) and k[0] == 999 and k[-1] == 0
    assert (grid[1:] < grid[:-1]).all()
    with pytest.raises(ValueError, match="steps"):
        model.time_grid(0)


@pytest.mark.slow
def test_reduced_precision_agrees_with_float32_within_monte_carlo_error():
    """bfloat16 network (autocast) vs float32: the per-image weighted posterior means of independent runs
    agree within 4 standard errors of their difference, pixel by pixel."""
    model = load_model("digits")
    images = load_digits_images("test")[:2]
    masks = random_square_masks(2, 8, 8, 0.25, generator=torch.Generator().manual_seed(0))
    reps = 8
    x, m = images.repeat_interleave(reps, 0), masks.repeat_interleave(reps, 0)
    kw = dict(particles=8, steps=30, kernel="ancestral", proposal="mcgdiff")
    full = inpaint(model, x, m, generator=torch.Generator().manual_seed(1), **kw).mean()
    half = inpaint(Autocast(model, torch.bfloat16), x, m, generator=torch.Generator().manual_seed(2), **kw).mean()
    a, b = full.reshape(2, reps, -1), half.reshape(2, reps, -1)
    se = ((a.var(1) + b.var(1)) / reps).sqrt()
    diff = (a.mean(1) - b.mean(1)).abs()
    assert (diff <= 4 * se + 1e-3).float().mean() > 0.97  # ~128 pixels: allow the odd 4-SE excursion
    assert (diff <= 6 * se + 1e-3).all()
    with pytest.raises(ValueError, match="dtype"):
        Autocast(model, torch.float64)
