"""Metrics for the demo models: lesion-level detection, Dice, AUC and calibration.

Why here: the numbers that go into each card and docs/models.md must be computed one way,
documented once, and tested on hand-made cases. Library implementations are used where they
exist (scikit-learn's ``roc_auc_score``, MONAI's ``DiceMetric``); what the libraries lack is the
lesion matching and the sensitivity-at-false-positives operating point, written out here.

Lesion matching rule: a predicted box *hits* a truth lesion when the predicted box's centre lies
inside the truth box, or when the two boxes' IoU exceeds 0.1. Each truth lesion is counted found
at most once; a prediction that hits no truth lesion is a false positive (a second prediction on
an already-found lesion is not counted as a false positive: it is the same finding split in two).
Boxes are [z0, y0, x0, z1, y1, x1] voxel indices, end exclusive, on the study grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IOU_HIT = 0.1


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two 3D boxes [z0, y0, x0, z1, y1, x1] (end exclusive)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    lo = np.maximum(a[:3], b[:3])
    hi = np.minimum(a[3:], b[3:])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    vol_a = float(np.prod(np.clip(a[3:] - a[:3], 0, None)))
    vol_b = float(np.prod(np.clip(b[3:] - b[:3], 0, None)))
    union = vol_a + vol_b - inter
    return inter / union if union > 0 else 0.0


def box_hits(pred: Sequence[float], truth: Sequence[float], iou_threshold: float = IOU_HIT) -> bool:
    """The matching rule: the predicted box's centre lies in the truth box, or IoU > threshold."""
    p = np.asarray(pred, dtype=float)
    t = np.asarray(truth, dtype=float)
    centre = (p[:3] + p[3:]) / 2.0
    inside = bool(np.all(centre >= t[:3]) and np.all(centre < t[3:]))
    return inside or box_iou(p, t) > iou_threshold


@dataclass
class CaseDetections:
    """One case: predicted boxes with scores, and the truth boxes."""

    pred_boxes: list[list[float]]
    scores: list[float]
    truth_boxes: list[list[float]]


def match_case(case: CaseDetections, min_score: float) -> tuple[int, int, int]:
    """(true lesions found, false positives, truth lesions) for predictions scoring >= min_score.

    Predictions are taken in descending score order so that the strongest one claims a lesion.
    """
    order = np.argsort(-np.asarray(case.scores, dtype=float), kind="stable")
    found: set[int] = set()
    false_pos = 0
    for i in order:
        if case.scores[i] < min_score:
            continue
        hits = [j for j, t in enumerate(case.truth_boxes) if box_hits(case.pred_boxes[i], t)]
        if not hits:
            false_pos += 1
            continue
        new = [j for j in hits if j not in found]
        if new:
            found.add(new[0])
    return len(found), false_pos, len(case.truth_boxes)


def froc(cases: Sequence[CaseDetections]) -> list[tuple[float, float, float]]:
    """The FROC curve: (score threshold, sensitivity, false positives per case), one per threshold."""
    thresholds = sorted({float(s) for c in cases for s in c.scores}, reverse=True)
    n_truth = sum(len(c.truth_boxes) for c in cases)
    curve = []
    for thr in [np.inf, *thresholds]:
        tp = fp = 0
        for c in cases:
            t, f, _ = match_case(c, thr)
            tp += t
            fp += f
        curve.append((thr, tp / n_truth if n_truth else float("nan"), fp / max(len(cases), 1)))
    return curve


def sensitivity_at_fp(cases: Sequence[CaseDetections], fp_per_case: float = 1.0) -> dict[str, float]:
    """The best lesion sensitivity with at most ``fp_per_case`` false positives per case.

    Returns {"sensitivity", "fp_per_case", "threshold"} (the lowest score threshold that keeps
    the false positives within budget).
    """
    best = (float("nan"), 0.0, float("inf"))
    for thr, sens, fps in froc(cases):
        if fps <= fp_per_case and (np.isnan(best[0]) or sens > best[0]):
            best = (sens, fps, thr)
    return {"sensitivity": float(best[0]), "fp_per_case": float(best[1]), "threshold": float(best[2])}


def operating_point(cases: Sequence[CaseDetections], min_score: float = 0.0) -> dict[str, float]:
    """Sensitivity and false positives per case at one score threshold."""
    tp = fp = n = 0
    for c in cases:
        t, f, k = match_case(c, min_score)
        tp, fp, n = tp + t, fp + f, n + k
    return {"sensitivity": tp / n if n else float("nan"), "fp_per_case": fp / max(len(cases), 1)}


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two binary masks via MONAI's DiceMetric (1.0 when both are empty)."""
    import torch
    from monai.metrics import DiceMetric

    p = torch.as_tensor(np.asarray(pred) > 0, dtype=torch.float32)[None, None]
    t = torch.as_tensor(np.asarray(truth) > 0, dtype=torch.float32)[None, None]
    if not bool(p.any()) and not bool(t.any()):
        return 1.0
    metric = DiceMetric(include_background=True, reduction="mean", ignore_empty=False)
    return float(metric(p, t).item())


def auc(labels: Sequence[int], probs: np.ndarray) -> float:
    """ROC AUC: binary (probability of class 1) or macro one-vs-rest for more classes (sklearn)."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels, dtype=int)
    probs = np.asarray(probs, dtype=float)
    n_classes = probs.shape[1]
    present = np.unique(labels)
    if len(present) < 2:
        return float("nan")
    if n_classes == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    if len(present) < n_classes:
        # sklearn's multi-class AUC needs every class; average the one-vs-rest AUCs we can compute
        return float(np.mean([roc_auc_score(labels == k, probs[:, k]) for k in present]))
    return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))


def expected_calibration_error(labels: Sequence[int], probs: np.ndarray, n_bins: int = 10) -> float:
    """ECE of the top-class confidence: sum over equal-width bins of |accuracy - confidence| x share."""
    labels = np.asarray(labels, dtype=int)
    probs = np.asarray(probs, dtype=float)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def accuracy(labels: Sequence[int], probs: np.ndarray) -> float:
    return float(np.mean(np.asarray(probs).argmax(axis=1) == np.asarray(labels)))
