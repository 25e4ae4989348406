"""Forward SDEs: closed forms, transitions, bridges, non-uniform speeds, validation."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from smcdiff import OU, VE, VP, LogLinearVP, TabulatedVP

D = 6
TABLE_STEPS = 1000
T_END = torch.tensor([0.25, 0.25, 0.5, 0.5, 0.75, 1.0], dtype=torch.float64)


def ddpm_alphas_cumprod(steps: int = TABLE_STEPS) -> torch.Tensor:
    """``alphas_cumprod`` of a diffusers DDPMScheduler with the linear beta schedule 1e-4 ... 0.02."""
    return torch.cumprod(1 - torch.linspace(1e-4, 0.02, steps, dtype=torch.float64), 0)


def sdes():
    speeds = torch.linspace(0.3, 1.0, D, dtype=torch.float64)
    return {
        "ou": OU(),
        "vp": VP(),
        "ve": VE(sigma_max=20.0),
        "vp-nonuniform": VP(beta_max=20.0 * speeds),
        "ve-nonuniform": VE(sigma_max=torch.tensor([20.0, 20.0, 20.0, 1.0, 1.0, 1.0])),
        "loglinear": LogLinearVP(t_end=T_END),
        "tabulated": TabulatedVP(ddpm_alphas_cumprod()),
    }


SDES = sdes()
# Where f and g^2 jump: each group's terminal time, and the table's knots k / N.
KINKS = {"loglinear": T_END, "tabulated": torch.arange(TABLE_STEPS + 1, dtype=torch.float64) / TABLE_STEPS}
times = st.floats(min_value=1e-3, max_value=1.0)


def _t(v):
    return torch.tensor([v], dtype=torch.float64)


def test_ou_closed_form():
    c = OU().coefficients(_t(0.7))
    assert torch.allclose(c.alpha, torch.tensor(math.exp(-0.7), dtype=torch.float64))
    assert torch.allclose(c.sigma2, torch.tensor(1 - math.exp(-1.4), dtype=torch.float64))
    assert torch.allclose(c.drift, torch.tensor(-1.0, dtype=torch.float64))
    assert torch.allclose(c.g2, torch.tensor(2.0, dtype=torch.float64))


def test_vp_ve_closed_forms():
    c = VP(0.1, 20.0).coefficients(_t(0.5))
    log_alpha = -0.5 * (0.1 * 0.5 + 0.5 * 19.9 * 0.25)
    assert torch.allclose(c.alpha, torch.tensor(math.exp(log_alpha), dtype=torch.float64))
    assert torch.allclose(c.g2, torch.tensor(0.1 + 0.5 * 19.9, dtype=torch.float64))
    c = VE(0.01, 50.0).coefficients(_t(0.5))
    assert torch.allclose(c.sigma2.sqrt(), torch.tensor(0.01 * 5000**0.5, dtype=torch.float64))
    assert torch.allclose(c.g2, 2 * math.log(5000) * c.sigma2)


@pytest.mark.parametrize("name", sorted(SDES))
@given(t=times)
def test_drift_and_diffusion_match_derivatives(name, t):
    """f = d log alpha / dt and g^2 = d sigma^2/dt - 2 f sigma^2, by central differences."""
    sde = SDES[name]
    t = min(t, sde.T)
    if name in KINKS and ((KINKS[name] - t).abs() < 1e-4).any():
        return  # a central difference across a kink measures neither side's derivative
    h = 1e-6
    lo, hi = sde.coefficients(_t(max(t - h, 1e-7))), sde.coefficients(_t(t + h))
    c = sde.coefficients(_t(t))
    step = t + h - max(t - h, 1e-7)
    f = (hi.alpha.log() - lo.alpha.log()) / step
    g2 = (hi.sigma2 - lo.sigma2) / step - 2 * f * c.sigma2
    scale = 1 + c.g2.abs().max()
    assert torch.allclose(f, c.drift, atol=1e-4 * scale)
    assert torch.allclose(g2, c.g2, atol=1e-4 * scale)


@pytest.mark.parametrize("name", sorted(SDES))
@given(s=times, u=times, t=times)
def test_transitions_compose(name, s, u, t):
    """s -> u -> t equals s -> t: alpha_{t|s} = alpha_{t|u} alpha_{u|s}, var adds through alpha."""
    sde = SDES[name]
    s, u, t = sorted(min(v, sde.T) for v in (s, u, t))
    x = torch.linspace(-1, 1, D, dtype=torch.float64)[None]
    m_su, sd_su = sde.transition(x, _t(s), _t(u))
    m_ut, sd_ut = sde.transition(m_su, _t(u), _t(t))
    a_ut = sde.transition(torch.ones_like(x), _t(u), _t(t))[0]
    m_st, sd_st = sde.transition(x, _t(s), _t(t))
    assert torch.allclose(m_ut, m_st, atol=1e-10)
    assert torch.allclose(sd_ut**2 + a_ut**2 * sd_su**2, sd_st**2, atol=1e-10)


@pytest.mark.parametrize("name", sorted(SDES))
@given(s=times, t=times)
def test_marginal_composes_with_transition(name, s, t):
    sde = SDES[name]
    s, t = sorted(min(v, sde.T) for v in (s, t))
    x0 = torch.linspace(-2, 2, D, dtype=torch.float64)[None]
    m_s, sd_s = sde.marginal(x0, _t(s))
    m_t, sd_t = sde.marginal(x0, _t(t))
    a = sde.transition(torch.ones_like(x0), _t(s), _t(t))[0]
    sd_st = sde.transition(x0, _t(s), _t(t))[1]
    assert torch.allclose(a * m_s, m_t, atol=1e-10)
    assert torch.allclose(a**2 * sd_s**2 + sd_st**2, sd_t**2, atol=1e-10)


@pytest.mark.parametrize("name", ["ou", "vp-nonuniform", "ve-nonuniform"])
def test_marginal_moments_monte_carlo(name):
    """Sampling x_t = alpha x0 + sigma z reproduces alpha x0 and sigma^2 within 4 standard errors."""
    sde = SDES[name]
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x0 = torch.linspace(-1, 1, D, dtype=torch.float64).expand(n, D)
    t = torch.full((n,), 0.3, dtype=torch.float64)
    mean, std = sde.marginal(x0, t)
    xt = mean + std * torch.randn(n, D, generator=g, dtype=torch.float64)
    c = sde.coefficients(_t(0.3))
    se_mean = c.sigma2.sqrt()[0] / math.sqrt(n)
    assert ((xt.mean(0) - c.alpha[0] * x0[0]).abs() < 4 * se_mean).all()
    se_var = c.sigma2[0] * math.sqrt(2 / n)
    assert ((xt.var(0) - c.sigma2[0]).abs() < 4 * se_var).all()


def test_per_coordinate_speeds_differ_and_broadcast_to_images():
    sde = VE(sigma_max=torch.tensor([50.0, 1.0]).reshape(2, 1, 1))
    x0 = torch.zeros(3, 2, 4, 4, dtype=torch.float64)
    _, std = sde.marginal(x0, torch.full((3,), 1.0, dtype=torch.float64))
    assert std.shape == x0.shape
    assert torch.allclose(std[:, 0], torch.tensor(50.0, dtype=torch.float64))
    assert torch.allclose(std[:, 1], torch.tensor(1.0, dtype=torch.float64))


def test_loglinear_hits_snrs_and_freezes():
    t_end = torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    sde = LogLinearVP(snr_max=1e4, snr_min=1e-4, t_end=t_end, eps=1e-3)
    assert torch.allclose(sde.log_snr(_t(1e-3))[0], torch.tensor(math.log(1e4), dtype=torch.float64))
    for i, te in enumerate(t_end.tolist()):
        lam = sde.log_snr(torch.tensor([te, min(te + 0.1, 1.0)], dtype=torch.float64))[:, i]
        assert torch.allclose(lam, torch.tensor(math.log(1e-4), dtype=torch.float64))
    c = sde.coefficients(_t(0.6))
    assert c.g2[0, 0] == 0 and c.g2[0, 1] == 0 and c.g2[0, 2] > 0
    assert torch.allclose(c.alpha**2 + c.sigma2, torch.ones_like(c.sigma2))


@pytest.mark.parametrize("name", sorted(SDES))
def test_bridge_matches_forward_joint(name):
    """Bridge x_s | x_t, x_0 combined with x_t | x_0 reproduces the forward joint law of (x_s, x_t)."""
    sde = SDES[name]
    g = torch.Generator().manual_seed(1)
    n = 100_000
    x0 = torch.full((n, D), 0.7, dtype=torch.float64)
    s, t = torch.full((n,), 0.2, dtype=torch.float64), torch.full((n,), 0.6, dtype=torch.float64)
    m_t, sd_t = sde.marginal(x0, t)
    xt = m_t + sd_t * torch.randn(n, D, generator=g, dtype=torch.float64)
    m_b, sd_b = sde.bridge(x0, xt, s, t)
    xs = m_b + sd_b * torch.randn(n, D, generator=g, dtype=torch.float64)
    m_s, sd_s = sde.marginal(x0[:1], s[:1])
    a = sde.transition(torch.ones_like(x0[:1]), s[:1], t[:1])[0]
    var_s = sd_s[0] ** 2
    cov_st = a[0] * var_s
    assert ((xs.mean(0) - m_s[0]).abs() <= 4 * (var_s / n).sqrt() + 1e-12).all()
    assert ((xs.var(0) - var_s).abs() <= 4 * var_s * math.sqrt(2 / n) + 1e-12).all()
    emp_cov = ((xs - xs.mean(0)) * (xt - xt.mean(0))).mean(0)
    se_cov = ((var_s * sd_t[0] ** 2 + cov_st**2) / n).sqrt()
    assert ((emp_cov - cov_st).abs() <= 4 * se_cov + 1e-12).all()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: VP(beta_min=-1.0), "beta_min"),
        (lambda: VE(sigma_min=1.0, sigma_max=0.5), "sigma_min"),
        (lambda: LogLinearVP(snr_min=10.0, snr_max=1.0), "snr_min"),
        (lambda: LogLinearVP(t_end=2.0), "t_end"),
        (lambda: OU(T=1.0, eps=2.0), "eps"),
        (lambda: VE(sigma_max=float("nan")), "sigma_max"),
        (lambda: VP(beta_max=torch.ones(3), beta_min=torch.full((2,), 0.1)), "broadcast"),
    ],
)
def test_bad_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_times_and_shapes():
    sde = VP()
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="t must lie in"):
        sde.marginal(x, torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="t must be finite"):
        sde.marginal(x, torch.tensor([0.5, float("nan")]))
    with pytest.raises(ValueError, match="s <= t"):
        sde.transition(x, torch.tensor([0.6, 0.6]), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="steps"):
        sde.time_grid(0)
    with pytest.raises(ValueError, match="event shape"):
        VP(beta_max=torch.full((4,), 20.0)).prior_sample((2, 3))


def test_time_grid_endpoints():
    for sde in SDES.values():
        grid = sde.time_grid(10)
        assert grid.shape == (11,)
        assert grid[0].item() == pytest.approx(sde.T) and grid[-1].item() == pytest.approx(sde.eps)
        assert (grid[:-1] > grid[1:]).all()
