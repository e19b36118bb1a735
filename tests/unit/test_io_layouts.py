"""Public layouts (Duke, MAMA-MIA), format detection, and the ``breastmri info`` command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from napari_breastmri.cli import main as breastmri
from napari_breastmri.errors import CorruptFile, UnsupportedInput
from napari_breastmri.io import detect_format, load_study, nifti
from napari_breastmri.io.dicom_write import write_study_dicom
from tests.unit.test_io_dicom import assert_same_world
from tests.unit.test_io_write import make_study

DUKE_NAMES = ["ax dyn pre", "ax dyn 1st pass", "ax dyn 2nd pass", "ax dyn 3rd pass"]


def make_duke_case(root: Path, truth, *, names=DUKE_NAMES) -> Path:
    """A case folder shaped like TCIA's Duke-Breast-Cancer-MRI download."""
    tmp = root / "_w"
    write_study_dicom(truth, tmp, "series-per-phase", uid_root_seed=31)
    study_dir = root / "Breast_MRI_007" / "01-01-1990-NA-MRI BREAST BILATERAL WWO-97538"
    for p, series in enumerate(sorted(tmp.iterdir())):
        target = study_dir / f"{p + 3}.000000-{names[p]}-{41234 + p}"
        target.mkdir(parents=True)
        for i, f in enumerate(sorted(series.iterdir())):
            ds = pydicom.dcmread(f)
            ds.SeriesDescription = names[p]
            ds.save_as(target / f"1-{i + 1:03d}.dcm")
    shutil.rmtree(tmp)
    return root / "Breast_MRI_007"


def test_duke_case_is_detected_and_loaded(tmp_path: Path) -> None:
    truth = make_study()
    case = make_duke_case(tmp_path, truth)
    assert detect_format(case) == "duke"
    study = load_study(case)
    assert_same_world(study, truth)
    assert study.meta["layout"] == "duke" and study.meta["case_id"] == "Breast_MRI_007"
    assert study.meta["series_descriptions"] == DUKE_NAMES
    assert study.warnings == []


def test_duke_names_that_disagree_with_times_are_reported(tmp_path: Path) -> None:
    truth = make_study()
    names = ["ax dyn pre", "ax dyn 2nd pass", "ax dyn 1st pass", "ax dyn 3rd pass"]
    case = make_duke_case(tmp_path, truth, names=names)
    study = load_study(case)
    assert_same_world(study, truth)  # the headers' times win
    assert any("disagree" in w for w in study.warnings)


def make_mama_mia(root: Path, truth, case: str = "DUKE_001", times: list[float] | None = None) -> Path:
    folder = root / "images" / case
    for p in range(truth.n_phases):
        nifti.save_volume(truth.data[p], truth.affine, folder / f"{case}_{p:04d}.nii.gz")
    mask = (truth.data[0] > 300).astype(np.uint8)
    nifti.save_volume(mask, truth.affine, root / "segmentations" / "expert" / f"{case}.nii.gz")
    info = (
        {"patient_id": case, "imaging_data": {"acquisition_times": times}} if times else {"patient_id": case}
    )
    (root / "patient_info_files").mkdir(parents=True)
    (root / "patient_info_files" / f"{case}.json").write_text(json.dumps(info))
    return folder


def test_mama_mia_case(tmp_path: Path) -> None:
    truth = make_study(orientation="oblique")
    folder = make_mama_mia(tmp_path, truth, times=[10.0, 85.0, 160.0, 235.0])
    assert detect_format(folder) == "mama-mia"
    study = load_study(folder)
    np.testing.assert_array_equal(study.data, truth.data)
    np.testing.assert_allclose(study.affine, truth.affine, atol=1e-5)
    np.testing.assert_allclose(study.times, truth.times)
    assert study.phase_labels == truth.phase_labels and study.warnings == []
    seg, seg_affine = nifti.load_volume(study.meta["segmentation_path"])
    assert seg.shape == truth.shape and np.array_equal(seg, truth.data[0] > 300)
    np.testing.assert_allclose(seg_affine, truth.affine, atol=1e-5)


