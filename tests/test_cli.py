"""The ``smcdiff`` command through a subprocess: tiny settings of every sub-command and the user-error paths."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def smcdiff(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "smcdiff.cli", *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=600
    )


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory):
    from smcdiff.data import load_digits_images

    path = tmp_path_factory.mktemp("cli") / "digit.png"
    img = ((load_digits_images("test")[0, 0].numpy() + 1) * 127.5).round().astype(np.uint8)
    Image.fromarray(img, mode="L").resize((32, 32), Image.NEAREST).save(path)
    return path


@pytest.mark.parametrize("command", [[], ["gaussian"], ["demo"], ["inpaint"]])
def test_help_everywhere(command):
    out = smcdiff(*command, "--help")
    assert out.returncode == 0, out.stderr
    assert "usage: smcdiff" in out.stdout


def test_gaussian_prints_the_table_and_writes_the_figure(tmp_path):
    pytest.importorskip("matplotlib")
    fig = tmp_path / "toy.png"
    out = smcdiff("gaussian", "--samples", "400", "--particles", "50", "--runs", "3", "--steps", "20", "--out", str(fig))
    assert out.returncode == 0, out.stderr
    assert "Unconditional" in out.stdout and "Conditional" in out.stdout
    assert Image.open(fig).size[0] > 100


def test_demo_runs_on_the_default_model(tmp_path):
    grid = tmp_path / "demo.png"
    out = smcdiff("demo", "--images", "2", "--particles", "3", "--steps", "5", "--draws", "2", "--out", str(grid))
    assert out.returncode == 0, out.stderr
    for word in ("smc", "replacement", "PSNR", "consistency", "s / image"):
        assert word in out.stdout
    # rows: 2 digits; columns: original | masked | 2 SMC | 2 replacement draws
    width, height = Image.open(grid).size
    assert width > height > 0


@pytest.mark.parametrize("where", [["--box", "8,8,16,16"], "mask"])
def test_inpaint_writes_the_output(tmp_path, digit_png, where):
    if where == "mask":
        mask = np.full((32, 32), 255, np.uint8)
        mask[8:24, 8:24] = 0
        Image.fromarray(mask, mode="L").save(tmp_path / "mask.png")
        where = ["--mask", str(tmp_path / "mask.png")]
    result = tmp_path / "out.png"
    out = smcdiff("inpaint", str(digit_png), *where, "--particles", "3", "--steps", "5", "--out", str(result))
    assert out.returncode == 0, out.stderr
    assert "resized 32x32" in out.stdout
    assert result.is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["MISSING.png", "--box", "0,0,2,2"], "no such image file"),
        (["IMAGE", "--mask", "MISSING.png"], "no such mask file"),
        (["IMAGE", "--mask", "SMALLMASK"], "must match"),
        (["IMAGE", "--box", "30,30,8,8"], "box"),
        (["IMAGE", "--box", "1,2,3"], "four integers"),
        (["IMAGE", "--box", "a,b,c,d"], "four integers"),
        (["IMAGE", "--mask", "FULLMASK"], "nothing to inpaint"),
        (["NOTANIMAGE", "--box", "0,0,2,2"], "cannot read image"),
        (["IMAGE", "--box", "0,0,2,2", "--particles", "0"], "positive int"),
        (["IMAGE", "--box", "0,0,2,2", "--model", "/no/such/model"], "cannot load model"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(tmp_path, digit_png, args, message):
    Image.fromarray(np.zeros((4, 4), np.uint8), mode="L").save(tmp_path / "small.png")
    Image.fromarray(np.full((32, 32), 255, np.uint8), mode="L").save(tmp_path / "full.png")
    (tmp_path / "text.png").write_text("not an image")
    files = {"IMAGE": digit_png, "SMALLMASK": tmp_path / "small.png", "FULLMASK": tmp_path / "full.png",
             "NOTANIMAGE": tmp_path / "text.png"}
    args = [str(files.get(a, a)) for a in args]
    out = smcdiff("inpaint", *args, "--steps", "2", "--out", str(tmp_path / "o.png"), cwd=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_gaussian_toy_example_reports_smc_and_replacement(tmp_path):
    script = Path(__file__).resolve().parents[1] / "examples" / "gaussian_toy.py"
    out = subprocess.run(
        [sys.executable, str(script), "--runs", "8", "--particles", "200", "--steps", "100"],
        capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "E[X | Y=1]" in out.stdout and "Var[X | Y=1]" in out.stdout
    # with 8 runs of 200 particles the replacement bias (about 1.1 in the mean) is many standard errors
    assert "replacement: " in out.stdout and "standard errors away from" in out.stdout.split("replacement: ")[1]
