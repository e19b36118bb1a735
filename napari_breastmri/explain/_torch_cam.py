"""CAM methods on N-D networks: pytorch-grad-cam's formulas where they are right, ours where not.

The driver is ours (a forward hook released in ``finally`` and ``torch.autograd.grad`` on the
hooked activation, so no parameter ``.grad`` is touched and no hook is left behind even when the
model raises); the channel weights of Grad-CAM, Grad-CAM++ and XGrad-CAM and the element-wise
maps of HiResCAM and LayerCAM are pytorch-grad-cam's own functions (checked N-D correct);
upsampling, Eigen-CAM and Score-CAM come from :mod:`._torch_ndcam` (see there why).

A *target* maps the model's batched output to one score per batch item, shape (B,), so it works
for classifiers (B, K), segmenters (B, K, *spatial) and outputs that are tuples or dicts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import _torch_ndcam as nd

#: method name -> needs gradients
METHODS: dict[str, bool] = {
    "gradcam": True,
    "gradcam++": True,
    "hirescam": True,
    "layercam": True,
    "xgradcam": True,
    "eigencam": False,
    "scorecam": False,
}


def _select(output: Any, key: int | str | None) -> torch.Tensor:
    if key is None:
        if isinstance(output, torch.Tensor):
            return output
        if isinstance(output, dict):
            return next(iter(output.values()))
        return output[0]
    return output[key]


@dataclass
class ClassTarget:
    """A case-level class: the logit of ``index`` (pytorch-grad-cam's ClassifierOutputTarget).

    ``activation`` ("softmax" | "sigmoid" | "none") turns the output into a probability for
    deletion/insertion curves; ``key`` picks one output of a model that returns a tuple or dict.
    ``score="log_prob"`` explains the class's log-probability under a softmax instead of its
    logit: its gradient is the class's logit gradient less the probability-weighted mean of all
    logits' gradients, so evidence that raises every class alike (there is a lesion) cancels and
    what remains is what favours this class over the others (a contrastive target).
    """

    index: int
    name: str = ""
    activation: str = "softmax"
    key: int | str | None = None
    score: str = "logit"

    def __call__(self, output: Any) -> torch.Tensor:
        logits = _select(output, self.key)
        logits = logits.reshape(logits.shape[0], -1)
        if self.score == "log_prob" and self.activation == "softmax" and logits.shape[1] > 1:
            return torch.log_softmax(logits, dim=1)[:, self.index]
        return logits[:, self.index]

    def probability(self, output: Any) -> torch.Tensor:
        logits = _select(output, self.key)
        logits = logits.reshape(logits.shape[0], -1)
        if self.activation == "softmax":
            return torch.softmax(logits, dim=1)[:, self.index]
        if self.activation == "sigmoid":
            return torch.sigmoid(logits[:, self.index])
        return logits[:, self.index]

    def describe(self) -> str:
        return f"class:{self.name or self.index}"


@dataclass
class RegionTarget:
    """A segmented region: the sum of channel ``channel``'s logit inside ``mask``.

    pytorch-grad-cam's SemanticSegmentationTarget in N-D. ``mask`` lives on the model's *output*
    grid (for a segmenter that is the input grid). Its probability is the mean foreground
    probability inside the mask.
    """

    channel: int
    mask: np.ndarray
    name: str = "region"
    activation: str = "sigmoid"
    key: int | str | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def _mask(self, like: torch.Tensor) -> torch.Tensor:
        spatial = tuple(like.shape[2:])
        if tuple(self.mask.shape) != spatial:
            raise ValueError(
                f"the region mask has shape {tuple(self.mask.shape)} but the model output grid is {spatial}; "
                "give the mask on the output grid."
            )
        key = (like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = torch.as_tensor(
                np.asarray(self.mask, dtype=np.float32), device=like.device, dtype=like.dtype
            )
        return self._cache[key]

    def __call__(self, output: Any) -> torch.Tensor:
        logits = _select(output, self.key)
        mask = self._mask(logits)
        return (logits[:, self.channel] * mask).flatten(1).sum(dim=1)

    def probability(self, output: Any) -> torch.Tensor:
        logits = _select(output, self.key)
        mask = self._mask(logits)
        if self.activation == "softmax":
            prob = torch.softmax(logits, dim=1)[:, self.channel]
        elif self.activation == "sigmoid":
            prob = torch.sigmoid(logits[:, self.channel])
        else:
            prob = logits[:, self.channel]
        return (prob * mask).flatten(1).sum(dim=1) / mask.sum().clamp(min=1.0)

    def describe(self) -> str:
        return f"region:{self.name}"


class BoxTarget(RegionTarget):
    """A detected box [z0, y0, x0, z1, y1, x1] on the *input* grid (end exclusive).

    Dense detectors here output a per-voxel objectness/lesion map; the box's score is that logit
    summed inside the box, scaled to the output grid when the output is coarser than the input.
    """

    def __init__(
        self,
        box: Sequence[int],
        input_shape: Sequence[int],
        channel: int = 0,
        name: str = "box",
        activation: str = "sigmoid",
        key: int | str | None = None,
    ) -> None:
        self.box = [int(v) for v in box]
        self.input_shape = tuple(int(s) for s in input_shape)
        super().__init__(channel=channel, mask=np.zeros(0), name=name, activation=activation, key=key)

    def _mask(self, like: torch.Tensor) -> torch.Tensor:
        spatial = tuple(like.shape[2:])
        if tuple(self.mask.shape) != spatial:
            self.mask = box_mask(self.box, self.input_shape, spatial)
            self._cache.clear()
        return super()._mask(like)

    def describe(self) -> str:
        return f"box:{self.name}:{self.box}"


def box_mask(box: Sequence[int], input_shape: Sequence[int], out_shape: Sequence[int]) -> np.ndarray:
    """A boolean mask of ``box`` (input voxels) on an output grid that covers the same extent."""
    n = len(input_shape)
    mask = np.zeros(tuple(out_shape), dtype=bool)
    slices = []
    for axis in range(n):
        scale = out_shape[axis] / input_shape[axis]
        lo = int(np.floor(box[axis] * scale))
        hi = max(lo + 1, int(np.ceil(box[axis + n] * scale)))
        slices.append(slice(max(lo, 0), min(hi, out_shape[axis])))
    mask[tuple(slices)] = True
    return mask


def find_layer(model: torch.nn.Module, layer: str | torch.nn.Module | None) -> tuple[str, torch.nn.Module]:
    """Resolve a dotted module name (or a module) to (name, module); None = the last conv layer."""
    if isinstance(layer, torch.nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name, module
        raise ValueError("the target layer given is not a module of this model")
    if layer:
        try:
            return layer, model.get_submodule(layer)
        except AttributeError as err:
            raise ValueError(
                f"the model has no layer named {layer!r}; the card's cam.target_layer or the --layer "
                "option must be a dotted module name from model.named_modules()."
            ) from err
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    if not convs:
        raise ValueError("the model has no convolution layer to hook; name a target layer explicitly.")
    return convs[-1]


@contextmanager
def capture(layer: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record the layer's output on forward; the hook is removed on exit, whatever happened."""
    store: list[torch.Tensor] = []

    def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
        tensor = (
            output
            if isinstance(output, torch.Tensor)
            else next(t for t in output if isinstance(t, torch.Tensor))
        )
        store.append(tensor)

    handle = layer.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Evaluate with dropout off and batch-norm frozen, and give the model back as it was."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        model.train(was_training)


def as_target(target: Any, output: torch.Tensor | None = None) -> Any:
    """An int is a class index; None is the top class of a classifier's output (of its first item)."""
    if target is None:
        if output is None or not isinstance(output, torch.Tensor) or output.ndim != 2:
            raise ValueError(
                "this model's output is not (batch, classes): give an explicit region or box target."
            )
        return ClassTarget(int(output[0].argmax()))
    if isinstance(target, (int, np.integer)):
        return ClassTarget(int(target))
    return target


def feature_cam(method: str, acts: np.ndarray, grads: np.ndarray | None) -> np.ndarray:
    """The map on the feature grid (B, *spatial) from activations and gradients (numpy)."""
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM

    if method == "eigencam":
        return nd.eigen_projection(acts)
    if method in ("hirescam", "layercam"):
        cls = HiResCAM if method == "hirescam" else LayerCAM
        # these two read nothing from ``self``: the element-wise maps work in N-D as they are
        return cls.get_cam_image(None, None, None, None, acts, grads, False)
    cls = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "xgradcam": XGradCAM}[method]
    weights = cls.get_cam_weights(None, None, None, None, acts, grads)
    return _weighted_sum(weights, acts)


