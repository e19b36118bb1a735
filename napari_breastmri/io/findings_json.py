"""findings.json: the Findings as JSON, the format the CLI, the report and exports share.

Arrays do not go into the JSON: the label mask and heatmaps are written beside it as NIfTI and
referenced by file name. The schema is documented in docs/findings-schema.md.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .. import _atomic
from ..types import DEMO_LABEL, CasePrediction, Findings, Heatmap, Lesion, ModelRun

SCHEMA_VERSION = "1.0"


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


def findings_to_dict(findings: Findings, heatmap_files: dict[int, str] | None = None) -> dict[str, Any]:
    """A JSON-ready dict. ``heatmap_files`` maps heatmap index -> file written beside the JSON."""
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
    )


def write_findings_json(
    findings: Findings, path: str | Path, heatmap_files: dict[int, str] | None = None
) -> Path:
    """Atomically write findings.json."""
    text = json.dumps(findings_to_dict(findings, heatmap_files), indent=2)
    return _atomic.write_text(path, text)


def read_findings_json(path: str | Path) -> Findings:
    return findings_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
