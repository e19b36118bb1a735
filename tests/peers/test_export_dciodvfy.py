"""DICOM SEG and SR written by the export pass dciodvfy (dicom3tools) with no errors.

dciodvfy is the reference validator of DICOM IODs (David Clunie's dicom3tools); warnings are
allowed (our private "99BREASTMRI" codes are legal but unknown to it), errors are not.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from napari_breastmri import progress
from napari_breastmri.io import export
from tests.unit.test_export_formats import dicom_source, make_findings, make_study

pytestmark = pytest.mark.peers

DCIODVFY = shutil.which("dciodvfy")


def dciodvfy_errors(path: Path) -> list[str]:
    if DCIODVFY is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    done = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    lines = (done.stdout + done.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


@pytest.mark.parametrize("layout", ["series-per-phase", "enhanced", None])
def test_seg_and_sr_pass_dciodvfy(tmp_path: Path, layout: str | None) -> None:
    study = make_study() if layout is None else dicom_source(tmp_path, layout)
    findings = make_findings(study)
    files = progress.run(export.export_findings(study, findings, tmp_path / "out", ["seg", "sr"]))
    seg, sr = files["seg"][-1], files["sr"][-1]
    assert (seg.name, sr.name) == ("seg.dcm", "sr.dcm")
    assert dciodvfy_errors(seg) == []
    assert dciodvfy_errors(sr) == []


def test_sr_without_seg_passes_dciodvfy(tmp_path: Path) -> None:
    """Box-only lesions (no masks) go into the SR as per-slice image regions."""
    study = dicom_source(tmp_path, "single-series")
    findings = make_findings(study)
    findings.label_mask = None
    (sr,) = export.export_sr(study, findings, tmp_path / "out")
    assert dciodvfy_errors(sr) == []


def test_dciodvfy_does_catch_a_broken_seg(tmp_path: Path) -> None:
    """The check above is only worth something if the validator flags a damaged SEG."""
    import pydicom

    study = make_study()
    (*_, seg_path) = export.export_seg(study, make_findings(study), tmp_path)
    ds = pydicom.dcmread(seg_path)
    del ds.SegmentSequence
    broken = tmp_path / "broken.dcm"
    ds.save_as(broken)
    assert dciodvfy_errors(broken)
