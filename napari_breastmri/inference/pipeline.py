"""Run model packages on a study: a generator that yields Progress and returns Findings.

Per package: the card's preprocessing puts the study on the model grid; segment/detect models run
as Gaussian-blended sliding windows (yielding between batches, cancellable there); classify models
run on the whole (resized) study with MC-dropout or TTA passes. Outputs go back to the study grid
through world space. The device comes from :mod:`.device` only, with its out-of-memory fallback,
and every ModelRun says where it ran. Cancel raises :class:`~napari_breastmri.errors.Cancelled`
and nothing partial is returned (Findings are only built at the end).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import progress as prog
from ..errors import BreastMRIError, Cancelled, IncompatibleModel
from ..types import CasePrediction, Findings, Lesion, ModelRun, Progress, Study
from . import device as dev_mod

if TYPE_CHECKING:
    import torch

    from ..models.package import ModelPackage


@dataclass
class SegmentationOutput:
    """A segment/detect package's result on the study grid."""

    probability: np.ndarray  # (z, y, x) float32
    mask: np.ndarray  # (z, y, x) bool


def _check_cancel(should_cancel: Callable[[], bool] | None) -> None:
    if should_cancel is not None and should_cancel():
        raise Cancelled("Inference was cancelled; no findings were kept.")


def _open(packages: Sequence[Any]) -> list[ModelPackage]:
    """ModelPackages as given (or anything shaped like one: .card, .build, .prepare_input, e.g. a
    caching wrapper); names and paths are opened with load_package."""
    from ..models.package import load_package

    def ready(p: Any) -> bool:
        return all(hasattr(p, a) for a in ("card", "build", "prepare_input"))

    return [p if ready(p) else load_package(p) for p in packages]


def segment_probability(
    pkg: ModelPackage,
    net: torch.nn.Module,
    x: torch.Tensor,
    device: torch.device,
    batch_size: int,
    should_cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, np.ndarray]:
    """Sliding-window lesion probability on the model grid, (z, y, x) float32."""
    from .postprocess import foreground_probability
    from .sliding import sliding_window

    card = pkg.card
    net = net.to(device)
    with dev_mod.inference(device):
        out = yield from sliding_window(
            net,
            x.to(device),
            card.inputs.patch_size or x.shape[1:],
            overlap=card.inputs.overlap,
            batch_size=batch_size,
            device=device,
            should_cancel=should_cancel,
        )
    return foreground_probability(out.numpy(), card.outputs.activation, card.outputs.classes)


def classify_probabilities(
    pkg: ModelPackage,
    net: torch.nn.Module,
    x: torch.Tensor,
    device: torch.device,
    batch_size: int,
    should_cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, tuple[np.ndarray, str]]:
    """(N, K) probabilities over the uncertainty passes, and the method used."""
    from .uncertainty import predict_passes

    card = pkg.card
    net = net.to(device)
    with dev_mod.inference(device):
        return (
            yield from predict_passes(
                net,
                x.to(device),
                method=card.uncertainty.method,
                passes=card.uncertainty.passes,
                activation=card.outputs.activation,
                batch_size=batch_size,
                should_cancel=should_cancel,
            )
        )


def _wrap_shape_errors(pkg: ModelPackage, err: RuntimeError) -> IncompatibleModel:
    return IncompatibleModel(
        f"Model {pkg.label} could not run on this input ({str(err).splitlines()[0][:160]}); the card's "
        f"channels {pkg.card.inputs.channels} or patch size do not fit its network."
    )


