"""Teaching section: patient data hidden, subtraction / heatmap / kinetic map side by side, and a
"guess first" round that hides the model's answer until the learner commits to a guess."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel

from .. import _layers
from .._teaching import QUESTIONS, GuessSession
from ._base import Section


class TeachingSection(Section):
    title = "Teaching"

    def build(self) -> None:
        self.toggle = QCheckBox("Teaching mode (hides patient data, side-by-side view)")
        self.toggle.toggled.connect(self.set_teaching)
        self.column.addWidget(self.toggle)
        row = QHBoxLayout()
        self.target = QComboBox()
        self.target.addItems(list(QUESTIONS))
        self.target.currentTextChanged.connect(self._fill_choices)
        self.choice = QComboBox()
        row.addWidget(QLabel("Guess"))
        row.addWidget(self.target)
        row.addWidget(self.choice)
        self.column.addLayout(row)
        self.submit_btn, self.next_btn = self.buttons(
            (
                "Submit guess",
                self.submit,
                "Commit to an answer; then the model's answer and the truth are shown",
            ),
            ("Next round", self.next_round, "Hide the answers again for the next question"),
        )
        self.result = self.label("Guess first: the model's answer stays hidden until you submit.")
        self.session = GuessSession()
        self.revealed = True
        self._fill_choices(self.target.currentText())
        self.state.findings_changed.connect(lambda *_: self._gate())

    def _fill_choices(self, target: str) -> None:
        self.choice.clear()
        self.choice.addItems(list(QUESTIONS.get(target, ())))

    # ----- mode -----------------------------------------------------------------------------
    def set_teaching(self, on: bool) -> None:
        if on:
            self._phi_before = self.state.hide_phi
        self.state.set_teaching(on)
        if not on:
            self.state.set_hide_phi(getattr(self, "_phi_before", False))
            self.viewer.canvas.grid.enabled = False
            self.revealed = True
            self._gate()
            return
        self.revealed = False
        self._gate()
        self.side_by_side()

    def side_by_side(self) -> None:
        """Grid: subtraction | heatmap (if any) | kinetic map (curve types)."""
        study = self.state.study
        if study is None:
            return
        self.dock.remove_roles("protocol", "teaching")
        for layer in self.viewer.layers:
            layer.visible = False
        tuples = []
        sub = _layers.subtraction_layer(study, 1)
        sub[1].update(
            name="teaching subtraction", visible=True, metadata=_layers._meta("teaching", panel="sub1")
        )
        tuples.append(sub)
        findings = self.state.findings
        if findings is not None and findings.heatmaps:
            hm = _layers.heatmap_layer(findings.heatmaps[-1], reference=study.affine)
            hm[1].update(
                name="teaching heatmap",
                blending="translucent",
                opacity=1.0,
                metadata=_layers._meta("teaching", panel="heatmap"),
            )
            tuples.append(hm)
        try:
            from ... import kinetics as k

            ct = _layers.kinetic_map_layer("curve_type", k.curve_types(study), study.affine)
            ct[1].update(
                name="teaching curve type", opacity=1.0, metadata=_layers._meta("teaching", panel="curve")
            )
            tuples.append(ct)
        except Exception as exc:  # kinetics may refuse the study: teach with what there is
            self.result.setText(f"No kinetic map: {exc}")
        self.dock.add_tuples(tuples)
        self.viewer.canvas.grid.stride = 1
        self.viewer.canvas.grid.enabled = True
        self.viewer.reset_view()

    def _gate(self) -> None:
        """While a guess is pending in teaching mode, the Predictions section stays closed."""
        preds = self.dock.sections.get("Predictions")
        if preds is None:
            return
        hidden = self.state.teaching and not self.revealed
        preds.setEnabled(not hidden)
        preds.canvas.setVisible(not hidden)
        if hidden:
            self.dock.collapsibles["Predictions"].collapse(animate=False)

    # ----- guess first ----------------------------------------------------------------------
    def submit(self) -> Any:
        target, guess = self.target.currentText(), self.choice.currentText()
        answer = self.session.submit(target, guess, self.state.findings, self.state.truth)
        display: dict[str, str] = {}
        if self.state.findings is not None and target in self.state.findings.case_predictions:
            display = self.state.findings.case_predictions[target].display_names
        self.result.setText(self.session.reveal_text(answer, display))
        self.revealed = True
        self._gate()
        if self.state.teaching:
            self.dock.collapsibles["Predictions"].expand(animate=False)
        return answer

    def next_round(self) -> None:
        self.revealed = not self.state.teaching
        self._gate()
        right, asked = self.session.score
        self.result.setText(f"Guess first. Session score so far: {right}/{asked}.")
