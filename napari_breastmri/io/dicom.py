"""Read breast DCE-MRI from DICOM, in the variants scanners and archives actually produce.

Why this is more than "sort the files and stack them": the commonest failure of tools of this kind
is a study with its phases in the wrong order or its slices flipped, and it happens silently. So:

* phases are ordered by acquisition / content / trigger time, never by file name or
  InstanceNumber; slices by their position along the slice normal;
* one series per phase (Duke / TCIA), one series holding every phase (split by
  TemporalPositionIdentifier, TriggerTime, AcquisitionNumber, AcquisitionTime, or repeated
  positions), and Enhanced MR multi-frame files all end up in the same per-frame records;
* localisers, T2, DWI and derived series are skipped, each with its reason, and ``series_uid``
  picks another series;
* anything that would make a silently wrong study raises a typed error naming the series or file,
  and anything that is usable but odd goes into ``Study.warnings``.

The scan reads headers only (``stop_before_pixels``); pixels are then read straight into one
preallocated float32 (phase, z, y, x) array, so peak memory is about the study itself.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    CorruptFile,
    DuplicatePositions,
    InconsistentGeometry,
    MissingGeometry,
    MissingSlices,
    MixedStudies,
    UnequalSpacing,
    UnsupportedInput,
)
from ..geometry import affine_from_dicom, orientation_label, resample_to_grid, same_grid
from ..types import DEMO_LABEL, Acquisition, PatientInfo, Protocol, SkippedSeries, Study

#: relative tolerance on slice spacing before it counts as unequal
SPACING_RTOL = 0.01
#: a post-contrast interval shorter than this (s) counts as an ultrafast frame
ULTRAFAST_MAX_INTERVAL_S = 20.0
#: the fewest consecutive short intervals that make an ultrafast protocol
ULTRAFAST_MIN_FRAMES = 3
PHILIPS_CREATOR = "Philips MR Imaging DD 001"
_NON_IMAGE_SOP_PREFIXES = ("1.2.840.10008.5.1.4.1.1.88", "1.2.840.10008.5.1.4.1.1.11", "1.2.840.10008.1.3.10")
#: (pattern on the lower-case SeriesDescription, reason); letters around a word are checked so
#: that "t1_fl3d_dyn_SUB" is a subtraction but "series" is not "ser"
_DESCRIPTION_SKIPS: tuple[tuple[str, str], ...] = (
    (r"(?<![a-z])loc|scout|survey|3.?pl|tri.?pilot|aahead", "localiser"),
    (r"dwi|diff|(?<![a-z])adc(?![a-z])|trace|(?<![a-z])b\s?\d{3,4}(?!\d)|ep2d|resolve", "diffusion-weighted"),
    # not SPAIR/SPIR: those fat suppressions are used by T1 dynamic series too
    (r"(?<![a-z0-9])t2|stir|tirm|haste", "T2-weighted"),
    (r"(?<![a-z])(sub|subtract\w*|mip|mpr|cad|ser|map|pe\d)(?![a-z])|reformat", "derived"),
    (r"calib|asset|sense.?ref|(?<![a-z])coil", "calibration"),
)
_DCE_HINT = re.compile(
    r"dyn|dce|pass|vibrant|thrive|twist|tricks|\bph\d|phase|\bpre\b|\bpost\b|\+c|c\+|contrast", re.I
)


# --------------------------------------------------------------------------------------------
# the per-frame record


@dataclass
class Frame:
    """One 2D image: a classic slice, or one frame of a multi-frame file (``frame`` index)."""

    path: Path
    frame: int
    series_uid: str
    study_uid: str
    sop_uid: str
    rows: int
    cols: int
    iop: np.ndarray | None
    ipp: np.ndarray | None
    pixel_spacing: tuple[float, float] | None
    slope: float = 1.0
    intercept: float = 0.0
    philips_scale: tuple[float, float] | None = None  # (ScaleSlope, ScaleIntercept) private tags
    temporal: float | None = None  # TemporalPositionIdentifier / TemporalPositionIndex
    trigger: float | None = None  # ms
    acq_number: float | None = None
    acq_dt: float | None = None  # seconds since the epoch (date + time)
    content_dt: float | None = None
    instance: int | None = None
    thickness: float | None = None
    spacing_between: float | None = None
    n_temporal: int | None = None
    pixel_offset: int | None = None  # where uncompressed pixels of frame 0 start, None: use pydicom
    dtype: str = "<u2"
    stored_bits: tuple[int, int] = (16, 16)


@dataclass
class Series:
    """All frames of one SeriesInstanceUID plus what decides whether it is the DCE series."""

    uid: str
    study_uid: str
    description: str
    number: int | None
    image_type: tuple[str, ...]
    modality: str
    enhanced: bool
    header: Any  # first dataset (pixels not read), for acquisition parameters and PHI
    frames: list[Frame] = field(default_factory=list)
    files: set[Path] = field(default_factory=set)
    echo_time: float | None = None
    repetition_time: float | None = None
    flip_angle: float | None = None
    b_value: float | None = None
    skip_reason: str | None = None

    @property
    def signature(self) -> tuple:
        """What the phases of one dynamic acquisition share (sequence timing, orientation)."""
        rnd = lambda v, d: None if v is None else round(float(v), d)  # noqa: E731
        return (rnd(self.repetition_time, 1), rnd(self.echo_time, 1), rnd(self.flip_angle, 0))


# --------------------------------------------------------------------------------------------
# scanning


def list_files(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Every regular file under a folder (recursively) or in a list, hidden files excluded."""
    if isinstance(source, (str, os.PathLike)):
        root = Path(source)
        if root.is_file():
            return [root]
        if not root.is_dir():
            raise UnsupportedInput(f"{root} does not exist; check the path.")
        out = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            out.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
        return out
    return [Path(p) for p in source]


def scan(paths: Iterable[Path], warnings: list[str]) -> list[Series]:
    """Read every file's header (no pixels) and group the frames by series."""
    import pydicom

    series: dict[str, Series] = {}
    not_dicom: list[str] = []
    for path in paths:
        raw = _RawHeader.read(path) if series else None
        if raw is not None and raw.plain_image():
            entry = series.get(raw.text("SeriesInstanceUID") or "")
            if entry is not None:
                entry.files.add(path)
                entry.frames.extend(_frames_of(None, raw, path, raw.pixel_head, entry))
                continue
        ds, pixel_head = _read_header(path, pydicom)
        if ds is None:
            not_dicom.append(path.name)
            continue
        h = _Fast(ds)
        sop_class = h.text("SOPClassUID") or ""
        if sop_class == "1.2.840.10008.1.3.10":  # DICOMDIR: an index, not data
            continue
        if sop_class.startswith(_NON_IMAGE_SOP_PREFIXES) or "Rows" not in ds:
            _note_non_image(series, ds, path)
            continue
        uid = h.text("SeriesInstanceUID") or f"no-series-uid:{path.parent}"
        entry = series.get(uid)
        if entry is None:
            entry = series[uid] = _new_series(uid, ds)
        entry.files.add(path)
        entry.frames.extend(_frames_of(ds, h, path, pixel_head, entry))
    if not_dicom:
        shown = ", ".join(not_dicom[:3]) + (" ..." if len(not_dicom) > 3 else "")
        warnings.append(f"{len(not_dicom)} non-DICOM file(s) ignored ({shown}).")
    return list(series.values())


