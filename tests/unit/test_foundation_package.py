"""Package-level promises: cheap import, the manifest, the CLI front door, atomic writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from napari_breastmri import _atomic, cli, progress
from napari_breastmri.types import Progress

ROOT = Path(__file__).resolve().parents[2]


def test_import_is_cheap() -> None:
    code = (
        "import sys, napari_breastmri, napari_breastmri.io, napari_breastmri.kinetics, "
        "napari_breastmri.cli, napari_breastmri.types, napari_breastmri.errors\n"
        "heavy = [m for m in ('torch', 'monai', 'napari', 'qtpy', 'PyQt5', 'PySide2', 'PyQt6', "
        "'PySide6', 'magicgui') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing the core pulled in: {out.stdout.strip()}"


def test_top_level_napari_yaml_is_a_symlink_to_the_package_manifest() -> None:
    link = ROOT / "napari.yaml"
    assert link.is_symlink()
    assert link.resolve() == (ROOT / "napari_breastmri" / "napari.yaml").resolve()


def test_npe2_validate_with_imports() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari_breastmri", "--imports"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_cli_lists_commands_and_every_command_module_imports() -> None:
    import importlib

    for name, (module, _help) in cli.COMMANDS.items():
        mod = importlib.import_module(module)
        assert callable(mod.add_arguments) and callable(mod.run), name
    out = subprocess.run(
        [sys.executable, "-m", "napari_breastmri.cli", "--help"], capture_output=True, text=True
    )
    assert "analyze" in out.stdout and "phantom" in out.stdout


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), _atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    _atomic.write_text(target, "whole")
    assert target.read_text() == "whole"


def test_atomic_dir_replaces_whole_folder(tmp_path: Path) -> None:
    target = tmp_path / "case"
    with _atomic.atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(ValueError), _atomic.atomic_dir(target) as tmp:
        (tmp / "b").write_text("2")
        raise ValueError("cancelled")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["case"]


def test_progress_run_returns_generator_value() -> None:
    def work():
        yield Progress("a", 0.5)
        yield Progress("b", 1.0)
        return 42

    seen: list[str] = []
    assert progress.run(work(), lambda p: seen.append(p.step)) == 42
    assert seen == ["a", "b"]
    scaled = list(progress.scaled(work(), 0.5, 1.0))
    assert [p.fraction for p in scaled] == [0.75, 1.0]
