"""Every Python block of the README runs as printed, in reading order (blocks marked ``<!-- not run: ... -->``
need extras, a GPU or the network and are left out)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[tuple[int, str]]:
    text = README.read_text()
    blocks = []
    for m in re.finditer(r"(<!-- not run:[^>]*-->\n)?```python\n(.*?)```", text, re.S):
        if m.group(1) is None:
            blocks.append((text[: m.start()].count("\n") + 1, m.group(2)))
    return blocks


def test_the_readme_has_python_blocks():
    assert len(_blocks()) >= 5


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # files the snippets write land here
    namespace: dict = {}
    for line, code in _blocks():
        try:
            exec(compile(code, f"README.md:{line}", "exec"), namespace)
        except Exception as err:  # noqa: BLE001 - report which block failed
            raise AssertionError(f"the README's Python block at line {line} fails: {type(err).__name__}: {err}") from err
