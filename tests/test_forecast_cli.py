"""``wfm forecast``: a user's CSV in, forecasts with quantiles, a check against classical baselines
on the series' own last values, and a folder that is written whole or not at all."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import torch

from wfm.cli import main
from wfm.models.registry import create_model


def _csv(path, columns: dict[str, list], start=datetime(2024, 3, 4), step_s: float = 120.0) -> None:
    n = len(next(iter(columns.values())))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time", *columns])
        for i in range(n):
            w.writerow([(start + timedelta(seconds=i * step_s)).isoformat(), *(c[i] for c in columns.values())])


@pytest.fixture
def causal(tmp_path):
    torch.manual_seed(0)
    m = create_model("causal_tiny", prior="mix", guard=True, check_origins=4, quantiles=(0.1, 0.5, 0.9))
    with torch.no_grad():
        torch.nn.init.normal_(m.head.weight, std=0.1)
    m.save_pretrained(str(tmp_path / "causal"))
    return tmp_path / "causal"


def run(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(argv)
        raise SystemExit(0)
    return int(e.value.code or 0), capsys.readouterr().err


def test_forecast_writes_each_columns_forecast_and_checks_it_against_the_baselines(tmp_path, causal, capsys):
    from wfm.hub import from_pretrained
    from wfm.models.baselines import ContextMean, Persistence

    rng = np.random.default_rng(0)
    a = list(100 + np.cumsum(rng.normal(size=200)))
    b = list(5 + rng.normal(size=200))
    _csv(tmp_path / "s.csv", {"a": a, "b": b})
    out = tmp_path / "fc"
    code, err = run([ "forecast", str(causal), str(tmp_path / "s.csv"), "--interval", "120", "--horizon", "10",
                      "--time-column", "time", "--out", str(out)], capsys)
    assert code == 0, err
    rows = list(csv.DictReader(open(out / "forecast.csv")))
    assert [r["column"] for r in rows] == ["a"] * 10 + ["b"] * 10
    assert rows[0]["time"] == (datetime(2024, 3, 4) + timedelta(seconds=200 * 120)).isoformat() + "+00:00"
    assert set(rows[0]) == {"column", "step", "time", "forecast", "q0.1", "q0.5", "q0.9"}
    assert (out / "forecast.png").stat().st_size > 1000
    res = json.loads((out / "forecast.json").read_text())
    model = from_pretrained(str(causal)).eval()
    x = torch.tensor(a, dtype=torch.float32)[None]
    want = model.forecast(x, 120.0, 10)[0]
    assert [float(r["forecast"]) for r in rows[:10]] == pytest.approx(want.tolist(), rel=1e-6)
    q = model.forecast(x, 120.0, 10, quantiles=True)[0]
    got = [float(r[f"q{lv}"]) for r in rows[:10] for lv in (0.1, 0.5, 0.9)]
    assert got == pytest.approx(q.flatten().tolist(), rel=1e-6)
    # the check: the last 10 values of each column from the 190 before, NMSE = sum err^2 / sum true^2
    check = res["check"][0]
    past, truth = x[:, :-10], x[0, -10:].double()
    for name, f in (("persistence", Persistence().forecast(past, torch.tensor([120.0]), 10)[0]),
                    ("mean", ContextMean().forecast(past, torch.tensor([120.0]), 10)[0]),
                    ("model", model.forecast(past, 120.0, 10)[0])):
        assert check[name] == pytest.approx(float(((f.double() - truth) ** 2).sum() / (truth ** 2).sum()), rel=1e-5)
    assert check["model / best classical"] == pytest.approx(
        check["model"] / min(check["persistence"], check["mean"], check["seasonal"]))
    # --context: only the last values are read
    code, _ = run(["forecast", str(causal), str(tmp_path / "s.csv"), "--interval", "120", "--horizon", "10",
                   "--columns", "b", "--context", "50", "--out", str(out)], capsys)
    res = json.loads((out / "forecast.json").read_text())
    assert code == 0 and [c["column"] for c in res["check"]] == ["b"] and res["check"][0]["context"] == 50
    assert not (out / "forecast.csv").read_text().count("\na,")  # the folder was replaced as a whole
    # without --interval it is read from the time column: the same forecast as with --interval 120
    code, err = run(["forecast", str(causal), str(tmp_path / "s.csv"), "--horizon", "10", "--time-column", "time",
                     "--columns", "a", "--out", str(tmp_path / "fc2")], capsys)
    res2 = json.loads((tmp_path / "fc2" / "forecast.json").read_text())
    assert code == 0 and res2["interval_s"] == 120.0, err
    got2 = [float(r["forecast"]) for r in csv.DictReader(open(tmp_path / "fc2" / "forecast.csv"))]
    assert got2 == pytest.approx(want.tolist(), rel=1e-6)
    code, err = run(["forecast", str(causal), str(tmp_path / "s.csv"), "--horizon", "10", "--columns", "b",
                     "--out", str(tmp_path / "fc3")], capsys)
    assert code != 0 and "s.csv: no interval: give the seconds between rows (--interval), or" in err
    assert not (tmp_path / "fc3").exists()


def test_forecast_fills_short_gaps_reads_the_run_after_a_long_one_and_refuses_what_it_cannot_use(tmp_path, causal,
                                                                                                 capsys):
    """By default a gap of up to ``DEFAULT_MAX_GAP`` steps is filled linearly (and counted), a longer
    one cuts the series; ``--fill none`` cuts at any gap."""
    from wfm.forecast import DEFAULT_MAX_GAP

    assert DEFAULT_MAX_GAP == 12
    vals = [float(v) for v in np.linspace(1, 2, 100)]
    vals[60] = ""  # a gap of one step: filled by default; without a fill, the 39 values after it are the series
    _csv(tmp_path / "g.csv", {"v": vals})
    out = tmp_path / "fc"
    code = main(["forecast", str(causal), str(tmp_path / "g.csv"), "--interval", "120", "--horizon", "5",
                 "--time-column", "time", "--out", str(out)])
    printed = " ".join(capsys.readouterr().out.split())
    check = json.loads((out / "forecast.json").read_text())["check"][0]
    assert code in (0, None) and (check["context"], check["filled"]) == (100, 1)
    assert "v: 1 missing value(s) in gaps of up to 12 step(s) filled (by linear interpolation" in printed
    rows = list(csv.DictReader(open(out / "forecast.csv")))
    from wfm.hub import from_pretrained

    model = from_pretrained(str(causal)).eval()
    filled = torch.tensor(np.linspace(1, 2, 100))  # the gap filled from its neighbours: the line itself
    assert [float(r["forecast"]) for r in rows] == pytest.approx(model.forecast(filled, 120.0, 5).tolist(), rel=1e-5)
    code, _ = run(["forecast", str(causal), str(tmp_path / "g.csv"), "--interval", "120", "--horizon", "5",
                   "--fill", "none", "--time-column", "time", "--out", str(out)], capsys)
    check = json.loads((out / "forecast.json").read_text())["check"][0]
    assert code == 0 and (check["context"], check["filled"]) == (39, 0)
    long = list(vals)
    long[40:54] = [""] * 14  # 14 steps: longer than the default --max-gap
    _csv(tmp_path / "long.csv", {"v": long})
    code = main(["forecast", str(causal), str(tmp_path / "long.csv"), "--interval", "120", "--horizon", "5",
                 "--time-column", "time", "--out", str(out)])
    printed = " ".join(capsys.readouterr().out.split())
    check = json.loads((out / "forecast.json").read_text())["check"][0]
    assert (check["context"], check["filled"]) == (46, 1)  # after the long gap, the one-step gap at 60 filled
    assert "v: 1 gap(s) longer than --max-gap 12; forecasting from the run after the last one, 46 of 86 values" in printed
    code, _ = run(["forecast", str(causal), str(tmp_path / "long.csv"), "--interval", "120", "--horizon", "5",
                   "--max-gap", "14", "--time-column", "time", "--out", str(out)], capsys)
    check = json.loads((out / "forecast.json").read_text())["check"][0]
    assert code == 0 and (check["context"], check["filled"]) == (100, 15)
    # a model that is not a series model: one line naming the folder; nothing written
    mae = create_model("mae_tiny")
    mae.save_pretrained(str(tmp_path / "mae"))
    code, err = run(["forecast", str(tmp_path / "mae"), str(tmp_path / "g.csv"), "--interval", "120", "--horizon", "5",
                     "--time-column", "time", "--out", str(tmp_path / "none")], capsys)
    assert code == 2 and "causal" in err and str(tmp_path / "mae") in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "none").exists()
    # a last run of one value: refused, and the earlier output is left as it was
    before = (out / "forecast.json").read_text()
    _csv(tmp_path / "one.csv", {"v": [1.0, 2.0, *[""] * 13, 3.0]})  # a gap longer than the fill bridges
    code, err = run(["forecast", str(causal), str(tmp_path / "one.csv"), "--interval", "120", "--horizon", "5",
                     "--time-column", "time", "--out", str(out)], capsys)
    assert code == 2 and "at least 2" in err and (out / "forecast.json").read_text() == before
    code, err = run(["forecast", str(causal), str(tmp_path / "g.csv"), "--interval", "120", "--horizon", "5",
                     "--columns", "nope", "--time-column", "time", "--out", str(out)], capsys)
    assert code == 2 and "nope" in err
    code, err = run(["forecast", str(causal), str(tmp_path / "g.csv"), "--interval", "120", "--horizon", "5",
                     "--out", str(out)], capsys)  # the time column read as values
    assert code == 2 and "'time'" in err and "--time-column" in err and len(err.strip().splitlines()) == 1


def test_forecast_skips_text_columns_and_says_which_and_where_a_gap_cut_the_series(tmp_path, causal, capsys):
    vals = [float(v) for v in np.linspace(1, 2, 100)]
    cut = list(vals)
    cut[30:45] = [""] * 15  # a gap longer than the default fill bridges: the last 55 values are the series
    _csv(tmp_path / "t.csv", {"cell": ["north"] * 100, "v": vals, "w": cut})
    out = tmp_path / "fc"
    code = main(["forecast", str(causal), str(tmp_path / "t.csv"), "--horizon", "5", "--time-column", "time",
                 "--out", str(out)])
    printed = " ".join(capsys.readouterr().out.split())
    result = json.loads((out / "forecast.json").read_text())
    assert code in (0, None) and result["skipped_text_columns"] == ["cell"]
    assert [c["column"] for c in result["check"]] == ["v", "w"] and result["check"][1]["context"] == 55
    assert "skipped columns with no number in them: cell" in printed
    assert "w: 1 gap(s) longer than --max-gap 12" in printed and "55 of 85 values" in printed
    # named, a text column is still an error; and one number among text is not skipped
    code, err = run(["forecast", str(causal), str(tmp_path / "t.csv"), "--horizon", "5", "--time-column", "time",
                     "--columns", "cell", "--out", str(out)], capsys)
    assert code == 2 and "'cell'" in err and "not a number" in err
    _csv(tmp_path / "m.csv", {"cell": ["north"] * 99 + ["3"], "v": vals})
    code, err = run(["forecast", str(causal), str(tmp_path / "m.csv"), "--horizon", "5", "--time-column", "time",
                     "--out", str(out)], capsys)
    assert code == 2 and "'north'" in err


def test_forecast_reads_a_long_table_by_id_and_epoch_milliseconds_when_told(tmp_path, causal, capsys, monkeypatch):
    """An operator's export: one row per cell and step, epoch milliseconds (the Telecom Italia layout)."""
    t0, n = 1383260400000, 80
    with open(tmp_path / "long.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cell_id", "ts", "dl"])
        for i in range(n):
            for cell, scale in (("a7", 1.0), ("b2", 3.0)):
                w.writerow([cell, t0 + i * 120_000, scale * (2 + np.sin(i / 9))])
    out = tmp_path / "fc"
    args = ["forecast", str(causal), str(tmp_path / "long.csv"), "--time-column", "ts", "--id-column", "cell_id",
            "--horizon", "4", "--out", str(out)]
    code, err = run(args, capsys)  # milliseconds read as seconds lie past the year 9999: the error says so
    assert code == 2 and "'1383260400000'" in err and "--time-unit ms" in err
    import wfm.forecast

    monkeypatch.setattr(wfm.forecast, "PLOT_SERIES", 1)  # thousands of cells: the plot draws the first ones
    assert main(args + ["--time-unit", "ms"]) in (0, None)
    assert (out / "forecast.png").stat().st_size > 0
    result = json.loads((out / "forecast.json").read_text())
    assert result["interval_s"] == 120.0 and [c["column"] for c in result["check"]] == ["a7", "b2"]
    assert all(c["context"] == n for c in result["check"])
    rows = list(csv.DictReader(open(out / "forecast.csv")))
    assert [r["column"] for r in rows] == ["a7"] * 4 + ["b2"] * 4
    assert rows[0]["time"] == datetime.fromtimestamp((t0 + n * 120_000) / 1000, tz=timezone.utc).isoformat()
    # each id alone is the series: the forecast of b2 is 3x that of a7 (scale equivariance of the model)
    a, b = (np.array([float(r["forecast"]) for r in rows if r["column"] == c]) for c in ("a7", "b2"))
    assert np.allclose(b, 3 * a, rtol=1e-3)


