"""``save_result`` / ``load_result``: a run comes back whole from .npz and .safetensors, and nothing is unpickled."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from smcdiff import restore
from smcdiff.data import load_digits_images
from smcdiff.operators import Blur, Dense, Downsample, Grayscale, Mask, Operator
from smcdiff.feynman_kac import WeightedSamples
from smcdiff.restore import RestoreResult
from smcdiff.results import ResultFileError, load_result, save_result

FORMATS = ["npz", "safetensors"]


def _operators() -> dict[str, tuple[Operator, tuple[int, ...]]]:
    """Each operator kind, bound, with its input event shape."""
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(2, 1, 4, 4, generator=g) > 0.5
    return {
        "mask": (Mask(mask, per_row=True), (1, 4, 4)),
        "downsample": (Downsample(2).bind((1, 4, 4)), (1, 4, 4)),
        "blur": (Blur.gaussian(0.8).bind((1, 4, 4)), (1, 4, 4)),
        "grayscale": (Grayscale(3).bind((3, 4, 4)), (3, 4, 4)),
        "dense": (Dense(torch.randn(3, 5, generator=g, dtype=torch.float64)), (5,)),
    }


def _synthetic(op: Operator, event: tuple[int, ...], method: str = "smc") -> RestoreResult:
    """A RestoreResult with random contents (the file format does not care whether they came from a sampler)."""
    g = torch.Generator().manual_seed(1)
    b, m, steps = 2, 5, 4
    particles = torch.randn(b, m, *event, generator=g)
    log_w = torch.log_softmax(torch.randn(b, m, generator=g, dtype=torch.float64), dim=1)
    y = op.A(particles[:, 0].double()).float()
    ess = torch.rand(steps, b, generator=g, dtype=torch.float64) * m
    resampled = torch.rand(steps, b, generator=g) > 0.5
    evidence = torch.randn(b, generator=g, dtype=torch.float64) if method == "smc" else torch.full((b,), math.nan, dtype=torch.float64)
    lineages = torch.randint(1, m + 1, (steps, b), generator=g)
    w = WeightedSamples(particles, log_w, ess, resampled, evidence, lineages)
    settings = {"steps": steps, "kernel": "euler", "seed": 3, "ess_threshold": 0.5, "nested": {"a": [1, 2]}}
    return RestoreResult(particles, log_w, y, op, 0.1, w, method, "mcgdiff" if method == "smc" else None, 40, 1.5, settings)


def _assert_same(a: RestoreResult, b: RestoreResult) -> None:
    for name in ("samples", "log_weights", "y"):
        x, z = getattr(a, name), getattr(b, name)
        assert x.dtype == z.dtype and torch.equal(x, z), name
    for name in ("ess", "resampled", "lineages"):
        x, z = getattr(a.weighted, name), getattr(b.weighted, name)
        assert x.dtype == z.dtype and torch.equal(x, z), name
    torch.testing.assert_close(a.weighted.log_evidence, b.weighted.log_evidence, equal_nan=True, rtol=0, atol=0)
    assert (a.method, a.proposal, a.noise_std, a.model_evaluations, a.seconds) == (
        b.method, b.proposal, b.noise_std, b.model_evaluations, b.seconds)
    assert a.settings == b.settings


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", list(_operators()))
def test_round_trip_of_every_operator_kind(tmp_path, fmt, kind):
    op, event = _operators()[kind]
    res = _synthetic(op, event)
    back = load_result(save_result(res, tmp_path / f"run.{fmt}"))
    _assert_same(res, back)
    assert type(back.operator) is type(op) and repr(back.operator) == repr(op)
    # the rebuilt operator is the same linear map
    x = torch.randn(2, *event, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(back.operator.A(x), op.A(x))
    torch.testing.assert_close(back.mean(), res.mean())


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_real_run_comes_back_whole(tmp_path, fmt):
    images = load_digits_images("test")[:2]
    low = Downsample(4).bind((1, 8, 8)).A(images)
    res = restore("digits", low, Downsample(4), particles=3, steps=3, proposal="mcgdiff",
                  generator=torch.Generator().manual_seed(0))
    back = load_result(save_result(res, tmp_path / f"run.{fmt}"))
    _assert_same(res, back)
    assert isinstance(back.operator, Downsample) and back.operator.in_shape == (1, 8, 8)
    g1, g2 = (torch.Generator().manual_seed(5) for _ in range(2))
    assert torch.equal(res.draw(4, g1), back.draw(4, g2))


def test_a_replacement_run_keeps_its_nan_evidence(tmp_path):
    op, event = _operators()["mask"]
    res = _synthetic(op, event, method="replacement")
    back = load_result(save_result(res, tmp_path / "run.npz"))
    assert back.proposal is None and torch.isnan(back.weighted.log_evidence).all()


def test_npz_holds_plain_arrays_and_json(tmp_path):
    op, event = _operators()["dense"]
    path = save_result(_synthetic(op, event), tmp_path / "run.npz")
    with np.load(path, allow_pickle=False) as data:  # would raise on an object array
        names = set(data.files)
        assert all(data[k].dtype != object for k in names)
    assert {"samples", "log_weights", "y", "ess", "resampled", "log_evidence", "lineages", "operator.matrix"} <= names


def test_an_operator_it_cannot_rebuild_needs_operator(tmp_path):
    class MyMask(Mask):
        pass

    op = MyMask(torch.ones(1, 4, 4, dtype=torch.bool))
    res = _synthetic(op, (1, 4, 4))
    path = save_result(res, tmp_path / "run.safetensors")
    with pytest.raises(ValueError, match="operator="):
        load_result(path)
    assert load_result(path, operator=op).operator is op


def test_bad_files_are_refused(tmp_path):
    op, event = _operators()["downsample"]
    with pytest.raises(ValueError, match=".npz or .safetensors"):
        save_result(_synthetic(op, event), tmp_path / "run.pt")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ResultFileError, match="cannot read"):
        load_result(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ResultFileError, match="not an smcdiff result"):
        load_result(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError):
        load_result(tmp_path / "missing.npz")
