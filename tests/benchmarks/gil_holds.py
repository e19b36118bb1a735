"""How long the worker thread holds the interpreter lock during a demo run (a diagnostic, not a bench).

The viewer's UI thread stalls while a model runs whenever the worker sits in a C call that keeps
the GIL (the UI thread then waits for the lock, not for a core). This runs ``analyze`` (plus the
dock's off-thread result preparation) in a thread, like the dock does, while the main thread
sleeps 1 ms in a loop: a gap between its wake-ups is (nearly) one hold of the lock by the worker.
At the end of each long gap the main thread records the worker's stack: the worker has just given
the lock back, a few bytecodes after the long call, so the innermost frames name the call site.

Usage::

    xvfb-run -a .venv/bin/python -m tests.benchmarks.gil_holds --viewer [--freeze] [--explain none]
    .venv/bin/python -m tests.benchmarks.gil_holds [--warm] [--explain gradcam] [--no-follow-up]

``--viewer`` first builds a napari viewer with the dock and the study (the heap the garbage
collector walks in the real viewer); ``--freeze`` quietens the collector as the viewer's worker
does (``_worker._quiet_collector``); ``--warm`` runs once unmeasured first (imports done). Prints
the longest gaps with the code they are attributed to and the garbage collection in each, and the
gap statistics. Timings grow when other jobs hold the machine's cores; compare runs made under the
same load. Finding (2026-11-26): every hold over 50 ms was a full garbage collection during a first
run's imports (none in a warm run); SciPy 1.17's ndimage resampling and labelling release the lock.
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import sys
import threading
import time
import traceback


def _where(frame, depth: int = 6) -> str:
    stack = traceback.extract_stack(frame)[-depth:]
    return " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in reversed(stack))


def _spin(seconds: float) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.005)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--explain", default="gradcam", help="explain method, or 'none'")
    p.add_argument("--no-follow-up", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--threshold-ms", type=float, default=20.0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument(
        "--freeze",
        action="store_true",
        help="freeze the collector's old objects during the run, as the viewer's worker does",
    )
    p.add_argument("--warm", action="store_true", help="run once unmeasured first (imports, caches)")
    p.add_argument(
        "--viewer",
        action="store_true",
        help="make a napari viewer with the dock and the study first (its heap)",
    )
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from napari_breastmri.inference.pipeline import analyze
    from napari_breastmri.models.package import load_package
    from napari_breastmri.models.registry import shipped
    from napari_breastmri.phantom import generate_case

    case = generate_case(args.seed, longitudinal=True)
    follow = None if args.no_follow_up else case.follow_up.study
    infos = [i for i in shipped(demo_only=True) if follow is not None or not i.name.endswith("pair")]
    explain = None if args.explain == "none" else args.explain
    print(f"study {case.study.data.shape}, packages {[i.name for i in infos]}, explain {explain}")

    result: dict = {}
    keep = []
    if args.viewer:  # the heap the garbage collector walks in the real viewer (run it under xvfb-run)
        if not os.environ.get("DISPLAY"):
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        import napari

        from napari_breastmri._napari._widget import BreastMRIWidget

        viewer = napari.Viewer(show=False)
        dock = BreastMRIWidget(viewer)
        viewer.window.add_dock_widget(dock, area="right")
        _spin(3.0)  # the dock's own warm-up worker finishes first
        dock.set_study(case.study, truth=case.truth, truth_mask=case.label_mask)
        _spin(3.0)
        keep += [viewer, dock]
        print(f"viewer made: {len(gc.get_objects())} objects tracked by the collector")

    def work() -> None:
        from napari_breastmri._napari._layers import prepare_results

        packages = [load_package(i.path) for i in infos]
        t0 = time.perf_counter()
        gen = analyze(case.study, packages, follow_up=follow, explain=explain)
        findings = yield_all(gen)
        result["analyze_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        prepare_results(findings)
        result["prepare_s"] = time.perf_counter() - t1

    def yield_all(gen):
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            return stop.value

    if args.warm:
        t0 = time.perf_counter()
        work()
        print(f"warm-up run {time.perf_counter() - t0:.1f} s (imports and first calls, not measured)")
    gc_log: list[tuple[float, float, int]] = []  # (start s, duration ms, generation)
    gc_t0: list[float] = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_t0[0] = time.perf_counter()
        else:
            gc_log.append((gc_t0[0], (time.perf_counter() - gc_t0[0]) * 1000, info["generation"]))

    gc.callbacks.append(on_gc)
    from napari_breastmri._napari._worker import _quiet_collector

    if args.freeze:
        _quiet_collector(True)
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.001)  # as the viewer's worker does during a run
    th = threading.Thread(target=work, name="worker")
    gaps: list[tuple[float, float, str]] = []
    all_gaps: list[float] = []
    start = time.perf_counter()
    th.start()
    wid = th.ident
    last = time.perf_counter()
    while th.is_alive():
        time.sleep(0.001)
        now = time.perf_counter()
        gap = now - last
        all_gaps.append(gap)
        if gap * 1000 >= args.threshold_ms:
            frame = sys._current_frames().get(wid)
            gaps.append((gap * 1000, now - start, _where(frame) if frame is not None else "?", last - start))
        last = time.perf_counter()
    th.join()
    gc.callbacks.remove(on_gc)
    if args.freeze:
        _quiet_collector(False)
    sys.setswitchinterval(before)
    wall = time.perf_counter() - start

    all_ms = sorted(g * 1000 for g in all_gaps)
    print(
        f"wall {wall:.1f} s (analyze {result.get('analyze_s', float('nan')):.1f} s, prepare "
        f"{result.get('prepare_s', float('nan')):.2f} s); {len(all_ms)} wake-ups; longest gap "
        f"{all_ms[-1]:.0f} ms, 99.9th pct {all_ms[int(0.999 * (len(all_ms) - 1))]:.0f} ms, "
        f"99th {all_ms[int(0.99 * (len(all_ms) - 1))]:.0f} ms; gaps >= 50 ms: "
        f"{sum(g >= 50 for g in all_ms)}, >= 100 ms: {sum(g >= 100 for g in all_ms)}; load "
        f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(f"\nlongest gaps (>= {args.threshold_ms:.0f} ms), with the worker's stack when it let go:")
    for ms, at, where, began in sorted(gaps, reverse=True)[: args.top]:
        in_gc = sum(d for t, d, _ in gc_log if began <= t - start <= at)
        print(f"{ms:7.0f} ms at {at:6.1f} s  (of which garbage collection {in_gc:.0f} ms)  {where}")
    by_site: dict[str, list[float]] = collections.defaultdict(list)
    for ms, _, where, _ in gaps:
        by_site[" <- ".join(where.split(" <- ")[:3])].append(ms)
    long_gc = sorted(gc_log, key=lambda g: -g[1])[:5]
    print(
        f"\ngarbage collections: {len(gc_log)}, total {sum(d for _, d, _ in gc_log):.0f} ms; longest: "
        + ", ".join(f"gen {g} {d:.0f} ms at {t - start:.1f} s" for t, d, g in long_gc)
    )
    print("\nby call site (count, max, total ms):")
    for site, v in sorted(by_site.items(), key=lambda kv: -max(kv[1]))[: args.top]:
        print(f"{len(v):4d} {max(v):6.0f} {sum(v):7.0f}  {site}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
