"""The study's kinetic maps, computed once per study in a worker and shared by the sections.

Why: the enhancement maps, the curve types and the breast region take 0.5-1.7 s on a phantom
study (docs/benchmarks.md). The Kinetics map chooser, the hanging protocol's kinetic panel and the
teaching panel all need them; computed on the UI thread, each click froze the viewer for that
long, and each section computed them again. Here the first request starts one job; later requests
for the same study wait for that job or get the maps at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..types import Study

Maps = dict[str, np.ndarray]
#: the SER colour map is shown where PE >= 70 % (the ACRIN 6657 / I-SPY FTV threshold) and the
#: pre-contrast signal is above the background (air and noise have no meaningful SER)
SER_MIN_PE = 70.0
#: the colour-coded maps, shown in the breasts only (see :func:`map_values`)
COLOURED_IN_BREAST = ("curve type", "SER colour map")
#: key prefix of the colour maps as shown, precomputed by :func:`compute_maps`
_SHOWN = "shown:"


def compute_maps(study: Study) -> Maps:
    """PE, SER, wash-in/out, TTP, curve types and the breast region (boolean) of one study."""
    from .. import kinetics as k

    maps = k.enhancement_maps(study)
    maps["curve_type"] = k.curve_types(study, maps)
    maps["breast"] = k.breast_region(study)
    # the colour maps as shown, made here in the worker: masking the SER map took 0.15 s of UI time
    maps.update({_SHOWN + kind: map_values(kind, maps) for kind in COLOURED_IN_BREAST})
    return maps


def map_values(kind: str, maps: Maps) -> np.ndarray:
    """The values a map layer shows (pure). The colour-coded maps (curve type, SER) are kept to the
    breasts (``maps["breast"]``, :func:`napari_breastmri.kinetics.breast_region`): the chest-wall
    muscle and the heart enhance too and would draw the eye, as on a CAD colour overlay. The other
    maps keep every voxel: the heart's enhancement shows the bolus arrived."""
    if _SHOWN + kind in maps:
        return maps[_SHOWN + kind]
    key = {"PE": "pe", "SER colour map": "ser", "curve type": "curve_type"}.get(kind, kind)
    values = maps[key]
    if kind == "SER colour map":  # SER means something only where the tissue enhances
        values = np.where((maps["pe"] >= SER_MIN_PE) & (maps["curve_type"] > 0), values, 0.0)
    breast = maps.get("breast")
    if kind in COLOURED_IN_BREAST and breast is not None:
        values = np.where(breast, values, np.zeros((), values.dtype))
    return values


class KineticMaps:
    """One study's maps: ``request(on_ready)`` calls back with them, now or when the job ends."""

    def __init__(self, dock: Any) -> None:
        self.dock = dock
        self._study: Study | None = None
        self._maps: Maps | None = None
        self._waiting: list[tuple[Callable[[Maps], None], Callable[[BaseException], None] | None]] = []
        self.job: Any = None
        dock.state.study_changed.connect(lambda *_: self.clear())

    def clear(self) -> None:
        """A new study: forget the maps and the callbacks (a running job's result is dropped)."""
        self._study, self._maps, self._waiting, self.job = None, None, [], None

    def cached(self, study: Study) -> Maps | None:
        return self._maps if self._study is study else None

    def request(
        self,
        study: Study,
        on_ready: Callable[[Maps], None],
        on_error: Callable[[BaseException], None] | None = None,
    ) -> Any:
        """Call ``on_ready(maps)`` at once when they are known, else after the job; returns the job
        (None when the maps were cached). When the study cannot carry kinetics (too few phases,
        unusable times) the error is shown once and ``on_error(exc)`` lets a caller go on without."""
        maps = self.cached(study)
        if maps is not None:
            on_ready(maps)
            return None
        if self._study is not study:
            self.clear()
            self._study = study
        self._waiting.append((on_ready, on_error))
        if self.job is None:
            self.job = self._start(study)
        return self.job

    def _start(self, study: Study) -> Any:
        from ._worker import run_blocking_in_thread

        def done(maps: Maps) -> None:
            if self._study is not study:  # the study changed while they were computed
                return
            self._maps, waiting, self._waiting = maps, self._waiting, []
            for on_ready, _ in waiting:
                on_ready(maps)

        def failed(exc: BaseException) -> None:
            if self._study is not study:
                return
            waiting = self._waiting
            self.clear()
            self.dock.show_error(exc)
            for _, on_error in waiting:
                if on_error is not None:
                    on_error(exc)

        job = run_blocking_in_thread(
            lambda: compute_maps(study), on_result=done, on_error=failed, step="kinetic maps"
        )
        self.dock.jobs.append(job)
        return job
