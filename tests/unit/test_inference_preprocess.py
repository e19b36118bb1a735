"""Preprocessing: channel tokens, normalisation, and a model grid that keeps anatomy in place."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_breastmri.errors import IncompatibleModel
from napari_breastmri.geometry import orientation_label, spacing_from_affine, voxel_to_world
from napari_breastmri.inference.preprocess import channel_stack, model_grid, normalise, resample_stack
from napari_breastmri.types import Study


def _study(n: int = 4, affine: np.ndarray | None = None) -> Study:
    rng = np.random.default_rng(0)
    data = rng.random((n, 6, 8, 10)).astype(np.float32) + np.arange(n)[:, None, None, None]
    labels = ["pre"] + [f"post{i}" for i in range(1, n)]
    return Study(
        data, np.diag([3.0, 1.0, 1.0, 1.0]) if affine is None else affine, np.arange(n) * 60.0, labels
    )


def test_channel_tokens_pick_phases_and_subtractions() -> None:
    s = _study()
    out = channel_stack(s, ["pre", "post2", "sub1", "last", "sub_last"])
    assert np.array_equal(out[0], s.data[0]) and np.array_equal(out[1], s.data[2])
    assert np.allclose(out[2], s.data[1] - s.data[0])
    assert np.array_equal(out[3], s.data[3]) and np.allclose(out[4], s.data[3] - s.data[0])
    with pytest.raises(IncompatibleModel, match=r"needs phase 'post5'.*\['pre', 'post1'"):
        channel_stack(s, ["pre", "sub5"])


def test_pair_tokens_resample_the_follow_up_onto_the_baseline_grid() -> None:
    base = _study()
    shifted = np.array(base.affine)
    shifted[1, 3] += 1.0  # follow-up grid one row (1 mm) further along y
    follow = Study(base.data * 2, shifted, base.times, base.phase_labels)
    out = channel_stack(base, ["pre", "pair:pre"], follow)
    # baseline voxel (z, y, x) sits at follow-up row y - 1
    assert np.allclose(out[1][:, 1:, :], 2 * base.data[0][:, :-1, :], atol=1e-5)
    with pytest.raises(IncompatibleModel, match="no follow-up exam"):
        channel_stack(base, ["pair:pre"])


def test_percentile_normalisation_keeps_enhancement_comparable() -> None:
    pre = np.linspace(100, 200, 1000, dtype=np.float32).reshape(10, 10, 10)
    stack = np.stack([pre, pre * 1.5, pre * 0.5])
    out = normalise(stack, ["pre", "post1", "sub1"], {"method": "percentile", "lower": 0, "upper": 100})
    assert out[0].min() == pytest.approx(0.0) and out[0].max() == pytest.approx(1.0)
    # subtraction scaled without offset: sub / (hi - lo)
    assert np.allclose(out[2], stack[2] / 100.0)
    z = normalise(stack, ["pre", "post1", "sub1"], {"method": "zscore", "clip": [-1, 1]})
    assert (
        np.all(np.abs(z) <= 1.0)
        and abs(float(normalise(stack, ["pre"] * 3, {"method": "zscore"})[1].mean())) < 1e-4
    )


def _oblique_affine() -> np.ndarray:
    ang = np.deg2rad(25.0)
    rot = np.array([[1, 0, 0], [0, np.cos(ang), -np.sin(ang)], [0, np.sin(ang), np.cos(ang)]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([2.5, 0.9, 0.7])
    aff[:3, 3] = [-30.0, 12.0, 40.0]
    return aff


SAGITTAL = np.array([[2.0, 0, 0, -20.0], [0, 0, 0.9, -30.0], [0, -0.9, 0, 40.0], [0, 0, 0, 1]])


@pytest.mark.parametrize("affine", [np.diag([3.0, 0.8, 0.8, 1.0]), SAGITTAL, _oblique_affine()])
@pytest.mark.parametrize("orientation", ["study", "axial"])
def test_model_grid_keeps_the_field_of_view_and_a_blob_in_place(affine: np.ndarray, orientation: str) -> None:
    shape = (20, 40, 36)
    dst, dst_shape = model_grid(affine, shape, spacing_mm=[1.5, 1.2, 1.2], orientation=orientation)
    assert np.allclose(spacing_from_affine(dst), [1.5, 1.2, 1.2], atol=0.1)
    # the world centre of the field of view is the same on both grids
    c_src = voxel_to_world(affine, (np.array(shape) - 1) / 2)
    c_dst = voxel_to_world(dst, (np.array(dst_shape) - 1) / 2)
    assert np.allclose(c_src, c_dst, atol=1e-6)
    if orientation == "axial":
        assert orientation_label(dst) in ("axial", "oblique")
        assert np.argmax(np.abs(dst[:3, 0])) == 2  # slices step along S/I
    vol = np.zeros(shape, np.float32)
    vol[8:12, 15:25, 10:18] = 1.0
    out = resample_stack(vol[None], affine, dst, dst_shape)[0]
    w_src = voxel_to_world(affine, ndimage.center_of_mass(vol))
    w_dst = voxel_to_world(dst, ndimage.center_of_mass(out))
    assert np.linalg.norm(w_src - w_dst) < 0.5  # mm
    assert out.sum() * np.prod(spacing_from_affine(dst)) == pytest.approx(
        vol.sum() * np.prod(spacing_from_affine(affine)), rel=0.1
    )


def test_resize_to_gives_exact_shape() -> None:
    dst, shape = model_grid(np.diag([3.0, 0.8, 0.8, 1.0]), (20, 64, 64), resize_to=[8, 16, 16])
    assert shape == (8, 16, 16)
    assert np.allclose(spacing_from_affine(dst), [7.5, 3.2, 3.2])
