"""GUI fixtures: a real napari viewer (pytest-qt, under Xvfb) with the reading-station dock."""

from __future__ import annotations

import pytest
import torch  # noqa: F401  (import torch before any viewer: Qt + torch load order matters)


@pytest.fixture(autouse=True)
def _settle_heap():
    """Jobs leave the heap frozen for the dock's idle collection: settle it after each test, so
    garbage does not pile up frozen across tests."""
    yield
    from napari_breastmri._napari import _worker

    _worker.settle_collector()


@pytest.fixture
def dock(make_napari_viewer, qtbot, monkeypatch):
    """(viewer, BreastMRIWidget) docked on the right, closed by napari's fixture after the test.

    The dock's idle warm-up of the explanation imports is off here (a 5 s import in the middle of
    an unrelated test); tests/gui/test_gui_idle.py turns it on."""
    from napari_breastmri._napari import _idle
    from napari_breastmri._napari._widget import BreastMRIWidget

    monkeypatch.setattr(_idle, "WARM_AFTER_S", float("inf"))
    viewer = make_napari_viewer()
    widget = BreastMRIWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right", name="Breast DCE-MRI")
    yield viewer, widget
    for job in widget.jobs:
        if job.running:
            job.cancel()
            qtbot.waitUntil(lambda j=job: not j.running and j.finished_at is not None, timeout=10_000)


def demo_packages() -> list:
    """The shipped demo packages, or skip when the trained weights are not in the tree yet."""
    from napari_breastmri.models import registry

    infos = registry.shipped(demo_only=True)
    if not infos:
        pytest.skip("no shipped demo model packages yet (napari_breastmri/models/weights is empty)")
    return infos
