"""Case-level probabilities with an interval: MC dropout or test-time augmentation (flips).

MC dropout switches *only* the dropout layers to training mode (batch/instance norm stay in eval,
so their running statistics are used and never updated); TTA flips the input along combinations
of the spatial axes. Either way we get N probability vectors and report their mean and the
[5 %, 95 %] percentile interval per class.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import Cancelled
from ..types import Progress

if TYPE_CHECKING:
    import torch

#: flip sets for TTA over (z, y, x) = tensor dims (2, 3, 4) of a (B, C, z, y, x) batch
FLIPS: list[tuple[int, ...]] = [c for r in range(4) for c in itertools.combinations((2, 3, 4), r)]


#: class names of dropout layers inside TorchScript modules (which are not nn.Dropout instances)
_DROPOUT_NAMES = {"Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout"}


@contextlib.contextmanager
def dropout_active(net: torch.nn.Module) -> Iterator[int]:
    """Put only dropout layers in training mode; yields how many there are; restores afterwards."""
    from torch import nn

    layers = [
        m
        for m in net.modules()
        if isinstance(m, nn.modules.dropout._DropoutNd) or getattr(m, "original_name", "") in _DROPOUT_NAMES
    ]
    before = [m.training for m in layers]
    for m in layers:
        m.train()
    try:
        yield len(layers)
    finally:
        for m, was in zip(layers, before):
            m.train(was)


def activate(logits: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "softmax":
        return logits.float().softmax(dim=1)
    if activation == "sigmoid":
        return logits.float().sigmoid()
    return logits.float()


def predict_passes(
    net: torch.nn.Module,
    x: torch.Tensor,
    *,
    method: str,
    passes: int,
    activation: str,
    batch_size: int = 4,
    should_cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, tuple[np.ndarray, str]]:
    """(N, K) probabilities from N stochastic/augmented passes over (C, z, y, x) ``x``, and the method used.

    Passes run ``batch_size`` at a time (dropout masks differ per sample, so a batch of copies
    gives independent MC samples). A net without dropout layers falls back to one plain pass.
    """
    import torch

    xb = x[None]
    runs: list[np.ndarray] = []
    if method == "mc_dropout":
        # a network whose dropout is all in a head (it says so by having ``dropout_head``) runs
        # its convolutions once; each pass then re-runs only the head on those features
        split = hasattr(net, "features") and hasattr(net, "dropout_head")
        feats = net.features(xb) if split else None
        with dropout_active(net) as n_layers:
            if n_layers == 0:
                method, passes = "none", 1
            done = 0
            while done < passes:
                if should_cancel is not None and should_cancel():
                    raise Cancelled("Inference was cancelled; no findings were kept.")
                k = min(batch_size, passes - done)
                if feats is not None:
                    out = net.dropout_head(feats.expand(k, *feats.shape[1:]))
                else:
                    out = net(xb.expand(k, *x.shape))
                runs.append(activate(out, activation).cpu().numpy())
                done += k
                yield Progress("classify", done / passes, f"MC dropout pass {done}/{passes}")
        if method == "mc_dropout":
            return np.concatenate(runs), method
        runs = []
    if method == "tta":
        flips = FLIPS[: max(1, min(passes, len(FLIPS)))]
        for i, dims in enumerate(flips):
            if should_cancel is not None and should_cancel():
                raise Cancelled("Inference was cancelled; no findings were kept.")
            xi = torch.flip(xb, dims) if dims else xb
            runs.append(activate(net(xi), activation).cpu().numpy())
            yield Progress("classify", (i + 1) / len(flips), f"TTA pass {i + 1}/{len(flips)}")
        return np.concatenate(runs), method
    runs.append(activate(net(xb), activation).cpu().numpy())
    yield Progress("classify", 1.0, "one pass")
    return np.concatenate(runs), "none"


def summarise(
    probs: np.ndarray, classes: Sequence[str], q: tuple[float, float] = (5.0, 95.0)
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Mean probability and the (q low, q high) percentile interval per class over the passes."""
    probs = np.asarray(probs, dtype=float).reshape(len(probs), -1)
    if probs.shape[1] != len(classes):
        from ..errors import IncompatibleModel

        raise IncompatibleModel(
            f"The network gave {probs.shape[1]} outputs but the card lists {len(classes)} classes {list(classes)}."
        )
    mean = probs.mean(axis=0)
    lo, hi = np.percentile(probs, q, axis=0)
    p = {c: round(float(m), 4) for c, m in zip(classes, mean)}
    iv = {c: (round(float(a), 4), round(float(b), 4)) for c, a, b in zip(classes, lo, hi)}
    return p, iv
