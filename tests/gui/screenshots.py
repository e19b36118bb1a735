"""`make screenshots`: the reading station in each mode, saved to docs/images/*.png.

Uses the embedded phantom case and the shipped demo models (synthetic demo - not for clinical
use) when they are in the tree; without trained weights it falls back to the phantom's ground
truth as findings and says so on stderr. Run under Xvfb:
``xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m tests.gui.screenshots --out docs/images``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch  # noqa: F401  (before Qt)

SIZE = (1600, 1000)
_DOCKS: list = []


def _settle(app, seconds: float = 0.6) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def _wait(app, job, timeout: float = 600.0) -> None:
    end = time.monotonic() + timeout
    while job.finished_at is None and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def _wait_all(app, dock, timeout: float = 120.0) -> None:
    """Until every job the dock started (and the jobs those started) has finished."""
    end = time.monotonic() + timeout
    while (any(j.finished_at is None for j in dock.jobs) or dock.staging) and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def _only(dock, *titles: str) -> None:
    dock.show_sections(*titles)


def _close_toasts(viewer) -> None:
    """Close napari's notification pop-ups (e.g. its PyQt5 deprecation notice) before a shot."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()


def _shot(viewer, app, path: Path) -> None:
    _settle(app)
    _close_toasts(viewer)
    for dock in _DOCKS:
        dock.relayout()
    _settle(app, 0.3)
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import warnings

    warnings.filterwarnings("ignore", message=".*PyQt5 backend is deprecated.*")
    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    from napari_breastmri._napari._widget import BreastMRIWidget
    from napari_breastmri.models import registry
    from napari_breastmri.phantom import generate_case

    viewer = napari.Viewer(title="Breast DCE-MRI")
    viewer.window._qt_window.resize(*SIZE)
    dock = BreastMRIWidget(viewer)
    viewer.window.add_dock_widget(dock, area="right", name="Breast DCE-MRI")
    _DOCKS.append(dock)
    app = QApplication.instance()
    case = generate_case(args.seed)
    case.study.meta.setdefault("synthetic", True)
    dock.set_study(case.study, truth=case.truth, truth_mask=case.label_mask, source=f"phantom:{args.seed}")
    dock.state.set_hide_phi(True)
    infos = registry.shipped(demo_only=True)
    if infos:
        models = dock.sections["Models"]
        models.set_chosen([i.name for i in infos if not i.name.endswith("pair")])
        job = models.run()
        _wait(app, job)
        while dock.results_pending:  # the results are written into the layers in small steps
            _settle(app, 0.05)
        print(f"models: {job.outcome} - {models.step_label.text()}", file=sys.stderr)
    if dock.state.findings is None:
        from napari_breastmri.io.export import findings_from_truth

        print("no demo models ran: showing the phantom's truth as findings", file=sys.stderr)
        dock.state.set_findings(findings_from_truth(case.study, case.truth, case.label_mask))
    findings = dock.state.findings
    lesions = sorted(findings.lesions, key=lambda les: -les.score)

    # 1. reading station: phases with boxes and masks, findings table, predictions
    _only(dock, "Models", "Findings", "Predictions")
    viewer.dims.set_current_step(0, 1)
    if lesions:
        row = [les.id for les in findings.lesions].index(lesions[0].id)
        dock.sections["Findings"].select_index(row)
    viewer.reset_view()
    _shot(viewer, app, out / "reading-station.png")

    # 2. hanging protocol
    _only(dock, "Study", "Display")
    dock.sections["Display"].hanging_protocol()
    _wait_all(app, dock)  # the kinetic panel's maps come from a worker
    if lesions:  # the linked cursor on the lesion, in every panel
        ref = dock.layer_with_role("boxes")
        from napari_breastmri._napari._sections.findings import lesion_center_zyx

        dock.sections["Display"].move_cursor(ref.data_to_world(lesion_center_zyx(lesions[0])))
    _shot(viewer, app, out / "hanging-protocol.png")
    dock.sections["Display"].one_at_a_time()

    # 3. kinetics: SER colour map, a point in the lesion and a background region, FTV of a box
    _only(dock, "Kinetics")
    kin = dock.sections["Kinetics"]
    kin.show_map("SER colour map")
    _wait_all(app, dock)
    if lesions:
        les = lesions[0]
        z0, y0, x0, z1, y1, x1 = les.bbox
        zc = (z0 + z1) // 2
        kin.pick_points()
        centre = np.array(les.centroid_zyx if les.centroid_zyx else [zc, (y0 + y1) / 2, (x0 + x1) / 2])
        dock.layer_with_role("kinetic_points").add(np.round(centre)[None])
        kin.draw_regions()
        regions = dock.layer_with_role("kinetic_regions")
        ny, nx = case.study.shape[1:]
        fy, fx = int(ny * 0.4), int(nx * 0.17)  # the other breast: normal parenchyma
        regions.add_rectangles(
            np.array([[zc, fy, fx], [zc, fy, fx + 8], [zc, fy + 8, fx + 8], [zc, fy + 8, fx]], float)
        )
        regions.add_rectangles(
            np.array(
                [[zc, y0 - 3, x0 - 3], [zc, y0 - 3, x1 + 2], [zc, y1 + 2, x1 + 2], [zc, y1 + 2, x0 - 3]],
                float,
            )
        )
        kin.depth.setValue(max(1, (z1 - z0) // 2 + 1))
        regions.selected_data = set()
        regions.mode = "pan_zoom"
        dock.layer_with_role("kinetic_points").mode = "pan_zoom"
        kin.ftv_of_box()
        dock.sections["Findings"].go_to(les)
    _shot(viewer, app, out / "kinetics.png")
    dock.remove_roles("kinetic_points", "kinetic_regions", "kinetic_map")

    # 4. explain
    _only(dock, "Explain")
    ex = dock.sections["Explain"]
    if findings.models:
        runs = [ex.model.itemData(i) for i in range(ex.model.count())]
        pick = next((i for i, r in enumerate(runs) if r.task in ("segment", "detect")), 0)
        ex.model.setCurrentIndex(pick)
        jobs = ex.run()
        for job in jobs:
            _wait(app, job)
        for followup in list(ex.followups):  # the slow faithfulness checks, so the shot shows them
            _wait(app, followup)
        if lesions:
            dock.sections["Findings"].go_to(lesions[0])
        for layer in dock.layers_with_role("boxes"):
            layer.visible = False
    _shot(viewer, app, out / "explain.png")
    if findings.models:  # 4b. two methods side by side, each over the phase in view
        ex.method.setCurrentText("gradcam")
        ex.method2.setCurrentText("hirescam")
        for layer in dock.layers_with_role("heatmap"):
            viewer.layers.remove(layer)
        dock.state.findings.heatmaps.clear()
        jobs = ex.run()
        for job in jobs:
            _wait(app, job)
        _shot(viewer, app, out / "explain-compare.png")
        ex.method2.setCurrentText("(none)")
        dock.sections["Display"].one_at_a_time()

    # 5. corrections: one accepted, one rejected (if two), a drawn box being added
    _only(dock, "Findings", "Corrections")
    for layer in dock.layers_with_role("heatmap"):
        layer.visible = False
    corr = dock.sections["Corrections"]
    import os
    import tempfile

    os.environ["BREASTMRI_ANNOTATIONS_DIR"] = tempfile.mkdtemp(prefix="breastmri-shots-")
    corr.start()
    if lesions:
        dock.sections["Findings"].select_index(0)
        corr.accept()
        if len(findings.lesions) > 1:
            dock.sections["Findings"].select_index(1)
            corr.reject()
        dock.sections["Findings"].select_index(0)
    corr.edit_boxes()
    _shot(viewer, app, out / "corrections.png")
    corr.close_session()

    # 6. teaching: patient data hidden, side by side, guess first
    _only(dock, "Teaching", "Predictions")
    teach = dock.sections["Teaching"]
    teach.toggle.setChecked(True)
    _wait_all(app, dock)  # the heatmap and curve-type panels come from workers
    teach.target.setCurrentText("subtype")
    _shot(viewer, app, out / "teaching.png")
    teach.submit()
    _only(dock, "Teaching", "Predictions")
    _shot(viewer, app, out / "teaching-revealed.png")
    from napari_breastmri._napari import _worker

    _worker.stop_all()  # the dock's jobs end before the viewer does
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
