"""Training data: phantom cohorts, public layouts and saved corrections, as model-grid samples.

Why one module: every source (the synthetic phantom, a MAMA-MIA / nnU-Net style folder with a
clinical CSV, a Duke-style box CSV, corrections saved from the viewer) is first turned into a
:class:`RawCase` (a Study plus what is known about it), and every RawCase becomes a
:class:`Sample` through :func:`make_sample`, which calls the *inference* preprocessing
(:func:`napari_breastmri.inference.preprocess.prepare_arrays`) with the package's card. So a
network is trained on exactly the tensors the pipeline will feed it.

Phantom cases are cached as ``.npz`` under a cache folder (never in the repository), keyed by the
preprocessing settings and a fingerprint of the phantom's output, so a changed phantom is regenerated.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BreastMRIError, UnsupportedInput
from ..geometry import resample_to_grid
from ..types import Progress, Study

if TYPE_CHECKING:
    from ..models.card import ModelCard

#: class names per case-level target (the phantom's truth uses the same names)
CLASSES: dict[str, list[str]] = {
    "subtype": ["luminal_a", "luminal_b", "her2_enriched", "triple_negative"],
    "pcr": ["no_pcr", "pcr"],
    "lymph_node": ["negative", "positive"],
    "screening": ["normal", "needs_review"],
}


@dataclass
class RawCase:
    """One case before preprocessing: the exam(s) and whatever truth the source knows."""

    case_id: str
    study: Study
    follow_up: Study | None = None
    #: case-level labels by target, class names from CLASSES (missing = unknown)
    labels: dict[str, str] = field(default_factory=dict)
    #: lesion label mask on the study grid (0 background), or None when only boxes are known
    label_mask: np.ndarray | None = None
    #: lesion boxes on the study grid [z0, y0, x0, z1, y1, x1], end exclusive
    boxes: list[list[int]] = field(default_factory=list)
    #: the index lesion's box (what region-reading classifiers are centred on); None = unknown
    index_box: list[int] | None = None

    def index_or_largest_box(self) -> list[int] | None:
        """The index lesion's box, else the largest known box (the reading convention)."""
        if self.index_box is not None:
            return self.index_box
        if not self.boxes:
            return None
        return max(self.boxes, key=lambda b: float(np.prod(np.subtract(b[3:], b[:3]))))


@dataclass
class Sample:
    """One case on the model grid, ready for a network (and, for evaluation, its study-grid truth)."""

    case_id: str
    x: np.ndarray  # (C, z, y, x) float32 (float16 when it comes from the cache, to save memory)
    affine: np.ndarray  # model grid affine
    label: int | None = None
    mask: np.ndarray | None = None  # (z, y, x) uint8 on the model grid
    study_affine: np.ndarray | None = None
    study_shape: tuple[int, int, int] | None = None
    truth_boxes: list[list[int]] = field(default_factory=list)
    truth_mask: np.ndarray | None = None  # (z, y, x) bool on the study grid, evaluation only


# ----------------------------------------------------------------------------------- preprocessing


def make_sample(raw: RawCase, card: ModelCard, *, keep_truth: bool = False) -> Sample:
    """Preprocess one case with the inference code and the card; masks go to the same grid."""
    from ..inference.preprocess import box_centre_world, prepare_arrays

    centre = None
    box = raw.index_or_largest_box() if card.needs_lesion else None
    if card.needs_lesion:
        # no lesion to centre on: read the middle of the study, and keep the case out of training
        if box is not None:
            centre = box_centre_world(box, raw.study.affine)
        else:
            centre = box_centre_world([0, 0, 0, *raw.study.shape], raw.study.affine)
    x, affine = prepare_arrays(card, raw.study, raw.follow_up, centre)
    label = None
    if card.task == "classify" and not (card.needs_lesion and box is None):
        name = raw.labels.get(card.target)
        label = card.outputs.classes.index(name) if name in card.outputs.classes else None
    mask = None
    fg = truth_foreground(raw)
    # classifiers get it too: an attention classifier learns where the lesion is from it
    if fg is not None:
        soft = resample_to_grid(fg.astype(np.float32), raw.study.affine, affine, x.shape[1:], order=1)
        mask = (soft >= 0.5).astype(np.uint8)
    return Sample(
        case_id=raw.case_id,
        x=x.astype(np.float32),
        affine=affine,
        label=label,
        mask=mask,
        study_affine=raw.study.affine,
        study_shape=raw.study.shape,
        truth_boxes=[list(map(int, b)) for b in raw.boxes],
        truth_mask=(fg > 0) if keep_truth and fg is not None else None,
    )


