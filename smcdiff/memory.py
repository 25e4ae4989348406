r"""How many particles fit: the memory a run's particles and score calls need, against what is free.

A run holds the state of all n = B · M particles at once (the particles, the reverse kernel's mean and
variance, the score, the proposal noise, ...: :data:`STATE_COPIES` copies of the event tensor each) and
sends them through the score network in chunks of ``chunk_size`` rows, whose activations are alive
only during a call (all of them until the backward pass when the proposal differentiates through the
network, like the twisted one). So

    n * state + chunk * activations <= fraction * available

decides the chunk size (:func:`plan_chunk_size`); when even ``n * state`` does not fit, no chunking
helps and the run is refused at once (:class:`InsufficientMemoryError`) instead of failing in the
allocator after minutes of sampling.

The activations per row are measured, not guessed: :func:`estimate_bytes_per_particle` runs the score
on a tiny batch with forward hooks on every submodule and adds up the bytes of their outputs (an
upper bound of what one forward pass keeps alive; a backward pass needs :data:`BACKWARD_PEAK_FACTOR`
times that at its peak).

On the CPU bigger calls are not faster: past about a GiB of activations per call the time per row
rises (the working set leaves the caches), so :func:`cpu_call_rows` caps the rows per call there at
:data:`CPU_CALL_BYTES` of activations, which also keeps several runs on one machine from each planning
for most of its memory.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

__all__ = [
    "BACKWARD_PEAK_FACTOR",
    "CPU_CALL_BYTES",
    "InsufficientMemoryError",
    "STATE_COPIES",
    "available_bytes",
    "cpu_call_rows",
    "estimate_bytes_per_particle",
    "format_bytes",
    "plan_chunk_size",
    "planned_row_bytes",
    "state_bytes_per_particle",
]

STATE_COPIES = 8
"""Copies of the event tensor a run keeps per particle: particles, kernel mean, kernel variance, score,
noise, the moved particles, resampling's reordered copies and room for a proposal's own terms."""
BACKWARD_COPIES = 4
"""Extra copies per particle when the proposal differentiates through the network (x with its gradient,
the twisted mean and its gradient)."""
BACKWARD_PEAK_FACTOR = 1.5
"""Peak memory of a forward and backward pass per row over the probe's sum of forward outputs: the
gradients of the largest activations are alive next to them. Measured as peak resident memory per
extra row (``benchmarks/bench_call_size.py``): 0.96x on the digits UNet, 1.27x on the MNIST one; the
plan counts 1.5x."""
CPU_CALL_BYTES = 2**30
"""On the CPU, the most activation bytes (as the plan counts them) sent through the score in one call.
Time per row on the shipped UNets, one thread (``benchmarks/bench_call_size.py``): flat up to about
this size, then rising (digits, forward and backward: 1.30 ms per row at 1,024 rows, 2.13 ms at 8,192;
MNIST: 7.3 to 7.7 ms at 64 to 256 rows, 9.6 ms at 1,024)."""
_PER_PARTICLE_SCALARS = 64
"""Bytes of per-particle scalars: float64 log-weights and potentials, ancestors, lineage bookkeeping."""
_PROBE_ROWS = 2


class InsufficientMemoryError(ValueError):
    """The particles of a run cannot fit in the memory available, whatever the chunk size."""


def format_bytes(n: float) -> str:
    """``'37.5 GiB'``, ``'512 MiB'``, ``'3.0 KiB'``."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{int(n)} B"


# ---- what is free ----
def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 writes "max" for no limit


def _cgroup_room() -> int | None:
    """Bytes this process's cgroup may still allocate (limit - usage), or None without a limit."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),  # v1
    ):
        limit = _read_int(limit_file)
        if limit is not None and limit < 2**60:  # v1 reports "no limit" as a huge number
            usage = _read_int(usage_file) or 0
            return max(0, limit - usage)
    return None


def _host_available() -> int:
    """MemAvailable of /proc/meminfo (free memory plus what the kernel can reclaim), else free pages."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def available_bytes(device: torch.device | str) -> int:
    """Bytes a run on ``device`` can still allocate.

    CUDA: free device memory (``torch.cuda.mem_get_info``) plus what torch's caching allocator holds
    unused. Otherwise (CPU, and devices sharing host memory): MemAvailable of ``/proc/meminfo`` (free
    pages where it is missing), or the room left under the cgroup's memory limit when that is lower.
    """
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        free, _ = torch.cuda.mem_get_info(index)
        cached = torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
        return int(free + max(0, cached))
    host = _host_available()
    room = _cgroup_room()
    return host if room is None else min(host, room)


