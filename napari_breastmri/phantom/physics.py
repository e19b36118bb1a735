"""Contrast physics glue: protocol timing, tissue parameters, per-component signal tables.

Why tables: every voxel is a mixture of at most three *components* (a base tissue, fibroglandular
tissue, and one overlay: lesion, node or oedema), and each component has one kinetic curve. So the
kinetics module's forward model (Parker AIF -> extended Tofts -> spoiled gradient echo) runs on a
few dozen parameter sets on a fine time grid, and the image is a per-phase table lookup plus a
mix: ~50 ms per phase for a default grid instead of a Tofts convolution per voxel.

The physics itself is :mod:`napari_breastmri.kinetics` (``parker_aif_plasma``,
``tofts_concentration``, ``spgr_signal``): the phantom and the fits share one forward model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import kinetics as kin
from .anatomy import AIR, BLOOD, BONE, FAT, LUNG, MUSCLE, SKIN

HCT = 0.42
#: T1-shortening relaxivity (/mM/s) of a gadolinium agent, by field strength
RELAXIVITY = {1.5: 4.5, 3.0: 4.0}


@dataclass(frozen=True)
class Tissue:
    """Relative proton density, T10 (s) at 1.5 T and 3 T, and extended-Tofts parameters."""

    pd: float
    t10_15: float
    t10_30: float
    ktrans: float  # /min
    ve: float
    vp: float

    def t10(self, field_t: float) -> float:
        return self.t10_15 if field_t < 2.0 else self.t10_30


#: literature-flavoured values (fat T1 ~ 0.26/0.37 s, glandular ~1.2/1.45 s, blood ~1.45/1.85 s)
TISSUES: dict[int, Tissue] = {
    AIR: Tissue(0.0, 1.0, 1.0, 0.0, 0.1, 0.0),
    FAT: Tissue(1.0, 0.26, 0.37, 0.004, 0.05, 0.002),
    SKIN: Tissue(0.8, 0.9, 1.1, 0.03, 0.3, 0.01),
    MUSCLE: Tissue(0.75, 1.0, 1.4, 0.06, 0.12, 0.02),
    BONE: Tissue(0.35, 0.5, 0.6, 0.02, 0.1, 0.01),
    LUNG: Tissue(0.04, 1.2, 1.4, 0.0, 0.1, 0.0),
    BLOOD: Tissue(0.9, 1.45, 1.85, 0.0, 0.1, 1.0 - HCT),  # vp (1-Hct) * cp = whole-blood AIF
}
FGT = Tissue(0.85, 1.2, 1.45, 0.02, 0.35, 0.01)
#: background parenchymal enhancement: Ktrans of the fibroglandular tissue (/min)
BPE_KTRANS = {"minimal": 0.008, "mild": 0.025, "moderate": 0.055, "marked": 0.1}
NODE_NORMAL = Tissue(0.8, 1.0, 1.3, 0.1, 0.3, 0.03)
NODE_POSITIVE = Tissue(0.85, 1.1, 1.4, 0.55, 0.3, 0.06)
EDEMA = Tissue(0.95, 1.8, 2.2, 0.035, 0.6, 0.01)
NECROSIS = Tissue(0.9, 2.0, 2.5, 0.01, 0.5, 0.0)
#: fat-suppressed sequences keep this share of the fat signal
FAT_SAT_RESIDUAL = 0.12


@dataclass
class Timing:
    """Phase times (s from the start of the first phase), labels and the injection time."""

    times: np.ndarray
    labels: list[str]
    injection_s: float
    protocol: str
    temporal_resolution_s: float
    n_ultrafast: int


def draw_timing(rng: np.random.Generator, protocol: str, n_post: int | None = None) -> Timing:
    """Conventional: pre + 4-5 posts 60-90 s apart; ultrafast: pre, 10-20 frames of 3-7 s, then posts."""
    if protocol == "conventional":
        dt = float(rng.uniform(60.0, 90.0))
        inj = float(rng.uniform(0.45, 0.6) * dt)
        n = 5 if n_post is None else n_post
        times = [0.0] + [inj + k * dt for k in range(1, n + 1)]
        labels = ["pre"] + [f"post{k}" for k in range(1, n + 1)]
        return Timing(np.round(np.array(times), 2), labels, inj, protocol, dt, 0)
    if protocol == "ultrafast":
        dt_uf = float(rng.uniform(3.0, 7.0))
        n_uf = int(rng.integers(10, 21))
        dt = float(rng.uniform(60.0, 90.0))
        inj = float(rng.uniform(10.0, 20.0))
        n = 4 if n_post is None else n_post
        uf = [inj + 2.0 + k * dt_uf for k in range(n_uf)]
        posts = [uf[-1] + k * dt for k in range(1, n + 1)]
        times = [0.0, *uf, *posts]
        labels = ["pre"] + [f"uf{k}" for k in range(1, n_uf + 1)] + [f"post{k}" for k in range(1, n + 1)]
        return Timing(np.round(np.array(times), 2), labels, inj, protocol, dt_uf, n_uf)
    raise ValueError(f"protocol must be 'conventional' or 'ultrafast', got {protocol!r}")


def draw_acquisition(rng: np.random.Generator) -> dict:
    """Field strength, TR/TE/flip angle of a 3D spoiled gradient echo DCE sequence."""
    field_t = float(rng.choice([1.5, 3.0]))
    return {
        "field_strength_t": field_t,
        "repetition_time_ms": float(np.round(rng.uniform(4.0, 5.5), 2)),
        "echo_time_ms": float(np.round(rng.uniform(1.6, 2.5), 2)),
        "flip_angle_deg": float(rng.choice([10.0, 12.0, 15.0])),
        "relaxivity_per_mM_s": RELAXIVITY[field_t],
        "hct": HCT,
    }


def concentration_curves(timing: Timing, params: np.ndarray, shrink_to: float = 0.5) -> np.ndarray:
    """Tissue concentration (mM) at the phase times for each (Ktrans, ve, vp) row of ``params``.

    The Tofts convolution runs on a 0.5 s grid (the phase times are too sparse for it) with the
    Parker plasma AIF starting at the injection time, then is sampled at the phase times.
    """
    t_end = float(timing.times[-1]) + 1.0
    t_fine = np.arange(0.0, t_end + shrink_to, shrink_to)
    cp = kin.parker_aif_plasma(t_fine, hct=HCT, delay_s=timing.injection_s)
    cp = np.where(t_fine >= timing.injection_s, cp, 0.0)
    ct = kin.tofts_concentration(t_fine, cp, params[:, 0], params[:, 1], params[:, 2])
    out = np.empty((params.shape[0], len(timing.times)))
    for i in range(params.shape[0]):
        out[i] = np.interp(timing.times, t_fine, ct[i])
    return out


def signal_table(pd: np.ndarray, t10: np.ndarray, conc: np.ndarray, acq: dict) -> np.ndarray:
    """(phase, component) relative signal: pd * SPGR(T10, C(t)) with the case's TR / FA / r1."""
    s = kin.spgr_signal(
        pd[:, None],
        t10[:, None],
        conc,
        acq["relaxivity_per_mM_s"],
        acq["repetition_time_ms"] / 1000.0,
        acq["flip_angle_deg"],
    )
    return np.ascontiguousarray(s.T.astype(np.float32))


def curve_type(signal: np.ndarray, timing: Timing) -> str:
    """Kinetic curve type of a noise-free mean signal, by the kinetics module's own rule.

    The truth is classified with :func:`napari_breastmri.kinetics.classify_curves` on the phases
    that :func:`napari_breastmri.kinetics.phase_indices` picks (early = nearest 90 s after the
    pre-contrast phase, late = last; BI-RADS +-10 % band, enhancing = PE >= 50 %), so a map that
    recovers the physics recovers the truth.
    """
    s = np.asarray(signal, dtype=float)
    i_pre, i_early, i_late = kin.phase_indices(timing.times)
    if s[i_pre] <= 0 or s[i_early] <= 0:
        return "none"
    pe = 100.0 * (s[i_early] - s[i_pre]) / s[i_pre]
    change = 100.0 * (s[i_late] - s[i_early]) / s[i_early]
    code = int(kin.classify_curves(np.array([pe]), np.array([change]))[0])
    return kin.CURVE_NAMES[code]


def early_phase(timing: Timing) -> int:
    """The early post-contrast phase of PE, FTV and curve types (the kinetics module's choice)."""
    return kin.phase_indices(timing.times)[1]
