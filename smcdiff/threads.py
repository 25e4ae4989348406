"""CPU threads for sampling: the rule the command line and the Python API share.

Sampling is many small network calls; torch's thread pool on a machine shared with other work can make
it several times slower than one thread (BENCHMARKS.md, "Speed"). :func:`default_threads` is the
count both use unless told otherwise, and :func:`torch_threads` applies a count for the length of a call
and restores the caller's afterwards.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

__all__ = ["default_threads", "torch_threads", "check_threads"]


def default_threads(cpus: int | None = None) -> int:
    """The thread count used when none is given.

    ``OMP_NUM_THREADS`` (or ``TORCH_NUM_THREADS``), when set, wins: torch's current count. Otherwise
    1 on machines with at most 2 CPUs, else torch's default (one per physical core) capped at ``cpus``,
    the CPUs this process may use.
    """
    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("TORCH_NUM_THREADS"):
        return torch.get_num_threads()
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cpus <= 2:
        return 1
    return max(1, min(torch.get_num_threads(), cpus))


def check_threads(threads: object) -> None:
    """A ``ValueError`` unless ``threads`` is None, ``"torch"`` or a positive int."""
    if threads is None or threads == "torch":
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, None (the library's rule) or 'torch' (leave torch's setting), got {threads!r}")


@contextlib.contextmanager
def torch_threads(threads: int | str | None) -> Iterator[int]:
    """Run the body with ``threads`` CPU threads (None: :func:`default_threads`; ``"torch"``: leave torch's
    setting), then restore the previous count. Yields the count in force."""
    check_threads(threads)
    before = torch.get_num_threads()
    n = before if threads == "torch" else (default_threads() if threads is None else threads)
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
