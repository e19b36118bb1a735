"""Cohort throughput of ``breastmri batch`` with 1 and 2 Dask workers, and the scaling ratio.

Peer: the same task in a plain serial loop in this process (no Dask), so the figures say what the
cluster costs and what a second worker buys. Each Dask run uses a LocalCluster of worker
processes (one thread each) that is started and warmed up *before* the clock starts and is
reached through ``--scheduler``'s code path (``run_batch(scheduler=ADDRESS)``): the throughput is
the steady state a long cohort sees; the cluster's start-up time is reported beside it.

The task is the real ``analyze`` core when model packages are shipped, otherwise the model-free
``kinetics_case`` (load the DICOM, kinetic maps, FTV, NIfTI out): the section says which.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

N_CASES = 8
SHAPE = (32, 128, 128)


def _task() -> tuple[str, str]:
    try:
        from napari_breastmri.models import registry

        if [p for p in registry.shipped() if p.task != "interactive-segment"]:
            return "napari_breastmri.batch:analyze_case", "analyze (shipped demo models, CPU, no CAM)"
    except Exception:  # no model registry: fall back to the model-free task
        pass
    return "napari_breastmri.batch:kinetics_case", "kinetics_case (no model package shipped yet)"


def _serial(task: str, cases: list[str], out: Path) -> tuple[float, float]:
    from napari_breastmri import batch

    batch.run_case(task, cases[0], "warm-up", str(out.parent / "serial-warm"), {})  # imports, caches
    start = time.perf_counter()
    cpu = 0.0
    for case, cid in zip(cases, batch.case_ids(cases)):
        row = batch.run_case(task, case, cid, str(out), {})
        assert row["status"] == "done", row
        cpu += row["cpu_seconds"]
    return time.perf_counter() - start, cpu


def _dask(task: str, cases: list[str], out: Path, workers: int) -> tuple[float, float, float]:
    from distributed import Client, LocalCluster

    from napari_breastmri import batch, progress

    start = time.perf_counter()
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    )
    try:
        with Client(cluster) as client:  # warm-up: the imports a case needs, on every worker
            client.run(
                lambda: __import__("napari_breastmri.batch") and __import__("napari_breastmri.io.dicom")
            )
            startup = time.perf_counter() - start
            t0 = time.perf_counter()
            result = progress.run(batch.run_batch(cases, out, task=task, scheduler=cluster.scheduler_address))
            seconds = time.perf_counter() - t0
        assert result.n_failed == 0, [r for r in result.rows if r["status"] == "failed"]
        return seconds, startup, sum(r["cpu_seconds"] for r in result.rows)
    finally:
        cluster.close()


def run() -> str:
    from napari_breastmri import progress
    from napari_breastmri.phantom.write import write_cohort

    task, what = _task()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per worker, as the batch's workers run
    root = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    try:
        t0 = time.perf_counter()
        folders = progress.run(write_cohort(N_CASES, 2024, root / "cases", shape=SHAPE, nifti=False))
        gen = time.perf_counter() - t0
        cases = [str(f) for f in folders]
        load = os.getloadavg()[0]
        serial, cpu_s = _serial(task, cases, root / "serial")
        one, start1, cpu_1 = _dask(task, cases, root / "w1", 1)
        two, start2, cpu_2 = _dask(task, cases, root / "w2", 2)
        load = max(load, os.getloadavg()[0])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    thr = {k: N_CASES / v for k, v in {"serial": serial, "1": one, "2": two}.items()}
    cores = len(os.sched_getaffinity(0))
    return (
        "## Cohort throughput (`breastmri batch`, Dask)\n\n"
        f"{N_CASES} phantom cases of {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} voxels (series-per-phase DICOM, "
        f"generated in {gen:.1f} s); task: {what}; {cores} cores available to this process.\n\n"
        "| run | seconds | cases/s | vs serial loop | task CPU s / case | cores busy (task CPU / wall) |\n"
        "|---|---|---|---|---|---|\n"
        f"| serial loop in this process (peer) | {serial:.1f} | {thr['serial']:.2f} | 1.00 | {cpu_s / N_CASES:.2f} | {cpu_s / serial:.2f} |\n"
        f"| Dask, 1 worker process | {one:.1f} | {thr['1']:.2f} | {thr['1'] / thr['serial']:.2f} | {cpu_1 / N_CASES:.2f} | {cpu_1 / one:.2f} |\n"
        f"| Dask, 2 worker processes | {two:.1f} | {thr['2']:.2f} | {thr['2'] / thr['serial']:.2f} | {cpu_2 / N_CASES:.2f} | {cpu_2 / two:.2f} |\n\n"
        f"**Scaling ratio 2 workers / 1 worker: {thr['2'] / thr['1']:.2f}** (ideal 2.00 on 2 free cores). "
        f"Cluster start-up and warm-up, not in the times above: {start1:.1f} s (1 worker), {start2:.1f} s (2 workers). "
        f"Load average during the run: {load:.1f} on {cores} cores; when it exceeds the core count, other "
        "processes take the second core and the scaling ratio measures the machine's load, not Dask: "
        "the 'cores busy' column shows how much CPU the tasks actually got.\n"
    )


if __name__ == "__main__":
    print(run())
