"""Cohort metrics from a batch's rows: detection, Dice, AUC and calibration, with plots.

Why here: the same numbers the training code reports per model, but over what a real cohort run
produced, case by case (a failed case counts as missing, not as a miss). Truth comes from each
row's ``truth:<target>`` columns (phantom truth.json) or a user's labels CSV, which wins when both
exist. Written to ``metrics.json`` and ``metrics/*.png``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import _atomic

#: the class counted as "positive" for binary targets' AUC (the event the model should flag)
POSITIVE = {"pcr": "pcr", "lymph_node": "positive", "screening": "needs_review", "malignant": "malignant"}


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(out) else out


def detection_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Lesion sensitivity (pooled), false positives per case and mean Dice over cases with truth."""
    ok = [r for r in rows if r.get("status") != "failed" and _num(r.get("n_truth")) is not None]
    if not ok:
        return {}
    n_truth = sum(int(_num(r["n_truth"]) or 0) for r in ok)
    found = sum(int(_num(r.get("found")) or 0) for r in ok)
    fps = [int(_num(r.get("false_positives")) or 0) for r in ok]
    dices = [d for d in (_num(r.get("dice")) for r in ok) if d is not None]
    out: dict[str, Any] = {
        "cases_with_truth": len(ok),
        "truth_lesions": n_truth,
        "found": found,
        "lesion_sensitivity": found / n_truth if n_truth else None,
        "false_positives_per_case": float(np.mean(fps)),
    }
    if dices:
        out["dice_mean"] = float(np.mean(dices))
        out["dice_median"] = float(np.median(dices))
    return out


def _target_table(
    rows: Sequence[dict[str, Any]], labels: dict[str, dict[str, str]] | None
) -> dict[str, dict]:
    """target -> {"classes": [...], "y": [truth class], "p": [[prob per class]], "cases": [...]}."""
    targets: dict[str, set[str]] = {}
    for r in rows:
        for key in r:
            if key.startswith("p:"):
                _, target, cls = key.split(":", 2)
                targets.setdefault(target, set()).add(cls)
    table: dict[str, dict] = {}
    for target, classes in targets.items():
        ordered = sorted(classes)
        ys, ps, cases = [], [], []
        for r in rows:
            if r.get("status") == "failed":
                continue
            truth = (labels or {}).get(str(r.get("case_id")), {}).get(target) or r.get(f"truth:{target}")
            probs = [_num(r.get(f"p:{target}:{c}")) for c in ordered]
            if truth in (None, "") or str(truth) not in ordered or any(p is None for p in probs):
                continue
            ys.append(str(truth))
            ps.append(probs)
            cases.append(r.get("case_id"))
        if ys:
            table[target] = {"classes": ordered, "y": ys, "p": np.asarray(ps, float), "cases": cases}
    return table


def _binary_scores(
    target: str, classes: list[str], y: list[str], p: np.ndarray
) -> tuple[str, np.ndarray, np.ndarray]:
    pos = POSITIVE.get(target, classes[-1])
    pos = pos if pos in classes else classes[-1]
    return pos, np.array([v == pos for v in y], int), p[:, classes.index(pos)]


def _ece(y_true: np.ndarray, confidence: np.ndarray, n_bins: int = 5) -> float:
    """Expected calibration error: |accuracy - confidence| weighted over equal-width bins."""
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            total += sel.mean() * abs(y_true[sel].mean() - confidence[sel].mean())
    return float(total)


