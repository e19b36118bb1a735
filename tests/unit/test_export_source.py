"""findings.json records where its study came from (``study_source``) and exports reload it.

Round trips for each kind of source (DICOM folder, NIfTI files, in-memory phantom, PACS), the
read of older findings.json files (schema 1.0: no record; a bare path string), and the typed
error, with what to do, when the study has moved, changed or cannot be reached.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_breastmri.errors import ExportError, PACSError, StudySourceUnavailable
from napari_breastmri.io import export, load_study
from napari_breastmri.io.export_cli import load_findings_dir
from napari_breastmri.io.findings_json import (
    SCHEMA_VERSION,
    findings_to_dict,
    read_findings_json,
    read_study_source,
    study_source_record,
    write_findings_json,
)
from tests.unit.test_export_formats import make_findings, make_study

SMALL = (12, 40, 40)


def dicom_case(folder: Path, seed: str = "source-test"):
    """The oblique test study written as DICOM and loaded back the way a user would."""
    from napari_breastmri.io.dicom_write import write_study_dicom

    write_study_dicom(make_study(), folder, layout="series-per-phase", uid_root_seed=seed)
    return load_study(folder)


def test_dicom_source_round_trip(tmp_path: Path) -> None:
    study = dicom_case(tmp_path / "data" / "case1")
    findings = make_findings(study)
    findings.study_uid = study.study_uid
    path = write_findings_json(findings, tmp_path / "results" / "findings.json", study=study)
    assert findings.study_source == {}  # the caller's findings are not modified
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == SCHEMA_VERSION == "1.1"
    rec = doc["study_source"]
    assert rec["version"] == 1 and rec["kind"] == "dicom"
    assert rec["paths"] == [str((tmp_path / "data" / "case1").absolute())]
    assert rec["relative_paths"] == [str(Path("..") / "data" / "case1")]
    assert rec["study_uid"] == study.study_uid and rec["series_uids"] == study.series_uids
    assert len(rec["data_sums"]) == study.n_phases == 3

    back = read_findings_json(path)
    assert back.study_source == rec
    again = export.load_recorded_study(back.study_source, path.parent, findings=back)
    assert again.study_uid == study.study_uid and again.series_uids == study.series_uids
    np.testing.assert_array_equal(again.data, study.data)
    # reading and writing again keeps the record (relative paths follow the new folder)
    copy = write_findings_json(back, tmp_path / "elsewhere" / "deeper" / "findings.json")
    moved_rec = json.loads(copy.read_text())["study_source"]
    assert moved_rec["paths"] == rec["paths"]
    assert moved_rec["relative_paths"] == [str(Path("..") / ".." / "data" / "case1")]


def test_project_moved_as_a_whole_resolves_relative_paths(tmp_path: Path) -> None:
    project = tmp_path / "project"
    study = dicom_case(project / "data" / "case1")
    findings = make_findings(study)
    write_findings_json(findings, project / "results" / "findings.json", study=study)
    shutil.move(project, tmp_path / "renamed")
    moved = tmp_path / "renamed" / "results"
    found, _ = load_findings_dir(moved)
    again = export.study_for_findings_dir(moved, found)
    assert again.study_uid == study.study_uid
    assert again.source.endswith(str(Path("renamed") / "results" / ".." / "data" / "case1"))


def test_moved_study_is_a_typed_error_that_says_what_to_do(tmp_path: Path) -> None:
    study = dicom_case(tmp_path / "case1")
    findings = make_findings(study)
    write_findings_json(findings, tmp_path / "out" / "findings.json", study=study)
    (tmp_path / "case1").rename(tmp_path / "gone")
    found, _ = load_findings_dir(tmp_path / "out")
    with pytest.raises(StudySourceUnavailable) as err:
        export.study_for_findings_dir(tmp_path / "out", found)
    text = str(err.value)
    assert str(tmp_path / "case1") in text and "no longer at" in text and "--study PATH" in text
    assert str(tmp_path / "out" / "findings.json") in text
    assert isinstance(err.value, ExportError)  # callers catching export errors keep working


def test_another_study_at_the_recorded_path_is_refused(tmp_path: Path) -> None:
    study = dicom_case(tmp_path / "case1", seed="first")
    findings = make_findings(study)
    findings.study_uid = study.study_uid
    write_findings_json(findings, tmp_path / "out" / "findings.json", study=study)
    shutil.rmtree(tmp_path / "case1")
    dicom_case(tmp_path / "case1", seed="second")  # same grid, other UIDs
    found, _ = load_findings_dir(tmp_path / "out")
    with pytest.raises(
        StudySourceUnavailable, match="not the one these findings were made on.*StudyInstanceUID"
    ):
        export.study_for_findings_dir(tmp_path / "out", found)


def test_nifti_source_round_trip(tmp_path: Path) -> None:
    from napari_breastmri.io.nifti import write_study_nifti

    files = write_study_nifti(make_study(), tmp_path / "nifti", "c7")
    study = load_study(files)
    rec = study_source_record(study)
    assert rec["kind"] == "nifti" and rec["paths"] == [str(p.absolute()) for p in files]
    findings = make_findings(study)
    write_findings_json(findings, tmp_path / "out" / "findings.json", study=study)
    found, _ = load_findings_dir(tmp_path / "out")
    again = export.study_for_findings_dir(tmp_path / "out", found)
    np.testing.assert_array_equal(again.data, study.data)


def test_phantom_recipe_round_trip_and_a_different_phantom(tmp_path: Path) -> None:
    from napari_breastmri.phantom import generate_case

    case = generate_case(3, shape=SMALL)
    findings = export.findings_from_truth(case.study, case.truth, case.label_mask)
    rec = findings.study_source
    assert rec["kind"] == "phantom" and rec["demo"] is True and rec["paths"] == []
    assert rec["phantom"] == {
        "seed": 3,
        "exam": "baseline",
        "protocol": "conventional",
        "orientation": "axial",
        "shape": list(SMALL),
        "spacing_mm": [1.5, 0.8, 0.8],
        "case_id": "phantom-3",
    }
    export.export_json(findings, tmp_path / "out")
    found, _ = load_findings_dir(tmp_path / "out")
    again = export.study_for_findings_dir(tmp_path / "out", found)
    np.testing.assert_array_equal(again.data, case.study.data)
    assert again.study_uid == case.study.study_uid
    # the same seed and grid with other generator options is another case: refused, not guessed
    other = generate_case(3, shape=SMALL, n_lesions=3)
    assert other.study.study_uid == case.study.study_uid  # the UIDs alone cannot tell them apart
    changed = export.findings_from_truth(other.study, other.truth, other.label_mask)
    with pytest.raises(StudySourceUnavailable, match="other pixel values"):
        export.load_recorded_study(changed.study_source, findings=changed)


def test_old_findings_json_still_reads(tmp_path: Path) -> None:
    """A schema 1.0 file (no study_source) reads; SEG/SR then ask for --study, and a bare path
    string (what some early files hold) is understood as a path."""
    study = dicom_case(tmp_path / "case1")
    doc = findings_to_dict(make_findings(study))
    doc["schema_version"] = "1.0"
    del doc["study_source"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "findings.json").write_text(json.dumps(doc))
    old = read_findings_json(tmp_path / "old" / "findings.json")
    assert old.study_source == {} and len(old.lesions) == 4
    with pytest.raises(StudySourceUnavailable, match="need the source study.*does not record.*--study PATH"):
        export.study_for_findings_dir(tmp_path / "old", old)

    doc["study_source"] = str(tmp_path / "case1")
    assert read_study_source(doc["study_source"])["kind"] == "path"
    (tmp_path / "old" / "findings.json").write_text(json.dumps(doc))
    found, _ = load_findings_dir(tmp_path / "old")
    assert export.study_for_findings_dir(tmp_path / "old", found).shape == study.shape


def test_old_phantom_findings_use_the_truth_beside_them(tmp_path: Path) -> None:
    """What `analyze --demo` wrote before schema 1.1: findings.json without a record, truth.json
    beside it; the phantom is regenerated from the truth's seed and grid and checked against it."""
    from napari_breastmri.phantom import generate_case

    case = generate_case(4, shape=SMALL)
    findings = export.findings_from_truth(case.study, case.truth, case.label_mask)
    findings.study_source = {}
    out = tmp_path / "old_demo"
    export.export_json(findings, out)
    assert json.loads((out / "findings.json").read_text())["study_source"] == {}
    (out / "truth.json").write_text(json.dumps(case.truth, default=lambda v: np.asarray(v).tolist()))
    found, _ = load_findings_dir(out)
    again = export.study_for_findings_dir(out, found)
    np.testing.assert_array_equal(again.data, case.study.data)
    truth = json.loads((out / "truth.json").read_text())
    truth["lesions"] = truth["lesions"][:-1] + [{**truth["lesions"][-1], "bbox": [0, 0, 0, 1, 1, 1]}]
    (out / "truth.json").write_text(json.dumps(truth))
    with pytest.raises(StudySourceUnavailable, match="other lesions"):
        export.study_for_findings_dir(out, found)


