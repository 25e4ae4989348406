"""The ``smcdiff`` command with tiny settings: every sub-command, every flag, the user-error paths.

Most tests call :func:`smcdiff.cli.main` in this process, so that the model and torch load once for
the file (a subprocess costs 5-10 s of imports here); the tests about the process itself (the
installed console script, ``python -m smcdiff``, the exit status, stderr and the absence of a
traceback in a real run) start it in a subprocess.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from smcdiff import cli
from smcdiff.cli import default_threads
from smcdiff.restore import DEFAULT_PARTICLES, DEFAULT_POPULATIONS

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TINY = ["--particles", "2", "--steps", "3"]


# ---- running the command ----


def console(*args: str, module: bool = False, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """The installed ``smcdiff`` console script (or ``python -m smcdiff``) in a subprocess."""
    script = shutil.which("smcdiff", path=str(Path(sys.executable).parent)) or shutil.which("smcdiff")
    cmd = [sys.executable, "-m", "smcdiff"] if module else [script]
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, env=env or ENV, cwd=cwd, timeout=600)


def one_line_error(out, message: str) -> None:
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


# ---- pictures ----
def _save(x: torch.Tensor, path: Path, size: int | None = None, mode: str = "L") -> Path:
    img = Image.fromarray(((x[0].clamp(-1, 1).numpy() + 1) * 127.5).round().astype(np.uint8), mode="L")
    if size is not None:
        img = img.resize((size, size), Image.NEAREST)
    img.convert(mode).save(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Degraded digits for each task, a truth, and pictures the model cannot take as they are."""
    from smcdiff.data import load_digits_images
    from smcdiff.operators import Blur, Downsample

    d = tmp_path_factory.mktemp("cli")
    x = load_digits_images("test")[:2]
    g = torch.Generator().manual_seed(0)
    f = {
        "digit": _save(x[0], d / "digit.png"),
        "low": _save(Downsample(4).bind((1, 8, 8)).A(x[:1])[0], d / "low.png"),
        "blur": _save(Blur.gaussian(1.0).bind((1, 8, 8)).A(x[:1])[0], d / "blur.png"),
        "noisy": _save(x[0] + 0.2 * torch.randn(1, 8, 8, generator=g), d / "noisy.png"),
        "big": _save(x[0], d / "big.png", size=32),
        "greyrgb": _save(x[0], d / "greyrgb.png", mode="RGB"),
        "text": d / "text.png",
        "small": d / "small.png",
        "full": d / "full.png",
        "colour": d / "colour.png",
        "wide": d / "wide.png",
    }
    f["text"].write_text("not an image")
    Image.fromarray(np.zeros((4, 4), np.uint8), mode="L").save(f["small"])
    Image.fromarray(np.full((8, 8), 255, np.uint8), mode="L").save(f["full"])
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[..., 0] = 200
    Image.fromarray(colour).save(f["colour"])
    Image.fromarray(np.zeros((8, 12), np.uint8), mode="L").save(f["wide"])
    batch = d / "batch"
    batch.mkdir()
    truth = d / "truth"
    truth.mkdir()
    for i in range(2):
        _save(x[i], batch / f"d{i}.png")
        _save(x[i], truth / f"d{i}.png")
    f["batch"], f["truth"] = batch, truth
    return f


