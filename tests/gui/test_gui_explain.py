"""Explain from the dock: a real (untrained, seeded) 3D classifier package, Grad-CAM through
explain_study in a worker, the heatmap layer on the study grid with its sliders and bars."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.gui, pytest.mark.slow]


def test_explain_section_adds_a_heatmap_on_the_study_grid(dock, qtbot, tmp_path, monkeypatch):

    from napari_breastmri import progress
    from napari_breastmri._napari import _layers
    from napari_breastmri.inference.pipeline import analyze
    from napari_breastmri.models import registry
    from tests.gui.cases import save_toy_subtype, tiny_case

    user = tmp_path / "models"
    save_toy_subtype(user)
    monkeypatch.setattr(registry, "user_dir", lambda: user)
    viewer, widget = dock
    study, mask, truth = tiny_case(angle_deg=15.0)
    widget.set_study(study, truth=truth, truth_mask=mask)
    findings = progress.run(analyze(study, [registry.resolve("toy-subtype")]))
    widget.state.set_findings(findings)
    ex = widget.sections["Explain"]
    assert ex.model.count() == 1
    ex.method.setCurrentText("gradcam")
    jobs = ex.run()
    qtbot.waitUntil(lambda: all(j.finished_at is not None for j in jobs), timeout=180_000)
    assert all(j.outcome == "done" for j in jobs), ex.status.text()
    (layer,) = widget.layers_with_role("heatmap")
    assert layer.data.shape == study.shape and layer.data.min() >= 0.0 and layer.data.max() <= 1.0
    assert np.allclose(layer.affine.affine_matrix, _layers.napari_affine(study.affine, 3))
    ex.opacity.setValue(30)
    ex.threshold.setValue(40)
    assert layer.opacity == pytest.approx(0.3) and layer.contrast_limits[0] == pytest.approx(0.4)
    assert "gradcam" in ex.faith.text()
    hm = widget.state.findings.heatmaps[-1]
    if hm.phase_attribution:
        assert len(ex.canvas.figure.axes[0].patches) == len(hm.phase_attribution)
