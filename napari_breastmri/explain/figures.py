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


def heatmap_panels(
    path: str | Path,
    image: np.ndarray,
    affine: np.ndarray,
    panels: Sequence[dict[str, Any]],
    truth: np.ndarray | None = None,
    title: str = "",
    demo: bool = True,
) -> Path:
    """One panel per heatmap {"heat": (z,y,x), "label": str} on the axial slice through its peak:
    ``image`` in grey, the heatmap (magma), a + at the peak, the truth outline in cyan, and
    whether the peak lies on a truth lesion (the pointing game's rule, in mm through ``affine``)."""
    from .faithfulness import pointing_game

    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.6), squeeze=False)
    lo, hi = np.percentile(image, [1, 99.5])
    for ax, panel in zip(axes[0], panels):
        heat = np.asarray(panel["heat"], dtype=float)
        z, y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
        ax.imshow(image[z], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        rgba = plt.get_cmap("magma")(np.clip(heat[z], 0, 1))
        rgba[..., 3] = np.clip(heat[z], 0, 1) * 0.7
        ax.imshow(rgba, interpolation="bilinear")
        ax.plot([x], [y], marker="+", color="cyan", markersize=12)
        where = ""
        if truth is not None:
            if np.any(truth[z]):
                ax.contour(truth[z].astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
            hit = pointing_game(heat, affine, truth_mask=truth)
            where = "; peak on a true lesion: " + (
                "yes" if hit["pointing_hit"] else f"no ({hit['pointing_distance_mm']:.0f} mm away)"
            )
        ax.set_title(f"{panel.get('label', '')}\nslice {z} (its peak, +){where}", fontsize=7)
        ax.axis("off")
    fig.suptitle((title + (" - " + DEMO_LABEL if demo else "")).strip(), fontsize=9)
    return _save(fig, path)


def findings_heatmaps_figure(folder: str | Path, out: str | Path, models: Sequence[str] = ()) -> Path:
    """:func:`heatmap_panels` of the case-level heatmaps a ``breastmri analyze`` folder holds (those
    of ``models`` only, by name, when given), on the early subtraction of its study; for a phantom
    case (its recipe in findings.json) the true lesions, from the regenerated phantom."""
    from ..io import export
    from ..io.export_cli import load_findings_dir

    findings, _ = load_findings_dir(folder)
    study = export.study_for_findings_dir(folder, findings)
    chosen = [
        hm
        for hm in findings.heatmaps
        if hm.data is not None
        and "lesion" not in hm.target
        and (not models or hm.model.split("@")[0] in models)
    ]
    if not chosen:
        raise ValueError(f"{folder} holds no case-level heatmap of {list(models) or 'any model'}.")
    truth = None
    recipe = findings.study_source.get("phantom") if findings.study_source.get("kind") == "phantom" else None
    if recipe:
        truth = np.asarray(export._regenerate_phantom(recipe).label_mask) > 0
    image = np.asarray(study.data[1] - study.data[0], dtype=np.float32)
    panels = [
        {
            "heat": hm.data,
            "label": f"{hm.model.split('@')[0]}: {hm.target.split('=')[-1]}\n{display_name(hm.method)}",
        }
        for hm in chosen
    ]
    demo = any(m.demo for m in findings.models) or bool(findings.study_source.get("demo"))
    return heatmap_panels(
        out, image, study.affine, panels, truth, f"{Path(folder).name}: early subtraction", demo
    )


if __name__ == "__main__":  # python -m napari_breastmri.explain.figures FOLDER OUT.png [MODEL ...]
    import sys

    print(findings_heatmaps_figure(sys.argv[1], sys.argv[2], sys.argv[3:]))
