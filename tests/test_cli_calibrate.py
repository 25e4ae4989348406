"""``smcdiff calibrate``: a table, a verdict, the ranks and the plot; careless arguments get one line."""


import pytest

from smcdiff.calibration import load_sbc

TINY = ["--problems", "24", "--draws", "3", "--steps", "3", "--particles", "2", "--directions", "2"]




def test_calibrate_prints_a_table_and_a_verdict_and_saves_the_ranks(smcdiff, tmp_path):
    pytest.importorskip("matplotlib")
    out = smcdiff("calibrate", "--task", "sr", "--noise", "0.05", "--proposal", "mcgdiff", *TINY,
                  "--save", tmp_path / "calib", "--plot", tmp_path / "calib.png")
    assert out.returncode == 0, out.stderr
    assert "Calibration of smc (mcgdiff), M = 2, P = 3 run(s)" in out.stdout
    for word in ("coordinates", "directions", "fit", "all", "cov 90%"):
        assert word in out.stdout
    assert "calibrated at level 0.01" in out.stdout or "rejects calibration" in out.stdout
    res = load_sbc(tmp_path / "calib.npz")
    assert res.ranks.shape == (24, 64 + 2 + 1) and res.draws == 3 and res.ranks.max() <= 3
    assert res.meta["proposal"] == "mcgdiff" and res.meta["populations"] == 3
    assert (tmp_path / "calib.png").stat().st_size > 0


def test_one_run_and_replacement_settings(smcdiff, tmp_path):
    one = smcdiff("calibrate", "--task", "inpaint", "--box", "2,2,4,4", "--populations", "1", *TINY)
    assert one.returncode == 0, one.stderr
    assert "P = 1 run(s)" in one.stdout
    rep = smcdiff("calibrate", "--task", "inpaint", "--method", "replacement", *TINY)
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout.startswith("Calibration of replacement")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "inpaint", "--factor", "2"], "--factor applies to --task sr"),
        (["--task", "sr", "--box", "1,1,2,2"], "--box applies to --task inpaint"),
        (["--task", "inpaint", "--box", "6,6,4,4"], "--box"),
        (["--task", "denoise"], "--task denoise needs --noise"),
        (["--task", "inpaint", "--method", "replacement", "--noise", "0.1"], "needs --noise 0"),
        (["--task", "inpaint", "--method", "replacement", "--proposal", "bootstrap"], "--proposal applies to --method smc"),
        (["--task", "inpaint", "--noise", "0.1", "--proposal", "bootstrap"], "needs noise_std=0"),
        (["--task", "inpaint", "--twist-variance", "2"], "--twist-variance applies to --proposal twisted"),
        (["--task", "sr", "--save", "out.txt"], "saved as .npz"),
        (["--task", "sr", "--problems", "1"], "--problems must be at least 2"),
    ],
)
def test_careless_arguments_get_one_line(smcdiff, args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra = [] if "--problems" in args else ["--problems", "24"]
    out = smcdiff("calibrate", *args, "--steps", "2", *extra)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
