r"""The multiscale non-uniform forward process ("Non-Uniform Diffusion Models" §3.3, §4.1) and its exact Gaussian scores.

Images x are mapped to the packed n-level Haar coefficients c = [a_n, d_n, ..., d_1]
(:class:`~smcdiff.msdiff.haar.HaarPacking`). Every coefficient diffuses by a variance-preserving SDE
with log-linear SNR (:class:`smcdiff.sde.LogLinearVP`, eq. 8-9 with a per-coordinate terminal
time): all groups start from the same ``snr_max`` at ``eps``, reach the same ``snr_min`` at their
own terminal time

    T_{a_n} = 1,    T_{d_i} = i / (n + 1),

and are frozen afterwards (f = g = 0), so in the time range

    R_i = [(i - 1)/(n + 1), i/(n + 1)]   (R_1 = [eps, 1/(n + 1)])

only c_i = [a_n, d_n, ..., d_i] moves. By default ``snr_max`` and ``snr_min`` are those of the
uniform baseline, the beta-linear VP SDE, at ``eps`` and at 1 (:func:`snr_range`, §4.1).

Anything with a :class:`MultiscaleProcess` as ``.process`` and one score per scale is a
:class:`ScaleScores`: the trained :class:`~smcdiff.msdiff.models.MultiscaleModel`, or the exact
:class:`GaussianScales` of Gaussian data, against which the sampler is tested.
"""

from __future__ import annotations

import itertools
import math
from typing import Protocol

import torch
from torch import Tensor

from ..oracle.gaussian import GaussianScore
from ..sde import SDE, LogLinearVP
from .haar import HaarPacking

__all__ = ["MultiscaleProcess", "ScaleScores", "GaussianScales", "snr_range"]


