"""``generate_case``: one synthetic breast DCE-MRI exam with its ground truth, in memory.

Order of work (each step deterministic from the seed through its own child random stream, so a
change in one step does not reshuffle the others): labels -> anatomy -> lesions and nodes ->
protocol and acquisition -> kinetic tables -> per-phase signal (+ bias, motion, Rician noise) ->
orientation -> truth. The follow-up exam re-renders the same patient with the response applied.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import ndimage

from ..types import DEMO_LABEL, Acquisition, PatientInfo, Protocol, Study
from . import labels as L
from . import physics as P
from .anatomy import (
    BPE_LEVELS,
    TISSUE_NAMES,
    Anatomy,
    AnatomySpec,
    draw_anatomy,
    grid_coords,
    render_anatomy,
)
from .lesions import (
    LesionSpec,
    NodeSpec,
    Raster,
    place,
    random_rotation,
    rasterise_lesion,
    rasterise_node,
)

GENERATOR = "napari_breastmri.phantom 1"
DEFAULT_SHAPE = {"conventional": (64, 256, 256), "ultrafast": (48, 192, 192)}
DEFAULT_SPACING = {"conventional": (1.5, 0.8, 0.8), "ultrafast": (2.0, 1.0667, 1.0667)}
#: study axis a takes canonical axis PERM[a]; FLIP lists study axes that run against canonical
#: (sagittal: slices run right to left and rows head to foot, so that the slice direction is the
#: DICOM row x column normal and readers keep the slice order)
ORIENTATIONS = {"axial": ((0, 1, 2), ()), "sagittal": ((2, 0, 1), (0, 1))}
N_BINS = 8  # Ktrans heterogeneity levels per lesion
K_LO, K_HI = 0.2, 2.0
#: early-phase enhancement (fraction) that counts a lesion voxel as enhancing (I-SPY FTV's 70 %)
ENHANCING_PE = 0.7
#: 26-connectivity, the neighbourhood of kinetics.ftv's connectivity filter
CONNECT26 = np.ones((3, 3, 3), dtype=bool)
INVENTED_NAMES = ["PHANTOM^ADA", "SYNTHETIC^BEA", "MODEL^CLEO", "DEMO^DORA", "FICTIVE^EVA", "PHANTOM^FAYE"]
#: ~ relative SPGR signal of glandular tissue before contrast; sets the image scale
GLAND_REF = 0.028
IMAGE_SCALE = 350.0 / GLAND_REF


@dataclass
class PhantomCase:
    """A synthetic exam: the Study, its lesion label mask and truth, and an optional follow-up."""

    study: Study
    label_mask: np.ndarray  # (z, y, x) int16 on the study grid; lesion i has value i
    truth: dict[str, Any]
    follow_up: PhantomCase | None = None
    tissue: np.ndarray | None = None  # (z, y, x) uint8 tissue classes (anatomy.TISSUE_NAMES, 7 = FGT > 50 %)
    #: (z, y, x) int16: the voxels truth["lesions"][i - 1]["enhancing_volume_ml"] counts have value i
    enhancing_mask: np.ndarray | None = None

    @property
    def case_id(self) -> str:
        return str(self.truth["case_id"])


@dataclass
class CaseSpec:
    """Everything random about one case, before any pixel is drawn."""

    case_id: str
    seed: int
    shape: tuple[int, int, int]  # canonical (axial) grid
    spacing: tuple[float, float, float]
    orientation: str
    protocol: str
    labels: L.CaseLabels
    anatomy: AnatomySpec
    lesions: list[LesionSpec]
    nodes: list[NodeSpec]
    timing: P.Timing
    acq: dict
    snr: float
    motion_mm: float
    noise_seed: int
    exam: str = "baseline"
    study_date: str = "20260105"
    extra: dict = field(default_factory=dict)


def uid_from(*parts: Any) -> str:
    """A deterministic DICOM UID under the 2.25 (UUID-derived) root."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def uid_root_seed(case_id: str, seed: int) -> str:
    """The seed the DICOM writer derives a case's UIDs from (write.write_case passes it)."""
    return f"phantom:{case_id}:{seed}"


def dicom_uid(root_seed: str, *names: object) -> str:
    """The UID io.dicom_write gives ``names`` under ``root_seed`` (so memory and files agree).

    Mirrors io.dicom_write's seeded UIDs (pydicom generate_uid with entropy sources); a phantom
    test checks that the written StudyInstanceUID equals ``Study.study_uid``.
    """
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["napari-breastmri", repr(root_seed), *map(str, names)])


def _canonical_grid(orientation, shape, spacing, protocol):
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {sorted(ORIENTATIONS)}, got {orientation!r}")
    perm, _ = ORIENTATIONS[orientation]
    inv = np.argsort(perm)
    if shape is None:
        cshape = DEFAULT_SHAPE[protocol]
    else:
        cshape = tuple(int(shape[i]) for i in inv)
    if spacing is None:
        cspacing = DEFAULT_SPACING[protocol]
    else:
        cspacing = tuple(float(spacing[i]) for i in inv)
    return tuple(cshape), tuple(cspacing)


