"""``breastmri export``: findings to NIfTI, DICOM SEG/SR, a Duke box CSV or findings.json.

The input is either a findings folder (what ``breastmri analyze`` writes: findings.json with the
label mask beside it) or a case (anything :func:`napari_breastmri.io.load_study` reads), in which
case the findings come from the case's phantom truth (``--from-truth``) or from running the
installed models. SEG and SR need the source study for its DICOM: for a findings folder it is
reloaded from what findings.json records (``study_source``: the path(s) or PACS study it was
loaded from, or the phantom's seed; :func:`napari_breastmri.io.export.study_for_findings_dir`),
unless ``--study`` names it. Without ``--out`` a findings folder's exports go beside its
findings.json.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import progress
from ..errors import ExportError
from ..types import Findings, Progress, Study
from .export import FORMATS, export_findings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="findings folder (with findings.json) or a case to analyse")
    parser.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=[*FORMATS, "all"],
        help="format to write (repeatable; default: all)",
    )
    parser.add_argument(
        "--out", help="folder to write into (default for a findings folder: that folder; required for a case)"
    )
    parser.add_argument(
        "--study",
        help="the source study (DICOM folder ...) when SOURCE is a findings folder; default: the study "
        "findings.json records",
    )
    parser.add_argument("--from-truth", action="store_true", help="export a phantom case's ground truth")
    parser.add_argument("--case-id", default="", help="Patient ID column of the CSV (default: the case id)")


def load_findings_dir(folder: str | Path) -> tuple[Findings, dict]:
    """Findings (with label mask and heatmap arrays) from a folder holding findings.json."""
    from .findings_json import findings_from_dict
    from .nifti import load_volume

    folder = Path(folder)
    doc = json.loads((folder / "findings.json").read_text(encoding="utf-8"))
    findings = findings_from_dict(doc)
    # "lesions.nii.gz" is what 'breastmri analyze' writes, "label_mask.nii.gz" what an export writes
    for mask_name in (doc.get("label_mask_file"), "lesions.nii.gz", "label_mask.nii.gz"):
        if mask_name and (folder / mask_name).is_file():
            mask, _ = load_volume(folder / mask_name)
            findings.label_mask = np.asarray(mask).astype(np.int16)
            break
    for hm in findings.heatmaps:
        if hm.file and (folder / hm.file).is_file():
            hm.data, hm.affine = load_volume(folder / hm.file)
    return findings, doc


def _findings_for_case(study: Study, case: Path, from_truth: bool) -> Findings:
    if from_truth:
        from .export import findings_from_truth, load_case_truth

        truth, mask = load_case_truth(case, study)
        return findings_from_truth(study, truth, mask)
    try:
        from ..inference.pipeline import analyze
        from ..models.registry import available
    except ImportError as err:
        raise ExportError(
            "The model pipeline is not available, so the case cannot be analysed here; run "
            "'breastmri analyze' first and export its findings folder, or use --from-truth."
        ) from err
    packages = [info.path for info in available() if info.task != "interactive-segment"]
    if not packages:
        raise ExportError(
            "No model package is installed to analyse this case; add one with 'breastmri models add', "
            "export a findings folder from 'breastmri analyze', or use --from-truth for a phantom case."
        )
    return progress.run(analyze(study, packages), progress.tqdm_printer("analyze"))


def _study_for_folder(src: Path, findings: Findings, study_arg: str | None) -> Study:
    """The study for SEG/SR of a findings folder: ``--study``, else the one findings.json records."""
    import sys

    from . import load_study
    from .export import study_for_findings_dir

    if study_arg:
        return load_study(study_arg)
    printer: list[Callable[[Progress], None]] = []

    def on_progress(step: Progress) -> None:  # a bar only when something is retrieved (PACS)
        if not printer:
            printer.append(progress.tqdm_printer("retrieve"))
        printer[0](step)

    study = study_for_findings_dir(src, findings, on_progress=on_progress)
    print(f"study: {study.source or 'reloaded'} (as recorded in {src / 'findings.json'})", file=sys.stderr)
    for warning in study.warnings:
        print(f"note: {warning}", file=sys.stderr)
    return study


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from . import load_study
    from .findings_json import study_source_record

    formats = list(FORMATS) if not args.formats or "all" in args.formats else args.formats
    src = Path(args.source)
    study: Study | None = None
    if (src / "findings.json").is_file():
        findings, _doc = load_findings_dir(src)
        out = Path(args.out) if args.out else src
        if out.resolve() == src.resolve() and "json" in formats:
            formats = [f for f in formats if f != "json"]  # findings.json is already there
        if {"seg", "sr"} & set(formats):
            study = _study_for_folder(src, findings, args.study)
            # an exported findings.json records the study actually used (e.g. the new --study path)
            findings = replace(findings, study_source=study_source_record(study))
    else:
        if not args.out:
            raise ExportError(f"Say where to write the exports of {src} with --out FOLDER.")
        out = Path(args.out)
        study = load_study(args.study or src)
        findings = _findings_for_case(study, src, args.from_truth)
    files = progress.run(
        export_findings(study, findings, out, formats, case_id=args.case_id),
        progress.tqdm_printer("export"),
    )
    for fmt, paths in files.items():
        shown = [p for p in paths if "source_dicom" not in p.parts]
        extra = len(paths) - len(shown)
        note = f" (+{extra} source DICOM files written for reference)" if extra else ""
        print(f"{fmt}: {', '.join(str(p) for p in shown)}{note}")
    return 0
