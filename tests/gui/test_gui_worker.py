"""Running long work from the dock: progress, cancel within 1 s, no half-made layers, errors."""

from __future__ import annotations

import time

import pytest

from napari_breastmri._napari import _worker
from napari_breastmri.errors import MissingPhases
from napari_breastmri.types import Findings, Progress

pytestmark = pytest.mark.gui


def _slow(n=200, pause=0.05, fail=False):
    def factory(should_cancel):
        for i in range(n):
            if should_cancel():
                return None
            time.sleep(pause)
            if fail and i == 2:
                raise MissingPhases("Needs a post-contrast phase.")
            yield Progress("segment", (i + 1) / n, f"window {i + 1}/{n}")
        return "result"

    return factory


def test_worker_cancel_stops_within_a_second_and_returns_nothing(qtbot):
    seen, results, cancelled = [], [], []
    job = _worker.start(
        _slow(), on_progress=seen.append, on_result=results.append, on_cancelled=lambda: cancelled.append(1)
    )
    qtbot.waitUntil(lambda: len(seen) >= 3, timeout=5000)
    job.cancel()
    qtbot.waitUntil(lambda: job.finished_at is not None, timeout=5000)
    assert job.finished_at - job.cancelled_at < 1.0
    assert results == [] and cancelled == [1] and job.outcome == "cancelled"


def test_worker_delivers_result_and_errors(qtbot):
    import sys

    results, errors = [], []
    before = sys.getswitchinterval()
    job = _worker.start(_slow(n=5, pause=0.01), on_result=results.append, on_error=errors.append)
    # while it runs the UI thread gets the interpreter lock back within 1 ms; restored afterwards
    assert sys.getswitchinterval() <= _worker.UI_SWITCH_INTERVAL_S
    qtbot.waitUntil(lambda: job.finished_at is not None, timeout=5000)
    assert results == ["result"] and job.outcome == "done"
    assert sys.getswitchinterval() == before
    job = _worker.start(_slow(n=5, pause=0.01, fail=True), on_result=results.append, on_error=errors.append)
    qtbot.waitUntil(lambda: job.finished_at is not None, timeout=5000)
    assert isinstance(errors[0], MissingPhases) and job.outcome == "failed"


def test_models_section_cancel_leaves_no_layers(dock, qtbot, monkeypatch):
    """The Models section's Run/Cancel around a pipeline that is slow; nothing is added on cancel."""
    from tests.gui.cases import tiny_case

    viewer, widget = dock
    study, mask, truth = tiny_case()
    widget.set_study(study)
    # the (empty) boxes and mask layers are made when the study opens, after its first image
    qtbot.waitUntil(lambda: widget.layer_with_role("boxes") is not None, timeout=5000)
    n_layers = len(viewer.layers)
    section = widget.sections["Models"]

    def fake_analyze(study, packages, *, follow_up=None, should_cancel=None, **_):
        for i in range(400):
            if should_cancel and should_cancel():
                from napari_breastmri.errors import Cancelled

                raise Cancelled("cancelled")
            time.sleep(0.02)
            yield Progress("segment", i / 400, "")
        return Findings(study.shape, study.affine)

    import napari_breastmri.inference.pipeline as pipeline
    import napari_breastmri.models.package as package

    monkeypatch.setattr(pipeline, "analyze", fake_analyze)
    monkeypatch.setattr(package, "load_package", lambda path: path)
    monkeypatch.setattr(section, "chosen", lambda: [type("I", (), {"path": "x"})()])
    job = section.run()
    qtbot.waitUntil(lambda: section.bar.value() > 10, timeout=5000)
    assert "left" in section.step_label.text() or "segment" in section.step_label.text()
    section.cancel()
    qtbot.waitUntil(lambda: job.finished_at is not None, timeout=5000)
    assert job.finished_at - job.cancelled_at < 1.0
    qtbot.wait(200)  # any staged layer writes would have run by now
    assert len(viewer.layers) == n_layers and not widget.layers_with_role("heatmap")
    assert len(widget.layer_with_role("boxes").data) == 0  # nothing half-made: no box, no label
    assert not widget.layer_with_role("mask").data.any()
    assert "Cancelled" in section.step_label.text() and section.run_btn.isEnabled()


def test_errors_reach_the_user_as_notifications(dock, qtbot, monkeypatch):
    viewer, widget = dock
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    job = widget.sections["Study"].open_source("/definitely/not/here")
    qtbot.waitUntil(lambda: job.finished_at is not None, timeout=10_000)
    assert shown and "Could not open" in widget.sections["Study"].summary.text()
