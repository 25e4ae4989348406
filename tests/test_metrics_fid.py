"""UFID and JFID ("Non-Uniform Diffusion Models" §4.2): properties that follow from their definitions."""

import pytest
import torch
from torch import nn

from smcdiff.data import load_digits_images
from smcdiff.metrics import digit_fid, frechet_distance, jfid, ufid


class PixelFeatures(nn.Module):
    """A stand-in feature map: the first ``k`` pixels, so that distances have closed forms."""

    def __init__(self, k: int = 3) -> None:
        super().__init__()
        self.k = k
        self.dummy = nn.Parameter(torch.zeros(()))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, : self.k]


@pytest.fixture(scope="module")
def digits():
    x = load_digits_images("test")[:120]
    y = torch.where(torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) < 0.75, x, torch.zeros_like(x))
    return x, y


def test_ufid_is_the_digit_fid_of_reconstructions(digits):
    x, _ = digits
    x_hat = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    assert ufid(x_hat, x) == pytest.approx(digit_fid(x_hat, x))
    assert ufid(x, x) == pytest.approx(0.0, abs=1e-4)  # sqrtm round-off


def test_jfid_is_the_frechet_distance_of_concatenated_features(digits):
    x, y = digits
    x_hat = x.flip(-1)
    feats = PixelFeatures()
    expected = frechet_distance(
        torch.cat([feats.features(x_hat), feats.features(y)], 1).double(),
        torch.cat([feats.features(x), feats.features(y)], 1).double(),
    )
    assert jfid(x_hat, x, y, classifier=feats) == pytest.approx(expected, rel=1e-9)
    assert jfid(x, x, y) == pytest.approx(0.0, abs=1e-4)  # sqrtm round-off


def test_jfid_sees_what_ufid_cannot(digits):
    """Shuffled truths have the right marginal (UFID = 0) but ignore the observation (JFID > 0)."""
    x, y = digits
    shuffled = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(2))]
    assert ufid(shuffled, x) == pytest.approx(0.0, abs=1e-4)  # sqrtm round-off
    assert jfid(shuffled, x, y) > 10.0


def test_jfid_bounds_ufid(digits):
    """Projecting onto the x-features is 1-Lipschitz in W2, so JFID >= UFID for the Gaussian fits."""
    x, y = digits
    x_hat = (x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))).clamp(-1, 1)
    assert jfid(x_hat, x, y) >= ufid(x_hat, x) - 1e-4


def test_shape_errors(digits):
    x, y = digits
    with pytest.raises(ValueError, match="y"):
        jfid(x, x, y[:-1])
    with pytest.raises(ValueError, match="x_hat"):
        jfid(x[:-1], x, y)
    with pytest.raises(ValueError, match="y"):
        jfid(x, x, y[:, :, :4])
    with pytest.raises(ValueError, match="x_hat"):
        ufid(x[:, :, :4], x)
