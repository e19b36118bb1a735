"""Exports round-trip: NIfTI, Duke CSV, findings.json, DICOM SEG (every source layout) and SR."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from napari_breastmri import progress
from napari_breastmri.errors import ExportError
from napari_breastmri.io import export
from napari_breastmri.types import DEMO_LABEL, CasePrediction, Findings, Lesion, ModelRun, Study

SHAPE = (10, 32, 36)


def make_study(source: str = "", study_uid: str = "") -> Study:
    """A small oblique 3-phase study: the export must not assume an axis-aligned grid."""
    rng = np.random.default_rng(7)
    c, s = np.cos(0.3), np.sin(0.3)
    affine = np.eye(4)
    affine[:3, 0] = [0.0, 2.5 * s, 2.5 * c]
    affine[:3, 1] = [0.0, 1.2 * c, -1.2 * s]
    affine[:3, 2] = [1.1, 0.0, 0.0]
    affine[:3, 3] = [-30.0, -40.0, 10.0]
    data = (rng.random((3, *SHAPE)) * 100 + 50).astype(np.float32)
    return Study(
        data=data,
        affine=affine,
        times=np.array([0.0, 70.0, 140.0]),
        phase_labels=["pre", "post1", "post2"],
        source=source,
        study_uid=study_uid,
        meta={"case_id": "case_001"},
    )


def make_findings(study: Study) -> Findings:
    mask = np.zeros(study.shape, np.int16)
    mask[3:6, 10:15, 10:16] = 1
    mask[6:9, 20:28, 22:30] = 2
    mask[1:3, 2:5, 2:5] = 4  # a lesion the reader rejected: must not leave the program
    lesions = [
        Lesion(
            id=1,
            bbox=[3, 10, 10, 6, 15, 16],
            score=0.91,
            label=1,
            volume_ml=0.36,
            diameters_mm=[7.5, 5.0, 3.1],
            curve_type="washout",
            source="model:demo-lesion-seg@0.2",
            provenance=[{"who": "model:demo-lesion-seg@0.2", "what": "proposed", "when": ""}],
        ),
        Lesion(
            id=2,
            bbox=[6, 20, 22, 9, 28, 30],
            score=0.62,
            label=2,
            curve_type="persistent",
            status="accepted",
            source="model:demo-lesion-seg@0.2",
        ),
        Lesion(id=3, bbox=[1, 25, 2, 3, 30, 8], score=1.0, status="added", source="human"),
        Lesion(id=4, bbox=[1, 2, 2, 3, 5, 5], score=0.2, label=4, status="rejected", source="model:x@1"),
    ]
    return Findings(
        shape=study.shape,
        affine=study.affine,
        lesions=lesions,
        label_mask=mask,
        models=[ModelRun("demo-lesion-seg", "0.2", "segment", "lesion", "cpu", demo=True)],
        case_predictions={
            "subtype": CasePrediction(
                "subtype",
                {"luminal_a": 0.55, "luminal_b": 0.25, "her2_enriched": 0.1, "triple_negative": 0.1},
                {"luminal_a": (0.4, 0.7)},
                model="demo-subtype@0.3",
            )
        },
    )


def exported_labels(findings: Findings) -> np.ndarray:
    """The label mask as a SEG stores it: accepted lesions with masks renumbered 1..n."""
    out = np.zeros(findings.shape, np.int16)
    numbered = [
        les for les in export.exported_lesions(findings) if export.lesion_mask(findings, les) is not None
    ]
    for number, les in enumerate(numbered, start=1):
        out[findings.label_mask == les.label] = number
    return out


def dicom_source(tmp_path: Path, layout: str) -> Study:
    """The test study written as DICOM in ``layout`` and described as if loaded from there."""
    from napari_breastmri.io.dicom_write import write_study_dicom

    study = make_study()
    folder = tmp_path / f"src_{layout}"
    files = write_study_dicom(study, folder, layout=layout, uid_root_seed="export-test")
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    series = sorted({str(pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID) for f in files})
    return Study(
        data=study.data,
        affine=study.affine,
        times=study.times,
        phase_labels=study.phase_labels,
        source=str(folder),
        study_uid=str(first.StudyInstanceUID),
        series_uids=series,
        meta=study.meta,
    )


def test_nifti_label_mask_on_source_geometry(tmp_path: Path) -> None:
    from napari_breastmri.io.nifti import load_volume

    study = make_study()
    findings = make_findings(study)
    (path,) = export.export_nifti(findings, tmp_path)
    mask, affine = load_volume(path)
    assert np.array_equal(mask, np.where(findings.label_mask == 4, 0, findings.label_mask))
    np.testing.assert_allclose(affine, study.affine, atol=1e-4)


def test_duke_csv_round_trip_skips_rejected(tmp_path: Path) -> None:
    findings = make_findings(make_study())
    path = export.export_csv(findings, tmp_path / "boxes.csv", case_id="Breast_MRI_001")
    assert export.read_duke_csv(path) == [les.bbox for les in findings.lesions if les.status != "rejected"]
    first = path.read_text().splitlines()[1].split(",")
    # Duke convention: 1-based inclusive rows (y), columns (x), slices (z).
    assert first[:7] == ["Breast_MRI_001", "11", "15", "11", "16", "4", "6"]


def test_json_round_trip(tmp_path: Path) -> None:
    from napari_breastmri.io.findings_json import read_findings_json

    findings = make_findings(make_study())
    files = export.export_json(findings, tmp_path)
    assert {p.name for p in files} == {"findings.json", "label_mask.nii.gz"}
    back = read_findings_json(tmp_path / "findings.json")
    assert [les.bbox for les in back.lesions] == [les.bbox for les in findings.lesions]
    assert back.case_predictions["subtype"].top_class == "luminal_a"
    assert "synthetic demo" in json.loads((tmp_path / "findings.json").read_text())["disclaimer"]


@pytest.mark.parametrize("layout", ["series-per-phase", "single-series", "enhanced"])
def test_seg_reads_back_on_the_same_grid(tmp_path: Path, layout: str) -> None:
    import highdicom as hd

    study = dicom_source(tmp_path, layout)
    findings = make_findings(study)
    source = export.find_source_images(study)
    assert source is not None and source.multiframe == (layout == "enhanced")
    files = export.export_seg(study, findings, tmp_path / "out")
    assert [p.name for p in files] == ["seg.dcm"]  # the study's own DICOM is referenced, none written
    labels, names = export.read_seg(files[0], study.shape, study.affine)
    assert np.array_equal(labels, exported_labels(findings))
    assert names == ["Lesion 1", "Lesion 2"]
    seg = hd.seg.segread(files[0])
    assert str(seg.StudyInstanceUID) == study.study_uid
    referenced = {
        str(item.ReferencedSOPInstanceUID)
        for s in seg.ReferencedSeriesSequence
        for item in s.ReferencedInstanceSequence
    }
    source_uids = {str(ds.SOPInstanceUID) for ds in source.datasets}
    assert referenced and referenced <= source_uids
    descriptions = [str(item.SegmentDescription) for item in seg.SegmentSequence]
    assert "washout" in descriptions[0] and "demo-lesion-seg" in descriptions[0]
    algo = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algo.AlgorithmName, algo.AlgorithmVersion) == ("demo-lesion-seg", "0.2")


def test_seg_of_in_memory_study_writes_its_source(tmp_path: Path) -> None:
    study = make_study()  # no DICOM behind it
    findings = make_findings(study)
    files = export.export_seg(study, findings, tmp_path)
    seg_path = tmp_path / "seg.dcm"
    assert seg_path in files and any("source_dicom" in p.parts for p in files)
    labels, _ = export.read_seg(seg_path, study.shape, study.affine)
    assert np.array_equal(labels, exported_labels(findings))


def _sr_items(ds) -> list:
    out = []
    for item in getattr(ds, "ContentSequence", []):
        out.append(item)
        out.extend(_sr_items(item))
    return out


def test_sr_holds_measurements_curve_and_model(tmp_path: Path) -> None:
    study = dicom_source(tmp_path, "series-per-phase")
    findings = make_findings(study)
    files = progress.run(export.export_findings(study, findings, tmp_path / "out", ["sr", "seg"]))
    sr = pydicom.dcmread(files["sr"][-1])
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    items = _sr_items(sr)
    nums = {
        (it.ConceptNameCodeSequence[0].CodeMeaning, round(float(it.MeasuredValueSequence[0].NumericValue), 3))
        for it in items
        if it.ValueType == "NUM"
    }
    assert ("Volume", 0.36) in nums
    assert ("Major Axis", 7.5) in nums and ("Minor Axis", 5.0) in nums
    assert ("Lesion detection probability", 0.91) in nums
    assert ("Probability of luminal_a (subtype)", 0.55) in nums
    codes = {
        (it.ConceptNameCodeSequence[0].CodeMeaning, it.ConceptCodeSequence[0].CodeMeaning)
        for it in items
        if it.ValueType == "CODE"
    }
    assert ("Kinetic curve type", "Washout") in codes
    texts = {
        (it.ConceptNameCodeSequence[0].CodeMeaning, it.TextValue) for it in items if it.ValueType == "TEXT"
    }
    assert ("Algorithm Name", "demo-lesion-seg") in texts and ("Algorithm Version", "0.2") in texts
    # lesions with a mask point at the SEG written beside it; the box-only one is drawn on its slices
    seg_uid = pydicom.dcmread(tmp_path / "out" / "seg.dcm", stop_before_pixels=True).SOPInstanceUID
    refs = [
        it
        for it in items
        if it.ValueType == "IMAGE" and it.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == seg_uid
    ]
    assert len(refs) == 2
    scoords = [it for it in items if it.ValueType == "SCOORD"]
    assert len(scoords) == 2  # lesion 3 spans slices 1 and 2
    # the rejected lesion is not reported
    trackers = {
        it.TextValue
        for it in items
        if it.ValueType == "TEXT" and it.ConceptNameCodeSequence[0].CodeValue == "112039"
    }
    assert trackers == {"lesion-1", "lesion-2", "lesion-3", "case-subtype"}


def test_seg_needs_a_mask(tmp_path: Path) -> None:
    study = make_study()
    findings = make_findings(study)
    findings.label_mask = None
    with pytest.raises(ExportError, match="No lesion has a mask"):
        export.export_seg(study, findings, tmp_path)
    assert not (tmp_path / "seg.dcm").exists()


def test_seg_refuses_findings_of_another_grid(tmp_path: Path) -> None:
    study = make_study()
    other = Findings(shape=(4, 4, 4), affine=np.eye(4), label_mask=np.ones((4, 4, 4), np.int16))
    with pytest.raises(ExportError, match="not the study grid"):
        export.build_seg(study, other, export.SourceImages([]))


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = dicom_source(tmp_path, "series-per-phase")
    findings = make_findings(study)

    def broken_save(self, *args, **kwargs):
        Path(args[0]).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pydicom.Dataset, "save_as", broken_save)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        export.export_seg(study, findings, out)
    assert list(out.iterdir()) == []


def test_unknown_format_and_seg_without_study(tmp_path: Path) -> None:
    findings = make_findings(make_study())
    with pytest.raises(ExportError, match="Unknown export format"):
        progress.run(export.export_findings(None, findings, tmp_path, ["png"]))
    with pytest.raises(ExportError, match="need the source study"):
        progress.run(export.export_findings(None, findings, tmp_path, ["seg"]))


def test_findings_from_truth() -> None:
    study = make_study()
    mask = np.zeros(study.shape, np.int16)
    mask[2:4, 5:9, 5:9] = 1
    truth = {"lesions": [{"id": 1, "bbox": [2, 5, 5, 4, 9, 9], "curve_type": "plateau", "malignant": True}]}
    findings = export.findings_from_truth(study, truth, mask)
    (les,) = findings.lesions
    assert les.label == 1 and les.curve_type == "plateau" and les.extra["malignant"] is True
    assert les.volume_ml == pytest.approx(32 * study.voxel_volume_ml)
    with pytest.raises(ExportError, match="no ground truth"):
        export.findings_from_truth(make_study())


@pytest.mark.parametrize("layout", ["series-per-phase", "enhanced"])
def test_seg_of_a_study_loaded_by_load_study(tmp_path: Path, layout: str) -> None:
    """The reader's Study (source "DICOM <folder>") leads the export back to the same instances."""
    from napari_breastmri.io import load_study
    from napari_breastmri.io.dicom_write import write_study_dicom

    write_study_dicom(make_study(), tmp_path / "dicom", layout=layout, uid_root_seed="loaded")
    study = load_study(tmp_path / "dicom")
    if layout == "enhanced":  # what the reader says for a phantom: the demo label before "DICOM <path>"
        study.source = f"{DEMO_LABEL}: DICOM {tmp_path / 'dicom'}"
    findings = make_findings(study)
    files = export.export_seg(study, findings, tmp_path / "out")
    assert [p.name for p in files] == ["seg.dcm"]
    labels, _ = export.read_seg(files[0], study.shape, study.affine)
    assert np.array_equal(labels, exported_labels(findings))