def test_import_csv_long_table_makes_one_series_per_id(tmp_path):
    from wfm.data.shards import ShardedDataset

    with open(tmp_path / "long.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ts", "user", "rssi", "snr"])
        for i in range(12):
            for u in ("u1", "u2"):
                w.writerow([i * 0.5, u, -60 - i if u == "u1" else -70 + i, 10 + i])
    assert main(["data", "import", "csv", str(tmp_path / "long.csv"), "--time-column", "ts", "--id-column", "user",
                 "--out", str(tmp_path / "ds")]) in (0, None)
    ds = ShardedDataset(tmp_path / "ds")
    assert ds.attrs["names"] == ["u1 rssi", "u1 snr", "u2 rssi", "u2 snr"] and ds.attrs["interval_s"] == 0.5
    assert np.allclose(ds[2]["values"], -70 + np.arange(12))
    # Each id's rows at jittered times: --resample puts them on the 0.5 s grid, and the manifest says so
    with open(tmp_path / "jit.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ts", "user", "rssi"])
        for i in range(12):
            t = i * 0.5 + (0.07 if i % 2 else -0.07) * (0 < i < 11)
            for u in ("u1", "u2"):
                w.writerow([round(t, 3), u, 2.0 * t])
    assert main(["data", "import", "csv", str(tmp_path / "jit.csv"), "--time-column", "ts", "--id-column", "user",
                 "--interval", "0.5", "--resample", "--out", str(tmp_path / "dr")]) in (0, None)
    ds = ShardedDataset(tmp_path / "dr")
    assert ds.manifest["recipe"]["import"]["resampled"] is True and len(ds) == 2
    assert np.allclose(ds[1]["values"], np.arange(12) * 1.0, atol=1e-5)  # a line stays the line on the grid


