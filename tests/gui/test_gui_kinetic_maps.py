"""The study's kinetic maps: computed once, in a worker, shared by the Kinetics map chooser, the
hanging protocol and the teaching panel, and kept to the breasts where they are colour-coded."""

from __future__ import annotations

import numpy as np
import pytest

from napari_breastmri._napari._kinetic_maps import compute_maps, map_values
from tests.gui.cases import tiny_case, wait_for_jobs

pytestmark = pytest.mark.gui


def test_one_job_serves_every_request_and_a_new_study_drops_it(dock, qtbot):
    viewer, widget = dock
    study, mask, truth = tiny_case()
    widget.set_study(study, truth=truth, truth_mask=mask)
    got: list[str] = []
    first = widget.kinetic_maps.request(study, lambda maps: got.append("a"))
    second = widget.kinetic_maps.request(study, lambda maps: got.append("b"))
    assert first is second is not None and got == [], "one job, nothing delivered on the UI thread yet"
    wait_for_jobs(qtbot, widget)
    assert got == ["a", "b"]
    assert widget.kinetic_maps.request(study, lambda maps: got.append("c")) is None and got[-1] == "c"
    # a request for a study that is replaced before its maps arrive is dropped, not delivered late
    other, _, _ = tiny_case(seed=3)
    widget.set_study(other)
    late: list[str] = []
    widget.kinetic_maps.request(other, lambda maps: late.append("old"))
    widget.set_study(study, truth=truth, truth_mask=mask)
    wait_for_jobs(qtbot, widget)
    assert late == [] and widget.kinetic_maps.cached(study) is None


def test_protocol_panels_pe_and_ser_and_colours_in_the_breasts(dock, qtbot):
    """Each protocol map choice fills the fifth panel (PE and SER were silently missing: their
    keys were looked up in capitals), and the curve-type panel leaves the chest wall uncoloured."""
    from napari_breastmri.phantom import generate_case

    viewer, widget = dock
    case = generate_case(5, shape=(24, 128, 128))
    widget.set_study(case.study, truth=case.truth, truth_mask=case.label_mask)
    display = widget.sections["Display"]
    panels = {}
    for choice in ("curve type", "PE", "SER"):
        display.protocol_map.setCurrentText(choice)
        display.hanging_protocol()
        wait_for_jobs(qtbot, widget)
        (panels[choice],) = [
            lay for lay in widget.layers_with_role("protocol") if lay.metadata["breastmri"]["panel"] == choice
        ]
    maps = compute_maps(case.study)
    raw = {key: value for key, value in maps.items() if not key.startswith("shown:")}
    for kind in ("curve type", "SER colour map"):  # made in the worker, as map_values makes them
        np.testing.assert_array_equal(map_values(kind, maps), map_values(kind, raw))
        assert map_values(kind, maps) is maps["shown:" + kind]
    curve = np.asarray(panels["curve type"].data)
    wall = np.isin(case.tissue, (3, 4, 5))  # muscle, bone, lung (phantom.anatomy)
    assert ((maps["curve_type"] > 0) & wall).sum() > 50, "the chest wall enhances in this case"
    assert (curve[wall] > 0).mean() < 0.01
    lesion = case.label_mask > 0
    typed = lesion & (maps["curve_type"] > 0)
    assert (curve[typed] == maps["curve_type"][typed]).mean() > 0.98  # the lesion keeps its types
    # (at this reduced size a few voxels at the deep edge of this lesion fall behind the line)
    np.testing.assert_allclose(np.asarray(panels["PE"].data), maps["pe"])  # PE keeps every voxel
    ser = np.asarray(panels["SER"].data)
    assert (ser[wall] != 0).mean() < 0.01 and np.any(ser[lesion] > 0)