def grid_columns(path: Path, scale: int, size: int = 8) -> int:
    """Columns of a grid written with ``scale`` (cells of ``size`` pixels and a 1-pixel gutter)."""
    return (Image.open(path).width // scale - 1) // (size + 1)


# ---- the process: entry points, version, help ----
def test_version(smcdiff):
    from smcdiff import __version__

    out = smcdiff("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"smcdiff {__version__}"


@pytest.mark.parametrize("command", [[], ["gaussian"], ["demo"], ["inpaint"], ["restore"], ["generate"], ["calibrate"]])
def test_help_everywhere(smcdiff, command):
    out = smcdiff(*command, "--help")
    assert out.returncode == 0, out.stderr
    assert "usage: smcdiff" in out.stdout


@pytest.mark.parametrize("command", ["demo", "inpaint", "restore"])
def test_help_shows_the_defaults_of_particles_steps_and_seed(smcdiff, command):
    text = " ".join(smcdiff(command, "--help").stdout.split())
    particles = f"(default {DEFAULT_PARTICLES})"
    for phrase in (f"per run with --populations {particles}", "reverse steps (default 250)", "random seed (default 0)"):
        assert phrase in text
    assert f"share no ancestor (default {DEFAULT_POPULATIONS};" in text


def test_gaussian_help_says_what_the_example_is(smcdiff):
    text = " ".join(smcdiff("gaussian", "--help").stdout.split()) + " ".join(smcdiff("--help").stdout.split())
    assert "Strasman" in text and "Conditional Sampling with Score-Based Generative Models" in text
    assert "seed slides" not in text


# ---- gaussian ----
def test_gaussian_prints_the_table_and_writes_the_figure(smcdiff, tmp_path):
    pytest.importorskip("matplotlib")
    out = smcdiff("gaussian", "--samples", "400", "--particles", "50", "--runs", "3", "--steps", "20",
                  "--out", tmp_path / "toy")
    assert out.returncode == 0, out.stderr
    assert "Unconditional" in out.stdout and "Conditional" in out.stdout
    assert Image.open(tmp_path / "toy.png").size[0] > 100  # .png appended


def test_gaussian_out_without_matplotlib_fails_before_sampling(smcdiff, tmp_path, monkeypatch):
    from smcdiff import toy_table as toy

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    monkeypatch.setattr(toy, "unconditional_rows", lambda *a, **k: pytest.fail("sampled before checking"))
    one_line_error(smcdiff("gaussian", "--out", tmp_path / "toy.png"), "matplotlib")


# ---- demo ----
def test_demo_inpaints_and_super_resolves_with_labelled_columns(smcdiff, tmp_path):
    grid = tmp_path / "demo.png"
    out = smcdiff("demo", "--images", "2", *TINY, "--draws", "2", "--out", grid)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for word in ("smc", "replacement", "PSNR", "consistency", "label kept", "lineages", "s / image",
                 "super-resolution", "smc (bootstrap)"):
        assert word in text
    # lineages of every method: SMC 'x/8' (4 independent runs of 2 particles by default), replacement 'x/2'
    assert "2 particles (SMC: in each of 4 independent runs)" in text
    rows = [line for line in text.splitlines() if line.startswith(("smc ", "replacement", "smc (bootstrap)"))]
    assert len(rows) == 3
    assert all(re.search(r"\d(\.\d)?/8 ", r) for r in rows if r.startswith("smc"))
    assert all(re.search(r"\d(\.\d)?/2 ", r) for r in rows if r.startswith("replacement"))
    arr = np.asarray(Image.open(grid).convert("L"))
    # 2 sections of 2 digits at scale 8 (8 + 1 pixel cells), plus titles and column labels above each
    assert arr.shape[0] > 2 * (2 * 9 + 1) * 8
    assert arr[:30].min() < 100  # dark text in the title and label band
    assert grid_columns(grid, 8) == 2 + 2 + 2  # original | masked | 2 SMC | 2 replacement


# ---- restore: each task ----
TASKS = {
    "inpaint": ("digit", ["--box", "2,2,4,4"], 2 + 1),  # input, masked, mean
    "sr": ("low", [], 1 + 1),
    "deblur": ("blur", ["--blur-sigma", "1"], 1 + 1),
    "denoise": ("noisy", ["--noise", "0.2"], 1 + 1),
}


@pytest.mark.parametrize("task", list(TASKS))
def test_restore_each_task_writes_the_grid_and_prints_the_metrics(smcdiff, files, tmp_path, task):
    name, extra, before = TASKS[task]
    out = smcdiff("restore", files[name], "--task", task, *extra, *TINY, "--draws", "2", "--truth", files["digit"],
                  "--out", tmp_path / "grid.png", "--scale", "4")
    assert out.returncode == 0, out.stderr
    for phrase in ("final ESS", "distinct final lineages", "PSNR against the truth", "||A x - y||", "PSNR(A x, y)", " s,"):
        assert phrase in out.stdout
    assert grid_columns(tmp_path / "grid.png", 4) == before + 2 + 1  # draws, truth


@pytest.mark.slow
def test_restore_through_the_console_script(files, tmp_path):
    """A real process: the outputs, the metrics on stdout, and the few-steps warning as one stderr line."""
    out = console("restore", files["low"], "--task", "sr", "--factor", "4", "--proposal", "mcgdiff", *TINY,
                  "--truth", files["digit"], "--out", tmp_path / "sr", "--save", tmp_path / "run.safetensors")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "sr.png").is_file() and (tmp_path / "run.safetensors").is_file()
    assert "PSNR against the truth" in out.stdout
    warnings = [line for line in out.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "3 steps" in warnings[0]


@pytest.mark.slow
def test_python_m_smcdiff_and_a_user_error_in_a_real_process(files, tmp_path):
    out = console("restore", files["digit"], "--task", "sr", "--out", tmp_path / "o.txt", module=True)
    one_line_error(out, "smcdiff restore: error: --out")


# ---- keeping runs, batches, pictures ----
@pytest.mark.parametrize("save", ["run.npz", "run.safetensors", "run"])
def test_save_keeps_a_run_that_load_result_reads(smcdiff, files, tmp_path, save):
    from smcdiff.operators import Downsample
    from smcdiff.results import load_result

    out = smcdiff("restore", files["low"], "--task", "sr", *TINY, "--seed", "7", "--out", tmp_path / "o.png",
                  "--save", tmp_path / save)
    assert out.returncode == 0, out.stderr
    res = load_result(tmp_path / (save if "." in save else save + ".npz"))
    assert isinstance(res.operator, Downsample) and res.operator.factor == 4
    assert res.samples.shape == (1, 2 * DEFAULT_POPULATIONS, 1, 8, 8) and res.weighted.lineages.shape == (3, 1)
    assert res.settings["seed"] == 7 and res.settings["task"] == "sr" and res.settings["model"] == "digits"
    assert res.method == "smc" and res.proposal == "bootstrap"


def test_batch_mode_writes_one_output_per_input(smcdiff, files, tmp_path):
    out = smcdiff("inpaint", files["batch"], "--box", "2,2,4,4", *TINY, "--truth", files["truth"],
                  "--out", tmp_path / "grids", "--save", tmp_path / "runs", "--diagnostics", tmp_path / "diag")
    assert out.returncode == 0, out.stderr
    for i in range(2):
        assert (tmp_path / "grids" / f"d{i}.png").is_file()
        assert (tmp_path / "runs" / f"d{i}.npz").is_file()
        assert (tmp_path / "diag" / f"d{i}-diagnostics.png").is_file()
    assert "[1/2] d0.png" in out.stdout and "[2/2] d1.png" in out.stdout
    # several files on the command line are a batch too
    out = smcdiff("restore", files["digit"], files["noisy"], "--task", "denoise", "--noise", "0.2", *TINY,
                  "--out", tmp_path / "two")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["digit.png", "noisy.png"]


def test_scale_upscales_the_grid_by_nearest_neighbour(smcdiff, files, tmp_path):
    widths = {}
    for scale in (1, 3):
        out = smcdiff("inpaint", files["digit"], "--box", "2,2,4,4", *TINY, "--scale", scale, "--out", tmp_path / f"s{scale}.png")
        assert out.returncode == 0, out.stderr
        widths[scale] = Image.open(tmp_path / f"s{scale}.png").width
    assert widths[3] == 3 * widths[1] == 3 * (7 * 9 + 1)  # input | masked | mean | 4 draws


def test_diagnostics_plots_ess_and_lineages(smcdiff, files, tmp_path):
    pytest.importorskip("matplotlib")
    out = smcdiff("inpaint", files["digit"], "--box", "2,2,4,4", *TINY, "--out", tmp_path / "o.png",
                  "--diagnostics", tmp_path / "diag.png")
    assert out.returncode == 0, out.stderr
    assert Image.open(tmp_path / "diag.png").width > 300


def test_out_without_a_suffix_gets_png(smcdiff, files, tmp_path):
    out = smcdiff("inpaint", files["digit"], "--box", "2,2,4,4", *TINY, "--out", tmp_path / "filled")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "filled.png").is_file()


# ---- the user's data is not changed silently ----
@pytest.mark.parametrize(("name", "what"), [("big", "32x32 greyscale"), ("colour", "8x8 RGB"), ("wide", "12x8 greyscale")])
def test_other_sizes_and_colours_are_refused_without_resize(smcdiff, files, tmp_path, name, what):
    out = smcdiff("inpaint", files[name], "--box", "0,0,2,2", *TINY, "--out", tmp_path / "o.png")
    one_line_error(out, f"is {what} but the model expects 8x8 greyscale")
    assert "--resize" in out.stderr


@pytest.mark.parametrize(
    ("name", "box", "note"),
    [("big", "8,8,16,16", "resized 32x32 to 8x8"), ("colour", "0,0,2,2", "converted RGB to greyscale"),
     ("wide", "0,0,3,3", "aspect ratio changed")],
)
def test_resize_converts_and_says_so(smcdiff, files, tmp_path, name, box, note):
    out = smcdiff("inpaint", files[name], "--box", box, "--resize", *TINY, "--out", tmp_path / "o.png")
    assert out.returncode == 0, out.stderr
    assert note in out.stdout


def test_a_grey_picture_stored_as_rgb_needs_no_conversion(smcdiff, files, tmp_path):
    out = smcdiff("inpaint", files["greyrgb"], "--box", "2,2,4,4", *TINY, "--out", tmp_path / "o.png")
    assert out.returncode == 0, out.stderr
    assert "converted" not in out.stdout


# ---- steps, progress, threads, device ----
def test_few_steps_warn_once_on_stderr(smcdiff, files, tmp_path):
    base = ["inpaint", files["digit"], "--box", "2,2,4,4", "--particles", "2", "--out", tmp_path / "o.png"]
    for kernel, steps, need in (("euler", "3", "100"), ("ancestral", "3", "100")):
        out = smcdiff(*base, "--kernel", kernel, "--steps", steps)
        assert out.returncode == 0, out.stderr
        warnings = [line for line in out.stderr.splitlines() if "warning" in line]
        assert len(warnings) == 1 and kernel in warnings[0] and need in warnings[0]
    out = smcdiff(*base, "--kernel", "ancestral", "--steps", "100")
    assert "warning" not in out.stderr


def test_the_replacement_progress_bar_says_replacement(smcdiff, files, tmp_path):
    out = smcdiff("inpaint", files["digit"], "--box", "2,2,4,4", "--method", "replacement", *TINY, "--out", tmp_path / "o.png")
    assert out.returncode == 0, out.stderr
    bars = [line for line in out.stderr.replace("\r", "\n").splitlines() if "it/s" in line]
    assert bars and all(line.lstrip().startswith("replacement:") for line in bars)


def test_default_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("TORCH_NUM_THREADS", raising=False)
    monkeypatch.setattr(cli.torch, "get_num_threads", lambda: 8)  # torch's default on an 8-core machine
    assert default_threads(cpus=1) == default_threads(cpus=2) == 1
    assert default_threads(cpus=4) == 4
    assert default_threads(cpus=16) == 8
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's explicit choice: torch's count, untouched
    assert default_threads(cpus=2) == 8


def test_threads_and_device_options(smcdiff, files, tmp_path):
    out = smcdiff("inpaint", files["digit"], "--box", "2,2,4,4", *TINY, "--threads", "2", "--device", "cpu",
                  "--out", tmp_path / "o.png")
    assert out.returncode == 0, out.stderr
    assert "cpu, 2 thread(s)" in out.stdout
    if not torch.cuda.is_available():
        one_line_error(smcdiff("inpaint", files["digit"], "--box", "2,2,4,4", *TINY, "--device", "cuda",
                               "--out", tmp_path / "o.png"), "--device cuda: not available")


# ---- user errors: one line, status 2 ----
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inpaint", "MISSING.png", "--box", "0,0,2,2"], "no such image file"),
        (["inpaint", "digit", "--mask", "MISSING.png"], "no such mask file"),
        (["inpaint", "digit", "--mask", "small"], "must match"),
        (["inpaint", "digit", "--box", "6,6,8,8"], "must lie inside the 8x8 image"),
        (["inpaint", "digit", "--box", "-2,2,4,4"], "the box must lie inside the image"),
        (["inpaint", "digit", "--box", "1,2,3"], "four integers"),
        (["inpaint", "digit", "--box", "a,b,c,d"], "four integers"),
        (["inpaint", "digit", "--mask", "full"], "nothing to inpaint"),
        (["inpaint", "text", "--box", "0,0,2,2"], "cannot read input"),
        (["inpaint", "digit", "--box", "0,0,2,2", "--particles", "0"], "positive int"),
        (["inpaint", "digit", "--box", "0,0,2,2", "--model", "/no/such/model"], "cannot load model"),
        (["inpaint", "digit", "--box", "0,0,2,2", "--out", "o.txt"], "cannot write images of type '.txt'"),
        (["inpaint", "digit", "--box", "0,0,2,2", "--save", "run.pkl"], ".npz or .safetensors"),
        (["inpaint", "digit", "--box", "0,0,2,2", "--method", "replacement", "--noise", "0.1"], "needs --noise 0"),
        (["inpaint", "digit", "--box", "0,0,2,2", "--device", "nonsense"], "--device nonsense"),
        (["inpaint", "batch", "--box", "0,0,2,2", "--out", "grid.png"], "--out names a folder"),
        (["inpaint", "digit", "--box", "0,0,2,2", "--truth", "MISSING.png"], "no such truth file"),
        (["restore", "digit", "--task", "sr"], "the low-resolution image (2x2 greyscale for --factor 4)"),
        (["restore", "low", "--task", "sr", "--factor", "3"], "--factor 3 does not divide"),
        (["restore", "noisy", "--task", "denoise"], "needs the noise level"),
        (["restore", "digit", "--task", "inpaint"], "needs --mask M.png or --box"),
        (["restore", "blur", "--task", "deblur", "--box", "0,0,2,2"], "apply to --task inpaint"),
        (["restore", "blur", "--task", "deblur", "--factor", "2"], "--factor applies to --task sr"),
        (["restore", "digit", "--task", "denoise", "--noise", "-1"], "--noise"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(smcdiff, files, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    args = [str(files.get(a, a)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "o.png")]
    one_line_error(smcdiff(*args, "--steps", "2"), message)


def test_corrector_steps_run_and_are_refused_where_they_do_not_apply(smcdiff, files, tmp_path):
    base = ["inpaint", files["digit"], "--box", "2,2,4,4", *TINY, "--out", tmp_path / "o.png"]
    out = smcdiff(*base, "--corrector-steps", "1", "--save", tmp_path / "run.npz")
    assert out.returncode == 0, out.stderr
    from smcdiff import load_result

    assert load_result(tmp_path / "run.npz").settings["proposal_options"]["corrector_steps"] == 1
    out = smcdiff(*base, "--corrector-steps", "1", "--proposal", "twisted", "--save", tmp_path / "tw.npz")
    assert out.returncode == 0, out.stderr
    assert load_result(tmp_path / "tw.npz").settings["proposal_options"]["corrector_steps"] == 1
    one_line_error(smcdiff(*base, "--corrector-steps", "1", "--method", "replacement"), "--corrector-steps")
    one_line_error(smcdiff(*base, "--corrector-steps", "1", "--proposal", "mcgdiff"), "--corrector-steps")
    one_line_error(smcdiff(*base, "--corrector-steps", "-1"), "--corrector-steps")


def test_twist_variance_runs_with_the_twisted_proposal_only(smcdiff, files, tmp_path):
    base = ["inpaint", files["digit"], "--box", "2,2,4,4", *TINY, "--out", tmp_path / "o.png"]
    out = smcdiff(*base, "--proposal", "twisted", "--twist-variance", "inf", "--save", tmp_path / "run.npz")
    assert out.returncode == 0, out.stderr
    from smcdiff import load_result

    assert load_result(tmp_path / "run.npz").settings["proposal_options"]["twist_variance"] == "inf"
    one_line_error(smcdiff(*base, "--twist-variance", "4"), "--twist-variance")
    one_line_error(smcdiff(*base, "--twist-variance", "4", "--method", "replacement"), "--twist-variance")
    one_line_error(smcdiff(*base, "--proposal", "twisted", "--twist-variance", "0"), "--twist-variance")
