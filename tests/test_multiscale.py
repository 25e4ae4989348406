"""Multiscale non-uniform diffusion: forward process, exact-score sampler, adapter, models, training.

The sampler tests use the exact Gaussian score in Haar coordinates (:class:`GaussianScales`), so the
handover between scales is checked independently of any training. As in ``test_sampling.py``, each
check separates (1) Monte Carlo error, against the exact law of the discretised chain (linear for
Gaussian data), within 4 standard errors, from (2) the discretisation error of that chain against
the true law at eps, which must shrink as the step count grows.
"""

import math

import pytest
import torch

from smcdiff import VP, sample
from smcdiff.adapters import MultiscaleScore
from smcdiff.msdiff.haar import HaarPacking
from smcdiff.msdiff.multiscale import (
    GaussianScales,
    MultiscaleConfig,
    MultiscaleModel,
    MultiscaleProcess,
    UNetSpec,
    UniformConfig,
    UniformModel,
    load_model,
    load_multiscale,
    matched_configs,
    multiscale_sample,
    snr_range,
    train,
)
from smcdiff.oracle.linear_gaussian import discretised_law, em_kernel

F64 = torch.float64
SNR_MAX, SNR_MIN = snr_range(VP(eps=1e-3))


def process_for(size, levels, channels=1):
    return MultiscaleProcess(HaarPacking(channels, size, size, levels), SNR_MAX, SNR_MIN, eps=1e-3)


def smooth_gaussian(size):
    """Pixel law N(m, S) with a squared-exponential covariance (strong correlation across scales)."""
    yy, xx = torch.meshgrid(torch.arange(size, dtype=F64), torch.arange(size, dtype=F64), indexing="ij")
    pts = torch.stack([yy.flatten(), xx.flatten()], 1)
    cov = 0.5 * torch.exp(-((pts[:, None] - pts[None]) ** 2).sum(-1) / (2 * 1.5**2)) + 0.05 * torch.eye(size * size, dtype=F64)
    return torch.linspace(-0.5, 0.5, size * size, dtype=F64), cov


def haar_matrix(packing):
    """W with c = W vec(x), shape (D, D)."""
    basis = torch.eye(packing.dim, dtype=F64).reshape(-1, *packing.image_shape)
    return packing.forward(basis).T


def law_at(process, mean_c, cov_c, t):
    c = process.sde.coefficients(torch.tensor([t], dtype=F64))
    a, s2 = c.alpha[0], c.sigma2[0]
    return a * mean_c, a[:, None] * cov_c * a[None] + torch.diag(s2)


def discretised_multiscale_law(process, scales, steps):
    """Exact mean and covariance of the output of ``multiscale_sample`` for an affine score."""
    counts = process.split_steps(steps)
    var0 = process.sde.prior_std() ** 2
    d = process.scale_dim(process.num_scales)
    mean, cov = torch.zeros(d, dtype=F64), torch.diag(var0[:d])
    for i in range(process.num_scales, 0, -1):
        d_i = process.scale_dim(i)
        if d_i > d:  # handover: the new detail group is independent N(0, prior var)
            mean = torch.cat([mean, torch.zeros(d_i - d, dtype=F64)])
            cov, d = torch.block_diag(cov, torch.diag(var0[d:d_i])), d_i
        grid = process.scale_grid(i, counts[i - 1])
        for k in range(counts[i - 1]):
            a, b, dd = em_kernel(lambda x, t, i=i: scales.scale_score(i, x, t), process.scale_sde(i), grid[k].item(), (grid[k] - grid[k + 1]).item(), d)
            mean, cov = a @ mean + b, a @ cov @ a.T + torch.diag(dd)
    return mean, cov


