"""Export Findings in the formats the field uses: NIfTI masks, DICOM SEG and SR, a Duke box CSV, JSON.

Why these: NIfTI is what research pipelines (nnU-Net, MONAI, MAMA-MIA) read; DICOM SEG and a
TID 1500 SR are what a PACS and a viewer such as OHIF or 3D Slicer show next to the source series;
the Duke-style CSV is the box format of the largest public breast DCE-MRI cohort; findings.json
is our own lossless record. All of them describe the same lesions on the same study grid.

DICOM SEG and SR must reference the source instances. When the study was loaded from DICOM, the
headers are re-read (no pixels) and each slice of the study grid is matched to an instance by its
ImagePositionPatient. When the study has no DICOM source (NIfTI, an in-memory phantom), the study is
first written as DICOM beside the export (``source_dicom/``, with
:func:`napari_breastmri.io.dicom_write.write_study_dicom`) so that the SEG and SR reference real
instances that travel with them; the returned paths list those files too.

Every file appears whole or not at all (:mod:`napari_breastmri._atomic`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import _atomic
from ..errors import BreastMRIError, ExportError, StudySourceUnavailable
from ..geometry import world_to_voxel
from ..types import Findings, Lesion, Progress, Study

FORMATS: tuple[str, ...] = ("nifti", "seg", "sr", "csv", "json")
#: Private coding scheme for concepts that have no standard code (allowed by PS3.16 for "99" prefixes).
LOCAL_SCHEME = "99BREASTMRI"
MANUFACTURER = "napari-breastmri"
SEG_SERIES_NUMBER = 9001
SR_SERIES_NUMBER = 9002
#: Duke-Breast-Cancer-MRI Annotation_Boxes.csv columns (1-based, inclusive), then our extras.
DUKE_COLUMNS = [
    "Patient ID",
    "Start Row",
    "End Row",
    "Start Column",
    "End Column",
    "Start Slice",
    "End Slice",
]
EXTRA_COLUMNS = ["Lesion ID", "Score", "Status", "Curve Type", "Volume (ml)", "Source"]


def _software_version() -> str:
    try:
        from importlib.metadata import version

        return version("napari-breastmri")
    except Exception:  # not installed as a distribution (e.g. run from a source tree)
        return "0+unknown"


# --------------------------------------------------------------------------------------------
# which lesions, which masks
# --------------------------------------------------------------------------------------------


def exported_lesions(findings: Findings) -> list[Lesion]:
    """Lesions that leave the program: everything except those a reader rejected."""
    return [les for les in findings.lesions if les.status != "rejected"]


def lesion_mask(findings: Findings, lesion: Lesion) -> np.ndarray | None:
    """The lesion's boolean mask on the study grid, or None when it only has a box."""
    if findings.label_mask is None or lesion.label <= 0:
        return None
    mask = np.asarray(findings.label_mask) == lesion.label
    return mask if mask.any() else None


def _lesion_model(findings: Findings, lesion: Lesion) -> tuple[str, str]:
    """(name, version) of the model that proposed a lesion, or ("", "") when a human drew it."""
    for entry in lesion.provenance:
        who = str(entry.get("who", ""))
        if who.startswith("model:"):
            name, _, version = who[len("model:") :].partition("@")
            return name, version
    runs = {run.name: run for run in findings.models}
    name, _, version = lesion.source.removeprefix("model:").partition("@")
    if lesion.source.startswith("model:") or name in runs:
        return name, version or (runs[name].version if name in runs else "")
    return "", ""


def _lesion_description(findings: Findings, lesion: Lesion) -> str:
    """A short human text (DICOM LO, 64 chars): curve, volume, score, status, who proposed it."""
    name, version = _lesion_model(findings, lesion)
    parts = []
    if lesion.curve_type:
        parts.append(lesion.curve_type)
    if lesion.volume_ml is not None:
        parts.append(f"{lesion.volume_ml:.2f} ml")
    parts += [f"score {lesion.score:.2f}", lesion.status, f"{name} {version}".strip() if name else "reader"]
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# NIfTI, CSV, JSON
# --------------------------------------------------------------------------------------------


