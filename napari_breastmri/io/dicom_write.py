"""Write a :class:`~napari_breastmri.types.Study` as MR DICOM, in the layouts scanners produce.

Why we write DICOM at all: the phantom, the tests and the PACS round trip need studies that look
like what real archives hold, so that the reader is exercised on the same variants it meets in
the clinic. Three layouts:

``"series-per-phase"``
    one classic MR Image series per phase (the Duke / TCIA style), one file per slice;
``"single-series"``
    one classic MR Image series holding every phase, told apart by TemporalPositionIdentifier,
    TriggerTime and AcquisitionTime;
``"enhanced"``
    one Enhanced MR Image Storage file per study, with per-frame functional groups and a temporal
    dimension (Philips / Siemens XA style).

Geometry comes from ``study.affine`` only ((z, y, x, 1) -> LPS mm, see
:mod:`napari_breastmri.geometry`), so axial, sagittal and oblique studies are written correctly.
Float data are stored as uint16 with RescaleSlope/RescaleIntercept. UIDs are derived
deterministically from ``uid_root_seed`` (same seed, same UIDs) so tests and phantoms are
reproducible; without a seed they are random.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from .. import _atomic
from ..geometry import orientation_label
from ..types import DEMO_LABEL, Study

Layout = Literal["series-per-phase", "single-series", "enhanced"]
LAYOUTS: tuple[str, ...] = ("series-per-phase", "single-series", "enhanced")

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
#: the implementation identity written into every file's meta header
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.8.498.1"
IMPLEMENTATION_NAME = "BREASTMRI_010"
#: start of the first phase when the study does not say (times in the study are relative)
DEFAULT_START = _dt.datetime(2000, 1, 1, 9, 0, 0)


class _Uids:
    """Deterministic UIDs: each is a hash of the seed and a name, so a seed reproduces a study."""

    def __init__(self, seed: object | None) -> None:
        self._seed = seed

    def __call__(self, *names: object) -> str:
        if self._seed is None:
            return generate_uid()
        return generate_uid(entropy_srcs=["napari-breastmri", repr(self._seed), *map(str, names)])


def write_study_dicom(
    study: Study,
    out_dir: str | Path,
    layout: Layout = "series-per-phase",
    *,
    uid_root_seed: object | None = None,
    trigger_time: bool = False,
) -> list[Path]:
    """Write ``study`` under ``out_dir`` as MR DICOM in ``layout``; return the files written.

    Each file appears whole (atomic rename) so a crash never leaves a truncated slice that a later
    load would trip over. Folder names: ``series_NN_<label>`` for series-per-phase,
    ``series_01_dce`` for single-series, ``enhanced_dce.dcm`` for the enhanced layout.

    Phase times go into AcquisitionTime/ContentTime (and the frame datetimes of the enhanced
    layout) and TemporalPositionIdentifier. ``trigger_time=True`` also writes TriggerTime (ms from
    the first phase) the way GE scanners do for DCE; dciodvfy flags it because the standard only
    expects it with cardiac gating, so it is off by default.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    uids = _Uids(uid_root_seed)
    stored, slope, intercept = _quantise(study.data)
    ctx = _Context(study, uids, slope, intercept, trigger_time)
    if layout == "enhanced":
        return [_write_enhanced(ctx, stored, out_dir / "enhanced_dce.dcm")]
    paths: list[Path] = []
    n_z = study.shape[0]
    for p in range(study.n_phases):
        single = layout == "single-series"
        series_key = "dce" if single else p
        folder = out_dir / (
            "series_01_dce" if single else f"series_{p + 1:02d}_{_slug(study.phase_labels[p])}"
        )
        for k in range(n_z):
            ds = ctx.classic_slice(p, k, stored[p, k], series_key)
            name = f"slice_{p * n_z + k + 1:05d}.dcm" if single else f"slice_{k + 1:04d}.dcm"
            paths.append(_save(ds, folder / name))
    return paths