def generate_case(
    seed: int,
    *,
    protocol: str = "conventional",
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
    n_lesions: int | None = None,
    orientation: str = "axial",
    longitudinal: bool = False,
    cancer: bool | None = None,
    motion: bool = False,
    case_id: str | None = None,
) -> PhantomCase:
    """Generate one case deterministically from ``seed``.

    ``shape``/``spacing`` are the study grid's (z, y, x) (for a sagittal study: slices run left to
    right); defaults 64 x 256 x 256 at 1.5 x 0.8 x 0.8 mm (ultrafast: 48 x 192 x 192 at 2 x 1.07 x
    1.07 mm). ``n_lesions`` (0-3) fixes the lesion count; ``cancer`` forces an invasive index
    cancer or none (default: 75 % of cases). ``longitudinal`` adds ``follow_up``, the same patient
    early in neoadjuvant treatment with the invented response signature (docs/phantom.md).
    """
    if protocol not in DEFAULT_SHAPE:
        raise ValueError(f"protocol must be 'conventional' or 'ultrafast', got {protocol!r}")
    if n_lesions is not None and not 0 <= n_lesions <= 3:
        raise ValueError(f"n_lesions must be 0..3, got {n_lesions}")
    cshape, cspacing = _canonical_grid(orientation, shape, spacing, protocol)
    spec, anatomy = draw_case(
        int(seed), cshape, cspacing, orientation, protocol, n_lesions, cancer, motion, case_id
    )
    case = render_case(spec, anatomy)
    if longitudinal:
        fu_spec = follow_up_spec(spec)
        case.follow_up = render_case(fu_spec, anatomy)  # same patient: BPE lives in the kinetics only
        case.truth["follow_up"] = {
            "case_id": fu_spec.case_id,
            "folder": f"../{fu_spec.case_id}",
            "interval_days": fu_spec.extra["interval_days"],
            "response": fu_spec.extra["response"],
        }
    return case


def draw_case(seed, cshape, cspacing, orientation, protocol, n_lesions, cancer, motion, case_id):
    """Draw the CaseSpec (labels, anatomy, lesions, nodes, protocol) and render the anatomy."""
    ss = np.random.SeedSequence(seed)
    r_lab, r_anat, r_les, r_proto, r_noise = (np.random.default_rng(s) for s in ss.spawn(5))
    if cancer is None:
        cancer = bool(r_lab.random() < 0.75) if n_lesions != 0 else False
    if cancer and n_lesions == 0:
        raise ValueError("a cancer case needs at least one lesion (n_lesions >= 1)")
    labels = L.draw_labels(r_lab, cancer)
    aspec = draw_anatomy(r_anat, cshape, cspacing)
    anatomy = render_anatomy(aspec, cshape, cspacing)
    lesions, nodes, correlates = _draw_lesions(r_les, labels, aspec, anatomy, cshape, cspacing, n_lesions)
    labels.screening = "needs_review" if any(les.malignant for les in lesions) else "normal"
    timing = P.draw_timing(r_proto, protocol)
    acq = P.draw_acquisition(r_proto)
    snr = float(r_proto.uniform(18.0, 35.0))
    motion_mm = float(r_proto.uniform(0.3, 1.5)) if motion else 0.0
    spec = CaseSpec(
        case_id=case_id or f"phantom-{seed}",
        seed=seed,
        shape=cshape,
        spacing=cspacing,
        orientation=orientation,
        protocol=protocol,
        labels=labels,
        anatomy=aspec,
        lesions=lesions,
        nodes=nodes,
        timing=timing,
        acq=acq,
        snr=snr,
        motion_mm=motion_mm,
        noise_seed=int(r_noise.integers(2**31)),
        study_date=f"2026{int(r_proto.integers(1, 7)):02d}{int(r_proto.integers(1, 28)):02d}",
        extra={"correlates": correlates, "patient": int(r_proto.integers(len(INVENTED_NAMES)))},
    )
    return spec, anatomy


def _uniform(rng, lo_hi) -> float:
    return float(rng.uniform(*lo_hi))


def _draw_lesions(rng, labels, aspec, anatomy, shape, spacing, n_lesions):
    """Index cancer (subtype-driven), satellites, benign lesions, DCIS-like NME and nodes."""
    lesions: list[LesionSpec] = []
    taken: list = []
    correlates: dict[str, Any] = {}
    side = str(rng.choice(["right", "left"]))
    budget = n_lesions
    if labels.cancer:
        if budget is None:
            budget = 1 + int(rng.choice([0, 1, 2], p=[0.55, 0.3, 0.15]))
        idx, morph, wants_satellite = _index_lesion(rng, labels, aspec, anatomy, shape, spacing, side, taken)
        lesions.append(idx)
        if budget > 1 and wants_satellite:
            lesions.append(_satellite(rng, idx, aspec, anatomy, shape, spacing, taken))
        correlates.update(idx_correlates(idx, morph, satellite=len(lesions) > 1))
    elif budget is None:
        budget = int(rng.choice([0, 1, 2, 3], p=[0.3, 0.45, 0.2, 0.05]))
    while len(lesions) < budget:
        if not labels.cancer and rng.random() < 0.12 and not any(les.malignant for les in lesions):
            lesions.append(_dcis(rng, aspec, anatomy, shape, spacing, taken))
        else:
            lesions.append(_benign(rng, aspec, anatomy, shape, spacing, taken))
    nodes = _draw_nodes(rng, labels, aspec, side)
    return lesions, nodes, correlates


