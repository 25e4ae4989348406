"""Image restoration claims with paired statistics: SMC against DDRM and DPS at equal network evaluations per draw.

On ``--n`` held-out images of the shipped ``--model`` (digits 8x8 or MNIST 28x28), each task observes every image
and every row draws K reconstructions per image:

- tasks: ``box`` (a centred box of half the side hidden: 4x4 on the digits, 14x14 on MNIST), ``half`` (the bottom
  half hidden), ``sr4`` (4x block means), ``deblur`` (Gaussian blur, sigma 1 px); ``--noise`` sigma_y;
- SMC rows ``PROPOSAL:M[:STEPS[:one]]``: K independent runs of M particles per image (``restore(..., populations=K)``),
  one draw each, at STEPS (default ``--steps``) ancestral steps on the model's grid: M x steps network evaluations per
  draw; with ``:one``, K draws from one run of M particles (M x steps / K evaluations per draw);
- ``ddrm``: DDRM (Kawar et al. 2022, eta = 0.85, eta_b = 1) on smcdiff's SVD operators (``common.ddrm_sample``; deepinv's
  DDRM cannot be installed next to a CPU torch here), K independent runs, at ``--peer-steps`` steps per draw;
- ``dps``: DPS (Chung et al. 2023, zeta = 1, ``common.dps_sample``) with the residual y - A x0_hat, likewise;
- ``diffpir``: DiffPIR (Zhu et al. 2023, lambda = 7, zeta = 1, ``common.diffpir_sample``), likewise.

Per image: PSNR of the first draw against the truth, whether the classifier (the shipped one of the model) gives the
first draw the truth's label, and K draws for the Fréchet distance (shipped classifier's features; all draws of all
images against the truths, with a paired bootstrap over images, 200 replicates). Every row is compared with the base
row (``--base``, default the first peer) by the mean paired difference over images and its 95 % interval.
Also: diversity (mean per-pixel sd of the K draws), mean distinct final lineages (SMC), seconds.

A long row can run in pieces: ``--shard I/N --cache DIR`` samples the I-th of N slices of the images (its own
random stream) for every row and saves it; a last run with ``--shards N --cache DIR`` joins the N slices of each
row (seconds summed) and prints the table.

Example (BENCHMARKS.md, "MNIST: SMC against DDRM and DiffPIR (paired)")::

    OMP_NUM_THREADS=1 python benchmarks/bench_images.py --model mnist --task box --n 100 --draws 4 --steps 50 \\
        --rows bootstrap:4 ddrm --peer-steps 200
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from common import ddrm_sample, diffpir_sample, dps_sample, fd_bootstrap, paired_difference
from smcdiff import RunOptions, load_model, restore
from smcdiff.classifier import SHIPPED_CLASSIFIERS, load_digit_classifier
from smcdiff.data import load_digits_images, load_mnist_images
from smcdiff.masks import box_mask
from smcdiff.metrics import classifier_features, diversity, psnr
from smcdiff.operators import Blur, Downsample, Mask
from smcdiff.proposals import PROPOSALS


def task_operator(task: str, side: int):
    if task == "box":
        return Mask(box_mask(side, side, (side // 4, side // 4, side // 2, side // 2))[0])
    if task == "half":
        return Mask(box_mask(side, side, (0, side // 2, side, side - side // 2))[0])
    if task == "sr4":
        return Downsample(4)
    if task == "deblur":
        return Blur.gaussian(1.0)
    raise SystemExit(f"unknown task {task!r}")


PEER_NAMES = {"ddrm": "DDRM", "dps": "DPS", "diffpir": "DiffPIR"}


def parse_smc_row(spec: str, default_steps: int) -> tuple[str, int, int, bool]:
    """``PROPOSAL:M[:STEPS[:one]]`` -> (proposal, M, steps, one run?)."""
    parts = spec.split(":")
    if not 2 <= len(parts) <= 4 or parts[0] not in PROPOSALS or (len(parts) == 4 and parts[3] != "one"):
        raise SystemExit(f"--rows: expected ddrm, dps, diffpir or PROPOSAL:M[:STEPS[:one]] with PROPOSAL in "
                         f"{sorted(PROPOSALS)}, got {spec!r}")
    steps = int(parts[2]) if len(parts) > 2 else default_steps
    return parts[0], int(parts[1]), steps, len(parts) == 4


def sample_row(args, spec: str, model, op, x: torch.Tensor, y: torch.Tensor, piece: int = 0) -> tuple[torch.Tensor, dict]:
    """The (n, K, *image) draws of one row and what the table reports about its cost (``piece`` I + 1 of
    ``--shard I/N`` draws from its own stream; 0: the whole row)."""
    n, k = x.shape[0], args.draws
    g = torch.Generator().manual_seed(args.seed + 1 + 1_000_003 * piece)
    t0 = time.perf_counter()
    lineages = float("nan")
    if spec in PEER_NAMES:
        yk = y.repeat_interleave(k, 0)
        if spec in ("ddrm", "diffpir"):
            d = (ddrm_sample if spec == "ddrm" else diffpir_sample)(model, op, yk, args.noise, args.peer_steps, g)
            backward = 0
        else:
            d = dps_sample(model, lambda x0: yk - op.A(x0), n * k, args.peer_steps, g)
            backward = args.peer_steps
        d, evals, name = d.view(n, k, *x.shape[1:]), args.peer_steps, f"{PEER_NAMES[spec]}, {args.peer_steps} steps"
    else:
        proposal, m, steps, one = parse_smc_row(spec, args.steps)
        prop = PROPOSALS[proposal]()
        runs = 1 if one else k
        res = restore(model, y, op, noise_std=args.noise, particles=m, steps=steps, kernel="ancestral",
                      proposal=prop, generator=g, check_data_range=False, options=RunOptions(populations=runs))
        d = res.draw(k, g)
        evals = m * steps * prop.evaluations_per_step * runs // k
        backward = m * steps * prop.backward_passes_per_step * runs // k
        lineages = float(res.weighted.distinct_final().double().mean()) / runs
        name = f"{proposal} M={m} x {steps} steps, " + ("one run" if one else f"{k} runs")
    meta = dict(name=name, evals=evals, backward=backward, lineages=lineages, seconds=time.perf_counter() - t0)
    return d.float(), meta


def row_key(args, spec: str) -> str:
    """The cache name of a row: every argument its draws depend on."""
    key = f"{args.model}-{args.task}-{args.noise:g}-n{args.n}-k{args.draws}-seed{args.seed}-{spec.replace(':', '_')}"
    key += f"-peer{args.peer_steps}" if spec in PEER_NAMES else f"-steps{args.steps}"
    return key + (f"-shards{args.shards}" if args.shards else "")


def save_row(path: Path, d: torch.Tensor, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"draws": d.contiguous()}, str(path), metadata={"row": json.dumps(meta)})


def load_row(path: Path) -> tuple[torch.Tensor, dict]:
    return load_file(str(path))["draws"], json.loads(safe_open(str(path), "pt").metadata()["row"])


def cached_row(args, spec: str, sample) -> tuple[torch.Tensor, dict]:
    """``sample()``, or the row saved under ``--cache`` by an earlier run with the same settings (safetensors).

    Rows of one table can so be sampled in separate processes (one per core) and compared in a last run that loads
    them all. With ``--shards N`` the row is joined from the N slices saved by ``--shard I/N`` runs."""
    if args.cache is None:
        return sample()
    path = args.cache / f"{row_key(args, spec)}.safetensors"
    if path.exists():
        d, meta = load_row(path)
        return d, dict(meta, cached=True)
    if args.shards:
        pieces = [args.cache / f"{row_key(args, spec)}-{i}.safetensors" for i in range(args.shards)]
        missing = [str(i) for i, piece in enumerate(pieces) if not piece.exists()]
        if missing:
            raise SystemExit(f"--shards {args.shards}: row {spec!r} lacks shard(s) {', '.join(missing)} in {args.cache}; "
                             f"run --shard I/{args.shards} for each")
        loaded = [load_row(piece) for piece in pieces]
        d = torch.cat([piece[0] for piece in loaded])
        meta = dict(loaded[0][1], seconds=sum(piece[1]["seconds"] for piece in loaded))
    else:
        d, meta = sample()
    save_row(path, d, meta)
    return d, meta


def sample_shard(args, model, op, x: torch.Tensor, y: torch.Tensor) -> None:
    """``--shard I/N``: every row's draws for the I-th slice of the images, saved for a ``--shards N`` run."""
    i, n_shards = args.shard
    lo, hi = i * args.n // n_shards, (i + 1) * args.n // n_shards
    args.shards = n_shards
    for spec in args.rows:
        path = args.cache / f"{row_key(args, spec)}-{i}.safetensors"
        if path.exists():
            print(f"{spec}: shard {i} of {n_shards} already in {args.cache}")
            continue
        d, meta = sample_row(args, spec, model, op, x[lo:hi], y[lo:hi], piece=i + 1)
        save_row(path, d, meta)
        print(f"{meta['name']}: images {lo} to {hi - 1}, {meta['seconds']:.0f} s", flush=True)


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N, got {text!r}") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"expected 0 <= I < N, got {text!r}")
    return i, n


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=("digits", "mnist"), default="mnist")
    p.add_argument("--task", choices=("box", "half", "sr4", "deblur"), default="box")
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--draws", type=int, default=4)
    p.add_argument("--steps", type=int, default=50, help="SMC steps")
    p.add_argument("--peer-steps", type=int, default=200, help="DDRM / DPS steps (one evaluation each)")
    p.add_argument("--rows", nargs="+", default=["bootstrap:4", "ddrm"])
    p.add_argument("--base", default=None, help="the row the others are compared with (default: the first peer)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/images.jsonl"))
    p.add_argument("--cache", type=Path, default=None,
                   help="folder for each row's draws: a row found there is loaded instead of sampled again")
    p.add_argument("--shard", type=parse_shard, default=None, metavar="I/N",
                   help="sample the I-th of N slices of the images for every row into --cache, and stop")
    p.add_argument("--shards", type=int, default=None, metavar="N", help="join each row from the N slices in --cache")
    args = p.parse_args(argv)
    if (args.shard or args.shards) and args.cache is None:
        p.error("--shard and --shards need --cache")
    if args.shard and args.shards:
        p.error("--shard samples one slice, --shards joins them: give one")
    if args.shards is not None and args.shards < 1:
        p.error("--shards must be a positive integer")
    torch.set_num_threads(1)
    model = load_model(args.model)
    clf = load_digit_classifier(directory=SHIPPED_CLASSIFIERS[args.model])
    x = (load_digits_images if args.model == "digits" else load_mnist_images)("test")[: args.n]
    n, k, side = x.shape[0], args.draws, x.shape[-1]
    op = task_operator(args.task, side).bind(tuple(x.shape[1:]))
    clean = op.A(x)
    y = clean + args.noise * torch.randn(clean.shape, generator=torch.Generator().manual_seed(args.seed))
    if args.shard:
        return sample_shard(args, model, op, x, y)
    with torch.no_grad():
        truth_label = clf(x).argmax(1)
    rows, draws = {}, {}
    for spec in args.rows:
        d, meta = cached_row(args, spec, lambda spec=spec: sample_row(args, spec, model, op, x, y))
        name, evals, backward, lineages, seconds = (meta[key] for key in ("name", "evals", "backward", "lineages",
                                                                           "seconds"))
        d = d.float().clamp(-1, 1)
        with torch.no_grad():
            label = clf(d[:, 0]).argmax(1)
        draws[name] = d
        rows[name] = dict(evals=evals, backward=backward, psnr=psnr(d[:, 0], x), kept=(label == truth_label).double(),
                          diversity=diversity(d), lineages=lineages, seconds=seconds)
        print(f"{name}: {seconds:.0f} s" + (" (cached)" if meta.get("cached") else ""), flush=True)
    base = args.base or next((r for r in rows if r.startswith(tuple(PEER_NAMES.values()))), next(iter(rows)))
    feats = {name: classifier_features(d.flatten(0, 1), clf).view(n, k, -1) for name, d in draws.items()}
    fds = fd_bootstrap(feats, classifier_features(x, clf), base)
    print(f"\n{args.model}, {args.task}, sigma_y = {args.noise:g}: {n} held-out images, K = {k} draws each; differences "
          f"against '{base}', paired 95 % intervals over images\n")
    print("| row | evaluations (backward) per draw | PSNR (dB) | label kept | FD, all draws | diversity | lineages per run | s |")
    print("|---|---|---|---|---|---|---|---|")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name, r in rows.items():
        dp, dl, f = paired_difference(r["psnr"], rows[base]["psnr"]), paired_difference(r["kept"], rows[base]["kept"]), fds[name]
        same = name == base
        psnr_text = f"{float(r['psnr'].mean()):.2f}" + ("" if same else f" ({dp[0]:+.2f} ± {dp[1]:.2f})")
        kept_text = f"{100 * float(r['kept'].mean()):.1f} %" + ("" if same else f" ({100 * dl[0]:+.1f} ± {100 * dl[1]:.1f})")
        fd_text = f"{f['fd']:.2f}" + ("" if same else f" ({f['diff']:+.2f} [{f['lo']:+.2f}, {f['hi']:+.2f}])")
        print(f"| {name} | {r['evals']} ({r['backward']}) | {psnr_text} | {kept_text} | {fd_text} | {r['diversity']:.3f} | "
              f"{r['lineages']:.1f} | {r['seconds']:.0f} |")
        with args.out.open("a") as fh:
            fh.write(json.dumps(dict(model=args.model, task=args.task, noise=args.noise, n=n, draws=k, row=name, base=base,
                                     evaluations=r["evals"], backward=r["backward"], psnr=float(r["psnr"].mean()), psnr_diff=dp,
                                     label_kept=float(r["kept"].mean()), label_diff=dl, fd=f, diversity=r["diversity"],
                                     lineages=r["lineages"], seconds=r["seconds"])) + "\n")


if __name__ == "__main__":
    main()