def truth_foreground(raw: RawCase) -> np.ndarray | None:
    """The lesion foreground on the study grid: the mask, else the boxes filled (weak labels)."""
    if raw.label_mask is not None:
        return np.asarray(raw.label_mask) > 0
    if raw.boxes:
        return boxes_to_mask(raw.boxes, raw.study.shape)
    return None


def boxes_to_mask(boxes: Iterable[Sequence[int]], shape: Sequence[int]) -> np.ndarray:
    """Fill boxes [z0, y0, x0, z1, y1, x1] (end exclusive) into a bool mask: box-level weak labels."""
    mask = np.zeros(tuple(shape), dtype=bool)
    for b in boxes:
        z0, y0, x0, z1, y1, x1 = (int(v) for v in b)
        mask[max(z0, 0) : z1, max(y0, 0) : y1, max(x0, 0) : x1] = True
    return mask


def mask_boxes(label_mask: np.ndarray) -> list[list[int]]:
    """Boxes of each labelled lesion (value i > 0) in a label mask, end exclusive."""
    from scipy import ndimage

    label_mask = np.asarray(label_mask)
    if label_mask.max() <= 1:
        label_mask, _ = ndimage.label(label_mask > 0)
    boxes = []
    for sl in ndimage.find_objects(label_mask.astype(np.int32)):
        if sl is not None:
            boxes.append([s.start for s in sl] + [s.stop for s in sl])
    return boxes


# ------------------------------------------------------------------------------------ the phantom


def phantom_case(seed: int, longitudinal: bool = False, **phantom_kwargs: Any) -> RawCase:
    """One synthetic case from :func:`napari_breastmri.phantom.generate_case`."""
    try:
        from ..phantom import generate_case
    except ImportError:  # the package may export it from its case module only
        from ..phantom.case import generate_case

    case = generate_case(int(seed), longitudinal=longitudinal, **phantom_kwargs)
    truth = case.truth
    labels = {k: str(v) for k, v in (truth.get("labels") or {}).items() if v is not None}
    lesions = truth.get("lesions", [])
    boxes = [list(map(int, les["bbox"])) for les in lesions]
    index = [les for les in lesions if les.get("role") == "index"]
    follow = case.follow_up.study if longitudinal and case.follow_up is not None else None
    return RawCase(
        case_id=str(truth.get("case_id", f"phantom-{seed}")),
        study=case.study,
        follow_up=follow,
        labels=labels,
        label_mask=np.asarray(case.label_mask),
        boxes=boxes,
        index_box=list(map(int, index[0]["bbox"])) if index else None,
    )


