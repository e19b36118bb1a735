"""Benchmark: load a 6-phase, 160-slice, 512x512 DCE study written as one DICOM series per phase.

Compared in the same run, on the same files (warm page cache), each in its own subprocess so
that peak memory (high-water RSS) belongs to one tool alone:

* ``load_study`` (ours): float32 (phase, z, y, x) array in memory, geometry and times checked;
* dcm2niix: converts the same folder to uncompressed NIfTI (``-z n -b n``), its usual job;
* SimpleITK's ImageSeriesReader (GDCM): one series per phase, stacked into the same array.

Goals (issue 3): time ratio ours / dcm2niix <= 1.0; peak memory <= 2x the float32 study.
The generated data live in a temporary folder that is deleted afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE = (6, 160, 512, 512)
REPEATS = 3
ROOT = Path(__file__).resolve().parents[2]

#: measuring helpers shared by the child scripts (peak memory of the child itself, CPU time)
_PRELUDE = """
import json, resource, subprocess, sys, time
def peak_mb():
    # VmHWM belongs to this process image; ru_maxrss would inherit the parent's peak across fork+exec
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def cpu(who=resource.RUSAGE_SELF):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime
"""

_OURS = (
    _PRELUDE
    + """
t0 = time.perf_counter()
from napari_breastmri.io import load_study
t1, c1 = time.perf_counter(), cpu()
study = load_study(sys.argv[1])
t2, c2 = time.perf_counter(), cpu()
assert study.data.shape == tuple(json.loads(sys.argv[2])), study.data.shape
print(json.dumps({"seconds": t2 - t1, "cpu_s": c2 - c1, "import_s": t1 - t0,
                  "peak_mb": peak_mb()}))
"""
)

_SITK = (
    _PRELUDE
    + """
import numpy as np
t0 = time.perf_counter()
import SimpleITK as sitk
t1, c1 = time.perf_counter(), cpu()
folders = [p for p in __import__("pathlib").Path(sys.argv[1]).iterdir() if p.is_dir()]
volumes = []
for folder in sorted(folders):
    for sid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid)
        r = sitk.ImageSeriesReader()
        r.SetFileNames(files)
        r.SetOutputPixelType(sitk.sitkFloat32)
        volumes.append(r.Execute())
out = np.empty((len(volumes), *sitk.GetArrayViewFromImage(volumes[0]).shape), np.float32)
for i in range(len(volumes)):
    out[i] = sitk.GetArrayViewFromImage(volumes[i])
    volumes[i] = None
t2, c2 = time.perf_counter(), cpu()
assert out.shape == tuple(json.loads(sys.argv[2])), out.shape
print(json.dumps({"seconds": t2 - t1, "cpu_s": c2 - c1, "import_s": t1 - t0,
                  "peak_mb": peak_mb()}))
"""
)

_DCM2NIIX = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-o", sys.argv[2], sys.argv[1]], check=True,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
t1 = time.perf_counter()
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"seconds": t1 - t0, "cpu_s": r.ru_utime + r.ru_stime, "import_s": 0.0,
                  "peak_mb": r.ru_maxrss / 1024}))
"""

_DCM2NIIX_LOAD = (
    _PRELUDE
    + """
from pathlib import Path
import numpy as np
import nibabel as nib
t0, c0 = time.perf_counter(), cpu(resource.RUSAGE_SELF)
subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-o", sys.argv[2], sys.argv[1]], check=True,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
files = sorted(Path(sys.argv[2]).glob("*.nii"))
first = nib.load(files[0])
out = np.empty((len(files), *first.shape[::-1]), np.float32)
for i, f in enumerate(files):
    out[i] = np.asarray(nib.load(f).dataobj, dtype=np.float32).T
t1 = time.perf_counter()
assert out.shape == tuple(json.loads(sys.argv[3])), out.shape
peak = max(peak_mb(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
print(json.dumps({"seconds": t1 - t0, "import_s": 0.0,
                  "cpu_s": cpu(resource.RUSAGE_SELF) - c0 + cpu(resource.RUSAGE_CHILDREN), "peak_mb": peak}))
"""
)


def _child(code: str, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="2")
    res = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=True, timeout=1200
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def _write_study(folder: Path) -> float:
    """A synthetic study (smooth anatomy + enhancement + noise), written as series-per-phase."""
    from napari_breastmri.io.dicom_write import write_study_dicom
    from napari_breastmri.types import DEMO_LABEL, Acquisition, Study

    rng = np.random.default_rng(0)
    n_p, n_z, n_y, n_x = SHAPE
    zz, yy, xx = np.ogrid[:n_z, :n_y, :n_x]
    base = (300 + 200 * np.sin(zz / 17.0) * np.cos(yy / 41.0) + 150 * np.sin(xx / 29.0)).astype(np.float32)
    data = np.empty(SHAPE, np.float32)
    for p in range(n_p):
        data[p] = base * (1 + 0.15 * p) + rng.normal(0, 8, size=base.shape).astype(np.float32)
    del base
    affine = np.array([[0, 0, 0.7, -180.0], [0, 0.7, 0, -150.0], [1.1, 0, 0, -80.0], [0, 0, 0, 1]])
    study = Study(
        data=data,
        affine=affine,
        times=np.arange(n_p) * 90.0,
        phase_labels=["pre"] + [f"post{i}" for i in range(1, n_p)],
        acquisition=Acquisition(4.4, 2.1, 10.0, 3.0),
        source=DEMO_LABEL,
    )
    start = time.perf_counter()
    write_study_dicom(study, folder, "series-per-phase", uid_root_seed=0)
    return time.perf_counter() - start


