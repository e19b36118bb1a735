"""The reading-station dock: Study, Display, Models, Findings, Predictions, Kinetics, Explain,
Corrections, Teaching, PACS and Export, each a collapsible section (see ``_sections/``).

The dock owns the viewer-side glue: it turns the pure layer tuples of :mod:`._layers` into
layers, finds them again by their ``metadata["breastmri"]["role"]``, and runs long work through
:mod:`._worker` so the UI never freezes. Sections talk through :class:`._state.ReadingState`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QScrollArea, QVBoxLayout, QWidget
from superqt import QCollapsible

from ..types import Findings, Study
from . import _layers
from ._kinetic_maps import KineticMaps
from ._state import ReadingState
from ._worker import user_message

if TYPE_CHECKING:
    import napari

APP_TITLE = "Breast DCE-MRI"
#: the empty result layers of a new study are made this long after it opens, so that the
#: study's first frame is drawn before them (making a Shapes layer costs 0.1-0.4 s)
AFTER_FIRST_IMAGE_MS = 400
#: characters of the box labels ("#3 0.87 accepted", "truth #1"), rendered ahead (see _warm_glyph)
GLYPHS = "#0123456789. acceptedrejectedaddedtruth"


class BreastMRIWidget(QWidget):
    """The dock widget (npe2 ``widgets`` contribution); takes the viewer napari passes in."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from ._compat import guard_torch_imports
        from ._sections import SECTION_CLASSES

        guard_torch_imports()  # the viewer exists already: see _compat for why

        self.viewer = napari_viewer
        self.state = ReadingState()
        self.jobs: list[Any] = []
        self.kinetic_maps = KineticMaps(self)  # before the sections: cleared first on a new study
        self.writing_layers = False  # True while the dock itself rewrites result layers
        self._prebuilt: _layers.PreparedResults | None = None
        self._steps: list[Callable[[], Any]] = []
        self._chains = 0  # in_turns chains still running
        self._hidden: dict[Any, bool] = {}  # result layers hidden while written: their visibility
        self._step_timer = QTimer(self)
        self._step_timer.setSingleShot(True)
        self._step_timer.setInterval(0)
        self._step_timer.timeout.connect(self._next_step)
        self.setMinimumWidth(440)
        inner = QWidget()
        column = QVBoxLayout(inner)
        column.setContentsMargins(4, 4, 4, 4)
        self.sections: dict[str, QWidget] = {}
        self.collapsibles: dict[str, QCollapsible] = {}
        for cls in SECTION_CLASSES:
            section = cls(self)
            box = QCollapsible(cls.title, inner)
            box.addWidget(section)
            if cls.title in ("Study", "Models", "Findings", "Predictions"):
                box.expand(animate=False)
            column.addWidget(box)
            self.sections[cls.title] = section
            self.collapsibles[cls.title] = box
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.state.phi_hidden_changed.connect(self._update_title)
        self.state.study_changed.connect(self._update_title)
        self.state.study_changed.connect(self._ready_result_layers)
        self.state.findings_changed.connect(self._show_findings)
        self.state.findings_changed.connect(lambda *_: QTimer.singleShot(0, self.relayout))
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)
        self._glyphs = list(dict.fromkeys(GLYPHS))
        self._glyph_timer = QTimer(self)
        self._glyph_timer.setInterval(20)
        self._glyph_timer.timeout.connect(self._warm_glyph)
        self._glyph_timer.start()
        self._warm_layer_models()
        from ._idle import IdleTasks

        self.idle = IdleTasks(self)  # explanation warm-up and the deferred collection, when idle
        for layer in list(self.viewer.layers):  # a case opened before the dock was
            self._adopt(layer)

    # ----- sections ------------------------------------------------------------------------
    def show_sections(self, *titles: str) -> None:
        """Expand these sections and collapse the others (screenshots, teaching)."""
        for title, box in self.collapsibles.items():
            if title in titles:
                box.expand(animate=False)
            else:
                box.collapse(animate=False)
        QTimer.singleShot(0, self.relayout)

    def relayout(self) -> None:
        """Re-fit expanded sections to their content (a table that grew, a longer label)."""
        for box in self.collapsibles.values():
            if box.isExpanded():
                box.expand(animate=False)

    # ----- layers ---------------------------------------------------------------------------
    def layers_with_role(self, role: str) -> list[Any]:
        return [lay for lay in self.viewer.layers if lay.metadata.get("breastmri", {}).get("role") == role]

    def layer_with_role(self, role: str) -> Any | None:
        found = self.layers_with_role(role)
        return found[0] if found else None

    def remove_roles(self, *roles: str) -> None:
        for layer in [lay for role in roles for lay in self.layers_with_role(role)]:
            self.viewer.layers.remove(layer)

    def show_reading_view(self, shown: Iterable[Any] = ()) -> None:
        """Leave a multi-panel view: one panel, the given layers visible (else the reading roles).

        Why select the phases: the panels that go were often the selected layers, and napari then
        leaves its layer controls empty (no contrast, no opacity) and the status bar naming a
        removed layer until the mouse moves; the reader's next act is usually on the phases.
        """
        self.viewer.canvas.grid.enabled = False
        shown = [layer for layer in shown if layer in self.viewer.layers]
        for layer in self.viewer.layers:
            role = layer.metadata.get("breastmri", {}).get("role")
            layer.visible = layer in shown if shown else role in _layers.READING_ROLES
        phases = self.layers_with_role("phases")
        if phases:
            self.viewer.layers.selection.active = phases[0]
            self.viewer.status = f"{phases[0].name}: reading view"
        self.viewer.reset_view()

    def add_tuples(self, tuples: Iterable[_layers.LayerDataTuple]) -> list[Any]:
        """Add layer tuples to the viewer (on the UI thread, only with finished data)."""
        from napari.layers import Layer

        added = []
        for data, kwargs, kind in tuples:
            added.append(self.viewer.add_layer(Layer.create(data, dict(kwargs), kind)))
        return added

    def replace_role(self, role: str, tuples: Iterable[_layers.LayerDataTuple]) -> list[Any]:
        self.remove_roles(role)
        return self.add_tuples(tuples)

    # ----- the case -------------------------------------------------------------------------
    def set_study(self, study: Study, *, truth=None, truth_mask=None, source=None, add_layers=True) -> None:
        """Show a study: its layers (unless already there), then tell the sections."""
        if add_layers:
            self.remove_roles(
                "phases",
                "subtraction",
                "mip",
                "heatmap",
                "kinetic_map",
                "truth_mask",
                "truth_boxes",
                "protocol",
            )
            self._adopting = True
            try:
                self.add_tuples(_layers.study_layers(study))
                if truth is not None and truth_mask is not None:
                    self.add_tuples(_layers.truth_layers(truth_mask, truth, study.affine))
            finally:
                self._adopting = False
        self.state.set_study(study, truth=truth, truth_mask=truth_mask, source=source)
        self.orient(study)

    def orient(self, study: Study) -> None:
        """Name the sliders (phase, then the patient axes) and fit the view to the study."""
        nd = self.viewer.dims.ndim
        if nd >= 3:
            labels = _layers.axis_labels(study.affine, max(nd, 3))
            self.viewer.dims.axis_labels = labels[-nd:]
        self.viewer.reset_view()

    def _on_layer_inserted(self, event: Any) -> None:
        if not getattr(self, "_adopting", False):
            self._adopt(event.value)

    def _adopt(self, layer: Any) -> None:
        """A study layer added by the reader or sample data becomes the dock's case."""
        meta = layer.metadata.get("breastmri", {})
        study = meta.get("study")
        if meta.get("role") == "phases" and study is not None and study is not self.state.study:
            truth = meta.get("truth") or study.meta.get("truth")
            self.state.set_study(
                study, truth=truth, truth_mask=meta.get("label_mask"), source=meta.get("source", study.source)
            )
            self.orient(study)

    def set_findings(
        self, findings: Findings | None, prebuilt: _layers.PreparedResults | None = None
    ) -> None:
        """Show findings. ``prebuilt`` is their layer data already made in the worker thread (a
        model run): the layers are then updated in small steps, one per event-loop turn, so the
        UI never freezes; without it (corrections, tests) they are updated at once."""
        self._prebuilt = prebuilt
        self.state.set_findings(findings)

    # ----- result layers (boxes, mask, heatmaps) ---------------------------------------------
    # Why they live as long as the dock: making a napari layer costs its vispy visual and shader
    # programs (0.1-0.4 s each on a software-rendered desktop) and removing one makes napari
    # rebuild its visual. The empty boxes and mask layers are made when a study opens (after its
    # first image), and a model run or a correction only writes new data into them.

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Marks the dock's own writes to result layers (corrections ignore those data events)."""
        before, self.writing_layers = self.writing_layers, True
        try:
            yield
        finally:
            self.writing_layers = before

    def _staged(self, steps: list[Callable[[], Any]], first_delay_ms: int = 0) -> None:
        """Run ``steps`` one per event-loop turn; a newer staging or a new study drops the rest.

        The turns are driven by a timer the dock owns, so they stop when the dock goes away
        (a closed viewer must not get layers added from a pending step). ``first_delay_ms``
        lets pending paints go first (a zero timer can run before the study's first frame)."""
        self._steps = list(steps)
        if self._steps:
            self._step_timer.start(first_delay_ms)

    def in_turns(self, steps: list[Callable[[], Any]], valid: Callable[[], bool] = lambda: True) -> None:
        """Run ``steps`` one per event-loop turn, the first now; stop early when ``valid()`` turns
        false or the viewer closes. Why: napari spends about 0.2 s of UI-thread time per layer
        it inserts (layer list, scene graph, grid), so ten layers added at once froze the viewer
        for 2-4 s; one per turn lets paints and input in between. Unlike :meth:`_staged` (a
        run's results), independent chains do not cancel each other."""
        self._chains += 1

        def run(i: int) -> None:
            if i >= len(steps) or self._closing() or not valid():
                self._chains -= 1
                return
            try:
                steps[i]()
            except Exception as exc:  # a failed step ends its chain, said once, never half-counted
                self._chains -= 1
                self.show_error(exc)
                return
            QTimer.singleShot(0, lambda: run(i + 1))

        run(0)

    @property
    def staging(self) -> bool:
        """True while layers are still being added or written over the next event-loop turns."""
        return bool(self._steps) or self._chains > 0

    def _drop_steps(self) -> None:
        """Forget pending steps; layers hidden for writing get their visibility back."""
        self._steps = []
        hidden, self._hidden = self._hidden, {}
        for layer, visible in hidden.items():
            if layer in self.viewer.layers:
                layer.visible = visible

    def _hide_while_writing(self, *roles: str) -> None:
        """Hide result layers while they are written in steps: napari neither slices an invisible
        layer nor redraws the canvas for it, so a step costs only its data write; they are shown
        again (one slice and one frame each) by :meth:`_show_written`."""
        for role in roles:
            layer = self._result_layer(role)
            if layer is not None and layer not in self._hidden:
                self._hidden[layer] = layer.visible
                layer.visible = False

    def _show_written(self, role: str) -> None:
        layer = self.layer_with_role(role)
        if layer is not None and layer in self._hidden:
            layer.visible = self._hidden.pop(layer)

    def _warm_layer_models(self) -> None:
        """Import and initialise napari's Labels and Shapes models in a worker thread now.

        The first Labels layer of a process costs about a second of imports and set-up on top of
        the layer itself; paid on the UI thread that was a stall right after the first study's
        first image. A layer model is a plain object until it is added to a viewer, so making
        throw-away ones in a thread is safe - once pint's unit registry exists: it is built
        lazily and not thread-safe, and a layer made on the UI thread while the worker's first
        layer was building it failed with "'pixel' is not defined". So it is built here first."""
        import pint

        from ._worker import run_blocking_in_thread

        pint.get_application_registry().Unit("pixel")  # the unit every layer asks for

        def warm() -> None:
            from napari.layers import Labels, Shapes

            Labels(np.zeros((2, 2, 2), np.int32))
            Shapes([np.zeros((4, 3))], shape_type="rectangle", ndim=3)

        self.jobs.append(run_blocking_in_thread(warm, on_result=lambda _: None, on_error=lambda _: None))

    def _warm_glyph(self) -> None:
        """Render one label character into the canvas's font atlas while the UI is idle.

        napari draws text from a signed-distance-field atlas it fills on first use, about 15 ms
        per character on the UI thread; the first box labels after a run would otherwise pay for
        all of them in one frame. Uses napari's canvas font (not public API): if that changes,
        only this warm-up is lost."""
        if not self._glyphs or self._closing():
            self._glyph_timer.stop()
            return
        char = self._glyphs.pop(0)
        try:
            info = self.viewer.window._qt_viewer.canvas.font_info()
            info.font_manager.get_font(info.face)[char]
        except Exception:  # a napari without this font manager: no warm-up, nothing else lost
            self._glyphs = []

    @property
    def results_pending(self) -> bool:
        """True while a run's results are still being written into the layers (a few turns)."""
        return bool(self._steps)

    def _next_step(self) -> None:
        if not self._steps:
            return
        step = self._steps.pop(0)
        if self._closing():
            self._steps = []
            return
        step()
        if not self._steps:
            self._hidden = {}
        if self._steps:
            self._step_timer.start(0)

    def _closing(self) -> bool:
        """napari's Window.close() deletes its ``_qt_window``: the viewer is gone."""
        return getattr(getattr(self.viewer, "window", None), "_qt_window", None) is None

    def _ready_result_layers(self, study: Study | None) -> None:
        """A study opened: empty the result layers for it now, or make them in the next turns."""
        self._drop_steps()  # steps still pending for the previous case
        if study is None:
            return
        boxes, mask = self.layer_with_role("boxes"), self.layer_with_role("mask")
        with self.writing():
            if boxes is not None:
                boxes.data = []
                boxes.text.visible = True
                boxes.affine = _layers.napari_affine(study.affine, 3)
            if mask is not None:
                mask.data = np.zeros(study.shape, np.int32)
                mask.affine = _layers.napari_affine(study.affine, 3)
        self._raise_results()
        if boxes is None or mask is None:
            self._staged(
                [
                    lambda: self._result_layer("mask", study),
                    lambda: self._result_layer("boxes", study, hidden=True),
                    lambda: self._show_written("boxes"),
                ],
                first_delay_ms=AFTER_FIRST_IMAGE_MS,
            )

    def _result_layer(self, role: str, study: Study | None = None, *, hidden: bool = False) -> Any:
        """The boxes or mask layer, made empty on the study grid if it is not there yet (make the
        mask first: a new layer goes on top, and boxes belong above the mask). ``hidden`` makes it
        invisible until :meth:`_show_written` (or dropped steps) shows it: a Shapes layer's first
        frame builds its shader programs, so adding it and drawing it are two separate turns."""
        layer = self.layer_with_role(role)
        study = study or self.state.study
        if layer is not None or study is None:
            return layer
        if role == "boxes":
            tup = _layers.boxes_layer([], study.affine)
        else:
            tup = _layers.mask_layer(np.zeros(study.shape, np.int32), study.affine)
        if hidden:
            tup[1]["visible"] = False
        self._adopting = True
        try:
            (layer,) = self.add_tuples([tup])
        finally:
            self._adopting = False
        if hidden:
            self._hidden[layer] = True
        return layer

    def _raise_results(self) -> None:
        """Keep boxes above the mask above everything else (a new study's images come on top)."""
        layers = self.viewer.layers
        for role in ("mask", "boxes"):
            layer = self.layer_with_role(role)
            if layer is not None and layers.index(layer) != len(layers) - 1:
                layers.move(layers.index(layer), len(layers))

    def _show_findings(self, findings: Findings | None) -> None:
        prepared, self._prebuilt = self._prebuilt, None
        self._drop_steps()  # a newer result replaces steps still pending for an older one
        if findings is None:
            self._write_mask(None)
            self._write_boxes(_layers.PreparedResults.empty(), 0, None)
            self._write_box_labels(_layers.PreparedResults.empty())
            self.remove_roles("heatmap")
            return
        if prepared is None:
            prepared = _layers.prepare_results(findings, make_heatmap_layers=False)
            self._write_mask(prepared)
            self._write_boxes(prepared, 0, None)
            self._write_box_labels(prepared)
            self._write_heatmaps(prepared, findings, staged=False)
            return
        steps: list[Callable[[], Any]] = [
            lambda: self._hide_while_writing("mask", "boxes"),
            lambda: self._write_mask(prepared),
        ]
        n, chunk = len(prepared.rects), _layers.BOX_CHUNK
        steps += [lambda a=a: self._write_boxes(prepared, a, a + chunk) for a in range(0, max(n, 1), chunk)]
        steps += [
            lambda: self._write_box_labels(prepared),
            lambda: self._show_written("mask"),
            lambda: self._show_written("boxes"),
        ]
        self._staged(steps + self._write_heatmaps(prepared, findings, staged=True))

    def _write_mask(self, prepared: _layers.PreparedResults | None) -> None:
        mask = self._result_layer("mask")
        if mask is None:
            return
        if prepared is not None and prepared.label_mask is not None:
            data = prepared.label_mask
        elif mask.data.any():
            data = np.zeros(mask.data.shape, np.int32)
        else:
            return
        with self.writing():
            mask.data = data

    def _write_boxes(self, prepared: _layers.PreparedResults, start: int, stop: int | None) -> None:
        """Rectangles ``start:stop`` of ``prepared`` (all when ``stop`` is None); the first chunk
        replaces what was there, the others are added to it. One ``add`` call per chunk with its
        colours and width: each separate property write is another round of napari events."""
        boxes = self._result_layer("boxes")
        if boxes is None:
            return
        rects = prepared.rects[start:stop]
        with self.writing():
            if start == 0:
                if stop is not None:
                    boxes.text.visible = False  # labels appear with the last chunk's features
                if len(boxes.data):
                    boxes.data = []
            if rects:
                boxes.add(
                    rects,
                    shape_type="rectangle",
                    edge_width=1.5,
                    edge_color=prepared.edge_colors[start:stop],
                    face_color="transparent",
                )

    def _write_box_labels(self, prepared: _layers.PreparedResults) -> None:
        boxes = self._result_layer("boxes")
        if boxes is None:
            return
        with self.writing():
            boxes.features = prepared.features
            boxes.text.visible = True
            boxes.refresh_text()

    def _write_heatmaps(
        self, prepared: _layers.PreparedResults, findings: Findings, *, staged: bool
    ) -> list[Callable[[], Any]]:
        """Keep heatmap layers whose name is still in the findings (new data written in), add the
        new ones, remove the others. Staged: return the additions as steps instead."""
        wanted = {_layers.heatmap_name(h): h for h in findings.heatmaps}
        have = {lay.name: lay for lay in self.layers_with_role("heatmap")}
        for name, layer in have.items():
            if name not in wanted:
                self.viewer.layers.remove(layer)
            elif layer.data is not wanted[name].data:
                layer.data = np.asarray(wanted[name].data, dtype=np.float32)
        made = dict(zip((_layers.heatmap_name(h) for h in findings.heatmaps), prepared.heatmap_layers))
        missing = [h for h in findings.heatmaps if _layers.heatmap_name(h) not in have]

        def add(heatmap: Any) -> None:
            layer = made.get(_layers.heatmap_name(heatmap))
            if layer is None:
                self.add_tuples([_layers.heatmap_layer(heatmap, reference=findings.affine)])
            else:
                self.viewer.add_layer(layer)

        steps = [lambda h=h: add(h) for h in missing]
        if staged:
            return steps
        for step in steps:
            step()
        return []

    def _update_title(self, *_: Any) -> None:
        study = self.state.study
        if study is None or self.state.hide_phi or study.phi.is_empty():
            suffix = " (patient data hidden)" if self.state.hide_phi else ""
            self.viewer.title = f"{APP_TITLE}{suffix}"
        else:
            self.viewer.title = f"{APP_TITLE} - {study.phi.name} ({study.phi.patient_id})"

    # ----- errors ---------------------------------------------------------------------------
    def show_error(self, exc: BaseException) -> None:
        from napari.utils.notifications import show_error

        show_error(user_message(exc))
