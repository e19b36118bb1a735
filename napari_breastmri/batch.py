"""``breastmri batch CASE... --out DIR``: analyse a cohort on Dask, one case per task.

Why Dask distributed: the same command runs on a laptop (a LocalCluster of worker *processes*,
one thread each, so torch and BLAS do not fight over cores) and on an existing cluster
(``--scheduler tcp://HOST:8786``), and ``as_completed`` lets each result be written the moment its
case finishes. A cohort run must survive its worst case, so:

* every case writes into ``DIR/<case_id>/`` atomically, with ``result.json`` inside: a case
  whose folder exists is complete, and a re-run skips it (resumable);
* a case that fails is recorded (status "failed", its error in the cohort CSV and the traceback in
  ``DIR/failed/<case_id>.txt``) and does not stop the others; a re-run tries it again;
* ``DIR/cohort.csv`` (one row per case) is rewritten after every finished case.

When the cases carry truth (phantom ``truth.json``) or a labels CSV is given, ``DIR/metrics.json``
and plots under ``DIR/metrics/`` give lesion sensitivity and false positives per case, Dice, AUCs and
calibration (scikit-learn).

The task is any importable function ``task(case, out_dir, options) -> dict`` (a dotted
"module:function" name travels to workers as text); the default, :func:`analyze_case`, runs the
same core as ``breastmri analyze``.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import io
import json
import os
import time
import traceback
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _atomic, progress
from .errors import BreastMRIError
from .types import Progress

DEFAULT_TASK = "napari_breastmri.batch:analyze_case"
RESULT_FILE = "result.json"
BASE_COLUMNS = [
    "case_id",
    "case",
    "status",
    "seconds",
    "cpu_seconds",
    "worker",
    "n_lesions",
    "n_truth",
    "found",
    "false_positives",
    "dice",
    "error",
]

Task = Callable[[str, Path, dict[str, Any]], dict[str, Any]]


# --------------------------------------------------------------------------------------------
# the work of one case (runs on a worker)
# --------------------------------------------------------------------------------------------


def resolve_task(task: str | Task) -> Task:
    """A callable from "package.module:function" (or the callable itself)."""
    if callable(task):
        return task
    module, _, name = str(task).partition(":")
    if not name:
        raise BreastMRIError(f"A batch task is 'module:function', got {task!r}.")
    return getattr(importlib.import_module(module), name)


def _prediction_columns(findings: Any) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for target, pred in findings.case_predictions.items():
        row[f"top:{target}"] = pred.top_class
        for cls, p in pred.probabilities.items():
            row[f"p:{target}:{cls}"] = round(float(p), 6)
    return row


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two binary masks (1.0 when both are empty), the same definition as MONAI's DiceMetric."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    total = int(p.sum()) + int(t.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(p, t).sum()) / total


def truth_columns(findings: Any, truth: dict | None, mask: np.ndarray | None) -> dict[str, Any]:
    """Per-case truth comparison: lesions found, false positives, Dice, and the truth labels.

    A truth lesion is found when a reported lesion's box overlaps it enough
    (``training.metrics.box_hits``, the rule the models are trained and evaluated with); reported
    lesions that match no truth lesion are false positives.
    """
    if truth is None:
        return {}
    from .training.metrics import box_hits  # numpy only; its dice() would import MONAI in every worker

    reported = [les for les in findings.lesions if les.status != "rejected"]
    truth_lesions = truth.get("lesions", [])
    used: set[int] = set()
    found = 0
    for t in truth_lesions:
        hits = [les for les in reported if box_hits(les.bbox, t["bbox"])]
        found += bool(hits)
        used.update(les.id for les in hits)
    row: dict[str, Any] = {
        "n_truth": len(truth_lesions),
        "found": found,
        "false_positives": len([les for les in reported if les.id not in used]),
    }
    if mask is not None and findings.label_mask is not None:
        keep = [les.label for les in reported if les.label]
        row["dice"] = round(dice(np.isin(findings.label_mask, keep), np.asarray(mask) > 0), 4)
    for target, value in (truth.get("labels") or {}).items():
        row[f"truth:{target}"] = "" if value is None else value
    return row


def analyze_case(case: str, out_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """The default task: load, run the model packages, write what ``breastmri analyze`` writes.

    Options: ``models`` (names/paths; default the shipped packages), ``device`` (default "cpu"
    in a batch: GPUs are shared by workers only when asked), ``explain`` (a CAM method or None),
    ``report`` (also write report.html), ``threads`` (torch threads per worker, default 1).
    """
    import torch

    from .inference.cli import resolve_packages, write_outputs
    from .inference.pipeline import analyze
    from .io import load_study
    from .io.export import load_case_truth

    torch.set_num_threads(int(options.get("threads", 1)))
    study = load_study(case)
    pkgs = resolve_packages(options.get("models"))
    findings = progress.run(
        analyze(study, pkgs, device=options.get("device", "cpu"), explain=options.get("explain"))
    )
    write_outputs(study, findings, out_dir)
    truth, mask = load_case_truth(case, study)
    if options.get("report"):
        from .report import write_report

        cards = {p.card.name: p.card for p in pkgs if hasattr(p, "card")}
        write_report(study, findings, out_dir, show_phi=False, truth=truth, cards=cards)
    return {
        "n_lesions": len(findings.lesions),
        **truth_columns(findings, truth, mask),
        **_prediction_columns(findings),
    }


def truth_case(case: str, out_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """A task that reports the phantom truth as findings: checks a cohort and its exports without models."""
    from .io import load_study
    from .io.export import export_json, findings_from_truth, load_case_truth

    study = load_study(case)
    truth, mask = load_case_truth(case, study)
    findings = findings_from_truth(study, truth, mask)
    export_json(findings, out_dir)
    return {"n_lesions": len(findings.lesions), **truth_columns(findings, truth, mask)}


def kinetics_case(case: str, out_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """A model-free task: kinetic maps (PE, SER, curve types) as NIfTI and the whole-study FTV.

    What a cohort study of enhancement needs, and a CPU-bound case job that runs with no model
    installed (the batch benchmark uses it when no model package is shipped).
    """
    from .io import load_study
    from .io.nifti import save_volume
    from .kinetics.ftv import ftv
    from .kinetics.maps import enhancement_maps

    study = load_study(case)
    maps = enhancement_maps(study, threads=False)
    for name in ("pe", "ser", "curve_type"):
        save_volume(np.asarray(maps[name]), study.affine, out_dir / f"{name}.nii.gz")
    result = ftv(study)
    curve = np.asarray(maps["curve_type"])
    shares = {
        n: float(np.mean(curve[curve > 0] == v)) if (curve > 0).any() else 0.0
        for v, n in ((1, "persistent"), (2, "plateau"), (3, "washout"))
    }
    return {"ftv_ml": round(result.volume_ml, 3), **{f"share:{k}": round(v, 4) for k, v in shares.items()}}


def run_case(
    task: str | Task, case: str, case_id: str, out_root: str, options: dict[str, Any]
) -> dict[str, Any]:
    """Run one case into ``out_root/case_id`` atomically; never raises (a failure is a row)."""
    import socket

    start, cpu = time.perf_counter(), time.process_time()
    target = Path(out_root) / case_id
    row: dict[str, Any] = {
        "case_id": case_id,
        "case": case,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }
    try:
        func = resolve_task(task)
        with _atomic.atomic_dir(target) as tmp:
            row.update(func(case, tmp, dict(options)))
            row.update(status="done", seconds=round(time.perf_counter() - start, 3), error="")
            row["cpu_seconds"] = round(time.process_time() - cpu, 3)
            _atomic.write_text(tmp / RESULT_FILE, json.dumps(row, indent=2, default=str))
        (Path(out_root) / "failed" / f"{case_id}.txt").unlink(missing_ok=True)
    except Exception as err:  # a failing case must not stop the cohort: it becomes a row
        row.update(
            status="failed",
            seconds=round(time.perf_counter() - start, 3),
            error=f"{type(err).__name__}: {err}",
        )
        _atomic.write_text(Path(out_root) / "failed" / f"{case_id}.txt", traceback.format_exc())
    return row


# --------------------------------------------------------------------------------------------
# the cohort (runs on the client)
# --------------------------------------------------------------------------------------------


def case_ids(cases: Sequence[str]) -> list[str]:
    """A folder-safe, unique id per case: its folder (or file stem) name, numbered when repeated."""
    ids: list[str] = []
    seen: dict[str, int] = {}
    for case in cases:
        path = Path(case)
        base = path.name
        for suffix in (".nii.gz", ".nii", ".dcm", ".zip"):
            base = base.removesuffix(suffix)
        base = "".join(c if c.isalnum() or c in "-_." else "_" for c in base) or "case"
        n = seen.get(base, 0)
        seen[base] = n + 1
        ids.append(base if n == 0 else f"{base}_{n + 1}")
    return ids


@dataclass
class BatchResult:
    """What a cohort run produced: one row per case and the files written."""

    rows: list[dict[str, Any]]
    out_dir: Path
    cohort_csv: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def n_failed(self) -> int:
        return sum(r.get("status") == "failed" for r in self.rows)


def write_cohort_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """One row per case; prediction/truth columns after the fixed ones, in a stable order."""
    extra = sorted({k for r in rows for k in r} - set(BASE_COLUMNS))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=BASE_COLUMNS + extra, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k, "") for k in BASE_COLUMNS + extra})
    return _atomic.write_text(path, buf.getvalue())


def read_labels_csv(path: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """case_id -> {target: label} from a CSV with a "case_id" or "Patient ID" column."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        key = next(
            (k for k in ("case_id", "Patient ID", "patient_id", "case") if k in (reader.fieldnames or [])),
            None,
        )
        if key is None:
            raise BreastMRIError(f"The labels CSV {path} needs a 'case_id' or 'Patient ID' column.")
        return {row[key]: {k: v for k, v in row.items() if k != key} for row in reader}


