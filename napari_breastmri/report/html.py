"""report.html: one self-contained page a radiologist, a teacher or a tumour board can open anywhere.

What it holds (docs/report.md): the study (patient data only with ``show_phi=True``), an overview
MIP, per lesion its key image (pre, subtraction and MIP with box, mask outline and heatmap), its
kinetic curve, FTV and measurements; the case-level predictions with their intervals; the model
cards with their intended use; the disclaimer, and the demo label whenever a demo model ran. The
PNGs are embedded (base64) and also written beside the HTML under ``key_images/``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .. import _atomic
from ..errors import KineticsError
from ..geometry import orientation_label
from ..types import DEMO_LABEL, Findings, Heatmap, Lesion, ModelRun, Study
from . import figures

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1150px;color:#1b1b1b}
h1{margin-bottom:4px} h2{border-bottom:2px solid #1d3557;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}
th{background:#f1f4f8} .demo{background:#ffe8a3;border:2px solid #e0a800;padding:10px 14px;font-weight:600;margin:12px 0}
.disclaimer{background:#f6f6f6;border-left:4px solid #888;padding:8px 12px;font-size:14px}
.warn{color:#9a3412} .muted{color:#666;font-size:13px} img{max-width:100%} .lesion{margin-bottom:28px}
.row{display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _grid_table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


class _Images:
    """Collects PNGs: writes each under key_images/ and returns its embedded <img> tag."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.paths: list[Path] = []

    def add(self, name: str, png: bytes, alt: str) -> str:
        path = _atomic.write_bytes(self.folder / f"{name}.png", png)
        self.paths.append(path)
        return _img(png, alt)


def _subtraction(study: Study) -> tuple[np.ndarray, str]:
    """The early subtraction (post nearest 90 s minus pre): where lesions enhance most clearly."""
    try:
        from ..kinetics.maps import phase_indices

        _, early, _ = phase_indices(study.times)
    except (ImportError, KineticsError):
        early = 1
    early = min(max(early, 1), study.n_phases - 1)
    sub = np.subtract(study.data[early], study.data[0], dtype=np.float32)
    return sub, f"{study.phase_labels[early]} - {study.phase_labels[0]}"


def _kinetics_for(study: Study, findings: Findings, les: Lesion) -> tuple[Any, Any, str]:
    """(curve, ftv, note): the kinetics package's curve and FTV for a lesion, or why not."""
    try:
        from ..kinetics.ftv import ftv
        from ..kinetics.maps import curve
    except ImportError:
        return None, None, "kinetics package unavailable"
    try:
        return curve(study, findings.lesion_region(les)), ftv(study, list(les.bbox)), ""
    except KineticsError as err:
        return None, None, str(err)


def _heatmap_for(findings: Findings, les: Lesion) -> Heatmap | None:
    """A heatmap to overlay: one targeting this lesion, else the first with data on the grid."""
    usable = [
        h
        for h in findings.heatmaps
        if h.data is not None and np.asarray(h.data).shape == tuple(findings.shape)
    ]
    for h in usable:
        if h.target in (f"lesion-{les.id}", f"lesion {les.id}", str(les.id)):
            return h
    return usable[0] if usable else None


def _first_heatmap(findings: Findings) -> Heatmap | None:
    for h in findings.heatmaps:
        if h.data is not None and np.asarray(h.data).shape == tuple(findings.shape):
            return h
    return None


def _cards(models: list[ModelRun]) -> dict[str, Any]:
    """The model cards of the runs, read from the registry (missing cards are simply absent)."""
    out: dict[str, Any] = {}
    try:
        from ..models.registry import resolve
    except ImportError:
        return out
    for run in models:
        try:
            out[run.name] = resolve(f"{run.name}@{run.version}").card
        except Exception:  # a card we cannot read is shown as "not found"
            continue
    return out


def _phi_section(study: Study, show_phi: bool) -> str:
    if not show_phi:
        return (
            "<h2>Patient</h2><p class='muted'>Patient data hidden (run with --show-phi / "
            "show_phi=True to include name, ID, dates and the source path).</p>"
        )
    phi = asdict(study.phi)
    rows = [(k.replace("_", " "), v or "-") for k, v in phi.items()]
    rows += [("source", study.source or "-"), ("study UID", study.study_uid or "-")]
    rows.append(("case id", study.meta.get("case_id", "-")))
    return "<h2>Patient</h2>" + _table(rows)


def _redactor(study: Study, show_phi: bool):
    """A function that hides PHI in free text (warnings can quote paths and header values)."""
    if show_phi:
        return lambda text: text
    secrets = [v for v in asdict(study.phi).values() if v and len(str(v)) >= 3]
    from ..io.export import source_path_text

    source = source_path_text(study)
    if source:
        secrets += [source, *[part for part in Path(source).parts if len(part) >= 3 and part != "/"]]
    if study.study_uid:
        secrets.append(study.study_uid)
    secrets = sorted({str(s) for s in secrets}, key=len, reverse=True)

    def redact(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "(hidden)")
        return text

    return redact


