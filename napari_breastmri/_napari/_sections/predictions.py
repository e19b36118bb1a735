"""Predictions section: subtype, pCR, lymph node and screening probabilities as bars with their
intervals, the model(s) that made them, and the model card one click away."""

from __future__ import annotations

import html
from typing import Any

from qtpy.QtWidgets import QComboBox, QDialog, QTextBrowser, QVBoxLayout

from ...types import DEMO_LABEL, Findings
from .. import _plots
from .._figure_view import FigureView
from ._base import Section


def card_html(card_text: str, demo: bool) -> str:
    banner = f"<p><b style='color:#e0a030'>{DEMO_LABEL}</b></p>" if demo else ""
    return f"{banner}<pre>{html.escape(card_text)}</pre>"


def bars_plot(findings: Findings | None) -> Any:
    """The draw function of the probability bars for these findings (pure)."""
    preds = dict(findings.case_predictions) if findings is not None else {}
    return lambda fig: _plots.prediction_bars(fig, preds)


class PredictionsSection(Section):
    title = "Predictions"

    def build(self) -> None:
        self.canvas = FigureView(2.6)
        self._shown: Any = ()  # the case_predictions object on screen (skip redraws of the same)
        self._prerendered: Any = None
        self.column.addWidget(self.canvas)
        self.demo_label = self.label("")
        self.card_choice = QComboBox()
        self.column.addWidget(self.card_choice)
        self.buttons(("Model card", self.show_card, "What the model is, what it was trained on, its metrics"))
        self.state.findings_changed.connect(self.refresh)
        self.refresh(None)

    @staticmethod
    def prerender(findings: Findings, size: tuple[int, int, float]) -> tuple[Any, Any, Any, int, Any]:
        """Worker side of a model run: (draw, figure, rgba, width, predictions) for ``findings`` at
        ``size`` (read on the UI thread before the run); :meth:`use_prerendered` takes it."""
        draw = bars_plot(findings)
        fig, rgba = _plots.render_rgba(draw, *size)
        return (draw, fig, rgba, size[0], findings.case_predictions)

    def use_prerendered(self, rendered: tuple[Any, Any, Any, int, Any]) -> None:
        """The next refresh for these predictions shows these pixels instead of drawing."""
        self._prerendered = rendered

    def refresh(self, findings: Findings | None) -> None:
        preds = findings.case_predictions if findings is not None else None
        pre, self._prerendered = self._prerendered, None
        if pre is not None and pre[4] is preds:
            self.canvas.show_rendered(pre[0], pre[1], pre[2], width=pre[3])
            self._shown = preds
        elif preds is not self._shown or self.canvas.figure is None:
            # a correction re-publishes the same predictions object: nothing to redraw then
            self.canvas.set_plot(bars_plot(findings))
            self._shown = preds
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