def test_mama_mia_without_times_warns(tmp_path: Path) -> None:
    truth = make_study()
    folder = make_mama_mia(tmp_path, truth)
    study = load_study(folder)
    assert any("no acquisition times" in w for w in study.warnings)
    assert study.phase_labels == ["pre", "post1", "post2", "post3"]


def test_per_phase_nifti_list_and_grid_mismatch(tmp_path: Path) -> None:
    truth = make_study()
    files = nifti.write_study_nifti(truth, tmp_path, "c1")
    study = load_study(files)
    np.testing.assert_array_equal(study.data, truth.data)
    shifted = truth.affine.copy()
    shifted[:3, 3] += truth.affine[:3, 2] * 0.5
    nifti.save_volume(truth.data[2], shifted, files[2])
    moved = load_study(files)
    assert any("different grid" in w for w in moved.warnings)


def test_detect_and_bad_nifti(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedInput, match="does not exist"):
        load_study(tmp_path / "nope")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"\x1f\x8b" + bytes(20))
    with pytest.raises(CorruptFile, match="bad.nii.gz"):
        load_study(bad)


def test_info_cli_hides_phi_unless_asked(tmp_path: Path, capsys) -> None:
    truth = make_study()
    write_study_dicom(truth, tmp_path / "dce", "single-series", uid_root_seed=40)
    extra = make_study(times=(0,), seed=5)
    paths = write_study_dicom(extra, tmp_path / "t2", "series-per-phase", uid_root_seed=41)
    study_uid = pydicom.dcmread(next((tmp_path / "dce").rglob("*.dcm"))).StudyInstanceUID
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.StudyInstanceUID, ds.EchoTime, ds.SeriesDescription = study_uid, "90", "ax t2 tse"
        ds.save_as(p)
    assert breastmri(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Doe^Jane" not in out and "PID-7" not in out and "hidden" in out
    assert "Phases:       4  (pre, post1, post2, post3)" in out
    assert "'ax t2 tse'" in out and "T2-weighted" in out
    assert breastmri(["info", str(tmp_path), "--show-phi", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["patient"]["name"] == "Doe^Jane" and info["times_s"] == [0, 75, 150, 225]
    assert info["skipped_series"][0]["reason"].startswith("T2-weighted")


def test_info_cli_reports_errors_in_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "x.txt").write_text("x")
    assert breastmri(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No DICOM images" in err[0]


def test_can_read_says_no_without_raising(tmp_path: Path) -> None:
    from napari_breastmri.io import can_read

    truth = make_study(shape=(3, 4, 4), times=(0, 60))
    paths = write_study_dicom(truth, tmp_path / "dcm", "series-per-phase", uid_root_seed=90)
    nii = nifti.save_volume(truth.data[0], truth.affine, tmp_path / "v.nii.gz")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.txt").write_text("x")
    assert can_read(tmp_path / "dcm") and can_read(paths[0]) and can_read(nii) and can_read([nii])
    assert not can_read(tmp_path / "other") and not can_read(tmp_path / "other" / "a.txt")
    assert not can_read(tmp_path / "missing") and not can_read([])


def test_case_folder_with_dicom_and_nifti_beside_truth(tmp_path: Path) -> None:
    """Our own case folders (phantom, exports): dicom/ wins, masks and JSON are not phases."""
    truth = make_study()
    case = tmp_path / "case_001"
    write_study_dicom(truth, case / "dicom", "single-series", uid_root_seed=95)
    nifti.write_study_nifti(truth, case / "nifti", "case_001")
    nifti.save_volume(
        (truth.data[0] > 300).astype(np.int16), truth.affine, case / "nifti" / "case_001_mask.nii.gz"
    )
    (case / "truth.json").write_text("{}")
    assert detect_format(case) == "case-folder"
    study = load_study(case)
    assert_same_world(study, truth)
    assert study.warnings == [] and study.meta["case_id"] == "case_001"
    shutil.rmtree(case / "dicom")
    from_nifti = load_study(case)
    np.testing.assert_array_equal(from_nifti.data, truth.data)
    assert from_nifti.meta["layout"] == "case-folder" and from_nifti.n_phases == 4
