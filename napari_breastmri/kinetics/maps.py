"""Semi-quantitative kinetic maps on the study grid: subtraction, MIP, PE/SER, curve types, curves.

Definitions (documented in docs/kinetics.md, used by the viewer, report and explain code):

* pre = phase 0; **early** = the post-contrast phase whose time is nearest 90 s after the
  pre-contrast phase; **late** = the last phase. For an ultrafast study followed by
  conventional phases the same rule holds on the merged time axis.
* PE (percent enhancement, the I-SPY "early" enhancement) = 100 (S_early - S_pre) / S_pre.
* SER = (S_early - S_pre) / (S_late - S_pre), clipped to [0, 10]; 10 where the late enhancement
  is not positive (a strong washout).
* wash-in slope = PE / (t_early - t_pre) in %/min.
* washout = 100 (S_early - S_late) / S_early in % (positive when the signal falls).
* time to peak = time of the brightest post-contrast phase minus the pre-contrast time, s.
* curve types (BI-RADS, relative to the early signal): late change > +10 % persistent,
  within +-10 % plateau, < -10 % washout; only for enhancing voxels (PE >= a threshold,
  50 % by default), 0 elsewhere.

Voxels where the maps are undefined (pre-contrast signal <= 0, NaN anywhere in the curve) hold 0
and are False in the ``mask`` entry; NaNs in the input raise a warning. Work runs in z-slabs so
that a 1 GB study needs little more than its output maps in memory.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import KineticsError
from ..types import Study

#: map names returned by :func:`enhancement_maps`
MAP_NAMES = ("pe", "max_enhancement", "ser", "washin", "washout", "ttp")
CURVE_NAMES = {0: "none", 1: "persistent", 2: "plateau", 3: "washout"}
EARLY_TARGET_S = 90.0
#: curve-type defaults: enhancing = PE >= 50 %, BI-RADS band +-10 %, background 0.1 x P95(pre)
CURVE_MIN_ENHANCEMENT_PCT = 50.0
CURVE_BAND_PCT = 10.0
CURVE_BACKGROUND_FRACTION = 0.1
_CHUNK_VOXELS = 1 << 16


def check_study(study: Study) -> None:
    """Raise :class:`KineticsError` when a study cannot carry kinetics (phases, times)."""
    if study.n_phases < 2:
        raise KineticsError(
            f"Kinetic maps need a pre-contrast and at least one post-contrast phase; this study has "
            f"{study.n_phases} phase. Load the whole dynamic series."
        )
    t = np.asarray(study.times, dtype=float)
    if not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
        raise KineticsError(
            f"Phase times must increase strictly, got {np.round(t, 1).tolist()} s; check the acquisition "
            "times of the series or set study.times by hand."
        )


def phase_indices(times: np.ndarray) -> tuple[int, int, int]:
    """(pre, early, late) phase indices: 0, the phase nearest 90 s after pre, and the last."""
    t = np.asarray(times, dtype=float)
    post = np.arange(1, t.size)
    early = int(post[np.argmin(np.abs(t[1:] - t[0] - EARLY_TARGET_S))])
    return 0, early, t.size - 1


def _chunks(n: int, step: int = _CHUNK_VOXELS) -> list[slice]:
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def _map_threads(func, slabs: list[slice]) -> None:  # type: ignore[no-untyped-def]
    """Run ``func(slab)`` over slabs on two threads (numpy releases the GIL in its loops)."""
    if len(slabs) < 2:
        for s in slabs:
            func(s)
        return
    from concurrent.futures import ThreadPoolExecutor

    half = (len(slabs) + 1) // 2  # two contiguous halves: few tasks, little scheduling overhead

    def many(part: list[slice]) -> None:
        for s in part:
            func(s)

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(many, [slabs[:half], slabs[half:]]))


def subtractions(study: Study) -> np.ndarray:
    """Post minus pre for every post-contrast phase: float32 (P-1, z, y, x)."""
    check_study(study)
    return np.subtract(study.data[1:], study.data[0][None], dtype=np.float32)


def mip(
    volume: np.ndarray, axis: int = 0, slab_mm: float | None = None, affine: np.ndarray | None = None
) -> np.ndarray:
    """Maximum intensity projection along ``axis``.

    Without ``slab_mm`` the full projection (the axis removed). With ``slab_mm`` a sliding thin
    slab MIP of the same shape as ``volume``: each slice holds the maximum over the slices within
    the slab centred on it; the slab thickness in voxels comes from the affine's spacing.
    """
    vol = np.asarray(volume)
    if slab_mm is None:
        return np.nanmax(vol, axis=axis) if np.isnan(vol).any() else vol.max(axis=axis)
    if affine is None:
        raise KineticsError("A thin-slab MIP needs the volume's affine to turn millimetres into slices.")
    from scipy.ndimage import maximum_filter1d

    from ..geometry import spacing_from_affine

    if vol.ndim != 3:
        raise KineticsError(f"A thin-slab MIP takes one (z, y, x) volume, got shape {vol.shape}.")
    spacing = spacing_from_affine(np.asarray(affine, dtype=float))[axis % 3]
    n = max(1, int(round(slab_mm / spacing)))
    return maximum_filter1d(vol, size=n, axis=axis, mode="nearest")


def enhancement_maps(study: Study, *, threads: bool = True) -> dict[str, np.ndarray]:
    """PE, max enhancement, SER, wash-in, washout, time to peak (float32), ``mask`` (bool), ``curve_type``.

    ``curve_type`` is the int8 map of :func:`curve_types` with its default thresholds, computed
    in the same pass because the pass over memory is what costs.

    See the module docstring for the definitions; ``early``/``late`` phase indices and times are
    recorded in the returned dict's companion :func:`phase_indices`.
    """
    check_study(study)
    data = study.data
    t = study.times
    i_pre, i_early, i_late = phase_indices(t)
    shape = study.shape
    out = {name: np.empty(shape, np.float32) for name in MAP_NAMES}
    mask = np.empty(shape, bool)
    inv_dt_min = np.float32(60.0 / (t[i_early] - t[i_pre]))
    t_post = (t[1:] - t[0]).astype(np.float32)
    nan_seen = [False]

    curve = np.empty(shape, np.int8)
    bg = _background_level(data[i_pre], CURVE_BACKGROUND_FRACTION)
    flat = data.reshape(data.shape[0], -1)
    cflat = curve.reshape(-1)
    oflat = {name: arr.reshape(-1) for name, arr in out.items()}
    mflat = mask.reshape(-1)

    def work(s: slice) -> None:
        # Chunks of 64k voxels keep every temporary in the CPU cache (numexpr's trick by hand): the
        # study is ~1 GB, so memory traffic, not arithmetic, sets the time. Invalid voxels get 0
        # through inv_pre = 0.
        pre = flat[i_pre, s]
        early = flat[i_early, s]
        late = flat[i_late, s]
        peak = flat[1, s].copy()
        ttp = oflat["ttp"][s]
        ttp.fill(t_post[0])
        for p in range(2, data.shape[0]):
            brighter = flat[p, s] > peak
            np.maximum(peak, flat[p, s], out=peak)  # propagates NaN: one check below finds any
            ttp[brighter] = t_post[p - 1]  # (np.copyto with where= is 30x slower here)
        valid = np.greater(pre, 0, out=mflat[s])
        has_nan = bool(np.isnan(peak).any() or np.isnan(pre).any())
        if has_nan:
            nan_seen[0] = True
            valid &= np.isfinite(flat[1:, s]).all(axis=0)
        inv_pre = np.zeros(pre.shape, np.float32)
        np.divide(np.float32(100.0), pre, out=inv_pre, where=valid)
        e_early = np.subtract(early, pre)
        pe = np.multiply(e_early, inv_pre, out=oflat["pe"][s])
        np.multiply(np.subtract(peak, pre, out=peak), inv_pre, out=oflat["max_enhancement"][s])
        np.multiply(pe, inv_dt_min, out=oflat["washin"][s])
        e_late = np.subtract(late, pre)
        ser = oflat["ser"][s]
        ser.fill(10.0)
        np.divide(e_early, e_late, out=ser, where=e_late > 0)
        np.clip(ser, 0, 10, out=ser)
        ser *= (e_early > 0) & valid
        wo = oflat["washout"][s]
        wo.fill(0.0)
        np.divide(np.subtract(early, late, out=e_late), early, out=wo, where=valid & (early > 0))
        wo *= np.float32(100.0)
        ttp *= valid
        if has_nan:
            for name in MAP_NAMES:
                np.copyto(oflat[name][s], 0, where=~valid)
        ct = cflat[s]
        ct.fill(2)
        ct[wo < -CURVE_BAND_PCT] = 1
        ct[wo > CURVE_BAND_PCT] = 3
        ct *= (pe >= CURVE_MIN_ENHANCEMENT_PCT) & (pre >= bg)

    chunks = _chunks(flat.shape[1])
    (_map_threads if threads else lambda f, ss: [f(x) for x in ss])(work, chunks)
    if nan_seen[0]:
        warnings.warn(
            f"The study has NaN voxels; {int((~mask).sum())} voxels are masked out of the kinetic maps.",
            RuntimeWarning,
            stacklevel=2,
        )
    if not mask.any():
        raise KineticsError(
            "No voxel has a positive, finite pre-contrast signal; the study cannot carry kinetics."
        )
    out["mask"] = mask  # type: ignore[assignment]
    out["curve_type"] = curve
    return out


def classify_curves(
    pe: np.ndarray, late_change_pct: np.ndarray, min_enhancement_pct: float = 50.0, band_pct: float = 10.0
) -> np.ndarray:
    """BI-RADS curve type codes (int8) from early enhancement and late change (% of early signal)."""
    enhancing = pe >= min_enhancement_pct
    codes = np.where(late_change_pct > band_pct, 1, np.where(late_change_pct < -band_pct, 3, 2))
    return np.where(enhancing, codes, 0).astype(np.int8)


def _background_level(pre: np.ndarray, fraction: float) -> float:
    """``fraction`` x the 95th percentile of the pre-contrast image (a sample of its slices)."""
    sample = pre[:: max(1, pre.shape[0] // 8)]
    finite = sample[np.isfinite(sample)]
    return fraction * float(np.percentile(finite, 95)) if finite.size else 0.0


def curve_types(
    study: Study,
    maps: dict[str, np.ndarray] | None = None,
    *,
    min_enhancement_pct: float = CURVE_MIN_ENHANCEMENT_PCT,
    band_pct: float = CURVE_BAND_PCT,
    background_fraction: float = CURVE_BACKGROUND_FRACTION,
) -> np.ndarray:
    """Per-voxel curve type: int8 0 none/non-enhancing, 1 persistent, 2 plateau, 3 washout.

    Voxels whose pre-contrast signal is below ``background_fraction`` x the 95th percentile of
    the pre-contrast image (air, noise) count as non-enhancing: their PE is noise over noise.
    With the default thresholds the map computed by :func:`enhancement_maps` is reused.
    """
    maps = maps if maps is not None else enhancement_maps(study)
    defaults = (CURVE_MIN_ENHANCEMENT_PCT, CURVE_BAND_PCT, CURVE_BACKGROUND_FRACTION)
    if "curve_type" in maps and (min_enhancement_pct, band_pct, background_fraction) == defaults:
        return maps["curve_type"]
    pre = study.data[0]
    bg = _background_level(pre, background_fraction)
    pe = np.where(pre >= bg, maps["pe"], 0)
    return classify_curves(pe, -maps["washout"], min_enhancement_pct, band_pct)


def _roi_mask(shape: tuple[int, int, int], roi: object) -> np.ndarray:
    """A boolean mask from a point (z, y, x), a box [z0, y0, x0, z1, y1, x1], or a mask."""
    if roi is None:
        return np.ones(shape, bool)
    arr = np.asarray(roi)
    if arr.shape == shape:
        return arr.astype(bool)
    if arr.ndim == 1 and arr.size in (3, 6):
        idx = np.round(arr).astype(int)
        m = np.zeros(shape, bool)
        if arr.size == 3:
            if np.any(idx < 0) or np.any(idx >= np.array(shape)):
                raise KineticsError(f"Point {idx.tolist()} lies outside the study grid {shape}.")
            m[tuple(idx)] = True
            return m
        lo = np.clip(idx[:3], 0, shape)
        hi = np.clip(idx[3:], 0, shape)
        if np.any(hi <= lo):
            raise KineticsError(f"Box {idx.tolist()} is empty or outside the study grid {shape}.")
        m[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
        return m
    raise KineticsError(
        f"A region must be a point (z, y, x), a box [z0, y0, x0, z1, y1, x1] or a mask of shape {shape}; "
        f"got an array of shape {arr.shape}."
    )


@dataclass
class Curve:
    """The mean time-signal curve of a region, for the viewer's plot and the report."""

    times: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    enhancement_pct: np.ndarray
    curve_type: str
    n_voxels: int
    early_index: int
    late_index: int


