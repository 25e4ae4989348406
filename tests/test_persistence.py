"""The one model-file layout (smcdiff.persistence): round trips, clear errors, and folders of smcdiff 0.1."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from smcdiff.classifier import ASSET_DIR as CLASSIFIER_DIR
from smcdiff.classifier import load_digit_classifier
from smcdiff.msdiff.conditional import ASSET_DIR as CONDITIONAL_DIR
from smcdiff.msdiff.conditional import load_conditional
from smcdiff.msdiff.multiscale import ASSET_DIR as MULTISCALE_DIR
from smcdiff.msdiff.multiscale import load_multiscale
from smcdiff.persistence import CONFIG_NAME, WEIGHTS_NAME, read_config


def _flat_copy(src, dst, keep_kind: bool):
    """A copy of a shipped folder with its config.json in the 0.1 layout (arguments at the top level)."""
    dst.mkdir()
    shutil.copy(src / WEIGHTS_NAME, dst / WEIGHTS_NAME)
    record = json.loads((src / CONFIG_NAME).read_text())
    flat = dict(record["config"])
    if keep_kind:
        flat["kind"] = record["kind"]
    flat["metadata"] = record["metadata"]
    (dst / CONFIG_NAME).write_text(json.dumps(flat))
    return dst


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_folders_of_the_previous_layout_load_with_their_metadata(tmp_path):
    ms = _flat_copy(MULTISCALE_DIR / "uniform", tmp_path / "uniform", keep_kind=True)
    assert _same_weights(load_multiscale(ms), load_multiscale("uniform"))
    cde = _flat_copy(CONDITIONAL_DIR / "cde", tmp_path / "cde", keep_kind=False)
    old = load_conditional(cde)
    assert _same_weights(old, load_conditional("cde")) and old.config == load_conditional("cde").config
    record = read_config(cde, ("conditional",), type(old.config))
    assert record.metadata == read_config(CONDITIONAL_DIR / "cde").metadata


def test_previous_classifier_layout_keeps_metrics_as_metadata(tmp_path):
    folder = tmp_path / "classifier"
    folder.mkdir()
    shutil.copy(CLASSIFIER_DIR / WEIGHTS_NAME, folder / WEIGHTS_NAME)
    record = json.loads((CLASSIFIER_DIR / CONFIG_NAME).read_text())
    (folder / CONFIG_NAME).write_text(json.dumps({**record["config"], **record["metadata"]}))  # 0.1: metrics beside
    model = load_digit_classifier(directory=folder)
    assert _same_weights(model, load_digit_classifier())
    assert read_config(folder, ("digit_classifier",), type(model.config)).metadata == record["metadata"]


def test_unknown_configuration_arguments_are_refused(tmp_path):
    folder = tmp_path / "cde"
    shutil.copytree(CONDITIONAL_DIR / "cde", folder)
    record = json.loads((folder / CONFIG_NAME).read_text())
    record["config"]["not_an_argument"] = 1
    (folder / CONFIG_NAME).write_text(json.dumps(record))
    with pytest.raises(ValueError, match="not_an_argument"):
        load_conditional(folder)
