"""The shipped demo models run from the dock on a phantom case; their boxes land on the truth."""

from __future__ import annotations

import numpy as np
import pytest

from napari_breastmri._napari import _layers
from napari_breastmri.geometry import voxel_to_world
from tests.gui.conftest import demo_packages

pytestmark = [pytest.mark.gui, pytest.mark.slow]


def test_run_demo_models_from_the_dock(dock, qtbot):
    from napari_breastmri.phantom import generate_case

    infos = demo_packages()
    viewer, widget = dock
    case = generate_case(3)
    widget.set_study(case.study, truth=case.truth, truth_mask=case.label_mask)
    models = widget.sections["Models"]
    models.set_chosen(
        [i.name for i in infos if i.task in ("detect", "segment", "classify") and not i.name.endswith("pair")]
    )
    job = models.run()
    assert job is not None
    qtbot.waitUntil(lambda: job.finished_at is not None, timeout=240_000)
    assert job.outcome == "done", models.step_label.text()
    qtbot.waitUntil(lambda: not widget.results_pending, timeout=10_000)  # written in small steps
    findings = widget.state.findings
    assert findings is not None and "Done in" in models.step_label.text()
    assert widget.sections["Findings"].table.rowCount() == len(findings.lesions)
    assert widget.sections["Predictions"].canvas.figure.axes  # bars drawn
    boxes = widget.layer_with_role("boxes")
    ids = np.asarray(boxes.features["lesion_id"])
    inv = np.linalg.inv(case.study.affine)
    # the largest truth lesion falls inside one detected box, checked in world coordinates
    labels, counts = np.unique(case.label_mask[case.label_mask > 0], return_counts=True)
    target = int(labels[np.argmax(counts)])
    truth_world = voxel_to_world(case.study.affine, np.argwhere(case.label_mask == target))
    centre_vox = truth_world.mean(0) @ inv[:3, :3].T + inv[:3, 3]
    hit = False
    for lid in np.unique(ids):
        pts = np.concatenate([boxes.data[i] for i in np.flatnonzero(ids == lid)])
        world = _layers.world_to_lps(np.array([boxes.data_to_world(p) for p in pts]), case.study.affine)
        vox = world @ inv[:3, :3].T + inv[:3, 3]
        lo, hi = vox.min(0) - [0.5, 0, 0], vox.max(0) + [0.5, 0, 0]
        hit |= bool(np.all(centre_vox >= lo) and np.all(centre_vox <= hi))
    assert hit, "no detected box contains the largest truth lesion"


def test_dock_runs_the_real_pipeline_on_toy_packages(dock, qtbot, tmp_path, monkeypatch):
    """Registry -> Models section -> analyze in a worker -> layers, with two toy packages whose
    answers are known (a threshold segmenter and a mean classifier), so it runs without weights."""
    from napari_breastmri.models import registry
    from napari_breastmri.models.package import save_package
    from tests.gui.cases import tiny_case
    from tests.unit.test_models_helpers import MeanClassifier, ThresholdNet, cls_card, seg_card

    user = tmp_path / "models"
    user.mkdir()
    save_package(user / "toy-seg", seg_card(), ThresholdNet(), fmt="torchscript")
    save_package(user / "toy-cls", cls_card("mc_dropout", 8), MeanClassifier(), fmt="torchscript")
    monkeypatch.setattr(registry, "user_dir", lambda: user)
    viewer, widget = dock
    study, mask, truth = tiny_case(shape=(12, 48, 56), angle_deg=20.0)
    widget.set_study(study, truth=truth, truth_mask=mask)
    models = widget.sections["Models"]
    models.refresh()
    labels = [models.listing.item(i).text() for i in range(models.listing.count())]
    assert any(t.startswith("toy-seg v1.0 - segment/lesion") and "synthetic demo" in t for t in labels)
    models.set_chosen(["toy-seg", "toy-cls"])
    job = models.run()
    qtbot.waitUntil(lambda: job.finished_at is not None, timeout=120_000)
    assert job.outcome == "done", models.step_label.text()
    qtbot.waitUntil(lambda: not widget.results_pending, timeout=10_000)
    findings = widget.state.findings
    assert len(findings.lesions) == 1 and "pcr" in findings.case_predictions
    bbox = findings.lesions[0].bbox
    assert bbox == truth["lesions"][0]["bbox"]  # the threshold net finds exactly the painted lesion
    boxes = widget.layer_with_role("boxes")
    assert len(boxes.data) == bbox[3] - bbox[0]
    assert widget.sections["Findings"].table.rowCount() == 1
    pred_axes = widget.sections["Predictions"].canvas.figure.axes
    assert pred_axes and [t.get_text() for t in pred_axes[0].get_yticklabels()] == ["no_pcr", "pCR"]
    assert widget.sections["Predictions"].card_choice.count() == 2