def export_nifti(findings: Findings, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write the label mask (and each heatmap with data) as NIfTI on the study geometry.

    The label mask keeps the lesion labels (lesion ``i`` has its ``Lesion.label``); rejected
    lesions are zeroed so the file says what the reader accepted.
    """
    from .nifti import save_volume

    out = Path(out_dir)
    written: list[Path] = []
    mask = np.zeros(findings.shape, dtype=np.int16)
    if findings.label_mask is not None:
        keep = [les.label for les in exported_lesions(findings) if les.label > 0]
        src = np.asarray(findings.label_mask)
        mask = np.where(np.isin(src, keep), src, 0).astype(np.int16)
    path = out / "label_mask.nii.gz"
    save_volume(mask, findings.affine, path)
    written.append(path)
    for i, hm in enumerate(findings.heatmaps):
        if hm.data is None or np.asarray(hm.data).ndim != 3 or np.asarray(hm.data).size == 0:
            continue
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"heatmap_{i}_{hm.method}_{hm.target}")
        hm_path = out / f"{name}.nii.gz"
        save_volume(np.asarray(hm.data, dtype=np.float32), hm.affine, hm_path)
        written.append(hm_path)
    return written


def duke_rows(findings: Findings, case_id: str = "") -> list[dict[str, Any]]:
    """One Duke-style row per exported lesion: 1-based inclusive rows (y), columns (x), slices (z)."""
    rows = []
    for les in exported_lesions(findings):
        z0, y0, x0, z1, y1, x1 = (int(v) for v in les.bbox)
        rows.append(
            {
                "Patient ID": case_id,
                "Start Row": y0 + 1,
                "End Row": y1,
                "Start Column": x0 + 1,
                "End Column": x1,
                "Start Slice": z0 + 1,
                "End Slice": z1,
                "Lesion ID": les.id,
                "Score": f"{les.score:.4f}",
                "Status": les.status,
                "Curve Type": les.curve_type or "",
                "Volume (ml)": "" if les.volume_ml is None else f"{les.volume_ml:.3f}",
                "Source": les.source,
            }
        )
    return rows


def export_csv(findings: Findings, path: str | os.PathLike[str], *, case_id: str = "") -> Path:
    """Write the boxes as a Duke-Breast-Cancer-MRI style CSV (plus our extra columns)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=DUKE_COLUMNS + EXTRA_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(duke_rows(findings, case_id))
    return _atomic.write_text(path, buf.getvalue())


def read_duke_csv(path: str | os.PathLike[str]) -> list[list[int]]:
    """Boxes [z0, y0, x0, z1, y1, x1] (0-based, end exclusive) back from a Duke-style CSV."""
    boxes = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            boxes.append(
                [
                    int(row["Start Slice"]) - 1,
                    int(row["Start Row"]) - 1,
                    int(row["Start Column"]) - 1,
                    int(row["End Slice"]),
                    int(row["End Row"]),
                    int(row["End Column"]),
                ]
            )
    return boxes


def export_json(
    findings: Findings, out_dir: str | os.PathLike[str], *, study: Study | None = None
) -> list[Path]:
    """findings.json with the label mask and heatmaps beside it as NIfTI (referenced by name).

    With ``study``, findings.json records it as ``study_source`` (replacing any older record: the
    study at hand is the one the export describes), so a later SEG/SR export can reload it.
    """
    from .findings_json import study_source_record, write_findings_json

    if study is not None:
        findings = replace(findings, study_source=study_source_record(study))

    out = Path(out_dir)
    files = export_nifti(findings, out)
    heatmap_files = {}
    hm_paths = iter(p for p in files if p.name.startswith("heatmap_"))
    for i, hm in enumerate(findings.heatmaps):
        if hm.data is not None and np.asarray(hm.data).ndim == 3 and np.asarray(hm.data).size:
            heatmap_files[i] = next(hm_paths).name
    files.append(write_findings_json(findings, out / "findings.json", heatmap_files=heatmap_files))
    return files


# --------------------------------------------------------------------------------------------
# DICOM source instances
# --------------------------------------------------------------------------------------------


@dataclass
class SourceImages:
    """The DICOM instances a SEG/SR references, matched to the study grid.

    ``datasets`` holds one single-frame dataset per z slice in z order, or exactly one
    multi-frame dataset whose frames are mapped to z by ``frame_z`` (1-based frame -> z).
    """

    datasets: list[Any]
    multiframe: bool = False
    frame_z: dict[int, int] = field(default_factory=dict)
    written_files: list[Path] = field(default_factory=list)

    @property
    def frame_of_reference_uid(self) -> str:
        return str(self.datasets[0].FrameOfReferenceUID)


def source_path_text(study: Study) -> str:
    """The path part of ``Study.source``: the DICOM reader writes "[<demo label>: ]DICOM <path>"."""
    text = str(study.source or "").strip()
    if "DICOM " in text:
        text = text.split("DICOM ", 1)[1].strip()
    return text


def _source_paths(study: Study) -> list[Path]:
    """The paths a study came from: ``meta["source_files"]`` or the path in ``Study.source``.

    A NIfTI or phantom study has no DICOM path at all, which is fine: then nothing is found and
    the caller writes the study as DICOM.
    """
    listed = study.meta.get("source_files") or study.meta.get("dicom_files") or study.meta.get("files")
    if listed:
        return [Path(p) for p in listed]
    for candidate in (str(study.source or "").strip(), source_path_text(study)):
        if candidate and Path(candidate).exists():
            return [Path(candidate)]
    return [Path(s) for s in source_path_text(study).split(os.pathsep) if s and Path(s).exists()]


def _candidate_files(study: Study) -> list[Path]:
    files: list[Path] = []
    for src in _source_paths(study):
        if src.is_file():
            files.append(src)
        elif src.is_dir():
            files.extend(sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith(".")))
    return files


def _read_headers(files: Iterable[Path], study: Study) -> list[Any]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    headers = []
    for path in files:
        if path.suffix.lower() in {".nii", ".gz", ".json", ".csv", ".txt", ".png", ".html", ".yaml"}:
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        if "Rows" not in ds or "SOPClassUID" not in ds:
            continue
        if study.study_uid and str(ds.get("StudyInstanceUID", "")) != study.study_uid:
            continue
        if study.series_uids and str(ds.get("SeriesInstanceUID", "")) not in study.series_uids:
            continue
        headers.append(ds)
    return headers


def _time_key(ds: Any) -> tuple:
    return (
        int(ds.get("TemporalPositionIdentifier", 0) or 0),
        str(ds.get("AcquisitionTime", "") or ""),
        int(ds.get("InstanceNumber", 0) or 0),
    )