def _study_section(study: Study, redact=lambda text: text) -> str:
    dz, dy, dx = study.spacing
    acq = study.acquisition
    rows = [
        ("grid (z, y, x)", f"{study.shape[0]} x {study.shape[1]} x {study.shape[2]}"),
        ("voxel (mm)", f"{dz:.2f} x {dy:.2f} x {dx:.2f}"),
        ("orientation", orientation_label(study.affine)),
        ("phases", ", ".join(f"{lab} ({t:.0f} s)" for lab, t in zip(study.phase_labels, study.times))),
        ("protocol", study.protocol.kind),
    ]
    if acq.field_strength_t or acq.repetition_time_ms:
        rows.append(
            (
                "acquisition",
                f"{_fmt(acq.field_strength_t, 1, ' T')}, TR {_fmt(acq.repetition_time_ms, 1, ' ms')}, "
                f"TE {_fmt(acq.echo_time_ms, 1, ' ms')}, FA {_fmt(acq.flip_angle_deg, 0, ' deg')}",
            )
        )
    html_out = "<h2>Study</h2>" + _table(rows)
    for warning in study.warnings:
        html_out += f"<p class='warn'>{_e(redact(warning))}</p>"
    return html_out


def _lesion_section(
    study: Study, findings: Findings, les: Lesion, sub: np.ndarray, sub_label: str, images: _Images
) -> str:
    curve, ftv, note = _kinetics_for(study, findings, les)
    key = images.add(
        f"lesion_{les.id}",
        figures.lesion_key_image(study, sub, sub_label, findings, les, _heatmap_for(findings, les)),
        f"lesion {les.id} key image",
    )
    curve_html = f"<p class='muted'>No kinetic curve: {_e(note)}</p>"
    if curve is not None:
        std_pct = 100.0 * curve.std / curve.mean[0] if curve.mean[0] > 0 else None
        curve_html = images.add(
            f"curve_lesion_{les.id}",
            figures.kinetic_curve(
                curve.times,
                curve.enhancement_pct,
                std_pct,
                curve.curve_type,
                f"lesion {les.id}: {curve.curve_type}",
            ),
            f"lesion {les.id} kinetic curve",
        )
    z0, y0, x0, z1, y1, x1 = les.bbox
    rows = [
        ("status", les.status),
        ("proposed by", les.source or "-"),
        ("score", f"{les.score:.2f}"),
        ("box (z, y, x voxels)", f"[{z0}:{z1}, {y0}:{y1}, {x0}:{x1}]"),
        ("volume", _fmt(les.volume_ml, 2, " ml")),
        ("diameters", ", ".join(f"{d:.1f}" for d in les.diameters_mm) + " mm" if les.diameters_mm else "-"),
        ("curve type (model)", les.curve_type or "-"),
    ]
    if curve is not None:
        rows.append(
            ("curve type (mean of region)", f"{curve.curve_type}, peak {curve.enhancement_pct.max():.0f} %")
        )
    if ftv is not None:
        shares = ", ".join(f"{k} {v * 100:.0f}%" for k, v in ftv.share.items() if v > 0)
        rows.append(
            ("FTV in box (PE >= 70 %)", f"{ftv.volume_ml:.2f} ml ({shares or 'no enhancing voxels'})")
        )
    return (
        f"<div class='lesion'><h3>Lesion {les.id}</h3>{key}"
        f"<div class='row'><div>{_table(rows)}</div><div>{curve_html}</div></div></div>"
    )


def _predictions_section(findings: Findings, images: _Images) -> str:
    if not findings.case_predictions:
        return ""
    parts = [
        "<h2>Case-level predictions</h2><p class='muted'>Bars: probability; whiskers: the interval "
        "the model's uncertainty method gives (e.g. 5th-95th percentile of MC-dropout passes).</p>"
    ]
    for target, pred in findings.case_predictions.items():
        parts.append(
            images.add(f"prediction_{target}", figures.prediction_bars(pred), f"{target} probabilities")
        )
        top = pred.display_names.get(pred.top_class, pred.top_class)
        lo, hi = pred.intervals.get(pred.top_class, (None, None))
        interval = f" (interval {lo:.2f}-{hi:.2f})" if lo is not None else ""
        parts.append(
            f"<p><b>{_e(target)}</b>: {_e(top)} {pred.probabilities[pred.top_class]:.2f}{_e(interval)}"
            f" - {_e(pred.method or 'single pass')}</p>"
        )
    return "".join(parts)


def _models_section(findings: Findings, cards: dict[str, Any]) -> str:
    if not findings.models:
        return "<h2>Models</h2><p class='muted'>No model ran: these findings are a reader's or the ground truth.</p>"
    parts = ["<h2>Models</h2>"]
    for run in findings.models:
        card = cards.get(run.name)
        rows = [
            ("version", run.version),
            ("task / target", f"{run.task} / {run.target}"),
            ("device", run.device),
            ("time", f"{run.seconds:.1f} s"),
            ("demo", DEMO_LABEL if run.demo else "no"),
        ]
        if card is not None:
            rows.append(("intended use", card.intended_use or "-"))
            if card.description:
                rows.append(("description", card.description))
            data = card.training.get("data") if isinstance(card.training, dict) else None
            rows.append(("trained on", data or "-"))
            if card.metrics:
                rows.append(("measured metrics", ", ".join(f"{k}: {v}" for k, v in card.metrics.items())))
        else:
            rows.append(("intended use", "model card not found in the registry"))
        for note in run.notes:
            rows.append(("note", note))
        parts.append(f"<h3>{_e(run.name)}</h3>" + _table(rows))
    return "".join(parts)


