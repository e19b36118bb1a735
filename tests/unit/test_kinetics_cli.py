"""`breastmri kinetics` writes NIfTI maps that read back on the study grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_breastmri import kinetics as k
from napari_breastmri.cli import main
from napari_breastmri.kinetics.synthetic import synthetic_study

nifti = pytest.importorskip("napari_breastmri.io.nifti")


def test_cli_writes_maps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study, truth = synthetic_study((8, 40, 40))
    case = tmp_path / "case"
    nifti.write_study_nifti(study, case, "case")
    out = tmp_path / "maps"
    zz, yy, xx = np.nonzero(truth.label_mask == 3)
    box = [zz.min(), yy.min(), xx.min(), zz.max() + 1, yy.max() + 1, xx.max() + 1]
    rc = main(["kinetics", str(case), "--out", str(out), "--box", *map(str, box)])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((out / "kinetics.json").read_text())
    assert summary["phases"] == {"pre": 0, "early": 1, "late": 5}
    assert summary["ftv"]["volume_ml"] > 0
    ser, affine = nifti.load_volume(out / "ser.nii.gz")
    np.testing.assert_allclose(affine, study.affine, atol=1e-5)
    np.testing.assert_allclose(ser, k.enhancement_maps(study)["ser"], rtol=1e-5, atol=1e-5)
    types, _ = nifti.load_volume(out / "curve_types.nii.gz")
    assert np.mean(types[truth.label_mask == 3] == 3) > 0.95
    assert (out / "sub5.nii.gz").exists() and (out / "ftv_ser_bins.nii.gz").exists()


def test_cli_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study, _ = synthetic_study((4, 16, 16))
    one = study.__class__(
        data=study.data[:1], affine=study.affine, times=study.times[:1], phase_labels=["pre"]
    )
    nifti.save_volume(one.data[0], one.affine, tmp_path / "single.nii.gz")
    rc = main(["kinetics", str(tmp_path / "single.nii.gz"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip().splitlines() == [err.strip()] and err.startswith("breastmri kinetics: error:")
