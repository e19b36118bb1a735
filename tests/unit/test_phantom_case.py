"""generate_case: determinism, geometry, truth consistent with the mask, labels, follow-up."""

from __future__ import annotations

import numpy as np
import pytest

from napari_breastmri.geometry import orientation_label, voxel_to_world
from napari_breastmri.phantom import generate_case
from napari_breastmri.phantom.case import draw_case
from napari_breastmri.phantom.labels import CLASSES
from napari_breastmri.types import DEMO_LABEL

SMALL = {"shape": (24, 96, 96), "spacing": (4.0, 2.13, 2.13)}


@pytest.fixture(scope="module")
def case5():
    return generate_case(5, **SMALL)


def test_same_seed_same_case_and_other_seed_differs(case5) -> None:
    again = generate_case(5, **SMALL)
    np.testing.assert_array_equal(case5.study.data, again.study.data)
    np.testing.assert_array_equal(case5.label_mask, again.label_mask)
    np.testing.assert_array_equal(case5.enhancing_mask, again.enhancing_mask)
    assert case5.truth == again.truth
    assert case5.study.study_uid == again.study.study_uid
    other = generate_case(6, **SMALL)
    assert not np.array_equal(other.study.data, case5.study.data)
    assert other.study.study_uid != case5.study.study_uid


def test_study_shape_types_and_acquisition(case5) -> None:
    s = case5.study
    assert s.data.shape == (6, 24, 96, 96) and s.data.dtype == np.float32
    assert s.phase_labels == ["pre", "post1", "post2", "post3", "post4", "post5"]
    assert np.all(np.diff(s.times) > 50) and s.times[0] == 0
    assert s.spacing == pytest.approx((4.0, 2.13, 2.13))
    assert orientation_label(s.affine) == "axial"
    assert s.acquisition.repetition_time_ms and s.acquisition.flip_angle_deg
    assert s.acquisition.field_strength_t in (1.5, 3.0)
    assert s.meta["demo_label"] == DEMO_LABEL and case5.truth["demo_label"] == DEMO_LABEL
    assert s.phi.name and "invented" in s.phi.institution
    assert case5.label_mask.dtype == np.int16 and case5.label_mask.shape == s.shape
    assert (s.data >= 0).all() and s.data.max() > 100


def test_bbox_is_the_tight_box_of_each_lesion_mask(case5) -> None:
    assert case5.truth["lesions"], "seed 5 has a triple-negative index cancer"
    for les in case5.truth["lesions"]:
        z0, y0, x0, z1, y1, x1 = les["bbox"]
        inside = case5.label_mask[z0:z1, y0:y1, x0:x1] == les["id"]
        assert inside.sum() == (case5.label_mask == les["id"]).sum() > 0
        # tight: every face of the box touches the lesion
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, :, -1].any()
        assert les["volume_ml"] == pytest.approx(inside.sum() * case5.study.voxel_volume_ml, rel=1e-3)
        # the enhancing truth counts voxels, edge included: its mask and its volume agree
        n_enh = (case5.enhancing_mask == les["id"]).sum()
        assert les["enhancing_volume_ml"] == pytest.approx(n_enh * case5.study.voxel_volume_ml, rel=1e-3)


def test_index_cancer_washes_out_and_enhances(case5) -> None:
    les = case5.truth["lesions"][0]
    assert les["malignant"] and les["role"] == "index"
    curve = np.array(les["mean_curve"])
    assert curve[1:].max() > 1.8 * curve[0]
    assert les["curve_type"] == "washout"
    # the lesion is brighter than its surroundings on the early subtraction
    s = case5.study
    e = s.phase_labels.index(case5.truth["early_phase"])
    sub = s.data[e] - s.data[0]
    m = case5.label_mask == 1
    breast = np.isin(case5.tissue, [1, 7]) & (case5.label_mask == 0)  # fat and glandular tissue
    assert sub[m].mean() > 3 * np.median(sub[breast])


def test_every_label_value_appears_in_a_small_cohort() -> None:
    seen: dict[str, set] = {k: set() for k in CLASSES}
    for seed in range(40):
        spec, _ = draw_case(
            seed, (16, 64, 64), (6.0, 3.2, 3.2), "axial", "conventional", None, None, False, None
        )
        for k, v in spec.labels.as_dict().items():
            if v is not None:
                assert v in CLASSES[k]
                seen[k].add(v)
        if spec.labels.cancer:
            assert spec.lesions[0].malignant and spec.labels.screening == "needs_review"
        else:
            assert spec.labels.subtype is None
            assert (spec.labels.screening == "needs_review") == any(les.malignant for les in spec.lesions)
    assert {k: sorted(v) for k, v in seen.items()} == {k: sorted(v) for k, v in CLASSES.items()}


def test_sagittal_grid_places_the_lesion_at_the_same_world_point(case5) -> None:
    sag = generate_case(5, shape=(96, 24, 96), spacing=(2.13, 4.0, 2.13), orientation="sagittal")
    assert orientation_label(sag.study.affine) == "sagittal"
    assert sag.study.shape == (96, 24, 96)
    a = voxel_to_world(case5.study.affine, case5.truth["lesions"][0]["center_zyx"])
    b = voxel_to_world(sag.study.affine, sag.truth["lesions"][0]["center_zyx"])
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert sag.label_mask.sum() == case5.label_mask.sum()