def run_package(
    pkg: ModelPackage,
    study: Study,
    *,
    device: torch.device,
    follow_up: Study | None = None,
    should_cancel: Callable[[], bool] | None = None,
    first_id: int = 1,
    roi_centre: Sequence[float] | None = None,
) -> Generator[Progress, None, tuple[list[Lesion], np.ndarray | None, CasePrediction | None, ModelRun]]:
    """One package on one study: (lesions, label map or None, case prediction or None, ModelRun).

    ``roi_centre`` (world LPS mm) is the index lesion's centre, for cards that read a region
    around it (``inputs.roi``).
    """
    card = pkg.card
    start = time.perf_counter()
    yield Progress(card.name, 0.0, "preparing input")
    if card.needs_lesion:
        x, model_affine = pkg.prepare_input(study, follow_up, roi_centre)
    else:
        x, model_affine = pkg.prepare_input(study, follow_up)
    _check_cancel(should_cancel)
    net = pkg.build("cpu")
    who = f"model:{card.label}"
    lesions: list[Lesion] = []
    labels = None
    pred = None

    if card.task in ("segment", "detect"):

        def work(d: torch.device, b: int) -> Generator[Progress, None, np.ndarray]:
            return segment_probability(pkg, net, x, d, b, should_cancel)

    else:

        def work(d: torch.device, b: int) -> Generator[Progress, None, Any]:
            return classify_probabilities(pkg, net, x, d, b, should_cancel)

    try:
        result, report = yield from prog.scaled(
            dev_mod.run_with_fallback_gen(work, device=device, batch_size=card.inputs.sw_batch_size),
            0.05,
            0.9,
        )
    except RuntimeError as err:
        if dev_mod.is_oom(err):
            raise
        raise _wrap_shape_errors(pkg, err) from err
    finally:
        net.to("cpu")

    if card.task in ("segment", "detect"):
        from .postprocess import lesions_from_mask, to_study_grid

        yield Progress(card.name, 0.92, "connected components")
        mask, prob = to_study_grid(result, model_affine, study.affine, study.shape, card.outputs.threshold)
        lesions, label_map = lesions_from_mask(
            mask,
            prob,
            study.affine,
            min_volume_ml=card.outputs.min_lesion_ml,
            first_id=first_id,
            who=who,
            source=who,
        )
        if card.task == "detect":
            for lesion in lesions:
                lesion.label = 0
        else:
            labels = label_map
    else:
        from .uncertainty import summarise

        probs, method = result
        p, iv = summarise(probs, card.outputs.classes)
        pred = CasePrediction(
            target=card.target,
            probabilities=p,
            intervals=iv if len(probs) > 1 else {},
            model=card.label,
            method=method if method != "none" else "single pass",
            display_names=dict(card.outputs.display_names),
        )
    run = ModelRun(
        name=card.name,
        version=card.version,
        task=card.task,
        target=card.target,
        device=report.device,
        seconds=round(time.perf_counter() - start, 3),
        demo=card.demo,
        notes=list(report.messages),
    )
    yield Progress(card.name, 1.0, report.message)
    return lesions, labels, pred, run


def fill_curve_types(findings: Findings, study: Study) -> None:
    """Give each lesion without one its curve type: the mean curve of its mask (or box) on the study.

    Why here: the index lesion is chosen by its curve first (:func:`.preprocess.index_lesion`),
    and the reader sees each lesion's curve type in the findings table and the report. A study
    whose kinetics cannot be measured (one phase, no usable times) leaves it unknown.
    """
    from ..errors import BreastMRIError
    from ..kinetics.maps import curve

    for les in findings.lesions:
        if les.curve_type is not None:
            continue
        try:
            les.curve_type = curve(study, findings.lesion_region(les)).curve_type
        except (BreastMRIError, ValueError):
            continue


def lesion_roi_centre(findings: Findings, study: Study) -> tuple[np.ndarray | None, str]:
    """The index lesion's centre (world LPS mm) for region-reading models, and a note naming it.

    The same rule serves analyze and the explanations (which must read the same region): the
    largest of the lesions with the most suspicious curve, nobody having rejected it
    (:func:`.preprocess.index_lesion`). With no lesion the centre is None and the note says why.
    """
    from .preprocess import box_centre_world, index_lesion

    fill_curve_types(findings, study)
    lesion = index_lesion(findings.lesions)
    if lesion is None:
        return None, (
            "it reads the region around the index lesion and no lesion was found; run a lesion "
            "detector first or add the lesion by hand."
        )
    return box_centre_world(lesion.bbox, study.affine), f"lesion {lesion.id} ({_why_index(findings, lesion)})"


def _why_index(findings: Findings, lesion: Lesion) -> str:
    """'the largest', or why a smaller lesion was chosen (its curve), for the run's notes."""
    kept = [les for les in findings.lesions if les.status != "rejected" and les is not lesion]
    if all(float(les.volume_ml or 0.0) <= float(lesion.volume_ml or 0.0) for les in kept):
        return "the largest"
    return f"the largest with a {lesion.curve_type} curve; larger lesions have less suspicious curves"


def _roi_text(pkg: ModelPackage) -> str:
    size = pkg.card.inputs.roi["size_mm"] if pkg.card.inputs.roi else []
    return " x ".join(f"{v:g}" for v in size) + " mm"


def _merge_labels(findings: Findings, labels: np.ndarray) -> None:
    """Add a package's label map; where an earlier package already labelled a voxel, it keeps it."""
    if findings.label_mask is None:
        findings.label_mask = labels.astype(np.int32)
    else:
        free = findings.label_mask == 0
        findings.label_mask[free] = labels[free]