def _read_header(path: Path, pydicom: Any) -> tuple[Any, tuple[int, bytes, int] | None]:
    """(dataset without pixels, (offset, first 12 bytes, file size) of the PixelData element), or
    (None, None) if the file is not DICOM.

    A file with the DICM preamble that cannot be parsed is corrupt, not "not DICOM": it raises.
    """
    from pydicom.errors import InvalidDicomError

    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
            has_magic = len(head) == 132 and head[128:132] == b"DICM"
            if not has_magic and not _looks_like_raw_dicom(head):
                return None, None
            fh.seek(0)
            ds = pydicom.dcmread(fh, stop_before_pixels=True, force=not has_magic)
            offset = fh.tell()
            pixel_head = (offset, fh.read(12), os.fstat(fh.fileno()).st_size)
    except InvalidDicomError:
        return None, None
    except (
        OSError,
        EOFError,
        ValueError,
        KeyError,
        TypeError,
        IndexError,
        AttributeError,
        NotImplementedError,
    ) as err:
        raise CorruptFile(
            f"{path} looks like DICOM but cannot be read ({type(err).__name__}: {err}); it is probably "
            "truncated, so re-copy or re-export it (or remove it from the folder)."
        ) from err
    if not has_magic and "SOPClassUID" not in ds and "Rows" not in ds:
        return None, None
    meta = getattr(ds, "file_meta", None)
    sop_class = (
        _Fast(ds).text("SOPClassUID") or (_Fast(meta).text("MediaStorageSOPClassUID") if meta else "") or ""
    )
    if (
        "Rows" not in ds
        and sop_class.startswith("1.2.840.10008.5.1.4.1.1.")
        and not sop_class.startswith(_NON_IMAGE_SOP_PREFIXES)
    ):
        raise CorruptFile(
            f"{path} is an image file that ends before its image attributes; it is truncated, so re-copy or "
            "re-export it (or remove it from the folder)."
        )
    return ds, pixel_head


def _looks_like_raw_dicom(head: bytes) -> bool:
    """Old archives write datasets without the 128-byte preamble: group 0x0008 comes first."""
    return len(head) >= 8 and head[0:2] in (b"\x08\x00", b"\x02\x00") and head[2:4] < b"\x20\x00"


def _note_non_image(series: dict[str, Series], ds: Any, path: Path) -> None:
    uid = str(ds.get("SeriesInstanceUID", "")) or f"non-image:{path}"
    if uid not in series:
        entry = series[uid] = _new_series(uid, ds)
        entry.skip_reason = "not an image (structured report, presentation state or directory)"
    series[uid].files.add(path)


def _new_series(uid: str, ds: Any) -> Series:
    enhanced = "PerFrameFunctionalGroupsSequence" in ds
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    first = (
        ds.PerFrameFunctionalGroupsSequence[0]
        if enhanced and len(ds.PerFrameFunctionalGroupsSequence)
        else None
    )
    te = _num(ds.get("EchoTime")) or _num(_group_attr(shared, first, "MREchoSequence", "EffectiveEchoTime"))
    tr = _num(ds.get("RepetitionTime")) or _num(
        _group_attr(shared, first, "MRTimingAndRelatedParametersSequence", "RepetitionTime")
    )
    fa = _num(ds.get("FlipAngle")) or _num(
        _group_attr(shared, first, "MRTimingAndRelatedParametersSequence", "FlipAngle")
    )
    b_value = _num(ds.get("DiffusionBValue")) or _num(
        _group_attr(shared, first, "MRDiffusionSequence", "DiffusionBValue")
    )
    number = ds.get("SeriesNumber")
    return Series(
        uid=uid,
        study_uid=str(ds.get("StudyInstanceUID", "")),
        description=str(ds.get("SeriesDescription", "") or ds.get("ProtocolName", "") or ""),
        number=int(number) if number not in (None, "") else None,
        image_type=tuple(str(v).upper() for v in (ds.get("ImageType") or [])),
        modality=str(ds.get("Modality", "")),
        enhanced=enhanced,
        header=ds,
        echo_time=te,
        repetition_time=tr,
        flip_angle=fa,
        b_value=b_value,
    )


def _group_attr(shared: Any, per_frame: Any, seq: str, attr: str) -> Any:
    for group in (per_frame, shared):
        if group is not None and seq in group and len(group[seq].value):
            item = group[seq][0]
            if attr in item:
                return item.get(attr)
    return None


def _num(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, str)):
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _dt_seconds(date: Any, time: Any, fallback_date: Any = None) -> float | None:
    """DICOM DA + TM (or a DT in ``time`` when ``date`` is None) -> seconds since the epoch."""
    t = str(time or "").strip()
    if not t:
        return None
    if date is None and len(t) >= 14 and "." not in t[:14]:  # a DT value: YYYYMMDDHHMMSS.ffffff
        d, t = t[:8], t[8:]
    else:
        d = str(date or fallback_date or "19700101").strip()
    t = re.split(r"[+-]", t)[0].replace(":", "")  # drop a UTC offset; old files write 09:00:15
    try:
        hh, mm = int(t[0:2]), int(t[2:4] or 0)
        ss = float(t[4:] or 0)
    except ValueError:
        return None
    day = _day_seconds(d[:8])
    return None if day is None else day + hh * 3600 + mm * 60 + ss


@functools.lru_cache(maxsize=64)
def _day_seconds(date: str) -> float | None:
    """Seconds since the epoch of a DICOM date (cached: a study has one or two dates)."""
    try:
        return _dt.datetime.strptime(date, "%Y%m%d").replace(tzinfo=_dt.UTC).timestamp()
    except ValueError:
        return None


