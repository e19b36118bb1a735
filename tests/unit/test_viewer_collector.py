"""A finished job leaves the heap frozen until the dock settles it (``_worker.settle_collector``).

Why: unfrozen at the end of every job, the whole heap fell into the oldest generation and the next
automatic full pass walked all of it on the UI thread (~0.3 s) about a second after each run. The
dock now settles it when nobody has touched the viewer for a while. Pure Python: no Qt needed.
"""

from __future__ import annotations

import gc
import weakref

import pytest

from napari_breastmri._napari import _worker


class _Node:
    """A reference cycle (self -> self), so only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def _no_jobs():
    """Start from no running job and nothing frozen (a GUI test in the same process may hold a job)."""
    saved = dict(_worker._collector)
    _worker._collector.update(jobs=0, deferred=False)
    gc.unfreeze()
    yield
    _worker._release_collector()
    _worker._collector.update(saved)
    if saved["jobs"]:
        gc.freeze()


def test_a_job_that_defers_leaves_the_heap_frozen_until_settled():
    node = _Node()
    ref = weakref.ref(node)
    _worker._quiet_collector(True)
    del node
    _worker._quiet_collector(False, defer_unfreeze=True)
    assert _worker.collector_deferred() and gc.get_freeze_count() > 0
    gc.collect()
    assert ref() is not None, "still frozen after the job: no full pass walks the old heap"
    took = _worker.settle_collector()
    assert took is not None and took >= 0.0
    assert ref() is None, "settling unfreezes and collects: the cycle from before the job is freed"
    assert gc.get_freeze_count() == 0 and not _worker.collector_deferred()
    assert _worker._freeze_before_full_pass not in gc.callbacks
    assert _worker.settle_collector() is None, "nothing left to do"


def test_settling_waits_while_a_job_runs_and_a_new_job_keeps_the_heap_frozen():
    _worker._quiet_collector(True)
    _worker._quiet_collector(False, defer_unfreeze=True)
    _worker._quiet_collector(True)  # the next job starts before the dock settled
    assert _worker.settle_collector() is None and gc.get_freeze_count() > 0
    young = _Node()  # made during the job: not frozen, a collection frees it as usual
    ref = weakref.ref(young)
    del young
    gc.collect()
    assert ref() is None
    _worker._quiet_collector(False, defer_unfreeze=True)
    assert _worker.settle_collector() is not None and gc.get_freeze_count() == 0


def test_without_defer_the_last_job_still_unfreezes_at_once():
    _worker._quiet_collector(True)
    _worker._quiet_collector(False)
    assert gc.get_freeze_count() == 0 and not _worker.collector_deferred()
