"""The demo tasks ``breastmri train`` knows: which channels, grid, network and card each one gets.

Why a table: the card a package ships with is written from the same spec the training used, so
the channels, spacing and normalisation at inference are by construction the training ones.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ..types import DEMO_LABEL
from .data import CLASSES

PLACEHOLDER_SHA = "0" * 64
#: classifiers' MC-dropout passes: the pipeline's uncertainty, and what the card's metrics average
MC_PASSES = 20
# how the detector's lesion patches are drawn and weighed (loops.train_segmentation)
LESION_SAMPLING = ("voxel", "sized", "missed")
VERSION = "0.1.0"

DISPLAY = {
    "luminal_a": "Luminal A",
    "luminal_b": "Luminal B",
    "her2_enriched": "HER2-enriched",
    "triple_negative": "Triple negative",
    "no_pcr": "Residual disease (no pCR)",
    "pcr": "Pathologic complete response",
    "negative": "Node negative",
    "positive": "Node positive",
    "normal": "Normal",
    "needs_review": "Needs review",
    "lesion": "Lesion",
}


@dataclass
class TaskSpec:
    """Everything that defines one demo package except the trained weights and the metrics."""

    key: str
    name: str
    card_task: str
    target: str
    channels: list[str]
    classes: list[str]
    description: str
    spacing_mm: list[float] | None = None
    resize_to: list[int] | None = None
    patch_size: list[int] | None = None
    normalisation: dict[str, Any] = field(
        default_factory=lambda: {"method": "percentile", "lower": 1, "upper": 99}
    )
    #: classifiers: a thin first block (it runs at full resolution and dominated the CPU time)
    features: list[int] = field(default_factory=lambda: [4, 16, 32, 32])
    dropout: float = 0.3
    longitudinal: bool = False
    activation: str = "softmax"
    min_lesion_ml: float = 0.0
    #: default optimisation budget (steps for segmentation, epochs for classification)
    default_epochs: int = 10
    batch_size: int = 8
    #: classify: read this region around the index lesion ({"around", "size_mm"}) instead of the study
    roi: dict[str, Any] | None = None
    #: training augmentation: random shifts of up to this many voxels (the detector's centring error)
    shift_voxels: int = 0
    #: classify: attention pooling trained onto the lesion (LesionAttentionClassifier; 3 feature
    #: widths): "sigmoid" or "softmax" (its ``pooling``), None for global pooling (CaseClassifier)
    attention: str | None = None
    #: fine-tuning: the package the weights started from (name, version, weights' sha256, path)
    init_from: str | None = None

    @property
    def is_segmentation(self) -> bool:
        return self.card_task in ("segment", "detect")

    def network(self) -> dict[str, Any]:
        if self.is_segmentation:
            return {
                "factory": "napari_breastmri.models.networks.LesionUNet",
                "kwargs": {
                    "in_channels": len(self.channels),
                    "out_channels": 1,
                    "features": list(self.features),
                },
            }
        kwargs: dict[str, Any] = {
            "in_channels": len(self.channels),
            "out_channels": len(self.classes),
            "features": list(self.features),
            "dropout": self.dropout,
        }
        if self.attention:
            kwargs["pooling"] = self.attention
        return {
            "factory": "napari_breastmri.models.networks."
            + ("LesionAttentionClassifier" if self.attention else "CaseClassifier"),
            "kwargs": kwargs,
        }

    def card(
        self, *, training: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The card.yaml mapping (weights filled in by ``save_package``)."""
        norm = copy.deepcopy(self.normalisation)
        if "pre" in self.channels:
            norm.setdefault("reference", "pre")
        inputs: dict[str, Any] = {
            "channels": list(self.channels),
            "spacing_mm": self.spacing_mm,
            "patch_size": self.patch_size,
            "resize_to": self.resize_to,
            "roi": copy.deepcopy(self.roi),
            "normalisation": norm,
            "min_phases": 3 if any("last" in c for c in self.channels) else 2,
            "orientation": "study",
        }
        return {
            "name": self.name,
            "version": VERSION,
            "task": self.card_task,
            "target": self.target,
            "demo": True,
            "description": f"{self.description} ({DEMO_LABEL}).",
            "network": self.network(),
            "weights": {"file": "model.safetensors", "format": "safetensors", "sha256": PLACEHOLDER_SHA},
            "inputs": {k: v for k, v in inputs.items() if v is not None},
            "outputs": {
                "classes": list(self.classes),
                "display_names": {c: DISPLAY.get(c, c) for c in self.classes},
                "activation": self.activation,
                "threshold": 0.5,
                "min_lesion_ml": self.min_lesion_ml,
            },
            # region models: block3 (6 x 12 x 12 on a 24 x 48 x 48 region, 8 x 6 x 6 mm cells) points
            # at the lesion where block4's 16 mm cells could not (docs/explanations.md)
            "cam": {
                "target_layer": "dec1"
                if self.is_segmentation
                else "block3"
                if self.roi or self.attention
                else "block4"
            },
            "uncertainty": {"method": "tta", "passes": 4}
            if self.is_segmentation
            else {"method": "mc_dropout", "passes": MC_PASSES},
            "training": training or {},
            "intended_use": (
                f"{DEMO_LABEL}. Trained only on the synthetic phantom of napari-breastmri to show how a "
                "model package plugs into the viewer and the pipeline; its outputs mean nothing for a real patient."
            ),
            "metrics": metrics or {},
        }

    def parsed_card(self):
        """The card as a validated ModelCard (placeholder sha), for preprocessing during training."""
        from ..models.card import parse_card

        return parse_card(self.card(), where=f"task {self.key}")


