"""Explain shows the heatmap before its slow faithfulness checks: the layer, the per-phase bars and
the fast scores appear as soon as the map is made, the deletion/insertion and randomisation scores
arrive later from a follow-up worker and are written into the same Heatmap (the one in the
findings). The randomisation check is held on an event here, so the test sees both moments."""

from __future__ import annotations

import threading

import pytest

pytestmark = [pytest.mark.gui, pytest.mark.slow]

SLOW_KEYS = {"deletion_auc", "insertion_auc", "deletion_auc_random", "randomisation_spearman"}


@pytest.fixture
def toy_explain(dock, tmp_path, monkeypatch):
    """(viewer, widget, Explain section, gate): a tiny untrained classifier's findings on a tiny
    study, and the randomisation check waiting on ``gate`` (set it to let the scores finish)."""

    from napari_breastmri import progress
    from napari_breastmri.explain import faithfulness
    from napari_breastmri.inference.pipeline import analyze
    from napari_breastmri.models import registry
    from tests.gui.cases import save_toy_subtype, tiny_case

    user = tmp_path / "models"
    save_toy_subtype(user)
    monkeypatch.setattr(registry, "user_dir", lambda: user)
    gate = threading.Event()
    original = faithfulness.randomisation_check

    def gated(*args, **kwargs):
        assert gate.wait(120), "the test never released the randomisation check"
        return original(*args, **kwargs)

    monkeypatch.setattr(faithfulness, "randomisation_check", gated)
    viewer, widget = dock
    study, mask, truth = tiny_case(angle_deg=15.0)
    widget.set_study(study, truth=truth, truth_mask=mask)
    widget.state.set_findings(progress.run(analyze(study, [registry.resolve("toy-subtype")])))
    ex = widget.sections["Explain"]
    ex.method.setCurrentText("gradcam")
    yield viewer, widget, ex, gate
    gate.set()  # never leave a worker waiting on it


def _shown(widget, ex, jobs) -> bool:
    return all(j.finished_at is not None for j in jobs) and bool(widget.layers_with_role("heatmap"))


def _explain_until_shown(widget, ex, qtbot):
    """Run Explain and wait for its layer: (the run's jobs, the shown Heatmap, its follow-up job)."""
    jobs = ex.run()
    qtbot.waitUntil(lambda: _shown(widget, ex, jobs), timeout=180_000)
    (followup,) = ex.followups
    return jobs, widget.state.findings.heatmaps[-1], followup


def test_heatmap_layer_appears_before_the_slow_scores_and_they_fill_in(toy_explain, qtbot):
    _viewer, widget, ex, gate = toy_explain
    jobs, hm, followup = _explain_until_shown(widget, ex, qtbot)
    assert [j.outcome for j in jobs] == ["done"], ex.status.text()
    # shown while the randomisation check is still held: the fast scores only
    assert followup.running
    assert not SLOW_KEYS & set(hm.scores)
    assert hm.phase_attribution and set(hm.phase_attribution) == {"pre", "sub1"}
    assert len(ex.canvas.figure.axes[0].patches) == 2
    assert "pointing_hit" in hm.scores  # truth is loaded: the pointing game is a fast score
    assert "Faithfulness checks running" in ex.faith.text()
    assert "faithfulness checks running" in ex.status.text().lower()
    assert ex.run_btn.isEnabled() and ex.cancel_btn.isEnabled()

    gate.set()
    qtbot.waitUntil(lambda: followup.finished_at is not None, timeout=180_000)
    assert followup.outcome == "done", ex.status.text()
    assert set(hm.scores) >= SLOW_KEYS
    assert widget.state.findings.heatmaps[-1] is hm  # the Heatmap exports and reports read
    text = ex.faith.text()
    assert "Faithfulness checks running" not in text
    assert "randomised model" in text and "deletion_auc" in text
    assert ex.status.text() == "Faithfulness checks done."
    assert not ex.cancel_btn.isEnabled()


def test_a_new_study_cancels_the_pending_checks_and_drops_their_result(toy_explain, qtbot):
    _viewer, widget, ex, gate = toy_explain
    _jobs, hm, followup = _explain_until_shown(widget, ex, qtbot)
    study = widget.state.study
    widget.set_study(study)  # the same pixels, but a new reading: the old checks no longer apply
    gate.set()
    qtbot.waitUntil(lambda: followup.finished_at is not None, timeout=180_000)
    assert followup.outcome == "cancelled"
    assert not SLOW_KEYS & set(hm.scores)
    assert ex.followups == [] and not ex.cancel_btn.isEnabled()


def test_a_second_explanation_ignores_the_first_ones_checks(toy_explain, qtbot):
    _viewer, widget, ex, gate = toy_explain
    _first, first_hm, first_followup = _explain_until_shown(widget, ex, qtbot)
    ex.method.setCurrentText("gradcam++")
    second = ex.run()
    assert first_followup.cancel_event.is_set()
    qtbot.waitUntil(lambda: all(j.finished_at is not None for j in second), timeout=180_000)
    second_hm = widget.state.findings.heatmaps[-1]
    assert second_hm is not first_hm and second_hm.method == "gradcam++"
    gate.set()
    qtbot.waitUntil(lambda: first_followup.finished_at is not None, timeout=180_000)
    (second_followup,) = ex.followups
    qtbot.waitUntil(lambda: second_followup.finished_at is not None, timeout=180_000)
    assert first_followup.outcome == "cancelled" and second_followup.outcome == "done"
    assert not SLOW_KEYS & set(first_hm.scores)
    assert set(second_hm.scores) >= SLOW_KEYS
    assert "gradcam++" in ex.faith.text() and "Faithfulness checks running" not in ex.faith.text()


def test_cancel_stops_the_checks_and_keeps_the_heatmap(toy_explain, qtbot):
    _viewer, widget, ex, gate = toy_explain
    _jobs, hm, followup = _explain_until_shown(widget, ex, qtbot)
    ex.cancel_btn.click()
    assert "cancelled" in ex.status.text() and "heatmap stays" in ex.status.text()
    gate.set()
    qtbot.waitUntil(lambda: followup.finished_at is not None, timeout=180_000)
    assert followup.outcome == "cancelled"
    assert widget.layers_with_role("heatmap") and widget.state.findings.heatmaps[-1] is hm
    assert not SLOW_KEYS & set(hm.scores)
    assert "Faithfulness checks running" not in ex.faith.text()
    assert ex.run_btn.isEnabled() and not ex.cancel_btn.isEnabled()
