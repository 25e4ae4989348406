"""The version of smcdiff, in one place (pyproject.toml carries the same number; a test checks both)."""

__version__ = "0.3.0"
