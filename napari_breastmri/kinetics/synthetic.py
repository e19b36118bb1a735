"""A small synthetic DCE study made with the forward model, for tests, benchmarks and docs.

Why here: kinetics tests must not wait for the full phantom, and a study whose lesions have known
Ktrans, ve and curve types is the honest way to check the maps. Labelled with ``DEMO_LABEL``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..types import DEMO_LABEL, Acquisition, Protocol, Study
from .physics import parker_aif, spgr_signal, tofts_concentration

#: (Ktrans /min, ve, vp) giving clear persistent / plateau / washout curves with 90 s phases
CURVE_PARAMS = {"persistent": (0.1, 0.9, 0.02), "plateau": (0.2, 0.6, 0.03), "washout": (0.5, 0.4, 0.05)}
R1, TR_S, FA_DEG = 4.5, 0.0045, 12.0


@dataclass
class SyntheticLesion:
    centre_zyx: tuple[float, float, float]
    radius_mm: float
    kind: str = "washout"
    params: tuple[float, float, float] | None = None


@dataclass
class SyntheticTruth:
    label_mask: np.ndarray
    lesions: list[dict] = field(default_factory=list)


def synthetic_study(
    shape: tuple[int, int, int] = (16, 64, 64),
    *,
    spacing: tuple[float, float, float] = (2.0, 1.0, 1.0),
    times: np.ndarray | None = None,
    lesions: list[SyntheticLesion] | None = None,
    noise: float = 0.01,
    seed: int = 0,
    dtype: type = np.float32,
) -> tuple[Study, SyntheticTruth]:
    """A study with glandular background, an air border and spherical Tofts lesions.

    ``noise`` is the Gaussian noise sd as a fraction of the tissue's pre-contrast signal.
    """
    rng = np.random.default_rng(seed)
    times = np.array([0.0, 90.0, 180.0, 270.0, 360.0, 450.0]) if times is None else np.asarray(times, float)
    if lesions is None:
        c = np.array(shape) / 2
        lesions = [
            SyntheticLesion((c[0], c[1] * 0.6, c[2] * 0.6), 8.0, "persistent"),
            SyntheticLesion((c[0], c[1] * 0.6, c[2] * 1.4), 8.0, "plateau"),
            SyntheticLesion((c[0], c[1] * 1.4, c[2]), 8.0, "washout"),
        ]
    tf = np.arange(0.0, times[-1] + 1.0, 1.0)
    cp = parker_aif(tf, hct=0.42, delay_s=20.0)

    def curve(params: tuple[float, float, float]) -> np.ndarray:
        conc = tofts_concentration(tf, cp, *params)
        return np.interp(times, tf, conc)

    label = np.zeros(shape, np.int16)
    zz, yy, xx = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij")
    truth = []
    for i, les in enumerate(lesions, start=1):
        cz, cy, cx = (np.asarray(les.centre_zyx) * np.asarray(spacing)).tolist()
        inside = (zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 <= les.radius_mm**2
        label[inside & (label == 0)] = i
        params = les.params or CURVE_PARAMS[les.kind]
        truth.append({"id": i, "kind": les.kind, "Ktrans": params[0], "ve": params[1], "vp": params[2]})
    conc = np.zeros((len(times),) + shape, np.float64)
    conc += curve((0.01, 0.3, 0.0))[:, None, None, None]  # weakly enhancing gland
    for item in truth:
        m = label == item["id"]
        conc[:, m] = curve((item["Ktrans"], item["ve"], item["vp"]))[:, None]
    s0 = 1000.0
    sig = spgr_signal(s0, 1.2, conc, R1, TR_S, FA_DEG)
    sig += rng.normal(0.0, noise * sig[0].mean(), sig.shape)
    border = max(2, shape[2] // 16)
    sig[:, :, :, :border] = np.abs(rng.normal(0, 1.0, sig[:, :, :, :border].shape))  # air: noise only
    affine = np.diag([*spacing, 1.0])
    study = Study(
        data=sig.astype(dtype),
        affine=affine,
        times=times,
        phase_labels=["pre"] + [f"post{i}" for i in range(1, len(times))],
        protocol=Protocol("conventional", float(np.median(np.diff(times)))),
        acquisition=Acquisition(repetition_time_ms=TR_S * 1000, flip_angle_deg=FA_DEG),
        source="synthetic",
        study_uid="2.25.1234567",
        warnings=[DEMO_LABEL],
        meta={
            "demo": DEMO_LABEL,
            "t10_s": 1.2,
            "relaxivity_per_mM_s": R1,
            "s0": s0,
            "injection_time_s": 20.0,
        },
    )
    return study, SyntheticTruth(label, truth)
