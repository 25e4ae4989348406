"""Figures (matplotlib, the optional ``plot`` extra) and image grids (Pillow); no mathematics here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from .feynman_kac import WeightedSamples

__all__ = ["GridSection", "check_can_plot", "plot_diagnostics", "plot_gaussian_toy", "save_image_grid", "save_image_sections"]


def check_can_plot() -> None:
    """Raise ``RuntimeError`` (with the install hint) now if matplotlib is missing, before any long work."""
    _pyplot()


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise RuntimeError("plotting needs matplotlib: pip install 'smcdiff[plot]'") from err
    return plt


class DensityProblem(Protocol):
    """What :func:`plot_gaussian_toy` draws for a problem (e.g. :class:`smcdiff.oracle.toy.ToyProblem`)."""

    name: str
    y: float

    def marginal_density(self, x: Tensor) -> Tensor: ...

    def posterior_density(self, x: Tensor) -> Tensor: ...


def plot_gaussian_toy(
    problems: Sequence[DensityProblem],
    unconditional: dict[str, Tensor],
    conditional: dict[str, dict[str, tuple[Tensor, Tensor]]],
    path: str | Path,
) -> Path:
    """The seed slides' figure: exact densities against histograms of each sampler, as a PNG.

    One column per problem. Top row: X sampled unconditionally (``unconditional[name]``) vs its exact
    density. Bottom row: X | Y = y, exact posterior density against the weighted histograms
    ``conditional[name][method] = (x, w)`` of SMC and replacement.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(problems), figsize=(5 * len(problems), 7), constrained_layout=True, squeeze=False)
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


Label = str | tuple[str, int]
"""A column label: its text, or ``(text, span)`` for a label over ``span`` adjacent columns."""


