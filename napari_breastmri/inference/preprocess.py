"""From a Study to the tensor a network was trained on: channels, grid, intensities.

Small typed steps (MONAI's habit), each testable alone and shared by inference and training so the
two can never disagree:

1. :func:`channel_stack` picks phases and subtractions by the card's tokens (and the follow-up
   exam's, resampled onto the study grid through world space for ``pair:`` tokens);
2. :func:`normalise` scales intensities (percentile scaling on the reference phase keeps the
   enhancement ratios between channels; z-score per channel is the nnU-Net habit);
3. :func:`model_grid` + :func:`resample_stack` put the stack on the model's grid (its spacing,
   optionally axial axes), returning that grid's affine so outputs can go back through world space.

Everything here is numpy; the torch tensor is made at the very end by :func:`prepare_input`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import IncompatibleModel
from ..geometry import resample_to_grid, same_grid, spacing_from_affine
from ..types import Study

if TYPE_CHECKING:
    import torch

    from ..models.card import ModelCard


def _phase_index(study: Study, token: str, who: str) -> int:
    labels = study.phase_labels
    if token == "pre":
        if "pre" in labels:
            return labels.index("pre")
        return 0
    if token == "last":
        if study.n_phases < 2:
            raise IncompatibleModel(f"{who} needs a post-contrast phase but the study has only one phase.")
        return study.n_phases - 1
    if token in labels:
        return labels.index(token)
    m = re.fullmatch(r"post(\d+)", token)
    if m:
        # studies without explicit labels: postN is the N-th phase after the pre-contrast one
        posts = [i for i, lab in enumerate(labels) if lab.startswith("post")]
        n = int(m.group(1))
        if not posts and n < study.n_phases:
            return n
    raise IncompatibleModel(
        f"{who} needs phase '{token}' but the study has {labels}; choose a model whose channels the study has."
    )


def _one_channel(study: Study, token: str, who: str) -> np.ndarray:
    if token == "sub_last":
        return study.data[_phase_index(study, "last", who)] - study.data[_phase_index(study, "pre", who)]
    m = re.fullmatch(r"sub(\d+)", token)
    if m:
        post = _phase_index(study, f"post{m.group(1)}", who)
        return study.data[post] - study.data[_phase_index(study, "pre", who)]
    return study.data[_phase_index(study, token, who)]


def is_subtraction(token: str) -> bool:
    """Subtraction channels are differences: normalisation scales them without an offset."""
    return token.split(":")[-1].startswith("sub")


def channel_stack(
    study: Study, tokens: Sequence[str], follow_up: Study | None = None, who: str = "This model"
) -> np.ndarray:
    """(C, z, y, x) float32 on the study grid, one channel per token.

    ``pair:<token>`` takes the token from ``follow_up`` (the early-treatment exam) resampled onto
    the study grid through world space, so a baseline + follow-up model sees aligned anatomy.
    """
    if study.n_phases < 1:
        raise IncompatibleModel(f"{who} cannot run on a study with no phases.")
    if any(t.startswith("pair:") for t in tokens) and follow_up is None:
        raise IncompatibleModel(
            f"{who} compares two exams (channels {list(tokens)}) but no follow-up exam was given; "
            "open the early-treatment exam as the follow-up or pick a single-exam model."
        )
    out = np.empty((len(tokens), *study.shape), dtype=np.float32)
    for c, token in enumerate(tokens):
        if token.startswith("pair:"):
            assert follow_up is not None
            vol = _one_channel(follow_up, token[len("pair:") :], who + " (follow-up exam)")
            if not same_grid(follow_up.affine, study.affine, follow_up.shape, study.shape):
                vol = resample_to_grid(vol, follow_up.affine, study.affine, study.shape, order=1)
            out[c] = vol
        else:
            out[c] = _one_channel(study, token, who)
    return out


def normalise(
    stack: np.ndarray, tokens: Sequence[str], spec: dict[str, Any], study: Study | None = None
) -> np.ndarray:
    """Scale intensities as the card says (in place on a copy; returns float32).

    - ``percentile`` (default): lo, hi = percentiles ``lower``/``upper`` (default 1, 99) of the
      ``reference`` channel (default the first non-subtraction channel, usually "pre"), computed
      over voxels above its ``lower`` percentile; intensity channels map to (x - lo) / (hi - lo),
      subtraction channels to x / (hi - lo), so enhancement stays comparable across channels.
    - ``zscore``: each channel (x - mean) / std.
    - ``none``: unchanged.
    ``clip: [a, b]`` clips the result.
    """
    method = spec.get("method", "percentile")
    out = np.array(stack, dtype=np.float32, copy=True)
    if method == "percentile":
        ref_token = spec.get("reference")
        if ref_token in tokens:
            ref = out[list(tokens).index(ref_token)]
        else:
            plain = [i for i, t in enumerate(tokens) if not is_subtraction(t)]
            ref = out[plain[0]] if plain else np.abs(out[0])
        lo, hi = np.percentile(ref, [float(spec.get("lower", 1.0)), float(spec.get("upper", 99.0))])
        scale = float(hi - lo) if hi > lo else 1.0
        for c, token in enumerate(tokens):
            out[c] = out[c] / scale if is_subtraction(token) else (out[c] - lo) / scale
    elif method == "zscore":
        for c in range(out.shape[0]):
            std = float(out[c].std())
            out[c] = (out[c] - float(out[c].mean())) / (std if std > 0 else 1.0)
    clip = spec.get("clip")
    if clip:
        np.clip(out, float(clip[0]), float(clip[1]), out=out)
    return out


def _axial_order(affine: np.ndarray) -> tuple[list[int], list[bool]]:
    """Axis permutation and flips that bring a (z, y, x) grid nearest to axial (S, P, L) order."""
    dirs = np.asarray(affine, dtype=float)[:3, :3]
    dirs = dirs / np.linalg.norm(dirs, axis=0)
    order: list[int] = []
    flips: list[bool] = []
    # world axes wanted for new z, y, x: superior (LPS index 2), posterior (1), left (0)
    for world in (2, 1, 0):
        scores = np.abs(dirs[world]).copy()
        scores[order] = -1.0
        axis = int(np.argmax(scores))
        order.append(axis)
        flips.append(bool(dirs[world, axis] < 0))
    return order, flips


def model_grid(
    affine: np.ndarray,
    shape: Sequence[int],
    spacing_mm: Sequence[float] | None = None,
    resize_to: Sequence[int] | None = None,
    orientation: str = "study",
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The model's grid (affine, shape) covering the same field of view as the study grid.

    Axis directions stay the study's (or are permuted/flipped to the nearest axial order); the
    voxel size becomes ``spacing_mm`` (or extent / ``resize_to``); voxel edges of the first and
    last voxel coincide with the study's field of view, so nothing shifts by half a voxel.
    """
    affine = np.asarray(affine, dtype=float)
    shape_arr = np.asarray(shape, dtype=float)
    dirs = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    old_sp = np.asarray(spacing_from_affine(affine))
    # start corner (voxel edge) and extent along each study axis
    corner = affine[:3, 3] - dirs @ (old_sp / 2)
    extent = old_sp * shape_arr
    axis_shape = shape_arr
    if orientation == "axial":
        order, flips = _axial_order(affine)
        for axis, flip in zip(order, flips):
            if flip:
                corner = corner + dirs[:, axis] * extent[axis]
        sign = np.where(flips, -1.0, 1.0)
        dirs = dirs[:, order] * sign
        extent = extent[order]
        axis_shape = shape_arr[order]
    if resize_to is not None:
        new_shape = np.asarray(resize_to, dtype=int)
        new_sp = extent / new_shape
    elif spacing_mm is not None:
        new_sp = np.asarray(spacing_mm, dtype=float)
        new_shape = np.maximum(1, np.round(extent / new_sp)).astype(int)
        new_sp = extent / new_shape  # keep the field of view exact
    else:
        new_shape = axis_shape.astype(int)
        new_sp = extent / axis_shape
    out = np.eye(4)
    out[:3, :3] = dirs * new_sp
    out[:3, 3] = corner + dirs @ (new_sp / 2)
    return out, tuple(int(s) for s in new_shape)  # type: ignore[return-value]