# --------------------------------------------------------------------------------------------
# pixel values


def _quantise(data: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Store float data as uint16 with one slope/intercept for the whole study.

    One scaling for every phase matters: kinetics compares intensities across phases, and a
    per-slice or per-series scaling would let a reader that ignores it see fake enhancement.
    Integer data that fit in uint16 are stored exactly (slope 1, intercept 0).
    """
    data = np.asarray(data, dtype=np.float32)
    lo, hi = float(np.min(data)), float(np.max(data))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(
            "study.data holds NaN or infinite values, which DICOM cannot store; replace them first"
        )
    if lo >= 0 and hi <= 65535 and np.array_equal(data, np.round(data)):
        return data.astype(np.uint16), 1.0, 0.0
    intercept = float(format_number_as_ds(lo))
    if intercept > lo:  # the 16-character decimal string rounded up: keep every value >= 0
        intercept = float(format_number_as_ds(lo - abs(lo) * 1e-9 - 1e-9))
    span = hi - intercept
    slope = float(format_number_as_ds(span / 65535.0 * (1 + 1e-9))) if span > 0 else 1.0
    stored = np.clip(np.rint((data - intercept) / slope), 0, 65535).astype(np.uint16)
    return stored, slope, intercept


def _ds(value: float) -> str:
    return format_number_as_ds(float(value))


# --------------------------------------------------------------------------------------------
# the attributes every file shares


class _Context:
    """Per-study values (geometry, times, identities) computed once and used for every file."""

    def __init__(
        self, study: Study, uids: _Uids, slope: float, intercept: float, trigger_time: bool = False
    ) -> None:
        self.study = study
        self.trigger_time = trigger_time
        self.uids = uids
        self.slope, self.intercept = slope, intercept
        aff = np.asarray(study.affine, dtype=float)
        self.affine = aff
        dz, dy, dx = (float(np.linalg.norm(aff[:3, i])) for i in range(3))
        self.row_dir = aff[:3, 2] / dx
        self.col_dir = aff[:3, 1] / dy
        self.pixel_spacing = (dy, dx)
        normal = np.cross(self.row_dir, self.col_dir)
        self.slice_gap = abs(float(np.dot(aff[:3, 0], normal))) or dz
        self.orientation = orientation_label(aff)
        self.start = _start_datetime(study)
        self.study_uid = uids("study")
        self.for_uid = uids("frame-of-reference")

    # -- helpers -------------------------------------------------------------------------
    def position(self, k: int) -> list[str]:
        pos = self.affine[:3, 3] + k * self.affine[:3, 0]
        return [_ds(v) for v in pos]

    def orientation_values(self) -> list[str]:
        return [_ds(round(float(v), 10)) for v in (*self.row_dir, *self.col_dir)]

    def phase_datetime(self, p: int) -> _dt.datetime:
        return self.start + _dt.timedelta(seconds=float(self.study.times[p]))

    def series_description(self, p: int | None) -> str:
        prefix = {"axial": "ax", "sagittal": "sag", "coronal": "cor"}.get(self.orientation, "obl")
        if p is None:
            return f"{prefix} dyn"
        return f"{prefix} dyn {_phase_words(self.study.phase_labels[p])}"

    # -- modules shared by both IODs -------------------------------------------------------
    def common(self, ds: Dataset, sop_class: str, sop_uid: str) -> None:
        """Patient, General Study, General Series, Frame of Reference, Equipment, SOP Common."""
        study, phi = self.study, self.study.phi
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        ds.PatientName = phi.name
        ds.PatientID = phi.patient_id
        ds.PatientBirthDate = phi.birth_date
        ds.PatientSex = ""
        ds.StudyInstanceUID = self.study_uid
        ds.StudyDate = phi.study_date or self.start.strftime("%Y%m%d")
        ds.StudyTime = self.start.strftime("%H%M%S")
        ds.AccessionNumber = phi.accession
        ds.ReferringPhysicianName = ""
        ds.StudyID = "1"
        ds.StudyDescription = "MRI BREAST BILATERAL W WO CONTRAST"
        if phi.institution:
            ds.InstitutionName = phi.institution
        ds.Modality = "MR"
        ds.BodyPartExamined = "BREAST"
        ds.PatientPosition = "HFP"  # breast MRI is acquired prone, head first
        ds.FrameOfReferenceUID = self.for_uid
        ds.PositionReferenceIndicator = ""
        acq = study.acquisition
        ds.Manufacturer = acq.manufacturer or "napari-breastmri"
        ds.ManufacturerModelName = "synthetic" if DEMO_LABEL in study.source else "napari-breastmri"
        ds.DeviceSerialNumber = "0"
        ds.SoftwareVersions = "napari-breastmri"
        if DEMO_LABEL in study.source or study.meta.get("demo"):
            ds.ImageComments = DEMO_LABEL

    def pixel_module(self, ds: Dataset, rows: int, cols: int) -> None:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0

    def mr_parameters(self, ds: Dataset) -> None:
        acq = self.study.acquisition
        ds.ScanningSequence = "GR"
        ds.SequenceVariant = ["SP", "SS"]
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "3D"
        ds.RepetitionTime = _ds(acq.repetition_time_ms) if acq.repetition_time_ms is not None else None
        ds.EchoTime = _ds(acq.echo_time_ms) if acq.echo_time_ms is not None else None
        ds.EchoTrainLength = 1
        if acq.flip_angle_deg is not None:
            ds.FlipAngle = _ds(acq.flip_angle_deg)
        if acq.field_strength_t is not None:
            ds.MagneticFieldStrength = _ds(acq.field_strength_t)
        ds.ImagedNucleus = "1H"

    # -- classic MR Image, one slice -------------------------------------------------------
    def classic_slice(self, p: int, k: int, pixels: np.ndarray, series_key: object) -> Dataset:
        study = self.study
        n_z = study.shape[0]
        single = series_key == "dce"
        series_uid = self.uids("series", series_key)
        ds = Dataset()
        self.common(ds, MR_IMAGE_STORAGE, self.uids("instance", series_key, p, k))
        when = self.phase_datetime(p)
        series_start = self.start if single else when
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 1 if single else p + 1
        ds.SeriesDescription = self.series_description(None if single else p)
        ds.SeriesDate = series_start.strftime("%Y%m%d")
        ds.SeriesTime = series_start.strftime("%H%M%S.%f")
        ds.AcquisitionDate = when.strftime("%Y%m%d")
        ds.AcquisitionTime = when.strftime("%H%M%S.%f")
        ds.ContentDate = when.strftime("%Y%m%d")
        ds.ContentTime = when.strftime("%H%M%S.%f")
        ds.AcquisitionNumber = p + 1
        ds.InstanceNumber = (p * n_z + k + 1) if single else k + 1
        ds.PatientOrientation = ""
        ds.Laterality = ""  # both breasts: the paired body part's laterality is left empty
        self.mr_parameters(ds)
        if self.trigger_time:
            ds.TriggerTime = _ds(float(study.times[p]) * 1000.0)
        ds.TemporalPositionIdentifier = p + 1
        ds.NumberOfTemporalPositions = study.n_phases
        ds.SliceThickness = _ds(self.slice_gap)
        ds.SpacingBetweenSlices = _ds(self.slice_gap)
        ds.ImagePositionPatient = self.position(k)
        ds.ImageOrientationPatient = self.orientation_values()
        ds.PixelSpacing = [_ds(v) for v in self.pixel_spacing]
        normal = np.cross(self.row_dir, self.col_dir)
        ds.SliceLocation = _ds(float(np.dot(self.affine[:3, 3] + k * self.affine[:3, 0], normal)))
        self.pixel_module(ds, *pixels.shape)
        ds.RescaleIntercept = _ds(self.intercept)
        ds.RescaleSlope = _ds(self.slope)
        ds.RescaleType = "US"
        ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
        return ds


# --------------------------------------------------------------------------------------------
# Enhanced MR Image: one file, per-frame functional groups


def _write_enhanced(ctx: _Context, stored: np.ndarray, path: Path) -> Path:
    study = ctx.study
    n_p, n_z, n_y, n_x = stored.shape
    ds = Dataset()
    ctx.common(ds, ENHANCED_MR_IMAGE_STORAGE, ctx.uids("instance", "enhanced"))
    ds.SeriesInstanceUID = ctx.uids("series", "enhanced")
    ds.SeriesNumber = 1
    ds.SeriesDescription = ctx.series_description(None)
    ds.SeriesDate = ctx.start.strftime("%Y%m%d")
    ds.SeriesTime = ctx.start.strftime("%H%M%S.%f")
    ds.InstanceNumber = 1
    ds.ContentDate = ctx.start.strftime("%Y%m%d")
    ds.ContentTime = ctx.start.strftime("%H%M%S.%f")
    ds.AcquisitionDateTime = ctx.start.strftime("%Y%m%d%H%M%S.%f")
    ds.AcquisitionDuration = float(study.times[-1] - study.times[0]) + 1.0
    ds.AcquisitionNumber = 1
    _enhanced_image_module(ds, ctx)
    _pulse_sequence_module(ds)
    ctx.pixel_module(ds, n_y, n_x)
    ds.NumberOfFrames = n_p * n_z
    ds.AcquisitionContextSequence = DicomSequence([])
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    _dimensions(ds, ctx)
    ds.SharedFunctionalGroupsSequence = DicomSequence([_shared_groups(ctx)])
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(
        [_frame_groups(ctx, p, k) for p in range(n_p) for k in range(n_z)]
    )
    ds.PixelData = np.ascontiguousarray(stored.reshape(n_p * n_z, n_y, n_x), dtype="<u2").tobytes()
    return _save(ds, path)


def _enhanced_image_module(ds: Dataset, ctx: _Context) -> None:
    acq = ctx.study.acquisition
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ComplexImageComponent = "MAGNITUDE"
    ds.AcquisitionContrast = "T1"
    ds.ContentQualification = "RESEARCH"
    ds.ResonantNucleus = "1H"
    ds.KSpaceFiltering = "NONE"
    ds.MagneticFieldStrength = _ds(acq.field_strength_t) if acq.field_strength_t is not None else _ds(1.5)
    ds.ApplicableSafetyStandardAgency = "IEC"
    ds.ImageComments = ds.get("ImageComments", "DCE")


def _pulse_sequence_module(ds: Dataset) -> None:
    ds.PulseSequenceName = "DCE_GRE"
    ds.MRAcquisitionType = "3D"
    ds.EchoPulseSequence = "GRADIENT"
    ds.MultiPlanarExcitation = "NO"
    ds.PhaseContrast = "NO"
    ds.TimeOfFlightContrast = "NO"
    ds.SteadyStatePulseSequence = "NONE"
    ds.EchoPlanarPulseSequence = "NO"
    ds.SaturationRecovery = "NO"
    ds.SpectrallySelectedSuppression = "FAT"
    ds.OversamplingPhase = "NONE"
    ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
    ds.SegmentedKSpaceTraversal = "SINGLE"
    ds.RectilinearPhaseEncodeReordering = "LINEAR"
    ds.NumberOfKSpaceTrajectories = 1
    ds.CoverageOfKSpace = "FULL"


def _dimensions(ds: Dataset, ctx: _Context) -> None:
    """Two dimensions: the temporal position, then the position in the stack."""
    org_uid = ctx.uids("dimension-organisation")
    org = Dataset()
    org.DimensionOrganizationUID = org_uid
    ds.DimensionOrganizationSequence = DicomSequence([org])
    ds.DimensionOrganizationType = "3D_TEMPORAL"
    items = []
    for pointer, label in ((0x00209128, "Temporal Position Index"), (0x00209057, "In-Stack Position Number")):
        item = Dataset()
        item.DimensionOrganizationUID = org_uid
        item.DimensionIndexPointer = pointer
        item.FunctionalGroupPointer = 0x00209111  # Frame Content Sequence
        item.DimensionDescriptionLabel = label
        items.append(item)
    ds.DimensionIndexSequence = DicomSequence(items)


def _item(**kwargs: object) -> Dataset:
    item = Dataset()
    for key, value in kwargs.items():
        setattr(item, key, value)
    return item


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    return _item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def _shared_groups(ctx: _Context) -> Dataset:
    acq = ctx.study.acquisition
    n_y, n_x = ctx.study.shape[1:]
    g = Dataset()
    g.PixelMeasuresSequence = DicomSequence(
        [
            _item(
                PixelSpacing=[_ds(v) for v in ctx.pixel_spacing],
                SliceThickness=_ds(ctx.slice_gap),
                SpacingBetweenSlices=_ds(ctx.slice_gap),
            )
        ]
    )
    g.PlaneOrientationSequence = DicomSequence([_item(ImageOrientationPatient=ctx.orientation_values())])
    g.PixelValueTransformationSequence = DicomSequence(
        [_item(RescaleIntercept=_ds(ctx.intercept), RescaleSlope=_ds(ctx.slope), RescaleType="US")]
    )
    g.FrameAnatomySequence = DicomSequence(
        [
            _item(
                AnatomicRegionSequence=DicomSequence([_code("76752008", "SCT", "Breast")]),
                FrameLaterality="B",
            )
        ]
    )
    g.MRImageFrameTypeSequence = DicomSequence(
        [
            _item(
                FrameType=["ORIGINAL", "PRIMARY", "VOLUME", "NONE"],
                PixelPresentation="MONOCHROME",
                VolumetricProperties="VOLUME",
                VolumeBasedCalculationTechnique="NONE",
                ComplexImageComponent="MAGNITUDE",
                AcquisitionContrast="T1",
            )
        ]
    )
    timing = _item(
        RepetitionTime=float(acq.repetition_time_ms or 4.5),
        FlipAngle=float(acq.flip_angle_deg or 12.0),
        EchoTrainLength=1,
        RFEchoTrainLength=1,
        GradientEchoTrainLength=1,
        SpecificAbsorptionRateSequence=DicomSequence(
            [_item(SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY", SpecificAbsorptionRateValue=0.1)]
        ),
        OperatingModeSequence=DicomSequence(
            [
                _item(OperatingModeType=kind, OperatingMode="IEC_NORMAL")
                for kind in ("STATIC FIELD", "RF", "GRADIENT")
            ]
        ),
        GradientOutputType="DB_DT",
        GradientOutput=0.0,
    )
    g.MRTimingAndRelatedParametersSequence = DicomSequence([timing])
    g.MRFOVGeometrySequence = DicomSequence(
        [
            _item(
                InPlanePhaseEncodingDirection="ROW",
                MRAcquisitionFrequencyEncodingSteps=int(n_x),
                MRAcquisitionPhaseEncodingStepsInPlane=int(n_y),
                MRAcquisitionPhaseEncodingStepsOutOfPlane=int(ctx.study.shape[0]),
                PercentSampling=100.0,
                PercentPhaseFieldOfView=100.0,
            )
        ]
    )
    g.MREchoSequence = DicomSequence([_item(EffectiveEchoTime=float(acq.echo_time_ms or 2.0))])
    g.MRModifierSequence = DicomSequence(
        [
            _item(
                InversionRecovery="NO",
                FlowCompensation="NONE",
                T2Preparation="NO",
                SpectrallySelectedExcitation="NONE",
                SpatialPresaturation="NONE",
                PartialFourier="NO",
                ParallelAcquisition="NO",
            )
        ]
    )
    g.MRImagingModifierSequence = DicomSequence(
        [
            _item(
                MagnetizationTransfer="NONE",
                BloodSignalNulling="NO",
                Tagging="NONE",
                TransmitterFrequency=63.87,
                PixelBandwidth=500.0,
            )
        ]
    )
    g.MRReceiveCoilSequence = DicomSequence(
        [
            _item(
                ReceiveCoilName="BREAST",
                ReceiveCoilManufacturerName="",
                ReceiveCoilType="MULTICOIL",
                QuadratureReceiveCoil="NO",
                MultiCoilDefinitionSequence=DicomSequence(
                    [_item(MultiCoilElementName="BREAST", MultiCoilElementUsed="YES")]
                ),
            )
        ]
    )
    g.MRTransmitCoilSequence = DicomSequence(
        [_item(TransmitCoilName="BODY", TransmitCoilManufacturerName="", TransmitCoilType="BODY")]
    )
    g.MRAveragesSequence = DicomSequence([_item(NumberOfAverages=1.0)])
    g.MRDiffusionSequence = DicomSequence([_item(DiffusionBValue=0.0, DiffusionDirectionality="NONE")])
    return g


def _frame_groups(ctx: _Context, p: int, k: int) -> Dataset:
    when = ctx.phase_datetime(p)
    g = Dataset()
    content = _item(
        FrameAcquisitionNumber=p + 1,
        FrameReferenceDateTime=when.strftime("%Y%m%d%H%M%S.%f"),
        FrameAcquisitionDateTime=when.strftime("%Y%m%d%H%M%S.%f"),
        FrameAcquisitionDuration=1000.0,
        StackID="1",
        InStackPositionNumber=k + 1,
        TemporalPositionIndex=p + 1,
        DimensionIndexValues=[p + 1, k + 1],
    )
    g.FrameContentSequence = DicomSequence([content])
    g.PlanePositionSequence = DicomSequence([_item(ImagePositionPatient=ctx.position(k))])
    g.TemporalPositionSequence = DicomSequence([_item(TemporalPositionTimeOffset=float(ctx.study.times[p]))])
    return g


# --------------------------------------------------------------------------------------------
# small helpers


def _save(ds: Dataset, path: Path) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_NAME
    ds.file_meta = meta
    with _atomic.atomic_path(path, suffix=".dcm") as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def _start_datetime(study: Study) -> _dt.datetime:
    """When the first phase started: study.meta["acquisition_start"] (ISO) if given, else a fixed
    date, so that written files are reproducible."""
    start = study.meta.get("acquisition_start")
    if isinstance(start, str):
        try:
            return _dt.datetime.fromisoformat(start)
        except ValueError:
            pass
    if study.phi.study_date:
        try:
            day = _dt.datetime.strptime(study.phi.study_date, "%Y%m%d")
            return day.replace(hour=DEFAULT_START.hour)
        except ValueError:
            pass
    return DEFAULT_START


_ORDINALS = {1: "1st", 2: "2nd", 3: "3rd"}


def _phase_words(label: str) -> str:
    """Duke-style phase names: pre, 1st pass, 2nd pass ... (other labels as they are)."""
    match = re.fullmatch(r"post(\d+)", label)
    if match:
        n = int(match.group(1))
        return f"{_ORDINALS.get(n, f'{n}th')} pass"
    return label


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "phase"


def phase_series_descriptions(labels: Sequence[str], orientation: str = "axial") -> list[str]:
    """The SeriesDescription this writer gives each phase (used by tests and the layouts)."""
    prefix = {"axial": "ax", "sagittal": "sag", "coronal": "cor"}.get(orientation, "obl")
    return [f"{prefix} dyn {_phase_words(label)}" for label in labels]