def _heatmaps_section(findings: Findings) -> str:
    if not findings.heatmaps:
        return ""
    rows = []
    for h in findings.heatmaps:
        scores = ", ".join(f"{k} {v:.2f}" for k, v in h.scores.items()) or "-"
        phases = ", ".join(f"{k} {v * 100:.0f}%" for k, v in h.phase_attribution.items()) or "-"
        rows.append([h.method, h.target, h.layer, h.model, scores, phases])
    return "<h2>Heatmaps</h2>" + _grid_table(
        ["method", "target", "layer", "model", "faithfulness", "evidence by phase"], rows
    )


def _box_hit(box: list[int], les: Lesion) -> bool:
    """True when the reported lesion's box centre lies in the truth box (or vice versa)."""

    def centre(b):
        return [(b[i] + b[i + 3]) / 2 for i in range(3)]

    def inside(p, b):
        return all(b[i] <= p[i] <= b[i + 3] for i in range(3))

    return inside(centre(les.bbox), box) or inside(centre(box), les.bbox)


def _truth_section(findings: Findings, truth: dict | None) -> str:
    if not truth:
        return ""
    reported = [les for les in findings.lesions if les.status != "rejected"]
    rows = []
    for item in truth.get("lesions", []):
        hit = any(_box_hit(list(item["bbox"]), les) for les in reported)
        rows.append(
            [
                item.get("id"),
                item.get("type", "-"),
                item.get("malignant", "-"),
                item.get("curve_type", "-"),
                _fmt(item.get("volume_ml"), 2, " ml"),
                "found" if hit else "MISSED",
            ]
        )
    out = "<h2>Ground truth (phantom)</h2>" + _grid_table(
        ["id", "type", "malignant", "curve", "volume", "detected"], rows
    )
    labels = truth.get("labels") or {}
    if labels:
        lab_rows = []
        for target, value in labels.items():
            pred = findings.case_predictions.get(target)
            lab_rows.append(
                [
                    target,
                    "-" if value is None else value,
                    pred.top_class if pred else "-",
                    f"{pred.probabilities.get(str(value), 0.0):.2f}" if pred else "-",
                ]
            )
        out += _grid_table(["target", "truth", "predicted", "p(truth)"], lab_rows)
    return out


def write_report(
    study: Study,
    findings: Findings,
    out_dir: str | os.PathLike[str],
    show_phi: bool = False,
    truth: dict | None = None,
    *,
    cards: dict[str, Any] | None = None,
    title: str = "Breast DCE-MRI report",
) -> Path:
    """Write ``out_dir/report.html`` (self-contained) and ``out_dir/key_images/*.png``; return the HTML.

    ``truth`` (a phantom's truth.json content) adds a ground-truth comparison. ``cards`` maps model
    name -> ModelCard when the caller has them; otherwise they are looked up in the registry.
    """
    out = Path(out_dir)
    images = _Images(out / "key_images")
    demo = any(run.demo for run in findings.models)
    cards = cards if cards is not None else _cards(findings.models)
    sub, sub_label = _subtraction(study)
    reported = [les for les in findings.lesions if les.status != "rejected"]
    body = [f"<h1>{_e(title)}</h1>"]
    body.append(
        f"<p class='muted'>Generated {_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M UTC} by napari-breastmri.</p>"
    )
    if demo:
        body.append(f"<div class='demo'>Demo model output - {_e(DEMO_LABEL)}.</div>")
    body.append(
        "<div class='disclaimer'>Research software, not a medical device: findings are proposals for a "
        "qualified reader to check, not a diagnosis.</div>"
    )
    body.append(_phi_section(study, show_phi))
    redact = _redactor(study, show_phi)
    body.append(_study_section(study, redact))
    body.append("<h2>Overview</h2>")
    body.append(
        images.add(
            "overview_mip",
            figures.overview_mip(study, sub, sub_label, reported, _first_heatmap(findings)),
            "overview MIP",
        )
    )
    body.append(f"<h2>Lesions ({len(reported)})</h2>")
    if not reported:
        body.append("<p>No lesion reported.</p>")
    for les in reported:
        body.append(_lesion_section(study, findings, les, sub, sub_label, images))
    body.append(_predictions_section(findings, images))
    body.append(_heatmaps_section(findings))
    body.append(_truth_section(findings, truth))
    body.append(_models_section(findings, cards))
    for warning in findings.warnings:
        body.append(f"<p class='warn'>{_e(redact(warning))}</p>")
    if demo:
        body.append(f"<div class='demo'>{_e(DEMO_LABEL)}</div>")
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>"
    )
    return _atomic.write_text(out / "report.html", page)
