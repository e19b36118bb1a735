"""NIfTI in and out: the only place (with geometry.to_nifti/from_nifti) where RAS meets our LPS.

Why a module of its own: NIfTI is what MAMA-MIA, nnU-Net and most research code exchange, and its
(i, j, k) + RAS convention is the opposite of ours on two axes and in index order. Everything
that crosses here goes through :func:`napari_breastmri.geometry.to_nifti` /
:func:`~napari_breastmri.geometry.from_nifti`, so there is exactly one conversion to get right.

NIfTI has no acquisition times. :func:`write_study_nifti` writes them to a small JSON sidecar
(``<case>_dce.json``: times, phase labels, protocol, acquisition; never PHI) and :func:`read`
uses it when present; without it the phases get index times and the study says so in its
warnings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import _atomic
from ..errors import CorruptFile, InconsistentGeometry, UnsupportedInput
from ..geometry import from_nifti, resample_to_grid, same_grid, to_nifti
from ..types import DEMO_LABEL, Acquisition, Protocol, Study

NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: nnU-Net / MAMA-MIA channel files: <case>_0000.nii.gz, <case>_0001.nii.gz, ...
PHASE_FILE = re.compile(r"^(?P<case>.+)_(?P<index>\d{4})\.nii(\.gz)?$")


def is_nifti(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def save_volume(vol_zyx: np.ndarray, affine: np.ndarray, path: str | Path) -> Path:
    """Write a (z, y, x) or (t, z, y, x) array on ``affine`` (LPS) as NIfTI, atomically.

    sform and qform are both set (code 1, scanner) so that every reader (nibabel, ITK, dcm2niix's
    users, 3D Slicer) agrees on the geometry.
    """
    import nibabel as nib

    path = Path(path)
    data_ijk, affine_ras = to_nifti(np.asarray(vol_zyx), affine)
    img = nib.Nifti1Image(np.asarray(data_ijk), affine_ras)
    img.set_sform(affine_ras, code=1)
    img.set_qform(affine_ras, code=1)
    img.header.set_xyzt_units("mm", "sec")
    suffix = ".nii.gz" if str(path).endswith(".gz") else ".nii"
    with _atomic.atomic_path(path, suffix=suffix) as tmp:
        nib.save(img, tmp)
    return path


def load_volume(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI file as ((z, y, x) or (t, z, y, x) array, LPS affine).

    Scaled files (scl_slope/scl_inter) come back as float32; unscaled ones keep their stored dtype,
    so label masks stay integers.
    """
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
        slope, inter = img.dataobj.slope, img.dataobj.inter
        if (slope not in (None, 1.0) and np.isfinite(slope)) or (
            inter not in (None, 0.0) and np.isfinite(inter)
        ):
            data = np.asarray(img.get_fdata(dtype=np.float32))
        else:
            data = np.asarray(img.dataobj)
    except (OSError, EOFError, ValueError, nib.filebasedimages.ImageFileError) as err:
        raise CorruptFile(
            f"{path} could not be read as NIfTI ({err}); the file is truncated or not NIfTI, so "
            "re-export or re-download it."
        ) from err
    if data.ndim == 5 and data.shape[3] == 1:  # (i, j, k, 1, t) as some converters write
        data = data[:, :, :, 0, :]
    if data.ndim not in (3, 4):
        raise UnsupportedInput(f"{path} has {data.ndim} dimensions; a 3D or 4D NIfTI is needed.")
    return from_nifti(data, img.affine)


def sidecar_path(out_dir: Path, case_id: str) -> Path:
    return Path(out_dir) / f"{case_id}_dce.json"


