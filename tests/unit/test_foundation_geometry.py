"""The one geometry convention: (z, y, x) indices -> LPS mm, and the NIfTI boundary."""

from __future__ import annotations

import numpy as np
import pytest

from napari_breastmri import geometry as g
from napari_breastmri.errors import InconsistentGeometry


def oblique_affine() -> np.ndarray:
    """An oblique grid: tilted about two axes, anisotropic spacing, offset origin."""
    a, b = np.deg2rad(20), np.deg2rad(15)
    row = np.array([np.sin(b), np.cos(b) * np.cos(a), np.cos(b) * np.sin(a)])  # x direction
    col = np.cross(row, [1.0, 0.0, 0.0])
    col /= np.linalg.norm(col)  # y direction, orthogonal to row
    normal = np.cross(row, col)
    return g.affine_from_dicom([*row, *col], [-80.0, 12.5, 30.0], [0.7, 0.8], normal * 2.5)


def test_affine_from_dicom_axial_maps_known_voxels() -> None:
    # Axial, rows run anterior->posterior (+y LPS), columns right->left (+x LPS).
    affine = g.affine_from_dicom([1, 0, 0, 0, 1, 0], [-100.0, -120.0, 40.0], [0.8, 0.7], [0, 0, 1.5])
    np.testing.assert_allclose(g.voxel_to_world(affine, [0, 0, 0]), [-100, -120, 40])
    # voxel (z=2, y=3, x=4): x moves 4*0.7 along L, y moves 3*0.8 along P, z moves 2*1.5 along S
    np.testing.assert_allclose(g.voxel_to_world(affine, [2, 3, 4]), [-100 + 2.8, -120 + 2.4, 43.0])
    assert g.spacing_from_affine(affine) == pytest.approx((1.5, 0.8, 0.7))
    assert g.orientation_label(affine) == "axial"


def test_world_to_voxel_inverts_voxel_to_world_on_oblique_grid() -> None:
    affine = oblique_affine()
    pts = np.random.default_rng(0).uniform(0, 50, size=(20, 3))
    np.testing.assert_allclose(g.world_to_voxel(affine, g.voxel_to_world(affine, pts)), pts, atol=1e-9)
    assert g.orientation_label(affine) == "oblique"


def test_nifti_round_trip_keeps_world_positions() -> None:
    affine = oblique_affine()
    data = np.random.default_rng(1).random((4, 5, 6)).astype(np.float32)
    ijk, ras = g.to_nifti(data, affine)
    assert ijk.shape == (6, 5, 4)
    # the same voxel lands on the same point: NIfTI (i, j, k) = (x, y, z), RAS = LPS with x, y negated
    lps = g.voxel_to_world(affine, [3, 2, 1])
    ras_pt = ras @ np.array([1, 2, 3, 1.0])
    np.testing.assert_allclose(ras_pt[:3], lps * [-1, -1, 1], atol=1e-9)
    assert ijk[1, 2, 3] == data[3, 2, 1]
    back, back_affine = g.from_nifti(ijk, ras)
    np.testing.assert_array_equal(back, data)
    np.testing.assert_allclose(back_affine, affine, atol=1e-12)


def test_four_d_nifti_puts_time_first() -> None:
    data = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    ijkt, ras = g.to_nifti(data, np.eye(4))
    assert ijkt.shape == (5, 4, 3, 2)
    back, _ = g.from_nifti(ijkt, ras)
    np.testing.assert_array_equal(back, data)


def test_layer_affine_places_spatial_block_last() -> None:
    affine = oblique_affine()
    la = g.layer_affine(affine, 4)
    assert la.shape == (5, 5)
    np.testing.assert_allclose(la[1:4, 1:4], affine[:3, :3])
    np.testing.assert_allclose(la[1:4, 4], affine[:3, 3])
    assert la[0, 0] == 1 and la[0, 4] == 0


def test_resample_to_grid_through_world_space() -> None:
    src_affine = np.diag([2.0, 1.0, 1.0, 1.0])
    vol = np.zeros((10, 10, 10), np.float32)
    vol[4, 5, 5] = 1.0  # world (8, 5, 5)
    dst_affine = np.diag([1.0, 1.0, 1.0, 1.0])
    out = g.resample_to_grid(vol, src_affine, dst_affine, (20, 10, 10), order=0)
    assert out[8, 5, 5] == 1.0


def test_bad_orientation_is_a_typed_error() -> None:
    with pytest.raises(InconsistentGeometry, match="ImageOrientationPatient"):
        g.affine_from_dicom([1, 0, 0, 0, 1], [0, 0, 0], [1, 1], [0, 0, 1])


def test_bbox_world_corners_enclose_voxel_edges() -> None:
    corners = g.bbox_world_corners(np.eye(4), [1, 2, 3, 4, 6, 8])
    np.testing.assert_allclose(corners.min(axis=0), [0.5, 1.5, 2.5])
    np.testing.assert_allclose(corners.max(axis=0), [3.5, 5.5, 7.5])