def idx_correlates(idx: LesionSpec, morph: str, satellite: bool) -> dict:
    """The drawn values behind the invented label correlates (truth["correlates"])."""
    return {
        "index_diameter_mm": round(idx.diameter, 2),
        "index_shape": idx.shape,
        "index_ktrans": round(idx.ktrans, 4),
        "index_heterogeneity": round(idx.heterogeneity, 4),
        "edema_mm": round(idx.edema_mm, 2),
        "morphology_from": morph,
        "satellite_nme": satellite,
    }


def _index_lesion(rng, labels, aspec, anatomy, shape, spacing, side, taken) -> tuple[LesionSpec, str, bool]:
    """The index cancer, the subtype its morphology came from, and whether it wants satellite NME."""
    morph = L.morphology_subtype(rng, labels.subtype)
    tr = L.SUBTYPE_TRAITS[morph]
    kin_tr = L.SUBTYPE_TRAITS[labels.subtype]
    pc = L.PCR_BASELINE[labels.pcr]
    diam = _uniform(rng, tr["diam"]) * pc["diam"] * rng.uniform(0.92, 1.08)
    diam = float(np.clip(diam, 4.0, 40.0))
    names = list(tr["shapes"])
    shp = str(rng.choice(names, p=list(tr["shapes"].values())))
    ktrans = _uniform(rng, kin_tr["ktrans"]) * pc["ktrans"]
    ve = _uniform(rng, kin_tr["ve"])
    vp = _uniform(rng, kin_tr["vp"])
    note = ""
    if labels.subtype == "luminal_a" and rng.random() < L.LUMINAL_A_PERSISTENT:
        ktrans, ve, note = (
            rng.uniform(0.05, 0.09),
            rng.uniform(0.55, 0.7),
            "malignant with persistent curve (documented exception)",
        )
    het = _uniform(rng, kin_tr["het"]) * pc["het"]
    edema = rng.uniform(4.0, 9.0) if rng.random() < tr["edema"] else 0.0
    wants_satellite = bool(rng.random() < tr["satellite"])
    center, r = place(rng, anatomy, aspec, shape, spacing, side, diam / 2.0, taken)
    taken.append((center, r * 1.3 + edema))
    ratios = (1.0, 1.0, 1.0)
    if shp == "oval":
        ratios = (1.0, rng.uniform(0.55, 0.75), rng.uniform(0.5, 0.7))
    elif shp in ("round", "rim"):
        ratios = (1.0, rng.uniform(0.85, 1.0), rng.uniform(0.85, 1.0))
    elif shp in ("irregular", "spiculated"):
        ratios = (1.0, rng.uniform(0.65, 0.9), rng.uniform(0.6, 0.85))
    spec = LesionSpec(
        kind="mass",
        shape=shp,
        diagnosis="invasive carcinoma",
        malignant=True,
        role="index",
        side=side,
        center=center,
        diameter=2 * r,
        ktrans=float(ktrans),
        ve=float(ve),
        vp=float(vp),
        t10_15=1.35,
        t10_30=1.6,
        heterogeneity=float(het),
        edema_mm=float(edema),
        shape_seed=int(rng.integers(2**31)),
        rotation=random_rotation(rng).tolist(),
        axis_ratios=ratios,
        curve_note=note,
    )
    return spec, morph, wants_satellite


def _toward_nipple(aspec: AnatomySpec, side: str, center) -> tuple[float, float, float]:
    b = next(b for b in aspec.breasts if b.side == side)
    nipple = np.array([b.cz, aspec.chest_y(b.cx) - b.depth, b.cx])
    d = nipple - np.asarray(center)
    return tuple(float(v) for v in d / (np.linalg.norm(d) + 1e-6))


def _segment_rotation(direction) -> np.ndarray:
    """A rotation whose first local axis (the long one) points along ``direction``."""
    a = np.asarray(direction, dtype=float)
    helper = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 0.0, 1.0])
    b = np.cross(a, helper)
    b /= np.linalg.norm(b)
    c = np.cross(a, b)
    return np.stack([a, b, c], axis=1)


def _satellite(rng, idx: LesionSpec, aspec, anatomy, shape, spacing, taken) -> LesionSpec:
    """HER2-like associated non-mass enhancement near the index cancer, towards the nipple."""
    d = np.asarray(_toward_nipple(aspec, idx.side, idx.center))
    diam = float(rng.uniform(12.0, 22.0))
    k = 1 if idx.side == "right" else 2
    for _ in range(12):  # keep the segment inside the breast: shrink it and pull it closer
        center = tuple(float(v) for v in np.asarray(idx.center) + d * (idx.diameter / 2 + diam / 2 + 2.0))
        v = tuple(int(round(c / sp + (n - 1) / 2.0)) for c, sp, n in zip(center, spacing, shape))
        inside = all(0 <= a < n for a, n in zip(v, shape)) and anatomy.breast[v] == k
        if inside and anatomy.depth[v] >= 0.3 * diam + 3.0:
            break
        diam *= 0.85
    taken.append((center, diam / 2))
    return LesionSpec(
        kind="nme",
        shape="segmental",
        diagnosis="associated in-situ component",
        malignant=True,
        role="satellite",
        side=idx.side,
        center=center,
        diameter=diam,
        ktrans=idx.ktrans * 0.7,
        ve=idx.ve,
        vp=idx.vp,
        t10_15=1.3,
        t10_30=1.55,
        heterogeneity=0.3,
        shape_seed=int(rng.integers(2**31)),
        rotation=_segment_rotation(d).tolist(),
        axis_ratios=(1.0, 0.6, 0.5),
        direction=tuple(d),
    )


