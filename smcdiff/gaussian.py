"""Moved to :mod:`smcdiff.oracle.gaussian`; this path stays importable for code written against smcdiff 0.1."""

from .oracle.gaussian import *  # noqa: F401,F403
from .oracle.gaussian import __all__  # noqa: F401
