"""Moved to :mod:`smcdiff.oracle.gaussian`; this path stays importable (as the same module) for code written
against smcdiff 0.1."""

import sys

from .oracle import gaussian as _module

sys.modules[__name__] = _module
