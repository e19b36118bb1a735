"""The dock's idle work: the garbage collection a finished job deferred, run only when nobody has
touched the viewer."""

from __future__ import annotations

import pytest

from napari_breastmri._napari import _idle, _worker

pytestmark = pytest.mark.gui


def test_a_deferred_collection_runs_only_when_the_user_is_idle(dock, qtbot, monkeypatch):
    from qtpy.QtCore import Qt

    viewer, widget = dock
    monkeypatch.setattr(_idle, "COLLECT_AFTER_S", 1.0)

    def quick(_should_cancel):
        yield from ()
        return "done"

    qtbot.waitUntil(lambda: not any(j.running for j in widget.jobs), timeout=10_000)  # the dock's warm-ups
    job = _worker.start(quick)
    widget.jobs.append(job)
    qtbot.waitUntil(lambda: job.finished_at is not None, timeout=5000)
    assert _worker.collector_deferred(), "the finished job left the heap frozen"
    before = len(widget.idle.collections)
    for _ in range(6):  # a user typing every 0.3 s keeps it from running
        qtbot.keyClick(widget, Qt.Key_Shift)
        qtbot.wait(300)
        assert widget.idle.idle_for() < 1.0
    assert _worker.collector_deferred() and len(widget.idle.collections) == before
    qtbot.waitUntil(lambda: not _worker.collector_deferred(), timeout=5000)
    assert len(widget.idle.collections) == before + 1
