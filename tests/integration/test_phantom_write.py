"""Phantom cases on disk: DICOM / NIfTI round trip through load_study, same bytes, cohort CSVs, CLI."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from napari_breastmri.cli import main as cli_main
from napari_breastmri.geometry import orientation_label
from napari_breastmri.io import load_study
from napari_breastmri.io.export import read_duke_csv
from napari_breastmri.io.nifti import load_volume
from napari_breastmri.phantom import generate_case, write_case, write_cohort
from napari_breastmri.phantom.case import reorient
from napari_breastmri.progress import run as run_progress

SMALL = {"shape": (12, 64, 64), "spacing": (6.0, 3.2, 3.2)}


@pytest.fixture(scope="module")
def case():
    return generate_case(5, longitudinal=True, **SMALL)


def _quantum(study) -> float:
    """The DICOM writer stores uint16 with one slope for the study: half a step is the error bound."""
    return float(study.data.max() - study.data.min()) / 65535.0


@pytest.mark.parametrize("layout", ["series-per-phase", "single-series", "enhanced"])
def test_dicom_round_trip_same_arrays_geometry_times(case, tmp_path: Path, layout: str) -> None:
    folder = write_case(case, tmp_path, dicom_layout=layout)
    assert folder == tmp_path / case.case_id
    loaded = load_study(folder / "dicom")
    s = case.study
    assert loaded.data.shape == s.data.shape
    np.testing.assert_allclose(loaded.data, s.data, atol=_quantum(s) * 0.51 + 1e-3)
    np.testing.assert_allclose(loaded.affine, s.affine, atol=1e-4)
    np.testing.assert_allclose(loaded.times, s.times, atol=0.01)
    assert loaded.phase_labels == s.phase_labels
    assert loaded.study_uid == s.study_uid
    assert loaded.acquisition.flip_angle_deg == pytest.approx(s.acquisition.flip_angle_deg)
    truth = json.loads((folder / "truth.json").read_text())
    assert truth["dicom_layout"] == layout and truth["lesions"][0]["bbox"] == case.truth["lesions"][0]["bbox"]
    # the follow-up exam is its own case folder beside it, and each folder is one study
    fu_folder = folder.parent / case.follow_up.case_id
    assert (folder / truth["follow_up"]["folder"]).resolve() == fu_folder.resolve()
    assert load_study(folder).study_uid == s.study_uid
    fu = load_study(fu_folder / "dicom")
    assert fu.study_uid == case.follow_up.study.study_uid != s.study_uid
    np.testing.assert_allclose(
        fu.data, case.follow_up.study.data, atol=_quantum(case.follow_up.study) * 0.51 + 1e-3
    )


def test_nifti_phases_mask_and_sidecar_round_trip(case, tmp_path: Path) -> None:
    folder = write_case(case, tmp_path, dicom=False)
    assert not (folder / "dicom").exists()
    loaded = load_study(folder / "nifti")
    np.testing.assert_array_equal(loaded.data, case.study.data)
    np.testing.assert_allclose(loaded.affine, case.study.affine, atol=1e-5)
    np.testing.assert_allclose(loaded.times, case.study.times)
    assert loaded.phase_labels == case.study.phase_labels
    mask, affine = load_volume(folder / "nifti" / f"{case.case_id}_mask.nii.gz")
    np.testing.assert_array_equal(mask, case.label_mask)
    np.testing.assert_allclose(affine, case.study.affine, atol=1e-5)
    assert (folder / "nifti" / f"{case.case_id}_0000.nii.gz").is_file()


def test_sagittal_write_loads_on_a_sagittal_grid_with_the_same_anatomy(case, tmp_path: Path) -> None:
    folder = write_case(case, tmp_path, orientation="sagittal")
    loaded = load_study(folder / "dicom")
    sag = reorient(case, "sagittal")
    assert orientation_label(loaded.affine) == "sagittal"
    np.testing.assert_allclose(loaded.affine, sag.study.affine, atol=1e-4)
    np.testing.assert_allclose(loaded.data, sag.study.data, atol=_quantum(case.study) * 0.51 + 1e-3)
    truth = json.loads((folder / "truth.json").read_text())
    z0, y0, x0, z1, y1, x1 = truth["lesions"][0]["bbox"]
    assert (sag.label_mask[z0:z1, y0:y1, x0:x1] == 1).sum() == (sag.label_mask == 1).sum() > 0
    assert truth["orientation"] == "sagittal"


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    kw = {"shape": (8, 48, 48), "spacing": (8.0, 4.2, 4.2), "dicom_layout": "enhanced"}
    a = run_progress(write_cohort(2, 11, tmp_path / "a", **kw))
    b = run_progress(write_cohort(2, 11, tmp_path / "b", **kw))
    assert [p.name for p in a] == [p.name for p in b]
    da, db = _tree_digest(tmp_path / "a"), _tree_digest(tmp_path / "b")
    assert da == db and len(da) > 10


def test_cohort_csvs_match_the_truth(tmp_path: Path) -> None:
    steps = []
    gen = write_cohort(3, 4, tmp_path, shape=(8, 48, 48), spacing=(8.0, 4.2, 4.2), dicom=False)
    folders = run_progress(gen, steps.append)
    assert steps[-1].fraction == 1.0 and all(0 <= s.fraction <= 1 for s in steps)
    assert len(folders) == 3
    boxes = read_duke_csv(tmp_path / "boxes.csv")
    expected = []
    for f in folders:
        truth = json.loads((f / "truth.json").read_text())
        expected += [les["bbox"] for les in truth["lesions"]]
    assert boxes == expected
    with open(tmp_path / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["Patient ID"] for r in rows] == [f.name for f in folders]
    for r, f in zip(rows, folders):
        labels = json.loads((f / "truth.json").read_text())["labels"]
        assert r["screening"] == labels["screening"] and r["subtype"] == (labels["subtype"] or "")


def test_cli_writes_a_cohort(tmp_path: Path, capsys) -> None:
    rc = cli_main(
        [
            "phantom",
            "--cases",
            "1",
            "--seed",
            "2",
            "--out",
            str(tmp_path),
            "--shape",
            "8",
            "48",
            "48",
            "--spacing",
            "8",
            "4.2",
            "4.2",
            "--protocol",
            "ultrafast",
            "--dicom-layout",
            "single-series",
        ]
    )
    assert rc == 0
    case_dir = tmp_path / "PH2_0000"
    loaded = load_study(case_dir / "dicom")
    assert loaded.protocol.kind == "ultrafast" and loaded.n_phases > 10
    assert (tmp_path / "boxes.csv").is_file() and (tmp_path / "labels.csv").is_file()
    assert "synthetic demo" in capsys.readouterr().out


@pytest.mark.peers
@pytest.mark.parametrize("layout", ["series-per-phase", "enhanced"])
def test_dciodvfy_reports_no_errors(case, tmp_path: Path, layout: str) -> None:
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    folder = write_case(case, tmp_path, dicom_layout=layout)
    files = sorted((folder / "dicom").rglob("*.dcm"))
    for f in (files[0], files[-1]):
        out = subprocess.run([exe, str(f)], capture_output=True, text=True, timeout=60)
        errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], f"{f.name}: {errors}"
