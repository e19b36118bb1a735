"""Kinetics section: a map chooser with a legend; time-signal curves of clicked points and drawn
regions (several overlaid, each in its colour, curve type named); FTV of a drawn box in ml.

Points and regions live in two layers ("kinetic points", "kinetic regions") on the study affine,
so their data coordinates are study voxels (z, y, x); the curves come from
:func:`napari_breastmri.kinetics.curve` and the FTV from :func:`napari_breastmri.kinetics.ftv`.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSpinBox

from .. import _layers, _plots
from .._kinetic_maps import Maps, map_values
from ._base import Section

MAPS = ("PE", "SER colour map", "curve type", "washin", "washout", "ttp", "subtraction", "MIP")


def legend_html(kind: str, limits: tuple[float, float] | None = None) -> str:
    """The legend text for a map (pure)."""

    def swatch(color: str, text: str) -> str:
        return f"<span style='color:{color}'>&#9632;</span> {html.escape(text)}"

    where = " (in the breasts; the chest wall and heart are not coloured)"
    if kind == "curve type":
        return " ".join(swatch(_layers.CURVE_COLORS[i], _layers.CURVE_NAMES[i]) for i in (1, 2, 3)) + where
    if kind == "SER colour map":
        return " ".join(swatch(_layers.SER_COLORS[i], _layers.SER_NAMES[i]) for i in range(1, 6)) + where
    units = {"PE": "%", "washin": "%/min", "washout": "% of early", "ttp": "s"}.get(kind, "")
    cmap = _layers.MAP_COLORMAPS.get(kind.lower(), "gray")
    rng = f" {limits[0]:.3g} to {limits[1]:.3g} {units}" if limits else ""
    return f"{kind}: colour map {cmap}{rng}"


def region_mask(shape: tuple[int, int, int], vertices: np.ndarray, shape_type: str) -> np.ndarray:
    """A drawn rectangle/polygon/ellipse (voxel vertices on one slice) -> boolean mask (pure)."""
    from skimage.draw import ellipse, polygon2mask

    v = np.asarray(vertices, dtype=float)
    z = int(round(v[:, 0].mean()))
    mask = np.zeros(shape, bool)
    if not 0 <= z < shape[0]:
        return mask
    if shape_type == "ellipse":
        c = v[:, 1:].mean(0)
        r = (v[:, 1:].max(0) - v[:, 1:].min(0)) / 2
        rr, cc = ellipse(c[0], c[1], max(r[0], 0.5), max(r[1], 0.5), shape=shape[1:])
        mask[z, rr, cc] = True
    else:
        mask[z] = polygon2mask(shape[1:], v[:, 1:] + 0.5)
    return mask


class KineticsSection(Section):
    title = "Kinetics"

    def build(self) -> None:
        row = QHBoxLayout()
        self.map_choice = QComboBox()
        self.map_choice.addItems(MAPS)
        self.map_choice.setToolTip(
            "Semi-quantitative maps from the kinetics package (definitions in docs/kinetics.md)"
        )
        row.addWidget(QLabel("Map"))
        row.addWidget(self.map_choice)
        self.column.addLayout(row)
        self.buttons(("Show map", self.show_map, "Add the chosen map as a layer on the study grid"))
        self.legend = self.label("", rich=True)
        self.buttons(
            ("Pick points", self.pick_points, "Click on the image to plot that voxel's curve"),
            (
                "Draw regions",
                self.draw_regions,
                "Draw rectangles/polygons; each region's mean curve is plotted",
            ),
            ("Clear", self.clear_rois, "Remove the points and regions"),
        )
        self.canvas = _plots.canvas(3.6, 2.2)
        self.column.addWidget(self.canvas)
        self.curve_note = self.label("")
        row = QHBoxLayout()
        self.depth = QSpinBox()
        self.depth.setRange(0, 200)
        self.depth.setValue(6)
        self.depth.setToolTip("The FTV box spans the drawn rectangle's slice +- this many slices")
        row.addWidget(QLabel("FTV box depth +-"))
        row.addWidget(self.depth)
        self.column.addLayout(row)
        self.buttons(
            ("FTV of last box", self.ftv_of_box, "Functional tumour volume (ACRIN 6657) inside the box")
        )
        self.ftv_label = self.label("")
        self.curves: list[tuple[str, Any]] = []
        self.state.study_changed.connect(lambda *_: self._reset())

    def _reset(self) -> None:
        self.curves = []
        self.legend.setText("")
        self.ftv_label.setText("")
        self.plot()

    # ----- maps -----------------------------------------------------------------------------
    def map_tuple(self, kind: str, maps: Maps | None = None) -> _layers.LayerDataTuple:
        study = self.state.study
        if kind == "subtraction":
            tup = _layers.subtraction_layer(study, 1)
            tup[1]["visible"] = True
        elif kind == "MIP":
            tup = _layers.mip_layer(np.max(study.data[1] - study.data[0], axis=0), study)
            tup[1]["visible"] = True
        else:
            if maps is None:
                raise ValueError(f"the {kind} map needs the study's kinetic maps")
            name = kind if kind != "SER colour map" else "SER"
            tup = _layers.kinetic_map_layer(name, map_values(kind, maps), study.affine)
        tup[1]["metadata"] = _layers._meta("kinetic_map", kind=kind)
        return tup

    def show_map(self, kind: str | None = None) -> Any:
        """Show a map: the subtraction and the MIP at once, the kinetic maps once the dock's shared
        job has computed them (in a worker, see :mod:`.._kinetic_maps`). Returns the layer when it
        is shown at once, else None."""
        study = self.state.study
        if study is None:
            return None
        kind = kind or self.map_choice.currentText()
        self.map_choice.setCurrentText(kind)
        if kind in ("subtraction", "MIP"):
            return self._show(kind, None)
        shown: list[Any] = []
        if self.dock.kinetic_maps.cached(study) is None:
            self.legend.setText("Computing the kinetic maps ...")
        self.dock.kinetic_maps.request(
            study,
            lambda maps: shown.append(self._show(kind, maps)),
            lambda exc: self.legend.setText(html.escape(f"No kinetic maps: {exc}")),
        )
        return shown[0] if shown else None

    def _show(self, kind: str, maps: Maps | None) -> Any:
        try:
            tup = self.map_tuple(kind, maps)
        except Exception as exc:
            self.dock.show_error(exc)
            return None
        (layer,) = self.dock.replace_role("kinetic_map", [tup])
        limits = (
            tuple(layer.contrast_limits) if hasattr(layer, "contrast_limits") and tup[2] == "image" else None
        )
        self.legend.setText(legend_html(kind, limits))
        return layer

    # ----- points and regions ---------------------------------------------------------------
    def _roi_layer(self, role: str) -> Any:
        layer = self.dock.layer_with_role(role)
        if layer is not None:
            return layer
        study = self.state.study
        aff = _layers.napari_affine(study.affine, 3)
        if role == "kinetic_points":
            layer = self.viewer.add_points(
                np.empty((0, 3)),
                ndim=3,
                affine=aff,
                name="kinetic points",
                size=3,
                face_color="cyan",
                metadata=_layers._meta(role),
            )
        else:
            layer = self.viewer.add_shapes(
                ndim=3,
                affine=aff,
                name="kinetic regions",
                edge_color="cyan",
                face_color="transparent",
                edge_width=1.5,
                metadata=_layers._meta(role),
            )
        layer.events.data.connect(lambda *_: self.update_curves())
        return layer

    def pick_points(self) -> None:
        if self.state.study is None:
            return
        layer = self._roi_layer("kinetic_points")
        self.viewer.layers.selection.active = layer
        layer.mode = "add"

    def draw_regions(self) -> None:
        if self.state.study is None:
            return
        layer = self._roi_layer("kinetic_regions")
        self.viewer.layers.selection.active = layer
        layer.mode = "add_rectangle"

    def clear_rois(self) -> None:
        self.dock.remove_roles("kinetic_points", "kinetic_regions")
        self.update_curves()

    def update_curves(self) -> None:
        """Recompute every point's and region's curve and redraw them overlaid."""
        from ... import kinetics as k

        study = self.state.study
        self.curves = []
        notes = []
        if study is None:
            return self.plot()
        points = self.dock.layer_with_role("kinetic_points")
        regions = self.dock.layer_with_role("kinetic_regions")
        rois: list[tuple[str, Any]] = []
        if points is not None:
            for i, p in enumerate(np.asarray(points.data)):
                idx = np.clip(np.round(p), 0, np.array(study.shape) - 1).astype(int)
                rois.append((f"point {i + 1}", idx))
        if regions is not None:
            for i, (verts, kind) in enumerate(zip(regions.data, regions.shape_type)):
                rois.append((f"region {i + 1}", region_mask(study.shape, verts, kind)))
        for name, roi in rois:
            try:
                c = k.curve(study, roi, min_enhancement_pct=10.0)
            except Exception as exc:  # an empty or flat region: say so, keep the others
                notes.append(f"{name}: {exc}")
                continue
            self.curves.append((f"{name}: {c.curve_type}", c.mean))
            notes.append(f"{name}: {c.curve_type}, peak {c.enhancement_pct.max():.0f} %, {c.n_voxels} vox")
        self.curve_note.setText("; ".join(notes))
        self.plot()

    def plot(self) -> None:
        study = self.state.study
        times = study.times if study is not None else []
        _plots.curve_plot(self.canvas.figure, times, self.curves)
        self.canvas.draw_idle()

    # ----- FTV ------------------------------------------------------------------------------
    def last_box(self) -> list[int] | None:
        regions = self.dock.layer_with_role("kinetic_regions")
        if regions is None or not len(regions.data):
            return None
        bbox = _layers.rectangles_to_bbox([regions.data[-1]])
        d = int(self.depth.value())
        nz = self.state.study.shape[0]
        bbox[0], bbox[3] = max(0, bbox[0] - d), min(nz, bbox[3] + d)
        return bbox

    def ftv_of_box(self) -> Any:
        from ... import kinetics as k

        box = self.last_box()
        if box is None:
            self.ftv_label.setText("Draw a box first (Draw regions).")
            return None
        try:
            res = k.ftv(self.state.study, box)
        except Exception as exc:
            self.dock.show_error(exc)
            return None
        share = ", ".join(f"{n} {v * 100:.0f} %" for n, v in res.share.items())
        self.ftv_label.setText(f"FTV {res.volume_ml:.2f} ml ({res.n_voxels} voxels); {share}")
        return res