def test_in_memory_study_has_nothing_to_reload(tmp_path: Path) -> None:
    study = make_study(source="")
    findings = make_findings(study)
    write_findings_json(findings, tmp_path / "findings.json", study=study)
    rec = read_findings_json(tmp_path / "findings.json").study_source
    assert rec["kind"] == "memory" and rec["paths"] == []
    with pytest.raises(StudySourceUnavailable, match="held only in memory"):
        export.load_recorded_study(rec, tmp_path)


def test_pacs_study_is_retrieved_again_or_the_error_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_breastmri.io import pacs

    study = dicom_case(tmp_path / "cache" / "1.2.3")
    study.meta["pacs_url"] = "http://pacs.invalid/dicom-web"
    findings = make_findings(study)
    findings.study_uid = study.study_uid
    write_findings_json(findings, tmp_path / "out" / "findings.json", study=study)
    rec = read_findings_json(tmp_path / "out" / "findings.json").study_source
    assert rec["kind"] == "pacs" and rec["pacs"]["study_uid"] == study.study_uid
    assert rec["pacs"]["url"] == "http://pacs.invalid/dicom-web"
    # in the local cache: no server is asked
    assert export.load_recorded_study(rec, findings=findings).study_uid == study.study_uid
    shutil.move(tmp_path / "cache", tmp_path / "server")
    asked: list[str] = []

    def fake_open(self, study_uid, *, refresh=False):
        asked.append(study_uid)
        yield from ()
        return load_study(tmp_path / "server" / "1.2.3")

    monkeypatch.setattr(pacs.PacsClient, "open_study", fake_open)
    again = export.load_recorded_study(rec, tmp_path / "out", findings=findings)
    assert asked == [study.study_uid] and again.study_uid == study.study_uid

    def unreachable(self, study_uid, *, refresh=False):
        raise PACSError("connection refused")
        yield

    monkeypatch.setattr(pacs.PacsClient, "open_study", unreachable)
    with pytest.raises(StudySourceUnavailable, match="no longer in the local PACS cache.*connection refused"):
        export.load_recorded_study(rec, tmp_path / "out", findings=findings)


