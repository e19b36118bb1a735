"""The reading-station dock in a real napari viewer: layers in place, findings, PHI, grid."""

from __future__ import annotations

import numpy as np
import pytest

from napari_breastmri._napari import _layers
from napari_breastmri.geometry import voxel_to_world
from napari_breastmri.types import CasePrediction, Findings, Lesion
from tests.gui.cases import PHI, tiny_case, wait_for_jobs

pytestmark = pytest.mark.gui


def _truth_findings(study, mask, truth, score=0.9):
    lesion = Lesion(1, list(truth["lesions"][0]["bbox"]), score, label=1, volume_ml=0.8, curve_type="washout")
    pred = CasePrediction(
        "subtype",
        {"luminal_a": 0.2, "luminal_b": 0.5, "her2_enriched": 0.2, "triple_negative": 0.1},
        {"luminal_b": (0.35, 0.65)},
        model="demo-subtype",
    )
    return Findings(
        study.shape, study.affine, [lesion], label_mask=mask.copy(), case_predictions={"subtype": pred}
    )


def _box_world_lps(boxes_layer, lesion_id, reference):
    ids = np.asarray(boxes_layer.features["lesion_id"])
    pts = np.concatenate([boxes_layer.data[i] for i in np.flatnonzero(ids == lesion_id)])
    world = np.array([boxes_layer.data_to_world(p) for p in pts])
    return _layers.world_to_lps(world, reference)


@pytest.mark.parametrize("angle", [0.0, 30.0])
def test_box_contains_truth_lesion_in_world_coordinates(dock, angle):
    viewer, widget = dock
    study, mask, truth = tiny_case(angle_deg=angle)
    widget.set_study(study, truth=truth, truth_mask=mask)
    widget.state.set_findings(_truth_findings(study, mask, truth))
    boxes = widget.layer_with_role("boxes")
    corners_lps = _box_world_lps(boxes, 1, study.affine)
    # express the drawn rectangles in the study's voxel frame through world space, then check that
    # every truth voxel's world position falls inside them
    inv = np.linalg.inv(study.affine)
    corner_vox = corners_lps @ inv[:3, :3].T + inv[:3, 3]
    lo, hi = corner_vox.min(0), corner_vox.max(0)
    truth_world = voxel_to_world(study.affine, np.argwhere(mask > 0))
    truth_vox = truth_world @ inv[:3, :3].T + inv[:3, 3]
    assert np.all(truth_vox[:, 1:] >= lo[1:]) and np.all(truth_vox[:, 1:] <= hi[1:])
    assert np.all(truth_vox[:, 0] >= lo[0] - 1e-6) and np.all(truth_vox[:, 0] <= hi[0] + 1e-6)
    # and napari's own mask layer puts label 1 at the lesion centre's world point
    centre = truth_world.mean(0)
    masks = widget.layer_with_role("mask")
    world_nap = centre @ _layers.world_permutation(study.affine).T
    idx = np.round(masks.world_to_data(world_nap)).astype(int)
    assert masks.data[tuple(idx)] == 1


def test_layers_line_up_on_an_oblique_study(dock, qtbot):
    viewer, widget = dock
    study, mask, truth = tiny_case(angle_deg=35.0)
    widget.set_study(study, truth=truth, truth_mask=mask)
    widget.state.set_findings(_truth_findings(study, mask, truth))
    widget.sections["Display"].hanging_protocol()
    wait_for_jobs(qtbot, widget)  # the kinetic panel's maps come from a worker
    voxel = np.array([4.0, 17.0, 29.0])
    expected = voxel_to_world(study.affine, voxel)
    checked = 0
    for layer in viewer.layers:
        role = layer.metadata.get("breastmri", {}).get("role")
        if role in ("mip", None) or layer.metadata["breastmri"].get("panel") == "MIP":
            continue
        point = np.r_[1.0, voxel] if layer.ndim == 4 else voxel
        world = np.asarray(layer.data_to_world(point))[-3:]
        assert np.allclose(_layers.world_to_lps(world, study.affine), expected, atol=1e-6), layer.name
        checked += 1
    assert checked >= 8
    assert viewer.canvas.grid.enabled
    images = [
        lay for lay in viewer.layers if lay.visible and lay.metadata["breastmri"].get("panel") != "cursor"
    ]
    assert len(images) == 5  # pre | post1 | sub1 | MIP | kinetic map
    # linked cursor: one per panel, grouped with its image (stride 2), all moved together
    assert viewer.canvas.grid.stride == 2
    layers = list(viewer.layers)
    for i in range(0, 10, 2):
        assert layers[i + 1].metadata["breastmri"]["panel"] == "cursor" and layers[i] in images
    assert viewer.canvas.grid.actual_shape(viewer.layers) in ((2, 3), (3, 2))  # 5 panels, not 10
    widget.sections["Display"].move_cursor(viewer.layers[0].data_to_world(voxel))
    for i in range(1, 10, 2):
        if layers[i - 1].metadata["breastmri"].get("panel") != "MIP":
            world = np.asarray(layers[i].data_to_world(layers[i].data[0]))
            assert np.allclose(_layers.world_to_lps(world, study.affine), expected, atol=1e-6)
    widget.sections["Display"].one_at_a_time()
    assert not viewer.canvas.grid.enabled


