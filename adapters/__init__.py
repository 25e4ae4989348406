"""Adapters that expose trained networks as score callables ``score(x, t)`` (``smcdiff.adapters``)."""
