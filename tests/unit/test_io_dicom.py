"""load_study on DICOM in the variants scanners and archives produce, checked in world space.

Every study is written in code (our writer plus hand-mangled copies); voxel values are compared at
the same LPS position, so a flipped, shifted or mis-ordered load cannot pass by matching shapes.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from napari_breastmri.errors import (
    CorruptFile,
    DuplicatePositions,
    InconsistentGeometry,
    MissingGeometry,
    MissingSlices,
    MixedStudies,
    UnequalSpacing,
    UnsupportedInput,
)
from napari_breastmri.geometry import voxel_to_world, world_to_voxel
from napari_breastmri.io import load_study
from napari_breastmri.io.dicom_write import write_study_dicom
from napari_breastmri.types import Study
from tests.unit.test_io_write import make_affine, make_study


def assert_same_world(loaded: Study, truth: Study, atol: float | None = None) -> None:
    """Every loaded voxel holds the truth's value at the same world (LPS) position."""
    assert loaded.n_phases == truth.n_phases
    idx = np.indices(loaded.shape).reshape(3, -1).T
    t_idx = world_to_voxel(truth.affine, voxel_to_world(loaded.affine, idx))
    np.testing.assert_allclose(t_idx, np.round(t_idx), atol=1e-3)
    t_idx = np.round(t_idx).astype(int)
    assert sorted(map(tuple, t_idx)) == sorted(map(tuple, np.indices(truth.shape).reshape(3, -1).T))
    expected = truth.data[:, t_idx[:, 0], t_idx[:, 1], t_idx[:, 2]]
    tol = atol if atol is not None else (float(truth.data.max() - truth.data.min()) / 65535 + 1e-4)
    np.testing.assert_allclose(loaded.data.reshape(loaded.n_phases, -1), expected, atol=tol)


def mangle(paths: list[Path], fn) -> None:
    for path in paths:
        ds = pydicom.dcmread(path)
        if fn(ds, path) is not False:
            ds.save_as(path)