def roi_grid(
    affine: np.ndarray,
    centre_world: Sequence[float],
    size_mm: Sequence[float],
    resize_to: Sequence[int] | None = None,
    spacing_mm: Sequence[float] | None = None,
    orientation: str = "study",
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A model grid of ``size_mm`` (z, y, x) centred on a world point, with the study's axis directions.

    Why a grid and not an index crop: the region is defined in millimetres around a point in
    patient space, so it is the same anatomy whatever the study's voxel size or orientation, and
    the CAM computed on it goes back to the study through the same world mapping.
    """
    affine = np.asarray(affine, dtype=float)
    dirs = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    if orientation == "axial":
        order, flips = _axial_order(affine)
        dirs = dirs[:, order] * np.where(flips, -1.0, 1.0)
    size = np.asarray(size_mm, dtype=float)
    if resize_to is not None:
        shape = np.asarray(resize_to, dtype=int)
    else:
        shape = np.maximum(1, np.round(size / np.asarray(spacing_mm, dtype=float))).astype(int)
    sp = size / shape
    out = np.eye(4)
    out[:3, :3] = dirs * sp
    out[:3, 3] = np.asarray(centre_world, dtype=float) - dirs @ (sp * (shape - 1) / 2.0)
    return out, tuple(int(v) for v in shape)  # type: ignore[return-value]


def box_centre_world(bbox: Sequence[int], affine: np.ndarray) -> np.ndarray:
    """World (LPS mm) position of the centre of a box [z0, y0, x0, z1, y1, x1] (end exclusive)."""
    b = np.asarray(bbox, dtype=float)
    centre = (b[:3] + b[3:] - 1.0) / 2.0
    return (np.asarray(affine, dtype=float) @ np.append(centre, 1.0))[:3]


#: BI-RADS kinetic suspicion of a lesion's delayed phase: washout > plateau > persistent (or unknown)
CURVE_SUSPICION = {"washout": 2, "plateau": 1}


def index_lesion(lesions: Sequence[Any]) -> Any | None:
    """The index lesion of a case: the most suspicious curve first, then the largest, never a rejected one.

    Why: the region models (subtype, pCR) describe the index *cancer*. "The largest lesion" alone
    picked a larger benign mass with a persistent curve over a smaller washout cancer: on 60
    held-out phantom cases, a found benign lesion was larger than every found cancer in 10 of 41
    cancer cases. A washout or plateau curve is what BI-RADS calls suspicious; a lesion whose
    curve was not measured ranks with the persistent ones, so without kinetics the rule is the
    largest. Size, not score, within a rank: a small very confident focus is not what a subtype or
    response model should read when a larger mass is there. Rejected lesions (an annotator said
    no) never count.
    """
    kept = [les for les in lesions if getattr(les, "status", "proposed") != "rejected"]
    if not kept:
        return None
    return max(
        kept,
        key=lambda les: (
            CURVE_SUSPICION.get(getattr(les, "curve_type", None) or "", 0),
            float(les.volume_ml or 0.0),
            float(les.score or 0.0),
        ),
    )


def resample_stack(
    stack: np.ndarray,
    src_affine: np.ndarray,
    dst_affine: np.ndarray,
    dst_shape: Sequence[int],
    order: int = 1,
) -> np.ndarray:
    """Resample each channel of (C, z, y, x) onto another grid through world space."""
    if same_grid(src_affine, dst_affine, stack.shape[1:], dst_shape):
        return np.asarray(stack, dtype=np.float32)
    return np.stack(
        [resample_to_grid(ch, src_affine, dst_affine, dst_shape, order=order, cval=0.0) for ch in stack]
    ).astype(np.float32)


def prepare_arrays(
    card: ModelCard,
    study: Study,
    follow_up: Study | None = None,
    roi_centre: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(C, z, y, x) float32 on the model grid and that grid's affine, as the card prescribes.

    A card with ``inputs.roi`` reads only the region around ``roi_centre`` (world LPS mm, the
    index lesion's centre); without a centre it cannot run and says so.
    """
    who = f"Model {card.label}"
    roi = card.inputs.roi
    if roi is not None and roi_centre is None:
        raise IncompatibleModel(
            f"{who} reads the region around the index lesion, but no lesion was given; run a lesion "
            "detector first (e.g. demo-lesion-seg) or mark the lesion."
        )
    if study.n_phases < card.inputs.min_phases:
        raise IncompatibleModel(
            f"{who} needs at least {card.inputs.min_phases} phases but the study has {study.n_phases}; "
            "load the full dynamic series."
        )
    stack = channel_stack(study, card.inputs.channels, follow_up, who=who)
    stack = normalise(stack, card.inputs.channels, card.inputs.normalisation, study)
    if roi is not None:
        dst_affine, dst_shape = roi_grid(
            study.affine,
            roi_centre,  # type: ignore[arg-type]
            roi["size_mm"],
            resize_to=card.inputs.resize_to,
            spacing_mm=card.inputs.spacing_mm,
            orientation=card.inputs.orientation,
        )
        return resample_stack(stack, study.affine, dst_affine, dst_shape), dst_affine
    dst_affine, dst_shape = model_grid(
        study.affine,
        study.shape,
        spacing_mm=card.inputs.spacing_mm,
        resize_to=card.inputs.resize_to,
        orientation=card.inputs.orientation,
    )
    return resample_stack(stack, study.affine, dst_affine, dst_shape), dst_affine


def prepare_input(
    card: ModelCard,
    study: Study,
    follow_up: Study | None = None,
    roi_centre: Sequence[float] | None = None,
) -> tuple[torch.Tensor, np.ndarray]:
    """The network input as a float32 torch tensor (C, z, y, x) and the model grid's affine."""
    import torch

    arr, affine = prepare_arrays(card, study, follow_up, roi_centre)
    return torch.from_numpy(np.ascontiguousarray(arr)), affine
