"""Quantitative DCE fits: (extended) Tofts and Patlak, for one curve or a whole region at once.

Why batched: a lesion has thousands of voxels and a per-voxel ``curve_fit`` loop costs seconds.
Every step here is a numpy operation over all voxels: a linear least-squares start (Murase's
integral linearisation for Tofts, the Patlak linear form), then a bounded Levenberg-Marquardt
refinement whose loop runs over iterations, not voxels. Units: t in s, concentrations in mM,
Ktrans and PS in /min (the field's convention), ve and vp fractions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import KineticsError
from .physics import _times, cumulative_integral, exp_conv

#: default box bounds: Ktrans (/min), ve, vp
TOFTS_BOUNDS = {"Ktrans": (0.0, 5.0), "ve": (1e-3, 1.0), "vp": (0.0, 1.0)}


def _prepare(
    t: np.ndarray, ct: np.ndarray, cp: np.ndarray, t_cp: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple, tuple[np.ndarray, np.ndarray | None]]:
    """Check inputs, flatten the curves to (N, T); cp becomes (Tm,) or (N, Tm) on the model grid."""
    t = _times(t)
    ct = np.asarray(ct, dtype=float)
    cp = np.asarray(cp, dtype=float)
    tm = t if t_cp is None else _times(t_cp)
    if ct.shape[-1] != t.size:
        raise KineticsError(f"Curves have {ct.shape[-1]} time points but the time axis has {t.size}.")
    if cp.shape[-1] != tm.size:
        raise KineticsError(f"The AIF has {cp.shape[-1]} time points but its time axis has {tm.size}.")
    if not np.all(np.isfinite(cp)):
        raise KineticsError("The AIF contains NaN or infinite values.")
    batch = ct.shape[:-1]
    ct2 = ct.reshape(-1, t.size)
    cp2 = cp if cp.ndim == 1 else np.broadcast_to(cp, batch + (tm.size,)).reshape(-1, tm.size)
    grid = (tm, None if t_cp is None else _interp_matrix(t, tm))
    return t, ct2, cp2, batch, grid


def _finish(params: dict[str, np.ndarray], batch: tuple) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val in params.items():
        arr = np.asarray(val).reshape(batch)
        out[key] = float(arr) if arr.ndim == 0 else arr
    return out


def _shift(t: np.ndarray, cp: np.ndarray, delay_s: float) -> np.ndarray:
    """The AIF delayed by ``delay_s`` (linear interpolation, zero before it starts)."""
    if delay_s == 0:
        return cp
    return np.interp(t - delay_s, t, cp, left=0.0)


def _solve_batched(a: np.ndarray, b: np.ndarray, ridge: float = 1e-12) -> np.ndarray:
    """Least squares for a stack of systems a (N, T, p), b (N, T) via normal equations."""
    ata = np.einsum("ntp,ntq->npq", a, a)
    atb = np.einsum("ntp,nt->np", a, b)
    scale = np.maximum(np.einsum("npp->np", ata), 1e-30)
    ata = ata + ridge * np.eye(a.shape[-1]) * scale[:, :, None]
    return np.linalg.solve(ata, atb[..., None])[..., 0]


def _obs(grid: tuple[np.ndarray, np.ndarray | None], y: np.ndarray) -> np.ndarray:
    """Values on the model grid sampled at the observation times (identity without a fine grid)."""
    w = grid[1]
    return y if w is None else y @ w.T


def _interp_matrix(t: np.ndarray, tm: np.ndarray) -> np.ndarray:
    """(T, Tm) matrix of linear interpolation from the grid ``tm`` to the times ``t``."""
    if t[0] < tm[0] - 1e-9 or t[-1] > tm[-1] + 1e-9:
        raise KineticsError("The AIF's time grid (t_cp) must cover every sample time of the curves.")
    j = np.clip(np.searchsorted(tm, t, side="right") - 1, 0, tm.size - 2)
    frac = (t - tm[j]) / (tm[j + 1] - tm[j])
    w = np.zeros((t.size, tm.size))
    w[np.arange(t.size), j] = 1.0 - frac
    w[np.arange(t.size), j + 1] += frac
    return w


def _tofts_linear(
    t: np.ndarray, grid: tuple[np.ndarray, np.ndarray | None], ct: np.ndarray, cp: np.ndarray, extended: bool
) -> np.ndarray:
    """Murase linearisation: Ct = vp cp + (Ktrans + kep vp) int cp - kep int Ct; returns (N, 3)."""
    n = ct.shape[0]
    icp = np.broadcast_to(_obs(grid, cumulative_integral(grid[0], cp)), ct.shape)
    ict = cumulative_integral(t, ct)
    cols = [icp, -ict] + ([np.broadcast_to(_obs(grid, cp), ct.shape)] if extended else [])
    x = _solve_batched(np.stack(cols, axis=-1), ct)
    kep = x[:, 1]
    vp = x[:, 2] if extended else np.zeros(n)
    ktrans = x[:, 0] - kep * vp
    with np.errstate(divide="ignore", invalid="ignore"):
        ve = ktrans / kep
    bad = ~((kep > 0) & (ktrans > 0) & np.isfinite(ve))
    ktrans_min = np.where(bad, 0.1, ktrans * 60.0)
    ve = np.where(bad, 0.3, ve)
    return np.stack([ktrans_min, ve, np.clip(vp, 0.0, 1.0)], axis=-1)


def _tofts_model(
    grid: tuple[np.ndarray, np.ndarray | None], cp: np.ndarray, p: np.ndarray, extended: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Model curves (N, T) and Jacobian (N, T, 2|3) for parameters p (N, 3) = Ktrans/min, ve, vp.

    The convolution runs on the model grid (the AIF's own, possibly finer than the samples) and
    is then sampled at the observation times.
    """
    ktrans = p[:, 0] / 60.0
    ve = p[:, 1]
    kep = ktrans / ve
    conv_m = exp_conv(grid[0], cp, kep)
    h = 1e-6 * np.maximum(kep, 1e-6)
    conv = _obs(grid, conv_m)
    dconv = (_obs(grid, exp_conv(grid[0], cp, kep + h)) - conv) / h[:, None]
    model = ktrans[:, None] * conv
    cols = [
        (conv + ktrans[:, None] * dconv / ve[:, None]) / 60.0,
        -ktrans[:, None] * dconv * (ktrans / ve**2)[:, None],
    ]
    if extended:
        cpb = np.broadcast_to(_obs(grid, cp), model.shape)
        model = model + p[:, 2:3] * cpb
        cols.append(cpb)
    return model, np.stack(cols, axis=-1)


