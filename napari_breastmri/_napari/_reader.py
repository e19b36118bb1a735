"""npe2 reader: DICOM folders and files, 4D / per-phase NIfTI, public case layouts -> layers.

The npe2 contract: ``get_reader`` returns None for anything this plugin does not handle (napari
then asks other readers) and never raises; for a path it does handle it returns a function that
loads the study with :func:`napari_breastmri.io.load_study` and raises one of our typed errors
(with a one-sentence message) when the files are broken. Deciding "handled" only peeks at names
and at most a few file headers, so it is cheap on large folders.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from ._layers import LayerDataTuple, study_layers, truth_layers

PathLike = str | os.PathLike
#: how many files a folder check may look at before giving up (keeps get_reader instant)
MAX_PEEK = 64


def handles(path: PathLike | Sequence[PathLike]) -> bool:
    """Whether this plugin reads ``path``: the io layer's own answer, so reader and loader agree."""
    from ..io import can_read

    return can_read(path, max_files=MAX_PEEK)


def get_reader(path: PathLike | Sequence[PathLike]) -> Callable[..., list[LayerDataTuple]] | None:
    """npe2 reader hook: a reader function for paths we handle, else None (never raises)."""
    try:
        return read_study if handles(path) else None
    except Exception:  # the contract: an unhandled path is never an error
        return None


def read_study(path: PathLike | Sequence[PathLike]) -> list[LayerDataTuple]:
    """Load the study and return its layers: the 4D phases, the first subtraction, and, for a
    phantom case folder with its ``truth.json`` and mask, the hidden truth layers."""
    from ..io import load_study

    source: Any = [os.fspath(p) for p in path] if isinstance(path, (list, tuple)) else os.fspath(path)
    study = load_study(source)
    layers = study_layers(study)
    layers[0][1]["metadata"]["breastmri"]["source"] = source  # what the dock re-opens another series from
    truth = _truth_for(study, source)
    if truth:
        layers[0][1]["metadata"]["breastmri"]["truth"] = study.meta.get("truth")
        layers[0][1]["metadata"]["breastmri"]["label_mask"] = truth[0][0]
    return layers + truth


def _truth_for(study, source: Any) -> list[LayerDataTuple]:
    """A phantom case folder carries truth.json and a label mask: show them as hidden layers."""
    if not isinstance(source, str):
        return []
    try:
        from ..io.export import load_case_truth

        truth, mask = load_case_truth(source, study)
    except Exception:  # truth is a bonus for phantom cases; a problem with it must not block the study
        return []
    if truth is None or mask is None:
        return []
    study.meta.setdefault("truth", truth)
    return truth_layers(mask, truth, study.affine)
