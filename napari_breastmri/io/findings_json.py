"""findings.json: the Findings as JSON, the format the CLI, the report and exports share.

Arrays do not go into the JSON: the label mask and heatmaps are written beside it as NIfTI and
referenced by file name. The schema is documented in docs/findings-schema.md.

Since schema 1.1 findings.json also records where its study came from (``study_source``: the
path(s) or PACS study that :func:`napari_breastmri.io.load_study` was given, the UIDs, or the
phantom recipe), so that ``breastmri export FOLDER --format seg`` can reload the study without
being told. Files without it (schema 1.0) still read; their ``study_source`` is empty.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import _atomic
from ..types import DEMO_LABEL, CasePrediction, Findings, Heatmap, Lesion, ModelRun, Study

#: 1.1 added ``study_source`` (readers of 1.0 ignore it; 1.0 files read with an empty one)
SCHEMA_VERSION = "1.1"
#: version of the ``study_source`` record itself (0: a bare path string some early files hold)
STUDY_SOURCE_VERSION = 1


def _plain(value: Any) -> Any:
    """Turn numpy scalars/arrays and tuples into JSON-friendly Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------------------------
# study_source: where the study came from
# --------------------------------------------------------------------------------------------


def _absolute(path: str | os.PathLike[str]) -> str:
    """An absolute path without resolving symlinks (a linked data folder keeps its name)."""
    return os.path.abspath(os.fspath(path))


def _recorded_paths(study: Study) -> list[str]:
    """The path(s) ``load_study`` was given for this study, as far as Study.source/meta tell."""
    from .export import source_path_text

    meta = study.meta or {}
    layout = meta.get("layout")
    if layout == "case-folder" and meta.get("case_folder"):
        return [_absolute(meta["case_folder"])]
    files = meta.get("source_files") or meta.get("files") or []
    if layout == "mama-mia" and files:
        return [_absolute(Path(files[0]).parent)]  # <root>/images/<case>: times come from <root>
    if meta.get("format") == "nifti" and files:
        return [_absolute(f) for f in files]
    text = source_path_text(study)  # "DICOM <path>" -> "<path>"; "DICOM (3 files)" has none
    if text and not files and Path(text).exists():
        return [_absolute(text)]
    return [_absolute(f) for f in files]


def _phantom_recipe(study: Study) -> dict[str, Any] | None:
    """What ``phantom.generate_case`` needs to build this in-memory phantom study again."""
    meta = study.meta or {}
    if meta.get("phantom_seed") is None or not str(study.source).startswith("phantom:"):
        return None
    exam = str(meta.get("exam") or "baseline")
    recipe: dict[str, Any] = {
        "seed": int(meta["phantom_seed"]),
        "exam": exam,
        "protocol": study.protocol.kind,
        "orientation": str(meta.get("orientation") or "axial"),
        "shape": list(study.shape),
        "spacing_mm": [round(float(s), 6) for s in study.spacing],
        # the follow-up is rendered from its baseline's case: record the baseline's id
        "case_id": str(meta.get("case_id", "")).removesuffix("_fu" if exam == "follow_up" else ""),
    }
    # options generate_case took that the study does not show (n_lesions, cancer, motion), when the
    # phantom records them; without them the pixel sums below still catch a different case
    if isinstance(meta.get("generator_kwargs"), dict):
        recipe["kwargs"] = _plain(meta["generator_kwargs"])
    return recipe


def study_source_record(study: Study) -> dict[str, Any]:
    """Where ``study`` came from, as findings.json's ``study_source`` records it (JSON-ready).

    ``kind`` is the loader's format (dicom, nifti, case-folder, duke, mama-mia), "pacs" for a study
    retrieved from a DICOMweb server, "phantom" for an in-memory phantom (rebuilt from ``phantom``,
    its seed and grid), or "memory" when nothing can reload it. ``paths`` are absolute; the writer
    adds ``relative_paths`` (from the findings.json folder) so a moved project folder still
    resolves. ``data_sums`` (one float64 sum per phase) let a reload check it got the same pixels.
    """
    meta = study.meta or {}
    record: dict[str, Any] = {
        "version": STUDY_SOURCE_VERSION,
        "kind": "memory",
        "description": str(study.source or ""),
        "paths": [],
        "study_uid": study.study_uid,
        "series_uids": list(study.series_uids),
        "phase_labels": list(study.phase_labels),
        "data_sums": [float(np.sum(phase, dtype=np.float64)) for phase in study.data],
        "demo": bool(meta.get("demo") or meta.get("demo_label") or DEMO_LABEL in str(study.source)),
    }
    recipe = _phantom_recipe(study)
    if recipe is not None:
        record.update(kind="phantom", phantom=recipe)
        return record
    paths = _recorded_paths(study)
    if paths:
        record.update(kind=str(meta.get("layout") or meta.get("format") or "path"), paths=paths)
    if meta.get("pacs_url"):
        record.update(kind="pacs", pacs={"url": str(meta["pacs_url"]), "study_uid": study.study_uid})
    return record


def withhold_study_source(findings: Findings) -> None:
    """Drop from ``findings`` what says where and whose the study was: the paths (a folder name
    may hold a patient's name), the description, the PACS address and the study and series UIDs.

    Why: findings.json is shared for teaching and second opinions, and the report already hides
    the source path unless asked. Kept: the phase labels and the per-phase pixel sums, which
    identify nobody and let ``breastmri export --study PATH`` check that it was given the same study.
    """
    record = dict(findings.study_source or {})
    findings.study_source = {
        "version": STUDY_SOURCE_VERSION,
        "kind": "withheld",
        "phase_labels": list(record.get("phase_labels") or []),
        "data_sums": list(record.get("data_sums") or []),
        "demo": bool(record.get("demo")),
    }
    findings.study_uid = None


