"""Functional tumour volume (FTV) as the ACRIN 6657 / I-SPY trials define it.

Why: FTV change between exams is the response measure the I-SPY trials validated, and the
radiologist wants it for a drawn box in ml. Steps, inside the region of interest:

1. background threshold: keep voxels whose pre-contrast signal is at least 0.6 x the 95th
   percentile of the pre-contrast signal (of the whole study by default, ``background_scope=
   "roi"`` for the region's own), which removes air and suppressed fat;
2. enhancement threshold: PE = 100 (S_early - S_pre) / S_pre >= 70 %;
3. connectivity filter: drop voxels with fewer than ``min_neighbours`` of their 26 neighbours
   also kept (isolated noise), then connected components smaller than ``min_component_voxels``.

The SER colour map puts each FTV voxel in one of the bins (0, 0.9], (0.9, 1.0], (1.0, 1.3],
(1.3, 1.75], (1.75, 3] (label values 1..5; SER above 3, or a late signal not above the pre-
contrast, goes to bin 5), 0 outside the FTV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..errors import KineticsError
from ..types import Study
from .maps import _roi_mask, check_study, classify_curves, phase_indices

SER_BINS = (0.0, 0.9, 1.0, 1.3, 1.75, 3.0)
SER_BIN_NAMES = ("(0, 0.9]", "(0.9, 1.0]", "(1.0, 1.3]", "(1.3, 1.75]", "(1.75, 3]")
#: conventional I-SPY colours for the SER bins (blue, purple, green, red, yellow)
SER_BIN_COLOURS = ("#1f3fff", "#8a2be2", "#22b14c", "#ff2020", "#ffd700")


@dataclass
class FTVResult:
    """FTV of one region: the volume, the voxels, their curve-type shares and SER bins."""

    volume_ml: float
    n_voxels: int
    mask: np.ndarray
    ser_bins: np.ndarray
    share: dict[str, float]
    ser_bin_volumes_ml: dict[str, float]
    affine: np.ndarray
    thresholds: dict[str, float] = field(default_factory=dict)
    early_index: int = 0
    late_index: int = 0
    warnings: list[str] = field(default_factory=list)


def _bbox(mask: np.ndarray) -> tuple[slice, ...]:
    idx = np.nonzero(mask)
    return tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)


def _connectivity_filter(keep: np.ndarray, min_neighbours: int, min_component_voxels: int) -> np.ndarray:
    from scipy import ndimage

    if min_neighbours > 0 and keep.any():
        counts = ndimage.convolve(keep.astype(np.uint8), np.ones((3, 3, 3), np.uint8), mode="constant")
        keep = keep & (counts.astype(np.int16) - 1 >= min_neighbours)
    if min_component_voxels > 1 and keep.any():
        labels, n = ndimage.label(keep, structure=np.ones((3, 3, 3), bool))
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        big = sizes >= min_component_voxels
        big[0] = False
        keep = big[labels]
    return keep


def ftv(
    study: Study,
    roi: object = None,
    *,
    pe_threshold_pct: float = 70.0,
    background_fraction: float | None = None,
    background_percentile: float = 95.0,
    background_scope: Literal["study", "roi"] = "study",
    min_neighbours: int = 2,
    min_component_voxels: int = 5,
) -> FTVResult:
    """Functional tumour volume of ``roi`` (box [z0, y0, x0, z1, y1, x1], mask, point or None = all).

    ``background_fraction`` defaults to ACRIN's 0.6, except for a study known to be acquired
    without fat suppression (``study.meta["fat_saturation"] is False``): there bright fat sets
    the 95th percentile and 0.6 of it would remove the lesions themselves, so 0.1 (a noise floor)
    is used and the result says so.
    """
    check_study(study)
    notes: list[str] = []
    if background_fraction is None:
        background_fraction = 0.6
        if study.meta.get("fat_saturation") is False:
            background_fraction = 0.1
            notes.append(
                "No fat suppression: background threshold 0.1 x P95(pre) instead of ACRIN's 0.6 "
                "(bright fat would set it above the lesions' own signal)."
            )
    roi_m = _roi_mask(study.shape, roi)
    if not roi_m.any():
        raise KineticsError("The FTV region is empty; draw a box around the lesion.")
    box = _bbox(roi_m)
    roi_c = roi_m[box]
    i_pre, i_early, i_late = phase_indices(study.times)
    pre = study.data[i_pre][box]
    early = study.data[i_early][box]
    late = study.data[i_late][box]
    finite = np.isfinite(pre) & np.isfinite(early) & np.isfinite(late)
    if background_scope == "study":
        full = study.data[i_pre]
        ref = full[:: max(1, full.shape[0] // 32)]  # up to ~32 slices: the P95 of a 1 GB study in ms
        ref = ref[np.isfinite(ref)]
    else:
        ref = pre[roi_c & finite]
    if ref.size == 0:
        raise KineticsError(
            "The pre-contrast image has no finite signal to set the FTV background threshold."
        )
    bg = background_fraction * float(np.percentile(ref, background_percentile))
    if bg <= 0:
        raise KineticsError(
            "The pre-contrast 95th percentile is not positive; the FTV background is undefined."
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        pe = np.where(pre > 0, 100.0 * (early - pre) / pre, 0.0)
    enhancing = roi_c & finite & (pe >= pe_threshold_pct)
    keep = enhancing & (pre >= bg)
    n_enh = int(enhancing.sum())
    if n_enh and keep.sum() < 0.5 * n_enh:
        notes.append(
            f"The background threshold removed {100 * (1 - keep.sum() / n_enh):.0f} % of the voxels that enhance "
            ">= the PE threshold; if the images are not fat-suppressed, pass background_fraction=0.1."
        )
    keep = _connectivity_filter(keep, min_neighbours, min_component_voxels)

    e_early, e_late = early - pre, late - pre
    with np.errstate(divide="ignore", invalid="ignore"):
        ser = np.where(e_late > 0, e_early / e_late, np.inf)
        late_change = 100.0 * (late - early) / np.where(early > 0, early, 1.0)
    bins_c = np.clip(np.digitize(ser, SER_BINS[1:-1], right=True) + 1, 1, 5).astype(np.int8)
    bins_c[~keep] = 0
    types = classify_curves(np.where(keep, 100.0, 0.0), late_change, min_enhancement_pct=50.0)
    n = int(keep.sum())
    vox_ml = study.voxel_volume_ml
    share = {
        name: (float(np.sum(types[keep] == code)) / n if n else 0.0)
        for code, name in ((3, "washout"), (2, "plateau"), (1, "persistent"))
    }
    mask = np.zeros(study.shape, bool)
    mask[box] = keep
    ser_bins = np.zeros(study.shape, np.int8)
    ser_bins[box] = bins_c
    return FTVResult(
        volume_ml=n * vox_ml,
        n_voxels=n,
        mask=mask,
        ser_bins=ser_bins,
        share=share,
        ser_bin_volumes_ml={
            name: float(np.sum(bins_c == i + 1)) * vox_ml for i, name in enumerate(SER_BIN_NAMES)
        },
        affine=np.asarray(study.affine, float),
        thresholds={
            "pe_pct": pe_threshold_pct,
            "background_signal": bg,
            "background_fraction": background_fraction,
        },
        early_index=i_early,
        late_index=i_late,
        warnings=notes,
    )
