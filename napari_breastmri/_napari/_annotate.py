"""From edits on napari's Shapes layer to AnnotationSession calls (pure, testable headless).

The boxes layer holds one rectangle per slice a lesion crosses. When the annotator moves,
resizes, draws or deletes rectangles, :func:`box_ops` compares the layer's rectangles with the
ones drawn from the session and says what happened to which lesion:

* a changed rectangle sets that lesion's in-plane box (its slice range is kept);
* a new rectangle (appended by napari) is a new lesion spanning its slice +- ``depth``;
* a removed rectangle deletes its lesion (a box is one finding, not one slice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..types import Lesion
from ._layers import box_rectangles


@dataclass
class BoxOp:
    kind: str  # "set" | "add" | "delete"
    lesion_id: int | None
    bbox: list[int] | None = None


def rendered(lesions: Sequence[Lesion]) -> tuple[list[np.ndarray], list[int]]:
    """The rectangles and their lesion ids, exactly as :func:`_layers.boxes_layer` draws them."""
    rects, ids = [], []
    for lesion in lesions:
        for rect in box_rectangles(lesion.bbox):
            rects.append(rect)
            ids.append(int(lesion.id))
    return rects, ids


def _inplane(rect: np.ndarray) -> tuple[int, int, int, int]:
    r = np.asarray(rect, dtype=float)
    y0, x0 = (int(np.ceil(v)) for v in r[:, 1:].min(axis=0))
    y1, x1 = (int(np.ceil(v)) for v in r[:, 1:].max(axis=0))
    return y0, x0, max(y1, y0 + 1), max(x1, x0 + 1)


def box_ops(
    lesions: Sequence[Lesion],
    new_rects: Sequence[np.ndarray],
    *,
    removed: Sequence[int] = (),
    depth: int = 2,
    n_slices: int | None = None,
) -> list[BoxOp]:
    """Session operations that turn ``lesions`` into what the layer now shows.

    ``removed`` are the indices napari reported as removed (into the *old* rendering); without
    them, rectangles are matched by position in the list.
    """
    old_rects, old_ids = rendered(lesions)
    by_id = {les.id: les for les in lesions}
    ops: list[BoxOp] = []
    if removed:
        gone = sorted({old_ids[i] for i in removed if i < len(old_ids)})
        return [BoxOp("delete", lid) for lid in gone]
    n_old = len(old_rects)
    changed: dict[int, tuple[int, int, int, int]] = {}
    for i in range(min(n_old, len(new_rects))):
        if not np.allclose(np.asarray(new_rects[i], float), old_rects[i]):
            changed[old_ids[i]] = _inplane(new_rects[i])
    for lid, (y0, x0, y1, x1) in changed.items():
        z0, _, _, z1, _, _ = by_id[lid].bbox
        ops.append(BoxOp("set", lid, [z0, y0, x0, z1, y1, x1]))
    for rect in new_rects[n_old:]:
        z = int(round(float(np.mean(np.asarray(rect)[:, 0]))))
        y0, x0, y1, x1 = _inplane(rect)
        z0, z1 = max(0, z - depth), z + depth + 1
        if n_slices is not None:
            z1 = min(z1, n_slices)
        ops.append(BoxOp("add", None, [z0, y0, x0, z1, y1, x1]))
    return ops
