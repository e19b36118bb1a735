"""Predictions section: subtype, pCR, lymph node and screening probabilities as bars with their
intervals, the model(s) that made them, and the model card one click away."""

from __future__ import annotations

import html
from typing import Any

from qtpy.QtWidgets import QComboBox, QDialog, QTextBrowser, QVBoxLayout

from ...types import DEMO_LABEL, Findings
from .. import _plots
from ._base import Section


def card_html(card_text: str, demo: bool) -> str:
    banner = f"<p><b style='color:#e0a030'>{DEMO_LABEL}</b></p>" if demo else ""
    return f"{banner}<pre>{html.escape(card_text)}</pre>"


class PredictionsSection(Section):
    title = "Predictions"

    def build(self) -> None:
        self.canvas = _plots.canvas(3.6, 2.6)
        self.column.addWidget(self.canvas)
        self.demo_label = self.label("")
        self.card_choice = QComboBox()
        self.column.addWidget(self.card_choice)
        self.buttons(("Model card", self.show_card, "What the model is, what it was trained on, its metrics"))
        self.state.findings_changed.connect(self.refresh)
        self.refresh(None)

    def refresh(self, findings: Findings | None) -> None:
        preds = findings.case_predictions if findings is not None else {}
        _plots.prediction_bars(self.canvas.figure, preds)
        self.canvas.draw_idle()
        self.card_choice.clear()
        runs = findings.models if findings is not None else []
        for run in runs:
            self.card_choice.addItem(f"{run.name} v{run.version}", run)
        demo = any(r.demo for r in runs)
        self.demo_label.setText(f"<b style='color:#e0a030'>{DEMO_LABEL}</b>" if demo else "")

    def card_text(self) -> tuple[str, bool]:
        run = self.card_choice.currentData()
        if run is None:
            return ("No model has run yet.", False)
        try:
            from ...models import registry

            pkg = registry.resolve(f"{run.name}@{run.version}")
            text = (pkg.path / "card.yaml").read_text(encoding="utf-8")
            return (text, bool(pkg.card.demo))
        except Exception as exc:
            return (f"Card of {run.name} v{run.version} not found: {exc}", bool(run.demo))

    def show_card(self) -> Any:
        text, demo = self.card_text()
        dlg = QDialog(self)
        dlg.setWindowTitle("Model card")
        lay = QVBoxLayout(dlg)
        view = QTextBrowser()
        view.setHtml(card_html(text, demo))
        lay.addWidget(view)
        dlg.resize(560, 520)
        dlg.show()
        self._dialog = dlg
        return dlg
