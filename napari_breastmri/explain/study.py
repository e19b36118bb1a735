"""Explain one model package on one study: a heatmap on the study grid with its faithfulness numbers.

The CAM is computed on the *model grid* (the tensor and affine that ``prepare_input`` gives the
network), upsampled there to the input grid, and then placed on the study grid through world
space (``geometry.resample_to_grid``), so it lands on the same anatomy as the study's boxes and
masks whatever the study's orientation. Segmenters and detectors are explained on one patch of
the card's ``patch_size`` centred on the target lesion (the network sees patches in the pipeline
too); classifiers on their whole input.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BreastMRIError, Cancelled
from ..geometry import resample_to_grid
from ..types import Findings, Heatmap, Lesion, Progress, Study
from . import faithfulness as fa


class ExplanationError(BreastMRIError):
    """A heatmap cannot be made for this model, target or layer (the message says which and why)."""


#: ``scores`` levels: what explain_study computes beside the heatmap
SCORE_LEVELS = ("none", "fast", "all")


@dataclass
class Explained:
    """What explain_study computed on the model grid (kept for figures and evaluation)."""

    heatmap: Heatmap
    model_cam: np.ndarray
    model_affine: np.ndarray
    x: Any
    target: Any
    curves: dict[str, Any] | None = None
    #: what :func:`faithfulness_scores` needs to score the map later (the viewer shows the heatmap
    #: first and runs the slow checks in a follow-up job): the network, the input the CAM was made
    #: on (the patch for segmenters/detectors), that CAM, the method and the resolved layer
    model: Any = None
    cam_input: Any = None
    cam: np.ndarray | None = None
    method: str = ""
    layer: str = ""


def _open(package: Any) -> Any:
    if hasattr(package, "card") and hasattr(package, "build"):
        return package
    from ..models.package import load_package

    return load_package(package)


def _device(device: Any) -> Any:
    from ..inference.device import pick_device

    return pick_device(device)


def _class_index(card: Any, name: str) -> int:
    classes = list(card.outputs.classes)
    if name in classes:
        return classes.index(name)
    lowered = {str(v).lower(): k for k, v in card.outputs.display_names.items()}
    if name.lower() in lowered and lowered[name.lower()] in classes:
        return classes.index(lowered[name.lower()])
    raise ExplanationError(f"Model {card.label} has no class {name!r}; its classes are {', '.join(classes)}.")


def _foreground_channel(card: Any, n_out: int) -> int:
    names = list(card.outputs.classes)
    if card.outputs.activation == "sigmoid":
        return names.index("lesion") if "lesion" in names and len(names) == n_out else n_out - 1
    if card.outputs.activation == "softmax" and names and names[0] == "background":
        return 1 if n_out > 1 else 0
    return n_out - 1


def _pick_lesion(findings: Findings | None, card: Any, target: Any) -> Lesion | None:
    if findings is None or not findings.lesions:
        return None
    if isinstance(target, (int, np.integer)) or (
        isinstance(target, str) and target.startswith(("lesion:", "box:"))
    ):
        lesion_id = int(str(target).split(":")[-1])
        try:
            return findings.lesion(lesion_id)
        except KeyError as err:
            raise ExplanationError(
                f"There is no lesion {lesion_id} in the findings; pick one of the listed ids."
            ) from err
    own = [les for les in findings.lesions if les.source.endswith(card.label)] or findings.lesions
    live = [les for les in own if les.status != "rejected"] or own
    return max(live, key=lambda les: les.score)


def _lesion_mask_model(
    lesion: Lesion, findings: Findings, study: Study, m_affine: np.ndarray, m_shape: tuple[int, ...]
) -> tuple[np.ndarray | None, list[int]]:
    """The lesion's mask (when it has one) and box on the model grid."""
    box = fa.box_to_grid(lesion.bbox, study.affine, m_affine, m_shape)
    mask = None
    if lesion.label and findings.label_mask is not None:
        on_study = (np.asarray(findings.label_mask) == lesion.label).astype(np.float32)
        mask = resample_to_grid(on_study, study.affine, m_affine, m_shape, order=0) > 0.5
        if not mask.any():
            mask = None
    return mask, box


def _window(
    shape: tuple[int, ...], centre: np.ndarray, patch: list[int]
) -> tuple[list[tuple[int, int]], list[slice]]:
    """Padding (per axis, before/after) and the patch's slices in the padded grid, around ``centre``."""
    pads, slices = [], []
    for s, c, p in zip(shape, centre, patch):
        total = max(0, p - s)
        before = total // 2
        pads.append((before, total - before))
        padded = s + total
        start = int(np.clip(round(c + before - p / 2), 0, padded - p))
        slices.append(slice(start, start + p))
    return pads, slices


