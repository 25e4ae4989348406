"""The cost of SMC at the sizes users bring: seconds per particle-step and peak memory against M.

Models (``--models``): ``mnist`` (the shipped 28x28 model, or its architecture with random weights when the
weights are absent), and random-weight ``UNet2DModel``s with the published configurations of DDPM CIFAR-10
(32x32x3, ``google/ddpm-cifar10-32``: widths 128-256-256-256, two ResNet layers per block, attention at 16x16;
35.7 M parameters) and DDPM CelebA-HQ (256x256x3, ``google/ddpm-celebahq-256``: widths 128-128-256-256-512-512,
attention at 16x16; 113.7 M parameters). Timing does not depend on the weights.

Methods, each on the inpainting of a hidden centred box of half the side (noiseless):

- ``plain``: unconditional ancestral sampling (``smcdiff.sample``) of M images: the cost floor;
- ``bootstrap``, ``mcgdiff``: SMC with M particles (one network evaluation per particle-step);
- ``twisted``: one evaluation and one backward pass per particle-step; with ``--chunk-size`` too.

Each point runs in a fresh process (peak memory: ``ru_maxrss`` on CPU, ``torch.cuda.max_memory_allocated`` on
CUDA), times ``--steps`` steps after one warm-up step, and reports seconds per particle-step (with
``--repeats R``: the lower median of R measurements, the methods alternating; ``--clock cpu``: the process's CPU
time instead of wall clock, for single-threaded runs on a CPU that other jobs share); the ratio of each SMC method to
``plain`` at the same M (equal network evaluations) is printed as a table.

Examples::

    OMP_NUM_THREADS=1 python benchmarks/bench_scale.py --models mnist cifar10 --particles 1 4 16 --steps 3
    python benchmarks/bench_scale.py --models celebahq --particles 1 2 4 --steps 2 --chunk-size 1 --device cuda
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

CONFIGS = {
    "cifar10": dict(
        sample_size=32, in_channels=3, out_channels=3, layers_per_block=2, block_out_channels=(128, 256, 256, 256),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    ),
    "celebahq": dict(
        sample_size=256, in_channels=3, out_channels=3, layers_per_block=2,
        block_out_channels=(128, 128, 256, 256, 512, 512),
        down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    ),
}


def build_model(name: str, device: str):
    """The score module of ``name`` on ``device`` (random weights, seeded, except the shipped MNIST model)."""
    from diffusers import DDPMScheduler, UNet2DModel

    from smcdiff.adapters import DiffusersScore

    if name == "mnist":
        from smcdiff.models import SHIPPED_MODELS

        folder = SHIPPED_MODELS.get("mnist")
        if folder is not None and (Path(str(folder)) / "unet" / "config.json").is_file():
            from smcdiff import load_model

            return load_model("mnist", device=device)
        from train_mnist import UNET_CONFIG

        config = UNET_CONFIG
    else:
        config = CONFIGS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DModel(**config)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")
    return DiffusersScore(unet, scheduler).to(device)


def measure(name: str, method: str, m: int, steps: int, chunk: int | None, noise: float, device: str) -> dict:
    """One point, in this process: seconds per particle-step over ``steps`` steps after a warm-up, peak memory."""
    from smcdiff import RunOptions, sample, smc_sample
    from smcdiff.operators import Mask

    torch.set_grad_enabled(False)
    model = build_model(name, device)
    c, h, w = model.event_shape
    mask = torch.ones(1, c, h, w, dtype=torch.bool, device=device)
    mask[..., h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = False
    y = torch.zeros(1, c, h, w, device=device)
    grid = model.time_grid(250)[: steps + 2]  # the first steps + 1 steps of a 250-step grid (from T)
    g = torch.Generator(device=device).manual_seed(0)

    def run(n_steps: int):
        sub = grid[: n_steps + 1]
        if method == "plain":
            return sample(model, model.sde, (m, c, h, w), grid=sub, kernel="ancestral", generator=g, chunk_size=chunk, device=device)
        return smc_sample(model, model.sde, y, Mask(mask[0]), noise_std=noise, particles=m, grid=sub, proposal=method,
                          kernel="ancestral", generator=g, options=RunOptions(chunk_size=chunk, threads="torch"))

    run(1)  # warm-up (allocator, kernels)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0, c0 = time.perf_counter(), time.process_time()
    run(steps)
    cpu = time.process_time() - c0
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = time.perf_counter() - t0
    return dict(model=name, method=method, particles=m, chunk_size=chunk, noise=noise, steps=steps,
                seconds_per_particle_step=seconds / (steps * m), cpu_seconds_per_particle_step=cpu / (steps * m),
                peak_mb=peak, device=device,
                parameters=sum(p.numel() for p in model.parameters()))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["mnist", "cifar10", "celebahq"], choices=["mnist", *CONFIGS])
    p.add_argument("--methods", nargs="+", default=["plain", "bootstrap", "mcgdiff", "twisted"])
    p.add_argument("--particles", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--steps", type=int, default=3, help="timed steps per point (after one warm-up step)")
    p.add_argument("--chunk-size", type=int, default=None, help="also run twisted with this chunk size")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: this process's CPU time, for single-threaded runs on a busy CPU machine")
    p.add_argument("--repeats", type=int, default=1,
                   help="measure each point this many times, the methods alternating, and report the lower median")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=Path("results/scale.jsonl"))
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:  # one point in this process
        print(json.dumps(measure(**json.loads(args.worker))))
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models:
        for m in args.particles:
            points = [(method, None, 0.0) for method in args.methods]
            if "twisted" in args.methods and args.chunk_size is not None:
                points.append(("twisted", args.chunk_size, 0.0))
            times: dict[int, list[dict]] = {i: [] for i in range(len(points))}
            for _ in range(args.repeats):  # alternate the methods, so that a slow spell hits all of them
                for i, (method, chunk, noise) in enumerate(points):
                    spec = dict(name=name, method=method, m=m, steps=args.steps, chunk=chunk, noise=noise, device=args.device)
                    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                                          capture_output=True, text=True, cwd=ROOT)
                    if proc.returncode != 0:
                        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
                        times[i].append(dict(model=name, method=method, particles=m, chunk_size=chunk, error=last, device=args.device))
                    else:
                        times[i].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            for i in range(len(points)):
                ok = [r for r in times[i] if "error" not in r]
                if not ok:
                    row = times[i][-1]
                else:
                    key = "cpu_seconds_per_particle_step" if args.clock == "cpu" else "seconds_per_particle_step"
                    seconds = sorted(r[key] for r in ok)
                    row = dict(ok[0], seconds_per_particle_step=seconds[(len(seconds) - 1) // 2], clock=args.clock, repeats=len(ok),
                               peak_mb=max(r["peak_mb"] for r in ok))
                rows.append(row)
                print(json.dumps(row), flush=True)
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    print("\n| model | M | method | s / particle-step | / plain | peak MB |\n|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['particles']} | {r['method']} | failed: {r['error'][:60]} | | |")
            continue
        plain = next((q for q in rows if q["model"] == r["model"] and q["particles"] == r["particles"]
                      and q["method"] == "plain" and "error" not in q), None)
        ratio = f"{r['seconds_per_particle_step'] / plain['seconds_per_particle_step']:.2f}" if plain else "–"
        method = r["method"] + ("" if r.get("chunk_size") is None else f" (chunk {r['chunk_size']})")
        print(f"| {r['model']} | {r['particles']} | {method} | {r['seconds_per_particle_step']:.4f} | {ratio} | {r['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
