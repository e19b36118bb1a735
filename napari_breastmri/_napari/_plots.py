"""Matplotlib figures for the dock: probability bars with intervals, time-signal curves,
per-phase attribution bars. Pure functions drawing on a given Figure (no pyplot state), so the
dock, the screenshots and tests share them; ``canvas()`` wraps a Figure for Qt."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..types import CasePrediction

#: colours for overlaid curves (matplotlib's tab10, readable on the dark theme)
CURVE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
DARK_BG = "#262930"  # napari's dark theme panel colour
FG = "#d6d6d6"


def style(fig: Any) -> None:
    """Dark background matching napari's theme."""
    fig.patch.set_facecolor(DARK_BG)
    for ax in fig.axes:
        ax.set_facecolor(DARK_BG)
        ax.tick_params(colors=FG, labelsize=7)
        for spine in ax.spines.values():
            spine.set_color("#666")
        ax.xaxis.label.set_color(FG)
        ax.yaxis.label.set_color(FG)
        ax.title.set_color(FG)


def canvas(width: float = 3.6, height: float = 2.2) -> Any:
    """A Qt matplotlib canvas with a Figure (for the dock)."""
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    cv = FigureCanvasQTAgg(fig)
    cv.setMinimumHeight(int(height * 80))
    return cv


def render_rgba(
    draw: Callable[[Any], None], width_px: int, height_px: int, scale: float = 1.0
) -> tuple[Any, np.ndarray]:
    """Draw ``draw(fig)`` on a new Agg Figure of this pixel size and return (figure, RGBA array).

    Why: a matplotlib draw of the prediction bars takes 0.1-0.5 s (constrained layout, text
    metrics); on the UI thread that is a visible freeze. A Figure with its own Agg canvas is a
    plain object, so this runs in a worker thread and the dock only shows the pixels
    (:class:`._figure_view.FigureView`). ``scale`` is the screen's device-pixel ratio.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100.0 * max(scale, 0.5)
    fig = Figure(
        figsize=(max(width_px, 50) / 100.0, max(height_px, 40) / 100.0), dpi=dpi, layout="constrained"
    )
    agg = FigureCanvasAgg(fig)
    draw(fig)
    agg.draw()
    return fig, np.array(agg.buffer_rgba(), copy=True)


def prediction_bars(fig: Any, predictions: Mapping[str, CasePrediction]) -> None:
    """One horizontal bar chart per target: probability per class with its interval."""
    fig.clear()
    items = list(predictions.values())
    if not items:
        ax = fig.add_subplot(111)
        ax.text(0.5, 0.5, "no case-level predictions", ha="center", va="center", color=FG, fontsize=8)
        ax.set_axis_off()
        style(fig)
        return
    heights = [max(1, len(p.probabilities)) for p in items]
    grid = fig.add_gridspec(len(items), 1, height_ratios=heights)
    for i, pred in enumerate(items):
        ax = fig.add_subplot(grid[i])
        classes = list(pred.probabilities)
        probs = np.array([pred.probabilities[c] for c in classes])
        lows = np.array([pred.intervals.get(c, (p, p))[0] for c, p in zip(classes, probs)])
        highs = np.array([pred.intervals.get(c, (p, p))[1] for c, p in zip(classes, probs)])
        err = np.vstack([np.clip(probs - lows, 0, None), np.clip(highs - probs, 0, None)])
        names = [pred.display_names.get(c, c) for c in classes]
        top = int(np.argmax(probs))
        colors = ["#e0a030" if j == top else "#5a8dd6" for j in range(len(classes))]
        ax.barh(range(len(classes)), probs, xerr=err, color=colors, ecolor=FG, capsize=2, height=0.6)
        ax.set_yticks(range(len(classes)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title(f"{pred.target}  ({pred.model})" if pred.model else pred.target, fontsize=8, loc="left")
        for j, p in enumerate(probs):
            ax.text(min(p + 0.02, 0.9), j, f"{p:.2f}", va="center", fontsize=6, color=FG)
    style(fig)


def curve_plot(
    fig: Any,
    times_s: Sequence[float],
    curves: Sequence[tuple[str, np.ndarray]],
    *,
    relative: bool = True,
) -> None:
    """Time-signal curves overlaid in different colours; relative enhancement (%) by default."""
    fig.clear()
    ax = fig.add_subplot(111)
    t = np.asarray(times_s, dtype=float)
    for i, (label, values) in enumerate(curves):
        v = np.asarray(values, dtype=float)
        y = 100.0 * (v - v[0]) / v[0] if relative and v[0] > 0 else v
        ax.plot(
            t, y, "o-", color=CURVE_COLORS[i % len(CURVE_COLORS)], label=label, markersize=3, linewidth=1.2
        )
    ax.set_xlabel("time (s)", fontsize=7)
    ax.set_ylabel("enhancement (%)" if relative else "signal", fontsize=7)
    if curves:
        leg = ax.legend(fontsize=6, facecolor=DARK_BG, edgecolor="#666")
        for text in leg.get_texts():
            text.set_color(FG)
    ax.grid(alpha=0.2)
    style(fig)


def phase_bars(fig: Any, attribution: Mapping[str, float]) -> None:
    """Share of the evidence per input channel (pre, post1, sub1 ...), as bars."""
    fig.clear()
    ax = fig.add_subplot(111)
    names = list(attribution)
    vals = np.array([attribution[n] for n in names], dtype=float)
    ax.bar(range(len(names)), vals, color="#e07050")
    ax.set_xticks(range(len(names)), names, fontsize=7, rotation=0)
    ax.set_ylabel("share of evidence", fontsize=7)
    ax.set_ylim(0, max(1e-6, float(vals.max()) * 1.15) if len(vals) else 1)
    style(fig)


def classify_curve(times_s: Sequence[float], values: Sequence[float], early_s: float = 90.0) -> str:
    """BI-RADS curve type of one curve: late change vs the early post-contrast value.

    Early = the phase closest to ``early_s`` after the first post-contrast phase; late = last
    phase. Above +10 % persistent, within +-10 % plateau, below -10 % washout; "none" when the
    initial enhancement is below 10 % (same rule as the kinetics package's maps).
    """
    t = np.asarray(times_s, dtype=float)
    v = np.asarray(values, dtype=float)
    if len(v) < 3 or v[0] <= 0:
        return "none"
    i_early = 1 + int(np.argmin(np.abs(t[1:] - (t[0] + early_s))))
    s0, se, sl = v[0], v[i_early], v[-1]
    if (se - s0) / s0 < 0.10:
        return "none"
    change = (sl - se) / se
    return "persistent" if change > 0.10 else "washout" if change < -0.10 else "plateau"
