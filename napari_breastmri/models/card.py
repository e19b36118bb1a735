"""card.yaml: what a model package is, what it needs and what it promises, as a typed dataclass.

Why typed and validated up front: a card is written by people (and by ``breastmri train``) and read
by the pipeline, the viewer and the report. Every mistake in it should surface once, when the
package is opened, as one :class:`~napari_breastmri.errors.ModelPackageError` sentence naming the key
and what to write instead, never as a KeyError deep inside inference.

The format is documented in docs/model-packages.md; keep the two in step.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelPackageError

CARD_NAME = "card.yaml"

TASKS = ("detect", "segment", "classify", "interactive-segment")
WEIGHT_FORMATS = ("safetensors", "torch", "torchscript", "nnunetv2")
ACTIVATIONS = ("softmax", "sigmoid", "none")
UNCERTAINTY_METHODS = ("none", "mc_dropout", "tta")
NORMALISATIONS = ("percentile", "zscore", "none")
ORIENTATIONS = ("study", "axial")
#: network factories a card may name; anything else could run arbitrary code at import time.
ALLOWED_FACTORY_PREFIXES = (
    "monai.networks.nets.",
    "napari_breastmri.models.networks.",
    "torchvision.models.",
)
#: factories that are not dotted Python paths
SPECIAL_FACTORIES = ("torchscript", "nnunetv2")

_TOKEN = re.compile(r"^(pre|last|sub_last|post\d+|sub\d+|uf\d+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def valid_channel_token(token: str) -> bool:
    """True for "pre", "postN", "subN", "last", "sub_last", "ufN" and "pair:<one of those>"."""
    if token.startswith("pair:"):
        token = token[len("pair:") :]
    return bool(_TOKEN.match(token))


@dataclass
class NetworkSpec:
    """How to build the network: a dotted factory path (or "torchscript"/"nnunetv2") and kwargs."""

    factory: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class WeightsSpec:
    """The weights file (or nnU-Net folder) inside the package, its format and its sha256."""

    file: str
    format: str
    sha256: str
    #: nnU-Net v2 only: folds to load and the checkpoint name
    folds: list[int | str] = field(default_factory=lambda: [0])
    checkpoint: str = "checkpoint_final.pth"


@dataclass
class InputSpec:
    """Which channels the network sees and on which grid."""

    channels: list[str]
    #: resample to this voxel size (z, y, x) in mm; None keeps the study's spacing
    spacing_mm: list[float] | None = None
    #: sliding-window size (segment/detect); the network's input size (classify, with resize_to)
    patch_size: list[int] | None = None
    #: classify: resample the whole study to exactly this shape (z, y, x) over the same extent
    resize_to: list[int] | None = None
    #: {"method": percentile|zscore|none, "reference": "pre", "lower": 1, "upper": 99, "clip": bool}
    normalisation: dict[str, Any] = field(default_factory=lambda: {"method": "percentile"})
    min_phases: int = 2
    #: "study": keep the study's axes; "axial": permute/flip axes to the nearest axial (S, P, L) order
    orientation: str = "study"
    #: sliding-window overlap (fraction of the patch) and windows per batch
    overlap: float = 0.5
    sw_batch_size: int = 4
    #: classify: read a region around the index lesion instead of the whole study,
    #: {"around": "index_lesion", "size_mm": [z, y, x]} (see docs/model-packages.md)
    roi: dict[str, Any] | None = None


@dataclass
class OutputSpec:
    """What comes out of the network and how to turn it into findings."""

    classes: list[str]
    display_names: dict[str, str] = field(default_factory=dict)
    activation: str = "softmax"
    threshold: float = 0.5
    min_lesion_ml: float = 0.0


@dataclass
class CamSpec:
    target_layer: str | None = None


@dataclass
class UncertaintySpec:
    method: str = "none"
    passes: int = 1


@dataclass
class ModelCard:
    """A parsed, validated card.yaml (see docs/model-packages.md for each key)."""

    name: str
    version: str
    task: str
    target: str
    network: NetworkSpec
    weights: WeightsSpec
    inputs: InputSpec
    outputs: OutputSpec
    demo: bool = False
    cam: CamSpec = field(default_factory=CamSpec)
    uncertainty: UncertaintySpec = field(default_factory=UncertaintySpec)
    training: dict[str, Any] = field(default_factory=dict)
    intended_use: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    #: keys we do not know, kept so that to_yaml() round-trips them
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """ "NAME@VERSION", used in provenance and ModelRun."""
        return f"{self.name}@{self.version}"

    @property
    def n_channels(self) -> int:
        return len(self.inputs.channels)

    @property
    def needs_follow_up(self) -> bool:
        return any(t.startswith("pair:") for t in self.inputs.channels)

    @property
    def needs_lesion(self) -> bool:
        """True when the model reads a region around the index lesion (found by a detector first)."""
        return self.inputs.roi is not None

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        extra = doc.pop("extra")
        if self.weights.format != "nnunetv2":
            doc["weights"].pop("folds")
            doc["weights"].pop("checkpoint")
        doc.update(extra)
        return doc

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


# ---------------------------------------------------------------------------------------- parsing


def _fail(where: str, msg: str) -> ModelPackageError:
    return ModelPackageError(f"Model card {where}: {msg}")


def _section(doc: dict[str, Any], key: str, where: str, required: bool = True) -> dict[str, Any]:
    value = doc.get(key)
    if value is None:
        if required:
            raise _fail(where, f"the '{key}' section is missing; see docs/model-packages.md for its keys.")
        return {}
    if not isinstance(value, dict):
        raise _fail(where, f"'{key}' must be a mapping, not {type(value).__name__}.")
    return value


def _known(section: dict[str, Any], cls: type, key: str, where: str) -> dict[str, Any]:
    names = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    unknown = sorted(set(section) - names)
    if unknown:
        raise _fail(where, f"unknown key(s) {unknown} in '{key}'; allowed: {sorted(names)}.")
    return section


def _int_list(value: Any, key: str, where: str, n: int = 3) -> list[int] | None:
    if value is None:
        return None
    if (
        not isinstance(value, (list, tuple))
        or len(value) != n
        or not all(isinstance(v, int) and v > 0 for v in value)
    ):
        raise _fail(where, f"'{key}' must be {n} positive integers (z, y, x), got {value!r}.")
    return [int(v) for v in value]


def _float_list(value: Any, key: str, where: str, n: int = 3) -> list[float] | None:
    if value is None:
        return None
    ok = isinstance(value, (list, tuple)) and len(value) == n
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value)
    if not ok:
        raise _fail(where, f"'{key}' must be {n} positive numbers in mm (z, y, x), got {value!r}.")
    return [float(v) for v in value]


def _choice(value: Any, allowed: Iterable[str], key: str, where: str) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise _fail(where, f"'{key}' is {value!r}; it must be one of {list(allowed)}.")
    return str(value)


ROI_ANCHORS = ("index_lesion",)


def _roi(value: Any, where: str) -> dict[str, Any] | None:
    """Validate ``inputs.roi``: {around: index_lesion, size_mm: [z, y, x]} or nothing."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail(
            where, "'inputs.roi' must be a mapping such as {around: index_lesion, size_mm: [48, 64, 64]}."
        )
    around = _choice(value.get("around", "index_lesion"), ROI_ANCHORS, "inputs.roi.around", where)
    size = _float_list(value.get("size_mm"), "inputs.roi.size_mm", where)
    if size is None or min(size) <= 0:
        raise _fail(
            where, "'inputs.roi.size_mm' must give the region's size in mm as three positive numbers."
        )
    return {"around": around, "size_mm": size}


