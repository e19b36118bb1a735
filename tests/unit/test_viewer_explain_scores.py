"""The viewer's two-step explanation (map first, slow scores after) gives the same numbers as one
``scores="all"`` call: ``explain_study(scores="fast", keep=True)`` then
:func:`napari_breastmri.explain.study.faithfulness_scores`, on an oblique study with the toy
classifier of tests/integration/test_explain_study.py."""

from __future__ import annotations

import numpy as np
import pytest

from napari_breastmri import progress
from napari_breastmri.explain.study import Explained, ExplanationError, explain_study, faithfulness_scores
from napari_breastmri.types import Findings, Lesion
from tests.integration.test_explain_study import blob_study, classifier_pkg, oblique_affine  # noqa: F401

SLOW = {"deletion_auc", "insertion_auc", "deletion_auc_random", "insertion_auc_random"}
SLOW |= {"randomisation_spearman", "randomisation_flag"}


def _case():
    study, _centre, mask = blob_study(3, oblique_affine())
    findings = Findings(shape=study.shape, affine=study.affine, label_mask=mask.astype(np.int16))
    findings.lesions.append(Lesion(id=1, bbox=[0, 0, 0, 1, 1, 1], score=0.9, label=1))
    return study, findings, mask


def test_fast_then_follow_up_scores_equal_scores_all(classifier_pkg):  # noqa: F811
    study, findings, mask = _case()
    args = (study, classifier_pkg, findings)
    kw = {"method": "gradcam", "target": "present", "truth_mask": mask}
    whole = progress.run(explain_study(*args, scores="all", **kw))
    explained = progress.run(explain_study(*args, scores="fast", keep=True, **kw))
    assert isinstance(explained, Explained)
    hm = explained.heatmap
    assert not SLOW & set(hm.scores) and "pointing_hit" in hm.scores  # the fast part only
    np.testing.assert_allclose(hm.data, whole.data)
    steps: list[str] = []
    later = progress.run(faithfulness_scores(explained), lambda p: steps.append(p.message))
    assert set(later) == SLOW and not SLOW & set(hm.scores)  # returned, the heatmap left alone
    for key in SLOW:
        assert later[key] == pytest.approx(whole.scores[key], abs=1e-6), key
    assert set(explained.curves) == {"cam", "random", "randomisation"}
    assert "randomisation check" in steps


def test_follow_up_stops_between_steps_and_needs_a_kept_explanation(classifier_pkg):  # noqa: F811
    study, findings, mask = _case()
    explained = progress.run(explain_study(study, classifier_pkg, findings, scores="fast", keep=True))
    partial = progress.run(faithfulness_scores(explained, should_cancel=lambda: True))
    assert partial == {} and explained.curves is None
    bare = Explained(
        explained.heatmap, explained.model_cam, explained.model_affine, explained.x, explained.target
    )
    with pytest.raises(ExplanationError, match="keep=True"):
        progress.run(faithfulness_scores(bare))
