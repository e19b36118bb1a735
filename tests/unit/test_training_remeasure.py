"""``training.remeasure``: a trained classifier measured again the current way, on its own cases."""

from __future__ import annotations

import numpy as np

from napari_breastmri.training.remeasure import ece_interval


def test_ece_interval_brackets_the_ece_and_narrows_with_more_cases() -> None:
    from napari_breastmri.training import metrics as M

    rng = np.random.default_rng(0)

    def case_set(n: int):
        labels = rng.integers(0, 2, n)
        p = np.clip(0.5 + (labels - 0.5) * 0.6 + rng.normal(0, 0.15, n), 0.01, 0.99)
        return labels, np.c_[1 - p, p]

    small, large = case_set(60), case_set(2000)
    for labels, probs in (small, large):
        low, high = ece_interval(labels, probs, draws=400)
        assert low <= M.expected_calibration_error(labels, probs) <= high
    assert np.subtract(*ece_interval(*large, draws=400)[::-1]) < np.subtract(
        *ece_interval(*small, draws=400)[::-1]
    )
