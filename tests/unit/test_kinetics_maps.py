"""Kinetic maps on a synthetic study made with the forward model (known curve types)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_breastmri import kinetics as k
from napari_breastmri.errors import KineticsError
from napari_breastmri.kinetics.synthetic import SyntheticLesion, synthetic_study


@pytest.fixture(scope="module")
def synth():  # type: ignore[no-untyped-def]
    return synthetic_study()


def test_phase_choice_and_subtraction(synth) -> None:  # type: ignore[no-untyped-def]
    study, _ = synth
    assert k.phase_indices(study.times) == (0, 1, 5)
    assert k.phase_indices(np.array([0.0, 20, 40, 60, 80, 100, 200, 400])) == (0, 4, 7)
    sub = k.subtractions(study)
    assert sub.shape == (5, *study.shape) and sub.dtype == np.float32
    np.testing.assert_allclose(sub[2], study.data[3] - study.data[0])


def test_mip_full_and_thin_slab(synth) -> None:  # type: ignore[no-untyped-def]
    study, _ = synth
    vol = study.data[1]
    np.testing.assert_array_equal(k.mip(vol), vol.max(axis=0))
    slab = k.mip(vol, axis=0, slab_mm=6.0, affine=study.affine)  # 2 mm slices -> 3 slices
    assert slab.shape == vol.shape
    np.testing.assert_array_equal(slab[5], vol[4:7].max(axis=0))
    with pytest.raises(KineticsError):
        k.mip(vol, slab_mm=6.0)


def test_enhancement_maps_values(synth) -> None:  # type: ignore[no-untyped-def]
    study, truth = synth
    maps = k.enhancement_maps(study)
    assert set(k.MAP_NAMES) <= set(maps) and maps["mask"].dtype == bool
    for name in k.MAP_NAMES:
        assert maps[name].dtype == np.float32 and np.isfinite(maps[name]).all()
    d = study.data
    z, y, x = np.argwhere(truth.label_mask == 3)[0]
    pre, early, late = d[0, z, y, x], d[1, z, y, x], d[5, z, y, x]
    assert maps["pe"][z, y, x] == pytest.approx(100 * (early - pre) / pre, rel=1e-5)
    assert maps["ser"][z, y, x] == pytest.approx((early - pre) / (late - pre), rel=1e-5)
    assert maps["washout"][z, y, x] == pytest.approx(100 * (early - late) / early, rel=1e-5)
    assert maps["washin"][z, y, x] == pytest.approx(maps["pe"][z, y, x] / 1.5, rel=1e-5)
    assert maps["ttp"][z, y, x] == 90.0  # washout lesion peaks at the first post phase
    # threads or not, same answer
    single = k.enhancement_maps(study, threads=False)
    np.testing.assert_array_equal(single["ser"], maps["ser"])


def test_curve_types_recover_lesions(synth) -> None:  # type: ignore[no-untyped-def]
    study, truth = synth
    ct = k.curve_types(study)
    assert ct.dtype == np.int8
    # the map made in enhancement_maps' pass equals the one classified afterwards
    maps = {key: v for key, v in k.enhancement_maps(study).items() if key != "curve_type"}
    np.testing.assert_array_equal(ct, k.curve_types(study, maps))
    codes = {"persistent": 1, "plateau": 2, "washout": 3}
    for les in truth.lesions:
        inside = ct[truth.label_mask == les["id"]]
        assert np.mean(inside == codes[les["kind"]]) > 0.95, les["kind"]
        assert k.curve(study, truth.label_mask == les["id"]).curve_type == les["kind"]
    # air (noise only) and weakly enhancing gland are "none"
    assert np.mean(ct[truth.label_mask == 0] == 0) > 0.99


def test_curve_point_box_mask(synth) -> None:  # type: ignore[no-untyped-def]
    study, truth = synth
    z, y, x = np.argwhere(truth.label_mask == 1).mean(axis=0).round().astype(int)
    point = k.curve(study, (z, y, x))
    assert point.n_voxels == 1 and point.mean.shape == (study.n_phases,)
    box = k.curve(study, [z - 1, y - 2, x - 2, z + 2, y + 3, x + 3])
    assert box.n_voxels == 3 * 5 * 5 and box.curve_type == "persistent"
    assert box.enhancement_pct[0] == 0.0 and box.enhancement_pct[-1] > box.enhancement_pct[1]
    with pytest.raises(KineticsError):
        k.curve(study, (999, 0, 0))
    with pytest.raises(KineticsError):
        k.curve(study, [1, 2])


def test_ftv_volume_bins_and_shares(synth) -> None:  # type: ignore[no-untyped-def]
    study, truth = synth
    for les in truth.lesions:
        sel = truth.label_mask == les["id"]
        zz, yy, xx = np.nonzero(sel)
        box = [zz.min() - 2, yy.min() - 3, xx.min() - 3, zz.max() + 3, yy.max() + 4, xx.max() + 4]
        res = k.ftv(study, box)
        true_ml = sel.sum() * study.voxel_volume_ml
        assert res.volume_ml == pytest.approx(true_ml, rel=0.1)
        assert res.share[les["kind"]] > 0.95
        assert res.mask.shape == study.shape and not np.any(res.mask & ~sel)
        assert set(np.unique(res.ser_bins[res.mask])) <= {1, 2, 3, 4, 5}
        assert np.all(res.ser_bins[~res.mask] == 0)
        assert sum(res.ser_bin_volumes_ml.values()) == pytest.approx(res.volume_ml)
    washout = k.ftv(study, truth.label_mask == 3)
    assert washout.ser_bin_volumes_ml["(1.75, 3]"] > 0.5 * washout.volume_ml  # SER > 1.75 is washout-like


def test_ftv_connectivity_drops_isolated_voxels(synth) -> None:  # type: ignore[no-untyped-def]
    study, truth = synth
    data = study.data.copy()
    z, y, x = 2, 5, study.shape[2] - 5
    data[1:, z, y, x] = data[0, z, y, x] * 3  # one lone enhancing voxel
    noisy = dataclasses.replace(study, data=data)
    box = [0, 0, 0, *study.shape]
    with_filter = k.ftv(noisy, box)
    without = k.ftv(noisy, box, min_neighbours=0, min_component_voxels=1)
    assert not with_filter.mask[z, y, x] and without.mask[z, y, x]


def test_bad_input(synth) -> None:  # type: ignore[no-untyped-def]
    study, _ = synth
    one = dataclasses.replace(study, data=study.data[:1], times=study.times[:1], phase_labels=["pre"])
    with pytest.raises(KineticsError, match="phase"):
        k.enhancement_maps(one)
    bad_t = dataclasses.replace(study, times=np.array([0.0, 90, 80, 270, 360, 450]))
    with pytest.raises(KineticsError, match="increase"):
        k.enhancement_maps(bad_t)
    with pytest.raises(KineticsError):
        k.ftv(bad_t, None)
    data = study.data.copy()
    data[0, 0, 10:20, 10:20] = -5.0  # negative pre
    data[3, 1, 10:20, 10:20] = np.nan  # NaNs
    broken = dataclasses.replace(study, data=data)
    with pytest.warns(RuntimeWarning, match="NaN"):
        maps = k.enhancement_maps(broken)
    assert all(np.isfinite(maps[n]).all() for n in k.MAP_NAMES)
    assert not maps["mask"][0, 10:20, 10:20].any() and not maps["mask"][1, 10:20, 10:20].any()
    assert np.all(maps["pe"][0, 10:20, 10:20] == 0)
    zero = dataclasses.replace(study, data=np.zeros_like(study.data))
    with pytest.raises(KineticsError, match="positive"):
        k.enhancement_maps(zero)


def test_ultrafast_helpers() -> None:
    times = np.concatenate([[0.0], 10.0 + np.arange(0, 60, 4.0)])
    les = [SyntheticLesion((4, 16, 16), 5.0, "washout"), SyntheticLesion((4, 16, 40), 5.0, "persistent")]
    study, truth = synthetic_study((8, 32, 56), times=times, lesions=les, noise=0.002)
    uf = k.ultrafast_maps(study, threshold_pct=30.0)
    assert 15.0 < uf["bolus_arrival_s"] < 45.0  # Parker bolus delayed by 20 s
    fast, slow = truth.label_mask == 1, truth.label_mask == 2
    assert uf["enhancing"][fast].mean() > 0.9
    # the high-Ktrans lesion enhances earlier and faster than the low-Ktrans one
    assert np.median(uf["tte"][fast]) < np.median(uf["tte"][slow & uf["enhancing"]])
    assert np.median(uf["max_slope"][fast]) > 2 * np.median(uf["max_slope"][slow])
    assert np.isfinite(uf["tte"]).all()