def flatten_and_shuffle(paths: list[Path], folder: Path, seed: int = 0) -> list[Path]:
    """All files into one folder under random names, with shuffled InstanceNumbers."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    numbers = list(range(1, len(paths) + 1))
    rng.shuffle(numbers)
    out = []
    for path, number in zip(paths, numbers, strict=True):
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = number
        target = folder / f"{rng.getrandbits(40):x}"
        ds.save_as(target)
        out.append(target)
    return out


# --------------------------------------------------------------------------------------------
# the variants


@pytest.mark.parametrize("orientation", ["axial", "sagittal", "oblique"])
@pytest.mark.parametrize("layout", ["series-per-phase", "single-series", "enhanced"])
def test_layouts_and_orientations_in_world_space(tmp_path: Path, layout: str, orientation: str) -> None:
    truth = make_study(orientation=orientation)
    write_study_dicom(truth, tmp_path, layout, uid_root_seed=4)
    study = load_study(tmp_path)
    assert_same_world(study, truth)
    np.testing.assert_allclose(study.times, truth.times, atol=1e-3)
    assert study.phase_labels == ["pre", "post1", "post2", "post3"]
    assert study.meta["dicom_layout"] == layout
    assert study.meta["orientation"] == orientation
    assert study.warnings == [] and study.skipped_series == []
    assert study.protocol.kind == "conventional" and study.protocol.temporal_resolution_s == pytest.approx(
        75.0
    )


def test_shuffled_names_and_instance_numbers_do_not_decide_order(tmp_path: Path) -> None:
    truth = make_study(orientation="oblique")
    paths = write_study_dicom(truth, tmp_path / "w", "series-per-phase", uid_root_seed=1)
    # series numbers in reverse of time: the loader must still follow the acquisition times
    mangle(paths, lambda ds, p: setattr(ds, "SeriesNumber", 10 - ds.TemporalPositionIdentifier))
    flatten_and_shuffle(paths, tmp_path / "flat")
    study = load_study(tmp_path / "flat")
    assert_same_world(study, truth)
    np.testing.assert_allclose(study.times, truth.times, atol=1e-3)


def test_phase_order_follows_times_not_series_number_or_folder(tmp_path: Path) -> None:
    """Phases written with their times permuted against every other ordering hint."""
    truth = make_study(times=(0, 75, 150, 225))
    paths = write_study_dicom(truth, tmp_path, "series-per-phase", uid_root_seed=2)
    study = load_study(tmp_path)
    # swap the *times* of phases 1 and 2 in the files: the loaded order must swap too
    swap = {2: 3, 3: 2}

    def retime(ds, path):
        tp = int(ds.TemporalPositionIdentifier)
        if tp in swap:
            other = truth.times[swap[tp] - 1]
            ds.AcquisitionTime = ds.ContentTime = f"09{int(other // 60):02d}{other % 60:09.6f}"

    mangle(paths, retime)
    swapped = load_study(tmp_path)
    np.testing.assert_allclose(swapped.data[1], study.data[2])
    np.testing.assert_allclose(swapped.data[2], study.data[1])


def _single_series(tmp_path: Path, truth: Study, **kw) -> list[Path]:
    return write_study_dicom(truth, tmp_path, "single-series", uid_root_seed=3, **kw)


def test_single_series_split_by_trigger_time(tmp_path: Path) -> None:
    truth = make_study()
    paths = _single_series(tmp_path, truth, trigger_time=True)

    def only_trigger(ds, path):
        for kw in ("TemporalPositionIdentifier", "NumberOfTemporalPositions", "AcquisitionNumber"):
            delattr(ds, kw)
        ds.AcquisitionTime = ds.ContentTime = "090000"  # GE: one time for the whole series

    mangle(paths, only_trigger)
    study = load_study(tmp_path)
    assert study.meta["phase_split"] == ["TriggerTime"] and study.meta["time_source"] == "TriggerTime"
    assert_same_world(study, truth)
    np.testing.assert_allclose(study.times, truth.times, atol=1e-3)


def test_single_series_split_by_acquisition_number_ordered_by_time(tmp_path: Path) -> None:
    truth = make_study()
    paths = _single_series(tmp_path, truth)

    def reversed_numbers(ds, path):
        ds.AcquisitionNumber = 10 - int(ds.TemporalPositionIdentifier)  # numbers against time order
        del ds.TemporalPositionIdentifier

    mangle(paths, reversed_numbers)
    shuffled = flatten_and_shuffle(paths, tmp_path / "flat", seed=3)
    study = load_study(shuffled)
    assert study.meta["phase_split"] == ["AcquisitionNumber"]
    assert_same_world(study, truth)


def test_single_series_split_by_acquisition_time_only(tmp_path: Path) -> None:
    truth = make_study(orientation="sagittal")
    paths = _single_series(tmp_path, truth)

    def strip(ds, path):
        del ds.TemporalPositionIdentifier, ds.AcquisitionNumber, ds.NumberOfTemporalPositions

    mangle(paths, strip)
    study = load_study(tmp_path)
    assert study.meta["phase_split"] == ["AcquisitionTime"]
    assert_same_world(study, truth)
    assert study.warnings == []  # a missing NumberOfTemporalPositions is normal, not a warning


def test_single_series_split_by_repeated_positions(tmp_path: Path) -> None:
    """2D multi-slice: each slice has its own AcquisitionTime, nothing else tells phases apart."""
    truth = make_study()
    paths = _single_series(tmp_path, truth)

    def per_slice_times(ds, path):
        p = int(ds.TemporalPositionIdentifier) - 1
        z = (int(ds.InstanceNumber) - 1) % truth.shape[0]
        t = truth.times[p] + 0.5 * z
        ds.AcquisitionTime = ds.ContentTime = f"09{int(t // 60):02d}{t % 60:09.6f}"
        del ds.TemporalPositionIdentifier, ds.AcquisitionNumber, ds.NumberOfTemporalPositions

    mangle(paths, per_slice_times)
    flatten_and_shuffle(paths, tmp_path / "flat", seed=5)
    study = load_study(tmp_path / "flat")
    assert study.meta["phase_split"] == ["repeated positions"]
    assert_same_world(study, truth)
    np.testing.assert_allclose(study.times, truth.times, atol=1e-3)


def test_per_slice_rescale_and_philips_private_scaling(tmp_path: Path) -> None:
    truth = make_study(integer=True)
    paths = write_study_dicom(truth, tmp_path, "series-per-phase", uid_root_seed=6)

    def rescale(ds, path):  # stored = value / 2 on odd slices (slope 2), as some vendors do
        if int(ds.InstanceNumber) % 2:
            arr = ds.pixel_array.astype(np.float64)
            ds.PixelData = np.round((arr - 10) / 2).astype("<u2").tobytes()
            ds.RescaleSlope, ds.RescaleIntercept = "2", "10"

    mangle(paths, rescale)
    study = load_study(tmp_path)
    assert_same_world(study, truth, atol=1.01)  # halving rounds to the nearest 2

    def philips(ds, path):
        ds.Manufacturer = "Philips Medical Systems"  # the private scaling is read from Philips files only
        block = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
        block.add_new(0x0E, "FL", 4.0)  # ScaleSlope
        block.add_new(0x0D, "FL", 0.0)

    mangle(paths, philips)
    fp = load_study(tmp_path)
    assert fp.meta["scaling"] == "philips-fp"
    # FP = (SV * RS + RI) / (RS * SS): with SS = 4, displayed value / (4 * RS)
    ref = study.data.copy()
    for p in range(truth.n_phases):
        for z in range(truth.shape[0]):
            ds = pydicom.dcmread(paths[p * truth.shape[0] + z], stop_before_pixels=True)
            pos = np.array(ds.ImagePositionPatient, float)
            zi = int(round(world_to_voxel(study.affine, pos)[0]))
            ref[p, zi] /= 4.0 * float(ds.get("RescaleSlope", 1))
    np.testing.assert_allclose(fp.data, ref, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# a folder with other series


def _add_series(folder: Path, truth: Study, seed: int, change) -> list[Path]:
    paths = write_study_dicom(truth, folder, "series-per-phase", uid_root_seed=seed)
    study_uid = pydicom.dcmread(next((folder.parent / "dce").rglob("*.dcm"))).StudyInstanceUID
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = pydicom.uid.generate_uid(
            entropy_srcs=[str(seed), folder.name, ds.SeriesInstanceUID]
        )
        change(ds)
        ds.save_as(path)
    return paths


def test_other_series_are_skipped_with_reasons_and_can_be_chosen(tmp_path: Path) -> None:
    truth = make_study()
    write_study_dicom(truth, tmp_path / "dce", "series-per-phase", uid_root_seed=7)
    one = make_study(times=(0,), shape=(6, 12, 10), seed=9)

    def t2(ds):
        ds.EchoTime, ds.RepetitionTime, ds.SeriesDescription = "85", "4000", "ax tse"

    def dwi(ds):
        ds.SeriesDescription, ds.EchoTime = "ax dwi b800", "60"

    def sub(ds):
        ds.ImageType, ds.SeriesDescription = ["DERIVED", "SECONDARY", "SUB"], "ax dyn 1st pass SUB"

    for name, change in (("t2", t2), ("dwi", dwi), ("sub", sub)):
        _add_series(tmp_path / name, one, hash(name) % 1000, change)
    loc = make_study(times=(0,), shape=(3, 12, 10), orientation="sagittal", seed=2)

    def localiser(ds):
        ds.ImageType, ds.SeriesDescription = ["ORIGINAL", "PRIMARY", "LOCALIZER"], "3-plane loc"

    _add_series(tmp_path / "loc", loc, 11, localiser)
    (tmp_path / "README.txt").write_text("not dicom")
    study = load_study(tmp_path)
    assert_same_world(study, truth)
    reasons = {s.description: s.reason for s in study.skipped_series}
    assert set(reasons) == {"ax tse", "ax dwi b800", "ax dyn 1st pass SUB", "3-plane loc"}
    assert "T2" in reasons["ax tse"] and "diffusion" in reasons["ax dwi b800"]
    assert "derived" in reasons["ax dyn 1st pass SUB"] and "localiser" in reasons["3-plane loc"]
    assert any("non-DICOM" in w and "README.txt" in w for w in study.warnings)
    t2_uid = next(s.series_uid for s in study.skipped_series if s.description == "ax tse")
    chosen = load_study(tmp_path, series_uid=t2_uid)
    assert chosen.n_phases == 1 and chosen.series_uids == [t2_uid]
    assert_same_world(chosen, one)
    assert any(s.description == "ax dyn pre" for s in chosen.skipped_series)


def test_phi_acquisition_and_ultrafast_protocol(tmp_path: Path) -> None:
    times = (0.0, 40.0, 44.5, 49.0, 53.5, 58.0, 120.0, 180.0)
    truth = make_study(shape=(3, 6, 5), times=times)
    write_study_dicom(truth, tmp_path, "enhanced", uid_root_seed=8)
    study = load_study(tmp_path)
    assert study.protocol.kind == "ultrafast" and study.protocol.n_ultrafast == 5
    assert study.protocol.temporal_resolution_s == pytest.approx(4.5)
    assert study.phase_labels == ["pre", "uf1", "uf2", "uf3", "uf4", "uf5", "post1", "post2"]
    assert study.phi.name == "Doe^Jane" and study.phi.patient_id == "PID-7" and study.phi.accession == "ACC-1"
    acq = study.acquisition
    assert (acq.repetition_time_ms, acq.echo_time_ms, acq.flip_angle_deg, acq.field_strength_t) == (
        4.5,
        2.1,
        12.0,
        3.0,
    )
    assert study.study_uid and len(study.series_uids) == 1


def test_phases_on_different_grids_are_resampled_with_a_warning(tmp_path: Path) -> None:
    """A linear image is reproduced exactly by linear resampling, so values can be checked."""
    affine = make_affine("axial")
    shape = (5, 10, 9)
    idx = np.indices(shape).reshape(3, -1).T

    def linear(aff, scale):
        world = voxel_to_world(aff, idx)
        return (100 + scale * (world @ [0.5, 0.3, 0.7])).reshape(shape).astype(np.float32)

    base = make_study(shape=shape, times=(0, 60))
    base.data = np.stack([linear(affine, 1.0), linear(affine, 2.0)])
    shifted = affine.copy()
    shifted[:3, 3] += 0.5 * affine[:3, 2] + 0.25 * affine[:3, 1]  # half a column, a quarter row
    moved = make_study(shape=shape, times=(0, 60))
    moved.affine = shifted
    moved.data = np.stack([linear(shifted, 1.0), linear(shifted, 2.0)])
    pre = write_study_dicom(base, tmp_path / "a", "series-per-phase", uid_root_seed=12)
    post = write_study_dicom(moved, tmp_path / "b", "series-per-phase", uid_root_seed=12)
    for p in post:  # keep only the moved post phase, in the same study and frame of reference
        if "series_01" in str(p):
            p.unlink()
    for p in pre:
        if "series_02" in str(p):
            p.unlink()
    study = load_study(tmp_path)
    assert any("different grid" in w and "resampled" in w for w in study.warnings)
    np.testing.assert_allclose(study.affine, affine, atol=1e-4)
    interior = (slice(None), slice(1, None), slice(1, None))  # row/column 0 lie outside the moved grid
    np.testing.assert_allclose(study.data[1][interior], linear(affine, 2.0)[interior], atol=2e-3)


# --------------------------------------------------------------------------------------------
# bad inputs: each with its own error


@pytest.fixture
def series_dir(tmp_path: Path) -> tuple[Path, list[Path], Study]:
    truth = make_study(shape=(6, 8, 8), times=(0, 60))
    paths = write_study_dicom(truth, tmp_path / "s", "series-per-phase", uid_root_seed=20)
    return tmp_path / "s", paths, truth


def test_truncated_file_names_the_file(series_dir) -> None:
    folder, paths, _ = series_dir
    data = paths[3].read_bytes()
    paths[3].write_bytes(data[: len(data) - 40])
    with pytest.raises(CorruptFile, match=paths[3].name):
        load_study(folder)
    paths[3].write_bytes(data[:300])  # cut inside the header
    with pytest.raises(CorruptFile, match=paths[3].name):
        load_study(folder)


def test_non_dicom_files_are_ignored(series_dir) -> None:
    folder, paths, truth = series_dir
    (folder / "notes.txt").write_text("hello")
    (folder / "series_01_pre" / "thumb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (folder / ".DS_Store").write_bytes(bytes(10))
    study = load_study(folder)
    assert_same_world(study, truth)
    assert any("2 non-DICOM file(s) ignored" in w for w in study.warnings)


def test_nothing_dicom_is_unsupported(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(UnsupportedInput, match="No DICOM images"):
        load_study(tmp_path)


@pytest.mark.parametrize("tag", ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"])
def test_missing_geometry_tags(series_dir, tag: str) -> None:
    folder, paths, _ = series_dir
    mangle(paths[2:3], lambda ds, p: delattr(ds, tag))
    with pytest.raises(MissingGeometry, match=f"{paths[2].name} has no {tag}"):
        load_study(folder)


def test_two_studies_mixed(series_dir, tmp_path: Path) -> None:
    folder, _, _ = series_dir
    other = make_study(shape=(6, 8, 8), times=(0, 60), seed=3)
    write_study_dicom(other, folder / "other", "series-per-phase", uid_root_seed=99)
    with pytest.raises(MixedStudies, match="2 studies"):
        load_study(folder)
    # one series of one study can still be chosen explicitly
    uid = pydicom.dcmread(next((folder / "other").rglob("*.dcm"))).SeriesInstanceUID
    assert load_study(folder, series_uid=uid).n_phases == 2


def test_files_of_two_studies_in_one_series(series_dir) -> None:
    folder, paths, _ = series_dir
    mangle(paths[:2], lambda ds, p: setattr(ds, "StudyInstanceUID", "1.2.3.4"))
    with pytest.raises(MixedStudies):
        load_study(folder)


def test_unequal_spacing(series_dir) -> None:
    folder, paths, truth = series_dir
    n_z = truth.shape[0]

    def squeeze(ds, p):
        k = int(ds.InstanceNumber) - 1
        if k >= 3:
            pos = voxel_to_world(truth.affine, [k - 0.4, 0, 0])
            ds.ImagePositionPatient = [f"{v:.4f}" for v in pos]

    mangle(paths[:n_z], squeeze)
    mangle(paths[n_z:], squeeze)
    with pytest.raises(UnequalSpacing, match="unequal spacing"):
        load_study(folder)


def test_missing_slices(series_dir) -> None:
    folder, paths, _ = series_dir
    paths[2].unlink()
    with pytest.raises(MissingSlices, match="missing 1 slice"):
        load_study(folder)


def test_duplicate_positions(series_dir) -> None:
    folder, paths, truth = series_dir
    # an exact copy of a file (same SOPInstanceUID) is harmless: ignored with a warning
    shutil.copy(paths[1], paths[1].with_name("copy.dcm"))
    study = load_study(folder)
    assert_same_world(study, truth)
    assert any("duplicate file" in w for w in study.warnings)
    # a different image at an occupied position, nothing telling it apart: an error
    ds = pydicom.dcmread(paths[1])
    ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["dup"])
    ds.save_as(paths[1].with_name("copy.dcm"))
    with pytest.raises(DuplicatePositions):
        load_study(folder)


def test_mixed_orientation_within_a_phase(series_dir) -> None:
    folder, paths, _ = series_dir
    mangle(paths[4:5], lambda ds, p: setattr(ds, "ImageOrientationPatient", ["0", "1", "0", "0", "0", "-1"]))
    with pytest.raises(InconsistentGeometry, match="orientation"):
        load_study(folder)


def test_one_classic_file_stands_for_its_series(tmp_path: Path) -> None:
    truth = make_study()
    paths = write_study_dicom(truth, tmp_path, "series-per-phase", uid_root_seed=60)
    study = load_study(paths[7])  # a slice of the 1st-pass series: the whole dynamic is loaded
    assert_same_world(study, truth)
    (enhanced,) = write_study_dicom(truth, tmp_path / "enh", "enhanced", uid_root_seed=61)
    assert_same_world(load_study(enhanced), truth)


def test_writer_refuses_non_finite_values(tmp_path: Path) -> None:
    study = make_study(shape=(2, 3, 3), times=(0, 60))
    study.data[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_study_dicom(study, tmp_path, "series-per-phase")


@pytest.mark.parametrize("layout", ["series-per-phase", "enhanced"])
def test_compressed_pixel_data(tmp_path: Path, layout: str) -> None:
    """RLE Lossless goes through pydicom's decoder, each file decoded once."""
    from pydicom.uid import RLELossless

    truth = make_study(shape=(4, 8, 6), times=(0, 60, 120))
    paths = write_study_dicom(truth, tmp_path, layout, uid_root_seed=70)

    def compress(ds, path):
        ds.compress(RLELossless)

    mangle(paths, compress)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == RLELossless
    assert_same_world(load_study(tmp_path), truth)


