"""Open, verify and build a model package (a folder or .zip with card.yaml and weights).

Safe by default, in this order: the card is validated; a .zip is extracted member by member into
a cache folder, refusing absolute paths, ``..`` and links; the weights' sha256 is checked against
the card *before* anything is deserialised; weights are read as safetensors, as a torch file with
``torch.load(weights_only=True)`` (a pickle holding anything but tensors is refused), or as
TorchScript; the network class comes only from allowed module prefixes (see
:data:`~napari_breastmri.models.card.ALLOWED_FACTORY_PREFIXES`). torch is imported lazily.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _atomic
from ..errors import CorruptFile, ModelPackageError, ModelVerificationError
from .card import ALLOWED_FACTORY_PREFIXES, CARD_NAME, ModelCard, load_card, parse_card, sha256_path

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..types import Study

#: refuse zips that would expand beyond this (a zip bomb, or not a model package)
MAX_UNZIPPED_BYTES = 8 << 30


class CorruptWeights(ModelPackageError, CorruptFile):
    """The weights file matches its sha256 but cannot be read (truncated or not the stated format)."""


def cache_root() -> Path:
    """Where .zip packages are extracted ($BREASTMRI_CACHE_DIR or the platform's user cache)."""
    env = os.environ.get("BREASTMRI_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-breastmri")) / "packages"


@dataclass
class ModelPackage:
    """An opened model package: its validated card and the folder holding its files.

    ``source`` is what the user gave (a folder or a .zip); ``path`` the folder read from (the
    extraction folder for a zip). Weights are verified on every :meth:`build` (cheap next to
    inference), so a file changed after opening is still caught.
    """

    card: ModelCard
    path: Path
    source: Path
    origin: str = "path"
    _verified: tuple[str, float, int] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def label(self) -> str:
        return self.card.label

    @property
    def weights_path(self) -> Path:
        return self.path / self.card.weights.file

    def verify(self) -> str:
        """Check the weights' sha256 against the card; return it (raises ModelVerificationError)."""
        wp = self.weights_path
        if not wp.exists():
            raise ModelPackageError(
                f"Model {self.label}: weights file '{self.card.weights.file}' is missing from {self.source}; "
                "the package is incomplete, copy it again."
            )
        st = wp.stat()
        key = (self.card.weights.sha256, st.st_mtime, st.st_size)
        if self._verified == key and wp.is_file():
            return self.card.weights.sha256
        digest = sha256_path(wp)
        if digest != self.card.weights.sha256:
            raise ModelVerificationError(
                f"Model {self.label}: the weights' sha256 is {digest[:12]}... but the card says "
                f"{self.card.weights.sha256[:12]}...; the file was changed or damaged, so it will not be loaded. "
                "Re-install the package from its source."
            )
        self._verified = key
        return digest

    def build(self, device: Any = "cpu") -> torch.nn.Module:
        """The network in eval mode with verified weights, on ``device``."""
        self.verify()
        model = _build_network(self)
        model.eval()
        return model.to(device)

    def prepare_input(
        self, study: Study, follow_up: Study | None = None, roi_centre: Any = None
    ) -> tuple[torch.Tensor, np.ndarray]:
        """(tensor (C, z, y, x) float32, affine of the model grid) for this study, per the card.

        ``roi_centre`` (world LPS mm) is the index lesion's centre for cards with ``inputs.roi``.
        """
        from ..inference.preprocess import prepare_input

        return prepare_input(self.card, study, follow_up, roi_centre)

    def info(self) -> dict[str, Any]:
        c = self.card
        return {
            "name": c.name,
            "version": c.version,
            "task": c.task,
            "target": c.target,
            "demo": c.demo,
            "channels": c.inputs.channels,
            "path": str(self.source),
            "origin": self.origin,
        }


# ------------------------------------------------------------------------------------------ opening


def load_package(path_or_name: str | os.PathLike[str], *, origin: str | None = None) -> ModelPackage:
    """Open a package from a folder, a .zip, a card.yaml path, or a registry name ("NAME[@VERSION]")."""
    path = Path(path_or_name)
    if not path.exists():
        if isinstance(path_or_name, str) and os.sep not in path_or_name and not path_or_name.endswith(".zip"):
            from .registry import resolve

            return resolve(path_or_name)
        raise ModelPackageError(
            f"Model package {path} does not exist; give a folder, a .zip or a name from 'breastmri models list'."
        )
    if path.is_file() and path.name == CARD_NAME:
        path = path.parent
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise ModelPackageError(
                f"{path} is neither a package folder nor a .zip; a package holds {CARD_NAME}."
            )
        folder = extract_zip(path)
        return ModelPackage(card=load_card(folder), path=folder, source=path, origin=origin or "zip")
    return ModelPackage(card=load_card(path), path=path, source=path, origin=origin or "path")


