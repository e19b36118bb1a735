"""The viewer's worker keeps full garbage collections short during a run, and leaks nothing after it.

``_worker._quiet_collector`` freezes the objects that exist when a run starts (``gc.freeze``) so a
collection in the worker walks only what the run made; these tests check the bookkeeping (nested
jobs, unfreeze at the last end) and that cyclic garbage made before a run is collected once the
run is over. Pure Python: no Qt needed.
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


def test_garbage_made_during_a_run_is_still_collected_during_it():
    _worker._quiet_collector(True)
    node = _Node()
    ref = weakref.ref(node)
    del node
    gc.collect()
    assert ref() is None
    _worker._quiet_collector(False)


def _counter(n: int):
    got = []
    for i in range(n):
        got.append((yield i))
    return got


def test_frozen_steps_behaves_like_yield_from():
    gen = _worker._frozen_steps(_counter(3))
    assert next(gen) == 0
    assert gen.send("a") == 1
    assert gen.send("b") == 2
    with pytest.raises(StopIteration) as stop:
        gen.send("c")
    assert stop.value.value == ["a", "b", "c"]


def test_frozen_steps_forwards_throw_and_close():
    def catcher():
        try:
            yield 1
        except ValueError:
            yield "caught"
        return "done"

    gen = _worker._frozen_steps(catcher())
    assert next(gen) == 1
    assert gen.throw(ValueError("x")) == "caught"
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "done"

    inner = _counter(5)
    gen = _worker._frozen_steps(inner)
    next(gen)
    gen.close()
    assert inner.gi_frame is None, "closing the wrapper closes the wrapped generator"


def test_frozen_steps_freeze_what_each_step_made_only_while_a_job_runs():
    made = []

    def steps():
        for _ in range(2):
            made.append(_Node())
            yield None

    gen = _worker._frozen_steps(steps())
    next(gen)
    assert gc.get_freeze_count() == 0, "no job: nothing frozen"
    _worker._quiet_collector(True)
    before = gc.get_freeze_count()
    next(gen)
    assert gc.get_freeze_count() > before, "the second step's objects were frozen"
    ref = weakref.ref(made.pop())
    gc.collect()
    assert ref() is not None
    _worker._quiet_collector(False)
    gc.collect()
    assert ref() is None, "released and collected after the job"
