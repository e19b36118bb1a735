"""Pure conversions: Study / Findings / Heatmap / kinetic maps -> napari LayerDataTuples.

Why pure: everything the viewer shows is decided here, with no viewer and no Qt, so it can be
tested headless and reused by the reader, the sample data, the dock widget and the screenshots.
Every layer gets the study affine (:func:`napari_affine`, built on ``geometry.layer_affine``), so a
box, a mask and a heatmap land on the same anatomy in world (LPS mm) coordinates, in 2D and 3D,
also on oblique studies. Layer names never carry patient data (PHI): only generic words.

Each tuple's metadata has a ``"breastmri"`` dict with a ``role`` ("phases", "subtraction",
"boxes", "mask", "heatmap", "kinetic_map", "mip", "truth_mask", "truth_boxes") that the dock uses
to find its layers again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import permutations
from typing import Any

import numpy as np

from ..geometry import layer_affine
from ..types import DEMO_LABEL, Findings, Heatmap, Lesion, Study

LayerDataTuple = tuple[Any, dict[str, Any], str]

#: the layers shown when a multi-panel view (hanging protocol, teaching grid) gives way to reading
READING_ROLES = ("phases", "boxes", "mask")
#: colours used everywhere (boxes by status, curve types, SER bins)
STATUS_COLORS = {"proposed": "yellow", "accepted": "lime", "rejected": "red", "added": "cyan"}
CURVE_COLORS = {0: "transparent", 1: "#4f8ff7", 2: "#f7d44f", 3: "#f74f4f"}
CURVE_NAMES = {0: "none", 1: "persistent", 2: "plateau", 3: "washout"}
#: ACRIN 6657 / I-SPY SER colour bins: (0, 0.9], (0.9, 1.0], (1.0, 1.3], (1.3, 1.75], (1.75, 3]
SER_BINS = (0.0, 0.9, 1.0, 1.3, 1.75, 3.0)
SER_COLORS = {
    1: "#1f3fff",
    2: "#8a2be2",
    3: "#22b14c",
    4: "#ff2020",
    5: "#ffd700",
}  # I-SPY colours, as kinetics.ftv
SER_NAMES = {1: "SER <= 0.9", 2: "0.9-1.0", 3: "1.0-1.3", 4: "1.3-1.75", 5: "> 1.75"}
#: colour maps for continuous kinetic maps (perceptual ones; diverging where the sign matters)
MAP_COLORMAPS = {"pe": "viridis", "washin": "magma", "washout": "PiYG", "ttp": "plasma", "ktrans": "inferno"}
HEATMAP_COLORMAP = "inferno"


def _meta(role: str, **extra: Any) -> dict[str, Any]:
    return {"breastmri": {"role": role, **extra}}


def contrast_limits(volume: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """Display window from percentiles (robust to hot voxels), on a subsample for speed."""
    arr = np.asarray(volume)
    step = max(1, int(round((arr.size / 2_000_000) ** (1 / max(arr.ndim, 1)))))
    sample = arr[(slice(None, None, step),) * arr.ndim]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(sample, [low, high]))
    if hi <= lo:
        hi = lo + 1.0
    return (lo, hi)


def view_axes(affine: np.ndarray) -> tuple[int, int, int]:
    """World axes (0=L, 1=P, 2=S) that best follow the study's slice, row and column directions.

    napari shows the last two world axes and slides over the others; world is LPS here, so an
    axial study would open as sagittal slices. The dock reorders ``viewer.dims.order`` with this
    so a study opens in its own acquisition plane (for oblique studies: the closest one).
    """
    cols = np.abs(np.asarray(affine, dtype=float)[:3, :3])
    cols = cols / np.linalg.norm(cols, axis=0, keepdims=True)
    best = max(permutations(range(3)), key=lambda p: sum(cols[p[i], i] for i in range(3)))
    return tuple(int(a) for a in best)  # type: ignore[return-value]


def world_permutation(affine: np.ndarray) -> np.ndarray:
    """3x3 permutation P with napari world = P @ LPS, so the study's (z, y, x) map to world 0, 1, 2.

    Why not hand napari the LPS affine as it is: napari slices a layer by matching data axis i to
    world axis i and treats any other affine as "non-orthogonal" (it then drops the out-of-plane
    part and, for a permutation, shows a degenerate slice). An axial study maps z to S (world
    axis 2), so it would render wrongly. Reordering the *world* axes (no scaling, no flip) keeps
    every coordinate in patient millimetres, makes the study's own plane the 2D view, and is the
    same for every layer of a study, so boxes, masks and heatmaps still land on the same anatomy.
    """
    perm = np.zeros((3, 3))
    for i, axis in enumerate(view_axes(affine)):
        perm[i, axis] = 1.0
    return perm


def napari_affine(affine: np.ndarray, ndim: int, reference: np.ndarray | None = None) -> np.ndarray:
    """The layer affine: :func:`geometry.layer_affine` with world axes reordered by
    :func:`world_permutation` of the study (``reference``, default ``affine`` itself)."""
    out = layer_affine(affine, ndim)
    perm = np.eye(ndim + 1)
    perm[ndim - 3 : ndim, ndim - 3 : ndim] = world_permutation(affine if reference is None else reference)
    return perm @ out


def world_to_lps(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """napari world points (..., 3) of a study's layers -> DICOM LPS millimetres (..., 3)."""
    return np.asarray(points, dtype=float) @ world_permutation(reference)