def test_export_json_records_the_study_and_write_is_atomic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_breastmri import _atomic

    study = dicom_case(tmp_path / "case1")
    findings = make_findings(study)
    export.export_json(findings, tmp_path / "out", study=study)
    assert read_findings_json(tmp_path / "out" / "findings.json").study_source["kind"] == "dicom"
    before = (tmp_path / "out" / "findings.json").read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(_atomic.os, "fsync", boom)
    with pytest.raises(OSError):
        write_findings_json(findings, tmp_path / "out" / "findings.json", study=make_study())
    assert (tmp_path / "out" / "findings.json").read_bytes() == before
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == []


def test_series_chosen_by_hand_are_loaded_again(tmp_path: Path) -> None:
    """Two studies in one folder, the second picked with series_uid: the reload picks it again."""
    from napari_breastmri.io.dicom_write import write_study_dicom

    write_study_dicom(make_study(), tmp_path / "both" / "a", uid_root_seed="study-a")
    other = make_study()
    other.data = other.data * 2.0
    write_study_dicom(other, tmp_path / "both" / "b", uid_root_seed="study-b")
    b = load_study(tmp_path / "both" / "b")
    study = load_study(tmp_path / "both", series_uid=b.series_uids)
    assert study.study_uid == b.study_uid
    findings = make_findings(study)
    findings.study_uid = study.study_uid
    write_findings_json(findings, tmp_path / "out" / "findings.json", study=study)
    found, _ = load_findings_dir(tmp_path / "out")
    again = export.study_for_findings_dir(tmp_path / "out", found)
    assert again.study_uid == b.study_uid and again.series_uids == b.series_uids
    np.testing.assert_array_equal(again.data, study.data)
