"""Metrics against closed forms: PSNR, SSIM, masked PSNR, diversity, Fréchet distance."""

import math

import numpy as np
import pytest
import torch

from smcdiff.data import load_digits_images
from smcdiff.metrics import consistency, digit_fid, diversity, frechet_distance, masked_psnr, psnr, ssim


def test_psnr_closed_form():
    ref = torch.zeros(2, 1, 4, 4)
    x = ref.clone()
    x[0, 0, 0, 0] = 0.5  # MSE = 0.25 / 16
    x[1] += 0.1  # MSE = 0.01
    expected = [10 * math.log10(4.0 / (0.25 / 16)), 10 * math.log10(4.0 / 0.01)]
    out = psnr(x, ref)
    assert out.shape == (2,)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(psnr(x, ref, data_range=1.0).numpy(), np.array(expected) - 10 * math.log10(4), rtol=1e-6)


def test_psnr_of_identical_images_is_inf():
    x = load_digits_images("test")[:3]
    out = psnr(x, x)
    assert torch.isinf(out).all() and (out > 0).all()


def test_ssim_identity_and_ordering():
    x = load_digits_images("test")[:4]
    np.testing.assert_allclose(ssim(x, x).numpy(), 1.0)
    g = torch.Generator().manual_seed(0)
    small = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    large = (x + 0.5 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    s_small, s_large = ssim(small, x), ssim(large, x)
    assert s_small.shape == (4,)
    assert (s_small > s_large).all() and (s_small < 1).all()
    assert ssim(small, x, win_size=7).shape == (4,)


def test_masked_psnr_uses_observed_pixels_only():
    y = torch.zeros(2, 1, 4, 4)
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[:, :, :2] = True  # top half observed
    x = y.clone()
    x[:, :, 2:] = 1.0  # large error, but only where unobserved
    assert torch.isinf(masked_psnr(x, y, mask)).all()
    x[0, 0, 0, 0] = 0.5  # MSE over the 8 observed pixels = 0.25 / 8
    assert masked_psnr(x, y, mask)[0].item() == pytest.approx(10 * math.log10(4.0 / (0.25 / 8)))
    # a mask broadcast over the batch is accepted
    assert masked_psnr(x, y, mask[0]).shape == (2,)


def test_consistency_is_psnr_of_the_operator_output():
    x = load_digits_images("test")[:3]
    op = lambda z: torch.nn.functional.avg_pool2d(z, 2)  # noqa: E731
    y = op(x) + 0.1
    np.testing.assert_allclose(consistency(x, y, op).numpy(), 10 * math.log10(4.0 / 0.01), rtol=1e-5)


def test_diversity_closed_form():
    samples = torch.zeros(3, 2, 1, 4, 4)
    samples[:, 1] = 1.0  # two values 0 and 1: unbiased std = 1 / sqrt(2)
    assert diversity(samples) == pytest.approx(1 / math.sqrt(2))
    assert diversity(torch.ones(2, 5, 1, 3, 3)) == 0.0


def test_frechet_distance_identical_sets_is_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8))
    assert abs(frechet_distance(a, a)) < 1e-6


def test_frechet_distance_equal_covariances_is_mean_gap():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    shift = rng.normal(size=6)
    # b is a translate of a: identical sample covariance, so d^2 = ||mu_a - mu_b||^2 exactly.
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-6, abs=1e-6)


def test_frechet_distance_gaussian_closed_form():
    # Large samples from N(0, I) and N(0, 4 I) in d dims: d^2 -> d (1 + 4 - 2 * 2) = d.
    g = torch.Generator().manual_seed(0)
    d = 4
    a = torch.randn(20000, d, generator=g, dtype=torch.float64)
    b = 2 * torch.randn(20000, d, generator=g, dtype=torch.float64)
    assert frechet_distance(a, b) == pytest.approx(d, abs=0.15)


def test_digit_fid_train_vs_test_small_and_noise_large():
    train, test = load_digits_images("train"), load_digits_images("test")
    real = digit_fid(train, test)
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(test.shape, generator=g) * 2 - 1
    assert 0 <= real < digit_fid(noise, test)


def test_bad_inputs_raise():
    x = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match="ref"):
        psnr(x, torch.zeros(3, 1, 8, 8))
    with pytest.raises(ValueError, match="x must have shape"):
        psnr(torch.zeros(8, 8), torch.zeros(8, 8))
    with pytest.raises(ValueError, match="win_size"):
        ssim(x, x, win_size=9)
    with pytest.raises(ValueError, match="mask"):
        masked_psnr(x, x, torch.zeros(2, 1, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask"):
        masked_psnr(x, x, torch.ones(3, 1, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="y"):
        consistency(x, torch.zeros(2, 5), lambda z: z)
    with pytest.raises(ValueError, match="samples"):
        diversity(torch.zeros(2, 1, 1, 8, 8))
    with pytest.raises(ValueError, match="feats_b"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="feats_a"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="images_b"):
        digit_fid(x, torch.zeros(2, 1, 4, 4))
