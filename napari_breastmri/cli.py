"""The ``breastmri`` command: the same core as the viewer, headless.

Each subcommand lives in the module that owns its work and exposes ``add_arguments(parser)``
and ``run(args) -> int``. Only the chosen subcommand's module is imported, so ``breastmri
--help`` is instant and a broken optional part cannot break the others. Expected failures
(:class:`~napari_breastmri.errors.BreastMRIError`) become one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .errors import BreastMRIError

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("napari_breastmri.io.cli", "load a study (DICOM folder, NIfTI, public layout) and describe it"),
    "phantom": ("napari_breastmri.phantom.cli", "write synthetic breast DCE-MRI cases with ground truth"),
    "kinetics": (
        "napari_breastmri.kinetics.cli",
        "compute kinetic maps (PE, SER, curve types, FTV) to NIfTI",
    ),
    "analyze": (
        "napari_breastmri.inference.cli",
        "run the models on one case and write findings (and a report)",
    ),
    "models": ("napari_breastmri.models.cli", "list, add and verify model packages"),
    "train": ("napari_breastmri.training.cli", "train a model package (demo models on the phantom)"),
    "explain": ("napari_breastmri.explain.cli", "CAM heatmaps and their faithfulness for one case"),
    "export": ("napari_breastmri.io.export_cli", "export findings: NIfTI, DICOM SEG/SR, Duke CSV, JSON"),
    "pacs": ("napari_breastmri.io.pacs_cli", "search, retrieve from and send to a DICOMweb archive"),
    "batch": ("napari_breastmri.batch", "run analyze over a cohort on Dask"),
    "view": ("napari_breastmri._napari.launch", "open napari with the plugin (optionally on a case)"),
}

#: commands whose CPU work is tensor-heavy enough to gain from keeping freed memory (see
#: :func:`napari_breastmri.inference.device.keep_freed_memory`)
TENSOR_HEAVY = ("train", "analyze", "explain")


def _top_parser() -> argparse.ArgumentParser:
    width = max(len(name) for name in COMMANDS)
    listing = "\n".join(f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items())
    return argparse.ArgumentParser(
        prog="breastmri",
        description="Breast DCE-MRI analysis (napari-breastmri), headless.",
        epilog=f"commands:\n{listing}\n\nRun 'breastmri COMMAND --help' for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The command line. Called with ``argv`` (tests, other code) it changes nothing process-wide;
    as the process's own command (``argv`` None) it also keeps freed memory for the
    tensor-heavy commands, which costs nothing there because the process ends with the command."""
    own_process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] not in COMMANDS:
        top.add_argument("command", choices=sorted(COMMANDS))
        top.parse_args(argv[:1] or ["--help"])
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"breastmri {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    if own_process and name in TENSOR_HEAVY:
        from .inference.device import keep_freed_memory

        keep_freed_memory()
    try:
        return int(module.run(args) or 0)
    except BreastMRIError as err:
        print(f"breastmri {name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"breastmri {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
