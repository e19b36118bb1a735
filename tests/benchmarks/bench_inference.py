"""Inference benchmark: a full ``analyze`` of the default phantom case on the CPU, and our
cancellable sliding window against plain MONAI ``sliding_window_inference`` (same network, input,
window, overlap, batch)."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

N_REPEAT = 6
THREADS = 2


def _packages(tmp: Path) -> tuple[list, str]:
    """The shipped demo packages; when none are shipped yet, untrained stand-ins with their cards."""
    from napari_breastmri.models import registry
    from napari_breastmri.models.package import load_package, save_package

    shipped = registry.shipped()
    if shipped:
        return [load_package(i.path, origin="shipped") for i in shipped], "shipped demo packages"
    from napari_breastmri.training.tasks import TASKS

    pkgs = []
    for key, spec in TASKS.items():
        card = spec.card()
        from napari_breastmri.models.package import _factory

        net = _factory(card["network"]["factory"])(**card["network"]["kwargs"])
        pkgs.append(save_package(tmp / key, card, net))
    return pkgs, "untrained stand-ins built from the demo task cards (no shipped weights yet; same compute)"


def _time(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): on a shared, loaded machine the CPU time is the
    steadier figure, since other jobs stretch the wall clock but not our own work."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def run() -> str:
    import numpy as np
    import torch
    from monai.inferers import sliding_window_inference

    from napari_breastmri import progress
    from napari_breastmri.inference.pipeline import analyze
    from napari_breastmri.inference.sliding import sliding_window
    from napari_breastmri.phantom import generate_case

    torch.set_num_threads(THREADS)
    tmp = Path(tempfile.mkdtemp(prefix="bench_inference_"))
    t0 = time.perf_counter()
    case = generate_case(7, longitudinal=True)
    t_case = time.perf_counter() - t0
    pkgs, what = _packages(tmp)
    study, follow = case.study, case.follow_up.study

    # warm-up (imports, first-call allocations) so that the timed run is the steady state
    progress.run(analyze(study, pkgs[:1], device="cpu"))
    box: dict = {}
    t_analyze, c_analyze = _time(
        lambda: box.setdefault("f", progress.run(analyze(study, pkgs, device="cpu", follow_up=follow)))
    )
    findings = box["f"]
    per_model = ", ".join(f"{m.name} {m.seconds:.1f} s" for m in findings.models)

    seg = next(p for p in pkgs if p.card.task in ("segment", "detect"))
    net = seg.build("cpu")
    x, _ = seg.prepare_input(study)
    roi, ov, bs = seg.card.inputs.patch_size, seg.card.inputs.overlap, seg.card.inputs.sw_batch_size

    def ours() -> torch.Tensor:
        with torch.inference_mode():
            return progress.run(sliding_window(net, x, roi, overlap=ov, batch_size=bs))

    def monai() -> torch.Tensor:
        with torch.inference_mode():
            return sliding_window_inference(x[None], roi, bs, net, overlap=ov, mode="gaussian")[0]

    diff = float((ours() - monai()).abs().max())
    t_ours, t_monai = [], []
    for i in range(N_REPEAT):  # interleaved, order alternating, so machine load affects both alike
        if i % 2:
            t_monai.append(_time(monai))
            t_ours.append(_time(ours))
        else:
            t_ours.append(_time(ours))
            t_monai.append(_time(monai))
    m_ours, m_monai = (statistics.median(t[0] for t in ts) for ts in (t_ours, t_monai))
    c_ours, c_monai = (statistics.median(t[1] for t in ts) for ts in (t_ours, t_monai))
    ratio, c_ratio = m_ours / m_monai, c_ours / c_monai
    min_ratio = min(t[1] for t in t_ours) / min(t[1] for t in t_monai)
    load = os.getloadavg()[0]
    n_windows = int(
        np.prod([max(1, -(-(s - r) // max(1, int(r * (1 - ov)))) + 1) for s, r in zip(x.shape[1:], roi)])
    )
    return (
        "## Inference (bench_inference)\n\n"
        f"Packages: {what}. CPU, torch threads = {THREADS}. Phantom case seed 7, study {study.shape} "
        f"at {tuple(round(s, 2) for s in study.spacing)} mm, {study.n_phases} phases (+ follow-up exam).\n\n"
        f"Load average during the run: {load:.1f} on {len(os.sched_getaffinity(0))} cores (shared machine): "
        "wall times are stretched by other jobs; CPU time (all threads of this process) is the steadier figure.\n\n"
        "| figure | value | goal |\n|---|---|---|\n"
        f"| full `analyze` (all packages, CPU), wall | {t_analyze:.1f} s | <= 30 s |\n"
        f"| full `analyze`, CPU time of the process | {c_analyze:.1f} s | |\n"
        f"| per model | {per_model} | |\n"
        f"| phantom generation (not part of analyze) | {t_case:.1f} s | |\n"
        f"| sliding window, ours (median of {N_REPEAT}): wall / CPU | {m_ours:.2f} s / {c_ours:.2f} s | |\n"
        f"| plain MONAI `sliding_window_inference`: wall / CPU | {m_monai:.2f} s / {c_monai:.2f} s | |\n"
        f"| **ratio ours / MONAI**, wall | **{ratio:.2f}** | <= 1.1 |\n"
        f"| **ratio ours / MONAI**, CPU time (medians) | **{c_ratio:.2f}** | <= 1.1 |\n"
        f"| **ratio ours / MONAI**, CPU time (best runs, timeit's estimator under noise) | **{min_ratio:.2f}** | <= 1.1 |\n"
        f"| max abs difference of the blended logits | {diff:.2e} | equal |\n\n"
        f"Single runs (CPU s), ours: {', '.join(f'{t[1]:.2f}' for t in t_ours)}; "
        f"MONAI: {', '.join(f'{t[1]:.2f}' for t in t_monai)}. The two loops do the same work (same windows, "
        "weights and blending), so the ratio's spread is the machine's noise.\n\n"
        f"Sliding window: model grid {tuple(x.shape[1:])}, window {tuple(roi)}, overlap {ov}, "
        f"{bs} windows per batch (about {n_windows} windows). No GPU was lent to this run.\n"
    )


if __name__ == "__main__":
    print(run())
