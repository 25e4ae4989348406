r"""Forward SDEs with exact Gaussian marginals, uniform or per coordinate ("non-uniform").

Every SDE here is linear with a diagonal diffusion (eq. 8-9 of "Non-Uniform Diffusion Models"),

    dx^i = f_i(t) x^i dt + g_i(t) dw^i,

so the marginal given data is Gaussian, x_t = alpha(t) x_0 + sigma(t) eps, with

    f(t) = d log alpha / dt,        g(t)^2 = d sigma^2 / dt - 2 f(t) sigma(t)^2.

A subclass supplies ``log_alpha``, ``sigma2`` and their derivatives; everything else (transitions,
bridges, reverse kernels, the prior) is derived once, in :class:`SDE` (``base.py``); the concrete
schedules are in ``schedules.py``.

Schedule parameters may be tensors broadcastable to the event shape: then each coordinate diffuses at
its own speed (CMDE's slower condition channels, multiscale diffusion's per-group terminal times). All
coefficients returned by ``coefficients`` have shape ``(n, *param_shape)``; ``_expand`` right-aligns
them against an event of any rank.
"""

from .base import SDE, Coefficients
from .schedules import OU, VE, VP, LogLinearVP, TabulatedVP

__all__ = ["SDE", "OU", "VP", "VE", "LogLinearVP", "TabulatedVP", "Coefficients"]

for _public in (SDE, Coefficients, OU, VP, VE, LogLinearVP, TabulatedVP):
    _public.__module__ = __name__  # where users import them from
del _public