def _safe_members(zf: zipfile.ZipFile, where: Path) -> list[zipfile.ZipInfo]:
    total = 0
    members = []
    for info in zf.infolist():
        name = info.filename
        parts = Path(name.replace("\\", "/")).parts
        mode = info.external_attr >> 16
        if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
            raise ModelPackageError(f"{where} holds the unsafe path {name!r} (outside the package); refused.")
        if stat.S_ISLNK(mode):
            raise ModelPackageError(
                f"{where} holds a symbolic link {name!r}; packages may hold plain files only."
            )
        total += info.file_size
        if total > MAX_UNZIPPED_BYTES:
            raise ModelPackageError(f"{where} would expand beyond {MAX_UNZIPPED_BYTES >> 30} GB; refused.")
        members.append(info)
    return members


def extract_zip(zip_path: str | os.PathLike[str], cache: Path | None = None) -> Path:
    """Extract a .zip package safely into the cache; return the folder holding card.yaml.

    The folder is named by the zip's sha256, so a changed zip never reuses a stale extraction,
    and it appears atomically (extracted into a temporary folder, then renamed).
    """
    zip_path = Path(zip_path)
    digest = sha256_path(zip_path)[:16]
    root = (cache or cache_root()) / f"{zip_path.stem}-{digest}"
    if not (root / ".complete").exists():
        try:
            with zipfile.ZipFile(zip_path) as zf:
                members = _safe_members(zf, zip_path)
                with _atomic.atomic_dir(root) as tmp:
                    base = tmp.resolve()
                    for info in members:
                        target = (base / info.filename).resolve()
                        if not target.is_relative_to(base):
                            raise ModelPackageError(
                                f"{zip_path} member {info.filename!r} escapes the package."
                            )
                        if info.is_dir():
                            target.mkdir(parents=True, exist_ok=True)
                            continue
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with zf.open(info) as src, open(target, "wb") as dst:
                            shutil.copyfileobj(src, dst)
                    (tmp / ".complete").write_text("ok\n")
        except zipfile.BadZipFile as err:
            raise CorruptWeights(f"{zip_path} is a damaged zip ({err}); download or copy it again.") from err
    if (root / CARD_NAME).is_file():
        return root
    inner = [p for p in root.iterdir() if p.is_dir() and (p / CARD_NAME).is_file()]
    if len(inner) == 1:
        return inner[0]
    raise ModelPackageError(f"{zip_path} holds no {CARD_NAME} at its top level (or in one top folder).")


# ------------------------------------------------------------------------------------------ building


def _factory(path: str) -> Any:
    if not path.startswith(ALLOWED_FACTORY_PREFIXES):  # parse_card checks too; belt and braces
        raise ModelPackageError(
            f"Network factory {path!r} is outside the allowed modules {ALLOWED_FACTORY_PREFIXES}."
        )
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as err:
        raise ModelPackageError(
            f"Network factory {path!r} cannot be found ({err}); the package needs a newer napari-breastmri or MONAI."
        ) from err


