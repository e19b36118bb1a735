"""Training and evaluation loops for the demo packages (CPU-friendly, seeded, generators).

Why generators: ``breastmri train`` shows a progress bar from the same yields a GUI could show,
and a long run reports where it is. Why so small: the demos train on a shared 2-core CPU, so a
segmentation run is a few hundred patch steps and a classifier a few dozen epochs on
downsampled whole volumes. Class imbalance is handled by weighted sampling (inverse class
frequency); calibration by temperature scaling on a validation split (Guo et al. 2017).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np

from ..types import Progress
from . import metrics as M
from .data import Sample
from .tasks import LESION_SAMPLING, MC_PASSES, TaskSpec

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


def _device(device: Any = None):
    """The training device: the one asked for, else what :mod:`inference.device` picks."""
    from ..inference.device import pick_device

    return pick_device(device)


def _hard_negative_centres(s: Sample, channels: Sequence[str], rng: np.random.Generator, n: int = 4000):
    """Voxels that enhance brightly but are not lesion (heart, vessels, nipples, strong BPE).

    Why: the random background patches of plain foreground/background sampling rarely land on
    these, and they are exactly where an under-trained detector puts its false positives.
    """
    subs = [i for i, t in enumerate(channels) if t.split(":")[-1].startswith("sub")]
    if not subs or s.mask is None:
        return np.empty((0, 3), dtype=np.int64)
    enh = np.asarray(s.x[subs[0]], dtype=np.float32)
    thr = np.percentile(enh, 99.0)
    cand = np.argwhere((enh >= thr) & (s.mask == 0))
    if len(cand) > n:
        cand = cand[rng.choice(len(cand), n, replace=False)]
    return cand


def _pad_to(x: np.ndarray, mask: np.ndarray, size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad a (C, z, y, x) volume and its mask so every axis is at least the patch size."""
    pad = np.maximum(np.asarray(size) - np.asarray(x.shape[1:]), 0)
    if not pad.any():
        return x, mask
    widths = [(int(p) // 2, int(p) - int(p) // 2) for p in pad]
    return np.pad(x, [(0, 0), *widths]), np.pad(mask, widths)


def _patch_start(centre, size: np.ndarray, shape: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if centre is None:
        return np.array([rng.integers(0, s - p + 1) for s, p in zip(shape, size)])
    jitter = rng.integers(-(size // 4), size // 4 + 1)
    return np.clip(np.asarray(centre) - size // 2 + jitter, 0, shape - size)


def _label_lesions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected lesions, fully connected in every axis (26-connected in 3D, as the pipeline's
    post-processing; a leading channel axis of 1 changes nothing)."""
    from scipy import ndimage

    return ndimage.label(mask > 0, structure=np.ones((3,) * mask.ndim, dtype=bool))


def lesion_components(mask: np.ndarray) -> list[np.ndarray]:
    """The voxel coordinates (n, 3), in C order, of each lesion in a model-grid mask."""
    from scipy import ndimage

    labels, n = _label_lesions(mask)
    found = ndimage.value_indices(labels, ignore_value=0)
    return [np.stack(found[i], axis=1) for i in range(1, n + 1)]


def missed_lesion_weights(peaks: np.ndarray, floor: float = 0.1) -> np.ndarray:
    """Sampling weights per lesion: ``floor + 1 - peak`` (normalised), from each lesion's peak probability.

    Why: a detector that has settled misses a few lesion kinds confidently (peak probability near
    zero), and plain sampling shows them as rarely as everything it already finds. Weighting by
    what the network misses (online hard-example mining, per lesion) spends the steps on them;
    the floor keeps the found lesions in view so they are not forgotten.
    """
    w = floor + 1.0 - np.clip(np.asarray(peaks, dtype=np.float64), 0.0, 1.0)
    return w / w.sum()


def lesion_size_weights(mask: np.ndarray, reference_voxels: float = 300.0, cap: float = 10.0) -> np.ndarray:
    """Voxel weights for the BCE: each lesion's voxels weigh ``reference / its size`` (1 to ``cap``).

    Why: a voxel-wise loss weighs a lesion by its volume, so a 7 mm focus counts a tenth of a
    2 cm mass and the detector learns to ignore it; the demo detector's misses were exactly
    those (median 36 model voxels, against 320 for the lesions it found; docs/models.md). The
    same idea as the lesion-wise "blob loss" (Kofler et al. 2022), in its simplest form.
    Background keeps weight 1. The training loop computes this once per training volume, so a
    lesion cut by a patch's edge keeps its whole size (until stop 15 it weighed each patch's
    label, the cut part counting as a smaller lesion, and labelling 16 patches a step on the CPU
    cost a GPU step's time).
    """
    labels, n = _label_lesions(mask)
    if not n:
        return np.ones(mask.shape, dtype=np.float32)
    sizes = np.bincount(labels.ravel()).astype(np.float64)
    w = np.clip(reference_voxels / np.maximum(sizes, 1.0), 1.0, cap)
    w[0] = 1.0
    return w[labels].astype(np.float32)


def lesion_peaks(
    net, vols: list, lesions: list[tuple[int, np.ndarray]], size: np.ndarray, dev, batch: int = 8
):
    """Each lesion's peak sigmoid probability on one patch centred on it (eval mode, no gradients)."""
    import torch

    from ..inference.device import inference

    was_training = net.training
    net.eval()
    peaks = np.zeros(len(lesions))
    with inference(dev):
        for i in range(0, len(lesions), batch):
            xs, sels = [], []
            for k, coords in lesions[i : i + batch]:
                shape = np.asarray(vols[k].shape[1:])
                start = np.clip(np.round(coords.mean(axis=0)).astype(int) - size // 2, 0, shape - size)
                sl = tuple(slice(int(a), int(a + p)) for a, p in zip(start, size))
                xs.append(vols[k][(slice(None), *sl)].float())
                inside = np.all((coords >= start) & (coords < start + size), axis=1)
                sels.append(tuple((coords[inside] - start).T))
            prob = torch.sigmoid(net(_memory_format(torch.stack(xs), dev)).float())[:, 0].cpu().numpy()
            for j, sel in enumerate(sels):
                peaks[i + j] = float(prob[j][sel].max()) if len(sel[0]) else 0.0
    net.train(was_training)
    return peaks


def _memory_format(t, dev):
    """Channels-last on the CPU: oneDNN's 3D convolutions ran about 1.35x faster that way here."""
    import torch

    return t.contiguous(memory_format=torch.channels_last_3d) if dev.type == "cpu" else t


def _lr_at(step: int, steps: int, peak: float, warmup: float = 0.1) -> float:
    """Linear warm-up then cosine decay to zero: OneCycle's shape, but ``steps`` may shrink later."""
    w = max(1, int(warmup * steps))
    if step < w:
        return peak * (step + 1) / w
    return 0.5 * peak * (1.0 + math.cos(math.pi * min(1.0, (step - w) / max(1, steps - w))))


def train_segmentation(
    spec: TaskSpec,
    train: list[Sample],
    epochs: int,
    seed: int,
    init_state=None,
    device: Any = None,
    time_limit: float | None = None,
    stats: dict[str, Any] | None = None,
    lesion_sampling: str = "voxel",
) -> Gen:
    """Patch training with BCE + soft Dice (MONAI DiceLoss); returns the trained network (eval mode).

    Patches are centred on lesion voxels (50 %), on bright non-lesion enhancement (25 %, hard
    negatives) or anywhere (25 %); in-plane flips and a mild intensity scale. (Drawing a lesion
    uniformly first, so small lesions are seen as often as large ones, was tried on the GPU and
    did not help: sensitivity 0.76 at 1 876 steps against 0.80 at 1 610; docs/models.md.)
    ``lesion_sampling="sized"`` keeps that sampling but weighs each lesion's voxels in the BCE by
    :func:`lesion_size_weights` (small lesions were what the detector missed).
    ``lesion_sampling="missed"`` (for fine-tuning a trained detector) adds to those weights: the
    lesion patches' lesion is drawn by :func:`missed_lesion_weights` of its peak probability,
    measured at the start and half-way; ``stats["missed_training_lesions"]`` counts the training
    lesions that peak under the card threshold then and at the end. A fine-tune (``init_state``)
    peaks at a third of the from-scratch learning rate.
    The volumes live on the training device, so on a GPU the patches are cut there and the CPU
    only draws numbers.
    ``time_limit`` (seconds) caps the step count from the speed of the first 30 steps, with the
    learning-rate schedule rescaled to it; ``stats`` receives the steps actually taken.
    """
    import torch
    import torch.nn.functional as F
    from monai.losses import DiceLoss

    from ..inference.device import autocast

    dev = _device(device)
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    net = build_network(spec)
    if init_state is not None:
        net.load_state_dict(init_state)
    if lesion_sampling not in LESION_SAMPLING:
        raise ValueError(f"lesion_sampling must be one of {LESION_SAMPLING}, not {lesion_sampling!r}")
    sized = lesion_sampling != "voxel"
    net = net.to(dev)
    if dev.type == "cpu":
        net = net.to(memory_format=torch.channels_last_3d)
    size = np.asarray(spec.patch_size)
    usable = [s for s in train if s.mask is not None]
    store = torch.float16 if dev.type == "cuda" else torch.float32
    card_out = spec.parsed_card().outputs
    # lesions under the card's smallest reportable volume are never shown, so never mined
    min_voxels = card_out.min_lesion_ml * 1000.0 / float(np.prod(spec.spacing_mm or [1.0, 1.0, 1.0]))
    vols, masks, fgs, hards, weights = [], [], [], [], []
    lesions: list[tuple[int, np.ndarray]] = []  # (case, voxels) of each lesion, for "missed" only
    for k, s in enumerate(usable):
        x, m = _pad_to(np.asarray(s.x), np.asarray(s.mask), size)
        vols.append(torch.from_numpy(np.ascontiguousarray(x)).to(dev, store))
        masks.append(torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32)).to(dev, store))
        fgs.append(np.argwhere(m > 0))
        hards.append(_hard_negative_centres(Sample(s.case_id, x, s.affine, mask=m), spec.channels, rng))
        if sized:
            weights.append(torch.from_numpy(lesion_size_weights(m)).to(dev, store))
        if lesion_sampling == "missed":
            lesions += [(k, c) for c in lesion_components(m) if len(c) >= min_voxels]
    steps = max(1, epochs * len(usable) // spec.batch_size)
    planned = steps
    peak_lr = 3e-3 if init_state is None else 1e-3
    threshold = float(card_out.threshold)
    lesion_p, missed_counts = None, []
    opt = torch.optim.AdamW(net.parameters(), lr=peak_lr, weight_decay=1e-4)
    dice_loss = DiceLoss(sigmoid=True, batch=True)
    bce = torch.nn.BCEWithLogitsLoss()
    net.train()
    running = 0.0
    t_start = time.perf_counter()
    step = 0
    while step < steps:
        if time_limit and step == 30:
            per_step = (time.perf_counter() - t_start) / 30
            steps = max(31, min(steps, int(time_limit / per_step)))
        if lesion_sampling == "missed" and lesions and step % max(1, -(-steps // 2)) == 0:
            peaks = lesion_peaks(net, vols, lesions, size, dev)
            missed_counts.append(int((peaks < threshold).sum()))
            lesion_p = missed_lesion_weights(peaks)
            yield Progress(
                "train", step / steps, f"{missed_counts[-1]}/{len(lesions)} training lesions missed"
            )
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, peak_lr)
        xs, ys, ws = [], [], []
        for _ in range(spec.batch_size):
            k = int(rng.integers(len(usable)))
            draw = rng.random()
            pool = fgs[k] if draw < 0.5 else hards[k] if draw < 0.75 else np.empty((0, 3))
            if draw < 0.5 and lesion_p is not None:
                k, pool = lesions[int(rng.choice(len(lesions), p=lesion_p))]
            centre = pool[rng.integers(len(pool))] if len(pool) else None
            start = _patch_start(centre, size, np.asarray(vols[k].shape[1:]), rng)
            sl = tuple(slice(int(a), int(a + p)) for a, p in zip(start, size))
            x, y = vols[k][(slice(None), *sl)].float(), masks[k][sl].float()[None]
            w = weights[k][sl].float()[None] if sized else None
            flips = [d for d in (-1, -2) if rng.random() < 0.5]
            if flips:
                x, y = torch.flip(x, flips), torch.flip(y, flips)
                w = torch.flip(w, flips) if sized else None
            xs.append(x * float(rng.uniform(0.9, 1.1)))
            ys.append(y)
            ws.append(w)
        xb, yb = _memory_format(torch.stack(xs), dev), torch.stack(ys)
        with autocast(dev):
            logits = net(xb)
        logits = logits.float()
        if sized:
            bce_term = F.binary_cross_entropy_with_logits(logits, yb, weight=torch.stack(ws))
        else:
            bce_term = bce(logits, yb)
        loss = bce_term + dice_loss(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == steps - 1:  # .item() syncs the GPU: not every step
            running = 0.9 * running + 0.1 * loss.item() if step else loss.item()
        step += 1
        yield Progress("train", step / steps, f"step {step}/{steps} loss {running:.3f}")
    if lesion_sampling == "missed" and lesions:
        missed_counts.append(int((lesion_peaks(net, vols, lesions, size, dev) < threshold).sum()))
    if stats is not None:
        stats.update(steps=steps, planned_steps=planned, batch_size=spec.batch_size)
        if lesion_sampling != "voxel":
            stats.update(lesion_sampling=lesion_sampling)
        if lesion_sampling == "missed":
            stats.update(training_lesions=len(lesions), missed_training_lesions=missed_counts)
    net.eval()
    return net.to("cpu", memory_format=torch.contiguous_format)


def predict_probability(
    net, x: np.ndarray, patch_size: Sequence[int], overlap: float = 0.5, device: Any = "cpu"
) -> np.ndarray:
    """Sigmoid probability on the model grid via MONAI sliding-window inference (Gaussian blend)."""
    import torch
    from monai.inferers import sliding_window_inference

    from ..inference.device import inference

    dev = torch.device(device)
    with inference(dev):
        logits = sliding_window_inference(
            torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].to(dev),
            roi_size=tuple(patch_size),
            sw_batch_size=4,
            predictor=net.to(dev),
            overlap=overlap,
            mode="gaussian",
        )
        return torch.sigmoid(logits.float())[0, 0].cpu().numpy()


def evaluate_segmentation(spec: TaskSpec, net, test: list[Sample], device: Any = None) -> Gen:
    """Dice and lesion sensitivity at <= 1 false positive per case, on the study grid."""
    from ..inference.postprocess import lesions_from_mask, to_study_grid

    dev = _device(device)
    cases, dices = [], []
    card = spec.parsed_card()
    for k, s in enumerate(test):
        prob_model = predict_probability(net, s.x, spec.patch_size, device=dev)
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
    net.to("cpu")
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


def _stack_masks(samples: list[Sample]) -> np.ndarray | None:
    """The lesion masks of the labelled samples (as :func:`_stack` keeps them), or None if any lacks one."""
    keep = [s for s in samples if s.label is not None]
    if not keep or any(s.mask is None for s in keep):
        return None
    return np.stack([np.asarray(s.mask, dtype=np.float32) for s in keep])


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-sample weights 1 / class count: each class is drawn equally often (weighted sampling)."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    return 1.0 / np.maximum(counts[labels], 1.0)


def _shift_zero(x, shift: Sequence[int]):
    """Shift a (C, z, y, x) tensor by whole voxels, filling with zeros (not wrapping round)."""
    import torch

    out = torch.zeros_like(x)
    src, dst = [slice(None)], [slice(None)]
    for d, n in zip(shift, x.shape[1:]):
        d = int(d)
        src.append(slice(max(0, -d), n - max(0, d)))
        dst.append(slice(max(0, d), n - max(0, -d)))
    out[tuple(dst)] = x[tuple(src)]
    return out


def _augment_case(x, rng: np.random.Generator, max_shift: int, mask=None):
    """In-plane flips, a shift of up to ``max_shift`` voxels (region models: the detector's centring
    error) and a mild intensity scale, on one (C, z, y, x) tensor; ``mask`` (z, y, x), when given,
    gets the same flips and shift and is returned with it."""
    import torch

    flips = [d for d in (-1, -2) if rng.random() < 0.5]
    if flips:
        x = torch.flip(x, flips)
        mask = torch.flip(mask, flips) if mask is not None else None
    if max_shift > 0:
        shift = rng.integers(-max_shift, max_shift + 1, size=3)
        x = _shift_zero(x, shift)
        mask = _shift_zero(mask[None], shift)[0] if mask is not None else None
    x = x * float(rng.uniform(0.9, 1.1))
    return x if mask is None else (x, mask)


#: weight of the lesion-attention loss against the class loss (attention classifiers)
ATTENTION_LOSS_WEIGHT = 1.0


def _attention_loss(att_logits, masks, cells: str = "share"):
    """BCE + soft Dice of the attention map against the lesion mask pooled to its grid.

    ``cells="share"``: each cell's target is its lesion share (average pooling; a 6 mm lesion
    gives its 6 mm cells targets of 0.1-0.3). ``cells="any"``: 1 for every cell holding lesion
    (max pooling), so small lesions are attended as fully as large ones.
    """
    import torch
    from monai.losses import DiceLoss

    factor = [m // a for m, a in zip(masks.shape[-3:], att_logits.shape[-3:])]
    pool = torch.nn.functional.max_pool3d if cells == "any" else torch.nn.functional.avg_pool3d
    target = pool(masks[:, None], kernel_size=factor, stride=factor)
    logits = att_logits.float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    return bce + DiceLoss(sigmoid=True, batch=True)(logits, target)


def train_classifier(
    spec: TaskSpec, train: list[Sample], epochs: int, seed: int, init_state=None, device: Any = None
) -> Gen:
    """Cross-entropy with class-balanced sampling (WeightedRandomSampler); returns the network.

    A network with ``logits_and_attention`` (the attention classifier) also learns its attention
    map from the samples' lesion masks on its grid (BCE + Dice, weight ``ATTENTION_LOSS_WEIGHT``).
    """
    import torch

    from ..inference.device import autocast

    dev = _device(device)
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    x_np, y = _stack(train)
    x = torch.from_numpy(x_np).to(dev)
    net = build_network(spec)
    # attention classifiers learn where the lesion is from the masks (an auxiliary loss)
    masks_np = _stack_masks(train) if hasattr(net, "logits_and_attention") else None
    if hasattr(net, "logits_and_attention") and masks_np is None:
        warnings.warn(
            "Some training cases have no lesion mask, so the attention map is trained by the class "
            "loss alone and may not lie on the lesion; give masks (or boxes) for every case.",
            stacklevel=2,
        )
    masks = torch.from_numpy(masks_np).to(dev) if masks_np is not None else None
    # softmax attention is told every lesion cell; the sigmoid form was trained on lesion shares
    cells = "any" if getattr(net, "pooling", "") == "softmax" else "share"
    if init_state is not None:
        net.load_state_dict(init_state)
    net = net.to(dev)
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
    labels = torch.from_numpy(y).to(dev)
    net.train()
    for epoch in range(epochs):
        order = list(sampler)
        total = torch.zeros((), device=dev)
        for b in range(per_epoch):
            idx = order[b * spec.batch_size : (b + 1) * spec.batch_size]
            if not idx:
                continue
            if masks is None:
                batch = torch.stack([_augment_case(x[i], rng, spec.shift_voxels) for i in idx])
                with autocast(dev):
                    logits = net.logits(batch)
                loss = loss_fn(logits.float(), labels[idx])
            else:
                pairs = [_augment_case(x[i], rng, spec.shift_voxels, masks[i]) for i in idx]
                batch = torch.stack([p[0] for p in pairs])
                with autocast(dev):
                    logits, att = net.logits_and_attention(batch)
                loss = loss_fn(logits.float(), labels[idx]) + ATTENTION_LOSS_WEIGHT * _attention_loss(
                    att, torch.stack([p[1] for p in pairs]), cells
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach()
        yield Progress(
            "train", (epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs} loss {total.item() / per_epoch:.3f}"
        )
    net.eval()
    return net.to("cpu")


def classifier_logits(net, samples: list[Sample]) -> tuple[np.ndarray, np.ndarray]:
    """Uncalibrated logits (deterministic, eval mode) and labels of the labelled samples."""
    import torch

    x, y = _stack(samples)
    net.eval()
    with torch.inference_mode():
        logits = torch.cat([net.logits(torch.from_numpy(x[i : i + 16])) for i in range(0, len(x), 16)])
    return logits.numpy(), y


def mc_dropout_logits(
    net, samples: list[Sample], passes: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Uncalibrated logits of ``passes`` MC-dropout passes, (passes, cases, classes), and the labels.

    The pipeline's way (inference.uncertainty.predict_passes): the convolutions once in eval mode,
    then only the head, whose dropout is on, once per pass. Why: the viewer and the report show
    the mean of these passes, so its calibration is what a card must measure.
    """
    import torch

    from ..inference.uncertainty import dropout_active

    x, y = _stack(samples)
    net.eval()
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        with torch.inference_mode(), dropout_active(net):
            chunks = []
            for i in range(0, len(x), 16):
                f = net.features(torch.from_numpy(x[i : i + 16]))
                chunks.append(torch.stack([net.head_logits(f) for _ in range(passes)]))
    finally:
        torch.set_rng_state(gen_state)
    return torch.cat(chunks, dim=1).numpy(), y


def mean_probabilities(pass_logits: np.ndarray, temperature: float) -> np.ndarray:
    """The mean over passes of softmax(logits / T): what the pipeline reports."""
    z = np.asarray(pass_logits, dtype=float) / temperature
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).mean(axis=0)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the NLL of softmax(logits / T) (LBFGS on log T).

    ``logits`` (cases, classes) from one deterministic pass, or (passes, cases, classes) from MC
    dropout: then the NLL is that of the mean over passes of softmax(logits / T), the
    probability the pipeline reports."""
    import torch

    z = torch.as_tensor(logits, dtype=torch.float64)
    t = torch.as_tensor(labels)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        opt.zero_grad()
        if z.ndim == 3:
            probs = torch.softmax(z / log_t.exp(), dim=-1).mean(dim=0)
            loss = torch.nn.functional.nll_loss(torch.log(probs.clamp_min(1e-12)), t)
        else:
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


def evaluate_classifier(
    spec: TaskSpec, net, val: list[Sample], test: list[Sample], passes: int = MC_PASSES
) -> dict[str, Any]:
    """Fit the temperature on ``val`` (stored in the network), then AUC / ECE / accuracy on ``test``.

    The probability a user sees is the mean of ``passes`` MC-dropout passes (the card's
    uncertainty method), so the temperature is fitted to that mean and the headline ``auc`` and
    ``ece`` are measured on it; ``*_single_pass`` are the deterministic forward's (before stop 13
    the only figures). On the shipped models the two differ by 0.00-0.02 in AUC and ECE.
    """
    import torch

    val_mc, val_y = mc_dropout_logits(net, val, passes)
    temperature = fit_temperature(val_mc, val_y) if len(np.unique(val_y)) > 1 else 1.0
    net.temperature.fill_(temperature)
    logits, y = classifier_logits(net, test)
    single = _softmax(logits / temperature)
    with torch.inference_mode():  # the shipped forward() applies the same temperature
        check = torch.softmax(net(torch.from_numpy(_stack(test)[0][:1])), dim=1).numpy()
    assert np.allclose(check, single[:1], atol=1e-4)
    test_mc, _ = mc_dropout_logits(net, test, passes, seed=1)
    probs = mean_probabilities(test_mc, temperature)
    counts = np.bincount(y, minlength=len(spec.classes)).tolist()
    auc_key = "auc_macro" if len(spec.classes) > 2 else "auc"
    return {
        "held_out_cases": int(len(y)),
        "class_counts": dict(zip(spec.classes, counts)),
        "probabilities": f"mean of {passes} MC-dropout passes (as the pipeline reports them)",
        auc_key: _num(M.auc(y, probs)),
        "accuracy": round(M.accuracy(y, probs), 4),
        "ece": round(M.expected_calibration_error(y, probs), 4),
        f"{auc_key}_single_pass": _num(M.auc(y, single)),
        "ece_single_pass": round(M.expected_calibration_error(y, single), 4),
        "ece_before_temperature": round(M.expected_calibration_error(y, mean_probabilities(test_mc, 1.0)), 4),
        "temperature": round(temperature, 4),
        "validation_cases": int(len(val_y)),
    }
