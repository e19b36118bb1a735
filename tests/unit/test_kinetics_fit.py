"""Batched Tofts / Patlak fits on synthetic curves made with the forward model."""

from __future__ import annotations

import numpy as np
import pytest

from napari_breastmri import kinetics as k
from napari_breastmri.errors import KineticsError


@pytest.fixture(scope="module")
def aif() -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(0.0, 300.0, 3.0)
    return t, k.parker_aif(t, hct=0.42)


def _within(res: dict, kt: np.ndarray, ve: np.ndarray) -> np.ndarray:
    return (np.abs(res["Ktrans"] - kt) <= 0.005 + 0.1 * kt) & (np.abs(res["ve"] - ve) <= 0.05)


def test_tofts_noiseless_exact(aif: tuple[np.ndarray, np.ndarray]) -> None:
    t, cp = aif
    kt = np.array([[0.05, 0.3], [0.8, 1.5]])
    ve = np.array([[0.1, 0.3], [0.5, 0.6]])
    res = k.fit_tofts(t, k.tofts_concentration(t, cp, kt, ve), cp)
    assert res["Ktrans"].shape == (2, 2)
    np.testing.assert_allclose(res["Ktrans"], kt, rtol=1e-3)
    np.testing.assert_allclose(res["ve"], ve, rtol=1e-3)
    np.testing.assert_allclose(res["kep"], kt / ve, rtol=2e-3)


def test_tofts_noisy_stack_extended_and_delay(aif: tuple[np.ndarray, np.ndarray]) -> None:
    t, cp = aif
    rng = np.random.default_rng(1)
    n = 500
    kt, ve, vp = rng.uniform(0.05, 1.0, n), rng.uniform(0.1, 0.6, n), rng.uniform(0.0, 0.1, n)
    ct = k.tofts_concentration(t, cp, kt, ve, vp) + rng.normal(0, 0.01, (n, t.size))
    res = k.fit_tofts(t, ct, cp, extended=True)
    ok = _within(res, kt, ve) & (np.abs(res["vp"] - vp) <= 0.025)
    assert ok.mean() >= 0.95
    # a bolus arriving 9 s later than the AIF: the delay fit finds it and keeps the parameters
    late = k.tofts_concentration(t, k.parker_aif(t, hct=0.42, delay_s=9.0), kt, ve)
    late += rng.normal(0, 0.01, late.shape)
    res_d = k.fit_tofts(t, late, cp, fit_delay=True, max_delay_s=21.0)
    assert np.median(res_d["delay_s"]) == pytest.approx(9.0, abs=3.0)
    assert _within(res_d, kt, ve).mean() >= 0.9
    assert _within(k.fit_tofts(t, late, cp), kt, ve).mean() < _within(res_d, kt, ve).mean()


def test_tofts_bounds_and_nan_voxels(aif: tuple[np.ndarray, np.ndarray]) -> None:
    t, cp = aif
    ct = np.stack([k.tofts_concentration(t, cp, 0.2, 0.3), np.full(t.size, np.nan), np.zeros(t.size)])
    res = k.fit_tofts(t, ct, cp)
    assert np.isnan(res["Ktrans"][1]) and np.isnan(res["ve"][1])
    assert res["Ktrans"][0] == pytest.approx(0.2, rel=1e-3)
    assert 0.0 <= res["Ktrans"][2] < 1e-3  # no uptake: stays at the bound, not negative
    assert np.all((res["ve"][[0, 2]] >= 1e-3) & (res["ve"][[0, 2]] <= 1.0))
    with pytest.raises(KineticsError):
        k.fit_tofts(t, ct[:, :-1], cp)


def test_patlak_bounded_linear(aif: tuple[np.ndarray, np.ndarray]) -> None:
    t, cp = aif
    vp = np.array([0.05, 0.2, 0.0])
    ps = np.array([0.1, 0.0, 0.02])
    ct = k.patlak_concentration(t, cp, vp, ps)
    res = k.fit_patlak(t, ct, cp)
    np.testing.assert_allclose(res["vp"], vp, atol=1e-9)
    np.testing.assert_allclose(res["PS"], ps, atol=1e-9)
    # a curve that would need negative PS is held at the bound
    neg = k.patlak_concentration(t, cp, 0.1, -0.05)
    out = k.fit_patlak(t, neg, cp)
    assert out["PS"] == 0.0 and out["vp"] > 0