def assert_within(x, mean, cov, allowance_mean=0.0, allowance_cov=0.0, n_se=4.0):
    """Sample moments of ``x: (N, d)`` against (mean, cov): n_se standard errors plus an allowance."""
    n, var = x.shape[0], cov.diagonal()
    z_mean = (x.mean(0) - mean).abs() - allowance_mean
    assert (z_mean <= n_se * (var / n).sqrt()).all(), (z_mean / (var / n).sqrt()).max()
    se_cov = ((var[:, None] * var[None] + cov**2) / n).sqrt()
    z_cov = (torch.cov(x.T) - cov).abs() - allowance_cov
    assert (z_cov <= n_se * se_cov).all(), (z_cov / se_cov).max()


# ----------------------------------------------------------------------------------------------
# forward process
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("levels", [1, 2, 3])
def test_groups_hit_the_stated_snrs_at_the_stated_times(levels):
    process = process_for(16, levels)
    sde, n = process.sde, levels
    group_level = process.packing.group_level()
    log_snr_eps = sde.log_snr(torch.tensor([1e-3], dtype=F64))[0]
    assert torch.allclose(log_snr_eps, torch.full_like(log_snr_eps, math.log(SNR_MAX)))
    for level in range(1, n + 2):  # d_level, or a_n for level n + 1
        group = group_level == level
        t_end = level / (n + 1)
        at_end = sde.log_snr(torch.tensor([t_end], dtype=F64))[0, group]
        assert torch.allclose(at_end, torch.full_like(at_end, math.log(SNR_MIN)))
        if level <= n:  # frozen afterwards: same SNR, no drift, no diffusion
            later = torch.tensor([t_end + 0.5 / (n + 1), 1.0], dtype=F64)
            assert torch.allclose(sde.log_snr(later)[:, group], at_end.expand(2, -1))
            co = sde.coefficients(later)
            assert (co.g2[:, group] == 0).all() and (co.drift[:, group] == 0).all()
        half = sde.log_snr(torch.tensor([1e-3 + 0.5 * (t_end - 1e-3)], dtype=F64))[0, group]  # log-linear in t
        assert torch.allclose(half, torch.full_like(half, 0.5 * (math.log(SNR_MAX) + math.log(SNR_MIN))))


def test_snr_range_matches_the_uniform_baseline():
    vp = VP(0.1, 20.0, eps=1e-3)
    log_snr = vp.log_snr(torch.tensor([1e-3, 1.0], dtype=F64))
    assert math.isclose(math.log(SNR_MAX), log_snr[0].item(), rel_tol=1e-12)
    assert math.isclose(math.log(SNR_MIN), log_snr[1].item(), rel_tol=1e-12)
    cfg = MultiscaleConfig(unets=(UNetSpec(base=8, blocks=1),) * 3)
    assert math.isclose(cfg.snr_max, SNR_MAX) and math.isclose(cfg.snr_min, SNR_MIN)


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_only_c_i_moves_in_range_i_and_scale_sdes_are_prefixes(levels):
    process = process_for(8, levels)
    for i in range(1, levels + 2):
        lo, hi = process.time_range(i)
        t = torch.tensor([lo + 0.3 * (hi - lo), hi], dtype=F64)
        assert (process.scale_of(t) == i).all()
        full = process.sde.coefficients(t)
        d_i = process.scale_dim(i)
        assert (full.g2[:, :d_i] > 0).all() and (full.g2[:, d_i:] == 0).all()
        sub = process.scale_sde(i).coefficients(t)
        for name in ("alpha", "sigma2", "drift", "g2"):
            assert torch.equal(getattr(sub, name), getattr(full, name)[:, :d_i])
    t32 = torch.tensor([1 / (levels + 1)], dtype=torch.float32)  # boundaries go to the finer scale in any dtype
    assert process.scale_of(t32).item() == 1
    assert process.sde.coefficients(t32).g2[0, process.scale_dim(2) :].gt(0).all()


def test_split_steps():
    process = process_for(8, 3)
    for steps in (4, 5, 17, 256, 1000):
        counts = process.split_steps(steps)
        lengths = [hi - lo for lo, hi in map(process.time_range, range(1, 5))]
        ideal = [steps * ln / sum(lengths) for ln in lengths]
        assert sum(counts) == steps and min(counts) >= 1
        assert all(abs(k - v) < 1 for k, v in zip(counts, ideal))
    assert process.split_steps(256) == [64, 64, 64, 64]
    with pytest.raises(ValueError, match="steps"):
        process.split_steps(3)


