"""``training.remeasure`` end to end on six small phantom cases and an untrained package."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("task", ["screening", "pcr_pair"])
def test_remeasure_refits_only_the_temperature_and_says_so(tmp_path, task: str) -> None:
    """Also for the pair model, whose cases need their follow-up exam (it was measured without)."""
    pytest.importorskip("torch")
    import argparse

    import torch

    from napari_breastmri.models.package import load_package, save_package
    from napari_breastmri.training.loops import build_network
    from napari_breastmri.training.remeasure import remeasure
    from napari_breastmri.training.tasks import get_task

    spec = get_task(task)
    torch.manual_seed(0)
    net = build_network(spec)
    save_package(tmp_path / "pkg", spec.card(), net)
    args = argparse.Namespace(
        package=str(tmp_path / "pkg"), task=task, seed=3, val_cases=3, test_cases=3,
        cache=str(tmp_path / "cache"), workers=1, out=str(tmp_path / "out"),
    )  # fmt: skip
    out = remeasure(args)
    lo, hi = out["ece_bootstrap_95"]
    assert 0.0 <= lo <= hi <= 1.0
    assert lo - 1e-4 <= out["metrics"]["ece"] <= hi + 1e-4  # the card rounds to 4 places
    pkg = load_package(tmp_path / "out")
    assert "remeasure" in pkg.card.training["evaluation_note"]
    assert pkg.card.metrics["probabilities"].startswith("mean of 20 MC-dropout passes")
    before, after = net.state_dict(), pkg.build("cpu").state_dict()
    assert float(after["temperature"]) == pytest.approx(pkg.card.metrics["temperature"], abs=1e-4)
    for key, value in before.items():
        if key != "temperature":
            assert torch.equal(value, after[key]), key
