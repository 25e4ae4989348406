"""Moved: the toy problems to :mod:`smcdiff.oracle.toy`, the validation table to :mod:`smcdiff.toy_table`;
this path stays importable for code written against smcdiff 0.1."""

from . import toy_table as _table
from .oracle import toy as _problems
from .oracle.toy import *  # noqa: F401,F403
from .toy_table import *  # noqa: F401,F403

__all__ = [*_problems.__all__, *_table.__all__]
