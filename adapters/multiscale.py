r"""The in-house multiscale model ("Non-Uniform Diffusion Models" §3.3) as a score on the full coefficient vector.

The multiscale model has one network per time range R_i = [(i-1)/(n+1), i/(n+1)], each defined on
the moving coefficients c_i = [a_n, d_n, ..., d_i] only. The samplers of smcdiff want one score on
the whole event, here the packed Haar vector c = [a_n, d_n, ..., d_1] of length D, for the model's
non-uniform SDE (:class:`smcdiff.sde.LogLinearVP`, exposed as ``.sde``). :class:`MultiscaleScore`
returns, for a row at time t in R_i,

- on c_i: the scale network's score s_i(c_i, t);
- on the frozen detail groups d_1..d_{i-1} (past their terminal time, f = g = 0): by default the
  score of the prior N(0, prior_std^2), -x / prior_std^2. A frozen group sits at SNR ``snr_min``
  and is, up to O(snr_min), independent of everything else and distributed as the prior, so this
  is the true score of the full vector to that order. ``frozen="zero"`` returns 0 instead. Either
  way the reverse SDE does not move those coordinates (their g^2 multiplies the score).

Running :func:`smcdiff.sample` with this adapter on ``(n, D)`` is then the multiscale sampler of
§3.3.2 up to the placement of the time grid: the frozen groups start from the prior draw at t = 1
and stay there until their range begins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from smcdiff.msdiff.models import MultiscaleModel, load_multiscale
from smcdiff.msdiff.process import MultiscaleProcess, ScaleScores
from smcdiff.score import ScoreModel

__all__ = ["MultiscaleScore"]

Frozen = Literal["prior", "zero"]


class MultiscaleScore(ScoreModel):
    """Score ``score(c, t)`` of a multiscale model on packed Haar coefficients ``c: (n, D)``.

    Parameters
    ----------
    model : a :class:`smcdiff.msdiff.multiscale.MultiscaleModel`, or any object with a
        :class:`~smcdiff.msdiff.multiscale.MultiscaleProcess` as ``.process`` and
        ``.scale_score(i, c_i, t)`` (e.g. the exact :class:`~smcdiff.msdiff.multiscale.GaussianScales`).
    frozen : ``"prior"`` (default) or ``"zero"``, the score on frozen coefficients (module docstring).

    Attributes
    ----------
    sde : the non-uniform LogLinearVP of the model, ``param_shape == (D,)``.
    event_shape : (D,).
    packing : HaarPacking; ``packing.forward`` / ``packing.inverse`` map images to ``c`` and back.
    """

    def __init__(self, model: ScaleScores, frozen: Frozen = "prior") -> None:
        process = getattr(model, "process", None)
        if not isinstance(process, MultiscaleProcess) or not callable(getattr(model, "scale_score", None)):
            raise ValueError("model must have a MultiscaleProcess as .process and a method scale_score(i, c_i, t)")
        if frozen not in ("prior", "zero"):
            raise ValueError(f"frozen must be 'prior' or 'zero', got {frozen!r}")
        super().__init__(process.sde, "score")
        self.model = model
        self.process = process
        self.packing = process.packing
        self.frozen = frozen
        self.event_shape = (self.packing.dim,)

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        """The score on the full vector: ``x: (n, D)``, ``t: (n,)`` -> ``(n, D)``; rows may be in different ranges."""
        d = self.packing.dim
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != d:
            raise ValueError(f"x must have shape (n, {d}), got {tuple(getattr(x, 'shape', ()))}")
        if not isinstance(t, Tensor) or t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},), got {tuple(getattr(t, 'shape', ()))}")
        self.sde.check_times(t)
        if self.frozen == "prior":
            out = -x / self.sde.prior_std(like=x) ** 2
        else:
            out = torch.zeros_like(x)
        scales = self.process.scale_of(t)
        for i in scales.unique().tolist():
            rows = (scales == i).nonzero().squeeze(1)
            d_i = self.process.scale_dim(i)
            out[rows, :d_i] = self.model.scale_score(i, x[rows, :d_i], t[rows]).to(x.dtype)
        return out

    def to_images(self, c: Tensor) -> Tensor:
        """Images ``(n, C, H, W)`` of packed coefficients ``c: (n, D)``."""
        return self.packing.inverse(c)

    def from_images(self, x: Tensor) -> Tensor:
        """Packed coefficients ``(n, D)`` of images ``x: (n, C, H, W)``."""
        return self.packing.forward(x)

    @classmethod
    def from_pretrained(
        cls, path: str | Path = "multiscale", device: torch.device | str | None = None, frozen: Frozen = "prior"
    ) -> "MultiscaleScore":
        """Wrap a saved :class:`MultiscaleModel` (a folder, or ``"multiscale"`` for the shipped digits model)."""
        model = load_multiscale(path, device)
        if not isinstance(model, MultiscaleModel):
            raise ValueError(f"{path!r} holds a {type(model).__name__}, not a MultiscaleModel")
        return cls(model, frozen)
