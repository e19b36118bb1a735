"""PACS section: a DICOMweb server URL, search by patient or date (QIDO-RS), double-click a study
to retrieve it into the local cache (WADO-RS, with progress) and open it. Client:
:class:`napari_breastmri.io.pacs.PacsClient`; all network work runs in workers."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QAbstractItemView, QHBoxLayout, QLabel, QLineEdit, QTableWidget, QTableWidgetItem

from ._base import Section

COLUMNS = ("patient", "date", "description", "series")


class PacsSection(Section):
    title = "PACS"

    def build(self) -> None:
        self.url = QLineEdit("http://127.0.0.1:8042/dicom-web")
        self.patient = QLineEdit()
        self.patient.setPlaceholderText("patient name or ID (* wildcards)")
        self.date_from = QLineEdit()
        self.date_from.setPlaceholderText("from YYYYMMDD")
        self.date_to = QLineEdit()
        self.date_to.setPlaceholderText("to YYYYMMDD")
        for name, widget in (("Server", self.url), ("Patient", self.patient)):
            row = QHBoxLayout()
            row.addWidget(QLabel(name))
            row.addWidget(widget)
            self.column.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.date_from)
        row.addWidget(self.date_to)
        self.column.addLayout(row)
        self.buttons(("Search", self.search, "Search the archive (QIDO-RS)"))
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setToolTip("Double-click a study to retrieve and open it")
        self.table.cellDoubleClicked.connect(lambda r, _c: self.open_row(r))
        self.column.addWidget(self.table)
        self.status = self.label("")
        self.results: list[Any] = []
        self.state.phi_hidden_changed.connect(lambda *_: self._fill())

    def client(self) -> Any:
        from ...io.pacs import PacsClient

        return PacsClient(self.url.text().strip())

    def search(self) -> Any:
        from .._worker import run_blocking_in_thread

        text = self.patient.text().strip()
        kwargs = {
            "date_from": self.date_from.text().strip() or None,
            "date_to": self.date_to.text().strip() or None,
        }
        if text:
            kwargs[
                "patient_name"
                if any(c.isalpha() for c in text) and "*" in text or " " in text
                else "patient_id"
            ] = text
        client = self.client()
        self.status.setText("Searching ...")
        job = run_blocking_in_thread(
            lambda: client.search_studies(**kwargs),
            on_result=self._found,
            on_error=self._failed,
            step="search",
        )
        self.dock.jobs.append(job)
        return job

    def _found(self, results: list[Any]) -> None:
        self.results = list(results)
        self._fill()
        self.status.setText(f"{len(self.results)} stud{'y' if len(self.results) == 1 else 'ies'} found.")

    def _fill(self) -> None:
        self.table.setRowCount(0)
        for s in self.results:
            r = self.table.rowCount()
            self.table.insertRow(r)
            who = "(hidden)" if self.state.hide_phi else f"{s.patient_name} {s.patient_id}".strip()
            cells = (who, "" if self.state.hide_phi else s.study_date, s.description, str(s.n_series or ""))
            for c, text in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(text))

    def open_row(self, row: int) -> Any:
        from .._worker import ProgressClock, start

        uid = self.results[row].study_uid
        client = self.client()
        clock = ProgressClock()

        def factory(_should_cancel):
            return (yield from client.open_study(uid))

        job = start(
            factory,
            on_progress=lambda p: self.status.setText(clock.text(p)),
            on_result=lambda study: self.dock.set_study(study, source=f"pacs:{uid}"),
            on_error=self._failed,
        )
        self.dock.jobs.append(job)
        return job

    def _failed(self, exc: BaseException) -> None:
        self.status.setText("The archive did not answer as expected (see the notification).")
        self.dock.show_error(exc)