def _read_state_dict(pkg: ModelPackage) -> dict[str, Any]:
    import torch

    fmt, wp = pkg.card.weights.format, pkg.weights_path
    if fmt == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(wp), device="cpu")
        except (SafetensorError, OSError, RuntimeError, ValueError) as err:
            raise CorruptWeights(
                f"Model {pkg.label}: {wp.name} is not a readable safetensors file ({err}); it may be truncated."
            ) from err
    try:
        state = torch.load(str(wp), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or EOFError here
        text = str(err)
        if (
            "Weights only load failed" in text
            or "Unsupported global" in text
            or "UnpicklingError" in type(err).__name__
        ):
            raise ModelPackageError(
                f"Model {pkg.label}: {wp.name} holds Python objects, not plain weights; it is refused because "
                "loading it could run code. Ask for a safetensors or state-dict-only file."
            ) from err
        raise CorruptWeights(
            f"Model {pkg.label}: {wp.name} cannot be read ({text.splitlines()[0][:120]}); it may be truncated."
        ) from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelPackageError(
            f"Model {pkg.label}: {wp.name} is not a state dict (name -> tensor); refused."
        )
    return state


def _build_network(pkg: ModelPackage) -> torch.nn.Module:
    import torch

    card = pkg.card
    if card.weights.format == "torchscript":
        import warnings

        try:
            with warnings.catch_warnings():  # torch 2.9+ marks TorchScript deprecated; it still loads
                warnings.simplefilter("ignore", FutureWarning)
                return torch.jit.load(str(pkg.weights_path), map_location="cpu")
        except Exception as err:
            raise CorruptWeights(
                f"Model {pkg.label}: {pkg.weights_path.name} is not a loadable TorchScript file ({str(err)[:120]})."
            ) from err
    if card.weights.format == "nnunetv2":
        return _build_nnunet(pkg)
    factory = _factory(card.network.factory)
    try:
        model = factory(**card.network.kwargs)
    except TypeError as err:
        raise ModelPackageError(
            f"Model {pkg.label}: network.kwargs do not fit {card.network.factory} ({err})."
        ) from err
    if not isinstance(model, torch.nn.Module):
        raise ModelPackageError(f"Model {pkg.label}: {card.network.factory} did not build a torch module.")
    state = _read_state_dict(pkg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()
        raise ModelPackageError(
            f"Model {pkg.label}: the weights do not fit {card.network.factory} with the card's kwargs "
            f"({' '.join(first[:2])[:200]}); the card and the weights come from different models."
        ) from err
    return model


def _build_nnunet(pkg: ModelPackage) -> torch.nn.Module:
    """A trained nnU-Net v2 folder (weights.file) -> its network with the first fold's weights."""
    if importlib.util.find_spec("nnunetv2") is None:
        raise ModelPackageError(
            f"Model {pkg.label} is an nnU-Net v2 model but nnunetv2 is not installed; "
            "install it with 'pip install napari-breastmri[nnunet]' and retry."
        )
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor  # type: ignore[import-not-found]

    predictor = nnUNetPredictor(
        use_mirroring=False, device=torch.device("cpu"), perform_everything_on_device=False
    )
    try:
        predictor.initialize_from_trained_model_folder(
            str(pkg.weights_path),
            use_folds=tuple(pkg.card.weights.folds),
            checkpoint_name=pkg.card.weights.checkpoint,
        )
    except Exception as err:
        raise CorruptWeights(
            f"Model {pkg.label}: the nnU-Net folder cannot be loaded ({str(err)[:160]})."
        ) from err
    net = predictor.network
    net.load_state_dict(predictor.list_of_parameters[0])
    return net


# ------------------------------------------------------------------------------------------ writing


def save_package(
    out_dir: str | os.PathLike[str],
    card: dict[str, Any] | ModelCard,
    model: torch.nn.Module | None = None,
    *,
    fmt: str = "safetensors",
    state_dict: dict[str, Any] | None = None,
) -> ModelPackage:
    """Write a package folder atomically: weights (from ``model`` or ``state_dict``) + card.yaml.

    The card's ``weights`` section is filled in (file, format, sha256), so callers (``breastmri
    train``, tests) never hand-compute hashes. ``fmt`` is "safetensors", "torch" or "torchscript"
    (then ``model`` is scripted with torch.jit.script unless it already is a ScriptModule).
    """
    import torch

    doc = card.to_dict() if isinstance(card, ModelCard) else dict(card)
    files = {"safetensors": "model.safetensors", "torch": "model.pt", "torchscript": "model.ts"}
    if fmt not in files:
        raise ModelPackageError(f"save_package cannot write format {fmt!r}; use one of {sorted(files)}.")
    with _atomic.atomic_dir(out_dir) as tmp:
        wp = tmp / files[fmt]
        if fmt == "torchscript":
            if model is None:
                raise ModelPackageError("save_package needs the model to write TorchScript.")
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                scripted = model if isinstance(model, torch.jit.ScriptModule) else torch.jit.script(model)
            scripted.save(str(wp))
            doc.setdefault("network", {})["factory"] = "torchscript"
        else:
            state = state_dict if state_dict is not None else model.state_dict()  # type: ignore[union-attr]
            state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
            if fmt == "safetensors":
                from safetensors.torch import save_file

                save_file(state, str(wp))
            else:
                torch.save(state, str(wp))
        doc["weights"] = {
            **(doc.get("weights") or {}),
            "file": wp.name,
            "format": fmt,
            "sha256": sha256_path(wp),
        }
        parsed = parse_card(doc, where=f"{out_dir}/{CARD_NAME}")
        (tmp / CARD_NAME).write_text(parsed.to_yaml(), encoding="utf-8")
    return load_package(out_dir)


def zip_package(folder: str | os.PathLike[str], zip_path: str | os.PathLike[str]) -> Path:
    """Zip a package folder (files at the zip's top level), atomically."""
    folder = Path(folder)
    with (
        _atomic.atomic_path(zip_path, suffix=".zip") as tmp,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf,
    ):
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    return Path(zip_path)
