r"""The outcome of a simulation-based calibration: ranks, their uniformity tests, coverage and a verdict.

Uniformity test (per statistic). Pearson's chi-square on the rank histogram: the L + 1 rank values are
grouped into B contiguous bins (bin of r = floor(r B / (L + 1)); expected count R |bin| / (L + 1)), with
B = min(10, L + 1) reduced until every expected count is >= 5, so the asymptotic chi-square(B - 1) law
holds. Few wide bins are what detects the smooth departures a sampler makes (too narrow, too wide,
shifted): with L = 99 and a Gaussian posterior, B = 8-10 needs the fewest problems to detect draws
scaled by 0.7 or 1.3 (see ``tests/test_calibration.py``).

Multiple testing. ``p_value`` is the Bonferroni-corrected minimum, min(1, S min_s p_s), for the global
hypothesis "every statistic is uniform"; for that hypothesis it coincides with Holm-Bonferroni, whose
per-statistic adjusted p-values are :attr:`SBCResult.adjusted_p_values`.

Coverage. Rank r corresponds to the PIT interval [r / (L + 1), (r + 1) / (L + 1)]; the central interval
of level q counts the fraction of that interval inside [1/2 - q/2, 1/2 + q/2], so the expected coverage
is exactly q under calibration, whatever L.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import stats

from .bands import _check_level, ecdf_bands, ecdf_counts, evaluation_indices

__all__ = ["SBCResult", "load_sbc", "concat_sbc", "statistic_group", "interval_coverage"]

_FORMAT = "smcdiff.sbc/1"
_MAX_BINS = 10
_COVERAGE_LEVEL = 0.9  # the level verdicts and dispersion report


def statistic_group(name: str) -> str:
    """``"coordinates"`` for ``x[i]``, ``"directions"`` for ``u{k}``, ``"fit"`` for ``fit``, else ``"other"``."""
    if re.fullmatch(r"x\[\d+\]", name):
        return "coordinates"
    if re.fullmatch(r"u\d+", name):
        return "directions"
    return "fit" if name == "fit" else "other"


def _check_levels(levels) -> tuple[float, ...]:
    levels = (levels,) if isinstance(levels, (int, float)) else tuple(levels)
    if not levels or any(isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q < 1 for q in levels):
        raise ValueError(f"levels must be numbers in (0, 1), got {levels!r}")
    return tuple(float(q) for q in levels)


def interval_coverage(ranks: np.ndarray, draws: int, q: float) -> np.ndarray:
    """Fraction of each rank's PIT interval inside the central interval of level q (same shape as ranks)."""
    a, b = 0.5 - q / 2, 0.5 + q / 2
    lo, hi = ranks / (draws + 1), (ranks + 1) / (draws + 1)
    return np.clip(np.minimum(hi, b) - np.maximum(lo, a), 0.0, None) * (draws + 1)


