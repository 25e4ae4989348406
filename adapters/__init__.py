"""Adapters that expose trained networks as score callables ``score(x, t)`` (import name ``smcdiff.adapters``).

Each adapter is a :class:`smcdiff.score.ScoreModel` that overrides one hook, ``predict``, and carries
the forward SDE it was trained with as ``.sde``:

- :class:`DiffusersScore`: a diffusers ``UNet2DModel`` with its scheduler, as a continuous-time VP score;
- :class:`MultiscaleScore`: the in-house multiscale (non-uniform Haar) model;
- :class:`ConditionalScore`: the in-house CDE / CDiffE / CMDE conditional estimators;
- :class:`DenoiserScore`: any variance-exploding denoiser ``D(x, sigma)`` (EDM, k-diffusion, deepinv),
  and its inverse :func:`as_denoiser` / :class:`ScoreDenoiser` (a score model as such a denoiser);
- :func:`from_deepinv_physics`, :class:`DeepinvDenoiser`, :func:`digits_denoiser`, :class:`DiffUNetScore`
  (module ``smcdiff.adapters.deepinv``, needs the optional ``deepinv`` package): deepinv's linear
  physics as smcdiff operators, smcdiff score models as deepinv denoisers, deepinv's DiffUNet as a score.

Imports are lazy so that importing one adapter does not import the others' dependencies.
"""

from importlib import import_module

_LOCATIONS = {
    "DiffusersScore": ".diffusers",
    "MultiscaleScore": ".multiscale",
    "ConditionalScore": ".conditional",
    "DenoiserScore": ".denoiser",
    "ScoreDenoiser": ".denoiser",
    "as_denoiser": ".denoiser",
    "from_deepinv_physics": ".deepinv",
    "DeepinvDenoiser": ".deepinv_models",
    "digits_denoiser": ".deepinv_models",
    "DiffUNetScore": ".deepinv_models",
}

_OPTIONAL = {".deepinv", ".deepinv_models"}  # needs an optional extra: reachable by name, left out of ``import *``

__all__ = [name for name, module in _LOCATIONS.items() if module not in _OPTIONAL]


def __getattr__(name: str):
    if name in _LOCATIONS:
        return getattr(import_module(_LOCATIONS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
