"""deepinv interoperability: physics as operators, smcdiff models as deepinv denoisers, DiffUNet as a score.

Skipped when the optional ``deepinv`` package (and the torchvision it imports) is not installed.
"""

import math

import pytest
import torch

dinv = pytest.importorskip("deepinv")

from smcdiff import TabulatedVP, load_model, smc_sample  # noqa: E402
from smcdiff.adapters import DenoiserScore  # noqa: E402
from smcdiff.adapters.deepinv import (  # noqa: E402
    DeepinvDenoiser,
    DiffUNetScore,
    from_deepinv_physics,
    noise_std_of,
)
from smcdiff.data import load_digits_images  # noqa: E402

RGB, GRAY = (3, 8, 8), (1, 8, 8)


def rng(seed=0):
    return torch.Generator().manual_seed(seed)


def gaussian_filter(sigma=1.0, radius=2):
    """A normalised 2-D Gaussian blur kernel of shape (1, 1, 2r + 1, 2r + 1)."""
    u = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (u[:, None] ** 2 + u[None, :] ** 2) / sigma**2)
    return (k / k.sum())[None, None]


def physics_cases():
    """(physics, in_shape, compare A_dagger, expected operator kind); float32 physics, small images."""
    per_row = (torch.rand(3, *GRAY, generator=rng(5)) > 0.5).float()
    mri_mask = (torch.rand(8, 8, generator=rng(6)) > 0.5).float()
    return {
        "inpainting": (dinv.physics.Inpainting(RGB, mask=0.5, rng=rng(1)), RGB, True, "_SVDPhysics"),
        "inpainting-per-row": (dinv.physics.Inpainting(GRAY, mask=per_row), GRAY, True, "_SVDPhysics"),
        "decolorize": (dinv.physics.Decolorize(), RGB, True, "_DecolorizePhysics"),
        "compressed-sensing": (dinv.physics.CompressedSensing(20, GRAY, rng=rng(2)), GRAY, True, "_DensePhysics"),
        "single-pixel-fast": (dinv.physics.SinglePixelCamera(20, GRAY), GRAY, True, "_SVDPhysics"),
        "denoising": (dinv.physics.Denoising(), RGB, True, "_SVDPhysics"),
        "decimation": (dinv.physics.Downsampling(RGB, filter=None, factor=2), RGB, False, "_DecimationPhysics"),
        "mri": (dinv.physics.MRI(mask=mri_mask, img_size=(2, 8, 8)), (2, 8, 8), True, "_SVDPhysics"),
        "blur-fft-small": (dinv.physics.BlurFFT(GRAY, filter=gaussian_filter()), GRAY, False, "_DensePhysics"),
    }


CASES = physics_cases()


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("name", list(CASES))
def test_operator_agrees_with_physics(name):
    """A, A^T (and A^+ where deepinv's is exact) agree with deepinv's maps; V is orthogonal; s >= 0.

    deepinv computes in float32 (relative rounding ~1e-7, ~1e-6 for its float32 pseudo-inverse of a
    20 x 64 Gaussian matrix); 1e-5 relative bounds both.
    """
    physics, in_shape, dagger, kind = CASES[name]
    op, _ = from_deepinv_physics(physics, in_shape)
    assert type(op).__name__ == kind and op.physics is physics and op.in_shape == in_shape
    rows = op.s.shape[0] if op.s.ndim > len(op.coef_shape) else 2
    x = torch.randn(rows, *in_shape, generator=rng(3))
    y = physics.A(x)
    assert op.out_shape == tuple(y.shape[1:])
    assert rel(op.A(x), y) < 1e-5
    assert rel(op.At(y), physics.A_adjoint(y)) < 1e-5
    if dagger:
        assert rel(op.A_pinv(y), physics.A_dagger(y)) < 1e-5
    assert rel(op.V(op.Vt(x)), x) < 1e-5
    c = torch.randn(rows, *op.coef_shape, generator=rng(4))
    assert rel(op.Vt(op.V(c)), c) < 1e-5
    assert (op.s >= 0).all() and op.observed.any()
    assert op.A(x.double()).dtype == torch.float64  # the operator follows its input's dtype


