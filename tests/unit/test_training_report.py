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


def test_a_fine_tuned_package_names_its_start_and_what_it_still_misses(tmp_path: Path) -> None:
    import shutil

    import yaml

    pkg = tmp_path / "tuned"
    shutil.copytree(SHIPPED["demo-lesion-seg"].path, pkg)
    doc = yaml.safe_load((pkg / "card.yaml").read_text())
    doc["training"].update(
        init="demo-lesion-seg 0.1.0 (weights sha256 " + "ab" * 32 + ") from /somewhere",
        lesion_sampling="missed", training_lesions=410, missed_training_lesions=[48, 35, 28],
    )  # fmt: skip
    (pkg / "card.yaml").write_text(yaml.safe_dump(doc))
    text = report.package_section(pkg)
    assert f"- fine-tuned from: demo-lesion-seg 0.1.0 (weights sha256 {'ab' * 32}) from /somewhere" in text
    assert (
        "- training lesions missed (start, half-way, end): 48, 35, 28 of 410 (lesion sampling: missed)"
        in text
    )
    assert "- lineage (each stage fine-tuned from the one before):\n  - 1. from scratch" in text
    assert "- selection: chosen over" in text
    for key in ("init", "missed_training_lesions", "lineage", "selection"):
        doc["training"].pop(key)
    (pkg / "card.yaml").write_text(yaml.safe_dump(doc))
    plain = report.package_section(pkg)
    assert "fine-tuned from" not in plain and "training lesions missed" not in plain
    assert "- lineage" not in plain and "- selection" not in plain


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
