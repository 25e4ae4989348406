"""``smcdiff.memory``: what is free, what a particle costs, and the chunk size that makes a run fit.

The budget is faked (``available_bytes`` monkeypatched), so the plans are exact arithmetic on a small
network whose activations are known: the tests do not depend on the machine.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from smcdiff import memory
from smcdiff.memory import (
    BACKWARD_COPIES,
    BACKWARD_PEAK_FACTOR,
    STATE_COPIES,
    InsufficientMemoryError,
    activation_bytes_per_row,
    available_bytes,
    cpu_call_rows,
    estimate_bytes_per_particle,
    format_bytes,
    plan_chunk_size,
    state_bytes_per_particle,
)

EVENT = (1, 4, 4)
GiB = 2**30


class TinyScore(nn.Module):
    """score(x, t) for x: (n, 1, 4, 4): flatten, 16 -> 32 -> ReLU -> 16, back to the event shape."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16), nn.Unflatten(1, EVENT))

    def forward(self, x, t):
        return self.net(x) * t.reshape(-1, 1, 1, 1)


# outputs per row, in floats: Flatten (a view of x: 16), Linear (32), ReLU (32), Linear (16; Unflatten and
# Sequential return views of it), and the final product (16)
TINY_ROW = (16 + 32 + 32 + 16 + 16) * 4


def fake_free(monkeypatch, n: int) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: n)


# ---- what is free ----
def test_available_bytes_on_the_cpu_is_a_plausible_positive_int():
    free = available_bytes("cpu")
    assert isinstance(free, int) and 0 < free < 2**50


def test_a_lower_cgroup_limit_wins(monkeypatch):
    files = {"/sys/fs/cgroup/memory.max": 3 * GiB, "/sys/fs/cgroup/memory.current": 1 * GiB}
    monkeypatch.setattr(memory, "_read_int", files.get)
    monkeypatch.setattr(memory, "_host_available", lambda: 64 * GiB)
    assert available_bytes("cpu") == 2 * GiB
    monkeypatch.setattr(memory, "_host_available", lambda: 1 * GiB)
    assert available_bytes("cpu") == 1 * GiB
    monkeypatch.setattr(memory, "_read_int", {}.get)  # no limit ("max", or no cgroup files)
    assert available_bytes("cpu") == 1 * GiB


def test_cgroup_v2_without_a_limit_reads_as_none(tmp_path, monkeypatch):
    limit = tmp_path / "memory.max"
    limit.write_text("max\n")
    assert memory._read_int(str(limit)) is None
    limit.write_text("1073741824\n")
    assert memory._read_int(str(limit)) == GiB
    assert memory._read_int(str(tmp_path / "missing")) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_available_bytes_on_cuda_is_at_least_the_free_memory():
    free, total = torch.cuda.mem_get_info()
    got = available_bytes("cuda")
    assert free * 0.9 <= got <= total


# ---- what a particle costs ----
def test_the_particle_state_is_a_few_copies_of_the_event():
    assert state_bytes_per_particle(EVENT, torch.float32) == 16 * 4 * STATE_COPIES + 64
    assert state_bytes_per_particle(EVENT, torch.float64) == 16 * 8 * STATE_COPIES + 64
    assert state_bytes_per_particle(EVENT, torch.float32, backward=True) == 16 * 4 * (STATE_COPIES + BACKWARD_COPIES) + 64


def test_activations_are_the_outputs_of_every_submodule_views_counted_once():
    score = TinyScore()
    assert activation_bytes_per_row(score, EVENT, torch.float32, "cpu") == TINY_ROW
    assert activation_bytes_per_row(TinyScore().double(), EVENT, torch.float64, "cpu") == 2 * TINY_ROW
    assert estimate_bytes_per_particle(score, EVENT, torch.float32, "cpu") == TINY_ROW + state_bytes_per_particle(EVENT, torch.float32)


def planned_row(backward: bool) -> int:
    return math.ceil(TINY_ROW * BACKWARD_PEAK_FACTOR) if backward else TINY_ROW


def test_backward_probes_with_gradients_and_counts_more():
    score = TinyScore()
    fwd = estimate_bytes_per_particle(score, EVENT, torch.float32, "cpu")
    bwd = estimate_bytes_per_particle(score, EVENT, torch.float32, "cpu", backward=True)
    assert bwd == fwd + 16 * 4 * BACKWARD_COPIES + planned_row(True) - TINY_ROW


def test_a_plain_callable_costs_its_state_only():
    def score(x, t):
        return -x

    assert activation_bytes_per_row(score, EVENT, torch.float32, "cpu") == 0
    assert estimate_bytes_per_particle(score, EVENT, torch.float32, "cpu") == state_bytes_per_particle(EVENT, torch.float32)


