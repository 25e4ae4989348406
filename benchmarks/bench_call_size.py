"""Time per row and memory against the rows of one score call, on the CPU: the evidence for
``smcdiff.memory.CPU_CALL_BYTES`` and ``BACKWARD_PEAK_FACTOR``.

For each shipped model (``--models``), each pass (``forward``: no gradient, as the bootstrap and MCGdiff-style
proposals call the score; ``backward``: forward and backward, as the twisted proposal does) and each row count
(``--rows``), a fresh process calls the score on that many rows ``--repeats`` times after one warm-up call and
reports the best seconds per row (``--clock cpu``: the process's CPU time, for one thread on a CPU other jobs
share), its peak resident memory, and the bytes per row the planner counts (``smcdiff.memory``). The last
columns: the rows ``cpu_call_rows`` sends per call, and the peak memory per row between the two largest row
counts against the probe's activations (the backward factor).

Example::

    python benchmarks/bench_call_size.py --models digits mnist --rows 128 512 2048 8192 --clock cpu
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def point(model: str, rows: int, backward: bool, repeats: int, clock: str) -> dict:
    """One measurement, in this process (run it in a fresh one for its peak memory)."""
    from smcdiff import load_model
    from smcdiff.memory import activation_bytes_per_row, cpu_call_rows

    torch.set_num_threads(1)
    score = load_model(model)
    event = tuple(score.event_shape)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, *event, generator=g)
    t = torch.full((rows,), 0.5 * float(score.sde.T))
    tick = time.process_time if clock == "cpu" else time.perf_counter

    def call() -> None:
        if backward:
            xr = x.clone().requires_grad_(True)
            score(xr, t).sum().backward()
        else:
            with torch.no_grad():
                score(x, t)

    call()
    best = float("inf")
    for _ in range(repeats):
        t0 = tick()
        call()
        best = min(best, tick() - t0)
    return {
        "model": model, "pass": "backward" if backward else "forward", "rows": rows, "s_per_row": best / rows,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "probe_mib_per_row": activation_bytes_per_row(score, event, torch.float32, "cpu", backward=backward) / 2**20,
        "cpu_call_rows": cpu_call_rows(score, event, torch.float32, "cpu", backward=backward),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["digits", "mnist"])
    p.add_argument("--passes", nargs="+", choices=("forward", "backward"), default=["forward", "backward"])
    p.add_argument("--rows", nargs="+", type=int, default=[128, 512, 2048, 8192])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    p.add_argument("--point", nargs=3, metavar=("MODEL", "ROWS", "PASS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.point:
        model, rows, which = args.point
        print(json.dumps(point(model, int(rows), which == "backward", args.repeats, args.clock)))
        return
    print("| model | pass | " + " | ".join(f"{r} rows: ms / row (peak MiB)" for r in args.rows)
          + " | rows per CPU call | peak / probe per row |")
    print("|---" * (len(args.rows) + 4) + "|")
    for model in args.models:
        for which in args.passes:
            got = []
            for rows in args.rows:
                out = subprocess.run([sys.executable, __file__, "--point", model, str(rows), which,
                                      "--repeats", str(args.repeats), "--clock", args.clock],
                                     capture_output=True, text=True, check=True)
                got.append(json.loads(out.stdout.strip().splitlines()[-1]))
            a, b = got[-2], got[-1]
            factor = (b["peak_mib"] - a["peak_mib"]) / (b["rows"] - a["rows"]) / b["probe_mib_per_row"]
            cells = " | ".join(f"{r['s_per_row'] * 1e3:.2f} ({r['peak_mib']:,.0f})" for r in got)
            print(f"| {model} | {which} | {cells} | {got[0]['cpu_call_rows']} | {factor:.2f} |", flush=True)


if __name__ == "__main__":
    main()