def _dcis(rng, aspec, anatomy, shape, spacing, taken) -> LesionSpec:
    """Suspicious (malignant) non-mass enhancement without an invasive mass: screening positive."""
    side = str(rng.choice(["right", "left"]))
    diam = float(rng.uniform(15.0, 35.0))
    center, r = place(rng, anatomy, aspec, shape, spacing, side, diam / 2.0, taken)
    taken.append((center, r))
    d = _toward_nipple(aspec, side, center)
    return LesionSpec(
        kind="nme",
        shape="segmental",
        diagnosis="ductal carcinoma in situ",
        malignant=True,
        role="dcis",
        side=side,
        center=center,
        diameter=2 * r,
        ktrans=float(rng.uniform(0.25, 0.45)),
        ve=float(rng.uniform(0.4, 0.5)),
        vp=0.02,
        t10_15=1.3,
        t10_30=1.55,
        heterogeneity=0.3,
        shape_seed=int(rng.integers(2**31)),
        rotation=_segment_rotation(d).tolist(),
        axis_ratios=(1.0, 0.6, 0.5),
        direction=d,
    )


def _benign(rng, aspec, anatomy, shape, spacing, taken) -> LesionSpec:
    """Fibroadenoma (oval mass), papilloma/focus (small round) or benign non-mass enhancement."""
    side = str(rng.choice(["right", "left"]))
    kind = str(rng.choice(["fibroadenoma", "papilloma", "fibrocystic"], p=[0.55, 0.25, 0.2]))
    note = ""
    if kind == "fibroadenoma":
        diam, shp, ratios = (
            rng.uniform(8.0, 25.0),
            "oval",
            (1.0, rng.uniform(0.5, 0.7), rng.uniform(0.45, 0.65)),
        )
    elif kind == "papilloma":
        diam, shp, ratios = (
            rng.uniform(4.0, 10.0),
            "round",
            (1.0, rng.uniform(0.85, 1.0), rng.uniform(0.85, 1.0)),
        )
    else:
        diam, shp, ratios = (
            rng.uniform(10.0, 30.0),
            "focal",
            (1.0, rng.uniform(0.6, 0.9), rng.uniform(0.5, 0.8)),
        )
    ktrans, ve = rng.uniform(0.04, 0.09), rng.uniform(0.55, 0.7)
    if kind != "fibrocystic" and rng.random() < L.BENIGN_SUSPICIOUS_CURVE:
        ktrans, ve, note = (
            rng.uniform(0.3, 0.6),
            rng.uniform(0.35, 0.45),
            "benign with plateau/washout curve (documented exception)",
        )
    if kind == "fibrocystic":
        ktrans = rng.uniform(0.06, 0.1)
    center, r = place(rng, anatomy, aspec, shape, spacing, side, diam / 2.0, taken)
    taken.append((center, r))
    is_nme = kind == "fibrocystic"
    rot = _segment_rotation(_toward_nipple(aspec, side, center)) if is_nme else random_rotation(rng)
    return LesionSpec(
        kind="nme" if is_nme else "mass",
        shape=shp,
        diagnosis=kind,
        malignant=False,
        role="benign",
        side=side,
        center=center,
        diameter=2 * r,
        ktrans=float(ktrans),
        ve=float(ve),
        vp=0.015,
        t10_15=1.25,
        t10_30=1.5,
        heterogeneity=0.12,
        shape_seed=int(rng.integers(2**31)),
        rotation=rot.tolist(),
        axis_ratios=ratios,
        curve_note=note,
    )


def _draw_nodes(rng, labels: L.CaseLabels, aspec: AnatomySpec, side: str) -> list[NodeSpec]:
    """INVENTED node correlate: positive -> 1-3 enlarged round enhancing ipsilateral nodes."""
    nodes: list[NodeSpec] = []

    def add(s, long_mm, short_mm, enhancing):
        az, ay, ax = aspec.axilla[s]
        c = (az + rng.uniform(-12, 12), ay + rng.uniform(-5, 5), ax + rng.uniform(-5, 5) * -np.sign(ax))
        nodes.append(
            NodeSpec(
                s,
                tuple(float(v) for v in c),
                float(long_mm),
                float(short_mm),
                enhancing,
                int(rng.integers(2**31)),
                random_rotation(rng).tolist(),
            )
        )

    if labels.lymph_node == "positive":
        if rng.random() < 0.1:  # borderline: a single slightly enlarged node
            d = rng.uniform(9.0, 11.0)
            add(side, d * 1.1, d, True)
        else:
            for _ in range(int(rng.integers(1, 4))):
                d = rng.uniform(10.0, 17.0)
                add(side, d * rng.uniform(1.0, 1.25), d, True)
    else:
        for _ in range(int(rng.integers(1, 3))):
            add(side, rng.uniform(6.0, 10.0), rng.uniform(3.5, 5.5), False)
    other = "left" if side == "right" else "right"
    for _ in range(int(rng.integers(0, 3))):
        add(other, rng.uniform(6.0, 10.0), rng.uniform(3.5, 5.5), False)
    return nodes


