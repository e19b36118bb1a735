"""Write phantom cases and cohorts: DICOM, MAMA-MIA style NIfTI, truth.json and cohort CSVs.

Why through the io package: what the phantom writes must load through ``load_study`` like a
scanner's files, so it is written by the same DICOM / NIfTI writers the exports use, and a bug in
either shows up in the phantom round-trip tests. Every case folder appears atomically; the same
seed gives the same bytes (UIDs derive from the case id and seed).

Case folder ``<out>/<case_id>/``::

    dicom/                      write_study_dicom output (layout as asked)
    nifti/<case>_0000.nii.gz    one file per phase (MAMA-MIA / nnU-Net channel naming)
    nifti/<case>_dce.json       times, labels, protocol, acquisition (io.nifti's sidecar)
    nifti/<case>_mask.nii.gz    lesion label mask (lesion i = value i)
    nifti/<case>_tissue.nii.gz  tissue classes (anatomy.TISSUE_NAMES, 7 = glandular)
    truth.json                  PhantomCase.truth

A longitudinal case's early-treatment exam is written beside it as its own case folder,
``<out>/<case_id>_fu/`` (the follow-up's case id), so that each folder holds exactly one study
and loads with ``load_study(folder)``; the baseline's ``truth["follow_up"]["folder"]`` names it.

Cohort folder: the case folders plus ``boxes.csv`` (Duke-Breast-Cancer-MRI Annotation_Boxes
columns: 1-based, inclusive row = y, column = x, slice = z on the study grid, i.e. Start = z0 + 1,
End = z1 for a 0-based end-exclusive box) and ``labels.csv`` (one row per case).
"""

from __future__ import annotations

import csv
import io as _io
import json
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from .. import _atomic
from ..io.export import DUKE_COLUMNS
from ..types import DEMO_LABEL, Progress
from .case import ORIENTATIONS, PhantomCase, generate_case, reorient
from .case import uid_root_seed as _root

DICOM_LAYOUTS = ("series-per-phase", "single-series", "enhanced")
#: the Duke Annotation_Boxes.csv columns (the exporter's convention), then the phantom's extras
BOX_COLUMNS = [
    *DUKE_COLUMNS,
    "Lesion ID",
    "Type",
    "Shape",
    "Malignant",
    "Curve Type",
    "Volume (ml)",
]
LABEL_COLUMNS = ["Patient ID", "subtype", "pcr", "lymph_node", "screening", "n_lesions", "protocol", "seed"]


def uid_root_seed(case: PhantomCase) -> str:
    """The seed the DICOM writer derives this case's UIDs from (Study.study_uid agrees with it)."""
    return _root(case.case_id, case.truth["seed"])


def write_case(
    case: PhantomCase,
    out_dir: str | Path,
    dicom_layout: str = "series-per-phase",
    orientation: str | None = None,
    *,
    dicom: bool = True,
    nifti: bool = True,
) -> Path:
    """Write ``case`` to ``out_dir/<case_id>/`` (its follow-up to ``<case_id>_fu/``); return the first.

    ``orientation`` re-slices the case first ("axial" or "sagittal"; None keeps the case's own);
    the truth follows onto the new grid.
    """
    if dicom_layout not in DICOM_LAYOUTS:
        raise ValueError(f"dicom_layout must be one of {DICOM_LAYOUTS}, got {dicom_layout!r}")
    if orientation is not None and orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {sorted(ORIENTATIONS)}, got {orientation!r}")
    target = Path(out_dir) / case.case_id
    if case.follow_up is not None:  # first, so a baseline folder never points at a missing one
        with _atomic.atomic_dir(Path(out_dir) / case.follow_up.case_id) as tmp:
            _write_exam(case.follow_up, tmp, dicom_layout, orientation, dicom, nifti)
    with _atomic.atomic_dir(target) as tmp:
        _write_exam(case, tmp, dicom_layout, orientation, dicom, nifti)
    return target


