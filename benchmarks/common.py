"""Shared helpers of the benchmark scripts: timing, the digits UNet score, peak memory in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeats: int = 3) -> float:
    """Best-of-``repeats`` wall-clock seconds of ``fn()`` (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def digits_score():
    """The shipped digits model as a score (a DiffusersScore)."""
    from smcdiff.adapters import DiffusersScore
    from smcdiff.models import DEFAULT_MODEL_PATH

    return DiffusersScore.from_pretrained(str(DEFAULT_MODEL_PATH))


def peak_rss_mb(code: str) -> float:
    """Peak resident memory (MB) of a fresh Python process running ``code`` (ru_maxrss of the child)."""
    probe = code + "\nimport resource, json; print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} thread(s)"