def follow_up_spec(spec: CaseSpec) -> CaseSpec:
    """The early-treatment exam: the response signature applied, a new noise draw, BPE down one step."""
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 1]))
    lab = spec.labels
    if lab.cancer:
        key = lab.pcr if lab.pcr == "pcr" or rng.random() >= L.PARTIAL_RESPONDERS else "partial"
    else:
        key = "stable"
    resp = L.PCR_FOLLOW_UP.get(key, {"diam": (0.97, 1.03), "ktrans": (0.95, 1.05)})
    fd, fk = _uniform(rng, resp["diam"]), _uniform(rng, resp["ktrans"])
    lesions = [les.scaled(fd, fk) if les.malignant and les.role != "dcis" else les for les in spec.lesions]
    nodes = [
        replace(n, long_mm=n.long_mm * 0.7, short_mm=n.short_mm * 0.7) if n.enhancing and key == "pcr" else n
        for n in spec.nodes
    ]
    bpe_i = BPE_LEVELS.index(spec.anatomy.bpe)
    anatomy = replace(spec.anatomy, bpe=BPE_LEVELS[max(0, bpe_i - 1)] if lab.cancer else spec.anatomy.bpe)
    timing = P.draw_timing(
        rng, spec.protocol, n_post=len([x for x in spec.timing.labels if x.startswith("post")])
    )
    days = int(rng.integers(21, 43))
    return replace(
        spec,
        case_id=f"{spec.case_id}_fu",
        lesions=lesions,
        nodes=nodes,
        anatomy=anatomy,
        timing=timing,
        noise_seed=int(rng.integers(2**31)),
        exam="follow_up",
        extra={
            **spec.extra,
            "interval_days": days,
            "response": {"class": key, "diameter_factor": round(fd, 4), "ktrans_factor": round(fk, 4)},
        },
    )


# ----------------------------------------------------------------------------------------------
# rendering


def _components(spec: CaseSpec):
    """Per-component (pd, t10, ktrans, ve, vp) rows: base tissues, FGT, overlays, lesion bins."""
    ft = spec.acq["field_strength_t"]
    fat_sat = spec.anatomy.fat_sat
    rows = []
    for t in range(len(TISSUE_NAMES)):
        ts = P.TISSUES[t]
        pd = ts.pd * (P.FAT_SAT_RESIDUAL if (fat_sat and t == 1) else 1.0)
        rows.append((pd, ts.t10(ft), ts.ktrans, ts.ve, ts.vp))
    f = P.FGT
    rows.append((f.pd, f.t10(ft), P.BPE_KTRANS[spec.anatomy.bpe], f.ve, 0.003))
    for ts in (P.NODE_NORMAL, P.NODE_POSITIVE, P.EDEMA, P.NECROSIS):
        rows.append((ts.pd, ts.t10(ft), ts.ktrans, ts.ve, ts.vp))
    levels = K_LO + (np.arange(N_BINS) + 0.5) * (K_HI - K_LO) / N_BINS
    for les in spec.lesions:
        for m in levels:
            rows.append((0.85, les.t10(ft), les.ktrans * m, les.ve, les.vp))
    return np.array(rows, dtype=float), levels


N_BASE = len(TISSUE_NAMES)
C_FGT = N_BASE
C_NODE, C_NODE_POS, C_EDEMA, C_NECROSIS = N_BASE + 1, N_BASE + 2, N_BASE + 3, N_BASE + 4
C_LESION0 = N_BASE + 5


def _paint(g, oidx, r, comp) -> np.ndarray:
    """Write an overlay where it is denser than what is there (painter's rule); return where it won."""
    gb, ob = g[r.box], oidx[r.box]
    win = r.frac > gb
    gb[win] = r.frac[win]
    ob[win] = comp[win] if isinstance(comp, np.ndarray) else comp
    return win


def _core_index(label: np.ndarray, i: int, box, core: np.ndarray):
    """Voxel indices of a lesion's core (>= 85 % lesion, its truth curve), else of its whole mask.

    Why the core: at the soft edge a voxel is part fat, whose bright pre-contrast signal would
    dilute the curve a reader measures in a lesion's centre.
    """
    core = core & (label[box] == i)
    if core.sum() >= 3:
        idx = np.nonzero(core)
        return tuple(ix + b.start for ix, b in zip(idx, box))
    return np.nonzero(label == i)