def curve(study: Study, roi: object, *, min_enhancement_pct: float = 50.0, band_pct: float = 10.0) -> Curve:
    """Mean (and std) signal over a point, box or mask, its relative enhancement and curve type."""
    check_study(study)
    m = _roi_mask(study.shape, roi)
    if not m.any():
        raise KineticsError("The region is empty; draw a box or mask with at least one voxel.")
    vals = study.data[:, m].astype(np.float64)
    finite = np.isfinite(vals).all(axis=0)
    if not finite.any():
        raise KineticsError("Every voxel of the region has NaN signal.")
    if not finite.all():
        warnings.warn(
            f"{int((~finite).sum())} voxels with NaN signal left out of the curve.",
            RuntimeWarning,
            stacklevel=2,
        )
    vals = vals[:, finite]
    mean = vals.mean(axis=1)
    i_pre, i_early, i_late = phase_indices(study.times)
    if mean[i_pre] <= 0:
        raise KineticsError(
            "The region's pre-contrast signal is zero or negative; its enhancement is undefined."
        )
    enh = 100.0 * (mean - mean[i_pre]) / mean[i_pre]
    late_change = 100.0 * (mean[i_late] - mean[i_early]) / mean[i_early]
    code = int(classify_curves(np.array(enh[i_early]), np.array(late_change), min_enhancement_pct, band_pct))
    return Curve(
        times=np.asarray(study.times, float),
        mean=mean,
        std=vals.std(axis=1),
        enhancement_pct=enh,
        curve_type=CURVE_NAMES[code],
        n_voxels=int(finite.sum()),
        early_index=i_early,
        late_index=i_late,
    )


