"""The report's figures, drawn headless with matplotlib's Agg backend and returned as PNG bytes.

Why bytes: the same image is written to disk (key_images/*.png, for a PACS or a slide) and
embedded base64 in report.html, so the HTML stays one self-contained file. No figure ever draws
patient data: the report decides what text shows, the pictures only show anatomy and findings.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from ..types import CasePrediction, Findings, Heatmap, Lesion, Study

BOX_COLOUR = "#ffd400"
MASK_COLOUR = "#00e5ff"
CURVE_COLOURS = {"persistent": "#2a9d8f", "plateau": "#e9c46a", "washout": "#e63946", "none": "#888888"}


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, facecolor="white")
    return buf.getvalue()


def _window(img: np.ndarray) -> tuple[float, float]:
    """A display window from the 1st to the 99.5th percentile (robust to bright vessels)."""
    finite = img[np.isfinite(img)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [1, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1)


def _aspect(study: Study) -> float:
    _, dy, dx = study.spacing
    return dy / dx


def _draw_box(ax, bbox: Sequence[int], colour: str = BOX_COLOUR, label: str | None = None) -> None:
    from matplotlib.patches import Rectangle

    _, y0, x0, _, y1, x1 = bbox
    ax.add_patch(
        Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.5)
    )
    if label:
        ax.text(x0 - 0.5, y0 - 1.5, label, color=colour, fontsize=8, va="bottom")


def _draw_mask(ax, mask2d: np.ndarray | None) -> None:
    if mask2d is not None and mask2d.any():
        ax.contour(mask2d.astype(float), levels=[0.5], colors=[MASK_COLOUR], linewidths=1.2)


def _draw_heatmap(ax, heat2d: np.ndarray | None, aspect: float = 1.0) -> None:
    if heat2d is not None and np.nanmax(heat2d) > 0:
        shown = np.ma.masked_less(heat2d, 0.2)
        ax.imshow(shown, cmap="jet", vmin=0, vmax=1, alpha=0.45, interpolation="nearest", aspect=aspect)


def _zoom_window(
    bbox: Sequence[int], shape: Sequence[int], margin: float = 0.75
) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): a square-ish window around the box with a margin, inside the image."""
    _, y0, x0, _, y1, x1 = (int(v) for v in bbox)
    half = max(y1 - y0, x1 - x0) * (0.5 + margin) + 4
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    ny, nx = int(shape[1]), int(shape[2])
    return (
        max(0, int(cy - half)),
        min(ny, int(np.ceil(cy + half))),
        max(0, int(cx - half)),
        min(nx, int(np.ceil(cx + half))),
    )


def lesion_key_image(
    study: Study,
    subtraction: np.ndarray,
    sub_label: str,
    findings: Findings,
    lesion: Lesion,
    heatmap: Heatmap | None,
) -> bytes:
    """Four panels: the lesion's central slice on pre and subtraction, a zoom, and the subtraction MIP.

    The box is yellow, the mask outline cyan, the heatmap (when there is one) a jet overlay on the
    subtraction; the MIP shows the box projected through all slices.
    """
    z0, _, _, z1, _, _ = lesion.bbox
    z = int(round(lesion.centroid_zyx[0])) if lesion.centroid_zyx else (z0 + z1 - 1) // 2
    z = min(max(z, 0), study.shape[0] - 1)
    mask = None
    if findings.label_mask is not None and lesion.label > 0:
        mask = np.asarray(findings.label_mask) == lesion.label
    heat = None
    if heatmap is not None and np.asarray(heatmap.data).shape == study.shape:
        heat = np.asarray(heatmap.data)
    pre = study.data[0]
    mip = subtraction.max(axis=0)
    fig = _figure(14, 4.0)
    axes = fig.subplots(1, 4)
    m_z = None if mask is None else mask[z]
    h_z = None if heat is None else heat[z]
    panels = [
        (pre[z], f"{study.phase_labels[0]} - slice {z + 1}/{study.shape[0]}", m_z, None, None),
        (subtraction[z], f"{sub_label} - slice {z + 1}", m_z, h_z, None),
        (subtraction[z], "zoom", m_z, h_z, _zoom_window(lesion.bbox, study.shape)),
        (
            mip,
            f"MIP of {sub_label}",
            None if mask is None else mask.any(axis=0),
            None if heat is None else heat.max(axis=0),
            None,
        ),
    ]
    for ax, (img, title, m2, h2, zoom) in zip(axes, panels):
        lo, hi = _window(img if zoom is None else img[zoom[0] : zoom[1], zoom[2] : zoom[3]])
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, aspect=_aspect(study), interpolation="nearest")
        _draw_heatmap(ax, h2, _aspect(study))
        _draw_mask(ax, m2)
        _draw_box(ax, lesion.bbox, label=None if zoom else f"L{lesion.id}")
        if zoom is not None:
            ax.set_xlim(zoom[2] - 0.5, zoom[3] - 0.5)
            ax.set_ylim(zoom[1] - 0.5, zoom[0] - 0.5)
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    if heat is not None:
        fig.suptitle(f"heatmap: {heatmap.method} for {heatmap.target} ({heatmap.model})", fontsize=9)
    return _png(fig)