_CLASSIFIER_INPUT = ["pre", "sub1", "sub_last"]
#: case-level models read a 48 x 72 x 72 mm region around the index lesion on a 24 x 48 x 48 grid
#: (2 x 1.5 x 1.5 mm): the largest phantom cancer (40 mm) with its oedema and satellites fits, and
#: the lesion is not averaged away as it was when the whole breast was shrunk to 24 x 64 x 64.
_ROI = {"around": "index_lesion", "size_mm": [48.0, 72.0, 72.0]}
_ROI_GRID = [24, 48, 48]
_ROI_FEATURES = [16, 32, 64, 64]


def _region_task(key: str, name: str, target: str, description: str, **kw: Any) -> TaskSpec:
    """A case-level classifier that reads the region around the index lesion."""
    base: dict[str, Any] = dict(
        card_task="classify", channels=list(_CLASSIFIER_INPUT), classes=CLASSES[target],
        resize_to=list(_ROI_GRID), roi=copy.deepcopy(_ROI), features=list(_ROI_FEATURES),
        shift_voxels=3, default_epochs=60, batch_size=16,
    )  # fmt: skip
    base.update(kw)
    return TaskSpec(key=key, name=name, target=target, description=description, **base)


TASKS: dict[str, TaskSpec] = {
    "seg": TaskSpec(
        key="seg",
        name="demo-lesion-seg",
        card_task="segment",
        target="lesion",
        # the late subtraction shows the slowly enhancing (persistent) masses that the early one
        # barely shows: without it the detector missed most fibroadenomas
        channels=["pre", "sub1", "sub_last"],
        classes=["lesion"],
        description="Lesion detection and segmentation: a small 3D U-Net on pre and the early and late subtractions",
        spacing_mm=[2.0, 1.6, 1.6],
        patch_size=[32, 96, 96],
        features=[8, 16, 32, 64],
        dropout=0.0,
        activation="sigmoid",
        min_lesion_ml=0.05,
        default_epochs=150,
        batch_size=16,
    ),
    "subtype": _region_task(
        "subtype",
        "demo-subtype",
        "subtype",
        "Molecular subtype (4 classes) from the pre-contrast phase and early/late subtractions "
        "around the index lesion, pooled where the network finds lesion",
        # attention pooling moves the evidence onto the lesion; with sigmoid weights "attend to
        # nothing" became the luminal A signal (its heatmaps missed small luminal A cancers).
        # Softmax weights remove that road: pointing game 0.75 -> 0.90 (docs/explanations.md)
        attention="softmax",
        features=list(_ROI_FEATURES[:3]),
    ),  # fmt: skip
    "pcr": _region_task(
        "pcr",
        "demo-pcr",
        "pcr",
        "Pathologic complete response from the baseline exam alone, around the index lesion",
    ),  # fmt: skip
    "pcr_pair": _region_task(
        "pcr_pair",
        "demo-pcr-pair",
        "pcr",
        "Pathologic complete response from the baseline and early-treatment exams together, "
        "around the index lesion",
        channels=["pre", "sub1", "sub_last", "pair:sub1", "pair:sub_last"],
        longitudinal=True,
    ),  # fmt: skip
    # the invented node correlate is enlarged enhancing axillary nodes: the whole field of view
    "lymph_node": TaskSpec(
        key="lymph_node",
        name="demo-lymph-node",
        card_task="classify",
        target="lymph_node",
        channels=list(_CLASSIFIER_INPUT),
        classes=CLASSES["lymph_node"],
        description="Axillary lymph node status from the pre-contrast phase and early/late subtractions",
        resize_to=[32, 96, 96],
        features=[8, 16, 32, 64],
        default_epochs=40,
        batch_size=16,
    ),
    "screening": TaskSpec(
        key="screening",
        name="demo-screening",
        card_task="classify",
        target="screening",
        # early and late subtractions: malignant enhancement washes out or plateaus, most benign
        # enhancement persists, and from the early phase alone the model could not tell them apart
        channels=list(_CLASSIFIER_INPUT),
        classes=CLASSES["screening"],
        description="Screening triage (normal or needs review) from the pre-contrast phase and early/late "
        "subtractions, pooled where the network finds lesion",
        resize_to=[32, 96, 96],
        # whole-study global pooling was at chance: a 6 mm cancer is a few voxels of 32 x 96 x 96.
        # Attention pooling trained onto the lesions reads the lesions it finds (multiple-instance)
        attention="sigmoid",
        features=[8, 24, 48],
        default_epochs=40,
        batch_size=16,
    ),
}


def get_task(key: str) -> TaskSpec:
    from ..errors import BreastMRIError

    if key not in TASKS:
        raise BreastMRIError(f"Unknown training task {key!r}; choose one of {sorted(TASKS)} or 'all'.")
    return copy.deepcopy(TASKS[key])
