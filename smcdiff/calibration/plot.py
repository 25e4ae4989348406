"""The SBC figure: rank ECDF minus the uniform CDF, one faint line per statistic, with simultaneous bands."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .bands import ecdf_bands, ecdf_counts, evaluation_indices

__all__ = ["plot_sbc"]

_COLOURS = {"coordinates": "tab:blue", "directions": "tab:orange", "fit": "tab:green", "other": "tab:gray"}
_MAX_LINES = 200  # per group; evenly spaced statistics beyond that


def _pyplot():
    from ..plotting import check_can_plot

    check_can_plot()  # RuntimeError with the install hint when matplotlib is missing
    import matplotlib.pyplot as plt

    return plt


def plot_sbc(result, path: str | Path, *, title: str | None = None, level: float = 0.95) -> Path:
    """Save the ECDF-difference plot of ``result`` (an :class:`~smcdiff.calibration.SBCResult`; Säilynoja et al. 2022, Fig. 1 style) as a PNG at ``path``.

    x axis: the fractional rank z = j / (L + 1); y axis: ECDF(z) - z for every statistic (colour = group),
    and the simultaneous ``level`` band of :func:`ecdf_bands` for R = ``result.n_problems`` ranks.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {str(path)!r}")
    if title is not None and not isinstance(title, str):
        raise ValueError(f"title must be a string or None, got {type(title).__name__}")
    plt = _pyplot()
    n = result.n_problems
    j = evaluation_indices(n, result.draws)
    z, lower, upper = ecdf_bands(n, result.draws, level=level)
    zz = np.concatenate([[0.0], z, [1.0]])
    diff = np.pad(ecdf_counts(result.ranks, j) / n - z, ((0, 0), (1, 1)))  # (S, J + 2), 0 at both ends
    groups = np.array(result.groups)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
    ax.fill_between(zz, np.concatenate([[0.0], lower, [0.0]]), np.concatenate([[0.0], upper, [0.0]]),
                    color="0.85", label=f"{100 * level:g} % simultaneous band")
    for group in dict.fromkeys(groups.tolist()):
        cols = np.flatnonzero(groups == group)
        cols = cols[np.unique(np.linspace(0, len(cols) - 1, min(len(cols), _MAX_LINES)).round().astype(int))]
        alpha = 0.8 if len(cols) == 1 else max(0.08, min(0.5, 4.0 / len(cols)))
        for i, c in enumerate(cols):
            ax.plot(zz, diff[c], color=_COLOURS.get(group, "tab:gray"), lw=0.9, alpha=alpha,
                    label=f"{group} ({(groups == group).sum()})" if i == 0 else None)
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xlim(0, 1)
    ax.set_xlabel("fractional rank")
    ax.set_ylabel("ECDF - uniform CDF")
    cov = result.coverage((0.9,))[0.9]
    ax.set_title(title if title is not None else f"SBC: R = {n}, L = {result.draws}, 90 % coverage {100 * cov:.1f} %")
    ax.legend(loc="upper right", fontsize="small", frameon=False)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
