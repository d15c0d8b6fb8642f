"""Fitting a capture's receive-chain impairments (wfm.data.calibrate, ``wfm data calibrate``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import RECIPES
from wfm.data.calibrate import calibrate, fit_band_delay, fit_band_gain, gain_jitter_db, suggested_options
from wfm.data.errors import DataError
from wfm.data.impairments import CSIImpairments, apply_csi_impairments, edge_delay_phase

INTEL = np.r_[np.arange(-28, -1, 2), -1, np.arange(1, 28, 2), 28] * 312.5e3  # the Intel 5300's 30 groups


def test_fit_band_delay_recovers_the_edge_delays_under_packet_phase_lines_and_noise():
    rng = np.random.default_rng(0)
    K = len(INTEL)
    tau = np.array([[80e-9, 70e-9], [60e-9, 95e-9]])  # two chains: low, high edge
    phase = tau @ edge_delay_phase(INTEL, 4.0)  # [A, K]
    line = rng.uniform(-1, 1, (40, 8, 2, 1)) * np.arange(K) / K + rng.uniform(0, 2 * np.pi, (40, 8, 2, 1))
    noise = 0.02 * (rng.standard_normal((40, 8, 2, K)) + 1j * rng.standard_normal((40, 8, 2, K)))
    csi = np.exp(1j * (phase + line)) * (1 + noise)
    rows = fit_band_delay(csi, INTEL)
    assert [r["chain"] for r in rows] == [0, 1]
    for r, (lo, hi) in zip(rows, tau * 1e9):
        assert r["r2"] > 0.99 and r["width_mhz"] == 4.0
        assert abs(r["tau_low_ns"] - lo) < 3 and abs(r["tau_high_ns"] - hi) < 3
        assert r["phase_low_deg"] > 0 > r["phase_high_deg"]  # the S a packet's line leaves
    flat = fit_band_delay(np.exp(1j * line) * (1 + noise), INTEL)  # no filter: nothing to explain
    assert all(abs(r["tau_low_ns"]) < 3 and abs(r["phase_low_deg"]) < 1 for r in flat)
    with pytest.raises(DataError, match=r"\[N, T, A, K\]"):
        fit_band_delay(csi[0], INTEL)
    with pytest.raises(DataError, match="ascending"):
        fit_band_delay(csi, INTEL[::-1])


def test_band_gain_and_jitter_are_read_back_from_what_the_data_engine_draws():
    """One capture (one sample of many packets: one draw per chain) through the impairments, fitted back."""
    K, scs = 64, 312.5e3
    cfg = CSIImpairments(band_tilt_db=5.0, band_edge_db=4.0, band_edge_mhz=1.0, band_delay_ns=90.0,
                         band_delay_mhz=3.0, gain_jitter_db=0.7, sanitize="linear")
    y, _ = apply_csi_impairments(np.ones((1, 400, 3, K), np.complex64), cfg, 7, scs)
    freqs = np.arange(K) * scs
    # The gain drawn, from the same draws without the phase (drawn after it) and the sanitisation.
    truth, _ = apply_csi_impairments(np.ones((1, 400, 3, K), np.complex64),
                                     CSIImpairments(band_tilt_db=5.0, band_edge_db=4.0, band_edge_mhz=1.0,
                                                    gain_jitter_db=0.7), 7, scs)
    db = 20 * np.log10(np.abs(truth[0, 0]))  # [A, K], plus packet 0's gain (the same on every subcarrier)
    gain = fit_band_gain(y, freqs)
    for g, row in zip(gain, db):
        assert abs(g["tilt_db"]) <= 5.0 + 0.5
        # The edge drop sits on the outermost subcarrier: at least what is left of it below the tilt's line.
        assert g["edge_low_db"] >= -0.3 and g["edge_high_db"] >= -0.3 and max(g["edge_low_db"], g["edge_high_db"]) <= 4.5
        line = np.polyfit(freqs[16:48], row[16:48], 1)
        assert g["tilt_db"] == pytest.approx(line[0] * (freqs[-1] - freqs[0]), abs=0.6)
    assert gain_jitter_db(y) == pytest.approx(0.7, rel=0.15)
    res = calibrate(y, freqs)
    assert len(res["chains"]) == 3 and all(c["r2"] > 0.95 and c["width_mhz"] == 3.0 for c in res["chains"])
    assert all(0 <= c["tau_low_ns"] <= 95 and 0 <= c["tau_high_ns"] <= 95 for c in res["chains"])
    opts = res["options"]
    assert opts["band_delay_mhz"] == 3.0 and opts["band_delay_ns"] <= 100 and opts["gain_jitter_db"] == pytest.approx(0.7, abs=0.1)
    CSIImpairments(**opts)  # a valid impairments: block


def test_gain_dips_are_read_back_from_what_the_data_engine_draws():
    """A still capture with sparse common-gain dips and a little jitter: calibrate finds the dips' rate,
    depth and length, and suggests the jitter of the packets out of them (not the dips' spread)."""
    from wfm.data.calibrate import gain_dips

    cfg = CSIImpairments(gain_jitter_db=0.2, gain_dip_db=2.0, gain_dip_probability=0.1, gain_dip_length=1.5)
    y, _ = apply_csi_impairments(np.ones((4, 500, 3, 16), np.complex64), cfg, 5, 312.5e3)
    d = gain_dips(y)
    assert d["depth_db"] == pytest.approx(2.0, abs=0.15) and d["length"] == pytest.approx(1.5, abs=0.25)
    assert d["probability"] == pytest.approx(0.1, abs=0.02) and d["jitter_db"] == pytest.approx(0.2, abs=0.05)
    assert d["share"] == pytest.approx(0.15 / 1.15, abs=0.03)
    assert gain_jitter_db(y) > 0.6  # the plain spread is mostly the dips'
    chains = [{"tilt_db": 1.0, "edge_low_db": 0.5, "edge_high_db": 0.5, "r2": 0.1}]
    opts = suggested_options(chains, gain_jitter_db(y), dips=d)
    assert opts["gain_jitter_db"] == pytest.approx(0.2, abs=0.1) and opts["gain_dip_db"] == pytest.approx(2.0, abs=0.2)
    CSIImpairments(**opts)  # a valid impairments: block, read back from the options it suggests
    # Jitter alone has (almost) no dips, and none are suggested.
    j, _ = apply_csi_impairments(np.ones((4, 500, 3, 16), np.complex64), CSIImpairments(gain_jitter_db=0.3), 5, 312.5e3)
    assert "gain_dip_db" not in suggested_options(chains, gain_jitter_db(j), dips=gain_dips(j))
    with pytest.raises(DataError, match="T >= 3"):
        gain_dips(np.ones((1, 2, 1, 4), np.complex64))


def test_suggested_options_round_up_and_leave_out_a_phase_the_filter_does_not_explain():
    chains = [{"tilt_db": -4.2, "edge_low_db": 0.7, "edge_high_db": 2.4, "r2": 0.99, "tau_low_ns": 84.0,
               "tau_high_ns": 73.0, "width_mhz": 3.0},
              {"tilt_db": 5.05, "edge_low_db": -0.5, "edge_high_db": 1.0, "r2": 0.98, "tau_low_ns": 97.0,
               "tau_high_ns": -5.0, "width_mhz": 4.0}]
    assert suggested_options(chains, 0.94) == {"band_tilt_db": 6.0, "band_edge_db": 3.0, "band_delay_ns": 100.0,
                                               "band_delay_mhz": 3.5, "gain_jitter_db": 0.9}
    chains[1]["r2"] = 0.3
    assert "band_delay_ns" not in suggested_options(chains, 0.94)


def test_wfm_data_calibrate_reads_the_spacing_from_the_recipe_and_writes_json(tmp_path, capsys):
    from wfm.cli import main
    from wfm.data.generate import generate_dataset
    from wfm.data.recipes import load_recipe

    out = tmp_path / "ds"
    recipe = load_recipe(RECIPES / "wifi" / "zs-wifi-filter-intel-5p2-6x1-k30-t16.yaml").with_overrides(num_samples=8, shard_size=8)
    generate_dataset(recipe, out, seed=0)
    capsys.readouterr()
    main(["data", "calibrate", str(out), "--json", str(tmp_path / "cal.json")])
    printed = capsys.readouterr().out
    assert "band_delay_mhz" in printed and "receive chains" in printed
    res = json.loads(Path(tmp_path / "cal.json").read_text())
    assert res["samples"] == 8 and len(res["chains"]) == 6 and res["band_mhz"] == pytest.approx(29 * 0.625)  # the recipe's spacing
    from wfm.data.calibrate import subcarrier_freqs_hz
    from wfm.data.shards import ShardedDataset

    # what guard_study's filter table fits a generated set with, too
    np.testing.assert_allclose(subcarrier_freqs_hz(ShardedDataset(out)), np.arange(30) * 625e3)
    CSIImpairments(**res["options"])
    with pytest.raises(SystemExit):
        main(["data", "calibrate", str(out), "--spacing-khz", "0"])
    assert "--spacing-khz must be > 0" in capsys.readouterr().err


def test_wfm_data_calibrate_reads_an_imported_captures_subcarrier_indices_and_refuses_amplitudes(tmp_path, capsys):
    from wfm.cli import main
    from wfm.data.loaders.common import write_samples
    from wfm.data.shards import FieldSpec

    idx = [-28, -26, -24, -22, -20, -18, -16, -14, -12, -10, -8, -6, -4, -2, -1, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21,
           23, 25, 27, 28]  # an Intel 5300 import: 30 groups over 17.5 MHz
    phase = np.array([[90e-9, 60e-9]]) @ edge_delay_phase(np.asarray(idx) * 312.5e3, 3.0)
    csi = np.repeat(np.exp(1j * phase)[None, None], 8, axis=1).repeat(4, axis=0).astype(np.complex64)  # [4, 8, 1, 30]
    write_samples(tmp_path / "cap", "cap", "csi", {"csi": FieldSpec("complex64", (8, 1, 30))}, {"csi": csi},
                  {"subcarrier_indices": idx}, {"source": "test"})
    main(["data", "calibrate", str(tmp_path / "cap"), "--json", str(tmp_path / "cal.json")])
    res = json.loads((tmp_path / "cal.json").read_text())
    assert res["band_mhz"] == pytest.approx(17.5)  # the indices' 56 x 312.5 kHz, not 29 uniform steps
    (chain,) = res["chains"]
    assert chain["tau_low_ns"] == pytest.approx(90, abs=1) and chain["tau_high_ns"] == pytest.approx(60, abs=1)
    write_samples(tmp_path / "amp", "amp", "csi", {"csi": FieldSpec("float32", (8, 1, 30))},
                  {"csi": np.abs(csi).astype(np.float32)}, {"subcarrier_indices": idx}, {"source": "test"})
    with pytest.raises(SystemExit):
        main(["data", "calibrate", str(tmp_path / "amp")])
    err = capsys.readouterr().err
    assert "amp" in err and "needs complex CSI" in err
