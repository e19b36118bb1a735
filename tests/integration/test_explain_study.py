"""explain_study end to end on an OBLIQUE synthetic study: the heatmap is computed on the model grid
(the card's real preprocessing, here with axes permuted to axial) and must land on the lesion in
world coordinates on the study grid, with its faithfulness numbers filled in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from napari_breastmri import progress
from napari_breastmri.explain import describe, explain_study
from napari_breastmri.geometry import orientation_label, voxel_to_world
from napari_breastmri.models.card import parse_card
from napari_breastmri.types import Findings, Heatmap, Lesion, Study
from tests.unit import _explain_toys as toys

torch.set_num_threads(1)
SHAPE = (15, 30, 30)  # study grid; the classifier card resizes it to the toy's 12 x 24 x 24


def oblique_affine(spacing=(2.0, 1.5, 1.5), origin=(-40.0, 20.0, 60.0)) -> np.ndarray:
    """A slab tilted 25 deg and 15 deg off sagittal: slices run mostly left-right."""
    rot = Rotation.from_euler("yz", [25, 15], degrees=True).as_matrix()
    # columns: slice (z) direction ~ L (x of LPS), row (y) ~ S-I, column (x) ~ A-P
    base = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]).T
    dirs = rot @ base
    affine = np.eye(4)
    affine[:3, :3] = dirs * np.asarray(spacing)
    affine[:3, 3] = origin
    return affine


def blob_study(seed: int, affine: np.ndarray) -> tuple[Study, np.ndarray, np.ndarray]:
    """pre / post1 / post2 (washout) with an enhancing blob; (study, blob centre voxel, blob mask)."""
    rng = np.random.default_rng(seed)
    x, centre, mask = toys.blob_volume(rng, True, shape=SHAPE, radius=3.0 * 1.25)
    pre = 3.0 + x[0]
    post1 = 3.0 + x[1]
    post2 = 3.0 + x[0] + 0.6 * (x[1] - x[0])  # the blob washes out (PE ~80%, then -18%)
    data = np.stack([pre, post1, post2]).astype(np.float32)
    study = Study(
        data=data, affine=affine, times=np.array([0.0, 90.0, 360.0]), phase_labels=["pre", "post1", "post2"]
    )
    return study, centre, mask


@dataclass
class ToyPackage:
    """A ModelPackage look-alike: a real parsed card and the real preprocessing, a toy network."""

    card: Any
    net: torch.nn.Module

    def build(self, device: Any = "cpu") -> torch.nn.Module:
        return self.net.to(device).eval()

    def prepare_input(self, study: Study, follow_up: Study | None = None):
        from napari_breastmri.inference.preprocess import prepare_input

        return prepare_input(self.card, study, follow_up)


def card(task: str, **inputs: Any) -> Any:
    doc = {
        "name": f"toy-{task}",
        "version": "0.1",
        "task": task,
        "target": "blob" if task == "classify" else "lesion",
        "demo": True,
        "network": {"factory": "napari_breastmri.models.networks.CaseClassifier"},
        "weights": {"file": "w.safetensors", "format": "safetensors", "sha256": "0" * 64},
        "inputs": {"channels": ["pre", "post1", "sub1"], "normalisation": {"method": "none"}, **inputs},
        "outputs": {"classes": ["absent", "present"], "activation": "softmax"}
        if task == "classify"
        else {"classes": ["lesion"], "activation": "sigmoid"},
        "cam": {"target_layer": "features.7" if task == "classify" else "mid"},
    }
    return parse_card(doc)


@pytest.fixture(scope="module")
def classifier_pkg() -> ToyPackage:
    return ToyPackage(
        card("classify", resize_to=list(toys.SHAPE), orientation="axial"), toys.trained_classifier()
    )


def steps_seen(steps: list[str]):
    return lambda p: steps.append(p.step)


def world_distance(hm: Heatmap, study: Study, centre: np.ndarray) -> float:
    peak = np.unravel_index(int(hm.data.argmax()), hm.data.shape)
    return float(np.linalg.norm(voxel_to_world(hm.affine, peak) - voxel_to_world(study.affine, centre)))


def test_classifier_heatmap_lands_on_the_lesion_of_an_oblique_study(classifier_pkg):
    from napari_breastmri.explain.study import Explained

    affine = oblique_affine()
    assert orientation_label(affine) == "oblique"
    for seed in (1, 2):
        study, centre, mask = blob_study(seed, affine)
        steps: list[str] = []
        ex = progress.run(
            explain_study(study, classifier_pkg, None, method="gradcam", keep=True),
            steps_seen(steps),
        )
        assert isinstance(ex, Explained) and steps[0] == "explain"
        hm = ex.heatmap
        # the model grid is the study's field of view with its axes permuted to axial order
        assert not np.allclose(np.abs(ex.model_affine[:3, :3]).argmax(axis=0), [0, 1, 2])
        assert hm.data.shape == study.shape and hm.data.dtype == np.float32
        assert hm.data.min() >= 0.0 and hm.data.max() == pytest.approx(1.0)
        np.testing.assert_array_equal(hm.affine, study.affine)
        assert (hm.method, hm.layer, hm.model, hm.target) == (
            "gradcam",
            "features.7",
            "toy-classify@0.1",
            "blob=present",
        )
        # placement: the study-grid peak is where the model-grid peak is, in world millimetres
        model_peak = np.unravel_index(int(ex.model_cam.argmax()), ex.model_cam.shape)
        study_peak = np.unravel_index(int(hm.data.argmax()), hm.data.shape)
        gap = np.linalg.norm(
            voxel_to_world(ex.model_affine, model_peak) - voxel_to_world(study.affine, study_peak)
        )
        assert gap <= 3.0  # mm: within about one study voxel
        # and on the lesion: within one cell of the toy's 3 x 6 x 6 feature grid (about 7.5 mm)
        assert world_distance(hm, study, centre) <= 8.0
    assert toys.all_hooks(classifier_pkg.net) == 0


def test_all_scores_and_pointing_game_on_the_oblique_study(classifier_pkg):
    study, centre, mask = blob_study(3, oblique_affine())
    findings = Findings(shape=study.shape, affine=study.affine, label_mask=mask.astype(np.int16))
    findings.lesions.append(Lesion(id=1, bbox=[0, 0, 0, 1, 1, 1], score=0.9, label=1))
    hm = progress.run(
        explain_study(
            study, classifier_pkg, findings, method="gradcam", target="present", scores="all", truth_mask=mask
        )
    )
    assert hm.scores["pointing_hit"] == 1.0
    assert hm.scores["deletion_auc"] < hm.scores["deletion_auc_random"]
    assert hm.scores["insertion_auc"] > hm.scores["insertion_auc_random"]
    assert set(hm.scores) >= {"randomisation_spearman", "randomisation_flag"}
    assert list(hm.phase_attribution) == ["pre", "post1", "sub1"]
    assert hm.phase_attribution["pre"] < hm.phase_attribution["post1"] + hm.phase_attribution["sub1"]
    ks = hm.kinetics_share
    assert {"washout", "plateau", "persistent", "lesion", "background_parenchyma"} <= set(ks)
    # a 3 x 6 x 6 feature grid spreads heat, yet the lesion gets several times its share of the volume
    assert ks["lesion"] > mask.mean() * 3 and ks["lesion_contrast"] > 3
    assert ks["washout"] > ks["persistent"]  # the blob washes out; the noise around it does not enhance
    text = describe(hm)
    assert text.startswith("Grad-CAM for blob=present") and "lesion" in text


def test_every_method_through_explain_study_keeps_the_contract(classifier_pkg):
    from napari_breastmri.explain import METHODS

    study, centre, _ = blob_study(4, oblique_affine())
    for method in METHODS:
        hm = progress.run(explain_study(study, classifier_pkg, None, method=method, scores="none"))
        assert hm.data.shape == study.shape and hm.data.min() >= 0.0 and hm.data.max() <= 1.0
        assert world_distance(hm, study, centre) <= 8.0, method
    assert toys.all_hooks(classifier_pkg.net) == 0


@pytest.mark.parametrize("patch", [[8, 16, 16], [16, 32, 32]])  # the second is larger than the grid: padded
def test_segmenter_and_detector_explain_the_chosen_lesion_on_a_patch(patch):
    seg = toys.trained_segmenter()
    study, centre, mask = blob_study(5, oblique_affine())
    findings = Findings(shape=study.shape, affine=study.affine, label_mask=mask.astype(np.int16))
    idx = np.argwhere(mask)
    bbox = [*idx.min(axis=0).tolist(), *(idx.max(axis=0) + 1).tolist()]
    findings.lesions.append(Lesion(id=7, bbox=bbox, score=0.8, label=1, source="model:toy-segment@0.1"))
    zz, yy, xx = np.indices(study.shape)
    near = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= 8**2
    for task in ("segment", "detect"):
        pkg = ToyPackage(card(task, patch_size=patch), seg)
        hm = progress.run(explain_study(study, pkg, findings, method="layercam", target="lesion:7"))
        assert hm.data.shape == study.shape and hm.data.min() >= 0.0 and hm.data.max() == pytest.approx(1.0)
        assert hm.target == ("lesion 7 (segmentation)" if task == "segment" else "lesion 7 (box)")
        assert hm.data[near].sum() / hm.data.sum() > 0.5
        if patch[0] < SHAPE[0]:  # a patch inside the grid: nothing outside it is hotter than the lesion
            assert hm.data[~near].max() < 1.0
        # (a patch larger than the grid is zero-padded as the pipeline's sliding window pads it, and
        # the padded border is an edge the toy network reacts to, so its peak may sit there)
    assert toys.all_hooks(seg) == 0


def test_no_lesion_gives_no_heatmap_and_a_warning():
    study, _, _ = blob_study(6, oblique_affine())
    findings = Findings(shape=study.shape, affine=study.affine)
    pkg = ToyPackage(card("segment", patch_size=[8, 16, 16]), toys.trained_segmenter())
    assert progress.run(explain_study(study, pkg, findings)) is None
    assert any("No lesion" in w for w in findings.warnings)


def test_bad_layer_and_class_are_explanation_errors(classifier_pkg):
    from napari_breastmri.errors import BreastMRIError

    study, _, _ = blob_study(7, oblique_affine())
    with pytest.raises(BreastMRIError, match="no layer named"):
        progress.run(explain_study(study, classifier_pkg, None, layer="features.42"))
    with pytest.raises(BreastMRIError, match="no class 'luminal_z'"):
        progress.run(explain_study(study, classifier_pkg, None, target="luminal_z"))