def target_metrics(target: str, t: dict) -> dict[str, Any]:
    """AUC (binary, or macro one-vs-rest over classes present), accuracy, Brier, ECE for a target."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    classes, y, p = t["classes"], t["y"], t["p"]
    top = [classes[i] for i in p.argmax(axis=1)]
    out: dict[str, Any] = {
        "n": len(y),
        "classes": classes,
        "accuracy": float(np.mean([a == b for a, b in zip(top, y)])),
    }
    if len(classes) == 2:
        pos, yb, score = _binary_scores(target, classes, y, p)
        out["positive_class"] = pos
        out["auc"] = float(roc_auc_score(yb, score)) if 0 < yb.sum() < len(yb) else None
        out["brier"] = float(brier_score_loss(yb, score))
        out["ece"] = _ece(yb, score)
    else:
        aucs = {}
        for i, cls in enumerate(classes):
            yb = np.array([v == cls for v in y], int)
            if 0 < yb.sum() < len(yb):
                aucs[cls] = float(roc_auc_score(yb, p[:, i]))
        out["auc_per_class"] = aucs
        out["auc"] = float(np.mean(list(aucs.values()))) if aucs else None
        correct = np.array([a == b for a, b in zip(top, y)], int)
        out["ece"] = _ece(correct, p.max(axis=1))
    if out.get("auc") is None:
        out["note"] = "AUC undefined: the labelled cases hold only one class"
    return out


def _plots(target: str, t: dict, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import roc_curve

    classes, y, p = t["classes"], t["y"], t["p"]
    fig = Figure(figsize=(8, 3.6), dpi=100, layout="constrained")
    roc_ax, cal_ax = fig.subplots(1, 2)
    pairs = (
        [(_binary_scores(target, classes, y, p)[0], *_binary_scores(target, classes, y, p)[1:])]
        if len(classes) == 2
        else [(c, np.array([v == c for v in y], int), p[:, i]) for i, c in enumerate(classes)]
    )
    for cls, yb, score in pairs:
        if 0 < yb.sum() < len(yb):
            fpr, tpr, _ = roc_curve(yb, score)
            roc_ax.plot(fpr, tpr, label=cls)
            frac, mean_pred = calibration_curve(yb, score, n_bins=5, strategy="uniform")
            cal_ax.plot(mean_pred, frac, "o-", label=cls)
    for ax in (roc_ax, cal_ax):
        ax.plot([0, 1], [0, 1], "--", color="#999999", linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC: {target} (n={len(y)})")
    cal_ax.set(xlabel="predicted probability", ylabel="observed frequency", title=f"calibration: {target}")
    path = folder / f"{target}.png"
    with _atomic.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return [path]


def _detection_plot(rows: Sequence[dict[str, Any]], folder: Path) -> Path | None:
    ok = [r for r in rows if r.get("status") != "failed" and _num(r.get("n_truth")) is not None]
    if not ok:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4, 0.5 * len(ok) + 2), 3.2), dpi=100, layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(ok))
    ax.bar(x - 0.2, [int(_num(r["n_truth"]) or 0) for r in ok], 0.4, label="truth lesions", color="#a8dadc")
    ax.bar(x + 0.2, [int(_num(r.get("found")) or 0) for r in ok], 0.4, label="found", color="#1d3557")
    ax.plot(x, [int(_num(r.get("false_positives")) or 0) for r in ok], "rx", label="false positives")
    ax.set_xticks(x, [str(r["case_id"]) for r in ok], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("lesions")
    ax.legend(fontsize=8)
    path = folder / "detection.png"
    with _atomic.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return path


def cohort_metrics(
    rows: Sequence[dict[str, Any]], out_dir: str | Path, labels: dict[str, dict[str, str]] | None = None
) -> dict[str, Any]:
    """Compute and write ``metrics.json`` (+ ``metrics/*.png``); {} when nothing carries truth."""
    out = Path(out_dir)
    metrics: dict[str, Any] = {"cases": len(rows), "failed": sum(r.get("status") == "failed" for r in rows)}
    metrics.update(detection_metrics(rows))
    table = _target_table(rows, labels)
    plots: list[str] = []
    if table or "truth_lesions" in metrics:
        folder = out / "metrics"
        det = _detection_plot(rows, folder)
        plots += [str(det.relative_to(out))] if det else []
        metrics["targets"] = {}
        for target, t in table.items():
            metrics["targets"][target] = target_metrics(target, t)
            plots += [str(p.relative_to(out)) for p in _plots(target, t, folder)]
    metrics["plots"] = plots
    _atomic.write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