def _z_of_position(study: Study, position: Sequence[float], tol: float = 0.05) -> int | None:
    z, y, x = world_to_voxel(study.affine, np.asarray(position, dtype=float))
    zi = int(round(z))
    if abs(z - zi) > tol or abs(y) > tol or abs(x) > tol or not 0 <= zi < study.shape[0]:
        return None
    return zi


def _match_single_frame(study: Study, headers: list[Any]) -> list[Any] | None:
    """One instance per z slice of the grid, from the first series that covers them all."""
    nz, ny, nx = study.shape
    by_series: dict[str, list[Any]] = {}
    for ds in headers:
        if int(ds.get("NumberOfFrames", 1) or 1) == 1 and "ImagePositionPatient" in ds:
            by_series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    order = [uid for uid in study.series_uids if uid in by_series] + [
        uid for uid in by_series if uid not in study.series_uids
    ]
    for uid in order:
        slots: dict[int, Any] = {}
        for ds in sorted(by_series[uid], key=_time_key):
            if (int(ds.Rows), int(ds.Columns)) != (ny, nx):
                continue
            zi = _z_of_position(study, ds.ImagePositionPatient)
            if zi is not None and zi not in slots:
                slots[zi] = ds
        if len(slots) == nz:
            return [slots[z] for z in range(nz)]
    return None


def _match_multiframe(study: Study, headers: list[Any]) -> tuple[Any, dict[int, int]] | None:
    """A multi-frame (enhanced) instance whose first temporal position covers every z slice."""
    nz = study.shape[0]
    for ds in headers:
        if int(ds.get("NumberOfFrames", 1) or 1) <= 1 or "PerFrameFunctionalGroupsSequence" not in ds:
            continue
        frame_z: dict[int, int] = {}
        seen: set[int] = set()
        for n, item in enumerate(ds.PerFrameFunctionalGroupsSequence, start=1):
            try:
                pos = item.PlanePositionSequence[0].ImagePositionPatient
            except (AttributeError, IndexError):
                continue
            zi = _z_of_position(study, pos)
            if zi is not None and zi not in seen:
                frame_z[n] = zi
                seen.add(zi)
        if len(seen) == nz:
            return ds, frame_z
    return None


def find_source_images(study: Study) -> SourceImages | None:
    """The study's own DICOM instances matched slice by slice, or None when it has none."""
    headers = _read_headers(_candidate_files(study), study)
    if not headers:
        return None
    single = _match_single_frame(study, headers)
    if single is not None:
        return SourceImages(single)
    multi = _match_multiframe(study, headers)
    if multi is not None:
        return SourceImages([multi[0]], multiframe=True, frame_z=multi[1])
    return None


def source_images_for(study: Study, out_dir: str | os.PathLike[str]) -> SourceImages:
    """Find the study's DICOM, or write it as DICOM under ``out_dir/source_dicom`` and use that."""
    found = find_source_images(study)
    if found is not None:
        return found
    try:
        from .dicom_write import write_study_dicom
    except ImportError as err:  # pragma: no cover - the io package ships it
        raise ExportError(
            "This study has no DICOM source and the DICOM writer is unavailable, so a SEG/SR cannot "
            "reference source images; export NIfTI or JSON instead."
        ) from err
    target = Path(out_dir) / "source_dicom"
    seed: object = study.study_uid or str(study.meta.get("case_id", "")) or "napari-breastmri"
    if study.meta.get("phantom_seed") is not None and study.meta.get("case_id"):
        from ..phantom.case import uid_root_seed

        # the UIDs 'breastmri phantom' writes this case with, which Study.study_uid already has: a
        # SEG of the in-memory phantom then belongs to the same study as the phantom's own DICOM
        seed = uid_root_seed(str(study.meta["case_id"]), int(study.meta["phantom_seed"]))
    files = [Path(p) for p in write_study_dicom(study, target, layout="series-per-phase", uid_root_seed=seed)]
    written = Study(
        data=study.data[:1],
        affine=study.affine,
        times=study.times[:1],
        phase_labels=study.phase_labels[:1],
        meta={"source_files": [str(p) for p in files]},
    )
    found = find_source_images(written)
    if found is None:
        raise ExportError(
            f"The DICOM written to {target} does not match the study grid slice by slice; "
            "this is a bug in the DICOM writer, please report it with the study."
        )
    found.written_files = files
    return found


# --------------------------------------------------------------------------------------------
# DICOM SEG
# --------------------------------------------------------------------------------------------


def _algorithm(name: str, version: str):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.AlgorithmIdentificationSequence(
        name=name[:64] or "unknown", version=version[:64] or "0", family=codes.cid7162.ArtificialIntelligence
    )


def _segment_descriptions(findings: Findings, lesions: list[Lesion]) -> list[Any]:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    descs = []
    for number, les in enumerate(lesions, start=1):
        name, version = _lesion_model(findings, les)
        human = not name or les.status == "added"
        desc = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=f"Lesion {les.id}"[:64],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL
            if human
            else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=None if human else _algorithm(name, version),
            tracking_uid=hd.UID(),
            tracking_id=f"lesion-{les.id}",
            anatomic_regions=[codes.SCT.Breast],
        )
        desc.SegmentDescription = _lesion_description(findings, les)[:64]
        descs.append(desc)
    return descs


