"""Peer test: our DICOM loader against dcm2niix on the same files.

dcm2niix is the field's reference DICOM-to-NIfTI converter. On the same files we must get the
same voxel values at the same world positions (after converting its NIfTI RAS + (i, j, k) to our
LPS + (z, y, x) through geometry.from_nifti), to 1e-3 mm. Where dcm2niix is wrong and we are
right (documented in docs/data-formats.md), the test checks that we are right against the truth.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from napari_breastmri.geometry import from_nifti, voxel_to_world, world_to_voxel
from napari_breastmri.io import load_study
from napari_breastmri.io.dicom_write import write_study_dicom
from napari_breastmri.types import Study
from tests.unit.test_io_dicom import assert_same_world, flatten_and_shuffle, mangle
from tests.unit.test_io_write import make_study

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="dcm2niix is not installed"),
]


def dcm2niix(folder: Path, out: Path) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """Run dcm2niix; return (t, z, y, x) data, LPS affine and BIDS sidecar per output file."""
    import nibabel as nib

    out.mkdir(parents=True, exist_ok=True)
    cmd = ["dcm2niix", "-z", "n", "-b", "y", "-ba", "n", "-f", "%s_%d", "-o", str(out), str(folder)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    results = []
    for path in sorted(out.glob("*.nii")):
        img = nib.load(path)
        vol, affine = from_nifti(img.get_fdata(dtype=np.float32), img.affine)
        results.append(
            (vol if vol.ndim == 4 else vol[None], affine, json.loads(path.with_suffix(".json").read_text()))
        )
    return results


def compare(ours: Study, theirs: list[tuple[np.ndarray, np.ndarray, dict]]) -> tuple[float, float]:
    """(max world distance in mm, max value difference) between dcm2niix voxels and ours."""
    geo, val = 0.0, 0.0
    phase = 0
    for vol, affine, side in theirs:
        idx = np.indices(vol.shape[1:]).reshape(3, -1).T
        world = voxel_to_world(affine, idx)
        ours_idx = np.round(world_to_voxel(ours.affine, world)).astype(int)
        if (ours_idx < 0).any() or (ours_idx >= np.array(ours.shape)).any():
            return float("inf"), float("inf")
        geo = max(geo, float(np.abs(voxel_to_world(ours.affine, ours_idx) - world).max()))
        if vol.shape[0] == 1 and ours.n_phases > 1:  # one series per phase: match by description
            phases = [ours.meta["series_descriptions"].index(side["SeriesDescription"])]
        else:
            phases = list(range(phase, phase + vol.shape[0]))
        ref = ours.data[phases][:, ours_idx[:, 0], ours_idx[:, 1], ours_idx[:, 2]]
        val = max(val, float(np.abs(vol.reshape(vol.shape[0], -1) - ref).max()))
    return geo, val


@pytest.mark.parametrize("orientation", ["axial", "sagittal", "oblique"])
@pytest.mark.parametrize("layout", ["series-per-phase", "single-series", "enhanced"])
def test_same_values_and_world_geometry_as_dcm2niix(tmp_path: Path, layout: str, orientation: str) -> None:
    truth = make_study(orientation=orientation)
    write_study_dicom(truth, tmp_path / "dcm", layout, uid_root_seed=50)
    ours = load_study(tmp_path / "dcm")
    theirs = dcm2niix(tmp_path / "dcm", tmp_path / "nii")
    assert sum(v.shape[0] for v, _, _ in theirs) == truth.n_phases
    geo, val = compare(ours, theirs)
    assert geo < 1e-3, f"world positions differ by {geo} mm"
    assert val < 1e-3 * float(np.abs(truth.data).max())


def test_vendor_variants_agree_with_dcm2niix(tmp_path: Path) -> None:
    """GE-style TriggerTime-only phases, and Philips private (floating-point) scaling."""
    truth = make_study(integer=True)
    paths = write_study_dicom(truth, tmp_path / "ge", "single-series", uid_root_seed=51, trigger_time=True)

    def only_trigger(ds, path):
        del ds.TemporalPositionIdentifier, ds.NumberOfTemporalPositions, ds.AcquisitionNumber
        ds.AcquisitionTime = ds.ContentTime = "090000"

    mangle(paths, only_trigger)
    geo, val = compare(load_study(tmp_path / "ge"), dcm2niix(tmp_path / "ge", tmp_path / "ge_nii"))
    assert geo < 1e-3 and val < 1e-2

    paths = write_study_dicom(truth, tmp_path / "philips", "series-per-phase", uid_root_seed=52)

    def philips(ds, path):
        ds.Manufacturer = "Philips Medical Systems"
        ds.RescaleSlope, ds.RescaleIntercept = "2", "0"
        block = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
        block.add_new(0x0E, "FL", 4.0)  # ScaleSlope
        block.add_new(0x0D, "FL", 0.0)

    mangle(paths, philips)
    ours = load_study(tmp_path / "philips")
    assert ours.meta["scaling"] == "philips-fp"
    geo, val = compare(ours, dcm2niix(tmp_path / "philips", tmp_path / "philips_nii"))
    assert geo < 1e-3 and val < 1e-3


def test_shuffled_instance_numbers_where_dcm2niix_differs(tmp_path: Path) -> None:
    """One series holding every phase, files renamed and InstanceNumbers shuffled.

    dcm2niix (v1.0.20220720) orders the frames of a 4D series by InstanceNumber, so it pairs slices
    of different phases and reports twice the slice spacing; we sort by position and time and
    reproduce the truth. See docs/data-formats.md.
    """
    truth = make_study()
    paths = write_study_dicom(truth, tmp_path / "w", "single-series", uid_root_seed=53)
    flatten_and_shuffle(paths, tmp_path / "flat", seed=0)
    ours = load_study(tmp_path / "flat")
    assert_same_world(ours, truth)
    geo, _ = compare(ours, dcm2niix(tmp_path / "flat", tmp_path / "nii"))
    if geo < 1e-3:  # a later dcm2niix may sort these correctly; then it agrees with us
        return
    assert geo > 1.0  # the documented failure: whole slices off, not a rounding difference
