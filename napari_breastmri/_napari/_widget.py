"""The reading-station dock: Study, Display, Models, Findings, Predictions, Kinetics, Explain,
Corrections, Teaching, PACS and Export, each a collapsible section (see ``_sections/``).

The dock owns the viewer-side glue: it turns the pure layer tuples of :mod:`._layers` into
layers, finds them again by their ``metadata["breastmri"]["role"]``, and runs long work through
:mod:`._worker` so the UI never freezes. Sections talk through :class:`._state.ReadingState`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QScrollArea, QVBoxLayout, QWidget
from superqt import QCollapsible

from ..types import Findings, Study
from . import _layers
from ._state import ReadingState
from ._worker import user_message

if TYPE_CHECKING:
    import napari

APP_TITLE = "Breast DCE-MRI"


class BreastMRIWidget(QWidget):
    """The dock widget (npe2 ``widgets`` contribution); takes the viewer napari passes in."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from ._compat import guard_torch_imports
        from ._sections import SECTION_CLASSES

        guard_torch_imports()  # the viewer exists already: see _compat for why

        self.viewer = napari_viewer
        self.state = ReadingState()
        self.jobs: list[Any] = []
        self.setMinimumWidth(440)
        inner = QWidget()
        column = QVBoxLayout(inner)
        column.setContentsMargins(4, 4, 4, 4)
        self.sections: dict[str, QWidget] = {}
        self.collapsibles: dict[str, QCollapsible] = {}
        for cls in SECTION_CLASSES:
            section = cls(self)
            box = QCollapsible(cls.title, inner)
            box.addWidget(section)
            if cls.title in ("Study", "Models", "Findings", "Predictions"):
                box.expand(animate=False)
            column.addWidget(box)
            self.sections[cls.title] = section
            self.collapsibles[cls.title] = box
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.state.phi_hidden_changed.connect(self._update_title)
        self.state.study_changed.connect(self._update_title)
        self.state.findings_changed.connect(self._show_findings)
        self.state.findings_changed.connect(lambda *_: QTimer.singleShot(0, self.relayout))
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)
        for layer in list(self.viewer.layers):  # a case opened before the dock was
            self._adopt(layer)

    # ----- sections ------------------------------------------------------------------------
    def show_sections(self, *titles: str) -> None:
        """Expand these sections and collapse the others (screenshots, teaching)."""
        for title, box in self.collapsibles.items():
            if title in titles:
                box.expand(animate=False)
            else:
                box.collapse(animate=False)
        QTimer.singleShot(0, self.relayout)

    def relayout(self) -> None:
        """Re-fit expanded sections to their content (a table that grew, a longer label)."""
        for box in self.collapsibles.values():
            if box.isExpanded():
                box.expand(animate=False)

    # ----- layers ---------------------------------------------------------------------------
    def layers_with_role(self, role: str) -> list[Any]:
        return [lay for lay in self.viewer.layers if lay.metadata.get("breastmri", {}).get("role") == role]

    def layer_with_role(self, role: str) -> Any | None:
        found = self.layers_with_role(role)
        return found[0] if found else None

    def remove_roles(self, *roles: str) -> None:
        for layer in [lay for role in roles for lay in self.layers_with_role(role)]:
            self.viewer.layers.remove(layer)

    def add_tuples(self, tuples: Iterable[_layers.LayerDataTuple]) -> list[Any]:
        """Add layer tuples to the viewer (on the UI thread, only with finished data)."""
        from napari.layers import Layer

        added = []
        for data, kwargs, kind in tuples:
            added.append(self.viewer.add_layer(Layer.create(data, dict(kwargs), kind)))
        return added

    def replace_role(self, role: str, tuples: Iterable[_layers.LayerDataTuple]) -> list[Any]:
        self.remove_roles(role)
        return self.add_tuples(tuples)

    # ----- the case -------------------------------------------------------------------------
    def set_study(self, study: Study, *, truth=None, truth_mask=None, source=None, add_layers=True) -> None:
        """Show a study: its layers (unless already there), then tell the sections."""
        if add_layers:
            self.remove_roles(
                "phases",
                "subtraction",
                "mip",
                "boxes",
                "mask",
                "heatmap",
                "kinetic_map",
                "truth_mask",
                "truth_boxes",
                "protocol",
            )
            self._adopting = True
            try:
                self.add_tuples(_layers.study_layers(study))
                if truth is not None and truth_mask is not None:
                    self.add_tuples(_layers.truth_layers(truth_mask, truth, study.affine))
            finally:
                self._adopting = False
        self.state.set_study(study, truth=truth, truth_mask=truth_mask, source=source)
        self.orient(study)

    def orient(self, study: Study) -> None:
        """Name the sliders (phase, then the patient axes) and fit the view to the study."""
        nd = self.viewer.dims.ndim
        if nd >= 3:
            labels = _layers.axis_labels(study.affine, max(nd, 3))
            self.viewer.dims.axis_labels = labels[-nd:]
        self.viewer.reset_view()

    def _on_layer_inserted(self, event: Any) -> None:
        if not getattr(self, "_adopting", False):
            self._adopt(event.value)

    def _adopt(self, layer: Any) -> None:
        """A study layer added by the reader or sample data becomes the dock's case."""
        meta = layer.metadata.get("breastmri", {})
        study = meta.get("study")
        if meta.get("role") == "phases" and study is not None and study is not self.state.study:
            truth = meta.get("truth") or study.meta.get("truth")
            self.state.set_study(
                study, truth=truth, truth_mask=meta.get("label_mask"), source=meta.get("source", study.source)
            )
            self.orient(study)

    def set_findings(self, findings: Findings | None, prebuilt: list[Any] | None = None) -> None:
        """Show findings; ``prebuilt`` are their napari layers already made in the worker thread
        (layer objects are plain models, not Qt), so the UI thread only inserts them."""
        self._prebuilt = prebuilt
        self.state.set_findings(findings)

    def _show_findings(self, findings: Findings | None) -> None:
        prebuilt, self._prebuilt = getattr(self, "_prebuilt", None), None
        if findings is not None and prebuilt is None and self._update_in_place(findings):
            return
        self.remove_roles("boxes", "mask", "heatmap")
        if findings is None:
            return
        if prebuilt is not None:
            for layer in prebuilt:
                self.viewer.add_layer(layer)
        else:
            self.add_tuples(_layers.findings_layers(findings))

    def _update_in_place(self, findings: Findings) -> bool:
        """Refresh existing boxes/mask layers instead of replacing them (corrections edit often;
        removing a layer makes napari collect garbage and rebuild its visual: a visible stall)."""
        boxes, mask = self.layer_with_role("boxes"), self.layer_with_role("mask")
        heat_names = {lay.name for lay in self.layers_with_role("heatmap")}
        if boxes is None or (mask is None) != (findings.label_mask is None):
            return False
        if heat_names != {_layers.heatmap_name(h) for h in findings.heatmaps}:
            return False
        data, kwargs, _ = _layers.boxes_layer(findings.lesions, findings.affine)
        boxes.data = [(rect, "rectangle") for rect in data]
        boxes.features = kwargs["features"]
        if data:
            boxes.edge_color = kwargs["edge_color"]
        boxes.refresh_text()
        if mask is not None:
            mask.data = np.asarray(findings.label_mask).astype(np.int32)
        return True

    def _update_title(self, *_: Any) -> None:
        study = self.state.study
        if study is None or self.state.hide_phi or study.phi.is_empty():
            suffix = " (patient data hidden)" if self.state.hide_phi else ""
            self.viewer.title = f"{APP_TITLE}{suffix}"
        else:
            self.viewer.title = f"{APP_TITLE} - {study.phi.name} ({study.phi.patient_id})"

    # ----- errors ---------------------------------------------------------------------------
    def show_error(self, exc: BaseException) -> None:
        from napari.utils.notifications import show_error

        show_error(user_message(exc))