def overview_mip(
    study: Study,
    subtraction: np.ndarray,
    sub_label: str,
    lesions: Sequence[Lesion],
    heatmap: Heatmap | None = None,
) -> bytes:
    """The subtraction MIP with every reported lesion's box (where to look first); with a heatmap,
    a second panel shows its maximum projection over the same MIP (what a case-level model used)."""
    mip = subtraction.max(axis=0)
    heat = None
    if heatmap is not None and np.asarray(heatmap.data).shape == study.shape:
        heat = np.asarray(heatmap.data).max(axis=0)
    fig = _figure(6 if heat is None else 11, 5)
    axes = fig.subplots(1, 1 if heat is None else 2)
    axes = [axes] if heat is None else list(axes)
    lo, hi = _window(mip)
    for i, ax in enumerate(axes):
        ax.imshow(mip, cmap="gray", vmin=lo, vmax=hi, aspect=_aspect(study), interpolation="nearest")
        for les in lesions:
            _draw_box(ax, les.bbox, label=f"L{les.id}")
        ax.set_axis_off()
        if i == 0:
            ax.set_title(f"MIP of {sub_label}, {len(lesions)} lesion(s)", fontsize=10)
        else:
            _draw_heatmap(ax, heat, _aspect(study))
            ax.set_title(
                f"{heatmap.method} for {heatmap.target} ({heatmap.model}), max over slices", fontsize=9
            )
    return _png(fig)


def kinetic_curve(
    times_s: np.ndarray, enhancement_pct: np.ndarray, std_pct: np.ndarray | None, curve_type: str, title: str
) -> bytes:
    """Relative enhancement (%) against time (min), coloured by the BI-RADS curve type."""
    fig = _figure(4.2, 3.0)
    ax = fig.subplots()
    t_min = np.asarray(times_s, float) / 60.0
    colour = CURVE_COLOURS.get(curve_type, "#333333")
    ax.plot(t_min, enhancement_pct, "o-", color=colour, label=curve_type)
    if std_pct is not None:
        ax.fill_between(t_min, enhancement_pct - std_pct, enhancement_pct + std_pct, color=colour, alpha=0.15)
    ax.axhline(0, color="#999999", linewidth=0.8)
    ax.set_xlabel("time after first phase (min)")
    ax.set_ylabel("enhancement (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def prediction_bars(pred: CasePrediction) -> bytes:
    """One horizontal bar per class with its interval as an error bar; the top class highlighted."""
    classes = list(pred.probabilities)
    probs = np.array([pred.probabilities[c] for c in classes], float)
    lows = np.array([pred.intervals.get(c, (p, p))[0] for c, p in zip(classes, probs)], float)
    highs = np.array([pred.intervals.get(c, (p, p))[1] for c, p in zip(classes, probs)], float)
    err = np.vstack([np.clip(probs - lows, 0, None), np.clip(highs - probs, 0, None)])
    names = [pred.display_names.get(c, c) for c in classes]
    fig = _figure(5.5, 0.5 + 0.45 * len(classes))
    ax = fig.subplots()
    colours = ["#1d3557" if c == pred.top_class else "#a8dadc" for c in classes]
    ax.barh(range(len(classes)), probs, xerr=err, color=colours, capsize=4, ecolor="#444444")
    ax.set_yticks(range(len(classes)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    ax.set_title(f"{pred.target} ({pred.model})", fontsize=10)
    for i, p in enumerate(probs):
        ax.text(min(p + 0.02, 0.9), i, f"{p:.2f}", va="center", fontsize=8)
    return _png(fig)
