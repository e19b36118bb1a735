"""Sliding-window inference that yields between batches (so it can show progress and be cancelled).

The windows, their overlap, the padding and the Gaussian importance map follow MONAI's
``dense_patch_slices`` and ``compute_importance_map`` rule for rule, and the blending is MONAI's
(weighted sum of the network's raw outputs divided by the summed weights), so the result equals
``monai.inferers.sliding_window_inference(..., mode="gaussian")`` on the same input; the tests
check that against MONAI itself. What we add is the loop as a generator: a Progress after every
batch of windows and a ``should_cancel()`` check there, which a single MONAI call cannot give.
The two helpers are re-stated here (30 lines) rather than imported because importing
``monai.data`` costs seconds of CPU at start-up, a large share of a one-case ``analyze``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import Cancelled
from ..types import Progress

if TYPE_CHECKING:
    import torch


def scan_interval(image_size: Sequence[int], roi: Sequence[int], overlap: float) -> tuple[int, ...]:
    """MONAI's rule: step = int(roi * (1 - overlap)), at least 1; a full-size axis steps by roi."""
    out = []
    for size, r in zip(image_size, roi):
        out.append(int(r) if size == r else max(1, int(r * (1 - overlap))))
    return tuple(out)


def window_slices(
    image_size: Sequence[int], roi: Sequence[int], interval: Sequence[int]
) -> list[tuple[slice, ...]]:
    """MONAI's ``dense_patch_slices``: a regular grid of starts, the last one pulled back inside."""
    import itertools
    import math

    starts = []
    for size, r, step in zip(image_size, roi, interval):
        num = int(math.ceil(float(size) / step)) if step else 1
        count = next((d + 1 for d in range(num) if d * step + r >= size), 1)
        starts.append([i * step - max(i * step + r - size, 0) for i in range(count)])
    return [tuple(slice(s, s + r) for s, r in zip(combo, roi)) for combo in itertools.product(*starts)]


def gaussian_importance(roi: Sequence[int], sigma_scale: float = 0.125, device: Any = "cpu") -> torch.Tensor:
    """MONAI's ``compute_importance_map(mode="gaussian")``: separable Gaussian, clamped at >= 1e-3."""
    import torch

    weight: torch.Tensor | None = None
    for i, r in enumerate(roi):
        x = torch.arange(-(r - 1) / 2.0, (r - 1) / 2.0 + 1, dtype=torch.float, device=device)
        g = torch.exp(x**2 / (-2 * (r * sigma_scale) ** 2))
        weight = g if weight is None else weight.unsqueeze(-1) * g[(None,) * i]
    assert weight is not None
    return torch.clamp(weight, min=max(float(weight.min()), 1e-3))


def sliding_window(
    net: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    roi_size: Sequence[int],
    *,
    overlap: float = 0.5,
    batch_size: int = 4,
    device: torch.device | None = None,
    sigma_scale: float = 0.125,
    should_cancel: Callable[[], bool] | None = None,
    step: str = "segment",
) -> Generator[Progress, None, torch.Tensor]:
    """Blend ``net`` over (C, z, y, x) ``image`` in windows; return (K, z, y, x) float32 on the CPU.

    Call it inside ``device.inference(device)``. Raises :class:`~napari_breastmri.errors.Cancelled`
    between batches when ``should_cancel()`` is true.
    """
    import torch
    import torch.nn.functional as F

    device = device or image.device
    roi = tuple(int(r) for r in roi_size)
    spatial = tuple(int(s) for s in image.shape[1:])
    # pad (symmetrically, zeros) where the image is smaller than the window, as MONAI does
    pad: list[int] = []
    for k in range(len(spatial) - 1, -1, -1):
        diff = max(roi[k] - spatial[k], 0)
        pad.extend([diff // 2, diff - diff // 2])
    x = F.pad(image[None], pad) if any(pad) else image[None]
    size = tuple(int(s) for s in x.shape[2:])
    slices = window_slices(size, roi, scan_interval(size, roi, overlap))
    weight = gaussian_importance(roi, sigma_scale, device).to(dtype=torch.float32)[None, None]
    out: torch.Tensor | None = None
    count = torch.zeros((1, 1, *size), dtype=torch.float32, device=device)
    n = len(slices)
    for start in range(0, n, batch_size):
        if should_cancel is not None and should_cancel():
            raise Cancelled("Inference was cancelled; no findings were kept.")
        chunk = slices[start : start + batch_size]
        batch = torch.cat([x[(slice(None), slice(None), *s)] for s in chunk]).to(device)
        pred = net(batch).float()
        if out is None:
            out = torch.zeros((1, pred.shape[1], *size), dtype=torch.float32, device=device)
        for i, s in enumerate(chunk):
            idx = (slice(None), slice(None), *s)
            out[idx] += pred[i : i + 1] * weight
            count[idx] += weight
        done = min(start + batch_size, n)
        yield Progress(
            step, done / n, f"window {done}/{n} on {device.type if hasattr(device, 'type') else device}"
        )
    assert out is not None
    out = out / count
    # crop the padding away
    crop = tuple(
        slice(pad[2 * (len(spatial) - 1 - k)], pad[2 * (len(spatial) - 1 - k)] + spatial[k])
        for k in range(len(spatial))
    )
    return out[(0, slice(None), *crop)].cpu()
