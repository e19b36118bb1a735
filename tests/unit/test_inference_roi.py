"""Models that read a region around the index lesion (card ``inputs.roi``).

What a user relies on: the region is the same anatomy whatever the study's grid (it is defined in
millimetres around a world point); it is centred on the largest lesion a detector found (never on
one an annotator rejected), preferring a suspicious curve to size; without a lesion the model is not run and the user is told why; and
the heatmap of such a model is made on the same region analyze read.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_breastmri import progress
from napari_breastmri.errors import IncompatibleModel, ModelPackageError
from napari_breastmri.geometry import spacing_from_affine, voxel_to_world
from napari_breastmri.inference.pipeline import analyze
from napari_breastmri.inference.preprocess import (
    box_centre_world,
    index_lesion,
    prepare_arrays,
    resample_stack,
    roi_grid,
)
from napari_breastmri.models.card import parse_card
from napari_breastmri.models.package import save_package
from napari_breastmri.types import Findings, Lesion, Study

from .test_inference_pipeline import OBLIQUE, SAGITTAL
from .test_models_helpers import MeanClassifier, blob_study, cls_card, threshold_package

torch.set_num_threads(1)
ROI = {"around": "index_lesion", "size_mm": [12.0, 16.0, 16.0]}


def roi_card(name: str = "toy-roi", target: str = "pcr") -> dict:
    card = cls_card("none", 1)
    card.update(name=name, target=target)
    card["outputs"]["classes"] = ["absent", "present"]
    card["weights"] = {"file": "model.pt", "format": "torchscript", "sha256": "0" * 64}
    card["inputs"]["roi"] = dict(ROI)
    card["inputs"]["resize_to"] = [6, 16, 16]
    return card


@pytest.mark.parametrize("affine", [np.diag([3.0, 0.8, 0.8, 1.0]), SAGITTAL, OBLIQUE])
def test_the_region_is_centred_on_the_world_point_with_the_asked_size(affine: np.ndarray) -> None:
    centre = voxel_to_world(affine, [7.0, 15.0, 35.0])
    grid, shape = roi_grid(affine, centre, [12.0, 16.0, 16.0], resize_to=[6, 16, 16])
    assert shape == (6, 16, 16)
    assert np.allclose(spacing_from_affine(grid), [2.0, 1.0, 1.0])
    assert np.allclose(voxel_to_world(grid, (np.array(shape) - 1) / 2), centre, atol=1e-6)
    # the grid's axes are the study's: a blob at the centre stays at the centre
    vol = np.zeros((20, 48, 48), np.float32)
    vol[6:9, 13:18, 33:38] = 1.0
    out = resample_stack(vol[None], affine, grid, shape)[0]
    assert np.linalg.norm(voxel_to_world(grid, ndimage.center_of_mass(out)) - centre) < 0.6


def test_box_centre_and_index_lesion_follow_the_reading_convention() -> None:
    affine = np.diag([3.0, 0.8, 0.8, 1.0])
    assert np.allclose(box_centre_world([2, 10, 20, 5, 20, 30], affine), [3.0 * 3, 0.8 * 14.5, 0.8 * 24.5])
    les = [
        SimpleNamespace(id=1, volume_ml=0.5, score=0.99, status="proposed"),
        SimpleNamespace(id=2, volume_ml=2.0, score=0.7, status="proposed"),
        SimpleNamespace(id=3, volume_ml=9.0, score=0.9, status="rejected"),
    ]
    assert index_lesion(les).id == 2  # the largest kept, not the most confident, never a rejected one
    assert index_lesion(les[2:]) is None
    # a suspicious curve comes before size; an unmeasured curve ranks with a persistent one
    les[0].curve_type, les[1].curve_type = "washout", "persistent"
    assert index_lesion(les).id == 1
    les[0].curve_type = None
    assert index_lesion(les).id == 2


def _kinetic_study() -> Study:
    """Three phases (0, 90, 400 s): a small washout blob and a four-times larger persistent one."""
    data = np.full((3, 20, 48, 48), 0.2, np.float32)
    data[1:, 5:9, 10:20, 30:40] = [[[[1.2]]], [[[0.9]]]]  # +500 % early, -25 % late: washout
    data[1:, 10:18, 24:44, 4:24] = [[[[0.6]]], [[[1.0]]]]  # +200 % early, +67 % late: persistent
    return Study(data, np.diag([3.0, 0.8, 0.8, 1.0]), [0.0, 90.0, 400.0], ["pre", "post1", "post2"])


def test_the_index_lesion_is_the_washout_cancer_not_the_larger_persistent_mass() -> None:
    from napari_breastmri.inference.pipeline import lesion_roi_centre

    study = _kinetic_study()
    findings = Findings(shape=study.shape, affine=study.affine)
    findings.lesions = [
        Lesion(id=1, bbox=[10, 24, 4, 18, 44, 24], score=0.9, volume_ml=1.6),
        Lesion(id=2, bbox=[5, 10, 30, 9, 20, 40], score=0.8, volume_ml=0.4, label=5),
    ]
    findings.label_mask = np.zeros(study.shape, np.int32)  # lesion 2's voxels painted over: its box
    centre, note = lesion_roi_centre(findings, study)
    assert [les.curve_type for les in findings.lesions] == ["persistent", "washout"]  # now known
    assert np.allclose(centre, box_centre_world(findings.lesions[1].bbox, study.affine))
    assert note == "lesion 2 (the largest with a washout curve; larger lesions have less suspicious curves)"
    findings.lesions[1].status = "rejected"
    assert lesion_roi_centre(findings, study)[1] == "lesion 1 (the largest)"


def test_a_region_model_without_a_lesion_says_so(tmp_path: Path) -> None:
    study, _ = blob_study()
    card = parse_card(roi_card())
    with pytest.raises(IncompatibleModel, match="index lesion"):
        prepare_arrays(card, study)
    roi = save_package(tmp_path / "roi", roi_card(), MeanClassifier(), fmt="torchscript")
    with pytest.raises(IncompatibleModel, match="index lesion"):
        progress.run(analyze(study, [roi], device="cpu"))


def test_the_region_model_reads_the_largest_detected_lesion(tmp_path: Path) -> None:
    # lesion 2 (6 x 16 x 12 voxels) is larger than lesion 1 (4 x 10 x 10)
    study, labels = blob_study(boxes=((5, 10, 30, 9, 20, 40), (11, 26, 4, 17, 42, 16)))
    seg = threshold_package(tmp_path)
    roi = save_package(tmp_path / "roi", roi_card(), MeanClassifier(p=0.0), fmt="torchscript")
    other = save_package(tmp_path / "other", cls_card("none", 1), MeanClassifier(p=0.0), fmt="torchscript")
    findings = progress.run(analyze(study, [roi, other, seg], device="cpu"))  # order given: roi first
    assert [m.name for m in findings.models] == ["toy-seg", "toy-roi", "toy-cls"]  # the detector runs first
    largest = max(findings.lesions, key=lambda les: les.volume_ml)
    assert any(f"lesion {largest.id} (the largest)" in n for n in findings.models[1].notes)
    # both blobs enhance the same way (two phases: early is late): the curve cannot decide
    assert [les.curve_type for les in findings.lesions] == ["plateau", "plateau"]
    # two models of one target are both kept; the second under a key naming its model
    assert {p.model for p in findings.case_predictions.values()} == {"toy-roi@1.0", "toy-cls@1.0"}
    assert "pcr" in findings.case_predictions and "pcr@toy-cls" in findings.case_predictions
    # the region holds the lesion: its sub1 channel is mostly lesion (1.0) there
    x, grid = prepare_arrays(
        parse_card(roi_card()), study, None, box_centre_world(largest.bbox, study.affine)
    )
    assert x.shape == (2, 6, 16, 16) and float(x[1].mean()) > 0.3


class _ToyRegionPackage:
    """A ModelPackage look-alike: a real parsed card with ``inputs.roi``, the real preprocessing."""

    def __init__(self) -> None:
        doc = roi_card()
        doc["cam"] = {"target_layer": "conv"}
        self.card = parse_card(doc)
        self.net = _CamClassifier()

    def build(self, device="cpu") -> torch.nn.Module:
        return self.net.to(device).eval()

    def prepare_input(self, study, follow_up=None, roi_centre=None):
        from napari_breastmri.inference.preprocess import prepare_input

        return prepare_input(self.card, study, follow_up, roi_centre)


@pytest.mark.parametrize("method", ["gradcam", "occlusion"])
def test_explanations_of_a_region_model_use_the_same_region(tmp_path: Path, method: str) -> None:
    from napari_breastmri.explain import explain_study

    study, labels = blob_study(boxes=((11, 26, 4, 17, 42, 16),))
    findings = progress.run(analyze(study, [threshold_package(tmp_path)], device="cpu"))
    pkg = _ToyRegionPackage()
    hm = progress.run(explain_study(study, pkg, findings, method=method, target="present"))
    assert hm.method == method
    assert hm is not None and hm.data.shape == study.shape and float(hm.data.max()) == pytest.approx(1.0)
    # the heatmap lies on the lesion, and only inside the 12 x 16 x 16 mm region around it
    peak = np.unravel_index(int(np.argmax(hm.data)), hm.data.shape)
    assert labels[peak] > 0
    assert float(hm.data[:, :, 30:].max()) == 0.0 and float(hm.data[:5].max()) == 0.0
    # without findings there is no region to read: no heatmap, and no crash
    assert progress.run(explain_study(study, pkg, None, method="gradcam")) is None


class _CamClassifier(torch.nn.Module):
    """Conv -> ReLU -> global mean -> linear: a CAM-able toy whose class 1 follows the sub1 channel."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(2, 2, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[1, 1] = 1.0
            self.conv.bias.zero_()
        self.fc = torch.nn.Linear(2, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(2))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))


@pytest.mark.parametrize(
    "roi, task, match",
    [
        ("not a mapping", "classify", "mapping"),
        ({"around": "index_lesion", "size_mm": [10, -1, 10]}, "classify", "positive"),
        ({"around": "nipple", "size_mm": [10, 10, 10]}, "classify", "around"),
        ({"around": "index_lesion", "size_mm": [10, 10, 10]}, "segment", "classify models"),
    ],
)
def test_bad_roi_cards_are_refused_with_the_reason(roi, task: str, match: str) -> None:
    card = roi_card()
    card["inputs"]["roi"] = roi
    if task == "segment":
        card.update(task="segment")
        card["inputs"]["patch_size"] = [8, 16, 16]
    with pytest.raises(ModelPackageError, match=match):
        parse_card(card)
