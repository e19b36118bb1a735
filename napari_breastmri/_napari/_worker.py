"""Run the core's progress generators off the UI thread, with progress, time left and Cancel.

stardist-napari's model: the core is a generator yielding :class:`~napari_breastmri.types.Progress`
and returning its result; napari's ``thread_worker`` runs it in a thread and delivers yields and
the result to the UI thread through Qt signals. Workers never touch Qt objects: the callbacks
given here are invoked by those signals on the UI thread, and the result reaches the viewer only
when the generator has *returned*, so a cancelled or failed run never leaves half-made layers.

Cancel: the generator factory receives ``should_cancel`` (a callable the core polls between
windows) and the worker is also asked to quit at its next yield; whichever comes first stops it.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from ..errors import BreastMRIError, Cancelled
from ..types import Progress

GenFactory = Callable[[Callable[[], bool]], Generator[Progress, None, Any]]


@dataclass
class ProgressClock:
    """Turns Progress fractions into a time-left estimate (pure: testable without Qt).

    The estimate is the elapsed time scaled by the remaining fraction; it is withheld until 3 %
    of the work and 0.5 s have passed, when a linear extrapolation starts to mean something.
    """

    now: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.started = self.now()

    def seconds_left(self, fraction: float) -> float | None:
        elapsed = self.now() - self.started
        if fraction < 0.03 or elapsed < 0.5:
            return None
        return max(0.0, elapsed * (1.0 - min(fraction, 1.0)) / fraction)

    def text(self, step: Progress) -> str:
        left = self.seconds_left(step.fraction)
        message = f"{step.step}: {step.message}" if step.message else step.step
        if left is None:
            return message
        return f"{message} - about {format_seconds(left)} left"


def format_seconds(seconds: float) -> str:
    """'8 s', '1 min 05 s' - short enough for a status line."""
    seconds = int(round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


class Job:
    """One running computation: its napari worker, its cancel flag and when it was cancelled."""

    def __init__(self, worker: Any, cancel_event: threading.Event) -> None:
        self.worker = worker
        self.cancel_event = cancel_event
        self.cancelled_at: float | None = None
        self.finished_at: float | None = None
        self.outcome: str = "running"  # running | done | cancelled | failed

    @property
    def running(self) -> bool:
        return self.outcome == "running"

    def cancel(self) -> None:
        """Ask the work to stop: the core sees should_cancel() True, the worker quits at its next yield."""
        if not self.running:
            return
        self.cancelled_at = time.monotonic()
        self.cancel_event.set()
        self.worker.quit()


#: while a worker runs, the UI thread waits at most this long for the interpreter lock (CPython's
#: default is 5 ms; every Qt call that releases the lock may wait that long again, so a paint
#: made of many calls took several times its own CPU time while a model ran in the worker)
UI_SWITCH_INTERVAL_S = 0.001
_switch = {"jobs": 0, "before": None}


def _fast_switching(on: bool) -> None:
    """Shorten the interpreter's thread switch interval while at least one job runs."""
    if on:
        if _switch["jobs"] == 0:
            _switch["before"] = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch["before"], UI_SWITCH_INTERVAL_S))
        _switch["jobs"] += 1
    elif _switch["jobs"] > 0:
        _switch["jobs"] -= 1
        if _switch["jobs"] == 0 and _switch["before"] is not None:
            sys.setswitchinterval(_switch["before"])


#: how many jobs run with the cyclic garbage collector quietened (see _quiet_collector), and
#: whether the last one left the heap frozen for :func:`settle_collector`
_collector: dict[str, Any] = {"jobs": 0, "deferred": False}


