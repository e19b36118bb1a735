"""The one geometry convention, and the only place that converts to and from others.

Arrays are indexed (z, y, x). ``affine`` is a 4x4 matrix that maps the homogeneous voxel index
(z, y, x, 1) to DICOM patient coordinates (LPS, millimetres). Its columns are therefore the
world step of one slice (z), one row (y) and one column (x), and the world position of voxel 0.

NIfTI stores (i, j, k) = (x, y, z) with an affine to RAS; ``to_nifti``/``from_nifti`` are the
only conversions, used at the io boundary. napari gets the affine unchanged (plus identity rows
for leading non-spatial axes) so every layer lands on the same anatomy in world space.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InconsistentGeometry

#: LPS <-> RAS flips the first two world axes; the matrix is its own inverse.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Permutes a homogeneous (i, j, k, 1) = (x, y, z, 1) index into (z, y, x, 1); its own inverse.
IJK_TO_ZYX = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)


def affine_from_dicom(
    image_orientation: Sequence[float],
    first_position: Sequence[float],
    pixel_spacing: Sequence[float],
    slice_step: Sequence[float],
) -> np.ndarray:
    """Build the (z, y, x) -> LPS affine from DICOM plane geometry.

    ImageOrientationPatient holds the row direction (direction of increasing *column* index, x)
    then the column direction (increasing *row* index, y); PixelSpacing is (row spacing = y step,
    column spacing = x step). ``slice_step`` is the world vector from one slice to the next, taken
    from the sorted ImagePositionPatient values, so it also carries the slice order's sign.
    """
    iop = np.asarray(image_orientation, dtype=float)
    if iop.shape != (6,):
        raise InconsistentGeometry(
            f"ImageOrientationPatient has {iop.size} values instead of 6; the file's geometry "
            "is damaged, so re-export the series from the scanner or PACS."
        )
    row_dir, col_dir = iop[:3], iop[3:]
    dy, dx = (float(v) for v in pixel_spacing)
    affine = np.eye(4)
    affine[:3, 0] = np.asarray(slice_step, dtype=float)
    affine[:3, 1] = col_dir * dy
    affine[:3, 2] = row_dir * dx
    affine[:3, 3] = np.asarray(first_position, dtype=float)
    return affine


def slice_normal(image_orientation: Sequence[float]) -> np.ndarray:
    """Unit normal of a DICOM image plane (row x column direction), used to sort slices."""
    iop = np.asarray(image_orientation, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    return normal / np.linalg.norm(normal)


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (dz, dy, dx) in mm: the lengths of the affine's first three columns."""
    norms = np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)
    return (float(norms[0]), float(norms[1]), float(norms[2]))


def voxel_to_world(affine: np.ndarray, zyx: np.ndarray | Sequence[float]) -> np.ndarray:
    """Map voxel indices (..., 3) in (z, y, x) order to LPS millimetres (..., 3)."""
    pts = np.asarray(zyx, dtype=float)
    return pts @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def world_to_voxel(affine: np.ndarray, lps: np.ndarray | Sequence[float]) -> np.ndarray:
    """Map LPS millimetres (..., 3) to fractional voxel indices (..., 3) in (z, y, x) order."""
    inv = np.linalg.inv(np.asarray(affine, dtype=float))
    pts = np.asarray(lps, dtype=float)
    return pts @ inv[:3, :3].T + inv[:3, 3]


def to_nifti(data_zyx: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Convert a (z, y, x) or (t, z, y, x) array and LPS affine to NIfTI (i, j, k[, t]) + RAS."""
    data_zyx = np.asarray(data_zyx)
    if data_zyx.ndim == 3:
        data_ijk = data_zyx.transpose(2, 1, 0)
    elif data_zyx.ndim == 4:
        data_ijk = data_zyx.transpose(3, 2, 1, 0)
    else:
        raise ValueError(f"expected a 3D or 4D array, got shape {data_zyx.shape}")
    affine_ras = LPS_TO_RAS @ np.asarray(affine, dtype=float) @ IJK_TO_ZYX
    return data_ijk, affine_ras


def from_nifti(data_ijk: np.ndarray, affine_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`to_nifti`: NIfTI (i, j, k[, t]) + RAS -> (z, y, x) or (t, z, y, x) + LPS."""
    data_ijk = np.asarray(data_ijk)
    if data_ijk.ndim == 3:
        data = data_ijk.transpose(2, 1, 0)
    elif data_ijk.ndim == 4:
        data = data_ijk.transpose(3, 2, 1, 0)
    else:
        raise ValueError(f"expected a 3D or 4D NIfTI, got shape {data_ijk.shape}")
    affine = LPS_TO_RAS @ np.asarray(affine_ras, dtype=float) @ IJK_TO_ZYX
    return data, affine


def layer_affine(affine: np.ndarray, ndim: int) -> np.ndarray:
    """The napari layer affine for an array whose last three axes are (z, y, x).

    Leading axes (phase, channel) get the identity, so a 4D phase stack and a 3D mask share the
    same world position for the spatial axes.
    """
    if ndim < 3:
        raise ValueError("a study layer has at least three spatial axes")
    out = np.eye(ndim + 1)
    out[ndim - 3 : ndim, ndim - 3 : ndim] = np.asarray(affine)[:3, :3]
    out[ndim - 3 : ndim, ndim] = np.asarray(affine)[:3, 3]
    return out


def resample_to_grid(
    volume: np.ndarray,
    src_affine: np.ndarray,
    dst_affine: np.ndarray,
    dst_shape: Sequence[int],
    order: int = 1,
    cval: float = 0.0,
) -> np.ndarray:
    """Resample ``volume`` (on ``src_affine``) onto another grid through world space."""
    from scipy import ndimage

    src_from_dst = np.linalg.inv(np.asarray(src_affine, dtype=float)) @ np.asarray(dst_affine)
    return ndimage.affine_transform(
        np.asarray(volume, dtype=np.float32),
        src_from_dst[:3, :3],
        offset=src_from_dst[:3, 3],
        output_shape=tuple(int(s) for s in dst_shape),
        order=order,
        cval=cval,
    )


def same_grid(a: np.ndarray, b: np.ndarray, shape_a, shape_b, atol_mm: float = 1e-3) -> bool:
    """True when two (affine, shape) pairs describe the same voxel grid within ``atol_mm``."""
    return tuple(shape_a) == tuple(shape_b) and bool(np.allclose(np.asarray(a), np.asarray(b), atol=atol_mm))


def bbox_world_corners(affine: np.ndarray, bbox: Sequence[int]) -> np.ndarray:
    """The 8 world corners (LPS mm) of a voxel box [z0, y0, x0, z1, y1, x1] (end exclusive).

    Corners are taken at voxel edges (index - 0.5 and end - 0.5), so the box encloses whole voxels.
    """
    z0, y0, x0, z1, y1, x1 = (float(v) for v in bbox)
    corners = np.array(
        [[z, y, x] for z in (z0 - 0.5, z1 - 0.5) for y in (y0 - 0.5, y1 - 0.5) for x in (x0 - 0.5, x1 - 0.5)]
    )
    return voxel_to_world(affine, corners)


def orientation_label(affine: np.ndarray) -> str:
    """'axial', 'sagittal', 'coronal' or 'oblique' from the slice direction (z column)."""
    z_dir = np.asarray(affine, dtype=float)[:3, 0]
    z_dir = z_dir / np.linalg.norm(z_dir)
    axis = int(np.argmax(np.abs(z_dir)))
    if abs(z_dir[axis]) < 0.999:
        return "oblique"
    return {0: "sagittal", 1: "coronal", 2: "axial"}[axis]
