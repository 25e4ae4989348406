r"""Log-densities shared by the SDEs, the proposals and the oracle: one formula, one place.

All are elementwise (no sum over coordinates), so callers choose which coordinates count:

    normal_log_prob(x, mean, var) = -1/2 ((x - mean)^2 / var + log(2 pi var))
"""

from __future__ import annotations

import math

from torch import Tensor

__all__ = ["normal_log_prob"]


def normal_log_prob(x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """Elementwise log N(x; mean, var), broadcasting ``x``, ``mean`` and ``var`` (variances, not deviations)."""
    return -0.5 * ((x - mean) ** 2 / var + (2 * math.pi * var).log())