def _write_exam(case, folder: Path, layout, orientation, dicom: bool, nifti: bool) -> None:
    from ..io import nifti as nii
    from ..io.dicom_write import write_study_dicom

    if orientation is not None:
        case = reorient(case, orientation)
    folder.mkdir(parents=True, exist_ok=True)
    cid = case.case_id
    truth = dict(case.truth)
    files: dict[str, Any] = {}
    if dicom:
        paths = write_study_dicom(case.study, folder / "dicom", layout, uid_root_seed=uid_root_seed(case))
        files["dicom"] = "dicom"
        files["dicom_files"] = len(paths)
        truth["dicom_layout"] = layout
    if nifti:
        phases = nii.write_study_nifti(case.study, folder / "nifti", cid)
        nii.save_volume(
            case.label_mask.astype(np.int16), case.study.affine, folder / "nifti" / f"{cid}_mask.nii.gz"
        )
        files["nifti"] = [f"nifti/{p.name}" for p in phases]
        files["mask"] = f"nifti/{cid}_mask.nii.gz"
        if case.tissue is not None:
            nii.save_volume(case.tissue, case.study.affine, folder / "nifti" / f"{cid}_tissue.nii.gz")
            files["tissue"] = f"nifti/{cid}_tissue.nii.gz"
    truth["files"] = files
    _atomic.write_text(folder / "truth.json", json.dumps(truth, indent=1) + "\n")


def case_seed(cohort_seed: int, index: int) -> int:
    """A case's seed within a cohort: independent streams per (cohort seed, index)."""
    return int(np.random.SeedSequence([int(cohort_seed), int(index)]).generate_state(1)[0])


def write_cohort(
    n: int,
    seed: int,
    out_dir: str | Path,
    *,
    protocol: str = "conventional",
    dicom_layout: str = "series-per-phase",
    orientation: str = "axial",
    longitudinal: bool = False,
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
    dicom: bool = True,
    nifti: bool = True,
) -> Generator[Progress, None, list[Path]]:
    """Write ``n`` cases plus ``boxes.csv`` and ``labels.csv``; yields Progress, returns case folders.

    Case ids are ``PH<seed>_<index:04d>``; case ``i`` uses :func:`case_seed` (seed, i), so a
    cohort can be extended or a single case regenerated on its own.
    """
    if n < 1:
        raise ValueError(f"a cohort needs at least one case, got n={n}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    folders: list[Path] = []
    box_rows: list[dict] = []
    label_rows: list[dict] = []
    for i in range(n):
        cid = f"PH{seed}_{i:04d}"
        yield Progress("phantom", i / n, f"{cid}: generating")
        case = generate_case(
            case_seed(seed, i),
            protocol=protocol,
            shape=shape,
            spacing=spacing,
            orientation=orientation,
            longitudinal=longitudinal,
            case_id=cid,
        )
        yield Progress("phantom", (i + 0.5) / n, f"{cid}: writing")
        folders.append(write_case(case, out, dicom_layout, dicom=dicom, nifti=nifti))
        box_rows.extend(_box_rows(case))
        lab = case.truth["labels"]
        label_rows.append(
            {
                "Patient ID": cid,
                **{
                    k: "" if lab[k] is None else lab[k] for k in ("subtype", "pcr", "lymph_node", "screening")
                },
                "n_lesions": len(case.truth["lesions"]),
                "protocol": protocol,
                "seed": case.truth["seed"],
            }
        )
    _write_csv(out / "boxes.csv", BOX_COLUMNS, box_rows)
    _write_csv(out / "labels.csv", LABEL_COLUMNS, label_rows)
    _atomic.write_text(
        out / "README.txt",
        f"{DEMO_LABEL}\nnapari-breastmri phantom cohort: {n} cases, seed {seed}, protocol {protocol}, "
        f"DICOM layout {dicom_layout}, orientation {orientation}.\n"
        "boxes.csv: Duke-style boxes, 1-based inclusive (row = y, column = x, slice = z).\n"
        "labels.csv: case labels; empty subtype/pcr/lymph_node = no invasive cancer in the case.\n",
    )
    yield Progress("phantom", 1.0, f"{n} cases written")
    return folders


def _box_rows(case: PhantomCase) -> list[dict]:
    rows = []
    for les in case.truth["lesions"]:
        z0, y0, x0, z1, y1, x1 = les["bbox"]
        rows.append(
            {
                "Patient ID": case.case_id,
                "Start Row": y0 + 1,
                "End Row": y1,
                "Start Column": x0 + 1,
                "End Column": x1,
                "Start Slice": z0 + 1,
                "End Slice": z1,
                "Lesion ID": les["id"],
                "Type": les["type"],
                "Shape": les["shape"],
                "Malignant": int(les["malignant"]),
                "Curve Type": les["curve_type"],
                "Volume (ml)": f"{les['volume_ml']:.4f}",
            }
        )
    return rows


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _atomic.write_text(path, buf.getvalue())