def _weighted_sum(weights: np.ndarray, acts: np.ndarray) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float32).reshape(weights.shape + (1,) * (acts.ndim - 2))
    return (weights * acts).sum(axis=1)


def compute_cam(
    model: torch.nn.Module,
    x: torch.Tensor | np.ndarray,
    target: Any = None,
    method: str = "gradcam",
    target_layer: str | torch.nn.Module | None = None,
    spatial_dims: int = 3,
    max_channels: int | None = 32,
) -> np.ndarray:
    """A CAM heatmap on the input grid, in [0, 1]; (*spatial) for one input, (B, *spatial) for a batch."""
    method = method.lower().replace("_", "").replace("-", "")
    method = {"gradcamplusplus": "gradcam++", "gradcampp": "gradcam++"}.get(method, method)
    if method not in METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {', '.join(METHODS)}.")
    _, layer = find_layer(model, target_layer)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
    batched = x.ndim == spatial_dims + 2
    if not batched:
        x = x[None]
    if x.ndim != spatial_dims + 2:
        raise ValueError(
            f"expected input (C, *spatial) or (B, C, *spatial) with {spatial_dims} spatial axes, got {tuple(x.shape)}"
        )
    with eval_mode(model), capture(layer) as store:
        # a fresh leaf (also when the caller built ``x`` under inference_mode)
        x = x.to(device).detach().clone().requires_grad_(METHODS[method])
        output = model(x)
        if not store:
            raise ValueError("the target layer was not used in the forward pass; choose another layer.")
        acts_t = store[0]
        target = as_target(target, output)
        grads = None
        if METHODS[method]:
            score = target(output)
            (grad_t,) = torch.autograd.grad(score.sum(), acts_t)
            grads = grad_t.detach().float().cpu().numpy()
        acts = acts_t.detach().float().cpu().numpy()
        if method == "scorecam":
            weights = nd.score_cam_weights(model, x.detach(), acts_t.detach(), target, max_channels)
            cam = _weighted_sum(weights, acts)
        else:
            cam = feature_cam(method, acts, grads)
        del output, store[:]
    out = nd.scale_to_input(cam, x.shape[2:])
    return out if batched else out[0]
