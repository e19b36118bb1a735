"""``breastmri explain CASE --out DIR``: heatmaps of one or more models on one case, with their numbers.

For each model (``--model``, default: the shipped packages that name a CAM layer) and each method
(``--method``, repeatable), the models are run first (their findings name the lesions a
segmenter/detector heatmap explains), then :func:`explain_study` makes the heatmap. Written to
``--out``: ``heatmap_<model>_<method>.nii.gz`` on the study grid, ``explain.json`` (method, target,
layer, model, file, scores, per-phase shares, kinetics shares and the one-line reading for each),
and with ``--figures`` a PNG overlay (and deletion curves with ``--scores all``) per heatmap. For a
phantom case folder the truth mask adds the pointing game.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import _atomic
from .cam import METHODS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "case", nargs="?", help="DICOM folder, NIfTI file(s) or case folder (omit with --demo)"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--model", nargs="+", metavar="NAME", help="packages (names or paths); default: shipped ones"
    )
    parser.add_argument(
        "--method",
        nargs="+",
        default=["gradcam"],
        choices=list(METHODS),
        help="CAM method(s) (default gradcam)",
    )
    parser.add_argument("--target", help="class name (classifiers) or lesion:ID (segmenters/detectors)")
    parser.add_argument("--layer", help="dotted module name; overrides the card's cam.target_layer")
    parser.add_argument(
        "--scores",
        choices=["none", "fast", "all"],
        default="all",
        help="fast: per-phase shares and CAM x kinetics; all: also deletion/insertion and randomisation",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    parser.add_argument("--figures", action="store_true", help="also write PNG overlays (and curves)")
    parser.add_argument("--demo", action="store_true", help="explain on the embedded synthetic phantom case")
    parser.add_argument("--seed", type=int, default=None, help="phantom seed for --demo [the demo case]")


def _models(names: list[str] | None) -> list[Any]:
    from ..errors import ModelPackageError
    from ..models import registry
    from ..models.package import load_package

    if names:
        return [load_package(n) for n in names]
    pkgs = [load_package(i.path, origin="shipped") for i in registry.shipped()]
    pkgs = [p for p in pkgs if p.card.cam.target_layer and p.card.task in ("classify", "segment", "detect")]
    if not pkgs:
        raise ModelPackageError(
            "No installed package names a CAM layer (cam.target_layer); give one with --model NAME|PATH."
        )
    return pkgs


def _load(args: argparse.Namespace):
    """(study, truth label mask or None)."""
    import numpy as np

    if args.demo:
        from ..phantom import DEMO_SEED, generate_case

        case = generate_case(DEMO_SEED if args.seed is None else args.seed)
        return case.study, np.asarray(case.label_mask)
    if not args.case:
        from ..errors import UnsupportedInput

        raise UnsupportedInput("Give a CASE to explain, or --demo for the synthetic phantom case.")
    from ..inference.cli import load_case
    from ..io.export import load_case_truth

    study = load_case(Path(args.case))
    _, labels = load_case_truth(Path(args.case), study)
    return study, labels


def _lesion_finders(pkgs: list[Any]) -> list[Any]:
    """Shipped detectors to run first when a chosen model reads the index lesion's region and
    none of the chosen models finds lesions (they are run, not explained)."""
    from ..models import registry
    from ..models.package import load_package

    if not any(p.card.needs_lesion for p in pkgs) or any(p.card.task in ("segment", "detect") for p in pkgs):
        return []
    found = [
        load_package(i.path, origin="shipped") for i in registry.shipped() if i.task in ("segment", "detect")
    ]
    if found:
        names = ", ".join(p.card.label for p in found)
        print(f"reading the index lesion's region needs a lesion: running {names} first", file=sys.stderr)
    return found


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import progress
    from ..inference.pipeline import analyze
    from ..io.nifti import save_volume
    from .faithfulness import describe
    from .study import explain_study

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = None if args.device == "auto" else args.device
    study, truth = _load(args)
    truth_mask = None if truth is None else np.asarray(truth) > 0
    pkgs = _models(args.model)
    finders = _lesion_finders(pkgs)
    findings = progress.run(analyze(study, finders + pkgs, device=device), progress.tqdm_printer("models"))
    entries = []
    for pkg in pkgs:
        for method in args.method:
            ex = progress.run(
                explain_study(
                    study,
                    pkg,
                    findings,
                    method=method,
                    target=args.target,
                    layer=args.layer,
                    device=device,
                    scores=args.scores,
                    truth_mask=truth_mask,
                    keep=True,
                ),
                progress.tqdm_printer(f"{pkg.card.name} {method}"),
            )
            if ex is None:
                print(f"{pkg.card.label}: nothing to explain ({findings.warnings[-1]})", file=sys.stderr)
                continue
            hm = ex.heatmap
            name = f"heatmap_{_slug(pkg.card.name)}_{_slug(method)}.nii.gz"
            save_volume(hm.data, hm.affine, out / name)
            hm.file = name
            reading = describe(hm)
            entries.append(
                {
                    "method": hm.method,
                    "target": hm.target,
                    "layer": hm.layer,
                    "model": hm.model,
                    "demo": bool(pkg.card.demo),
                    "file": name,
                    "scores": hm.scores,
                    "phase_attribution": hm.phase_attribution,
                    "kinetics_share": hm.kinetics_share,
                    "reading": reading,
                }
            )
            print(f"{pkg.card.label} {method}: {reading}")
            if args.figures:
                _figures(out, name, study, hm, ex, truth_mask, pkg.card.demo)
    _atomic.write_text(
        out / "explain.json", json.dumps({"case": str(args.case or "demo"), "heatmaps": entries}, indent=2)
    )
    return 0


def _figures(out: Path, name: str, study: Any, hm: Any, ex: Any, truth_mask: Any, demo: bool) -> None:
    from .figures import curves_figure, overlay_rows

    stem = name.replace(".nii.gz", "")
    image = study.data[-1] - study.data[0] if study.n_phases > 1 else study.data[0]
    overlay_rows(
        out / f"{stem}.png",
        [{"image": image, "heat": hm.data, "truth": truth_mask, "label": hm.method}],
        hm.target,
        demo,
    )
    if ex.curves:
        curves_figure(
            out / f"{stem}_curves.png",
            {hm.method: ex.curves["cam"], "random": ex.curves["random"]},
            hm.target,
            demo,
        )