def _quiet_collector(on: bool, *, defer_unfreeze: bool = False) -> None:
    """While jobs run, keep the cyclic garbage collector's full passes from holding the lock long.

    Why: a full (generation 2) collection walks every container object of the process while
    holding the interpreter lock, so the UI thread cannot run meanwhile. With napari, Qt and a study
    loaded that is about half a million objects; a first run's imports (pytorch-grad-cam alone
    brings torchvision, SymPy, pandas, scikit-learn: ~270 000 objects) trigger such passes in the
    worker: 230-460 ms holds measured (``tests/benchmarks/gil_holds.py``).

    How: the first job to start calls ``gc.freeze`` (what exists now moves to the permanent
    generation, which collections skip), and while jobs run, an *automatic* full collection first
    freezes what exists then, so it walks next to nothing. Generation 0 and 1 passes (most cyclic
    garbage dies young) and reference counting work as usual; explicit ``gc.collect()`` calls are
    left alone (see :func:`_freeze_before_full_pass`). The last job to end unfreezes, so cyclic
    garbage among the frozen objects is collected again by the next full pass. Nothing else in the
    plugin uses ``gc.freeze``.

    ``defer_unfreeze`` (what :func:`start` passes): the last job to end leaves the heap frozen.
    Unfrozen at once, the whole heap lands in the oldest generation and the next automatic full
    pass walks all of it, about 0.3 s on the UI thread a second after every run (``bench_viewer``).
    The dock calls :func:`settle_collector` instead when the user has been idle for a while.
    """
    if on:
        if _collector["jobs"] == 0:
            gc.freeze()
            if _freeze_before_full_pass not in gc.callbacks:
                gc.callbacks.append(_freeze_before_full_pass)
        _collector["jobs"] += 1
    elif _collector["jobs"] > 0:
        _collector["jobs"] -= 1
        if _collector["jobs"] == 0:
            if defer_unfreeze:
                _collector["deferred"] = True
            else:
                _release_collector()


def _release_collector() -> None:
    while _freeze_before_full_pass in gc.callbacks:
        gc.callbacks.remove(_freeze_before_full_pass)
    gc.unfreeze()
    _collector["deferred"] = False


def collector_deferred() -> bool:
    """True while a finished job has left the heap frozen and no job runs (see settle_collector)."""
    return bool(_collector["deferred"]) and _collector["jobs"] == 0


def settle_collector() -> float | None:
    """Unfreeze the heap a finished job left frozen and collect it now; the seconds it took, or
    None when there was nothing to do (nothing deferred, or a job runs: it unfreezes later).

    Why a separate call: the full pass walks the whole heap (0.2-0.4 s with napari and a study)
    on the calling thread, so the caller picks a moment the user will not notice (the dock: when
    nobody has touched the viewer for a while, see ``_idle``). Until then, cyclic garbage among
    objects older than the last job (e.g. a closed study's layers) waits in the frozen heap;
    everything younger and everything freed by reference counting is freed as usual."""
    if not collector_deferred():
        return None
    started = time.perf_counter()
    _release_collector()
    gc.collect()
    return time.perf_counter() - started


def _freeze_before_full_pass(phase: str, info: dict[str, Any]) -> None:
    """gc callback: an automatic full pass during a job freezes the heap first, so it walks nothing.

    The callback runs before the pass reads its generation lists (CPython's ``gc`` invokes "start"
    callbacks first). Automatic passes start when the generation 0 count is over its threshold;
    an explicit ``gc.collect()`` (e.g. freeing memory after an out-of-memory error) almost never
    meets that and is not touched.
    """
    if phase != "start" or info.get("generation") != 2 or not _collector["jobs"]:
        return
    if gc.get_count()[0] > gc.get_threshold()[0]:
        gc.freeze()


#: the worker thread's niceness during a job (Linux). On a small machine the UI thread competes
#: for the cores with the worker, software OpenGL's render threads and other programs; a lower
#: priority for the worker lets the UI thread (and the renderer it waits for) run first.
WORKER_NICE = 10


def _background_priority() -> tuple[int, int] | None:
    """Lower the calling thread's CPU priority (Linux only); (thread id, niceness before) or None."""
    if not sys.platform.startswith("linux") or not hasattr(os, "setpriority"):
        return None
    tid = threading.get_native_id()
    try:
        before = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, max(before, WORKER_NICE))
    except OSError:
        return None
    return tid, before


def _restore_priority(saved: tuple[int, int] | None) -> None:
    """Give the pool thread its niceness back; without the privilege to, it stays a background thread."""
    if saved is None:
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, *saved)


def _drive(factory: GenFactory, cancel_event: threading.Event):
    """The worker body: build the generator in the thread (heavy imports happen there too)."""
    saved = _background_priority()
    try:
        gen = factory(cancel_event.is_set)
        result = yield from gen
    finally:
        _restore_priority(saved)
    if cancel_event.is_set():
        raise Cancelled("The run was cancelled; nothing was added to the viewer.")
    return result


#: jobs started and not yet finished. Strong references on purpose: a job dropped by its owner
#: (a closed viewer's dock) must keep its worker and the worker's Qt signal object alive until the
#: thread ends, or the thread emits into a deleted object and the process aborts; and
#: :func:`stop_all` must reach them at exit
_RUNNING: set[Job] = set()
#: jobs that finished while others still ran: kept until none runs (see _restore_warning_hook)
_FINISHED_WHILE_BUSY: list[Job] = []
#: the process's warning display before any worker touched it
_ORIGINAL_SHOWWARNING = warnings.showwarning


