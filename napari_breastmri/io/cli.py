"""``breastmri info SOURCE``: load a study and say what was found, skipped and doubted.

Why a command of its own: before anyone trusts a model's output on a case they need to see which
series became which phase, at what times, on what grid, and what the loader left out. Patient
data stay hidden unless ``--show-phi`` is given, so the output can be pasted into a ticket.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from ..types import Study


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", nargs="+", help="DICOM folder or files, NIfTI file(s), or a case folder")
    parser.add_argument(
        "--series",
        action="append",
        metavar="UID",
        help="SeriesInstanceUID to load instead of the automatic choice (repeat to give the phases)",
    )
    parser.add_argument(
        "--show-phi", action="store_true", help="show patient name, id, birth date, accession"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary instead of text")


def run(args: argparse.Namespace) -> int:
    from . import load_study

    source = args.source[0] if len(args.source) == 1 else args.source
    series = None
    if args.series:
        series = args.series[0] if len(args.series) == 1 else args.series
    study = load_study(source, series_uid=series)
    info = summary(study, show_phi=args.show_phi)
    print(json.dumps(info, indent=2) if args.json else format_summary(info))
    return 0


def summary(study: Study, *, show_phi: bool = False) -> dict:
    """The facts ``info`` prints, as a plain dict (also used by the report and tests)."""
    from ..geometry import orientation_label

    phi = study.phi if show_phi else None
    return {
        "source": study.source,
        "format": study.meta.get("layout") or study.meta.get("format", ""),
        "dicom_layout": study.meta.get("dicom_layout"),
        "study_uid": study.study_uid if show_phi else ("(hidden)" if study.study_uid else ""),
        "phases": study.n_phases,
        "shape_zyx": list(study.shape),
        "spacing_mm_zyx": [round(v, 4) for v in study.spacing],
        "orientation": orientation_label(study.affine),
        "origin_lps_mm": [round(float(v), 3) for v in study.affine[:3, 3]],
        "phase_labels": list(study.phase_labels),
        "times_s": [round(float(t), 2) for t in study.times],
        "time_source": study.meta.get("time_source"),
        "protocol": asdict(study.protocol),
        "acquisition": asdict(study.acquisition),
        "value_range": [float(study.data.min()), float(study.data.max())] if study.data.size else [],
        "series": [
            {"uid": uid, "description": desc}
            for uid, desc in zip(
                study.series_uids,
                study.meta.get("series_descriptions", [""] * len(study.series_uids)),
                strict=False,
            )
        ],
        "skipped_series": [asdict(s) for s in study.skipped_series],
        "warnings": list(study.warnings),
        "patient": asdict(phi)
        if phi is not None
        else ("(hidden: use --show-phi)" if not study.phi.is_empty() else None),
    }


def format_summary(info: dict) -> str:
    acq = info["acquisition"]
    proto = info["protocol"]
    res = proto.get("temporal_resolution_s")
    lines = [
        f"Source:       {info['source']}",
        f"Format:       {info['format']}"
        + (f" ({info['dicom_layout']})" if info.get("dicom_layout") else ""),
        f"Patient:      {info['patient']}",
        f"Phases:       {info['phases']}  ({', '.join(info['phase_labels'])})",
        f"Times (s):    {', '.join(f'{t:g}' for t in info['times_s'])}"
        + (f"  [from {info['time_source']}]" if info.get("time_source") else ""),
        f"Protocol:     {proto['kind']}"
        + (f", {res:.1f} s per phase" if res else "")
        + (f", {proto['n_ultrafast']} ultrafast frames" if proto.get("n_ultrafast") else ""),
        f"Grid (z,y,x): {info['shape_zyx']} voxels of {info['spacing_mm_zyx']} mm, {info['orientation']}, origin {info['origin_lps_mm']} (LPS)",
        "Acquisition:  "
        + ", ".join(
            f"{name} {acq[key]:g}{unit}"
            for key, name, unit in (
                ("repetition_time_ms", "TR", " ms"),
                ("echo_time_ms", "TE", " ms"),
                ("flip_angle_deg", "flip", " deg"),
                ("field_strength_t", "B0", " T"),
            )
            if acq.get(key) is not None
        )
        + (f", {acq['manufacturer']}" if acq.get("manufacturer") else ""),
    ]
    for i, s in enumerate(info["series"]):
        lines.append(f"Series {i + 1}:     '{s['description']}' {s['uid']}")
    if info["skipped_series"]:
        lines.append(f"Skipped:      {len(info['skipped_series'])} series")
        for s in info["skipped_series"]:
            lines.append(
                f"  - '{s['description']}' ({s['n_files']} files): {s['reason']}  [{s['series_uid']}]"
            )
    for w in info["warnings"]:
        lines.append(f"Warning:      {w}")
    return "\n".join(lines)
