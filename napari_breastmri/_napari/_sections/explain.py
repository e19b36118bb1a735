"""Explain section: method, target and layer; the heatmap as an image layer with opacity and
threshold sliders; per-phase bars; the faithfulness numbers with a plain-language reading; and a
side-by-side comparison of two methods (grid mode, each heatmap over the phase in view).

The heatmap comes from :func:`napari_breastmri.explain.explain_study` run in a worker with the
fast scores only (per-phase attribution, CAM x kinetics, pointing when truth is loaded), so its
layer appears within seconds. The slow faithfulness checks (deletion/insertion against a random
order, the model-randomisation check: a minute or two on a small CPU) then run in a follow-up
worker (:func:`napari_breastmri.explain.study.faithfulness_scores`); when they arrive they are
written into the same :class:`~napari_breastmri.types.Heatmap` (the one in the findings, so
exports and reports carry them) and the dock's reading is redrawn. A new explanation, a new study
or Cancel stops the follow-up, and a result that arrives for an older explanation is dropped.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QSlider

from ...types import Heatmap
from .. import _layers, _plots
from ._base import Section

METHODS = ("gradcam", "gradcam++", "hirescam", "layercam", "xgradcam", "eigencam", "scorecam")


def heatmap_text(hm: Heatmap, *, pending: bool = False) -> str:
    """What the dock says under a heatmap: the plain-language reading
    (:func:`napari_breastmri.explain.describe`), the numbers, and whether the slow faithfulness
    checks are still running (pure apart from the reading)."""
    from ...explain.faithfulness import describe

    text = f"{hm.method} on {hm.target} ({hm.layer}): {describe(hm)}"
    if hm.scores:
        text += " " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(hm.scores.items())) + "."
    if pending:
        text += "\nFaithfulness checks running... (deletion/insertion and the randomisation check)"
    return text


class ExplainSection(Section):
    title = "Explain"

    def build(self) -> None:
        grid = [
            ("Method", QComboBox()),
            ("Compare with", QComboBox()),
            ("Model", QComboBox()),
            ("Target", QComboBox()),
        ]
        self.method, self.method2, self.model, self.target = (w for _, w in grid)
        self.method.addItems(METHODS)
        self.method2.addItems(["(none)", *METHODS])
        self.target.setEditable(True)
        self.target.setToolTip("A class name, 'lesion:N' for a detected lesion, or empty for the top class")
        for name, widget in grid:
            row = QHBoxLayout()
            row.addWidget(QLabel(name))
            row.addWidget(widget, 1)
            self.column.addLayout(row)
        row = QHBoxLayout()
        self.layer_name = QLineEdit()
        self.layer_name.setPlaceholderText("target layer (from the model card)")
        row.addWidget(QLabel("Layer"))
        row.addWidget(self.layer_name)
        self.column.addLayout(row)
        self.run_btn, self.cancel_btn = self.buttons(
            ("Explain", self.run, "Compute the heatmap in the background"),
            ("Cancel", self.cancel, "Stop; nothing half-made is added"),
        )
        self.cancel_btn.setEnabled(False)
        self.status = self.label("")
        self.opacity = self._slider("Opacity", 50, self._style_layers)
        self.threshold = self._slider("Threshold", 0, self._style_layers)
        self.canvas = _plots.canvas(3.6, 1.6)
        self.column.addWidget(self.canvas)
        self.faith = self.label("")
        self.jobs: list[Any] = []
        #: the follow-up jobs computing the slow faithfulness scores of the heatmaps just shown
        self.followups: list[Any] = []
        #: heatmaps (by id) whose faithfulness checks are still running
        self._pending: set[int] = set()
        #: bumped by every Explain click and every new study: a follow-up started under an older
        #: generation has its result dropped
        self._generation = 0
        self.state.findings_changed.connect(self._on_findings)
        self.state.study_changed.connect(self._on_study)
        self.state.heatmap_added.connect(self.show_heatmap_info)

    def _slider(self, name: str, value: int, slot) -> QSlider:
        row = QHBoxLayout()
        s = QSlider(Qt.Horizontal)
        s.setRange(0, 100)
        s.setValue(value)
        s.valueChanged.connect(lambda *_: slot())
        row.addWidget(QLabel(name))
        row.addWidget(s)
        self.column.addLayout(row)
        return s

    def _on_study(self, _study: Any) -> None:
        """A new study: explanations of the old one still running are stopped, their results dropped."""
        self._generation += 1
        for job in self.jobs:
            job.cancel()
        self._stop_followups()

    def _on_findings(self, findings: Any) -> None:
        self.model.clear()
        self.target.clear()
        if findings is None:
            return
        for run in findings.models:
            self.model.addItem(f"{run.name} v{run.version} ({run.task}/{run.target})", run)
        self.target.addItem("")
        for pred in findings.case_predictions.values():
            self.target.addItems(list(pred.probabilities))
        self.target.addItems([f"lesion:{les.id}" for les in findings.lesions])
        if findings.heatmaps:
            self.show_heatmap_info(findings.heatmaps[-1])

    # ----- running --------------------------------------------------------------------------
    def run(self) -> list[Any]:
        from .._worker import ProgressClock, start

        study, findings, run = self.state.study, self.state.findings, self.model.currentData()
        if study is None or findings is None or run is None:
            self.status.setText("Run a model first, then explain it.")
            return []
        methods = [self.method.currentText()]
        if self.method2.currentText() != "(none)":
            methods.append(self.method2.currentText())
        target = self.target.currentText().strip() or None
        layer = self.layer_name.text().strip() or None
        results: list[Any] = []
        truth_mask = self.state.truth_mask
        self._generation += 1
        self._stop_followups()
        generation = self._generation
        self.jobs = []
        clock = ProgressClock()

        def factory_for(method: str):
            def factory(should_cancel):
                from ...explain import explain_study
                from ...models import registry

                pkg = registry.resolve(f"{run.name}@{run.version}")
                # the fast scores now; the slow ones in a follow-up job once the layer is shown
                kwargs: dict[str, Any] = {"scores": "fast", "keep": True}
                if layer:
                    kwargs["layer"] = layer
                if truth_mask is not None:
                    kwargs["truth_mask"] = truth_mask
                return (
                    yield from explain_study(study, pkg, findings, method=method, target=target, **kwargs)
                )

            return factory

        def done(explained: Any) -> None:
            results.append(explained)
            if len(results) == len(methods) and generation == self._generation:
                self._add(results, generation)

        for method in methods:
            job = start(
                factory_for(method),
                on_progress=lambda p: self.status.setText(clock.text(p)),
                on_result=done,
                on_error=self._failed,
                on_cancelled=lambda: self.status.setText("Cancelled; nothing was added."),
                on_finished=self._finished,
            )
            self.jobs.append(job)
            self.dock.jobs.append(job)
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        return self.jobs

    def cancel(self) -> None:
        for job in self.jobs:
            job.cancel()
        if self._stop_followups():
            self.status.setText("Faithfulness checks cancelled; the heatmap stays, without those scores.")

    def _stop_followups(self) -> bool:
        """Cancel the running faithfulness checks (their results are dropped); True if any ran."""
        running = [job for job in self.followups if job.running]
        for job in running:
            job.cancel()
        self.followups = []
        if self._pending:
            self._pending.clear()
            self._refresh_info()
        return bool(running)

    def _failed(self, exc: BaseException) -> None:
        self.status.setText("Explanation failed (see the notification).")
        self.dock.show_error(exc)

    def _finished(self, _job: Any) -> None:
        if all(not j.running for j in self.jobs):
            self.run_btn.setEnabled(True)
            self.cancel_btn.setEnabled(any(j.running for j in self.followups))

    def _add(self, results: list[Any], generation: int | None = None) -> None:
        """Show the explanations: each an ``Explained`` (its slow scores then run in a follow-up
        job) or a finished ``Heatmap`` (shown as it is)."""
        if not all(results):
            self.status.setText("The model found nothing to explain for this target (see Findings warnings).")
        items = [e for e in results if e is not None]
        heatmaps = [getattr(e, "heatmap", e) for e in items]
        to_score = [e for e in items if hasattr(e, "heatmap") and e.model is not None]
        self._pending = {id(e.heatmap) for e in to_score}  # before add_heatmap draws the reading
        for hm in heatmaps:
            self.state.add_heatmap(hm)
            self.dock.add_tuples([_layers.heatmap_layer(hm, reference=self.state.study.affine)])
        self._style_layers()
        if len(heatmaps) == 2:
            self.compare(heatmaps)
        if heatmaps:
            checks = "; faithfulness checks running..." if to_score else "."
            self.status.setText(f"{len(heatmaps)} heatmap(s) added{checks}")
        for item in to_score:
            self._start_followup(item, self._generation if generation is None else generation)

    def _start_followup(self, explained: Any, generation: int) -> Any:
        """Score ``explained`` in a background job; its scores land in its heatmap when they arrive."""
        from .._worker import ProgressClock, start

        hm, clock = explained.heatmap, ProgressClock()

        def factory(should_cancel):
            from ...explain.study import faithfulness_scores

            return (yield from faithfulness_scores(explained, should_cancel=should_cancel))

        def arrived(scores: dict[str, float]) -> None:
            if generation != self._generation or id(hm) not in self._pending:
                return  # a newer explanation or study: this one's checks no longer belong here
            hm.scores.update(scores)  # the Heatmap in the findings: exports and reports see them
            self._pending.discard(id(hm))
            explained.model = explained.cam_input = None  # free the network and the input
            self._refresh_info(hm)
            if not self._pending:
                self.status.setText("Faithfulness checks done.")

        def stopped(exc: BaseException | None = None) -> None:
            if generation != self._generation:
                return
            explained.model = explained.cam_input = None
            self._pending.discard(id(hm))
            self._refresh_info(hm)
            if exc is not None:
                self.status.setText(
                    "The faithfulness checks failed (see the notification); the heatmap stays."
                )
                self.dock.show_error(exc)

        def progress(step: Any) -> None:
            if generation == self._generation:
                self.status.setText("Faithfulness checks running... " + clock.text(step))

        job = start(
            factory,
            on_progress=progress,
            on_result=arrived,
            on_error=stopped,
            on_cancelled=stopped,
            on_finished=self._finished,
        )
        self.followups.append(job)
        self.dock.jobs.append(job)
        self.cancel_btn.setEnabled(True)
        return job

    def _refresh_info(self, hm: Heatmap | None = None) -> None:
        """Redraw the reading for ``hm`` (default: the findings' last heatmap) if it is the one shown."""
        findings = self.state.findings
        shown = findings.heatmaps[-1] if findings is not None and findings.heatmaps else None
        if shown is not None and (hm is None or hm is shown):  # the text only: the bars have not changed
            self.faith.setText(heatmap_text(shown, pending=id(shown) in self._pending))

    def compare(self, heatmaps: list[Heatmap]) -> None:
        """Two methods side by side, each heatmap on the anatomy (grid mode, stride 2).

        napari's grid puts ``stride`` consecutive layers into one panel, so each heatmap gets its
        own anatomy layer right below it (the phase in view, see :meth:`_anatomy_tuple`; the array
        is shared, not copied) and the pairs are moved to the bottom of the layer list: indices
        0, 1 | 2, 3, as the Display section's linked cursors are. Everything else is hidden, and
        hidden layers take no panel. The compared heatmaps are drawn translucent with an alpha-ramped
        colour map (:func:`._layers.overlay_colormap`): added to bright tissue they turned white.
        The anatomy layers have the "protocol" role, so the Display section's "One at a time" (or a
        new study) removes them."""
        self.dock.remove_roles("protocol")
        wanted = [_layers.heatmap_name(h) for h in heatmaps]
        by_name = {lay.name: lay for lay in self.dock.layers_with_role("heatmap")}
        pairs = []
        for name in wanted:
            heat = by_name.get(name)
            if heat is None:
                continue
            (anatomy,) = self.dock.add_tuples([self._anatomy_tuple(name)])
            heat.colormap = _layers.overlay_colormap()  # see there: additive washes out on tissue
            heat.blending = "translucent"
            pairs += [anatomy, heat]
        for layer in self.viewer.layers:
            layer.visible = layer in pairs
        for target, layer in enumerate(pairs):
            self.viewer.layers.move(self.viewer.layers.index(layer), target)
        self.viewer.canvas.grid.stride = 2
        self.viewer.canvas.grid.enabled = True
        self.viewer.reset_view()
        QTimer.singleShot(0, self.viewer.reset_view)  # again once the grid's panels are laid out

    def _anatomy_tuple(self, heatmap_name: str) -> _layers.LayerDataTuple:
        """The image under a compared heatmap: the phase in view on the phase slider (post1 when
        the pre-contrast phase is in view: the heatmaps explain enhancement, which the pre lacks),
        grey, in the DCE layer's display window."""
        study = self.state.study
        phase = int(self.viewer.dims.current_step[0]) if self.viewer.dims.ndim >= 4 else 1
        phase = min(max(phase, 0), study.n_phases - 1)
        if phase == 0 and study.n_phases > 1:
            phase = 1
        phases = self.dock.layer_with_role("phases")
        limits = (
            tuple(phases.contrast_limits)
            if phases is not None
            else _layers.contrast_limits(study.data[phase])
        )
        return (
            study.data[phase],
            {
                "name": f"{study.phase_labels[phase]} under {heatmap_name}",
                "affine": _layers.napari_affine(study.affine, 3),
                "contrast_limits": limits,
                "colormap": "gray",
                "metadata": _layers._meta("protocol", panel="compare", heatmap=heatmap_name),
            },
            "image",
        )

    def _style_layers(self) -> None:
        for layer in self.dock.layers_with_role("heatmap"):
            layer.opacity = self.opacity.value() / 100.0
            layer.contrast_limits = (min(self.threshold.value() / 100.0, 0.99), 1.0)

    def show_heatmap_info(self, hm: Heatmap) -> None:
        if hm.phase_attribution:
            _plots.phase_bars(self.canvas.figure, hm.phase_attribution)
            self.canvas.draw_idle()
        self.faith.setText(heatmap_text(hm, pending=id(hm) in self._pending))