def build_seg(study: Study, findings: Findings, source: SourceImages) -> tuple[Any, list[Lesion]]:
    """A highdicom Segmentation (one BINARY segment per lesion with a mask) and its lesions."""
    import highdicom as hd

    if tuple(findings.shape) != study.shape:
        raise ExportError(
            f"The findings grid {tuple(findings.shape)} is not the study grid {study.shape}; "
            "export the findings of this study, or re-run the analysis on it."
        )
    lesions = [les for les in exported_lesions(findings) if lesion_mask(findings, les) is not None]
    if not lesions:
        raise ExportError(
            "No lesion has a mask, so there is nothing for a DICOM SEG to hold; "
            "export the boxes as CSV or SR instead, or draw masks first."
        )
    labels = np.zeros(study.shape, dtype=np.uint8 if len(lesions) < 256 else np.uint16)
    for number, les in enumerate(lesions, start=1):
        labels[np.asarray(findings.label_mask) == les.label] = number
    common = {
        "segmentation_type": hd.seg.SegmentationTypeValues.BINARY,
        "segment_descriptions": _segment_descriptions(findings, lesions),
        "series_instance_uid": hd.UID(),
        "series_number": SEG_SERIES_NUMBER,
        "sop_instance_uid": hd.UID(),
        "instance_number": 1,
        "manufacturer": MANUFACTURER,
        "manufacturer_model_name": "napari-breastmri export",
        "software_versions": _software_version(),
        "device_serial_number": "0",
        "content_label": "LESIONS",
        "content_description": "Breast DCE-MRI lesion segmentation",
    }
    if source.multiframe:
        volume = hd.Volume(
            array=labels,
            affine=np.asarray(study.affine),
            coordinate_system="PATIENT",
            frame_of_reference_uid=source.frame_of_reference_uid,
        )
        seg = hd.seg.Segmentation(source_images=source.datasets, pixel_array=volume, **common)
    else:
        seg = hd.seg.Segmentation(source_images=source.datasets, pixel_array=labels, **common)
    return seg, lesions


def _save_dataset(ds: Any, path: Path) -> Path:
    with _atomic.atomic_path(path, suffix=".dcm") as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def export_seg(
    study: Study, findings: Findings, out_dir: str | os.PathLike[str], *, source: SourceImages | None = None
) -> list[Path]:
    """Write ``seg.dcm`` (DICOM SEG referencing the source instances); return all files written."""
    out = Path(out_dir)
    source = source or source_images_for(study, out)
    seg, _ = build_seg(study, findings, source)
    return [*source.written_files, _save_dataset(seg, out / "seg.dcm")]