def default_cache_dir() -> Path:
    """Where phantom samples are cached (BREASTMRI_TRAIN_CACHE, else the user cache folder)."""
    env = os.environ.get("BREASTMRI_TRAIN_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("napari-breastmri")) / "training"


@functools.lru_cache(maxsize=1)
def phantom_fingerprint() -> str:
    """A hash of what the phantom *generates* (a tiny canary case), for the cache key.

    Why not a hash of its source: edits that do not change the output (imports, docs, figures)
    must not throw away an hour of cached cases, while any change to the pixels, the masks or
    the truth must.
    """
    case = phantom_case(0, longitudinal=True, shape=(16, 64, 64))
    digest = hashlib.sha256()
    for study in (case.study, case.follow_up):
        assert study is not None
        digest.update(np.ascontiguousarray(study.data).tobytes())
        digest.update(np.asarray(study.affine).tobytes())
    digest.update(np.ascontiguousarray(case.label_mask).tobytes())
    digest.update(json.dumps([case.labels, case.boxes], sort_keys=True).encode())
    return digest.hexdigest()[:12]


def _card_key(card: ModelCard, longitudinal: bool, phantom_kwargs: dict[str, Any]) -> str:
    i = card.inputs
    doc = {
        "channels": i.channels,
        "spacing": i.spacing_mm,
        "resize": i.resize_to,
        "roi": i.roi,
        "norm": i.normalisation,
        "orient": i.orientation,
        "long": longitudinal,
        "task": card.task != "classify",
        "format": 2,  # 2: classifier samples carry the lesion mask too
        "phantom": phantom_fingerprint(),
        "phantom_kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in phantom_kwargs.items()},
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def phantom_samples(
    seeds: Sequence[int],
    card: ModelCard,
    *,
    longitudinal: bool = False,
    keep_truth: bool = False,
    cache_dir: Path | None = None,
    phantom_kwargs: dict[str, Any] | None = None,
) -> Iterator[Sample]:
    """Samples of phantom seeds for one card (see :func:`phantom_sample_sets`)."""
    for sets in phantom_sample_sets(
        seeds, {"_": card}, longitudinal=longitudinal, keep_truth=keep_truth, cache_dir=cache_dir,
        phantom_kwargs=phantom_kwargs,
    ):  # fmt: skip
        yield sets["_"]


def phantom_sample_sets(
    seeds: Sequence[int],
    cards: dict[str, ModelCard],
    *,
    longitudinal: bool = False,
    keep_truth: bool = False,
    cache_dir: Path | None = None,
    phantom_kwargs: dict[str, Any] | None = None,
) -> Iterator[dict[str, Sample]]:
    """{card key -> Sample} per seed: each case is generated once for all cards, then cached.

    The cache (float16 inputs, one ``.npz`` per seed and card settings) makes a second training
    run, or another task on the same cases, skip the phantom. A follow-up exam is generated only
    when ``longitudinal`` and some card has ``pair:`` channels; the baseline exam is the same
    either way (the phantom draws the follow-up after the baseline), so single-exam caches are
    shared between the two. :func:`fill_phantom_cache` fills the cache in parallel beforehand.
    """
    phantom_kwargs = phantom_kwargs or {}
    folders = _cache_folders(cards, longitudinal, phantom_kwargs, cache_dir)
    need_follow = longitudinal and any(c.needs_follow_up for c in cards.values())
    for seed in seeds:
        out: dict[str, Sample] = {}
        for key, card in cards.items():
            path = folders[key] / f"{int(seed)}.npz"
            if path.is_file():
                try:
                    out[key] = _load_sample(path, card, keep_truth)
                except (OSError, ValueError, KeyError):
                    path.unlink(missing_ok=True)
        missing = [k for k in cards if k not in out]
        if missing:
            raw = phantom_case(seed, longitudinal=need_follow, **phantom_kwargs)
            for key in missing:
                sample = make_sample(raw, cards[key], keep_truth=True)
                _save_sample(folders[key] / f"{int(seed)}.npz", sample, raw.labels)
                sample.x = sample.x.astype(np.float16)
                if not keep_truth:
                    sample.truth_mask = None
                out[key] = sample
        yield out


def _fill_one(seed: int, cards: dict[str, ModelCard], folders: dict[str, Path], need_follow: bool,
              phantom_kwargs: dict[str, Any]) -> int:  # fmt: skip
    """Generate one phantom case and write the cache entries it lacks (runs in a worker process)."""
    missing = [k for k in cards if not (folders[k] / f"{int(seed)}.npz").is_file()]
    if missing:
        raw = phantom_case(seed, longitudinal=need_follow, **phantom_kwargs)
        for key in missing:
            sample = make_sample(raw, cards[key], keep_truth=True)
            _save_sample(folders[key] / f"{int(seed)}.npz", sample, raw.labels)
    return int(seed)


def _cache_folders(
    cards: dict[str, ModelCard], longitudinal: bool, phantom_kwargs: dict[str, Any], cache_dir: Path | None
) -> dict[str, Path]:
    root = cache_dir or default_cache_dir()
    folders = {}
    for key, card in cards.items():
        folders[key] = root / _card_key(card, longitudinal and card.needs_follow_up, phantom_kwargs)
        folders[key].mkdir(parents=True, exist_ok=True)
    return folders


def fill_phantom_cache(
    seeds: Sequence[int],
    cards: dict[str, ModelCard],
    *,
    longitudinal: bool = False,
    cache_dir: Path | None = None,
    phantom_kwargs: dict[str, Any] | None = None,
    workers: int = 2,
) -> Iterator[Progress]:
    """Generate the uncached phantom cases of ``seeds`` in ``workers`` processes (yields Progress).

    Why: the phantom is numpy-bound and single-threaded, so a 16-core machine fills a cohort
    about 16 times faster. The samples are then read from the cache in seed order by
    :func:`phantom_sample_sets`, so they are the same whatever the worker count. Spawned, not
    forked, workers: the parent may hold torch's thread pool, which a forked child can hang on.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    phantom_kwargs = phantom_kwargs or {}
    folders = _cache_folders(cards, longitudinal, phantom_kwargs, cache_dir)
    need_follow = longitudinal and any(c.needs_follow_up for c in cards.values())
    todo = [s for s in seeds if any(not (folders[k] / f"{int(s)}.npz").is_file() for k in cards)]
    if not todo:
        return
    n = len(todo)
    args = [(seed, cards, folders, need_follow, phantom_kwargs) for seed in todo]
    with ProcessPoolExecutor(max_workers=max(1, min(workers, n)), mp_context=mp.get_context("spawn")) as pool:
        for i, seed in enumerate(pool.map(_fill_one, *zip(*args))):
            yield Progress("phantom cases", (i + 1) / n, f"case {seed} ({i + 1}/{n})")


def _save_sample(path: Path, s: Sample, labels: dict[str, str]) -> None:
    from .._atomic import atomic_path

    arrays: dict[str, Any] = {
        "x": s.x.astype(np.float16),
        "affine": s.affine,
        "study_affine": s.study_affine,
        "study_shape": np.asarray(s.study_shape),
        "boxes": np.asarray(s.truth_boxes, dtype=np.int64).reshape(-1, 6),
        "meta": np.asarray(json.dumps({"case_id": s.case_id, "labels": labels})),
    }
    if s.mask is not None:
        arrays["mask"] = s.mask
    if s.truth_mask is not None:
        arrays["truth_mask"] = np.packbits(s.truth_mask.ravel())
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def _load_sample(path: Path, card: ModelCard, keep_truth: bool) -> Sample:
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        shape = tuple(int(v) for v in z["study_shape"])
        label = None
        if card.task == "classify":
            name = meta["labels"].get(card.target)
            label = card.outputs.classes.index(name) if name in card.outputs.classes else None
        truth_mask = None
        if keep_truth and "truth_mask" in z:
            truth_mask = np.unpackbits(z["truth_mask"])[: int(np.prod(shape))].reshape(shape).astype(bool)
        return Sample(
            case_id=meta["case_id"],
            x=z["x"],  # float16 in memory; loops convert what they feed the network
            affine=z["affine"],
            label=label,
            mask=z.get("mask", None),
            study_affine=z["study_affine"],
            study_shape=shape,  # type: ignore[arg-type]
            truth_boxes=[list(map(int, b)) for b in z["boxes"]],
            truth_mask=truth_mask,
        )


# ------------------------------------------------------------------------- public dataset layouts


def _norm_name(value: str) -> str:
    return re.sub(r"[\s\-/+]+", "_", str(value).strip().lower()).strip("_")


#: spellings seen in public clinical tables -> our class names
_ALIASES: dict[str, dict[str, str]] = {
    "subtype": {
        "luminal_a": "luminal_a",
        "lum_a": "luminal_a",
        "luminala": "luminal_a",
        "luminal_b": "luminal_b",
        "lum_b": "luminal_b",
        "luminalb": "luminal_b",
        "her2_enriched": "her2_enriched",
        "her2": "her2_enriched",
        "her2_pure": "her2_enriched",
        "triple_negative": "triple_negative",
        "tnbc": "triple_negative",
        "triple_neg": "triple_negative",
    },  # fmt: skip
    "pcr": {
        "1": "pcr",
        "1.0": "pcr",
        "pcr": "pcr",
        "yes": "pcr",
        "0": "no_pcr",
        "0.0": "no_pcr",
        "no_pcr": "no_pcr",
        "no": "no_pcr",
    },
    "lymph_node": {
        "1": "positive",
        "positive": "positive",
        "pos": "positive",
        "0": "negative",
        "negative": "negative",
        "neg": "negative",
    },
    "screening": {
        "normal": "normal",
        "0": "normal",
        "needs_review": "needs_review",
        "1": "needs_review",
        "abnormal": "needs_review",
    },
}
#: clinical CSV columns that hold each target (first match wins)
_COLUMNS: dict[str, tuple[str, ...]] = {
    "subtype": ("subtype", "tumor_subtype", "molecular_subtype"),
    "pcr": ("pcr", "pathologic_complete_response"),
    "lymph_node": ("lymph_node", "ln_status", "nodal_status", "lymph_node_status"),
    "screening": ("screening",),
}
_ID_COLUMNS = ("case_id", "patient_id", "case", "id", "subject_id")


def read_clinical_csv(path: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """{case id (lower case) -> {target: class name}} from a clinical table (MAMA-MIA style).

    Values are mapped to our class names (``1``/``pcr`` -> "pcr", ``her2_pure`` ->
    "her2_enriched" ...); values we cannot map are left out rather than guessed.
    """
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    columns = {_norm_name(c): c for c in rows[0]}
    id_col = next((columns[c] for c in _ID_COLUMNS if c in columns), None)
    if id_col is None:
        raise UnsupportedInput(
            f"Clinical table {path} has no case id column; name one of {list(_ID_COLUMNS)} (columns: {list(rows[0])})."
        )
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        labels = {}
        for target, names in _COLUMNS.items():
            col = next((columns[c] for c in names if c in columns), None)
            if col is None or row.get(col) in (None, ""):
                continue
            value = _ALIASES[target].get(_norm_name(row[col]))
            if value is not None:
                labels[target] = value
        out[str(row[id_col]).strip().lower()] = labels
    return out


def _load_nifti_zyx(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    from ..geometry import from_nifti

    img = nib.load(str(path))
    return from_nifti(np.asarray(img.dataobj), img.affine)


def _find_label(root: Path, case_id: str) -> Path | None:
    for sub in ("labelsTr", "segmentations/expert", "segmentations", "labels"):
        for name in (f"{case_id}.nii.gz", f"{case_id.lower()}.nii.gz", f"{case_id}.nii"):
            if (root / sub / name).is_file():
                return root / sub / name
    return None


def nifti_case_files(root: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """{case id -> phase files _0000, _0001, ... in order} for nnU-Net or MAMA-MIA style folders.

    nnU-Net: ``imagesTr/<case>_0000.nii.gz``; MAMA-MIA: ``images/<case>/<case>_0000.nii.gz``.
    """
    root = Path(root)
    found: dict[str, list[Path]] = {}
    for sub in ("imagesTr", "imagesTs", "images"):
        for path in sorted((root / sub).rglob("*_0[0-9][0-9][0-9].nii*")) if (root / sub).is_dir() else []:
            m = re.match(r"(.+)_(\d{4})\.nii(\.gz)?$", path.name)
            if m:
                found.setdefault(m.group(1), []).append(path)
    return {k: sorted(v) for k, v in found.items()}


def read_nifti_folder(
    root: str | os.PathLike[str], clinical_csv: str | os.PathLike[str] | None = None
) -> Iterator[RawCase]:
    """RawCases from a MAMA-MIA / nnU-Net style folder (phases as _0000.. files, optional masks).

    Channel 0 is taken as "pre" and the following as "post1", "post2" ... (the MAMA-MIA order);
    times are unknown in these layouts, so they are set 60 s apart (only their order matters to
    the demo networks). A clinical CSV (``clinical_csv``, or ``clinical*.csv`` in the folder)
    supplies case-level labels.
    """
    root = Path(root)
    cases = nifti_case_files(root)
    if not cases:
        raise UnsupportedInput(
            f"No phase files like imagesTr/CASE_0000.nii.gz or images/CASE/CASE_0000.nii.gz under {root}; "
            "point at an nnU-Net or MAMA-MIA style dataset folder."
        )
    if clinical_csv is None:
        candidates = sorted(root.glob("clinical*.csv"))
        clinical_csv = candidates[0] if candidates else None
    clinical = read_clinical_csv(clinical_csv) if clinical_csv else {}
    for case_id, files in cases.items():
        vols = []
        affine = None
        for f in files:
            vol, aff = _load_nifti_zyx(f)
            if affine is not None and not np.allclose(aff, affine, atol=1e-3):
                vol = resample_to_grid(vol, aff, affine, vols[0].shape)
            affine = aff if affine is None else affine
            vols.append(np.asarray(vol, dtype=np.float32))
        labels = ["pre"] + [f"post{i}" for i in range(1, len(vols))]
        study = Study(
            data=np.stack(vols),
            affine=affine,
            times=np.arange(len(vols)) * 60.0,
            phase_labels=labels,
            source=str(files[0].parent),
            meta={"case_id": case_id, "layout": "nifti-folder"},
        )
        mask = None
        label_path = _find_label(root, case_id)
        if label_path is not None:
            m, maff = _load_nifti_zyx(label_path)
            if m.shape != study.shape or not np.allclose(maff, study.affine, atol=1e-3):
                m = resample_to_grid(m, maff, study.affine, study.shape, order=0)
            mask = np.asarray(m).astype(np.int16)
        yield RawCase(
            case_id=case_id,
            study=study,
            labels=clinical.get(case_id.lower(), {}),
            label_mask=mask,
            boxes=mask_boxes(mask) if mask is not None and mask.any() else [],
        )


def read_duke_boxes(path: str | os.PathLike[str], one_based: bool = True) -> dict[str, list[list[int]]]:
    """{patient id -> boxes [z0, y0, x0, z1, y1, x1] (end exclusive)} from a Duke-style box CSV.

    Columns (Duke-Breast-Cancer-MRI ``Annotation_Boxes.csv``): Patient ID, Start Row, End Row,
    Start Column, End Column, Start Slice, End Slice; rows are y, columns x, slices z, and the end
    values are inclusive. Duke numbers from 1 (``one_based=True``, the default), so a box
    (start, end) becomes [start - 1, end) in our 0-based, end-exclusive convention.
    """
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    need = ("patient_id", "start_row", "end_row", "start_column", "end_column", "start_slice", "end_slice")
    out: dict[str, list[list[int]]] = {}
    if not rows:
        return out
    columns = {_norm_name(c): c for c in rows[0]}
    missing = [c for c in need if c not in columns]
    if missing:
        raise UnsupportedInput(
            f"Box table {path} lacks column(s) {missing}; expected Duke's Annotation_Boxes.csv columns."
        )
    off = 1 if one_based else 0
    for row in rows:
        v = {k: int(float(row[columns[k]])) for k in need[1:]}
        box = [
            v["start_slice"] - off, v["start_row"] - off, v["start_column"] - off,
            v["end_slice"] - off + 1, v["end_row"] - off + 1, v["end_column"] - off + 1,
        ]  # fmt: skip
        out.setdefault(str(row[columns["patient_id"]]).strip(), []).append(box)
    return out


def read_duke_folder(
    root: str | os.PathLike[str], boxes_csv: str | os.PathLike[str], one_based: bool = True
) -> Iterator[RawCase]:
    """RawCases for the patients in a Duke box CSV, each loaded from ``root/<Patient ID>``.

    Studies load with :func:`napari_breastmri.io.load_study` (DICOM or NIfTI); the boxes become
    box-filled weak masks for segmentation training.
    """
    from ..io import load_study

    root = Path(root)
    for patient, boxes in read_duke_boxes(boxes_csv, one_based=one_based).items():
        folder = root / patient
        if not folder.exists():
            continue
        study = load_study(folder)
        yield RawCase(case_id=patient, study=study, boxes=boxes)


# --------------------------------------------------------------------------- viewer corrections


def read_corrections(study: Study, store: str | os.PathLike[str], accepted_only: bool = True) -> RawCase:
    """A RawCase from corrections saved in the viewer (for fine-tuning a package on them).

    ``store`` is an annotation store folder or file written by
    :mod:`napari_breastmri.annotations` (or a findings.json exported from it). Lesions a human
    rejected are dropped; with ``accepted_only`` model proposals nobody confirmed are dropped too.
    The corrected label mask is used when the store has one, otherwise the kept boxes.
    """
    findings = _load_correction_findings(study, Path(store))
    keep = []
    for les in findings.lesions:
        if les.status == "rejected":
            continue
        if accepted_only and les.status == "proposed":
            continue
        keep.append(les)
    mask = None
    if findings.label_mask is not None:
        kept_labels = [les.label for les in keep if les.label]
        mask = np.where(np.isin(findings.label_mask, kept_labels), findings.label_mask, 0).astype(np.int16)
        if not mask.any():
            mask = None
    labels = {t: p.top_class for t, p in findings.case_predictions.items() if t in CLASSES}
    return RawCase(
        case_id=str(study.meta.get("case_id") or study.study_uid or Path(store).stem),
        study=study,
        labels=labels,
        label_mask=mask,
        boxes=[list(map(int, les.bbox)) for les in keep],
    )


def _load_correction_findings(study: Study, store: Path):
    """The Findings of a saved annotation session (its store root folder), or a findings.json."""
    if store.suffix == ".json":
        from ..io.findings_json import read_findings_json

        return read_findings_json(store)
    from ..annotations import AnnotationSession, AnnotationStore

    if not study.study_uid:
        raise BreastMRIError("The study has no StudyInstanceUID, so its saved corrections cannot be found.")
    saved = AnnotationStore(store, study.study_uid)
    session = AnnotationSession.restore(saved, study.shape, study.affine, autosave_s=0)
    if session is None:
        raise BreastMRIError(
            f"No saved corrections for this study under {store}; correct the findings in the viewer first "
            "(they autosave), or give the findings.json exported from it."
        )
    findings = session.to_findings(include_rejected=True)
    session.store = None  # read-only use: closing must not write into the annotator's folder
    session.close()
    return findings
