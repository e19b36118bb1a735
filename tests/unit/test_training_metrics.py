"""Metric correctness on hand-made cases: box matching, sensitivity at 1 FP, Dice, AUC, ECE."""

from __future__ import annotations

import numpy as np
import pytest

from napari_breastmri.training import metrics as M


def test_box_iou_by_hand() -> None:
    a = [0, 0, 0, 2, 2, 2]  # 8 voxels
    b = [1, 1, 1, 3, 3, 3]  # 8 voxels, overlap 1
    assert M.box_iou(a, b) == pytest.approx(1 / 15)
    assert M.box_iou(a, a) == 1.0
    assert M.box_iou(a, [5, 5, 5, 6, 6, 6]) == 0.0


def test_hit_rule_centre_inside_or_iou() -> None:
    truth = [10, 10, 10, 20, 20, 20]
    # a huge box whose centre lies in the truth box: IoU tiny, still a hit
    assert M.box_hits([0, 0, 0, 30, 30, 30], truth)
    assert M.box_iou([0, 0, 0, 30, 30, 30], truth) < 0.1
    # centre outside but IoU > 0.1: a hit
    pred = [10, 10, 14, 20, 20, 26]  # centre x = 20 is on the exclusive end -> outside; IoU 0.375
    assert M.box_iou(pred, truth) > 0.1 and M.box_hits(pred, truth)
    # centre outside and IoU small: a miss
    assert not M.box_hits([19, 19, 19, 31, 31, 31], truth)


def test_match_case_counts_duplicates_once_and_misses_as_fp() -> None:
    case = M.CaseDetections(
        pred_boxes=[[0, 0, 0, 4, 4, 4], [1, 1, 1, 3, 3, 3], [50, 50, 50, 52, 52, 52]],
        scores=[0.9, 0.8, 0.7],
        truth_boxes=[[0, 0, 0, 4, 4, 4], [20, 20, 20, 24, 24, 24]],
    )
    assert M.match_case(case, 0.0) == (1, 1, 2)  # second box repeats lesion 1; third is an FP
    assert M.match_case(case, 0.85) == (1, 0, 2)


def test_sensitivity_at_one_fp_per_case() -> None:
    truth = [[0, 0, 0, 4, 4, 4]]
    cases = [
        # found with 0.9, two FPs at 0.95 and 0.3
        M.CaseDetections(
            [[0, 0, 0, 4, 4, 4], [30, 30, 30, 34, 34, 34], [40, 40, 40, 44, 44, 44]], [0.9, 0.95, 0.3], truth
        ),
        # found only at 0.2
        M.CaseDetections([[1, 1, 1, 3, 3, 3]], [0.2], truth),
    ]
    # threshold 0.2 finds both lesions with 2 FPs over 2 cases = 1 per case
    out = M.sensitivity_at_fp(cases, 1.0)
    assert out["sensitivity"] == 1.0 and out["fp_per_case"] == 1.0 and out["threshold"] == 0.2
    # with at most 0.5 FP per case: threshold 0.9 -> 1 FP, 1 of 2 lesions
    out = M.sensitivity_at_fp(cases, 0.5)
    assert out["sensitivity"] == 0.5 and out["fp_per_case"] == 0.5
    assert M.operating_point(cases, 0.0) == {"sensitivity": 1.0, "fp_per_case": 1.0}


def test_dice_by_hand() -> None:
    a = np.zeros((4, 4, 4), bool)
    b = np.zeros((4, 4, 4), bool)
    a[0, 0, :4] = True  # 4 voxels
    b[0, 0, 2:4] = True  # 2 voxels, both in a
    assert M.dice(a, b) == pytest.approx(2 * 2 / 6)
    assert M.dice(a, a) == pytest.approx(1.0)
    assert M.dice(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert M.dice(a, np.zeros_like(a)) == 0.0


def test_auc_binary_and_macro() -> None:
    y = [0, 0, 1, 1]
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])
    assert M.auc(y, p) == pytest.approx(0.75)  # 3 of 4 positive/negative pairs ordered
    y3 = [0, 1, 2, 0, 1, 2]
    perfect = np.eye(3)[y3] * 0.8 + 0.2 / 3
    assert M.auc(y3, perfect) == pytest.approx(1.0)
    assert np.isnan(M.auc([1, 1], p[:2]))


def test_ece_by_hand() -> None:
    # two samples at confidence 0.9 (one right), two at 0.6 (both right)
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = [0, 1, 0, 1]
    # bin (0.8, 0.9]: acc 0.5 vs conf 0.9 -> 0.4 * 0.5 share; bin (0.5, 0.6]: acc 1 vs 0.6 -> 0.4 * 0.5
    assert M.expected_calibration_error(labels, probs) == pytest.approx(0.4)
    assert M.expected_calibration_error([0, 0], np.array([[1.0, 0.0], [1.0, 0.0]])) == 0.0


def test_temperature_scaling_reduces_overconfidence() -> None:
    from napari_breastmri.training.loops import _softmax, fit_temperature

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    # informative but 4x overconfident logits
    clean = np.where(labels[:, None] == np.arange(2), 1.0, -1.0) * 0.5 + rng.normal(0, 1.0, (400, 2))
    logits = 4 * clean
    t = fit_temperature(logits, labels)
    assert 2.0 < t < 8.0
    before = M.expected_calibration_error(labels, _softmax(logits))
    after = M.expected_calibration_error(labels, _softmax(logits / t))
    assert after < before / 2


def test_temperature_fitted_to_the_mc_dropout_mean() -> None:
    """With (passes, cases, classes) logits the fit calibrates the mean over passes (what the
    pipeline reports), not a single pass: spread between passes already softens the mean."""
    from napari_breastmri.training.loops import fit_temperature, mean_probabilities

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400)
    clean = np.where(labels[:, None] == np.arange(2), 1.0, -1.0) * 0.5 + rng.normal(0, 1.0, (400, 2))
    passes = 4 * clean[None] + rng.normal(0, 3.0, (20, 400, 2))  # overconfident, noisy passes
    t_mc = fit_temperature(passes, labels)
    t_single = fit_temperature(passes[0], labels)
    assert t_mc < t_single  # the mean of passes is less confident than one pass
    before = M.expected_calibration_error(labels, mean_probabilities(passes, 1.0))
    after = M.expected_calibration_error(labels, mean_probabilities(passes, t_mc))
    assert after < before / 2 and after < 0.05
    assert M.expected_calibration_error(labels, mean_probabilities(passes, t_single)) > after


def test_mc_dropout_logits_run_the_head_with_dropout_on() -> None:
    import torch

    from napari_breastmri.models.networks import LesionAttentionClassifier
    from napari_breastmri.training.data import Sample
    from napari_breastmri.training.loops import mc_dropout_logits

    torch.manual_seed(0)
    net = LesionAttentionClassifier(3, 4, features=(4, 8, 8), dropout=0.5)
    samples = [
        Sample(
            f"c{i}",
            np.random.default_rng(i).random((3, 8, 16, 16)).astype(np.float32),
            np.eye(4),
            label=i % 4,
        )
        for i in range(5)
    ]
    logits, labels = mc_dropout_logits(net, samples, passes=6)
    assert logits.shape == (6, 5, 4) and list(labels) == [0, 1, 2, 3, 0]
    assert np.ptp(logits, axis=0).max() > 0, "dropout is on: the passes differ"
    again, _ = mc_dropout_logits(net, samples, passes=6)
    np.testing.assert_array_equal(logits, again)  # seeded: the card's numbers are reproducible
    assert not net.training and not net.dropout.training, "eval mode restored"
