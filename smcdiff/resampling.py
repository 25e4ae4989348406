r"""Resampling schemes and the effective sample size, vectorised over rows.

Every scheme has the signature ``(log_weights: (B, M), generator) -> ancestors: (B, M) int64`` and
is registered by name in :data:`RESAMPLERS`. Weights are normalised in float64 with ``logsumexp``;
the float64 cumulative sum is divided by its last entry, so the bin of the last particle of positive
weight ends at exactly 1 whatever the rounding, and an index is never past that particle (a uniform
(j + U) / M can round up to 1): a particle of zero weight (log-weight -inf) is never selected. All
schemes are unbiased: E[#copies of i] = M w_i.

- multinomial: M i.i.d. draws from the categorical law w.
- stratified: one uniform per stratum [(j + U_j)/M].
- systematic: one uniform shared by all strata [(j + U)/M]; copies of i lie in {floor(M w_i), ceil(M w_i)}.
- residual: floor(M w_i) deterministic copies, the rest multinomial on the residual weights.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor

__all__ = ["RESAMPLERS", "Resampling", "resample", "ess", "normalize_log_weights"]

Resampling = Literal["multinomial", "stratified", "systematic", "residual"]


def normalize_log_weights(log_weights: Tensor) -> Tensor:
    """float64 log-weights with ``logsumexp`` over the last dimension equal to 0."""
    lw = log_weights.to(torch.float64)
    return lw - torch.logsumexp(lw, dim=-1, keepdim=True)


def ess(log_weights: Tensor) -> Tensor:
    """Effective sample size 1 / sum_i w_i^2 per row; ``(B, M) -> (B,)``."""
    lw = normalize_log_weights(log_weights)
    return torch.exp(-torch.logsumexp(2 * lw, dim=-1))


def _inverse_cdf(log_weights: Tensor, u: Tensor) -> Tensor:
    """Ancestors for uniforms ``u: (B, M)`` in [0, 1] by inverting the float64 weight CDF.

    A zero weight adds nothing to the cumulative sum, so its bin is empty and ``searchsorted`` (the first
    bin whose end exceeds u) passes it over; the last positive weight's bin ends at cdf / cdf[-1] = 1
    exactly, and u = 1 goes to that particle.
    """
    w = normalize_log_weights(log_weights).exp()
    cdf = torch.cumsum(w, dim=-1)
    cdf = cdf / cdf[..., -1:]
    idx = torch.searchsorted(cdf, u.contiguous(), right=True)
    last_positive = torch.argmax((w > 0).long().cumsum(-1), dim=-1, keepdim=True)
    return torch.minimum(idx, last_positive)


def _uniforms(shape: tuple[int, ...], generator: torch.Generator | None, device) -> Tensor:
    return torch.rand(shape, generator=generator, dtype=torch.float64, device=device)


def multinomial(log_weights: Tensor, generator: torch.Generator | None = None) -> Tensor:
    b, m = log_weights.shape
    return _inverse_cdf(log_weights, _uniforms((b, m), generator, log_weights.device))


def stratified(log_weights: Tensor, generator: torch.Generator | None = None) -> Tensor:
    b, m = log_weights.shape
    j = torch.arange(m, dtype=torch.float64, device=log_weights.device)
    return _inverse_cdf(log_weights, (j + _uniforms((b, m), generator, log_weights.device)) / m)


def systematic(log_weights: Tensor, generator: torch.Generator | None = None) -> Tensor:
    b, m = log_weights.shape
    j = torch.arange(m, dtype=torch.float64, device=log_weights.device)
    return _inverse_cdf(log_weights, (j + _uniforms((b, 1), generator, log_weights.device)) / m)


def residual(log_weights: Tensor, generator: torch.Generator | None = None) -> Tensor:
    b, m = log_weights.shape
    w = normalize_log_weights(log_weights).exp()
    counts = torch.floor(m * w)
    counts = torch.minimum(counts, torch.full_like(counts, m))
    rest = (m - counts.sum(-1)).long()  # (B,) draws left for the residual part
    res_w = (m * w - counts).clamp_min(0.0)
    res_lw = torch.where(rest[:, None] > 0, res_w.log(), torch.zeros_like(res_w))
    extra = multinomial(res_lw, generator)  # (B, M) i.i.d. draws; the first rest[b] of row b are used
    use = torch.arange(m, device=w.device)[None, :] < rest[:, None]
    counts = counts.long() + torch.zeros_like(counts, dtype=torch.long).scatter_add_(1, extra, use.long())
    return torch.repeat_interleave(
        torch.arange(m, device=w.device).repeat(b), counts.reshape(-1)
    ).reshape(b, m)


RESAMPLERS: dict[str, Callable[[Tensor, torch.Generator | None], Tensor]] = {
    "multinomial": multinomial,
    "stratified": stratified,
    "systematic": systematic,
    "residual": residual,
}


def resample(log_weights: Tensor, scheme: Resampling = "systematic", generator: torch.Generator | None = None) -> Tensor:
    """Ancestor indices ``(B, M)`` drawn with the named scheme from ``log_weights: (B, M)``."""
    if scheme not in RESAMPLERS:
        raise ValueError(f"resampling must be one of {sorted(RESAMPLERS)}, got {scheme!r}")
    if log_weights.ndim != 2:
        raise ValueError(f"log_weights must have shape (B, M), got {tuple(log_weights.shape)}")
    if torch.isnan(log_weights).any() or (log_weights == float("inf")).any():
        raise ValueError("log_weights must not contain NaN or +inf")
    if (log_weights == float("-inf")).all(-1).any():
        raise ValueError("log_weights has a row where every weight is zero")
    return RESAMPLERS[scheme](log_weights, generator)