def _first_check(tmp_path, causal, capsys, values: list, checks: int) -> dict:
    """The check of column ``a`` (``values`` at 2-minute steps) 10 ahead over ``checks`` windows."""
    _csv(tmp_path / "s.csv", {"a": values})
    out = tmp_path / "fc"
    code, err = run(["forecast", str(causal), str(tmp_path / "s.csv"), "--interval", "120", "--horizon", "10",
                     "--checks", str(checks), "--time-column", "time", "--out", str(out)], capsys)
    assert code == 0, err
    return json.loads((out / "forecast.json").read_text())["check"][0]


def test_forecast_checks_several_windows_and_reports_their_per_window_nmse(tmp_path, causal, capsys):
    from wfm.hub import from_pretrained

    rng = np.random.default_rng(1)
    a = list(50 + np.cumsum(rng.normal(size=60)))
    check = _first_check(tmp_path, causal, capsys, a, checks=9)
    assert check["windows"] == 5  # windows ending at 60, 50, 40, 30, 20; one ending at 10 has no past
    model = from_pretrained(str(causal)).eval()
    x = torch.tensor(a, dtype=torch.float32)
    want, want_last = [], []
    for end in (60, 50, 40, 30, 20):
        past, truth = x[None, :end - 10], x[end - 10:end].double()
        for got, f in ((want, model.forecast(past, 120.0, 10)[0]), (want_last, past[0, -1:].expand(10))):
            got.append(float(((f.double() - truth) ** 2).sum() / (truth ** 2).sum()))
    assert check["model"] == pytest.approx(np.mean(want), rel=1e-5)
    assert check["persistence"] == pytest.approx(np.mean(want_last), rel=1e-5)


def test_a_monthly_csv_is_read_on_calendar_months_with_a_yearly_season(tmp_path, causal, capsys):
    """Monthly dates (28-31 days apart) are calendar months: the interval is ``MONTH_S``, the
    forecast's times are the next months' firsts, and the check's seasonal naive copies the year."""
    from wfm.data.loaders.timegrid import MONTH_S
    from wfm.models.baselines import SeasonalNaive

    rng = np.random.default_rng(4)
    y = 100 + 20 * np.cos(2 * np.pi * np.arange(60) / 12) + rng.normal(size=60)
    months = [f"{2015 + k // 12}-{k % 12 + 1:02d}-01" for k in range(60)]
    (tmp_path / "m.csv").write_text("month,kpi\n" + "".join(f"{m},{v:.3f}\n" for m, v in zip(months, y)))
    out = tmp_path / "fc"
    code = main(["forecast", str(causal), str(tmp_path / "m.csv"), "--time-column", "month", "--horizon", "6",
                 "--out", str(out)])
    assert code in (0, None) and "interval read from 'month': 1 month" in " ".join(capsys.readouterr().out.split())
    r = json.loads((out / "forecast.json").read_text())
    assert r["interval_s"] == MONTH_S
    assert [f["time"][:10] for f in r["forecast"]] == [f"2020-{m:02d}-01" for m in range(1, 7)]
    x = torch.tensor(np.round(y, 3), dtype=torch.float32)
    past, truth = x[None, :54], x[54:].double()
    want = float(((SeasonalNaive(12).forecast(past, MONTH_S, 6)[0].double() - truth) ** 2).sum() / (truth ** 2).sum())
    check = r["check"][0]
    assert check["seasonal"] == pytest.approx(want, rel=1e-5) and check["seasonal"] < check["persistence"]


def test_packet_timed_rows_forecast_with_resample_and_yearly_rows_by_year(tmp_path, causal, capsys):
    """``--resample`` puts rows that keep no regular step on the grid of their most common step, and
    says so; a column of whole years is read as years, and the forecast's times are the next years."""
    rng = np.random.default_rng(1)
    t = 1.7e9 + np.cumsum(rng.uniform(0.7e-3, 1.3e-3, 300))
    (tmp_path / "p.csv").write_text("time,rssi\n" + "".join(f"{a:.6f},{-50 + np.sin(a * 40):.4f}\n" for a in t))
    base = ["forecast", str(causal), str(tmp_path / "p.csv"), "--time-column", "time", "--horizon", "8"]
    with pytest.raises(SystemExit):
        main(base + ["--out", str(tmp_path / "a")])
    assert "--resample interpolates them" in " ".join(capsys.readouterr().err.split())
    assert main(base + ["--resample", "--out", str(tmp_path / "a")]) in (0, None)
    said = " ".join(capsys.readouterr().out.split())
    assert "interval read from 'time': 1 ms" in said and "resampled onto a grid of 1 ms" in said
    r = json.loads((tmp_path / "a" / "forecast.json").read_text())
    assert r["interval_s"] == 0.001 and len(r["forecast"]) == 8
    (tmp_path / "y.csv").write_text("year,flow\n" + "".join(f"{1871 + k},{1000 + 30 * np.sin(k)}\n" for k in range(60)))
    assert main(["forecast", str(causal), str(tmp_path / "y.csv"), "--time-column", "year", "--horizon", "3",
                 "--out", str(tmp_path / "y")]) in (0, None)
    r = json.loads((tmp_path / "y" / "forecast.json").read_text())
    assert [f["time"][:10] for f in r["forecast"]] == ["1931-01-01", "1932-01-01", "1933-01-01"]