def test_same_timing_series_without_a_dynamic_name_is_not_a_phase(tmp_path: Path) -> None:
    truth = make_study()
    write_study_dicom(truth, tmp_path / "dce", "series-per-phase", uid_root_seed=71)
    other = make_study(times=(0,), seed=4)
    _add_series(tmp_path / "t1", other, 72, lambda ds: setattr(ds, "SeriesDescription", "ax t1"))
    study = load_study(tmp_path)
    assert_same_world(study, truth)
    (skipped,) = study.skipped_series
    assert skipped.description == "ax t1" and "description" in skipped.reason


@pytest.mark.parametrize(
    ("description", "skipped"),
    [
        ("t1 fl3d tra spair dyn", False),  # Siemens dynamic with SPAIR fat suppression
        ("Ax VIBRANT MultiPhase", False),
        ("ax dyn 2nd pass", False),
        ("3 Plane Loc", True),
        ("ep2d_diff_b50_800", True),
        ("t2_tse_tra", True),
        ("t1_fl3d_dyn_SUB", True),
        ("MIP ax dyn", True),
    ],
)
def test_description_rules(description: str, skipped: bool) -> None:
    from types import SimpleNamespace

    from napari_breastmri.io.dicom import Series, classify

    series = Series("1.2", "1", description, 1, ("ORIGINAL", "PRIMARY"), "MR", False, header=None)
    series.frames = [SimpleNamespace(iop=np.array([1.0, 0, 0, 0, 1, 0]))] * 10  # one orientation
    assert (classify(series) is not None) == skipped


