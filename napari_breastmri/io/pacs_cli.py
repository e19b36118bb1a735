"""``breastmri pacs search|retrieve|send``: a DICOMweb archive from the command line.

The server comes from ``--url`` or ``$BREASTMRI_PACS_URL`` (e.g. http://127.0.0.1:8042/dicom-web).
Patient names are shown only with ``--show-phi``; by default the listing shows UIDs, dates and IDs
masked to their last four characters, enough to pick a study without spreading names around.
"""

from __future__ import annotations

import argparse
import os

from .. import progress
from ..errors import PACSError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("BREASTMRI_PACS_URL"), help="DICOMweb root URL")
    common.add_argument("--cache", help="local cache folder (default $BREASTMRI_PACS_CACHE or ~/.cache/...)")
    sub = parser.add_subparsers(dest="action", required=True)
    search = sub.add_parser("search", parents=[common], help="search studies (QIDO-RS)")
    search.add_argument("--patient-id")
    search.add_argument("--patient-name", help="wildcards allowed, e.g. 'DOE*'")
    search.add_argument("--date-from", help="YYYYMMDD or YYYY-MM-DD")
    search.add_argument("--date-to", help="YYYYMMDD or YYYY-MM-DD")
    search.add_argument("--accession")
    search.add_argument("--any-modality", action="store_true", help="do not restrict to MR studies")
    search.add_argument("--show-phi", action="store_true", help="show patient names and full IDs")
    retrieve = sub.add_parser(
        "retrieve", parents=[common], help="download a study to the cache (WADO-RS) and describe it"
    )
    retrieve.add_argument("study_uid")
    retrieve.add_argument("--refresh", action="store_true", help="download again even if cached")
    send = sub.add_parser(
        "send", parents=[common], help="store DICOM files (SEG, SR) on the server (STOW-RS)"
    )
    send.add_argument("files", nargs="+")


def _mask(value: str, show: bool) -> str:
    if show or len(value) <= 4:
        return value
    return "*" * (len(value) - 4) + value[-4:]


def run(args: argparse.Namespace) -> int:
    from .pacs import PacsClient

    if not args.url:
        raise PACSError("No PACS given: pass --url http://HOST:PORT/dicom-web or set BREASTMRI_PACS_URL.")
    client = PacsClient(args.url, cache_dir=args.cache)
    if args.action == "search":
        rows = client.search_studies(
            patient_id=args.patient_id,
            patient_name=args.patient_name,
            date_from=args.date_from,
            date_to=args.date_to,
            accession=args.accession,
            modality=None if args.any_modality else "MR",
        )
        for s in rows:
            name = s.patient_name if args.show_phi else "(name hidden)"
            print(
                f"{s.study_uid}  {s.study_date or '-':8}  {_mask(s.patient_id, args.show_phi):12}  {name}  "
                f"{s.modalities or '-'}  {s.n_series or '?'} series  {s.description}"
            )
        print(f"{len(rows)} stud{'y' if len(rows) == 1 else 'ies'}")
        return 0
    if args.action == "retrieve":
        study = progress.run(
            client.open_study(args.study_uid, refresh=args.refresh), progress.tqdm_printer("retrieve")
        )
        dz, dy, dx = study.spacing
        print(f"{client.study_dir(args.study_uid)}")
        print(
            f"{study.n_phases} phases {study.phase_labels}, grid {study.shape}, voxel {dz:.2f}x{dy:.2f}x{dx:.2f} mm"
        )
        return 0
    stored = client.send(args.files)
    print(f"stored {len(stored)} instance(s) on {client.url}")
    return 0