def _resolve_target(
    card: Any,
    model: Any,
    x: Any,
    study: Study,
    findings: Findings | None,
    target: Any,
    m_affine,
    class_score: str = "logit",
):
    """(target object, description, centre on the model grid or None, lesion mask on study grid or None)."""
    import torch

    from ._torch_cam import BoxTarget, ClassTarget, RegionTarget

    if target is not None and callable(target) and hasattr(target, "probability"):
        return target, target.describe(), None, None
    if card.task == "classify":
        if target is None:
            pred = findings.case_predictions.get(card.target) if findings is not None else None
            if pred is not None and pred.top_class in card.outputs.classes:
                name = pred.top_class
            else:
                with torch.no_grad():
                    out = model(x[None].to(next(model.parameters()).device))
                name = card.outputs.classes[int(out[0].argmax())]
        else:
            name = (
                card.outputs.classes[int(target)]
                if isinstance(target, (int, np.integer))
                else str(target).removeprefix("class:")
            )
        idx = _class_index(card, name)
        act = card.outputs.activation if card.outputs.activation in ("softmax", "sigmoid") else "none"
        return (
            ClassTarget(idx, name=name, activation=act, score=class_score),
            f"{card.target}={name}",
            None,
            None,
        )
    if card.task not in ("segment", "detect"):
        raise ExplanationError(
            f"Model {card.label} is a {card.task} model; heatmaps are made for classify, segment and detect models."
        )
    lesion = _pick_lesion(findings, card, target)
    if lesion is None:
        return None, "", None, None
    m_shape = tuple(int(s) for s in x.shape[1:])
    mask, box = _lesion_mask_model(lesion, findings, study, m_affine, m_shape)
    act = card.outputs.activation if card.outputs.activation in ("softmax", "sigmoid") else "none"
    n_out = max(1, len(card.outputs.classes))
    channel = _foreground_channel(card, n_out)
    centre = np.array([(box[i] + box[i + 3] - 1) / 2 for i in range(3)])
    study_mask = None
    if findings is not None and findings.label_mask is not None and lesion.label:
        study_mask = np.asarray(findings.label_mask) == lesion.label
    as_box = isinstance(target, str) and target.startswith("box:")
    if card.task == "segment" and mask is not None and not as_box:
        tgt = RegionTarget(channel, mask, name=f"lesion {lesion.id}", activation=act)
        return tgt, f"lesion {lesion.id} (segmentation)", centre, study_mask
    tgt = BoxTarget(box, m_shape, channel=channel, name=f"lesion {lesion.id}", activation=act)
    return tgt, f"lesion {lesion.id} (box)", centre, study_mask


def _crop_target(target: Any, pads, slices, m_shape) -> Any:
    """The same target expressed on the padded-and-cropped patch grid."""
    from ._torch_cam import BoxTarget, RegionTarget

    if isinstance(target, BoxTarget):
        n = len(m_shape)
        box = [target.box[i] + pads[i][0] - slices[i].start for i in range(n)]
        box += [target.box[i + n] + pads[i][0] - slices[i].start for i in range(n)]
        patch = tuple(s.stop - s.start for s in slices)
        box = [int(np.clip(v, 0, patch[i % n])) for i, v in enumerate(box)]
        return BoxTarget(
            box, patch, channel=target.channel, name=target.name, activation=target.activation, key=target.key
        )
    if isinstance(target, RegionTarget):
        mask = np.pad(np.asarray(target.mask, bool), pads)[tuple(slices)]
        return RegionTarget(
            target.channel, mask, name=target.name, activation=target.activation, key=target.key
        )
    return target


