"""The pure layer builders put every layer on the study's anatomy (world = patient mm)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_breastmri._napari import _layers as L
from napari_breastmri.geometry import bbox_world_corners, voxel_to_world
from napari_breastmri.types import Findings, Heatmap, Lesion, PatientInfo, Study
from tests.gui.cases import oblique_affine, tiny_case


def _apply(aff: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, dtype=float)
    n = aff.shape[0] - 1
    return pts @ aff[:n, :n].T + aff[:n, n]


def _sagittal() -> np.ndarray:
    aff = np.eye(4)
    aff[:3, 0] = [2.0, 0, 0]  # slices along L
    aff[:3, 1] = [0, 0, -0.8]  # rows go S -> I
    aff[:3, 2] = [0, 0.8, 0]  # columns go A -> P
    aff[:3, 3] = [-60, -100, 80]
    return aff


@pytest.mark.parametrize("affine", [oblique_affine(0.0), oblique_affine(25.0), _sagittal()])
def test_box_rectangles_land_on_the_box_world_corners(affine):
    bbox = [3, 5, 7, 6, 11, 15]
    rects = L.box_rectangles(bbox)
    assert len(rects) == 3  # one per slice crossed
    aff = L.napari_affine(affine, 3)
    world = L.world_to_lps(_apply(aff, np.concatenate(rects)), affine)
    corners = bbox_world_corners(affine, bbox)
    # every drawn corner is the in-plane corner of one crossed slice: inside the box's world hull
    lo, hi = corners.min(0) - 1e-6, corners.max(0) + 1e-6
    assert np.all(world >= lo - np.abs(affine[:3, 0]) / 2) and np.all(world <= hi + np.abs(affine[:3, 0]) / 2)
    # and equals voxel_to_world of the same (z, y, x) vertex, through napari's affine
    assert np.allclose(world, voxel_to_world(affine, np.concatenate(rects)), atol=1e-9)


def test_rectangles_round_trip_to_the_bbox():
    bbox = [2, 4, 6, 9, 10, 13]
    assert L.rectangles_to_bbox(L.box_rectangles(bbox)) == bbox


def test_world_axes_follow_the_acquisition_plane():
    assert L.view_axes(oblique_affine(0.0)) == (2, 1, 0)  # axial: slider over S, rows P, columns L
    assert L.view_axes(oblique_affine(30.0)) == (2, 1, 0)  # oblique: the closest plane
    assert L.view_axes(_sagittal()) == (0, 2, 1)
    # napari slices by matching data axis i to world axis i: the layer affine must be near-diagonal
    for affine in (oblique_affine(0.0), _sagittal()):
        lin = L.napari_affine(affine, 3)[:3, :3]
        assert np.allclose(lin, np.diag(np.diag(lin)))
    perm = L.world_permutation(_sagittal())
    assert np.allclose(perm @ perm.T, np.eye(3))


def test_study_layers_one_4d_phase_stack_and_subtraction_without_phi():
    study, _, _ = tiny_case(angle_deg=20.0)
    layers = L.study_layers(study)
    (data, kw, kind), (sub, skw, skind) = layers
    assert kind == "image" and data.shape == study.data.shape and kw["affine"].shape == (5, 5)
    assert np.allclose(sub, study.data[1] - study.data[0])
    lo, hi = kw["contrast_limits"]
    assert lo < np.median(study.data) < hi
    phi = study.phi
    for _, kwargs, _ in layers:
        for value in (phi.name, phi.patient_id, phi.birth_date, phi.accession):
            assert value not in kwargs["name"]
    # the 3D subtraction and the 4D stack put voxel (z, y, x) at the same world point
    p = np.array([5.0, 10.0, 20.0])
    assert np.allclose(_apply(kw["affine"], np.r_[2.0, p])[1:], _apply(skw["affine"], p))


def test_findings_layers_share_the_study_grid():
    study, mask, truth = tiny_case(angle_deg=30.0)
    hm = Heatmap(np.random.default_rng(0).random(study.shape), study.affine, "gradcam", "subtype", "enc", "m")
    f = Findings(
        study.shape,
        study.affine,
        [Lesion(1, truth["lesions"][0]["bbox"], 0.8, label=1)],
        label_mask=mask,
        heatmaps=[hm],
    )
    boxes, masks, heat = L.findings_layers(f)
    assert boxes[2] == "shapes" and masks[2] == "labels" and heat[2] == "image"
    assert all(np.allclose(t[1]["affine"], masks[1]["affine"]) for t in (boxes, heat))
    assert list(boxes[1]["features"]["lesion_id"]) == [1] * (
        truth["lesions"][0]["bbox"][3] - truth["lesions"][0]["bbox"][0]
    )
    assert "0.80" in boxes[1]["features"]["label"][0]
    assert heat[1]["colormap"] == L.HEATMAP_COLORMAP and heat[1]["contrast_limits"] == (0.0, 1.0)


def test_kinetic_maps_get_their_colour_maps():
    aff = oblique_affine(0.0)
    curve = L.kinetic_map_layer("curve_type", np.array([[[0, 1, 2, 3]]]), aff)
    assert curve[2] == "labels" and curve[1]["colormap"][3] == L.CURVE_COLORS[3]
    ser = L.kinetic_map_layer("SER", np.array([[[0.5, 0.95, 1.2, 1.5, 2.0, np.nan, 4.0]]]), aff)
    assert ser[0].ravel().tolist() == [1, 2, 3, 4, 5, 0, 5]
    washout = L.kinetic_map_layer("washout", np.linspace(-50, 20, 100).reshape(1, 10, 10), aff)
    lo, hi = washout[1]["contrast_limits"]
    assert lo == -hi  # diverging map centred on zero


def test_mip_slab_covers_every_slice():
    study, _, _ = tiny_case()
    data, kw, _ = L.mip_layer(study.data[1].max(0), study)
    assert data.shape == (1, *study.shape[1:])
    aff = kw["affine"]
    # its one slice spans the whole stack: first and last slice centres round to slice 0
    inv = np.linalg.inv(aff)
    for z in (0, study.shape[0] - 1):
        world = _apply(L.napari_affine(study.affine, 3), [z, 3, 3])
        assert round(_apply(inv, world)[0]) == 0


def test_contrast_limits_ignore_hot_voxels_and_nans():
    vol = np.ones((10, 50, 50), np.float32)
    vol[0, 0, :5] = 1e6
    vol[1, 1, 1] = np.nan
    lo, hi = L.contrast_limits(vol)
    assert hi < 10 and lo <= 1


def test_phi_free_names_with_patient_data():
    study = Study(
        np.zeros((2, 3, 4, 5)),
        np.eye(4),
        [0, 60],
        ["pre", "post1"],
        phi=PatientInfo(name="SMITH^ANN", patient_id="X1"),
    )
    for _, kw, _ in L.study_layers(study):
        assert "SMITH" not in kw["name"] and "X1" not in kw["name"]
