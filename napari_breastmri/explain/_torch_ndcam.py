"""The N-D pieces of the CAM family that pytorch-grad-cam 1.5.7 gets wrong or leaves 2D-only.

What we checked in the installed ``pytorch_grad_cam`` source, for activations (B, C, D, H, W):

* the channel weights of Grad-CAM, Grad-CAM++, XGrad-CAM and the element-wise maps of HiResCAM
  and LayerCAM are computed over all spatial axes: right in 3D, so :mod:`._torch_cam` uses them;
* the upsampling is not: ``scale_cam_image`` uses ``cv2.resize`` (linear, half-pixel centres) in
  2D but ``scipy.ndimage.zoom`` (cubic spline, corner-aligned) in 3D, which shifts a 4 -> 32 map
  by up to 3.5 voxels towards the origin and overshoots below zero. :func:`upsample_cam` does in
  N-D what ``cv2.resize`` does in 2D (``F.interpolate``, ``align_corners=False``);
* Score-CAM upsamples with ``UpsamplingBilinear2d`` over the last two axes only (2D-only) and
  scores every channel; :func:`score_cam_weights` works in N-D and caps the channels scored;
* Eigen-CAM runs ``np.linalg.svd(full_matrices=True)`` on an (N voxels x C) matrix, which builds
  an N x N matrix (gigabytes for a 3D feature map), and leaves the sign of the projection to
  chance; :func:`eigen_projection` uses the thin SVD and the sign correction of Seg-Eigen-CAM.

Each function is tested against pytorch-grad-cam's own result on a 2D case that both support.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def normalise(cam: np.ndarray) -> np.ndarray:
    """Min-max scale each map of a batch (B, ...) to [0, 1], as pytorch-grad-cam does (eps 1e-7)."""
    cam = np.asarray(cam, dtype=np.float32)
    flat = cam.reshape(cam.shape[0], -1)
    lo = flat.min(axis=1).reshape((-1,) + (1,) * (cam.ndim - 1))
    cam = cam - lo
    hi = cam.reshape(cam.shape[0], -1).max(axis=1).reshape((-1,) + (1,) * (cam.ndim - 1))
    return (cam / (1e-7 + hi)).astype(np.float32)


def upsample_cam(cam: np.ndarray, size: Sequence[int], align_corners: bool = False) -> np.ndarray:
    """Resize a batch of maps (B, *spatial) to ``size`` with (bi/tri)linear interpolation.

    ``align_corners=False`` places feature voxel i at input position (i + 0.5) * scale - 0.5, the
    half-pixel convention of ``cv2.resize`` and of strided convolutions, so a heatmap lands where
    its feature voxel looks, in every dimension.
    """
    cam = np.asarray(cam, dtype=np.float32)
    spatial = cam.ndim - 1
    if tuple(cam.shape[1:]) == tuple(int(s) for s in size):
        return cam.copy()
    tensor = torch.from_numpy(np.ascontiguousarray(cam))[:, None]
    out = F.interpolate(
        tensor, size=tuple(int(s) for s in size), mode=_MODES[spatial], align_corners=align_corners
    )
    return out[:, 0].numpy()


def scale_to_input(cam: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """pytorch-grad-cam's ReLU -> normalise -> resize -> ReLU -> normalise, done right in N-D."""
    cam = normalise(np.maximum(cam, 0))
    cam = upsample_cam(cam, size)
    return normalise(np.maximum(cam, 0))


def eigen_projection(activations: np.ndarray, sign_correction: bool = True) -> np.ndarray:
    """Project each item's activations (B, C, *spatial) on their first principal component.

    Thin SVD (the first right-singular vector is the same as with ``full_matrices=True``, without
    the N x N matrix). With ``sign_correction`` the map is flipped so that its larger-magnitude
    extreme is positive (Seg-Eigen-CAM, eq. 13), otherwise a ReLU may keep only the background.
    """
    activations = np.nan_to_num(np.asarray(activations, dtype=np.float32))
    out = []
    for item in activations:
        flat = item.reshape(item.shape[0], -1).T
        flat = flat - flat.mean(axis=0)
        _, _, vt = np.linalg.svd(flat, full_matrices=False)
        projection = (flat @ vt[0]).reshape(item.shape[1:])
        if sign_correction and abs(projection.min()) > abs(projection.max()):
            projection = -projection
        out.append(projection)
    return np.asarray(out, dtype=np.float32)


def select_channels(activations: torch.Tensor, max_channels: int | None) -> torch.Tensor:
    """Indices of the channels Score-CAM scores: all, or the ``max_channels`` with the highest peak.

    Score-CAM costs one forward pass per channel; a 3D network's last block often has 64-256, so
    the most active channels carry the map and the rest get weight 0 (documented in the output).
    """
    n = activations.shape[1]
    if max_channels is None or max_channels >= n:
        return torch.arange(n)
    peaks = activations.flatten(2).amax(dim=2).amax(dim=0)
    return torch.topk(peaks, int(max_channels)).indices.sort().values


def score_cam_weights(
    model: torch.nn.Module,
    x: torch.Tensor,
    activations: torch.Tensor,
    score: Callable[[object], torch.Tensor],
    max_channels: int | None = 32,
    batch_size: int = 8,
    align_corners: bool = False,
) -> np.ndarray:
    """Score-CAM channel weights (B, C) in N-D: softmax over channels of the target's score.

    Each channel's activation map is upsampled to the input grid, min-max scaled to [0, 1], and
    multiplied into the input; the model's target score on that masked input is the channel's
    weight before the softmax (Wang et al. 2020, as in pytorch-grad-cam). ``score`` maps a model
    output to one score per batch item. Channels left out by ``max_channels`` get weight 0.
    """
    spatial = tuple(x.shape[2:])
    chosen = select_channels(activations, max_channels)
    weights = np.zeros(tuple(activations.shape[:2]), dtype=np.float32)
    with torch.no_grad():
        for b in range(x.shape[0]):
            maps = activations[b : b + 1, chosen].to(x.device, torch.float32)
            up = F.interpolate(maps, size=spatial, mode=_MODES[len(spatial)], align_corners=align_corners)[0]
            flat = up.flatten(1)
            lo = flat.min(dim=1).values.view((-1,) + (1,) * len(spatial))
            hi = flat.max(dim=1).values.view((-1,) + (1,) * len(spatial))
            up = (up - lo) / (hi - lo + 1e-8)
            scores = []
            for start in range(0, up.shape[0], batch_size):
                masks = up[start : start + batch_size, None]
                masked = x[b : b + 1] * masks
                scores.append(score(model(masked)).detach().float().cpu())
            weights[b, chosen.numpy()] = torch.softmax(torch.cat(scores), dim=0).numpy()
    return weights