def test_map_values_keep_the_colour_maps_to_the_breasts():
    pe = np.full((2, 3, 4), 100.0, np.float32)
    maps = {
        "pe": pe,
        "ser": np.full_like(pe, 1.2),
        "curve_type": np.full(pe.shape, 3, np.int8),
        "washin": np.ones_like(pe),
        "breast": np.zeros(pe.shape, bool),
    }
    maps["breast"][:, :, :2] = True
    for kind in ("curve type", "SER colour map"):
        values = map_values(kind, maps)
        assert np.all(values[maps["breast"]] > 0) and np.all(values[~maps["breast"]] == 0), kind
    assert map_values("curve type", maps).dtype == np.int8
    np.testing.assert_array_equal(map_values("PE", maps), pe)
    no_region = {k: v for k, v in maps.items() if k != "breast"}
    assert np.all(map_values("curve type", no_region) == 3)  # no region known: every voxel


def test_protocol_panels_arrive_one_per_event_loop_turn(dock, qtbot):
    """napari takes about 0.2 s of UI time per layer it inserts: the protocol's ten layers come
    one panel (image + cursor) per turn, so the viewer paints and takes input in between."""
    viewer, widget = dock
    study, mask, truth = tiny_case()
    widget.set_study(study, truth=truth, truth_mask=mask)
    display = widget.sections["Display"]
    display.hanging_protocol()
    wait_for_jobs(qtbot, widget)  # the maps are known from here on
    display.hanging_protocol()  # laid out again: the first panel at once, the rest in turns
    assert len(widget.layers_with_role("protocol")) == 2 and widget.staging
    wait_for_jobs(qtbot, widget)
    layers = widget.layers_with_role("protocol")
    assert len(layers) == 10 and not widget.staging
    display.hanging_protocol()
    display.one_at_a_time()  # stops a layout in progress: nothing more is added
    wait_for_jobs(qtbot, widget)
    assert widget.layers_with_role("protocol") == [] and not viewer.canvas.grid.enabled
    assert viewer.layers.selection.active is widget.layers_with_role("phases")[0]


def test_a_study_without_usable_times_still_gets_its_other_panels(dock, qtbot):
    """Phase times that do not increase (a real-world DICOM variant) make kinetics impossible:
    the error is shown once, and the protocol and the teaching grid go on without the map."""
    import dataclasses

    viewer, widget = dock
    study, mask, truth = tiny_case()
    broken = dataclasses.replace(study, times=np.zeros(study.n_phases))
    widget.set_study(broken, truth=truth, truth_mask=mask)
    errors: list[str] = []
    widget.show_error = lambda exc: errors.append(str(exc))
    widget.sections["Display"].hanging_protocol()
    widget.sections["Kinetics"].show_map("PE")
    wait_for_jobs(qtbot, widget)
    assert len(errors) == 1 and "increase" in errors[0]
    panels = [lay.metadata["breastmri"]["panel"] for lay in widget.layers_with_role("protocol")]
    assert [p for p in panels if p != "cursor"] == ["pre", "post1", "sub1", "MIP"]
    assert "No kinetic maps" in widget.sections["Kinetics"].legend.text()
    widget.sections["Display"].one_at_a_time()
    widget.sections["Teaching"].toggle.setChecked(True)
    wait_for_jobs(qtbot, widget)
    assert {lay.metadata["breastmri"]["panel"] for lay in widget.layers_with_role("teaching")} == {"sub1"}
    assert "No kinetic map" in widget.sections["Teaching"].result.text()


def test_a_failing_step_ends_its_chain_and_is_shown(dock, qtbot):
    viewer, widget = dock
    errors: list[str] = []
    widget.show_error = lambda exc: errors.append(str(exc))
    done: list[int] = []

    def boom() -> None:
        raise ValueError("step 2 failed")

    widget.in_turns([lambda: done.append(1), boom, lambda: done.append(3)])
    qtbot.waitUntil(lambda: not widget.staging, timeout=5000)
    assert done == [1] and errors == ["step 2 failed"]