def test_check_windows_whose_target_is_all_zero_are_counted_not_scored(tmp_path, causal, capsys):
    """Counts that fall to zero for a whole window (a quiet hour) have no per-window NMSE: the check
    scores the other windows and says how many it left out, instead of a 1e31 mean."""
    rng = np.random.default_rng(3)
    a = [float(v) for v in np.r_[rng.poisson(3, 100), np.zeros(20)]]
    check = _first_check(tmp_path, causal, capsys, a, checks=4)
    assert check["windows"] == 2 and check["unscored (all-zero target)"] == 2
    assert 0 < check["persistence"] < 10 and 0 < check["model / best classical"] < 10
    x = torch.tensor(a, dtype=torch.float64)
    want = np.mean([float(((x[e - 11] - x[e - 10:e]) ** 2).sum() / (x[e - 10:e] ** 2).sum()) for e in (100, 90)])
    assert check["persistence"] == pytest.approx(want, rel=1e-6)


def test_the_check_reads_as_many_values_as_the_forecast_where_the_series_holds_them(tmp_path, causal, capsys):
    """With ``--context C`` on a longer series, each check window is forecast from the ``C`` values
    before it (not from what is left of the last ``C``), so the check sees what the forecast sees."""
    from wfm.hub import from_pretrained

    rng = np.random.default_rng(2)
    a = list(50 + np.cumsum(rng.normal(size=300)))
    _csv(tmp_path / "s.csv", {"a": a})
    out = tmp_path / "fc"
    code, err = run(["forecast", str(causal), str(tmp_path / "s.csv"), "--interval", "120", "--horizon", "10",
                     "--context", "100", "--checks", "2", "--time-column", "time", "--out", str(out)], capsys)
    assert code == 0, err
    got = json.loads((out / "forecast.json").read_text())["check"][0]
    assert got["context"] == 100 and got["windows"] == 2
    model = from_pretrained(str(causal)).eval()
    x = torch.tensor(a, dtype=torch.float64)
    want = []
    for end in (300, 290):
        past, truth = x[None, end - 110:end - 10], x[end - 10:end]
        want.append(float(((model.forecast(past, 120.0, 10)[0].double() - truth) ** 2).sum() / (truth ** 2).sum()))
    assert got["model"] == pytest.approx(np.mean(want), rel=1e-5)


def test_forecast_of_many_cells_batches_them_and_summarises_the_check(tmp_path, causal, capsys):
    """Thousands of cells are forecast in batches of one length: each gets what it gets alone."""
    from wfm.hub import from_pretrained

    rng = np.random.default_rng(2)
    series = {f"c{i}": 5 + np.sin(np.arange(48) / 6 + i) + 0.1 * rng.random(48) for i in range(25)}
    with open(tmp_path / "cells.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cell", "t", "v"])
        for c, v in series.items():
            for i, x in enumerate(v):
                if not (c == "c3" and i == 10):  # c3 has a gap: its last run is shorter, a batch of its own
                    w.writerow([c, i * 600, float(x)])
    out = tmp_path / "fc"
    assert main(["forecast", str(causal), str(tmp_path / "cells.csv"), "--time-column", "t", "--id-column", "cell",
                 "--horizon", "4", "--checks", "2", "--fill", "none", "--out", str(out)]) in (0, None)
    printed = " ".join(capsys.readouterr().out.split())
    assert "the first 20 of 25 series" in printed and "25 series checked: the model at or below" in printed
    result = json.loads((out / "forecast.json").read_text())
    model = from_pretrained(str(causal)).eval()
    rows = list(csv.DictReader(open(out / "forecast.csv")))
    for c, length in (("c0", 48), ("c3", 37), ("c24", 48)):
        x = torch.tensor(series[c][-length:], dtype=torch.float32)
        got = [float(r["forecast"]) for r in rows if r["column"] == c]
        assert got == pytest.approx(model.forecast(x, 600.0, 4).tolist(), rel=1e-5, abs=1e-6)
        assert next(k for k in result["check"] if k["column"] == c)["context"] == length


def test_forecast_never_replaces_a_folder_that_holds_other_files(tmp_path, causal, capsys, monkeypatch):
    """``--out`` is replaced as a whole, so only a new or empty folder or an earlier forecast's is
    taken: the input CSV's own folder, a file, the working directory are refused before any work."""
    _csv(tmp_path / "s.csv", {"a": list(np.linspace(1, 2, 50))})
    args = ["forecast", str(causal), str(tmp_path / "s.csv"), "--interval", "120", "--horizon", "3",
            "--time-column", "time", "--out"]
    code, err = run([*args, str(tmp_path)], capsys)  # holds the CSV itself
    assert code == 2 and "s.csv" in err and "not an earlier forecast's" in err
    assert (tmp_path / "s.csv").is_file()
    code, err = run([*args, str(tmp_path / "s.csv")], capsys)
    assert code == 2 and "not a folder" in err and (tmp_path / "s.csv").is_file()
    monkeypatch.chdir(tmp_path)
    code, err = run([*args, "."], capsys)
    assert code == 2 and "working directory" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    code, err = run([*args, str(tmp_path / "empty")], capsys)
    assert code == 0, err
    code, err = run([*args, str(tmp_path / "empty")], capsys)  # an earlier forecast's: replaced
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["forecast.csv", "forecast.json", "forecast.png"]


def test_an_empty_column_is_skipped_unless_named(tmp_path, causal, capsys):
    """An export's empty field (every cell blank) is skipped and listed as a text column is; named
    with --columns it is an error that names it."""
    _csv(tmp_path / "e.csv", {"a": list(np.linspace(1, 2, 50)), "dead": [""] * 50})
    args = ["forecast", str(causal), str(tmp_path / "e.csv"), "--interval", "120", "--horizon", "3",
            "--time-column", "time"]
    code, err = run([*args, "--out", str(tmp_path / "fc")], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "fc" / "forecast.json").read_text())["skipped_text_columns"] == ["dead"]
    code, err = run([*args, "--columns", "a", "dead", "--out", str(tmp_path / "fc2")], capsys)
    assert code == 2 and "'dead' holds no value" in err and not (tmp_path / "fc2").exists()


def test_a_declared_interval_the_timestamps_disagree_with_is_named(tmp_path, causal, capsys):
    """--interval 60 on 10-minute rows used to read as 199 gaps and a one-value series."""
    _csv(tmp_path / "t.csv", {"a": list(np.linspace(1, 2, 50))}, step_s=600.0)
    code, err = run(["forecast", str(causal), str(tmp_path / "t.csv"), "--interval", "60", "--time-column", "time",
                     "--horizon", "3", "--out", str(tmp_path / "fc")], capsys)
    assert code == 2 and "600 s apart" in err and "not the 60 s declared" in err and not (tmp_path / "fc").exists()


