"""pretrain/context_sweep.py (``wfm.tasks.context_sweep``): common windows, per-window NMSE, seasonal
period, a tiny sweep."""

from __future__ import annotations

import numpy as np
import pytest

from wfm.tasks import context_sweep as sweep_mod

pytestmark = pytest.mark.usefixtures("one_thread")


def test_windows_nmse_and_period():
    x = np.arange(50, dtype=float)[None].repeat(2, 0)
    idx, starts = sweep_mod.windows(x, 5, 32, 4)
    assert (starts >= 32).all() and (starts + 5 <= 50).all() and len(idx) == 8
    true = np.array([[1.0, 1.0], [2.0, 0.0]])
    assert sweep_mod.nmse(np.zeros_like(true), true) == pytest.approx(1.0)
    assert sweep_mod.nmse(true + 1j * 0, true) == 0.0
    assert sweep_mod.seasonal_period(600.0, 144) == 144 and sweep_mod.seasonal_period(600.0, 1008) == 1008
    assert sweep_mod.seasonal_period(600.0, 100) is None and sweep_mod.seasonal_period(1e-3, 4096) is None


def test_tiny_sweep_every_context_scores_the_same_windows():
    import math

    t = np.arange(400, dtype=float)
    sets = {"toy": {"series": np.stack([np.sin(2 * math.pi * t / 24) + 5, np.sin(2 * math.pi * t / 24 + 1) + 3]),
                    "interval": 3600.0, "horizon": 6}}
    models = {"prior-mix": sweep_mod.load_forecaster("prior-mix:backtest_weight=4")}
    res = sweep_mod.sweep(sets, models, [8, 16, 32, 64], max_windows=3, batch=64)["toy"]
    assert list(res["rows"]) == [8, 16, 32, 64] and res["windows"] == 6
    assert res["seasonal_period"][32] == 24 and res["seasonal_period"][16] is None
    row = res["rows"][64]
    assert row["seasonal"] < row["persistence"] and row["best classical"] == min(row[k] for k in sweep_mod.CLASSICAL)
    assert "### toy" in sweep_mod.table("toy", res)
    ch = res["changes"]["prior-mix"]
    assert list(ch) == [16, 32, 64] and all(c["lo"] <= c["db"] <= c["hi"] for c in ch.values())
    assert "worse beyond noise" in sweep_mod.table("toy", res)
    assert list(res["changes_by_window"]["prior-mix"]) == [16, 32, 64]


def test_context_changes_are_paired_bootstrap_intervals():
    rng = np.random.default_rng(0)
    base = rng.gamma(2.0, 0.05, size=200)  # windows of very different difficulty
    same = sweep_mod.context_changes({8: base, 16: base})[16]
    assert same["db"] == 0.0 and same["lo"] == same["hi"] == 0.0  # paired: no noise when nothing changes
    worse = sweep_mod.context_changes({8: base, 16: base * 1.1, 32: base * 1.1 * rng.uniform(0.5, 1.5, 200)})
    assert worse[16]["db"] == pytest.approx(10 * np.log10(1.1)) and worse[16]["lo"] > 0  # beyond noise
    assert worse[32]["lo"] < 0 < worse[32]["hi"]  # a noisy change: the interval spans zero


def test_context_changes_draw_the_windows_of_one_target_time_together():
    """Windows that share their target steps (the series of one capture) are one unit: 48 copies of
    8 windows give the interval of 8 windows, not of 384, and the same change as drawn one by one."""
    rng = np.random.default_rng(1)
    a = rng.gamma(2.0, 0.05, size=8)
    b = a * rng.uniform(0.8, 1.35, size=8)  # a noisy change over 8 independent target times
    rep = {8: np.tile(a, 48), 16: np.tile(b, 48)}
    starts = np.tile(np.arange(8), 48)
    alone = sweep_mod.context_changes(rep)[16]
    together = sweep_mod.context_changes(rep, clusters=starts)[16]
    eight = sweep_mod.context_changes({8: a, 16: b})[16]
    assert together["db"] == pytest.approx(alone["db"]) == pytest.approx(eight["db"])
    assert together["hi"] - together["lo"] == pytest.approx(eight["hi"] - eight["lo"], rel=0.15)
    assert together["hi"] - together["lo"] > 4 * (alone["hi"] - alone["lo"])
    same = sweep_mod.context_changes({8: np.tile(a, 3), 16: np.tile(a, 3)}, clusters=np.repeat(np.arange(3), 8))[16]
    assert same["lo"] == same["hi"] == 0.0


def test_generated_series_join_the_sweep_with_their_own_horizon(tmp_path, monkeypatch):
    """``--generated FOLDER:HORIZON``: a generated series dataset is swept like the real sets, even
    where no real capture is present."""
    from wfm.data.generate import generate_dataset
    from wfm.data.recipes import load_recipe

    generate_dataset(load_recipe(sweep_mod.REPO / "data" / "recipes" / "traffic-10min.yaml"), tmp_path / "traffic-10min",
                     num_samples=2, seed=777)
    monkeypatch.setattr(sweep_mod, "import_real", lambda *a, **k: {})
    out = sweep_mod.main(["--model", "prior-mix:backtest_weight=4", "--generated", f"{tmp_path / 'traffic-10min'}:6",
                          "--contexts", "64", "128", "--max-windows", "2", "--out", str(tmp_path / "sweep")])
    res = out["sets"]["traffic-10min-traffic"]
    assert res["horizon"] == 6 and res["series"] == 2 and res["windows"] == 4 and list(res["rows"]) == [64, 128]
    assert (tmp_path / "sweep" / "context_sweep.json").is_file()


def test_an_imported_series_of_any_kind_joins_the_sweep_and_same_named_models_stay_apart(tmp_path, monkeypatch):
    """A series imported with ``wfm data import csv`` (here a half-hourly load with a daily cycle) is
    a set named after its folder and its kind; two model folders of one name are both scored."""
    from wfm.cli import main as wfm_main

    t = np.arange(48 * 6)
    (tmp_path / "load.csv").write_text("mw\n" + "".join(f"{100 + 10 * np.sin(2 * np.pi * i / 48):.3f}\n" for i in t))
    wfm_main(["data", "import", "csv", str(tmp_path / "load.csv"), "--interval", "1800", "--series-kind", "load",
              "--out", str(tmp_path / "demand")])
    monkeypatch.setattr(sweep_mod, "import_real", lambda *a, **k: {})
    mix = sweep_mod.load_forecaster("prior-mix")
    monkeypatch.setattr(sweep_mod, "load_forecaster", lambda spec: mix)
    out = sweep_mod.main(["--model", str(tmp_path / "a" / "m"), "--model", str(tmp_path / "b" / "m"),
                          "--generated", f"{tmp_path / 'demand'}:12", "--contexts", "48", "96", "--max-windows", "3",
                          "--out", str(tmp_path / "sweep")])
    res = out["sets"]["demand-load"]
    assert res["horizon"] == 12 and res["windows"] == 3
    assert {str(tmp_path / "a" / "m"), str(tmp_path / "b" / "m")} <= set(res["rows"][48])
    assert res["rows"][96]["seasonal"] < 1e-6  # a clean daily cycle: a day back is exact
