"""DenoiserScore / as_denoiser: exactness on the Gaussian closed form, the digits round trip, errors."""

import pytest
import torch

from smcdiff import VE, VP, GaussianScore, TabulatedVP, load_model, smc_sample
from smcdiff.adapters import DenoiserScore, ScoreDenoiser, as_denoiser

D = 5


def gaussian(seed=0):
    """Mean (d,) and SPD covariance (d, d) of x_0 in smcdiff's [-1, 1] units, float64."""
    g = torch.Generator().manual_seed(seed)
    m = 0.3 * torch.randn(D, generator=g, dtype=torch.float64)
    w = torch.randn(D, D, generator=g, dtype=torch.float64)
    return m, 0.2 * w @ w.T / D + 0.05 * torch.eye(D, dtype=torch.float64)


def gaussian_denoiser(m, C, data_range, sigma_shape):
    """The exact denoiser of N(m, C) data seen in ``data_range`` units (u_0 = a x_0 + b):
    E[u_0 | u_0 + sigma z = u] = m_u + C_u (C_u + sigma^2 I)^{-1} (u - m_u), m_u = a m + b, C_u = a^2 C."""
    lo, hi = data_range
    a, b = (hi - lo) / 2, (hi + lo) / 2
    m_u, C_u = a * m + b, a**2 * C

    def denoise(u, sigma):
        assert u.dtype == torch.float64 and u.shape[1:] == (D,)
        assert sigma.shape == ((u.shape[0],) if sigma_shape == "vector" else (u.shape[0], 1))
        cov = C_u + sigma.reshape(-1, 1, 1) ** 2 * torch.eye(D, dtype=u.dtype)  # (n, d, d)
        return m_u + (C_u @ torch.linalg.solve(cov, (u - m_u)[..., None]))[..., 0]

    return denoise, a


@pytest.mark.parametrize("sigma_shape", ["vector", "broadcast"])
@pytest.mark.parametrize("data_range", [(-1.0, 1.0), (0.0, 1.0)])
@pytest.mark.parametrize("kind", ["ve", "vp", "tabulated"])
def test_exact_gaussian_denoiser_gives_the_exact_score(kind, data_range, sigma_shape):
    """s = -(x - alpha x0_hat) / sigma^2 with the exact denoiser equals the closed-form Gaussian score."""
    m, C = gaussian()
    denoise, a = gaussian_denoiser(m, C, data_range, sigma_shape)
    if kind == "ve":  # the default SDE: VE over the denoiser's own range, converted to [-1, 1] units
        score = DenoiserScore(denoise, sigma_min=0.01 * a, sigma_max=50 * a, data_range=data_range, sigma_shape=sigma_shape)
        assert isinstance(score.sde, VE)
        assert score.sde.sigma(score.sde.T).item() == pytest.approx(50.0)
    else:
        sde = VP() if kind == "vp" else TabulatedVP(torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0))
        score = DenoiserScore(
            denoise, sigma_min=0.005 * a, sigma_max=200 * a, data_range=data_range, sde=sde, sigma_shape=sigma_shape
        )
        assert score.sde is sde
    exact = GaussianScore(m, C, score.sde)
    g = torch.Generator().manual_seed(1)
    t = torch.linspace(score.sde.eps, score.sde.T, 8, dtype=torch.float64)
    x = exact.sde.prior_std(like=t) * torch.randn(8, D, generator=g, dtype=torch.float64) * (t[:, None] + 0.05)
    got, want = score(x, t), exact(x, t)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_dtype_and_module_placement_follow_the_input():
    """An nn.Module denoiser gets its inputs in its parameters' dtype; the score comes back in x's."""
    m, C = gaussian()
    denoise, _ = gaussian_denoiser(m, C, (-1.0, 1.0), "vector")

    class Module(torch.nn.Module):  # float64 parameters; receives float64 even when x is float32
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones((), dtype=torch.float64))

        def forward(self, u, sigma):
            return self.w * denoise(u, sigma)

    score = DenoiserScore(Module(), sigma_min=0.01, sigma_max=50.0, event_shape=(D,))
    assert isinstance(score.denoiser, Module) and score.event_shape == (D,)
    x = torch.randn(4, D, generator=torch.Generator().manual_seed(0))
    t = torch.full((4,), 0.5)
    out = score(x, t)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, score(x.double(), t.double()).float(), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def digits():
    return load_model("digits")