@dataclass
class GridSection:
    """One block of an image grid: ``rows`` of ``(K, C, H, W)`` images under column ``labels`` and a ``title``."""

    rows: list[Tensor]
    labels: Sequence[Label] = ()
    title: str | None = None


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def _wrap(draw, text: str, font, width: int) -> list[str]:
    """Greedy word wrap of ``text`` to lines no wider than ``width`` pixels (a long word keeps its line)."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def _cells(rows: list[Tensor], scale: int, value_range: tuple[float, float], channels: int):
    """The image part of a section as a uint8 array ``(h, w, channels)``, 1-pixel white gutters, upscaled."""
    c, h, w = rows[0].shape[1:]
    for r in rows:
        if r.ndim != 4 or tuple(r.shape[1:]) != (c, h, w):
            raise ValueError(f"every row must be (K, {c}, {h}, {w}), got {tuple(r.shape)}")
    cols = max(r.shape[0] for r in rows)
    pad = 1
    canvas = np.ones(((h + pad) * len(rows) + pad, (w + pad) * cols + pad, channels), dtype=np.float32)
    lo, hi = value_range
    for i, r in enumerate(rows):
        imgs = ((r.detach().float().cpu().clamp(lo, hi) - lo) / (hi - lo)).permute(0, 2, 3, 1).numpy()
        if imgs.shape[-1] != channels:  # grey images in an RGB grid
            imgs = np.repeat(imgs, channels, axis=-1)
        for j, img in enumerate(imgs):
            y0, x0 = pad + i * (h + pad), pad + j * (w + pad)
            canvas[y0 : y0 + h, x0 : x0 + w] = img
    arr = (canvas * 255).round().astype(np.uint8)
    return np.kron(arr, np.ones((scale, scale, 1), dtype=np.uint8)), (w + pad) * scale, pad * scale


def _section_image(section: GridSection, scale: int, value_range: tuple[float, float], channels: int, font):
    """A PIL image of one section: title line, label band, images."""
    from PIL import Image, ImageDraw

    cells, col_px, pad_px = _cells(section.rows, scale, value_range, channels)
    mode = "L" if channels == 1 else "RGB"
    width = cells.shape[1]
    probe = ImageDraw.Draw(Image.new(mode, (1, 1)))
    line_h = int(font.size * 1.25) if hasattr(font, "size") else 12
    spans = [(lab, 1) if isinstance(lab, str) else (str(lab[0]), int(lab[1])) for lab in section.labels]
    wrapped = [(_wrap(probe, text, font, span * col_px - 2), span) for text, span in spans]
    band = (max(len(lines) for lines, _ in wrapped) * line_h + 4) if wrapped else 0
    title_h = line_h + 4 if section.title else 0
    out = Image.new(mode, (width, title_h + band + cells.shape[0]), 255 if channels == 1 else (255, 255, 255))
    draw = ImageDraw.Draw(out)
    black = 0 if channels == 1 else (0, 0, 0)
    if section.title:
        draw.text((pad_px + 1, 2), section.title, fill=black, font=font)
    x0 = pad_px
    for lines, span in wrapped:
        cell_w = span * col_px - pad_px
        for k, line in enumerate(lines):
            tw = draw.textlength(line, font=font)
            draw.text((x0 + max(0, (cell_w - tw) / 2), title_h + 2 + k * line_h), line, fill=black, font=font)
        x0 += span * col_px
    out.paste(Image.fromarray(cells[..., 0] if channels == 1 else cells), (0, title_h + band))
    return out


def save_image_sections(
    sections: Sequence[GridSection], path: str | Path, scale: int = 4, value_range: tuple[float, float] = (-1.0, 1.0)
) -> Path:
    """Save image grids stacked vertically as one picture, each with its title and column labels.

    Every image is nearest-neighbour upscaled by ``scale``; rows with fewer images are padded with
    blank cells; sections may have different image sizes and column counts (narrower ones are padded).
    Grey images in a picture that also holds RGB ones are shown grey in RGB.
    """
    from PIL import Image

    if not sections or any(not s.rows for s in sections):
        raise ValueError("sections must be a non-empty list, each with at least one (K, C, H, W) row")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    channels = max(s.rows[0].shape[1] for s in sections)
    if channels not in (1, 3):
        raise ValueError(f"images must be grey (1 channel) or RGB (3 channels), got {channels} channels")
    font = _font(max(10, min(14, 2 * scale + 4)))
    parts = [_section_image(s, scale, value_range, channels, font) for s in sections]
    gap = 2 * scale if len(parts) > 1 else 0
    width = max(p.width for p in parts)
    mode = parts[0].mode
    out = Image.new(mode, (width, sum(p.height for p in parts) + gap * (len(parts) - 1)), 255 if mode == "L" else (255, 255, 255))
    y = 0
    for p in parts:
        out.paste(p, (0, y))
        y += p.height + gap
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)
    return path


def save_image_grid(
    rows: list[Tensor],
    path: str | Path,
    scale: int = 4,
    value_range: tuple[float, float] = (-1.0, 1.0),
    labels: Sequence[Label] = (),
    title: str | None = None,
) -> Path:
    """Save a grid of grey or RGB images as PNG: ``rows`` is a list of ``(K, C, H, W)`` tensors, one per row.

    ``labels`` are drawn above the columns (a ``(text, span)`` pair spans adjacent columns). Rows with
    fewer images are padded with blank cells; pixels are nearest-neighbour upscaled by ``scale``.
    """
    if not rows:
        raise ValueError("rows must contain at least one (K, C, H, W) tensor")
    return save_image_sections([GridSection(list(rows), labels, title)], path, scale, value_range)


def plot_diagnostics(runs: dict[str, WeightedSamples], path: str | Path, title: str | None = None) -> Path:
    """ESS and surviving lineages against the reverse step, one line per run (and per observation), as a PNG.

    Left: effective sample size after reweighting at each step (crosses where the run resampled).
    Right: distinct ancestors, at each step, of the final particles (``weighted.lineages``): where this
    drops to a few, the genealogy has collapsed and the draws share their early history.
    """
    plt = _pyplot()
    fig, (ax_ess, ax_lin) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    curves = 0
    for name, w in runs.items():
        steps, batch = w.ess.shape
        m = w.particles.shape[1]
        x = np.arange(1, steps + 1)
        ess_np = w.ess.detach().double().cpu().numpy()
        res_np = w.resampled.detach().cpu().numpy()
        lin = w.lineages.detach().cpu().numpy() if w.lineages is not None else np.full((steps, batch), m)
        for b in range(batch):
            label = name if batch == 1 else f"{name} [{b}]"
            curves += 1
            (line,) = ax_ess.plot(x, ess_np[:, b], lw=1.2, label=label)
            hit = res_np[:, b]
            ax_ess.plot(x[hit], ess_np[hit, b], "x", ms=4, color=line.get_color())
            ax_lin.step(x, lin[:, b], where="mid", lw=1.2, color=line.get_color(), label=label)
        ax_ess.axhline(m, color="grey", lw=0.8, ls=":")
        ax_lin.axhline(m, color="grey", lw=0.8, ls=":")
    ax_ess.set_xlabel("reverse step (1 = first, from t = T)")
    ax_ess.set_ylabel("ESS (x: resampled)")
    ax_ess.set_ylim(bottom=0)
    ax_lin.set_xlabel("reverse step (1 = first, from t = T)")
    ax_lin.set_ylabel("distinct ancestors of the final particles")
    ax_lin.set_ylim(bottom=0)
    if curves > 1:
        ax_lin.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
