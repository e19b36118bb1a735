"""Phantom speed: one default case (6 x 64 x 256 x 256) against the 5 s goal and in-process peers.

Peers measured in the same process: numpy drawing the same number of Gaussian samples (the
floor any noisy image of that size costs) and writing the case as DICOM with io.dicom_write
(what the phantom's output then costs on disk). Figures are medians of a few runs.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from tests.benchmarks._timing import median_seconds

GOAL_S = 5.0


def _stages(seed: int) -> dict[str, float]:
    """Seconds per stage of one default case (labels + anatomy, render)."""
    from napari_breastmri.phantom.case import DEFAULT_SHAPE, DEFAULT_SPACING, draw_case, render_case

    t0 = time.perf_counter()
    spec, anatomy = draw_case(
        seed,
        DEFAULT_SHAPE["conventional"],
        DEFAULT_SPACING["conventional"],
        "axial",
        "conventional",
        None,
        None,
        False,
        None,
    )
    t1 = time.perf_counter()
    render_case(spec, anatomy)
    t2 = time.perf_counter()
    return {"draw + anatomy": t1 - t0, "lesions + signal + noise + truth": t2 - t1}


def run() -> str:
    from napari_breastmri.io.dicom_write import write_study_dicom
    from napari_breastmri.phantom import generate_case

    generate_case(0, shape=(16, 64, 64))  # warm imports and caches
    seeds = iter(range(1, 100))
    t_case = median_seconds(lambda: generate_case(next(seeds)))
    case = generate_case(5)
    t_uf = median_seconds(lambda: generate_case(5, protocol="ultrafast"), repeats=1)
    t_long = median_seconds(lambda: generate_case(5, longitudinal=True), repeats=1)
    n = case.study.data.size
    rng = np.random.default_rng(0)
    t_rand = median_seconds(lambda: rng.standard_normal(n, dtype=np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(100))
        t_dicom = median_seconds(
            lambda: write_study_dicom(case.study, Path(tmp) / str(next(counter)), "series-per-phase"),
            repeats=1,
        )
    stages = _stages(5)
    rows = [
        f"| one default conventional case (6 x 64 x 256 x 256) | {t_case:.2f} s | goal {GOAL_S:.0f} s: "
        f"{'met' if t_case <= GOAL_S else 'NOT met'} ({t_case / GOAL_S:.2f} x goal) |",
        f"| numpy standard_normal, same number of samples (peer) | {t_rand:.3f} s | case / peer = {t_case / t_rand:.1f} |",
        f"| write that case as DICOM, series-per-phase (peer) | {t_dicom:.2f} s | case / write = {t_case / t_dicom:.2f} |",
        f"| ultrafast case (default 48 x 192 x 192, 15-25 phases) | {t_uf:.2f} s | |",
        f"| longitudinal case (baseline + follow-up) | {t_long:.2f} s | / one case = {t_long / t_case:.2f} |",
    ]
    rows += [f"| stage: {k} | {v:.2f} s | share {v / sum(stages.values()):.0%} |" for k, v in stages.items()]
    return (
        "## Phantom (bench_phantom)\n\n"
        "Median wall time of `generate_case` on this machine, with peers measured in the same process. "
        "The phantom draws its textures on coarse grids and evaluates the Tofts model per tissue component, "
        "not per voxel, so most of its time is the per-phase signal mix and the Rician noise.\n\n"
        "| what | time | ratio |\n|---|---|---|\n" + "\n".join(rows) + "\n"
    )


if __name__ == "__main__":
    print(run())