def _pixel_layout(
    h: _Fast | _RawHeader, path: Path, pixel_head: tuple[int, bytes, int] | None
) -> tuple[int | None, str, tuple[int, int]]:
    """Where raw pixels start (None when pydicom must decode them) and their numpy dtype."""
    ts = h.transfer_syntax
    bits = h.uint("BitsAllocated", 16)
    stored = h.uint("BitsStored", bits)
    signed = h.uint("PixelRepresentation", 0) == 1
    dtype = {8: "u1", 16: "u2", 32: "u4"}.get(bits)
    if dtype is None:
        return None, "<u2", (bits, stored)
    dtype = ("<" + dtype.replace("u", "i")) if signed else "<" + dtype
    plain = ts in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
    if not plain or pixel_head is None or h.uint("SamplesPerPixel", 1) != 1 or (signed and stored != bits):
        return None, dtype, (bits, stored)
    fh_offset, head, size = pixel_head
    if len(head) < 8:
        raise CorruptFile(
            f"{path} ends before its pixel data; it is truncated, so re-copy or re-export it (or remove it "
            "from the folder)."
        )
    if head[:4] != b"\xe0\x7f\x10\x00":
        return None, dtype, (bits, stored)
    if ts == "1.2.840.10008.1.2":  # implicit VR: tag, 4-byte length
        length, start = int.from_bytes(head[4:8], "little"), fh_offset + 8
    else:  # explicit VR OB/OW: tag, VR, 2 reserved, 4-byte length
        length, start = int.from_bytes(head[8:12], "little"), fh_offset + 12
    if length == 0xFFFFFFFF:
        return None, dtype, (bits, stored)
    frames = int(h.num("NumberOfFrames") or 1)
    need = h.uint("Rows", 0) * h.uint("Columns", 0) * (bits // 8) * frames
    if length < need or size < start + need:
        raise CorruptFile(
            f"{path} is truncated: it holds {max(0, size - start)} of the {need} bytes of pixel data its "
            "header announces; re-copy or re-export the file."
        )
    return start, dtype, (bits, stored)


class _Fast:
    """Attribute values straight from the raw bytes pydicom keeps until a value is first used.

    Why: converting values through pydicom's element machinery was about half of the scan's CPU
    time on a 960-file study; the ~25 text attributes we need per slice parse in microseconds
    from their bytes. Anything unusual (big endian, a binary VR, an already converted element)
    goes through pydicom as usual.
    """

    _BINARY = {"US", "UL", "SS", "SL", "FL", "FD", "AT", "OB", "OW", "OF", "OD", "OL", "SQ", "UN"}

    def __init__(self, ds: Any) -> None:
        from pydicom.datadict import dictionary_VR, tag_for_keyword
        from pydicom.dataelem import RawDataElement

        self.ds = ds
        self._raw_type = RawDataElement
        self._tag = tag_for_keyword
        self._vr = dictionary_VR
        encoding = getattr(ds, "original_encoding", None) or (False, True)
        self._fast = encoding[1] is True
        meta = getattr(ds, "file_meta", None)
        ts = None
        if meta is not None and "TransferSyntaxUID" in meta:
            ts = str(meta.TransferSyntaxUID)
        self.transfer_syntax = ts or "1.2.840.10008.1.2"

    _TAGS: dict[str, int | None] = {}

    def _lookup(self, keyword: str) -> tuple[int | None, Any]:
        tag = self._TAGS.get(keyword, -1)
        if tag == -1:
            tag = self._TAGS[keyword] = self._tag(keyword)
        return tag, (self.ds.get_item(tag) if tag is not None else None)

    def text(self, keyword: str) -> str | None:
        tag, elem = self._lookup(keyword)
        if elem is None:
            return None
        if self._fast and isinstance(elem, self._raw_type):
            vr = elem.VR or self._vr(tag)
            if vr not in self._BINARY:
                if elem.value is None:
                    return ""
                return elem.value.decode("latin-1").strip(" \x00")
        value = self.ds[tag].value
        if value is None:
            return ""
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            return "\\".join(str(v) for v in value)
        return str(value)

    def uint(self, keyword: str, default: int) -> int:
        """An unsigned short (US) such as Rows or BitsAllocated."""
        tag, elem = self._lookup(keyword)
        if elem is None:
            return default
        if (
            self._fast
            and isinstance(elem, self._raw_type)
            and elem.value is not None
            and len(elem.value) >= 2
        ) and (elem.VR or self._vr(tag)) == "US":
            return int.from_bytes(elem.value[:2], "little")
        value = self.ds[tag].value
        return default if value in (None, "") else int(value)

    def num(self, keyword: str) -> float | None:
        text = self.text(keyword)
        if not text:
            return None
        try:
            return float(text.split("\\")[0])
        except ValueError:
            return None

    def nums(self, keyword: str, n: int) -> np.ndarray | None:
        text = self.text(keyword)
        if not text:
            return None
        try:
            values = [float(v) for v in text.split("\\")]
        except ValueError:
            return None
        return np.asarray(values) if len(values) == n else None


def _is_philips(h: _Fast | _RawHeader) -> bool:
    return "PHILIPS" in (h.text("Manufacturer") or "").upper()


class _RawHeader:
    """A minimal reader of uncompressed little-endian DICOM headers, for the 2nd..Nth file of a series.

    Why: pydicom's general parser costs about 0.6 ms per file, which was the larger part of
    loading a 960-file study. Files of one series are alike, so after pydicom has read a series'
    first file, the others are walked here: element headers only, sequences skipped, values kept
    as bytes. Anything unexpected (another transfer syntax, a length past the buffer, no pixel
    data in the first 256 KiB) returns None and the file goes through pydicom, so this is only
    ever a shortcut, never a second opinion.
    """

    _LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
    _US_KEYWORDS = {"Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation"}
    _US_KEYWORDS |= {"SamplesPerPixel"}
    _TAGS: dict[str, int | None] = {}
    _PLAIN = {"1.2.840.10008.1.2": True, "1.2.840.10008.1.2.1": False}  # uid -> implicit VR
    _BUFFER = 256 * 1024

    def __init__(self, values: dict[int, bytes], transfer_syntax: str, pixel_head: tuple[int, bytes, int]):
        self.values = values
        self.transfer_syntax = transfer_syntax
        self.pixel_head = pixel_head

    @classmethod
    def read(cls, path: Path) -> _RawHeader | None:
        import struct

        try:
            with open(path, "rb") as fh:
                buf = fh.read(cls._BUFFER)
                size = os.fstat(fh.fileno()).st_size
        except OSError:
            return None
        if len(buf) < 144 or buf[128:132] != b"DICM" or buf[132:136] != b"\x02\x00\x00\x00":
            return None
        try:
            # file meta: explicit VR little endian, (0002,0000) gives its length
            (meta_len,) = struct.unpack_from("<I", buf, 140)
            meta: dict[int, bytes] = {}
            if cls._walk(buf, 132, 144 + meta_len, False, meta, 0) is not None:
                return None
            ts = meta.get(0x00020010, b"").decode("latin-1").strip(" \x00")
            if ts not in cls._PLAIN:
                return None
            values: dict[int, bytes] = {}
            pos = cls._walk(buf, 144 + meta_len, len(buf), cls._PLAIN[ts], values, 0)
        except (struct.error, _Unparsed):
            return None
        if pos is None:
            return None
        return cls(values, ts, (pos, buf[pos : pos + 12], size))

    @classmethod
    def _walk(
        cls, buf: bytes, pos: int, end: int, implicit: bool, out: dict | None, depth: int
    ) -> int | None:
        """Walk elements from ``pos``; at depth 0 stop at PixelData and return its offset.

        Inside a sequence item (depth > 0) return the position after the item delimiter. Returns
        None at ``end`` without pixel data (the file meta ends that way).
        """
        import struct

        while pos + 8 <= end:
            group, elem = struct.unpack_from("<HH", buf, pos)
            tag = (group << 16) | elem
            if depth == 0 and tag == 0x7FE00010:
                return pos
            if tag == 0xFFFEE00D:  # item delimitation
                if depth == 0:
                    raise _Unparsed
                return pos + 8
            if implicit or group == 0xFFFE:
                vr = None
                (length,) = struct.unpack_from("<I", buf, pos + 4)
                pos += 8
            else:
                vr = buf[pos + 4 : pos + 6]
                if vr in cls._LONG_VRS:
                    (length,) = struct.unpack_from("<I", buf, pos + 8)
                    pos += 12
                else:
                    (length,) = struct.unpack_from("<H", buf, pos + 6)
                    pos += 8
            if length == 0xFFFFFFFF:
                pos = cls._skip_sequence(buf, pos, end, implicit or vr == b"UN", depth)
                continue
            if pos + length > end:
                raise _Unparsed
            if out is not None and depth == 0:
                out[tag] = buf[pos : pos + length]
            pos += length
        if depth > 0:
            raise _Unparsed
        return None

    @classmethod
    def _skip_sequence(cls, buf: bytes, pos: int, end: int, implicit: bool, depth: int) -> int:
        """Skip an undefined-length sequence: items until the sequence delimitation item."""
        import struct

        while pos + 8 <= end:
            group, elem = struct.unpack_from("<HH", buf, pos)
            (length,) = struct.unpack_from("<I", buf, pos + 4)
            tag = (group << 16) | elem
            pos += 8
            if tag == 0xFFFEE0DD:  # sequence delimitation
                return pos
            if tag != 0xFFFEE000:
                raise _Unparsed
            if length == 0xFFFFFFFF:
                result = cls._walk(buf, pos, end, implicit, None, depth + 1)
                if result is None:
                    raise _Unparsed
                pos = result
            else:
                pos += length
        raise _Unparsed

    def _bytes(self, keyword: str) -> bytes | None:
        tag = self._TAGS.get(keyword, -1)
        if tag == -1:
            from pydicom.datadict import tag_for_keyword

            tag = self._TAGS[keyword] = tag_for_keyword(keyword)
        return None if tag is None else self.values.get(tag)

    def has(self, keyword: str) -> bool:
        return self._bytes(keyword) is not None

    def text(self, keyword: str) -> str | None:
        value = self._bytes(keyword)
        return None if value is None else value.decode("latin-1").strip(" \x00")

    def uint(self, keyword: str, default: int) -> int:
        value = self._bytes(keyword)
        if value is None or len(value) < 2 or keyword not in self._US_KEYWORDS:
            return default
        return int.from_bytes(value[:2], "little")

    num = _Fast.num
    nums = _Fast.nums

    def plain_image(self) -> bool:
        """A single-frame image this reader can describe fully (else pydicom reads the file)."""
        sop = self.text("SOPClassUID") or ""
        return (
            self.has("Rows")
            and sop.startswith("1.2.840.10008.5.1.4.1.1.")
            and not sop.startswith(_NON_IMAGE_SOP_PREFIXES)
            and not self.has("PerFrameFunctionalGroupsSequence")
            and int(self.num("NumberOfFrames") or 1) == 1
            and not _is_philips(self)
        )


class _Unparsed(Exception):
    """The raw header reader met something it does not handle; pydicom will read the file."""


def _frames_of(
    ds: Any, h: _Fast | _RawHeader, path: Path, pixel_head: tuple[int, bytes, int] | None, series: Series
) -> list[Frame]:
    """The frame records of one file; ``ds`` (pydicom) is None on the fast path (plain images)."""
    offset, dtype, bits = _pixel_layout(h, path, pixel_head)
    common = {
        "path": path,
        "series_uid": series.uid,
        "study_uid": h.text("StudyInstanceUID") or "",
        "sop_uid": h.text("SOPInstanceUID") or "",
        "rows": h.uint("Rows", 0),
        "cols": h.uint("Columns", 0),
        "pixel_offset": offset,
        "dtype": dtype,
        "stored_bits": bits,
    }
    if ds is not None and "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced_frames(ds, common)
    date = h.text("AcquisitionDate") or h.text("SeriesDate") or h.text("StudyDate")
    acq_dt = _dt_seconds(None, h.text("AcquisitionDateTime")) if h.text("AcquisitionDateTime") else None
    if acq_dt is None:
        acq_dt = _dt_seconds(date, h.text("AcquisitionTime"))
    content_dt = _dt_seconds(h.text("ContentDate") or date, h.text("ContentTime"))
    ps = h.nums("PixelSpacing", 2)
    instance = h.num("InstanceNumber")
    n_temporal = h.num("NumberOfTemporalPositions")
    frame = Frame(
        frame=0,
        iop=h.nums("ImageOrientationPatient", 6),
        ipp=h.nums("ImagePositionPatient", 3),
        pixel_spacing=(float(ps[0]), float(ps[1])) if ps is not None else None,
        slope=h.num("RescaleSlope") or 1.0,
        intercept=h.num("RescaleIntercept") or 0.0,
        philips_scale=_philips_scale(ds) if ds is not None and _is_philips(h) else None,
        temporal=h.num("TemporalPositionIdentifier"),
        trigger=h.num("TriggerTime"),
        acq_number=h.num("AcquisitionNumber"),
        acq_dt=acq_dt,
        content_dt=content_dt,
        instance=int(instance) if instance is not None else None,
        thickness=h.num("SliceThickness"),
        spacing_between=h.num("SpacingBetweenSlices"),
        n_temporal=int(n_temporal) if n_temporal else None,
        **common,
    )
    return [frame]


def _philips_scale(item: Any) -> tuple[float, float] | None:
    """Philips' private ScaleSlope/ScaleIntercept (2005,xx0E/xx0D), when its creator is present."""
    try:
        block = item.private_block(0x2005, PHILIPS_CREATOR)
    except (KeyError, ValueError):
        return None
    try:
        ss = _num(block[0x0E].value)
        si = _num(block[0x0D].value) if 0x0D in block else 0.0
    except KeyError:
        return None
    if not ss:
        return None
    return float(ss), float(si or 0.0)


def _enhanced_frames(ds: Any, common: dict) -> list[Frame]:
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    frames = []
    for i, pf in enumerate(ds.PerFrameFunctionalGroupsSequence):

        def get(seq: str, attr: str, pf=pf) -> Any:
            return _group_attr(shared, pf, seq, attr)

        iop = get("PlaneOrientationSequence", "ImageOrientationPatient")
        ipp = get("PlanePositionSequence", "ImagePositionPatient")
        ps = get("PixelMeasuresSequence", "PixelSpacing")
        content = pf.FrameContentSequence[0] if "FrameContentSequence" in pf else {}
        acq = content.get("FrameAcquisitionDateTime") or content.get("FrameReferenceDateTime")
        trig = get("CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime")
        pvt_item = None
        for group in (pf, shared):
            if group is not None and "PixelValueTransformationSequence" in group:
                pvt_item = group.PixelValueTransformationSequence[0]
                break
        pvt = pvt_item if pvt_item is not None else {}
        frames.append(
            Frame(
                frame=i,
                iop=np.asarray([float(v) for v in iop]) if iop else None,
                ipp=np.asarray([float(v) for v in ipp]) if ipp else None,
                pixel_spacing=(float(ps[0]), float(ps[1])) if ps else None,
                slope=_num(pvt.get("RescaleSlope")) or 1.0,
                intercept=_num(pvt.get("RescaleIntercept")) or 0.0,
                philips_scale=_philips_scale(pvt_item) if pvt_item is not None else None,
                temporal=_num(content.get("TemporalPositionIndex")),
                trigger=_num(trig),
                acq_number=_num(content.get("FrameAcquisitionNumber")),
                acq_dt=_dt_seconds(None, acq) if acq else None,
                content_dt=None,
                instance=None,
                thickness=_num(get("PixelMeasuresSequence", "SliceThickness")),
                spacing_between=_num(get("PixelMeasuresSequence", "SpacingBetweenSlices")),
                **common,
            )
        )
    return frames


# --------------------------------------------------------------------------------------------
# choosing the DCE series


def classify(series: Series) -> str | None:
    """Why this series is not a DCE candidate, or None when it may be one."""
    if series.skip_reason:
        return series.skip_reason
    if series.modality and series.modality != "MR":
        return f"modality {series.modality}, not MR"
    itype = set(series.image_type)
    desc = series.description.lower()
    if "LOCALIZER" in itype or "SCOUT" in itype:
        return "localiser (ImageType)"
    orientations = Counter(tuple(np.round(f.iop, 3)) for f in series.frames if f.iop is not None)
    if len(orientations) > 1 and max(orientations.values()) < 0.75 * len(series.frames):
        return "localiser (images in several orientations)"
    if series.b_value:
        return f"diffusion-weighted (b = {series.b_value:g})"
    if itype & {"DIFFUSION", "ADC", "TRACEW", "FA"}:
        return "diffusion-weighted (ImageType)"
    for pattern, reason in _DESCRIPTION_SKIPS:
        if re.search(pattern, desc):
            return f"{reason} (series description)"
    if series.image_type and series.image_type[0] == "DERIVED":
        return "derived (ImageType DERIVED: subtraction, MIP, map or reformat)"
    if itype & {"SUBTRACTION", "SUB", "MIP", "MPR", "PROJECTION IMAGE", "PROJECTION"}:
        return "derived (ImageType)"
    if series.echo_time is not None and series.echo_time > 30:
        return f"T2-weighted (echo time {series.echo_time:g} ms)"
    if len(series.frames) < 3:
        return f"only {len(series.frames)} image(s)"
    return None


def choose_series(
    all_series: list[Series], series_uid: str | Sequence[str] | None
) -> tuple[list[Series], list[SkippedSeries]]:
    """The series that make up the DCE study, and every other series with the reason it was left."""
    images = [s for s in all_series if s.frames]
    if series_uid is not None:
        chosen = _chosen_by_user(all_series, series_uid)
    else:
        candidates = [s for s in images if classify(s) is None]
        if not candidates:
            reasons = "; ".join(f"'{s.description or s.uid}': {classify(s)}" for s in all_series) or "none"
            raise UnsupportedInput(
                f"No dynamic (DCE) series was found among {len(all_series)} series ({reasons}); pass "
                "series_uid= (or --series) to load one of them anyway."
            )
        chosen = _dynamic_group(candidates)
    _check_one_study(chosen, all_series if series_uid is None else chosen)
    chosen_uids = {s.uid for s in chosen}
    skipped = []
    for s in all_series:
        if s.uid in chosen_uids:
            continue
        reason = classify(s) or (
            "not part of the dynamic series (same sequence timing, but its description is not a dynamic "
            "phase's)"
            if chosen and s.signature == chosen[0].signature and s.study_uid == chosen[0].study_uid
            else "not part of the dynamic series (different sequence timing or fewer phases)"
        )
        if chosen and s.study_uid and chosen[0].study_uid and s.study_uid != chosen[0].study_uid:
            reason = f"another study ({s.study_uid})"
        skipped.append(SkippedSeries(s.uid, s.description, reason, len(s.files)))
    return chosen, skipped


def _chosen_by_user(all_series: list[Series], series_uid: str | Sequence[str]) -> list[Series]:
    wanted = [series_uid] if isinstance(series_uid, str) else list(series_uid)
    by_uid = {s.uid: s for s in all_series}
    missing = [u for u in wanted if u not in by_uid or not by_uid[u].frames]
    if missing:
        known = ", ".join(f"{s.uid} ('{s.description}')" for s in all_series if s.frames)
        raise UnsupportedInput(f"Series {missing[0]} is not among the image series found: {known}.")
    if isinstance(series_uid, str):
        # one series chosen: take it together with the series of the same dynamic acquisition
        first = by_uid[series_uid]
        group = [
            s
            for s in all_series
            if s.frames
            and s.signature == first.signature
            and s.study_uid == first.study_uid
            and classify(s) is None
        ]
        return group if first in group else [first]
    return [by_uid[u] for u in wanted]


def _dynamic_group(candidates: list[Series]) -> list[Series]:
    """Series sharing one sequence signature form the dynamic; the group with most phases wins."""
    groups: dict[tuple, list[Series]] = defaultdict(list)
    for s in candidates:
        groups[(s.study_uid, s.signature)].append(s)

    def score(group: list[Series]) -> tuple:
        n_phases = sum(_count_phases(s) for s in group)
        hint = sum(bool(_DCE_HINT.search(s.description)) for s in group)
        return (n_phases > 1, hint > 0, n_phases, sum(len(s.frames) for s in group))

    best = max(groups.values(), key=score)
    hinted = [s for s in best if _DCE_HINT.search(s.description)]
    # same timing but a description that is not dynamic-like (e.g. "ax t1" beside "ax dyn pre"):
    # not a phase; it is reported as skipped
    return hinted if hinted else best


def _count_phases(series: Series) -> int:
    positions = Counter(_pos_key(f) for f in series.frames)
    return max(positions.values()) if positions else 0


def _check_one_study(chosen: list[Series], all_series: list[Series]) -> None:
    studies = {s.study_uid for s in chosen}
    if len(studies) > 1:
        raise MixedStudies(
            f"The dynamic series come from {len(studies)} different studies ({', '.join(sorted(studies))}); "
            "load each study's folder separately or pass series_uid= for the series of one study."
        )
    frame_studies = {f.study_uid for s in chosen for f in s.frames}
    if len(frame_studies) > 1:
        raise MixedStudies(
            f"Series '{chosen[0].description}' mixes images of {len(frame_studies)} studies; its files were "
            "copied together from different exams, so separate them first."
        )
    image_studies = {s.study_uid for s in all_series if s.frames and classify(s) is None}
    if len(image_studies) > 1:
        raise MixedStudies(
            f"The folder holds images of {len(image_studies)} studies ({', '.join(sorted(image_studies))}); "
            "load one study's folder at a time, or pass series_uid= to pick a series of one study."
        )


# --------------------------------------------------------------------------------------------
# phases and slices


def _pos_key(frame: Frame) -> tuple:
    if frame.ipp is None:
        return ("no-position", frame.sop_uid, frame.frame)
    return tuple(np.round(frame.ipp, 2))


def split_phases(series: Series, warnings: list[str]) -> tuple[list[list[Frame]], str]:
    """Split one series' frames into phases; return them and the tag that told them apart."""
    frames = _dedupe(series, warnings)
    positions = Counter(_pos_key(f) for f in frames)
    if max(positions.values()) == 1:
        return [frames], "series"
    keys = (
        ("TemporalPositionIdentifier", lambda f: f.temporal),
        ("TriggerTime", lambda f: f.trigger),
        ("AcquisitionNumber", lambda f: f.acq_number),
        ("AcquisitionTime", lambda f: f.acq_dt),
        ("ContentTime", lambda f: f.content_dt),
    )
    for name, key in keys:
        values = [key(f) for f in frames]
        if any(v is None for v in values) or len(set(values)) < 2:
            continue
        groups: dict[Any, list[Frame]] = defaultdict(list)
        for f, v in zip(frames, values, strict=True):
            groups[v].append(f)
        if _is_clean_split(list(groups.values())):
            return [groups[v] for v in sorted(groups)], name
    return _split_by_repeats(series, frames, positions, warnings), "repeated positions"


def _is_clean_split(groups: list[list[Frame]]) -> bool:
    """Every group holds each position exactly once, and all groups hold the same positions."""
    sets = []
    for g in groups:
        keys = [_pos_key(f) for f in g]
        if len(set(keys)) != len(keys):
            return False
        sets.append(frozenset(keys))
    return len(set(sets)) == 1


def _split_by_repeats(
    series: Series, frames: list[Frame], positions: Counter, warnings: list[str]
) -> list[list[Frame]]:
    counts = set(positions.values())
    if len(counts) != 1:
        worst = max(positions, key=positions.__getitem__)
        raise DuplicatePositions(
            f"Series '{series.description}' ({series.uid}) has {positions[worst]} different images at position "
            f"{list(worst)} but {min(counts)} at others, and no time tag separates them; remove the duplicate "
            "files or load the series the scanner exported."
        )
    n = counts.pop()
    by_pos: dict[tuple, list[Frame]] = defaultdict(list)
    for f in frames:
        by_pos[_pos_key(f)].append(f)

    def order(f: Frame) -> tuple:
        t = f.acq_dt if f.acq_dt is not None else f.content_dt
        return (t is None, t or 0.0, f.instance or 0, f.frame)

    has_time = all(f.acq_dt is not None or f.content_dt is not None for f in frames)
    if not has_time:
        warnings.append(
            f"Series '{series.description}' repeats every position {n} times without time tags; phases were "
            "ordered by InstanceNumber, which is all the files tell. Check the phase order."
        )
    phases: list[list[Frame]] = [[] for _ in range(n)]
    for group in by_pos.values():
        for i, f in enumerate(sorted(group, key=order)):
            phases[i].append(f)
    return phases


def _dedupe(series: Series, warnings: list[str]) -> list[Frame]:
    seen: set[tuple[str, int]] = set()
    out = []
    for f in series.frames:
        key = (f.sop_uid, f.frame)
        if f.sop_uid and key in seen:
            continue
        seen.add(key)
        out.append(f)
    if len(out) < len(series.frames):
        warnings.append(
            f"Series '{series.description}': {len(series.frames) - len(out)} duplicate file(s) (same "
            "SOPInstanceUID) ignored."
        )
    return out


@dataclass
class PhaseGrid:
    """One phase: its frames sorted along the slice normal, and the grid they form."""

    frames: list[Frame]
    affine: np.ndarray
    shape: tuple[int, int, int]
    series: Series


def sort_and_check(frames: list[Frame], series: Series, warnings: list[str]) -> PhaseGrid:
    """Sort one phase's frames along the slice normal and check they form one regular grid."""
    name = f"Series '{series.description}' ({series.uid})"
    missing = [f for f in frames if f.iop is None or f.ipp is None or f.pixel_spacing is None]
    if missing:
        f = missing[0]
        tag = (
            "ImageOrientationPatient"
            if f.iop is None
            else "ImagePositionPatient"
            if f.ipp is None
            else "PixelSpacing"
        )
        raise MissingGeometry(
            f"{name}: {f.path.name} has no {tag}, so its position in the patient is unknown; re-export the "
            "series from the scanner or PACS with its geometry."
        )
    iop = frames[0].iop
    if any(not np.allclose(f.iop, iop, atol=1e-3) for f in frames):
        raise InconsistentGeometry(
            f"{name} mixes slice orientations within one phase; it is not one volume (a localiser or a "
            "composed series), so choose another series."
        )
    if len({(f.rows, f.cols) for f in frames}) > 1 or len({f.pixel_spacing for f in frames}) > 1:
        raise InconsistentGeometry(
            f"{name} mixes image sizes or pixel spacings within one phase; choose another series."
        )
    normal = np.cross(iop[:3], iop[3:])
    normal /= np.linalg.norm(normal)
    frames = sorted(frames, key=lambda f: float(np.dot(f.ipp, normal)))
    dist = np.array([float(np.dot(f.ipp, normal)) for f in frames])
    if len(frames) > 1:
        step = _check_spacing(dist, name)
        first, last = frames[0].ipp, frames[-1].ipp
        slice_step = (last - first) / (len(frames) - 1)
        # every position must lie on the line first + k * step (a sheared stack is fine, a bent one not)
        expected = first + np.outer(np.arange(len(frames)), slice_step)
        off = np.abs(np.array([f.ipp for f in frames]) - expected).max()
        if off > max(0.05, 0.05 * step):
            raise InconsistentGeometry(
                f"{name}: slice positions do not lie on one line (off by up to {off:.2f} mm); the slices do "
                "not form one volume, so choose another series."
            )
    else:
        gap = frames[0].spacing_between or frames[0].thickness or 1.0
        slice_step = normal * gap
    affine = affine_from_dicom(iop, frames[0].ipp, frames[0].pixel_spacing, slice_step)
    return PhaseGrid(frames, affine, (len(frames), frames[0].rows, frames[0].cols), series)


def _check_spacing(dist: np.ndarray, name: str) -> float:
    gaps = np.diff(dist)
    if np.any(gaps < 1e-3):
        raise DuplicatePositions(
            f"{name} has two different images at one slice position ({dist[np.argmin(gaps)]:.2f} mm along the "
            "normal); remove the duplicate files or choose another series."
        )
    median = float(np.median(gaps))
    bad = np.abs(gaps - median) > SPACING_RTOL * median + 1e-3
    if not bad.any():
        return median
    ratios = gaps[bad] / median
    if np.allclose(ratios, np.round(ratios), atol=0.05) and np.all(np.round(ratios) >= 2):
        n_missing = int(np.sum(np.round(ratios) - 1))
        where = float(dist[int(np.argmax(bad))])
        raise MissingSlices(
            f"{name} is missing {n_missing} slice(s) (a gap of {gaps[bad].max():.2f} mm after {where:.2f} mm "
            f"where the spacing is {median:.2f} mm); re-copy the series - some files did not arrive."
        )
    raise UnequalSpacing(
        f"{name} has slices with unequal spacing ({gaps.min():.2f} mm to {gaps.max():.2f} mm); it is not one "
        "regular volume, so choose another series or resample it in the scanner software."
    )


# --------------------------------------------------------------------------------------------
# times, protocol, labels


def phase_times(phases: list[PhaseGrid], warnings: list[str]) -> tuple[np.ndarray, str]:
    """Per-phase start times (s, absolute) from the first tag present in all phases and distinct."""
    sources = (
        ("AcquisitionTime", lambda f: f.acq_dt),
        ("ContentTime", lambda f: f.content_dt),
        ("TriggerTime", lambda f: None if f.trigger is None else f.trigger / 1000.0),
    )
    for name, key in sources:
        values = []
        for ph in phases:
            vals = [key(f) for f in ph.frames if key(f) is not None]
            values.append(min(vals) if vals else None)
        if all(v is not None for v in values) and len(set(values)) == len(values):
            return np.asarray(values, dtype=float), name
    temporal = [ph.frames[0].temporal for ph in phases]
    if all(t is not None for t in temporal) and len(set(temporal)) == len(temporal):
        warnings.append(
            "No acquisition, content or trigger times tell the phases apart; they were ordered by "
            "TemporalPositionIdentifier and given index times (1 s apart)."
        )
        return _ranks(temporal), "TemporalPositionIdentifier"
    if len(phases) == 1:
        return np.zeros(1), "single phase"
    numbers = [ph.series.number for ph in phases]
    if (
        all(n is not None for n in numbers)
        and len(set(numbers)) == len(numbers)
        and len({ph.series.uid for ph in phases}) == len(phases)
    ):
        warnings.append(
            "No time tags tell the phases apart; they were ordered by SeriesNumber. Check the phase order."
        )
        return _ranks(numbers), "SeriesNumber"
    raise InconsistentGeometry(
        f"The {len(phases)} phases carry no acquisition, content or trigger times and no temporal position, so "
        "their order is unknown; load the series one at a time with series_uid=."
    )


def _ranks(values: Sequence[float]) -> np.ndarray:
    """0, 1, 2 ... in the order of ``values``: index times when only an order is known."""
    return np.argsort(np.argsort(np.asarray(values, dtype=float), kind="stable")).astype(float)


def protocol_and_labels(times: np.ndarray) -> tuple[Protocol, list[str]]:
    """Conventional or ultrafast, from the intervals between phases; and the phase labels.

    The gap from the pre-contrast phase to the first post-contrast frame includes the injection, so
    ultrafast frames are counted from the intervals after it: frame 1 and every following frame
    reached by an interval under ``ULTRAFAST_MAX_INTERVAL_S``. With at least
    ``ULTRAFAST_MIN_FRAMES`` such frames the protocol is ultrafast ("uf1".. then "post1"..).
    """
    n = len(times)
    if n == 1:
        return Protocol(), ["pre"]
    intervals = np.diff(times)
    n_short = 0
    for dt in intervals[1:]:
        if dt >= ULTRAFAST_MAX_INTERVAL_S:
            break
        n_short += 1
    n_uf = n_short + 1 if n_short else 0
    if n_uf >= ULTRAFAST_MIN_FRAMES:
        labels = ["pre"] + [f"uf{i}" for i in range(1, n_uf + 1)] + [f"post{i}" for i in range(1, n - n_uf)]
        return Protocol("ultrafast", float(np.median(intervals[1:n_uf])), n_uf), labels
    return Protocol("conventional", float(np.median(intervals))), ["pre"] + [f"post{i}" for i in range(1, n)]


# --------------------------------------------------------------------------------------------
# pixels


def _read_frame(frame: Frame) -> np.ndarray:
    n = frame.rows * frame.cols
    if frame.pixel_offset is not None:
        dtype = np.dtype(frame.dtype)
        with open(frame.path, "rb") as fh:
            fh.seek(frame.pixel_offset + frame.frame * n * dtype.itemsize)
            raw = np.fromfile(fh, dtype=dtype, count=n)
        if raw.size != n:
            raise CorruptFile(
                f"{frame.path} is truncated inside its pixel data; re-copy or re-export the file."
            )
        return raw.reshape(frame.rows, frame.cols)
    return _decode_frame(frame)


def _decode_frame(frame: Frame) -> np.ndarray:
    arr = _decode_file(frame.path)
    return arr[frame.frame] if arr.ndim == 3 else arr


def _decode_file(path: Path) -> np.ndarray:
    """All frames of a file through pydicom's decoders (compressed or unusual pixel data)."""
    import pydicom

    try:
        return pydicom.dcmread(path).pixel_array
    except Exception as err:  # a decoder failure means the file is damaged or in a format we cannot decode
        raise CorruptFile(
            f"{path}: its pixel data cannot be decoded ({type(err).__name__}: {err}); re-export it "
            "uncompressed or install the decoder pydicom names."
        ) from err


def _scale(frame: Frame, philips: bool) -> tuple[float, float]:
    """Slope and intercept from stored values to the study's values."""
    if philips and frame.philips_scale is not None:
        # Philips floating-point value: FP = (SV * RS + RI) / (RS * SS)  (Chenevert et al. 2014)
        ss = frame.philips_scale[0]
        return 1.0 / ss, frame.intercept / (frame.slope * ss)
    return frame.slope, frame.intercept


def _decode_compressed(frames: list[Frame]) -> dict[tuple[Path, int], np.ndarray]:
    """Decode each compressed (or otherwise not directly readable) file once, for all its frames.

    Why: a compressed multi-frame file decoded once per frame would cost frames x file; here each
    file is decoded once and its frames handed out.
    """
    out: dict[tuple[Path, int], np.ndarray] = {}
    wanted: dict[Path, set[int]] = defaultdict(set)
    for f in frames:
        wanted[f.path].add(f.frame)
    for path, indices in wanted.items():
        arr = _decode_file(path)
        for i in indices:
            out[(path, i)] = arr[i] if arr.ndim == 3 else arr
    return out


def fill(out: np.ndarray, phases: list[PhaseGrid], philips: bool, workers: int | None = None) -> None:
    """Read every frame straight into ``out[p, z]`` (float32), in a few threads (file reads release
    the GIL, so this overlaps disk and conversion without a second copy of the study)."""
    jobs = [(p, z, f) for p, ph in enumerate(phases) for z, f in enumerate(ph.frames)]
    decoded = _decode_compressed([f for _, _, f in jobs if f.pixel_offset is None])

    def one(job: tuple[int, int, Frame]) -> None:
        p, z, f = job
        raw = decoded[(f.path, f.frame)] if f.pixel_offset is None else _read_frame(f)
        slope, intercept = _scale(f, philips)
        dst = out[p, z]
        np.multiply(raw, np.float32(slope), out=dst, casting="unsafe")
        if intercept:
            dst += np.float32(intercept)

    workers = workers or min(2, os.cpu_count() or 1)  # reads come from the page cache: 2 suffice
    if workers <= 1 or len(jobs) < 8:
        for job in jobs:
            one(job)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(one, jobs, chunksize=16):
            pass


# --------------------------------------------------------------------------------------------
# the whole thing


def load_dicom(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    series_uid: str | Sequence[str] | None = None,
) -> Study:
    """Load the DCE study in a DICOM folder or file list (see the module docstring).

    A single classic (one-slice) file stands for its series: the folder around it is loaded with
    that file's series chosen, which is what a user dropping one file on the viewer means.
    """
    warnings: list[str] = []
    if isinstance(source, (str, os.PathLike)) and Path(source).is_file() and series_uid is None:
        single = _single_file_series(Path(source))
        if single is not None:
            source, series_uid = _study_folder_of(Path(source).parent), single
    files = list_files(source)
    all_series = scan(files, warnings)
    if not any(s.frames for s in all_series):
        raise UnsupportedInput(
            f"No DICOM images were found in {source if isinstance(source, (str, os.PathLike)) else 'the files given'}; "
            "point at a folder of DICOM files or at a NIfTI file."
        )
    chosen, skipped = choose_series(all_series, series_uid)
    raw_phases: list[tuple[list[Frame], Series]] = []
    split_by = set()
    for s in chosen:
        groups, how = split_phases(s, warnings)
        split_by.add(how)
        raw_phases.extend((g, s) for g in groups)
    phases = [sort_and_check(frames, s, warnings) for frames, s in raw_phases]
    abs_times, time_source = phase_times(phases, warnings)
    order = np.argsort(abs_times, kind="stable")
    phases = [phases[i] for i in order]
    abs_times = abs_times[order]
    _check_counts(phases, chosen, warnings)
    data, affine = _assemble(phases, warnings)
    times = abs_times - abs_times[0]
    protocol, labels = protocol_and_labels(times)
    header = phases[0].series.header
    # synthetic studies written by our writer say so in ImageComments; the label must follow them
    demo = DEMO_LABEL in str(header.get("ImageComments", "") or "")
    layout = (
        "enhanced"
        if phases[0].series.enhanced
        else ("single-series" if len(chosen) == 1 and len(phases) > 1 else "series-per-phase")
    )
    if len(phases) == 1:
        warnings.append(
            "Only one phase was found: kinetics and subtractions need a pre- and a post-contrast phase."
        )
    return Study(
        data=data,
        affine=affine,
        times=times,
        phase_labels=labels,
        protocol=protocol,
        acquisition=_acquisition(phases[0].series, header),
        phi=_phi(header),
        source=(f"{DEMO_LABEL}: " if demo else "")
        + (f"DICOM {source}" if isinstance(source, (str, os.PathLike)) else f"DICOM ({len(files)} files)"),
        study_uid=phases[0].series.study_uid,
        series_uids=list(dict.fromkeys(ph.series.uid for ph in phases)),
        skipped_series=skipped,
        warnings=warnings,
        meta={
            "format": "dicom",
            "dicom_layout": layout,
            "phase_split": sorted(split_by),
            "time_source": time_source,
            "orientation": orientation_label(affine),
            "series_descriptions": [ph.series.description for ph in phases],
            "scaling": "philips-fp" if _use_philips(phases) else "rescale",
            "n_files": len(files),
            "demo": demo,
        },
    )


def _single_file_series(path: Path) -> str | None:
    """The SeriesInstanceUID of a single-frame DICOM file (None for multi-frame or non-DICOM)."""
    import pydicom

    ds, _ = _read_header(path, pydicom)
    if (
        ds is None
        or "PerFrameFunctionalGroupsSequence" in ds
        or int(_Fast(ds).num("NumberOfFrames") or 1) > 1
    ):
        return None
    return _Fast(ds).text("SeriesInstanceUID") or None


def _study_folder_of(series_dir: Path, max_series: int = 100) -> Path:
    """The study folder around a series folder, when its parent looks like one (only leaf folders,
    at most ``max_series`` of them: Duke/TCIA and our writer's layouts); else the series folder.

    Why: in a one-series-per-phase layout the other phases lie in sibling folders, but walking up
    into an arbitrary folder (a home directory) must never happen.
    """
    parent = series_dir.parent
    try:
        subs = [d for d in parent.iterdir() if d.is_dir() and not d.name.startswith(".")]
        if not 1 < len(subs) <= max_series:
            return series_dir
        if any(x.is_dir() for d in subs for x in d.iterdir()):
            return series_dir
    except OSError:
        return series_dir
    return parent


def _check_counts(phases: list[PhaseGrid], chosen: list[Series], warnings: list[str]) -> None:
    declared = {f.n_temporal for s in chosen for f in s.frames[:1] if f.n_temporal}
    if declared and len(phases) not in declared:
        warnings.append(
            f"NumberOfTemporalPositions says {sorted(declared)} but {len(phases)} phases were found in the files."
        )


def _use_philips(phases: list[PhaseGrid]) -> bool:
    """Philips precise values when every frame has them (what dcm2niix does by default, '-p y')."""
    return all(f.philips_scale is not None for ph in phases for f in ph.frames)


def _allocate(shape: tuple[int, ...]) -> np.ndarray:
    """The float32 study array, allocated once and filled in place.

    Why not ``np.empty``: numpy asks Linux for transparent huge pages on large arrays, and when
    memory is fragmented (a busy workstation, right after another big job) the kernel stalls each
    fault to compact memory: 1 GB then took 4 s of CPU instead of under 1 s (measured by
    bench_io). Anonymous memory with huge pages declined costs the same on an idle machine within
    a fraction of a second and stays predictable on a busy one. Elsewhere, plain ``np.empty``.
    """
    import mmap

    nbytes = int(np.prod(shape)) * 4
    if sys.platform != "linux" or nbytes < (64 << 20) or not hasattr(mmap, "MADV_NOHUGEPAGE"):
        return np.empty(shape, dtype=np.float32)
    buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(buf, dtype=np.float32).reshape(shape)


def _assemble(phases: list[PhaseGrid], warnings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One float32 (phase, z, y, x) array on the first phase's grid."""
    ref = phases[0]
    out = _allocate((len(phases), *ref.shape))
    philips = _use_philips(phases)
    if all(same_grid(p.affine, ref.affine, p.shape, ref.shape, atol_mm=1e-2) for p in phases):
        fill(out, phases, philips)
    else:
        for i, ph in enumerate(phases):
            if same_grid(ph.affine, ref.affine, ph.shape, ref.shape, atol_mm=1e-2):
                fill(out[i : i + 1], [ph], philips)
                continue
            tmp = np.empty((1, *ph.shape), dtype=np.float32)
            fill(tmp, [ph], philips)
            out[i] = resample_to_grid(tmp[0], ph.affine, ref.affine, ref.shape)
            warnings.append(
                f"Phase {i + 1} ('{ph.series.description}') is on a different grid ({ph.shape}, "
                f"{orientation_label(ph.affine)}) from the first phase; it was resampled onto the first "
                "phase's grid (linear interpolation in world space)."
            )
    return out, ref.affine


def _acquisition(series: Series, ds: Any) -> Acquisition:
    return Acquisition(
        repetition_time_ms=series.repetition_time,
        echo_time_ms=series.echo_time,
        flip_angle_deg=series.flip_angle,
        field_strength_t=_num(ds.get("MagneticFieldStrength")),
        manufacturer=str(ds.get("Manufacturer", "")) or None,
    )


def _phi(ds: Any) -> PatientInfo:
    return PatientInfo(
        name=str(ds.get("PatientName", "") or ""),
        patient_id=str(ds.get("PatientID", "") or ""),
        birth_date=str(ds.get("PatientBirthDate", "") or ""),
        accession=str(ds.get("AccessionNumber", "") or ""),
        study_date=str(ds.get("StudyDate", "") or ""),
        institution=str(ds.get("InstitutionName", "") or ""),
    )