def run() -> str:
    study_mb = float(np.prod(SHAPE)) * 4 / 2**20
    tmp = Path(tempfile.mkdtemp(prefix="bench_io_"))
    try:
        write_s = _write_study(tmp / "dicom")
        return measure(tmp / "dicom", tmp, study_mb, write_s)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(dicom: Path, scratch: Path, study_mb: float, write_s: float = float("nan")) -> str:
    """Time every tool on the DICOM folder ``dicom`` (``scratch`` takes dcm2niix's output)."""
    n_files = sum(1 for _ in dicom.rglob("*.dcm"))
    size_mb = sum(p.stat().st_size for p in dicom.rglob("*.dcm")) / 2**20
    for p in dicom.rglob("*.dcm"):  # warm the page cache for everyone alike
        p.read_bytes()
    results: dict[str, list[dict]] = {"ours": [], "dcm2niix": [], "dcm2niix+nibabel": [], "sitk": []}
    shape_arg = json.dumps(list(SHAPE))
    have_dcm2niix = shutil.which("dcm2niix") is not None
    out = scratch / "dcm2niix_out"
    try:
        for _ in range(REPEATS):
            results["ours"].append(_child(_OURS, str(dicom), shape_arg))
            if have_dcm2niix:
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                results["dcm2niix"].append(_child(_DCM2NIIX, str(dicom), str(out)))
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                results["dcm2niix+nibabel"].append(_child(_DCM2NIIX_LOAD, str(dicom), str(out), shape_arg))
            if "error" not in (results["sitk"] or [{}])[0]:
                try:
                    results["sitk"].append(_child(_SITK, str(dicom), shape_arg))
                except subprocess.CalledProcessError as err:
                    results["sitk"] = [{"error": err.stderr[-300:]}]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return _report(results, study_mb, n_files, size_mb, write_s)


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def _report(
    results: dict[str, list[dict]], study_mb: float, n_files: int, size_mb: float, write_s: float
) -> str:
    ours_s, ours_cpu = _median(results["ours"], "seconds"), _median(results["ours"], "cpu_s")
    ours_mb = _median(results["ours"], "peak_mb")
    lines = [
        "## io: loading a DICOM DCE study (bench_io)",
        "",
        f"Study: {SHAPE[0]} phases x {SHAPE[1]} slices x {SHAPE[2]}x{SHAPE[3]}, one series per phase, "
        f"{n_files} files, {size_mb:.0f} MiB on disk (uint16 + RescaleSlope); the float32 study is "
        f"{study_mb:.0f} MiB. Written by our DICOM writer in {write_s:.1f} s. Warm page cache; median of "
        f"{REPEATS} runs; each tool in its own process, run one after the other; peak memory is that "
        "process's high-water RSS (VmHWM) (for ours it includes the Python interpreter, numpy and pydicom). CPU "
        "seconds (user + system) are given beside wall seconds because the machine is shared: wall "
        "time depends on what else runs, CPU time much less.",
        "",
        "| tool | wall s | CPU s | peak memory (MiB) | wall ratio ours/tool | CPU ratio ours/tool "
        "| peak / float32 study |",
        "|---|---|---|---|---|---|---|",
        f"| load_study (ours) | {ours_s:.2f} | {ours_cpu:.2f} | {ours_mb:.0f} | 1.00 | 1.00 "
        f"| {ours_mb / study_mb:.2f} |",
    ]
    for name, label in (
        ("dcm2niix", "dcm2niix -z n -b n (to NIfTI on disk)"),
        ("dcm2niix+nibabel", "dcm2niix, then nibabel into the same float32 array"),
        ("sitk", "SimpleITK ImageSeriesReader"),
    ):
        rows = results[name]
        if not rows or "error" in rows[0]:
            lines.append(f"| {label} | not run ({rows[0]['error'] if rows else 'not installed'}) | | | | | |")
            continue
        s, c, mb = _median(rows, "seconds"), _median(rows, "cpu_s"), _median(rows, "peak_mb")
        lines.append(
            f"| {label} | {s:.2f} | {c:.2f} | {mb:.0f} | {ours_s / s:.2f} | {ours_cpu / c:.2f} | {mb / study_mb:.2f} |"
        )
    import_s = _median(results["ours"], "import_s")
    lines += [
        "",
        f"Our figure excludes the one-off `import napari_breastmri.io` ({import_s:.2f} s); goals: time ratio "
        "against dcm2niix <= 1.0, peak <= 2.0x the float32 study. Load average at the end of the run: "
        f"{os.getloadavg()[0]:.1f} on {len(os.sched_getaffinity(0))} cores.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