def render_case(spec: CaseSpec, anatomy: Anatomy) -> PhantomCase:
    """Pixels, label mask and truth of a CaseSpec on the study grid."""
    shape, spacing = spec.shape, spec.spacing
    comps, _levels = _components(spec)
    conc = P.concentration_curves(spec.timing, comps[:, 2:5])
    table = P.signal_table(comps[:, 0], comps[:, 1], conc, spec.acq)  # (phase, comp)

    g = np.zeros(shape, dtype=np.float32)
    oidx = np.zeros(shape, dtype=np.int16)
    label = np.zeros(shape, dtype=np.int16)
    owner = np.zeros(shape, dtype=np.int16)  # lesion i's signal is in the voxel (its share > 0)
    in_body = anatomy.base != 0
    for node in spec.nodes:
        r = rasterise_node(node, shape, spacing)
        r.frac *= in_body[r.box]
        _paint(g, oidx, r, C_NODE_POS if node.enhancing else C_NODE)
    rasters = [rasterise_lesion(les, shape, spacing) for les in spec.lesions]
    cores: list = []
    breast = anatomy.breast > 0
    for r in rasters:
        if r.edema is not None:
            _paint(g, oidx, Raster(r.box, r.edema * breast[r.box], r.kmult), C_EDEMA)
    for i, r in enumerate(rasters, start=1):
        r.frac *= breast[r.box] | (r.frac > 0.5)
        bins = np.clip(((r.kmult - K_LO) / (K_HI - K_LO) * N_BINS).astype(np.int16), 0, N_BINS - 1)
        comp = (C_LESION0 + (i - 1) * N_BINS + bins).astype(np.int16)
        if r.necrosis is not None:
            comp = np.where(r.necrosis > 0.5, np.int16(C_NECROSIS), comp)
        owner[r.box][_paint(g, oidx, r, comp)] = i  # a later lesion takes the voxels it wins
        lb = label[r.box]
        lb[r.frac >= 0.5] = i
        cores.append((r.box, (r.frac >= 0.85) & (lb == i)))
        if not (lb == i).any():  # a tiny lesion still owns its densest voxel
            lb[np.unravel_index(int(np.argmax(r.frac)), r.frac.shape)] = i

    rng = np.random.default_rng(spec.noise_seed)
    amp = (IMAGE_SCALE * anatomy.bias * anatomy.pd_texture).astype(np.float32)
    sigma = np.float32(IMAGE_SCALE * GLAND_REF / spec.snr)
    n_ph = len(spec.timing.times)
    data = np.empty((n_ph, *shape), dtype=np.float32)
    fgt = anatomy.fgt
    lesion_idx = [_core_index(label, i, box, core) for i, (box, core) in enumerate(cores, start=1)]
    clean_curves = np.zeros((len(spec.lesions), n_ph))
    early = P.early_phase(spec.timing)
    pe_maps: dict[int, np.ndarray] = {}  # lesion index -> noise-free PE over its raster box
    shifts = []
    # Sparse mixing: only glandular and overlay voxels change from the base tissue's value (a
    # dense mix would compute sig + 0 * (...) everywhere else and give the same numbers).
    base_flat = anatomy.base.ravel()
    f_idx = np.flatnonzero(fgt)
    f_val = fgt.ravel()[f_idx]
    o_idx = np.flatnonzero(g)
    o_val = g.ravel()[o_idx]
    o_comp = oidx.ravel()[o_idx]
    amp_flat = amp.ravel()
    noise = np.empty(base_flat.size, dtype=np.float32)
    for p in range(n_ph):
        row = table[p]
        flat = data[p].reshape(-1)
        np.take(row, base_flat, out=flat)
        part = flat[f_idx]
        flat[f_idx] = part + f_val * (row[C_FGT] - part)
        part = flat[o_idx]
        flat[o_idx] = part + o_val * (row[o_comp] - part)
        flat *= amp_flat
        sig = data[p]
        for i, ix in enumerate(lesion_idx):
            clean_curves[i, p] = float(sig[ix].mean())
            if p == 0:
                pe_maps[i] = sig[rasters[i].box].copy()
            elif p == early:
                pe_maps[i] = (sig[rasters[i].box] - pe_maps[i]) / np.maximum(pe_maps[i], 1e-3)
        if spec.motion_mm > 0 and p > 0:
            rs = np.random.default_rng(np.random.SeedSequence([spec.noise_seed, p]))
            shift = rs.normal(0.0, spec.motion_mm / 2.0, 3) / np.asarray(spacing)
            shifts.append([round(float(s), 3) for s in shift])
            data[p] = ndimage.shift(sig, shift, order=1, mode="nearest")
        # Rician magnitude: |S + n1 + i n2|
        rng.standard_normal(dtype=np.float32, out=noise)
        noise *= sigma
        flat += noise
        np.square(flat, out=flat)
        rng.standard_normal(dtype=np.float32, out=noise)
        noise *= sigma
        np.square(noise, out=noise)
        flat += noise
        np.sqrt(flat, out=flat)
    enh_mask = _enhancing_truth(pe_maps, rasters, owner, label)
    tissue = anatomy.base.copy()
    tissue[fgt > 0.5] = N_BASE
    return _assemble(spec, data, label, tissue, clean_curves, enh_mask, shifts)


def _enhancing_truth(pe_maps: dict[int, np.ndarray], rasters: list, owner: np.ndarray, label: np.ndarray):
    """Each lesion's true enhancing voxels: what an ideal FTV finds on the noise-free study.

    The ACRIN 6657 / I-SPY FTV rule (early-phase PE >= 70 %, connected) applied to the noise-free
    signal (partial-volume mixing included, before motion and noise), restricted to the lesion's
    own voxels (its label, or a partial-volume share > 0 in a voxel no other lesion took), keeping
    the 26-connected parts that touch its label. Why not only the core: an edge voxel that is half
    lesion still enhances >= 70 % beside a strongly enhancing lesion, and a measured FTV counts it.
    """
    from scipy import ndimage

    out = np.zeros(label.shape, dtype=np.int16)
    for i, pe in pe_maps.items():
        r, k = rasters[i], i + 1
        lab, own_by = label[r.box] == k, owner[r.box]
        own = lab | ((r.frac > 0) & ((own_by == 0) | (own_by == k)))
        enh = own & (pe >= ENHANCING_PE)
        parts, _ = ndimage.label(enh, structure=CONNECT26)
        touching = np.unique(parts[enh & lab])
        out[r.box][np.isin(parts, touching[touching > 0])] = k
    return out


