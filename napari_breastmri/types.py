"""The data that flows through napari-breastmri: Study in, Findings out.

Everything here is a plain dataclass with numpy arrays, no torch and no Qt, so the io, kinetics,
model, report and viewer code all speak the same language and can be tested headless.

Geometry travels with pixels: every array on the study grid is accompanied by the study's 4x4
``affine`` ((z, y, x, 1) -> LPS mm, see :mod:`napari_breastmri.geometry`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

DEMO_LABEL = "synthetic demo - not for clinical use"

LesionStatus = Literal["proposed", "accepted", "rejected", "added"]
CurveType = Literal["persistent", "plateau", "washout", "none"]


@dataclass
class Protocol:
    """Acquisition protocol: conventional DCE or ultrafast followed by conventional phases."""

    kind: Literal["conventional", "ultrafast"] = "conventional"
    #: median time between consecutive phases (s); for ultrafast, of the ultrafast frames
    temporal_resolution_s: float | None = None
    #: number of ultrafast frames after the pre-contrast phase (0 for conventional)
    n_ultrafast: int = 0


@dataclass
class Acquisition:
    """Acquisition parameters that quantitative kinetics need, when the source tells them."""

    repetition_time_ms: float | None = None
    echo_time_ms: float | None = None
    flip_angle_deg: float | None = None
    field_strength_t: float | None = None
    manufacturer: str | None = None


@dataclass
class PatientInfo:
    """Protected health information, kept apart so that the UI and reports can hide it."""

    name: str = ""
    patient_id: str = ""
    birth_date: str = ""
    accession: str = ""
    study_date: str = ""
    institution: str = ""

    def is_empty(self) -> bool:
        return not any(asdict(self).values())

    def redacted(self) -> PatientInfo:
        return PatientInfo()


@dataclass
class SkippedSeries:
    """A series found beside the DCE series but not used, and why (shown to the user)."""

    series_uid: str
    description: str
    reason: str
    n_files: int = 0


@dataclass
class Study:
    """One multi-phase breast MRI exam on one voxel grid.

    ``data`` is float32 (phase, z, y, x); ``times`` are seconds from the start of the first phase,
    strictly increasing; ``phase_labels`` are "pre", "post1", ... (or "uf1", ... for ultrafast).
    """

    data: np.ndarray
    affine: np.ndarray
    times: np.ndarray
    phase_labels: list[str]
    protocol: Protocol = field(default_factory=Protocol)
    acquisition: Acquisition = field(default_factory=Acquisition)
    phi: PatientInfo = field(default_factory=PatientInfo)
    source: str = ""
    study_uid: str = ""
    series_uids: list[str] = field(default_factory=list)
    skipped_series: list[SkippedSeries] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: free-form extras (dataset layout, case id, phantom truth path, ...)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data, dtype=np.float32)
        self.affine = np.asarray(self.affine, dtype=float)
        self.times = np.asarray(self.times, dtype=float)
        if self.data.ndim != 4:
            raise ValueError(f"Study.data must be (phase, z, y, x), got shape {self.data.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"Study.affine must be 4x4, got {self.affine.shape}")
        if len(self.times) != self.data.shape[0] or len(self.phase_labels) != self.data.shape[0]:
            raise ValueError("Study needs one time and one label per phase")

    @property
    def n_phases(self) -> int:
        return int(self.data.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape (z, y, x)."""
        return tuple(int(s) for s in self.data.shape[1:])  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (dz, dy, dx) in mm, from the affine."""
        from .geometry import spacing_from_affine

        return spacing_from_affine(self.affine)

    @property
    def voxel_volume_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])) / 1000.0)

    def phase(self, label: str) -> np.ndarray:
        """The (z, y, x) volume of the phase with this label."""
        return self.data[self.phase_labels.index(label)]


@dataclass
class Lesion:
    """One finding on the study grid. ``bbox`` = [z0, y0, x0, z1, y1, x1], voxels, end exclusive.

    ``label`` is this lesion's value in ``Findings.label_mask`` (0 when it has no mask).
    ``provenance`` lists what happened to it: {"who": "model:NAME@VER" | "human", "what", "when"}.
    """

    id: int
    bbox: list[int]
    score: float
    label: int = 0
    volume_ml: float | None = None
    diameters_mm: list[float] | None = None
    centroid_zyx: list[float] | None = None
    curve_type: str | None = None
    status: LesionStatus = "proposed"
    source: str = ""
    provenance: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class CasePrediction:
    """A case-level probability vector with its uncertainty (e.g. MC dropout or TTA)."""

    target: str
    probabilities: dict[str, float]
    #: per class (low, high), e.g. the 5th and 95th percentile over stochastic passes
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    model: str = ""
    method: str = ""
    display_names: dict[str, str] = field(default_factory=dict)

    @property
    def top_class(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)


@dataclass
class Heatmap:
    """A CAM or attribution map on the study grid, normalised to [0, 1].

    ``scores`` holds faithfulness numbers (deletion/insertion AUC, pointing game, randomisation
    rank correlation ...); ``phase_attribution`` the share of evidence per input channel.
    """

    data: np.ndarray
    affine: np.ndarray
    method: str
    target: str
    layer: str
    model: str
    phase_attribution: dict[str, float] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    kinetics_share: dict[str, float] = field(default_factory=dict)
    file: str | None = None


@dataclass
class ModelRun:
    """What ran: which package, where, and how long (shown in the UI and the report)."""

    name: str
    version: str
    task: str
    target: str
    device: str
    seconds: float = 0.0
    demo: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class Findings:
    """Everything the models (and annotators) say about one study, on the study grid."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    lesions: list[Lesion] = field(default_factory=list)
    label_mask: np.ndarray | None = None
    case_predictions: dict[str, CasePrediction] = field(default_factory=dict)
    heatmaps: list[Heatmap] = field(default_factory=list)
    models: list[ModelRun] = field(default_factory=list)
    device: str = ""
    warnings: list[str] = field(default_factory=list)
    study_uid: str = ""
    #: where the study came from, so an export can reload it later without being told (paths,
    #: PACS, phantom recipe, UIDs): see ``io.findings_json.study_source_record``; {} when unknown
    study_source: dict[str, Any] = field(default_factory=dict)

    def lesion(self, lesion_id: int) -> Lesion:
        for lesion in self.lesions:
            if lesion.id == lesion_id:
                return lesion
        raise KeyError(lesion_id)

    def lesion_region(self, lesion: Lesion) -> np.ndarray | list[int]:
        """Where a lesion is, for its kinetics: its voxels in ``label_mask``, else its box.

        The box when it has no mask, or when its voxels were painted over by another lesion."""
        if self.label_mask is not None and lesion.label > 0:
            mask = np.asarray(self.label_mask) == lesion.label
            if mask.any():
                return mask
        return list(lesion.bbox)


@dataclass
class Progress:
    """One step of a long computation, yielded by core generators and shown by GUI and CLI."""

    step: str
    fraction: float
    message: str = ""