def bolus_arrival(study: Study, *, top_fraction: float = 1e-3, level: float = 0.1) -> float:
    """Bolus arrival time (s from the first phase) from the fastest-enhancing voxels (vessels).

    The mean curve of the ``top_fraction`` voxels with the largest maximum enhancement stands in
    for the arterial curve; arrival is the (linearly interpolated) time it first reaches
    ``level`` of its maximum enhancement.
    """
    check_study(study)
    t = np.asarray(study.times, float)
    pre = study.data[0]
    peak = study.data[1:].max(axis=0)
    score = np.where(np.isfinite(peak) & np.isfinite(pre), peak - pre, -np.inf).ravel()
    k = max(1, int(score.size * top_fraction))
    idx = np.argpartition(score, -k)[-k:]
    art = study.data.reshape(study.n_phases, -1)[:, idx].astype(float).mean(axis=1)
    enh = art - art[0]
    if enh.max() <= 0:
        raise KineticsError("No voxel enhances; the bolus arrival cannot be found.")
    return float(_first_crossing(t, enh[None], level * enh.max())[0])


def _effective_steps(t: np.ndarray) -> np.ndarray:
    """Start time of each interval t[i-1] -> t[i], no longer than the typical frame spacing.

    Why: the pre-contrast phase of an ultrafast study is often acquired well before the first
    ultrafast frame; interpolating across that gap would date the enhancement seconds too early.
    The signal is taken as baseline until one typical frame spacing before the next frame.
    """
    dt = np.diff(t)
    typical = float(np.median(dt))
    return np.concatenate([[t[0]], t[1:] - np.minimum(dt, typical)])