# ----------------------------------------------------------------------------------------------
# exact-score sampler
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_multiscale_sampler_with_exact_scores_reproduces_the_data_covariance():
    """4x4 images, n = 2: a_2 alone, then [a_2, d_2], then all 16 coefficients; 20,000 samples in float64."""
    process = process_for(4, 2)
    packing = process.packing
    mean_x, cov_x = smooth_gaussian(4)
    w = haar_matrix(packing)
    mean_c, cov_c = w @ mean_x, w @ cov_x @ w.T
    scales = GaussianScales(process, mean_c, cov_c)
    steps = 256
    c = multiscale_sample(scales, 20_000, steps=steps, generator=torch.Generator().manual_seed(0), dtype=F64)
    d_mean, d_cov = discretised_multiscale_law(process, scales, steps)
    assert_within(c, d_mean, d_cov)  # (1) Monte Carlo vs the discretised chain
    # (2) images vs the data law at eps, N(alpha m, alpha^2 S + sigma^2 I) (every group is at snr_max
    # at eps), allowing for the discretisation error of the chain, which must itself be small.
    co = process.sde.coefficients(torch.tensor([1e-3], dtype=F64))
    a, s2 = co.alpha[0, 0], co.sigma2[0, 0]
    t_mean, t_cov = a * mean_x, a**2 * cov_x + s2 * torch.eye(16, dtype=F64)
    img_mean, img_cov = w.T @ d_mean, w.T @ d_cov @ w
    assert (img_cov - t_cov).abs().max() < 0.02 * t_cov.diagonal().max()  # 1.3% at 256 steps
    assert_within(packing.inverse(c).flatten(1), t_mean, t_cov, (img_mean - t_mean).abs(), (img_cov - t_cov).abs())


@pytest.mark.slow
@pytest.mark.parametrize("size, levels", [(4, 2), (8, 3)])
def test_discretisation_error_of_the_multiscale_chain_vanishes(size, levels):
    """With the exact prior-to-prior handover, the chain's law converges to the data law at eps at rate 1/steps."""
    process = process_for(size, levels)
    mean_x, cov_x = smooth_gaussian(size)
    w = haar_matrix(process.packing)
    mean_c, cov_c = w @ mean_x, w @ cov_x @ w.T
    scales = GaussianScales(process, mean_c, cov_c)
    t_mean, t_cov = law_at(process, mean_c, cov_c, 1e-3)
    errors = []
    for steps in (64, 256, 1024):
        d_mean, d_cov = discretised_multiscale_law(process, scales, steps)
        errors.append(max((d_mean - t_mean).abs().max().item(), (d_cov - t_cov).abs().max().item()))
    assert errors[0] > 3 * errors[1] > 9 * errors[2]
    assert errors[2] < 0.005 * t_cov.diagonal().max()


@pytest.mark.slow
def test_adapter_runs_in_the_generic_sampler_with_the_same_law():
    """smcdiff.sample on the full coefficient vector with MultiscaleScore: the frozen groups wait at their prior draw."""
    process = process_for(4, 2)
    mean_x, cov_x = smooth_gaussian(4)
    w = haar_matrix(process.packing)
    mean_c, cov_c = w @ mean_x, w @ cov_x @ w.T
    score = MultiscaleScore(GaussianScales(process, mean_c, cov_c))
    d, steps = process.packing.dim, 256
    c = sample(score, score.sde, (10_000, d), steps=steps, generator=torch.Generator().manual_seed(1), dtype=F64)
    d_mean, d_cov = discretised_law(score, score.sde, steps, d)
    assert_within(c, d_mean, d_cov)
    t_mean, t_cov = law_at(process, mean_c, cov_c, 1e-3)
    assert (d_cov - t_cov).abs().max() < 0.02 * t_cov.diagonal().max()
    assert (d_mean - t_mean).abs().max() < 0.02


