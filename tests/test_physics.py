"""Physical sanity of the generated channels: Doppler follows speed, LoS follows the K-factor."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import tiny_recipe
from wfm.data.csi_generator import CSIGenerator


def lag1_correlation(csi: np.ndarray) -> np.ndarray:
    """|E[h(t+dt) h*(t)]| / E|h|^2 per sample: 1 for a static channel, falls with Doppler."""
    h = csi.astype(np.complex128)
    return np.abs(np.mean(h[:, 1:] * np.conj(h[:, :-1]), axis=(1, 2, 3))) / np.mean(np.abs(h) ** 2, axis=(1, 2, 3))


def rician_k(csi: np.ndarray) -> np.ndarray:
    """Moment estimate of the Rician K-factor from the spread of |h|^2 over time, antennas
    and subcarriers: gamma = var|h|^2 / (E|h|^2)^2 = (1 + 2K) / (1 + K)^2."""
    p = np.abs(csi.reshape(len(csi), -1)).astype(np.float64) ** 2
    s = np.sqrt(1 - np.clip(p.var(1) / p.mean(1) ** 2, 0, 1))
    return s / (1 - s + 1e-12)


@pytest.mark.parametrize("model, profile", [("uma", None), ("cdl", "C")])
def test_temporal_correlation_falls_as_speed_grows(model, profile):
    rho = []
    for v in (3, 30, 120, 300):
        r = tiny_recipe(model=model, profile=profile, speed_kmh=[v, v], num_subcarriers=32, time_steps=8)
        rho.append(lag1_correlation(CSIGenerator(r).generate(32, seed=0)["csi"]).mean())
    assert rho[0] > 0.995  # 3 km/h at 3.5 GHz: Doppler 10 Hz, 0.5 ms apart
    assert all(a > b for a, b in zip(rho, rho[1:])), rho
    assert rho[-1] < 0.8  # 300 km/h: Doppler 970 Hz


def test_los_flag_agrees_with_k_factor():
    k = {}
    for los in ("los", "nlos"):
        out = CSIGenerator(tiny_recipe(los=los, num_subcarriers=64, array=[2, 4], speed_kmh=[3, 30])).generate(48, 0)
        assert out["los"].all() if los == "los" else not out["los"].any()
        k[los] = rician_k(out["csi"])
    assert np.median(k["los"]) > 3 * np.median(k["nlos"])
    # With LoS drawn at random (TR 38.901 7.4.2), the flag separates the K-factors of the samples too.
    out = CSIGenerator(tiny_recipe(num_subcarriers=64, array=[2, 4], speed_kmh=[3, 30])).generate(96, 1)
    kk, flag = rician_k(out["csi"]), out["los"]
    assert 0 < flag.mean() < 1
    assert np.median(kk[flag]) > 2 * np.median(kk[~flag])


def test_link_level_profiles_set_the_los_flag():
    for profile, los in (("C", False), ("D", True)):
        out = CSIGenerator(tiny_recipe(model="cdl", profile=profile)).generate(8, 0)
        assert (out["los"] == los).all() and not out["geometry_valid"].any()
