"""An editable set of lesions and a label mask for one study, with provenance, undo and autosave.

Why headless: the viewer's Shapes and Labels layers call these methods, the training code reads
the result, and all of it is tested without a display. Every change is an *edit* that records
who made it ("model:NAME@VER" or "human"), what it did and when, goes on the undo stack, and is
journaled to the store at once (see :mod:`.store`); a background thread writes a snapshot every
few seconds when something changed, and every accept writes one straight away.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AnnotationError
from ..types import Findings, Lesion, Study
from .store import AnnotationStore, decode_array, default_root, encode_array

HUMAN = "human"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _lesion_dict(lesion: Lesion) -> dict[str, Any]:
    d = dataclasses.asdict(lesion)
    d["bbox"] = [int(v) for v in d["bbox"]]
    return d


def _lesion_from(d: dict[str, Any]) -> Lesion:
    return Lesion(**copy.deepcopy(d))


@dataclass
class _Change:
    """One reversible state change: a lesion replaced/added/removed, or mask voxels rewritten."""

    kind: str  # "lesion" | "mask"
    lesion_id: int | None = None
    before: dict[str, Any] | None = None  # lesion dict, None = absent
    after: dict[str, Any] | None = None
    idx: np.ndarray | None = None  # flat voxel indices (mask changes)
    old: np.ndarray | None = None
    new: np.ndarray | None = None


@dataclass
class Edit:
    """A user-level action: one or more changes, with its provenance."""

    who: str
    what: str
    when: str
    changes: list[_Change] = field(default_factory=list)
    lesion_id: int | None = None


class AnnotationSession:
    """Editable lesions (boxes, statuses) and a label mask bound to one study grid.

    ``store`` is an :class:`AnnotationStore`, a root folder, or None (in memory only).
    ``autosave_s`` > 0 starts a daemon thread that snapshots when dirty; call :meth:`close`
    when done (it saves). Methods are thread-safe.
    """

    def __init__(
        self,
        study_uid: str,
        shape: Sequence[int],
        affine: np.ndarray,
        *,
        store: AnnotationStore | str | Any | None = None,
        user: str = HUMAN,
        autosave_s: float = 3.0,
        lesions: Sequence[Lesion] = (),
        label_mask: np.ndarray | None = None,
        _restoring: bool = False,
    ) -> None:
        self.study_uid = study_uid
        self.shape = tuple(int(s) for s in shape)
        self.affine = np.asarray(affine, dtype=float)
        if self.affine.shape != (4, 4) or len(self.shape) != 3:
            raise AnnotationError("An annotation session needs a (z, y, x) shape and a 4x4 affine.")
        self.user = user
        self._lock = threading.RLock()
        self._lesions: dict[int, Lesion] = {les.id: copy.deepcopy(les) for les in lesions}
        self._mask = np.zeros(self.shape, np.int16) if label_mask is None else np.array(label_mask, np.int16)
        if self._mask.shape != self.shape:
            raise AnnotationError(f"Label mask shape {self._mask.shape} is not the study's {self.shape}.")
        self.history: list[dict[str, Any]] = []
        self._undo: list[Edit] = []
        self._redo: list[Edit] = []
        self._seq = 0
        self._saved_seq = 0
        self.last_saved: float | None = None
        #: the last autosave failure (the viewer shows it), None when saving works
        self.last_error: str | None = None
        self.on_change: list[Callable[[Edit], None]] = []
        if store is not None and not isinstance(store, AnnotationStore):
            store = AnnotationStore(store, study_uid)
        self.store: AnnotationStore | None = store
        self._save_lock = threading.Lock()
        self._written_seq = -1
        if store is not None and not _restoring:
            if store.load() is not None:
                raise AnnotationError(
                    f"This study already has saved annotations in {store.folder}; restore them "
                    "(AnnotationSession.restore) or discard them (store.clear()) first."
                )
            self.save_now()  # the grid and the starting state, so a journal can always be replayed
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.autosave_s = autosave_s
        if self.store is not None and autosave_s > 0:
            self._thread = threading.Thread(
                target=self._autosave_loop, name="breastmri-autosave", daemon=True
            )
            self._thread.start()

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def for_study(cls, study: Study, findings: Findings | None = None, **kwargs: Any) -> AnnotationSession:
        """A session on ``study``'s grid, seeded with model findings (their lesions stay "proposed").

        The store defaults to a folder beside ``case_path`` (or ``study.source`` when it is a path),
        else the user folder; pass ``store=None`` for a session that is not saved.
        """
        case_path = kwargs.pop("case_path", None)
        if case_path is None and study.source and Path(study.source).exists():
            case_path = study.source
        if "store" not in kwargs:
            kwargs["store"] = AnnotationStore(default_root(case_path), study.study_uid or "unknown")
        session = cls(study.study_uid or "unknown", study.shape, study.affine, **kwargs)
        if findings is not None:
            session.load_findings(findings)
        return session

    @classmethod
    def restore(
        cls, store: AnnotationStore, shape: Sequence[int], affine: np.ndarray, **kwargs: Any
    ) -> AnnotationSession | None:
        """The session as last saved (snapshot + journal replayed), or None if nothing was saved."""
        saved = store.load()
        if saved is None:
            return None
        snap = saved.snapshot or {}
        if snap:
            if tuple(snap["shape"]) != tuple(int(s) for s in shape):
                raise AnnotationError(
                    f"Saved annotations are on a {tuple(snap['shape'])} grid but the study is {tuple(shape)}; "
                    "they belong to another series."
                )
            if not np.allclose(np.asarray(snap["affine"]), np.asarray(affine), atol=1e-3):
                raise AnnotationError(
                    "Saved annotations were made on a different geometry (affine) of this study."
                )
        session = cls(
            store.study_uid,
            shape,
            affine,
            store=store,
            lesions=[_lesion_from(d) for d in snap.get("lesions", [])],
            label_mask=saved.mask,
            _restoring=True,
            **kwargs,
        )
        with session._lock:
            session.history = list(snap.get("history", []))
            session._seq = int(snap.get("seq", 0))
            for entry in saved.journal:
                session._replay(entry)
            session._saved_seq = int(snap.get("seq", 0))
        return session

    # ---- state ---------------------------------------------------------------------------
    @property
    def lesions(self) -> list[Lesion]:
        """Copies of the current lesions, in id order."""
        with self._lock:
            return [copy.deepcopy(self._lesions[i]) for i in sorted(self._lesions)]

    @property
    def label_mask(self) -> np.ndarray:
        """A read-only view of the label mask (edit it through :meth:`paint` / :meth:`set_mask`)."""
        view = self._mask.view()
        view.flags.writeable = False
        return view

    def lesion(self, lesion_id: int) -> Lesion:
        with self._lock:
            if lesion_id not in self._lesions:
                raise AnnotationError(f"There is no lesion {lesion_id} in this session.")
            return copy.deepcopy(self._lesions[lesion_id])

    @property
    def dirty(self) -> bool:
        return self._seq != self._saved_seq

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    # ---- edits ---------------------------------------------------------------------------
    def load_findings(self, findings: Findings, who: str | None = None) -> list[int]:
        """Add a model's lesions as "proposed" (ids renumbered if taken) and its mask."""
        if tuple(findings.shape) != self.shape:
            raise AnnotationError(
                f"Findings are on a {tuple(findings.shape)} grid, the session on {self.shape}."
            )
        ids = []
        with self._lock:
            edit = self._begin(who or _model_name(findings), f"load {len(findings.lesions)} findings")
            next_id = max(self._lesions, default=0) + 1
            for les in findings.lesions:
                new = copy.deepcopy(les)
                if new.id in self._lesions or new.id in ids:
                    new.id = next_id
                next_id = max(next_id, new.id + 1)
                new.provenance = [*new.provenance, self._prov(edit.who, "proposed", edit.when)]
                self._change_lesion(edit, new.id, new)
                ids.append(new.id)
            if findings.label_mask is not None:
                self._change_mask(edit, np.asarray(findings.label_mask, np.int16))
            self._commit(edit)
        return ids

    def add_box(
        self, bbox: Sequence[int], *, who: str | None = None, score: float = 1.0, **fields: Any
    ) -> Lesion:
        """A new lesion drawn by the annotator (status "added")."""
        box = self._check_box(bbox)
        with self._lock:
            who = who or self.user
            edit = self._begin(who, f"add box {box}")
            lid = max(self._lesions, default=0) + 1
            les = Lesion(id=lid, bbox=box, score=score, status="added", source=who, **fields)
            les.provenance = [self._prov(who, edit.what, edit.when)]
            self._change_lesion(edit, lid, les)
            edit.lesion_id = lid
            self._commit(edit)
            return copy.deepcopy(les)

    def set_box(self, lesion_id: int, bbox: Sequence[int], *, who: str | None = None) -> Lesion:
        """Move or resize a lesion's box.

        Its curve type is cleared: it was measured on the old region, and the pipeline measures it
        again when it is needed (the index lesion is chosen by it)."""
        box = self._check_box(bbox)
        return self._update(lesion_id, who, lambda les: f"box {les.bbox} -> {box}", bbox=box, curve_type=None)

    def accept(self, lesion_id: int, *, who: str | None = None) -> Lesion:
        """Accept a detection; writes a snapshot at once (work a reader confirmed is never at risk)."""
        les = self._update(lesion_id, who, lambda _: "accept", status="accepted")
        self.save_now()
        return les

    def reject(self, lesion_id: int, *, who: str | None = None) -> Lesion:
        return self._update(lesion_id, who, lambda _: "reject", status="rejected")

    def set_fields(self, lesion_id: int, *, who: str | None = None, **fields: Any) -> Lesion:
        """Change other lesion fields (curve_type, extra, label ...), recorded like any edit."""
        allowed = {f.name for f in dataclasses.fields(Lesion)} - {"id", "provenance"}
        bad = set(fields) - allowed
        if bad:
            raise AnnotationError(f"Lesions have no field(s) {sorted(bad)}.")
        return self._update(lesion_id, who, lambda _: f"set {sorted(fields)}", **fields)

    def delete(self, lesion_id: int, *, who: str | None = None) -> None:
        """Remove a lesion (its mask voxels stay; erase them with :meth:`paint` if wanted)."""
        with self._lock:
            self.lesion(lesion_id)
            edit = self._begin(who or self.user, "delete")
            edit.lesion_id = lesion_id
            self._change_lesion(edit, lesion_id, None)
            self._commit(edit)

    def paint(self, region: Any, value: int, *, who: str | None = None) -> int:
        """Set mask voxels of ``region`` to ``value`` (0 erases); returns how many changed.

        ``region``: a boolean mask of the study shape, a box [z0, y0, x0, z1, y1, x1], or a tuple of
        (z, y, x) index arrays (what napari's Labels paint event carries).
        """
        flat_idx = self._region_indices(region)
        new = np.full(flat_idx.size, value, np.int16)
        with self._lock:
            edit = self._begin(who or self.user, f"paint label {value}" if value else "erase")
            n = self._change_mask_at(edit, flat_idx, new)
            if n == 0:
                return 0
            edit.what += f" ({n} voxels)"
            edit.lesion_id = self._lesion_for_label(value)
            self._commit(edit)
            return n

    def set_voxels(self, indices: tuple[Any, Any, Any], values: Any, *, who: str | None = None) -> int:
        """Set voxels (z, y, x index arrays) to per-voxel ``values``: napari Labels' paint-event atoms.

        One call is one undoable edit (a brush stroke); returns how many voxels changed.
        """
        coords = [np.asarray(c, dtype=np.int64).ravel() for c in indices]
        vals = np.broadcast_to(np.asarray(values, dtype=np.int16).ravel(), coords[0].shape)
        inside = np.all([(c >= 0) & (c < n) for c, n in zip(coords, self.shape, strict=True)], axis=0)
        flat = np.ravel_multi_index([c[inside] for c in coords], self.shape)
        flat, last = np.unique(flat[::-1], return_index=True)  # a voxel painted twice keeps its last value
        new = vals[inside][::-1][last]
        with self._lock:
            edit = self._begin(who or self.user, "paint stroke")
            n = self._change_mask_at(edit, flat, new)
            if n:
                edit.what += f" ({n} voxels)"
                labels = np.unique(new[new > 0])
                edit.lesion_id = self._lesion_for_label(int(labels[0])) if labels.size == 1 else None
                self._commit(edit)
            return n

    def set_mask(self, mask: np.ndarray, *, who: str | None = None, what: str = "replace mask") -> int:
        """Replace the label mask (e.g. after a napari Labels stroke); only changed voxels are kept."""
        mask = np.asarray(mask)
        if mask.shape != self.shape:
            raise AnnotationError(f"Mask shape {mask.shape} is not the study's {self.shape}.")
        with self._lock:
            edit = self._begin(who or self.user, what)
            n = self._change_mask(edit, mask.astype(np.int16, copy=False))
            if n:
                edit.what += f" ({n} voxels)"
                self._commit(edit)
            return n

    def undo(self) -> Edit | None:
        """Revert the last edit; returns it (None when there is nothing to undo)."""
        with self._lock:
            if not self._undo:
                return None
            edit = self._undo.pop()
            self._apply(edit, reverse=True, what=f"undo {edit.what}")
            self._redo.append(edit)
            return edit

    def redo(self) -> Edit | None:
        with self._lock:
            if not self._redo:
                return None
            edit = self._redo.pop()
            self._apply(edit, reverse=False, what=f"redo {edit.what}")
            self._undo.append(edit)
            return edit

    # ---- export --------------------------------------------------------------------------
    def to_findings(self, *, include_rejected: bool = False) -> Findings:
        """The corrected findings (for export and fine-tuning); rejected lesions left out by default."""
        with self._lock:
            lesions = [les for les in self.lesions if include_rejected or les.status != "rejected"]
            mask = self._mask.copy()
            if not include_rejected:
                for les in self._lesions.values():
                    if les.status == "rejected" and les.label:
                        mask[mask == les.label] = 0
            return Findings(
                shape=self.shape,
                affine=self.affine.copy(),
                lesions=lesions,
                label_mask=mask,
                study_uid=self.study_uid,
                warnings=[f"annotations: {len(self.history)} edits, last {self.history[-1]['when']}"]
                if self.history
                else [],
            )

    # ---- persistence ---------------------------------------------------------------------
    def save_now(self) -> bool:
        """Write a snapshot now if anything changed since the last one; returns whether it wrote.

        Serialised by a lock so that an older snapshot can never overwrite a newer one (the
        autosave thread and an accept on the UI thread may both ask at once).
        """
        if self.store is None:
            return False
        with self._save_lock:
            with self._lock:
                if self._seq <= self._written_seq or (not self.dirty and self.store.state_path.exists()):
                    return False
                state = {
                    "seq": self._seq,
                    "saved_at": now_iso(),
                    "shape": list(self.shape),
                    "affine": self.affine.tolist(),
                    "lesions": [_lesion_dict(les) for les in self._lesions.values()],
                    "history": list(self.history),
                }
                mask = self._mask.copy() if self._mask.any() else None
                seq = self._seq
            self.store.write_snapshot(state, mask)  # outside the edit lock: the UI keeps editing
            with self._lock:
                self._written_seq = seq
                self._saved_seq = max(self._saved_seq, seq)
                self.last_saved = time.time()
                self.last_error = None
        return True

    def request_save(self) -> None:
        """Ask the autosave thread to save soon (never blocks the caller, e.g. the UI thread)."""
        self._wake.set()

    def close(self) -> None:
        """Stop autosaving and write a final snapshot."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.store is not None:
            self.save_now()
            self.store.close()

    def __enter__(self) -> AnnotationSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _autosave_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.autosave_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                if self.dirty:
                    self.save_now()
            except OSError as err:  # disk full, folder gone: the journal still has the edits
                with self._lock:
                    self.last_error = f"autosave failed: {err}"

    # ---- internals -----------------------------------------------------------------------
    def _prov(self, who: str, what: str, when: str) -> dict[str, Any]:
        return {"who": who, "what": what, "when": when}

    def _begin(self, who: str, what: str) -> Edit:
        return Edit(who=who, what=what, when=now_iso())

    def _check_box(self, bbox: Sequence[int]) -> list[int]:
        box = [int(round(float(v))) for v in bbox]
        if len(box) != 6:
            raise AnnotationError(f"A box is [z0, y0, x0, z1, y1, x1]; got {list(bbox)}.")
        lo, hi = np.array(box[:3]), np.array(box[3:])
        if np.any(hi <= lo) or np.any(lo < 0) or np.any(hi > np.array(self.shape)):
            raise AnnotationError(f"Box {box} is empty or leaves the study grid {self.shape}.")
        return box

    def _update(
        self, lesion_id: int, who: str | None, what: Callable[[Lesion], str], **fields: Any
    ) -> Lesion:
        with self._lock:
            old = self.lesion(lesion_id)
            edit = self._begin(who or self.user, what(old))
            edit.lesion_id = lesion_id
            new = dataclasses.replace(old, **copy.deepcopy(fields))
            new.provenance = [*old.provenance, self._prov(edit.who, edit.what, edit.when)]
            self._change_lesion(edit, lesion_id, new)
            self._commit(edit)
            return copy.deepcopy(new)

    def _change_lesion(self, edit: Edit, lesion_id: int, new: Lesion | None) -> None:
        before = self._lesions.get(lesion_id)
        edit.changes.append(
            _Change(
                "lesion",
                lesion_id,
                before=_lesion_dict(before) if before is not None else None,
                after=_lesion_dict(new) if new is not None else None,
            )
        )
        self._set_lesion(lesion_id, edit.changes[-1].after)

    def _set_lesion(self, lesion_id: int, d: dict[str, Any] | None) -> None:
        if d is None:
            self._lesions.pop(lesion_id, None)
        else:
            self._lesions[lesion_id] = _lesion_from(d)

    def _change_mask(self, edit: Edit, mask: np.ndarray) -> int:
        idx = np.flatnonzero(self._mask.reshape(-1) != mask.reshape(-1))
        return self._change_mask_at(edit, idx, mask.reshape(-1)[idx])

    def _change_mask_at(self, edit: Edit, idx: np.ndarray, new: np.ndarray) -> int:
        flat = self._mask.reshape(-1)
        old = flat[idx]
        differs = old != new
        idx, old, new = idx[differs], old[differs], new[differs]
        if idx.size:
            flat[idx] = new
            edit.changes.append(_Change("mask", idx=idx, old=old, new=new.astype(np.int16)))
        return int(idx.size)

    def _region_indices(self, region: Any) -> np.ndarray:
        if isinstance(region, tuple) and len(region) == 3 and not isinstance(region[0], (int, np.integer)):
            coords = [np.asarray(c, dtype=np.int64).ravel() for c in region]
            inside = np.all([(c >= 0) & (c < n) for c, n in zip(coords, self.shape, strict=True)], axis=0)
            return np.unique(np.ravel_multi_index([c[inside] for c in coords], self.shape))
        arr = np.asarray(region)
        if arr.shape == self.shape:
            return np.flatnonzero(arr.astype(bool))
        if arr.ndim == 1 and arr.size == 6:
            z0, y0, x0, z1, y1, x1 = self._check_box(arr)
            grid = np.zeros(self.shape, bool)
            grid[z0:z1, y0:y1, x0:x1] = True
            return np.flatnonzero(grid)
        raise AnnotationError(
            "A paint region is a boolean mask of the study shape, a box [z0, y0, x0, z1, y1, x1] or (z, y, x) indices."
        )

    def _lesion_for_label(self, value: int) -> int | None:
        for les in self._lesions.values():
            if value and les.label == value:
                return les.id
        return None

    def _commit(self, edit: Edit, *, undoable: bool = True) -> None:
        """Record the edit: history, undo stack, journal line, listeners."""
        if not edit.changes:
            return
        if undoable:
            self._undo.append(edit)
            self._redo.clear()
        self._record(edit.who, edit.what, edit.when, edit.lesion_id, edit.changes, reverse=False)

    def _record(
        self, who: str, what: str, when: str, lesion_id: int | None, changes: list[_Change], reverse: bool
    ) -> None:
        self._seq += 1
        event = {"who": who, "what": what, "when": when, "lesion_id": lesion_id}
        self.history.append(event)
        if self.store is not None:
            self.store.append({"seq": self._seq, **event, "changes": [_encode(c, reverse) for c in changes]})
        for listener in list(self.on_change):
            listener(Edit(who, what, when, changes, lesion_id))

    def _apply(self, edit: Edit, *, reverse: bool, what: str) -> None:
        changes = list(reversed(edit.changes)) if reverse else edit.changes
        when = now_iso()
        for ch in changes:
            if ch.kind == "lesion":
                d = ch.before if reverse else ch.after
                self._set_lesion(int(ch.lesion_id), d)  # type: ignore[arg-type]
            else:
                self._mask.reshape(-1)[ch.idx] = ch.old if reverse else ch.new
        self._record(self.user, what, when, edit.lesion_id, changes, reverse=reverse)

    def _replay(self, entry: dict[str, Any]) -> None:
        """Re-apply one journal entry (restore); it is already on disk, so nothing is re-journaled."""
        for ch in entry.get("changes", []):
            if ch["kind"] == "lesion":
                self._set_lesion(int(ch["lesion_id"]), ch["after"])
            else:
                self._mask.reshape(-1)[decode_array(ch["idx"])] = decode_array(ch["new"])
        self._seq = int(entry["seq"])
        self.history.append({k: entry.get(k) for k in ("who", "what", "when", "lesion_id")})


def _encode(ch: _Change, reverse: bool) -> dict[str, Any]:
    """The journal form of a change: the state it leads to (so replay needs no undo stack)."""
    if ch.kind == "lesion":
        return {"kind": "lesion", "lesion_id": ch.lesion_id, "after": ch.before if reverse else ch.after}
    new = ch.old if reverse else ch.new
    return {"kind": "mask", "idx": encode_array(ch.idx), "new": encode_array(new)}  # type: ignore[arg-type]


def _model_name(findings: Findings) -> str:
    if findings.models:
        m = findings.models[0]
        return f"model:{m.name}@{m.version}"
    return "model:unknown"