def test_adapter_score_per_range():
    process = process_for(8, 2)
    mean_x, cov_x = smooth_gaussian(8)
    w = haar_matrix(process.packing)
    scales = GaussianScales(process, w @ mean_x, w @ cov_x @ w.T)
    prior = MultiscaleScore(scales)
    zero = MultiscaleScore(scales, frozen="zero")
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(2), dtype=F64)
    t = torch.tensor([0.1, 1 / 3, 0.5, 0.9], dtype=F64)
    s_prior, s_zero = prior(x, t), zero(x, t)
    for row, i in enumerate([1, 1, 2, 3]):
        d_i = process.scale_dim(i)
        expected = scales.scale_score(i, x[row : row + 1, :d_i], t[row : row + 1])[0]
        assert torch.allclose(s_prior[row, :d_i], expected) and torch.allclose(s_zero[row, :d_i], expected)
        assert torch.allclose(s_prior[row, d_i:], -x[row, d_i:])  # prior N(0, 1)
        assert (s_zero[row, d_i:] == 0).all()
    assert prior.event_shape == (64,) and prior.sde is process.sde
    with pytest.raises(ValueError, match="x"):
        prior(torch.randn(4, 63, dtype=F64), t)
    with pytest.raises(ValueError, match="t"):
        prior(x, torch.full((4,), 2.0, dtype=F64))
    with pytest.raises(ValueError, match="frozen"):
        MultiscaleScore(scales, frozen="none")
    with pytest.raises(ValueError, match="model"):
        MultiscaleScore(object())


# ----------------------------------------------------------------------------------------------
# models, files, training
# ----------------------------------------------------------------------------------------------
def tiny_multiscale(gen_seed=0):
    cfg = MultiscaleConfig(1, 8, 2, (UNetSpec(base=8, blocks=2), UNetSpec(base=8, blocks=2), UNetSpec(base=8, blocks=1)), data_rms=(1.5, 1.0, 0.5))
    return MultiscaleModel(cfg, generator=torch.Generator().manual_seed(gen_seed))


def tiny_uniform():
    return UniformModel(UniformConfig(1, 8, UNetSpec(base=8, blocks=2)), generator=torch.Generator().manual_seed(0))


def blobs(n, seed):
    """Synthetic 8x8 images in [-1, 1]: one Gaussian blob at a random position."""
    g = torch.Generator().manual_seed(seed)
    centre = 2 + 4 * torch.rand(n, 2, generator=g)
    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    r2 = (yy - centre[:, :1, None]) ** 2 + (xx - centre[:, 1:, None]) ** 2
    return (2 * torch.exp(-r2 / 3.0) - 1)[:, None]


@pytest.mark.parametrize("size, levels", [(8, 2), (16, 3), (32, 3)])
def test_matched_configs_have_equal_parameters_within_10_percent(size, levels):
    uniform, multiscale = matched_configs(size, levels)
    n_u = uniform.unet.num_parameters()
    n_m = sum(u.num_parameters() for u in multiscale.unets)
    assert abs(n_m / n_u - 1) < 0.10
    widths = [u.base for u in multiscale.unets]
    assert widths == sorted(widths, reverse=True)