def test_the_probe_leaves_the_module_and_the_global_rng_alone():
    score = TinyScore().train()
    before = {k: v.clone() for k, v in score.state_dict().items()}
    rng = torch.get_rng_state()
    estimate_bytes_per_particle(score, EVENT, torch.float32, "cpu", backward=True)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(not m._forward_hooks for m in score.modules())
    assert score.training and all(torch.equal(v, before[k]) for k, v in score.state_dict().items())
    assert all(p.grad is None for p in score.parameters())


def test_the_probe_uses_times_inside_the_scores_sde():
    seen = []

    class WithSDE(TinyScore):
        sde = type("S", (), {"T": 0.25})()

        def forward(self, x, t):
            seen.append(t)
            return super().forward(x, t)

    activation_bytes_per_row(WithSDE(), EVENT, torch.float32, "cpu")
    assert seen and torch.all(seen[0] == 0.125)


# ---- the plan ----
def test_everything_in_one_call_when_it_fits(monkeypatch):
    fake_free(monkeypatch, 64 * GiB)
    assert plan_chunk_size(TinyScore(), EVENT, 10_000, torch.float32, "cpu") is None
    assert plan_chunk_size(TinyScore(), EVENT, 10_000, torch.float32, "cpu", chunk_size=500) == 500


@pytest.mark.parametrize("backward", [False, True])
def test_the_largest_chunk_that_fits(monkeypatch, backward):
    n, fraction = 10_000, 0.5
    state = n * state_bytes_per_particle(EVENT, torch.float32, backward=backward)
    row = planned_row(backward)
    free = int((state + 1234.5 * row) / fraction)  # room for the state and 1234 rows of activations
    fake_free(monkeypatch, free)
    chunk = plan_chunk_size(TinyScore(), EVENT, n, torch.float32, "cpu", backward=backward, fraction=fraction)
    assert chunk == 1234
    assert state + chunk * row <= fraction * free < state + (chunk + 1) * row
    # a chunk size the user gave is kept when it fits, lowered when it does not
    assert plan_chunk_size(TinyScore(), EVENT, n, torch.float32, "cpu", backward=backward, chunk_size=100) == 100
    assert plan_chunk_size(TinyScore(), EVENT, n, torch.float32, "cpu", backward=backward, chunk_size=5000) == 1234


def test_a_plain_callable_is_never_chunked(monkeypatch):
    fake_free(monkeypatch, 10 * state_bytes_per_particle(EVENT, torch.float32) * 2)

    def score(x, t):
        return -x

    assert plan_chunk_size(score, EVENT, 10, torch.float32, "cpu") is None
    assert plan_chunk_size(score, EVENT, 10, torch.float32, "cpu", chunk_size=3) == 3
    with pytest.raises(InsufficientMemoryError):
        plan_chunk_size(score, EVENT, 11, torch.float32, "cpu")


def test_particles_that_cannot_fit_are_refused_in_one_line(monkeypatch):
    event = (3, 64, 64)
    n, b = 200_000, 4
    fake_free(monkeypatch, 40 * GiB)
    with pytest.raises(InsufficientMemoryError) as err:
        plan_chunk_size(TinyScore(), event, n * b, torch.float32, "cpu", batch=b)
    text = str(err.value)
    need = n * b * state_bytes_per_particle(event, torch.float32)
    assert isinstance(err.value, ValueError) and "\n" not in text
    assert text.startswith(f"particles: {n} particles per image (x {b} images) need about {format_bytes(need)} "
                           "for the particle state alone")
    assert "about 20.0 GiB are available (50% of the 40.0 GiB free on cpu); use fewer particles" in text


