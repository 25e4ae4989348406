"""``smcdiff.inpaint`` end to end on the shipped digits model (few steps, so fast), and its input checks."""

from __future__ import annotations

import math

import pytest
import torch

from smcdiff import RunOptions, inpaint
from smcdiff.adapters import DiffusersScore
from smcdiff.data import load_digits_images
from smcdiff.models import load_model
from smcdiff.restore import DEFAULT_POPULATIONS
from smcdiff.masks import box_mask, random_square_masks

STEPS = 6
PARTICLES = 5


@pytest.fixture(scope="module")
def digits():
    images = load_digits_images("test")[:3]
    masks = random_square_masks(3, 8, 8, 0.25, generator=torch.Generator().manual_seed(0))
    return images, masks


def test_default_model_is_the_shipped_diffusers_unet():
    model = load_model("digits")
    assert isinstance(model, DiffusersScore)
    assert tuple(model.event_shape) == (1, 8, 8)
    assert load_model("digits") is model  # loaded once per process


@pytest.mark.parametrize("method", ["smc", "replacement"])
def test_inpaint_end_to_end_keeps_the_observed_pixels(digits, method):
    images, masks = digits
    res = inpaint("digits", images, masks, particles=PARTICLES, steps=STEPS, method=method,
                  generator=torch.Generator().manual_seed(1))
    runs = DEFAULT_POPULATIONS if method == "smc" else 1  # independent SMC runs by default
    assert res.samples.shape == (3, runs * PARTICLES, 1, 8, 8)
    assert res.log_weights.shape == (3, runs * PARTICLES)
    assert torch.isfinite(res.samples).all()
    assert res.model_evaluations == 3 * runs * PARTICLES * STEPS
    observed = masks[:, None].expand_as(res.samples)
    given = images[:, None].expand_as(res.samples)
    assert torch.equal(res.samples[observed], given[observed])
    # normalised weights; uniform for the replacement baseline
    assert torch.allclose(res.log_weights.exp().sum(1), torch.ones(3, dtype=res.log_weights.dtype))
    if method == "replacement":
        assert torch.allclose(res.log_weights, torch.full_like(res.log_weights, -math.log(PARTICLES)))
    mean = res.mean()
    assert mean.shape == (3, 1, 8, 8)
    assert torch.allclose(mean[masks], images[masks], atol=1e-5)
    draws = res.draw(7, torch.Generator().manual_seed(2))
    assert draws.shape == (3, 7, 1, 8, 8)
    # each draw is one of the particles of its own image
    hits = (draws[:, :, None] == res.samples[:, None]).flatten(3).all(-1).any(-1)
    assert hits.all()


def test_inpaint_is_reproducible_with_a_generator(digits):
    images, masks = digits
    runs = [
        inpaint("digits", images, masks, particles=PARTICLES, steps=STEPS, generator=torch.Generator().manual_seed(3))
        for _ in range(2)
    ]
    assert torch.equal(runs[0].samples, runs[1].samples)
    assert torch.equal(runs[0].log_weights, runs[1].log_weights)


def test_inpaint_accepts_a_single_image_and_a_2d_mask(digits):
    images, _ = digits
    mask = box_mask(8, 8, (2, 2, 4, 4))[0, 0]
    res = inpaint("digits", images[0], mask, particles=3, steps=STEPS, generator=torch.Generator().manual_seed(4))
    assert res.samples.shape == (1, 3 * DEFAULT_POPULATIONS, 1, 8, 8)
    assert torch.equal(res.samples[0, :, :, :2], images[:1, :, :2].expand(3 * DEFAULT_POPULATIONS, -1, -1, -1))


def test_chunked_network_calls_do_not_change_the_result(digits):
    images, masks = digits
    kw = dict(particles=PARTICLES, steps=STEPS)
    full = inpaint("digits", images, masks, generator=torch.Generator().manual_seed(5), **kw)
    chunked = inpaint(
        "digits", images, masks, generator=torch.Generator().manual_seed(5), options=RunOptions(chunk_size=4),
        **kw,
    )
    assert torch.allclose(full.samples, chunked.samples, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(image=torch.zeros(1, 1, 16, 16)), "image has shape"),
        (dict(image=torch.zeros(8, 8)), "image must have shape"),
        (dict(image=torch.zeros(1, 1, 8, 8, dtype=torch.long)), "floating-point"),
        (dict(mask=torch.ones(8, 8)), "mask must be a bool tensor"),
        (dict(mask=torch.ones(2, 8, 8, dtype=torch.bool)), "does not broadcast"),
        (dict(method="repaint"), "method must be"),
        (dict(particles=0), "particles"),
        (dict(steps=0), "steps"),
        (dict(model=42), "model must be"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match):
    args = dict(model="digits", image=torch.zeros(3, 1, 8, 8), mask=box_mask(8, 8, (0, 0, 4, 4))[0, 0],
                particles=2, steps=2)
    args.update(kwargs)
    model, image, mask = args.pop("model"), args.pop("image"), args.pop("mask")
    with pytest.raises(ValueError, match=match):
        inpaint(model, image, mask, **args)


def test_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no such model directory"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no UNet2DModel"):
        load_model(tmp_path)  # exists, but holds no model