def test_noise_std_and_measurement():
    """GaussianNoise(sigma) in [0, 1] units is 2 sigma in smcdiff's [-1, 1]; y = A((x + 1) / 2) becomes A x."""
    physics = dinv.physics.Inpainting(GRAY, mask=0.5, rng=rng(1), noise_model=dinv.physics.GaussianNoise(0.1))
    op, std = from_deepinv_physics(physics, GRAY)
    assert std == pytest.approx(0.2) and noise_std_of(physics) == pytest.approx(0.1)
    assert from_deepinv_physics(physics, GRAY, data_range=(-1, 1))[1] == pytest.approx(0.1)
    assert from_deepinv_physics(dinv.physics.Decolorize(), RGB)[1] == 0.0  # ZeroNoise
    cs = dinv.physics.CompressedSensing(20, GRAY, rng=rng(2))
    op, _ = from_deepinv_physics(cs, GRAY)
    x = torch.rand(2, *GRAY, generator=rng(3)) * 2 - 1
    torch.testing.assert_close(op.measurement(cs.A((x + 1) / 2)), op.A(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(op.to_physics_range(x), (x + 1) / 2)


def test_unsupported_physics_and_noise():
    supported = "supported deepinv physics"
    with pytest.raises(ValueError, match=supported):
        from_deepinv_physics(torch.nn.Identity(), GRAY)
    with pytest.raises(ValueError, match="not linear.*" + supported):
        from_deepinv_physics(dinv.physics.Haze(), RGB)
    with pytest.raises(ValueError, match="complex-valued.*" + supported):
        from_deepinv_physics(dinv.physics.CompressedSensing(10, GRAY, dtype=torch.cfloat, rng=rng()), GRAY)
    big = dinv.physics.BlurFFT((1, 32, 32), filter=gaussian_filter())
    with pytest.raises(ValueError, match="no usable SVD.*max_dense.*" + supported):
        from_deepinv_physics(big, (1, 32, 32), max_dense=256)
    poisson = dinv.physics.Inpainting(GRAY, mask=0.5, rng=rng(), noise_model=dinv.physics.PoissonNoise())
    with pytest.raises(ValueError, match="noise_model is PoissonNoise.*GaussianNoise"):
        from_deepinv_physics(poisson, GRAY)
    per_row = dinv.physics.Denoising(dinv.physics.GaussianNoise(torch.tensor([0.1, 0.2])))
    with pytest.raises(ValueError, match="differs between rows"):
        from_deepinv_physics(per_row, GRAY)
    with pytest.raises(ValueError, match="in_shape"):
        from_deepinv_physics(dinv.physics.Denoising(), (0, 8))
    with pytest.raises(ValueError, match="max_dense"):
        from_deepinv_physics(dinv.physics.Denoising(), GRAY, max_dense=-1)
    with pytest.raises(ValueError, match="data_range"):
        from_deepinv_physics(dinv.physics.Denoising(), GRAY, data_range=(1, 0))


@pytest.fixture(scope="module")
def digits():
    return load_model("digits")


def test_digits_model_as_deepinv_denoiser_reduces_mse(digits):
    """At sigma = 0.2 in [0, 1] units the noisy MSE is sigma^2 = 0.04 (+- 2%, 4096 pixels); the
    denoiser at least halves it on held-out digits (it reaches ~0.009)."""
    den = DeepinvDenoiser(digits)
    assert isinstance(den, dinv.models.Denoiser)
    x = (load_digits_images("test")[:64] + 1) / 2
    noisy = x + 0.2 * torch.randn(x.shape, generator=rng(0))
    with torch.no_grad():
        out = den(noisy, 0.2)
        same = [den(noisy, torch.full((64,), 0.2)), den(noisy, torch.full((64, 1, 1, 1), 0.2))]
    noisy_mse, mse = ((noisy - x) ** 2).mean().item(), ((out - x) ** 2).mean().item()
    assert noisy_mse == pytest.approx(0.04, rel=0.1)
    assert mse < 0.5 * noisy_mse
    for o in same:
        torch.testing.assert_close(o, out)


def test_smc_on_deepinv_physics(digits):
    """The recipe path: deepinv measurements -> operator -> smc_sample; noiseless inpainting keeps the
    observed pixels exactly, noisy compressed sensing (MCGdiff proposal) runs and returns finite samples."""
    x = load_digits_images("test")[:2]
    inpaint = dinv.physics.Inpainting(GRAY, mask=0.5, rng=rng(1))
    op, std = from_deepinv_physics(inpaint, GRAY)
    y = op.measurement(inpaint.A((x + 1) / 2))
    out = smc_sample(digits, digits.sde, y, op, noise_std=std, particles=4, steps=10, generator=rng(0))
    assert out.particles.shape == (2, 4, *GRAY)
    observed = inpaint.mask.bool().expand(2, 4, *GRAY)
    torch.testing.assert_close(out.particles[observed], x[:, None].expand(2, 4, *GRAY)[observed], rtol=1e-5, atol=1e-5)

    cs = dinv.physics.CompressedSensing(20, GRAY, rng=rng(2), noise_model=dinv.physics.GaussianNoise(0.05, rng=rng(3)))
    op, std = from_deepinv_physics(cs, GRAY)
    y = op.measurement(cs((x + 1) / 2))  # cs(.) = A(.) + Gaussian noise
    out = smc_sample(digits, digits.sde, y, op, noise_std=std, particles=4, steps=10, generator=rng(0))
    assert out.particles.shape == (2, 4, *GRAY) and torch.isfinite(out.particles).all()


@pytest.fixture(scope="module")
def diffunet():
    """deepinv's DiffUNet with random weights (no download): its only sizes are 128 (used here) or 256
    channels, ~94M parameters, ~0.2 s per 32 x 32 image on one CPU core."""
    with torch.random.fork_rng():
        torch.manual_seed(0)  # DiffUNet initialises from the global RNG; restored on exit
        return dinv.models.DiffUNet(in_channels=3, out_channels=3, pretrained=None).eval()


def linear_ddpm():
    return TabulatedVP(torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0))


def test_diffunet_denoiser_recipe_runs(diffunet):
    """DiffUNet's denoiser mode ([0, 1], sigma of shape (n,)) through DenoiserScore, in one short SMC run."""
    sde = linear_ddpm()
    score = DenoiserScore(diffunet, sigma_min=0.005, sigma_max=80.0, data_range=(0, 1), sde=sde, event_shape=(3, 32, 32))
    y = torch.rand(1, 3, 32, 32, generator=rng(0)) * 2 - 1
    mask = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    mask[..., :16] = True
    out = smc_sample(score, sde, y, mask, particles=2, steps=3, generator=rng(1))
    assert out.particles.shape == (1, 2, 3, 32, 32) and torch.isfinite(out.particles).all()


def test_diffunet_score_is_minus_eps_over_sigma(diffunet):
    """At training step k (t = (k + 1) / N) DiffUNetScore is -eps_hat(x, k) / sqrt(1 - abar_k)."""
    score = DiffUNetScore(diffunet, channels=3, image_size=32)
    k = torch.tensor([10, 700])
    t = (k + 1).double() / 1000
    x = torch.randn(2, 3, 32, 32, generator=rng(0))
    with torch.no_grad():
        eps = diffunet.forward_diffusion(x, k)[:, :3]
        got = score(x, t.float())
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)[k]
    torch.testing.assert_close(got, -eps / (1 - abar).sqrt().float().reshape(-1, 1, 1, 1), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="image_size"):
        DiffUNetScore(diffunet, image_size=40)
    with pytest.raises(ValueError, match="x must have shape"):
        score(torch.zeros(1, 3, 64, 64), torch.ones(1))
    assert math.isclose(score.sde.eps, 1e-3)
