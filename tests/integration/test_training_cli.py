"""A tiny ``breastmri train`` run writes a package that the models code loads, verifies and runs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_training_data import write_nnunet

from napari_breastmri.cli import main
from napari_breastmri.types import DEMO_LABEL


def _check_package(folder: Path, task: str, n_channels: int):
    import torch

    from napari_breastmri.models.package import load_package

    pkg = load_package(folder)
    card = pkg.card
    assert card.task == task and card.demo is True
    assert DEMO_LABEL in card.intended_use
    assert card.training["command"].startswith("breastmri train")
    assert card.training["seconds"] > 0
    assert card.cam.target_layer
    pkg.verify()
    net = pkg.build("cpu")
    dict(net.named_modules())[card.cam.target_layer]  # the CAM layer exists
    x = torch.zeros(1, n_channels, 16, 32, 32)
    with torch.inference_mode():
        assert torch.isfinite(net(x)).all()
    return pkg


@pytest.mark.slow
def test_train_segmentation_on_a_nnunet_folder(tmp_path: Path) -> None:
    write_nnunet(tmp_path / "ds", n=4)
    rc = main(["train", "--task", "seg", "--data", str(tmp_path / "ds"), "--epochs", "2", "--seed", "3",
               "--out", str(tmp_path / "out"), "--threads", "1"])  # fmt: skip
    assert rc == 0
    pkg = _check_package(tmp_path / "out" / "demo-lesion-seg", "segment", 3)
    m = pkg.card.metrics
    assert m["held_out_cases"] == 1 and m["truth_lesions"] == 1
    assert 0.0 <= m["lesion_sensitivity_at_card_threshold"] <= 1.0
    assert "--data" in pkg.card.training["command"]


@pytest.mark.slow
def test_train_classifier_on_the_phantom_and_fine_tune(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["train", "--task", "subtype", "--cases", "6", "--val-cases", "4", "--test-cases", "4", "--epochs", "1",
            "--phantom-shape", "16", "64", "64", "--held-out-grid", "same", "--cache", str(tmp_path / "cache"),
            "--threads", "1"]  # fmt: skip
    assert main([*args, "--out", str(out)]) == 0
    pkg = _check_package(out / "demo-subtype", "classify", 3)
    m = pkg.card.metrics
    assert m["held_out_cases"] <= 4 and "ece" in m and m["temperature"] > 0
    assert "900000000" in pkg.card.training["data"]  # held-out seeds are recorded
    # the cache is reused, and --init fine-tunes from the package just written
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 14
    assert (
        main(
            [
                *args,
                "--epochs",
                "3",
                "--init",
                str(out / "demo-subtype"),
                "--name",
                "tuned",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    tuned = _check_package(out / "tuned", "classify", 3)
    # the starting weights are named by their hash, not only by a path that may be overwritten
    assert tuned.card.training["init"] == (
        f"demo-subtype {pkg.card.version} (weights sha256 {pkg.card.weights.sha256}) from {out / 'demo-subtype'}"
    )
    a = dict(pkg.build("cpu").state_dict())
    b = dict(tuned.build("cpu").state_dict())
    assert any(not np.allclose(a[k].numpy(), b[k].numpy()) for k in a)
