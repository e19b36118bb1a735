"""Export section: findings to NIfTI, DICOM SEG/SR, Duke CSV and findings.json, and the HTML
report, written in a worker by :mod:`napari_breastmri.io.export` and :mod:`napari_breastmri.report`
(atomic writes: a failed export leaves nothing half-written)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QCheckBox, QFileDialog, QHBoxLayout

from ._base import Section

FORMATS = ("nifti", "seg", "sr", "csv", "json")


class ExportSection(Section):
    title = "Export"

    def build(self) -> None:
        row = QHBoxLayout()
        self.checks = {}
        for fmt in FORMATS:
            box = QCheckBox(fmt)
            box.setChecked(fmt in ("nifti", "csv", "json"))
            box.setToolTip(
                {
                    "seg": "DICOM SEG (needs the source DICOM)",
                    "sr": "DICOM SR TID 1500 (needs the source DICOM)",
                }.get(fmt, f"{fmt} file(s)")
            )
            row.addWidget(box)
            self.checks[fmt] = box
        self.column.addLayout(row)
        self.buttons(
            ("Export...", self.choose_and_export, "Write the ticked formats into a folder"),
            ("Report...", self.choose_and_report, "Write report.html (patient data as the dock shows it)"),
        )
        self.status = self.label("")

    def formats(self) -> list[str]:
        return [f for f, box in self.checks.items() if box.isChecked()]

    def choose_and_export(self) -> None:
        out = QFileDialog.getExistingDirectory(self, "Export findings into")
        if out:
            self.export(out)

    def choose_and_report(self) -> None:
        out = QFileDialog.getExistingDirectory(self, "Write the report into")
        if out:
            self.report(out)

    def export(self, out_dir: str | Path) -> Any:
        from .._worker import start

        study, findings = self.state.study, self.state.findings
        if findings is None:
            self.status.setText("Nothing to export yet: run the models (or correct findings) first.")
            return None
        formats = self.formats()

        def factory(_should_cancel):
            from ...io.export import export_findings

            return (yield from export_findings(study, findings, out_dir, formats))

        def done(files: dict) -> None:
            n = sum(len(v) for v in files.values())
            self.status.setText(f"Exported {n} file(s) to {out_dir}.")

        job = start(
            factory,
            on_progress=lambda p: self.status.setText(f"{p.step} ..."),
            on_result=done,
            on_error=self._failed,
        )
        self.dock.jobs.append(job)
        return job

    def report(self, out_dir: str | Path) -> Any:
        from .._worker import run_blocking_in_thread

        study, findings = self.state.study, self.state.findings
        if study is None or findings is None:
            self.status.setText("Run the models first; the report shows their findings.")
            return None
        show_phi, truth = not self.state.hide_phi, self.state.truth

        def make():
            from ...report.html import write_report

            return write_report(study, findings, out_dir, show_phi=show_phi, truth=truth)

        job = run_blocking_in_thread(
            make,
            on_result=lambda p: self.status.setText(f"Report: {p}"),
            on_error=self._failed,
            step="report",
        )
        self.dock.jobs.append(job)
        return job

    def _failed(self, exc: BaseException) -> None:
        self.status.setText("Export failed (see the notification); nothing half-written was kept.")
        self.dock.show_error(exc)
