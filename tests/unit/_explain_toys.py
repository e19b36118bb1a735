"""Tiny 3D networks trained in seconds on toy volumes with a bright blob, for the explain tests.

The signal is a blob that shows in the post-contrast channel (and the subtraction) but not in the
pre-contrast one, so a faithful heatmap must land on the blob and the per-phase attribution must
favour the post/sub channels. Nothing here is a test; the test_explain_* modules import it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

SHAPE = (12, 24, 24)
CHANNELS = ["pre", "post1", "sub1"]


def blob_volume(
    rng: np.random.Generator, present: bool, shape=SHAPE, radius: float = 3.0, baseline: float = 0.0
):
    """(3, z, y, x) toy input and the blob's (centre, mask); the blob enhances after contrast.

    ``baseline`` is added to the pre and post channels (tissue signal, which kinetics needs
    positive); the toy networks subtract each channel's mean first, so it does not disturb them.
    """
    pre = baseline + rng.normal(0.0, 0.3, shape).astype(np.float32)
    post = pre + rng.normal(0.0, 0.3, shape).astype(np.float32)
    centre = np.array([rng.integers(r, s - r) for s, r in zip(shape, (4, 6, 6))], dtype=float)
    zz, yy, xx = np.indices(shape)
    dist2 = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2
    mask = dist2 <= radius**2
    if present:
        post = post + 2.5 * np.exp(-dist2 / (2 * (radius * 0.8) ** 2)).astype(np.float32)
    return np.stack([pre, post, post - pre]), centre, mask


class TinyClassifier(nn.Module):
    """conv-pool-conv-pool-conv-GAP-linear; ``features.7`` (the last ReLU) is the CAM layer (3 x 6 x 6 grid)."""

    def __init__(self, in_channels: int = 3, n_classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(in_channels, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool3d(2),
            nn.Conv3d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool3d(2),
            nn.Conv3d(16, 16, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(dim=(2, 3, 4), keepdim=True)
        return self.head(self.features(x).mean(dim=(2, 3, 4)))


class TinySegmenter(nn.Module):
    """strided conv-conv-conv+relu (``mid``, the CAM layer, half resolution)-upsample-conv: one lesion logit per voxel."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.enc = nn.Sequential(
            nn.Conv3d(in_channels, 8, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.Conv3d(8, 8, 3, padding=1),
            nn.ReLU(),
        )
        self.mid = nn.Sequential(nn.Conv3d(8, 16, 3, padding=1), nn.ReLU())
        self.dec = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="trilinear"), nn.Conv3d(16, 1, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(dim=(2, 3, 4), keepdim=True)
        return self.dec(self.mid(self.enc(x)))


def _batch(rng: np.random.Generator, n: int):
    xs, ys, masks = [], [], []
    for _ in range(n):
        present = bool(rng.integers(0, 2))
        x, _, mask = blob_volume(rng, present)
        xs.append(x)
        ys.append(int(present))
        masks.append(mask & present)
    return (
        torch.tensor(np.stack(xs)),
        torch.tensor(ys),
        torch.tensor(np.stack(masks)[:, None], dtype=torch.float32),
    )


@lru_cache(maxsize=1)
def trained_classifier(steps: int = 40, seed: int = 0) -> TinyClassifier:
    """The toy classifier after ``steps`` Adam steps (about a second on two idle cores)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = TinyClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(steps):
        x, y, _ = _batch(rng, 6)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@lru_cache(maxsize=1)
def trained_segmenter(steps: int = 40, seed: int = 1) -> TinySegmenter:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = TinySegmenter()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        x, _, m = _batch(rng, 2)
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), m, pos_weight=torch.tensor(20.0))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def all_hooks(model: nn.Module) -> int:
    """How many hooks of any kind any module of ``model`` still carries."""
    names = (
        "_forward_hooks",
        "_forward_pre_hooks",
        "_backward_hooks",
        "_backward_pre_hooks",
        "_state_dict_hooks",
    )
    return sum(len(getattr(m, n, {})) for m in model.modules() for n in names)
