"""Real-world impairments: CSI (wfm.data.impairments) and traffic regimes (series_generators)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import RECIPES, tiny_recipe
from wfm.data.csi_generator import CSIGenerator
from wfm.data.errors import DataError
from wfm.data.impairments import CSIImpairments, apply_csi_impairments, csi_impairments
from wfm.data.loaders.phase import remove_linear_phase
from wfm.data.recipes import load_recipe
from wfm.data.series_generators import TrafficGenerator

SCS = 312.5e3


def clean(n=6, T=8, A=3, K=30, seed=0):
    """Smooth, multipath-like clean CSI [n, T, A, K] (a few delayed taps)."""
    rng = np.random.default_rng(seed)
    k = np.arange(K)
    taps = rng.standard_normal((n, 1, A, 4)) + 1j * rng.standard_normal((n, 1, A, 4))
    delays = np.array([0.0, 0.3, 0.7, 1.4])  # in units of 1/(K * scs): mild frequency selectivity
    h = np.sum(taps[..., None] * np.exp(-2j * np.pi * delays[:, None] * k / K), axis=-2)
    return np.repeat(h, T, axis=1).astype(np.complex64) + 0.05 * rng.standard_normal((n, T, A, K))


def test_off_by_default_and_validation():
    assert not CSIImpairments().active
    assert csi_impairments(None) is None
    with pytest.raises(DataError, match="unknown impairment option.*snr"):
        csi_impairments({"snr": [1, 2]})
    with pytest.raises(DataError, match="quantize_bits"):
        csi_impairments({"quantize_bits": 1})
    with pytest.raises(DataError, match="sanitize 'cubic'"):
        csi_impairments({"sanitize": "cubic"})
    with pytest.raises(DataError, match="x.yaml: .*agc_step_probability"):
        from wfm.data.recipes import recipe_from_dict
        d = tiny_recipe().to_dict() | {"impairments": {"agc_step_probability": 2}}
        recipe_from_dict(d, source="x.yaml")


def test_phase_offset_and_slope_are_per_packet_and_removed_by_the_sanitiser():
    h = clean()
    cfg = CSIImpairments(phase_offset=True, timing_offset_ns=200)
    y, _ = apply_csi_impairments(h, cfg, seed=3, subcarrier_spacing_hz=SCS)
    np.testing.assert_allclose(np.abs(y), np.abs(h), rtol=1e-5, atol=1e-6)  # phase only
    rot = np.angle(y * np.conj(h))  # [n, T, A, K]: the added phase line
    slope = np.angle(np.mean(np.exp(1j * np.diff(rot, axis=-1)), axis=-1))  # rad per subcarrier
    tau = -slope / (2 * np.pi * SCS)
    assert np.abs(tau).max() <= 200e-9 + 1e-9 and np.abs(tau).std() > 40e-9
    assert np.std(tau[:, 1:] - tau[:, :-1]) > 40e-9  # differs from packet to packet
    assert np.std(tau[:, :, 1] - tau[:, :, 0]) > 40e-9  # and from chain to chain
    # The importer's linear sanitisation recovers the clean channel's sanitised form exactly.
    san, _ = apply_csi_impairments(h, CSIImpairments(phase_offset=True, timing_offset_ns=200, sanitize="linear"),
                                   seed=3, subcarrier_spacing_hz=SCS)
    ref = remove_linear_phase(h.astype(np.complex128), np.arange(h.shape[-1]))
    np.testing.assert_allclose(san, ref, atol=1e-4)


def test_shared_timing_offset():
    h = clean()
    y, _ = apply_csi_impairments(h, CSIImpairments(timing_offset_ns=200, timing_offset_shared=True), 1, SCS)
    rot = np.angle(y * np.conj(h))
    slope = np.angle(np.mean(np.exp(1j * np.diff(rot, axis=-1)), axis=-1))
    np.testing.assert_allclose(slope[:, :, 1:], np.broadcast_to(slope[:, :, :1], slope[:, :, 1:].shape), atol=1e-4)


def test_snr_is_as_drawn():
    h = clean(n=8, T=16, K=64)
    y, info = apply_csi_impairments(h, CSIImpairments(snr_db=(5.0, 25.0)), 0, SCS)
    snr = info["snr_db"]
    assert ((snr >= 5) & (snr <= 25)).all() and snr.std() > 1
    measured = 10 * np.log10(np.mean(np.abs(h) ** 2, axis=(1, 2, 3)) / np.mean(np.abs(y - h) ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(measured, snr, atol=0.5)


def test_agc_steps():
    h = clean(n=4, T=64)
    cfg = CSIImpairments(agc_step_db=4, agc_step_probability=0.2)
    y, _ = apply_csi_impairments(h, cfg, 0, SCS)
    g = 20 * np.log10(np.abs(y) / np.abs(h))  # [n, T, A, K]
    np.testing.assert_allclose(g, g[:, :, :1, :1] * np.ones_like(g), atol=1e-3)  # one gain per packet
    steps = np.diff(g[:, :, 0, 0], axis=1)
    jumps = np.abs(steps) > 1e-3
    assert 0.1 < jumps.mean() < 0.3
    assert np.all((np.abs(steps[jumps]) >= 2 - 1e-3) & (np.abs(steps[jumps]) <= 4 + 1e-3))
    assert np.allclose(g[:, 0], 0, atol=1e-3)
    per_ant, _ = apply_csi_impairments(h, CSIImpairments(agc_step_db=4, agc_step_probability=0.2,
                                                         agc_per_antenna=True), 0, SCS)
    ga = 20 * np.log10(np.abs(per_ant) / np.abs(h))
    assert np.abs(ga[:, :, 1, 0] - ga[:, :, 0, 0]).max() > 1


def test_gain_jitter_is_white_per_packet_and_common_to_subcarriers():
    h = np.ones((64, 16, 2, 8), np.complex64)
    y, _ = apply_csi_impairments(h, CSIImpairments(gain_jitter_db=1.0), 0, SCS)
    g = 20 * np.log10(np.abs(y))  # [n, T, A, K] dB
    assert np.allclose(g, g[..., :1, :1], atol=1e-4)  # one gain per packet for every antenna and subcarrier
    assert abs(g.std() - 1.0) < 0.1 and abs(g.mean()) < 0.1
    d = g[:, :, 0, 0] - g[:, :, 0, 0].mean(axis=1, keepdims=True)
    lag1 = (d[:, 1:] * d[:, :-1]).sum() / (d * d).sum()
    assert abs(lag1) < 0.15  # independent from packet to packet (white), unlike AGC steps
    per_ant, _ = apply_csi_impairments(h, CSIImpairments(gain_jitter_db=1.0, agc_per_antenna=True), 0, SCS)
    assert not np.allclose(np.abs(per_ant[:, :, 0]), np.abs(per_ant[:, :, 1]))
    with pytest.raises(DataError, match="gain_jitter_db"):
        CSIImpairments(gain_jitter_db=-1.0)
    # Off, the draws of every other impairment are unchanged (it is drawn last).
    cfg = dict(snr_db=(10, 20), phase_offset=True, agc_step_db=3, agc_step_probability=0.3)
    a, _ = apply_csi_impairments(clean(), CSIImpairments(**cfg), 3, SCS)
    b, _ = apply_csi_impairments(clean(), CSIImpairments(**cfg, gain_jitter_db=0.5), 3, SCS)
    ratio = np.abs(b) / np.abs(a)
    assert np.allclose(ratio, ratio[..., :1, :1], rtol=1e-4) and not np.allclose(ratio, 1.0)


def test_gain_dips_are_sparse_common_and_come_back():
    h = np.ones((256, 32, 2, 8), np.complex64)
    cfg = CSIImpairments(gain_dip_db=2.0, gain_dip_probability=0.1, gain_dip_length=1.5)
    assert cfg.active and cfg.gain_dips and cfg.to_dict()["gain_dip_length"] == 1.5
    assert "gain_dip_db" not in CSIImpairments(gain_jitter_db=1.0).to_dict()  # off: older manifests still match
    y, _ = apply_csi_impairments(h, cfg, 0, SCS)
    g = 20 * np.log10(np.abs(y))  # [n, T, A, K] dB
    assert np.allclose(g, g[..., :1, :1], atol=1e-4)  # one gain per packet for every antenna and subcarrier
    g = g[:, :, 0, 0]
    dip = g < -1e-3
    assert np.all(g <= 1e-4)  # a dip only lowers the gain, and the level is 0 dB between dips
    assert np.all((g[dip] >= -2.5 - 1e-3) & (g[dip] <= -1.5 + 1e-3))  # U(0.75, 1.25) x 2 dB
    # Runs: geometric of mean 1.5, started at p = 0.1 of the packets not in one.
    starts = dip[:, 1:] & ~dip[:, :-1]
    runs = dip[:, 1:].sum() / max(1, starts.sum())
    assert 1.25 < runs < 1.8
    share = 0.1 * 1.5 / (1 + 0.1 * 1.5)  # renewal: a start per 1 / p packets out of a dip
    assert abs(dip.mean() - share) < 0.03
    # One depth per dip: the packets of a run share it (a new dip may start right after one ends).
    both = dip[:, 1:] & dip[:, :-1]
    assert np.mean(np.isclose(g[:, 1:][both], g[:, :-1][both], atol=1e-4)) > 0.8
    per_ant, _ = apply_csi_impairments(h, CSIImpairments(gain_dip_db=2.0, gain_dip_probability=0.1,
                                                         agc_per_antenna=True), 0, SCS)
    assert not np.allclose(np.abs(per_ant[:, :, 0]), np.abs(per_ant[:, :, 1]))
    for bad in ({"gain_dip_db": -1.0}, {"gain_dip_probability": 1.5}, {"gain_dip_length": 0.5}):
        with pytest.raises(DataError, match=next(iter(bad))):
            CSIImpairments(**bad)
    # Off, the draws of every other impairment are unchanged (they are drawn last).
    other = dict(snr_db=(10, 20), phase_offset=True, gain_jitter_db=0.5, band_tilt_db=3.0)
    a, _ = apply_csi_impairments(clean(), CSIImpairments(**other), 3, SCS)
    b, _ = apply_csi_impairments(clean(), CSIImpairments(**other, gain_dip_db=2.0, gain_dip_probability=0.2), 3, SCS)
    ratio = np.abs(b) / np.abs(a)
    assert np.allclose(ratio, ratio[..., :1, :1], rtol=1e-4) and np.all(ratio <= 1 + 1e-5) and not np.allclose(ratio, 1.0)


def test_band_response_is_a_fixed_tilt_and_edge_roll_off_per_chain():
    h = np.ones((200, 8, 3, 64), np.complex64)  # 64 x 312.5 kHz = 20 MHz
    cfg = CSIImpairments(band_tilt_db=6.0, band_edge_db=4.0, band_edge_mhz=1.0)
    assert cfg.active and cfg.band_response and cfg.to_dict()["band_edge_db"] == 4.0
    assert "band_tilt_db" not in CSIImpairments(snr_db=(1.0, 2.0)).to_dict()  # off: older manifests still match
    y, _ = apply_csi_impairments(h, cfg, 0, SCS)
    g = 20 * np.log10(np.abs(y))  # [n, T, A, K] dB
    assert np.allclose(g, g[:, :1], atol=1e-4)  # the same response at every packet
    assert not np.allclose(g[:, 0, 0], g[:, 0, 1])  # one per receive chain
    g = g[:, 0]  # [n, A, K]
    mid = slice(16, 48)  # >= 5 MHz from either edge: the edge terms are below 0.03 dB there
    k = np.arange(64)
    slope = np.polyfit(k[mid], g[..., mid].reshape(-1, 32).T, 1)[0] * 63  # dB from edge to edge
    assert np.abs(slope).max() <= 6.0 + 0.1 and slope.std() > 2.5  # U(-6, 6): std 3.46
    line = g[..., mid].mean(-1, keepdims=True) + slope.reshape(200, 3, 1) * (k - 31.5) / 63
    drop = line[..., [0, -1]] - g[..., [0, -1]]  # each edge below the tilt's line
    assert drop.min() >= -0.05 and drop.max() <= 4.0 + 0.05 and drop.mean() > 1.5  # U(0, 4): mean 2
    assert np.abs(g[..., mid] - line[..., mid]).max() < 0.1
    for bad in ({"band_tilt_db": -1.0}, {"band_edge_db": -1.0}, {"band_edge_mhz": 0.0}):
        with pytest.raises(DataError, match=next(iter(bad))):
            CSIImpairments(**bad)
    # Off, the draws of every other impairment are unchanged (it is drawn last).
    other = dict(snr_db=(10, 20), phase_offset=True, gain_jitter_db=0.5)
    a, _ = apply_csi_impairments(clean(), CSIImpairments(**other), 3, SCS)
    b, _ = apply_csi_impairments(clean(), CSIImpairments(**other, band_tilt_db=3.0), 3, SCS)
    ratio = np.abs(b) / np.abs(a)
    assert np.allclose(ratio, ratio[:, :1], rtol=1e-4) and not np.allclose(ratio, 1.0)


def test_band_delay_is_an_edge_group_delay_that_sanitisation_leaves_as_an_s_curve():
    h = np.ones((300, 4, 3, 64), np.complex64)  # 64 x 312.5 kHz = 20 MHz
    cfg = CSIImpairments(band_delay_ns=100.0, band_delay_mhz=2.0)
    assert cfg.active and cfg.band_response
    d = cfg.to_dict()
    assert d["band_delay_ns"] == 100.0 and "band_tilt_db" not in d  # only what is on is written
    assert "band_delay_ns" not in CSIImpairments(band_tilt_db=3.0).to_dict()  # older band manifests still match
    y, _ = apply_csi_impairments(h, cfg, 0, SCS)
    np.testing.assert_allclose(np.abs(y), 1.0, atol=1e-5)  # phase only
    phase = np.unwrap(np.angle(y), axis=-1)
    np.testing.assert_allclose(phase, np.broadcast_to(phase[:, :1], phase.shape), atol=1e-5)  # the same at every packet
    assert not np.allclose(phase[:, 0, 0], phase[:, 0, 1])  # one per receive chain
    delay = -np.diff(phase[:, 0], axis=-1) / (2 * np.pi * SCS) * 1e9  # ns between subcarriers [n, A, K-1]
    low, mid, high = delay[..., 0], delay[..., 31], delay[..., -1]
    # Each edge: U(0, 100) ns (mean 50), a step of 312.5 kHz into the band (exp(-0.156 / 2) ~ 0.92).
    for edge in (low, high):
        assert edge.min() >= 0.0 and edge.max() <= 100.0 and 38 < edge.mean() < 55 and edge.std() > 20
    assert np.abs(mid).max() < 100 * 2 * np.exp(-9.5 / 2)  # 10 MHz from both edges: decayed
    np.testing.assert_allclose(delay[..., 1] / delay[..., 0], np.exp(-0.3125 / 2), rtol=0.05, atol=0.5)
    # What a linear sanitisation leaves: the low edge above each packet's line, the high edge below
    # (the S of the Intel 5300 capture; not in every draw: a lone high-edge delay tilts the line).
    s, _ = apply_csi_impairments(h, CSIImpairments(band_delay_ns=100.0, band_delay_mhz=2.0, sanitize="linear"), 0, SCS)
    rest = np.degrees(np.unwrap(np.angle(s), axis=-1)[:, 0])
    assert rest[..., 0].mean() > 10 and rest[..., -1].mean() < -10
    assert (rest[..., 0] > 0).mean() > 0.75 and (rest[..., -1] < 0).mean() > 0.75
    for bad in ({"band_delay_ns": -1.0}, {"band_delay_mhz": 0.0}):
        with pytest.raises(DataError, match=next(iter(bad))):
            CSIImpairments(**bad)
    # Drawn after everything else: the other options' draws, the gain response's included, are unchanged.
    other = dict(snr_db=(10, 20), phase_offset=True, gain_jitter_db=0.5, band_tilt_db=3.0, band_edge_db=2.0)
    a, _ = apply_csi_impairments(clean(), CSIImpairments(**other), 3, SCS)
    b, _ = apply_csi_impairments(clean(), CSIImpairments(**other, band_delay_ns=80.0), 3, SCS)
    np.testing.assert_allclose(np.abs(b), np.abs(a), rtol=1e-4)
    assert not np.allclose(b, a)


def test_quantisation_on_the_8bit_grid_per_packet():
    h = clean()
    y, _ = apply_csi_impairments(h, CSIImpairments(quantize_bits=8), 0, SCS)
    peak = np.maximum(np.abs(y.real), np.abs(y.imag)).max(axis=(2, 3), keepdims=True)
    for part in (y.real, y.imag):
        q = part * (127 / peak)
        np.testing.assert_allclose(q, np.round(q), atol=2e-3)
        assert np.abs(np.round(q)).max() <= 128
    assert len(np.unique(np.round(y.real * 127 / peak))) > 50
    err = np.mean(np.abs(y - h) ** 2) / np.mean(np.abs(h) ** 2)
    assert 1e-6 < err < 1e-3  # about -40 dB for int8


def test_determinism_and_independence_from_batching():
    h = clean(n=6)
    cfg = CSIImpairments(snr_db=(10, 20), phase_offset=True, timing_offset_ns=100, agc_step_db=3,
                         agc_step_probability=0.3, quantize_bits=8, sanitize="linear")
    a, ia = apply_csi_impairments(h, cfg, 7, SCS)
    b, ib = apply_csi_impairments(h, cfg, 7, SCS)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ia["snr_db"], ib["snr_db"])
    c, _ = apply_csi_impairments(h, cfg, 8, SCS)
    assert not np.array_equal(a, c)
    # Sample i depends on (seed, i) only: the first 3 samples alone give the same result.
    d, _ = apply_csi_impairments(h[:3], cfg, 7, SCS)
    np.testing.assert_array_equal(a[:3], d)


def test_generator_default_off_is_unchanged_and_impairments_come_after_the_channel():
    plain = tiny_recipe(num_samples=8)
    g0 = CSIGenerator(plain).generate(8, 5)
    same = CSIGenerator(tiny_recipe(num_samples=8, impairments={})).generate(8, 5)  # nothing on
    np.testing.assert_array_equal(g0["csi"], same["csi"])
    assert "impairments" not in plain.to_dict() and "snr_db" not in CSIGenerator(plain).specs()
    imp = tiny_recipe(num_samples=8, impairments={"snr_db": [20, 20], "phase_offset": True})
    g1 = CSIGenerator(imp).generate(8, 5)
    np.testing.assert_allclose(np.abs(g1["csi"] - g0["csi"] * np.exp(1j * np.angle(g1["csi"] * np.conj(g0["csi"])))),
                               0, atol=1.0)  # same channel underneath
    np.testing.assert_array_equal(g1["snr_db"], np.full(8, 20, np.float32))
    assert imp.to_dict()["impairments"]["snr_db"] == [20.0, 20.0]
    assert CSIGenerator(imp).attrs()["impairments"]["phase_offset"] is True


def test_wifi_recipes_load():
    names = sorted(p.stem for p in (RECIPES / "wifi").glob("*.yaml"))
    assert len(names) >= 5
    shapes = set()
    for n in names:
        r = load_recipe(RECIPES / "wifi" / f"{n}.yaml")
        assert r.name == n and r.impairments is not None and r.impairments.active
        shapes.add((r.num_antennas, r.num_subcarriers))
    assert {(3, 30), (2, 56), (2, 114), (1, 242)} <= shapes


# ---------------------------------------------------------------------------- traffic


def test_traffic_recipes_at_every_interval():
    got = {load_recipe(RECIPES / f"{n}.yaml").interval_min: load_recipe(RECIPES / f"{n}.yaml")
           for n in ("traffic-1min", "traffic-2min", "traffic-5min", "traffic-10min-regimes", "traffic-15min",
                     "traffic-hourly-regimes")}
    assert set(got) == {1, 2, 5, 10, 15, 60}
    assert got[2].steps >= 4096 and all(r.steps >= 7 * r.steps_per_day for r in got.values())
    assert all(r.has_extras for r in got.values())
    # Existing recipes are unchanged: no extras, and their dicts lack the new keys.
    old = load_recipe(RECIPES / "traffic-10min.yaml")
    assert not old.has_extras and "level_shifts_per_week" not in old.to_dict()


def test_traffic_extras_off_are_bit_identical_and_on_change_only_by_a_factor():
    base = load_recipe(RECIPES / "traffic-10min.yaml").with_overrides(num_samples=8, days=14)
    a = TrafficGenerator(base).generate(8, 3)
    ext = base.with_overrides(level_shifts_per_week=2.0, drift_scale=0.3)
    b = TrafficGenerator(ext).generate(8, 3)
    np.testing.assert_array_equal(a["start_step"], b["start_step"])
    ratio = np.log(b["traffic"] / a["traffic"])
    assert np.abs(ratio).max() > 0.1
    # Deterministic.
    np.testing.assert_array_equal(b["traffic"], TrafficGenerator(ext).generate(8, 3)["traffic"])


def test_level_shifts_are_persistent_steps():
    base = load_recipe(RECIPES / "traffic-10min.yaml").with_overrides(days=28)
    a = TrafficGenerator(base).generate(16, 0)["traffic"]
    b = TrafficGenerator(base.with_overrides(level_shifts_per_week=1.0, level_shift_log_std=1.0)).generate(16, 0)["traffic"]
    r = np.log(b / a)  # piecewise constant
    d = np.abs(np.diff(r, axis=1)) > 1e-4
    n_shifts = d.sum()
    assert 16 * 4 * 0.4 < n_shifts < 16 * 4 * 2  # about 1 per week
    assert np.isclose(r[:, 0], 0).all()


def test_drift_makes_persistence_better_than_the_seasonal_profile():
    r = load_recipe(RECIPES / "traffic-2min.yaml").with_overrides(num_samples=8)
    x = np.log(TrafficGenerator(r).generate(8, 1)["traffic"])
    assert np.isfinite(x).all() and x.shape == (8, r.steps)
    # The autocorrelation of the log series still peaks at one day.
    spd = r.steps_per_day
    y = x - x.mean(1, keepdims=True)
    ac = [np.mean(np.sum(y[:, :-lag] * y[:, lag:], 1) / np.sum(y * y, 1)) for lag in (spd // 2, spd)]
    assert ac[1] > ac[0]


def test_short_spikes_fall_back_within_minutes_at_any_interval():
    def excess(name: str, **kw) -> tuple[np.ndarray, float]:
        base = load_recipe(RECIPES / f"{name}.yaml").with_overrides(num_samples=16, days=14)
        a = TrafficGenerator(base).generate(16, 5)["traffic"]
        b = TrafficGenerator(base.with_overrides(**kw)).generate(16, 5)["traffic"]
        return b / a - 1.0, base.interval_min

    # Off: the recipe's dict and data are as before (their own random stream).
    off = load_recipe(RECIPES / "traffic-10min.yaml").with_overrides(spikes_per_day=0.0)
    assert "spikes_per_day" not in off.to_dict() and not off.has_extras
    ten, _ = excess("traffic-10min", spikes_per_day=0.0)
    np.testing.assert_array_equal(ten, 0.0)
    for name in ("traffic-10min", "traffic-2min"):
        x, minutes = excess(name, spikes_per_day=4.0, spike_minutes=15.0, spike_gain_log_mean=0.5)
        assert (x >= -1e-6).all()  # spikes only add load
        onsets = ((x[:, 1:] > 0.5) & (x[:, :-1] <= 0.5)).sum()
        assert 16 * 14 * 4 * 0.4 < onsets < 16 * 14 * 4 * 1.2  # about 4 a day (small ones stay below 0.5)
        # Above half the load for minutes, not hours: 15 min e-folding of a ~2.6x jump.
        above_min = (x > 0.5).sum() / onsets * minutes
        assert 5 < above_min < 60, (name, above_min)
    recipe = load_recipe(RECIPES / "traffic-10min-spikes.yaml")
    assert recipe.spikes_per_day == 4 and recipe.has_extras
    with pytest.raises(DataError, match="spike_minutes"):
        recipe.with_overrides(spike_minutes=0.0)


def test_shallow_days_draw_each_series_night_floor_and_leave_the_rest_of_the_series_alone():
    def day_depth(x: np.ndarray, spd: int) -> np.ndarray:
        """Each series' smoothed (2-hour means) day: its quietest over its busiest, over whole days."""
        k = spd // 12
        days = x[:, :x.shape[1] // spd * spd].reshape(len(x), -1, spd).mean(axis=1)  # the mean day
        sm = np.stack([np.convolve(d, np.ones(k) / k, mode="valid") for d in days])
        return sm.min(axis=1) / sm.max(axis=1)

    base = load_recipe(RECIPES / "traffic-10min.yaml").with_overrides(num_samples=64, days=7)
    # Off (the default floor): the dict and the data are as before.
    assert "night_floor" not in base.to_dict() and "night_floor_max" not in base.to_dict() and not base.has_extras
    deep = TrafficGenerator(base).generate(64, 2)
    shallow_recipe = base.with_overrides(night_floor_max=1.5)
    assert shallow_recipe.has_extras and shallow_recipe.to_dict()["night_floor_max"] == 1.5
    shallow = TrafficGenerator(shallow_recipe).generate(64, 2)
    # Only the season's floor changes: same start steps, archetypes, noise and bursts.
    np.testing.assert_array_equal(deep["start_step"], shallow["start_step"])
    np.testing.assert_array_equal(deep["archetype_weights"], shallow["archetype_weights"])
    assert (shallow["traffic"] >= deep["traffic"] * (1 - 1e-6)).all()  # a higher floor only adds load
    d_deep, d_shallow = day_depth(deep["traffic"], 144), day_depth(shallow["traffic"], 144)
    assert np.quantile(d_deep, 0.9) < 0.25  # nights at about a tenth of the peak
    assert np.median(d_shallow) > 1.5 * np.median(d_deep) and np.quantile(d_shallow, 0.9) > 0.35
    # A fixed floor gives every series the same depth of day (per archetype mix).
    flat = TrafficGenerator(base.with_overrides(night_floor=1.0)).generate(64, 2)["traffic"]
    assert day_depth(flat, 144).min() > 0.3
    for name in ("traffic-2min-shallow", "traffic-10min-shallow", "traffic-hourly-shallow"):
        r = load_recipe(RECIPES / f"{name}.yaml")
        assert (r.night_floor, r.night_floor_max) == (0.1, 1.5) and r.drift_scale > 0
    with pytest.raises(DataError, match="night_floor_max"):
        base.with_overrides(night_floor_max=0.05)
    with pytest.raises(DataError, match="night_floor"):
        base.with_overrides(night_floor=0.0)
