"""Teaching section: patient data hidden, subtraction / heatmap / kinetic map side by side, and a
"guess first" round that hides the model's answer until the learner commits to a guess."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel

from .. import _layers
from .._kinetic_maps import Maps, map_values
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
        self.label(
            "Panels: the subtraction | the model's heatmap on the first post-contrast phase | "
            "curve types in the breasts on it (blue persistent, yellow plateau, red washout; "
            "the chest wall and the heart are left grey)."
        )
        self.result = self.label("Guess first: the model's answer stays hidden until you submit.")
        self.session = GuessSession()
        self.revealed = True
        self._lesson: object | None = None
        self._fill_choices(self.target.currentText())
        self.state.findings_changed.connect(lambda *_: self._gate())

    def _fill_choices(self, target: str) -> None:
        self.choice.clear()
        self.choice.addItems(list(QUESTIONS.get(target, ())))

    # ----- mode -----------------------------------------------------------------------------
    def set_teaching(self, on: bool) -> None:
        self._lesson = None  # panels still being made for a lesson are dropped
        if on:
            self._phi_before = self.state.hide_phi
            self._visible_before = [layer for layer in self.viewer.layers if layer.visible]
        self.state.set_teaching(on)
        if not on:
            self.state.set_hide_phi(getattr(self, "_phi_before", False))
            self._leave_side_by_side()
            self.revealed = True
            self._gate()
            return
        self.revealed = False
        self._gate()
        self.side_by_side()

    def _leave_side_by_side(self) -> None:
        """Back to the reading view: the teaching panels go, and the layers shown before come back.

        Why: the side-by-side view hides every other layer, so leaving it with only the grid
        switched off left the reader looking at the teaching composites, their own layers hidden.
        Layers removed meanwhile (a new study) are skipped; with none left, the phases, boxes and
        mask are shown, as after the hanging protocol."""
        self.dock.remove_roles("teaching")
        self.dock.show_reading_view(getattr(self, "_visible_before", []))
        self._visible_before = []

    def side_by_side(self) -> None:
        """Grid: subtraction | heatmap on post1 (if any) | curve types in the breasts on post1.

        napari's grid shows one layer per panel, so an overlay layer would sit on black; the
        heatmap and kinetic panels are therefore composites (the first post-contrast phase in
        grey with the map blended in, see :func:`._layers.heatmap_composite`), so students see
        where the map lies. The subtraction shows at once; the composites follow from a worker."""
        study = self.state.study
        if study is None:
            return
        self.dock.remove_roles("protocol", "teaching")
        for layer in self.viewer.layers:
            layer.visible = False
        sub = _layers.subtraction_layer(study, 1)
        sub[1].update(
            name="teaching subtraction", visible=True, metadata=_layers._meta("teaching", panel="sub1")
        )
        self.dock.add_tuples([sub])
        self.viewer.canvas.grid.stride = 1
        self.viewer.canvas.grid.enabled = True
        self.viewer.reset_view()
        self._lesson = lesson = object()  # a later switch makes this one's panels stale
        findings = self.state.findings
        heatmap = findings.heatmaps[-1] if findings is not None and findings.heatmaps else None

        def without_maps(exc: BaseException) -> None:  # teach with the subtraction and the heatmap
            self.result.setText(f"No kinetic map: {exc}")
            self._compose_panels(study, heatmap, None, lesson)

        self.dock.kinetic_maps.request(
            study, lambda maps: self._compose_panels(study, heatmap, maps, lesson), without_maps
        )

    def _compose_panels(self, study: Any, heatmap: Any, maps: Maps | None, lesson: object) -> None:
        """The heatmap and curve-type composites, built in a worker (RGB volumes of the study's
        size: about 0.4-0.9 s each on a phantom study, which froze the viewer on the UI thread)
        once the dock's shared kinetic maps are known (:mod:`.._kinetic_maps`). Curve types only
        in the breasts: the chest-wall muscle and the heart enhance too, and coloured they draw
        the eye away from the breast."""
        from .._worker import run_blocking_in_thread

        def compose() -> list[_layers.LayerDataTuple]:
            tuples = []
            if heatmap is not None:
                name = f"teaching heatmap ({heatmap.method}, {heatmap.target}) on post1"
                tuples.append(
                    _layers.heatmap_composite(heatmap, study, name=name, role="teaching", panel="heatmap")
                )
            if maps is not None:
                curve = map_values("curve type", maps)
                name = "teaching curve type on post1"
                tuples.append(
                    _layers.curve_type_composite(curve, study, name=name, role="teaching", panel="curve")
                )
            return tuples

        def current() -> bool:  # else the lesson changed while they were made
            return self.state.teaching and self.state.study is study and self._lesson is lesson

        added: list[Any] = []

        def add_hidden(t: _layers.LayerDataTuple) -> None:
            added.extend(self.dock.add_tuples([(t[0], {**t[1], "visible": False}, t[2])]))

        def reveal() -> None:
            for layer in added:
                layer.visible = True
            self.viewer.reset_view()

        def show(tuples: list[_layers.LayerDataTuple]) -> None:
            # one panel per event-loop turn, hidden until all are in: napari takes 0.2-0.4 s of UI
            # time per layer it adds, more when it must slice and draw it in the grid at once
            steps = [lambda t=t: add_hidden(t) for t in tuples] + [reveal]
            self.dock.in_turns(steps, valid=current)

        job = run_blocking_in_thread(compose, on_result=show, on_error=self.dock.show_error, step="panels")
        self.dock.jobs.append(job)

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