@dataclass(frozen=True, eq=False)
class SBCResult:
    """Ranks of the truth among a sampler's draws, and what follows from them.

    Attributes
    ----------
    ranks : (R, S) int64 in 0..L, R problems by S statistics.
    names : (S,) statistic names (``"x[17]"``, ``"u3"``, ``"fit"``).
    draws : L, the number of draws per problem.
    mse : squared error of the draws' mean against x*, averaged over coordinates and problems (nan if unknown).
    meta : JSON-able description of the run (sampler, settings), saved with it.
    """

    ranks: np.ndarray
    names: tuple[str, ...]
    draws: int
    mse: float = float("nan")
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        ranks = np.asarray(self.ranks)
        if ranks.ndim != 2 or not np.issubdtype(ranks.dtype, np.integer):
            raise ValueError(f"ranks must be an integer array of shape (R, S), got {ranks.dtype} {ranks.shape}")
        if isinstance(self.draws, bool) or not isinstance(self.draws, (int, np.integer)) or self.draws < 1:
            raise ValueError(f"draws must be a positive integer, got {self.draws!r}")
        if ranks.size and (ranks.min() < 0 or ranks.max() > self.draws):
            raise ValueError(f"ranks must lie in 0..draws = 0..{self.draws}")
        names = tuple(str(s) for s in self.names)
        if len(names) != ranks.shape[1] or len(set(names)) != len(names):
            raise ValueError(f"names must be {ranks.shape[1]} distinct statistic names, got {len(names)}")
        try:
            json.dumps(self.meta)
        except TypeError as err:
            raise ValueError("meta must be JSON-serialisable") from err
        ranks = ranks.astype(np.int64)
        ranks.setflags(write=False)
        object.__setattr__(self, "ranks", ranks)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "draws", int(self.draws))
        object.__setattr__(self, "mse", float(self.mse))

    # ---- shapes and groups ----
    @property
    def n_problems(self) -> int:
        return self.ranks.shape[0]

    @property
    def groups(self) -> tuple[str, ...]:
        """The group of each statistic (:func:`statistic_group`), ``(S,)``."""
        return tuple(statistic_group(s) for s in self.names)

    def _select(self, group: str | None) -> np.ndarray:
        if group is None:
            return self.ranks
        cols = [i for i, g in enumerate(self.groups) if g == group]
        if not cols:
            raise ValueError(f"group must be one of {sorted(set(self.groups))}, got {group!r}")
        return self.ranks[:, cols]

    # ---- uniformity ----
    def bins(self) -> int:
        """Number of chi-square bins B: min(10, L + 1), reduced until every expected count is >= 5 (0: too few problems)."""
        r, k = self.n_problems, self.draws + 1
        for b in range(min(_MAX_BINS, k), 1, -1):
            if r * (k // b) / k >= 5:
                return b
        return 0

    @property
    def p_values(self) -> np.ndarray:
        """Chi-square uniformity p-value of each statistic, ``(S,)`` (nan when R is too small to test)."""
        b = self.bins()
        if b < 2:
            return np.full(self.ranks.shape[1], np.nan)
        k = self.draws + 1
        idx = self.ranks * b // k  # (R, S) bin of each rank
        observed = (idx[:, :, None] == np.arange(b)).sum(0)  # (S, B)
        expected = self.n_problems * np.bincount(np.arange(k) * b // k, minlength=b) / k  # (B,)
        chi2 = ((observed - expected) ** 2 / expected).sum(1)
        return stats.chi2.sf(chi2, b - 1)

    @property
    def adjusted_p_values(self) -> np.ndarray:
        """Holm-Bonferroni adjusted p-values, ``(S,)``."""
        p = self.p_values
        s = len(p)
        order = np.argsort(p)
        adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (s - np.arange(s))))
        out = np.empty_like(adj)
        out[order] = adj
        return out

    @property
    def p_value(self) -> float:
        """Corrected p-value of "all statistics uniform": Bonferroni min(1, S min p) (= Holm's smallest adjusted p)."""
        p = self.p_values
        return float("nan") if np.isnan(p).any() else float(min(1.0, len(p) * p.min()))

    def calibrated(self, level: float = 0.01) -> bool:
        """True unless the corrected uniformity test rejects at ``level``."""
        level = _check_level(level)
        p = self.p_value
        if np.isnan(p):
            raise ValueError(f"too few problems (R = {self.n_problems}) for a uniformity test with L = {self.draws}")
        return p >= level

    # ---- coverage and dispersion ----
    def coverage(self, levels: Sequence[float] = (0.5, 0.8, 0.9, 0.95), *, group: str | None = None) -> dict[float, float]:
        """Empirical coverage of central intervals, ``{level: fraction}``, over all (problem, statistic) pairs
        (or those of one ``group``: ``"coordinates"``, ``"directions"``, ``"fit"``); exactly ``level`` in
        expectation under calibration."""
        ranks = self._select(group)
        return {q: float(interval_coverage(ranks, self.draws, q).mean()) for q in _check_levels(levels)}

    def coverage_se(self, level: float = _COVERAGE_LEVEL, *, group: str | None = None) -> float:
        """Monte Carlo standard error of :meth:`coverage` at ``level``, from its per-problem means (problems are independent)."""
        per_problem = interval_coverage(self._select(group), self.draws, _check_level(level)).mean(1)
        return float(per_problem.std(ddof=1) / np.sqrt(len(per_problem))) if len(per_problem) > 1 else float("nan")

    def dispersion(self, level: float = 0.01) -> str:
        """``"under-dispersed"`` (ranks pile at the extremes: coverage below nominal), ``"over-dispersed"``
        (ranks pile in the middle: coverage above nominal) or ``"calibrated"``: a two-sided z-test at
        ``level`` of the 90 % coverage against 0.9, with :meth:`coverage_se`."""
        level = _check_level(level)
        cov, se = self.coverage((_COVERAGE_LEVEL,))[_COVERAGE_LEVEL], self.coverage_se()
        z = (cov - _COVERAGE_LEVEL) / se if se > 0 else 0.0
        if np.isnan(z) or abs(z) < stats.norm.isf(level / 2):
            return "calibrated"
        return "under-dispersed" if z < 0 else "over-dispersed"

    def verdict(self, level: float = 0.01) -> str:
        """One line: the decision of :meth:`calibrated` at ``level``, the kind of failure and the 90 % coverage."""
        level = _check_level(level)
        cov = 100 * self.coverage((_COVERAGE_LEVEL,))[_COVERAGE_LEVEL]
        nominal = f"coverage {cov:.1f} % at nominal {100 * _COVERAGE_LEVEL:.0f} %"
        if self.calibrated(level):
            return f"consistent with calibrated at level {level:g} (corrected p = {self.p_value:.2g}; {nominal})"
        kind = self.dispersion(level)
        kind = "non-uniform ranks (biased or mis-shaped, not a dispersion error)" if kind == "calibrated" else kind
        return f"rejects calibration: {kind}, {nominal} (corrected p = {self.p_value:.2g})"

    def inside_bands(self, level: float = 0.95) -> np.ndarray:
        """Whether each statistic's rank ECDF stays inside the simultaneous ``level`` band, ``(S,)`` bool."""

        z, lower, upper = ecdf_bands(self.n_problems, self.draws, level=level)
        diff = ecdf_counts(self.ranks, evaluation_indices(self.n_problems, self.draws)) / self.n_problems - z
        tol = 0.5 / self.n_problems  # counts are integers: compare on the count grid
        return ((diff >= lower - tol) & (diff <= upper + tol)).all(1)

    def __repr__(self) -> str:
        return f"SBCResult(R={self.n_problems}, S={len(self.names)}, L={self.draws}, mse={self.mse:.3g})"

    # ---- files ----
    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` of plain arrays (ranks, names) and JSON metadata; read back with :func:`load_sbc`."""
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"path must end in .npz, got {str(path)!r}")
        metadata = json.dumps({"format": _FORMAT, "draws": self.draws, "mse": self.mse, "meta": self.meta})
        np.savez(path, ranks=self.ranks, names=np.array(self.names, dtype=str), metadata=np.array(metadata))
        return path

    def plot(self, path: str | Path, *, title: str | None = None) -> Path:
        """Save the rank ECDF-difference plot with simultaneous 95 % bands as a PNG (needs matplotlib)."""
        from .plot import plot_sbc

        return plot_sbc(self, path, title=title)


def load_sbc(path: str | Path) -> SBCResult:
    """Read an :class:`SBCResult` written by :meth:`SBCResult.save` (no pickle); ``ValueError`` if it is not one."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"path {str(path)!r} is not a readable .npz file: {err}") from err
    missing = {"ranks", "names", "metadata"} - set(arrays)
    if missing:
        raise ValueError(f"path {str(path)!r} is not an SBC result: missing {sorted(missing)}")
    try:
        metadata = json.loads(str(arrays["metadata"]))
    except json.JSONDecodeError as err:
        raise ValueError(f"path {str(path)!r}: unreadable metadata") from err
    if not isinstance(metadata, dict) or metadata.get("format") != _FORMAT:
        raise ValueError(f"path {str(path)!r} is not an SBC result of format {_FORMAT}")
    mse = metadata.get("mse")
    return SBCResult(
        ranks=arrays["ranks"],
        names=tuple(arrays["names"].tolist()),
        draws=metadata.get("draws"),
        mse=float("nan") if mse is None else mse,
        meta=metadata.get("meta", {}),
    )


def concat_sbc(parts: Sequence[SBCResult]) -> SBCResult:
    """One :class:`SBCResult` from runs on disjoint sets of problems (a long run done in pieces, or on several machines).

    The ranks are stacked and the MSE averaged with weights by problem count. The parts must have the same
    statistics and the same L; their random directions must be the same too (``sbc`` with the same ``generator``
    seed, which draws the directions first), which the names alone cannot show. ``meta`` is the first part's, with
    ``"parts"``: the number of parts.
    """
    parts = list(parts)
    if not parts or not all(isinstance(r, SBCResult) for r in parts):
        raise ValueError("parts must be a non-empty sequence of SBCResult")
    first = parts[0]
    for i, r in enumerate(parts[1:], 1):
        if r.names != first.names or r.draws != first.draws:
            raise ValueError(f"parts[{i}] has other statistics or draws (L = {r.draws}) than parts[0] (L = {first.draws})")
    n = np.array([r.n_problems for r in parts], dtype=np.float64)
    mse = float(np.dot(n, [r.mse for r in parts]) / n.sum()) if n.sum() else float("nan")
    return SBCResult(np.concatenate([r.ranks for r in parts]), first.names, first.draws, mse, {**first.meta, "parts": len(parts)})