def test_ultrafast_protocol_has_short_frames_then_conventional_posts() -> None:
    c = generate_case(2, protocol="ultrafast", shape=(16, 64, 64), spacing=(6.0, 3.2, 3.2))
    s = c.study
    uf = [i for i, lab in enumerate(s.phase_labels) if lab.startswith("uf")]
    assert 10 <= len(uf) <= 20 and s.protocol.n_ultrafast == len(uf)
    gaps = np.diff(s.times[uf])
    assert np.all((gaps >= 3) & (gaps <= 7))
    posts = [i for i, lab in enumerate(s.phase_labels) if lab.startswith("post")]
    assert len(posts) >= 4 and np.all(np.diff(s.times[posts]) >= 60)


def test_n_lesions_and_cancer_are_honoured() -> None:
    c0 = generate_case(3, n_lesions=0, shape=(16, 64, 64), spacing=(6.0, 3.2, 3.2))
    assert c0.truth["lesions"] == [] and c0.label_mask.max() == 0
    assert c0.truth["labels"]["screening"] == "normal"
    c3 = generate_case(3, n_lesions=3, cancer=True, shape=(16, 64, 64), spacing=(6.0, 3.2, 3.2))
    assert len(c3.truth["lesions"]) == 3 and c3.truth["labels"]["subtype"] is not None
    with pytest.raises(ValueError):
        generate_case(3, n_lesions=4)


def test_follow_up_carries_the_response_signature() -> None:
    shrink = {}
    for seed in range(30):
        spec, _ = draw_case(
            seed, (16, 64, 64), (6.0, 3.2, 3.2), "axial", "conventional", None, True, False, None
        )
        if spec.labels.pcr is None:
            continue
        from napari_breastmri.phantom.case import follow_up_spec

        fu = follow_up_spec(spec)
        shrink.setdefault(spec.labels.pcr, []).append(fu.extra["response"]["diameter_factor"])
        assert fu.lesions[0].diameter < spec.lesions[0].diameter * 1.03
    assert max(shrink["pcr"]) < min(shrink["no_pcr"])
    c = generate_case(5, longitudinal=True, **SMALL)
    assert c.follow_up is not None and c.follow_up.study.shape == c.study.shape
    assert c.truth["follow_up"]["case_id"] == c.follow_up.case_id
    np.testing.assert_allclose(c.follow_up.study.affine, c.study.affine)
    assert c.follow_up.truth["labels"] == c.truth["labels"]


def test_enhancing_truth_is_an_ideal_ftv_on_the_noise_free_study() -> None:
    """truth enhancing_volume_ml: noise-free PE >= 70 % at the early phase, the lesion's own voxels, connected.

    Rendered again without noise (same spec, SNR 1e9), the enhancing mask must be exactly the
    voxels near the lesion whose PE reaches 70 %: every masked voxel does, every label voxel that
    does is masked (when connected), and the mask reaches past the label into the partial-volume
    edge, which the former core-only truth left out.
    """
    import dataclasses

    from scipy import ndimage

    from napari_breastmri.kinetics import phase_indices
    from napari_breastmri.phantom.case import render_case

    spec, anatomy = draw_case(
        2, (32, 128, 128), (3.0, 1.6, 1.6), "axial", "conventional", 3, None, False, None
    )
    clean = render_case(dataclasses.replace(spec, snr=1e9), anatomy)
    noisy = render_case(spec, anatomy)
    assert noisy.truth["lesions"] == clean.truth["lesions"]  # the truth does not depend on the noise
    np.testing.assert_array_equal(noisy.enhancing_mask, clean.enhancing_mask)
    d = clean.study.data
    _, early, _ = phase_indices(clean.study.times)
    pe = (d[early] - d[0]) / np.maximum(d[0], 1e-3)
    beyond_label = 0
    for les in clean.truth["lesions"]:
        i = les["id"]
        enh, lab = clean.enhancing_mask == i, clean.label_mask == i
        assert enh.any() and np.all(pe[enh] >= 0.7 - 1e-4), les["diagnosis"]
        near = ndimage.binary_dilation(lab, np.ones((3, 3, 3), bool), iterations=2)
        assert not np.any(enh & ~near)  # the lesion's own voxels only: label and its edge
        parts, _ = ndimage.label(enh, np.ones((3, 3, 3), bool))
        assert set(np.unique(parts[enh])) == set(np.unique(parts[enh & lab]))  # each part touches the label
        # a label voxel that enhances and touches the mask is in it (nothing connected left out)
        touches = ndimage.binary_dilation(enh, np.ones((3, 3, 3), bool))
        assert not np.any(lab & (pe >= 0.7 + 1e-4) & ~enh & touches)
        beyond_label += int((enh & ~lab).sum())
    assert beyond_label > 0
