"""Adapters that expose trained networks as score callables ``score(x, t)`` (import name ``smcdiff.adapters``).

Each adapter is a :class:`smcdiff.score.ScoreModel` that overrides one hook, ``predict``, and carries
the forward SDE it was trained with as ``.sde``:

- :class:`DiffusersScore`: a diffusers ``UNet2DModel`` with its scheduler, as a continuous-time VP score;
- :class:`MultiscaleScore`: the in-house multiscale (non-uniform Haar) model;
- :class:`ConditionalScore`: the in-house CDE / CDiffE / CMDE conditional estimators.

Imports are lazy so that importing one adapter does not import the others' dependencies.
"""

from importlib import import_module

_LOCATIONS = {
    "DiffusersScore": ".diffusers",
    "MultiscaleScore": ".multiscale",
    "ConditionalScore": ".conditional",
}

__all__ = list(_LOCATIONS)


def __getattr__(name: str):
    if name in _LOCATIONS:
        return getattr(import_module(_LOCATIONS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