def test_timestamps_with_a_loggers_jitter_are_read_on_their_grid(tmp_path, causal, capsys):
    """A logger every 60 s whose timestamps jitter by up to 0.3 s (no gap repeats to the ms) used
    to be refused as "off the 59.752 s grid"; its step is read as 60 s and every row placed."""
    rng = np.random.default_rng(0)
    times = [datetime(2024, 3, 4) + timedelta(seconds=60 * i + float(rng.uniform(-0.3, 0.3))) for i in range(300)]
    with open(tmp_path / "j.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time", "a"])
        for i, t in enumerate(times):
            w.writerow([t.isoformat(), 5 + np.sin(i / 10)])
    code, err = run(["forecast", str(causal), str(tmp_path / "j.csv"), "--time-column", "time", "--horizon", "3",
                     "--out", str(tmp_path / "fc")], capsys)
    assert code == 0, err
    res = json.loads((tmp_path / "fc" / "forecast.json").read_text())
    assert res["interval_s"] == 60.0 and res["check"][0]["context"] == 300


def test_a_large_level_keeps_its_variation(tmp_path, causal, capsys):
    """A column far above its spread (a carrier frequency in Hz) is read and forecast in float64:
    float32 rounds 2.412e9 to a multiple of 256 and the forecast came back flat, 1,280 off."""
    level = 2.412e9
    with open(tmp_path / "f.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "freq_hz"])
        for i in range(300):
            w.writerow([i, f"{level + 50 * np.sin(2 * np.pi * i / 60):.3f}"])
    code, err = run(["forecast", str(causal), str(tmp_path / "f.csv"), "--time-column", "t", "--horizon", "5",
                     "--out", str(tmp_path / "fc")], capsys)
    assert code == 0, err
    got = [r["forecast"] - level for r in json.loads((tmp_path / "fc" / "forecast.json").read_text())["forecast"]]
    assert max(abs(g) for g in got) < 100 and len({round(g, 3) for g in got}) > 1


def _lobe_sweeps(beams: int = 24, steps: int = 40, speed: float = 0.3, offset: float = 6.0) -> np.ndarray:
    """``[steps, beams]`` beam powers: a Gaussian main lobe over a floor, moving ``speed`` beams a step."""
    centre = offset + speed * np.arange(steps)[:, None]
    return 1 + 20 * np.exp(-0.5 * ((np.arange(beams)[None] - centre) / 2.0) ** 2)


def _earlier(model, ctx, group) -> float:
    """The ordered forecast's NMSE of the window before the last (the second window of ``--checks 2``)."""
    past, truth = ctx[:, :-8], ctx[:, -8:-4]
    pred = model.forecast(past, 0.1, 4, group=group, ordered=True).double()
    return float(((pred - truth) ** 2).sum() / (truth ** 2).sum())


def test_forecast_channels_ordered_reads_a_sweeps_columns_as_one_window_as_the_api_does(tmp_path, capsys):
    """``--channels ordered``: the columns of a beam sweep are one window's channels in angular order,
    forecast as ``forecast(..., group=, ordered=True)`` forecasts them (the drifting profile of
    ``check_drift`` among the checks); ``pooled`` as one group without the order; each id of a
    long table is its own window; columns that do not end together are refused by name."""
    from wfm.hub import from_pretrained

    torch.manual_seed(0)
    kw = dict(prior="mix", coarse_len=32, max_coarse=16, max_context=64, guard=True, check_origins=8,
              estimators=("last", "mean", "trend"), backtest_origins="value", check_test="either",
              quantiles=(0.1, 0.5, 0.9))
    create_model("causal_tiny", check_drift=True, **kw).save_pretrained(str(tmp_path / "m"))
    model = from_pretrained(str(tmp_path / "m")).eval()
    sweeps = _lobe_sweeps()
    _csv(tmp_path / "beams.csv", {f"beam{j}": list(sweeps[:, j]) for j in range(sweeps.shape[1])}, step_s=0.1)
    ctx = torch.from_numpy(sweeps.T.copy())
    got, links = {}, {}
    for mode in ("separate", "pooled", "ordered"):
        out = tmp_path / mode
        code, err = run(["forecast", str(tmp_path / "m"), str(tmp_path / "beams.csv"), "--interval", "0.1",
                         "--horizon", "4", "--time-column", "time", "--channels", mode, "--checks", "2",
                         "--out", str(out)], capsys)
        assert code == 0, err
        rows = list(csv.DictReader(open(out / "forecast.csv")))
        got[mode] = torch.tensor([float(r["forecast"]) for r in rows]).view(-1, 4)
        links[mode] = json.loads((out / "forecast.json").read_text()).get("link_check")
    group = torch.zeros(len(ctx), dtype=torch.long)
    for mode, kwargs in (("separate", {}), ("pooled", dict(group=group)), ("ordered", dict(group=group, ordered=True))):
        torch.testing.assert_close(got[mode], model.forecast(ctx, 0.1, 4, **kwargs).float(), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got["ordered"], got["pooled"], atol=1e-3)  # the drift moved the forecast
    # The check of the sweep as a whole: sum err^2 / sum true^2 over its 24 beams, per window, and
    # the drift among the checks is what follows the moving lobe.
    assert links["separate"] is None and [(c["link"], c["columns"], c["windows"]) for c in links["ordered"]] == \
        [("all columns", 24, 2)]
    past, truth = ctx[:, :-4], ctx[:, -4:]
    whole = ((model.forecast(past, 0.1, 4, group=group, ordered=True).double() - truth) ** 2).sum() / (truth ** 2).sum()
    last = json.loads((tmp_path / "ordered" / "forecast.json").read_text())
    assert links["ordered"][0]["model"] == pytest.approx((float(whole) + _earlier(model, ctx, group)) / 2, rel=1e-4)
    assert links["ordered"][0]["model / best classical"] < 0.5 * links["pooled"][0]["model / best classical"]
    assert len(last["check"]) == 24 and last["channels"] == "ordered"
    assert (tmp_path / "ordered" / "forecast.png").stat().st_size > 5000  # the sweep as an image, beams x steps

    # A long table: each id's columns are one window, forecast as that window alone.
    with open(tmp_path / "long.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["site", "step", "b0", "b1", "b2", "b3", "b4", "b5"])
        other = _lobe_sweeps(beams=6, speed=-0.1, offset=4.0)
        for i in range(40):
            w.writerow(["east", i, *sweeps[i, 8:14]])
            w.writerow(["west", i, *other[i]])
    out = tmp_path / "long"
    code, err = run(["forecast", str(tmp_path / "m"), str(tmp_path / "long.csv"), "--interval", "1", "--horizon", "4",
                     "--time-column", "step", "--id-column", "site", "--channels", "ordered", "--out", str(out)], capsys)
    assert code == 0, err
    rows = list(csv.DictReader(open(out / "forecast.csv")))
    west = torch.tensor([float(r["forecast"]) for r in rows if r["column"].startswith("west")]).view(6, 4)
    alone = model.forecast(torch.from_numpy(other.T.copy()), 1.0, 4, group=torch.zeros(6, dtype=torch.long),
                           ordered=True)
    torch.testing.assert_close(west, alone.float(), atol=1e-5, rtol=1e-5)
    assert [(c["link"], c["columns"]) for c in json.loads((out / "forecast.json").read_text())["link_check"]] == \
        [("east", 6), ("west", 6)]

    # A column whose last gap-free run starts later: the link is read over the stretch all hold.
    cols = {f"beam{j}": list(sweeps[:, j]) for j in range(4)}
    cols["beam1"][5] = float("nan")
    _csv(tmp_path / "gap.csv", cols, step_s=0.1)
    code, err = run(["forecast", str(tmp_path / "m"), str(tmp_path / "gap.csv"), "--interval", "0.1", "--horizon",
                     "4", "--time-column", "time", "--channels", "pooled", "--fill", "none", "--out", str(tmp_path / "g")],
                    capsys)
    assert code == 0, err
    link = json.loads((tmp_path / "g" / "forecast.json").read_text())["link_check"][0]
    assert (link["columns"], link["context"]) == (4, 34)
    rows = list(csv.DictReader(open(tmp_path / "g" / "forecast.csv")))
    alone = model.forecast(torch.from_numpy(sweeps[6:, :4].T.copy()), 0.1, 4, group=torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(torch.tensor([float(r["forecast"]) for r in rows]).view(4, 4), alone.float(),
                               atol=1e-5, rtol=1e-5)

    # One link's channels end together; a column that stops early is named.
    cols = {f"beam{j}": list(sweeps[:, j]) for j in range(4)}
    cols["beam2"][-3:] = [float("nan")] * 3
    _csv(tmp_path / "short.csv", cols, step_s=0.1)
    code, err = run(["forecast", str(tmp_path / "m"), str(tmp_path / "short.csv"), "--interval", "0.1", "--horizon",
                     "4", "--time-column", "time", "--channels", "pooled", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "'beam2'" in err and "3 value(s)" in err and not (tmp_path / "x").exists()


def test_deepsense_csv_writes_the_long_table_that_wfm_forecast_reads_as_one_sweep_per_trajectory(tmp_path, causal,
                                                                                                   capsys):
    """``finetune/deepsense_csv.py``: a trajectory id, a frame, 64 beam powers and the distance per row; the
    trajectories too short for the checks are left out; ``--channels ordered`` reads each as one link."""
    import importlib.util
    from pathlib import Path

    folder = tmp_path / "ds"
    folder.mkdir()
    rng = np.random.default_rng(1)
    seq = np.repeat([1, 2, 3], [30, 10, 29])
    n = len(seq)
    np.save(folder / f"scenario1_unit1_pwr_60ghz_1-{n}.npy", rng.uniform(0, 1, (n, 64)))
    np.save(folder / f"scenario1_unit1_loc_1-{n}.npy", np.tile([33.42, -111.93], (n, 1)))
    np.save(folder / f"scenario1_unit2_loc_1-{n}.npy", np.tile([33.4202, -111.93], (n, 1)) + rng.normal(0, 1e-5, (n, 2)))
    np.save(folder / f"scenario1_seq_index_1-{n}.npy", seq)
    spec = importlib.util.spec_from_file_location(
        "deepsense_csv", Path(__file__).resolve().parent.parent / "finetune" / "deepsense_csv.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(folder), str(tmp_path / "beams.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "beams.csv")))
    assert len(rows) == 59 and rows[0]["trajectory"] == "s1-1" and rows[-1]["frame"] == "28"
    assert float(rows[31]["beam5"]) == pytest.approx(np.load(folder / f"scenario1_unit1_pwr_60ghz_1-{n}.npy")[41, 5],
                                                     rel=1e-5)  # trajectory 3's second frame
    from wfm.data.loaders.deepsense import load_scenario

    dist = load_scenario(folder, 1)["distance"][2]  # the user's distance, BS GPS -> vehicle GPS (m)
    assert float(rows[31]["distance"]) == pytest.approx(dist[1], rel=1e-5)
    code, err = run(["forecast", str(causal), str(tmp_path / "beams.csv"), "--interval", "0.1", "--id-column",
                     "trajectory", "--columns", *[f"beam{j}" for j in range(64)], "--horizon", "4", "--context", "16",
                     "--channels", "ordered", "--out", str(tmp_path / "fc")], capsys)
    assert code == 0, err
    links = json.loads((tmp_path / "fc" / "forecast.json").read_text())["link_check"]
    assert [(c["link"], c["columns"], c["context"]) for c in links] == [("s1-1", 64, 16), ("s1-3", 64, 16)]


def test_forecast_ranges_tells_the_model_its_columns_are_ranges_as_the_api_does(tmp_path, capsys):
    """``--ranges``: every column is a user's distance, forecast as ``forecast(..., ranges=True)``
    forecasts it (``check_range``'s constant velocity among the checks, which follows a vehicle
    past its base station); without the flag, as the plain ``forecast``. The check reads it too."""
    from wfm.hub import from_pretrained

    torch.manual_seed(0)
    create_model("causal_tiny", prior="mix", guard=True, check_origins=8, estimators=("mean",), backtest_origins="value",
                 check_range=True, range_share="fitted").save_pretrained(str(tmp_path / "m"))
    model = from_pretrained(str(tmp_path / "m")).eval()
    t = np.arange(36) * 0.1
    passes = {f"d{i}": list(np.sqrt(15.0 ** 2 + (8.0 * (t - 1.5 - 0.1 * i)) ** 2)) for i in range(2)}
    _csv(tmp_path / "d.csv", passes, step_s=0.1)
    ctx = torch.tensor(np.stack(list(passes.values())), dtype=torch.float32)
    got = {}
    for flag in ([], ["--ranges"]):
        out = tmp_path / ("ranges" if flag else "plain")
        code, err = run(["forecast", str(tmp_path / "m"), str(tmp_path / "d.csv"), "--interval", "0.1", "--horizon", "4",
                         "--time-column", "time", "--checks", "2", *flag, "--out", str(out)], capsys)
        assert code == 0, err
        rows = list(csv.DictReader(open(out / "forecast.csv")))
        got[bool(flag)] = torch.tensor([float(r["forecast"]) for r in rows]).view(-1, 4)
        got[f"check {bool(flag)}"] = json.loads((out / "forecast.json").read_text())["check"][0]["model"]
    torch.testing.assert_close(got[True], model.forecast(ctx, 0.1, 4, ranges=True).float(), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(got[False], model.forecast(ctx, 0.1, 4).float(), atol=1e-4, rtol=1e-5)
    assert not torch.allclose(got[True], got[False], atol=1e-2) and got["check True"] < got["check False"]


def test_gap_fill_script_reads_a_holed_series_as_the_command_does(tmp_path, causal):
    """finetune/gap_fill.py: the steps it removes keep each row's ends; what it forecasts from is
    what ``wfm forecast`` reads of the same column (the last segment of the CSV loader under the
    fill policy); its ratios are the model's own forecast over the best classical."""
    from conftest import load_script

    from wfm.data.loaders.generic import load_csv_series
    from wfm.data.loaders.timegrid import GapPolicy
    from wfm.hub import from_pretrained

    script = load_script("finetune/gap_fill.py")
    rng = np.random.default_rng(0)
    x = 5 + np.sin(np.arange(400) / 9.0)[None].repeat(3, 0) + 0.1 * rng.standard_normal((3, 400))
    for pattern in script.PATTERNS:
        holed = script.drop_steps(x, pattern, np.random.default_rng(1))
        miss = np.isnan(holed)
        assert miss.any() and not miss[:, [0, -1]].any()
        np.testing.assert_array_equal(holed[~miss], x[~miss])
    holed = script.drop_steps(x, "outages", np.random.default_rng(1))
    for g in (0, 3, 24):
        _csv(tmp_path / "h.csv", {"v": ["" if np.isnan(v) else float(v) for v in holed[0]]})
        d = load_csv_series(tmp_path / "h.csv", None, time_column="time",
                            policy=GapPolicy("linear" if g else "none", g, split=True))
        np.testing.assert_allclose(script.as_read(holed[0], g), d["values"][-1], rtol=1e-6)
    model = from_pretrained(str(causal)).eval()
    ctx, tgt = torch.tensor(x[:, :384], dtype=torch.float32), torch.tensor(x[:, 384:], dtype=torch.float32)
    rows = script.score(model, [("sine", ctx, tgt, 120.0)], seed=0, max_gaps=(0, 24))
    assert list(rows) == ["sine isolated", "sine outages"]
    group = torch.arange(3)
    with torch.no_grad():
        full = model.forecast(ctx, 120.0, 16, group=group)
    best = script.best_classical(ctx, tgt, group, 120.0)
    assert rows["sine isolated"]["complete"] == pytest.approx(float(script.window_errors(full, tgt, group).mean()) / best,
                                                              rel=1e-5)
    assert set(rows["sine outages"]) == {"complete", "max_gap 0", "max_gap 24"}


def test_public_series_script_reads_both_wheels_and_scores_every_origin(tmp_path):
    """finetune/public_series.py: every series is read out of the two wheels' members (inline
    arrays, gzip text, tarred CSVs, CSVs with empty cells filled), cut at every origin ending at the
    series' end, and scored against the best classical with the period of its interval."""
    import gzip
    import io
    import tarfile
    import zipfile

    from conftest import load_script
    from wfm.data.loaders.timegrid import MONTH_S
    from wfm.models.baselines import SeasonalNaive

    script = load_script("finetune/public_series.py")

    def tar_csv(text: str) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as t:
            data = text.encode()
            info = tarfile.TarInfo("x.csv")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    pm, sm = tmp_path / "pmdarima.whl", tmp_path / "statsmodels.whl"
    with zipfile.ZipFile(pm, "w") as z:
        for module in ("taylor", "heartrate", "wineind", "airpassengers", "woolyrnq", "lynx"):
            z.writestr(f"pmdarima/datasets/{module}.py", "x = 1\nrslt = np.array([\n 1.5, 2, -3e-1,\n 4])\n")
        z.writestr("pmdarima/datasets/data/sunspots.txt.gz", gzip.compress(b" 58.0  62.6\n 70.0\n"))
        z.writestr("pmdarima/datasets/data/msft.tar.gz", tar_csv("Date,Close\n2020-01-01,1.5\n2020-01-02,2.5\n"))
        z.writestr("pmdarima/datasets/data/dated.tar.gz", tar_csv("y,date\n3,2019-01-01\n4,2019-01-02\n"))
    with zipfile.ZipFile(sm, "w") as z:
        base = "statsmodels/datasets/"
        z.writestr(base + "co2/co2.csv", "date,co2\n19580329,316.1\n19580405,\n19580412,317.1\n")
        z.writestr(base + "elnino/elnino.csv", '"YEAR","JAN","FEB"\n1950,23.1,24.2\n1951,25.0,26.0\n')
        z.writestr(base + "elec_equip/elec_equip.csv", "DATE,STS.M.I7.W.TOVT.NS0016.4.000\nJan-1-1995,66.19\n")
        z.writestr(base + "nile/nile.csv", "year,volume\n1871,1120\n")
        z.writestr(base + "sunspots/sunspots.csv", '"YEAR","SUNACTIVITY"\n1700,5\n')
        z.writestr(base + "macrodata/macrodata.csv", '"year","unemp","realgdp"\n1959,5.8,2710.3\n')
    series = script.load_series(pm, sm)
    assert len(series) == 16
    assert series["wine sales (wineind), monthly"][0].tolist() == [1.5, 2.0, -0.3, 4.0]
    assert series["wine sales (wineind), monthly"][1] == MONTH_S
    assert series["sunspots, monthly"][0].tolist() == [58, 62.6, 70]
    assert series["CO2 at Mauna Loa, weekly"][0].tolist() == pytest.approx([316.1, 316.6, 317.1])  # empty week filled
    assert series["sea temperature (elnino), monthly"][0].tolist() == [23.1, 24.2, 25.0, 26.0]
    assert series["share price (msft close), trading days"][0].tolist() == [1.5, 2.5]

    values = np.arange(30.0)
    ctx, tgt = script.windows(values, 8, 4)
    assert len(ctx) == 30 - 8 - 4 + 1 and tgt[-1].tolist() == [26, 27, 28, 29] and ctx[0].tolist() == list(range(8))
    assert len(script.windows(values, 8, 4, limit=5)[0]) == 5

    class Last:  # a stand-in model: persistence, so its ratio to the best classical is known
        def forecast(self, c, interval, horizon):
            return c[:, -1:].expand(-1, horizon)

    rng = np.random.default_rng(0)
    y = 100 + 20 * np.cos(2 * np.pi * np.arange(120) / 12) + rng.normal(size=120)
    rows = script.score(Last(), {"monthly": (y, MONTH_S, 12)}, contexts=(24, 200))
    row = rows["monthly"][24]
    assert list(rows["monthly"]) == [24] and row["period"] == 12 and row["best"] == "seasonal"  # 200: too short
    c, t = script.windows(y, 24, 12)
    want = float(((((SeasonalNaive(12).forecast(c, MONTH_S, 12) - t) ** 2).sum(1) / (t ** 2).sum(1))).double().mean())
    assert row["seasonal"] == pytest.approx(want, rel=1e-5) and row["ratio"] == pytest.approx(row["model"] / want)


def test_forecast_box_cox_flag_checks_or_drops_the_transform_as_the_model_options_do(tmp_path, capsys):
    """``--box-cox``: ``model`` forecasts as the model's config.json says; ``checked`` as the same
    model with ``box_cox_check`` (the transform dropped where the checks, in the values' own units,
    show it losing); ``off`` as the model without ``box_cox``. The choice is recorded in
    forecast.json; ``checked`` on a model without ``box_cox`` is a one-line error naming it."""
    from wfm.hub import from_pretrained

    torch.manual_seed(0)
    kw = dict(prior="mix", guard=True, check_origins=8, backtest_origins="value")
    create_model("causal_tiny", box_cox=True, **kw).save_pretrained(str(tmp_path / "m"))
    create_model("causal_tiny", **kw).save_pretrained(str(tmp_path / "plain"))
    g = torch.Generator().manual_seed(4)
    counts = torch.where(torch.rand(2, 400, generator=g) < 0.3, 0.0,
                         torch.poisson(torch.full((2, 400), 3.0), generator=g))
    _csv(tmp_path / "c.csv", {f"u{i}": counts[i].tolist() for i in range(2)})
    expect = {"model": from_pretrained(str(tmp_path / "m")), "off": from_pretrained(str(tmp_path / "m"))}
    expect["checked"] = from_pretrained(str(tmp_path / "m"))
    expect["checked"].box_cox_check = True
    expect["off"].box_cox = False
    got = {}
    for mode, model in expect.items():
        out = tmp_path / mode
        code, err = run(["forecast", str(tmp_path / "m"), str(tmp_path / "c.csv"), "--horizon", "12",
                         "--time-column", "time", "--box-cox", mode, "--out", str(out)], capsys)
        assert code == 0, err
        assert json.loads((out / "forecast.json").read_text())["box_cox"] == mode
        got[mode] = torch.tensor([float(r["forecast"]) for r in csv.DictReader(open(out / "forecast.csv"))]).view(2, 12)
        torch.testing.assert_close(got[mode], model.eval().forecast(counts, 120.0, 12).float(), atol=1e-4, rtol=1e-5)
    assert float(got["model"].mean()) < float(got["off"].mean())  # the transform's pull towards zero
    code, err = run(["forecast", str(tmp_path / "plain"), str(tmp_path / "c.csv"), "--horizon", "12",
                     "--time-column", "time", "--box-cox", "checked", "--out", str(tmp_path / "x")], capsys)
    assert code != 0 and "--box-cox checked needs a model with box_cox" in err.replace("\n", "")


def test_a_wide_table_behind_on_most_columns_gets_the_pooled_hint(tmp_path, capsys):
    """Columns forecast one by one, the model behind the best classical on most of them: the line
    suggests --channels pooled (real CSI channels alone lose to the mean, pooled they do not). Not
    for a few columns, a long table, pooled channels, or a model ahead on most columns. End to end:
    a still link's 8 noisy channels, read apart at 8 values of context, get it; pooled, not."""
    from wfm.forecast import POOL_HINT_COLUMNS, _pooled_hint

    behind = [{"model / best classical": r} for r in (1.1, 1.2, 0.9, 1.05, None)]
    assert "--channels pooled" in _pooled_hint("separate", None, behind) and "on 3 of 4 columns" in _pooled_hint(
        "separate", None, behind)
    assert _pooled_hint("pooled", None, behind) == "" and _pooled_hint("separate", "cell", behind) == ""
    assert _pooled_hint("separate", None, behind[:POOL_HINT_COLUMNS - 1]) == ""
    assert _pooled_hint("separate", None, [{"model / best classical": r} for r in (1.1, 0.9, 0.8, 1.2)]) == ""
    g = torch.Generator().manual_seed(0)
    x = 5.0 + 0.3 * torch.randn(400, 8, generator=g)  # a still link: its level and white noise
    p = tmp_path / "link.csv"
    p.write_text("t," + ",".join(f"c{i}" for i in range(8)) + "\n"
                 + "".join(f"{k * 0.015565:.6f}," + ",".join(f"{v:.5f}" for v in row) + "\n" for k, row in enumerate(x.tolist())))
    shipped = Path(__file__).resolve().parents[1] / "checkpoints" / "causal-tiny-catalog-cpu"
    said = {}
    for mode in ("separate", "pooled"):
        code = main(["forecast", str(shipped), str(p), "--time-column", "t", "--horizon", "8", "--context", "8",
                     "--checks", "30", "--channels", mode, "--out", str(tmp_path / mode)])
        assert code in (0, None)
        said[mode] = "--channels pooled pools" in " ".join(capsys.readouterr().out.split())
    assert said == {"separate": True, "pooled": False}


def test_intermittent_columns_behind_on_their_check_get_the_box_cox_hint():
    """The hint names the columns that are mostly zeros and whose check put the model behind the
    best classical, only where the model's own Box-Cox space is in use."""
    from types import SimpleNamespace

    from wfm.forecast import _intermittent_hint

    counts, level = torch.tensor([0.0, 3.0, 0.0, 0.0, 2.0, 0.0]), torch.tensor([4.0, 5.0, 3.0, 4.0, 6.0, 5.0])
    checks = [{"model / best classical": 1.4}, {"model / best classical": 1.4}, {"model / best classical": 0.9},
              {"model / best classical": None}]
    model = SimpleNamespace(box_cox=True, box_cox_check=False)
    hint = _intermittent_hint(model, "model", ["a", "b", "c", "d"], [counts, level, counts, counts], checks)
    assert hint.startswith("a: mostly zeros") and "--box-cox checked" in hint
    assert _intermittent_hint(model, "checked", ["a"], [counts], checks[:1]) == ""
    assert _intermittent_hint(SimpleNamespace(box_cox=False), "model", ["a"], [counts], checks[:1]) == ""
    # A model that forecasts white counts as given (box_cox_white) names none of them; counts that
    # hold no level (a zero-heavy rise) keep the transform, and the hint.
    g = torch.Generator().manual_seed(0)
    white = torch.where(torch.rand(400, generator=g) < 0.4, 0.0, torch.poisson(torch.full((400,), 3.0), generator=g))
    rise = torch.where(torch.rand(400, generator=g) < 0.4, 0.0, torch.poisson(torch.linspace(1, 40, 400), generator=g))
    real = create_model("causal_tiny", prior="mix", guard=True, box_cox=True, box_cox_white=True, check_origins=8).eval()
    assert real.box_cox_exponents(white[None].double(), torch.tensor([600.0]), 12).item() == 1.0
    hint = _intermittent_hint(real, "model", ["w", "r"], [white, rise], checks[:2], 600.0, 12)
    assert hint.startswith("r: mostly zeros")
