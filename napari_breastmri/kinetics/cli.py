"""``breastmri kinetics CASE --out DIR``: kinetic maps of one study as NIfTI, plus a JSON summary.

Why a CLI: the same maps the viewer shows, for scripts and cohorts, in a format every tool reads.
Writes pe, max_enhancement, ser, washin, washout, ttp, curve_types, sub1..subN and, with --box,
ftv_mask and ftv_ser_bins; kinetics.json records the phase choice and the FTV figures.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Generator
from pathlib import Path

import numpy as np

from .. import _atomic
from ..types import Progress, Study


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("case", help="a case: DICOM folder, 4D NIfTI, per-phase NIfTI files or a case folder")
    parser.add_argument("--out", required=True, type=Path, help="output folder for the NIfTI maps")
    parser.add_argument(
        "--box", type=int, nargs=6, metavar=("Z0", "Y0", "X0", "Z1", "Y1", "X1"), help="FTV region (voxels)"
    )
    parser.add_argument("--no-subtractions", action="store_true", help="do not write the subtraction volumes")


def _load(source: str) -> Study:
    try:
        from ..io import load_study  # type: ignore[attr-defined]
    except ImportError:  # the io package's front door not there yet: NIfTI only
        from ..io.nifti import read as load_study
    return load_study(source)


def write_maps(
    study: Study, out: Path, *, box: list[int] | None = None, subtractions: bool = True
) -> Generator[Progress, None, dict]:
    """Compute and write the maps; yields Progress, returns the summary written to kinetics.json."""
    from ..io.nifti import save_volume
    from . import curve_types, enhancement_maps, ftv, phase_indices
    from .maps import CURVE_NAMES, MAP_NAMES

    yield Progress("kinetics", 0.05, "enhancement maps")
    maps = enhancement_maps(study)
    types = curve_types(study, maps)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, name in enumerate(MAP_NAMES):
        written.append(save_volume(maps[name], study.affine, out / f"{name}.nii.gz").name)
        yield Progress("kinetics", 0.1 + 0.5 * (i + 1) / len(MAP_NAMES), f"wrote {name}")
    written.append(save_volume(types, study.affine, out / "curve_types.nii.gz").name)
    if subtractions:
        for i in range(1, study.n_phases):
            sub = study.data[i] - study.data[0]
            written.append(save_volume(sub, study.affine, out / f"sub{i}.nii.gz").name)
            yield Progress("kinetics", 0.6 + 0.3 * i / (study.n_phases - 1), f"wrote sub{i}")
    i_pre, i_early, i_late = phase_indices(study.times)
    summary: dict = {
        "source": study.source,
        "study_uid": study.study_uid,
        "times_s": [float(t) for t in study.times],
        "phases": {"pre": i_pre, "early": i_early, "late": i_late},
        "curve_type_voxels": {CURVE_NAMES[c]: int(np.sum(types == c)) for c in (1, 2, 3)},
        "masked_voxels": int((~maps["mask"]).sum()),
        "files": written,
    }
    if box is not None:
        res = ftv(study, box)
        save_volume(res.mask.astype(np.uint8), study.affine, out / "ftv_mask.nii.gz")
        save_volume(res.ser_bins, study.affine, out / "ftv_ser_bins.nii.gz")
        summary["ftv"] = {
            "box": list(box),
            "volume_ml": res.volume_ml,
            "n_voxels": res.n_voxels,
            "share": res.share,
            "ser_bin_volumes_ml": res.ser_bin_volumes_ml,
            "thresholds": res.thresholds,
        }
        summary["files"] += ["ftv_mask.nii.gz", "ftv_ser_bins.nii.gz"]
    _atomic.write_text(out / "kinetics.json", json.dumps(summary, indent=2))
    yield Progress("kinetics", 1.0, "done")
    return summary


def run(args: argparse.Namespace) -> int:
    from .. import progress
    from .maps import check_study

    study = _load(args.case)
    check_study(study)  # fail before the progress bar starts, so the error is one clean line
    summary = progress.run(
        write_maps(study, args.out, box=args.box, subtractions=not args.no_subtractions),
        progress.tqdm_printer("kinetics"),
    )
    print(f"wrote {len(summary['files'])} files to {args.out}")
    if "ftv" in summary:
        print(f"FTV {summary['ftv']['volume_ml']:.2f} ml")
    return 0