@pytest.mark.parametrize("data_range", [(-1.0, 1.0), (0.0, 1.0)])
def test_digits_round_trip_score(digits, data_range):
    """DenoiserScore(as_denoiser(model)) is the model's score again, and as_denoiser inverts sigma(t)/alpha(t)."""
    den = as_denoiser(digits, data_range=data_range)
    assert isinstance(den, ScoreDenoiser) and den.event_shape == (1, 8, 8)
    # TabulatedVP: sigma/alpha = sqrt(1 / abar - 1) at the first and last training steps, times a
    abar = digits.sde.coefficients(torch.tensor([digits.sde.eps, digits.sde.T], dtype=torch.float64)).alpha ** 2
    a = (data_range[1] - data_range[0]) / 2
    assert (den.sigma_min, den.sigma_max) == pytest.approx((a * (1 / abar - 1).sqrt()).tolist(), rel=1e-9)
    back = DenoiserScore(
        den, sigma_min=den.sigma_min, sigma_max=den.sigma_max, data_range=data_range, sde=digits.sde, dtype=torch.float64
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64)
    t = torch.tensor([digits.sde.eps, 0.01, 0.1, 0.37, 0.8, digits.sde.T], dtype=torch.float64)
    with torch.no_grad():
        # all arithmetic around the float32 UNet is float64 (dtype=float64), so the UNet's float32 inputs are
        # equal unless a float64 rounding flips a float32 one (1 ulp = 6e-8 relative): 1e-6 bounds that
        torch.testing.assert_close(back(x, t), digits(x, t), rtol=1e-6, atol=1e-6)
        # and the time recovered from sigma is t itself
        torch.testing.assert_close(den.time_of(digits.sde.sigma(t).reshape(-1) / digits.sde.alpha(t).reshape(-1)), t)


def test_digits_round_trip_smc(digits):
    """The same SMC run (fixed seed) through the wrapped-back denoiser gives the same particles and weights.

    All sampler and adapter arithmetic is float64; only the UNet is float32, and it receives the same
    float32 inputs unless a float64 rounding (1e-16) flips a float32 one (6e-8 relative), which a few
    steps cannot amplify beyond 1e-6. (Observed: 1e-13.)
    """
    from smcdiff.data import load_digits_images

    den = as_denoiser(digits)
    back = DenoiserScore(den, sigma_min=den.sigma_min, sigma_max=den.sigma_max, sde=digits.sde, dtype=torch.float64)
    y = load_digits_images("test")[:2].double()
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[..., :, :4] = True
    runs = []
    for score in (digits, back):
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            runs.append(smc_sample(score, digits.sde, y, mask, particles=4, steps=10, generator=g))
    a, b = runs
    assert a.particles.shape == (2, 4, 1, 8, 8)
    torch.testing.assert_close(b.particles, a.particles, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(b.log_weights, a.log_weights, rtol=1e-6, atol=1e-6)


def test_errors(digits):
    m, C = gaussian()
    good, _ = gaussian_denoiser(m, C, (-1.0, 1.0), "vector")
    kw = dict(sigma_min=0.01, sigma_max=50.0)
    with pytest.raises(ValueError, match="denoiser must be callable"):
        DenoiserScore("not a function", **kw)
    for bad in [(1.0, 0.0), "[0, 1]", (0.0,), (0.0, float("inf")), None]:
        with pytest.raises(ValueError, match="data_range"):
            DenoiserScore(good, data_range=bad, **kw)
    for bad in (-1.0, True, "0.01", torch.ones(2)):
        with pytest.raises(ValueError, match="sigma_min"):
            DenoiserScore(good, sigma_min=bad, sigma_max=50.0)
    assert DenoiserScore(good, sigma_min=torch.tensor(0.01), sigma_max=torch.tensor(50.0)).sigma_max == 50.0
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        DenoiserScore(good, sigma_min=5.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="sigma_shape"):
        DenoiserScore(good, sigma_shape="scalar", **kw)
    with pytest.raises(ValueError, match="sde"):
        DenoiserScore(good, sde="VE", **kw)
    with pytest.raises(ValueError, match="per-coordinate"):
        DenoiserScore(good, sde=VE(sigma_max=torch.tensor([50.0, 10.0])), **kw)
    with pytest.raises(ValueError, match="outside the denoiser's"):  # VP reaches sigma/alpha ~ 150 at T
        DenoiserScore(good, sigma_min=0.01, sigma_max=80.0, sde=VP())
    with pytest.raises(ValueError, match="event_shape"):
        DenoiserScore(good, event_shape=(0,), **kw)

    x, t = torch.zeros(3, D, dtype=torch.float64), torch.full((3,), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match="denoiser returned"):
        DenoiserScore(lambda u, s: u[:, :2], **kw)(x, t)
    with pytest.raises(ValueError, match="non-finite"):
        DenoiserScore(lambda u, s: u / 0.0, **kw)(x, t)
    with pytest.raises(ValueError, match="sigma_min, sigma_max"):
        DenoiserScore(good, **kw)(x, torch.full((3,), 1.5, dtype=torch.float64))  # t > T: sigma > sigma_max
    with pytest.raises(ValueError, match="x must have shape"):
        DenoiserScore(good, event_shape=(D,), **kw)(torch.zeros(3, D + 1, dtype=torch.float64), t)

    den = as_denoiser(digits)
    x = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match="sigma must lie"):
        den(x, 1e-4)
    with pytest.raises(ValueError, match="sigma must lie"):
        den(x, torch.tensor([0.5, 1e4]))
    with pytest.raises(ValueError, match="sigma must be a number or have shape"):
        den(x, torch.ones(3))
    with pytest.raises(ValueError, match="score must be callable"):
        as_denoiser(3)
    with pytest.raises(ValueError, match="sde must be given"):
        as_denoiser(lambda x, t: x)
    with pytest.raises(ValueError, match="data_range"):
        as_denoiser(digits, data_range=(1, 1))
