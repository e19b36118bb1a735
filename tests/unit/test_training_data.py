"""Training data readers: nnU-Net / MAMA-MIA folders with a clinical CSV, Duke box CSV, corrections."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_breastmri.errors import UnsupportedInput
from napari_breastmri.geometry import to_nifti
from napari_breastmri.training import data as D
from napari_breastmri.training.tasks import get_task
from napari_breastmri.types import Study

SHAPE = (8, 24, 24)
AFFINE = np.diag([2.0, 1.5, 1.5, 1.0])


def synthetic_phases(seed: int, lesion: tuple[int, int, int] = (4, 12, 10), radius: int = 3):
    """Three phases (pre, post1, post2) with one enhancing ball, and its label mask."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(SHAPE)
    dist = np.sqrt(
        ((zz - lesion[0]) * 2.0) ** 2 + ((yy - lesion[1]) * 1.5) ** 2 + ((xx - lesion[2]) * 1.5) ** 2
    )
    mask = (dist <= radius * 1.5).astype(np.int16)
    pre = 100 + rng.normal(0, 2, SHAPE)
    phases = [pre, pre + 80 * mask, pre + 60 * mask]
    return np.stack(phases).astype(np.float32), mask


def save_nifti(vol: np.ndarray, path: Path) -> None:
    data, aff = to_nifti(vol, AFFINE)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), aff), str(path))


def write_nnunet(root: Path, n: int = 3) -> None:
    for i in range(n):
        phases, mask = synthetic_phases(i)
        for p, vol in enumerate(phases):
            save_nifti(vol, root / "imagesTr" / f"case{i:03d}_{p:04d}.nii.gz")
        save_nifti(mask, root / "labelsTr" / f"case{i:03d}.nii.gz")


def test_nnunet_folder_with_clinical_csv(tmp_path: Path) -> None:
    write_nnunet(tmp_path)
    with open(tmp_path / "clinical.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "pcr", "tumor_subtype", "age"])
        w.writerow(["case000", "1", "triple_negative", "50"])
        w.writerow(["case001", "0", "HER2-enriched", "61"])
        w.writerow(["case002", "", "something_odd", "44"])
    cases = sorted(D.read_nifti_folder(tmp_path), key=lambda c: c.case_id)
    assert [c.case_id for c in cases] == ["case000", "case001", "case002"]
    first = cases[0]
    assert first.study.phase_labels == ["pre", "post1", "post2"]
    assert first.study.shape == SHAPE
    np.testing.assert_allclose(first.study.affine, AFFINE, atol=1e-5)
    assert first.labels == {"pcr": "pcr", "subtype": "triple_negative"}
    assert cases[1].labels == {"pcr": "no_pcr", "subtype": "her2_enriched"}
    assert cases[2].labels == {}  # unmapped values are left out, not guessed
    assert first.label_mask is not None and first.label_mask.sum() > 0
    # the box of the ball around (4, 12, 10) with radius 3 mm-scaled voxels
    (box,) = first.boxes
    assert box[0] <= 4 < box[3] and box[1] <= 12 < box[4] and box[2] <= 10 < box[5]


def test_mama_mia_layout(tmp_path: Path) -> None:
    phases, mask = synthetic_phases(5)
    for p, vol in enumerate(phases):
        save_nifti(vol, tmp_path / "images" / "DUKE_001" / f"duke_001_{p:04d}.nii.gz")
    save_nifti(mask, tmp_path / "segmentations" / "expert" / "duke_001.nii.gz")
    (case,) = list(D.read_nifti_folder(tmp_path))
    assert case.case_id == "duke_001"
    assert case.label_mask is not None
    np.testing.assert_array_equal(case.label_mask, mask)
    np.testing.assert_allclose(case.study.data, phases, atol=1e-3)


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedInput, match="imagesTr"):
        list(D.read_nifti_folder(tmp_path))


def test_duke_boxes_are_one_based_inclusive(tmp_path: Path) -> None:
    path = tmp_path / "Annotation_Boxes.csv"
    path.write_text(
        "Patient ID,Start Row,End Row,Start Column,End Column,Start Slice,End Slice\n"
        "Breast_MRI_001,234,271,308,341,89,112\n"
        "Breast_MRI_001,1,2,3,4,5,6\n"
    )
    boxes = D.read_duke_boxes(path)
    assert boxes == {"Breast_MRI_001": [[88, 233, 307, 112, 271, 341], [4, 0, 2, 6, 2, 4]]}
    # and a mask filled from the boxes covers exactly the box volume
    mask = D.boxes_to_mask([[4, 0, 2, 6, 2, 4]], (10, 10, 10))
    assert mask.sum() == 2 * 2 * 2


def test_duke_boxes_agree_with_the_exporter(tmp_path: Path) -> None:
    from napari_breastmri.io.export import export_csv, read_duke_csv
    from napari_breastmri.types import Findings, Lesion

    findings = Findings(SHAPE, AFFINE, lesions=[Lesion(id=1, bbox=[1, 2, 3, 5, 9, 12], score=0.9)])
    path = tmp_path / "boxes.csv"
    export_csv(findings, path, case_id="P1")
    assert read_duke_csv(path) == [[1, 2, 3, 5, 9, 12]]
    assert D.read_duke_boxes(path) == {"P1": [[1, 2, 3, 5, 9, 12]]}


