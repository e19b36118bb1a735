"""Training and evaluation loops for the demo packages (CPU-friendly, seeded, generators).

Why generators: ``breastmri train`` shows a progress bar from the same yields a GUI could show,
and a long run reports where it is. Why so small: the demos train on a shared 2-core CPU, so a
segmentation run is a few hundred patch steps and a classifier a few dozen epochs on
downsampled whole volumes. Class imbalance is handled by weighted sampling (inverse class
frequency); calibration by temperature scaling on a validation split (Guo et al. 2017).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np

from ..types import Progress
from . import metrics as M
from .data import Sample
from .tasks import TaskSpec

Gen = Generator[Progress, None, Any]


def seed_everything(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def build_network(spec: TaskSpec):
    """The untrained network the spec's card names (same factory and kwargs)."""
    from ..models import networks

    net = spec.network()
    cls = getattr(networks, net["factory"].rsplit(".", 1)[1])
    return cls(**net["kwargs"])


# ---------------------------------------------------------------------------------- segmentation


def _crop(x: np.ndarray, mask: np.ndarray, size: Sequence[int], rng: np.random.Generator, fg_prob: float):
    """A random patch (foreground-centred with probability ``fg_prob``), zero-padded if needed."""
    size = np.asarray(size)
    shape = np.asarray(x.shape[1:])
    pad = np.maximum(size - shape, 0)
    if pad.any():
        widths = [(0, 0)] + [(int(p) // 2, int(p) - int(p) // 2) for p in pad]
        x = np.pad(x, widths)
        mask = np.pad(mask, widths[1:])
        shape = np.asarray(x.shape[1:])
    fg = np.argwhere(mask > 0) if rng.random() < fg_prob else np.empty((0, 3))
    if len(fg):
        centre = fg[rng.integers(len(fg))]
        start = np.clip(centre - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0, shape - size)
    else:
        start = np.array([rng.integers(0, s - p + 1) for s, p in zip(shape, size)])
    sl = tuple(slice(int(a), int(a + p)) for a, p in zip(start, size))
    return x[(slice(None), *sl)].astype(np.float32), mask[sl]


def _augment(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Flips in-plane and a mild intensity scale: cheap, label-preserving augmentation."""
    for axis in (-1, -2):
        if rng.random() < 0.5:
            x = np.flip(x, axis)
            y = np.flip(y, axis)
    x = x * np.float32(rng.uniform(0.9, 1.1))
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def train_segmentation(spec: TaskSpec, train: list[Sample], epochs: int, seed: int, init_state=None) -> Gen:
    """Patch training with BCE + soft Dice (MONAI DiceLoss); returns the trained network (eval mode)."""
    import torch
    from monai.losses import DiceLoss

    seed_everything(seed)
    rng = np.random.default_rng(seed)
    net = build_network(spec)
    if init_state is not None:
        net.load_state_dict(init_state)
    usable = [s for s in train if s.mask is not None]
    steps = max(1, epochs * len(usable) // spec.batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    dice_loss = DiceLoss(sigmoid=True, batch=True)
    bce = torch.nn.BCEWithLogitsLoss()
    net.train()
    running = 0.0
    for step in range(steps):
        xs, ys = [], []
        for _ in range(spec.batch_size):
            s = usable[int(rng.integers(len(usable)))]
            x, y = _augment(*_crop(s.x, s.mask, spec.patch_size, rng, fg_prob=0.67), rng)
            xs.append(x)
            ys.append(y[None].astype(np.float32))
        xb, yb = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
        logits = net(xb)
        loss = bce(logits, yb) + dice_loss(logits, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running = 0.9 * running + 0.1 * loss.item() if step else loss.item()
        yield Progress("train", (step + 1) / steps, f"step {step + 1}/{steps} loss {running:.3f}")
    net.eval()
    return net


def predict_probability(net, x: np.ndarray, patch_size: Sequence[int], overlap: float = 0.5) -> np.ndarray:
    """Sigmoid probability on the model grid via MONAI sliding-window inference (Gaussian blend)."""
    import torch
    from monai.inferers import sliding_window_inference

    with torch.inference_mode():
        logits = sliding_window_inference(
            torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None],
            roi_size=tuple(patch_size),
            sw_batch_size=4,
            predictor=net,
            overlap=overlap,
            mode="gaussian",
        )
        return torch.sigmoid(logits)[0, 0].numpy()


def evaluate_segmentation(spec: TaskSpec, net, test: list[Sample]) -> Gen:
    """Dice and lesion sensitivity at <= 1 false positive per case, on the study grid."""
    from ..inference.postprocess import lesions_from_mask, to_study_grid

    cases, dices = [], []
    card = spec.parsed_card()
    for k, s in enumerate(test):
        prob_model = predict_probability(net, s.x, spec.patch_size)
        # the pipeline's own post-processing: the same lesions a user would see
        mask, prob = to_study_grid(
            prob_model, s.affine, s.study_affine, s.study_shape, card.outputs.threshold
        )
        lesions, labels = lesions_from_mask(
            mask, prob, s.study_affine, min_volume_ml=card.outputs.min_lesion_ml
        )
        cases.append(
            M.CaseDetections([les.bbox for les in lesions], [les.score for les in lesions], s.truth_boxes)
        )
        if s.truth_mask is not None:
            dices.append(M.dice(labels > 0, s.truth_mask))
        yield Progress("evaluate", (k + 1) / len(test), s.case_id)
    at_fp = M.sensitivity_at_fp(cases, 1.0)
    at_thr = M.operating_point(cases, 0.0)
    with_lesions = [d for d, s in zip(dices, test) if s.truth_boxes]
    return {
        "held_out_cases": len(test),
        "truth_lesions": int(sum(len(c.truth_boxes) for c in cases)),
        "lesion_sensitivity_at_1fp": _num(at_fp["sensitivity"]),
        "fp_per_case_at_that_point": round(at_fp["fp_per_case"], 4),
        "score_threshold_at_1fp": round(at_fp["threshold"], 4) if math.isfinite(at_fp["threshold"]) else None,
        "lesion_sensitivity_at_card_threshold": _num(at_thr["sensitivity"]),
        "fp_per_case_at_card_threshold": round(at_thr["fp_per_case"], 4),
        "dice_mean": round(float(np.mean(with_lesions)), 4) if with_lesions else None,
        "dice_median": round(float(np.median(with_lesions)), 4) if with_lesions else None,
    }


# -------------------------------------------------------------------------------- classification


def _stack(samples: list[Sample]) -> tuple[np.ndarray, np.ndarray]:
    keep = [s for s in samples if s.label is not None]
    return np.stack([s.x for s in keep]).astype(np.float32), np.asarray(
        [s.label for s in keep], dtype=np.int64
    )


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-sample weights 1 / class count: each class is drawn equally often (weighted sampling)."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    return 1.0 / np.maximum(counts[labels], 1.0)


def train_classifier(spec: TaskSpec, train: list[Sample], epochs: int, seed: int, init_state=None) -> Gen:
    """Cross-entropy with class-balanced sampling (WeightedRandomSampler); returns the network."""
    import torch

    seed_everything(seed)
    rng = np.random.default_rng(seed)
    x, y = _stack(train)
    net = build_network(spec)
    if init_state is not None:
        net.load_state_dict(init_state)
    gen = torch.Generator().manual_seed(seed)
    sampler = torch.utils.data.WeightedRandomSampler(
        torch.as_tensor(class_weights(y, len(spec.classes))),
        num_samples=len(y),
        replacement=True,
        generator=gen,
    )
    per_epoch = max(1, math.ceil(len(y) / spec.batch_size))
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=2e-3, total_steps=epochs * per_epoch, pct_start=0.15
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    net.train()
    for epoch in range(epochs):
        order = list(sampler)
        total = 0.0
        for b in range(per_epoch):
            idx = order[b * spec.batch_size : (b + 1) * spec.batch_size]
            if not idx:
                continue
            batch = np.stack([_augment(x[i], x[i][0], rng)[0] for i in idx])
            logits = net.logits(torch.from_numpy(batch))
            loss = loss_fn(logits, torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        yield Progress(
            "train", (epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs} loss {total / per_epoch:.3f}"
        )
    net.eval()
    return net


def classifier_logits(net, samples: list[Sample]) -> tuple[np.ndarray, np.ndarray]:
    """Uncalibrated logits (deterministic, eval mode) and labels of the labelled samples."""
    import torch

    x, y = _stack(samples)
    net.eval()
    with torch.inference_mode():
        logits = torch.cat([net.logits(torch.from_numpy(x[i : i + 16])) for i in range(0, len(x), 16)])
    return logits.numpy(), y


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the NLL of softmax(logits / T) (LBFGS on log T)."""
    import torch

    z = torch.as_tensor(logits, dtype=torch.float64)
    t = torch.as_tensor(labels)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), t)
        loss.backward()
        return loss

    opt.step(closure)
    return float(np.clip(log_t.exp().item(), 0.05, 20.0))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _num(value: float) -> float | None:
    """Rounded for the card; NaN (e.g. AUC with one class present) becomes None (YAML null)."""
    return None if not math.isfinite(value) else round(float(value), 4)


def evaluate_classifier(spec: TaskSpec, net, val: list[Sample], test: list[Sample]) -> dict[str, Any]:
    """Fit the temperature on ``val`` (stored in the network), then AUC / ECE / accuracy on ``test``."""
    import torch

    val_logits, val_y = classifier_logits(net, val)
    temperature = fit_temperature(val_logits, val_y) if len(np.unique(val_y)) > 1 else 1.0
    net.temperature.fill_(temperature)
    logits, y = classifier_logits(net, test)
    raw = _softmax(logits)
    probs = _softmax(logits / temperature)
    with torch.inference_mode():  # the shipped forward() applies the same temperature
        check = torch.softmax(net(torch.from_numpy(_stack(test)[0][:1])), dim=1).numpy()
    assert np.allclose(check, probs[:1], atol=1e-4)
    counts = np.bincount(y, minlength=len(spec.classes)).tolist()
    return {
        "held_out_cases": int(len(y)),
        "class_counts": dict(zip(spec.classes, counts)),
        "auc_macro" if len(spec.classes) > 2 else "auc": _num(M.auc(y, probs)),
        "accuracy": round(M.accuracy(y, probs), 4),
        "ece": round(M.expected_calibration_error(y, probs), 4),
        "ece_before_temperature": round(M.expected_calibration_error(y, raw), 4),
        "temperature": round(temperature, 4),
        "validation_cases": int(len(val_y)),
    }
