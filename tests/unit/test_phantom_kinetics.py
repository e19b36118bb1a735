"""The phantom's lesion curves are what the kinetics module measures on its images."""

from __future__ import annotations

import numpy as np
import pytest

from napari_breastmri import kinetics as k
from napari_breastmri.phantom import generate_case
from napari_breastmri.phantom import physics as P


@pytest.mark.parametrize("seed", [1, 2, 5, 7])
def test_curve_types_map_recovers_each_lesions_truth(seed: int) -> None:
    case = generate_case(seed, shape=(24, 96, 96), spacing=(4.0, 2.13, 2.13))
    assert case.truth["lesions"], "these seeds have lesions"
    codes = k.curve_types(case.study)
    for les in case.truth["lesions"]:
        votes = np.bincount(codes[case.label_mask == les["id"]], minlength=4)
        majority = k.CURVE_NAMES[int(np.argmax(votes[1:]) + 1)] if votes[1:].sum() else "none"
        assert majority == les["curve_type"], (les["diagnosis"], votes.tolist())
        # most lesion voxels enhance (noise and partial volume at the rim may not)
        assert votes[1:].sum() >= 0.6 * votes.sum()


def test_truth_curve_type_follows_the_tofts_parameters() -> None:
    rng = np.random.default_rng(0)
    timing = P.draw_timing(rng, "conventional")
    acq = {"relaxivity_per_mM_s": 4.5, "repetition_time_ms": 4.5, "flip_angle_deg": 12.0}
    params = np.array([[0.06, 0.65, 0.01], [1.2, 0.25, 0.07]])  # benign-like, aggressive
    conc = P.concentration_curves(timing, params)
    sig = P.signal_table(np.ones(2), np.full(2, 1.4), conc, acq)
    assert P.curve_type(sig[:, 0], timing) == "persistent"
    assert P.curve_type(sig[:, 1], timing) == "washout"
    # blood follows the whole-blood Parker AIF through vp = 1 - Hct
    blood = P.concentration_curves(timing, np.array([[0.0, 0.1, 1 - P.HCT]]))[0]
    np.testing.assert_allclose(
        blood,
        k.parker_aif(timing.times, delay_s=timing.injection_s) * (timing.times >= timing.injection_s),
        rtol=1e-6,
        atol=1e-9,
    )
