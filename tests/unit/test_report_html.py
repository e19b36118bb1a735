"""report.html: self-contained, key images on disk, demo label, PHI hidden unless asked for."""

from __future__ import annotations

import base64
import copy
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from napari_breastmri.report import write_report
from napari_breastmri.types import DEMO_LABEL, Heatmap, PatientInfo
from tests.unit.test_export_formats import make_findings, make_study

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECRETS = ["DOE^JANE", "PID-4711", "19700101", "ACC-99", "DOE_JANE"]


@pytest.fixture(scope="module")
def case():
    study = make_study()
    findings = make_findings(study)
    for label, pattern in [(1, [1.0, 2.2, 1.8]), (2, [1.0, 1.6, 2.0])]:  # washout, persistent
        region = findings.label_mask == label
        for p, factor in enumerate(pattern):
            study.data[p][region] *= factor
    heat = np.zeros(study.shape, np.float32)
    heat[3:6, 8:17, 8:18] = 0.9
    findings.heatmaps.append(
        Heatmap(heat, study.affine, "gradcam", "lesion", "dec.conv", "demo-lesion-seg@0.2")
    )
    study.phi = PatientInfo(name="DOE^JANE", patient_id="PID-4711", birth_date="19700101", accession="ACC-99")
    study.source = "DICOM /archive/DOE_JANE/MR"
    study.warnings.append("Series 7 in /archive/DOE_JANE/MR/ser7 skipped: not dynamic")
    findings.warnings.append("PID-4711: model fell back to CPU")
    return study, findings


@pytest.fixture(scope="module")
def written(case, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One report with the defaults (PHI hidden, demo model), shared by the checks below."""
    study, findings = case
    return write_report(study, findings, tmp_path_factory.mktemp("report"))


def _text(html: str) -> str:
    """The page without its embedded images (base64 can contain any letters by chance)."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)


def test_report_is_self_contained_with_key_images(written: Path) -> None:
    tmp_path = written.parent
    html = written.read_text(encoding="utf-8")
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    on_disk = sorted(p.name for p in (tmp_path / "key_images").glob("*.png"))
    # overview + per reported lesion (3; the rejected one is left out) a key image and a curve + 1 prediction
    assert on_disk == sorted(
        ["overview_mip.png", "prediction_subtype.png"]
        + [f"lesion_{i}.png" for i in (1, 2, 3)]
        + [f"curve_lesion_{i}.png" for i in (1, 2, 3)]
    )
    assert len(embedded) == len(on_disk)
    disk_bytes = {(tmp_path / "key_images" / n).read_bytes() for n in on_disk}
    assert {base64.b64decode(b) for b in embedded} == disk_bytes
    assert all(b.startswith(PNG_MAGIC) for b in disk_bytes)
    assert not re.search(r"(src|href)=['\"](?!data:)", html)  # nothing fetched from elsewhere
    text = _text(html)
    assert "Lesion 4" not in text and "Lesion 3" in text
    assert "washout" in text and "FTV in box" in text
    assert "Case-level predictions" in text and "luminal_a" in text


def test_demo_label_and_phi_hidden_by_default(written: Path) -> None:
    text = _text(written.read_text(encoding="utf-8"))
    assert DEMO_LABEL in text and "not a medical device" in text
    assert not [s for s in SECRETS if s in text]
    assert "Patient data hidden" in text
    # warnings still reach the reader, with the paths and IDs they quote hidden
    assert "Series 7 in (hidden)" in text and "skipped: not dynamic" in text
    assert "(hidden): model fell back to CPU" in text


def test_phi_shown_on_request_and_no_demo_label_without_demo(tmp_path: Path, case) -> None:
    study, findings = case
    findings = copy.copy(findings)
    findings.models = [dataclasses.replace(m, demo=False) for m in findings.models]
    text = _text(write_report(study, findings, tmp_path, show_phi=True).read_text(encoding="utf-8"))
    assert all(s in text for s in SECRETS)
    assert DEMO_LABEL not in text and "not a medical device" in text


def test_truth_comparison(tmp_path: Path, case) -> None:
    study, findings = case
    truth = {
        "lesions": [
            {
                "id": 1,
                "bbox": [3, 10, 10, 6, 15, 16],
                "type": "mass",
                "malignant": True,
                "curve_type": "washout",
            },
            {
                "id": 2,
                "bbox": [0, 0, 30, 2, 4, 34],
                "type": "mass",
                "malignant": False,
                "curve_type": "persistent",
            },
        ],
        "labels": {"subtype": "luminal_a"},
    }
    text = _text(write_report(study, findings, tmp_path, truth=truth).read_text(encoding="utf-8"))
    assert "Ground truth" in text
    assert text.count(">found<") == 1 and text.count(">MISSED<") == 1


def test_report_without_lesions_or_models(tmp_path: Path) -> None:
    from napari_breastmri.types import Findings

    study = make_study()
    empty = Findings(shape=study.shape, affine=study.affine)
    text = _text(write_report(study, empty, tmp_path).read_text(encoding="utf-8"))
    assert "No lesion reported" in text and "No model ran" in text
