"""Forward physics: Parker AIF shape, exact Tofts convolution, SPGR round trip, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from napari_breastmri import kinetics as k
from napari_breastmri.errors import KineticsError


def test_parker_aif_peak_and_plasma() -> None:
    t = np.arange(0, 600, 0.5)
    cb = k.parker_aif(t)
    # Parker 2006: first-pass peak ~6 mM near 10 s, recirculation, slow washout to ~0.5-1 mM
    assert 5.0 < cb.max() < 7.0
    assert 8.0 < t[np.argmax(cb)] < 12.0
    assert 0.15 < cb[-1] < 0.3  # alpha * exp(-beta * 10 min)
    cp = k.parker_aif(t, hct=0.42)
    np.testing.assert_allclose(cp, cb / 0.58)
    np.testing.assert_allclose(k.parker_aif_plasma(t), cp)
    shifted = k.parker_aif(t, delay_s=10.0)
    np.testing.assert_allclose(shifted[20:], cb[:-20], atol=1e-12)


def test_tofts_matches_quadrature_on_nonuniform_times() -> None:
    t = np.concatenate([np.arange(0, 60, 1.0), np.arange(60, 400, 7.3)])
    cp = k.parker_aif(t, hct=0.42)
    ktrans, ve, vp = 0.3, 0.4, 0.05
    ct = k.tofts_concentration(t, cp, ktrans, ve, vp)

    def cp_lin(tau: float) -> float:
        return float(np.interp(tau, t, cp))

    kep = ktrans / ve / 60
    for i in (5, 40, 60, len(t) - 1):
        ref = quad(
            lambda tau, ti=t[i]: cp_lin(tau) * np.exp(-kep * (ti - tau)), 0, t[i], limit=500, points=t[:i]
        )[0]
        assert ct[i] == pytest.approx(vp * cp[i] + ktrans / 60 * ref, rel=1e-6, abs=1e-9)


def test_tofts_vectorised_over_parameters() -> None:
    t = np.linspace(0, 300, 40)
    cp = k.parker_aif(t, hct=0.42)
    ktrans = np.array([[0.1, 0.5], [1.0, 0.0]])
    ve = np.array([[0.2, 0.3], [0.5, 0.1]])
    out = k.tofts_concentration(t, cp, ktrans, ve)
    assert out.shape == (2, 2, 40)
    np.testing.assert_allclose(out[0, 1], k.tofts_concentration(t, cp, 0.5, 0.3))
    assert np.all(out[1, 1] == 0)
    # kep -> 0 limit stays finite and equals Ktrans * running integral of cp
    tiny = k.tofts_concentration(t, cp, 1e-9, 1.0)
    np.testing.assert_allclose(tiny, 1e-9 / 60 * k.cumulative_integral(t, cp), rtol=1e-4)


def test_spgr_round_trip_and_errors() -> None:
    t10 = np.array([0.8, 1.2, 1.6])
    conc = np.array([0.0, 0.0, 0.1, 0.5, 2.0])[None, :] * np.array([1, 2, 0.5])[:, None]
    sig = k.spgr_signal(500.0, t10[:, None], conc, 4.5, 0.0045, 12.0)
    assert np.all(np.diff(sig[:, 1:], axis=-1) * np.sign(np.diff(conc[:, 1:], axis=-1)) >= 0)
    back = k.signal_to_concentration(sig, t10, 4.5, 0.0045, 12.0, n_baseline=2)
    np.testing.assert_allclose(back, conc, atol=1e-10)
    with pytest.raises(KineticsError):
        k.signal_to_concentration(-sig, t10, 4.5, 0.0045, 12.0, n_baseline=2)
    with pytest.raises(KineticsError):
        k.signal_to_concentration(sig, t10, 4.5, 0.0045, 12.0, n_baseline=0)
    with pytest.raises(KineticsError):
        k.tofts_concentration(np.array([0.0, 2.0, 1.0]), np.ones(3), 0.1, 0.2)
    with pytest.raises(KineticsError):
        k.tofts_concentration(np.arange(3.0), np.ones(3), 0.1, 0.0)
