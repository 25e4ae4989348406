r"""Simultaneous confidence bands for the ECDF of discrete-uniform ranks (Säilynoja, Bürkner & Vehtari 2022).

R ranks r_1..r_R on {0, ..., L} are turned into PIT values; at the rank boundaries z_j = j / (L + 1),
j = 1..L, the ECDF is F_hat(z_j) = #{i : r_i < j} / R, and under uniformity R F_hat(z_j) ~ Binomial(R, z_j)
(the fractional rule of :meth:`SBCResult.coverage` and the randomised PIT agree there). A pointwise
band at level 1 - gamma would cover each point with probability 1 - gamma but the whole curve with much
less. Säilynoja et al. (2022, §2.2, the simulation method) adjust gamma:

1. simulate M uniform rank sets of size R and, for each, the smallest two-sided binomial tail
   probability over the evaluation points,
       T = min_j 2 min(P(X_j <= k_j), P(X_j >= k_j)),   X_j ~ Binomial(R, z_j),  k_j = R F_hat(z_j);
2. take gamma as the (1 - level) quantile of T;
3. the band at z_j is [q_j(gamma / 2), q_j(1 - gamma / 2)] / R, binomial quantiles; a rank set lies
   inside the band at every z_j exactly when its T >= gamma, which happens with probability ~ level.

The simulation (a few tenths of a second) is cached per (R, L, evaluation points, simulations) when
no generator is given (then a fixed internal seed is used, so the bands are deterministic).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

__all__ = ["ecdf_bands", "ecdf_counts", "ecdf_p_values", "evaluation_indices", "DEFAULT_SIMULATIONS"]

DEFAULT_SIMULATIONS = 4000
_MAX_POINTS = 500
_CACHE: dict[tuple, np.ndarray] = {}


def _check_positive_int(name: str, value, minimum: int = 1) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_level(level) -> float:
    if not isinstance(level, (int, float)) or isinstance(level, bool) or not 0 < level < 1:
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")
    return float(level)


def evaluation_indices(n_ranks: int, draws: int, evaluation_points: int | None = None) -> np.ndarray:
    """Rank boundaries j (``(J,)`` int, in 1..L) at which the ECDF is evaluated, z_j = j / (L + 1).

    ``evaluation_points = K`` splits [0, 1] into K nearly equal parts at rank boundaries (K - 1 interior
    points); the default K = min(L + 1, R, 500) uses every boundary when ranks are coarse and keeps the
    computation bounded when they are fine.
    """
    n_ranks = _check_positive_int("n_ranks", n_ranks, 2)
    draws = _check_positive_int("draws", draws)
    if evaluation_points is None:
        k = min(draws + 1, n_ranks, _MAX_POINTS)
    else:
        k = _check_positive_int("evaluation_points", evaluation_points, 2)
        if k > draws + 1:
            raise ValueError(f"evaluation_points must be at most draws + 1 = {draws + 1}, got {k}")
    j = np.unique(np.round(np.arange(1, k) * (draws + 1) / k).astype(np.int64))
    return j[(j >= 1) & (j <= draws)]


def ecdf_counts(ranks: np.ndarray, j: np.ndarray) -> np.ndarray:
    """#{i : r_i < j} for each statistic: ``ranks (R, S)`` -> ``(S, J)`` int."""
    ranks = np.asarray(ranks, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    if ranks.ndim != 2:
        raise ValueError(f"ranks must have shape (R, S), got {ranks.shape}")
    s, width = ranks.shape[1], max(int(ranks.max(initial=0)), int(j.max(initial=1))) + 1
    hist = np.bincount((ranks + width * np.arange(s)).ravel(), minlength=s * width).reshape(s, width)
    return np.cumsum(hist, axis=1)[:, j - 1]


def _min_tail(counts: np.ndarray, n: int, z: np.ndarray) -> np.ndarray:
    """T = min_j 2 min(P(X_j <= k_j), P(X_j >= k_j)) (capped at 1): ``counts (..., J)`` -> ``(...)``."""
    lower = stats.binom.cdf(counts, n, z)
    upper = stats.binom.sf(counts - 1, n, z)
    return np.minimum(1.0, 2.0 * np.minimum(lower, upper)).min(-1)


def _null_statistic(n: int, draws: int, j: np.ndarray, simulations: int, generator: torch.Generator | None) -> np.ndarray:
    """Sorted T of ``simulations`` uniform rank sets of size ``n`` on {0..draws}: ``(simulations,)``."""
    key = (n, draws, tuple(j.tolist()), simulations)
    if generator is None and key in _CACHE:
        return _CACHE[key]
    gen = torch.Generator().manual_seed(0) if generator is None else generator
    # cumulative counts at the boundaries by sequential binomial splitting of a multinomial
    edges = np.concatenate([j, [draws + 1]]).astype(np.float64)
    cells = np.diff(np.concatenate([[0.0], edges])) / (draws + 1)  # probability of each cell
    left = torch.full((simulations,), float(n), dtype=torch.float64, device=gen.device)
    cum = torch.zeros(simulations, len(j), dtype=torch.float64, device=gen.device)
    used, mass_left = torch.zeros_like(left), 1.0
    for i in range(len(j)):  # one-time simulation; J <= 500 steps vectorised over simulations
        p = min(1.0, cells[i] / mass_left) if mass_left > 0 else 0.0
        c = torch.binomial(left, torch.full_like(left, p), generator=gen)
        used, left, mass_left = used + c, left - c, mass_left - cells[i]
        cum[:, i] = used
    t = np.sort(_min_tail(cum.cpu().numpy(), n, j / (draws + 1)))
    if generator is None:
        _CACHE[key] = t
    return t


def _gamma(t_null: np.ndarray, level: float) -> float:
    """The adjusted pointwise level: the (1 - level) quantile of the null T."""
    return float(np.quantile(t_null, 1.0 - level, method="inverted_cdf"))


def _band_counts(n: int, z: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Smallest k with P(X <= k) >= gamma/2 and largest k with P(X >= k) >= gamma/2, X ~ Bin(n, z)."""
    q = gamma / 2
    lo = np.clip(stats.binom.ppf(q, n, z), 0, n).astype(np.int64)
    hi = np.clip(stats.binom.isf(q, n, z), 0, n).astype(np.int64)
    for _ in range(3):  # settle scipy's floating-point fuzz so that band membership <=> T >= gamma
        lo = np.where(stats.binom.cdf(lo, n, z) < q, lo + 1, lo)
        lo = np.where((lo > 0) & (stats.binom.cdf(lo - 1, n, z) >= q), lo - 1, lo)
        hi = np.where(stats.binom.sf(hi - 1, n, z) < q, hi - 1, hi)
        hi = np.where((hi < n) & (stats.binom.sf(hi, n, z) >= q), hi + 1, hi)
    return lo, hi


def ecdf_bands(
    n_ranks: int,
    draws: int,
    *,
    level: float = 0.95,
    evaluation_points: int | None = None,
    simulations: int = DEFAULT_SIMULATIONS,
    generator: torch.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simultaneous ``level`` bands for the ECDF difference of ``n_ranks`` uniform ranks on {0..draws}.

    Parameters
    ----------
    n_ranks : R, the number of ranks (problems) per statistic, >= 2.
    draws : L, the number of posterior draws per problem (ranks take L + 1 values).
    level : simultaneous coverage of the band, in (0, 1).
    evaluation_points : K, see :func:`evaluation_indices` (default min(L + 1, R, 500)).
    simulations : M, uniform rank sets simulated to adjust the pointwise level.
    generator : torch.Generator, optional; without one a fixed internal seed is used and the result cached.

    Returns
    -------
    z : (J,) evaluation points j / (L + 1).
    lower, upper : (J,) the band for F_hat(z) - z; a uniform rank set stays inside at every z with
        probability ~ ``level``.
    """
    n = _check_positive_int("n_ranks", n_ranks, 2)
    draws = _check_positive_int("draws", draws)
    level = _check_level(level)
    simulations = _check_positive_int("simulations", simulations, 10)
    j = evaluation_indices(n, draws, evaluation_points)
    z = j / (draws + 1)
    gamma = _gamma(_null_statistic(n, draws, j, simulations, generator), level)
    lo, hi = _band_counts(n, z, gamma)
    return z, lo / n - z, hi / n - z


def ecdf_p_values(
    ranks: np.ndarray,
    draws: int,
    *,
    evaluation_points: int | None = None,
    simulations: int = DEFAULT_SIMULATIONS,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """Monte Carlo p-values of the simultaneous ECDF test, one per statistic: ``ranks (R, S)`` -> ``(S,)``.

    p = (1 + #{T_sim <= T_obs}) / (M + 1), with T the smallest binomial tail probability (module
    docstring); p < 1 - level exactly when the ECDF leaves the ``level`` band of :func:`ecdf_bands`
    (up to the Monte Carlo resolution 1 / (M + 1)).
    """
    ranks = np.asarray(ranks)
    if ranks.ndim != 2:
        raise ValueError(f"ranks must have shape (R, S), got {ranks.shape}")
    n = ranks.shape[0]
    j = evaluation_indices(n, draws, evaluation_points)
    t_null = _null_statistic(n, draws, j, _check_positive_int("simulations", simulations, 10), generator)
    t_obs = _min_tail(ecdf_counts(ranks, j), n, j / (draws + 1))
    return (1.0 + np.searchsorted(t_null, t_obs, side="right")) / (len(t_null) + 1.0)
