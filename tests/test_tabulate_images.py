"""benchmarks/tabulate_images.py: the BENCHMARKS.md tables of the MNIST comparison come from its output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from tabulate_images import main  # noqa: E402


def _record(task, noise, n, row, psnr, base="DDRM, 200 steps", fd=10.0):
    same = row == base
    return dict(model="mnist", task=task, noise=noise, n=n, draws=4, row=row, base=base, evaluations=200,
                backward=0 if row.startswith("DDRM") else 200, psnr=psnr, psnr_diff=[0.0, 0.0] if same else [-0.5, 0.25],
                label_kept=0.9, label_diff=[0.0, 0.0] if same else [0.02, 0.01],
                fd=dict(fd=fd, diff=0.0, lo=0.0, hi=0.0) if same else dict(fd=fd, diff=-1.5, lo=-2.5, hi=-0.5),
                diversity=0.05, lineages=float("nan") if row.startswith("D") else 1.0, seconds=100.0)


def test_one_table_per_task_with_both_noise_levels_and_the_500_image_pair_in_one_row(tmp_path, capsys):
    twisted = "twisted M=4 x 50 steps, 4 runs"
    records = [_record("box", 0.0, 100, "DDRM, 200 steps", 16.0), _record("box", 0.0, 100, twisted, 1.0),
               _record("box", 0.0, 100, twisted, 17.0),  # a re-run replaces the first record
               _record("box", 0.05, 100, "DDRM, 200 steps", 15.0), _record("box", 0.05, 100, twisted, 14.5),
               _record("box", 0.0, 500, "DDRM, 200 steps", 14.0), _record("box", 0.0, 500, twisted, 15.0),
               _record("box", 0.0, 100, twisted, 99.0, base="DPS, 200 steps"),  # against DPS: not in the tables
               _record("sr4", 0.05, 100, "DDRM, 200 steps", 20.0)]
    path = tmp_path / "images.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    main([str(path)])
    lines = capsys.readouterr().out.splitlines()
    tables = [line for line in lines if line.startswith("| 14×14 box") or line.startswith("| 4× super")]
    assert len(tables) == 2 and not any(line.startswith("| bottom-half") for line in lines)
    rows = {line.split(" | ")[0]: line.split(" | ") for line in lines if line.startswith("| ") and "---" not in line}
    assert rows["| twisted 4 × M = 4 × 50"][2:4] == ["17.00 (−0.50 ± 0.25)", "14.50 (−0.50 ± 0.25)"]
    pair = rows["| twisted 4 × M = 4 × 50 against DDRM, **all 500 images**"]
    assert pair[2:4] == ["15.00 against 14.00 (−0.50 ± 0.25)", "–"]
    assert pair[6] == "10.00 against 10.00 (−1.50 [−2.50, −0.50])"
    assert sum(line.startswith("| DDRM 200 steps") for line in lines) == 2  # box and SR at 100 images, not at 500
    assert not any("99.00" in line for line in lines)
