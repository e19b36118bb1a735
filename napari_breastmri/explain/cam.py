"""CAM heatmaps for 3D (and 2D) networks: the contract every explanation in the project follows.

``compute_cam(model, x, target, method, target_layer) -> np.ndarray`` takes a model, its input
on the model grid ((C, z, y, x), or with a batch axis), a target and a layer, and returns the map
on the *input grid*, scaled to [0, 1], with its forward hook removed whatever happens (DESIGN.md
rule 7, pytorch-grad-cam's BaseCAM contract).

Methods: ``gradcam``, ``gradcam++``, ``hirescam``, ``layercam``, ``xgradcam`` (pytorch-grad-cam's
weight formulas, which are N-D correct), ``eigencam`` and ``scorecam`` (our N-D versions: the
installed pytorch-grad-cam 1.5.7 builds an N x N matrix for Eigen-CAM and is 2D-only for
Score-CAM), all upsampled by our half-pixel N-D interpolation (the library's 3D zoom is
corner-aligned and shifts the map). See :mod:`napari_breastmri.explain._torch_ndcam`.

Targets: ``ClassTarget(index)`` (a case-level class), ``RegionTarget(channel, mask)`` (a segmented
lesion: the sum of its logit inside the mask, on the output grid), ``BoxTarget(box, input_shape)``
(a detected box). An ``int`` target is a class index; ``None`` is the classifier's top class.

Torch is imported only when a function here is first used (``import napari_breastmri`` stays cheap).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: the CAM methods, in the order the viewer lists them
METHODS = ("gradcam", "gradcam++", "hirescam", "layercam", "xgradcam", "eigencam", "scorecam")
#: non-CAM references (see :mod:`napari_breastmri.explain.attribution`)
REFERENCES = ("occlusion", "integrated_gradients")

_LAZY = {"ClassTarget", "RegionTarget", "BoxTarget", "find_layer", "box_mask"}


def compute_cam(
    model: Any,
    x: Any,
    target: Any = None,
    method: str = "gradcam",
    target_layer: Any = None,
    *,
    spatial_dims: int = 3,
    max_channels: int | None = 32,
) -> np.ndarray:
    """A CAM of ``model`` for ``target`` at ``target_layer`` on the grid of ``x``, in [0, 1].

    ``x`` is (C, *spatial) or (B, C, *spatial) with ``spatial_dims`` spatial axes (tensor or
    array). ``target_layer`` is a dotted module name or a module; None takes the last convolution.
    ``max_channels`` caps how many channels Score-CAM scores (one forward pass each). Occlusion
    and integrated gradients are accepted as ``method`` too, as non-CAM references.
    """
    if method in REFERENCES:
        from .attribution import reference_map

        return reference_map(model, x, target, method, spatial_dims=spatial_dims)
    from ._torch_cam import compute_cam as _compute

    return _compute(
        model, x, target, method, target_layer, spatial_dims=spatial_dims, max_channels=max_channels
    )


def display_name(method: str) -> str:
    """The name a person reads ("Grad-CAM++" for "gradcam++")."""
    names = {
        "gradcam": "Grad-CAM",
        "gradcam++": "Grad-CAM++",
        "hirescam": "HiResCAM",
        "layercam": "LayerCAM",
        "xgradcam": "XGrad-CAM",
        "eigencam": "Eigen-CAM",
        "scorecam": "Score-CAM",
        "occlusion": "occlusion",
        "integrated_gradients": "integrated gradients",
        "random": "random map",
    }
    return names.get(method, method)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import _torch_cam

        return getattr(_torch_cam, name)
    raise AttributeError(name)
