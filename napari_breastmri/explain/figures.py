"""Figures for explanations (matplotlib, Agg): heatmap overlays on slices, deletion/insertion curves.

Used by ``breastmri explain --figures`` and by :mod:`.evaluate` for docs/explanations.md. Every
figure carries the demo label when the model is a demo model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import _atomic
from ..types import DEMO_LABEL
from .cam import display_name


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    with _atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return Path(path)


def pick_slices(heat: np.ndarray, truth: np.ndarray | None = None, n: int = 3) -> list[int]:
    """Slices (z) through the heatmap's peak and the truth's centre, then spread around them."""
    chosen = [int(np.unravel_index(int(np.argmax(heat)), heat.shape)[0])]
    if truth is not None and np.any(truth):
        chosen.append(int(np.round(np.argwhere(truth)[:, 0].mean())))
    extra = np.linspace(0, heat.shape[0] - 1, n + 2)[1:-1].astype(int)
    for z in extra:
        if len(set(chosen)) >= n:
            break
        chosen.append(int(z))
    return sorted(dict.fromkeys(chosen))[:n]


def overlay_rows(
    path: str | Path,
    rows: Sequence[dict[str, Any]],
    title: str = "",
    demo: bool = True,
    n_slices: int = 3,
) -> Path:
    """One row per entry {"image": (z,y,x), "heat": (z,y,x), "truth": mask|None, "label": str}.

    Each row shows ``n_slices`` slices (the heatmap's peak slice first) of the image in grey with
    the heatmap (magma, alpha scaled by heat) and the truth outline in cyan.
    """
    plt = _plt()
    fig, axes = plt.subplots(len(rows), n_slices, figsize=(3.0 * n_slices, 3.0 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        image, heat, truth = row["image"], row["heat"], row.get("truth")
        lo, hi = np.percentile(image, [1, 99.5])
        for c, z in enumerate(pick_slices(heat, truth, n_slices)):
            ax = axes[r, c]
            ax.imshow(image[z], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            h = heat[z]
            rgba = plt.get_cmap("magma")(h)
            rgba[..., 3] = np.clip(h, 0, 1) * 0.7
            ax.imshow(rgba, interpolation="bilinear")
            if truth is not None and np.any(truth[z]):
                ax.contour(truth[z].astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
            ax.set_title(f"{row.get('label', '')}  z={z}", fontsize=7)
            ax.axis("off")
    fig.suptitle((title + ("\n" + DEMO_LABEL if demo else "")).strip(), fontsize=9)
    return _save(fig, path)


def curves_figure(
    path: str | Path, curves: dict[str, dict[str, Any]], title: str = "", demo: bool = True
) -> Path:
    """Deletion and insertion curves, one line per method (a dashed grey line for 'random')."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, curve in curves.items():
        style = {"color": "0.5", "linestyle": "--"} if name == "random" else {}
        for ax, key in zip(axes, ("deletion", "insertion")):
            auc = curve.get(f"{key}_auc", float(np.trapezoid(curve[key], curve["fractions"])))
            label = f"{display_name(name)} (AUC {auc:.2f})"
            ax.plot(curve["fractions"], curve[key], label=label, **style)
    for ax, key in zip(axes, ("deletion", "insertion")):
        ax.set_xlabel("fraction of voxels " + ("removed" if key == "deletion" else "restored"))
        ax.set_ylabel("target probability")
        ax.set_title(
            f"{key} (" + ("lower is better" if key == "deletion" else "higher is better") + ")", fontsize=9
        )
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    fig.suptitle((title + ("\n" + DEMO_LABEL if demo else "")).strip(), fontsize=9)
    return _save(fig, path)


def phase_bars(
    path: str | Path, shares: dict[str, dict[str, float]], title: str = "", demo: bool = True
) -> Path:
    """Per-phase attribution as grouped bars, one group per heatmap label."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    names = list(shares)
    channels = list(next(iter(shares.values()))) if shares else []
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        ax.bar(np.arange(len(channels)) + i * width, [shares[name][c] for c in channels], width, label=name)
    ax.set_xticks(np.arange(len(channels)) + 0.4 - width / 2, channels)
    ax.set_ylabel("share of evidence")
    ax.legend(fontsize=7)
    ax.set_title((title + (" - " + DEMO_LABEL if demo else "")).strip(), fontsize=8)
    return _save(fig, path)
