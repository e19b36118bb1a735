"""Kinetics, teaching, the reader and the sample data in a real viewer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_breastmri.types import CasePrediction, Findings, Heatmap
from tests.gui.cases import PHI, tiny_case, wait_for_jobs
from tests.gui.test_gui_dock import _all_texts

pytestmark = pytest.mark.gui


def test_kinetics_map_legend_curves_and_ftv(dock, qtbot):
    viewer, widget = dock
    study, mask, truth = tiny_case()
    widget.set_study(study, truth=truth, truth_mask=mask)
    kin = widget.sections["Kinetics"]
    assert kin.show_map("curve type") is None, "the kinetic maps are computed in a worker"
    assert "Computing" in kin.legend.text()
    wait_for_jobs(qtbot, widget)
    layer = widget.layer_with_role("kinetic_map")
    assert layer.metadata["breastmri"]["role"] == "kinetic_map" and "washout" in kin.legend.text()
    assert 3 in np.unique(layer.data[mask > 0])  # the lesion washes out
    jobs = len(widget.jobs)
    assert kin.show_map("PE") is not None  # the same study's maps: at once, no second job
    assert len(widget.jobs) == jobs
    assert len(widget.layers_with_role("kinetic_map")) == 1  # replaced, not stacked
    # a clicked point in the lesion and a drawn region in the background: two curves, named
    z0, y0, x0, z1, y1, x1 = truth["lesions"][0]["bbox"]
    centre = [(z0 + z1 - 1) / 2, (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2]
    kin.pick_points()
    widget.layer_with_role("kinetic_points").add(np.array([np.round(centre)]))
    kin.draw_regions()
    zc = int(round(centre[0]))
    regions = widget.layer_with_role("kinetic_regions")
    regions.add_rectangles(np.array([[zc, 30, 2], [zc, 30, 12], [zc, 44, 12], [zc, 44, 2]], float))
    assert len(kin.curves) == 2
    assert kin.curves[0][0].endswith("washout")
    lines = kin.canvas.figure.axes[0].get_lines()
    assert len(lines) == 2 and lines[0].get_color() != lines[1].get_color()
    # FTV of a box drawn around the lesion on its central slice, +- depth slices
    regions.add_rectangles(
        np.array(
            [[zc, y0 - 2, x0 - 2], [zc, y0 - 2, x1 + 1], [zc, y1 + 1, x1 + 1], [zc, y1 + 1, x0 - 2]], float
        )
    )
    kin.depth.setValue(6)
    res = kin.ftv_of_box()
    true_ml = (mask > 0).sum() * study.voxel_volume_ml
    assert res is not None and abs(res.volume_ml - true_ml) / true_ml < 0.25
    assert "ml" in kin.ftv_label.text()


def test_teaching_mode_hides_phi_guess_first_and_side_by_side(dock, qtbot):
    viewer, widget = dock
    study, mask, truth = tiny_case()
    widget.set_study(study, truth=truth, truth_mask=mask)
    pred = CasePrediction(
        "subtype",
        {"luminal_a": 0.1, "luminal_b": 0.7, "her2_enriched": 0.1, "triple_negative": 0.1},
        model="demo-subtype",
    )
    hm = Heatmap(
        np.random.default_rng(1).random(study.shape).astype(np.float32),
        study.affine,
        "gradcam",
        "subtype",
        "enc",
        "demo-subtype",
    )
    widget.state.set_findings(
        Findings(study.shape, study.affine, case_predictions={"subtype": pred}, heatmaps=[hm])
    )
    teach = widget.sections["Teaching"]
    shown_before = {lay.name for lay in viewer.layers if lay.visible}
    teach.toggle.setChecked(True)
    texts = _all_texts(widget) + [viewer.title] + [lay.name for lay in viewer.layers]
    for value in (PHI.name, PHI.patient_id, PHI.birth_date, PHI.accession, PHI.study_date):
        assert not any(value in t for t in texts), value
    assert not widget.sections["Study"].hide_box.isEnabled()  # cannot be un-hidden while teaching
    # the toggle returns at once with the subtraction: the heatmap and curve-type panels (kinetic
    # fit, breast region, RGB composites) follow from workers
    assert viewer.canvas.grid.enabled and sum(lay.visible for lay in viewer.layers) == 1
    wait_for_jobs(qtbot, widget)
    assert sum(lay.visible for lay in viewer.layers) == 3
    # guess first: the model's answer is hidden until the guess is in
    assert not widget.sections["Predictions"].isEnabled()
    teach.target.setCurrentText("subtype")
    teach.choice.setCurrentText("luminal_a")
    answer = teach.submit()
    assert answer.model == "luminal_b" and answer.truth == "luminal_b" and answer.correct is False
    assert widget.sections["Predictions"].isEnabled() and "0/1" in teach.result.text()
    teach.next_round()
    teach.choice.setCurrentText("luminal_b")
    teach.submit()
    assert teach.session.score == (1, 2) and "1/2" in teach.result.text()
    teach.toggle.setChecked(False)
    assert PHI.name in viewer.title  # back to the reading station
    # with the reader's own layers as they were, and no teaching panels left over
    assert not viewer.canvas.grid.enabled
    assert not widget.layers_with_role("teaching")
    assert {lay.name for lay in viewer.layers if lay.visible} == shown_before
    # the layer controls show the phases, not the panel that was selected and is gone
    assert viewer.layers.selection.active is widget.layers_with_role("phases")[0]


def test_reader_opens_a_dicom_study_with_the_study_affine(dock, tmp_path):
    from napari_breastmri._napari._reader import get_reader
    from napari_breastmri.io.dicom_write import write_study_dicom

    viewer, widget = dock
    study, mask, truth = tiny_case(shape=(8, 32, 40), angle_deg=20.0)
    write_study_dicom(study, tmp_path / "case", layout="series-per-phase", uid_root_seed=1)
    assert get_reader(str(tmp_path / "case")) is not None
    assert get_reader(str(tmp_path / "nothing.txt")) is None
    (tmp_path / "notes.txt").write_text("hello")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    viewer.open(str(tmp_path / "case"), plugin="napari-breastmri")
    phases = widget.layer_with_role("phases")
    assert phases is not None and phases.data.shape == study.data.shape
    assert widget.state.study is not None and widget.state.study.n_phases == 5  # the dock adopted it
    assert widget.layer_with_role("subtraction") is not None
    from napari_breastmri._napari import _layers

    world = _layers.world_to_lps(np.asarray(phases.data_to_world([0, 3, 10, 20]))[-3:], study.affine)
    from napari_breastmri.geometry import voxel_to_world

    assert np.allclose(world, voxel_to_world(study.affine, [3, 10, 20]), atol=1e-2)
    assert all(PHI.name not in lay.name for lay in viewer.layers)


def test_sample_data_is_a_phantom_with_hidden_truth(make_napari_viewer):
    from napari_breastmri._napari._sample_data import phantom_layers

    layers = phantom_layers(0, shape=(16, 64, 64))
    kinds = [t[2] for t in layers]
    assert kinds[0] == "image" and layers[0][0].ndim == 4
    truth = [t for t in layers if t[1]["metadata"]["breastmri"]["role"].startswith("truth")]
    assert truth and all(t[1]["visible"] is False for t in truth)
