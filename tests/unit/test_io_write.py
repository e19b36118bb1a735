"""The DICOM and NIfTI writers: valid files (dciodvfy), the right geometry, reproducible UIDs.

``make_study`` here is the small study every io test builds on (other test_io_* files import it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from napari_breastmri.geometry import voxel_to_world
from napari_breastmri.io import nifti
from napari_breastmri.io.dicom_write import write_study_dicom
from napari_breastmri.types import Acquisition, PatientInfo, Study


def rotation(axis: str, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def make_affine(
    orientation: str = "axial", spacing=(2.5, 0.8, 0.7), origin=(-100.0, -60.0, 20.0)
) -> np.ndarray:
    """A (z, y, x) -> LPS affine: columns are the slice, row and column steps in world space."""
    dz, dy, dx = spacing
    if orientation == "axial":  # x along L, y along P, slices along S (feet to head)
        cols = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=float).T
    elif orientation == "sagittal":  # x along P, y along -S (head to feet), slices along L
        cols = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float).T
    elif orientation == "coronal":
        cols = np.array([[0, 1, 0], [0, 0, -1], [1, 0, 0]], dtype=float).T
    elif orientation == "oblique":
        rot = rotation("z", 17.0) @ rotation("x", 11.0) @ rotation("y", -23.0)
        cols = rot @ np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=float).T
    else:
        raise ValueError(orientation)
    aff = np.eye(4)
    aff[:3, :3] = cols * np.array([dz, dy, dx])
    aff[:3, 3] = origin
    return aff


def make_study(
    shape=(6, 12, 10),
    times=(0.0, 75.0, 150.0, 225.0),
    orientation: str = "axial",
    seed: int = 0,
    integer: bool = False,
    spacing=(2.5, 0.8, 0.7),
) -> Study:
    """A small DCE study whose every voxel is distinct, so ordering mistakes cannot hide."""
    rng = np.random.default_rng(seed)
    n = len(times)
    base = rng.uniform(50, 400, size=shape).astype(np.float32)
    gain = np.linspace(1.0, 1.8, n, dtype=np.float32)[:, None, None, None]
    data = base[None] * gain + rng.uniform(0, 5, size=(n, *shape)).astype(np.float32)
    if integer:
        data = np.round(data)
    labels = ["pre"] + [f"post{i}" for i in range(1, n)]
    return Study(
        data=data,
        affine=make_affine(orientation, spacing),
        times=np.asarray(times, dtype=float),
        phase_labels=labels,
        acquisition=Acquisition(
            repetition_time_ms=4.5,
            echo_time_ms=2.1,
            flip_angle_deg=12.0,
            field_strength_t=3.0,
            manufacturer="ACME",
        ),
        phi=PatientInfo(name="Doe^Jane", patient_id="PID-7", birth_date="19700101", accession="ACC-1"),
        source="unit test",
    )


def _dciodvfy_errors(path: Path) -> list[str]:
    res = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.peers
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed")
@pytest.mark.parametrize("layout", ["series-per-phase", "single-series", "enhanced"])
@pytest.mark.parametrize("orientation", ["axial", "oblique"])
def test_written_dicom_passes_dciodvfy(tmp_path: Path, layout: str, orientation: str) -> None:
    study = make_study(shape=(3, 6, 5), times=(0, 60, 120), orientation=orientation)
    paths = write_study_dicom(study, tmp_path, layout, uid_root_seed=3)
    expected = 1 if layout == "enhanced" else 3 * 3
    assert len(paths) == expected
    for path in (paths[0], paths[-1]):
        assert _dciodvfy_errors(path) == [], path


def test_classic_geometry_times_and_scaling(tmp_path: Path) -> None:
    study = make_study(orientation="oblique")
    paths = write_study_dicom(study, tmp_path, "series-per-phase", uid_root_seed=1)
    assert len(paths) == 4 * 6
    ds = pydicom.dcmread(paths[6 + 4])  # phase 1 (post1), slice 4
    assert ds.SeriesDescription == "obl dyn 1st pass"
    assert ds.TemporalPositionIdentifier == 2 and ds.NumberOfTemporalPositions == 4
    assert ds.AcquisitionTime.startswith("090115")  # 09:00:00 + 75 s
    np.testing.assert_allclose(
        [float(v) for v in ds.ImagePositionPatient], voxel_to_world(study.affine, [4, 0, 0]), atol=1e-4
    )
    row, col = (
        np.array(ds.ImageOrientationPatient[:3], float),
        np.array(ds.ImageOrientationPatient[3:], float),
    )
    np.testing.assert_allclose(row * 0.7, study.affine[:3, 2], atol=1e-6)
    np.testing.assert_allclose(col * 0.8, study.affine[:3, 1], atol=1e-6)
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx([0.8, 0.7])
    assert float(ds.SpacingBetweenSlices) == pytest.approx(2.5)
    assert float(ds.RepetitionTime) == 4.5 and float(ds.FlipAngle) == 12.0
    assert float(ds.MagneticFieldStrength) == 3.0 and str(ds.PatientName) == "Doe^Jane"
    values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(values, study.data[1, 4], atol=float(ds.RescaleSlope))
    assert "TriggerTime" not in ds


def test_uids_are_deterministic_from_the_seed(tmp_path: Path) -> None:
    study = make_study(shape=(2, 4, 4), times=(0, 60))

    def uids(seed, sub):
        paths = write_study_dicom(study, tmp_path / sub, "series-per-phase", uid_root_seed=seed)
        return [
            (d.StudyInstanceUID, d.SeriesInstanceUID, d.SOPInstanceUID) for d in map(pydicom.dcmread, paths)
        ]

    a, b, c = uids(5, "a"), uids(5, "b"), uids(6, "c")
    assert a == b
    assert a[0][0] != c[0][0]
    assert len({u[2] for u in a}) == len(a)  # every instance unique
    assert len({u[1] for u in a}) == 2  # one series per phase


def test_enhanced_per_frame_groups(tmp_path: Path) -> None:
    study = make_study(shape=(3, 5, 4), times=(0, 90, 180), orientation="sagittal")
    (path,) = write_study_dicom(study, tmp_path, "enhanced", uid_root_seed=2)
    ds = pydicom.dcmread(path)
    assert ds.NumberOfFrames == 9
    frame = ds.PerFrameFunctionalGroupsSequence[3 * 1 + 2]  # phase 1, slice 2
    assert frame.FrameContentSequence[0].TemporalPositionIndex == 2
    np.testing.assert_allclose(
        [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient],
        voxel_to_world(study.affine, [2, 0, 0]),
        atol=1e-4,
    )
    pvt = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    values = ds.pixel_array[5] * float(pvt.RescaleSlope) + float(pvt.RescaleIntercept)
    np.testing.assert_allclose(values, study.data[1, 2], atol=float(pvt.RescaleSlope))


def test_integer_data_are_stored_exactly(tmp_path: Path) -> None:
    study = make_study(shape=(2, 4, 4), times=(0, 60), integer=True)
    paths = write_study_dicom(study, tmp_path, "single-series", uid_root_seed=0)
    ds = pydicom.dcmread(paths[-1])
    assert float(ds.RescaleSlope) == 1.0 and float(ds.RescaleIntercept) == 0.0
    np.testing.assert_array_equal(ds.pixel_array, study.data[1, 1])


@pytest.mark.parametrize("orientation", ["axial", "oblique"])
def test_nifti_volume_round_trip(tmp_path: Path, orientation: str) -> None:
    study = make_study(orientation=orientation)
    path = nifti.save_volume(study.data[0], study.affine, tmp_path / "v.nii.gz")
    vol, aff = nifti.load_volume(path)
    np.testing.assert_array_equal(vol, study.data[0])
    np.testing.assert_allclose(aff, study.affine, atol=1e-5)
    mask = (study.data[0] > 200).astype(np.int16)
    m, _ = nifti.load_volume(nifti.save_volume(mask, study.affine, tmp_path / "m.nii.gz"))
    assert m.dtype == np.int16 and np.array_equal(m, mask)


def test_nifti_ras_convention_matches_nibabel(tmp_path: Path) -> None:
    """Voxel (z, y, x) in our LPS must be voxel (x, y, z) in nibabel's RAS with x, y negated."""
    import nibabel as nib

    study = make_study(orientation="oblique")
    path = nifti.save_volume(study.data[0], study.affine, tmp_path / "v.nii.gz")
    img = nib.load(path)
    z, y, x = 4, 7, 3
    ras = img.affine @ [x, y, z, 1]
    lps = voxel_to_world(study.affine, [z, y, x])
    np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-4)
    assert img.get_fdata()[x, y, z] == pytest.approx(study.data[0, z, y, x])


