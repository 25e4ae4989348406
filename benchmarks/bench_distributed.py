"""Sharded SMC over local processes (gloo): wall time and bytes exchanged per step vs the world size W.

    python benchmarks/bench_distributed.py [--worlds 1 2 4] [--steps 30] [--repeats 2]

Two workloads at a fixed total M per row, both resampling at every step (``ess_threshold=1``, the most
communication a run can need):

* ``digits``: the shipped digits UNet, inpainting B = 4 held-out digits (random 4x4 square hidden),
  M = 128 particles per digit, bootstrap proposal: compute-bound;
* ``gaussian``: exact score of a d = 16 Gaussian, B = 16 rows, M = 4096, mcgdiff proposal with a noisy
  mask: cheap elementwise work per particle and 64 times the weights of ``digits``, so communication
  weighs more.

Each W runs in W fresh processes (:func:`smcdiff.distributed.run_local`, the same gloo collectives as
under torchrun), one thread each. Reported per step (medians over ``--repeats`` runs, wall time of the
slowest rank): seconds, with the speed-up over W = 1; CPU seconds of the busiest rank (the work that
W divides, whatever else the machine runs); log-weight bytes each rank received, measured and by the model
8 B M (W - 1) / W (an all-gather of B x M float64); particle rows moved between ranks and their bytes
(x and the per-particle ``pred`` tensors of the proposal, summed over ranks), against the bound
B M (W - 1) / W rows; and the time of the step's collectives alone (timed separately with the same
sizes: two flag all-reduces, the log-weight all-gather and an all-to-all of the measured moved bytes).

The model of a step: t(W) = t_score(B M / W) + t_comm(W), t_comm = 4 alpha + 8 B M (W - 1) / W / beta
+ moved bytes / beta, with alpha the latency of one collective and beta the bandwidth; the moved rows
are at most B M (W - 1) / W and, with systematic resampling of balanced weights, a small fraction of it
(a rank's slots mostly descend from its own particles; a particle needed several times by one rank
travels once).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from smcdiff.distributed import run_local

WORKLOADS = {
    "digits": dict(b=4, m=128),
    "gaussian": dict(b=16, m=4096, d=16),
}


def _problem(name: str, steps: int):
    """(score, sde, y, observation, kwargs) of a workload, identical in every process."""
    from smcdiff import VP, GaussianScore
    from smcdiff.data import load_digits_images
    from smcdiff.masks import random_square_masks

    w = WORKLOADS[name]
    if name == "digits":
        from smcdiff.models import load_model

        score = load_model("digits")
        images = load_digits_images("test")[: w["b"]]
        masks = random_square_masks(w["b"], 8, 8, 0.25, generator=torch.Generator().manual_seed(0))
        return score, score.sde, images, masks, dict(grid=score.time_grid(steps), proposal="bootstrap")
    d = w["d"]
    g = torch.Generator().manual_seed(0)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    score = GaussianScore(torch.zeros(d, dtype=torch.float64), a @ a.T / d + 0.3 * torch.eye(d, dtype=torch.float64), VP())
    y = torch.randn(w["b"], d, generator=g, dtype=torch.float64)
    mask = torch.arange(d) % 2 == 0
    return score, score.sde, y, mask, dict(steps=steps, proposal="mcgdiff", noise_std=0.1)



def _comm_time(pop, b: int, m: int, moved_bytes: float, repeats: int = 30) -> float:
    """Seconds of one step's collectives with these sizes (flags, log-weight all-gather, all-to-all of
    ``moved_bytes``, this rank's, spread evenly over the pairs of ranks)."""
    import torch.distributed as dist

    w = pop.world_size
    log_g = torch.zeros(b, m // w, dtype=torch.float64)
    total = torch.tensor([moved_bytes], dtype=torch.float64)
    dist.all_reduce(total)
    chunk = int(total.item() / max(1, w * (w - 1)))
    split = [0 if r == pop.rank else chunk for r in range(w)]
    send = torch.zeros(sum(split), dtype=torch.uint8)
    recv = torch.zeros(sum(split), dtype=torch.uint8)
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(repeats):
        pop._all_gather(log_g, dim=1)
        if chunk:
            pop._check()
            dist.all_to_all_single(recv, send, split, split)
    dist.barrier()
    return (time.perf_counter() - t0) / repeats


def _worker(name: str, steps: int, repeats: int) -> dict:
    import torch.distributed as dist

    from smcdiff import RunOptions, smc_sample
    from smcdiff.distributed import ShardedPlacement

    torch.set_num_threads(1)
    score, sde, y, obs, kw = _problem(name, steps)
    m = WORKLOADS[name]["m"]
    times, cpu, traffic = [], [], []
    for r in range(repeats + 1):  # the first run warms up
        pop = ShardedPlacement()
        dist.barrier()
        t0, c0 = time.perf_counter(), time.process_time()
        smc_sample(
            score, sde, y, obs, particles=m, generator=torch.Generator().manual_seed(r),
            options=RunOptions(ess_threshold=1.0, placement=pop), **kw,
        )
        if r:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            traffic.append(pop.traffic)
    t = traffic[-1]
    row_bytes = t.moved / t.rows if t.rows else 0
    per_step = dict(
        seconds=statistics.median(times) / steps,
        cpu=statistics.median(cpu) / steps,
        weights=statistics.median(x.weights for x in traffic) / steps,
        moved=statistics.median(x.moved for x in traffic) / steps,
        rows=statistics.median(x.rows for x in traffic) / steps,
        control=statistics.median(x.control for x in traffic) / steps,
        row_bytes=row_bytes,
    )
    per_step["comm"] = _comm_time(pop, y.shape[0], m, per_step["moved"])
    return per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"gloo on 127.0.0.1, {cpus} CPU(s) (load average {load:.1f} at the start), 1 thread per process, {args.steps} "
          f"steps, resampling at every step, medians of {args.repeats} runs; bytes and rows per step\n")
    head = (f"{'workload':<9} {'W':>2} {'M/W':>5} {'s/step':>8} {'speed-up':>8} {'CPU s/rank':>10} {'log-w B/rank':>12} "
            f"{'model':>9} {'rows moved':>10} {'bound':>6} {'particle B':>10} {'B/row':>6} {'comm s/step':>11}")
    print(head)
    for name in args.workloads:
        b, m = WORKLOADS[name]["b"], WORKLOADS[name]["m"]
        base = None
        for w in args.worlds:
            ranks = run_local(_worker, w, name, args.steps, args.repeats, timeout_s=1200.0)
            sec = max(r["seconds"] for r in ranks)
            base = sec if base is None else base
            weights = statistics.mean(r["weights"] for r in ranks)
            rows = sum(r["rows"] for r in ranks)
            particles = sum(r["moved"] for r in ranks)
            comm = max(r["comm"] for r in ranks)
            model = 8 * b * m * (w - 1) / w
            bound = b * m * (w - 1) // w
            row_bytes = max(r["row_bytes"] for r in ranks)
            cpu = max(r["cpu"] for r in ranks)
            print(f"{name:<9} {w:>2} {m // w:>5} {sec:>8.4f} {base / sec:>8.2f} {cpu:>10.4f} {weights:>12,.0f} {model:>9,.0f} "
                  f"{rows:>10.1f} {bound:>6} {particles:>10,.0f} {row_bytes:>6.0f} {comm:>11.5f}")


if __name__ == "__main__":
    main()