def _first_crossing(t: np.ndarray, y: np.ndarray, thr: np.ndarray | float) -> np.ndarray:
    """First time each curve y (N, T) reaches ``thr`` (linear interpolation); NaN if never."""
    thr = np.broadcast_to(np.asarray(thr, float), y.shape[:1])
    above = y >= thr[:, None]
    first = above.argmax(axis=1)
    never = ~above.any(axis=1)
    prev = np.maximum(first - 1, 0)
    rows = np.arange(y.shape[0])
    y0, y1 = y[rows, prev], y[rows, first]
    t0, t1 = _effective_steps(t)[first], t[first]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where((first > 0) & (y1 > y0), (thr - y0) / (y1 - y0), 0.0)
    out = t0 + np.clip(frac, 0, 1) * (t1 - t0)
    return np.where(never, np.nan, out)


def ultrafast_maps(
    study: Study, *, threshold_pct: float = 30.0, frames: Sequence[int] | None = None
) -> dict[str, np.ndarray | float]:
    """Ultrafast helpers: time to enhancement (s after bolus arrival), maximum slope (%/s), arrival.

    ``frames`` picks the phases to use (default: pre plus the ultrafast frames when the protocol
    says so, else all). ``tte`` is the time relative enhancement first reaches ``threshold_pct``
    minus the bolus arrival; voxels that never reach it hold 0 and are False in ``enhancing``.
    Across a long gap between the pre-contrast phase and the first frame the signal is taken as
    baseline until one frame spacing before that frame (for the crossing and the slope).
    """
    check_study(study)
    if frames is None:
        n_uf = study.protocol.n_ultrafast if study.protocol.kind == "ultrafast" else 0
        frames = list(range(0, n_uf + 1)) if n_uf > 0 else list(range(study.n_phases))
    frames = list(frames)
    t = np.asarray(study.times, float)[frames]
    arrival = bolus_arrival(study)
    data = study.data[frames]
    pre = data[0]
    valid = np.isfinite(data).all(axis=0) & (pre > 0)
    rel = np.float32(100.0) * (data - pre) / np.where(valid, pre, np.float32(1.0))
    rel = np.where(valid, rel, np.float32(0.0)).reshape(len(frames), -1).T
    slopes = np.diff(rel, axis=1) / (t[1:] - _effective_steps(t)[1:])
    cross = _first_crossing(t, rel, threshold_pct).reshape(study.shape)
    enhancing = valid & np.isfinite(cross)
    return {
        "tte": np.where(enhancing, np.maximum(cross - arrival, 0.0), 0.0).astype(np.float32),
        "max_slope": np.where(valid, slopes.max(axis=1).reshape(study.shape), 0.0).astype(np.float32),
        "enhancing": enhancing,
        "bolus_arrival_s": arrival,
    }
