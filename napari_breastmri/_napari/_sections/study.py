"""Study section: phases with their times and protocol, skipped series, warnings, PHI switch."""

from __future__ import annotations

import html
from typing import Any

from qtpy.QtWidgets import QCheckBox, QComboBox, QFileDialog, QHBoxLayout, QPushButton

from ...types import DEMO_LABEL, Study
from ._base import Section


def study_summary(study: Study, *, hide_phi: bool) -> str:
    """The study as HTML for the dock; patient fields only when not hidden (pure, tested)."""
    from ...geometry import orientation_label

    rows = []
    if study.meta.get("synthetic") or study.meta.get("demo"):
        rows.append(f"<b style='color:#e0a030'>{DEMO_LABEL}</b>")
    if not hide_phi and not study.phi.is_empty():
        phi = study.phi
        rows.append(
            "<b>Patient</b>: "
            + html.escape(", ".join(v for v in (phi.name, phi.patient_id, phi.birth_date) if v))
            + (f"<br><b>Accession</b>: {html.escape(phi.accession)}" if phi.accession else "")
            + (f"<br><b>Study date</b>: {html.escape(phi.study_date)}" if phi.study_date else "")
        )
    elif hide_phi:
        rows.append("<i>patient data hidden</i>")
    dz, dy, dx = study.spacing
    proto = study.protocol
    res = f", {proto.temporal_resolution_s:.1f} s/phase" if proto.temporal_resolution_s else ""
    rows.append(
        f"<b>Grid</b>: {study.shape[0]} x {study.shape[1]} x {study.shape[2]} voxels, "
        f"{dz:.2g} x {dy:.2g} x {dx:.2g} mm, {orientation_label(study.affine)}"
    )
    rows.append(f"<b>Protocol</b>: {proto.kind}{res}, {study.n_phases} phases")
    phases = ", ".join(f"{lab} {t:.0f} s" for lab, t in zip(study.phase_labels, study.times))
    rows.append(f"<b>Phases</b>: {html.escape(phases)}")
    for sk in study.skipped_series:
        rows.append(
            f"<span style='color:#999'>skipped: {html.escape(sk.description)} - {html.escape(sk.reason)}</span>"
        )
    for warning in study.warnings:
        rows.append(f"<span style='color:#e0a030'>warning: {html.escape(warning)}</span>")
    return "<br>".join(rows)


class StudySection(Section):
    title = "Study"

    def build(self) -> None:
        self.buttons(
            (
                "Open folder...",
                self.open_folder,
                "Open a DICOM folder or a case folder (Duke, MAMA-MIA, phantom)",
            ),
            ("Open file...", self.open_file, "Open a 4D NIfTI or a DICOM file"),
            ("Demo case", self.open_demo, f"Open the embedded phantom case ({DEMO_LABEL})"),
        )
        self.summary = self.label("No study open. Open a folder or file, or File > Open Sample.", rich=True)
        row = QHBoxLayout()
        self.series_choice = QComboBox()
        self.series_choice.setToolTip("Series found beside the DCE series and skipped; open one instead")
        self.series_btn = QPushButton("Open this series")
        self.series_btn.clicked.connect(self.open_other_series)
        row.addWidget(self.series_choice, 1)
        row.addWidget(self.series_btn)
        self.column.addLayout(row)
        self.series_choice.setVisible(False)
        self.series_btn.setVisible(False)
        self.hide_box = QCheckBox("Hide patient data (dock, layer names, title)")
        self.hide_box.setToolTip("Hides name, ID, birth date and accession everywhere in the viewer")
        self.hide_box.toggled.connect(self.state.set_hide_phi)
        self.column.addWidget(self.hide_box)
        self.state.study_changed.connect(self.refresh)
        self.state.phi_hidden_changed.connect(self._phi_changed)

    def _phi_changed(self, hidden: bool) -> None:
        self.hide_box.blockSignals(True)
        self.hide_box.setChecked(hidden)
        self.hide_box.setEnabled(not self.state.teaching)
        self.hide_box.blockSignals(False)
        self.refresh()

    def refresh(self, *_: Any) -> None:
        study = self.state.study
        if study is None:
            return
        self.summary.setText(study_summary(study, hide_phi=self.state.hide_phi))
        self.series_choice.clear()
        for sk in study.skipped_series:
            self.series_choice.addItem(f"{sk.description} ({sk.n_files} files)", sk.series_uid)
        has = bool(study.skipped_series) and isinstance(self.state.source, str)
        self.series_choice.setVisible(has)
        self.series_btn.setVisible(has)

    def open_other_series(self) -> Any:
        """Re-open the same folder with the chosen series as the DCE series."""
        uid = self.series_choice.currentData()
        if uid is None or not isinstance(self.state.source, str):
            return None
        return self.open_source(self.state.source, series_uid=uid)

    def open_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a breast DCE-MRI study folder")
        if path:
            self.open_source(path)

    def open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a breast DCE-MRI file", "", "Images (*.nii *.nii.gz *.dcm *)"
        )
        if path:
            self.open_source(path)

    def open_source(self, source: Any, series_uid: str | None = None) -> Any:
        """Load in a worker (never on the UI thread), then show."""
        from .._worker import run_blocking_in_thread

        def load():
            from ...io import load_study

            return load_study(source, series_uid=series_uid) if series_uid else load_study(source)

        self.summary.setText("Loading ...")
        job = run_blocking_in_thread(
            load,
            on_result=lambda s: self.dock.set_study(s, source=source),
            on_error=self._failed,
            step="loading",
        )
        self.dock.jobs.append(job)
        return job

    def open_demo(self) -> Any:
        from ...phantom import DEMO_SEED
        from .._worker import run_blocking_in_thread

        def make():
            from ...phantom import generate_case

            case = generate_case(DEMO_SEED)
            case.study.meta.setdefault("synthetic", True)
            return case

        def show(case) -> None:
            self.dock.set_study(
                case.study, truth=case.truth, truth_mask=case.label_mask, source=f"phantom:{DEMO_SEED}"
            )

        job = run_blocking_in_thread(make, on_result=show, on_error=self._failed, step="phantom")
        self.dock.jobs.append(job)
        return job

    def _failed(self, exc: BaseException) -> None:
        self.summary.setText("Could not open the study (see the notification).")
        self.dock.show_error(exc)