def test_no_room_for_one_row_of_activations_is_refused(monkeypatch):
    n = 100
    state = n * state_bytes_per_particle(EVENT, torch.float32)
    fake_free(monkeypatch, 2 * (state + TINY_ROW // 2))
    with pytest.raises(InsufficientMemoryError, match="particles: 100 particles need about .* for the particle state and one row"):
        plan_chunk_size(TinyScore(), EVENT, n, torch.float32, "cpu")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_particles": 0}, "n_particles"), ({"chunk_size": 0}, "chunk_size"), ({"fraction": 0.0}, "fraction"),
     ({"fraction": 1.5}, "fraction"), ({"n_particles": True}, "n_particles")],
)
def test_bad_arguments(monkeypatch, kwargs, message):
    fake_free(monkeypatch, GiB)
    args = {"n_particles": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        plan_chunk_size(TinyScore(), EVENT, args.pop("n_particles"), torch.float32, "cpu", **args)


@pytest.mark.parametrize("backward", [False, True])
def test_cpu_calls_are_capped_at_a_size_in_bytes(backward):
    row = planned_row(backward)
    assert cpu_call_rows(TinyScore(), EVENT, torch.float32, "cpu", backward=backward, call_bytes=100.5 * row) == 100
    assert cpu_call_rows(TinyScore(), EVENT, torch.float32, "cpu", backward=backward, call_bytes=row / 2) == 1
    assert cpu_call_rows(TinyScore(), EVENT, torch.float32, "cpu", backward=backward) == memory.CPU_CALL_BYTES // row


def test_no_cap_off_the_cpu_or_for_a_plain_callable():
    assert cpu_call_rows(TinyScore(), EVENT, torch.float32, "cuda") is None  # decided before touching the device
    assert cpu_call_rows(lambda x, t: -x, EVENT, torch.float32, "cpu") is None
    with pytest.raises(ValueError, match="call_bytes"):
        cpu_call_rows(TinyScore(), EVENT, torch.float32, "cpu", call_bytes=0)


def test_restore_caps_cpu_calls_silently_and_warns_only_when_memory_binds(monkeypatch):
    from smcdiff import load_model
    from smcdiff.operators import Downsample
    from smcdiff.options import RunOptions
    from smcdiff.restore import _fit_memory
    from smcdiff.proposals import Twisted

    score = load_model("digits")
    y = torch.zeros(2, 1, 4, 4)
    options = RunOptions(populations=3)
    monkeypatch.setattr(memory, "CPU_CALL_BYTES", 50 * 2**20)
    fastest = cpu_call_rows(score, (1, 8, 8), torch.float32, "cpu", backward=True, call_bytes=50 * 2**20)
    assert 1 < fastest < 2 * 3 * 64
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _fit_memory(score, y, 64, Twisted(), options).chunk_size == fastest  # capped, no warning
        assert _fit_memory(score, y, 1, Twisted(), options).chunk_size is None  # 6 rows: one call
        assert _fit_memory(score, y, 64, Twisted(), options.replace(chunk_size=7)).chunk_size == 7  # the user's wins
    state = 2 * 3 * 64 * state_bytes_per_particle((1, 8, 8), torch.float32, backward=True)
    fake_free(monkeypatch, 2 * (state + 10 * 2**20))  # room for fewer rows than the CPU cap: memory binds, and says so
    with pytest.warns(UserWarning, match="do not fit in memory") as seen:
        chunk = _fit_memory(score, y, 64, Twisted(), options).chunk_size
    assert 1 <= chunk < fastest and f"sampling in chunks of {chunk}" in str(seen[0].message)
    fake_free(monkeypatch, 2 * (state + 100 * 2**20))  # memory alone would chunk, but above the CPU cap: silent
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert memory.plan_chunk_size(score, (1, 8, 8), 2 * 3 * 64, torch.float32, "cpu", backward=True) > fastest
        assert _fit_memory(score, y, 64, Twisted(), options).chunk_size == fastest


def test_restore_probes_the_network_once_for_its_plan(monkeypatch):
    from smcdiff import load_model
    from smcdiff.options import RunOptions
    from smcdiff.proposals import Twisted
    from smcdiff.restore import _fit_memory

    probes = []
    probe = memory.activation_bytes_per_row
    monkeypatch.setattr(memory, "activation_bytes_per_row", lambda *a, **k: probes.append(1) or probe(*a, **k))
    _fit_memory(load_model("digits"), torch.zeros(2, 1, 4, 4), 64, Twisted(), RunOptions(populations=1))
    assert len(probes) == 1


def test_format_bytes():
    assert format_bytes(37.5 * GiB) == "37.5 GiB"
    assert format_bytes(512 * 2**20) == "512 MiB"
    assert format_bytes(3 * 1024) == "3.0 KiB"
    assert format_bytes(10) == "10 B"
    assert math.isclose(float(format_bytes(1.25 * GiB).split()[0]), 1.2, abs_tol=0.06)


def test_the_shipped_digits_model_fits_easily_at_the_default_settings():
    from smcdiff import load_model

    score = load_model("digits")
    per = estimate_bytes_per_particle(score, tuple(score.event_shape), torch.float32, "cpu")
    state = state_bytes_per_particle(tuple(score.event_shape), torch.float32)
    assert state < per < 1 * 2**20  # activations are measured (more than the state) and small for 8x8 digits
    assert per < estimate_bytes_per_particle(score, tuple(score.event_shape), torch.float32, "cpu", backward=True)
