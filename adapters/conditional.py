r"""Adapter: a CDE / CDiffE / CMDE estimator bound to an observation, as a score ``score(x, t)``.

:class:`ConditionalScore` fixes the condition ``y`` (and the operator channels ``aux``) of each row
and exposes the estimate of grad_x log p(x_t | y) of :func:`smcdiff.msdiff.conditional.conditional_score`
under the score contract, with ``.sde`` the VE SDE of x. Any sampler of smcdiff then integrates the
conditional reverse SDE (eq. 11 of "Non-Uniform Diffusion Models"); for CDiffE and CMDE each call
draws a fresh y^_t ~ p(y_t | y) (§3.4.2).

Row i of ``x`` is paired with row i of ``y``, so a call must pass exactly ``y.shape[0]`` rows (the
samplers' ``chunk_size`` cannot be used; :func:`smcdiff.baselines.sample_conditional`, the sampler
with this score, chunks by observation instead).
"""

from __future__ import annotations

import torch
from torch import Tensor

from smcdiff.msdiff.conditional_losses import conditional_score
from smcdiff.msdiff.estimator import ConditionalEstimator
from smcdiff.msdiff.observation import Observation
from smcdiff.score import ScoreModel

__all__ = ["ConditionalScore"]


class ConditionalScore(ScoreModel):
    """The conditional score of an estimator at a fixed observation.

    Parameters
    ----------
    estimator : ConditionalEstimator or any object with its protocol
        (``kind``, ``x_channels``, ``sde_x``, ``sde_y``, ``__call__(v_t, t, cond)``; see
        :mod:`smcdiff.msdiff.conditional`), e.g. an exact Gaussian oracle.
    y : (n, C_y, ...)
        The condition of each row (undiffused).
    aux : (n, A, ...) or None
        Operator channels (the inpainting mask); None when the estimator takes none.
    generator : torch.Generator, optional
        Draws y^_t at every call for CDiffE / CMDE; unused by CDE.

    Notes
    -----
    ``prediction`` is ``"score"``: the estimator already returns a score (its backbone's noise
    prediction is converted with the SDE of the diffused variable).
    """

    def __init__(
        self,
        estimator: ConditionalEstimator,
        y: Tensor,
        aux: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        kind = getattr(estimator, "kind", None)
        if kind not in ("cde", "cdiffe", "cmde") or not callable(estimator):
            raise ValueError(f"estimator must be a CDE/CDiffE/CMDE estimator, got {type(estimator).__name__}")
        if not isinstance(y, Tensor) or not y.is_floating_point() or y.ndim < 2:
            raise ValueError("y must be a floating-point tensor of shape (n, C_y, ...)")
        if aux is not None and (not isinstance(aux, Tensor) or aux.shape[0] != y.shape[0] or aux.ndim != y.ndim):
            raise ValueError(f"aux must have shape (n, A, ...) with n = {y.shape[0]}, got {getattr(aux, 'shape', aux)}")
        super().__init__(estimator.sde_x, "score")
        self.estimator = estimator
        self.y = y
        self.aux = aux
        self.generator = generator

    @classmethod
    def from_observation(
        cls, estimator: ConditionalEstimator, observation: Observation, *, generator: torch.Generator | None = None
    ) -> "ConditionalScore":
        """Bind ``observation.y`` and ``observation.aux`` (see :func:`smcdiff.msdiff.conditional.observe`)."""
        return cls(estimator, observation.y, observation.aux, generator=generator)

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        """grad_x log p(x_t | y) estimate at ``x: (n, C_x, ...)``, ``t: (n,)``."""
        if x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"x has {x.shape[0]} rows but the score is bound to {self.y.shape[0]} observations; "
                "pass one row per observation (no chunk_size)"
            )
        y = self.y.to(x)
        aux = None if self.aux is None else self.aux.to(x)
        return conditional_score(self.estimator, x, t, y, aux, generator=self.generator)

