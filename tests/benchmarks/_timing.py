"""Timing helpers shared by the benchmark modules (not a benchmark itself: run_all collects bench_*)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def median_seconds(fn: Callable[[], Any], repeats: int = 3, warmup: bool = False) -> float:
    """Median wall time of ``repeats`` calls of ``fn``; ``warmup`` runs it once untimed first
    (imports, first-call allocations) so the median is the steady state."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