def _levenberg_marquardt(
    grid: tuple[np.ndarray, np.ndarray | None],
    ct: np.ndarray,
    cp: np.ndarray,
    p0: np.ndarray,
    extended: bool,
    bounds: dict[str, tuple[float, float]],
    n_iter: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Bounded LM (projected steps, Marquardt scaling), vectorised over voxels."""
    lo = np.array([bounds["Ktrans"][0], bounds["ve"][0], bounds["vp"][0]])
    hi = np.array([bounds["Ktrans"][1], bounds["ve"][1], bounds["vp"][1]])
    npar = 3 if extended else 2
    p = np.clip(p0, lo, hi)
    model, jac = _tofts_model(grid, cp, p, extended)
    rss = np.sum((model - ct) ** 2, axis=-1)
    lam = np.full(ct.shape[0], 1e-3)
    active = np.ones(ct.shape[0], dtype=bool)
    for _ in range(n_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        j = jac[idx]
        r = ct[idx] - model[idx]
        jtj = np.einsum("ntp,ntq->npq", j, j)
        g = np.einsum("ntp,nt->np", j, r)
        diag = np.einsum("npp->np", jtj) + 1e-20
        a = jtj + (lam[idx, None] * diag)[:, :, None] * np.eye(npar)
        step = np.linalg.solve(a, g[..., None])[..., 0]
        trial = p[idx].copy()
        trial[:, :npar] = np.clip(trial[:, :npar] + step, lo[:npar], hi[:npar])
        cpi = cp if cp.ndim == 1 else cp[idx]
        m_new, j_new = _tofts_model(grid, cpi, trial, extended)
        rss_new = np.sum((m_new - ct[idx]) ** 2, axis=-1)
        better = rss_new < rss[idx]
        gain = (rss[idx] - rss_new) / np.maximum(rss[idx], 1e-300)
        ok = idx[better]
        p[ok], model[ok], jac[ok], rss[ok] = trial[better], m_new[better], j_new[better], rss_new[better]
        lam[ok] = np.maximum(lam[ok] / 3.0, 1e-9)
        lam[idx[~better]] *= 4.0
        done = (better & (gain < 1e-9)) | (~better & (lam[idx] > 1e8))
        active[idx[done]] = False
    return p, rss


def fit_tofts(
    t: np.ndarray,
    ct: np.ndarray,
    cp: np.ndarray,
    extended: bool = False,
    *,
    t_cp: np.ndarray | None = None,
    fit_delay: bool = False,
    max_delay_s: float = 30.0,
    delay_step_s: float | None = None,
    bounds: dict[str, tuple[float, float]] | None = None,
    n_iter: int = 50,
) -> dict[str, Any]:
    """Fit the (extended) Tofts model to one curve (T,) or a stack (..., T).

    Returns a mapping with ``Ktrans`` (/min), ``ve``, ``kep`` (/min), ``vp`` (extended only),
    ``rss`` (residual sum of squares, mM^2) and ``delay_s`` (when ``fit_delay``): floats for one
    curve, arrays of the stack's shape otherwise. ``cp`` is the plasma AIF (mM), shared (T,) or
    per voxel. With ``fit_delay`` the AIF is shifted over a grid of delays up to ``max_delay_s``;
    each voxel keeps the delay whose linear fit fits best, then is refined with it.

    ``t_cp``: the AIF's own (finer) time grid when the curves are sampled sparsely (a conventional
    protocol samples every 60-90 s and would miss the first pass); the model convolves on that
    grid and samples at ``t``.
    """
    t, ct2, cp2, batch, grid = _prepare(t, ct, cp, t_cp)
    tm = grid[0]
    bnd = {**TOFTS_BOUNDS, **(bounds or {})}
    finite = np.all(np.isfinite(ct2), axis=-1)
    ctf = np.where(finite[:, None], ct2, 0.0)
    delay = np.zeros(ct2.shape[0])
    if fit_delay:
        step = delay_step_s or float(max(np.min(np.diff(tm)), 0.5))
        cands = np.arange(0.0, max_delay_s + 1e-9, step)
        best = np.full(ct2.shape[0], np.inf)
        cp_v = np.empty((ct2.shape[0], tm.size))
        p0 = np.zeros((ct2.shape[0], 3))
        for d in cands:
            cpd = _shift(tm, cp2, d) if cp2.ndim == 1 else np.stack([_shift(tm, c, d) for c in cp2])
            p_lin = _tofts_linear(t, grid, ctf, cpd, extended)
            m, _ = _tofts_model(grid, cpd, np.clip(p_lin, 1e-6, None), extended)
            rss = np.sum((m - ctf) ** 2, axis=-1)
            win = rss < best
            best[win], delay[win], p0[win] = rss[win], d, p_lin[win]
            cp_v[win] = np.broadcast_to(cpd, cp_v.shape)[win]
        cp2 = cp_v
    else:
        p0 = _tofts_linear(t, grid, ctf, cp2, extended)
    p, rss = _levenberg_marquardt(grid, ctf, cp2, p0, extended, bnd, n_iter)
    p[~finite] = np.nan
    rss[~finite] = np.nan
    out = {"Ktrans": p[:, 0], "ve": p[:, 1], "kep": p[:, 0] / p[:, 1], "rss": rss}
    if extended:
        out["vp"] = p[:, 2]
    if fit_delay:
        out["delay_s"] = np.where(finite, delay, np.nan)
    return _finish(out, batch)


def fit_patlak(
    t: np.ndarray, ct: np.ndarray, cp: np.ndarray, *, bounds: dict[str, tuple[float, float]] | None = None
) -> dict[str, Any]:
    """Fit Patlak Ct = vp cp + PS int cp to one curve or a stack; returns ``vp``, ``PS`` (/min), ``rss``.

    The model is linear, so the bounded least-squares solution is exact: the unconstrained
    solution where it is inside the bounds, else the best of the solutions on the bounds' faces.
    """
    t, ct2, cp2, batch, _ = _prepare(t, ct, cp)
    b = {"vp": (0.0, 1.0), "PS": (0.0, 5.0), **(bounds or {})}
    finite = np.all(np.isfinite(ct2), axis=-1)
    y = np.where(finite[:, None], ct2, 0.0)
    x1 = np.broadcast_to(cp2, y.shape)
    x2 = np.broadcast_to(cumulative_integral(t, cp2) / 60.0, y.shape)  # so that PS is in /min
    lo = np.array([b["vp"][0], b["PS"][0]])
    hi = np.array([b["vp"][1], b["PS"][1]])
    cands = [_solve_batched(np.stack([x1, x2], axis=-1), y, ridge=0.0)]
    for fixed in (0, 1):
        free = 1 - fixed
        xf, xv = (x1, x2) if fixed == 0 else (x2, x1)
        for bound in (lo[fixed], hi[fixed]):
            resid = y - bound * xf
            val = np.sum(resid * xv, -1) / np.maximum(np.sum(xv * xv, -1), 1e-30)
            c = np.empty((y.shape[0], 2))
            c[:, fixed], c[:, free] = bound, np.clip(val, lo[free], hi[free])
            cands.append(c)
    best_p = np.full((y.shape[0], 2), np.nan)
    best_rss = np.full(y.shape[0], np.inf)
    for c in cands:
        feasible = np.all((c >= lo - 1e-12) & (c <= hi + 1e-12), axis=-1)
        rss = np.sum((y - c[:, :1] * x1 - c[:, 1:] * x2) ** 2, axis=-1)
        win = feasible & (rss < best_rss)
        best_p[win], best_rss[win] = c[win], rss[win]
    best_p[~finite] = np.nan
    best_rss[~finite] = np.nan
    return _finish({"vp": best_p[:, 0], "PS": best_p[:, 1], "rss": best_rss}, batch)
