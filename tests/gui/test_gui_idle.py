"""The dock's idle work: the explanation imports warmed in a worker once results are shown, and the
garbage collection a finished job deferred, run only when nobody has touched the viewer."""

from __future__ import annotations

import threading

import pytest

from napari_breastmri._napari import _idle, _worker
from napari_breastmri.types import Findings
from tests.gui.cases import tiny_case

pytestmark = pytest.mark.gui


def test_explanation_imports_are_warmed_in_a_worker_once_results_are_shown(dock, qtbot, monkeypatch):
    viewer, widget = dock
    calls: list[bool] = []

    def fake_warm(should_wait=None) -> list[str]:
        calls.append(threading.current_thread() is threading.main_thread())
        assert should_wait is not None and should_wait() is False  # nobody typed: no pause
        return []

    monkeypatch.setattr(_idle, "WARM_AFTER_S", 0.3)
    monkeypatch.setattr(_idle, "WARM_MODULES", ("a_module_nobody_imported",))
    monkeypatch.setattr(_idle, "warm_explain", fake_warm)
    monkeypatch.setitem(_idle._warmed, "done", False)
    study, _, _ = tiny_case()
    widget.set_study(study)
    qtbot.wait(1200)
    assert calls == [], "no warm-up before there are results to explain"
    widget.state.set_findings(Findings(study.shape, study.affine))
    qtbot.waitUntil(lambda: bool(calls), timeout=5000)
    assert calls == [False], "imported in the background worker, never on the UI thread"
    job = widget.idle.warm_job
    qtbot.waitUntil(lambda: job.finished_at is not None, timeout=5000)
    assert job.outcome == "done" and job in widget.jobs
    qtbot.wait(1200)
    assert calls == [False], "once per process"


def test_the_warm_up_pauses_between_modules_while_the_user_is_busy(monkeypatch):
    answers = iter([True, True, False, False])
    asked: list[int] = []

    def busy() -> bool:
        asked.append(1)
        return next(answers)

    monkeypatch.setattr(_idle, "WARM_MODULES", ("json", "a_module_that_does_not_exist"))
    assert _idle.warm_explain(busy) == ["a_module_that_does_not_exist"]
    assert len(asked) == 4, "asked again after each pause, then once before the second module"


def test_real_warm_up_modules_exist():
    """The names the warm-up imports are real modules (a rename would make it silently useless)."""
    import importlib.util

    for name in _idle.WARM_MODULES:
        assert importlib.util.find_spec(name) is not None, name


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