def _client(workers: int, scheduler: str | None, processes: bool):
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler), None
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=None, silence_logs=40
    )
    return Client(cluster), cluster


def run_batch(
    cases: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    task: str | Task = DEFAULT_TASK,
    workers: int = 2,
    scheduler: str | None = None,
    labels_csv: str | os.PathLike[str] | None = None,
    options: dict[str, Any] | None = None,
    processes: bool = True,
) -> Generator[Progress, None, BatchResult]:
    """Run ``task`` over ``cases`` on Dask; yields Progress per finished case, returns a BatchResult."""
    from distributed import as_completed

    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases = [str(c) for c in cases]
    ids = case_ids(cases)
    rows: dict[str, dict[str, Any]] = {}
    todo: list[tuple[str, str]] = []
    for case, cid in zip(cases, ids):
        done = out / cid / RESULT_FILE
        if done.is_file():
            rows[cid] = {**json.loads(done.read_text(encoding="utf-8")), "status": "skipped"}
        else:
            todo.append((case, cid))
    csv_path = out / "cohort.csv"
    n = len(cases)
    yield Progress(
        "batch", (n - len(todo)) / max(n, 1), f"{n - len(todo)} of {n} already done; {len(todo)} to run"
    )
    if todo:
        client, cluster = _client(workers, scheduler, processes)
        try:
            keys = {f"case-{cid}-{time.time_ns()}": cid for _, cid in todo}
            futures = [
                client.submit(run_case, task, case, cid, str(out), options or {}, key=key, pure=False)
                for (case, cid), key in zip(todo, keys)
            ]
            for future in as_completed(futures):
                try:
                    row = future.result()
                except Exception as err:  # the worker itself died (KilledWorker ...): still a row
                    error = f"{type(err).__name__}: {err}"
                    row = {"case_id": keys[future.key], "case": "", "status": "failed", "error": error}
                rows[row["case_id"]] = row
                write_cohort_csv([rows[c] for c in ids if c in rows], csv_path)
                finished = len(rows)
                yield Progress("batch", finished / n, f"{row['case_id']}: {row['status']} ({finished}/{n})")
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    ordered = [rows[c] for c in ids if c in rows]
    write_cohort_csv(ordered, csv_path)
    labels = read_labels_csv(labels_csv) if labels_csv else None
    from .report.cohort import cohort_metrics

    metrics = cohort_metrics(ordered, out, labels)
    yield Progress("batch", 1.0, f"{sum(r['status'] != 'failed' for r in ordered)}/{n} cases ok")
    return BatchResult(ordered, out, csv_path, metrics, time.perf_counter() - start)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cases", nargs="+", help="case folders / files (anything 'breastmri analyze' reads)")
    parser.add_argument("--out", required=True, help="output folder (one sub-folder per case, cohort.csv)")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (default 2)")
    parser.add_argument("--scheduler", help="address of an existing Dask scheduler, e.g. tcp://10.0.0.5:8786")
    parser.add_argument(
        "--labels", help="CSV of case labels (case_id or 'Patient ID' + one column per target)"
    )
    parser.add_argument("--models", nargs="+", help="model packages (default: the shipped ones)")
    parser.add_argument("--device", default="cpu", help="device for each worker (default cpu)")
    parser.add_argument("--explain", help="CAM method for heatmaps (default: none in a batch)")
    parser.add_argument("--report", action="store_true", help="also write report.html per case")
    parser.add_argument("--task", default=DEFAULT_TASK, help="module:function run per case (default analyze)")


def run(args: argparse.Namespace) -> int:
    options = {"models": args.models, "device": args.device, "explain": args.explain, "report": args.report}
    result = progress.run(
        run_batch(
            args.cases,
            args.out,
            task=args.task,
            workers=args.workers,
            scheduler=args.scheduler,
            labels_csv=args.labels,
            options=options,
        ),
        progress.tqdm_printer("batch"),
    )
    for row in result.rows:
        if row.get("status") == "failed":
            print(f"failed: {row['case_id']}: {row.get('error', '')}")
    print(
        f"{len(result.rows) - result.n_failed}/{len(result.rows)} cases ok in {result.seconds:.1f} s; {result.cohort_csv}"
    )
    for key in ("lesion_sensitivity", "false_positives_per_case", "dice_mean"):
        if key in result.metrics:
            value = result.metrics[key]
            print(f"{key}: {'-' if value is None else f'{value:.3f}'}")
    for target, m in result.metrics.get("targets", {}).items():
        if m.get("auc") is not None:
            print(f"{target}: AUC {m['auc']:.3f}, n={m['n']}")
    return 1 if result.n_failed else 0
