"""A DICOMweb archive (PACS): search studies (QIDO-RS), retrieve one (WADO-RS), send results (STOW-RS).

Why DICOMweb: it is plain HTTP, every modern archive speaks it (Orthanc, dcm4chee, Google Cloud
Healthcare, Azure), and ``dicomweb-client`` does the multipart details. The retrieve writes into a
local cache folder per study, atomically: the folder ``<cache>/<StudyInstanceUID>`` appears only
once every instance is on disk, so a dropped connection never leaves a half study that a later
run would load as if it were whole. Server trouble becomes a :class:`~napari_breastmri.errors.PACSError`
whose message names the server and the HTTP status.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _atomic
from ..errors import PACSError
from ..types import Progress, Study

#: DICOM JSON tags of the study-level attributes a search shows
_TAGS = {
    "StudyInstanceUID": "0020000D",
    "PatientName": "00100010",
    "PatientID": "00100020",
    "StudyDate": "00080020",
    "StudyDescription": "00081030",
    "AccessionNumber": "00080050",
    "ModalitiesInStudy": "00080061",
    "NumberOfStudyRelatedSeries": "00201206",
    "NumberOfStudyRelatedInstances": "00201208",
}


def default_cache_dir() -> Path:
    """``$BREASTMRI_PACS_CACHE`` or ``~/.cache/napari-breastmri/pacs``."""
    env = os.environ.get("BREASTMRI_PACS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "napari-breastmri" / "pacs"


@dataclass
class StudySummary:
    """One row of a study search, as the dock and the CLI list it."""

    study_uid: str
    patient_name: str = ""
    patient_id: str = ""
    study_date: str = ""
    description: str = ""
    accession: str = ""
    modalities: str = ""
    n_series: int | None = None
    n_instances: int | None = None


def _value(item: dict[str, Any], keyword: str) -> Any:
    values = item.get(_TAGS[keyword], {}).get("Value") or []
    if not values:
        return ""
    first = values[0]
    if isinstance(first, dict):  # PersonName: {"Alphabetic": "DOE^JANE"}
        return first.get("Alphabetic", "")
    if keyword == "ModalitiesInStudy":
        return "\\".join(str(v) for v in values)
    return first


def _summary(item: dict[str, Any]) -> StudySummary:
    def _int(keyword: str) -> int | None:
        value = _value(item, keyword)
        return int(value) if value != "" else None

    return StudySummary(
        study_uid=str(_value(item, "StudyInstanceUID")),
        patient_name=str(_value(item, "PatientName")),
        patient_id=str(_value(item, "PatientID")),
        study_date=str(_value(item, "StudyDate")),
        description=str(_value(item, "StudyDescription")),
        accession=str(_value(item, "AccessionNumber")),
        modalities=str(_value(item, "ModalitiesInStudy")),
        n_series=_int("NumberOfStudyRelatedSeries"),
        n_instances=_int("NumberOfStudyRelatedInstances"),
    )


def date_range(date_from: str | None, date_to: str | None) -> str | None:
    """A DICOM date range "YYYYMMDD-YYYYMMDD" (open ends allowed) from two optional dates."""
    if not date_from and not date_to:
        return None
    clean = [(d or "").replace("-", "") for d in (date_from, date_to)]
    for d in clean:
        if d and (len(d) != 8 or not d.isdigit()):
            raise PACSError(f"Dates are YYYYMMDD or YYYY-MM-DD; got {d!r}.")
    return f"{clean[0]}-{clean[1]}"


class PacsClient:
    """A DICOMweb server at ``url`` (e.g. ``http://127.0.0.1:8042/dicom-web``)."""

    def __init__(
        self,
        url: str,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        timeout: float = 30.0,
        attempts: int = 3,
    ) -> None:
        """``attempts``: tries per request (busy server, dropped connection), 0.5 s, 1 s ... apart."""
        self.url = url.rstrip("/")
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.timeout = timeout
        self.attempts = max(1, int(attempts))
        self._client: Any = None

    # -- plumbing --------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            from dicomweb_client.api import DICOMwebClient

            self._client = DICOMwebClient(url=self.url, timeout=self.timeout)
            # dicomweb-client's default is 5 attempts with 2, 4, 8, 16 s waits: half a minute before
            # a user hears that the server is down. Fewer, shorter retries keep the UI responsive.
            self._client.set_http_retry_params(
                retry=self.attempts > 1, max_attempts=self.attempts, wait_exponential_multiplier=250
            )
        return self._client

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one DICOMweb request, turning transport and HTTP failures into PACSError."""
        import requests

        try:
            return func(*args, **kwargs)
        except requests.exceptions.HTTPError as err:
            status = getattr(err.response, "status_code", "?")
            reason = getattr(err.response, "reason", "") or ""
            raise PACSError(
                f"The PACS at {self.url} answered {status} {reason} to {what}; check the URL (it usually "
                "ends in /dicom-web) and that the server's DICOMweb plugin is enabled."
            ) from err
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as err:
            raise PACSError(
                f"Cannot reach the PACS at {self.url} ({what}): {type(err).__name__}; check that the "
                "server is running and the address and port are right."
            ) from err
        except requests.exceptions.RequestException as err:
            raise PACSError(f"The request to the PACS at {self.url} failed ({what}): {err}") from err

    # -- QIDO-RS ---------------------------------------------------------------------------

    def search_studies(
        self,
        *,
        patient_id: str | None = None,
        patient_name: str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        accession: str | None = None,
        modality: str | None = "MR",
        limit: int | None = 100,
    ) -> list[StudySummary]:
        """Studies matching all the filters given (``patient_name`` may use * wildcards)."""
        filters: dict[str, Any] = {}
        if patient_id:
            filters["PatientID"] = patient_id
        if patient_name:
            filters["PatientName"] = patient_name
        dates = date_range(date_from, date_to)
        if dates:
            filters["StudyDate"] = dates
        if accession:
            filters["AccessionNumber"] = accession
        if modality:
            filters["ModalitiesInStudy"] = modality
        fields = [k for k in _TAGS if k not in filters]
        items = self._call(
            "a study search",
            self.client.search_for_studies,
            search_filters=filters,
            fields=fields,
            limit=limit,
        )
        return sorted((_summary(i) for i in items), key=lambda s: (s.study_date, s.patient_id), reverse=True)

    # -- WADO-RS ---------------------------------------------------------------------------

    def study_dir(self, study_uid: str) -> Path:
        return self.cache_dir / study_uid

    def retrieve_study(self, study_uid: str, *, refresh: bool = False) -> Generator[Progress, None, Path]:
        """Download every instance of a study into ``<cache>/<study_uid>``; yields Progress.

        A study already in the cache is reused unless ``refresh``. The folder appears only when
        complete (atomic rename); on any failure nothing is left in the cache.
        """
        target = self.study_dir(study_uid)
        if target.is_dir() and not refresh:
            yield Progress("retrieve", 1.0, "already in the local cache")
            return target
        yield Progress("retrieve", 0.0, "listing series")
        series = self._call(
            f"the series list of study {study_uid}",
            self.client.search_for_series,
            study_instance_uid=study_uid,
        )
        if not series:
            raise PACSError(f"The PACS at {self.url} has no series for study {study_uid}; search again.")
        uids = [str(s["0020000E"]["Value"][0]) for s in series]
        n_files = 0
        with _atomic.atomic_dir(target) as tmp:
            for i, series_uid in enumerate(uids):
                yield Progress("retrieve", i / len(uids), f"series {i + 1}/{len(uids)}")
                datasets = self._call(
                    f"retrieving series {series_uid}",
                    self.client.retrieve_series,
                    study_instance_uid=study_uid,
                    series_instance_uid=series_uid,
                )
                folder = tmp / f"series_{i + 1:03d}"
                folder.mkdir()
                for ds in datasets:
                    ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
                    n_files += 1
        yield Progress("retrieve", 1.0, f"{n_files} instances in {len(uids)} series")
        return target

    def open_study(self, study_uid: str, *, refresh: bool = False) -> Generator[Progress, None, Study]:
        """Retrieve a study (or reuse the cache) and load it with :func:`napari_breastmri.io.load_study`."""
        from ..progress import scaled
        from . import load_study

        folder = yield from scaled(self.retrieve_study(study_uid, refresh=refresh), 0.0, 0.9)
        yield Progress("load", 0.9, "reading the DICOM")
        study = load_study(folder)
        study.meta["pacs_url"] = self.url
        yield Progress("load", 1.0, "done")
        return study

    # -- STOW-RS ---------------------------------------------------------------------------

    def send(self, paths: Sequence[str | os.PathLike[str]]) -> list[str]:
        """Store DICOM files (a SEG, an SR ...) on the server; return the stored SOP Instance UIDs."""
        import pydicom

        if not paths:
            raise PACSError("Nothing to send: give at least one DICOM file (e.g. seg.dcm, sr.dcm).")
        datasets = [pydicom.dcmread(p) for p in paths]
        by_study: dict[str, list[Any]] = {}
        for ds in datasets:
            by_study.setdefault(str(ds.StudyInstanceUID), []).append(ds)
        stored: list[str] = []
        for study_uid, group in by_study.items():
            response = self._call(
                f"storing {len(group)} instance(s)",
                self.client.store_instances,
                datasets=group,
                study_instance_uid=study_uid,
            )
            failed = getattr(response, "FailedSOPSequence", None) or []
            if failed:
                uids = [str(item.ReferencedSOPInstanceUID) for item in failed]
                raise PACSError(f"The PACS at {self.url} refused {len(uids)} instance(s): {', '.join(uids)}.")
            for item in getattr(response, "ReferencedSOPSequence", None) or []:
                stored.append(str(item.ReferencedSOPInstanceUID))
        return stored

    def series_of(self, study_uid: str) -> list[dict[str, str]]:
        """Series of a study as {uid, modality, description, number} (to check what arrived)."""
        series = self._call(
            f"the series list of study {study_uid}",
            self.client.search_for_series,
            study_instance_uid=study_uid,
        )

        def get(item: dict[str, Any], tag: str) -> str:
            values = item.get(tag, {}).get("Value") or [""]
            return str(values[0])

        return [
            {
                "uid": get(s, "0020000E"),
                "modality": get(s, "00080060"),
                "description": get(s, "0008103E"),
                "number": get(s, "00200011"),
            }
            for s in series
        ]
