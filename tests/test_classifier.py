"""The shipped digit classifier: loading, shapes and held-out accuracy."""

import pytest
import torch

from smcdiff.classifier import DigitClassifier, DigitClassifierConfig, load_digit_classifier, save_digit_classifier
from smcdiff.data import load_digits_images


@pytest.fixture(scope="module")
def classifier():
    return load_digit_classifier()


def test_loads_in_eval_mode_without_gradients(classifier):
    assert isinstance(classifier, DigitClassifier)
    assert not classifier.training
    assert not any(p.requires_grad for p in classifier.parameters())


def test_feature_and_logit_shapes(classifier):
    x = load_digits_images("test")[:5]
    feats = classifier.features(x)
    assert feats.shape == (5, classifier.config.feature_dim)
    assert classifier(x).shape == (5, 10)


def test_held_out_accuracy(classifier):
    x, y = load_digits_images("test", return_labels=True)
    acc = (classifier(x).argmax(dim=1) == y).float().mean().item()
    assert acc >= 0.95


def test_bad_input_shape_raises(classifier):
    with pytest.raises(ValueError, match="x must have shape"):
        classifier(torch.zeros(2, 1, 28, 28))


def test_save_load_round_trip(tmp_path, classifier):
    save_digit_classifier(classifier, tmp_path, test_accuracy=1.0)
    again = load_digit_classifier(directory=tmp_path)
    x = load_digits_images("test")[:8]
    assert torch.equal(again(x), classifier(x))


def test_config_validation():
    with pytest.raises(ValueError, match="feature_dim"):
        DigitClassifierConfig(feature_dim=0)


def test_files_are_in_the_shared_layout_and_errors_name_the_path(tmp_path, classifier):
    import json

    save_digit_classifier(classifier, tmp_path / "m", test_accuracy=1.0)
    record = json.loads((tmp_path / "m" / "config.json").read_text())
    assert record == {"kind": "digit_classifier", "config": classifier.config.to_dict(), "metadata": {"test_accuracy": 1.0}}
    assert DigitClassifierConfig(**record["config"]) == classifier.config
    with pytest.raises(ValueError, match="missing"):
        load_digit_classifier(directory=tmp_path / "missing")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="model.safetensors"):
        load_digit_classifier(directory=tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{")
    with pytest.raises(ValueError, match="config.json"):
        load_digit_classifier(directory=tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps({"kind": "uniform", "config": {}, "metadata": {}}))
    with pytest.raises(ValueError, match="'uniform' model"):
        load_digit_classifier(directory=tmp_path / "m")

