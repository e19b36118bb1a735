"""Loading breast MRI studies: ``load_study`` turns any supported source into a :class:`Study`.

Supported sources: a DICOM folder or list of DICOM files (series per phase, one series with every
phase, Enhanced MR multi-frame), a 4D NIfTI, per-phase NIfTI files (``case_0000.nii.gz`` ...) or
a folder of them, and case folders of known public layouts (Duke-Breast-Cancer-MRI, MAMA-MIA).

Importing this package is cheap: pydicom and nibabel are imported only by the reader that needs
them, so ``import napari_breastmri.io`` costs nothing for a caller that never loads a file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import UnsupportedInput
from ..types import Study

__all__ = ["can_read", "detect_format", "load_study"]

Source = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def detect_format(source: Source) -> str:
    """'nifti', 'nifti-phases', 'duke', 'mama-mia', 'case-folder' or 'dicom' for a source; raises
    UnsupportedInput.

    Detection is by structure only (file suffixes, folder names, the DICM magic), never by reading
    a whole file, so the npe2 reader can call it on anything and say "not mine" quickly.
    """
    from . import layouts, nifti

    if not isinstance(source, (str, os.PathLike)):
        paths = [Path(p) for p in source]
        if not paths:
            raise UnsupportedInput(
                "No files were given; pass a DICOM folder, NIfTI file(s) or a case folder."
            )
        if all(nifti.is_nifti(p) for p in paths):
            return "nifti-phases"
        return "dicom"
    path = Path(source)
    if not path.exists():
        raise UnsupportedInput(f"{path} does not exist; check the path.")
    if path.is_file():
        if nifti.is_nifti(path):
            return "nifti"
        return "dicom"
    layout = layouts.detect(path)
    if layout is not None:
        return layout
    if nifti.phase_files(path):
        return "nifti-phases"
    return "dicom"


def can_read(source: Source, max_files: int = 200) -> bool:
    """True when ``source`` looks like something :func:`load_study` reads; never raises.

    For the npe2 reader contract ("return None for what you do not handle"): NIfTI by suffix, a
    DICOM file by its ``DICM`` magic, a folder when a known layout, NIfTI phase files, or a DICOM
    file is found among its first ``max_files`` files. Nothing is parsed.
    """
    from . import layouts, nifti

    try:
        if not isinstance(source, (str, os.PathLike)):
            paths = [Path(p) for p in source]
            return bool(paths) and all(can_read(p, max_files) for p in paths)
        path = Path(source)
        if path.is_file():
            return nifti.is_nifti(path) or _has_dicm_magic(path)
        if not path.is_dir():
            return False
        if layouts.detect(path) is not None or nifti.phase_files(path):
            return True
        seen = 0
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith("."):
                    continue
                if nifti.is_nifti(name) or _has_dicm_magic(Path(dirpath) / name):
                    return True
                seen += 1
                if seen >= max_files:
                    return False
        return False
    except OSError:
        return False


def _has_dicm_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def load_study(source: Source, *, series_uid: str | Sequence[str] | None = None) -> Study:
    """Load one breast MRI study from ``source`` (see the package docstring) as a :class:`Study`.

    ``series_uid`` chooses the DICOM series to load when the automatic choice of the dynamic
    series is wrong: one UID loads that series together with the other series of the same dynamic
    acquisition; a list of UIDs loads exactly those series as the phases. Everything the loader
    skipped is listed in ``Study.skipped_series`` with its reason, and anything odd but usable in
    ``Study.warnings``.
    """
    kind = detect_format(source)
    if kind in ("nifti", "nifti-phases"):
        from . import nifti

        return nifti.read(source if isinstance(source, (str, os.PathLike)) else list(source))
    if kind in ("duke", "mama-mia", "case-folder"):
        from . import layouts

        return layouts.load(Path(source), kind, series_uid=series_uid)
    from . import dicom

    return dicom.load_dicom(source, series_uid=series_uid)
