"""Faithfulness numbers on toy 3D models whose evidence is known (a bright enhancing blob)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_breastmri.explain import attribution, describe
from napari_breastmri.explain import faithfulness as fa
from napari_breastmri.explain.cam import ClassTarget, compute_cam
from napari_breastmri.types import Heatmap
from tests.unit import _explain_toys as toys

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def classifier() -> nn.Module:
    return toys.trained_classifier()


@pytest.fixture(scope="module")
def case():
    return toys.blob_volume(np.random.default_rng(77), True)


def test_deletion_falls_faster_and_insertion_rises_faster_than_random(classifier, case):
    x, _, _ = case
    target = ClassTarget(1)
    heat = compute_cam(classifier, x, target, "gradcam", "features.7")
    cam = fa.deletion_insertion(classifier, x, heat, target, steps=10)
    rnd = fa.deletion_insertion(classifier, x, None, target, steps=10)
    assert len(cam["deletion"]) == len(cam["fractions"]) == 11
    assert cam["deletion"][0] == pytest.approx(cam["insertion"][-1], abs=1e-5)  # both = the untouched input
    assert cam["deletion_auc"] < rnd["deletion_auc"] - 0.1
    assert cam["insertion_auc"] > rnd["insertion_auc"] + 0.1
    assert toys.all_hooks(classifier) == 0


def test_blur_baseline_is_accepted(classifier, case):
    out = fa.deletion_insertion(classifier, case[0], None, ClassTarget(1), steps=4, baseline="blur")
    assert 0.0 <= out["deletion_auc"] <= 1.0
    with pytest.raises(ValueError, match="unknown baseline"):
        fa.deletion_insertion(classifier, case[0], None, ClassTarget(1), steps=4, baseline="noise")


def test_pointing_game_measures_in_world_millimetres():
    affine = np.diag([3.0, 0.7, 0.7, 1.0])  # thick slices, fine in-plane pixels
    truth = np.zeros((10, 20, 20), bool)
    truth[5, 10, 10] = True
    heat = np.zeros(truth.shape, np.float32)
    heat[5, 10, 12] = 1.0  # 2 voxels in x = 1.4 mm: a hit
    assert fa.pointing_game(heat, affine, truth_mask=truth)["pointing_hit"] == 1.0
    heat[:] = 0
    heat[7, 10, 10] = 1.0  # 2 slices = 6 mm: a miss at the 5 mm tolerance
    res = fa.pointing_game(heat, affine, truth_mask=truth)
    assert res["pointing_hit"] == 0.0 and res["pointing_distance_mm"] == pytest.approx(6.0)
    assert fa.pointing_game(heat, affine, truth_box=[6, 8, 8, 8, 12, 12])["pointing_distance_mm"] == 0.0
    assert fa.pointing_game(np.zeros_like(heat), affine, truth_mask=truth)["pointing_hit"] == 0.0


def test_box_to_grid_goes_through_world_space():
    # z: 2 slices of 2 mm span world [3, 7) mm, which touches 1 mm voxels 3..7 (half of 3 and 7)
    src = np.diag([2.0, 1.0, 1.0, 1.0])
    dst = np.diag([1.0, 2.0, 2.0, 1.0])
    assert fa.box_to_grid([2, 4, 4, 4, 8, 8], src, dst, (20, 10, 10)) == [3, 2, 2, 8, 5, 5]


def test_randomisation_check_passes_a_real_cam_and_flags_one_that_ignores_the_model(classifier, case):
    x, _, _ = case
    heat = compute_cam(classifier, x, 1, "gradcam", "features.7")
    res = fa.randomisation_check(classifier, x, 1, "gradcam", "features.7", heat, cascade_steps=2)
    assert res["randomisation_flag"] == 0.0 and res["randomisation_spearman"] < fa.RANDOMISATION_FLAG
    assert [n for n, _ in res["cascade"]][-1] == res["n_layers"]
    # Eigen-CAM on the first layer's output does not look at the weights above it at all: the
    # cascade (which starts from the head) leaves it unchanged until the first layer is reached
    eig = compute_cam(classifier, x, 1, "eigencam", "features.1")
    top_only = fa.randomisation_check(classifier, x, 1, "eigencam", "features.1", eig, cascade_steps=4)
    assert top_only["cascade"][0][1] > 0.99
    assert toys.all_hooks(classifier) == 0


def test_randomised_copy_leaves_the_original_alone(classifier):
    before = [p.detach().clone() for p in classifier.parameters()]
    clone = fa.randomised_copy(classifier, upto=1)
    assert all(torch.equal(a, b) for a, b in zip(before, classifier.parameters()))
    assert not torch.equal(clone.head.weight, classifier.head.weight)
    assert torch.equal(clone.features[0].weight, classifier.features[0].weight)


def test_spearman_of_identical_and_reversed_maps():
    a = np.random.default_rng(0).random((6, 7, 8))
    assert fa.spearman(a, a) == pytest.approx(1.0)
    assert fa.spearman(a, -a) == pytest.approx(-1.0)
    assert fa.spearman(a, np.zeros_like(a)) == 0.0


def test_kinetics_share_sums_heat_per_curve_type_and_region():
    heat = np.zeros((2, 2, 2), np.float32)
    heat[0, 0, 0], heat[0, 0, 1], heat[1, 1, 1] = 2.0, 1.0, 1.0
    curves = np.zeros((2, 2, 2), np.int8)
    curves[0, 0, 0], curves[0, 0, 1] = 3, 2
    lesion = np.zeros((2, 2, 2), bool)
    lesion[0, 0, :] = True
    share = fa.kinetics_share(heat, curves, lesion, tissue=np.ones((2, 2, 2), bool))
    assert share["washout"] == pytest.approx(0.5) and share["plateau"] == pytest.approx(0.25)
    assert share["non_enhancing"] == pytest.approx(0.25) and share["persistent"] == 0.0
    assert share["lesion"] == pytest.approx(0.75) and share["background_parenchyma"] == pytest.approx(0.25)
    assert share["lesion_contrast"] == pytest.approx((3 / 2) / (1 / 6))
    assert fa.kinetics_share(np.zeros((2, 2, 2)), curves) == {}


@pytest.mark.parametrize("method", attribution.PHASE_METHODS)
def test_phase_attribution_favours_the_enhanced_channels(classifier, case, method):
    shares = attribution.phase_attribution(classifier, case[0], 1, toys.CHANNELS, method=method)
    assert list(shares) == toys.CHANNELS
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["pre"] < max(shares["post1"], shares["sub1"])


@pytest.mark.parametrize("method", ["occlusion", "integrated_gradients"])
def test_reference_maps_land_on_the_blob(classifier, case, method):
    x, centre, _ = case
    heat = compute_cam(classifier, x, 1, method)
    assert heat.shape == x.shape[1:] and heat.min() >= 0 and heat.max() == pytest.approx(1.0, abs=1e-5)
    zz, yy, xx = np.indices(heat.shape)
    near = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= 6**2
    assert heat[near].mean() > 3 * heat[~near].mean()


def test_describe_reads_the_numbers_in_plain_language():
    hm = Heatmap(
        data=np.zeros((1, 1, 1)),
        affine=np.eye(4),
        method="gradcam++",
        target="subtype=luminal_b",
        layer="block4",
        model="demo@1",
        phase_attribution={"pre": 0.1, "post1": 0.3, "sub1": 0.6},
        scores={
            "deletion_auc": 0.12,
            "deletion_auc_random": 0.4,
            "randomisation_spearman": 0.08,
            "pointing_hit": 1.0,
        },
        kinetics_share={"washout": 0.7, "plateau": 0.1, "persistent": 0.05, "lesion": 0.8},
    )
    text = describe(hm)
    assert text.startswith("Grad-CAM++ for subtype=luminal_b")
    for bit in (
        "80% of the heat lies in the lesion",
        "70% in washout",
        "sub1 (60%)",
        "faster than random",
        "as it should",
        "on the true lesion",
    ):
        assert bit in text, bit
    hm.scores.update(randomisation_spearman=0.9, randomisation_flag=1.0)
    assert "caution" in describe(hm)


def test_the_slow_checks_stop_between_forward_passes_when_cancelled(classifier, case):
    """A closing viewer cancels a follow-up mid-check: it must stop within a batch, not a minute."""
    from napari_breastmri.errors import Cancelled

    x, _, _ = case
    asked = []

    def cancel_on_second_ask() -> bool:
        asked.append(1)
        return len(asked) >= 2

    with pytest.raises(Cancelled):
        fa.deletion_insertion(
            classifier, x, None, ClassTarget(1), steps=10, should_cancel=cancel_on_second_ask
        )
    assert len(asked) == 2  # stopped before the second batch of forward passes
    heat = compute_cam(classifier, x, ClassTarget(1), "gradcam", "features.7")
    asked.clear()
    with pytest.raises(Cancelled):
        fa.randomisation_check(
            classifier, x, ClassTarget(1), "gradcam", "features.7", heat, should_cancel=cancel_on_second_ask
        )
    assert len(asked) == 2


def test_evaluate_truth_region_is_the_index_lesion_alone() -> None:
    """``--classifier-region truth`` centres the classifier where its training did: on the index
    lesion, not on the largest truth lesion (a benign mass can be larger)."""
    from napari_breastmri.explain.evaluate import _index_lesion_findings
    from napari_breastmri.inference.pipeline import lesion_roi_centre
    from napari_breastmri.phantom import generate_case

    case = generate_case(903, shape=(16, 64, 64), cancer=True)
    index = [les for les in case.truth["lesions"] if les["role"] == "index"]
    assert len(index) == 1 and len(case.truth["lesions"]) >= 1
    findings = _index_lesion_findings(case)
    assert [les.bbox for les in findings.lesions] == [index[0]["bbox"]]
    centre, _ = lesion_roi_centre(findings, case.study)
    z0, y0, x0, z1, y1, x1 = index[0]["bbox"]
    from napari_breastmri.geometry import world_to_voxel

    voxel = world_to_voxel(case.study.affine, np.asarray(centre)[None])[0]
    assert z0 - 1 <= voxel[0] <= z1 and y0 - 1 <= voxel[1] <= y1 and x0 - 1 <= voxel[2] <= x1


def test_evaluate_centre_baseline_and_shifted_region() -> None:
    """A region centred on the lesion hands a centre-peaked map the pointing game; moved 40 mm
    away, that baseline misses, so hits then have to come from the image."""
    from napari_breastmri.explain.evaluate import _centre_baseline, _index_lesion_findings, _shifted
    from napari_breastmri.phantom import generate_case

    case = generate_case(902, shape=(16, 64, 64), cancer=True)
    truth = np.asarray(case.label_mask) > 0
    findings = _index_lesion_findings(case)
    assert _centre_baseline(findings, case.study, truth) == 1.0
    moved = _shifted(findings, case.study, 40.0, np.random.default_rng(0))
    assert moved.lesions[0].bbox != findings.lesions[0].bbox  # the original is untouched
    assert _centre_baseline(moved, case.study, truth) == 0.0
    assert _centre_baseline(None, case.study, truth) == 0.0


def test_heatmap_panels_figure_says_where_each_peak_lies(tmp_path, monkeypatch) -> None:
    from napari_breastmri.explain import figures
    from napari_breastmri.explain.figures import heatmap_panels

    titles: list[str] = []
    save = figures._save

    def record(fig, path):
        titles.extend(ax.get_title() for ax in fig.axes)
        return save(fig, path)

    monkeypatch.setattr(figures, "_save", record)

    image = np.random.default_rng(0).random((6, 32, 32)).astype(np.float32)
    truth = np.zeros(image.shape, bool)
    truth[3, 10:14, 10:14] = True
    on, off = np.zeros(image.shape), np.zeros(image.shape)
    on[3, 12, 12], off[1, 28, 28] = 1.0, 1.0
    out = heatmap_panels(
        tmp_path / "f.png", image, np.eye(4), [{"heat": on, "label": "a"}, {"heat": off, "label": "b"}], truth
    )
    assert out.is_file() and out.stat().st_size > 1000
    assert "slice 3" in titles[0] and titles[0].endswith("true lesion: yes")
    assert "slice 1" in titles[1] and "true lesion: no (" in titles[1]
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []  # closed after saving
