"""analyze(): lesions where the toy network puts them (any orientation), MONAI-equal blending,
cancel, case predictions with intervals, skipping what cannot run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_breastmri import progress
from napari_breastmri.errors import Cancelled, IncompatibleModel
from napari_breastmri.geometry import voxel_to_world
from napari_breastmri.inference.pipeline import analyze
from napari_breastmri.inference.sliding import sliding_window
from napari_breastmri.inference.uncertainty import dropout_active
from napari_breastmri.models.package import save_package
from napari_breastmri.types import Progress

from .test_models_helpers import (
    MeanClassifier,
    ThresholdNet,
    blob_study,
    cls_card,
    seg_card,
    threshold_package,
)

torch.set_num_threads(1)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.logical_and(a, b).sum()) / float(a.sum() + b.sum())


def test_threshold_network_finds_the_painted_lesions_exactly(tmp_path: Path) -> None:
    study, labels = blob_study()
    pkg = threshold_package(tmp_path)
    steps: list[Progress] = []
    findings = progress.run(analyze(study, [pkg], device="cpu"), steps.append)
    assert sorted(les.bbox for les in findings.lesions) == sorted(
        [[5, 10, 30, 9, 20, 40], [12, 30, 6, 16, 40, 14]]
    )
    assert np.array_equal(findings.label_mask > 0, labels > 0)
    first = findings.lesions[0]
    assert first.provenance[0]["who"] == "model:toy-seg@1.0" and first.source == "model:toy-seg@1.0"
    assert first.score > 0.99 and first.label == first.id
    assert first.volume_ml == pytest.approx(
        (labels == labels[first.bbox[0], first.bbox[1], first.bbox[2]]).sum() * study.voxel_volume_ml
    )
    assert findings.models[0].device == "cpu" and findings.models[0].demo
    assert findings.shape == study.shape and np.array_equal(findings.affine, study.affine)
    fracs = [s.fraction for s in steps]
    assert fracs == sorted(fracs) and fracs[-1] == 1.0 and any("window" in s.message for s in steps)


def _rot(axis: int, deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


SAGITTAL = np.array([[2.0, 0, 0, -20.0], [0, 0, 0.9, -30.0], [0, -0.9, 0, 40.0], [0, 0, 0, 1]])
OBLIQUE = np.eye(4)
OBLIQUE[:3, :3] = _rot(0, 20) @ _rot(2, 15) @ np.diag([2.5, 0.9, 0.9])
OBLIQUE[:3, 3] = [-30.0, 12.0, 40.0]


@pytest.mark.parametrize("affine", [SAGITTAL, OBLIQUE], ids=["sagittal", "oblique"])
@pytest.mark.parametrize("orientation", ["study", "axial"])
def test_results_land_on_the_same_anatomy_for_sagittal_and_oblique_studies(
    tmp_path: Path, affine: np.ndarray, orientation: str
) -> None:
    """The model works on another grid (other spacing, maybe axial axes); findings come back in place."""
    boxes = ((5, 10, 24, 11, 22, 36), (12, 28, 6, 18, 40, 16))
    study, labels = blob_study(affine=affine, shape=(20, 48, 44), boxes=boxes)
    pkg = threshold_package(
        tmp_path, spacing_mm=[1.4, 1.3, 1.1], orientation=orientation, patch_size=[16, 32, 32]
    )
    x, model_affine = pkg.prepare_input(study)
    assert not np.allclose(model_affine, affine)
    findings = progress.run(analyze(study, [pkg], device="cpu"))
    assert len(findings.lesions) == 2
    assert _dice(findings.label_mask > 0, labels > 0) > 0.85
    for les in findings.lesions:
        truth_id = int(np.bincount(labels[findings.label_mask == les.label]).argmax())
        truth_c = voxel_to_world(affine, ndimage.center_of_mass(labels == truth_id))
        assert np.linalg.norm(voxel_to_world(affine, les.centroid_zyx) - truth_c) < 1.0  # mm
        assert np.abs(np.array(les.bbox) - np.array(boxes[truth_id - 1])).max() <= 1


def test_detect_task_gives_boxes_without_a_mask(tmp_path: Path) -> None:
    study, _ = blob_study()
    card = seg_card()
    card.update(name="toy-det", task="detect")
    pkg = save_package(tmp_path / "det", card, ThresholdNet(), fmt="torchscript")
    findings = progress.run(analyze(study, [pkg], device="cpu"))
    assert len(findings.lesions) == 2 and findings.label_mask is None
    assert all(les.label == 0 for les in findings.lesions)


def test_min_lesion_size_drops_small_components(tmp_path: Path) -> None:
    study, _ = blob_study(boxes=((5, 10, 30, 9, 20, 40), (12, 30, 6, 13, 31, 7)))  # second: one voxel
    pkg = threshold_package(tmp_path)
    assert len(progress.run(analyze(study, [pkg])).lesions) == 2
    card = seg_card()
    card["outputs"]["min_lesion_ml"] = 0.01
    pkg = save_package(tmp_path / "min", card, ThresholdNet(), fmt="torchscript")
    assert len(progress.run(analyze(study, [pkg])).lesions) == 1


@pytest.mark.parametrize("shape", [(12, 40, 36), (6, 20, 20)], ids=["larger", "smaller-than-patch"])
def test_sliding_window_equals_monai(shape: tuple[int, int, int]) -> None:
    from monai.inferers import sliding_window_inference

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv3d(2, 3, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv3d(3, 2, 3, padding=1)
    )
    x = torch.rand(2, *shape)
    with torch.inference_mode():
        ref = sliding_window_inference(x[None], (8, 16, 16), 3, net, overlap=0.5, mode="gaussian")[0]
        ours = progress.run(sliding_window(net, x, (8, 16, 16), overlap=0.5, batch_size=3))
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, atol=1e-5)


def test_cancel_between_batches_keeps_nothing(tmp_path: Path) -> None:
    study, _ = blob_study(shape=(24, 64, 64))
    pkg = threshold_package(tmp_path, sw_batch_size=1)
    calls = {"n": 0}

    def should_cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 5

    gen = analyze(study, [pkg], should_cancel=should_cancel)
    seen: list[Progress] = []
    with pytest.raises(Cancelled, match="cancelled"):
        progress.run(gen, seen.append)
    assert any("window" in p.message for p in seen)  # it was stopped mid-run, between windows
    assert all(p.fraction < 1.0 for p in seen)


def test_classification_with_mc_dropout_and_tta(tmp_path: Path) -> None:
    study, _ = blob_study()
    mc = save_package(tmp_path / "mc", cls_card("mc_dropout", 30), MeanClassifier(), fmt="torchscript")
    findings = progress.run(analyze(study, [mc]))
    pred = findings.case_predictions["pcr"]
    assert (
        pred.method == "mc_dropout" and pred.model == "toy-cls@1.0" and pred.display_names == {"pcr": "pCR"}
    )
    assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-3)
    for c, (lo, hi) in pred.intervals.items():
        assert lo <= pred.probabilities[c] <= hi
    assert pred.intervals["pcr"][1] - pred.intervals["pcr"][0] > 0.01  # dropout really varied
    assert findings.lesions == [] and findings.models[0].task == "classify"

    tta = save_package(tmp_path / "tta", cls_card("tta", 8), MeanClassifier(), fmt="torchscript")
    pred = progress.run(analyze(study, [tta])).case_predictions["pcr"]
    # channel means are flip-invariant and dropout is off: all eight passes agree
    assert pred.method == "tta" and all(hi - lo < 1e-5 for lo, hi in pred.intervals.values())


def test_mc_dropout_enables_only_dropout_layers() -> None:
    net = torch.nn.Sequential(
        torch.nn.Conv3d(1, 2, 1), torch.nn.BatchNorm3d(2), torch.nn.Dropout3d(0.5)
    ).eval()
    with dropout_active(net) as n:
        assert n == 1
        assert net[2].training and not net[1].training and not net[0].training
    assert not net[2].training


def test_what_cannot_run_is_skipped_with_a_warning_unless_nothing_can(tmp_path: Path) -> None:
    study, _ = blob_study()
    seg = threshold_package(tmp_path)
    pair_card = cls_card("none", 1)
    pair_card.update(name="toy-pair")
    pair_card["inputs"]["channels"] = ["pre", "pair:sub1"]
    pair = save_package(tmp_path / "pair", pair_card, MeanClassifier(), fmt="torchscript")
    missing = seg_card(channels=["pre", "sub3"])
    missing["name"] = "needs-post3"
    late = save_package(tmp_path / "late", missing, ThresholdNet(), fmt="torchscript")
    findings = progress.run(analyze(study, [seg, pair, late]))
    assert [m.name for m in findings.models] == ["toy-seg"]
    assert any("follow-up" in w for w in findings.warnings) and any("post3" in w for w in findings.warnings)
    with pytest.raises(IncompatibleModel, match="follow-up"):
        progress.run(analyze(study, [pair]))
    with pytest.raises(IncompatibleModel, match="post3"):
        progress.run(analyze(study, [late]))
    # with the follow-up exam the pair model runs
    both = progress.run(analyze(study, [pair], follow_up=study))
    assert "pcr" in both.case_predictions


def test_explain_hook_degrades_to_a_warning_when_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import napari_breastmri.explain as explain_pkg

    monkeypatch.delattr(explain_pkg, "explain_study", raising=False)
    study, _ = blob_study()
    card = seg_card()
    card["cam"] = {"target_layer": "head"}
    pkg = save_package(tmp_path / "cam", card, ThresholdNet(), fmt="torchscript")
    findings = progress.run(analyze(study, [pkg], explain="gradcam"))
    assert findings.heatmaps == [] and any("explain_study" in w for w in findings.warnings)


@pytest.mark.parametrize(
    ("size", "roi", "overlap"), [((40, 33, 16), (16, 16, 16), 0.5), ((7, 64, 20), (7, 32, 8), 0.25)]
)
def test_window_grid_and_weights_match_monai(size, roi, overlap) -> None:
    from monai.data.utils import compute_importance_map, dense_patch_slices

    from napari_breastmri.inference.sliding import gaussian_importance, scan_interval, window_slices

    interval = scan_interval(size, roi, overlap)
    assert window_slices(size, roi, interval) == dense_patch_slices(size, roi, interval)
    assert torch.allclose(
        gaussian_importance(roi), compute_importance_map(roi, mode="gaussian", sigma_scale=0.125)
    )


def test_explain_hook_collects_heatmaps_and_survives_a_failing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import napari_breastmri.explain as explain_pkg
    from napari_breastmri.errors import BreastMRIError
    from napari_breastmri.types import Heatmap

    study, _ = blob_study()
    card = seg_card()
    card["cam"] = {"target_layer": "head"}
    pkg = save_package(tmp_path / "cam", card, ThresholdNet(), fmt="torchscript")
    calls: list[tuple[str, int]] = []

    def fake_explain(study_, package, findings, method="gradcam", device=None, follow_up=None):
        calls.append((method, len(findings.lesions)))
        yield Progress("explain", 0.5, "")
        if method == "broken":
            raise BreastMRIError("layer not found")
        return Heatmap(
            np.zeros(study_.shape, np.float32), study_.affine, method, "lesion 1", "head", package.label
        )

    monkeypatch.setattr(explain_pkg, "explain_study", fake_explain)
    findings = progress.run(analyze(study, [pkg], explain=["gradcam", "broken"]))
    assert calls == [("gradcam", 2), ("broken", 2)]  # explained after the lesions were found
    assert [h.method for h in findings.heatmaps] == ["gradcam"]
    assert any("No broken heatmap for toy-seg@1.0: layer not found" in w for w in findings.warnings)
