"""`breastmri explain` end to end: a real (small, untrained) package on disk, a small phantom case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from napari_breastmri.models.networks import CaseClassifier
    from napari_breastmri.models.package import save_package
    from napari_breastmri.training.tasks import get_task

    card = get_task("subtype").card()
    card["network"]["factory"] = "napari_breastmri.models.networks.CaseClassifier"
    card["network"]["kwargs"].pop("pooling", None)  # an attention-classifier option
    card["network"]["kwargs"].update(features=[4, 4, 8, 8])
    card["inputs"]["resize_to"] = [16, 32, 32]
    card["inputs"].pop("roi")  # a whole-study model: these tests are about the CLI's plumbing
    card["cam"] = {"target_layer": "block4"}
    card["uncertainty"] = {"method": "none", "passes": 1}
    torch.manual_seed(0)
    net = CaseClassifier(in_channels=3, out_channels=4, features=[4, 4, 8, 8]).eval()
    out = tmp_path_factory.mktemp("pkg") / "tiny-subtype"
    save_package(out, card, net)
    return out


@pytest.mark.slow
def test_explain_cli_writes_heatmaps_json_and_figures(
    tmp_path: Path, package: Path, monkeypatch: pytest.MonkeyPatch
):
    from napari_breastmri import cli
    from napari_breastmri.explain import cli as explain_cli
    from napari_breastmri.io.nifti import load_volume
    from napari_breastmri.phantom import generate_case

    case = generate_case(3, shape=(16, 64, 64), spacing=(3.0, 1.6, 1.6), cancer=True)
    monkeypatch.setattr(explain_cli, "_load", lambda args: (case.study, np.asarray(case.label_mask)))
    out = tmp_path / "out"
    argv = ["explain", "case", "--out", str(out), "--model", str(package), "--method", "gradcam", "layercam"]
    assert cli.main([*argv, "--scores", "fast", "--figures", "--device", "cpu"]) == 0
    doc = json.loads((out / "explain.json").read_text())
    assert [h["method"] for h in doc["heatmaps"]] == ["gradcam", "layercam"]
    for entry in doc["heatmaps"]:
        assert (
            entry["layer"] == "block4"
            and entry["model"].startswith("demo-subtype@")
            and entry["demo"] is True
        )
        assert set(entry["phase_attribution"]) == {"pre", "sub1", "sub_last"}
        assert "pointing_hit" in entry["scores"] and "lesion" in entry["kinetics_share"]
        assert entry["reading"].endswith(".") and entry["target"].startswith("subtype=")
        vol, affine = load_volume(out / entry["file"])
        assert vol.shape == case.study.shape and vol.min() >= 0.0 and vol.max() <= 1.0
        np.testing.assert_allclose(affine, case.study.affine, atol=1e-4)
        assert (out / entry["file"].replace(".nii.gz", ".png")).stat().st_size > 1000


def test_explain_cli_rejects_an_unknown_layer(
    tmp_path: Path, package: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    from napari_breastmri import cli
    from napari_breastmri.explain import cli as explain_cli
    from napari_breastmri.phantom import generate_case

    case = generate_case(4, shape=(16, 64, 64), spacing=(3.0, 1.6, 1.6))
    monkeypatch.setattr(explain_cli, "_load", lambda args: (case.study, None))
    argv = [
        "explain",
        "case",
        "--out",
        str(tmp_path),
        "--model",
        str(package),
        "--layer",
        "nope",
        "--scores",
        "none",
    ]
    assert cli.main([*argv, "--device", "cpu"]) == 2
    assert "no layer named 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_region_model_gets_its_lesion_from_the_shipped_detector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    """Asked to explain only a model that reads the index lesion's region, the CLI runs a shipped
    lesion detector first (and says so) instead of failing for want of a lesion."""
    from napari_breastmri import cli
    from napari_breastmri.explain import cli as explain_cli
    from napari_breastmri.models import registry
    from napari_breastmri.phantom import generate_case

    if not any(i.name == "demo-lesion-seg" for i in registry.shipped()):
        pytest.skip("no shipped demo-lesion-seg")
    case = generate_case(11, shape=(32, 128, 128), spacing=(3.0, 1.6, 1.6), cancer=True)
    monkeypatch.setattr(explain_cli, "_load", lambda args: (case.study, np.asarray(case.label_mask)))
    argv = ["explain", "case", "--out", str(tmp_path), "--model", "demo-subtype", "--scores", "none"]
    assert cli.main([*argv, "--device", "cpu"]) == 0
    assert "demo-lesion-seg" in capsys.readouterr().err
    doc = json.loads((tmp_path / "explain.json").read_text())
    assert [h["model"].split("@")[0] for h in doc["heatmaps"]] == ["demo-subtype"]  # only what was asked
    assert doc["heatmaps"][0]["layer"] == "block3"
