"""Class-conditional generation (``smcdiff.generate``, ``smcdiff generate``), ``restore`` with a likelihood and the
quantise task (``smcdiff restore --task quantise``) on the shipped digits model: shapes, costs, outputs, errors."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from smcdiff import RunOptions, generate, restore
from smcdiff.classifier import load_digit_classifier
from smcdiff.data import load_digits_images
from smcdiff.likelihoods import Classifier, GaussianLinear, Quantised
from smcdiff.operators import Downsample

pytestmark = pytest.mark.filterwarnings("ignore:steps=.* is far below")


def test_generate_draws_images_of_the_class():
    res = generate([3, 7], particles=8, steps=60, kernel="ancestral", generator=torch.Generator().manual_seed(0),
                   options=RunOptions(populations=2))
    assert res.samples.shape == (2, 16, 1, 8, 8) and res.method == "smc" and res.proposal == "twisted"
    assert res.model_evaluations == 2 * 2 * 8 * 60 and isinstance(res.operator, Classifier)
    assert res.y.tolist() == [3, 7]
    draws = res.draw(6, torch.Generator().manual_seed(1))
    with torch.no_grad():
        seen = load_digit_classifier()(draws.flatten(0, 1)).argmax(1).view(2, 6)
    # the guided class dominates (the generate benchmark measures it with an independent classifier)
    assert (seen[0] == 3).float().mean() >= 0.5 and (seen[1] == 7).float().mean() >= 0.5


def test_generate_errors_name_the_argument():
    with pytest.raises(ValueError, match="label must lie in 0..9"):
        generate(10, particles=2, steps=2)
    with pytest.raises(ValueError, match="label must be a class index"):
        generate([], particles=2, steps=2)
    with pytest.raises(ValueError, match="classifier is required"):
        generate(1, torch.nn.Identity(), particles=2, steps=2)
    with pytest.raises(ValueError, match="proposal='mcgdiff' needs a linear-Gaussian observation"):
        generate(1, particles=2, steps=2, proposal="mcgdiff")


def test_restore_takes_a_likelihood_and_unwraps_gaussian_linear():
    x = load_digits_images("test")[:1]
    q = Quantised.uniform(4, 0.05)
    res = restore("digits", q.quantise(x), q, particles=4, steps=20, generator=torch.Generator().manual_seed(0),
                  options=RunOptions(populations=1))
    assert res.samples.shape == (1, 4, 1, 8, 8) and res.proposal == "twisted" and res.operator is q
    with pytest.raises(ValueError, match="needs method='smc'"):
        restore("digits", q.quantise(x), q, method="replacement", particles=2, steps=2)
    op = Downsample(4)
    y = op.bind((1, 8, 8)).A(x)
    kw = dict(particles=4, steps=10, proposal="mcgdiff", options=RunOptions(populations=1))
    a = restore("digits", y, op, noise_std=0.1, generator=torch.Generator().manual_seed(3), **kw)
    b = restore("digits", y, GaussianLinear(op.bind((1, 8, 8)), 0.1), generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(a.samples, b.samples) and b.noise_std == 0.1


def test_cli_generate(smcdiff, tmp_path):
    out = smcdiff("generate", "--label", 2, 5, "--particles", 4, "--populations", 2, "--steps", 30, "--draws", 3,
                  "--out", tmp_path / "g.png")
    assert out.returncode == 0, out.stderr
    assert "class 2: final ESS" in out.stdout and "class 5: final ESS" in out.stdout
    assert "network evaluations and as many backward passes" in out.stdout
    with Image.open(tmp_path / "g.png") as img:  # two rows (classes) of three draws, upscaled
        assert img.format == "PNG" and img.width >= 3 * 8 and img.height >= 2 * 8
    bad = smcdiff("generate", "--label", 11, "--out", tmp_path / "g.png")
    assert bad.returncode == 2 and "--label must lie in 0..9" in bad.stderr
    bad = smcdiff("generate", "--label", 1, "--twist-variance", -1, "--out", tmp_path / "g.png")
    assert bad.returncode == 2 and "--twist-variance must be a positive number" in bad.stderr
    bad = smcdiff("generate", "--label", 1, "--classifier", tmp_path, "--out", tmp_path / "g.png")
    assert bad.returncode == 2 and "cannot load the classifier" in bad.stderr


def _quantised_input(tmp_path):
    q = Quantised.uniform(4, 0.05)
    x = load_digits_images("test")[:1]
    pixels = ((q.centres(q.quantise(x))[0, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(tmp_path / "q.png")
    return tmp_path / "q.png"


def test_cli_restore_quantise(smcdiff, tmp_path):
    path = _quantised_input(tmp_path)
    out = smcdiff("restore", path, "--task", "quantise", "--noise", 0.05, "--particles", 4, "--populations", 1,
                  "--steps", 20, "--out", tmp_path / "o.png")
    assert out.returncode == 0, out.stderr
    assert "dequantisation (4 levels, dither 0.05)" in out.stdout and "fall in their observed bin" in out.stdout
    for args, message in [
        (("--noise", 0), "--task quantise needs the noise before quantisation"),
        (("--noise", 0.05, "--proposal", "mcgdiff"), "--task quantise needs --proposal twisted"),
        (("--noise", 0.05, "--method", "replacement"), "--task quantise observes bins"),
    ]:
        bad = smcdiff("restore", path, "--task", "quantise", *args, "--out", tmp_path / "o.png")
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    bad = smcdiff("restore", path, "--task", "sr", "--levels", 3, "--out", tmp_path / "o.png")
    assert bad.returncode == 2 and "--levels applies to --task quantise" in bad.stderr
