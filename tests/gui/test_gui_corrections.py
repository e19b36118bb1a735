"""Correction tools on a real viewer: edit / add / delete boxes, accept, paint, undo, autosave and
the restore offer when the case is opened again."""

from __future__ import annotations

import numpy as np
import pytest

from tests.gui.cases import tiny_case
from tests.gui.test_gui_dock import _truth_findings

pytestmark = pytest.mark.gui


@pytest.fixture
def store_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BREASTMRI_ANNOTATIONS_DIR", str(tmp_path / "annotations"))
    return tmp_path / "annotations"


def _open(widget, seed=0):
    study, mask, truth = tiny_case(seed=seed)
    study.study_uid = "1.2.826.0.1.99"
    widget.set_study(study, truth=truth, truth_mask=mask)
    widget.state.set_findings(_truth_findings(study, mask, truth))
    return study, mask, truth


def test_edit_a_box_accept_and_undo(dock, store_dir, qtbot):
    viewer, widget = dock
    study, mask, truth = _open(widget)
    corr = widget.sections["Corrections"]
    session = corr.start()
    boxes = widget.layer_with_role("boxes")
    rects = [np.array(r) for r in boxes.data]
    z0, y0, x0, z1, y1, x1 = truth["lesions"][0]["bbox"]
    rects[0] = rects[0] + np.array([0.0, 3.0, -2.0])  # move the box 3 rows down, 2 columns left
    boxes.data = rects  # what napari's move tool ends with: a CHANGED data event
    qtbot.waitUntil(lambda: session.lesion(1).bbox != [z0, y0, x0, z1, y1, x1], timeout=3000)
    assert session.lesion(1).bbox == [z0, y0 + 3, x0 - 2, z1, y1 + 3, x1 - 2]
    assert session.lesion(1).provenance[-1]["who"] == "human"
    # the layer was redrawn from the session: every slice's rectangle moved
    new_boxes = widget.layer_with_role("boxes")
    qtbot.waitUntil(
        lambda: all(np.isclose(r[:, 1].min(), y0 + 3 - 0.5) for r in new_boxes.data), timeout=3000
    )
    assert new_boxes is boxes  # updated in place, not replaced
    widget.sections["Findings"].select_index(0)
    corr.accept()
    assert session.lesion(1).status == "accepted" and session.last_saved is not None
    assert widget.sections["Findings"].table.item(0, 5).text() == "accepted"
    corr.undo()
    assert session.lesion(1).status == "proposed"


def test_add_and_delete_boxes_and_paint(dock, store_dir, qtbot):
    viewer, widget = dock
    study, mask, truth = _open(widget)
    corr = widget.sections["Corrections"]
    session = corr.start()
    corr.draw_box()
    boxes = widget.layer_with_role("boxes")
    assert boxes.mode == "add_rectangle"
    boxes.add_rectangles(np.array([[4, 30, 5], [4, 30, 15], [4, 40, 15], [4, 40, 5]], float))
    qtbot.waitUntil(lambda: len(session.lesions) == 2, timeout=3000)
    added = session.lesions[-1]
    assert added.status == "added" and added.bbox == [2, 30, 5, 7, 40, 15]
    qtbot.waitUntil(lambda: added.id in set(np.asarray(boxes.features["lesion_id"]).tolist()), timeout=3000)
    n_truth = truth["lesions"][0]["bbox"][3] - truth["lesions"][0]["bbox"][0]
    assert len(boxes.data) == (added.bbox[3] - added.bbox[0]) + n_truth  # same layer, redrawn in place
    ids = np.asarray(boxes.features["lesion_id"])
    boxes.selected_data = {int(np.flatnonzero(ids == added.id)[0])}
    boxes.remove_selected()
    qtbot.waitUntil(
        lambda: (
            len(session.lesions) == 1
            and len(widget.sections["Findings"].table.selectedItems()) == 0
            and widget.sections["Findings"].table.rowCount() == 1
        ),
        timeout=3000,
    )
    # paint: a stroke on the Labels layer reaches the session
    widget.sections["Findings"].select_index(0)
    corr.paint_mask()
    masks = widget.layer_with_role("mask")
    before = int((session.label_mask == 1).sum())
    masks.paint((4, 40, 40), 1, refresh=True)
    qtbot.waitUntil(lambda: int((session.label_mask == 1).sum()) > before, timeout=3000)
    assert "paint" in session.history[-1]["what"]


def test_autosave_and_restore_on_reopening(make_napari_viewer, store_dir, qtbot):
    from napari_breastmri._napari._widget import BreastMRIWidget

    viewer = make_napari_viewer()
    widget = BreastMRIWidget(viewer)
    study, mask, truth = _open(widget)
    corr = widget.sections["Corrections"]
    session = corr.start()
    session.add_box([1, 2, 3, 4, 10, 12])
    widget.sections["Findings"].select_index(0)
    corr.reject()
    qtbot.waitUntil(lambda: not session.dirty, timeout=10_000)  # the autosave thread caught up
    n_edits = len(session.history)
    corr.close_session()
    # a second reading station opens the same case: it finds the work and offers to restore it
    viewer2 = make_napari_viewer()
    widget2 = BreastMRIWidget(viewer2)
    offered = []
    widget2.sections["Corrections"].offer_restore = lambda saved, answer=None: offered.append(saved) or False
    _open(widget2)
    assert offered and offered[0].n_edits >= 1
    restored = widget2.sections["Corrections"].restore()
    assert len(restored.history) == n_edits
    statuses = {les.id: les.status for les in restored.lesions}
    assert statuses[1] == "rejected" and 2 in statuses
    assert widget2.sections["Findings"].table.rowCount() == 2
    widget2.sections["Corrections"].close_session()
