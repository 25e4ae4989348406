"""Moved to :mod:`smcdiff.oracle.linear_gaussian`; this path stays importable for code written against smcdiff 0.1."""

from .oracle.linear_gaussian import *  # noqa: F401,F403
from .oracle.linear_gaussian import __all__  # noqa: F401
