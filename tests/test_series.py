"""Generated series (trajectory, traffic) and the one series view (wfm.data.series)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wfm.data.errors import DataError
from wfm.data.generate import generate_dataset
from wfm.data.recipes import load_recipe, recipe_catalog
from wfm.data.series import SeriesTable, SeriesWindows, series_tables
from wfm.data.series_generators import TrafficRecipe, TrajectoryRecipe
from wfm.data.shards import FieldSpec, ShardedDataset, write_dataset

RECIPES = Path(__file__).resolve().parents[1] / "data" / "recipes"


def _series_recipes():
    return [r for r in recipe_catalog(RECIPES) if r.kind in ("trajectory", "traffic")]


def test_series_recipes_load_and_meet_the_brief():
    recipes = {r.name: r for r in _series_recipes()}
    assert {"traj-pedestrian", "traj-vehicular", "traffic-10min", "traffic-hourly"} <= set(recipes)
    assert any(r.kind == "trajectory" and r.split == "zeroshot" for r in recipes.values())
    for r in recipes.values():
        if r.kind == "trajectory":
            assert r.steps >= 256
        if r.kind == "trajectory" and r.split == "pretrain":
            assert r.interval_ms == 100
    assert recipes["traffic-10min"].interval_s == 600 and recipes["traffic-hourly"].interval_s == 3600


def test_recipe_errors_name_the_file(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("kind: trajectory\nmobility: pedestrian\nnum_samples: 4\nstpes: 300\n")
    with pytest.raises(DataError, match=r"t.yaml: unknown recipe key\(s\) stpes"):
        load_recipe(bad)
    bad.write_text("kind: traffic\ninterval_min: 7\nnum_samples: 4\n")
    with pytest.raises(DataError, match="t.yaml.*divide a day"):
        load_recipe(bad)


def _generate(tmp_path: Path, name: str, n: int, seed: int = 0) -> ShardedDataset:
    recipe = load_recipe(RECIPES / f"{name}.yaml").with_overrides(num_samples=n, shard_size=max(1, n // 2))
    out = tmp_path / f"{name}-{seed}"
    generate_dataset(recipe, out, seed=seed)
    return ShardedDataset(out)


@pytest.mark.parametrize("name", ["traj-pedestrian", "traj-vehicular", "traj-highway-heldout"])
def test_trajectory_shapes_determinism_and_geometry(tmp_path, name):
    ds = _generate(tmp_path, name, 6)
    again = _generate(tmp_path / "again", name, 6)
    other = _generate(tmp_path, name, 6, seed=1)
    r = load_recipe(RECIPES / f"{name}.yaml")
    a = ds.read_range(0, len(ds))
    L = r.steps
    assert a["position"].shape == (6, L, 3) and a["aoa"].shape == (6, L, 2) and a["distance"].shape == (6, L)
    assert ds.attrs["interval_s"] == pytest.approx(r.interval_s)
    for k, v in again.read_range(0, 6).items():
        np.testing.assert_array_equal(v, a[k])
    assert not np.allclose(other.read_range(0, 6)["position"], a["position"])

    # Physics: distance and LoS angles agree with positions relative to the mast.
    rel = a["position"].astype(np.float64) - np.array([0.0, 0.0, r.bs_height_m])
    np.testing.assert_allclose(a["distance"], np.linalg.norm(rel, axis=-1), rtol=1e-5)
    az = np.rad2deg(np.arctan2(rel[..., 1], rel[..., 0]))
    daz = np.remainder(a["aoa"][..., 0] - az + 180.0, 360.0) - 180.0
    assert np.abs(daz).max() < 1e-2
    assert np.abs(np.diff(a["aoa"][..., 0], axis=1)).max() < 180  # unwrapped: no 360-degree jumps
    el = np.rad2deg(np.arctan2(rel[..., 2], np.linalg.norm(rel[..., :2], axis=-1)))
    np.testing.assert_allclose(a["aoa"][..., 1], el, atol=1e-3)
    assert (a["aoa"][..., 1] < 0).all()  # users stand below the mast
    # Speed is the per-step displacement over the interval, within the recipe's range.
    step_speed = np.linalg.norm(np.diff(a["position"], axis=1), axis=-1) / r.interval_s
    np.testing.assert_allclose(step_speed, a["speed"][:, :-1], rtol=1e-3, atol=1e-2)
    assert a["speed"].max() <= r.speed_kmh[1] / 3.6 + 1e-4
    moving = a["speed"][a["speed"] > 0]
    assert moving.min() >= r.speed_kmh[0] / 3.6 - 1e-4


def test_trajectories_have_stops_turns_and_speed_changes():
    from wfm.data.series_generators import TrajectoryGenerator

    for mobility in ("pedestrian", "vehicular"):
        r = TrajectoryRecipe(name="t", mobility=mobility, num_samples=32, steps=1024,
                             speed_kmh=(2, 50), stop_probability=0.2, turn_probability=0.4)
        a = TrajectoryGenerator(r).generate(32, seed=3)
        speed = a["speed"]
        assert (speed == 0).any(), "no stops"
        changes = np.abs(np.diff(speed, axis=1)) > 1e-3
        assert changes.sum(axis=1).mean() > 3, "too few speed changes"
        vel = np.diff(a["position"][..., :2], axis=1)
        heading = np.arctan2(vel[..., 1], vel[..., 0])
        moving = (np.linalg.norm(vel, axis=-1) > 0)
        turn = np.abs(np.remainder(np.diff(heading, axis=1) + np.pi, 2 * np.pi) - np.pi)
        assert ((turn > np.deg2rad(40)) & moving[:, 1:] & moving[:, :-1]).any(), "no turns"


def test_gps_error_moves_the_fixes_as_a_receiver_does_and_leaves_the_path_and_other_recipes_alone():
    """``gps_*`` recipe options: the same seed gives the same true path (speed, and the fixes of a
    recipe without GPS error, to the bit); the fixes then carry a wandering error of the asked
    std, white jitter and persisting steps, and distance and aoa follow the fixes."""
    from wfm.data.series_generators import TrajectoryGenerator

    base = TrajectoryRecipe(name="t", mobility="vehicular", num_samples=64, steps=600, speed_kmh=(10, 60))
    exact = TrajectoryGenerator(base).generate(64, seed=5)
    zero = TrajectoryGenerator(base.with_overrides(gps_noise_s=3.0, gps_jump_m=9.0)).generate(64, seed=5)
    for k in exact:  # options that add no error change nothing
        np.testing.assert_array_equal(zero[k], exact[k])
    wander = TrajectoryGenerator(base.with_overrides(gps_noise_m=2.0, gps_noise_s=5.0)).generate(64, seed=5)
    err = (wander["position"] - exact["position"])[..., :2].astype(np.float64)
    np.testing.assert_array_equal(wander["speed"], exact["speed"])
    assert err.std() == pytest.approx(2.0, rel=0.15)
    np.testing.assert_array_equal(wander["position"][..., 2], exact["position"][..., 2])  # the antenna's height
    a = np.exp(-0.1 / 5.0)  # 100 ms fixes: the error's lag-1 correlation
    lag1 = (err[:, 1:] * err[:, :-1]).mean() / (err * err).mean()
    assert lag1 == pytest.approx(a, abs=0.01)
    jitter = TrajectoryGenerator(base.with_overrides(gps_jitter_m=0.3)).generate(64, seed=5)
    step = np.diff((jitter["position"] - exact["position"])[..., :2].astype(np.float64), axis=1)
    assert step.std() == pytest.approx(0.3 * np.sqrt(2), rel=0.05)  # white: each step differences two draws
    jumps = TrajectoryGenerator(base.with_overrides(gps_jumps_per_min=6.0, gps_jump_m=5.0)).generate(64, seed=5)
    moved = np.abs(np.diff((jumps["position"] - exact["position"])[..., :2], axis=1)).max(-1) > 1e-4
    assert moved.sum(1).mean() == pytest.approx(6.0, rel=0.15)  # 6 a minute, 599 steps of 100 ms
    for out in (wander, jitter, jumps):  # distance follows the fix
        rel = out["position"].astype(np.float64) - np.array([0.0, 0.0, base.bs_height_m])
        np.testing.assert_allclose(out["distance"], np.linalg.norm(rel, axis=-1), rtol=1e-5)
    with pytest.raises(DataError, match="gps_jitter_m must be >= 0"):
        base.with_overrides(gps_jitter_m=-1.0)
    with pytest.raises(DataError, match="gps_noise_s must be > 0"):
        base.with_overrides(gps_noise_s=0.0)


def _autocorr(x: np.ndarray, max_lag: int) -> np.ndarray:
    x = x - x.mean(axis=-1, keepdims=True)
    var = (x * x).mean(axis=-1)
    # Mean over the overlap (not the whole length), so long lags are not biased downwards.
    return np.stack([(x[:, : x.shape[1] - k] * x[:, k:]).mean(axis=-1) / var for k in range(max_lag + 1)], -1).mean(0)


@pytest.mark.parametrize("name,per_day", [("traffic-10min", 144), ("traffic-hourly", 24)])
def test_traffic_has_daily_and_weekly_periods(tmp_path, name, per_day):
    ds = _generate(tmp_path, name, 16)
    a = ds.read_range(0, len(ds))
    x = a["traffic"]
    assert x.shape[1] == load_recipe(RECIPES / f"{name}.yaml").steps and (x > 0).all()
    assert ds.attrs["interval_s"] == 86400 / per_day
    acf = _autocorr(np.log(x.astype(np.float64)), 8 * per_day)
    # The strongest correlation after the first half day is one day later ...
    lag = per_day // 2 + int(np.argmax(acf[per_day // 2: 3 * per_day // 2]))
    assert lag == per_day
    # ... and one week correlates better than six days (weekends differ from weekdays).
    assert acf[7 * per_day] > acf[6 * per_day]
    # Heavy tails: the noise of log traffic (against a day earlier) has excess kurtosis.
    d = np.diff(np.log(x.astype(np.float64)), axis=1).ravel()
    kurt = np.mean((d - d.mean()) ** 4) / np.var(d) ** 2
    assert kurt > 4
    # Bursts: some steps rise far above the seasonal level.
    assert (x / np.median(x, axis=1, keepdims=True)).max() > 5


def test_traffic_generator_is_deterministic():
    from wfm.data.series_generators import TrafficGenerator

    g = TrafficGenerator(TrafficRecipe(name="t", interval_min=60, num_samples=4, days=14))
    a, b = g.generate(4, 11), g.generate(4, 11)
    np.testing.assert_array_equal(a["traffic"], b["traffic"])
    assert not np.array_equal(a["traffic"], g.generate(4, 12)["traffic"])


# ---------------------------------------------------------------------------- series view


def _csi_dataset(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n, T, A, K = 3, 10, 2, 4
    csi = (rng.normal(size=(n, T, A, K)) + 1j * rng.normal(size=(n, T, A, K))).astype(np.complex64)
    specs = {"csi": FieldSpec("complex64", (T, A, K)), "aoa": FieldSpec("float32", (T, 2)),
             "distance": FieldSpec("float32", (T,)), "geometry_valid": FieldSpec("bool", ())}
    arrays = {"csi": csi, "aoa": rng.normal(size=(n, T, 2)).astype(np.float32),
              "distance": rng.uniform(10, 20, size=(n, T)).astype(np.float32),
              "geometry_valid": np.array([True, False, True])}
    return write_dataset(tmp_path / "csi", "fake-csi", "csi", specs, [arrays], {"time_step": 5e-4})


def test_csi_reads_as_complex_series_per_antenna_and_subcarrier(tmp_path):
    root = _csi_dataset(tmp_path)
    tables = {t.kind: t for t in series_tables(root)}
    assert set(tables) == {"csi", "aoa", "distance"}
    csi = ShardedDataset(root).read_range(0, 3)["csi"]
    t = tables["csi"]
    assert len(t) == 3 * 2 * 4 and t.interval == 5e-4 and t.is_complex
    np.testing.assert_array_equal(t.values(1 * 8 + 1 * 4 + 3), csi[1, :, 1, 3])
    # Geometry is skipped where geometry_valid is False: samples 0 and 2 only.
    assert len(tables["distance"]) == 2 and len(tables["aoa"]) == 4


def test_windows_counts_alignment_interval_and_kind(tmp_path):
    root = _csi_dataset(tmp_path)
    w = SeriesWindows([root], context=4, horizon=2, stride=3, kinds=["csi"])
    # Length 10, span 6, stride 3: starts 0 and 3 -> 2 windows per series, 24 series.
    assert len(w) == 2 * 24 and w.num_series == 24
    csi = ShardedDataset(root).read_range(0, 3)["csi"]
    seen = set()
    for i in range(len(w)):
        item = w[i]
        assert item["context"].shape == (4,) and item["target"].shape == (2,)
        assert item["context"].dtype == torch.complex64 and item["complex"] and item["kind"] == "csi"
        assert float(item["interval"]) == pytest.approx(5e-4)
        n, r = divmod(item["series"], 8)
        a, k = divmod(r, 4)
        s = item["start"]
        np.testing.assert_array_equal(item["context"].numpy(), csi[n, s:s + 4, a, k])
        np.testing.assert_array_equal(item["target"].numpy(), csi[n, s + 4:s + 6, a, k])
        seen.add((item["series"], s))
    assert len(seen) == len(w)
    with pytest.raises(IndexError):
        w[len(w)]


def test_real_imag_mode_splits_complex_series(tmp_path):
    root = _csi_dataset(tmp_path)
    w = SeriesWindows([root], context=8, horizon=2, kinds=["csi"], complex_mode="real_imag")
    assert len(w) == 48
    csi = ShardedDataset(root).read_range(0, 3)["csi"]
    re, im = w[0], w[1]
    assert re["context"].dtype == torch.float32 and re["part"] == 0 and im["part"] == 1
    np.testing.assert_array_equal(re["context"].numpy(), csi[0, :8, 0, 0].real)
    np.testing.assert_array_equal(im["target"].numpy(), csi[0, 8:, 0, 0].imag)
    batch = torch.utils.data.default_collate([w[i] for i in range(5)])
    assert batch["context"].shape == (5, 8)


def test_windows_over_ragged_series_of_different_lengths(tmp_path):
    lengths = [3, 7, 12]
    rows = [np.arange(L, dtype=np.float32) + 100 * i for i, L in enumerate(lengths)]
    root = write_dataset(tmp_path / "s", "ragged", "series", {"values": FieldSpec("float32", (-1,))},
                         [{"values": rows}], {"interval_s": 0.1, "series_kind": "rssi"})
    w = SeriesWindows([root], context=3, horizon=2, stride=1)
    # Series of length 3 is too short; 7 -> 3 windows; 12 -> 8 windows.
    assert len(w) == 11
    item = w[3]
    assert item["kind"] == "rssi" and float(item["interval"]) == pytest.approx(0.1)
    np.testing.assert_array_equal(item["context"].numpy(), [200, 201, 202])
    np.testing.assert_array_equal(item["target"].numpy(), [203, 204])
    with pytest.raises(DataError):
        SeriesWindows([root], context=0, horizon=1)


def test_windows_join_consecutive_import_windows(tmp_path):
    """Imported WiFi windows of one capture read as one long series (capture/start fields)."""
    T = 4
    full = (np.arange(3 * T) + 1j * np.arange(3 * T)).astype(np.complex64)
    csi = full.reshape(3, T, 1, 1)
    arrays = {"csi": np.concatenate([csi, csi[:1] * 0 + 7]), "capture": np.array([0, 0, 0, 1]),
              "start": np.array([0, T, 2 * T, 0])}
    specs = {"csi": FieldSpec("complex64", (T, 1, 1)), "capture": FieldSpec("int64", ()),
             "start": FieldSpec("int64", ())}
    root = write_dataset(tmp_path / "w", "wifi", "csi", specs, [arrays], {"time_step": 1e-3})
    (table,) = series_tables(root)
    assert list(table.lengths) == [12, 4]
    w = SeriesWindows([table], context=5, horizon=3, stride=1)
    assert len(w) == 12 - 8 + 1
    np.testing.assert_array_equal(w[2]["context"].numpy(), full[2:7])  # straddles windows 0 and 1


def test_generated_series_through_the_view(tmp_path):
    traj = _generate(tmp_path, "traj-vehicular", 2)
    traffic = _generate(tmp_path, "traffic-hourly", 2)
    w = SeriesWindows([traj, traffic], context=96, horizon=24, stride=120)
    kinds = {w[i]["kind"] for i in range(len(w))}
    assert kinds == {"aoa", "distance", "speed", "traffic"}
    intervals = {w[i]["kind"]: float(w[i]["interval"]) for i in range(len(w))}
    assert intervals["aoa"] == pytest.approx(0.1) and intervals["traffic"] == pytest.approx(3600)
    # 512-step trajectories: 4 windows per series, 2 samples x (2 aoa + 1 distance + 1 speed);
    # 1344-step traffic: 11 windows x 2 samples.
    assert len(w) == 4 * 2 * 4 + 11 * 2
    only = SeriesWindows([traj, traffic], context=96, horizon=24, kinds=["traffic"])
    assert {only[i]["kind"] for i in range(len(only))} == {"traffic"}
    x = traffic.read_range(0, 1)["traffic"][0]
    item = only[0]
    np.testing.assert_array_equal(item["context"].numpy(), x[:96])
    assert isinstance(only.tables[0], SeriesTable)


@pytest.mark.parametrize("field", ["num_samples", "days"])
def test_series_recipe_sizes_must_be_integers(tmp_path, field):
    """``num_samples: 32.7`` in a series recipe once became 32 silently."""
    import yaml

    src = yaml.safe_load((Path(__file__).resolve().parents[1] / "data" / "recipes" / "traffic-5min.yaml").read_text())
    src[field] = 32.7
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(src))
    with pytest.raises(DataError, match=rf"{path}: bad value in recipe: {field} must be an integer, got 32.7"):
        load_recipe(path)
