"""Annotation session: edits with provenance, undo/redo, autosave, restore, export."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from napari_breastmri.annotations import AnnotationSession, AnnotationStore, default_root
from napari_breastmri.errors import AnnotationError
from napari_breastmri.types import Findings, Lesion, ModelRun

SHAPE = (10, 32, 32)
AFFINE = np.diag([2.0, 0.8, 0.8, 1.0])
UID = "1.2.826.0.1.3680043.8.498.12345"


def _findings() -> Findings:
    mask = np.zeros(SHAPE, np.int16)
    mask[2:5, 4:10, 4:10] = 1
    mask[6:8, 20:26, 20:26] = 2
    return Findings(
        shape=SHAPE,
        affine=AFFINE,
        lesions=[
            Lesion(id=1, bbox=[2, 4, 4, 5, 10, 10], score=0.9, label=1, source="model:det@1.0"),
            Lesion(id=2, bbox=[6, 20, 20, 8, 26, 26], score=0.4, label=2, source="model:det@1.0"),
        ],
        label_mask=mask,
        models=[ModelRun(name="det", version="1.0", task="detect", target="lesion", device="cpu")],
        study_uid=UID,
    )


@pytest.fixture
def store(tmp_path: Path) -> AnnotationStore:
    return AnnotationStore(tmp_path / "ann", UID)


def test_edits_record_provenance_and_undo_redo() -> None:
    s = AnnotationSession(UID, SHAPE, AFFINE, store=None)
    assert s.load_findings(_findings()) == [1, 2]
    assert s.lesion(1).status == "proposed"
    assert s.lesion(1).provenance[-1]["who"] == "model:det@1.0"
    s.accept(1)
    s.reject(2)
    added = s.add_box([1, 1, 1, 3, 5, 5], curve_type="washout")
    assert added.status == "added" and added.id == 3
    s.set_box(3, [1, 1, 1, 4, 6, 6])
    assert s.lesion(3).curve_type is None  # measured on the old box: measured again when needed
    prov = s.lesion(3).provenance
    assert [p["who"] for p in prov] == ["human", "human"] and "->" in prov[-1]["what"]
    assert all({"who", "what", "when"} <= set(p) for p in prov)
    assert s.lesion(1).status == "accepted" and s.lesion(2).status == "rejected"
    # undo the move, the add, the reject
    assert s.undo().what.startswith("box")
    assert s.lesion(3).bbox == [1, 1, 1, 3, 5, 5] and s.lesion(3).curve_type == "washout"
    s.undo()
    with pytest.raises(AnnotationError):
        s.lesion(3)
    s.undo()
    assert s.lesion(2).status == "proposed"
    s.redo()
    assert s.lesion(2).status == "rejected"
    # a new edit clears the redo stack
    s.delete(1)
    assert not s.can_redo and [les.id for les in s.lesions] == [2]
    s.undo()
    assert s.lesion(1).status == "accepted"
    assert [h["what"] for h in s.history][-2:] == ["delete", "undo delete"]


def test_paint_erase_set_mask_undo() -> None:
    s = AnnotationSession(UID, SHAPE, AFFINE, store=None)
    before = s.label_mask.copy()
    assert s.paint([0, 0, 0, 2, 3, 3], 4) == 18
    assert s.paint([0, 0, 0, 2, 3, 3], 4) == 0  # no change, no edit
    idx = (np.array([0, 9, 99]), np.array([0, 31, 0]), np.array([0, 31, 0]))  # one outside ignored
    assert s.paint(idx, 0) == 1
    assert s.label_mask[0, 0, 0] == 0 and s.label_mask[1, 2, 2] == 4
    with pytest.raises(ValueError):
        s.label_mask[0, 0, 0] = 3  # read-only view: edits go through the session
    new = s.label_mask.copy()
    new[5] = 7
    assert s.set_mask(new) == SHAPE[1] * SHAPE[2]
    s.undo()
    s.undo()
    s.undo()
    np.testing.assert_array_equal(s.label_mask, before)
    with pytest.raises(AnnotationError):
        s.paint(np.ones((2, 2)), 1)
    with pytest.raises(AnnotationError):
        s.add_box([0, 0, 0, 0, 5, 5])


def test_set_voxels_like_a_napari_stroke() -> None:
    s = AnnotationSession(UID, SHAPE, AFFINE, store=None)
    s.load_findings(_findings())
    z = np.array([0, 0, 0, 50])
    y = np.array([1, 1, 2, 0])
    x = np.array([1, 1, 2, 0])
    assert s.set_voxels((z, y, x), [3, 5, 5, 5]) == 2  # repeated voxel keeps its last value; outside ignored
    assert s.label_mask[0, 1, 1] == 5 and s.label_mask[0, 2, 2] == 5
    assert s.history[-1]["what"] == "paint stroke (2 voxels)"
    s.undo()
    assert s.label_mask[0, 1, 1] == 0


def test_to_findings_drops_rejected() -> None:
    s = AnnotationSession(UID, SHAPE, AFFINE, store=None)
    s.load_findings(_findings())
    s.accept(1)
    s.reject(2)
    s.add_box([0, 0, 0, 2, 2, 2])
    f = s.to_findings()
    assert [les.id for les in f.lesions] == [1, 3] and f.study_uid == UID
    assert not np.any(f.label_mask == 2) and np.any(f.label_mask == 1)
    assert f.lesion(1).provenance[-1]["what"] == "accept"
    full = s.to_findings(include_rejected=True)
    assert len(full.lesions) == 3 and np.any(full.label_mask == 2)


def test_restore_from_snapshot_and_journal(store: AnnotationStore) -> None:
    s = AnnotationSession(UID, SHAPE, AFFINE, store=store, autosave_s=0)
    s.load_findings(_findings())
    s.accept(1)  # writes a snapshot
    assert json.loads(store.state_path.read_text())["seq"] == 2
    s.add_box([1, 1, 1, 3, 5, 5])  # journal only
    s.paint([0, 0, 0, 1, 2, 2], 9)
    s.set_box(3, [1, 1, 1, 4, 6, 6])
    s.undo()
    expected = s.to_findings(include_rejected=True)
    store.close()  # as if the process ended without a final snapshot
    again = AnnotationSession.restore(AnnotationStore(store.folder.parent, UID), SHAPE, AFFINE, autosave_s=0)
    assert again is not None
    saved = AnnotationStore(store.folder.parent, UID).load()
    assert saved is not None and saved.n_edits == 6 and saved.describe().startswith("6 edits")
    got = again.to_findings(include_rejected=True)
    assert [les.bbox for les in got.lesions] == [les.bbox for les in expected.lesions]
    assert [les.status for les in got.lesions] == ["accepted", "proposed", "added"]
    np.testing.assert_array_equal(got.label_mask, expected.label_mask)
    assert [h["what"] for h in again.history] == [h["what"] for h in s.history]
    # a torn last line (killed mid-write) is ignored, not fatal
    with open(store.journal_path, "ab") as fh:
        fh.write(b'{"seq": 99, "chan')
    assert AnnotationSession.restore(AnnotationStore(store.folder.parent, UID), SHAPE, AFFINE, autosave_s=0)
    # saved work is never silently overwritten by a fresh session
    with pytest.raises(AnnotationError, match="restore"):
        AnnotationSession(UID, SHAPE, AFFINE, store=AnnotationStore(store.folder.parent, UID))
    with pytest.raises(AnnotationError, match="grid"):
        AnnotationSession.restore(AnnotationStore(store.folder.parent, UID), (1, 2, 3), AFFINE)


def test_background_autosave_and_compaction(store: AnnotationStore) -> None:
    s = AnnotationSession(UID, SHAPE, AFFINE, store=store, autosave_s=0.2)
    s.add_box([1, 1, 1, 3, 5, 5])
    s.paint([1, 1, 1, 3, 5, 5], 1)
    deadline = time.time() + 5
    while s.dirty and time.time() < deadline:
        time.sleep(0.05)
    assert not s.dirty and json.loads(store.state_path.read_text())["seq"] == 2
    assert store.journal_path.read_text() == ""  # compacted: the snapshot covers it
    s.add_box([5, 5, 5, 6, 6, 6])
    s.request_save()
    deadline = time.time() + 5
    while s.dirty and time.time() < deadline:
        time.sleep(0.05)
    assert not s.dirty
    s.close()
    restored = AnnotationSession.restore(store, SHAPE, AFFINE, autosave_s=0)
    assert restored is not None and len(restored.lesions) == 2 and restored.label_mask.sum() == 2 * 4 * 4


def test_for_study_stores_beside_the_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_breastmri.kinetics.synthetic import synthetic_study

    monkeypatch.delenv("BREASTMRI_ANNOTATIONS_DIR", raising=False)
    study, _ = synthetic_study((4, 16, 16))
    case = tmp_path / "case"
    case.mkdir()
    study.source = str(case)
    f = Findings(
        shape=study.shape, affine=study.affine, lesions=[Lesion(id=7, bbox=[0, 0, 0, 2, 4, 4], score=0.8)]
    )
    s = AnnotationSession.for_study(study, f, autosave_s=0)
    assert s.store is not None and s.store.folder.parent == case / ".breastmri-annotations"
    assert [les.id for les in s.lesions] == [7] and s.lesion(7).provenance[0]["who"] == "model:unknown"
    s.accept(7)
    s.close()
    root = case / ".breastmri-annotations"
    back = AnnotationSession.restore(AnnotationStore(root, study.study_uid), study.shape, study.affine)
    assert back is not None and back.lesion(7).status == "accepted"
    back.close()


def test_store_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BREASTMRI_ANNOTATIONS_DIR", raising=False)
    case = tmp_path / "case"
    case.mkdir()
    assert default_root(case) == case / ".breastmri-annotations"
    assert default_root(case / "x.nii.gz") == case / ".breastmri-annotations"
    assert "napari-breastmri" in str(default_root(None))
    monkeypatch.setenv("BREASTMRI_ANNOTATIONS_DIR", str(tmp_path / "env"))
    assert default_root(case) == tmp_path / "env"
    with pytest.raises(AnnotationError):
        AnnotationStore(tmp_path, "")
    other = AnnotationStore(tmp_path / "s", "other-uid")
    assert other.load() is None