def check_positive_int(name: str, value) -> None:
    """A ``ValueError`` naming ``name`` unless ``value`` is a positive ``int``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def snr_range(sde: SDE) -> tuple[float, float]:
    """``(snr_max, snr_min)``: alpha^2 / sigma^2 of a scalar-schedule SDE at ``eps`` and at ``T``."""
    if sde.param_shape != torch.Size([]):
        raise ValueError("sde must have a scalar schedule (one speed for all coordinates)")
    log_snr = sde.log_snr(torch.tensor([sde.eps, sde.T], dtype=torch.float64))
    return math.exp(log_snr[0].item()), math.exp(log_snr[1].item())


class MultiscaleProcess:
    """The non-uniform forward process of §3.3 on packed Haar coefficients.

    Parameters
    ----------
    packing : HaarPacking with n = ``packing.levels`` >= 1.
    snr_max, snr_min : SNR of every group at ``eps`` and at its terminal time.
    eps : smallest time.

    Attributes
    ----------
    sde : LogLinearVP on the full vector, ``param_shape == (D,)``, ``t_end`` = level / (n + 1).
    num_scales : n + 1.
    """

    def __init__(self, packing: HaarPacking, snr_max: float, snr_min: float, eps: float = 1e-3) -> None:
        if not isinstance(packing, HaarPacking):
            raise ValueError(f"packing must be a HaarPacking, got {type(packing).__name__}")
        if packing.levels < 1:
            raise ValueError(f"packing.levels must be at least 1 for a multiscale process, got {packing.levels}")
        self.packing = packing
        self.levels = packing.levels
        self.num_scales = packing.levels + 1
        self.t_end = packing.group_level() / self.num_scales  # (D,)
        self.sde = LogLinearVP(snr_max=snr_max, snr_min=snr_min, t_end=self.t_end, T=1.0, eps=eps)
        self.eps = self.sde.eps
        # The same SDE restricted to the prefix c_i (one LogLinearVP, another parameter tensor).
        self._scale_sdes = [
            LogLinearVP(snr_max=snr_max, snr_min=snr_min, t_end=self.t_end[: packing.scale_dim(i)], T=1.0, eps=eps)
            for i in range(1, self.num_scales + 1)
        ]

    def _check_scale(self, i: int) -> None:
        self.packing._check_scale(i)

    def scale_dim(self, i: int) -> int:
        """D_i = dim c_i."""
        return self.packing.scale_dim(i)

    def scale_sde(self, i: int) -> LogLinearVP:
        """The forward SDE of c_i: :attr:`sde` restricted to the first D_i coordinates."""
        self._check_scale(i)
        return self._scale_sdes[i - 1]

    def time_range(self, i: int) -> tuple[float, float]:
        """R_i = ``((i - 1)/(n + 1), i/(n + 1))``, with ``eps`` as the lower end of R_1."""
        self._check_scale(i)
        return (self.eps if i == 1 else (i - 1) / self.num_scales, i / self.num_scales)

    def scale_of(self, t: Tensor) -> Tensor:
        """Scale index i (1..n+1) whose range holds each time, ``(n,)`` long.

        Boundary times belong to the finer scale (``t = i/(n+1)`` -> i): exactly the coordinates with
        ``t <= t_end`` move in the SDE, and the comparison is made in ``t``'s dtype as there.
        """
        if not isinstance(t, Tensor) or t.ndim != 1 or not t.is_floating_point():
            raise ValueError(f"t must be a floating-point tensor of shape (n,), got {getattr(t, 'shape', t)!r}")
        bounds = (torch.arange(1, self.num_scales, dtype=torch.float64) / self.num_scales).to(t)
        return 1 + (t[:, None] > bounds[None]).sum(1)

    def split_steps(self, steps: int) -> list[int]:
        """Steps per scale ``[k_1, ..., k_{n+1}]`` summing to ``steps``, proportional to |R_i| (largest remainders)."""
        check_positive_int("steps", steps)
        if steps < self.num_scales:
            raise ValueError(f"steps must be at least the number of scales ({self.num_scales}), got {steps}")
        lengths = [hi - lo for lo, hi in map(self.time_range, range(1, self.num_scales + 1))]
        ideal = [steps * ln / sum(lengths) for ln in lengths]
        counts = [max(1, math.floor(v)) for v in ideal]
        order = sorted(range(len(ideal)), key=lambda k: ideal[k] - math.floor(ideal[k]), reverse=True)
        for k in itertools.islice(itertools.cycle(order), max(0, steps - sum(counts))):
            counts[k] += 1
        while sum(counts) > steps:  # only when a short range was raised to one step
            counts[counts.index(max(counts))] -= 1
        return counts

    def scale_grid(self, i: int, steps: int) -> Tensor:
        """Uniform decreasing grid on R_i, ``(steps + 1,)`` float64, from i/(n+1) to its lower end."""
        check_positive_int("steps", steps)
        lo, hi = self.time_range(i)
        return torch.linspace(hi, lo, steps + 1, dtype=torch.float64)

    def __repr__(self) -> str:
        p = self.packing
        return f"MultiscaleProcess(levels={self.levels}, image={p.image_shape}, sde={self.sde!r})"


class ScaleScores(Protocol):
    """What the multiscale sampler and the adapter need: the process and one score per scale."""

    process: MultiscaleProcess

    def scale_score(self, i: int, c_i: Tensor, t: Tensor) -> Tensor:
        """Score of c_i(t): ``c_i: (n, D_i)``, ``t: (n,)`` in R_i -> ``(n, D_i)``."""


class GaussianScales:
    """Exact per-scale scores of N(mean, cov) data in Haar coordinates (the non-uniform Gaussian oracle).

    Scale i gets the exact score of the marginal of c_i(t), a :class:`smcdiff.GaussianScore` of the
    sub-vector ``mean[:D_i]``, ``cov[:D_i, :D_i]`` under :meth:`MultiscaleProcess.scale_sde`.

    Parameters
    ----------
    process : MultiscaleProcess
    mean : (D,) and cov : (D, D), the law of the packed coefficients c_0.
    """

    def __init__(self, process: MultiscaleProcess, mean: Tensor, cov: Tensor) -> None:
        d = process.packing.dim
        mean, cov = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(cov, dtype=torch.float64)
        if mean.shape != (d,):
            raise ValueError(f"mean must have shape ({d},), got {tuple(mean.shape)}")
        if cov.shape != (d, d):
            raise ValueError(f"cov must have shape ({d}, {d}), got {tuple(cov.shape)}")
        self.process = process
        self.scores = [
            GaussianScore(mean[: process.scale_dim(i)], cov[: process.scale_dim(i), : process.scale_dim(i)], process.scale_sde(i))
            for i in range(1, process.num_scales + 1)
        ]

    def scale_score(self, i: int, c_i: Tensor, t: Tensor) -> Tensor:
        self.process._check_scale(i)
        return self.scores[i - 1](c_i, t)
