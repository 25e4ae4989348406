"""Loading models: the shipped model by name everywhere, and one clear line for what cannot be loaded.

Nothing here touches the network: offline hub ids are tested with ``HF_HUB_OFFLINE=1`` and with an
endpoint that refuses connections at once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from smcdiff.adapters import DiffusersScore
from smcdiff.models import DEFAULT_MODEL_PATH, load_model

HUB_ID = "smcdiff-tests/no-such-model"


@pytest.fixture
def model_copy(tmp_path) -> Path:
    """A writable copy of the shipped digits model."""
    return Path(shutil.copytree(str(DEFAULT_MODEL_PATH), tmp_path / "digits"))


def test_from_pretrained_digits_is_the_shipped_model():
    model = DiffusersScore.from_pretrained("digits")
    shipped = load_model("digits")
    assert model.event_shape == shipped.event_shape == (1, 8, 8)
    a, b = model.unet.state_dict(), shipped.unet.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_safetensors_file_says_so(model_copy, damage):
    weights = model_copy / "unet" / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(os.urandom(3000) if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt weights file"):
        DiffusersScore.from_pretrained(model_copy)


def test_pickle_only_weights_are_refused(model_copy):
    weights = model_copy / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(ValueError, match="pickle weights are refused: convert to safetensors"):
        DiffusersScore.from_pretrained(model_copy)


def test_missing_directories_and_files_say_so(tmp_path):
    with pytest.raises(ValueError, match="no such model directory"):
        DiffusersScore.from_pretrained(tmp_path / "nothing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        DiffusersScore.from_pretrained(str(tmp_path / "file"))


def _quick_failure(match: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=match) as err:
        DiffusersScore.from_pretrained(HUB_ID)
    assert time.perf_counter() - t0 < 10
    assert "\n" not in str(err.value) and HUB_ID in str(err.value)


def test_offline_hub_id_fails_at_once(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    _quick_failure("not in the local Hugging Face cache .*HF_HUB_OFFLINE")


def test_unreachable_hub_fails_at_once(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused at once
    _quick_failure("no connection to 127.0.0.1:9")


@pytest.mark.slow
def test_offline_hub_id_in_the_cli_is_one_line(tmp_path):
    """The real command with HF_HUB_OFFLINE=1: exit status 2, one line on stderr, no retries."""
    image = tmp_path / "digit.png"
    Image.fromarray(np.zeros((8, 8), np.uint8), mode="L").save(image)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "smcdiff", "inpaint", str(image), "--box", "0,0,2,2", "--model", HUB_ID,
         "--out", str(tmp_path / "o.png")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert time.perf_counter() - t0 < 30  # the hub client's retries took 40-50 s
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "HF_HUB_OFFLINE" in out.stderr and "Traceback" not in out.stderr