def analyze(
    study: Study,
    packages: Sequence[Any],
    *,
    device: str | torch.device | None = None,
    follow_up: Study | None = None,
    explain: str | Sequence[str] | bool | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, Findings]:
    """Run ``packages`` (ModelPackage, folder, zip or registry name) on ``study``; return Findings.

    A package that does not fit the study (missing phases, pair model without follow-up,
    interactive) is skipped with a warning when others can run; when none can, the first
    :class:`IncompatibleModel` is raised. ``explain`` ("gradcam", a list of methods, or True)
    adds heatmaps through ``napari_breastmri.explain.explain_study`` when that is installed.
    """
    pkgs = _open(packages)
    dev = dev_mod.pick_device(device)
    from ..io.findings_json import study_source_record

    # where the study came from, so an export of this analysis can reload it without --study
    findings = Findings(
        shape=study.shape,
        affine=np.array(study.affine),
        study_uid=study.study_uid,
        study_source=study_source_record(study),
    )
    findings.device = str(dev)
    runnable: list[ModelPackage] = []
    problems: list[IncompatibleModel] = []
    for pkg in pkgs:
        if pkg.card.task == "interactive-segment":
            findings.warnings.append(
                f"{pkg.label} is interactive (needs clicks in the viewer); skipped by analyze."
            )
        elif pkg.card.needs_follow_up and follow_up is None:
            err = IncompatibleModel(
                f"Model {pkg.label} compares baseline and follow-up exams but no follow-up was given; skipped."
            )
            problems.append(err)
            findings.warnings.append(str(err))
        else:
            runnable.append(pkg)
    if not runnable and problems:
        raise problems[0]
    # lesion finders first: models that read the index lesion's region need their lesions
    runnable.sort(key=lambda p: 0 if p.card.task in ("segment", "detect") else 1)
    n = max(1, len(runnable))
    span = 0.8 if explain else 1.0
    next_id = 1
    for k, pkg in enumerate(runnable):
        _check_cancel(should_cancel)
        centre = None
        if pkg.card.needs_lesion:
            centre, note = lesion_roi_centre(findings, study)
            if centre is None:
                problems.append(IncompatibleModel(f"Model {pkg.label} was not run: {note}"))
                findings.warnings.append(str(problems[-1]))
                continue
        try:
            lesions, labels, pred, run = yield from prog.scaled(
                run_package(
                    pkg,
                    study,
                    device=dev,
                    follow_up=follow_up,
                    should_cancel=should_cancel,
                    first_id=next_id,
                    roi_centre=centre,
                ),
                span * k / n,
                span * (k + 1) / n,
            )
        except IncompatibleModel as err:
            if len(runnable) == 1:
                raise
            findings.warnings.append(str(err))
            continue
        if centre is not None:
            run.notes.append(f"read the {_roi_text(pkg)} region around {note}")
        findings.lesions.extend(lesions)
        next_id += len(lesions)
        if labels is not None:
            _merge_labels(findings, labels)
        if pred is not None:
            # two models of one target (pCR from one exam and from the pair) must both be kept
            key = (
                pred.target
                if pred.target not in findings.case_predictions
                else f"{pred.target}@{pkg.card.name}"
            )
            findings.case_predictions[key] = pred
        findings.models.append(run)
    if not findings.models and problems:  # nothing could run: say why rather than return nothing
        raise problems[-1]
    fill_curve_types(findings, study)
    if findings.models:
        findings.device = ", ".join(sorted({m.device for m in findings.models}))
    if explain:
        yield from _explain(study, runnable, findings, explain, should_cancel, dev, follow_up)
    yield Progress("analyze", 1.0, "done")
    return findings


def _explain(
    study: Study,
    pkgs: Sequence[ModelPackage],
    findings: Findings,
    explain: str | Sequence[str] | bool,
    should_cancel: Callable[[], bool] | None,
    device: torch.device | None = None,
    follow_up: Study | None = None,
) -> Generator[Progress, None, None]:
    """Heatmaps for packages that name a CAM layer, through the explain area's explain_study."""
    try:
        from ..explain import explain_study  # type: ignore[attr-defined]
    except ImportError:
        findings.warnings.append(
            "Heatmaps were requested but napari_breastmri.explain.explain_study is not available."
        )
        return
    methods = ["gradcam"] if explain is True else [explain] if isinstance(explain, str) else list(explain)
    todo = [(p, m) for p in pkgs if p.card.cam.target_layer for m in methods]
    for i, (pkg, method) in enumerate(todo):
        _check_cancel(should_cancel)
        lo, hi = 0.8 + 0.2 * i / len(todo), 0.8 + 0.2 * (i + 1) / len(todo)
        try:
            heatmap = yield from prog.scaled(
                explain_study(study, pkg, findings, method=method, device=device, follow_up=follow_up),
                lo,
                hi,
            )
        except Cancelled:
            raise
        except BreastMRIError as err:  # a heatmap is an extra: its failure must not cost the findings
            findings.warnings.append(f"No {method} heatmap for {pkg.label}: {err}")
            continue
        if heatmap is not None:
            findings.heatmaps.append(heatmap)
