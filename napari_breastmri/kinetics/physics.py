"""Forward physics of DCE-MRI: population AIF, Tofts model, spoiled gradient echo signal.

Why here and exact: the phantom generates its images with these functions and the fits in
:mod:`.fit` invert them, so both sides must agree to numerical precision. Times are seconds,
concentrations mM, Ktrans /min (the field's unit), relaxivity /mM/s.
"""

from __future__ import annotations

import numpy as np

from ..errors import KineticsError

#: Parker et al. 2006 (MRM 56:993) population AIF parameters; time in minutes, blood in mM.
PARKER = {
    "A1": 0.809,
    "A2": 0.330,
    "T1": 0.17046,
    "T2": 0.365,
    "sigma1": 0.0563,
    "sigma2": 0.132,
    "alpha": 1.050,
    "beta": 0.1685,
    "s": 38.078,
    "tau": 0.483,
}
#: default large-vessel haematocrit used to turn blood into plasma concentration
DEFAULT_HCT = 0.42


def _times(t_s: np.ndarray) -> np.ndarray:
    t = np.asarray(t_s, dtype=float)
    if t.ndim != 1 or t.size < 2:
        raise KineticsError(f"Expected a 1-D time axis with at least 2 points, got shape {t.shape}.")
    if not np.all(np.isfinite(t)):
        raise KineticsError("The time axis contains NaN or infinite values; check the phase times.")
    if np.any(np.diff(t) <= 0):
        raise KineticsError("Phase times are not strictly increasing; sort the phases or fix their times.")
    return t


def parker_aif(t_s: np.ndarray, hct: float | None = None, delay_s: float = 0.0) -> np.ndarray:
    """Parker 2006 population AIF at times ``t_s`` (s).

    Returns the whole-blood concentration (mM) as published; with ``hct`` given, the plasma
    concentration cp = cb / (1 - hct), which is what the Tofts model takes. ``delay_s`` shifts the
    curve later (bolus arrival); before the shifted start the curve is evaluated at negative
    times, as the published formula does (its tails are ~1e-8 mM there).
    """
    p = PARKER
    t = (np.asarray(t_s, dtype=float) - float(delay_s)) / 60.0
    g1 = p["A1"] / (p["sigma1"] * np.sqrt(2 * np.pi)) * np.exp(-((t - p["T1"]) ** 2) / (2 * p["sigma1"] ** 2))
    g2 = p["A2"] / (p["sigma2"] * np.sqrt(2 * np.pi)) * np.exp(-((t - p["T2"]) ** 2) / (2 * p["sigma2"] ** 2))
    with np.errstate(over="ignore"):
        sig = p["alpha"] * np.exp(-p["beta"] * t) / (1.0 + np.exp(-p["s"] * (t - p["tau"])))
    cb = g1 + g2 + sig
    if hct is None:
        return cb
    if not 0.0 <= hct < 1.0:
        raise KineticsError(f"Haematocrit must be in [0, 1), got {hct}.")
    return cb / (1.0 - hct)


def parker_aif_plasma(t_s: np.ndarray, hct: float = DEFAULT_HCT, delay_s: float = 0.0) -> np.ndarray:
    """Plasma concentration (mM) of the Parker AIF: cb / (1 - hct)."""
    return parker_aif(t_s, hct=hct, delay_s=delay_s)


