"""Display section: the hanging protocol (grid or one at a time), phase slider, linked windowing.

Hanging protocol: pre, first post-contrast, first subtraction, its MIP and a kinetic map side by
side in napari's grid mode. napari's grid shares one camera and one set of sliders, so panning,
zooming and the slice position are linked across the panels; "linked windowing" also ties the
window of the pre and post panels (they are on the same signal scale).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QSlider

from .. import _layers
from .._kinetic_maps import Maps, map_values
from ._base import Section

#: the layers of the hanging protocol, in grid order
PROTOCOL = ("pre", "post1", "sub1", "MIP", "kinetic map")


def protocol_tuples(study, kinetic: tuple[str, np.ndarray] | None) -> list[_layers.LayerDataTuple]:
    """Layer tuples for the hanging protocol (pure). ``kinetic`` is (name, map) or None."""

    pre, post = study.data[0], study.data[1]
    limits = _layers.contrast_limits(study.data[:2])
    out = []
    for name, vol in (("pre", pre), (f"{study.phase_labels[1]}", post)):
        out.append(
            (
                vol,
                {
                    "name": f"protocol {name}",
                    "affine": _layers.napari_affine(study.affine, 3),
                    "contrast_limits": limits,
                    "colormap": "gray",
                    "metadata": _layers._meta("protocol", panel=name),
                },
                "image",
            )
        )
    sub = _layers.subtraction_layer(study, 1)
    sub[1]["name"] = "protocol sub1"
    sub[1]["visible"] = True
    sub[1]["metadata"] = _layers._meta("protocol", panel="sub1")
    out.append(sub)
    mip = _layers.mip_layer(np.max(study.data[1] - study.data[0], axis=0), study, name="protocol MIP")
    mip[1]["visible"] = True
    mip[1]["metadata"] = _layers._meta("protocol", panel="MIP")
    out.append(mip)
    if kinetic is not None:
        kname, kmap = kinetic
        tup = _layers.kinetic_map_layer(kname, kmap, study.affine)
        tup[1]["name"] = f"protocol {tup[1]['name']}"
        tup[1]["opacity"] = 1.0
        tup[1]["metadata"] = _layers._meta("protocol", panel=kname)
        out.append(tup)
    return out


class DisplaySection(Section):
    title = "Display"

    def build(self) -> None:
        self._layout: object | None = None  # the protocol layout in progress (see _lay_out)
        self._cursors: list[Any] = []
        self.buttons(
            ("Hanging protocol", self.hanging_protocol, "pre | post1 | sub1 | MIP | kinetic map in a grid"),
            ("One at a time", self.one_at_a_time, "Back to one view: phases with the findings on top"),
        )
        row = QHBoxLayout()
        self.protocol_map = QComboBox()
        self.protocol_map.addItems(["curve type", "PE", "SER"])
        self.protocol_map.setToolTip("Which kinetic map fills the protocol's last panel")
        row.addWidget(QLabel("Kinetic panel:"))
        row.addWidget(self.protocol_map)
        self.column.addLayout(row)
        row = QHBoxLayout()
        self.phase_slider = QSlider(Qt.Horizontal)
        self.phase_slider.setToolTip("Page through the phases (same as napari's phase slider)")
        self.phase_slider.valueChanged.connect(self.set_phase)
        self.phase_label = QLabel("phase -")
        row.addWidget(QLabel("Phase"))
        row.addWidget(self.phase_slider)
        row.addWidget(self.phase_label)
        self.column.addLayout(row)
        self.link_window = QCheckBox("Linked windowing (phases, pre and post panels)")
        self.link_window.setChecked(True)
        self.column.addWidget(self.link_window)
        self.linked_cursor = QCheckBox("Linked cursor (a cross in every panel)")
        self.linked_cursor.setChecked(True)
        self.column.addWidget(self.linked_cursor)
        self._linking = False
        self.state.study_changed.connect(self._on_study)
        self.viewer.dims.events.current_step.connect(self._on_dims)

    # ----- phases ---------------------------------------------------------------------------
    def _on_study(self, study: Any) -> None:
        self.phase_slider.blockSignals(True)
        self.phase_slider.setRange(0, max(study.n_phases - 1, 0))
        self.phase_slider.setValue(0)
        self.phase_slider.blockSignals(False)
        self._on_dims()
        phases = self.dock.layer_with_role("phases")
        if phases is not None:
            phases.events.contrast_limits.connect(lambda *_: self._sync_window(phases))

    def set_phase(self, index: int) -> None:
        if self.viewer.dims.ndim >= 4:
            self.viewer.dims.set_current_step(0, int(index))

    def _on_dims(self, *_: Any) -> None:
        study = self.state.study
        if study is None or self.viewer.dims.ndim < 4:
            return
        i = int(self.viewer.dims.current_step[0])
        i = min(max(i, 0), study.n_phases - 1)
        self.phase_label.setText(f"{study.phase_labels[i]} ({study.times[i]:.0f} s)")
        if self.phase_slider.value() != i:
            self.phase_slider.blockSignals(True)
            self.phase_slider.setValue(i)
            self.phase_slider.blockSignals(False)

    def _sync_window(self, source: Any) -> None:
        if self._linking or not self.link_window.isChecked():
            return
        self._linking = True
        try:
            for layer in self.dock.layers_with_role("phases") + self.dock.layers_with_role("protocol"):
                panel = layer.metadata["breastmri"].get("panel")
                if layer is not source and (panel is None or panel in ("pre", "post1")):
                    layer.contrast_limits = source.contrast_limits
        finally:
            self._linking = False

    # ----- layouts --------------------------------------------------------------------------
    def kinetic_panel(self, maps: Maps) -> tuple[str, np.ndarray]:
        """The map for the protocol's last panel (curve types and SER in the breasts only)."""
        choice = self.protocol_map.currentText()
        return (choice, map_values({"SER": "SER colour map"}.get(choice, choice), maps))

    def hanging_protocol(self) -> Any:
        """pre | post1 | sub1 | MIP | kinetic map in a grid. The kinetic panel needs the study's
        kinetic maps: the grid is laid out once the dock's shared job has them (a worker, see
        :mod:`.._kinetic_maps`), at once when they are known. Returns that job or None."""
        study = self.state.study
        if study is None:
            return None
        return self.dock.kinetic_maps.request(
            study, lambda maps: self._lay_out(study, maps), lambda _exc: self._lay_out(study, None)
        )

    def _lay_out(self, study: Any, maps: Maps | None) -> None:
        """The grid, one panel (and its cursor) per event-loop turn (see the dock's ``in_turns``).

        The layers are added hidden and the grid is switched on last: napari recomputes the grid
        for every layer on every layer event while it is on, and slices and draws every visible
        layer it gets (measured: 0.5-3 s per panel that way, against about 0.2 s)."""
        self.dock.remove_roles("protocol")
        for layer in self.viewer.layers:
            layer.visible = False
        # no maps (the study cannot carry kinetics: the error was shown): the four other panels
        tuples = protocol_tuples(study, self.kinetic_panel(maps) if maps is not None else None)
        linked = self.linked_cursor.isChecked()
        self._cursors = []
        self.viewer.canvas.grid.enabled = False
        self._layout = layout = object()  # a newer layout or study makes this one stale
        added: list[Any] = []

        def add_panel(k: int) -> None:
            (layer,) = self.dock.add_tuples(
                [(tuples[k][0], {**tuples[k][1], "visible": False}, tuples[k][2])]
            )
            if layer.metadata["breastmri"].get("panel") in ("pre", "post1"):
                layer.events.contrast_limits.connect(lambda *_, lay=layer: self._sync_window(lay))
            pair = [layer, self._add_cursor(layer, study)] if linked else [layer]
            for offset, lay in enumerate(pair):  # the protocol's panels first, in order
                self.viewer.layers.move(self.viewer.layers.index(lay), len(pair) * k + offset)
            added.extend(pair)

        def finish() -> None:
            for layer in added:
                layer.visible = True
            self.viewer.canvas.grid.stride = 2 if linked else 1
            self.viewer.canvas.grid.enabled = True
            if linked and self._on_mouse_move not in self.viewer.mouse_move_callbacks:
                self.viewer.mouse_move_callbacks.append(self._on_mouse_move)
            self.viewer.reset_view()

        steps = [lambda k=k: add_panel(k) for k in range(len(tuples))] + [finish]
        self.dock.in_turns(steps, valid=lambda: self._layout is layout and self.state.study is study)

    def _add_cursor(self, panel: Any, study: Any) -> Any:
        """The panel's cursor (a Points layer), placed right after its image with grid stride 2:
        napari groups consecutive layers into a panel, so every panel shows its own cursor and a
        mouse move in any panel moves them all (the linked cursor)."""
        (cursor,) = self.dock.add_tuples(
            [
                (
                    np.empty((0, 3)),
                    {
                        "ndim": 3,
                        "visible": panel.visible,
                        "name": f"cursor {panel.name}",
                        "symbol": "cross",
                        "size": 14,
                        "face_color": "cyan",
                        "border_color": "cyan",
                        "affine": _layers.napari_affine(study.affine, 3),
                        "metadata": _layers._meta("protocol", panel="cursor"),
                    },
                    "points",
                )
            ]
        )
        self._cursors.append(cursor)
        return cursor

    def _on_mouse_move(self, viewer: Any, event: Any) -> None:
        self.move_cursor(event.position)

    def move_cursor(self, world: Any) -> None:
        """Put every panel's cursor at this world point (and on the current slice)."""
        cursors = [c for c in getattr(self, "_cursors", []) if c in self.viewer.layers]
        if not cursors:
            return
        point = np.asarray(world, dtype=float)[-3:]
        for cursor in cursors:
            cursor.data = np.asarray(cursor.world_to_data(point), dtype=float)[None]

    def one_at_a_time(self) -> None:
        self._layout = None  # a protocol still being laid out stops
        self.viewer.canvas.grid.stride = 1
        if self._on_mouse_move in self.viewer.mouse_move_callbacks:
            self.viewer.mouse_move_callbacks.remove(self._on_mouse_move)
        self._cursors = []
        self.dock.remove_roles("protocol")
        self.dock.show_reading_view()
