"""The numbers the docs quote come from the cards (report) and from analyze (end_to_end)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from napari_breastmri.models import registry
from napari_breastmri.training import end_to_end, report

SHIPPED = {i.name: i for i in registry.shipped()}
pytestmark = pytest.mark.skipif("demo-subtype" not in SHIPPED, reason="no shipped demo-subtype package")


def test_package_section_names_the_region_and_judges_each_target() -> None:
    text = report.package_section(Path(SHIPPED["demo-subtype"].path))
    assert "region [48.0, 72.0, 72.0] mm around the index_lesion" in text
    assert "auc_macro" in text and ("target >= 0.85: met" in text or "MISSED" in text)
    assert "trained with: `breastmri train --task subtype" in text


def test_end_to_end_scores_predictions_against_the_truth(tmp_path: Path) -> None:
    """Rows as analyze left them: a perfect subtype model gets AUC 1; cases it never ran on
    (no lesion found) are counted as labelled but not predicted."""
    label = "demo-subtype@" + SHIPPED["demo-subtype"].version
    classes = ["luminal_a", "luminal_b", "her2_enriched", "triple_negative"]
    rows = []
    for k, truth in enumerate(classes * 2):
        probs = {c: (0.85 if c == truth else 0.05) for c in classes}
        probs[truth] += 0.0001 * k  # rounded means need not sum to exactly 1
        rows.append({"seed": k, "labels": {"subtype": truth}, "predictions": {label: probs}})
    rows.append({"seed": 99, "labels": {"subtype": "luminal_a"}, "predictions": {}})
    saved = tmp_path / "rows.json"
    saved.write_text(json.dumps({"rows": rows}))
    args = argparse.Namespace(cases=0, first=0, threads=1, out=None, rows=str(saved))
    entry = end_to_end.evaluate(args)["summary"]["models"][label]
    assert entry["labelled_cases"] == 9 and entry["predicted"] == 8
    assert entry["auc"] == 1.0 and entry["accuracy"] == 1.0
    assert entry["ece"] == pytest.approx(0.15, abs=0.01)  # confident at 0.85, right every time