def _restore_warning_hook() -> None:
    """Put the process's ``warnings.showwarning`` back once no job runs; let finished jobs go.

    Why: superqt's worker swaps the process-wide ``warnings.showwarning`` for one that emits its
    own signal, inside ``warnings.catch_warnings()``, which is not thread-safe. Two overlapping
    workers can leave the first one's hook installed after both ended, and the next warning from
    any thread then emits into that worker's deleted signals and the process aborts (seen at the
    end of ``make screenshots``). Finished workers are kept alive until the hook is restored.
    """
    if not _RUNNING:
        warnings.showwarning = _ORIGINAL_SHOWWARNING
        _FINISHED_WHILE_BUSY.clear()


def stop_all(wait_s: float = 10.0) -> int:
    """Cancel every running job and wait for the worker threads; returns how many were running.

    Why: a worker still running when the interpreter exits (a faithfulness follow-up or the
    explanation warm-up outliving a closed viewer) emits into signal objects Qt has already
    deleted, and the whole process aborts. Registered with :mod:`atexit`; also safe to call when a
    viewer closes.
    """
    from qtpy.QtCore import QThreadPool

    running = [job for job in list(_RUNNING) if job.running]
    for job in running:
        job.cancel()
    if running:
        QThreadPool.globalInstance().waitForDone(int(wait_s * 1000))
        _RUNNING.clear()
    _restore_warning_hook()
    return len(running)


atexit.register(stop_all)


def start(
    factory: GenFactory,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    on_result: Callable[[Any], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
    on_cancelled: Callable[[], None] | None = None,
    on_finished: Callable[[Job], None] | None = None,
) -> Job:
    """Start ``factory(should_cancel)``'s generator in a napari thread worker and return its Job."""
    # superqt's worker (the one napari's thread_worker wraps) without napari's relay of errors to
    # its console: our errors are shown once, as a notification with the user message
    from superqt.utils import create_worker

    cancel_event = threading.Event()
    worker = create_worker(_drive, factory, cancel_event, _start_thread=False, _ignore_errors=True)
    job = Job(worker, cancel_event)

    def _yielded(step: Any) -> None:
        if isinstance(step, Progress) and on_progress is not None and job.running:
            on_progress(step)

    def _returned(value: Any) -> None:
        job.outcome = "done"
        if on_result is not None:
            on_result(value)

    def _errored(exc: BaseException) -> None:
        if isinstance(exc, Cancelled) or cancel_event.is_set():
            _aborted()
            return
        job.outcome = "failed"
        if on_error is not None:
            on_error(exc)

    def _aborted(*_: Any) -> None:
        if job.outcome in ("cancelled",):
            return
        job.outcome = "cancelled"
        if on_cancelled is not None:
            on_cancelled()

    def _finished() -> None:
        job.finished_at = time.monotonic()
        _RUNNING.discard(job)
        _FINISHED_WHILE_BUSY.append(job)
        _restore_warning_hook()
        _fast_switching(False)
        _quiet_collector(False, defer_unfreeze=True)
        if job.running:  # quit() before the first yield ends without aborted/returned
            _aborted()
        if on_finished is not None:
            on_finished(job)

    worker.yielded.connect(_yielded)
    worker.returned.connect(_returned)
    worker.errored.connect(_errored)
    worker.aborted.connect(_aborted)
    worker.finished.connect(_finished)
    _fast_switching(True)
    _quiet_collector(True)
    _RUNNING.add(job)
    worker.start()
    return job


def run_blocking_in_thread(
    func: Callable[[], Any],
    *,
    on_result: Callable[[Any], None],
    on_error: Callable[[BaseException], None],
    step: str = "working",
) -> Job:
    """Run a plain function (e.g. ``load_study``) in a worker, presented as a one-step generator."""

    def factory(_should_cancel: Callable[[], bool]):
        yield Progress(step, 0.0)
        return func()

    return start(factory, on_result=on_result, on_error=on_error)


def user_message(exc: BaseException) -> str:
    """What the notification says: our errors carry a message for users; others are bugs."""
    if isinstance(exc, BreastMRIError):
        return str(exc)
    return f"Unexpected error ({type(exc).__name__}: {exc}); please report it with the log."