@pytest.mark.parametrize("implicit", [False, True])
def test_raw_header_shortcut_matches_pydicom(tmp_path: Path, implicit: bool) -> None:
    """The fast header walk gives exactly the frame records pydicom gives, sequences included."""
    from dataclasses import fields

    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    from napari_breastmri.io import dicom

    truth = make_study(shape=(3, 5, 4), times=(0, 60))
    paths = write_study_dicom(truth, tmp_path, "single-series", uid_root_seed=80, trigger_time=True)

    def add_sequences(ds, path):
        inner = Dataset()
        inner.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        inner.ReferencedSOPInstanceUID = "1.2.3"
        inner.PurposeOfReferenceCodeSequence = DicomSequence([Dataset()])  # nested, undefined length
        ds.ReferencedImageSequence = DicomSequence([inner, Dataset()])
        ds["ReferencedImageSequence"].is_undefined_length = True  # as many scanners write them
        inner["PurposeOfReferenceCodeSequence"].is_undefined_length = True
        for item in ds.ReferencedImageSequence:
            item.is_undefined_length_sequence_item = True
        if implicit:
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
            ds.save_as(path, implicit_vr=True, little_endian=True)
            return False
        return None

    mangle(paths, add_sequences)
    assert b"\xfe\xff\xdd\xe0" in paths[0].read_bytes()  # a sequence delimitation item was written
    series = dicom.Series("s", "", "", 1, (), "MR", False, header=None)
    for path in paths:
        raw = dicom._RawHeader.read(path)
        assert raw is not None and raw.plain_image()
        ds, head = dicom._read_header(path, pydicom)
        (a,) = dicom._frames_of(None, raw, path, raw.pixel_head, series)
        (b,) = dicom._frames_of(ds, dicom._Fast(ds), path, head, series)
        for f in fields(a):
            va, vb = getattr(a, f.name), getattr(b, f.name)
            assert np.array_equal(va, vb) if isinstance(va, np.ndarray) else va == vb, f.name
    study = load_study(tmp_path)
    assert_same_world(study, truth)
