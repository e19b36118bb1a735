"""Quantitative Tofts maps of a region of a study: signal -> concentration -> batched fits.

Why a wrapper: the viewer's "Ktrans" map and the report need one call that takes a Study and a
box or mask and knows where TR, flip angle, relaxivity and the AIF come from. T10 is not in a
DCE series, so the caller gives it (one value, or a map); the population (Parker) AIF stands in
for a measured one, on a 1 s grid because conventional phases are too sparse to sample it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import KineticsError
from ..types import Study
from .fit import fit_tofts
from .maps import _roi_mask, check_study
from .physics import DEFAULT_HCT, parker_aif_plasma, signal_to_concentration

#: gadolinium-based agents at 1.5 T, /mM/s (used when neither the caller nor the study says)
DEFAULT_R1 = 4.5


@dataclass
class FitSettings:
    """What :func:`tofts_maps` used, so that the numbers can be reproduced and reported."""

    t10_s: float | None
    r1: float
    tr_s: float
    fa_deg: float
    hct: float
    aif_delay_s: float | None


@dataclass
class ToftsMaps:
    """Ktrans, ve, kep (and vp) maps on the study grid (0 outside the fitted voxels) and the ROI fit."""

    maps: dict[str, np.ndarray]
    mask: np.ndarray
    roi_fit: dict[str, float]
    roi_concentration: np.ndarray
    settings: FitSettings
    warnings: list[str] = field(default_factory=list)


def _acquisition(study: Study, r1: float | None) -> tuple[float, float, float]:
    acq = study.acquisition
    if not acq.repetition_time_ms or not acq.flip_angle_deg:
        raise KineticsError(
            "Quantitative kinetics need the repetition time and flip angle, which this study does not "
            "record; set study.acquisition.repetition_time_ms and flip_angle_deg."
        )
    r1 = r1 if r1 is not None else float(study.meta.get("relaxivity_per_mM_s", DEFAULT_R1))
    return acq.repetition_time_ms / 1000.0, float(acq.flip_angle_deg), r1


def tofts_maps(
    study: Study,
    roi: object,
    *,
    t10_s: float | np.ndarray,
    r1: float | None = None,
    hct: float | None = None,
    aif_delay_s: float | None = None,
    extended: bool | None = None,
    n_baseline: int = 1,
    step_s: float = 2.0,
) -> ToftsMaps:
    """Fit the (extended) Tofts model in every voxel of ``roi`` and to the ROI's mean curve.

    ``aif_delay_s``: when the bolus starts (s after the first phase); default the study's
    ``meta["injection_time_s"]`` if known, else fitted (0-120 s) per voxel. ``extended``: default
    only with at least 10 phases; with a handful of conventional phases vp and Ktrans trade off
    (a 0.35 vp with a 0.07 Ktrans fits a 0.45 Ktrans curve as well), so the standard model is used.
    """
    check_study(study)
    extended = study.n_phases >= 10 if extended is None else extended
    tr_s, fa_deg, r1 = _acquisition(study, r1)
    hct = hct if hct is not None else float(study.meta.get("hematocrit", DEFAULT_HCT))
    m = _roi_mask(study.shape, roi)
    sig = study.data[:, m].T.astype(np.float64)  # (N, T)
    t10 = np.asarray(t10_s, dtype=float)
    t10_v = t10[m] if t10.shape == study.shape else np.broadcast_to(t10, sig.shape[:1])
    good = np.all(np.isfinite(sig), axis=1) & (sig[:, :n_baseline].mean(axis=1) > 0)
    notes = []
    if not good.all():
        notes.append(f"{int((~good).sum())} voxels with NaN or non-positive baseline signal were not fitted.")
    if not good.any():
        raise KineticsError("No voxel of the region has a usable signal curve.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        conc = signal_to_concentration(sig[good], t10_v[good], r1, tr_s, fa_deg, n_baseline)
    t = np.asarray(study.times, float)
    t_cp = np.arange(0.0, t[-1] + step_s, step_s)
    delay = aif_delay_s if aif_delay_s is not None else study.meta.get("injection_time_s")
    cp = parker_aif_plasma(t_cp, hct=hct, delay_s=float(delay or 0.0))
    if delay is not None:
        cp = np.where(t_cp >= float(delay), cp, 0.0)
    kwargs = {"t_cp": t_cp, "fit_delay": delay is None, "max_delay_s": 120.0, "delay_step_s": 2.0}
    res = fit_tofts(t, conc, cp, extended, **kwargs)
    bad_conc = ~np.all(np.isfinite(conc), axis=1)
    if bad_conc.any():
        notes.append(f"{int(bad_conc.sum())} voxels have signal above the SPGR ceiling (T10 too long?).")
    names = ["Ktrans", "ve", "kep"] + (["vp"] if extended else [])
    maps = {name: np.zeros(study.shape, np.float32) for name in names}
    fitted = np.zeros(study.shape, bool)
    idx = np.flatnonzero(m.ravel())[good]
    ok = np.isfinite(res["Ktrans"])
    for name in names:
        maps[name].reshape(-1)[idx[ok]] = res[name][ok]
    fitted.reshape(-1)[idx[ok]] = True
    mean_sig = sig[good].mean(axis=0)
    t10_mean = float(np.mean(t10_v[good]))
    mean_conc = signal_to_concentration(mean_sig, t10_mean, r1, tr_s, fa_deg, n_baseline)
    roi_fit = fit_tofts(t, mean_conc, cp, extended, **kwargs) if np.all(np.isfinite(mean_conc)) else {}
    return ToftsMaps(
        maps=maps,
        mask=fitted,
        roi_fit={k: float(v) for k, v in roi_fit.items()},
        roi_concentration=mean_conc,
        settings=FitSettings(t10_mean, r1, tr_s, fa_deg, hct, None if delay is None else float(delay)),
        warnings=notes,
    )
