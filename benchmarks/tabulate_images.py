"""One markdown table per task from ``bench_images.py --out`` records, noiseless and noisy side by side.

Every record compared with DDRM (its ``base``) becomes a cell of its task's table: one row per sampler and image
count, one column pair per sigma_y (noiseless; ``--noise``). On another image count than ``--n`` (all 500 held-out
images) a row shows its value against DDRM's on the same images, DDRM getting no row of its own. A later record of
the same row, task, noise and image count replaces an earlier one. Rows against another base (``--base dps``) are
left out: they belong to the text.

Example (BENCHMARKS.md, "MNIST: SMC against DDRM and DiffPIR (paired)")::

    python benchmarks/tabulate_images.py results/images_mnist*.jsonl --model mnist
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

TASKS = {"box": "14×14 box inpainting", "half": "bottom-half inpainting", "sr4": "4× super-resolution",
         "deblur": "Gaussian deblurring (σ 1 px)"}
ORDER = ("DDRM", "DiffPIR", "DPS", "bootstrap", "mcgdiff", "twisted")
SMC_ROW = re.compile(r"(\w+) M=(\d+) x (\d+) steps, (one run|\d+ runs)")


def row_label(name: str) -> str:
    """``twisted M=4 x 50 steps, 4 runs`` -> ``twisted 4 × M = 4 × 50``; ``DDRM, 200 steps`` -> ``DDRM 200 steps``."""
    m = SMC_ROW.fullmatch(name)
    if m is None:
        return name.replace(",", "")
    proposal, particles, steps, runs = m.groups()
    proposal = "MCGdiff-style" if proposal == "mcgdiff" else proposal
    if runs == "one run":
        return f"{proposal}, one run of M = {particles} × {steps}"
    return f"{proposal} {runs.split()[0]} × M = {particles} × {steps}"


def sort_key(name: str, n: int) -> tuple:
    rank = next((i for i, prefix in enumerate(ORDER) if name.startswith(prefix)), len(ORDER))
    return n, rank, "one run" in name, name


def value(r: dict, key: str) -> str:
    return {"psnr": f"{r['psnr']:.2f}", "label": f"{100 * r['label_kept']:.1f} %", "fd": f"{r['fd']['fd']:.2f}"}[key]


def difference(r: dict, key: str) -> str:
    """The paired difference from the base row: mean ± half-width (PSNR, label kept), or FD's bootstrap interval."""
    if key == "psnr":
        return f"{r['psnr_diff'][0]:+.2f} ± {r['psnr_diff'][1]:.2f}"
    if key == "label":
        return f"{100 * r['label_diff'][0]:+.1f} ± {100 * r['label_diff'][1]:.1f}"
    f = r["fd"]
    return f"{f['diff']:+.2f} [{f['lo']:+.2f}, {f['hi']:+.2f}]"


def cell(r: dict | None, key: str, base: dict | None = None) -> str:
    """A value; for a row other than the base, its paired difference (after the base's value when ``base`` is
    given); typographic minus signs."""
    if r is None:
        return "–"
    text = value(r, key)
    if r["row"] != r["base"]:
        text += (f" against {value(base, key)}" if base is not None else "") + f" ({difference(r, key)})"
    return text.replace("-", "−")


def both(cells: list[dict | None], fmt) -> str:
    return "; ".join("–" if r is None else fmt(r) for r in cells)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("records", type=Path, nargs="+", help="JSON-lines files written by bench_images.py --out")
    p.add_argument("--model", default="mnist")
    p.add_argument("--noise", type=float, default=0.05, help="the noisy sigma_y shown next to the noiseless one")
    p.add_argument("--n", type=int, default=100, help="the image count left unmarked in the row labels")
    args = p.parse_args(argv)

    table: dict[tuple[str, str, int], dict[float, dict]] = {}
    for path in args.records:
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r["model"] == args.model and r["base"].startswith("DDRM") and r["noise"] in (0.0, args.noise):
                table.setdefault((r["task"], r["row"], r["n"]), {})[r["noise"]] = r
    for task, title in TASKS.items():
        keys = sorted((k for k in table if k[0] == task), key=lambda k: sort_key(k[1], k[2]))
        bases = {k[2]: table[k] for k in keys if k[1].startswith("DDRM")}
        keys = [k for k in keys if k[2] == args.n or not k[1].startswith("DDRM")]
        if not keys:
            continue
        noisy = f"σ_y = {args.noise:g}"
        print(f"\n| {title} | evaluations (backward) per draw | PSNR (dB), σ_y = 0 | {noisy} | label kept, σ_y = 0 | "
              f"{noisy} | FD, all draws, σ_y = 0 | {noisy} | diversity | lineages per run | s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for key in keys:
            cells = [table[key].get(0.0), table[key].get(args.noise)]
            base = [None, None] if key[2] == args.n else [bases.get(key[2], {}).get(s) for s in (0.0, args.noise)]
            some = next(r for r in cells if r is not None)
            lineages = "–" if some["lineages"] != some["lineages"] else f"{some['lineages']:.1f}"
            label = row_label(key[1]) + ("" if key[2] == args.n else f" against DDRM, **all {key[2]} images**")
            print(f"| {label} | {some['evaluations']} ({some['backward']}) | "
                  + " | ".join(cell(cells[i], k, base[i]) for k in ("psnr", "label", "fd") for i in (0, 1))
                  + f" | {both(cells, lambda r: format(r['diversity'], '.3f'))} | {lineages} | "
                  f"{both(cells, lambda r: format(r['seconds'], '.0f'))} |")

if __name__ == "__main__":
    main()
