"""Work the dock does while nobody is waiting for it: warm the explanation imports, collect garbage.

Two things cost the UI time once and can be done at a moment the user does not notice:

* **Warm-up of the explanation stack.** The first Grad-CAM imports pytorch-grad-cam (it brings
  torchvision, SymPy, pandas, scikit-learn: about 5 s and 270 000 objects). Once a run's results
  are shown and the dock has been idle for :data:`WARM_AFTER_S`, :func:`warm_explain` imports it in
  the dock's background worker (never on the UI thread), so the first Explain click does not wait
  for it; it pauses between modules while the user is at work. Once per process.
* **The deferred full garbage collection.** Jobs leave the heap frozen when they end
  (:func:`._worker._quiet_collector`); :func:`._worker.settle_collector` unfreezes and collects it
  (a full pass on the UI thread: 0.4-0.5 s with napari, a study and the demo models loaded,
  `bench_viewer`) once nobody has touched the viewer for
  :data:`COLLECT_AFTER_S` and no job runs.

"Idle" means: no job of the dock running, no layers being added or written over event-loop turns
(results, protocol and teaching panels), and no mouse,
wheel or key event in the application for the given time (an application event filter notes the
last one; it only reads the event type).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QEvent, QObject, QTimer

if TYPE_CHECKING:
    from ._widget import BreastMRIWidget

#: seconds of idleness after results are shown before the explanation imports are warmed
WARM_AFTER_S = 2.0
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

#: modules the first explanation imports: the explain area's path, then pytorch-grad-cam's heavy
#: dependencies one by one (so the warm-up can pause between them), then pytorch-grad-cam itself
WARM_MODULES = (
    "napari_breastmri.explain",
    "napari_breastmri.explain.study",
    "napari_breastmri.explain.cam",
    "napari_breastmri.explain._torch_cam",
    "napari_breastmri.explain.faithfulness",
    "scipy.stats",
    "sklearn.decomposition",
    "cv2",
    "torchvision",
    "matplotlib.pyplot",
    "pytorch_grad_cam",
)
_warmed = {"done": False}


def warm_explain(should_wait: Callable[[], bool] | None = None) -> list[str]:
    """Import the explanation stack (runs in a worker thread), one module at a time; before each,
    wait while ``should_wait()`` says the user is busy (importing a compiled extension holds the
    interpreter lock, so the UI may hitch meanwhile). Returns the modules that could not be
    imported (an optional extra missing: the explanation reports it when asked for)."""
    import importlib

    missing = []
    for name in WARM_MODULES:
        while should_wait is not None and should_wait():
            time.sleep(0.2)
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


class IdleTasks(QObject):
    """Polls the dock every :data:`POLL_MS` and starts the idle work when its time has come."""

    def __init__(self, dock: BreastMRIWidget) -> None:
        super().__init__(dock)
        from qtpy.QtWidgets import QApplication

        self.dock = dock
        self.last_input = time.monotonic()
        self.busy_until = time.monotonic()  # the last moment a job ran or results were written
        self.warm_job: Any = None
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
        if any(getattr(job, "running", False) for job in self.dock.jobs) or self.dock.staging:
            self.busy_until = now
            return 0.0
        ended = [job.finished_at for job in self.dock.jobs if getattr(job, "finished_at", None)]
        return now - max(self.last_input, self.busy_until, *ended)

    def poll(self) -> None:
        if self.dock._closing():
            self.timer.stop()
            return
        idle = self.idle_for()
        if idle >= WARM_AFTER_S and self._should_warm():
            self.start_warm()
        elif idle >= COLLECT_AFTER_S:
            from ._worker import settle_collector

            took = settle_collector()
            if took is not None:
                self.collections.append(took)

    def _should_warm(self) -> bool:
        """Once per process, after results are shown (Explain needs them), unless already imported."""
        if _warmed["done"] or self.dock.state.findings is None:
            return False
        if all(name in sys.modules for name in WARM_MODULES):
            _warmed["done"] = True
            return False
        return True

    def start_warm(self) -> Any:
        """Import the explanation stack in the dock's background worker."""
        from ._worker import run_blocking_in_thread

        _warmed["done"] = True

        def user_busy() -> bool:  # read from the worker thread: one float, set by the UI thread
            return time.monotonic() - self.last_input < WARM_AFTER_S

        self.warm_job = run_blocking_in_thread(
            lambda: warm_explain(user_busy),
            on_result=lambda _: None,
            on_error=lambda _: None,
            step="warming up",
        )
        self.dock.jobs.append(self.warm_job)
        return self.warm_job
