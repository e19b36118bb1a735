"""Kinetics benchmark: enhancement maps of a 6 x 160 x 512 x 512 study and Tofts fits of 10^4 voxels.

Peers in the same run: a plain per-voxel ``scipy.optimize.curve_fit`` loop (timed on a subset
and extrapolated, as said in the table) and, for the maps, a plain whole-array numpy version.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time

import numpy as np


def _timed(func, *args, repeat: int = 1, **kwargs):  # type: ignore[no-untyped-def]
    best, out = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        out = func(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, out


def _drop(_result: object) -> None:
    """Time a call without keeping its (large) result alive."""


def _big_study(shape: tuple[int, int, int, int] = (6, 160, 512, 512)):  # type: ignore[no-untyped-def]
    """A study-sized array with realistic curves: tissue background plus enhancing blobs."""
    from napari_breastmri.kinetics.synthetic import synthetic_study
    from napari_breastmri.types import Study

    small, _ = synthetic_study((shape[1] // 8, shape[2] // 8, shape[3] // 8), noise=0.02)
    data = np.empty(shape, np.float32)
    rep = small.data.repeat(2, axis=1)
    for p in range(shape[0]):  # tile the small study (keeps memory at one copy of the output)
        data[p] = np.tile(rep[p], (4, 8, 8))[: shape[1], : shape[2], : shape[3]]
    return Study(
        data=data, affine=np.diag([2.0, 0.7, 0.7, 1.0]), times=small.times, phase_labels=small.phase_labels
    )


def _plain_maps(study):  # type: ignore[no-untyped-def]
    """The straightforward whole-array numpy version (what one writes first), for the ratio."""
    d = study.data
    pre, early, late = d[0], d[1], d[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        pe = 100 * (early - pre) / pre
        ser = (early - pre) / (late - pre)
        washin = pe / 1.5
        washout = 100 * (early - late) / early
        ttp = study.times[1:][d[1:].argmax(axis=0)] - study.times[0]
        mx = 100 * (d[1:].max(axis=0) - pre) / pre
    return pe, ser, washin, washout, ttp, mx


def _maps_section(peer_s_per_voxel: float) -> list[str]:
    from napari_breastmri import kinetics as k

    study = _big_study()
    gb = study.data.nbytes / 1e9
    n_vox = int(np.prod(study.shape))
    cpu0 = time.process_time()
    t_ours, _ = _timed(lambda s: _drop(k.enhancement_maps(s)), study, repeat=3)
    cpu_ours = (time.process_time() - cpu0) / 3
    gc.collect()
    cpu0 = time.process_time()
    t_plain, _ = _timed(lambda s: _drop(_plain_maps(s)), study)
    cpu_plain = time.process_time() - cpu0
    gc.collect()
    t_sub, _ = _timed(lambda s: _drop(k.subtractions(s)), study)
    del study
    gc.collect()
    load = os.getloadavg()[0]
    return [
        f"Study 6 x 160 x 512 x 512 float32 ({gb:.2f} GB); 2 threads; load average {load:.1f} on "
        f"{len(os.sched_getaffinity(0))} cores when measured (wall time depends on it; CPU time less).\n",
        "| step | napari-breastmri wall (CPU) s | plain whole-array numpy wall (CPU) s | ratio (wall) |",
        "|---|---|---|---|",
        f"| all enhancement maps: PE, max enh., SER, wash-in, washout, TTP, mask, curve types "
        f"(goal <= 2 s) | **{t_ours:.2f}** ({cpu_ours:.2f}) | {t_plain:.2f} ({cpu_plain:.2f}) | "
        f"{t_plain / t_ours:.1f}x |",
        f"| subtractions (5 volumes) | {t_sub:.2f} | | |",
        "",
        f"Peer for the maps: a per-voxel curve_fit (Tofts) loop over the same {n_vox / 1e6:.0f} M voxels, "
        f"extrapolated from the fit row above: {peer_s_per_voxel * n_vox / 3600:.0f} h, i.e. "
        f"{peer_s_per_voxel * n_vox / t_ours:.0f}x the time of all the maps.",
        "",
    ]


def _fit_section(n: int = 10_000, n_peer: int = 200) -> tuple[list[str], float]:
    from scipy.optimize import curve_fit

    from napari_breastmri import kinetics as k

    rng = np.random.default_rng(0)
    t = np.arange(0.0, 360.0, 6.0)  # 60 time points, 6 s apart (a fast conventional protocol)
    cp = k.parker_aif(t, hct=0.42, delay_s=10.0)
    kt, ve = rng.uniform(0.05, 1.0, n), rng.uniform(0.1, 0.6, n)
    ct = k.tofts_concentration(t, cp, kt, ve) + rng.normal(0, 0.01, (n, t.size))
    cpu0 = time.process_time()
    t_ours, res = _timed(k.fit_tofts, t, ct, cp)
    cpu_ours = time.process_time() - cpu0

    def model(tt: np.ndarray, ktrans: float, v: float) -> np.ndarray:
        return k.tofts_concentration(tt, cp, ktrans, v)

    start, cpu0 = time.perf_counter(), time.process_time()
    peer = np.full((n_peer, 2), np.nan)
    for i in range(n_peer):
        with contextlib.suppress(RuntimeError):
            peer[i] = curve_fit(model, t, ct[i], p0=(0.1, 0.3), bounds=([0, 1e-3], [5, 1]))[0]
    t_peer = (time.perf_counter() - start) * n / n_peer
    cpu_peer = (time.process_time() - cpu0) * n / n_peer

    def share(kf: np.ndarray, vf: np.ndarray, kk: np.ndarray, vv: np.ndarray) -> float:
        return 100 * float(np.mean((np.abs(kf - kk) <= 0.005 + 0.1 * kk) & (np.abs(vf - vv) <= 0.05)))

    ours_ok = share(res["Ktrans"], res["ve"], kt, ve)
    ours_sub = share(res["Ktrans"][:n_peer], res["ve"][:n_peer], kt[:n_peer], ve[:n_peer])
    peer_ok = share(peer[:, 0], peer[:, 1], kt[:n_peer], ve[:n_peer])
    lines = [
        f"Tofts fits of {n} voxels, 60 time points, noise sd 0.01 mM (OSIPI tolerances for 'within').\n",
        "| fitter | wall (CPU) time for 10^4 voxels (s) | within tolerance |",
        "|---|---|---|",
        f"| napari_breastmri.kinetics.fit_tofts (batched Murase + LM; goal <= 2 s) | **{t_ours:.2f}** ({cpu_ours:.2f}) | "
        f"{ours_ok:.1f} % (first {n_peer}: {ours_sub:.1f} %) |",
        f"| per-voxel scipy curve_fit loop (timed on {n_peer} voxels, extrapolated x{n // n_peer}) | "
        f"{t_peer:.1f} ({cpu_peer:.1f}) | {peer_ok:.1f} % of {n_peer} |",
        f"| ratio | {t_peer / t_ours:.0f}x faster ({cpu_peer / cpu_ours:.0f}x in CPU time) | |",
        "",
    ]
    return lines, t_peer / n


def run() -> str:
    lines = ["## Kinetics (bench_kinetics)\n"]
    fit_lines, peer_per_voxel = _fit_section()
    lines += fit_lines
    lines += _maps_section(peer_per_voxel)
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
