"""A job still running when the process exits is stopped cleanly (it used to outlive its Qt signals).

Seen when `make screenshots` exited while an explanation's faithfulness follow-up still ran: the
worker emitted into signal objects Qt had already deleted and the process aborted. ``_worker``
registers ``stop_all`` with atexit; this runs a real worker in a child process and exits under it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys, time, warnings
    from qtpy.QtWidgets import QApplication
    app = QApplication([])
    from napari_breastmri._napari import _worker
    from napari_breastmri.types import Progress
    if sys.argv[1] == "without-stop-all":
        import atexit
        atexit.unregister(_worker.stop_all)

    def factory(should_cancel):
        def gen():
            while not should_cancel():
                time.sleep(0.01)
                warnings.warn("still working")
                yield Progress("wait", 0.0, "")
        return gen()

    job = _worker.start(factory)
    time.sleep(0.5)
    app.processEvents()
    assert job.running
    print("exiting with a job running", flush=True)
    """
)


def _run(mode: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, env=env, timeout=120
    )


def test_exit_with_a_running_job_stops_it_cleanly() -> None:
    out = _run("with-stop-all")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "exiting with a job running" in out.stdout
    assert "has been deleted" not in out.stderr


def test_without_stop_all_the_worker_outlives_its_signals() -> None:
    """The failure the atexit hook prevents, shown so the test above cannot pass vacuously."""
    out = _run("without-stop-all")
    assert "exiting with a job running" in out.stdout
    assert "has been deleted" in out.stderr or out.returncode != 0


OVERLAP = textwrap.dedent(
    """
    import gc, sys, threading, time, warnings
    from qtpy.QtWidgets import QApplication
    app = QApplication([])
    from napari_breastmri._napari import _worker
    from napari_breastmri.types import Progress
    original = warnings.showwarning
    b_started, a_done = threading.Event(), threading.Event()

    def job_a(should_cancel):  # enters first, leaves first
        def gen():
            yield Progress("a", 0.0, "")
            assert b_started.wait(10)
            a_done.set()
        return gen()

    def job_b(should_cancel):  # enters second, leaves last: restores A's hook
        def gen():
            b_started.set()
            yield Progress("b", 0.0, "")
            assert a_done.wait(10)
            time.sleep(0.2)
        return gen()

    jobs = [_worker.start(job_a)]
    time.sleep(0.3)
    jobs.append(_worker.start(job_b))
    end = time.monotonic() + 20
    while any(j.finished_at is None for j in jobs) and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)
    assert all(j.finished_at is not None for j in jobs)
    print("hook restored:", warnings.showwarning is original, flush=True)
    del jobs
    gc.collect()
    warnings.warn("after both workers ended")
    print("warned safely", flush=True)
    """
)


def test_overlapping_workers_leave_the_warning_hook_as_it_was() -> None:
    """superqt's workers swap warnings.showwarning non-thread-safely; the dock puts it back."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run(
        [sys.executable, "-c", OVERLAP], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "hook restored: True" in out.stdout and "warned safely" in out.stdout
