"""A cohort on a real Dask LocalCluster (worker processes): one broken case, resume, metrics, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from napari_breastmri import batch, progress
from napari_breastmri.types import CasePrediction

pytestmark = pytest.mark.slow

TASK = "tests.integration.test_batch_cohort:noisy_task"


def noisy_task(case: str, out_dir: Path, options: dict) -> dict:
    """A stand-in model with known mistakes (runs on a Dask worker, imported by name).

    It reports the phantom truth except that it misses the last truth lesion of every case and adds
    one false-positive box, and it says p(pcr) = 0.8 for cases whose id ends in an even digit.
    """
    from napari_breastmri.io import load_study
    from napari_breastmri.io.export import export_json, findings_from_truth, load_case_truth

    study = load_study(case)
    truth, mask = load_case_truth(case, study)
    findings = findings_from_truth(study, truth, mask)
    if findings.lesions:
        missed = findings.lesions.pop()
        if findings.label_mask is not None and missed.label:
            findings.label_mask[findings.label_mask == missed.label] = 0
    fp = findings_from_truth(study, {"lesions": [{"id": 99, "bbox": [0, 0, 0, 2, 3, 3]}]}, None).lesions[0]
    findings.lesions.append(fp)
    p = 0.8 if int(Path(case).name[-1]) % 2 == 0 else 0.3
    findings.case_predictions["pcr"] = CasePrediction("pcr", {"no_pcr": 1 - p, "pcr": p}, model="noisy@1")
    export_json(findings, out_dir)
    row = {"n_lesions": len(findings.lesions), **batch.truth_columns(findings, truth, mask)}
    row.update({"p:pcr:pcr": p, "p:pcr:no_pcr": 1 - p})
    return row


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from napari_breastmri.phantom.write import write_cohort

    root = tmp_path_factory.mktemp("cohort")
    folders = progress.run(write_cohort(3, 11, root / "cases", shape=(12, 40, 40)))
    broken = root / "cases" / "broken_case"
    broken.mkdir()
    (broken / "IM0001.dcm").write_bytes(b"DICM" + b"\x00" * 64)  # not DICOM at all
    labels = root / "labels.csv"
    with open(labels, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Patient ID", "pcr"])
        for i, folder in enumerate(folders):  # truth: cases 0 and 1 reached pCR
            writer.writerow([folder.name, "pcr" if i in (0, 1) else "no_pcr"])
    return {"cases": [str(f) for f in folders] + [str(broken)], "labels": labels, "root": root}


@pytest.fixture(scope="module")
def first_run(cohort: dict) -> tuple[Path, batch.BatchResult]:
    out = cohort["root"] / "run"
    result = progress.run(
        batch.run_batch(cohort["cases"], out, task=TASK, workers=2, labels_csv=cohort["labels"])
    )
    return out, result


def test_batch_survives_a_broken_case(first_run: tuple[Path, batch.BatchResult], cohort: dict) -> None:
    out, result = first_run
    by_id = {r["case_id"]: r for r in result.rows}
    assert [r["case_id"] for r in result.rows] == batch.case_ids(cohort["cases"])
    assert by_id["broken_case"]["status"] == "failed" and by_id["broken_case"]["error"]
    assert sum(r["status"] == "done" for r in result.rows) == 3
    assert not (out / "broken_case").exists()  # nothing half-written for the failed case
    assert "Traceback" in (out / "failed" / "broken_case.txt").read_text()
    for cid, row in by_id.items():
        if row["status"] == "done":
            assert json.loads((out / cid / "result.json").read_text())["case_id"] == cid
            assert (out / cid / "findings.json").is_file()
    with open(result.cohort_csv, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["case_id"] for r in table] == [r["case_id"] for r in result.rows]
    assert table[-1]["status"] == "failed" and table[-1]["error"]


def test_batch_metrics(first_run: tuple[Path, batch.BatchResult]) -> None:
    """Every case misses exactly one truth lesion and has one false positive; pCR AUC is known."""
    out, result = first_run
    m = json.loads((out / "metrics.json").read_text())
    done = [r for r in result.rows if r["status"] == "done"]
    n_truth = sum(r["n_truth"] for r in done)
    with_lesions = sum(r["n_truth"] > 0 for r in done)
    assert m["lesion_sensitivity"] == pytest.approx((n_truth - with_lesions) / n_truth)
    assert m["false_positives_per_case"] == pytest.approx(1.0)
    assert 0.0 < m["dice_mean"] < 1.0
    # labels CSV: cases 0 and 1 are pCR; the model says 0.8 for cases 0 and 2, 0.3 for 1 -> AUC (0.5 + 0) / 2
    assert m["targets"]["pcr"]["n"] == 3
    assert m["targets"]["pcr"]["auc"] == pytest.approx(0.25)
    assert {"metrics/detection.png", "metrics/pcr.png"} <= set(m["plots"])
    assert all((out / p).read_bytes().startswith(b"\x89PNG") for p in m["plots"])


def test_batch_cli_resumes(
    first_run: tuple[Path, batch.BatchResult], cohort: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    """Completed cases are skipped untouched; the broken one is tried again and fails again."""
    from napari_breastmri.cli import main

    out, result = first_run
    done = [r["case_id"] for r in result.rows if r["status"] == "done"]
    stamps = {cid: (out / cid / "result.json").stat().st_mtime_ns for cid in done}
    rc = main(["batch", *cohort["cases"], "--out", str(out), "--workers", "1", "--task", TASK])
    printed = capsys.readouterr().out
    assert rc == 1  # a case failed
    assert "failed: broken_case" in printed and "3/4 cases ok" in printed
    assert stamps == {cid: (out / cid / "result.json").stat().st_mtime_ns for cid in done}
    with open(out / "cohort.csv", newline="") as fh:
        assert [r["status"] for r in csv.DictReader(fh)] == ["skipped"] * 3 + ["failed"]


def test_a_batch_case_folder_exports_without_study(
    first_run: tuple[Path, batch.BatchResult], tmp_path: Path
) -> None:
    """Each case's findings.json records its case folder (relative paths computed in the atomic
    temporary folder stay right after the rename), so its SR exports with no --study."""
    from napari_breastmri.cli import main
    from napari_breastmri.io.findings_json import read_findings_json

    out, result = first_run
    cid = next(r["case_id"] for r in result.rows if r["status"] == "done")
    record = read_findings_json(out / cid / "findings.json").study_source
    assert record["kind"] == "case-folder" and Path(record["paths"][0]).name == cid
    assert (out / cid / record["relative_paths"][0]).resolve() == Path(record["paths"][0]).resolve()
    assert main(["export", str(out / cid), "--format", "sr", "--out", str(tmp_path / "sr")]) == 0
    assert (tmp_path / "sr" / "sr.dcm").is_file() and not (tmp_path / "sr" / "source_dicom").exists()


def test_case_ids_are_unique_and_safe() -> None:
    assert batch.case_ids(["/a/x", "/b/x", "/c/case 1.nii.gz", "/d/y.dcm"]) == ["x", "x_2", "case_1", "y"]


def test_metrics_from_rows(tmp_path: Path) -> None:
    from napari_breastmri.report.cohort import cohort_metrics

    rows = [
        {
            "case_id": "a",
            "status": "done",
            "n_truth": 2,
            "found": 2,
            "false_positives": 0,
            "dice": 0.8,
            "truth:subtype": "luminal_a",
            "p:subtype:luminal_a": 0.7,
            "p:subtype:her2_enriched": 0.3,
        },
        {
            "case_id": "b",
            "status": "done",
            "n_truth": 1,
            "found": 0,
            "false_positives": 2,
            "dice": 0.0,
            "truth:subtype": "her2_enriched",
            "p:subtype:luminal_a": 0.4,
            "p:subtype:her2_enriched": 0.6,
        },
        {"case_id": "c", "status": "failed", "error": "boom"},
    ]
    m = cohort_metrics(rows, tmp_path)
    assert m["lesion_sensitivity"] == pytest.approx(2 / 3)
    assert m["false_positives_per_case"] == pytest.approx(1.0)
    assert m["dice_mean"] == pytest.approx(0.4)
    assert m["failed"] == 1
    sub = m["targets"]["subtype"]
    assert sub["accuracy"] == 1.0 and sub["auc"] == pytest.approx(1.0)
    assert np.isfinite(sub["ece"])


def test_batch_runs_the_real_analyze_core(tmp_path: Path) -> None:
    """The default task: load, the model pipeline (toy packages), analyze's files, the report."""
    import torch

    from napari_breastmri.models.package import save_package
    from tests.integration.test_analyze_cli import _write_case
    from tests.unit.test_models_helpers import MeanClassifier, cls_card, threshold_package

    seg = threshold_package(
        tmp_path / "pk", spacing_mm=[1.5, 1.2, 1.2], orientation="axial", patch_size=[16, 32, 32]
    )
    cls = save_package(
        tmp_path / "pk" / "cls", cls_card("mc_dropout", 5), MeanClassifier(), fmt="torchscript"
    )
    case, _ = _write_case(tmp_path)
    options = {"models": [str(seg.path), str(cls.path)], "report": True, "threads": torch.get_num_threads()}
    # threads, not processes: the workers share this process's torch instead of importing it again
    result = progress.run(
        batch.run_batch([case], tmp_path / "out", workers=1, processes=False, options=options)
    )
    (row,) = result.rows
    assert row["status"] == "done", row.get("error")
    assert row["n_lesions"] == 2 and row["found"] == row["n_truth"] == 2 and row["false_positives"] == 0
    assert row["dice"] > 0.8 and row["top:pcr"] in ("pcr", "no_pcr")
    out = tmp_path / "out" / "case"
    assert {"findings.json", "lesions.nii.gz", "report.html", "result.json"} <= {
        p.name for p in out.iterdir()
    }
    assert result.metrics["lesion_sensitivity"] == 1.0
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "toy-seg" in report and "model card not found" not in report  # cards came with the packages


def test_batch_on_an_existing_scheduler(cohort: dict, tmp_path: Path) -> None:
    """--scheduler ADDRESS: the batch connects to a running cluster and leaves it running."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        result = progress.run(
            batch.run_batch(
                cohort["cases"][:1],
                tmp_path / "sched",
                task="napari_breastmri.batch:truth_case",
                scheduler=cluster.scheduler_address,
            )
        )
        assert [r["status"] for r in result.rows] == ["done"]
        with Client(cluster.scheduler_address) as client:  # still up after the batch closed its client
            assert len(client.scheduler_info()["workers"]) == 1
