"""``breastmri phantom``: write a synthetic cohort (DICOM + NIfTI + truth) with a progress bar."""

from __future__ import annotations

import argparse
import sys

from ..types import DEMO_LABEL


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cases", type=int, default=1, help="number of cases (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="cohort seed: same seed, same bytes")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--protocol", choices=["conventional", "ultrafast"], default="conventional")
    parser.add_argument(
        "--dicom-layout",
        choices=["series-per-phase", "single-series", "enhanced"],
        default="series-per-phase",
    )
    parser.add_argument("--orientation", choices=["axial", "sagittal"], default="axial")
    parser.add_argument(
        "--longitudinal", action="store_true", help="also write each case's early-treatment follow-up exam"
    )
    parser.add_argument(
        "--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), help="study grid (default 64 256 256)"
    )
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        metavar=("DZ", "DY", "DX"),
        help="voxel size in mm (default 1.5 0.8 0.8)",
    )
    parser.add_argument("--no-dicom", action="store_true", help="write NIfTI and truth only (faster)")
    parser.add_argument("--no-nifti", action="store_true", help="write DICOM and truth only")


def run(args: argparse.Namespace) -> int:
    from .. import progress
    from .write import write_cohort

    if args.cases < 1:
        print("breastmri phantom: error: --cases must be at least 1", file=sys.stderr)
        return 2
    gen = write_cohort(
        args.cases,
        args.seed,
        args.out,
        protocol=args.protocol,
        dicom_layout=args.dicom_layout,
        orientation=args.orientation,
        longitudinal=args.longitudinal,
        shape=tuple(args.shape) if args.shape else None,
        spacing=tuple(args.spacing) if args.spacing else None,
        dicom=not args.no_dicom,
        nifti=not args.no_nifti,
    )
    folders = progress.run(gen, progress.tqdm_printer("phantom"))
    print(f"wrote {len(folders)} case(s), boxes.csv and labels.csv to {args.out} ({DEMO_LABEL})")
    return 0