def axis_labels(affine: np.ndarray, ndim: int) -> tuple[str, ...]:
    """World axis names for the dims sliders: "phase", then the LPS axis each world axis is."""
    names = ("L-R (mm)", "P-A (mm)", "S-I (mm)")
    spatial = tuple(names[a] for a in view_axes(affine))
    return (*(["phase"] if ndim >= 4 else []), *(["extra"] * max(0, ndim - 4)), *spatial)


def study_layers(study: Study, *, with_subtraction: bool = True) -> list[LayerDataTuple]:
    """One 4D image (phase, z, y, x) with a phase slider, plus the first subtraction.

    Why one 4D layer and not one layer per phase: the phases share one grid and one window, so a
    slider over phases is how radiologists page through them, the layer list stays short, and
    models/kinetics read the same array the user sees. The subtraction is its own layer because
    it needs its own window and is the image lesions are read on.
    """
    limits = contrast_limits(study.data)
    layers: list[LayerDataTuple] = [
        (
            study.data,
            {
                "name": "DCE phases",
                "affine": napari_affine(study.affine, 4),
                "contrast_limits": limits,
                "colormap": "gray",
                "metadata": _meta("phases", study=study, phase_labels=list(study.phase_labels)),
            },
            "image",
        )
    ]
    if with_subtraction and study.n_phases > 1:
        layers.append(subtraction_layer(study, 1))
    return layers


def subtraction_layer(study: Study, index: int = 1) -> LayerDataTuple:
    """Post-contrast phase ``index`` minus the pre-contrast phase, windowed from 0 upwards."""
    sub = study.data[index] - study.data[0]
    lo, hi = contrast_limits(sub, 1.0, 99.8)
    return (
        sub,
        {
            "name": f"sub{index} ({study.phase_labels[index]} - {study.phase_labels[0]})",
            "affine": napari_affine(study.affine, 3),
            "contrast_limits": (max(lo, 0.0), max(hi, 1e-3)),
            "colormap": "gray",
            "visible": False,
            "metadata": _meta("subtraction", index=index),
        },
        "image",
    )


def mip_layer(mip_yx: np.ndarray, study: Study, name: str = "MIP (sub1)") -> LayerDataTuple:
    """A maximum intensity projection over z shown as one slab spanning the whole volume.

    The (y, x) image becomes a (1, y, x) layer whose one slice is as thick as the study and sits at
    its centre, so it is visible on every slice and still carries the study's in-plane geometry.
    """
    nz = study.shape[0]
    aff = np.array(study.affine, dtype=float)
    aff[:3, 3] = aff[:3, 3] + aff[:3, 0] * (nz - 1) / 2.0
    aff[:3, 0] = aff[:3, 0] * nz
    data = np.asarray(mip_yx, dtype=np.float32)[None]
    lo, hi = contrast_limits(data, 1.0, 99.8)
    return (
        data,
        {
            "name": name,
            "affine": napari_affine(aff, 3, study.affine),
            "contrast_limits": (max(lo, 0.0), max(hi, 1e-3)),
            "colormap": "gray",
            "visible": False,
            "metadata": _meta("mip"),
        },
        "image",
    )