# ---- what a particle needs ----
def state_bytes_per_particle(event_shape: tuple[int, ...], dtype: torch.dtype, *, backward: bool = False) -> int:
    """Bytes one particle's state takes for the whole run: :data:`STATE_COPIES` copies of its event
    tensor (plus :data:`BACKWARD_COPIES` when differentiating through the network) and its scalars."""
    event = math.prod(event_shape) * torch.empty((), dtype=dtype).element_size()
    return event * (STATE_COPIES + (BACKWARD_COPIES if backward else 0)) + _PER_PARTICLE_SCALARS


def _tensors(value) -> list[Tensor]:
    """The tensors in a module's output (a tensor, tuples, lists, dicts, diffusers' output classes)."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def _probe_time(score: Callable, rows: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Forward times in the middle of the score's SDE (``score.sde.T``; 1 without one)."""
    sde = getattr(score, "sde", None)
    top = float(getattr(sde, "T", 1.0))
    return torch.full((rows,), 0.5 * top, dtype=dtype, device=device)


def activation_bytes_per_row(
    score: Callable, event_shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str, *, backward: bool = False
) -> int:
    """Bytes of the outputs of all submodules of ``score`` per input row, measured on a tiny batch.

    The sum over submodules is what one forward pass keeps alive when it is differentiated (every
    output is saved for the backward pass) and an upper bound of a plain forward pass's peak. Outputs
    sharing storage (views, in-place activations) count once. 0 for a score that is not an
    ``nn.Module`` (its memory cannot be seen; only the particle state is counted).
    """
    if not isinstance(score, torch.nn.Module):
        return 0
    device = torch.device(device)
    storages: dict[int, int] = {}
    alive: list[Tensor] = []  # held until the end, so that no address is reused by a later output

    def hook(module, inputs, output) -> None:
        for t in _tensors(output):
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = max(storages.get(storage.data_ptr(), 0), storage.nbytes())
            alive.append(t)

    handles = [m.register_forward_hook(hook) for m in score.modules()]
    x = torch.randn(_PROBE_ROWS, *event_shape, dtype=dtype, device=device, generator=torch.Generator(device=device).manual_seed(0))
    t = _probe_time(score, _PROBE_ROWS, dtype, device)
    try:
        if backward:
            with torch.enable_grad():
                score(x.requires_grad_(True), t)
        else:
            with torch.no_grad():
                score(x, t)
    finally:
        for h in handles:
            h.remove()
        alive.clear()
    return math.ceil(sum(storages.values()) / _PROBE_ROWS)


def estimate_bytes_per_particle(
    score: Callable, event_shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str, *, backward: bool = False
) -> int:
    """Bytes one particle costs when all particles go through the score in one call: its state
    (:func:`state_bytes_per_particle`) plus its row of the network's activations
    (:func:`activation_bytes_per_row`, probed on a tiny batch; 0 for a plain callable).

    ``backward=True`` for proposals that differentiate through the network (the twisted proposal).
    """
    state = state_bytes_per_particle(tuple(event_shape), dtype, backward=backward)
    return state + planned_row_bytes(score, tuple(event_shape), dtype, device, backward)


def planned_row_bytes(score: Callable, event_shape: tuple[int, ...], dtype: torch.dtype, device, backward: bool) -> int:
    """The activation bytes per row the plan counts: the probe's (:func:`activation_bytes_per_row`), times
    :data:`BACKWARD_PEAK_FACTOR` with a backward pass. Measure it once and pass it as ``row_bytes`` to
    :func:`plan_chunk_size` and :func:`cpu_call_rows` to probe the network once."""
    row = activation_bytes_per_row(score, event_shape, dtype, device, backward=backward)
    return math.ceil(row * BACKWARD_PEAK_FACTOR) if backward else row


