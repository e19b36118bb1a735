"""Which model packages exist: the shipped demo packages plus the user's own folder.

Shipped packages live in ``napari_breastmri/models/weights/<name>/``; user packages in
``$BREASTMRI_MODELS_DIR`` or platformdirs' ``user_data_dir("napari-breastmri")/models`` (folders
or .zip files). Listing only reads cards (no torch), so the viewer can fill its model menu fast;
a package whose card is broken is listed with its error instead of hiding it.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .. import _atomic
from ..errors import ModelPackageError
from .card import CARD_NAME, load_card
from .package import ModelPackage, load_package

SHIPPED_DIR = Path(__file__).resolve().parent / "weights"


def user_dir() -> Path:
    """The user's model folder (created on demand by :func:`add`)."""
    env = os.environ.get("BREASTMRI_MODELS_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("napari-breastmri")) / "models"


@dataclass
class PackageInfo:
    """One listed package: what the card says, where it is, and any problem with it."""

    name: str
    version: str
    task: str
    target: str
    demo: bool
    path: Path
    origin: str  # "shipped" | "user"
    error: str = ""

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


def _candidates(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.iterdir()):
        if p.is_dir() and (p / CARD_NAME).is_file() or p.is_file() and p.suffix == ".zip":
            out.append(p)
    return out


def _info(path: Path, origin: str) -> PackageInfo:
    try:
        if path.suffix == ".zip":
            card = load_package(path, origin=origin).card
        else:
            card = load_card(path)
        return PackageInfo(card.name, card.version, card.task, card.target, card.demo, path, origin)
    except ModelPackageError as err:
        return PackageInfo(path.stem, "?", "?", "?", False, path, origin, error=str(err))


def available(include_broken: bool = False) -> list[PackageInfo]:
    """User packages first, then shipped ones; broken cards only with ``include_broken``."""
    infos = [_info(p, "user") for p in _candidates(user_dir())]
    infos += [_info(p, "shipped") for p in _candidates(SHIPPED_DIR)]
    return [i for i in infos if include_broken or not i.error]


def shipped(task: str | None = None, demo_only: bool = False) -> list[PackageInfo]:
    """The shipped packages (optionally of one task), for ``analyze --demo`` and tests."""
    out = [_info(p, "shipped") for p in _candidates(SHIPPED_DIR)]
    return [i for i in out if not i.error and (task is None or i.task == task) and (not demo_only or i.demo)]


def _version_key(v: str) -> tuple:
    return tuple(int(x) if x.isdigit() else x for x in re.split(r"[.\-+]", v))


def resolve(name: str) -> ModelPackage:
    """Open "NAME" or "NAME@VERSION": user packages win over shipped ones, then the newest version."""
    want, _, version = name.partition("@")
    matches = [i for i in available() if i.name == want and (not version or i.version == version)]
    if not matches:
        known = sorted({i.label for i in available()})
        raise ModelPackageError(
            f"No model package named {name!r}; known: {known or 'none'}. Add one with 'breastmri models add PATH'."
        )
    best = sorted(matches, key=lambda i: (i.origin == "user", _version_key(i.version)), reverse=True)[0]
    return load_package(best.path, origin=best.origin)


def add(path: str | os.PathLike[str], *, force: bool = False) -> ModelPackage:
    """Verify a package and copy it into the user folder as ``<name>-<version>[.zip]``."""
    pkg = load_package(path)
    pkg.verify()
    src = Path(path)
    dest_root = user_dir()
    dest_root.mkdir(parents=True, exist_ok=True)
    stem = f"{pkg.card.name}-{pkg.card.version}"
    dest = dest_root / (stem + ".zip" if src.is_file() and src.suffix == ".zip" else stem)
    if dest.exists() and not force:
        raise ModelPackageError(f"{pkg.label} is already installed at {dest}; use --force to replace it.")
    if dest.suffix == ".zip":
        with _atomic.atomic_path(dest, suffix=".zip") as tmp:
            shutil.copyfile(src, tmp)
    else:
        with _atomic.atomic_dir(dest) as tmp:
            shutil.copytree(pkg.path, tmp, dirs_exist_ok=True)
    return load_package(dest, origin="user")


def verify(name_or_path: str) -> ModelPackage:
    """Open a package (by name or path), check its sha256 and build it once on the CPU."""
    pkg = load_package(name_or_path)
    pkg.build("cpu")
    return pkg