def test_findings_row_click_centres_and_selects(dock, qtbot):
    viewer, widget = dock
    study, mask, truth = tiny_case()
    widget.set_study(study, truth=truth, truth_mask=mask)
    findings = _truth_findings(study, mask, truth)
    findings.lesions.append(Lesion(2, [1, 2, 2, 3, 8, 8], 0.3, label=0))
    widget.state.set_findings(findings)
    table = widget.sections["Findings"].table
    assert table.rowCount() == 2 and table.item(0, 3).text() == "washout"
    widget.sections["Findings"].select_index(0)
    boxes = widget.layer_with_role("boxes")
    ids = np.asarray(boxes.features["lesion_id"])
    assert boxes.selected_data and all(ids[i] == 1 for i in boxes.selected_data)
    zc = (truth["lesions"][0]["bbox"][0] + truth["lesions"][0]["bbox"][3] - 1) / 2
    z_world = boxes.data_to_world([zc, 0, 0])[0]
    assert abs(viewer.dims.point[viewer.dims.ndim - 3] - z_world) <= study.spacing[0]
    assert widget.layer_with_role("mask").selected_label == 1
    widget.sections["Findings"].step(+1)
    assert widget.sections["Findings"].current_lesion().id == 2


def test_hide_patient_data_everywhere(dock):
    viewer, widget = dock
    study, mask, truth = tiny_case()
    widget.set_study(study, truth=truth, truth_mask=mask)
    widget.state.set_findings(_truth_findings(study, mask, truth))
    summary = widget.sections["Study"].summary
    assert PHI.name in summary.text() and PHI.name in viewer.title  # shown until hidden
    widget.sections["Study"].hide_box.setChecked(True)
    fields = [PHI.name, PHI.patient_id, PHI.birth_date, PHI.accession, PHI.study_date]
    texts = _all_texts(widget) + [viewer.title] + [lay.name for lay in viewer.layers]
    for value in fields:
        assert not any(value in t for t in texts), value


def _all_texts(widget) -> list[str]:
    """Every string the dock shows: labels, buttons, table cells, list items, text browsers."""
    from qtpy.QtWidgets import QAbstractButton, QLabel, QListWidget, QTableWidget, QTextBrowser

    out = []
    for w in widget.findChildren(QLabel):
        out.append(w.text() + w.toolTip())
    for w in widget.findChildren(QAbstractButton):
        out.append(w.text() + w.toolTip())
    for w in widget.findChildren(QTableWidget):
        out += [
            w.item(r, c).text() for r in range(w.rowCount()) for c in range(w.columnCount()) if w.item(r, c)
        ]
    for w in widget.findChildren(QListWidget):
        out += [w.item(i).text() for i in range(w.count())]
    for w in widget.findChildren(QTextBrowser):
        out.append(w.toPlainText())
    return out


def test_phase_slider_drives_the_viewer(dock):
    viewer, widget = dock
    study, mask, truth = tiny_case()
    widget.set_study(study)
    display = widget.sections["Display"]
    display.phase_slider.setValue(3)
    assert viewer.dims.current_step[0] == 3
    assert display.phase_label.text().startswith("post3")
    assert viewer.dims.axis_labels[0] == "phase"
