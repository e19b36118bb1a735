"""Findings section: one row per lesion (size, volume, curve type, score, status); clicking a
row centres the view on the lesion and selects its box and its mask label."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QAbstractItemView, QTableWidget, QTableWidgetItem

from ...types import Findings, Lesion
from ._base import Section

COLUMNS = ("#", "size mm", "vol ml", "curve", "score", "status")


def lesion_size_mm(lesion: Lesion, spacing: tuple[float, float, float]) -> float:
    """Longest diameter: the model's when given, else the box's longest side in mm."""
    if lesion.diameters_mm:
        return float(max(lesion.diameters_mm))
    z0, y0, x0, z1, y1, x1 = lesion.bbox
    return float(max((z1 - z0) * spacing[0], (y1 - y0) * spacing[1], (x1 - x0) * spacing[2]))


def lesion_row(lesion: Lesion, spacing: tuple[float, float, float]) -> list[str]:
    """The table's cells for one lesion (pure)."""
    vol = "-" if lesion.volume_ml is None else f"{lesion.volume_ml:.2f}"
    return [
        str(lesion.id),
        f"{lesion_size_mm(lesion, spacing):.1f}",
        vol,
        lesion.curve_type or "-",
        f"{lesion.score:.2f}",
        lesion.status,
    ]


def lesion_center_zyx(lesion: Lesion) -> np.ndarray:
    if lesion.centroid_zyx:
        return np.asarray(lesion.centroid_zyx, dtype=float)
    b = np.asarray(lesion.bbox, dtype=float)
    return (b[:3] + b[3:] - 1) / 2.0


class FindingsSection(Section):
    title = "Findings"

    def build(self) -> None:
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(90)
        self.table.setMaximumHeight(180)
        self.table.setToolTip("Click a lesion to go to it (keys: n / p next / previous)")
        self.table.itemSelectionChanged.connect(self._row_selected)
        self.column.addWidget(self.table)
        self.note = self.label("Run the models to list findings.")
        self.state.findings_changed.connect(self.refresh)
        self.state.study_changed.connect(lambda *_: self.refresh(None))

    def refresh(self, findings: Findings | None = None) -> None:
        findings = self.state.findings if findings is None else findings
        self.table.setRowCount(0)
        if findings is None:
            self.note.setText("Run the models to list findings.")
            return
        spacing = self.state.study.spacing if self.state.study is not None else (1.0, 1.0, 1.0)
        for lesion in findings.lesions:
            r = self.table.rowCount()
            self.table.insertRow(r)
            for c, text in enumerate(lesion_row(lesion, spacing)):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        models = ", ".join(f"{m.name} v{m.version}" for m in findings.models) or "-"
        self.note.setText(
            f"{len(findings.lesions)} lesion(s); models: {models}; device: {findings.device or '-'}"
        )

    def current_lesion(self) -> Lesion | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows or self.state.findings is None:
            return None
        lesion_id = int(self.table.item(rows[0].row(), 0).text())
        return self.state.findings.lesion(lesion_id)

    def select_index(self, index: int) -> None:
        n = self.table.rowCount()
        if n:
            self.table.selectRow(index % n)

    def step(self, delta: int) -> None:
        rows = self.table.selectionModel().selectedRows()
        self.select_index((rows[0].row() + delta) if rows else 0)

    def _row_selected(self) -> None:
        lesion = self.current_lesion()
        if lesion is not None:
            self.go_to(lesion)

    def go_to(self, lesion: Lesion) -> None:
        """Centre the view on a lesion and select its box and mask label."""
        boxes = self.dock.layer_with_role("boxes")
        ref = boxes or self.dock.layer_with_role("mask")
        if ref is None:
            return
        world = np.asarray(ref.data_to_world(lesion_center_zyx(lesion)), dtype=float)
        nd = self.viewer.dims.ndim
        point = list(self.viewer.dims.point)
        point[nd - 3 :] = world[-3:]
        for axis in self.viewer.dims.not_displayed:
            if axis >= nd - 3:
                self.viewer.dims.set_point(axis, point[axis])
        displayed = list(self.viewer.dims.displayed)
        self.viewer.camera.center = tuple(point[a] for a in displayed)
        if boxes is not None:
            ids = np.asarray(boxes.features["lesion_id"]) if len(boxes.features) else np.array([])
            boxes.selected_data = set(np.flatnonzero(ids == lesion.id).tolist())
            boxes.refresh()
        mask = self.dock.layer_with_role("mask")
        if mask is not None and lesion.label:
            mask.selected_label = int(lesion.label)