def explain_study(
    study: Study,
    package: Any,
    findings: Findings | None = None,
    method: str = "gradcam",
    target: Any = None,
    layer: str | None = None,
    *,
    device: Any = None,
    scores: str = "fast",
    truth_mask: np.ndarray | None = None,
    keep: bool = False,
    follow_up: Study | None = None,
    class_score: str = "logit",
) -> Generator[Progress, None, Heatmap | Explained | None]:
    """A heatmap of ``package`` on ``study`` for ``target``, on the study grid, in [0, 1].

    ``target``: None (the top predicted class of a classifier; the most confident lesion of a
    segmenter/detector), a class name, a lesion id or "lesion:ID" (its mask for a segmenter, else
    its box), "box:ID" (its box, as a detector sees it), or a target object from
    :mod:`.cam`. ``layer`` overrides the card's ``cam.target_layer``. ``scores``: "none"; "fast"
    (per-phase attribution and CAM x kinetics); "all" (also deletion/insertion against a random
    order and the randomisation check). ``truth_mask`` (study grid) adds the pointing game.
    Returns None (with a warning in ``findings``) when a segmenter/detector found no lesion.
    ``keep=True`` returns an :class:`Explained` with the model-grid map and curves as well.
    ``follow_up`` is the early-treatment exam, for models that compare two exams.
    ``class_score`` ("logit" | "log_prob") is what a classifier's class target explains
    (:class:`._torch_cam.ClassTarget`).
    """
    import torch

    from ._torch_cam import find_layer
    from .cam import compute_cam  # the CAM family and the occlusion / integrated-gradients references

    if scores not in SCORE_LEVELS:
        raise ExplanationError(f"scores must be one of {', '.join(SCORE_LEVELS)}, not {scores!r}.")
    yield Progress("explain", 0.0, "loading the model")
    pkg = _open(package)
    card = pkg.card
    dev = _device(device)
    model = pkg.build(dev)
    if card.needs_lesion:
        # the same region analyze read: around the index lesion of these findings
        from ..inference.pipeline import lesion_roi_centre

        empty = Findings(shape=study.shape, affine=np.array(study.affine))
        centre, note = lesion_roi_centre(findings if findings is not None else empty, study)
        if centre is None:
            if findings is not None:
                findings.warnings.append(f"No heatmap for {card.label}: {note}")
            return None
        x, m_affine = pkg.prepare_input(study, follow_up, centre)
    elif follow_up is not None:
        x, m_affine = pkg.prepare_input(study, follow_up)
    else:
        x, m_affine = pkg.prepare_input(study)
    x = x.detach().clone().float()
    yield Progress("explain", 0.15, "choosing the target")
    tgt, target_desc, centre, study_lesion = _resolve_target(
        card, model, x, study, findings, target, m_affine, class_score
    )
    if tgt is None:
        if findings is not None:
            findings.warnings.append(f"No lesion from {card.label} to explain; no heatmap was made.")
        return None
    try:
        layer_name, _ = find_layer(model, layer or card.cam.target_layer)
    except ValueError as err:
        raise ExplanationError(str(err)) from err
    m_shape = tuple(int(s) for s in x.shape[1:])
    xin, pads, slices = x, None, None
    if card.task in ("segment", "detect") and card.inputs.patch_size and centre is not None:
        pads, slices = _window(m_shape, centre, list(card.inputs.patch_size))
        flat_pad = [p for pair in reversed(pads) for p in pair]
        xin = torch.nn.functional.pad(x, flat_pad)[(slice(None), *slices)].contiguous()
        tgt = _crop_target(tgt, pads, slices, m_shape)
    yield Progress("explain", 0.25, f"{method} on {layer_name}")
    try:
        cam_in = compute_cam(model, xin, tgt, method, layer_name)
    except ValueError as err:
        raise ExplanationError(f"{method} could not run on {card.label}: {err}") from err
    model_cam = cam_in
    if pads is not None:
        padded = np.zeros([s + a + b for s, (a, b) in zip(m_shape, pads)], np.float32)
        padded[tuple(slices)] = cam_in
        model_cam = padded[tuple(slice(a, a + s) for s, (a, _) in zip(m_shape, pads))]
    on_study = np.clip(resample_to_grid(model_cam, m_affine, study.affine, study.shape, order=1), 0, None)
    peak = float(on_study.max())
    data = (on_study / peak if peak > 0 else on_study).astype(np.float32)
    hm = Heatmap(
        data=data,
        affine=np.array(study.affine),
        method=method,
        target=target_desc,
        layer=layer_name,
        model=card.label,
    )
    if peak <= 0:
        hm.scores["empty"] = 1.0
    curves = None
    if scores != "none":
        yield Progress("explain", 0.5, "per-phase attribution")
        from .attribution import phase_attribution

        hm.phase_attribution = phase_attribution(model, xin, tgt, list(card.inputs.channels))
        yield Progress("explain", 0.6, "CAM x kinetics")
        lesion_for_share = study_lesion if study_lesion is not None else truth_mask
        hm.kinetics_share = _kinetics_share(study, data, findings, lesion_for_share)
    if scores == "all":
        slow, curves = yield from _slow_scores(
            model, xin, cam_in, tgt, method, layer_name, "explain", 0.7, 0.3
        )
        hm.scores.update(slow)
    if truth_mask is not None:
        hm.scores.update(fa.pointing_game(data, study.affine, truth_mask=truth_mask))
    yield Progress("explain", 1.0, fa.describe(hm))
    if keep:
        return Explained(hm, model_cam, m_affine, x, tgt, curves, model, xin, cam_in, method, layer_name)
    return hm