def test_one_segment_seg_and_sr(tmp_path: Path) -> None:
    """A one-segment SEG keeps its segment identification in the shared groups: read and cite it."""
    study = make_study()
    findings = make_findings(study)
    findings.lesions = findings.lesions[:1]
    files = progress.run(export.export_findings(study, findings, tmp_path, ["seg", "sr"]))
    labels, names = export.read_seg(files["seg"][-1], study.shape, study.affine)
    assert names == ["Lesion 1"] and np.array_equal(labels, (findings.label_mask == 1).astype(np.int16))
    items = _sr_items(pydicom.dcmread(files["sr"][-1]))
    segs = [
        it
        for it in items
        if it.ValueType == "IMAGE" and "ReferencedSegmentNumber" in it.ReferencedSOPSequence[0]
    ]
    assert [int(it.ReferencedSOPSequence[0].ReferencedSegmentNumber) for it in segs] == [1]


def test_export_cli_on_a_phantom_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`breastmri export CASE --from-truth` writes the phantom truth in every format, then a findings
    folder round-trips through the CLI too."""
    from napari_breastmri.cli import main
    from napari_breastmri.io import load_study
    from napari_breastmri.phantom import generate_case, write_case

    case_dir = write_case(generate_case(3, shape=(12, 40, 40)), tmp_path / "cases")
    assert main(["export", str(case_dir), "--from-truth", "--out", str(tmp_path / "out")]) == 0
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"label_mask.nii.gz", "seg.dcm", "sr.dcm", "boxes.csv", "findings.json"} <= names
    assert "source_dicom" not in names  # the case's own DICOM is referenced
    study = load_study(case_dir)
    truth, mask = export.load_case_truth(case_dir, study)
    labels, _ = export.read_seg(tmp_path / "out" / "seg.dcm", study.shape, study.affine)
    assert (labels > 0).sum() == (mask > 0).sum() > 0
    assert export.read_duke_csv(tmp_path / "out" / "boxes.csv") == [les["bbox"] for les in truth["lesions"]]
    # a findings folder (what analyze writes) exported again, with the study named explicitly
    rc = main(
        [
            "export",
            str(tmp_path / "out"),
            "--format",
            "seg",
            "--study",
            str(case_dir),
            "--out",
            str(tmp_path / "again"),
        ]
    )
    assert rc == 0 and (tmp_path / "again" / "seg.dcm").is_file()
    # without --study the case is found again from findings.json's study_source ...
    rc = main(["export", str(tmp_path / "out"), "--format", "seg", "--out", str(tmp_path / "found")])
    assert rc == 0 and (tmp_path / "found" / "seg.dcm").is_file()
    assert not (tmp_path / "found" / "source_dicom").exists()  # the case's own DICOM is referenced
    capsys.readouterr()
    # ... and once the case has moved away, SEG is refused with a clear message (exit code 2, one line)
    case_dir.rename(tmp_path / "moved")
    rc = main(["export", str(tmp_path / "out"), "--format", "seg", "--out", str(tmp_path / "refused")])
    err = capsys.readouterr().err
    assert rc == 2 and "no longer at" in err and "--study PATH" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "refused" / "seg.dcm").exists()


def test_export_cli_case_without_models_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from napari_breastmri.cli import main
    from napari_breastmri.io.dicom_write import write_study_dicom
    from napari_breastmri.models import registry

    write_study_dicom(make_study(), tmp_path / "case", uid_root_seed="no-models")
    monkeypatch.setattr(registry, "available", lambda include_broken=False: [])
    assert main(["export", str(tmp_path / "case"), "--out", str(tmp_path / "out")]) == 2
    assert "No model package is installed" in capsys.readouterr().err
