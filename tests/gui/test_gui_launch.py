"""`breastmri view --demo`: the viewer opens with the dock and the phantom case loads in the background."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def test_view_demo_opens_the_phantom_with_the_dock(qtbot, monkeypatch, tmp_path):
    from napari_breastmri._napari.launch import open_viewer
    from napari_breastmri.cli import main

    monkeypatch.setenv("BREASTMRI_ANNOTATIONS_DIR", str(tmp_path))
    viewer, dock = open_viewer(demo=True, hide_phi=True, show=False)
    try:
        qtbot.waitUntil(lambda: dock.state.study is not None, timeout=120_000)
        assert dock.layer_with_role("phases").data.ndim == 4
        assert dock.state.truth is not None and dock.layer_with_role("truth_mask").visible is False
        assert "synthetic demo - not for clinical use" in dock.sections["Study"].summary.text()
        assert viewer.title.endswith("(patient data hidden)")
    finally:
        viewer.close()
    with pytest.raises(SystemExit) as exc:
        main(["view", "--help"])
    assert exc.value.code == 0
