"""dcm2niix (the field's DICOM-to-NIfTI reference) reads the phantom's DICOM onto the same anatomy."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from napari_breastmri.geometry import resample_to_grid
from napari_breastmri.io.nifti import load_volume
from napari_breastmri.phantom import generate_case, write_case
from napari_breastmri.phantom.case import reorient

pytestmark = pytest.mark.peers


@pytest.mark.parametrize("orientation", ["axial", "sagittal"])
def test_dcm2niix_geometry_and_pixels_match_the_study(tmp_path: Path, orientation: str) -> None:
    exe = shutil.which("dcm2niix")
    if exe is None:
        pytest.skip("dcm2niix is not installed")
    case = generate_case(5, shape=(12, 64, 64), spacing=(6.0, 3.2, 3.2))
    folder = write_case(case, tmp_path, orientation=orientation, nifti=False)
    study = reorient(case, orientation).study
    pre_series = sorted((folder / "dicom").iterdir())[0]
    out = subprocess.run(
        [exe, "-z", "y", "-f", "pre", "-o", str(tmp_path), str(pre_series)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    vol, affine = load_volume(tmp_path / "pre.nii.gz")
    # dcm2niix may flip or rotate the grid; in world space it must be the same voxels
    mapping = np.linalg.inv(affine) @ study.affine
    np.testing.assert_allclose(np.abs(mapping[:3, :3]).sum(axis=0), 1.0, atol=1e-4)  # a signed permutation
    resampled = resample_to_grid(vol, affine, study.affine, study.shape, order=0)
    inner = (slice(1, -1),) * 3  # edge voxels sit exactly on the grid border (float rounding)
    quantum = float(study.data.max() - study.data.min()) / 65535.0
    np.testing.assert_allclose(resampled[inner], study.data[0][inner], atol=quantum * 0.51 + 1e-3)
