"""Toy networks and studies shared by the models/inference tests (plus a check of the toys themselves).

The toys have outputs we know: :class:`ThresholdNet` says "lesion" wherever the subtraction
channel exceeds 0.5, so a lesion painted into a study must come back at exactly that place.
They are saved as TorchScript packages (an allowed format) so no test module has to be importable
by the package's factory rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_breastmri.models.package import ModelPackage, save_package
from napari_breastmri.types import Study


class ThresholdNet(nn.Module):
    """Logit = gain * (channel 1 - 0.5): sigmoid > 0.5 exactly where the channel exceeds 0.5."""

    def __init__(self, gain: float = 20.0) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * (x[:, 1:2] - 0.5)


class MeanClassifier(nn.Module):
    """Two-class logits from the channel means, with dropout so MC dropout has something to do."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.drop = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.drop(x.mean(dim=(2, 3, 4)) * 10.0)
        return torch.stack([m[:, 0], m[:, 1]], dim=1)


class OOMNet(nn.Module):
    """Raises CUDA's out-of-memory error when given more than ``max_batch`` windows at once."""

    def __init__(self, max_batch: int = 1) -> None:
        super().__init__()
        self.max_batch = max_batch
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(int(x.shape[0]))
        if x.shape[0] > self.max_batch:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return 20.0 * (x[:, 1:2] - 0.5)


def seg_card(**inputs: Any) -> dict[str, Any]:
    base = {
        "channels": ["pre", "sub1"],
        "patch_size": [8, 32, 32],
        "normalisation": {"method": "none"},
    }
    base.update(inputs)
    return {
        "name": "toy-seg",
        "version": "1.0",
        "task": "segment",
        "target": "lesion",
        "demo": True,
        "network": {"factory": "torchscript"},
        "inputs": base,
        "outputs": {"classes": ["lesion"], "activation": "sigmoid", "threshold": 0.5},
    }


def cls_card(method: str = "mc_dropout", passes: int = 20) -> dict[str, Any]:
    return {
        "name": "toy-cls",
        "version": "1.0",
        "task": "classify",
        "target": "pcr",
        "network": {"factory": "torchscript"},
        "inputs": {
            "channels": ["pre", "sub1"],
            "resize_to": [8, 16, 16],
            "normalisation": {"method": "none"},
        },
        "outputs": {"classes": ["no_pcr", "pcr"], "display_names": {"pcr": "pCR"}},
        "uncertainty": {"method": method, "passes": passes},
    }


def threshold_package(tmp: Path, **inputs: Any) -> ModelPackage:
    return save_package(tmp / "toy-seg", seg_card(**inputs), ThresholdNet(), fmt="torchscript")


def blob_study(
    affine: np.ndarray | None = None,
    shape: tuple[int, int, int] = (20, 48, 48),
    boxes: tuple[tuple[int, ...], ...] = ((5, 10, 30, 9, 20, 40), (12, 30, 6, 16, 40, 14)),
) -> tuple[Study, np.ndarray]:
    """A 2-phase study whose post1 - pre is 1 inside ``boxes`` and 0 elsewhere; returns (study, truth labels)."""
    data = np.zeros((2, *shape), np.float32)
    data[0] = 0.2
    labels = np.zeros(shape, np.int32)
    for i, (z0, y0, x0, z1, y1, x1) in enumerate(boxes, start=1):
        labels[z0:z1, y0:y1, x0:x1] = i
    data[1] = data[0] + (labels > 0)
    if affine is None:
        affine = np.diag([3.0, 0.8, 0.8, 1.0])
    return Study(data, affine, [0.0, 60.0], ["pre", "post1"]), labels


def test_threshold_net_is_what_the_tests_assume() -> None:
    x = torch.tensor([0.0, 0.4, 0.6, 1.0]).reshape(1, 1, 1, 1, 4).repeat(1, 2, 1, 1, 1)
    p = torch.sigmoid(ThresholdNet()(x))[0, 0, 0, 0]
    assert (p > 0.5).tolist() == [False, False, True, True]