def read_seg(
    path: str | os.PathLike[str], shape: Sequence[int], affine: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """Read a DICOM SEG back onto a (shape, affine) grid: label map (segment numbers) + labels.

    Each stored frame is placed by its ImagePositionPatient, so the result is on the given grid
    whatever order or subset of frames the file holds.
    """
    import highdicom as hd

    seg = hd.seg.segread(path)
    out = np.zeros(tuple(int(s) for s in shape), dtype=np.int16)
    labels = [str(item.SegmentLabel) for item in seg.SegmentSequence]
    for n, item in enumerate(seg.PerFrameFunctionalGroupsSequence, start=1):
        pos = item.PlanePositionSequence[0].ImagePositionPatient
        ident = item if "SegmentIdentificationSequence" in item else seg.SharedFunctionalGroupsSequence[0]
        number = int(ident.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        zi = int(round(float(world_to_voxel(affine, np.asarray(pos, dtype=float))[0])))
        if not 0 <= zi < out.shape[0]:
            raise ExportError(
                f"SEG {path} has a frame outside the study grid (slice {zi}); it belongs to another series."
            )
        frame = (
            np.asarray(seg.get_stored_frame(n))
            if hasattr(seg, "get_stored_frame")
            else seg.pixel_array[n - 1]
        )
        out[zi][frame.astype(bool)] = number
    return out, labels


# --------------------------------------------------------------------------------------------
# DICOM SR (TID 1500)
# --------------------------------------------------------------------------------------------


def _code(value: str, meaning: str):
    from highdicom.sr import CodedConcept

    return CodedConcept(value=value, scheme_designator=LOCAL_SCHEME, meaning=meaning[:64])


def _unit(kind: str):
    from highdicom.sr import CodedConcept

    return {
        "mm": CodedConcept("mm", "UCUM", "millimeter"),
        "ml": CodedConcept("ml", "UCUM", "milliliter"),
        "1": CodedConcept("1", "UCUM", "no units"),
    }[kind]


CURVE_CODES = {
    "persistent": ("CURVE-PERSISTENT", "Persistent enhancement"),
    "plateau": ("CURVE-PLATEAU", "Plateau"),
    "washout": ("CURVE-WASHOUT", "Washout"),
    "none": ("CURVE-NONE", "No enhancement"),
}


def _lesion_measurements(findings: Findings, les: Lesion, algo) -> list[Any]:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    out = []
    if les.volume_ml is not None:
        out.append(
            hd.sr.Measurement(
                name=codes.SCT.Volume, value=float(les.volume_ml), unit=_unit("ml"), algorithm_id=algo
            )
        )
    axis_names = [codes.SCT.MajorAxis, codes.SCT.MinorAxis, _code("THIRD-AXIS", "Third axis diameter")]
    for name, value in zip(axis_names, les.diameters_mm or []):
        out.append(hd.sr.Measurement(name=name, value=float(value), unit=_unit("mm"), algorithm_id=algo))
    out.append(
        hd.sr.Measurement(
            name=_code("LESION-SCORE", "Lesion detection probability"),
            value=float(les.score),
            unit=_unit("1"),
            algorithm_id=algo,
        )
    )
    return out


def _curve_evaluation(les: Lesion) -> list[Any]:
    import highdicom as hd

    if not les.curve_type or les.curve_type not in CURVE_CODES:
        return []
    value, meaning = CURVE_CODES[les.curve_type]
    return [
        hd.sr.QualitativeEvaluation(
            name=_code("CURVE-TYPE", "Kinetic curve type"), value=_code(value, meaning)
        )
    ]


def _box_regions(les: Lesion, source: SourceImages) -> list[Any]:
    """A closed rectangle on each slice of a box-only lesion (TID 1411 needs image regions)."""
    import highdicom as hd

    z0, y0, x0, z1, y1, x1 = (int(v) for v in les.bbox)
    # SCOORD pixel coordinates: (column, row), origin at the top-left corner of the top-left pixel.
    ring = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=float)
    regions = []
    for z in range(z0, z1):
        if source.multiframe:
            frame = next(n for n, zz in source.frame_z.items() if zz == z)
            src = hd.sr.SourceImageForRegion.from_source_image(
                source.datasets[0], referenced_frame_numbers=[frame]
            )
        else:
            src = hd.sr.SourceImageForRegion.from_source_image(source.datasets[z])
        regions.append(
            hd.sr.ImageRegion(
                graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=ring, source_image=src
            )
        )
    return regions


def build_sr(study: Study, findings: Findings, source: SourceImages, seg: Any | None = None) -> Any:
    """A Comprehensive 3D SR holding a TID 1500 Measurement Report for the findings.

    Each lesion is a TID 1411 volumetric ROI group (referencing its SEG segment when there is a
    SEG, otherwise its box drawn on each slice) with volume, diameters, detection probability and
    the kinetic curve type; each case-level prediction is a TID 1501 group with one probability per
    class. Every group carries the model's name and version (Algorithm Identification).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    run_names = {run.name: run for run in findings.models}
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(),
            name=", ".join(f"{r.name} {r.version}" for r in findings.models)[:64] or MANUFACTURER,
            manufacturer_name=MANUFACTURER,
            model_name=", ".join(r.name for r in findings.models)[:64] or None,
        ),
    )
    context = hd.sr.ObservationContext(observer_device_context=observer)
    seg_numbers: dict[int, int] = {}
    if seg is not None:
        for item in seg.SegmentSequence:
            seg_numbers[int(str(item.TrackingID).split("-")[-1])] = int(item.SegmentNumber)
    groups: list[Any] = []
    for les in exported_lesions(findings):
        name, version = _lesion_model(findings, les)
        algo = hd.sr.AlgorithmIdentification(name=name, version=version or "0") if name else None
        tracking = hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"lesion-{les.id}")
        kwargs: dict[str, Any] = {}
        if les.id in seg_numbers:
            # Built by hand: highdicom's from_segmentation() expects the segment identification per
            # frame, but a one-segment SEG keeps it in the shared functional groups.
            kwargs["referenced_segment"] = hd.sr.ReferencedSegment(
                sop_class_uid=str(seg.SOPClassUID),
                sop_instance_uid=str(seg.SOPInstanceUID),
                segment_number=seg_numbers[les.id],
                source_series=hd.sr.SourceSeriesForSegmentation(str(source.datasets[0].SeriesInstanceUID)),
            )
        else:
            kwargs["referenced_regions"] = _box_regions(les, source)
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                finding_type=codes.SCT.Lesion,
                algorithm_id=algo,
                finding_sites=[hd.sr.FindingSite(anatomic_location=codes.SCT.Breast)],
                measurements=_lesion_measurements(findings, les, algo),
                qualitative_evaluations=_curve_evaluation(les) or None,
                **kwargs,
            )
        )
    for target, pred in findings.case_predictions.items():
        model, _, pver = pred.model.partition("@")
        run = run_names.get(model)
        algo = hd.sr.AlgorithmIdentification(
            name=model or "unknown", version=pver or (run.version if run else "0")
        )
        measurements = [
            hd.sr.Measurement(
                name=_code(
                    f"P-{target}-{cls}"[:16], f"Probability of {pred.display_names.get(cls, cls)} ({target})"
                ),
                value=float(p),
                unit=_unit("1"),
                algorithm_id=algo,
            )
            for cls, p in pred.probabilities.items()
        ]
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"case-{target}"[:64]),
                finding_type=_code(f"T-{target}"[:16], f"Case-level {target} prediction"),
                algorithm_id=algo,
                measurements=measurements,
            )
        )
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=codes.LN.BreastBilateralMrWoAndWContrastIv,
        imaging_measurements=groups or None,
    )
    evidence = list(source.datasets) + ([seg] if seg is not None else [])
    return hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=hd.UID(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
    )


def export_sr(
    study: Study,
    findings: Findings,
    out_dir: str | os.PathLike[str],
    *,
    source: SourceImages | None = None,
    seg_path: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write ``sr.dcm`` (TID 1500). With ``seg_path``, lesions reference that SEG's segments."""
    import highdicom as hd

    out = Path(out_dir)
    source = source or source_images_for(study, out)
    seg = hd.seg.segread(seg_path) if seg_path else None
    sr = build_sr(study, findings, source, seg)
    return [*source.written_files, _save_dataset(sr, out / "sr.dcm")]


# --------------------------------------------------------------------------------------------
# everything at once
# --------------------------------------------------------------------------------------------


def export_findings(
    study: Study | None,
    findings: Findings,
    out_dir: str | os.PathLike[str],
    formats: Sequence[str] = FORMATS,
    *,
    case_id: str = "",
) -> Generator[Progress, None, dict[str, list[Path]]]:
    """Export ``findings`` in each of ``formats``; yields Progress, returns {format: files}.

    NIfTI, CSV and JSON need only the findings; SEG and SR need the study (for its DICOM).
    When both SEG and SR are asked for (and some lesion has a mask), the SR references the SEG.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ExportError(f"Unknown export format(s) {unknown}; choose from {', '.join(FORMATS)}.")
    if study is None and {"seg", "sr"} & set(formats):
        raise ExportError(
            "DICOM SEG/SR exports need the source study; give the case, not only findings.json."
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    case_id = case_id or (str(study.meta.get("case_id", "")) if study is not None else "")
    result: dict[str, list[Path]] = {}
    source = None
    formats = [f for f in FORMATS if f in formats]  # SEG before SR, so the SR can reference it
    for i, fmt in enumerate(formats):
        yield Progress("export", i / len(formats), f"writing {fmt}")
        if fmt == "nifti":
            result[fmt] = export_nifti(findings, out)
        elif fmt == "csv":
            result[fmt] = [export_csv(findings, out / "boxes.csv", case_id=case_id)]
        elif fmt == "json":
            result[fmt] = export_json(findings, out, study=study)
        elif fmt in ("seg", "sr"):
            assert study is not None
            source = source or source_images_for(study, out)
            if fmt == "seg":
                result[fmt] = export_seg(study, findings, out, source=source)
            else:
                seg_path = out / "seg.dcm" if "seg" in result else None
                result[fmt] = export_sr(study, findings, out, source=source, seg_path=seg_path)
    yield Progress("export", 1.0, f"wrote {sum(len(v) for v in result.values())} files")
    return result


# --------------------------------------------------------------------------------------------
# ground truth as findings (phantom cases): export it, report it, score models against it
# --------------------------------------------------------------------------------------------


def _truth_from_meta(study: Study) -> tuple[dict | None, np.ndarray | None]:
    """The phantom truth (dict) and label mask recorded with a loaded case, when there is one."""
    import json

    truth = study.meta.get("truth")
    mask = study.meta.get("label_mask")
    path = study.meta.get("truth_path")
    if truth is None and path and Path(path).is_file():
        truth = json.loads(Path(path).read_text(encoding="utf-8"))
    if mask is None and path:
        folder = Path(path).parent
        for name in ("label_mask.nii.gz", "labels.nii.gz", "mask.nii.gz", "truth_mask.nii.gz"):
            if (folder / name).is_file():
                from .nifti import load_volume

                mask = load_volume(folder / name)[0]
                break
    return truth, None if mask is None else np.asarray(mask)


def load_case_truth(case: str | os.PathLike[str], study: Study) -> tuple[dict | None, np.ndarray | None]:
    """A phantom case folder's truth.json and its label mask on the study grid, or (None, None).

    The mask is the file truth.json names under ``files.mask`` (the phantom writes it), else any
    ``*mask*.nii*`` / ``*label*.nii*`` beside truth.json; it is resampled (nearest) when the study
    was loaded on another grid (e.g. a reoriented NIfTI).
    """
    import json

    from ..geometry import resample_to_grid, same_grid

    path = Path(case)
    folder = path if path.is_dir() else path.parent
    if not (folder / "truth.json").is_file():
        return None, None
    truth = json.loads((folder / "truth.json").read_text(encoding="utf-8"))
    files = truth.get("files") if isinstance(truth.get("files"), dict) else {}
    candidates = [folder / files["mask"]] if files.get("mask") else []
    candidates += sorted(folder.glob("*mask*.nii*")) + sorted(folder.glob("*label*.nii*"))
    for candidate in candidates:
        if candidate.is_file():
            from .nifti import load_volume

            vol, aff = load_volume(candidate)
            if not same_grid(aff, study.affine, vol.shape, study.shape):
                vol = resample_to_grid(vol, aff, study.affine, study.shape, order=0)
            return truth, np.rint(vol).astype(np.int16)
    return truth, None


def findings_from_truth(
    study: Study, truth: dict | None = None, label_mask: np.ndarray | None = None
) -> Findings:
    """Findings that say exactly what the phantom's truth says (status "accepted", by "truth").

    Used to export a phantom's ground truth as SEG/SR, and by tests that need findings before
    a model has run.
    """
    if truth is None or label_mask is None:
        meta_truth, meta_mask = _truth_from_meta(study)
        truth = truth if truth is not None else meta_truth
        label_mask = label_mask if label_mask is not None else meta_mask
    if truth is None:
        raise ExportError(
            f"The case {study.source or '(in memory)'} has no ground truth (truth.json); "
            "analyse it with a model instead of --from-truth."
        )
    voxel_ml = study.voxel_volume_ml
    lesions = []
    for item in truth.get("lesions", []):
        lid = int(item["id"])
        label = lid if label_mask is not None and np.any(label_mask == lid) else 0
        volume = item.get("volume_ml")
        if volume is None and label:
            volume = float(np.count_nonzero(label_mask == lid) * voxel_ml)
        lesions.append(
            Lesion(
                id=lid,
                bbox=[int(v) for v in item["bbox"]],
                score=1.0,
                label=label,
                volume_ml=None if volume is None else float(volume),
                curve_type=item.get("curve_type"),
                status="accepted",
                source="truth",
                provenance=[{"who": "human", "what": "phantom ground truth", "when": ""}],
                extra={k: item[k] for k in ("type", "malignant") if k in item},
            )
        )
    from .findings_json import study_source_record

    mask = None if label_mask is None else np.asarray(label_mask).astype(np.int16)
    return Findings(
        shape=study.shape,
        affine=study.affine,
        lesions=lesions,
        label_mask=mask,
        study_uid=study.study_uid,
        study_source=study_source_record(study),
    )


# --------------------------------------------------------------------------------------------
# the study behind a findings folder: reload it from findings.json's study_source
# --------------------------------------------------------------------------------------------

_RELOAD_HINT = "give the study explicitly (breastmri export FOLDER --study PATH)"


def _path_candidates(record: dict[str, Any], findings_dir: Path | None) -> list[list[Path]]:
    """The recorded paths as they were, then relative to the findings folder (a moved project)."""
    out = []
    if record.get("paths"):
        out.append([Path(p) for p in record["paths"]])
    if findings_dir is not None and record.get("relative_paths"):
        out.append([findings_dir / p for p in record["relative_paths"]])
    return out


def _load_from_paths(paths: list[Path], record: dict[str, Any]) -> Study:
    """load_study on the recorded path(s); when the automatic series choice differs from what
    was analysed (the user had picked series), load exactly the recorded series."""
    from . import load_study

    source: Path | list[Path] = paths[0] if len(paths) == 1 else paths
    where = ", ".join(str(p) for p in paths)
    wanted = [str(u) for u in record.get("series_uids") or []]
    try:
        study = load_study(source)
    except BreastMRIError as err:
        # e.g. a folder of several studies, one of which was picked by hand: pick it again
        with contextlib.suppress(BreastMRIError):
            if wanted:
                return load_study(source, series_uid=wanted)
        raise StudySourceUnavailable(
            f"The study recorded in findings.json at {where} could not be read again ({err}); {_RELOAD_HINT}."
        ) from err
    if wanted and study.series_uids and set(study.series_uids) != set(wanted):
        # the analysed series were chosen by hand (series_uid=...) or the folder gained series
        with contextlib.suppress(BreastMRIError):  # not there at all: check_same_study says so
            study = load_study(source, series_uid=wanted)
    return study


def _load_from_pacs(record: dict[str, Any], on_progress: Any = None) -> Study:
    from .. import progress
    from ..errors import PACSError
    from .pacs import PacsClient

    pacs = record.get("pacs") or {}
    uid = pacs.get("study_uid") or record.get("study_uid")
    try:
        return progress.run(PacsClient(pacs["url"]).open_study(uid), on_progress)
    except (PACSError, OSError) as err:
        raise StudySourceUnavailable(
            f"The study {uid} is no longer in the local PACS cache and the PACS at {pacs['url']} could "
            f"not provide it ({err}); retrieve it with 'breastmri pacs' or {_RELOAD_HINT}."
        ) from err


def _regenerate_phantom(recipe: dict[str, Any]) -> Any:
    """The phantom case (generate_case) a recipe describes; its ``.study`` is the baseline exam."""
    from ..phantom import generate_case

    follow = recipe.get("exam") == "follow_up"
    try:
        case = generate_case(
            int(recipe["seed"]),
            protocol=str(recipe.get("protocol") or "conventional"),
            shape=tuple(recipe["shape"]) if recipe.get("shape") else None,
            spacing=tuple(recipe["spacing_mm"]) if recipe.get("spacing_mm") else None,
            orientation=str(recipe.get("orientation") or "axial"),
            case_id=recipe.get("case_id") or None,
            longitudinal=follow,
            **(recipe.get("kwargs") or {}),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise StudySourceUnavailable(
            f"The phantom recorded in findings.json ({recipe}) cannot be generated again ({err}); "
            f"{_RELOAD_HINT}."
        ) from err
    return case.follow_up if follow else case


def check_same_study(
    study: Study, findings: Findings, where: str, record: dict[str, Any] | None = None
) -> None:
    """Raise StudySourceUnavailable unless ``study`` is the study ``findings`` were made on.

    Checked: the grid (shape and affine), the StudyInstanceUID when both have one, and for a
    regenerated phantom the pixel sums recorded with the findings (a phantom built with other
    options is another case on the same grid). For files the pixel sums only warn: a newer reader
    may scale intensities differently, which does not move a SEG or SR.
    """
    problems = []
    if tuple(study.shape) != tuple(findings.shape):
        problems.append(f"grid {tuple(study.shape)} instead of {tuple(findings.shape)}")
    elif not np.allclose(study.affine, findings.affine, atol=1e-3):
        problems.append("another position or orientation in space")
    if findings.study_uid and study.study_uid and findings.study_uid != study.study_uid:
        problems.append(f"StudyInstanceUID {study.study_uid} instead of {findings.study_uid}")
    sums = (record or {}).get("data_sums")
    if not problems and sums and len(sums) == study.n_phases:
        now = [float(np.sum(phase, dtype=np.float64)) for phase in study.data]
        if not np.allclose(now, sums, rtol=1e-5, atol=1e-3):
            if (record or {}).get("kind") == "phantom":
                problems.append("other pixel values (a phantom generated with other options)")
            else:
                study.warnings.append(
                    f"The pixel values at {where} differ from those the findings were made on "
                    "(same grid and UIDs); the export uses them as they are now."
                )
    if problems:
        raise StudySourceUnavailable(
            f"The study at {where} is not the one these findings were made on ({'; '.join(problems)}); "
            f"{_RELOAD_HINT}."
        )


def load_recorded_study(
    record: dict[str, Any],
    findings_dir: str | os.PathLike[str] | None = None,
    *,
    findings: Findings | None = None,
    on_progress: Any = None,
) -> Study:
    """Reload the study a findings.json was made from, from its ``study_source`` record.

    Files are tried where they were recorded, then relative to ``findings_dir`` (a project folder
    moved as a whole); a PACS study not in the local cache is retrieved again; a phantom is
    regenerated from its recipe. With ``findings``, the result is checked to be the same study
    (:func:`check_same_study`). Raises StudySourceUnavailable, saying what is missing and what to
    do, when none of that works.
    """
    folder = Path(findings_dir) if findings_dir is not None else None
    kind = record.get("kind") if record else None
    if not record:
        raise StudySourceUnavailable(
            "DICOM SEG/SR exports need the source study, and this findings.json does not record where "
            f"it came from (an older file, or one written without its study); {_RELOAD_HINT}."
        )
    if kind == "withheld":
        raise StudySourceUnavailable(
            "This findings.json was written without its study's source (analyze --no-source: no "
            f"paths, no UIDs), so the study cannot be found again; {_RELOAD_HINT}."
        )
    if kind == "phantom":
        recipe = record.get("phantom") or {}
        study = _regenerate_phantom(recipe).study
        where = f"phantom seed {recipe.get('seed')}"
    else:
        candidates = _path_candidates(record, folder)
        found = next((c for c in candidates if c and all(p.exists() for p in c)), None)
        if found is not None:
            study = _load_from_paths(found, record)
            where = ", ".join(str(p) for p in found)
        elif kind == "pacs" and (record.get("pacs") or {}).get("url"):
            study = _load_from_pacs(record, on_progress)
            where = f"PACS {record['pacs']['url']}"
        elif candidates:
            tried = " or ".join(", ".join(str(p) for p in c) for c in candidates)
            raise StudySourceUnavailable(
                f"The study these findings were made on is no longer at {tried} (moved or deleted); "
                f"{_RELOAD_HINT}."
            )
        else:
            raise StudySourceUnavailable(
                "These findings were made on a study held only in memory "
                f"({record.get('description') or 'no source'}), so there is nothing to reload; "
                f"save the study (e.g. as DICOM) and {_RELOAD_HINT}."
            )
    if findings is not None:
        check_same_study(study, findings, where, record)
    return study


def phantom_record_from_truth(truth: dict[str, Any]) -> dict[str, Any] | None:
    """A phantom ``study_source`` rebuilt from a truth.json (what analyze writes beside the findings
    of a phantom case), for findings.json files older than the record; None when it is no phantom's."""
    if not isinstance(truth, dict) or "seed" not in truth or "generator" not in truth:
        return None
    exam = str(truth.get("exam") or "baseline")
    return {
        "version": 0,
        "kind": "phantom",
        "description": f"phantom:{truth['seed']} (from truth.json)",
        "phantom": {
            "seed": int(truth["seed"]),
            "exam": exam,
            "protocol": truth.get("protocol") or "conventional",
            "orientation": truth.get("orientation") or "axial",
            "shape": truth.get("shape"),
            "spacing_mm": truth.get("spacing_mm"),
            "case_id": str(truth.get("case_id", "")).removesuffix("_fu" if exam == "follow_up" else ""),
        },
        "truth_bboxes": [les.get("bbox") for les in truth.get("lesions", [])],
    }


def study_for_findings_dir(
    folder: str | os.PathLike[str], findings: Findings, *, on_progress: Any = None
) -> Study:
    """The study behind a findings folder (what ``breastmri analyze`` writes), found without help.

    Uses findings.json's ``study_source``; for an older findings.json of a phantom case, the
    truth.json beside it (seed and grid) regenerates the phantom, checked against the truth's
    lesion boxes. Raises StudySourceUnavailable when neither works.
    """
    import json

    folder = Path(folder)
    record = findings.study_source
    if not record and (folder / "truth.json").is_file():
        try:
            truth = json.loads((folder / "truth.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            truth = None
        legacy = phantom_record_from_truth(truth) if truth else None
        if legacy is not None:
            case = _regenerate_phantom(legacy["phantom"])
            where = f"phantom seed {legacy['phantom']['seed']} (from {folder / 'truth.json'})"
            check_same_study(case.study, findings, where)
            if [les.get("bbox") for les in case.truth.get("lesions", [])] != legacy["truth_bboxes"]:
                raise StudySourceUnavailable(
                    f"The phantom regenerated from {folder / 'truth.json'} has other lesions than that "
                    f"truth (it was made with options truth.json does not record); {_RELOAD_HINT}."
                )
            return case.study
    try:
        return load_recorded_study(record, folder, findings=findings, on_progress=on_progress)
    except StudySourceUnavailable as err:
        raise StudySourceUnavailable(f"{folder / 'findings.json'}: {err}") from err
