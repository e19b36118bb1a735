"""Shapes edits -> annotation operations, and teaching's guess-first scoring (headless)."""

from __future__ import annotations

import numpy as np

from napari_breastmri._napari._annotate import box_ops, rendered
from napari_breastmri._napari._teaching import GuessSession
from napari_breastmri.types import CasePrediction, Findings, Lesion


def _lesions():
    return [Lesion(1, [2, 10, 10, 5, 20, 20], 0.9), Lesion(2, [7, 30, 30, 9, 40, 44], 0.4)]


def test_unchanged_layer_gives_no_ops():
    rects, ids = rendered(_lesions())
    assert ids == [1, 1, 1, 2, 2]
    assert box_ops(_lesions(), rects) == []


def test_moving_one_slice_rectangle_moves_the_lesion_in_plane_only():
    rects, _ = rendered(_lesions())
    rects[1] = rects[1] + np.array([0, 4, -3])
    (op,) = box_ops(_lesions(), rects)
    assert op.kind == "set" and op.lesion_id == 1 and op.bbox == [2, 14, 7, 5, 24, 17]


def test_resizing_changes_the_extent():
    rects, _ = rendered(_lesions())
    r = rects[3].copy()
    r[1:3, 2] += 6  # drag the right edge of lesion 2's first rectangle
    rects[3] = r
    (op,) = box_ops(_lesions(), rects)
    assert op.bbox == [7, 30, 30, 9, 40, 50]


def test_new_rectangle_is_a_new_lesion_with_depth_and_removed_deletes():
    rects, _ = rendered(_lesions())
    rects.append(np.array([[3, 50, 5], [3, 50, 15], [3, 60, 15], [3, 60, 5]], float))
    (op,) = box_ops(_lesions(), rects, depth=2, n_slices=4)
    assert op.kind == "add" and op.bbox == [1, 50, 5, 4, 60, 15]
    ops = box_ops(_lesions(), rects[:3], removed=[3])
    assert [(o.kind, o.lesion_id) for o in ops] == [("delete", 2)]


def test_guess_first_scores_against_truth_and_reveals_the_model():
    pred = CasePrediction("pcr", {"no_pcr": 0.3, "pcr": 0.7}, display_names={"pcr": "complete response"})
    findings = Findings((1, 1, 1), np.eye(4), case_predictions={"pcr": pred})
    truth = {"labels": {"pcr": "pcr", "subtype": "luminal_a"}}
    s = GuessSession()
    a = s.submit("pcr", "no_pcr", findings, truth)
    assert (a.model, a.truth, a.correct, a.model_correct) == ("pcr", "pcr", False, True)
    text = s.reveal_text(a, pred.display_names)
    assert "complete response (0.70)" in text and "wrong" in text and "0/1" in text
    s.submit("subtype", "luminal_a", findings, truth)  # no model answer for subtype
    assert s.score == (1, 2) and s.model_score == (1, 1)
    s.submit("pcr", "pcr", findings, None)  # no truth: not scored
    assert s.score == (1, 2)
