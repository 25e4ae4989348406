r"""The score contract and the base class that turns a network prediction into a score.

A *score* is any callable ``score(x, t) -> Tensor`` with ``x: (n, *event_shape)`` and ``t: (n,)``
forward times, returning an estimate of grad_x log p_t(x) with ``x``'s shape.

Networks are usually trained to predict the noise (epsilon), the clean sample (x0) or the velocity
v = alpha eps - sigma x0. With x_t = alpha x_0 + sigma eps (per coordinate),

    epsilon:       s = -eps_hat / sigma
    sample (x0):   s = -(x - alpha x0_hat) / sigma^2
    v_prediction:  eps_hat = (sigma x + alpha v_hat) / (alpha^2 + sigma^2),  s = -eps_hat / sigma

:class:`ScoreModel` does this arithmetic once; a backend overrides the single hook :meth:`predict`.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor, nn

from .sde import SDE, ScoreFn

Prediction = Literal["score", "epsilon", "sample", "v_prediction"]

__all__ = ["ScoreFn", "ScoreModel", "Prediction", "evaluate_score", "Autocast"]


class ScoreModel(nn.Module):
    """Base class of adapters: a network prediction converted to a score for ``sde``.

    Parameters
    ----------
    sde : SDE
        The forward SDE the network was trained with (its alpha(t), sigma(t) are used here).
    prediction : {"score", "epsilon", "sample", "v_prediction"}
        What :meth:`predict` returns; decided once, here.
    """

    def __init__(self, sde: SDE, prediction: Prediction) -> None:
        super().__init__()
        if prediction not in get_args(Prediction):
            raise ValueError(f"prediction must be one of {get_args(Prediction)}, got {prediction!r}")
        self.sde = sde
        self.prediction = prediction
        self._to_score = {
            "score": self._from_score,
            "epsilon": self._from_epsilon,
            "sample": self._from_sample,
            "v_prediction": self._from_v,
        }[prediction]

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        """The network's raw output at ``x: (n, *event)``, forward times ``t: (n,)``."""
        raise NotImplementedError

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        out = self.predict(x, t).to(device=x.device, dtype=x.dtype)  # the network may live elsewhere
        c = self.sde.coefficients(t, x.ndim - 1, like=x)
        return self._to_score(x, out, c.alpha, c.sigma2)

    @staticmethod
    def _from_score(x, out, alpha, sigma2):
        return out

    @staticmethod
    def _from_epsilon(x, out, alpha, sigma2):
        return -out / sigma2.sqrt()

    @staticmethod
    def _from_sample(x, out, alpha, sigma2):
        return -(x - alpha * out) / sigma2

    @staticmethod
    def _from_v(x, out, alpha, sigma2):
        sigma = sigma2.sqrt()
        eps = (sigma * x + alpha * out) / (alpha**2 + sigma2)
        return -eps / sigma


def evaluate_score(score: ScoreFn, x: Tensor, t: Tensor, chunk_size: int | None = None) -> Tensor:
    """Call ``score`` on all rows of ``x`` at once, or in chunks of ``chunk_size`` rows to bound memory.

    Parameters
    ----------
    x : (n, *event_shape)
    t : (n,)
    chunk_size : int, optional
        Largest number of rows per call; ``None`` sends everything in one call.
    """
    if chunk_size is None or chunk_size >= x.shape[0]:
        out = score(x, t)
    else:
        out = torch.cat([score(xc, tc) for xc, tc in zip(x.split(chunk_size), t.split(chunk_size))])
    if out.shape != x.shape:
        raise ValueError(f"score returned shape {tuple(out.shape)} for input of shape {tuple(x.shape)}")
    return out


def check_chunk_size(chunk_size: int | None) -> None:
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")


class Autocast(nn.Module):
    """Run a score's network in reduced precision (``torch.autocast``); everything else stays as it was.

    ``Autocast(score, torch.bfloat16)`` evaluates ``score(x, t)`` under autocast on ``x``'s device type
    and returns the result in ``x``'s dtype: the sampler's arithmetic, the kernels and the float64
    log-weights are untouched. Attributes of the wrapped score (``sde``, ``event_shape``) are forwarded.
    """

    def __init__(self, score: ScoreFn, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        if not callable(score):
            raise ValueError(f"score must be callable as score(x, t), got {type(score).__name__}")
        if dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be torch.bfloat16 or torch.float16, got {dtype}")
        self.score = score
        self.dtype = dtype

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["score"] if "score" in self._modules else self.__dict__["score"], name)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        with torch.autocast(device_type=x.device.type, dtype=self.dtype):
            out = self.score(x, t)
        return out.to(x.dtype)