def parse_card(doc: Any, where: str = "card.yaml") -> ModelCard:
    """Validate a loaded card mapping and return a :class:`ModelCard` (raises ModelPackageError)."""
    if not isinstance(doc, dict):
        raise _fail(where, "the file must hold a YAML mapping (key: value lines).")
    for key in ("name", "version", "task", "target"):
        if key not in doc or doc[key] in (None, ""):
            raise _fail(where, f"the required key '{key}' is missing.")
    name = str(doc["name"])
    if not _NAME.match(name):
        raise _fail(where, f"name {name!r} may only hold letters, digits, '.', '_' and '-'.")
    task = _choice(doc["task"], TASKS, "task", where)

    net = _known(_section(doc, "network", where), NetworkSpec, "network", where)
    factory = net.get("factory")
    if not isinstance(factory, str) or not factory:
        raise _fail(
            where, "'network.factory' must name a network class (e.g. monai.networks.nets.SegResNet)."
        )
    if factory not in SPECIAL_FACTORIES and not factory.startswith(ALLOWED_FACTORY_PREFIXES):
        raise _fail(
            where,
            f"network factory {factory!r} is not allowed; use a class under {list(ALLOWED_FACTORY_PREFIXES)} "
            "or 'torchscript'.",
        )
    kwargs = net.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise _fail(where, "'network.kwargs' must be a mapping of keyword arguments.")
    network = NetworkSpec(factory=factory, kwargs=dict(kwargs))

    w = _known(_section(doc, "weights", where), WeightsSpec, "weights", where)
    if not w.get("file"):
        raise _fail(where, "'weights.file' is missing: name the weights file inside the package.")
    if Path(str(w["file"])).is_absolute() or ".." in Path(str(w["file"])).parts:
        raise _fail(where, f"'weights.file' {w['file']!r} must be a relative path inside the package.")
    fmt = _choice(w.get("format", "safetensors"), WEIGHT_FORMATS, "weights.format", where)
    sha = str(w.get("sha256") or "").lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise _fail(
            where,
            "'weights.sha256' must be the 64-hex sha256 of the weights; compute it with "
            "'python -m napari_breastmri.models.card WEIGHTS'.",
        )
    if (fmt == "torchscript") != (factory == "torchscript"):
        raise _fail(
            where, "a TorchScript package needs both network.factory and weights.format 'torchscript'."
        )
    if (fmt == "nnunetv2") != (factory == "nnunetv2"):
        raise _fail(where, "an nnU-Net v2 package needs both network.factory and weights.format 'nnunetv2'.")
    weights = WeightsSpec(
        file=str(w["file"]),
        format=fmt,
        sha256=sha,
        folds=list(w.get("folds", [0])),
        checkpoint=str(w.get("checkpoint", "checkpoint_final.pth")),
    )

    i = _known(_section(doc, "inputs", where), InputSpec, "inputs", where)
    channels = i.get("channels")
    if not isinstance(channels, list) or not channels or not all(isinstance(t, str) for t in channels):
        raise _fail(where, "'inputs.channels' must be a non-empty list of tokens such as [pre, post1, sub1].")
    bad = [t for t in channels if not valid_channel_token(t)]
    if bad:
        raise _fail(
            where,
            f"unknown channel token(s) {bad}; use pre, postN, subN, ufN, last, sub_last or pair:<token>.",
        )
    norm = i.get("normalisation") or {"method": "percentile"}
    if not isinstance(norm, dict):
        raise _fail(where, "'inputs.normalisation' must be a mapping such as {method: percentile}.")
    _choice(norm.get("method", "percentile"), NORMALISATIONS, "inputs.normalisation.method", where)
    overlap = float(i.get("overlap", 0.5))
    if not 0.0 <= overlap < 1.0:
        raise _fail(where, f"'inputs.overlap' must be in [0, 1), got {overlap}.")
    inputs = InputSpec(
        channels=list(channels),
        spacing_mm=_float_list(i.get("spacing_mm"), "inputs.spacing_mm", where),
        patch_size=_int_list(i.get("patch_size"), "inputs.patch_size", where),
        resize_to=_int_list(i.get("resize_to"), "inputs.resize_to", where),
        normalisation=dict(norm),
        min_phases=int(i.get("min_phases", 2)),
        orientation=_choice(i.get("orientation", "study"), ORIENTATIONS, "inputs.orientation", where),
        overlap=overlap,
        sw_batch_size=max(1, int(i.get("sw_batch_size", 4))),
        roi=_roi(i.get("roi"), where),
    )
    if inputs.roi is not None and task != "classify":
        raise _fail(where, f"'inputs.roi' is for classify models; a '{task}' model reads the whole study.")
    if inputs.roi is not None and inputs.resize_to is None and inputs.spacing_mm is None:
        raise _fail(
            where, "'inputs.roi' needs 'inputs.resize_to' (or 'spacing_mm') to set the network's grid."
        )
    if task in ("segment", "detect", "interactive-segment") and inputs.patch_size is None:
        raise _fail(where, f"a '{task}' model needs 'inputs.patch_size' (the sliding-window size, z y x).")

    o = _known(_section(doc, "outputs", where), OutputSpec, "outputs", where)
    classes = o.get("classes")
    if not isinstance(classes, list) or not classes:
        raise _fail(where, "'outputs.classes' must list the output classes (e.g. [background, lesion]).")
    activation = _choice(o.get("activation", "softmax"), ACTIVATIONS, "outputs.activation", where)
    threshold = float(o.get("threshold", 0.5))
    if not 0.0 < threshold < 1.0:
        raise _fail(where, f"'outputs.threshold' must be between 0 and 1, got {threshold}.")
    outputs = OutputSpec(
        classes=[str(c) for c in classes],
        display_names={str(k): str(v) for k, v in (o.get("display_names") or {}).items()},
        activation=activation,
        threshold=threshold,
        min_lesion_ml=float(o.get("min_lesion_ml", 0.0)),
    )
    if task == "classify" and len(outputs.classes) < 2:
        raise _fail(where, "a 'classify' model needs at least two output classes.")

    in_ch = network.kwargs.get("in_channels")
    if in_ch is not None and int(in_ch) != len(inputs.channels):
        raise _fail(
            where,
            f"the network takes {in_ch} input channels but inputs.channels lists {len(inputs.channels)} "
            f"({inputs.channels}); make them agree.",
        )
    out_ch = network.kwargs.get("out_channels", network.kwargs.get("num_classes"))
    n_expected = len(outputs.classes) if not (activation == "sigmoid" and task != "classify") else None
    if out_ch is not None and n_expected is not None and int(out_ch) != n_expected:
        raise _fail(
            where,
            f"the network has {out_ch} output channels but outputs.classes lists {n_expected}; make them agree.",
        )

    cam_doc = _known(_section(doc, "cam", where, required=False), CamSpec, "cam", where)
    unc_doc = _known(
        _section(doc, "uncertainty", where, required=False), UncertaintySpec, "uncertainty", where
    )
    unc = UncertaintySpec(
        method=_choice(
            unc_doc.get("method", "none") or "none", UNCERTAINTY_METHODS, "uncertainty.method", where
        ),
        passes=max(1, int(unc_doc.get("passes", 1))),
    )
    known = {
        "name", "version", "task", "target", "demo", "network", "weights", "inputs", "outputs", "cam",
        "uncertainty", "training", "intended_use", "metrics", "description",
    }  # fmt: skip
    return ModelCard(
        name=name,
        version=str(doc["version"]),
        task=task,
        target=str(doc["target"]),
        demo=bool(doc.get("demo", False)),
        network=network,
        weights=weights,
        inputs=inputs,
        outputs=outputs,
        cam=CamSpec(target_layer=cam_doc.get("target_layer")),
        uncertainty=unc,
        training=dict(doc.get("training") or {}),
        intended_use=str(doc.get("intended_use") or ""),
        metrics=dict(doc.get("metrics") or {}),
        description=str(doc.get("description") or ""),
        extra={k: v for k, v in doc.items() if k not in known},
    )


def load_card(path: str | os.PathLike[str]) -> ModelCard:
    """Read and validate a card.yaml file (or the card.yaml inside a package folder)."""
    import yaml

    path = Path(path)
    if path.is_dir():
        path = path / CARD_NAME
    if not path.is_file():
        raise ModelPackageError(
            f"No {CARD_NAME} found at {path}; a model package needs one beside its weights."
        )
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ModelPackageError(
            f"Model card {path} is not valid YAML ({err}); fix the syntax and retry."
        ) from err
    return parse_card(doc, where=str(path))


# ------------------------------------------------------------------------------------------ hashes


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks (weights can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_path(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, or of a folder (nnU-Net): hash of the sorted "relpath sha256" lines."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        raise ModelPackageError(f"Weights {path} do not exist; the card names a file the package lacks.")
    lines = [
        f"{p.relative_to(path).as_posix()} {sha256_file(p)}\n"
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    ]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    """``python -m napari_breastmri.models.card WEIGHTS...``: print sha256 lines for a card."""
    import sys

    for arg in argv if argv is not None else sys.argv[1:]:
        print(f"{sha256_path(arg)}  {arg}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