def _slow_scores(
    model: Any,
    xin: Any,
    cam_in: np.ndarray,
    tgt: Any,
    method: str,
    layer_name: str,
    step: str,
    start: float,
    span: float,
    should_cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, tuple[dict[str, float], dict[str, Any] | None]]:
    """Deletion/insertion against a random order, then the model-randomisation check: the scores
    that take most of an explanation's time (a minute or two on a small CPU). Returns (scores,
    curves); (partial scores, None) when ``should_cancel`` says stop (it is asked between forward
    passes)."""
    stop = should_cancel or (lambda: False)
    out: dict[str, float] = {}
    try:  # each step asks should_cancel between its forward passes and raises Cancelled
        yield Progress(step, start, "deletion and insertion")
        cam_curves = fa.deletion_insertion(model, xin, cam_in, tgt, should_cancel=stop)
        yield Progress(step, start + span / 3, "deletion and insertion (random order)")
        rand_curves = fa.deletion_insertion(model, xin, None, tgt, should_cancel=stop)
        out.update(
            deletion_auc=cam_curves["deletion_auc"],
            insertion_auc=cam_curves["insertion_auc"],
            deletion_auc_random=rand_curves["deletion_auc"],
            insertion_auc_random=rand_curves["insertion_auc"],
        )
        yield Progress(step, start + span / 2, "randomisation check")
        check = fa.randomisation_check(model, xin, tgt, method, layer_name, cam_in, should_cancel=stop)
    except Cancelled:
        return out, None
    out.update(
        randomisation_spearman=check["randomisation_spearman"],
        randomisation_flag=check["randomisation_flag"],
    )
    return out, {"cam": cam_curves, "random": rand_curves, "randomisation": check}


def faithfulness_scores(
    explained: Explained, *, should_cancel: Callable[[], bool] | None = None
) -> Generator[Progress, None, dict[str, float]]:
    """The slow faithfulness scores of a heatmap explained earlier with ``scores="fast"`` and
    ``keep=True``: what ``scores="all"`` adds (deletion/insertion AUC against a random order, the
    randomisation check), computed on the same input, CAM and target.

    Why separate: the viewer shows the heatmap as soon as it is made and fills these in when they
    arrive, instead of showing nothing for the minute or two they take. The heatmap itself is not
    changed (the caller owns it and may hold it on another thread): the scores are returned, and
    the curves are kept in ``explained.curves``. Stops early (returning what it has) when
    ``should_cancel()`` turns True between the steps.
    """
    if explained.model is None or explained.cam_input is None or explained.cam is None:
        raise ExplanationError(
            "This explanation kept no model and input to score; explain it again with keep=True."
        )
    scores, curves = yield from _slow_scores(
        explained.model,
        explained.cam_input,
        explained.cam,
        explained.target,
        explained.method,
        explained.layer,
        "faithfulness",
        0.0,
        1.0,
        should_cancel,
    )
    if curves is not None:
        explained.curves = curves
    yield Progress("faithfulness", 1.0, "done")
    return scores


def _kinetics_share(
    study: Study, data: np.ndarray, findings: Findings | None, lesion_mask: np.ndarray | None
) -> dict[str, float]:
    from .. import kinetics

    curve_map = None
    if study.n_phases >= 3:
        try:
            curve_map = kinetics.curve_types(study)
        except (BreastMRIError, ValueError):
            curve_map = None
    if lesion_mask is None and findings is not None:
        if findings.label_mask is not None and np.any(findings.label_mask):
            lesion_mask = np.asarray(findings.label_mask) > 0
        elif findings.lesions:
            lesion_mask = np.zeros(study.shape, bool)
            for les in findings.lesions:
                z0, y0, x0, z1, y1, x1 = les.bbox
                lesion_mask[z0:z1, y0:y1, x0:x1] = True
    return fa.kinetics_share(data, curve_map, lesion_mask, kinetics.tissue_mask(study.data[0]))