def test_make_sample_uses_the_inference_preprocessing(tmp_path: Path) -> None:
    from napari_breastmri.inference.preprocess import prepare_arrays

    phases, mask = synthetic_phases(1)
    study = Study(phases, AFFINE, np.array([0.0, 60, 120]), ["pre", "post1", "post2"])
    raw = D.RawCase("c1", study, labels={"subtype": "luminal_b"}, label_mask=mask, boxes=D.mask_boxes(mask))
    seg = get_task("seg")
    seg.spacing_mm = [4.0, 3.0, 3.0]
    card = seg.parsed_card()
    sample = D.make_sample(raw, card, keep_truth=True)
    x, aff = prepare_arrays(card, study)
    np.testing.assert_array_equal(sample.x, x)
    np.testing.assert_allclose(sample.affine, aff)
    assert sample.x.shape == (3, 4, 12, 12)
    assert sample.mask is not None and sample.mask.shape == (4, 12, 12) and sample.mask.sum() > 0
    assert sample.truth_mask is not None and sample.truth_mask.sum() == mask.sum()
    cls = get_task("subtype").parsed_card()
    s2 = D.make_sample(raw, cls)
    assert s2.label == 1 and s2.x.shape[1:] == tuple(cls.inputs.resize_to)
    assert s2.mask is not None and s2.mask.shape == s2.x.shape[1:]  # for the attention loss


def test_class_weights_balance_the_classes() -> None:
    from napari_breastmri.training.loops import class_weights

    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2])
    w = class_weights(labels, 4)
    per_class = [w[labels == k].sum() for k in range(3)]
    np.testing.assert_allclose(per_class, [1.0, 1.0, 1.0])


def test_corrections_from_a_saved_findings_json(tmp_path: Path) -> None:
    from napari_breastmri.io.findings_json import write_findings_json
    from napari_breastmri.types import CasePrediction, Findings, Lesion

    phases, _ = synthetic_phases(2)
    study = Study(phases, AFFINE, np.array([0.0, 60, 120]), ["pre", "post1", "post2"], meta={"case_id": "p7"})
    findings = Findings(
        SHAPE,
        AFFINE,
        lesions=[
            Lesion(id=1, bbox=[1, 1, 1, 3, 4, 4], score=0.9, status="accepted"),
            Lesion(id=2, bbox=[5, 5, 5, 7, 8, 8], score=0.8, status="rejected"),
            Lesion(id=3, bbox=[2, 10, 10, 4, 14, 14], score=0.0, status="added"),
            Lesion(id=4, bbox=[0, 20, 20, 2, 22, 22], score=0.6, status="proposed"),
        ],
        case_predictions={"pcr": CasePrediction("pcr", {"no_pcr": 0.2, "pcr": 0.8})},
    )
    store = tmp_path / "corrections.json"
    write_findings_json(findings, store)
    raw = D.read_corrections(study, store)
    assert raw.case_id == "p7"
    assert raw.boxes == [[1, 1, 1, 3, 4, 4], [2, 10, 10, 4, 14, 14]]
    assert raw.labels == {"pcr": "pcr"}
    fg = D.truth_foreground(raw)
    assert fg is not None and fg.sum() == 2 * 3 * 3 + 2 * 4 * 4
    with_proposals = D.read_corrections(study, store, accepted_only=False)
    assert len(with_proposals.boxes) == 3


def test_corrections_from_a_saved_annotation_session(tmp_path: Path) -> None:
    from napari_breastmri.annotations import AnnotationSession, AnnotationStore
    from napari_breastmri.types import Findings, Lesion

    phases, _ = synthetic_phases(3)
    study = Study(phases, AFFINE, np.array([0.0, 60, 120]), ["pre", "post1", "post2"], study_uid="1.2.3.4")
    proposed = Findings(
        SHAPE,
        AFFINE,
        lesions=[
            Lesion(id=1, bbox=[1, 1, 1, 3, 4, 4], score=0.9),
            Lesion(id=2, bbox=[5, 5, 5, 7, 8, 8], score=0.7),
        ],
    )
    session = AnnotationSession.for_study(
        study, proposed, store=AnnotationStore(tmp_path, study.study_uid), autosave_s=0
    )
    session.accept(1)
    session.reject(2)
    added = session.add_box([2, 10, 10, 4, 14, 14])
    session.close()
    raw = D.read_corrections(study, tmp_path)
    assert sorted(raw.boxes) == sorted([[1, 1, 1, 3, 4, 4], added.bbox])
    with pytest.raises(Exception, match="No saved corrections"):
        other = Study(phases, AFFINE, np.array([0.0, 60, 120]), ["pre", "post1", "post2"], study_uid="9.9")
        D.read_corrections(other, tmp_path)
