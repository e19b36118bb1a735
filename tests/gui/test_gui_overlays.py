"""Overlays drawn on the anatomy: the compared heatmaps each over the phase in view (grid mode),
and the teaching panel's curve types kept to the breasts."""

from __future__ import annotations

import numpy as np
import pytest

from napari_breastmri.types import Findings, Heatmap
from tests.gui.cases import tiny_case, wait_for_jobs

pytestmark = pytest.mark.gui


def _heatmap(study, method: str, seed: int) -> Heatmap:
    data = np.random.default_rng(seed).random(study.shape).astype(np.float32)
    return Heatmap(data, study.affine, method, "subtype", "enc", "demo-subtype")


def test_compare_puts_each_heatmap_over_the_phase_in_view(dock):
    viewer, widget = dock
    study, mask, truth = tiny_case()
    widget.set_study(study, truth=truth, truth_mask=mask)
    widget.state.set_findings(Findings(study.shape, study.affine))
    viewer.dims.set_current_step(0, 2)  # post2 in view
    ex = widget.sections["Explain"]
    heatmaps = [_heatmap(study, "gradcam", 1), _heatmap(study, "hirescam", 2)]
    ex._add(heatmaps)
    grid = viewer.canvas.grid
    assert grid.enabled and grid.stride == 2
    layers = list(viewer.layers)
    visible = [lay for lay in layers if lay.visible]
    assert len(visible) == 4 and visible == layers[:4]
    anat_a, heat_a, anat_b, heat_b = visible
    for anatomy, heat, hm in ((anat_a, heat_a, heatmaps[0]), (anat_b, heat_b, heatmaps[1])):
        assert heat.metadata["breastmri"]["role"] == "heatmap" and hm.method in heat.name
        assert heat.blending == "translucent" and heat.colormap.colors[0, 3] == 0.0  # cold: see-through
        assert anatomy.metadata["breastmri"]["panel"] == "compare"
        assert np.shares_memory(anatomy.data, study.data[2]), "the phase in view, not a copy"
        assert "post2" in anatomy.name
        assert np.allclose(anatomy.affine.affine_matrix, heat.affine.affine_matrix)
        # napari's grid: both in one panel, the heatmap drawn above the anatomy
        assert grid.position(layers.index(anatomy), layers) == grid.position(layers.index(heat), layers)
        assert layers.index(heat) == layers.index(anatomy) + 1
    assert grid.position(0, layers) != grid.position(2, layers), "two panels"
    widget.sections["Display"].one_at_a_time()
    assert not grid.enabled and not [lay for lay in viewer.layers if "under" in lay.name]


@pytest.mark.slow
def test_teaching_curve_types_stay_in_the_breasts(dock, qtbot):
    """On a phantom case the teaching panel colours the lesion but not the chest wall or heart."""
    from napari_breastmri import kinetics as k
    from napari_breastmri._napari import _layers
    from napari_breastmri.phantom import generate_case

    viewer, widget = dock
    case = generate_case(5, shape=(24, 128, 128))
    widget.set_study(case.study, truth=case.truth, truth_mask=case.label_mask)
    teach = widget.sections["Teaching"]
    teach.toggle.setChecked(True)
    wait_for_jobs(qtbot, widget)  # the curve panel is computed in a worker
    (panel,) = [lay for lay in viewer.layers if lay.metadata["breastmri"].get("panel") == "curve"]
    assert panel.visible and panel.rgb
    everywhere = k.curve_types(case.study) > 0
    grey = _layers.anatomy_grey(*_layers.anatomy_image(case.study), _layers.ANATOMY_PEAK)
    coloured = np.any(panel.data != grey[..., None], axis=-1)
    wall_and_heart = np.isin(case.tissue, (3, 4, 5)) | _largest(case.tissue == 6)  # + the blood pool
    typed = everywhere & wall_and_heart
    assert typed.sum() > 100, "the chest wall and heart enhance in this case (else nothing is shown)"
    assert coloured[typed].mean() < 0.05
    lesion_typed = everywhere & (case.label_mask > 0)
    assert coloured[lesion_typed].mean() > 0.95


def _largest(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import label

    labels, n = label(mask)
    if n == 0:
        return mask
    return labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
