"""Where annotation work lives on disk: an append-only journal plus periodic atomic snapshots.

Why a journal: a reader's corrections must survive a crash or a killed process. Every edit is
appended to ``journal.jsonl`` as one line (the state change it made) the moment it is made; the
operating system keeps those bytes even when the process is killed with SIGKILL, so nothing but
a power cut can lose them. Every few seconds (and on every accept) a snapshot (``state.json``
plus a sparse ``mask-<seq>.npz``) is written atomically and the journal is compacted, so a
restore reads one snapshot and replays at most a few seconds of journal. A torn last journal
line (killed mid-write) is ignored.

Layout: ``<root>/<study key>/{state.json, mask-<seq>.npz, journal.jsonl}``; the root is a
folder beside the case (``.breastmri-annotations``) when it can be written, else the user data
folder (platformdirs), or ``$BREASTMRI_ANNOTATIONS_DIR``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _atomic
from ..errors import AnnotationError

FORMAT = "napari-breastmri-annotations/1"
BESIDE_CASE = ".breastmri-annotations"


def default_root(case_path: str | os.PathLike[str] | None = None) -> Path:
    """The store root: $BREASTMRI_ANNOTATIONS_DIR, beside the case when writable, else the user folder."""
    env = os.environ.get("BREASTMRI_ANNOTATIONS_DIR")
    if env:
        return Path(env)
    if case_path is not None:
        case = Path(case_path)
        folder = case if case.is_dir() else case.parent
        if os.access(folder, os.W_OK):
            return folder / BESIDE_CASE
    import platformdirs

    return Path(platformdirs.user_data_dir("napari-breastmri", appauthor=False)) / "annotations"


def study_key(study_uid: str) -> str:
    """A file-system safe folder name for a study (readable prefix + short hash)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", study_uid)[:48] or "study"
    return f"{safe}-{hashlib.sha1(study_uid.encode()).hexdigest()[:10]}"


def encode_array(arr: np.ndarray) -> dict[str, Any]:
    """A JSON-safe, zlib-compressed form of a 1-D array (for mask diffs in the journal)."""
    arr = np.ascontiguousarray(arr)
    return {
        "dtype": arr.dtype.str,
        "n": int(arr.size),
        "b64": base64.b64encode(zlib.compress(arr.tobytes(), 1)).decode(),
    }


def decode_array(obj: dict[str, Any]) -> np.ndarray:
    raw = zlib.decompress(base64.b64decode(obj["b64"]))
    return np.frombuffer(raw, dtype=np.dtype(obj["dtype"]))[: obj["n"]].copy()


@dataclass
class SavedState:
    """What a store holds for one study: the snapshot and the journal entries after it."""

    folder: Path
    snapshot: dict[str, Any] | None
    mask: np.ndarray | None
    journal: list[dict[str, Any]]
    saved_at: str

    @property
    def n_edits(self) -> int:
        return int((self.snapshot or {}).get("seq", 0)) + len(self.journal)

    def describe(self) -> str:
        """One line for the viewer's "restore?" question."""
        lesions = len((self.snapshot or {}).get("lesions", []))
        return f"{self.n_edits} edits ({lesions} lesions at the last snapshot), last change {self.saved_at}"