def box_rectangles(bbox: Sequence[int]) -> list[np.ndarray]:
    """A 3D box [z0, y0, x0, z1, y1, x1] (end exclusive) as one rectangle per slice it crosses.

    Corners lie on voxel edges (index - 0.5), so the rectangle encloses whole voxels, matching
    :func:`napari_breastmri.geometry.bbox_world_corners`.
    """
    z0, y0, x0, z1, y1, x1 = (int(v) for v in bbox)
    ya, yb, xa, xb = y0 - 0.5, y1 - 0.5, x0 - 0.5, x1 - 0.5
    return [
        np.array([[z, ya, xa], [z, ya, xb], [z, yb, xb], [z, yb, xa]], dtype=float) for z in range(z0, z1)
    ]


def rectangles_to_bbox(rects: Sequence[np.ndarray]) -> list[int]:
    """Inverse of :func:`box_rectangles` for edited shapes: the voxel box enclosing them all."""
    pts = np.concatenate([np.asarray(r, dtype=float) for r in rects])
    z0, z1 = int(round(pts[:, 0].min())), int(round(pts[:, 0].max())) + 1
    y0, x0 = (int(np.ceil(v)) for v in pts[:, 1:].min(axis=0))
    y1, x1 = (int(np.ceil(v)) for v in pts[:, 1:].max(axis=0))
    return [z0, y0, x0, z1, max(y1, y0 + 1), max(x1, x0 + 1)]


def lesion_text(lesion: Lesion) -> str:
    """The label drawn beside a box: its number and score (and status once reviewed)."""
    status = "" if lesion.status == "proposed" else f" {lesion.status}"
    return f"#{lesion.id} {lesion.score:.2f}{status}"


def box_shapes(lesions: Sequence[Lesion]) -> tuple[list[np.ndarray], list[int], list[str], list[str]]:
    """Rectangles (one per crossed slice), lesion ids, labels and edge colours of the lesions."""
    data: list[np.ndarray] = []
    ids: list[int] = []
    texts: list[str] = []
    colors: list[str] = []
    for lesion in lesions:
        rects = box_rectangles(lesion.bbox)
        data.extend(rects)
        ids.extend([int(lesion.id)] * len(rects))
        texts.extend([lesion_text(lesion)] * len(rects))
        colors.extend([STATUS_COLORS.get(lesion.status, "yellow")] * len(rects))
    return data, ids, texts, colors


def box_features(ids: Sequence[int], texts: Sequence[str]) -> dict[str, np.ndarray]:
    return {"lesion_id": np.asarray(ids, dtype=int), "label": np.asarray(texts, dtype=object)}


def boxes_layer(
    lesions: Sequence[Lesion],
    affine: np.ndarray,
    *,
    name: str = "lesion boxes",
    role: str = "boxes",
    reference: np.ndarray | None = None,
) -> LayerDataTuple:
    """Lesion boxes as a Shapes layer: one rectangle per crossed slice, labelled with the score."""
    data, ids, texts, colors = box_shapes(lesions)
    kwargs: dict[str, Any] = {
        "name": name,
        "ndim": 3,
        "affine": napari_affine(affine, 3, reference),
        "shape_type": "rectangle",
        "edge_width": 1.5,
        "edge_color": colors or "yellow",
        "face_color": "transparent",
        "features": box_features(ids, texts),
        "text": {"string": "{label}", "size": 9, "color": "yellow", "anchor": "upper_left"},
        "metadata": _meta(role),
    }
    return (data, kwargs, "shapes")


#: rectangles written into the boxes layer per event-loop turn after a run (1-2 ms each with its
#: events, so a turn stays well under the 100 ms stall budget)
BOX_CHUNK = 16


