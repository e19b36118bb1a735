"""``breastmri analyze`` then ``breastmri export FOLDER`` with no --study: the study is found again.

What an annotator does: analyse, then ask for the DICOM SEG and SR of the results folder. The
export reloads the study from what findings.json records (or, for folders written before that
record existed, the phantom truth.json beside it); the SEG and SR must match the findings and
pass dciodvfy when it is installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from napari_breastmri.cli import main
from napari_breastmri.io import export
from napari_breastmri.io.findings_json import read_findings_json
from napari_breastmri.io.nifti import load_volume
from tests.unit.test_models_helpers import threshold_package


def dciodvfy_errors(path: Path) -> list[str]:
    """Error lines of dciodvfy (warnings allowed: our private codes are unknown to it)."""
    tool = shutil.which("dciodvfy")
    assert tool is not None
    done = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture
def seg_package(tmp_path: Path) -> str:
    pkg = threshold_package(
        tmp_path / "pk", spacing_mm=[1.5, 1.2, 1.2], orientation="axial", patch_size=[16, 32, 32]
    )
    return str(pkg.path)


def check_seg_and_sr(out: Path) -> None:
    """seg.dcm holds the analysed label mask on the study grid; sr.dcm references it; both valid."""
    findings = read_findings_json(out / "findings.json")
    mask, _ = load_volume(out / "lesions.nii.gz")
    labels, names = export.read_seg(out / "seg.dcm", findings.shape, findings.affine)
    kept = [les for les in export.exported_lesions(findings) if les.label]
    assert len(names) == len(kept) > 0
    np.testing.assert_array_equal(labels > 0, np.isin(mask, [les.label for les in kept]))
    seg, sr = pydicom.dcmread(out / "seg.dcm"), pydicom.dcmread(out / "sr.dcm")
    assert seg.StudyInstanceUID == sr.StudyInstanceUID
    if findings.study_uid:
        assert seg.StudyInstanceUID == findings.study_uid
    referenced = {
        str(s.SeriesInstanceUID)
        for s in sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    }
    assert str(seg.SeriesInstanceUID) in referenced
    if shutil.which("dciodvfy"):
        assert dciodvfy_errors(out / "seg.dcm") == []
        assert dciodvfy_errors(out / "sr.dcm") == []


@pytest.mark.slow
def test_analyze_demo_then_export_seg_and_sr_without_study(
    tmp_path: Path, seg_package: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["analyze", "--demo", "--out", str(out), "--models", seg_package, "--no-explain"]) == 0
    assert json.loads((out / "findings.json").read_text())["schema_version"] == "1.1"
    capsys.readouterr()
    rc = main(["export", str(out), "--format", "seg", "--format", "sr"])  # no --study, no --out
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "phantom:5" in captured.err  # it says which study it reloaded
    check_seg_and_sr(out)
    # the phantom has no DICOM of its own: the SEG/SR reference the copy written beside them
    assert any((out / "source_dicom").rglob("*.dcm"))


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "before-the-record"])
def test_analyze_case_folder_then_export_without_study(
    tmp_path: Path,
    seg_package: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    recorded: bool,
) -> None:
    """A phantom case folder on disk: with the record, the export references the case's own DICOM;
    without it (an older analyze), the truth.json beside the findings regenerates the phantom."""
    from napari_breastmri.inference import pipeline
    from napari_breastmri.io.findings_json import study_source_record
    from napari_breastmri.phantom import generate_case, write_case

    real = pipeline.analyze

    def analyze(study, *args, **kwargs):  # the pipeline with or without filling study_source
        findings = yield from real(study, *args, **kwargs)
        findings.study_source = study_source_record(study) if recorded else {}
        return findings

    monkeypatch.setattr(pipeline, "analyze", analyze)
    case_dir = write_case(generate_case(6, shape=(16, 48, 48)), tmp_path / "cases")
    out = tmp_path / "results"
    assert main(["analyze", str(case_dir), "--out", str(out), "--models", seg_package, "--no-explain"]) == 0
    assert bool(read_findings_json(out / "findings.json").study_source) == recorded
    capsys.readouterr()
    exported = tmp_path / "exported"
    rc = main(
        ["export", str(out), "--format", "seg", "--format", "sr", "--format", "json", "--out", str(exported)]
    )
    assert rc == 0, capsys.readouterr().err
    shutil.copy(out / "lesions.nii.gz", exported / "lesions.nii.gz")
    check_seg_and_sr(exported)
    # recorded: the case's own DICOM is referenced; before: the regenerated phantom is written beside
    assert (exported / "source_dicom").exists() != recorded
    # the exported findings.json records the study the export used, so it can be exported again
    again = read_findings_json(exported / "findings.json").study_source
    assert again["kind"] == ("case-folder" if recorded else "phantom")


def test_analyze_no_source_leaves_out_paths_and_uids(
    tmp_path: Path, seg_package: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--no-source: findings.json names neither the folder (here the patient's name) nor the UIDs;
    the export then says it needs --study, and with it the SEG and SR are written and valid."""
    from napari_breastmri.io.dicom_write import write_study_dicom
    from tests.unit.test_export_formats import make_study

    case_dir = tmp_path / "DOE^JANE PID-4711"
    write_study_dicom(make_study(), case_dir, layout="series-per-phase", uid_root_seed="no-source")
    from napari_breastmri.io import load_study

    study = load_study(case_dir)
    out = tmp_path / "shared"
    args = ["analyze", str(case_dir), "--out", str(out), "--models", seg_package, "--no-explain"]
    assert main([*args, "--no-source"]) == 0
    text = (out / "findings.json").read_text()
    for secret in ("DOE^JANE", "PID-4711", study.study_uid, *study.series_uids):
        assert secret not in text, secret
    record = read_findings_json(out / "findings.json").study_source
    assert record["kind"] == "withheld" and len(record["data_sums"]) == study.n_phases
    capsys.readouterr()
    assert main(["export", str(out), "--format", "seg"]) != 0
    err = capsys.readouterr().err
    assert "without its study's source" in err and "--study" in err
    exported = tmp_path / "exported"
    rc = main(
        [
            "export",
            str(out),
            "--study",
            str(case_dir),
            "--format",
            "seg",
            "--format",
            "sr",
            "--out",
            str(exported),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    shutil.copy(out / "findings.json", exported / "findings.json")
    shutil.copy(out / "lesions.nii.gz", exported / "lesions.nii.gz")
    check_seg_and_sr(exported)
