"""A run's results reach the viewer in small steps without freezing it, into layers that live as
long as the dock; and the teaching panels show the maps on the anatomy."""

from __future__ import annotations

import numpy as np
import pytest

from napari_breastmri._napari import _layers
from napari_breastmri.types import Findings, Heatmap, Lesion
from tests.gui.cases import tiny_case, wait_for_jobs

pytestmark = pytest.mark.gui


def _many_lesions(study, mask, n=6):
    """n lesions whose boxes span the whole stack: more rectangles than one staged chunk."""
    nz = study.shape[0]
    lesions = [Lesion(i + 1, [0, 4 + 6 * i, 4, nz, 8 + 6 * i, 12], 0.5 + 0.05 * i) for i in range(n)]
    return Findings(study.shape, study.affine, lesions, label_mask=mask.copy())


def test_run_results_are_written_in_steps_into_the_study_layers(dock, qtbot):
    viewer, widget = dock
    study, mask, truth = tiny_case()
    widget.set_study(study, truth=truth, truth_mask=mask)
    qtbot.waitUntil(
        lambda: widget.layer_with_role("boxes") is not None and not widget.results_pending, timeout=5000
    )
    boxes, masks = widget.layer_with_role("boxes"), widget.layer_with_role("mask")
    assert len(boxes.data) == 0 and not masks.data.any()  # ready and empty before any run
    assert boxes.visible and masks.visible
    findings = _many_lesions(study, mask)
    n_rects = sum(les.bbox[3] - les.bbox[0] for les in findings.lesions)
    assert n_rects > _layers.BOX_CHUNK
    widget.set_findings(findings, prebuilt=_layers.prepare_results(findings))
    assert len(boxes.data) == 0  # nothing written inside the slot that delivered the result
    qtbot.waitUntil(lambda: len(boxes.data) == n_rects and boxes.text.visible, timeout=5000)
    qtbot.waitUntil(lambda: not widget.results_pending, timeout=5000)
    assert boxes.visible and masks.visible  # hidden only while being written
    # the same layers (no new visuals), every rectangle labelled with its lesion's number and score
    assert widget.layer_with_role("boxes") is boxes and widget.layer_with_role("mask") is masks
    ids = np.asarray(boxes.features["lesion_id"])
    labels = list(boxes.text.values)
    for les in findings.lesions:
        rows = np.flatnonzero(ids == les.id)
        assert len(rows) == les.bbox[3] - les.bbox[0]
        assert {labels[i] for i in rows} == {_layers.lesion_text(les)}
        zs = sorted(int(round(boxes.data[i][0, 0])) for i in rows)
        assert zs == list(range(les.bbox[0], les.bbox[3]))  # one rectangle on every slice crossed
    assert np.array_equal(masks.data, mask.astype(np.int32))
    np.testing.assert_allclose(masks.affine.affine_matrix, _layers.napari_affine(study.affine, 3))
    # boxes above the mask above the images
    names = [lay.name for lay in viewer.layers]
    assert names.index(boxes.name) == len(names) - 1 and names.index(masks.name) == len(names) - 2


def test_a_new_study_empties_the_result_layers_and_a_newer_result_wins(dock, qtbot):
    viewer, widget = dock
    study, mask, truth = tiny_case()
    widget.set_study(study, truth=truth, truth_mask=mask)
    findings = _many_lesions(study, mask)
    widget.set_findings(findings, prebuilt=_layers.prepare_results(findings))
    # a second result arrives before the first is fully written: only the second one shows
    second = Findings(study.shape, study.affine, findings.lesions[:1], label_mask=mask.copy())
    widget.set_findings(second, prebuilt=_layers.prepare_results(second))
    boxes = widget._result_layer("boxes")
    n1 = second.lesions[0].bbox[3] - second.lesions[0].bbox[0]
    qtbot.waitUntil(lambda: len(boxes.data) == n1 and boxes.text.visible, timeout=5000)
    qtbot.wait(100)
    assert len(boxes.data) == n1 and set(np.asarray(boxes.features["lesion_id"])) == {1}
    assert boxes.visible and widget.layer_with_role("mask").visible
    # another study (another grid and orientation): same layers, emptied, on the new affine
    study2, mask2, truth2 = tiny_case(shape=(10, 40, 44), angle_deg=30.0, seed=1)
    widget.set_study(study2, truth=truth2, truth_mask=mask2)
    assert widget.layer_with_role("boxes") is boxes and len(boxes.data) == 0
    masks = widget.layer_with_role("mask")
    assert masks.data.shape == study2.shape and not masks.data.any()
    np.testing.assert_allclose(boxes.affine.affine_matrix, _layers.napari_affine(study2.affine, 3))
    assert [lay.name for lay in viewer.layers][-2:] == [masks.name, boxes.name]


def test_teaching_heatmap_panel_shows_the_anatomy_under_the_heatmap(dock, qtbot):
    viewer, widget = dock
    study, mask, truth = tiny_case()
    widget.set_study(study, truth=truth, truth_mask=mask)
    heat = np.zeros(study.shape, np.float32)
    z0, y0, x0, z1, y1, x1 = truth["lesions"][0]["bbox"]
    heat[z0:z1, y0:y1, x0:x1] = 1.0  # hot on the lesion, cold elsewhere
    hm = Heatmap(heat, study.affine, "gradcam", "lesion", "enc", "demo-lesion-seg")
    widget.state.set_findings(Findings(study.shape, study.affine, heatmaps=[hm]))
    widget.sections["Teaching"].toggle.setChecked(True)
    wait_for_jobs(qtbot, widget)  # the curve panel is computed in a worker
    panels = {lay.metadata["breastmri"].get("panel"): lay for lay in widget.layers_with_role("teaching")}
    assert set(panels) == {"sub1", "heatmap", "curve"} and all(p.visible for p in panels.values())
    rgb = np.asarray(panels["heatmap"].data)
    assert panels["heatmap"].rgb and rgb.shape == (*study.shape, 3)
    # where the heatmap is cold, the panel is the grey first post-contrast phase (the anatomy)
    grey = _layers.anatomy_grey(study.data[1], _layers.contrast_limits(study.data[1]), _layers.ANATOMY_PEAK)
    cold = heat == 0
    assert np.array_equal(rgb[..., 0][cold], grey[cold]) and np.array_equal(rgb[..., 2][cold], grey[cold])
    assert grey[cold].mean() > 8 and grey[cold].std() > 1  # anatomy to see, not a black panel
    # where it is hot, the heatmap colour covers the anatomy (not grey any more)
    hot = heat == 1
    assert np.mean(np.ptp(rgb[hot].astype(int), axis=1) > 30) > 0.9
    np.testing.assert_allclose(panels["heatmap"].affine.affine_matrix, _layers.napari_affine(study.affine, 3))
    curve = np.asarray(panels["curve"].data)
    assert curve.shape == (*study.shape, 3) and curve[cold].std() > 5  # curve types on anatomy too