@dataclass
class PreparedResults:
    """What the result layers get from a Findings, computed off the UI thread (numpy only, plus
    heatmap layers made in the worker when asked): the dock then only writes it into layers."""

    rects: list[np.ndarray] = field(default_factory=list)
    edge_colors: list[str] = field(default_factory=list)
    features: dict[str, np.ndarray] = field(default_factory=lambda: box_features([], []))
    label_mask: np.ndarray | None = None
    heatmap_layers: list[Any] = field(default_factory=list)

    @classmethod
    def empty(cls) -> PreparedResults:
        return cls()


def prepare_results(findings: Findings, *, make_heatmap_layers: bool = True) -> PreparedResults:
    """Boxes, mask and heatmaps of a Findings ready to write into the dock's layers.

    ``make_heatmap_layers`` builds the heatmaps' napari Image layers too (in a worker thread: a
    layer model is a plain object until it is added to a viewer)."""
    rects, ids, texts, colors = box_shapes(findings.lesions)
    mask = None
    if findings.label_mask is not None:
        mask = np.ascontiguousarray(np.asarray(findings.label_mask).astype(np.int32, copy=False))
    heatmaps: list[Any] = []
    if make_heatmap_layers and findings.heatmaps:
        from napari.layers import Layer

        heatmaps = [
            Layer.create(d, dict(k), kind)
            for d, k, kind in (heatmap_layer(h, reference=findings.affine) for h in findings.heatmaps)
        ]
    return PreparedResults(rects, colors, box_features(ids, texts), mask, heatmaps)


def mask_layer(
    label_mask: np.ndarray,
    affine: np.ndarray,
    *,
    name: str = "lesion masks",
    role: str = "mask",
    visible: bool = True,
    reference: np.ndarray | None = None,
) -> LayerDataTuple:
    """A label mask (lesion i has value i) as a Labels layer on the study grid."""
    return (
        np.asarray(label_mask).astype(np.int32, copy=False),
        {
            "name": name,
            "affine": napari_affine(affine, 3, reference),
            "opacity": 0.45,
            "visible": visible,
            "metadata": _meta(role),
        },
        "labels",
    )


def findings_layers(findings: Findings) -> list[LayerDataTuple]:
    """Boxes, masks and heatmaps of a Findings, all on the study affine."""
    layers: list[LayerDataTuple] = [boxes_layer(findings.lesions, findings.affine)]
    if findings.label_mask is not None:
        layers.append(mask_layer(findings.label_mask, findings.affine))
    layers.extend(heatmap_layer(h, reference=findings.affine) for h in findings.heatmaps)
    return layers


def heatmap_name(heatmap: Heatmap) -> str:
    return f"{heatmap.method} {heatmap.target} ({heatmap.model})"


def heatmap_layer(
    heatmap: Heatmap, *, opacity: float = 0.5, threshold: float = 0.0, reference: np.ndarray | None = None
) -> LayerDataTuple:
    """A CAM heatmap ([0, 1]) as an additive Image layer with a perceptual colour map.

    ``threshold`` is the lower contrast limit: values below it render black, i.e. invisible
    under additive blending, which is how the dock's threshold slider works.
    """
    return (
        np.asarray(heatmap.data, dtype=np.float32),
        {
            "name": heatmap_name(heatmap),
            "affine": napari_affine(heatmap.affine, 3, reference),
            "colormap": HEATMAP_COLORMAP,
            "contrast_limits": (float(threshold), 1.0),
            "blending": "additive",
            "opacity": opacity,
            "metadata": _meta("heatmap", method=heatmap.method, target=heatmap.target, model=heatmap.model),
        },
        "image",
    )


def overlay_colormap(name: str = HEATMAP_COLORMAP, n: int = 64) -> Any:
    """A napari colour map for a heatmap drawn *over* anatomy with translucent blending: the
    matplotlib map's colours with an alpha ramp (0 at the bottom, sqrt rising to 1), so cold voxels
    leave the anatomy untouched and hot ones cover it. Why not additive blending there: added to
    bright grey tissue, the heat colours saturate to white and the heatmap disappears."""
    from matplotlib import colormaps
    from napari.utils.colormaps import Colormap

    ramp = np.linspace(0.0, 1.0, n)
    rgba = colormaps[name](ramp)
    rgba[:, 3] = np.sqrt(ramp)
    return Colormap(colors=rgba, controls=ramp, name=f"{name} over anatomy")


