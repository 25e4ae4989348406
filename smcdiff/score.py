r"""The score contract and the base class that turns a network prediction into a score.

A *score* is any callable ``score(x, t) -> Tensor`` (:data:`ScoreFn`) with ``x: (n, *event_shape)``
and ``t: (n,)`` forward times, returning an estimate of grad_x log p_t(x) with ``x``'s shape. A score
may also carry ``sde`` (the forward SDE it belongs to) and ``event_shape`` (the shape of one sample,
which samplers use to check an operator against the model); :class:`ScoreModel` declares both.

Networks are usually trained to predict the noise (epsilon), the clean sample (x0) or the velocity
v = alpha eps - sigma x0. With x_t = alpha x_0 + sigma eps (per coordinate),

    epsilon:       s = -eps_hat / sigma
    sample (x0):   s = -(x - alpha x0_hat) / sigma^2
    v_prediction:  eps_hat = (sigma x + alpha v_hat) / (alpha^2 + sigma^2),  s = -eps_hat / sigma

:func:`prediction_to_score` does this arithmetic once; :class:`ScoreModel` applies it to the output of
the single hook a backend overrides, :meth:`ScoreModel.predict`. In-house networks receive the
timestep :func:`network_timestep` (``t * TIME_SCALE``, diffusers' timestep range).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Literal, get_args

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from .sde import SDE

ScoreFn = Callable[[Tensor, Tensor], Tensor]
"""``score(x: (n, *event_shape), t: (n,)) -> (n, *event_shape)``, an estimate of grad_x log p_t(x)."""

Prediction = Literal["score", "epsilon", "sample", "v_prediction"]

TIME_SCALE = 1000.0
"""In-house networks receive forward time ``t`` in [0, 1] as the timestep ``t * TIME_SCALE``."""

__all__ = [
    "ScoreFn",
    "ScoreModel",
    "Prediction",
    "prediction_to_score",
    "network_timestep",
    "TIME_SCALE",
    "evaluate_score",
    "Autocast",
]


def prediction_to_score(prediction: Prediction, x: Tensor, out: Tensor, alpha: Tensor, sigma2: Tensor) -> Tensor:
    """The score at ``x`` from a network output ``out`` of kind ``prediction``, for x_t = alpha x_0 + sigma eps.

    ``alpha`` and ``sigma2`` broadcast against ``x`` (per coordinate for non-uniform SDEs). Training
    targets convert the same way: ``prediction_to_score("epsilon", x_t, noise, ...)`` is -noise / sigma.
    """
    if prediction == "score":
        return out
    if prediction == "epsilon":
        return -out / sigma2.sqrt()
    if prediction == "sample":
        return -(x - alpha * out) / sigma2
    if prediction == "v_prediction":
        sigma = sigma2.sqrt()
        eps = (sigma * x + alpha * out) / (alpha**2 + sigma2)
        return -eps / sigma
    raise ValueError(f"prediction must be one of {get_args(Prediction)}, got {prediction!r}")


def network_timestep(t: Tensor) -> Tensor:
    """The timestep an in-house network receives for forward times ``t``: ``t * TIME_SCALE``."""
    return t * TIME_SCALE


class ScoreModel(nn.Module):
    """Base class of adapters: a network prediction converted to a score for ``sde``.

    Parameters
    ----------
    sde : SDE
        The forward SDE the network was trained with (its alpha(t), sigma(t) are used here).
    prediction : {"score", "epsilon", "sample", "v_prediction"}
        What :meth:`predict` returns; decided once, here.

    Attributes
    ----------
    event_shape : tuple of int or None
        The shape of one sample, set by adapters that know it (None: any shape the SDE accepts).
    """

    event_shape: tuple[int, ...] | None = None

    def __init__(self, sde: "SDE", prediction: Prediction) -> None:
        super().__init__()
        if prediction not in get_args(Prediction):
            raise ValueError(f"prediction must be one of {get_args(Prediction)}, got {prediction!r}")
        self.sde = sde
        self.prediction = prediction

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        """The network's raw output at ``x: (n, *event)``, forward times ``t: (n,)``."""
        raise NotImplementedError

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        out = self.predict(x, t).to(device=x.device, dtype=x.dtype)  # the network may live elsewhere
        c = self.sde.coefficients(t, x.ndim - 1, like=x)
        return prediction_to_score(self.prediction, x, out, c.alpha, c.sigma2)


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
    if chunk_size is not None and (not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1):
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
