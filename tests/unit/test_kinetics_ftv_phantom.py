"""FTV of phantom lesions within 10 % of their true enhancing volume (issue 5's criterion).

The truth, ``enhancing_volume_ml``, is what an ideal FTV finds on the noise-free signal: early-
phase PE >= 70 %, the lesion's own voxels (partial-volume edge included), connected to the lesion
(docs/phantom.md). FTV is measured as a reader would: a box drawn 3 mm around the lesion, the
ACRIN 6657 / I-SPY settings. The criterion is held on masses >= 10 mm that enhance clearly, in
breasts without moderate/marked BPE, without peritumoral oedema (``ftv_check.ftv_limit``); the
other lesions are measured and printed, and the second test shows that the error on the weakly
enhancing ones is the image noise at the 70 % threshold, not the method.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_breastmri import kinetics as k
from napari_breastmri.phantom import generate_case
from napari_breastmri.phantom.case import _canonical_grid, draw_case, render_case
from napari_breastmri.phantom.ftv_check import LIMIT_REASONS, ftv_limit, ftv_rows, markdown_table, reader_box

#: cancers (spiculated, irregular, oval; fat-suppressed or not; with a vessel in the box: 31) and
#: washout / persistent fibroadenomas; seed 17's cancer is the worst background-threshold case, seed
#: 3's fibroadenoma the worst noise-at-threshold one
SEEDS = (1, 2, 3, 9, 13, 17, 23, 28, 30, 31)


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return ftv_rows(generate_case(s, n_lesions=3) for s in SEEDS)


@pytest.mark.slow
def test_ftv_of_a_reader_box_is_within_10_percent_of_the_true_enhancing_volume(rows) -> None:
    print("\n" + markdown_table(rows))
    held = [r for r in rows if r["limit"] is None]
    assert all(r["limit"] in LIMIT_REASONS for r in rows if r["limit"] is not None)
    # the held set spans the lesion kinds a reader measures FTV on
    assert len(held) >= 8
    assert {"invasive carcinoma", "fibroadenoma"} <= {r["diagnosis"] for r in held}
    assert {"spiculated", "irregular", "oval"} <= {r["shape"] for r in held}
    assert {True, False} == {r["fat_sat"] for r in held}
    for r in held:
        assert abs(r["ratio"] - 1.0) <= 0.10, r
    # the tight box (the label's own bounding box) cuts off the partial-volume edge: never more
    assert all(r["ratio_tight_box"] <= r["ratio"] + 1e-9 for r in rows if np.isfinite(r["ratio"]))


@pytest.mark.slow
def test_weak_lesions_miss_the_criterion_because_of_noise_not_the_method() -> None:
    """Seed 17: two fibroadenomas whose core enhances ~70 % (the threshold itself).

    With noise their FTV is off by 40-90 %; rendered again without noise (same case, SNR 1e9)
    the same FTV is within 10 % of the truth, so what is left is the noise at the threshold.
    """
    shape, spacing = _canonical_grid("axial", None, None, "conventional")
    spec, anatomy = draw_case(17, shape, spacing, "axial", "conventional", 3, None, False, None)
    noisy = render_case(spec, anatomy)
    clean = render_case(dataclasses.replace(spec, snr=1e9), anatomy)
    weak = [les for les in noisy.truth["lesions"] if ftv_limit(noisy.truth, les) == "weak"]
    assert len(weak) == 2
    for les in weak:
        box = reader_box(les["bbox"], noisy.study.spacing, noisy.study.shape)
        true_ml = les["enhancing_volume_ml"]
        assert abs(k.ftv(noisy.study, box).volume_ml / true_ml - 1.0) > 0.3
        assert k.ftv(clean.study, box).volume_ml == pytest.approx(true_ml, rel=0.10)
