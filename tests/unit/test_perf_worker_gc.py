"""The viewer's worker keeps full garbage collections short during a run, and leaks nothing after it.

``_worker._quiet_collector`` freezes the objects that exist when a run starts (``gc.freeze``) so a
collection in the worker walks only what the run made; these tests check the bookkeeping (nested
jobs, unfreeze at the last end) and that cyclic garbage made before a run is collected once the
run is over. Pure Python: no Qt needed.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import weakref

import pytest

from napari_breastmri._napari import _worker
from napari_breastmri.types import Progress


class _Node:
    """A reference cycle (self -> self), so only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def _no_jobs():
    """Start from no running job and nothing frozen (a GUI test in the same process may hold a job)."""
    jobs = _worker._collector["jobs"]
    _worker._collector["jobs"] = 0
    gc.unfreeze()  # only makes more objects collectable
    yield
    gc.unfreeze()
    _worker._collector["jobs"] = jobs
    if jobs:
        gc.freeze()


def test_objects_older_than_a_run_are_frozen_during_it_and_released_after():
    _worker._quiet_collector(True)
    assert gc.get_freeze_count() > 0
    _worker._quiet_collector(True)  # a second job: still frozen
    _worker._quiet_collector(False)
    assert gc.get_freeze_count() > 0, "the first job still runs"
    _worker._quiet_collector(False)
    assert gc.get_freeze_count() == 0
    _worker._quiet_collector(False)  # an extra end is harmless
    assert _worker._collector["jobs"] == 0


def test_cyclic_garbage_from_before_a_run_is_collected_once_it_ends():
    node = _Node()
    ref = weakref.ref(node)
    _worker._quiet_collector(True)
    del node
    gc.collect()
    assert ref() is not None, "frozen: a collection during the run does not walk it"
    _worker._quiet_collector(False)
    gc.collect()
    assert ref() is None, "after the run the cycle is collected (no leak)"


@pytest.mark.skipif(
    sys.version_info >= (3, 14), reason="CPython 3.14's incremental collector has no such full passes"
)
def test_an_automatic_full_pass_during_a_job_walks_only_what_is_not_frozen():
    """The gc callback freezes before an automatic full pass: it then finds (next to) nothing."""
    walked: list[int] = []

    def spy(phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2:
            walked.append(gc.get_freeze_count())

    # allocations only: the interpreter decides when to collect. CPython starts a full pass once
    # the survivors since the last one exceed a quarter of the long-lived heap (as it was at that
    # pass), so in a process that has imported much (the whole suite) it takes more than 200 000;
    # counted before the freeze, which hides the heap from gc.get_objects()
    batches = 200 + len(gc.get_objects()) // 1000
    _worker._quiet_collector(True)
    frozen_at_start = gc.get_freeze_count()
    gc.callbacks.append(spy)
    try:
        keep = []
        for _ in range(batches):
            keep.append([[] for _ in range(1000)])
            if walked:
                break
    finally:
        gc.callbacks.remove(spy)
        _worker._quiet_collector(False)
    assert walked, f"{batches} 000 surviving containers trigger an automatic full pass"
    assert walked[0] > frozen_at_start, "it froze what the job had made before walking"
    assert _worker._freeze_before_full_pass not in gc.callbacks, "the callback goes with the last job"
    del keep


def test_an_explicit_collect_during_a_job_still_collects_young_cyclic_garbage():
    _worker._quiet_collector(True)
    node = _Node()
    ref = weakref.ref(node)
    del node
    gc.collect()
    assert ref() is None
    assert gc.get_freeze_count() > 0
    _worker._quiet_collector(False)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux-only")
def test_the_worker_body_runs_at_background_priority():
    """``_drive`` lowers its thread's CPU priority for the job (the UI thread goes first)."""
    seen: dict[str, int] = {}

    def factory(_should_cancel):
        seen["during"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        yield Progress("step", 0.5)
        return "result"

    def body() -> None:
        seen["before"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        gen = _worker._drive(factory, threading.Event())
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            seen["result"] = stop.value

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(30)
    assert seen["result"] == "result"
    assert seen["during"] >= max(seen["before"], _worker.WORKER_NICE)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == seen["before"], (
        "this thread untouched"
    )
