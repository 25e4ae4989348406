"""Multiscale vs uniform diffusion at CPU scale: Tables 1-2 of "Non-Uniform Diffusion Models" (§4.1).

Both models come from :func:`smcdiff.msdiff.multiscale.matched_configs`: one UNet2DModel family,
per-scale widths chosen so that the multiscale total parameter count matches the uniform model's.

Speed. Seconds per sample of Euler-Maruyama sampling with the same total step count (256 by
default; the multiscale sampler splits them between its n + 1 time ranges and evaluates only the
current scale's network, on the moving coefficients). Speed does not depend on the weights, so the
networks are untrained instances of the matched architectures (at 8x8 these are exactly the trained
digits architectures). Each configuration is timed ``--repeats`` times, alternating the two models,
and the fastest run is kept (robust to other jobs on the machine). Wall-clock seconds are the
figures; the process CPU seconds of the same runs (``time.process_time``, with one thread what the
run would take on an idle core) are recorded beside them as a check on a loaded machine. Target:
>= 4.4x wall-clock at 32x32 with 3 Haar levels (the paper's figure at 128x128).

Quality. Fréchet distance (:func:`smcdiff.metrics.digit_fid`, features of the shipped digit
classifier) between ``--num-samples`` samples of each trained model and the 297 held-out digits,
for models trained by ``examples/train_multiscale.py`` with the same training-time budget. The
distance between training and held-out images of the same count is printed as the floor that
finite samples allow; the distance to the 1,500 training digits is printed as a second reference.
Samples are clipped to [-1, 1] for both models. Target: multiscale <= uniform (mean over seeds).

Parameters. The multiscale total must be within 10% of the uniform model's (``params_ratio``).

Examples::

    python benchmarks/bench_multiscale.py --threads 1                       # speed and quality
    python benchmarks/bench_multiscale.py --threads 1 --skip-quality        # speed only
    python benchmarks/bench_multiscale.py --threads 1 --skip-speed --models smcdiff/assets/multiscale
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from smcdiff.msdiff.multiscale import MultiscaleModel, UniformModel, load_multiscale, matched_configs
from smcdiff.persistence import read_config

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ((8, 2), (16, 2), (16, 3), (32, 3))
TARGET_SPEEDUP = 4.4  # at 32x32 with 3 Haar levels (the paper's figure at 128x128)
TARGET_PARAMS = 0.10  # |multiscale / uniform - 1|


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=256, help="total Euler-Maruyama steps per sample")
    p.add_argument("--batch", type=int, default=16, help="samples per timed sampler call")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--sizes", default=",".join(f"{s}:{n}" for s, n in SETTINGS), help="size:levels pairs")
    p.add_argument("--models", type=Path, default=ROOT / "runs" / "multiscale_digits" / "models")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--sample-batch", type=int, default=500)
    p.add_argument("--seeds", type=int, default=2, help="independent sample sets per model")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    return p.parse_args(argv)


def _timed_sample(model, batch: int, steps: int, seed: int) -> tuple[float, float]:
    """(wall-clock, process CPU) seconds of one sampler call."""
    gen = torch.Generator().manual_seed(seed)
    start, start_cpu = time.perf_counter(), time.process_time()
    model.sample(batch, steps=steps, generator=gen)
    return time.perf_counter() - start, time.process_time() - start_cpu


def speed(size: int, levels: int, steps: int, batch: int, repeats: int) -> dict:
    """Best-of-``repeats`` seconds per sample of both models at one size (untrained, matched architectures)."""
    uniform_cfg, multiscale_cfg = matched_configs(size, levels)
    gen = torch.Generator().manual_seed(0)
    uniform = UniformModel(uniform_cfg, generator=gen).eval()
    multiscale = MultiscaleModel(multiscale_cfg, generator=gen).eval()
    for model in (uniform, multiscale):  # warm-up: every network once
        _timed_sample(model, batch, levels + 1, 0)
    best = {"uniform": float("inf"), "multiscale": float("inf")}
    best_cpu = dict(best)
    for r in range(repeats):
        for name, model in (("uniform", uniform), ("multiscale", multiscale)):
            wall, cpu = _timed_sample(model, batch, steps, r)
            best[name], best_cpu[name] = min(best[name], wall), min(best_cpu[name], cpu)
    return dict(
        size=size,
        levels=levels,
        steps=steps,
        batch=batch,
        params_uniform=uniform.num_parameters,
        params_multiscale=multiscale.num_parameters,
        params_per_scale=multiscale.scale_parameters(),
        params_ratio=multiscale.num_parameters / uniform.num_parameters,
        widths=[u.base for u in multiscale_cfg.unets],
        uniform_width=uniform_cfg.unet.base,
        sec_per_sample_uniform=best["uniform"] / batch,
        sec_per_sample_multiscale=best["multiscale"] / batch,
        speedup=best["uniform"] / best["multiscale"],
        cpu_sec_per_sample_uniform=best_cpu["uniform"] / batch,
        cpu_sec_per_sample_multiscale=best_cpu["multiscale"] / batch,
        speedup_cpu=best_cpu["uniform"] / best_cpu["multiscale"],
    )


@torch.no_grad()
def draw(model, n: int, steps: int, batch: int, seed: int) -> tuple[torch.Tensor, float]:
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    out = [model.sample(min(batch, n - k), steps=steps, generator=gen) for k in range(0, n, batch)]
    return torch.cat(out).clamp(-1.0, 1.0), time.perf_counter() - start


def quality(models_dir: Path, n: int, steps: int, batch: int, seeds: int) -> dict:
    """Fréchet distances of both trained models to the held-out digits."""
    from smcdiff.data import load_digits_images
    from smcdiff.metrics import digit_fid

    test = load_digits_images("test")
    train = load_digits_images("train")
    result = dict(num_samples=n, steps=steps, floor_train_vs_test=digit_fid(train[:n], test))
    for name in ("uniform", "multiscale"):
        model = load_multiscale(models_dir / name)
        meta = read_config(models_dir / name).metadata
        fids, fids_train, seconds = [], [], 0.0
        for seed in range(seeds):
            samples, sec = draw(model, n, steps, batch, seed)
            fids.append(digit_fid(samples, test))
            fids_train.append(digit_fid(samples, train))
            seconds += sec
        result[name] = dict(
            fid=fids,
            fid_mean=sum(fids) / len(fids),
            fid_train=fids_train,
            fid_train_mean=sum(fids_train) / len(fids_train),
            params=model.num_parameters,
            train_steps=meta.get("steps"),
            train_seconds=meta.get("train_seconds"),
            weighting=meta.get("weighting"),
            sec_per_sample=seconds / (seeds * n),
        )
    result["target_met"] = result["multiscale"]["fid_mean"] <= result["uniform"]["fid_mean"]
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    results: dict = {"threads": args.threads}
    if not args.skip_speed:
        rows = []
        print("| size | Haar levels | params uniform | params multiscale (per scale) | ratio | s/sample uniform | s/sample multiscale | speed-up | speed-up (CPU s) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for pair in args.sizes.split(","):
            size, levels = (int(v) for v in pair.split(":"))
            r = speed(size, levels, args.steps, args.batch, args.repeats)
            rows.append(r)
            print(
                f"| {size}x{size} | {levels} | {r['params_uniform']:,} | {r['params_multiscale']:,} "
                f"({', '.join(f'{p:,}' for p in r['params_per_scale'])}) | {r['params_ratio']:.3f} | {r['sec_per_sample_uniform']:.4f} | "
                f"{r['sec_per_sample_multiscale']:.4f} | {r['speedup']:.2f}x | {r['speedup_cpu']:.2f}x |",
                flush=True,
            )
        results["speed"] = rows
        results["params_target_met"] = all(abs(r["params_ratio"] - 1) <= TARGET_PARAMS for r in rows)
        print(f"parameter counts within {TARGET_PARAMS:.0%}: {'met' if results['params_target_met'] else 'MISSED'}")
        main_rows = [r for r in rows if (r["size"], r["levels"]) == (32, 3)]
        if main_rows:
            results["speed_target_met"] = main_rows[0]["speedup"] >= TARGET_SPEEDUP
            print(f"speed-up at 32x32, 3 levels: {main_rows[0]['speedup']:.2f}x (target >= {TARGET_SPEEDUP}x: "
                  f"{'met' if results['speed_target_met'] else 'MISSED'})")
    if not args.skip_quality:
        q = quality(args.models, args.num_samples, args.steps, args.sample_batch, args.seeds)
        results["quality"] = q
        print(f"\nFréchet distance to held-out digits, {q['num_samples']} samples, {q['steps']} steps "
              f"(floor train vs test: {q['floor_train_vs_test']:.3f})")
        print("| model | params | training steps | training CPU s | FD (per seed) | FD mean | FD to train | s/sample |")
        print("|---|---|---|---|---|---|---|---|")
        for name in ("uniform", "multiscale"):
            m = q[name]
            print(
                f"| {name} | {m['params']:,} | {m['train_steps']} | {m['train_seconds']} | "
                f"{', '.join(f'{v:.3f}' for v in m['fid'])} | {m['fid_mean']:.3f} | {m['fid_train_mean']:.3f} | {m['sec_per_sample']:.4f} |"
            )
        print(f"target multiscale <= uniform: {'met' if q['target_met'] else 'MISSED'}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