def test_model_shapes_files_and_sampler(tmp_path):
    model = tiny_multiscale()
    assert sum(model.scale_parameters()) == model.num_parameters
    g = torch.Generator().manual_seed(3)
    c = torch.randn(5, 64, generator=g)
    for i, d_i in zip((1, 2, 3), (64, 16, 4)):
        t = torch.full((5,), 0.3 * i)
        assert model.scale_score(i, c[:, :d_i], t).shape == (5, d_i)
    images = model.sample(3, steps=6, generator=g)
    assert images.shape == (3, 1, 8, 8) and torch.isfinite(images).all()
    a = model.sample(2, steps=6, generator=torch.Generator().manual_seed(4))
    b = model.sample(2, steps=6, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    model.save_pretrained(tmp_path / "ms", note="test")
    loaded = load_multiscale(tmp_path / "ms")
    assert isinstance(loaded, MultiscaleModel) and loaded.config == model.config
    t = torch.full((5,), 0.2)
    assert torch.equal(loaded.scale_score(1, c, t), model.eval().scale_score(1, c, t))
    adapter = MultiscaleScore.from_pretrained(tmp_path / "ms")
    assert adapter(c, t).shape == (5, 64)
    uniform = tiny_uniform()
    x = uniform.sample(2, steps=4, generator=g)
    assert x.shape == (2, 1, 8, 8)
    uniform.save_pretrained(tmp_path / "u")
    assert isinstance(load_multiscale(tmp_path / "u"), UniformModel)
    with pytest.raises(ValueError, match="MultiscaleModel"):
        MultiscaleScore.from_pretrained(tmp_path / "u")
    with pytest.raises(ValueError, match="path"):
        load_multiscale(tmp_path / "missing")
    with pytest.raises(ValueError, match="'uniform' model"):
        MultiscaleModel.from_pretrained(tmp_path / "u")
    with pytest.deprecated_call():
        assert isinstance(load_model(tmp_path / "u"), UniformModel)


def test_sampler_callbacks_count_down_over_all_scales():
    """``callback`` sees every step once, numbered N - 1 .. 0 across the scales, with the moving coefficients."""
    model = tiny_multiscale().eval()
    seen = []
    model.sample(2, steps=9, generator=torch.Generator().manual_seed(5), callback=lambda info: seen.append((info.step, info.t, info.particles.shape[1])))
    counts = model.process.split_steps(9)
    assert [s for s, _, _ in seen] == list(range(8, -1, -1))
    assert [d for _, _, d in seen] == [4] * counts[2] + [16] * counts[1] + [64] * counts[0]
    assert seen[-1][1] == pytest.approx(1e-3)
    plain = model.sample(2, steps=9, generator=torch.Generator().manual_seed(5))
    chunked = model.sample(2, steps=9, generator=torch.Generator().manual_seed(5), chunk_size=1)
    torch.testing.assert_close(chunked, plain, rtol=1e-4, atol=1e-4)  # float32 network calls on 1 vs 2 rows round differently


@pytest.mark.slow
def test_short_training_lowers_the_loss():
    """Paired comparison on one fixed evaluation batch (same images, times and noise before and after)."""
    images = blobs(512, 5)
    model = tiny_multiscale()
    g = torch.Generator().manual_seed(6)
    k, b = 3, 256
    eval_t = torch.stack([lo + (hi - lo) * torch.rand(b, generator=g) for lo, hi in map(model.process.time_range, (1, 2, 3))])
    eval_noise = torch.randn(k, b, 64, generator=g)
    with torch.no_grad():
        before = model.eval().loss(images[:b], weighting="likelihood", t=eval_t, noise=eval_noise)
    result = train(model, images, steps=80, batch_size=32, lr=3e-3, warmup=10, ema_decay=0.9, weighting="likelihood", generator=g, progress=False)
    with torch.no_grad():
        after = result.model.loss(images[:b], weighting="likelihood", t=eval_t, noise=eval_noise)
    assert result.steps == 80 and result.history[-1][0] == 80
    assert (after < 0.7 * before).all(), (before, after)


@pytest.mark.slow
def test_training_resumes_exactly(tmp_path):
    images = blobs(64, 7)
    straight = train(tiny_multiscale(), images, steps=6, batch_size=8, warmup=2, generator=torch.Generator().manual_seed(8), progress=False)
    train(tiny_multiscale(), images, steps=3, batch_size=8, warmup=2, generator=torch.Generator().manual_seed(8), progress=False, state_dir=tmp_path)
    resumed = train(tiny_multiscale(), images, steps=6, batch_size=8, warmup=2, generator=torch.Generator().manual_seed(99), progress=False, state_dir=tmp_path, resume=True)
    assert resumed.steps == 6
    for p, q in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)
    other = MultiscaleModel(MultiscaleConfig(1, 8, 2, (UNetSpec(base=16, blocks=2),) * 2 + (UNetSpec(base=8, blocks=1),)))
    with pytest.raises(ValueError, match="configuration"):
        train(other, images, steps=6, generator=torch.Generator(), progress=False, state_dir=tmp_path, resume=True)