def cpu_call_rows(
    score: Callable, event_shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str, *,
    backward: bool = False, call_bytes: float | None = None, row_bytes: int | None = None,
) -> int | None:
    """On the CPU, the most rows per score call worth sending: ``call_bytes`` (None:
    :data:`CPU_CALL_BYTES`, read at call time) of activations as the plan counts them, at least 1. None off
    the CPU, where large calls keep paying, and for a score whose activations cannot be probed (not an
    ``nn.Module``). ``row_bytes``: :func:`planned_row_bytes`, when already measured."""
    if torch.device(device).type != "cpu":
        return None
    if call_bytes is None:
        call_bytes = CPU_CALL_BYTES
    if not call_bytes > 0:
        raise ValueError(f"call_bytes must be positive, got {call_bytes!r}")
    row = planned_row_bytes(score, tuple(event_shape), dtype, device, backward) if row_bytes is None else row_bytes
    return None if row == 0 else max(1, int(call_bytes // row))


# ---- the plan ----
def plan_chunk_size(
    score: Callable,
    event_shape: tuple[int, ...],
    n_particles: int,
    dtype: torch.dtype,
    device: torch.device | str,
    *,
    backward: bool = False,
    chunk_size: int | None = None,
    fraction: float = 0.5,
    batch: int = 1,
    row_bytes: int | None = None,
) -> int | None:
    """The rows per score call that let ``n_particles`` fit in ``fraction`` of the available memory.

    Parameters
    ----------
    score, event_shape, dtype, device : the score and the particles' event shape, dtype and device.
    n_particles : all particles of the run, B · M (· P populations): the rows the score sees per step.
    backward : the proposal differentiates through the network (twisted).
    chunk_size : the user's chunk size, if any; kept when it fits, else lowered to the largest that fits.
    fraction : the share of :func:`available_bytes` the run may take (the rest is headroom for torch,
        fragmentation and everything else on the machine). It is per process: runs started together
        each plan against the same free memory (on the CPU :func:`cpu_call_rows` keeps calls small).
    batch : B, the number of observations the particles are split over (only for the message).
    row_bytes : :func:`planned_row_bytes`, when already measured (else the score is probed here).

    Returns
    -------
    None when all particles go through the score in one call within the budget (and no
    ``chunk_size`` was given), else the chunk size to use (``chunk_size`` itself when it fits).

    Raises
    ------
    InsufficientMemoryError
        If the particle state of ``n_particles`` alone exceeds the budget, or leaves no room for a
        single row of activations: one line naming ``particles``, what they need and what is available.
    ValueError
        For a non-positive ``n_particles``, ``chunk_size`` or a ``fraction`` outside (0, 1].
    """
    if isinstance(n_particles, bool) or not isinstance(n_particles, int) or n_particles < 1:
        raise ValueError(f"n_particles must be a positive integer, got {n_particles!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    event_shape = tuple(event_shape)
    free = available_bytes(device)
    budget = fraction * free
    state = n_particles * state_bytes_per_particle(event_shape, dtype, backward=backward)

    def refuse(need: float, what: str) -> InsufficientMemoryError:
        per_image = n_particles // batch if batch > 1 and n_particles % batch == 0 else n_particles
        images = f" (x {batch} images)" if batch > 1 and per_image != n_particles else ""
        return InsufficientMemoryError(
            f"particles: {per_image} particles{' per image' if images else ''}{images} need about {format_bytes(need)} "
            f"{what}; about {format_bytes(budget)} are available ({fraction:.0%} of the {format_bytes(free)} free "
            f"on {torch.device(device).type}); use fewer particles"
        )

    if state > budget:
        raise refuse(state, "for the particle state alone")
    per_row = planned_row_bytes(score, event_shape, dtype, device, backward) if row_bytes is None else row_bytes
    if per_row == 0:
        return chunk_size
    largest = int((budget - state) // per_row)
    if largest < 1:
        raise refuse(state + per_row, "for the particle state and one row of the score network")
    if chunk_size is not None:
        return min(chunk_size, largest)
    return None if largest >= n_particles else largest
