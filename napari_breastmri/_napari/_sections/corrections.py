"""Corrections section: accept / reject detections, move, resize, add and delete boxes (Shapes),
paint and erase masks (Labels), undo / redo, all recorded with provenance by
:class:`napari_breastmri.annotations.AnnotationSession`, which autosaves beside the case (or in
the user folder) every few seconds and on every accept. Reopening a case with saved work offers
to restore it. Keys (viewer-wide): Shift-N / Shift-P next / previous lesion, Shift-A accept,
Shift-R reject, Shift-O toggle overlays, Shift-U undo.
"""

from __future__ import annotations

import time
from typing import Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QHBoxLayout, QLabel, QMessageBox, QSpinBox

from .. import _layers
from .._annotate import box_ops
from ._base import Section

KEYS = {
    "Shift-N": ("next lesion", "next"),
    "Shift-P": ("previous lesion", "previous"),
    "Shift-A": ("accept the selected lesion", "accept"),
    "Shift-R": ("reject the selected lesion", "reject"),
    "Shift-O": ("show / hide the overlays", "toggle_overlays"),
    "Shift-U": ("undo the last correction", "undo"),
}


class CorrectionsSection(Section):
    title = "Corrections"

    def build(self) -> None:
        self.start_btn, self.finish_btn = self.buttons(
            ("Start correcting", self.start, "Edit the findings; every change is saved with who/what/when"),
            ("Save now", self.save_now, "Write a snapshot now (autosave runs every few seconds anyway)"),
        )
        self.buttons(
            ("Accept", self.accept, "Accept the selected lesion (Shift-A); saved at once"),
            ("Reject", self.reject, "Reject the selected lesion (Shift-R)"),
            ("Undo", self.undo, "Undo the last correction (Shift-U)"),
            ("Redo", self.redo, "Redo"),
        )
        self.buttons(
            ("Draw box", self.draw_box, "Draw a rectangle on the current slice: a new lesion"),
            ("Edit boxes", self.edit_boxes, "Select, move and resize rectangles; Delete removes a lesion"),
            ("Paint mask", self.paint_mask, "Paint the selected lesion's label in the mask"),
            ("Erase", self.erase_mask, "Erase mask voxels"),
        )
        row = QHBoxLayout()
        self.depth = QSpinBox()
        self.depth.setRange(0, 50)
        self.depth.setValue(2)
        self.depth.setToolTip("A drawn box spans its slice +- this many slices")
        row.addWidget(QLabel("New box depth +-"))
        row.addWidget(self.depth)
        self.column.addLayout(row)
        keys = ", ".join(f"{k} {v[0]}" for k, v in KEYS.items())
        self.label(f"Keys: {keys}.")
        self.status = self.label("Not correcting.")
        self.session: Any = None
        self._syncing = False
        self._timer = QTimer(self)
        self._timer.setInterval(1000)
        self._timer.timeout.connect(self._show_saved)
        self._timer.start()
        for key, (_, name) in KEYS.items():
            self.viewer.bind_key(key, lambda _v, n=name: getattr(self, n)(), overwrite=True)
        self.state.study_changed.connect(self._on_study)

    # ----- session lifecycle -----------------------------------------------------------------
    def store_for(self, study: Any) -> Any:
        from ...annotations import AnnotationStore, default_root

        return AnnotationStore(default_root(study.source or None), study.study_uid or "unknown")

    def _on_study(self, study: Any) -> None:
        self.close_session()
        if study is None:
            return
        try:
            saved = self.store_for(study).load()
        except Exception as exc:  # an unreadable store must not block reading the study
            self.status.setText(f"Saved corrections could not be read: {exc}")
            return
        if saved is not None:
            self.offer_restore(saved)

    def offer_restore(self, saved: Any, answer: bool | None = None) -> bool:
        """Ask whether to restore saved corrections (``answer`` skips the dialog, for tests)."""
        if answer is None:
            box = QMessageBox(
                QMessageBox.Question,
                "Restore corrections?",
                f"This study has saved corrections ({saved.n_edits} edits). Restore them?",
                QMessageBox.Yes | QMessageBox.No,
                self,
            )
            answer = box.exec_() == QMessageBox.Yes
        if answer:
            self.restore()
        else:
            self.status.setText(
                "Saved corrections kept on disk, not loaded (Start correcting to restore later)."
            )
        return answer

    def restore(self) -> Any:
        from ...annotations import AnnotationSession

        study = self.state.study
        self.session = AnnotationSession.restore(self.store_for(study), study.shape, study.affine)
        self._publish()
        self.status.setText(f"Restored {len(self.session.history)} edits.")
        return self.session

    def start(self) -> Any:
        """Open a session on the current findings (or restore the saved one)."""
        from ...annotations import AnnotationSession

        study = self.state.study
        if study is None:
            return None
        if self.session is not None:
            return self.session
        store = self.store_for(study)
        if store.load() is not None:
            return self.restore()
        self.session = AnnotationSession.for_study(study, self.state.findings, store=store)
        self._publish()
        self.status.setText("Correcting: changes autosave.")
        return self.session

    def close_session(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def save_now(self) -> None:
        if self.session is not None:
            self.session.save_now()
            self._show_saved()

    def _show_saved(self) -> None:
        if self.session is None:
            return
        when = self.session.last_saved
        ago = "never" if when is None else f"{time.time() - when:.0f} s ago"
        self.status.setText(f"Correcting: {len(self.session.history)} edits; last saved {ago}.")

    # ----- layers <-> session ----------------------------------------------------------------
    def _publish(self) -> None:
        """Show the session's lesions and mask (rejected ones drawn red) and wire the edit events."""
        findings = self.session.to_findings(include_rejected=True)
        prev = self.state.findings
        if prev is not None:
            findings.case_predictions, findings.heatmaps = prev.case_predictions, prev.heatmaps
            findings.models, findings.device = prev.models, prev.device
        self._syncing = True
        try:
            self.state.set_findings(findings)
            boxes, mask = self.dock.layer_with_role("boxes"), self.dock.layer_with_role("mask")
            boxes.events.data.connect(self._on_boxes)
            if mask is not None:
                mask.events.paint.connect(self._on_paint)
        finally:
            self._syncing = False

    def _on_boxes(self, event: Any) -> None:
        action = str(getattr(event, "action", "changed")).lower()
        if self._syncing or self.dock.writing_layers or self.session is None or "ing" in action:
            # the dock's own writes (a run's results) are not edits; adding/removing/changing: wait
            return
        removed = list(getattr(event, "data_indices", ()) or ()) if "remov" in action else []
        layer = self.dock.layer_with_role("boxes")
        self.apply_box_edits(list(layer.data), removed=removed)

    def apply_box_edits(self, rects: list[Any], removed: list[int] = ()) -> None:
        ops = box_ops(
            self.session.lesions,
            rects,
            removed=removed,
            depth=int(self.depth.value()),
            n_slices=self.state.study.shape[0],
        )
        for op in ops:
            if op.kind == "set":
                self.session.set_box(op.lesion_id, op.bbox)
            elif op.kind == "add":
                self.session.add_box(op.bbox)
            else:
                self.session.delete(op.lesion_id)
        if ops:
            QTimer.singleShot(0, self._publish)

    def _on_paint(self, event: Any = None) -> None:
        if self.session is None or self._syncing:
            return
        # napari emits "paint" before it writes the stroke into the array: read it a moment later
        mask = getattr(event, "source", None) or self.dock.layer_with_role("mask")
        QTimer.singleShot(0, lambda: self._take_mask(mask))

    def _take_mask(self, mask: Any) -> None:
        if self.session is not None and mask.data.shape == self.session.shape:
            self.session.set_mask(mask.data, what="paint in the viewer")

    # ----- actions ---------------------------------------------------------------------------
    def _selected(self) -> Any:
        return self.dock.sections["Findings"].current_lesion()

    def accept(self) -> None:
        self._status_change("accept")

    def reject(self) -> None:
        self._status_change("reject")

    def _status_change(self, what: str) -> None:
        if self.start() is None:
            return
        lesion = self._selected()
        if lesion is None:
            self.status.setText("Select a lesion in the Findings table first.")
            return
        row = self.dock.sections["Findings"].table.currentRow()
        getattr(self.session, what)(lesion.id)
        self._publish()
        self.dock.sections["Findings"].select_index(row)

    def undo(self) -> None:
        if self.session is not None and self.session.undo() is not None:
            self._publish()

    def redo(self) -> None:
        if self.session is not None and self.session.redo() is not None:
            self._publish()

    def next(self) -> None:
        self.dock.sections["Findings"].step(+1)

    def previous(self) -> None:
        self.dock.sections["Findings"].step(-1)

    def toggle_overlays(self) -> None:
        layers = [
            lay
            for role in ("boxes", "mask", "heatmap", "kinetic_map")
            for lay in self.dock.layers_with_role(role)
        ]
        show = not any(lay.visible for lay in layers)
        for lay in layers:
            lay.visible = show

    def draw_box(self) -> None:
        if self.start() is None:
            return
        boxes = self.dock.layer_with_role("boxes")
        self.viewer.layers.selection.active = boxes
        boxes.mode = "add_rectangle"

    def edit_boxes(self) -> None:
        if self.start() is None:
            return
        boxes = self.dock.layer_with_role("boxes")
        self.viewer.layers.selection.active = boxes
        boxes.mode = "select"

    def paint_mask(self, erase: bool = False) -> None:
        if self.start() is None:
            return
        mask = self.dock.layer_with_role("mask")
        if mask is None:
            tup = _layers.mask_layer(self.session.label_mask.copy(), self.state.study.affine)
            (mask,) = self.dock.add_tuples([tup])
            mask.events.paint.connect(self._on_paint)
        lesion = self._selected()
        if lesion is not None and lesion.label:
            mask.selected_label = int(lesion.label)
        self.viewer.layers.selection.active = mask
        mask.mode = "erase" if erase else "paint"

    def erase_mask(self) -> None:
        self.paint_mask(erase=True)