def test_uniform_loss_and_likelihood_option():
    model = tiny_uniform()
    x0 = blobs(8, 9)
    g = torch.Generator().manual_seed(10)
    assert model.loss(x0, generator=g).shape == (1,)
    assert torch.isfinite(model.loss(x0, weighting="likelihood", generator=g)).all()


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: MultiscaleConfig(unets=(UNetSpec(base=8, blocks=1),) * 2), "unets"),
        (lambda: MultiscaleConfig(levels=0, unets=(UNetSpec(base=8),)), "levels"),
        (lambda: MultiscaleConfig(unets=(UNetSpec(base=8, blocks=3),) * 3), r"unets\[2\]"),  # 3 levels at 2x2
        (lambda: MultiscaleConfig(unets=(UNetSpec(base=8, blocks=1),) * 3, data_rms=(1.0, -1.0, 1.0)), "data_rms"),
        (lambda: UNetSpec(base=12, norm_num_groups=8), "base"),
        (lambda: UNetSpec(blocks=5), "blocks"),
        (lambda: MultiscaleProcess(HaarPacking(1, 8, 8, 0), SNR_MAX, SNR_MIN), "levels"),
        (lambda: process_for(8, 2).scale_sde(0), "scale"),
        (lambda: process_for(8, 2).scale_of(torch.tensor([[0.5]])), "t"),
        (lambda: tiny_multiscale().scale_score(1, torch.randn(2, 16), torch.full((2,), 0.1)), "c_i"),
        (lambda: tiny_multiscale().scale_score(2, torch.randn(2, 16), torch.full((3,), 0.5)), "t"),
        (lambda: tiny_multiscale().loss(torch.randn(2, 1, 4, 4)), "x0"),
        (lambda: tiny_multiscale().loss(torch.randn(2, 1, 8, 8), weighting="mle"), "weighting"),
        (lambda: tiny_multiscale().sample(2, steps=2), "steps"),
        (lambda: tiny_multiscale().sample(0), "n"),
        (lambda: multiscale_sample(object(), 2), "scales"),
        (lambda: tiny_multiscale().sample(2, steps=4, chunk_size=0), "chunk_size"),
        (lambda: tiny_uniform().sample(2, steps=4, callback=1), "callback"),
        (lambda: tiny_uniform().predict(torch.randn(2, 1, 4, 4), torch.full((2,), 0.5)), "x"),
        (lambda: train(tiny_uniform(), blobs(4, 0), progress=False), "steps"),
        (lambda: train(tiny_uniform(), blobs(4, 0), steps=2, resume=True, progress=False), "state_dir"),
        (lambda: train(tiny_uniform(), blobs(4, 0), steps=2, clock="cpu", progress=False), "clock"),
        (lambda: GaussianScales(process_for(4, 1), torch.zeros(15), torch.eye(16)), "mean"),
    ],
)
def test_errors_name_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["multiscale", "uniform"])
def test_shipped_models_draw_recognisable_digits(name):
    """The float16 weights in ``smcdiff/assets/multiscale`` (examples/train_multiscale.py) load by name
    and sample digits the classifier is confident about; on clipped noise it is confident for ~30%."""
    from smcdiff.classifier import load_digit_classifier

    model = load_multiscale(name)
    assert model.num_parameters == pytest.approx(1.1e6, rel=0.05)
    x = model.sample(64, steps=64, generator=torch.Generator().manual_seed(0))
    assert x.shape == (64, 1, 8, 8) and torch.isfinite(x).all()
    with torch.no_grad():
        confidence = load_digit_classifier()(x.clamp(-1, 1)).softmax(1).max(1).values
    assert (confidence > 0.9).double().mean() >= 0.7
