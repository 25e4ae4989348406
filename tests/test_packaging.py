"""The package as shipped: every subpackage is listed for the wheel, and the version is one number."""

import tomllib
from pathlib import Path

import smcdiff

ROOT = Path(__file__).resolve().parents[1]


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_ships_in_the_wheel():
    listed = set(_config()["tool"]["setuptools"]["packages"])
    found = {"smcdiff." + ".".join(p.parent.relative_to(ROOT / "smcdiff").parts) for p in (ROOT / "smcdiff").rglob("__init__.py")}
    found = {name.rstrip(".") for name in found}
    found |= {"smcdiff.adapters." + ".".join(p.parent.relative_to(ROOT / "adapters").parts) for p in (ROOT / "adapters").rglob("__init__.py")}
    found = {name.rstrip(".") for name in found}
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"
    assert listed <= found, f"pyproject.toml lists packages that do not exist: {sorted(listed - found)}"


def test_the_version_is_the_same_everywhere():
    assert _config()["project"]["version"] == smcdiff.__version__


def test_python_m_smcdiff_runs_the_command(monkeypatch, capsys):
    import runpy
    import sys

    import pytest

    monkeypatch.setattr(sys, "argv", ["smcdiff", "--version"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("smcdiff", run_name="__main__")
    assert exit_.value.code == 0 and smcdiff.__version__ in capsys.readouterr().out
