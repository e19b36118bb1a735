"""From a probability map on the model grid to lesions on the study grid.

Steps, each a small function: foreground probability from the network output and the card's
activation; the thresholded mask and the probability taken back to the study grid *through world
space* (so a sagittal or oblique study, or a model that works on axial axes, lands on the same
anatomy); connected components (26-connected) into :class:`~napari_breastmri.types.Lesion` with
box, volume, diameters along the principal axes and per-lesion scores; small components dropped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ..geometry import resample_to_grid, same_grid, voxel_to_world
from ..types import Lesion


def foreground_probability(output: np.ndarray, activation: str, classes: Sequence[str]) -> np.ndarray:
    """(K, z, y, x) network output -> (z, y, x) lesion probability in [0, 1].

    sigmoid: channel of "lesion" (else the last channel); softmax: 1 - P(background) when the first
    class is "background", else P(last class); none: the output clipped to [0, 1].
    """
    out = np.asarray(output, dtype=np.float32)
    names = list(classes)
    if activation == "sigmoid":
        ch = names.index("lesion") if "lesion" in names and len(names) == out.shape[0] else out.shape[0] - 1
        from scipy.special import expit  # no overflow warning for very negative logits

        return expit(out[ch]).astype(np.float32)
    if activation == "softmax":
        e = np.exp(out - out.max(axis=0, keepdims=True))
        p = e / e.sum(axis=0, keepdims=True)
        if names and names[0] == "background":
            return (1.0 - p[0]).astype(np.float32)
        return p[-1].astype(np.float32)
    return np.clip(out[-1], 0.0, 1.0).astype(np.float32)


def to_study_grid(
    prob: np.ndarray,
    model_affine: np.ndarray,
    study_affine: np.ndarray,
    study_shape: Sequence[int],
    threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(mask bool, probability float32) on the study grid.

    The mask is made on the model grid (prob >= threshold) and taken to the study grid by linear
    interpolation of its 0/1 values cut at 0.5, which keeps volumes and avoids the staircase of
    nearest-neighbour; the probability is interpolated linearly for the per-lesion scores.
    """
    if same_grid(model_affine, study_affine, prob.shape, study_shape):
        return prob >= threshold, np.clip(prob, 0.0, 1.0).astype(np.float32)
    mask_model = (prob >= threshold).astype(np.float32)
    mask = resample_to_grid(mask_model, model_affine, study_affine, study_shape, order=1) >= 0.5
    p = resample_to_grid(prob, model_affine, study_affine, study_shape, order=1)
    return mask, np.clip(p, 0.0, 1.0).astype(np.float32)


def diameters_mm(coords_zyx: np.ndarray, affine: np.ndarray, max_points: int = 20000) -> list[float]:
    """Extents (mm) along the component's principal axes, largest first, plus one voxel's size.

    Principal axes in world space make the number independent of how the study was sliced.
    """
    if len(coords_zyx) > max_points:  # a regular subsample: the extents barely change, the SVD stays cheap
        coords_zyx = coords_zyx[:: int(np.ceil(len(coords_zyx) / max_points))]
    pts = voxel_to_world(affine, coords_zyx.astype(float))
    voxel = float(np.cbrt(abs(np.linalg.det(np.asarray(affine)[:3, :3]))))
    if len(pts) < 2:
        return [voxel, voxel, voxel]
    centred = pts - pts.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    proj = centred @ vt.T
    ext = proj.max(axis=0) - proj.min(axis=0) + voxel
    out = sorted((float(e) for e in ext), reverse=True)
    return out + [voxel] * (3 - len(out))


def lesions_from_mask(
    mask: np.ndarray,
    prob: np.ndarray,
    affine: np.ndarray,
    *,
    min_volume_ml: float = 0.0,
    first_id: int = 1,
    who: str = "",
    source: str = "",
) -> tuple[list[Lesion], np.ndarray]:
    """Connected components of ``mask`` -> (lesions sorted by score, int32 label map of those kept)."""
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    voxel_ml = float(abs(np.linalg.det(np.asarray(affine)[:3, :3])) / 1000.0)
    found = []
    for comp, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        local = labels[sl] == comp
        volume = float(local.sum()) * voxel_ml
        if volume < min_volume_ml:
            continue
        p = prob[sl][local]
        coords = np.argwhere(local) + np.array([s.start for s in sl])
        found.append((float(p.max()), float(p.mean()), comp, sl, volume, coords))
    found.sort(key=lambda f: -f[0])
    out_labels = np.zeros(mask.shape, dtype=np.int32)
    lesions = []
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for k, (pmax, pmean, comp, sl, volume, coords) in enumerate(found):
        lid = first_id + k
        out_labels[sl][labels[sl] == comp] = lid
        bbox = [int(s.start) for s in sl] + [int(s.stop) for s in sl]
        lesions.append(
            Lesion(
                id=lid,
                bbox=bbox,
                score=round(pmax, 4),
                label=lid,
                volume_ml=round(volume, 4),
                diameters_mm=[round(d, 2) for d in diameters_mm(coords, affine)],
                centroid_zyx=[round(float(c), 2) for c in coords.mean(axis=0)],
                source=source,
                provenance=[{"who": who, "what": "detected", "when": now}],
                extra={"mean_prob": round(pmean, 4), "n_voxels": int(len(coords))},
            )
        )
    return lesions, out_labels