class AnnotationStore:
    """Reads and writes one study's annotation folder; thread-safe."""

    def __init__(self, root: str | os.PathLike[str], study_uid: str) -> None:
        if not study_uid:
            raise AnnotationError("An annotation store needs the study's UID to know whose work it holds.")
        self.study_uid = study_uid
        self.folder = Path(root) / study_key(study_uid)
        self._lock = threading.Lock()
        self._journal_fh: io.BufferedWriter | None = None

    @property
    def journal_path(self) -> Path:
        return self.folder / "journal.jsonl"

    @property
    def state_path(self) -> Path:
        return self.folder / "state.json"

    # ---- journal -------------------------------------------------------------------------
    def append(self, entry: dict[str, Any]) -> None:
        """Append one edit; flushed to the OS at once (survives SIGKILL), fsync'd at snapshots."""
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._journal_fh is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._journal_fh = open(self.journal_path, "ab")  # noqa: SIM115 (kept open between edits)
            self._journal_fh.write(line)
            self._journal_fh.flush()

    def sync(self) -> None:
        with self._lock:
            if self._journal_fh is not None:
                os.fsync(self._journal_fh.fileno())

    def close(self) -> None:
        with self._lock:
            if self._journal_fh is not None:
                self._journal_fh.close()
                self._journal_fh = None

    # ---- snapshots -----------------------------------------------------------------------
    def write_snapshot(self, state: dict[str, Any], mask: np.ndarray | None) -> Path:
        """Write state (+ sparse mask) atomically, then drop journal lines the snapshot covers."""
        seq = int(state["seq"])
        self.folder.mkdir(parents=True, exist_ok=True)
        state = dict(state, format=FORMAT, study_uid=self.study_uid)
        if mask is not None:
            flat = mask.reshape(-1)
            idx = np.flatnonzero(flat)
            name = f"mask-{seq:08d}.npz"
            buf = io.BytesIO()
            np.savez(
                buf,
                shape=np.array(mask.shape),
                idx=idx.astype(np.int64),
                val=flat[idx],
                dtype=np.array(mask.dtype.str),
            )
            _atomic.write_bytes(self.folder / name, buf.getvalue())
            state["mask_file"] = name
        else:
            state["mask_file"] = None
        _atomic.write_text(self.state_path, json.dumps(state, indent=1))
        for old in self.folder.glob("mask-*.npz"):
            if old.name != state["mask_file"]:
                old.unlink(missing_ok=True)
        self._compact(seq)
        return self.state_path

    def _compact(self, seq: int) -> None:
        """Rewrite the journal with only the entries after ``seq`` (atomically, under the lock)."""
        with self._lock:
            if self._journal_fh is not None:
                self._journal_fh.flush()
                os.fsync(self._journal_fh.fileno())
                self._journal_fh.close()
                self._journal_fh = None
            keep = [e for e in _read_journal(self.journal_path) if int(e.get("seq", 0)) > seq]
            text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in keep)
            _atomic.write_text(self.journal_path, text)

    # ---- reading -------------------------------------------------------------------------
    def load(self) -> SavedState | None:
        """The last saved state, or None when this study has no saved work."""
        snapshot = None
        mask = None
        if self.state_path.exists():
            try:
                snapshot = json.loads(self.state_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as err:
                raise AnnotationError(
                    f"The annotation snapshot {self.state_path} is unreadable ({err})."
                ) from err
            if snapshot.get("format") != FORMAT:
                raise AnnotationError(f"{self.state_path} is not a napari-breastmri annotation store.")
            if snapshot.get("study_uid") != self.study_uid:
                raise AnnotationError(
                    f"{self.state_path} belongs to study {snapshot.get('study_uid')}, not this one."
                )
            if snapshot.get("mask_file"):
                mask = _read_mask(self.folder / snapshot["mask_file"])
        seq = int((snapshot or {}).get("seq", 0))
        journal = [e for e in _read_journal(self.journal_path) if int(e.get("seq", 0)) > seq]
        if snapshot is None and not journal:
            return None
        saved_at = journal[-1]["when"] if journal else str(snapshot.get("saved_at", ""))  # type: ignore[union-attr]
        return SavedState(self.folder, snapshot, mask, journal, saved_at)

    def clear(self) -> None:
        """Forget this study's saved work (after the user declines to restore it)."""
        self.close()
        for path in (self.state_path, self.journal_path, *self.folder.glob("mask-*.npz")):
            path.unlink(missing_ok=True)


def _read_mask(path: Path) -> np.ndarray:
    try:
        with np.load(path) as z:
            shape = tuple(int(s) for s in z["shape"])
            mask = np.zeros(shape, dtype=np.dtype(str(z["dtype"])))
            mask.reshape(-1)[z["idx"]] = z["val"]
            return mask
    except (OSError, KeyError, ValueError) as err:
        raise AnnotationError(f"The saved mask {path} is unreadable ({err}).") from err


def _read_journal(path: Path) -> list[dict[str, Any]]:
    """Journal entries in order; a torn or corrupt line ends the journal (it was the last write)."""
    if not path.exists():
        return []
    entries = []
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                entries.append(json.loads(raw))
            except json.JSONDecodeError:
                break
    return entries