def _orient(arr: np.ndarray, orientation: str, lead: int = 0) -> np.ndarray:
    perm, flips = ORIENTATIONS[orientation]
    out = np.transpose(arr, tuple(range(lead)) + tuple(lead + p for p in perm))
    for a in flips:
        out = np.flip(out, axis=lead + a)
    return np.ascontiguousarray(out)


def study_affine(shape, spacing, orientation: str) -> np.ndarray:
    """(z, y, x, 1) -> LPS of the study grid: axial canonical grid, permuted for sagittal."""
    nz, ny, nx = shape
    dz, dy, dx = spacing
    canon = np.eye(4)
    canon[:3, 0] = (0.0, 0.0, dz)  # slices go superior
    canon[:3, 1] = (0.0, dy, 0.0)  # rows go posterior
    canon[:3, 2] = (dx, 0.0, 0.0)  # columns go to the patient's left
    canon[:3, 3] = (-(nx - 1) / 2 * dx, -(ny - 1) / 2 * dy, -(nz - 1) / 2 * dz)
    perm, flips = ORIENTATIONS[orientation]
    m = np.zeros((4, 4))
    m[3, 3] = 1.0
    for a, c in enumerate(perm):
        if a in flips:
            m[c, a] = -1.0
            m[c, 3] = shape[c] - 1
        else:
            m[c, a] = 1.0
    return canon @ m


def _assemble(spec, data, label, tissue, clean_curves, enh_mask, shifts) -> PhantomCase:
    o = spec.orientation
    data = _orient(data, o, lead=1)
    label = _orient(label, o)
    enh_mask = _orient(enh_mask, o)
    n_enh = np.bincount(enh_mask.ravel(), minlength=len(spec.lesions) + 1)
    tissue = _orient(tissue, o)
    affine = study_affine(spec.shape, spec.spacing, o)
    vox_ml = float(abs(np.linalg.det(affine[:3, :3])) / 1000.0)
    timing, acq = spec.timing, spec.acq
    name = INVENTED_NAMES[spec.extra["patient"]]
    phi = PatientInfo(
        name=name,
        patient_id=spec.case_id.removesuffix("_fu"),
        birth_date=f"19{50 + spec.seed % 40:02d}0{1 + spec.seed % 9}15",
        accession="ACC" + uid_from(spec.case_id)[-8:],
        study_date=spec.study_date,
        institution="Synthetic Phantom Hospital (invented)",
    )
    root = uid_root_seed(spec.case_id, spec.seed)
    study_uid = dicom_uid(root, "study")
    study = Study(
        data=data,
        affine=affine,
        times=timing.times.copy(),
        phase_labels=list(timing.labels),
        protocol=Protocol(
            kind=spec.protocol,  # type: ignore[arg-type]
            temporal_resolution_s=float(round(timing.temporal_resolution_s, 3)),
            n_ultrafast=timing.n_ultrafast,
        ),
        acquisition=Acquisition(
            repetition_time_ms=acq["repetition_time_ms"],
            echo_time_ms=acq["echo_time_ms"],
            flip_angle_deg=acq["flip_angle_deg"],
            field_strength_t=acq["field_strength_t"],
            manufacturer="napari-breastmri phantom",
        ),
        phi=phi,
        source=f"phantom:{spec.seed}" + (":follow_up" if spec.exam == "follow_up" else ""),
        study_uid=study_uid,
        series_uids=[dicom_uid(root, "series", p) for p in range(len(timing.labels))],
        meta={
            "case_id": spec.case_id,
            "demo_label": DEMO_LABEL,
            "phantom_seed": spec.seed,
            "injection_time_s": round(timing.injection_s, 3),
            "relaxivity_per_mM_s": acq["relaxivity_per_mM_s"],
            "hematocrit": acq["hct"],
            "fat_saturation": spec.anatomy.fat_sat,
            "orientation": o,
            "exam": spec.exam,
        },
    )
    geom = lesion_geometry(label, len(spec.lesions))
    lesions_truth = []
    for i, les in enumerate(spec.lesions, start=1):
        bbox, center, n_vox = geom[i - 1]
        lesions_truth.append(
            {
                "id": i,
                "label": i,
                "bbox": [int(v) for v in bbox],
                "type": les.kind,
                "shape": les.shape,
                "diagnosis": les.diagnosis,
                "malignant": bool(les.malignant),
                "role": les.role,
                "side": les.side,
                "curve_type": P.curve_type(clean_curves[i - 1], timing),
                "curve_note": les.curve_note,
                "kinetics": {
                    "ktrans_per_min": round(les.ktrans, 5),
                    "ve": round(les.ve, 5),
                    "vp": round(les.vp, 5),
                    "kep_per_min": round(les.ktrans / les.ve, 5),
                    "t10_s": les.t10(acq["field_strength_t"]),
                    "ktrans_heterogeneity": round(les.heterogeneity, 4),
                },
                "diameter_mm": round(les.diameter, 3),
                "volume_ml": round(n_vox * vox_ml, 5),
                "enhancing_volume_ml": round(int(n_enh[i]) * vox_ml, 5),
                "center_zyx": center,
                "mean_curve": [round(float(v), 3) for v in clean_curves[i - 1]],
            }
        )
    truth = {
        "case_id": spec.case_id,
        "seed": spec.seed,
        "generator": GENERATOR,
        "demo_label": DEMO_LABEL,
        "exam": spec.exam,
        "protocol": spec.protocol,
        "orientation": o,
        "shape": [int(s) for s in label.shape],
        "spacing_mm": [round(float(s), 5) for s in study.spacing],
        "affine": [[round(float(v), 6) for v in row] for row in affine],
        "times_s": [float(t) for t in timing.times],
        "phase_labels": list(timing.labels),
        "injection_time_s": round(timing.injection_s, 3),
        "early_phase": timing.labels[P.early_phase(timing)],
        "acquisition": {k: v for k, v in acq.items()},
        "anatomy": {
            "density": spec.anatomy.density,
            "bpe": spec.anatomy.bpe,
            "fat_saturation": spec.anatomy.fat_sat,
            "snr": round(spec.snr, 3),
            "motion_mm": round(spec.motion_mm, 3),
            "motion_shifts_vox": shifts,
        },
        "labels": spec.labels.as_dict(),
        "correlates": spec.extra.get("correlates", {}),
        "lesions": lesions_truth,
        "lymph_nodes": [
            {
                "side": n.side,
                "long_mm": round(n.long_mm, 2),
                "short_mm": round(n.short_mm, 2),
                "enhancing": n.enhancing,
            }
            for n in spec.nodes
        ],
        "follow_up": None,
        "baseline": spec.case_id.removesuffix("_fu") if spec.exam == "follow_up" else None,
    }
    return PhantomCase(study=study, label_mask=label, truth=truth, tissue=tissue, enhancing_mask=enh_mask)


