"""Which phase the evidence came from, and two non-CAM reference maps (Captum).

Per-phase attribution answers "did the model look at the subtraction, the pre-contrast or a late
phase?" with one share per input channel (they sum to 1):

* ``gradxinput``: the absolute gradient x input summed over each channel's voxels (one backward
  pass; zero is the reference input, which after the card's normalisation is the mean signal);
* ``occlusion``: the drop of the target's score when one channel is replaced by its own mean
  (one forward pass per channel; only drops count, a channel whose removal raises the score gets 0).

Occlusion maps and integrated gradients are the references CAMs are compared with: they look at
the input rather than at one layer, at the price of many forward passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

PHASE_METHODS = ("gradxinput", "occlusion")


def _prepare(model: Any, x: Any, target: Any, spatial_dims: int):
    import torch

    from ._torch_cam import as_target

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
    batched = x.ndim == spatial_dims + 2
    x = (x if batched else x[None]).to(device).detach().clone()
    if target is None or isinstance(target, (int, np.integer)):
        with torch.no_grad():
            target = as_target(target, model(x))
    return x, target, batched


def phase_attribution(
    model: Any,
    x: Any,
    target: Any,
    channel_names: Sequence[str],
    method: str = "gradxinput",
    spatial_dims: int = 3,
) -> dict[str, float]:
    """The share of the evidence for ``target`` from each input channel, summing to 1."""
    import torch

    from ._torch_cam import eval_mode

    if method not in PHASE_METHODS:
        raise ValueError(f"unknown phase attribution {method!r}; choose one of {', '.join(PHASE_METHODS)}.")
    with eval_mode(model):
        x, target, _ = _prepare(model, x, target, spatial_dims)
        if x.shape[1] != len(channel_names):
            raise ValueError(f"{len(channel_names)} channel names for an input with {x.shape[1]} channels")
        if method == "gradxinput":
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad(target(model(x)).sum(), x)
            evidence = (grad * x).abs().detach().flatten(2).sum(dim=2).sum(dim=0)
        else:
            with torch.no_grad():
                base = float(target(model(x)).sum())
                drops = []
                for c in range(x.shape[1]):
                    occluded = x.clone()
                    occluded[:, c] = x[:, c].mean()
                    drops.append(max(0.0, base - float(target(model(occluded)).sum())))
            evidence = torch.tensor(drops)
    evidence = evidence.double().cpu().numpy()
    total = float(evidence.sum())
    if total <= 0:
        return {name: 0.0 for name in channel_names}
    return {name: float(v / total) for name, v in zip(channel_names, evidence)}


def reference_map(
    model: Any,
    x: Any,
    target: Any,
    method: str = "occlusion",
    spatial_dims: int = 3,
    window_fraction: float = 0.25,
    max_windows: int = 125,
    ig_steps: int = 16,
) -> np.ndarray:
    """An occlusion or integrated-gradients map on the input grid, positive evidence, in [0, 1].

    Occlusion slides a box of ``window_fraction`` of each axis (all channels at once, replaced by
    each channel's mean) with a stride chosen so at most about ``max_windows`` positions are tried.
    Integrated gradients integrates from a zero input in ``ig_steps`` steps. Channels are summed.
    """
    import torch
    from captum.attr import IntegratedGradients, Occlusion

    from ._torch_cam import eval_mode
    from ._torch_ndcam import normalise

    with eval_mode(model):
        x, target, batched = _prepare(model, x, target, spatial_dims)

        def forward(inp: torch.Tensor) -> torch.Tensor:
            return target(model(inp))

        if method == "integrated_gradients":
            attr = IntegratedGradients(forward).attribute(
                x, baselines=torch.zeros_like(x), n_steps=ig_steps, internal_batch_size=max(1, ig_steps // 2)
            )
        elif method == "occlusion":
            spatial = x.shape[2:]
            window = [max(1, int(round(s * window_fraction))) for s in spatial]
            per_axis = max(2, int(round(max_windows ** (1.0 / len(spatial)))))
            stride = [
                max(1, int(np.ceil((s - w) / (per_axis - 1)))) if s > w else 1
                for s, w in zip(spatial, window)
            ]
            baseline = x.mean(dim=tuple(range(2, x.ndim)), keepdim=True).expand_as(x).contiguous()
            attr = Occlusion(forward).attribute(
                x,
                sliding_window_shapes=(x.shape[1], *window),
                strides=(x.shape[1], *stride),
                baselines=baseline,
                perturbations_per_eval=8,
            )
        else:
            raise ValueError(
                f"unknown reference method {method!r}; choose occlusion or integrated_gradients."
            )
    heat = np.maximum(attr.detach().float().sum(dim=1).cpu().numpy(), 0)
    out = normalise(heat)
    return out if batched else out[0]
