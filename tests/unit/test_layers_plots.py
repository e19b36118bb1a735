"""Dock plots and the progress clock, headless (matplotlib Agg, no Qt)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from napari_breastmri._napari import _plots
from napari_breastmri._napari._worker import ProgressClock, format_seconds, user_message
from napari_breastmri.errors import MissingPhases
from napari_breastmri.types import CasePrediction, Progress


def test_curve_types_named_by_the_birads_rule():
    t = [0, 90, 180, 270, 360]
    assert _plots.classify_curve(t, [100, 200, 150, 140, 130]) == "washout"
    assert _plots.classify_curve(t, [100, 200, 205, 200, 195]) == "plateau"
    assert _plots.classify_curve(t, [100, 150, 170, 180, 200]) == "persistent"
    assert _plots.classify_curve(t, [100, 103, 104, 105, 106]) == "none"


def test_prediction_bars_draw_interval_per_class():
    fig = Figure()
    pred = CasePrediction(
        "pcr", {"no_pcr": 0.7, "pcr": 0.3}, {"no_pcr": (0.6, 0.8), "pcr": (0.2, 0.4)}, model="m"
    )
    _plots.prediction_bars(fig, {"pcr": pred})
    ax = fig.axes[0]
    widths = sorted(round(p.get_width(), 3) for p in ax.patches)
    assert widths == [0.3, 0.7]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["no_pcr", "pcr"]


def test_curve_plot_overlays_one_line_per_region():
    fig = Figure()
    _plots.curve_plot(fig, [0, 60, 120], [("a", np.array([100, 150, 140])), ("b", np.array([50, 60, 70]))])
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2 and np.allclose(lines[0].get_ydata(), [0, 50, 40])
    assert lines[0].get_color() != lines[1].get_color()


def test_progress_clock_estimates_time_left():
    now = [0.0]
    clock = ProgressClock(now=lambda: now[0])
    assert clock.seconds_left(0.5) is None  # too early to say
    now[0] = 10.0
    assert clock.seconds_left(0.25) == 30.0
    assert "about 30 s left" in clock.text(Progress("segment", 0.25, "window 3/12"))
    assert format_seconds(65) == "1 min 05 s"


def test_user_message_keeps_our_errors_and_flags_bugs():
    assert user_message(MissingPhases("Needs post1.")) == "Needs post1."
    assert "Unexpected error (ZeroDivisionError" in user_message(ZeroDivisionError("x"))
