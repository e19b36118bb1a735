"""What the dock knows about the case being read: study, findings, truth, and the PHI switch.

A plain object with psygnal signals (napari's own event library) so that the dock's sections
react to one another without importing each other, and so it can be driven in tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from psygnal import Signal

from ..types import Findings, Heatmap, Study


class ReadingState:
    """The case on the reading station; sections listen to its signals."""

    study_changed = Signal(object)
    findings_changed = Signal(object)
    heatmap_added = Signal(object)
    phi_hidden_changed = Signal(bool)
    teaching_changed = Signal(bool)

    def __init__(self) -> None:
        self.study: Study | None = None
        self.findings: Findings | None = None
        self.truth: dict[str, Any] | None = None
        self.truth_mask: np.ndarray | None = None
        self.source: Any = None
        self.packages: list[Any] = []
        self.hide_phi: bool = False
        self.teaching: bool = False
        self.session: Any = None  # annotations.AnnotationSession once one is open

    def set_study(self, study: Study, *, truth=None, truth_mask=None, source=None) -> None:
        self.study, self.truth, self.truth_mask, self.source = study, truth, truth_mask, source
        self.findings = None
        self.session = None
        self.study_changed.emit(study)

    def set_findings(self, findings: Findings | None) -> None:
        self.findings = findings
        self.findings_changed.emit(findings)

    def add_heatmap(self, heatmap: Heatmap) -> None:
        if self.findings is not None:
            self.findings.heatmaps.append(heatmap)
        self.heatmap_added.emit(heatmap)

    def set_hide_phi(self, hide: bool) -> None:
        hide = bool(hide) or self.teaching
        if hide != self.hide_phi:
            self.hide_phi = hide
            self.phi_hidden_changed.emit(hide)

    def set_teaching(self, on: bool) -> None:
        self.teaching = bool(on)
        if on:
            self.set_hide_phi(True)
        self.teaching_changed.emit(self.teaching)
