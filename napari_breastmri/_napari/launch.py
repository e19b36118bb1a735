"""``breastmri view [CASE] [--demo]``: napari with the reading-station dock, on a case.

The case loads in the dock's worker, so the window appears at once and the first image follows
(the figure the viewer benchmark measures). ``--demo`` opens the embedded phantom case (synthetic
demo - not for clinical use) and, with ``--run``, runs the shipped demo models on it.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("case", nargs="?", help="DICOM folder, NIfTI file(s) or case folder to open")
    parser.add_argument("--demo", action="store_true", help="open the embedded synthetic phantom case")
    parser.add_argument(
        "--run", action="store_true", help="run the ticked (demo) models once the case is open"
    )
    parser.add_argument("--hide-phi", action="store_true", help="hide patient data from the start")
    parser.add_argument(
        "--teaching", action="store_true", help="start in teaching mode (patient data hidden)"
    )


def open_viewer(
    case: str | None = None,
    *,
    demo: bool = False,
    run: bool = False,
    hide_phi: bool = False,
    teaching: bool = False,
    show: bool = True,
):
    """Create the viewer and dock, start loading; returns (viewer, dock)."""
    from ._compat import preload_before_viewer

    preload_before_viewer()  # torch/torchvision before any OpenGL context: see _compat
    import napari

    from ._widget import BreastMRIWidget

    viewer = napari.Viewer(title="Breast DCE-MRI", show=show)
    dock = BreastMRIWidget(viewer)
    viewer.window.add_dock_widget(dock, area="right", name="Breast DCE-MRI")
    if hide_phi:
        dock.state.set_hide_phi(True)
    if teaching and "Teaching" in dock.sections:
        dock.sections["Teaching"].toggle.setChecked(True)
    if run:
        dock.state.study_changed.connect(lambda *_: dock.sections["Models"].run())
    if demo:
        dock.sections["Study"].open_demo()
    elif case:
        dock.sections["Study"].open_source(case)
    return viewer, dock


def run(args: argparse.Namespace) -> int:
    import napari

    open_viewer(args.case, demo=args.demo, run=args.run, hide_phi=args.hide_phi, teaching=args.teaching)
    napari.run()
    return 0
