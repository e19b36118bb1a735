"""``breastmri analyze CASE --out DIR``: run the models on one case and write what they found.

Writes ``findings.json`` (io.findings_json), ``lesions.nii.gz`` (the label mask on the study grid),
one NIfTI per heatmap, and for a phantom case (``--demo``, or a case folder with ``truth.json``)
the truth beside them plus ``comparison.json`` (lesion hit/miss, Dice). With ``--report`` the
export area's ``napari_breastmri.report.write_report`` is called when it is installed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .. import _atomic
from ..errors import ModelPackageError
from ..phantom import DEMO_SEED
from ..types import DEMO_LABEL, Findings, Study

DEFAULT_DEMO_SEED = DEMO_SEED  # the one embedded demo case


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "case", nargs="?", help="DICOM folder, NIfTI file(s) or case folder (omit with --demo)"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--models", nargs="+", metavar="NAME", help="packages (names or paths); default: shipped demos"
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    parser.add_argument(
        "--follow-up", metavar="CASE", help="the follow-up (early-treatment) exam for pair models"
    )
    parser.add_argument("--no-explain", action="store_true", help="skip CAM heatmaps")
    parser.add_argument(
        "--explain-method", default="gradcam", help="CAM method for heatmaps (default gradcam)"
    )
    parser.add_argument("--report", action="store_true", help="also write the HTML report (when installed)")
    parser.add_argument(
        "--no-source",
        action="store_true",
        help="leave out where the study came from (paths, UIDs) from findings.json, for sharing; a "
        "later 'breastmri export' then needs --study",
    )
    parser.add_argument(
        "--demo", action="store_true", help=f"analyse the embedded synthetic phantom case ({DEMO_LABEL})"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_DEMO_SEED, help="phantom seed for --demo")


def resolve_packages(names: list[str] | None) -> list[Any]:
    """The packages to run: the named ones (registry names or paths), else every installed one."""
    from ..models import registry
    from ..models.package import load_package

    if names:
        return [load_package(n) for n in names]
    infos = registry.shipped(demo_only=False)
    if not infos:
        raise ModelPackageError(
            "No model packages are installed: the shipped demo packages are missing. Train them with "
            "'breastmri train' or name a package with --models PATH."
        )
    return [load_package(i.path, origin="shipped") for i in infos if i.task != "interactive-segment"]


def _load_case(
    args: argparse.Namespace, need_follow_up: bool
) -> tuple[Study, Study | None, dict | None, np.ndarray | None]:
    """(study, follow-up, truth dict, truth label mask on the study grid) for the CLI's inputs."""
    if args.demo:
        from ..phantom import generate_case

        case = generate_case(args.seed, longitudinal=need_follow_up)
        follow = (
            case.follow_up.study if need_follow_up and getattr(case, "follow_up", None) is not None else None
        )
        return case.study, follow, case.truth, np.asarray(case.label_mask)
    if not args.case:
        raise ModelPackageError("Give a CASE to analyse, or --demo for the synthetic phantom case.")

    study = load_case(Path(args.case))
    follow = load_case(Path(args.follow_up)) if args.follow_up else None
    from ..io.export import load_case_truth

    truth, labels = load_case_truth(Path(args.case), study)
    return study, follow, truth, labels


def load_case(case: Path) -> Study:
    """io.load_study, plus the phantom's case-folder layout (truth.json naming dicom/ and nifti/)."""
    from ..errors import UnsupportedInput
    from ..io import load_study

    try:
        return load_study(case)
    except UnsupportedInput:
        files = {}
        if (case / "truth.json").is_file():
            files = json.loads((case / "truth.json").read_text(encoding="utf-8")).get("files") or {}
        for key in ("dicom", "nifti"):
            entry = files.get(key)
            if isinstance(entry, str) and (case / entry).exists():
                return load_study(case / entry)
            if isinstance(entry, list) and entry:
                return load_study([case / e for e in entry])
        raise