def _lin_weights(x: np.ndarray, dt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact weights for one step of exp(-k*dt) recursion with piecewise-linear input.

    With x = k*dt, E = exp(-x): integral over the step = w0 * c_i + w1 * c_{i+1} where
    w1 = dt * (x - (1 - E)) / x^2 and w0 = dt * (1 - E) / x - w1. A series is used for small x
    so that k -> 0 (no washout) stays exact (trapezoid rule).
    """
    one_minus_e = -np.expm1(-x)
    small = x < 1e-4
    xs = np.where(small, 1.0, x)
    w1 = np.where(small, 0.5 - x / 6.0 + x * x / 24.0, (xs - one_minus_e) / (xs * xs))
    w_all = np.where(small, 1.0 - x / 2.0 + x * x / 6.0, one_minus_e / xs)
    return np.exp(-x), dt * (w_all - w1), dt * w1


def exp_conv(t_s: np.ndarray, cp: np.ndarray, k_per_s: np.ndarray) -> np.ndarray:
    """Exact convolution integral  int_0^t cp(tau) exp(-k (t - tau)) dtau  for linear-interpolated cp.

    ``cp`` is (T,) (shared AIF) or (..., T); ``k_per_s`` any shape broadcastable against
    ``cp.shape[:-1]``. Works for non-uniform times. The loop runs over time only; every step is a
    vector operation over all voxels, so a 10^4-voxel stack costs a few ms.
    """
    t = _times(t_s)
    cp = np.asarray(cp, dtype=float)
    k = np.asarray(k_per_s, dtype=float)
    batch = np.broadcast_shapes(k.shape, cp.shape[:-1])
    out = np.zeros(batch + (t.size,), dtype=float)
    kb = np.broadcast_to(k, batch)
    for i in range(t.size - 1):
        dt = t[i + 1] - t[i]
        decay, w0, w1 = _lin_weights(kb * dt, dt)
        out[..., i + 1] = out[..., i] * decay + w0 * cp[..., i] + w1 * cp[..., i + 1]
    return out


def cumulative_integral(t_s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Trapezoid running integral of ``y`` (..., T) over ``t_s`` (s); first value 0."""
    t = _times(t_s)
    y = np.asarray(y, dtype=float)
    inc = 0.5 * (y[..., 1:] + y[..., :-1]) * np.diff(t)
    return np.concatenate([np.zeros(y.shape[:-1] + (1,)), np.cumsum(inc, axis=-1)], axis=-1)


def tofts_concentration(
    t_s: np.ndarray,
    cp: np.ndarray,
    ktrans_per_min: np.ndarray | float,
    ve: np.ndarray | float,
    vp: np.ndarray | float = 0.0,
) -> np.ndarray:
    """(Extended) Tofts tissue concentration Ct(t) = vp cp + Ktrans int cp exp(-kep (t - tau)).

    Vectorised: parameters may be arrays of any (broadcastable) shape S; the result is
    S + (T,). kep = Ktrans / ve. ``cp`` is the plasma concentration (mM) at ``t_s``.
    """
    ktrans = np.asarray(ktrans_per_min, dtype=float) / 60.0
    ve = np.asarray(ve, dtype=float)
    vp = np.asarray(vp, dtype=float)
    if np.any(ve <= 0):
        raise KineticsError("ve must be positive (the extravascular extracellular volume fraction).")
    kep = ktrans / ve
    conv = exp_conv(t_s, cp, kep)
    return vp[..., None] * np.asarray(cp, dtype=float) + ktrans[..., None] * conv


def patlak_concentration(
    t_s: np.ndarray, cp: np.ndarray, vp: np.ndarray | float, ps_per_min: np.ndarray | float
) -> np.ndarray:
    """Patlak model Ct = vp cp + PS int cp (irreversible uptake, no backflux)."""
    vp = np.asarray(vp, dtype=float)
    ps = np.asarray(ps_per_min, dtype=float) / 60.0
    cp = np.asarray(cp, dtype=float)
    return vp[..., None] * cp + ps[..., None] * cumulative_integral(t_s, cp)


def spgr_signal(
    s0: np.ndarray | float,
    t10_s: np.ndarray | float,
    conc_mM: np.ndarray | float,
    r1_per_mM_s: float,
    tr_s: float,
    fa_deg: float,
) -> np.ndarray:
    """Spoiled gradient echo steady-state signal.

    S = s0 sin(a) (1 - E1) / (1 - cos(a) E1) with E1 = exp(-TR R1) and R1 = 1/T10 + r1 C.
    ``s0`` is the fully relaxed signal (M0 times receiver gain), so a phantom can pick the
    pre-contrast intensity it wants by scaling it.
    """
    a = np.deg2rad(fa_deg)
    r1 = 1.0 / np.asarray(t10_s, dtype=float) + r1_per_mM_s * np.asarray(conc_mM, dtype=float)
    e1 = np.exp(-tr_s * r1)
    return np.asarray(s0, dtype=float) * np.sin(a) * (1.0 - e1) / (1.0 - np.cos(a) * e1)


def signal_to_concentration(
    signal: np.ndarray,
    t10_s: np.ndarray | float,
    r1: float,
    tr_s: float,
    fa_deg: float,
    n_baseline: int,
    first_baseline: int = 0,
) -> np.ndarray:
    """Invert the SPGR equation: signal (..., T) -> concentration (mM), baseline from T10.

    Time points ``first_baseline:n_baseline`` define the pre-contrast signal, from which M0
    follows given T10; each later signal gives E1 and so R1. ``first_baseline=1`` skips a first
    dynamic that has not reached steady state (the OSIPI reference code does so). Signals beyond the model's ceiling
    (M0 sin a) have no solution: they come back as NaN with a warning, never as silent garbage.
    """
    import warnings

    s = np.asarray(signal, dtype=float)
    if not 0 <= first_baseline < n_baseline <= s.shape[-1]:
        raise KineticsError(
            f"Baseline points {first_baseline}:{n_baseline} do not fit a curve of {s.shape[-1]} points."
        )
    a = np.deg2rad(fa_deg)
    t10 = np.asarray(t10_s, dtype=float)
    e10 = np.exp(-tr_s / t10)
    s_base = s[..., first_baseline:n_baseline].mean(axis=-1)
    if np.any(s_base <= 0):
        raise KineticsError("Baseline (pre-contrast) signal is zero or negative; mask those voxels first.")
    m0 = s_base * (1.0 - np.cos(a) * e10) / (np.sin(a) * (1.0 - e10))
    m0 = m0[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = (m0 * np.sin(a) - s) / (m0 * np.sin(a) - s * np.cos(a))
        r1_t = -np.log(e1) / tr_s
    conc = (r1_t - (1.0 / t10)[..., None] if np.ndim(t10) else r1_t - 1.0 / t10) / r1
    if not np.all(np.isfinite(conc)):
        warnings.warn(
            "Some signals exceed the SPGR ceiling M0*sin(FA); their concentration is NaN.",
            RuntimeWarning,
            stacklevel=2,
        )
    return conc
