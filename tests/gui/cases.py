"""Small synthetic studies for the GUI tests: fast to make, with a known lesion and truth.

The phantom (napari_breastmri.phantom) is the real source of demo cases; these tiny studies keep
the GUI suite fast and let a test choose the geometry (axial, sagittal, oblique) exactly.
"""

from __future__ import annotations

import numpy as np

from napari_breastmri.types import PatientInfo, Study

PHI = PatientInfo(
    name="DOE^JANE", patient_id="PID-4711", birth_date="19700101", accession="ACC-99", study_date="20240102"
)


def oblique_affine(
    angle_deg: float = 25.0, spacing=(3.0, 0.9, 0.9), origin=(-80.0, -60.0, -40.0)
) -> np.ndarray:
    """(z, y, x) -> LPS with axial slices tilted about the L axis by ``angle_deg``."""
    a = np.deg2rad(angle_deg)
    z_dir = np.array([0.0, np.sin(a), np.cos(a)])  # mostly S
    y_dir = np.array([0.0, np.cos(a), -np.sin(a)])  # mostly P
    x_dir = np.array([1.0, 0.0, 0.0])  # L
    aff = np.eye(4)
    aff[:3, 0] = z_dir * spacing[0]
    aff[:3, 1] = y_dir * spacing[1]
    aff[:3, 2] = x_dir * spacing[2]
    aff[:3, 3] = origin
    return aff


def tiny_case(shape=(12, 48, 56), *, angle_deg: float = 0.0, seed: int = 0, phi: PatientInfo = PHI):
    """(Study, label_mask, truth): 5 phases, one washout lesion in a known box."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    times = np.array([0.0, 90.0, 180.0, 270.0, 360.0])
    base = 100.0 + 5.0 * rng.standard_normal(shape).astype(np.float32)
    zz, yy, xx = np.mgrid[:nz, :ny, :nx]
    center = np.array([nz * 0.5, ny * 0.4, nx * 0.6])
    radii = np.array([2.5, 6.0, 7.0])
    inside = ((zz - center[0]) / radii[0]) ** 2 + ((yy - center[1]) / radii[1]) ** 2 + (
        (xx - center[2]) / radii[2]
    ) ** 2 <= 1
    mask = inside.astype(np.int16)
    curve = np.array([0.0, 1.6, 1.4, 1.25, 1.1])  # washout
    data = np.stack([base * (1 + c * inside) for c in curve]).astype(np.float32)
    where = np.argwhere(inside)
    bbox = [*where.min(0).tolist(), *(where.max(0) + 1).tolist()]
    affine = oblique_affine(angle_deg)
    study = Study(
        data=data,
        affine=affine,
        times=times,
        phase_labels=["pre", "post1", "post2", "post3", "post4"],
        phi=phi,
        source="tiny",
        study_uid="1.2.3",
        meta={"synthetic": True},
    )
    truth = {
        "case_id": "tiny",
        "lesions": [{"id": 1, "bbox": bbox, "type": "mass", "malignant": True, "curve_type": "washout"}],
        "labels": {
            "subtype": "luminal_b",
            "pcr": "no_pcr",
            "lymph_node": "negative",
            "screening": "needs_review",
        },
    }
    return study, mask, truth


def save_toy_subtype(models_dir) -> None:
    """An untrained 4-class subtype classifier on (pre, sub1), saved as ``models_dir/toy-subtype``:
    small enough for the Explain GUI tests, with a card CAM layer (``block4``)."""
    import torch

    from napari_breastmri.models.networks import CaseClassifier
    from napari_breastmri.models.package import save_package

    torch.manual_seed(0)
    card = {
        "name": "toy-subtype",
        "version": "0.1",
        "task": "classify",
        "target": "subtype",
        "demo": True,
        "network": {
            "factory": "napari_breastmri.models.networks.CaseClassifier",
            "kwargs": {"in_channels": 2, "out_channels": 4, "features": [4, 4, 8, 8]},
        },
        "inputs": {
            "channels": ["pre", "sub1"],
            "resize_to": [8, 32, 32],
            "normalisation": {"method": "percentile"},
        },
        "outputs": {"classes": ["luminal_a", "luminal_b", "her2_enriched", "triple_negative"]},
        "cam": {"target_layer": "block4"},
    }
    save_package(models_dir / "toy-subtype", card, CaseClassifier(2, 4, (4, 4, 8, 8)), fmt="safetensors")


def wait_for_jobs(qtbot, widget, timeout_ms: int = 30_000) -> None:
    """Wait until every job the dock started has finished and its results reached the viewer
    (layers added over several event-loop turns included)."""
    qtbot.waitUntil(
        lambda: all(j.finished_at is not None for j in widget.jobs) and not widget.staging, timeout=timeout_ms
    )