def compare_to_truth(findings: Findings, truth: dict, truth_labels: np.ndarray | None) -> dict[str, Any]:
    """Hit/miss per truth lesion (training.metrics' matching rule), false positives and Dice."""
    from ..training.metrics import box_hits, dice

    rows = []
    used: set[int] = set()
    for t in truth.get("lesions", []):
        hits = [les for les in findings.lesions if box_hits(les.bbox, t["bbox"])]
        best = max(hits, key=lambda les: les.score, default=None)
        row: dict[str, Any] = {"id": t.get("id"), "bbox": t["bbox"], "hit": best is not None}
        if best is not None:
            used.update(les.id for les in hits)
            row.update(lesion=best.id, score=best.score, predicted_bbox=best.bbox)
            if truth_labels is not None and findings.label_mask is not None and best.label:
                pred = np.isin(findings.label_mask, [les.label for les in hits if les.label])
                row["dice"] = round(float(dice(pred, truth_labels == int(t["id"]))), 4)
        rows.append(row)
    out: dict[str, Any] = {
        "lesions": rows,
        "found": sum(r["hit"] for r in rows),
        "n_truth": len(rows),
        "false_positives": len([les for les in findings.lesions if les.id not in used]),
    }
    if truth_labels is not None and findings.label_mask is not None:
        out["dice_all"] = round(float(dice(findings.label_mask > 0, truth_labels > 0)), 4)
    labels = truth.get("labels") or {}
    out["case_labels"] = {
        target: {"truth": labels.get(target), "predicted": pred.top_class}
        for target, pred in findings.case_predictions.items()
        if target in labels
    }
    return out


def write_outputs(study: Study, findings: Findings, out: Path) -> dict[str, Path]:
    """findings.json, lesions.nii.gz and heatmap NIfTIs on the study grid; returns what was written."""
    from ..io.findings_json import write_findings_json
    from ..io.nifti import save_volume

    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if findings.label_mask is not None:
        written["mask"] = save_volume(
            findings.label_mask.astype(np.int16), study.affine, out / "lesions.nii.gz"
        )
    heatmap_files: dict[int, str] = {}
    for i, hm in enumerate(findings.heatmaps):
        if hm.data is not None and np.asarray(hm.data).ndim == 3 and np.asarray(hm.data).size:
            name = f"heatmap_{i}_{hm.method}_{hm.target}.nii.gz".replace("/", "_").replace(" ", "_")
            save_volume(np.asarray(hm.data, dtype=np.float32), hm.affine, out / name)
            heatmap_files[i] = name
    written["findings"] = write_findings_json(findings, out / "findings.json", heatmap_files)
    return written


def run(args: argparse.Namespace) -> int:
    from .. import progress
    from .pipeline import analyze

    pkgs = resolve_packages(args.models)
    need_follow = any(p.card.needs_follow_up for p in pkgs)
    study, follow, truth, truth_labels = _load_case(args, need_follow)
    explain = None if args.no_explain else args.explain_method
    device = None if args.device == "auto" else args.device
    findings = progress.run(
        analyze(study, pkgs, device=device, follow_up=follow, explain=explain),
        progress.tqdm_printer("analyze"),
    )
    if args.no_source:
        from ..io.findings_json import withhold_study_source

        withhold_study_source(findings)
    out = Path(args.out)
    written = write_outputs(study, findings, out)
    if truth is not None:
        _atomic.write_text(out / "truth.json", json.dumps(truth, indent=2, default=_json_default))
        cmp = compare_to_truth(findings, truth, truth_labels)
        _atomic.write_text(out / "comparison.json", json.dumps(cmp, indent=2, default=_json_default))
        print(
            f"truth: {cmp['found']}/{cmp['n_truth']} lesions found, {cmp['false_positives']} false positive(s)"
            + (f", Dice {cmp['dice_all']:.3f}" if "dice_all" in cmp else "")
        )
    if args.report:
        _report(study, findings, out)
    for run_ in findings.models:
        demo = f" [{DEMO_LABEL}]" if run_.demo else ""
        notes = f" ({'; '.join(run_.notes)})" if run_.notes else ""
        print(
            f"{run_.name}@{run_.version}: {run_.task} on {run_.device} in {run_.seconds:.1f} s{notes}{demo}"
        )
    print(
        f"{len(findings.lesions)} lesion(s); case predictions: "
        + (
            ", ".join(
                f"{t}={p.top_class} ({p.probabilities[p.top_class]:.2f})"
                for t, p in findings.case_predictions.items()
            )
            or "none"
        )
    )
    for w in findings.warnings:
        print(f"note: {w}", file=sys.stderr)
    print(f"wrote {written['findings']}")
    return 0


def _report(study: Study, findings: Findings, out: Path) -> None:
    try:
        from ..report import write_report  # type: ignore[attr-defined]
    except ImportError:
        print(
            "note: the HTML report is not available in this installation (napari_breastmri.report).",
            file=sys.stderr,
        )
        return
    path = write_report(study, findings, out, show_phi=False)
    print(f"report: {path}")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
