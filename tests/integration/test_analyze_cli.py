"""``breastmri analyze`` end to end: a case on disk in, findings.json + masks + truth comparison out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_breastmri.cli import main
from napari_breastmri.io.findings_json import read_findings_json
from napari_breastmri.io.nifti import load_volume, save_volume, write_study_nifti
from napari_breastmri.models.package import save_package
from tests.unit.test_models_helpers import MeanClassifier, blob_study, cls_card, threshold_package

SAGITTAL = np.array([[2.0, 0, 0, -20.0], [0, 0, 0.9, -30.0], [0, -0.9, 0, 40.0], [0, 0, 0, 1]])


@pytest.fixture
def packages(tmp_path: Path) -> list[str]:
    seg = threshold_package(
        tmp_path / "pk", spacing_mm=[1.5, 1.2, 1.2], orientation="axial", patch_size=[16, 32, 32]
    )
    cls = save_package(
        tmp_path / "pk" / "cls", cls_card("mc_dropout", 10), MeanClassifier(), fmt="torchscript"
    )
    return [str(seg.path), str(cls.path)]


def _write_case(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A sagittal two-phase study as per-phase NIfTI, with a phantom-style truth.json and mask."""
    boxes = ((5, 10, 24, 11, 22, 36), (12, 28, 6, 18, 40, 16))
    study, labels = blob_study(affine=SAGITTAL, shape=(20, 48, 44), boxes=boxes)
    case = tmp_path / "case"
    write_study_nifti(study, case, "c1")
    save_volume(labels.astype(np.int16), study.affine, case / "c1_mask.nii.gz")
    truth = {
        "case_id": "c1",
        "lesions": [{"id": i, "bbox": list(b)} for i, b in enumerate(boxes, start=1)],
        "labels": {"pcr": "pcr"},
        "files": {"mask": "c1_mask.nii.gz"},
    }
    (case / "truth.json").write_text(json.dumps(truth))
    return case, labels


def test_analyze_writes_findings_masks_and_the_truth_comparison(
    tmp_path: Path, packages: list[str], capsys
) -> None:
    case, labels = _write_case(tmp_path)
    out = tmp_path / "out"
    rc = main(
        ["analyze", str(case), "--out", str(out), "--models", *packages, "--no-explain", "--device", "cpu"]
    )
    assert rc == 0, capsys.readouterr().err
    findings = read_findings_json(out / "findings.json")
    assert len(findings.lesions) == 2 and "pcr" in findings.case_predictions
    assert np.allclose(findings.affine, SAGITTAL, atol=1e-4)
    assert [m.name for m in findings.models] == ["toy-seg", "toy-cls"] and findings.models[0].device == "cpu"
    mask, affine = load_volume(out / "lesions.nii.gz")
    assert np.allclose(affine, SAGITTAL, atol=1e-4) and mask.shape == labels.shape
    assert sorted(np.unique(mask)[1:].tolist()) == sorted(les.label for les in findings.lesions)
    cmp = json.loads((out / "comparison.json").read_text())
    assert cmp["found"] == cmp["n_truth"] == 2 and cmp["false_positives"] == 0
    assert cmp["dice_all"] > 0.85 and all(r["dice"] > 0.8 for r in cmp["lesions"])
    assert cmp["case_labels"]["pcr"]["truth"] == "pcr"
    assert json.loads((out / "truth.json").read_text())["case_id"] == "c1"
    text = capsys.readouterr().out
    assert "2/2 lesions found" in text and "toy-seg@1.0: segment on cpu" in text


def test_analyze_errors_are_one_line_with_exit_code_2(tmp_path: Path, packages: list[str], capsys) -> None:
    case, _ = _write_case(tmp_path)
    rc = main(["analyze", str(case), "--out", str(tmp_path / "o"), "--models", str(tmp_path / "nope")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    pair = cls_card("none", 1)
    pair["inputs"]["channels"] = ["pre", "pair:sub1"]
    pk = save_package(tmp_path / "pair", pair, MeanClassifier(), fmt="torchscript")
    rc = main(["analyze", str(case), "--out", str(tmp_path / "o"), "--models", str(pk.path)])
    err = capsys.readouterr().err
    assert rc == 2 and "follow-up" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_analyze_demo_phantom_case(tmp_path: Path, packages: list[str]) -> None:
    pytest.importorskip("napari_breastmri.phantom.case")
    out = tmp_path / "demo"
    rc = main(["analyze", "--demo", "--out", str(out), "--models", *packages, "--no-explain"])
    assert rc == 0
    findings = read_findings_json(out / "findings.json")
    truth = json.loads((out / "truth.json").read_text())
    cmp = json.loads((out / "comparison.json").read_text())
    assert findings.shape == (64, 256, 256) and cmp["n_truth"] == len(truth["lesions"])
    assert "Produced by demo models" in json.loads((out / "findings.json").read_text())["disclaimer"]
