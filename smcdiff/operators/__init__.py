r"""Linear observation operators given matrix-free through their singular value decomposition.

An observation is y = A x + sigma_y eps with A = U diag(s) V^T. Every operator here exposes

- ``Vt(x)``: the coefficients x_bar = V^T x of ``x: (n, *in_shape)``, shape ``(n, *coef_shape)``;
- ``V(c)``: the inverse map ``(n, *coef_shape) -> (n, *in_shape)`` (V is orthogonal);
- ``Ut(y)``: U^T y laid out on the coefficient grid, ``(n, *out_shape) -> (n, *coef_shape)`` (zero on
  coefficients that are not observed);
- ``U(c)``: ``(n, *coef_shape) -> (n, *out_shape)``, reading only the observed coefficients;
- ``s``: the singular values on the coefficient grid (zero where nothing is observed) and ``observed``,
  the bool grid of observed coefficients; both may carry a leading batch dimension (a mask per row).

From these, once, in :class:`Operator` (``base.py``): ``A(x) = U(s * Vt(x))``, ``At(y) = V(s * Ut(y))`` and the pseudo-inverse
``A_pinv(y) = V(Ut(y) / s)`` on observed coefficients. In the singular basis each observed coefficient
is seen on its own, y_bar_i = (Ut(y) / s)_i = x_bar_i + (sigma_y / s_i) eps_i, which is what the
samplers of :mod:`smcdiff.proposals` work with (Cardoso et al. 2024, MCGdiff, §3). A bool mask is the
operator with V = I and s = mask.

Operators that do not fix the image size (``Downsample``, ``Blur``, ``Grayscale``) read it from the
data: :meth:`Operator.bind` returns the operator for a given input event shape and checks it.
"""

from .base import Operator
from .dense import Dense
from .image import Blur, ChannelBasis, Downsample, Grayscale, basis_with_first
from .mask import Mask, as_operator

__all__ = ["Operator", "Mask", "Downsample", "Blur", "Grayscale", "Dense", "as_operator", "ChannelBasis", "basis_with_first"]

for _public in (Operator, Mask, Downsample, Blur, Grayscale, Dense, ChannelBasis):
    _public.__module__ = __name__  # where users import them from (and what saved results record)
del _public
