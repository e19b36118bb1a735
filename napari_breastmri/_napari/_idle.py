"""Work the dock does while nobody is waiting for it: collect garbage.

* **The deferred full garbage collection.** Jobs leave the heap frozen when they end
  (:func:`._worker._quiet_collector`); :func:`._worker.settle_collector` unfreezes and collects it
  (a full pass on the UI thread: 0.4-0.5 s with napari, a study and the demo models loaded,
  `bench_viewer`) once nobody has touched the viewer for
  :data:`COLLECT_AFTER_S` and no job runs.

"Idle" means: no job of the dock running, no results being written into layers, and no mouse,
wheel or key event in the application for the given time (an application event filter notes the
last one; it only reads the event type).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QEvent, QObject, QTimer

if TYPE_CHECKING:
    from ._widget import BreastMRIWidget

#: seconds without input (and without jobs) before the deferred full collection runs
COLLECT_AFTER_S = 5.0
#: how often the dock checks whether it is idle (ms)
POLL_MS = 500

_INPUT_EVENTS = frozenset(
    int(t)
    for t in (
        QEvent.MouseButtonPress,
        QEvent.MouseButtonRelease,
        QEvent.MouseButtonDblClick,
        QEvent.MouseMove,
        QEvent.Wheel,
        QEvent.KeyPress,
        QEvent.KeyRelease,
        QEvent.TouchBegin,
        QEvent.TouchUpdate,
    )
)


class IdleTasks(QObject):
    """Polls the dock every :data:`POLL_MS` and starts the idle work when its time has come."""

    def __init__(self, dock: BreastMRIWidget) -> None:
        super().__init__(dock)
        from qtpy.QtWidgets import QApplication

        self.dock = dock
        self.last_input = time.monotonic()
        self.busy_until = time.monotonic()  # the last moment a job ran or results were written
        self.collections: list[float] = []  # seconds each deferred collection took (diagnostics)
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self)
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        self.timer.start()

    def eventFilter(self, obj: Any, event: Any) -> bool:  # Qt names it
        if event.type() in _INPUT_EVENTS:
            self.last_input = time.monotonic()
        return False

    def idle_for(self) -> float:
        """Seconds since the last input or the last busy moment of the dock (0 while busy)."""
        now = time.monotonic()
        if any(getattr(job, "running", False) for job in self.dock.jobs) or self.dock.results_pending:
            self.busy_until = now
            return 0.0
        ended = [job.finished_at for job in self.dock.jobs if getattr(job, "finished_at", None)]
        return now - max(self.last_input, self.busy_until, *ended)

    def poll(self) -> None:
        if self.dock._closing():
            self.timer.stop()
            return
        if self.idle_for() >= COLLECT_AFTER_S:
            from ._worker import settle_collector

            took = settle_collector()
            if took is not None:
                self.collections.append(took)
