"""DiffusersScore: time mapping, prediction types, loading, errors (tiny random UNets, offline)."""

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from smcdiff import TabulatedVP, sample
from smcdiff.adapters import DiffusersScore


def tiny_unet(seed=0, channels=1):
    torch.manual_seed(seed)  # diffusers initialises weights from the global RNG; tests only
    return UNet2DModel(
        sample_size=8, in_channels=channels, out_channels=channels, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1, norm_num_groups=4,
    ).eval()


def scheduler(prediction_type="epsilon"):
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type=prediction_type)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_score_is_minus_eps_over_sigma(prediction_type):
    """At each training step k (t = (k+1)/N) the score equals -eps/sigma, eps from the scheduler's own law."""
    unet, sched = tiny_unet(), scheduler(prediction_type)
    model = DiffusersScore(unet, sched)
    g = torch.Generator().manual_seed(0)
    k = torch.tensor([0, 10, 499, 999])
    t = (k + 1).double() / 1000
    x = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    with torch.no_grad():
        out = unet(x.float(), k).sample.double()
        score = model(x, t)
    abar = sched.alphas_cumprod[k].double().reshape(-1, 1, 1, 1)
    a, s = abar.sqrt(), (1 - abar).sqrt()
    eps = {"epsilon": out, "sample": (x - a * out) / s, "v_prediction": a * out + s * x}[prediction_type]
    assert torch.allclose(score, -eps / s, rtol=1e-4, atol=1e-4)


def test_sde_matches_scheduler_and_fractional_timesteps():
    sched = scheduler()
    sde = TabulatedVP(sched.alphas_cumprod)
    k = torch.arange(0, 1000, 37)
    t = (k + 1).double() / 1000
    assert torch.allclose(sde.coefficients(t).alpha ** 2, sched.alphas_cumprod[k].double(), rtol=1e-5)
    assert torch.allclose(sde.timestep(t), k.double())
    assert sde.eps == pytest.approx(1e-3) and sde.T == 1.0


def test_save_and_load_round_trip(tmp_path):
    unet, sched = tiny_unet(), scheduler("v_prediction")
    unet.save_pretrained(tmp_path / "unet", safe_serialization=True)
    sched.save_pretrained(tmp_path / "scheduler")
    loaded = DiffusersScore.from_pretrained(tmp_path)
    assert loaded.prediction == "v_prediction"
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([0.3, 0.8])
    with torch.no_grad():
        assert torch.allclose(loaded(x, t), DiffusersScore(unet, sched)(x, t), atol=1e-5)
    (tmp_path / "flat").mkdir()
    unet.save_pretrained(tmp_path / "flat", safe_serialization=True)
    sched.save_pretrained(tmp_path / "flat")
    assert DiffusersScore.from_pretrained(tmp_path / "flat").event_shape == (1, 8, 8)


def test_runs_in_the_unconditional_sampler():
    model = DiffusersScore(tiny_unet(), scheduler())
    x = sample(model, model.sde, (3, 1, 8, 8), steps=4, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 8, 8) and torch.isfinite(x).all()


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="no such model directory"):
        DiffusersScore.from_pretrained(tmp_path / "missing")
    with pytest.raises(ValueError, match="no UNet2DModel"):
        DiffusersScore.from_pretrained(tmp_path)
    tiny_unet().save_pretrained(tmp_path / "only-unet", safe_serialization=True)
    with pytest.raises(ValueError, match="no scheduler config"):
        DiffusersScore.from_pretrained(tmp_path / "only-unet")
    with pytest.raises(ValueError, match="UNet2DModel"):
        DiffusersScore(torch.nn.Linear(2, 2), scheduler())
    with pytest.raises(ValueError, match="prediction_type"):
        DiffusersScore(tiny_unet(), DDPMScheduler(prediction_type="epsilon").__class__.from_config({**scheduler().config, "prediction_type": "noise"}))
    model = DiffusersScore(tiny_unet(), scheduler())
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.zeros(2, 3, 8, 8), torch.ones(2))
