"""The breast region the teaching panel keeps its curve types to (``kinetics.breast``), checked on
phantom cases, whose tissue map says where the chest wall and the heart are."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, label

from napari_breastmri import kinetics as k
from napari_breastmri.kinetics import breast as _breast
from napari_breastmri.phantom import generate_case
from napari_breastmri.types import Study

MUSCLE, BONE, LUNG, BLOOD = 3, 4, 5, 6  # phantom.anatomy.TISSUE_NAMES


def _largest(mask: np.ndarray) -> np.ndarray:
    labels, n = label(mask)
    return labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:])) if n else mask


@pytest.mark.parametrize("seed", [5, 13])  # 13 is fat-suppressed
def test_curve_types_in_the_region_leave_out_chest_wall_and_heart_and_keep_the_lesion(seed):
    case = generate_case(seed, shape=(32, 128, 128), spacing=(3.0, 1.6, 1.6))
    typed = k.curve_types(case.study) > 0
    region = _breast.breast_region(case.study)
    assert region.shape == case.study.shape and region.dtype == bool
    wall_and_heart = np.isin(case.tissue, (MUSCLE, BONE, LUNG)) | _largest(case.tissue == BLOOD)
    assert (typed & wall_and_heart).sum() > 1000, "these enhance in the phantom"
    assert region[typed & wall_and_heart].mean() < 0.01
    lesion = typed & (case.label_mask > 0)
    assert lesion.sum() > 50 and region[lesion].mean() > 0.98


def test_the_region_follows_the_patient_axes_not_the_array_axes():
    """The same anatomy stored sagittally (array axes L-R, S-I, A-P, posterior first) gives the
    same region, moved with the data."""
    study = generate_case(5, shape=(32, 128, 128), spacing=(3.0, 1.6, 1.6)).study
    axial = _breast.breast_region(study)
    order = (2, 0, 1)  # new array axes: old x (L-R), old z (S-I), old y (A-P)
    data = np.transpose(study.data, (0, *(a + 1 for a in order)))[:, :, :, ::-1]
    affine = np.array(study.affine, dtype=float)
    cols = affine[:3, :3][:, list(order)]
    n_ap = study.shape[1]
    affine[:3, 3] = affine[:3, 3] + cols[:, 2] * (n_ap - 1)  # the A-P axis reversed
    cols[:, 2] = -cols[:, 2]
    affine[:3, :3] = cols
    sagittal = Study(
        data=np.ascontiguousarray(data), affine=affine, times=study.times, phase_labels=study.phase_labels
    )
    moved = np.transpose(axial, order)[:, :, ::-1]
    assert np.array_equal(_breast.breast_region(sagittal), moved)


def _study(volume: np.ndarray) -> Study:
    data = np.stack([volume, volume * 1.5]).astype(np.float32)
    affine = np.zeros((4, 4))  # axial: z -> S (3 mm), y -> P, x -> L (1 mm)
    affine[2, 0], affine[1, 1], affine[0, 2], affine[3, 3] = 3.0, 1.0, 1.0, 1.0
    return Study(data=data, affine=affine, times=np.array([0.0, 90.0]), phase_labels=["pre", "post1"])


def test_a_field_of_view_filled_with_tissue_is_not_restricted():
    """No air in front: no surface, no chest-wall line, so nothing is taken away."""
    rng = np.random.default_rng(0)
    volume = 100.0 + 5.0 * rng.standard_normal((6, 40, 48))
    assert _breast.breast_region(_study(volume)).all()


def test_a_curved_chest_with_two_bumps_keeps_the_bumps_and_not_what_lies_behind():
    """Two half-discs (breasts) on a chest wall curving back laterally (radius 300 mm, 1 mm
    voxels), air in front: the line follows the chest's front between and beside the bumps."""
    rng = np.random.default_rng(1)
    ny, nx = 90, 120
    yy, xx = np.mgrid[:ny, :nx]
    front = 50 + (xx - 60.0) ** 2 / 600.0
    chest = yy >= front
    bumps = ((yy - 52) ** 2 + (xx - 33) ** 2 <= 22**2) | ((yy - 52) ** 2 + (xx - 87) ** 2 <= 22**2)
    plane = np.where(chest | bumps, 200.0, 5.0) + 3.0 * rng.standard_normal((ny, nx))
    region = _breast.breast_region(_study(np.repeat(plane[None], 4, axis=0)))
    assert region[:, bumps & ~chest].mean() > 0.97, "the breasts are kept"
    behind = yy > front + _breast.MARGIN_MM + 2.0
    assert not region[:, behind].any(), "nothing deeper than the margin behind the chest's front"
    air = ~binary_dilation(chest | bumps, iterations=2)  # the smoothing blurs the skin by a voxel
    assert not region[:, air].any(), "no air in front of the skin"