def lesion_geometry(label: np.ndarray, n: int) -> list[tuple[list[int], list[float], int]]:
    """(bbox [z0, y0, x0, z1, y1, x1] end exclusive, centre of mass (z, y, x), voxel count) per label."""
    objs = ndimage.find_objects(label, max_label=n)
    out = []
    for i, sl in enumerate(objs, start=1):
        if sl is None:
            out.append(([0] * 6, [0.0, 0.0, 0.0], 0))
            continue
        inside = label[sl] == i
        com = ndimage.center_of_mass(inside)
        out.append(
            (
                [int(x.start) for x in sl] + [int(x.stop) for x in sl],
                [round(float(c + x.start), 3) for c, x in zip(com, sl)],
                int(inside.sum()),
            )
        )
    return out


def _unorient(arr: np.ndarray, orientation: str, lead: int = 0) -> np.ndarray:
    """Inverse of :func:`_orient`: study grid back to the canonical axial grid."""
    perm, flips = ORIENTATIONS[orientation]
    out = arr
    for a in flips:
        out = np.flip(out, axis=lead + a)
    inv = np.argsort(perm)
    return np.transpose(out, tuple(range(lead)) + tuple(lead + int(p) for p in inv))


def reorient(case: PhantomCase, orientation: str) -> PhantomCase:
    """The same case re-sliced on another grid orientation (pixels permuted, truth re-derived)."""
    current = case.truth["orientation"]
    if orientation == current:
        return case
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {sorted(ORIENTATIONS)}, got {orientation!r}")
    perm, _ = ORIENTATIONS[current]
    inv = np.argsort(perm)
    cshape = tuple(int(case.study.shape[i]) for i in inv)
    cspacing = tuple(float(case.study.spacing[i]) for i in inv)

    def move(arr, lead=0):
        return _orient(_unorient(arr, current, lead), orientation, lead)

    label = move(case.label_mask)
    affine = study_affine(cshape, cspacing, orientation)
    study = replace(
        case.study,
        data=move(case.study.data, lead=1),
        affine=affine,
        meta={**case.study.meta, "orientation": orientation},
    )
    truth = {
        **case.truth,
        "orientation": orientation,
        "shape": [int(v) for v in label.shape],
        "spacing_mm": [round(float(v), 5) for v in study.spacing],
        "affine": [[round(float(v), 6) for v in row] for row in affine],
    }
    geom = lesion_geometry(label, len(case.truth["lesions"]))
    truth["lesions"] = [
        {**les, "bbox": g[0], "center_zyx": g[1]} for les, g in zip(case.truth["lesions"], geom)
    ]
    fu = reorient(case.follow_up, orientation) if case.follow_up is not None else None
    tissue = move(case.tissue) if case.tissue is not None else None
    enh = move(case.enhancing_mask) if case.enhancing_mask is not None else None
    return PhantomCase(
        study=study, label_mask=label, truth=truth, follow_up=fu, tissue=tissue, enhancing_mask=enh
    )


__all__ = ["PhantomCase", "generate_case", "study_affine", "uid_from", "grid_coords"]
