"""PACS round trip against a REAL Orthanc with its DICOMweb plugin (Debian orthanc + orthanc-dicomweb).

The fixture starts Orthanc on a free loopback port with a temporary configuration and storage,
DICOM port disabled, no authentication, and remote access refused. Orthanc 1.10 has no option to
choose the HTTP bind address, so a tiny LD_PRELOAD shim (compiled here with the system C compiler)
rewrites its bind() calls to 127.0.0.1 / ::1; the test checks in /proc/net that nothing else
listens. Then: upload phantom studies over REST, search (QIDO-RS), retrieve (WADO-RS) into the
cache and load, analyse, send SEG + SR back (STOW-RS), and check the server holds them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from napari_breastmri import progress
from napari_breastmri.errors import PACSError
from napari_breastmri.io.pacs import PacsClient

pytestmark = [pytest.mark.peers, pytest.mark.slow]

ORTHANC = shutil.which("Orthanc")
PLUGIN_DIRS = ["/usr/share/orthanc/plugins", "/usr/lib/orthanc", "/usr/local/share/orthanc/plugins"]

BIND_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);
int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static bind_fn real_bind = 0;
    if (!real_bind) real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in a; memcpy(&a, addr, sizeof a);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
    }
    if (addr && addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a; memcpy(&a, addr, sizeof a);
        a.sin6_addr = in6addr_loopback;
        return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
    }
    return real_bind(fd, addr, len);
}
"""


def _plugin() -> Path | None:
    for folder in PLUGIN_DIRS:
        for path in sorted(Path(folder).glob("libOrthancDicomWeb.so*")) if Path(folder).is_dir() else []:
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net shows them) with a socket listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            addr, state = fields[1], fields[3]
            if state == "0A" and int(addr.rsplit(":", 1)[1], 16) == port:
                found.add(addr.rsplit(":", 1)[0])
    return found