def _lut(colormap: str) -> np.ndarray:
    """256 x 3 uint8 colours of a matplotlib colour map (the same names napari uses)."""
    from matplotlib import colormaps

    return (colormaps[colormap](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


#: brightest grey of the anatomy under a composite overlay: a little below white, so that the
#: pale top of the heat colour map still stands out on bright tissue
ANATOMY_PEAK = 200


def anatomy_grey(volume: np.ndarray, limits: tuple[float, float], peak: int = 255) -> np.ndarray:
    """A volume windowed to ``limits`` as uint8 grey levels (0-``peak``)."""
    lo, hi = limits
    scaled = (np.asarray(volume, dtype=np.float32) - lo) * (float(peak) / max(hi - lo, 1e-6))
    return np.clip(scaled, 0, peak).astype(np.uint8)


def blend_rgb(grey: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Grey anatomy (z, y, x) under an overlay colour (z, y, x, 3) with per-voxel alpha in [0, 1]
    -> RGB uint8 (z, y, x, 3). Why a per-voxel alpha: where the overlay says nothing (a cold
    heatmap voxel, no curve type) the anatomy shows through unchanged."""
    a = np.clip(np.asarray(alpha, dtype=np.float32), 0.0, 1.0)[..., None]
    out = grey[..., None].astype(np.float32) * (1.0 - a) + colour.astype(np.float32) * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def on_study_grid(volume: np.ndarray, affine: np.ndarray, study: Study, order: int = 1) -> np.ndarray:
    """``volume`` (on ``affine``) on the study's grid; unchanged when it already is."""
    if volume.shape == study.shape and np.allclose(affine, study.affine):
        return np.asarray(volume)
    from ..geometry import resample_to_grid

    return resample_to_grid(volume, affine, study.affine, study.shape, order=order)


def anatomy_image(study: Study, phase: int = 1) -> tuple[np.ndarray, tuple[float, float]]:
    """The image a composite panel is drawn on, with its display window: the first
    post-contrast phase (the breast outline, fibroglandular tissue and the enhancing lesion are
    all visible on it, where a subtraction is dark outside enhancing tissue), else the pre."""
    volume = study.data[phase if study.n_phases > phase else 0]
    return volume, contrast_limits(volume)


def composite_layer(
    study: Study, overlay_rgb: np.ndarray, alpha: np.ndarray, *, name: str, phase: int = 1, **meta: Any
) -> LayerDataTuple:
    """An RGB image: :func:`anatomy_image` in grey with ``overlay_rgb`` blended in at ``alpha``.
    One layer, so that in a grid view (one layer per panel) the overlay is still seen on the
    anatomy it belongs to."""
    anatomy, limits = anatomy_image(study, phase)
    rgb = blend_rgb(anatomy_grey(anatomy, limits, ANATOMY_PEAK), overlay_rgb, alpha)
    return (
        rgb,
        {
            "name": name,
            "rgb": True,
            "affine": napari_affine(study.affine, 3),
            "metadata": _meta(meta.pop("role", "composite"), **meta),
        },
        "image",
    )


def heatmap_composite(
    heatmap: Heatmap, study: Study, *, opacity: float = 0.75, threshold: float = 0.1, **meta: Any
) -> LayerDataTuple:
    """A heatmap in :data:`HEATMAP_COLORMAP` over the grey anatomy; voxels below
    ``threshold`` leave the anatomy untouched and hotter ones cover it more."""
    heat = np.clip(on_study_grid(np.asarray(heatmap.data, dtype=np.float32), heatmap.affine, study), 0.0, 1.0)
    colour = _lut(HEATMAP_COLORMAP)[(heat * 255).astype(np.uint8)]
    alpha = opacity * np.clip((heat - threshold) / max(1.0 - threshold, 1e-6), 0.0, 1.0) ** 0.5
    meta.setdefault("name", f"{heatmap_name(heatmap)} on anatomy")
    return composite_layer(study, colour, alpha, **meta)


def curve_type_composite(curve_types: np.ndarray, study: Study, *, opacity: float = 0.7, **meta: Any):
    """BI-RADS curve types in :data:`CURVE_COLORS` over the grey anatomy (none: anatomy only)."""
    from matplotlib.colors import to_rgb

    ct = np.asarray(curve_types).astype(np.int64)
    lut = np.zeros((4, 3), np.uint8)
    for value in (1, 2, 3):
        lut[value] = np.round(np.array(to_rgb(CURVE_COLORS[value])) * 255).astype(np.uint8)
    colour = lut[np.clip(ct, 0, 3)]
    alpha = np.where(ct > 0, opacity, 0.0)
    meta.setdefault("name", "curve type on anatomy")
    return composite_layer(study, colour, alpha, **meta)


def ser_bins(ser: np.ndarray) -> np.ndarray:
    """SER values -> bin index 1..5 of :data:`SER_BINS` (0 outside, e.g. non-enhancing / NaN)."""
    ser = np.nan_to_num(np.asarray(ser, dtype=float), nan=0.0)
    out = np.digitize(ser, SER_BINS[1:-1], right=True).astype(np.int8) + 1
    out[(ser <= SER_BINS[0])] = 0
    out[ser > SER_BINS[-1]] = 5
    return out


def kinetic_map_layer(
    kind: str, array: np.ndarray, affine: np.ndarray, reference: np.ndarray | None = None
) -> LayerDataTuple:
    """A kinetic map with the colour map that fits it: curve types and SER as coloured labels."""
    meta = _meta("kinetic_map", kind=kind)
    aff = napari_affine(affine, 3, reference)
    key = kind.lower()
    if key in ("curve_type", "curve_types", "curve type"):
        return (
            np.asarray(array).astype(np.int32),
            {
                "name": "curve type",
                "affine": aff,
                "colormap": {None: "transparent", **CURVE_COLORS},
                "opacity": 0.6,
                "metadata": meta,
            },
            "labels",
        )
    if key in ("ser", "ser_bins", "ser colour map", "ser color map"):
        return (
            ser_bins(array).astype(np.int32),
            {
                "name": "SER colour map",
                "affine": aff,
                "colormap": {None: "transparent", 0: "transparent", **SER_COLORS},
                "opacity": 0.6,
                "metadata": meta,
            },
            "labels",
        )
    data = np.nan_to_num(np.asarray(array, dtype=np.float32))
    if key == "washout":
        bound = max(abs(v) for v in contrast_limits(data, 1.0, 99.0))
        limits = (-bound, bound)
    else:
        limits = contrast_limits(data, 1.0, 99.0)
    return (
        data,
        {
            "name": kind,
            "affine": aff,
            "colormap": MAP_COLORMAPS.get(key, "viridis"),
            "contrast_limits": limits,
            "opacity": 0.7,
            "blending": "translucent",
            "metadata": meta,
        },
        "image",
    )


def truth_layers(label_mask: np.ndarray, truth: dict, affine: np.ndarray) -> list[LayerDataTuple]:
    """A phantom's ground truth (mask and boxes), hidden by default so it does not bias reading."""
    lesions = [
        Lesion(id=int(item["id"]), bbox=[int(v) for v in item["bbox"]], score=1.0, status="added")
        for item in truth.get("lesions", [])
    ]
    boxes = boxes_layer(lesions, affine, name="truth boxes", role="truth_boxes")
    boxes[1]["visible"] = False
    boxes[1]["edge_color"] = "magenta"
    boxes[1]["text"] = {"string": "truth #{lesion_id}", "size": 9, "color": "magenta", "anchor": "lower_left"}
    mask = mask_layer(label_mask, affine, name="truth mask", role="truth_mask", visible=False)
    return [mask, boxes]


def demo_note(study: Study) -> str:
    """The label every synthetic study carries in the UI."""
    return DEMO_LABEL if study.meta.get("synthetic") or study.meta.get("demo") else ""