def write_study_nifti(study: Study, out_dir: str | Path, case_id: str) -> list[Path]:
    """Write one NIfTI per phase, MAMA-MIA / nnU-Net style (``<case>_0000.nii.gz`` = first phase).

    Beside them ``<case>_dce.json`` keeps what NIfTI cannot: times, labels, protocol and
    acquisition parameters (no patient data). Returns the NIfTI paths in phase order.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        save_volume(study.data[p], study.affine, out_dir / f"{case_id}_{p:04d}.nii.gz")
        for p in range(study.n_phases)
    ]
    side = {
        "case_id": case_id,
        "times_s": [float(t) for t in study.times],
        "phase_labels": list(study.phase_labels),
        "protocol": asdict(study.protocol),
        "acquisition": asdict(study.acquisition),
        "study_uid": study.study_uid,
        "files": [p.name for p in paths],
        "demo": bool(study.meta.get("demo")) or DEMO_LABEL in study.source,
    }
    _atomic.write_text(sidecar_path(out_dir, case_id), json.dumps(side, indent=2))
    return paths


def phase_files(folder: str | Path) -> dict[str, list[Path]]:
    """Group ``<case>_NNNN.nii[.gz]`` files in ``folder`` by case, each list in index order."""
    cases: dict[str, list[tuple[int, Path]]] = {}
    for path in Path(folder).iterdir():
        match = PHASE_FILE.match(path.name)
        if match and path.is_file():
            cases.setdefault(match["case"], []).append((int(match["index"]), path))
    return {case: [p for _, p in sorted(items)] for case, items in sorted(cases.items())}


def read(source: str | Path | Sequence[str | Path]) -> Study:
    """A Study from a 4D NIfTI, a list of per-phase 3D NIfTI files, or a folder of them.

    Phases on a different grid from the first are resampled onto it (in world space) with a
    warning; a sidecar JSON (see :func:`write_study_nifti`) supplies times and labels.
    """
    paths, desc = _resolve(source)
    warnings: list[str] = []
    if len(paths) == 1:
        data, affine = load_volume(paths[0])
        if data.ndim == 3:
            data = data[None]
        data = np.asarray(data, dtype=np.float32)
    else:
        data, affine = _stack_phases(paths, warnings)
    study_meta = _read_sidecar(paths, data.shape[0], warnings)
    times = study_meta.pop("times")
    if study_meta.get("demo"):
        desc = f"{DEMO_LABEL}: {desc}"
    labels = study_meta.pop("labels")
    return Study(
        data=data,
        affine=affine,
        times=times,
        phase_labels=labels,
        protocol=study_meta.pop("protocol"),
        acquisition=study_meta.pop("acquisition"),
        source=desc,
        study_uid=study_meta.pop("study_uid", ""),
        warnings=warnings,
        meta={"format": "nifti", "files": [str(p) for p in paths], **study_meta},
    )


def _resolve(source: str | Path | Sequence[str | Path]) -> tuple[list[Path], str]:
    if isinstance(source, (str, Path)):
        src = Path(source)
        if src.is_dir():
            cases = phase_files(src)
            if len(cases) != 1:
                raise UnsupportedInput(
                    f"{src} holds {len(cases)} cases of <case>_NNNN.nii.gz files; open one case's files."
                )
            ((case, files),) = cases.items()
            return files, f"NIfTI phases {src / case}_*.nii.gz"
        if not src.exists():
            raise UnsupportedInput(f"{src} does not exist; check the path.")
        return [src], f"NIfTI {src}"
    paths = [Path(p) for p in source]
    if not paths:
        raise UnsupportedInput("no NIfTI files were given; pass a 4D file or one file per phase.")
    return paths, f"NIfTI phases {paths[0].parent} ({len(paths)} files)"


def _stack_phases(paths: list[Path], warnings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Stack per-phase volumes into (phase, z, y, x), resampling onto the first phase's grid."""
    first, affine = load_volume(paths[0])
    if first.ndim != 3:
        raise UnsupportedInput(f"{paths[0]} is {first.ndim}D; per-phase files must each be 3D volumes.")
    out = np.empty((len(paths), *first.shape), dtype=np.float32)
    out[0] = first
    for i, path in enumerate(paths[1:], start=1):
        vol, aff = load_volume(path)
        if vol.ndim != 3:
            raise UnsupportedInput(f"{path} is {vol.ndim}D; per-phase files must each be 3D volumes.")
        if not same_grid(aff, affine, vol.shape, first.shape):
            if not np.allclose(np.linalg.det(aff[:3, :3]), np.linalg.det(affine[:3, :3]), rtol=0.5):
                raise InconsistentGeometry(
                    f"{path.name} has voxels of a very different size from {paths[0].name}; these do not "
                    "look like phases of one exam."
                )
            warnings.append(
                f"{path.name} is on a different grid from {paths[0].name}; it was resampled onto the "
                "first phase's grid (linear interpolation in world space)."
            )
            vol = resample_to_grid(vol, aff, affine, first.shape)
        out[i] = vol
    return out, affine


def _read_sidecar(paths: list[Path], n_phases: int, warnings: list[str]) -> dict:
    first = paths[0]
    match = PHASE_FILE.match(first.name)
    stem = match["case"] if match else re.sub(r"\.nii(\.gz)?$", "", first.name)
    candidates = [first.parent / f"{stem}_dce.json", first.parent / f"{stem}.json"]
    for cand in candidates:
        if cand.is_file():
            try:
                side = json.loads(cand.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as err:
                warnings.append(f"{cand.name} could not be read ({err}); phase times are unknown.")
                break
            times = np.asarray(side.get("times_s", []), dtype=float)
            labels = list(side.get("phase_labels", []))
            if len(times) == n_phases and len(labels) == n_phases:
                return {
                    "times": times,
                    "labels": labels,
                    "protocol": Protocol(**side.get("protocol", {})),
                    "acquisition": Acquisition(**side.get("acquisition", {})),
                    "study_uid": side.get("study_uid", ""),
                    "case_id": side.get("case_id", stem),
                    "demo": bool(side.get("demo", False)),
                }
            warnings.append(f"{cand.name} describes {len(times)} phases but {n_phases} were found; ignored.")
            break
    warnings.append(
        "NIfTI holds no acquisition times: phases are assumed 1 s apart in file order; kinetic rates "
        "per minute are then meaningless."
    )
    return {
        "times": np.arange(n_phases, dtype=float),
        "labels": default_labels(n_phases),
        "protocol": Protocol(),
        "acquisition": Acquisition(),
        "case_id": stem,
    }


def default_labels(n_phases: int) -> list[str]:
    """pre, post1, post2 ...: the labels of a conventional DCE series in phase order."""
    return ["pre"] + [f"post{i}" for i in range(1, n_phases)]
