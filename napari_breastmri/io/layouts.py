"""Public dataset layouts: Duke-Breast-Cancer-MRI (TCIA DICOM) and MAMA-MIA (NIfTI), detected by shape.

Why a layout module when the generic readers already load the files: a layout knows what the
folder names and sidecar files mean (the case id, where the expert segmentation lies, which
acquisition times belong to the phases), and it can cross-check them against the images. It
never orders phases by folder names: a Duke case is loaded by the DICOM reader (times from the
headers) and the layout only warns when the folder names disagree with that order.

Duke-Breast-Cancer-MRI (as downloaded from TCIA with the NBIA data retriever)::

    Breast_MRI_001/<study date-description-id>/<series number>-ax dyn pre-<id>/1-001.dcm
                                              /<series number>-ax dyn 1st pass-<id>/...

MAMA-MIA::

    <root>/images/<case>/<case>_0000.nii.gz, <case>_0001.nii.gz, ...
    <root>/segmentations/expert/<case>.nii.gz
    <root>/patient_info_files/<case>.json      (acquisition times when present)
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnsupportedInput
from ..types import Study

#: Duke series folders: "<number>-<description>-<id>", descriptions as TCIA wrote them
DUKE_SERIES = re.compile(r"^\d+(\.\d+)?-(?P<desc>.+?)(-\d+)?$")
_ORDINAL = {"pre": 0, "1st": 1, "2nd": 2, "3rd": 3}


def detect(folder: Path) -> str | None:
    """'duke', 'mama-mia', 'case-folder' or None for a folder, from its structure alone."""
    folder = Path(folder)
    if _mama_mia_case(folder) is not None:
        return "mama-mia"
    if _duke_series_folders(folder):
        return "duke"
    if _case_folder_part(folder) is not None:
        return "case-folder"
    return None


def load(folder: Path, kind: str, *, series_uid: str | Sequence[str] | None = None) -> Study:
    if kind == "duke":
        return load_duke(folder, series_uid=series_uid)
    if kind == "mama-mia":
        return load_mama_mia(folder)
    if kind == "case-folder":
        return load_case_folder(folder, series_uid=series_uid)
    raise UnsupportedInput(
        f"Unknown layout {kind!r}; known layouts are 'duke', 'mama-mia' and 'case-folder'."
    )


# --------------------------------------------------------------------------------------------
# our own case folders (phantom cases, exports): dicom/ and/or nifti/ beside truth and masks


def _case_folder_part(folder: Path) -> Path | None:
    """``folder/dicom`` (preferred) or ``folder/nifti`` when the folder is laid out that way."""
    if not folder.is_dir():
        return None
    for name in ("dicom", "nifti"):
        part = folder / name
        if part.is_dir():
            from .nifti import phase_files

            if name == "dicom" or phase_files(part):
                return part
    return None


def load_case_folder(folder: Path, *, series_uid: str | Sequence[str] | None = None) -> Study:
    """A case folder with ``dicom/`` (and ``nifti/``, truth, masks beside it): load the images
    only, so the masks and JSON next to them are neither read as phases nor warned about."""
    part = _case_folder_part(folder)
    if part is None:
        raise UnsupportedInput(f"{folder} has neither a dicom/ nor a nifti/ folder of phases.")
    if part.name == "dicom":
        from .dicom import load_dicom

        study = load_dicom(part, series_uid=series_uid)
    else:
        from .nifti import read

        study = read(part)
    study.meta.update({"layout": "case-folder", "case_id": folder.name, "case_folder": str(folder)})
    return study


# --------------------------------------------------------------------------------------------
# Duke-Breast-Cancer-MRI


def _duke_series_folders(folder: Path) -> list[Path]:
    """Series folders of a Duke case: the case folder holds one study folder holding series folders."""
    if not folder.is_dir():
        return []
    found = []
    candidates = [folder, *[p for p in folder.iterdir() if p.is_dir()]]
    for parent in candidates:
        for sub in parent.iterdir() if parent.is_dir() else []:
            match = DUKE_SERIES.match(sub.name)
            if sub.is_dir() and match and re.search(r"dyn|pass", match["desc"], re.I):
                found.append(sub)
    return found


def _duke_phase_rank(desc: str) -> int | None:
    """0 for '... pre', N for '... Nth pass', None for anything else."""
    match = re.search(r"\b(pre|1st|2nd|3rd|(\d+)th)\b", desc, re.I)
    if not match:
        return None
    word = match.group(1).lower()
    return _ORDINAL.get(word, int(match.group(2)) if match.group(2) else None)


def load_duke(folder: Path, *, series_uid: str | Sequence[str] | None = None) -> Study:
    """Load a Duke-Breast-Cancer-MRI case folder; the DICOM headers decide the phase order."""
    from .dicom import load_dicom

    study = load_dicom(folder, series_uid=series_uid)
    study.meta.update({"layout": "duke", "case_id": folder.name})
    ranks = [_duke_phase_rank(d) for d in study.meta.get("series_descriptions", [])]
    if all(r is not None for r in ranks) and len(set(ranks)) == len(ranks) and ranks != sorted(ranks):
        study.warnings.append(
            "The Duke series names (pre, 1st pass, ...) disagree with the acquisition times in the "
            f"headers ({ranks}); the phases follow the acquisition times."
        )
    return study


# --------------------------------------------------------------------------------------------
# MAMA-MIA


def _mama_mia_case(folder: Path) -> tuple[Path, str] | None:
    """(dataset root, case id) when ``folder`` is ``<root>/images/<case>`` (or a case id under root)."""
    folder = Path(folder)
    if folder.parent.name == "images" and any(folder.glob(f"{folder.name}_0000.nii*")):
        return folder.parent.parent, folder.name
    return None


def load_mama_mia(folder: Path) -> Study:
    """Load ``<root>/images/<case>``; attach the expert segmentation path and acquisition times."""
    from . import nifti

    found = _mama_mia_case(folder)
    if found is None:
        raise UnsupportedInput(
            f"{folder} is not a MAMA-MIA case folder (<root>/images/<case>/<case>_0000.nii.gz)."
        )
    root, case = found
    files = nifti.phase_files(folder).get(case)
    if not files:
        raise UnsupportedInput(f"{folder} holds no {case}_NNNN.nii.gz files.")
    study = nifti.read(files)
    info_path = root / "patient_info_files" / f"{case}.json"
    times = _mama_mia_times(info_path, study.n_phases)
    if times is not None:
        from .dicom import protocol_and_labels

        study.times = times - times[0]
        study.protocol, study.phase_labels = protocol_and_labels(study.times)
        study.warnings = [w for w in study.warnings if "no acquisition times" not in w]
    seg = root / "segmentations" / "expert" / f"{case}.nii.gz"
    study.meta.update(
        {
            "layout": "mama-mia",
            "case_id": case,
            "segmentation_path": str(seg) if seg.is_file() else None,
            "patient_info_path": str(info_path) if info_path.is_file() else None,
        }
    )
    study.source = f"MAMA-MIA case {case} ({folder})"
    return study


def _mama_mia_times(path: Path, n_phases: int) -> np.ndarray | None:
    """Acquisition times (s) for the phases from a MAMA-MIA patient json, when it has them."""
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    found = _find_key(info, "acquisition_times")
    if not isinstance(found, list) or len(found) != n_phases:
        return None
    try:
        times = np.asarray([float(v) for v in found], dtype=float)
    except (TypeError, ValueError):
        return None
    return times if np.all(np.diff(times) > 0) else None


def _find_key(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for value in obj.values():
            hit = _find_key(value, key)
            if hit is not None:
                return hit
    elif isinstance(obj, list):
        for value in obj:
            hit = _find_key(value, key)
            if hit is not None:
                return hit
    return None
