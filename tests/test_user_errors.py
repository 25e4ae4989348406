"""Mistakes that used to cost the user data, time or a traceback: outputs that would replace an input
or each other, destinations that cannot be written, and result files that were cut or altered.

Every refusal here is one line on stderr with exit status 2 (or a ``ResultFileError`` naming the field),
and it comes before any sampling: the tests check that nothing was printed on stdout, where the run
announces itself once the checks have passed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


TINY = ["--particles", "2", "--steps", "3"]




def refused_before_sampling(out, *messages: str) -> None:
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    for message in messages:
        assert message in out.stderr, out.stderr
    assert out.stdout == "", out.stdout  # the run stopped before announcing (and starting) the sampling


def _digit(path: Path, index: int = 0, size: int = 8) -> Path:
    from smcdiff.data import load_digits_images

    x = load_digits_images("test")[index, 0]
    img = Image.fromarray(((x.numpy() + 1) * 127.5).round().astype(np.uint8), mode="L")
    if size != 8:
        img = img.resize((size, size), Image.BOX)
    img.save(path)
    return path


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its contents (folders end in '/')."""
    return {
        str(p.relative_to(root)) + ("/" if p.is_dir() else ""): (b"" if p.is_dir() else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


# ---- outputs that would replace an input ----
@pytest.mark.parametrize(
    "command",
    [["inpaint", "--box", "2,2,4,4"], ["restore", "--task", "deblur"], ["restore", "--task", "sr", "LOW"]],
    ids=["inpaint", "deblur", "sr"],
)
def test_out_onto_the_input_is_refused_and_the_input_kept(smcdiff, tmp_path, command):
    image = _digit(tmp_path / "digit.png", size=2 if "LOW" in command else 8)
    before = _tree(tmp_path)
    args = [a for a in command if a != "LOW"]
    out = smcdiff(args[0], image, *args[1:], *TINY, "--out", image)
    refused_before_sampling(out, f"--out {image} would replace the input file", "--overwrite")
    assert _tree(tmp_path) == before


def test_a_batch_written_into_its_own_folder_is_refused(smcdiff, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(3):
        _digit(folder / f"d{i}.png", i)
    before = _tree(tmp_path)
    refused_before_sampling(smcdiff("inpaint", folder, "--box", "2,2,4,4", *TINY, "--out", folder), "would replace the input")
    refused_before_sampling(smcdiff("inpaint", f"{folder}/", "--box", "2,2,4,4", *TINY, "--out", f"{folder}/"), "--overwrite")
    # the same folder by another name
    refused_before_sampling(
        smcdiff("inpaint", folder, "--box", "2,2,4,4", *TINY, "--out", folder / ".." / "scans"), "would replace the input"
    )
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("target", ["save", "diagnostics", "mask", "truth", "symlink", "folder"])
def test_every_output_and_every_input_are_compared(smcdiff, tmp_path, target):
    image = _digit(tmp_path / "digit.png")
    truth = _digit(tmp_path / "truth.png", 1)
    mask = tmp_path / "mask.png"
    keep = np.full((8, 8), 255, np.uint8)
    keep[2:6, 2:6] = 0
    Image.fromarray(keep, mode="L").save(mask)
    link = tmp_path / "link.png"
    link.symlink_to(image)
    base = ["inpaint", image, "--mask", mask, "--truth", truth, *TINY]
    out, flag = {
        "save": (["--out", tmp_path / "o.png", "--save", tmp_path / "digit.png"], "--save"),  # refused earlier: suffix
        "diagnostics": (["--out", tmp_path / "o.png", "--diagnostics", image], "--diagnostics"),
        "mask": (["--out", mask], "--out"),
        "truth": (["--out", truth], "--out"),
        "symlink": (["--out", link], "--out"),
        "folder": (["--out", tmp_path], "--out"),  # --out DIR writes DIR/<input stem>.png: the input itself
    }[target]
    before = _tree(tmp_path)
    run = smcdiff(*base, *out)
    if target == "save":
        refused_before_sampling(run, ".npz or .safetensors")
    else:
        refused_before_sampling(run, flag, "would replace the input file")
    assert _tree(tmp_path) == before


def test_overwrite_lets_the_output_replace_the_input(smcdiff, tmp_path):
    image = _digit(tmp_path / "digit.png")
    out = smcdiff("inpaint", image, "--box", "2,2,4,4", *TINY, "--out", image, "--overwrite")
    assert out.returncode == 0, out.stderr
    assert Image.open(image).width > 8  # now the grid


def test_overwrite_is_in_the_help(smcdiff):
    for command in ("restore", "inpaint"):
        out = smcdiff(command, "--help")
        assert "--overwrite" in out.stdout and "replace existing input files" in " ".join(out.stdout.split())


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_two_outputs_of_one_run_never_collide(smcdiff, tmp_path, overwrite):
    image = _digit(tmp_path / "digit.png")
    refused_before_sampling(
        smcdiff("inpaint", image, "--box", "2,2,4,4", *TINY, "--out", tmp_path / "o.png", "--diagnostics",
                tmp_path / "o.png", *overwrite),
        "--out and --diagnostics would both write",
    )
    # in a batch: the grid of 'a-diagnostics.png' and the diagnostics of 'a.png' share a name
    folder = tmp_path / "in"
    folder.mkdir()
    _digit(folder / "a.png")
    _digit(folder / "a-diagnostics.png", 1)
    refused_before_sampling(
        smcdiff("inpaint", folder, "--box", "2,2,4,4", *TINY, "--out", tmp_path / "res", "--diagnostics",
                tmp_path / "res", *overwrite),
        "would both write",
    )
    assert not (tmp_path / "res").exists()


# ---- destinations that cannot be written ----
@pytest.mark.parametrize(
    ("flag", "where", "message"),
    [
        ("--out", "/proc/smcdiff-no-such-folder/o.png", "cannot write in /proc"),
        ("--out", "/proc/o.png", "cannot write in /proc"),
        ("--out", "FILE/o.png", "is a file, not a folder"),
        ("--out", "FILE/sub/o.png", "is a file, not a folder"),
        ("--save", "/proc/run.npz", "cannot write in /proc"),
        ("--save", "FILE/run.safetensors", "is a file, not a folder"),
        ("--diagnostics", "FILE/d.png", "is a file, not a folder"),
        ("--out", "DIR", "is a folder"),
    ],
)
def test_impossible_destinations_are_refused_before_sampling(smcdiff, tmp_path, flag, where, message):
    (tmp_path / "in").mkdir()
    image = _digit(tmp_path / "in" / "digit.png")
    (tmp_path / "somefile.png").write_bytes(b"a picture")
    (tmp_path / "batchout" / "digit.png").mkdir(parents=True)  # a folder where batch mode would write a file
    where = where.replace("FILE", str(tmp_path / "somefile.png"))
    args = ["inpaint", image, "--box", "2,2,4,4", *TINY]
    if where == "DIR":
        args[1] = image.parent  # a batch: the grid of digit.png goes to batchout/digit.png, a folder
        where = tmp_path / "batchout"
        message = "digit.png: is a folder"
    outputs = {"--out": tmp_path / "new" / "o.png", flag: where}  # --out in a folder still to be made
    before = _tree(tmp_path)
    run = smcdiff(*args, *[v for kv in outputs.items() for v in kv])
    refused_before_sampling(run, flag, message)
    assert _tree(tmp_path) == before  # no probe file, no folder made


def test_a_read_only_folder_is_refused_before_sampling(smcdiff, tmp_path, monkeypatch):
    image = _digit(tmp_path / "digit.png")
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: make os.access say what it says to other users
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == locked else real(p, mode, **kw))
    else:
        locked.chmod(0o555)
    try:
        for flag, name in (("--out", "o.png"), ("--save", "run.npz")):
            outputs = {"--out": tmp_path / "o.png", flag: locked / "sub" / name}
            run = smcdiff("inpaint", image, "--box", "2,2,4,4", *TINY, *[v for kv in outputs.items() for v in kv])
            refused_before_sampling(run, f"{flag} {locked / 'sub' / name}: cannot write in {locked}")
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


def test_new_folders_are_made_for_outputs_that_can_be_written(smcdiff, tmp_path):
    image = _digit(tmp_path / "digit.png")
    out = smcdiff("inpaint", image, "--box", "2,2,4,4", *TINY, "--out", tmp_path / "a" / "b" / "o.png",
                  "--save", tmp_path / "c" / "run.npz")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "a" / "b" / "o.png").is_file() and (tmp_path / "c" / "run.npz").is_file()
    assert not [p for p in tmp_path.rglob(".smcdiff-check-*")]


@pytest.mark.parametrize("writer", ["grid", "save", "diagnostics"])
def test_a_write_that_fails_at_the_end_is_one_line_naming_the_path(smcdiff, tmp_path, monkeypatch, writer):
    from smcdiff import plotting, results

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    module, name, flag, path = {
        "grid": (plotting, "save_image_grid", "--out", tmp_path / "o.png"),
        "save": (results, "save_result", "--save", tmp_path / "run.npz"),
        "diagnostics": (plotting, "plot_diagnostics", "--diagnostics", tmp_path / "d.png"),
    }[writer]
    monkeypatch.setattr(module, name, full_disk)
    image = _digit(tmp_path / "digit.png")
    out = smcdiff("inpaint", image, "--box", "2,2,4,4", *TINY, "--out", tmp_path / "o.png", "--save",
                  tmp_path / "run.npz", "--diagnostics", tmp_path / "d.png")
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    last = out.stderr.strip().splitlines()[-1]  # after the warning and the progress bar of the run
    assert last.endswith(f"error: {flag} {path}: cannot write it (No space left on device)"), out.stderr


# ---- result files that were cut or altered ----
def _result(method: str = "smc", populations: int = 1):
    """A small RestoreResult (random contents: the file format does not care where they came from)."""
    from smcdiff import WeightedSamples
    from smcdiff.operators import Mask
    from smcdiff.restore import RestoreResult

    g = torch.Generator().manual_seed(1)
    b, m, steps = 2, 6, 4
    op = Mask(torch.rand(1, 4, 4, generator=g) > 0.5)
    particles = torch.randn(b, m, 1, 4, 4, generator=g)
    log_w = torch.log_softmax(torch.randn(b, m, generator=g, dtype=torch.float64), dim=1)
    if method == "replacement":
        log_w = torch.full((b, m), -math.log(m), dtype=torch.float64)
    y = particles[:, 0].clone()
    ess = 1 + torch.rand(steps, b, generator=g, dtype=torch.float64) * (m - 1)
    resampled = torch.rand(steps, b, generator=g) > 0.5
    evidence = torch.randn(b, generator=g, dtype=torch.float64) if method == "smc" else torch.full((b,), math.nan, dtype=torch.float64)
    lineages = torch.randint(1, m + 1, (steps, b), generator=g)
    w = WeightedSamples(particles, log_w, ess, resampled, evidence, lineages, populations=populations)
    return RestoreResult(particles, log_w, y, op, 0.0, w, method, "bootstrap" if method == "smc" else None, 10, 0.5, {})


def _tamper(path: Path, field: str, change) -> None:
    """Rewrite ``field`` of the result file at ``path`` with ``change(array)`` (keeping everything else)."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        arrays[field] = change(arrays[field])
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    else:
        from safetensors import safe_open
        from safetensors.torch import save_file

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata()
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        tensors[field] = torch.from_numpy(np.ascontiguousarray(change(tensors[field].numpy())))
        save_file(tensors, str(path), metadata=meta)


def _set(index, value):
    def change(a):
        a = a.copy()
        a[index] = value
        return a

    return change


TAMPERINGS = {
    "samples cut to other particles": ("samples", lambda a: a[:, :-1], "samples"),
    "samples without the batch": ("samples", lambda a: a[0], "samples"),
    "samples with NaN": ("samples", _set((0, 0, 0, 0, 0), np.nan), "samples"),
    "log_weights cut": ("log_weights", lambda a: a[:, :-1], "log_weights"),
    "log_weights of another batch": ("log_weights", lambda a: a[:1], "log_weights"),
    "log_weights with NaN": ("log_weights", _set((0, 0), np.nan), "log_weights"),
    "log_weights with +inf": ("log_weights", _set((1, 2), np.inf), "log_weights"),
    "log_weights not normalised": ("log_weights", lambda a: a + 1.0, "log_weights"),
    "log_weights all -inf": ("log_weights", lambda a: np.full_like(a, -np.inf), "log_weights"),
    "log_weights as integers": ("log_weights", lambda a: np.zeros(a.shape, np.int64), "log_weights"),
    "y of another batch": ("y", lambda a: a[:1], "y"),
    "y of another shape": ("y", lambda a: a[..., :2], "y"),
    "y with NaN": ("y", _set((1, 0, 0, 0), np.nan), "y"),
    "y with inf": ("y", _set((0, 0, 1, 1), -np.inf), "y"),
    "ess cut": ("ess", lambda a: a[:, :1], "ess"),
    "ess flat": ("ess", lambda a: a[0], "ess"),
    "ess with NaN": ("ess", _set((2, 1), np.nan), "ess"),
    "ess above the particles": ("ess", _set((0, 0), 1e6), "ess"),
    "resampled of other steps": ("resampled", lambda a: a[:-1], "resampled"),
    "resampled of another batch": ("resampled", lambda a: a[:, :1], "resampled"),
    "log_evidence of another batch": ("log_evidence", lambda a: a[:1], "log_evidence"),
    "log_evidence NaN in a weighted run": ("log_evidence", _set(0, np.nan), "log_evidence"),
    "log_evidence +inf": ("log_evidence", _set(1, np.inf), "log_evidence"),
    "lineages of other steps": ("lineages", lambda a: a[:2], "lineages"),
    "lineages above the particles": ("lineages", _set((0, 0), 99), "lineages"),
    "lineages as floats": ("lineages", lambda a: a.astype(np.float64) + 0.5, "lineages"),
}


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
@pytest.mark.parametrize("tampering", list(TAMPERINGS))
def test_a_tampered_result_file_is_refused_naming_the_field(tmp_path, fmt, tampering):
    from smcdiff.results import ResultFileError, load_result, save_result

    field, change, named = TAMPERINGS[tampering]
    path = save_result(_result(), tmp_path / f"run.{fmt}")
    load_result(path)  # intact: fine
    _tamper(path, field, change)
    with pytest.raises(ResultFileError, match=named) as err:
        load_result(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_populations_that_do_not_divide_the_particles_are_refused(tmp_path, fmt):
    from smcdiff.results import ResultFileError, load_result, save_result

    path = save_result(_result(populations=3), tmp_path / f"run.{fmt}")
    assert load_result(path).weighted.populations == 3
    _tamper(path, "samples", lambda a: a[:, :4])
    _tamper(path, "log_weights", lambda a: a[:, :4] - np.logaddexp.reduce(a[:, :4], axis=1, keepdims=True))
    with pytest.raises(ResultFileError, match="populations"):
        load_result(path)


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_what_valid_files_may_hold(tmp_path, fmt):
    """NaN evidence in an unweighted run, zero weights (-inf log-weights) next to positive ones, no lineages."""
    from smcdiff.results import load_result, save_result

    path = save_result(_result(method="replacement"), tmp_path / f"run.{fmt}")
    assert torch.isnan(load_result(path).weighted.log_evidence).all()
    path = save_result(_result(), tmp_path / f"w.{fmt}")
    _tamper(path, "log_weights", lambda a: np.where(np.arange(a.shape[1]) < 3, -np.inf, a - np.logaddexp.reduce(a[:, 3:], axis=1, keepdims=True)))
    back = load_result(path)
    assert back.draw(5).shape == (2, 5, 1, 4, 4) and back.mean().shape == (2, 1, 4, 4)
    assert torch.isfinite(back.mean()).all()