def test_write_study_nifti_and_read_back(tmp_path: Path) -> None:
    study = make_study()
    paths = nifti.write_study_nifti(study, tmp_path, "case_042")
    assert [p.name for p in paths] == [f"case_042_{i:04d}.nii.gz" for i in range(4)]
    back = nifti.read(tmp_path)
    np.testing.assert_array_equal(back.data, study.data)
    np.testing.assert_allclose(back.affine, study.affine, atol=1e-5)
    np.testing.assert_allclose(back.times, study.times)
    assert back.phase_labels == study.phase_labels and back.warnings == []
    assert back.acquisition.flip_angle_deg == 12.0
    assert back.phi.is_empty()  # no PHI goes into NIfTI sidecars


def test_nifti_4d_without_sidecar_warns_about_times(tmp_path: Path) -> None:
    study = make_study()
    path = nifti.save_volume(study.data, study.affine, tmp_path / "dce.nii.gz")
    back = nifti.read(path)
    assert back.data.shape == study.data.shape
    np.testing.assert_allclose(back.data, study.data)
    assert back.phase_labels == ["pre", "post1", "post2", "post3"]
    assert any("no acquisition times" in w for w in back.warnings)


@pytest.mark.parametrize("layout", ["series-per-phase", "enhanced", "nifti"])
def test_demo_label_travels_with_synthetic_studies(tmp_path: Path, layout: str) -> None:
    from napari_breastmri.io import load_study
    from napari_breastmri.types import DEMO_LABEL

    study = make_study(shape=(3, 4, 4), times=(0, 60))
    study.meta["demo"] = True
    if layout == "nifti":
        nifti.write_study_nifti(study, tmp_path, "demo")
    else:
        write_study_dicom(study, tmp_path, layout, uid_root_seed=9)
    back = load_study(tmp_path)
    assert back.meta["demo"] is True and back.source.startswith(DEMO_LABEL)
    plain = make_study(shape=(3, 4, 4), times=(0, 60))
    write_study_dicom(plain, tmp_path / "plain", "series-per-phase", uid_root_seed=10)
    assert load_study(tmp_path / "plain").meta["demo"] is False