LOOPBACK_HEX = {"0100007F", "00000000000000000000000001000000"}


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory):
    """A running Orthanc (HTTP on 127.0.0.1 only, DICOMweb on) and its base URL."""
    plugin = _plugin()
    if ORTHANC is None or plugin is None:
        pytest.skip("Orthanc and its DICOMweb plugin are not installed (Debian: orthanc orthanc-dicomweb)")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the loopback-only bind shim for Orthanc")
    root = tmp_path_factory.mktemp("orthanc")
    shim = root / "bind_loopback.so"
    (root / "shim.c").write_text(BIND_SHIM)
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(shim), str(root / "shim.c"), "-ldl"], check=True)
    port = _free_port()
    config = {
        "Name": "breastmri-test",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "index"),
        "HttpPort": port,
        "HttpServerEnabled": True,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
        "SaveJobs": False,
        "ConcurrentJobs": 1,
    }
    cfg = root / "orthanc.json"
    cfg.write_text(json.dumps(config))
    log = open(root / "orthanc.log", "w")  # noqa: SIM115 - closed in the finalizer
    env = dict(os.environ, LD_PRELOAD=str(shim))
    proc = subprocess.Popen([ORTHANC, str(cfg)], stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            if proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {(root / 'orthanc.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{base}/system", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            raise RuntimeError("Orthanc did not answer within 15 s")
        yield {"base": base, "dicomweb": f"{base}/dicom-web", "port": port, "root": root}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _upload(base: str, files: list[Path]) -> None:
    for path in files:
        response = requests.post(f"{base}/instances", data=path.read_bytes(), timeout=30)
        response.raise_for_status()


def _phantom_dicom(tmp: Path, seed: int, patient_id: str) -> tuple[Path, dict | None, np.ndarray | None]:
    """A phantom case as series-per-phase DICOM with its truth (falls back to the export test study)."""
    from napari_breastmri.io.dicom_write import write_study_dicom
    from napari_breastmri.types import PatientInfo

    try:
        from napari_breastmri.phantom import generate_case

        case = generate_case(seed, shape=(16, 64, 64))
        study, truth, mask = case.study, case.truth, np.asarray(case.label_mask)
    except (ImportError, TypeError):
        from tests.unit.test_export_formats import make_findings, make_study

        study = make_study()
        findings = make_findings(study)
        mask = findings.label_mask
        truth = {"lesions": [{"id": les.id, "bbox": les.bbox} for les in findings.lesions if les.label]}
    study.phi = PatientInfo(name=f"PHANTOM^{seed}", patient_id=patient_id, study_date=f"2024010{seed}")
    folder = tmp / f"case_{seed}"
    write_study_dicom(study, folder, layout="series-per-phase", uid_root_seed=f"pacs-{seed}")
    return folder, truth, mask


def test_search_retrieve_analyse_send(orthanc, tmp_path: Path) -> None:
    # Orthanc listens on the loopback only
    assert _listening(orthanc["port"]) and _listening(orthanc["port"]) <= LOOPBACK_HEX
    cases = {pid: _phantom_dicom(tmp_path, seed, pid) for seed, pid in [(1, "PH-0001"), (2, "PH-0002")]}
    for folder, _, _ in cases.values():
        _upload(orthanc["base"], sorted(folder.rglob("*.dcm")))

    client = PacsClient(orthanc["dicomweb"], cache_dir=tmp_path / "cache")
    everything = client.search_studies()
    assert {s.patient_id for s in everything} >= {"PH-0001", "PH-0002"}
    (hit,) = client.search_studies(patient_id="PH-0002")
    assert hit.patient_name == "PHANTOM^2" and hit.study_date == "20240102" and hit.modalities == "MR"
    assert [s.patient_id for s in client.search_studies(date_from="2024-01-01", date_to="20240101")] == [
        "PH-0001"
    ]
    assert client.search_studies(patient_id="NOBODY") == []

    study = progress.run(client.open_study(hit.study_uid))
    folder, truth, mask = cases["PH-0002"]
    assert client.study_dir(hit.study_uid).is_dir()
    assert study.study_uid == hit.study_uid and study.n_phases >= 3
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]  # no temp folders left

    # analyse: the phantom truth stands in for a model here (the models have their own tests)
    from napari_breastmri.io.export import export_findings, findings_from_truth

    findings = findings_from_truth(study, truth, mask)
    out = progress.run(export_findings(study, findings, tmp_path / "export", ["seg", "sr"]))
    assert not any("source_dicom" in p.parts for p in out["seg"])  # referenced the retrieved instances
    stored = client.send([out["seg"][-1], out["sr"][-1]])
    assert len(stored) == 2

    modalities = {s["modality"] for s in client.series_of(hit.study_uid)}
    assert {"MR", "SEG", "SR"} <= modalities
    # the SEG on the server reads back as the mask we sent
    from napari_breastmri.io.export import read_seg

    series = {s["modality"]: s["uid"] for s in client.series_of(hit.study_uid)}
    (seg_ds,) = client.client.retrieve_series(
        study_instance_uid=hit.study_uid, series_instance_uid=series["SEG"]
    )
    seg_file = tmp_path / "from_server_seg.dcm"
    seg_ds.save_as(seg_file)
    labels, _ = read_seg(seg_file, study.shape, study.affine)
    assert (labels > 0).sum() == (np.asarray(findings.label_mask) > 0).sum()

    # a second open uses the cache, no network needed for the pixels
    again = progress.run(client.open_study(hit.study_uid))
    assert np.array_equal(again.data, study.data)


def test_unknown_study_and_http_errors(orthanc, tmp_path: Path) -> None:
    client = PacsClient(orthanc["dicomweb"], cache_dir=tmp_path / "cache")
    with pytest.raises(PACSError):
        progress.run(client.retrieve_study("1.2.3.4.5.6.7.8.9"))
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())
    wrong = PacsClient(orthanc["base"] + "/no-such-root", cache_dir=tmp_path / "cache")
    with pytest.raises(PACSError, match="answered 404"):
        wrong.search_studies()


def test_server_down_is_a_clear_error(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    client = PacsClient(
        f"http://127.0.0.1:{port}/dicom-web", cache_dir=tmp_path / "cache", timeout=3, attempts=2
    )
    with pytest.raises(PACSError, match="Cannot reach the PACS"):
        client.search_studies()
    with pytest.raises(PACSError, match="Cannot reach the PACS"):
        progress.run(client.retrieve_study("1.2.3"))
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_interrupted_retrieve_leaves_nothing(
    orthanc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _, _ = _phantom_dicom(tmp_path, 3, "PH-0003")
    _upload(orthanc["base"], sorted(folder.rglob("*.dcm")))
    client = PacsClient(orthanc["dicomweb"], cache_dir=tmp_path / "cache")
    (hit,) = client.search_studies(patient_id="PH-0003")
    real = client.client.retrieve_series
    calls = {"n": 0}

    def flaky(**kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the connection drops after the first series arrived
            raise requests.exceptions.ConnectionError("connection reset by peer")
        return real(**kwargs)

    monkeypatch.setattr(client.client, "retrieve_series", flaky)
    with pytest.raises(PACSError, match="Cannot reach"):
        progress.run(client.retrieve_study(hit.study_uid))
    assert list((tmp_path / "cache").iterdir()) == []


def test_pacs_cli(orthanc, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`breastmri pacs search|retrieve|send`: names hidden by default, errors as one line + exit 2."""
    from napari_breastmri.cli import main

    folder, truth, mask = _phantom_dicom(tmp_path, 4, "PH-0004")
    _upload(orthanc["base"], sorted(folder.rglob("*.dcm")))
    url = ["--url", orthanc["dicomweb"], "--cache", str(tmp_path / "cache")]
    assert main(["pacs", "search", *url, "--patient-id", "PH-0004"]) == 0
    listing = capsys.readouterr().out
    assert "PHANTOM^4" not in listing and "(name hidden)" in listing and "***0004" in listing
    uid = listing.split()[0]
    assert main(["pacs", "search", *url, "--patient-id", "PH-0004", "--show-phi"]) == 0
    assert "PHANTOM^4" in capsys.readouterr().out
    assert main(["pacs", "retrieve", uid, *url]) == 0
    assert "phases" in capsys.readouterr().out and (tmp_path / "cache" / uid).is_dir()

    from napari_breastmri.io import load_study
    from napari_breastmri.io.export import export_sr, findings_from_truth

    study = load_study(tmp_path / "cache" / uid)
    (sr,) = export_sr(study, findings_from_truth(study, truth, mask), tmp_path / "out")
    assert main(["pacs", "send", str(sr), *url]) == 0
    assert "stored 1 instance" in capsys.readouterr().out
    assert main(["pacs", "search", "--url", orthanc["base"] + "/nope"]) == 2
    assert "answered 404" in capsys.readouterr().err
