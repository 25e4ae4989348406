"""Figures (matplotlib, the optional ``plot`` extra) and image grids (Pillow); no mathematics here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .toy import ToyProblem, slides_gaussian, slides_mixture

__all__ = ["plot_gaussian_toy", "save_image_grid"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise RuntimeError("plotting needs matplotlib: pip install 'smcdiff[plot]'") from err
    return plt


def plot_gaussian_toy(
    unconditional: dict[str, Tensor], conditional: dict[str, dict[str, tuple[Tensor, Tensor]]], path: str | Path
) -> Path:
    """The seed slides' figure: exact densities against histograms of each sampler, as a PNG.

    Top row: X sampled unconditionally vs its exact density. Bottom row: X | Y = y, exact posterior
    density against the (weighted) histograms of SMC and replacement.
    """
    plt = _pyplot()
    problems: list[ToyProblem] = [slides_gaussian(), slides_mixture()]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    for col, prob in enumerate(problems):
        grid = torch.linspace(-9, 9, 400, dtype=torch.float64)
        ax = axes[0, col]
        ax.hist(unconditional[prob.name].numpy(), bins=80, range=(-9, 9), density=True, alpha=0.5, color="tab:gray", label="reverse SDE")
        ax.plot(grid, prob.marginal_density(grid), "r-", lw=2, label="exact")
        ax.set_title(f"{prob.name}: X unconditionally")
        ax.legend()
        ax = axes[1, col]
        for method, color in (("replacement", "tab:blue"), ("SMC", "tab:green")):
            x, w = conditional[prob.name][method]
            ax.hist(x.numpy(), bins=80, range=(-9, 9), weights=w.numpy(), density=True, alpha=0.45, color=color, label=method)
        ax.plot(grid, prob.posterior_density(grid), "r-", lw=2, label="exact posterior")
        ax.set_title(f"{prob.name}: X | Y = {prob.y:g}")
        ax.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_image_grid(rows: list[Tensor], path: str | Path, scale: int = 4, value_range: tuple[float, float] = (-1.0, 1.0)) -> Path:
    """Save a grid of grey or RGB images as PNG: ``rows`` is a list of ``(K, C, H, W)`` tensors, one per row.

    Rows with fewer images are padded with blank cells; pixels are nearest-neighbour upscaled by ``scale``.
    """
    from PIL import Image

    if not rows:
        raise ValueError("rows must contain at least one (K, C, H, W) tensor")
    c, h, w = rows[0].shape[1:]
    cols = max(r.shape[0] for r in rows)
    pad = 1
    canvas = np.ones(((h + pad) * len(rows) + pad, (w + pad) * cols + pad, c), dtype=np.float32)
    lo, hi = value_range
    for i, r in enumerate(rows):
        imgs = ((r.detach().float().cpu().clamp(lo, hi) - lo) / (hi - lo)).permute(0, 2, 3, 1).numpy()
        for j, img in enumerate(imgs):
            y0, x0 = pad + i * (h + pad), pad + j * (w + pad)
            canvas[y0 : y0 + h, x0 : x0 + w] = img
    arr = (canvas * 255).round().astype(np.uint8)
    arr = np.kron(arr, np.ones((scale, scale, 1), dtype=np.uint8))
    image = Image.fromarray(arr[..., 0] if c == 1 else arr)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