def read_study_source(value: Any) -> dict[str, Any]:
    """A ``study_source`` as read from any findings.json: {} when absent (schema 1.0), a bare path
    string (early files) as a version-0 record, a dict as it is."""
    if not value:
        return {}
    if isinstance(value, (str, list)):
        paths = [value] if isinstance(value, str) else [str(v) for v in value]
        return {"version": 0, "kind": "path", "paths": paths, "description": ", ".join(paths)}
    if isinstance(value, dict):
        return {"version": 0, **value}
    return {}


def _source_for_json(record: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """The record with ``relative_paths`` recomputed for the folder findings.json goes into."""
    out = _plain(dict(record))
    out.pop("relative_paths", None)
    if base_dir is not None and out.get("paths"):
        with contextlib.suppress(ValueError):  # another drive on Windows: no relative path exists
            out["relative_paths"] = [os.path.relpath(p, base_dir) for p in out["paths"]]
    return out


# --------------------------------------------------------------------------------------------
# Findings <-> JSON
# --------------------------------------------------------------------------------------------


def findings_to_dict(
    findings: Findings,
    heatmap_files: dict[int, str] | None = None,
    *,
    base_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """A JSON-ready dict. ``heatmap_files`` maps heatmap index -> file written beside the JSON;
    ``base_dir`` (the folder the JSON goes into) adds the study's path relative to it."""
    heatmap_files = heatmap_files or {}
    heatmaps = []
    for i, hm in enumerate(findings.heatmaps):
        heatmaps.append(
            _plain(
                {
                    "method": hm.method,
                    "target": hm.target,
                    "layer": hm.layer,
                    "model": hm.model,
                    "file": heatmap_files.get(i, hm.file),
                    "scores": hm.scores,
                    "phase_attribution": hm.phase_attribution,
                    "kinetics_share": hm.kinetics_share,
                }
            )
        )
    return {
        "schema_version": SCHEMA_VERSION,
        "disclaimer": _disclaimer(findings),
        "study_uid": findings.study_uid,
        "shape": list(findings.shape),
        "affine_zyx_to_lps": _plain(np.asarray(findings.affine)),
        "device": findings.device,
        "models": [_plain(asdict(m)) for m in findings.models],
        "lesions": [_plain(asdict(lesion)) for lesion in findings.lesions],
        "case_predictions": {
            target: _plain(
                {
                    "probabilities": pred.probabilities,
                    "intervals": {k: list(v) for k, v in pred.intervals.items()},
                    "top_class": pred.top_class,
                    "model": pred.model,
                    "method": pred.method,
                    "display_names": pred.display_names,
                }
            )
            for target, pred in findings.case_predictions.items()
        },
        "heatmaps": heatmaps,
        "warnings": list(findings.warnings),
        "study_source": _source_for_json(
            findings.study_source, Path(_absolute(base_dir)) if base_dir is not None else None
        ),
    }


def _disclaimer(findings: Findings) -> str:
    if any(m.demo for m in findings.models):
        return f"Produced by demo models: {DEMO_LABEL}."
    return "Research software - not a medical device."


def findings_from_dict(doc: dict[str, Any]) -> Findings:
    """Rebuild Findings (without arrays: label_mask and heatmap data stay on disk)."""
    lesions = [Lesion(**{k: v for k, v in les.items()}) for les in doc.get("lesions", [])]
    preds = {
        target: CasePrediction(
            target=target,
            probabilities=dict(p["probabilities"]),
            intervals={k: (float(v[0]), float(v[1])) for k, v in p.get("intervals", {}).items()},
            model=p.get("model", ""),
            method=p.get("method", ""),
            display_names=dict(p.get("display_names", {})),
        )
        for target, p in doc.get("case_predictions", {}).items()
    }
    affine = np.asarray(doc["affine_zyx_to_lps"], dtype=float)
    heatmaps = [
        Heatmap(
            data=np.zeros((0, 0, 0), np.float32),
            affine=affine,
            method=h["method"],
            target=h["target"],
            layer=h.get("layer", ""),
            model=h.get("model", ""),
            phase_attribution=h.get("phase_attribution", {}),
            scores=h.get("scores", {}),
            kinetics_share=h.get("kinetics_share", {}),
            file=h.get("file"),
        )
        for h in doc.get("heatmaps", [])
    ]
    return Findings(
        shape=tuple(doc["shape"]),
        affine=affine,
        lesions=lesions,
        case_predictions=preds,
        heatmaps=heatmaps,
        models=[ModelRun(**m) for m in doc.get("models", [])],
        device=doc.get("device", ""),
        warnings=list(doc.get("warnings", [])),
        study_uid=doc.get("study_uid", ""),
        study_source=read_study_source(doc.get("study_source")),
    )


def write_findings_json(
    findings: Findings,
    path: str | Path,
    heatmap_files: dict[int, str] | None = None,
    *,
    study: Study | None = None,
) -> Path:
    """Atomically write findings.json.

    ``study`` (the study the findings are about) is recorded as ``study_source`` when the findings
    do not carry a record yet, so a later export can reload it; ``findings`` is not modified.
    """
    if study is not None and not findings.study_source:
        findings = replace(findings, study_source=study_source_record(study))
    text = json.dumps(findings_to_dict(findings, heatmap_files, base_dir=Path(path).parent), indent=2)
    return _atomic.write_text(path, text)


def read_findings_json(path: str | Path) -> Findings:
    """Findings from findings.json of any schema version (arrays stay in their NIfTI files)."""
    return findings_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
