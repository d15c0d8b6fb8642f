"""Real-data loaders and ``wfm data import/export``: formats, round trips, every bad-input case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wfm.cli import main as wfm_main
from wfm.data.errors import DataError
from wfm.data.loaders.deepsense import import_deepsense
from wfm.data.loaders.generic import import_series
from wfm.data.loaders.hf import export_hf, import_hf
from wfm.data.loaders.phase import conj_reference, persistence_nmse_db, remove_linear_phase, sanitize_phase
from wfm.data.loaders.timegrid import GapPolicy
from wfm.data.loaders.traffic_csv import import_telecom_italia, load_telecom_italia
from wfm.data.series import SeriesWindows, series_tables
from wfm.data.shards import ShardedDataset, verify_dataset

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/datasets is absent")

T0_MS = 1383260400000  # 2013-11-01 00:00 (Europe/Rome) in ms, as in the Telecom Italia files


def _ti_csv(path: Path, cells=(101, 202), steps=12, header="square_id,time_interval,internet", rows=None) -> Path:
    lines = [header]
    for c in cells:
        for k in range(steps):
            lines.append(f"{c},{T0_MS + k * 600_000},{10 + c + k}")
    if rows is not None:
        lines = [header] + rows
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------- traffic


def test_telecom_italia_import_round_trip_and_series_view(tmp_path):
    src = _ti_csv(tmp_path / "ti.csv")
    out = import_telecom_italia(src, tmp_path / "ds")
    verify_dataset(out)
    ds = ShardedDataset(out)
    assert ds.kind == "traffic" and len(ds) == 2 and ds.attrs["interval_s"] == 600
    assert list(ds.read_range(0, 2)["cell_id"]) == [101, 202]
    x = ds[1]["traffic"]
    assert x.shape == (12, 1) and x[3, 0] == 10 + 202 + 3
    assert ds[0]["start_time"] == T0_MS / 1000
    w = SeriesWindows([out], context=6, horizon=3, stride=3)
    assert len(w) == 2 * 2 and w[0]["kind"] == "traffic" and float(w[0]["interval"]) == 600
    np.testing.assert_array_equal(w[2]["context"].numpy(), np.arange(6) + 10 + 202)


def test_telecom_italia_raw_tsv_sums_country_codes(tmp_path):
    rows = []
    for k in range(4):
        t = T0_MS + k * 600_000
        rows += [f"7\t{t}\t39\t1\t2\t\t\t5.0", f"7\t{t}\t33\t1\t\t\t\t0.5"]
    p = tmp_path / "sms-call-internet-mi-2013-11-01.txt"
    p.write_text("\n".join(rows) + "\n")  # the raw challenge files have no header
    d = load_telecom_italia(p)
    assert d["channels"] == ["smsin", "smsout", "callin", "callout", "internet"]
    seg = d["traffic"][0]
    assert seg.shape == (4, 5)
    np.testing.assert_allclose(seg[0], [2, 2, 0, 0, 5.5])  # empty = no activity of that country


def test_real_telecom_italia_file(tmp_path):
    if not SHARED.exists():
        pytest.skip("../shared/datasets is absent")
    out = import_telecom_italia(SHARED / "traffic" / "milan_2013-11-01_internet_6cells.csv", tmp_path / "m")
    ds = ShardedDataset(out)
    assert len(ds) == 6 and all(len(ds[i]["traffic"]) == 144 for i in range(6))


@pytest.mark.parametrize("rows,match", [
    (["1,abc,3"], r"line 2: column 'time_interval' value 'abc' is not a number"),
    ([f"1,{T0_MS},3", f"1,{T0_MS - 600_000},4"], r"line 3: timestamp .* goes back in time"),
    ([f"1,{T0_MS},3", f"1,{T0_MS},4"], r"line 3: duplicated timestamp"),
    ([f"1,{T0_MS},3", f"1,{T0_MS + 420_000},4"], r"line 3: irregular interval"),
    ([f"1,{T0_MS},3", f"1,{T0_MS + 1_800_000},4"], r"line 3: 2 missing step\(s\)"),
    ([f"1,{T0_MS},3", f"1,{T0_MS + 600_000},", f"1,{T0_MS + 1_200_000},5"], r"line 4: 1 missing step"),
    ([f"1,{T0_MS},3,4"], r"line 2: 4 fields, header has 3"),
])
def test_traffic_bad_input_names_file_and_line(tmp_path, rows, match):
    src = _ti_csv(tmp_path / "bad.csv", rows=rows)
    with pytest.raises(DataError, match=rf"bad.csv: {match}"):
        load_telecom_italia(src, interval=600.0)  # two rows cannot tell a gap from the step: declared
    assert not (tmp_path / "out").exists()


def test_traffic_missing_column_and_unparseable_file(tmp_path):
    src = _ti_csv(tmp_path / "nocol.csv", header="square_id,time,internet")
    with pytest.raises(DataError, match=r"nocol.csv: missing column 'time_interval'"):
        load_telecom_italia(src)
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00garbage\x00\x81")
    with pytest.raises(DataError, match=r"bin.csv: "):
        load_telecom_italia(tmp_path / "bin.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty.csv: empty file"):
        load_telecom_italia(tmp_path / "empty.csv")


def test_telecom_italia_interval_is_read_from_the_file(tmp_path):
    """Other operators export the same layout at 1, 2, 15 or 60 minutes: the step is the most
    common gap between a cell's timestamps, so missing steps do not set it (they still follow the
    gap policy); a declared interval is checked against the file, and a row off the grid is refused."""
    rows = [f"{c},{T0_MS + k * 120_000},{c + k}" for c in (1, 2) for k in range(30) if (c, k) != (1, 7)]
    src = _ti_csv(tmp_path / "lte.csv", rows=rows)
    d = load_telecom_italia(src, policy=GapPolicy("linear", max_gap=1))
    assert d["interval_s"] == 120.0 and [len(s) for s in d["traffic"]] == [30, 30]
    assert d["traffic"][0][7, 0] == pytest.approx(8.0)  # the missing step, filled on the 2-minute grid
    with pytest.raises(DataError, match=r"lte.csv: line 9: 1 missing step"):
        load_telecom_italia(src)  # the default policy refuses the gap, on the inferred grid
    with pytest.raises(DataError, match=r"lte.csv: line 3: irregular interval.*120 s after.*600 s grid"):
        load_telecom_italia(src, interval=600.0)
    out = import_telecom_italia(src, tmp_path / "ds", policy=GapPolicy("linear", max_gap=1))
    assert ShardedDataset(out).attrs["interval_s"] == 120.0
    off = _ti_csv(tmp_path / "off.csv", rows=rows[:10] + [f"1,{T0_MS + 10 * 120_000 + 45_000},0"])
    with pytest.raises(DataError, match=r"off.csv: line 12: irregular interval.*45 s after.*120 s grid"):
        load_telecom_italia(off)
    one = _ti_csv(tmp_path / "one.csv", rows=[f"1,{T0_MS},3", f"2,{T0_MS},4"])
    assert load_telecom_italia(one)["interval_s"] == 600.0  # one value a cell: no step to read, the challenge's
    dup = _ti_csv(tmp_path / "dup.csv", rows=[f"1,{T0_MS},3", f"1,{T0_MS},4"])
    with pytest.raises(DataError, match=r"dup.csv: line 3: duplicated timestamp"):
        load_telecom_italia(dup)


def test_gap_policies_fill_and_split(tmp_path):
    rows = [f"1,{T0_MS + k * 600_000},{v}" for k, v in [(0, 1), (1, 2), (2, ""), (3, ""), (4, 5), (8, 9), (9, 10)]]
    src = _ti_csv(tmp_path / "gaps.csv", rows=rows)
    lin = load_telecom_italia(src, policy=GapPolicy("linear", max_gap=2, split=True))["traffic"]
    assert [len(s) for s in lin] == [5, 2]  # the 3-step gap (5..7) exceeds max_gap: split
    np.testing.assert_allclose(lin[0][:, 0], [1, 2, 3, 4, 5])
    ff = load_telecom_italia(src, policy=GapPolicy("ffill", max_gap=3))["traffic"]
    np.testing.assert_allclose(ff[0][:, 0], [1, 2, 2, 2, 5, 5, 5, 5, 9, 10])
    with pytest.raises(DataError, match=r"gaps.csv: line 7: 3 missing step\(s\).*raise --max-gap to 3"):
        load_telecom_italia(src, policy=GapPolicy("linear", max_gap=2))
    with pytest.raises(DataError, match="fill policy"):
        GapPolicy("cubic")


def test_csv_series_counts_the_steps_each_segment_had_filled(tmp_path):
    """``load_csv_series``'s ``filled``: per segment, the grid steps the policy filled, whether they were
    absent timestamps or empty / NaN cells, and none for a segment a longer gap cut off."""
    from wfm.data.loaders.generic import load_csv_series

    p = tmp_path / "g.csv"
    # steps 0..11 at 60 s: step 2 absent, step 5 empty, step 6 NaN, steps 8..10 absent (a gap of 3)
    rows = {0: 1, 1: 2, 3: 4, 4: 5, 5: "", 6: "nan", 7: 8, 11: 12}
    p.write_text("t,v\n" + "".join(f"{60 * k},{v}\n" for k, v in rows.items()))
    d = load_csv_series(p, None, time_column="t", policy=GapPolicy("linear", max_gap=2, split=True))
    assert [len(v) for v in d["values"]] == [8, 1] and d["filled"] == [3, 0] and d["start_time"] == [0.0, 660.0]
    np.testing.assert_allclose(d["values"][0], [1, 2, 3, 4, 5, 6, 7, 8])
    d = load_csv_series(p, None, time_column="t", policy=GapPolicy("linear", max_gap=3, split=True))
    assert [len(v) for v in d["values"]] == [12] and d["filled"] == [6]
    d = load_csv_series(p, None, time_column="t", policy=GapPolicy(split=True))
    assert [len(v) for v in d["values"]] == [2, 2, 1, 1] and d["filled"] == [0, 0, 0, 0]
    p.write_text("v,w\n1,1\n,2\n3,3\n4,4\n")  # no time column: rows are steps, an empty cell a missing one
    d = load_csv_series(p, 60.0, columns=["v"], policy=GapPolicy("ffill", max_gap=1))
    assert d["filled"] == [1] and list(d["values"][0]) == [1, 1, 3, 4]


# ---------------------------------------------------------------------------- generic


def test_generic_csv_with_time_column_and_declared_interval(tmp_path):
    p = tmp_path / "rssi.csv"
    p.write_text("t,a,b\n" + "".join(f"{0.1 * k:.1f},{k},{-k}\n" for k in range(20)))
    out = import_series(p, tmp_path / "ds", interval=0.1, series_kind="rssi", time_column="t")
    ds = ShardedDataset(out)
    assert ds.kind == "series" and ds.attrs["names"] == ["a", "b"] and len(ds) == 2
    w = SeriesWindows([out], context=8, horizon=4, stride=8)
    assert len(w) == 4 and {w[i]["kind"] for i in range(4)} == {"rssi"}  # starts 0 and 8 per column
    np.testing.assert_array_equal(w[2]["target"].numpy(), -np.arange(8, 12))
    np.testing.assert_array_equal(w[1]["context"].numpy(), np.arange(8, 16))
    # no declared interval: read from the time column (the most common step), the same dataset
    same = ShardedDataset(import_series(p, tmp_path / "ds-read", interval=None, series_kind="rssi", time_column="t"))
    assert same.attrs["interval_s"] == 0.1 and same.manifest["recipe"]["import"]["interval"] == 0.1
    np.testing.assert_array_equal(same[1]["values"], ds[1]["values"])
    with pytest.raises(DataError, match=r"rssi.csv: no interval: give the seconds between rows"):
        import_series(p, tmp_path / "ds-none", interval=None)
    p.write_text("t,a\n0.0,1\n0.1,2\n0.35,3\n")
    with pytest.raises(DataError, match=r"rssi.csv: line 4: irregular interval"):
        import_series(p, tmp_path / "ds2", interval=0.1, time_column="t")
    with pytest.raises(DataError, match=r"rssi.csv: line 4: irregular interval.*off the 0.1 s grid"):
        import_series(p, tmp_path / "ds2", interval=None, time_column="t")  # the read step checks the rest
    p.write_text("t,a\n2013-11-01T00:00:00,1\n2013-11-01T00:10:00,2\n2013-11-01T00:05:00,3\n")
    with pytest.raises(DataError, match=r"rssi.csv: line 4: timestamp .* goes back in time"):
        import_series(p, tmp_path / "ds3", interval=600, time_column="t")
    # the time column read as values (no time_column): the error says which option reads it
    with pytest.raises(DataError, match=r"column 't' value '2013-11-01T00:00:00' is not a number; .*--time-column t"):
        import_series(p, tmp_path / "ds4", interval=600)
    # an infinite value (or one past float64) is named with its line, before anything is written
    for cell in ("inf", "-Infinity", "1e999"):
        p.write_text(f"t,a\n0.0,1\n0.1,{cell}\n")
        with pytest.raises(DataError, match=rf"rssi.csv: line 3: column 'a' value '{cell}' is not finite"):
            import_series(p, tmp_path / "ds5", interval=0.1, time_column="t")
        assert not (tmp_path / "ds5").exists()


def test_monthly_quarterly_and_month_end_dates_are_a_calendar_grid(tmp_path):
    """Monthly, quarterly and yearly dates are 28-31 days apart, never a fixed number of seconds:
    they are read as calendar months (``MONTH_S`` x the months per step), a missing month is a gap
    the policy fills, a date off the month grid is named, and times step by calendar months."""
    from wfm.data.loaders.generic import load_csv_series
    from wfm.data.loaders.timegrid import MONTH_S, calendar_months, common_step, step_time

    def epoch(day: str) -> float:
        return float(np.datetime64(day, "s").astype(np.int64))

    first = [f"{y}-{m:02d}-01" for y in (2019, 2020) for m in range(1, 13)]
    p = tmp_path / "monthly.csv"
    p.write_text("month,kpi\n" + "".join(f"{d},{k}\n" for k, d in enumerate(first) if k != 5))  # June 2019 missing
    d = load_csv_series(p, None, time_column="month", policy=GapPolicy("linear", 2))
    assert d["interval_s"] == MONTH_S and d["filled"] == [1]
    np.testing.assert_allclose(d["values"][0], np.arange(24))  # the gap filled on the month grid
    assert step_time(d["start_time"][0], 24, MONTH_S) == epoch("2021-01-01")
    quarters = [epoch(f"{y}-{m:02d}-01") for y in (2019, 2020) for m in (1, 4, 7, 10)]
    assert common_step([np.array(quarters)], "q") == 3 * MONTH_S
    ends = ["2019-01-31", "2019-02-28", "2019-03-31", "2019-04-30", "2020-02-29"]
    months = calendar_months(np.array([epoch(x) for x in ends]))  # month-end dates are a grid too
    assert (months[1:] - months[0]).tolist() == [1, 2, 3, 13]
    assert step_time(epoch("2019-04-30"), 10, MONTH_S) == epoch("2020-02-29")  # month ends stay month ends
    assert calendar_months(np.array([epoch("2019-01-01"), epoch("2019-01-31")])) is None  # 30 days: no grid
    assert common_step([np.arange(0, 40 * 86_400, 86_400.0)], "daily") == 86_400.0  # daily stays in seconds
    from wfm.tasks.real_datasets import _fmt_interval  # as the benchmark's notes name them

    assert [_fmt_interval(x) for x in (MONTH_S, 3 * MONTH_S, 12 * MONTH_S, 86_400.0, 600.0)] == [
        "1 month", "1 quarter", "1 year", "1 d", "10 min"]
    # months and quarters as reports write them: 2019-07, 2019Q3 (the first day of each)
    p.write_text("month,kpi\n" + "".join(f"{x[:7]},{k}\n" for k, x in enumerate(first)))
    d = load_csv_series(p, None, time_column="month")
    assert d["interval_s"] == MONTH_S and d["start_time"][0] == epoch("2019-01-01") and len(d["values"][0]) == 24
    p.write_text("quarter,gdp\n" + "".join(f"{y}Q{q},{q}\n" for y in (2019, 2020) for q in (1, 2, 3, 4)))
    d = load_csv_series(p, None, time_column="quarter")
    assert d["interval_s"] == 3 * MONTH_S and d["start_time"][0] == epoch("2019-01-01")
    p.write_text("month,kpi\n" + "".join(f"{'2019-03-15' if k == 2 else x},{k}\n" for k, x in enumerate(first)))
    with pytest.raises(DataError, match=r"monthly.csv: line 4: irregular interval"):  # a date off the grid
        load_csv_series(p, None, time_column="month")


def test_a_step_of_no_whole_milliseconds_is_read_as_it_is(tmp_path):
    """CSI every 15.565 ms (Nexmon's capture here) or a 0.5 ms sensor: the most common step to the
    millisecond (16 ms, 0 ms) drifts off the rows within a few, so the interval is the slope of the
    times instead, which holds them; a step of whole milliseconds, a logger's jitter and one row off
    the grid read as before."""
    from wfm.data.loaders.generic import load_csv_series
    from wfm.data.loaders.timegrid import common_step

    nexmon = np.round(7.0 + 0.015565 * np.arange(950), 6)  # written to the microsecond
    assert common_step([nexmon], "n") == pytest.approx(0.015565, rel=1e-7)
    assert common_step([np.arange(200) * 5e-4], "s") == pytest.approx(5e-4, rel=1e-9)
    assert common_step([np.arange(100) * 600.0], "t") == 600.0 and common_step([np.arange(50) * 0.1], "r") == 0.1
    assert common_step([np.array([0.0, 0.1, 0.35])], "r") == 0.1  # to_grid names the third row
    p = tmp_path / "nexmon.csv"
    p.write_text("time,amp\n" + "".join(f"{t:.6f},{k % 7}\n" for k, t in enumerate(nexmon)))
    d = load_csv_series(p, None, time_column="time")
    assert d["interval_s"] == pytest.approx(0.015565, rel=1e-7) and len(d["values"][0]) == 950


def test_irregular_timestamps_are_resampled_only_when_asked(tmp_path):
    """Packet-timed samples have no grid: refused with the remedy named, or with ``resample``
    linearly interpolated onto the interval's grid, samples on a step kept as they are and steps
    between samples more than ``RESAMPLE_SPAN`` intervals apart left to the gap policy."""
    from wfm.data.loaders.generic import load_csv_series
    from wfm.data.loaders.timegrid import RESAMPLE_SPAN, resample_grid

    rng = np.random.default_rng(0)
    t = 100.0 + np.cumsum(rng.uniform(0.6e-3, 1.4e-3, 400))
    t[0] = 100.0
    v = 3.0 * t - 250.0  # a line: interpolation reproduces it at every step
    p = tmp_path / "csi.csv"
    p.write_text("time,amp\n" + "".join(f"{a:.7f},{b:.7f}\n" for a, b in zip(t, v)))
    with pytest.raises(DataError, match=r"csi.csv: line \d+: irregular interval: timestamp 100\.\d+ .*--resample"):
        load_csv_series(p, None, time_column="time")
    d = load_csv_series(p, None, time_column="time", resample=True)
    assert d["interval_s"] == 0.001 and d["start_time"] == [100.0]
    x = d["values"][0]
    assert len(x) == int((t[-1] - t[0]) / 1e-3) + 1
    np.testing.assert_allclose(x, 3.0 * (100.0 + 1e-3 * np.arange(len(x))) - 250.0, atol=1e-5)
    d = load_csv_series(p, 0.01, time_column="time", resample=True)  # a declared interval is the grid's
    assert d["interval_s"] == 0.01 and len(d["values"][0]) == int((t[-1] - t[0]) / 0.01) + 1
    # A span wider than RESAMPLE_SPAN steps is a gap: filled by the policy, or a cut
    times = np.array([0.0, 1.0, 2.0, 2.0 + RESAMPLE_SPAN + 0.5, 5.5, 6.5])
    vals = np.arange(6, dtype=np.float64)[:, None]
    _, grid, lines = resample_grid(times, vals, 1.0, np.arange(2, 8), "x")
    assert np.isnan(grid[3:5, 0]).all() and grid[:3, 0].tolist() == [0, 1, 2] and grid[5, 0] == pytest.approx(3.5)
    assert lines.tolist() == [2, 3, 4, 4, 5, 5, 6]  # the nearest sample's line (a tie: the earlier), for messages
    # Rows that share a timestamp (a millisecond clock, packets faster): their mean, at the first's line
    _, grid, lines = resample_grid(np.array([0.0, 1.0, 1.0, 2.0]), np.array([[0.0], [1.0], [3.0], [np.nan]]), 1.0,
                                   np.arange(2, 6), "x")
    assert grid[:2, 0].tolist() == [0.0, 2.0] and np.isnan(grid[2, 0]) and lines.tolist() == [2, 3, 5]
    with pytest.raises(DataError, match=r"x: line 4: timestamp 0 goes back in time"):
        resample_grid(np.array([0.0, 1.0, 0.0]), np.zeros((3, 1)), 1.0, np.arange(2, 5), "x")
    with pytest.raises(DataError, match=r"needs the timestamps"):
        load_csv_series(p, 0.001, resample=True)


def test_whole_years_in_a_time_column_are_calendar_years(tmp_path):
    """Yearly flows and counts come with a year column (1871, 1872 ...): read as years, not as
    seconds, unless the unit is declared; a year is 12 calendar months."""
    from wfm.data.loaders.generic import load_csv_series
    from wfm.data.loaders.timegrid import MONTH_S

    p = tmp_path / "nile.csv"
    p.write_text("year,volume\n" + "".join(f"{1871 + k},{1000 + k}\n" for k in range(30) if k != 4))
    d = load_csv_series(p, None, time_column="year", policy=GapPolicy("linear", 2))
    assert d["interval_s"] == 12 * MONTH_S and d["filled"] == [1]
    assert d["start_time"][0] == float(np.datetime64("1871-01-01", "s").astype(np.int64))
    np.testing.assert_allclose(d["values"][0], 1000 + np.arange(30))
    assert load_csv_series(p, None, time_column="year", time_unit="s", policy=GapPolicy("linear", 2))["interval_s"] == 1
    p.write_text("year,volume\n1990,1\n1991,2\n1991.5,3\n")  # not whole years: seconds, as before
    assert load_csv_series(p, None, time_column="year", time_unit=None,
                           policy=GapPolicy("linear", 2))["interval_s"] == 0.5
    with pytest.raises(DataError, match=r"line 4: time column 'year' value '1991.5' is not a year"):
        load_csv_series(p, None, time_column="year", time_unit="year")


def test_generic_npy_real_complex_and_nan_runs(tmp_path):
    a = np.arange(30, dtype=np.float64).reshape(3, 10)
    np.save(tmp_path / "x.npy", a)
    out = import_series(tmp_path / "x.npy", tmp_path / "ds", interval=0.5)
    assert len(ShardedDataset(out)) == 3
    z = (np.arange(12) * (1 + 2j)).astype(np.complex64)
    np.save(tmp_path / "z.npy", z)
    out = import_series(tmp_path / "z.npy", tmp_path / "dz", interval=1e-3, series_kind="csi")
    w = SeriesWindows([out], context=4, horizon=2, stride=6)
    assert w[0]["complex"] and w[1]["target"][1].item() == complex(z[11])
    a[1, 3:6] = np.nan
    np.save(tmp_path / "nan.npy", a)
    with pytest.raises(DataError, match=r"nan.npy row 1: index 6: 3 missing step"):
        import_series(tmp_path / "nan.npy", tmp_path / "dn", interval=0.5)
    out = import_series(tmp_path / "nan.npy", tmp_path / "dn", interval=0.5, policy=GapPolicy("linear", 3))
    np.testing.assert_allclose(ShardedDataset(out)[1]["values"], np.arange(10, 20))
    (tmp_path / "junk.npy").write_text("not numpy")
    with pytest.raises(DataError, match="junk.npy: not a readable .npy"):
        import_series(tmp_path / "junk.npy", tmp_path / "dj", interval=1)
    a[2, 7] = -np.inf  # infinity is not a gap: an error that says where, before anything is written
    np.save(tmp_path / "inf.npy", a)
    with pytest.raises(DataError, match=r"inf.npy: 1 infinite value\(s\) \(the first: row 2, index 7\)"):
        import_series(tmp_path / "inf.npy", tmp_path / "di", interval=0.5, policy=GapPolicy("linear", 3))
    assert not (tmp_path / "di").exists()


def test_import_refuses_non_empty_output(tmp_path):
    src = _ti_csv(tmp_path / "ti.csv")
    import_telecom_italia(src, tmp_path / "ds")
    with pytest.raises(DataError, match="not empty"):
        import_telecom_italia(src, tmp_path / "ds")


# ---------------------------------------------------------------------------- DeepSense


def _deepsense(folder: Path, scenario: int = 9, seq=(1, 1, 1, 2, 2, 3, 3, 3, 3)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    n = len(seq)
    rng = np.random.default_rng(0)
    bs = np.tile([33.42, -111.93], (n, 1))
    # The vehicle drives east along a road 20 m north of the BS.
    ue = np.stack([np.full(n, 33.42 + 20 / 111_195), -111.93 + np.linspace(-1, 1, n) * 1e-4], 1)
    base = f"scenario{scenario}_"
    np.save(folder / f"{base}unit1_pwr_60ghz_1-{n}.npy", rng.uniform(0, 1, (n, 64)))
    np.save(folder / f"{base}unit1_loc_1-{n}.npy", bs)
    np.save(folder / f"{base}unit2_loc_1-{n}.npy", ue)
    np.save(folder / f"{base}seq_index_1-{n}.npy", np.array(seq))
    return folder


def test_deepsense_import_ragged_trajectories(tmp_path):
    src = _deepsense(tmp_path / "ds6g")
    out = import_deepsense(src, tmp_path / "out", interval=0.1)
    ds = ShardedDataset(out)
    assert ds.kind == "beam" and len(ds) == 3
    d = ds.read_range(0, 3)
    assert [len(x) for x in d["beam_power"]] == [3, 2, 4] and d["beam_power"][0].shape == (3, 64)
    assert list(d["sequence_id"]) == [1, 2, 3] and list(d["scenario"]) == [9, 9, 9]
    # Vehicle due north of the BS at the middle of the road: bearing ~0, distance >= 20 m.
    bearing = np.concatenate(d["bearing"])
    assert np.all(np.abs(((bearing + 180) % 360) - 180) < 30) and np.concatenate(d["distance"]).min() > 19.9
    # Driving east past the BS: the bearing sweeps from north-west (~335) through north,
    # continuously (unwrapped past 360 rather than jumping back to 0).
    b0, b2 = d["bearing"][0], d["bearing"][2]
    assert 300 < b0[0] < 360 and np.all(np.diff(b0) > 0) and 0 < b2[-1] < 90
    one = ShardedDataset(import_deepsense(_deepsense(tmp_path / "one", seq=(5,) * 9), tmp_path / "o1"))
    b = one[0]["bearing"]
    assert np.all(np.diff(b) > 0) and 300 < b[0] < 360 < b[-1] < 420
    # By hand (local plane, Earth radius 6371 km): the vehicle is 20 m north and
    # linspace(-1, 1, 9) 1e-4 deg of longitude east of the BS; bearing atan2(east, north)
    # clockwise from north, unwrapped along each trajectory, and the horizontal distance.
    deg = np.pi / 180 * 6_371_000
    east, north = np.linspace(-1, 1, 9) * 1e-4 * deg * np.cos(np.deg2rad(33.42)), np.full(9, 20 / 111_195 * deg)
    hand = np.rad2deg(np.arctan2(east, north)) % 360

    def unwrap(x: np.ndarray) -> np.ndarray:
        return np.rad2deg(np.unwrap(np.deg2rad(x)))

    np.testing.assert_allclose(b, unwrap(hand), atol=1e-3)  # 335.1 .. 384.9
    for got, (a, z) in zip(d["bearing"], ((0, 3), (3, 5), (5, 9))):  # trajectories 1, 2, 3
        np.testing.assert_allclose(got, unwrap(hand[a:z]), atol=1e-3)
    np.testing.assert_allclose(np.concatenate(d["distance"]), np.hypot(east, north), rtol=1e-4)
    tables = {t.kind: t for t in series_tables(out)}
    assert set(tables) == {"beam_power", "aoa", "distance"} and len(tables["beam_power"]) == 3 * 64
    w = SeriesWindows([out], context=2, horizon=1, stride=1, kinds=["beam_power"])
    assert len(w) == 64 * (1 + 0 + 2)


def test_deepsense_bad_inputs(tmp_path):
    src = _deepsense(tmp_path / "a", seq=(1, 1, 2, 2, 1))
    with pytest.raises(DataError, match=r"seq_index_1-5.npy: row 4: sequence 1 starts again"):
        import_deepsense(src, tmp_path / "o1")
    src = _deepsense(tmp_path / "b")
    (next(src.glob("*unit2_loc*"))).unlink()
    with pytest.raises(DataError, match=r"no file matches scenario9_unit2_loc"):
        import_deepsense(src, tmp_path / "o2")
    src = _deepsense(tmp_path / "c")
    pwr = next(src.glob("*pwr*"))
    a = np.load(pwr)
    a[5, 3] = np.nan
    np.save(pwr, a)
    with pytest.raises(DataError, match=r"pwr_60ghz_1-9.npy: row 5: NaN"):
        import_deepsense(src, tmp_path / "o3")


@needs_shared
def test_real_deepsense_scenarios(tmp_path):
    out = import_deepsense(SHARED / "deepsense6g-beam", tmp_path / "ds", scenarios=[3, 7])
    ds = ShardedDataset(out)
    d = ds.read_range(0, len(ds))
    assert len(ds) == 52 + 62 and set(d["scenario"]) == {3, 7}
    lengths = [len(x) for x in d["beam_power"]]
    assert sum(lengths[:52]) == 1487 and sum(lengths[52:]) == 856
    # GPS geometry is sane: the BS sees vehicles within a few hundred metres.
    dist = np.concatenate(d["distance"])
    assert dist.min() > 0 and dist.max() < 500


# ---------------------------------------------------------------------------- WiFi CSI


def _synthetic_csi(T=200, A=3, K=30, seed=0):
    """A slowly varying multipath channel plus the offsets of a commodity NIC."""
    rng = np.random.default_rng(seed)
    k = np.r_[np.arange(-28, -1, 2), -1, np.arange(1, 28, 2), 28]
    delays = rng.uniform(0, 0.02, 4)
    gains = rng.normal(size=(A, 4)) + 1j * rng.normal(size=(A, 4))
    t = np.arange(T)[:, None, None, None]
    drift = np.exp(1j * 2 * np.pi * 0.002 * t * np.arange(1, 5))  # slow Doppler per path
    h = np.sum(gains[None, :, None, :] * drift * np.exp(-2j * np.pi * delays * k[:, None]), axis=-1)
    # Per packet: a common random phase (CFO) and a random slope (timing offset), shared by antennas.
    cfo = rng.uniform(-np.pi, np.pi, (T, 1, 1))
    sto = rng.uniform(-0.3, 0.3, (T, 1, 1))
    return h.astype(np.complex64), (h * np.exp(1j * (cfo + sto * k))).astype(np.complex64), k


def test_phase_sanitisation_removes_known_offsets():
    clean, raw, k = _synthetic_csi()
    assert persistence_nmse_db(raw) > 0  # offsets make the last packet useless as a prediction
    conj = conj_reference(raw)
    # Offsets shared by the antennas cancel exactly: conj of raw == conj of clean.
    np.testing.assert_allclose(conj, conj_reference(clean), atol=1e-3)
    lin = remove_linear_phase(raw, k)
    np.testing.assert_allclose(lin, remove_linear_phase(clean, k), atol=1e-3)
    for s in (conj, lin):
        assert persistence_nmse_db(s) < -15
        np.testing.assert_allclose(np.abs(s[:, 1:]), np.abs(raw[:, 1:]), rtol=1e-4)  # amplitudes kept
    # A slope well beyond pi per subcarrier spacing is still found (coarse phasor estimate).
    steep = raw * np.exp(1j * 2.5 * k)[None, None, :]
    np.testing.assert_allclose(remove_linear_phase(steep, k), lin, atol=1e-3)
    with pytest.raises(DataError, match="at least 2 antennas"):
        sanitize_phase(raw[:, :1], "conj", k)
    with pytest.raises(DataError, match="phase method"):
        sanitize_phase(raw, "cubic", k)


INTEL = SHARED / "wifi-csi" / "intel5300_3rx_2tx_100ms.dat"
NEXMON = SHARED / "wifi-csi" / "nexmon_bcm4339_80mhz.pcap"


@needs_shared
def test_real_intel_import_and_phase_effect(tmp_path):
    from wfm.data.loaders.wifi_csi import import_wifi_csi, read_intel

    c = read_intel(INTEL)
    assert c["csi"].shape == (540, 6, 30) and 0.09 < np.median(np.diff(c["timestamp"])) < 0.11
    raw = persistence_nmse_db(c["csi"])
    for m in ("conj", "linear"):
        assert persistence_nmse_db(sanitize_phase(c["csi"], m, c["subcarriers"], c["conj_groups"])) < raw - 10
    out = import_wifi_csi([INTEL], tmp_path / "ds", "intel", phase="linear", window=100)
    ds = ShardedDataset(out)
    assert ds.kind == "csi" and len(ds) == 5 and ds.specs["csi"].shape == (100, 6, 30)
    assert ds.attrs["time_step"] == pytest.approx(0.1, rel=0.05) and ds.attrs["chip"] == "intel5300"
    (t,) = series_tables(out)
    assert list(t.lengths) == [500]  # the five windows join back into one series


@needs_shared
def test_intel_raw_scale_is_one_factor_per_packet_away_and_has_no_noise_dips(tmp_path):
    from wfm.data.loaders.wifi_csi import import_wifi_csi, read_intel

    snr, raw = read_intel(INTEL), read_intel(INTEL, scale="raw")
    assert snr["csi"].shape == raw["csi"].shape and snr["csi_scale"] == "snr" and raw["csi_scale"] == "raw"
    seen = np.abs(raw["csi"]) > 0
    factor = np.abs(snr["csi"]) / np.where(seen, np.abs(raw["csi"]), 1.0)
    per_packet = np.median(factor.reshape(len(factor), -1), axis=1)
    np.testing.assert_allclose(factor[seen], np.broadcast_to(per_packet[:, None, None], factor.shape)[seen], rtol=1e-4)
    # get_scaled_csi divides by each packet's noise reading, which jumps on this still link: in SNR
    # units 1 packet in 8 dips by 2-3 dB; as reported, almost none.
    for c, low, high in ((snr, 0.10, 0.20), (raw, 0.0, 0.01)):
        power = 10 * np.log10((np.abs(c["csi"]) ** 2).mean(axis=(1, 2)))
        assert low <= np.mean(power < np.median(power) - 1.0) <= high
    ds = ShardedDataset(import_wifi_csi([INTEL], tmp_path / "raw", "intel", window=100, scale="raw"))
    assert ds.attrs["csi_scale"] == "raw" and len(ds) == 5
    with pytest.raises(DataError, match="scale 'db' is not one of snr, raw"):
        import_wifi_csi([INTEL], tmp_path / "bad", "intel", scale="db")


@needs_shared
def test_real_nexmon_import(tmp_path):
    from wfm.data.loaders.wifi_csi import import_wifi_csi

    out = import_wifi_csi([NEXMON], tmp_path / "ds", "nexmon", window=0, chip="4339", bw=80)
    ds = ShardedDataset(out)
    assert ds.specs["csi"].shape == (950, 1, 242) and ds.attrs["bandwidth"] == 80e6
    assert ds.attrs["subcarrier_indices"][0] == -122 and ds.attrs["time_step"] < 0.02


def test_wifi_bad_inputs(tmp_path):
    from wfm.data.loaders.wifi_csi import import_wifi_csi

    junk = tmp_path / "junk.dat"
    junk.write_bytes(b"\x00\x01" * 50)
    with pytest.raises(DataError, match="junk.dat"):
        import_wifi_csi([junk], tmp_path / "o", "intel")
    with pytest.raises(DataError, match="missing.pcap: file not found"):
        import_wifi_csi([tmp_path / "missing.pcap"], tmp_path / "o", "nexmon")


# ---------------------------------------------------------------------------- CSI as arrays (any tool)


def _csi_capture(p: int = 40, a: int = 2, k: int = 30, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(p, a, k)) + 1j * rng.normal(size=(p, a, k))).astype(np.complex64)


def _matlab_v73(path: Path, x: np.ndarray) -> Path:
    """``x`` as MATLAB's ``save(path, 'csi', '-v7.3')`` writes it: HDF5 behind a 512-byte header,
    the axes reversed (column-major), complex as a compound of real and imag."""
    import h5py

    pair = np.empty(x.shape, dtype=[("real", "<f8"), ("imag", "<f8")])
    pair["real"], pair["imag"] = x.real, x.imag
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("csi", data=pair.transpose()).attrs["MATLAB_class"] = np.bytes_("double")
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(128))
    return path


def test_csi_array_formats_and_layouts_import_the_same_windows(tmp_path):
    """One capture stored as .npy, as .npz with packet times, as a MATLAB v7.3 .mat, and as a real
    array with its axes in another order and a real/imag pair: the same [window, A, K] samples,
    which series views and the MAE read like an Intel 5300 import."""
    from wfm.data.loaders.wifi_csi import import_wifi_csi

    x = _csi_capture()
    np.save(tmp_path / "c.npy", x)
    np.savez(tmp_path / "c.npz", csi=x, t=np.arange(40) * 2e-3, other=np.zeros(3))
    _matlab_v73(tmp_path / "c.mat", x)
    np.save(tmp_path / "kpc.npy", np.stack([x.real, x.imag], -1).transpose(2, 0, 1, 3))  # [K, P, A, 2]
    runs = [("c.npy", {"interval": 2e-3}), ("c.npz", {"key": "csi", "time_key": "t"}),
            ("c.mat", {"interval": 2e-3}), ("kpc.npy", {"interval": 2e-3, "axes": "kpac"})]
    for i, (f, kw) in enumerate(runs):
        out = import_wifi_csi([tmp_path / f], tmp_path / f"ds{i}", "array", window=16, hop=8, **kw)
        ds = ShardedDataset(out)
        got = ds.read_range(0, len(ds))
        assert ds.kind == "csi" and ds.specs["csi"].shape == (16, 2, 30) and len(ds) == 4, f
        np.testing.assert_allclose(got["csi"][1], x[8:24], rtol=1e-6, err_msg=f)
        assert list(got["start"]) == [0, 8, 16, 24] and ds.attrs["time_step"] == pytest.approx(2e-3)
        assert ds.attrs["subcarrier_indices"] == list(range(-15, 15)) and ds.attrs["captures"] == [f]
    # Several captures along axis n, each a capture of its own; a real array reads as amplitudes.
    np.save(tmp_path / "n.npy", np.abs(np.stack([x, x[::-1]])))
    ds = ShardedDataset(import_wifi_csi([tmp_path / "n.npy"], tmp_path / "dn", "array", window=0, interval=1e-3,
                                        axes="npak"))
    assert ds.specs["csi"].shape == (40, 2, 30) and list(ds.read_range(0, 2)["capture"]) == [0, 1]
    assert ds.attrs["captures"] == ["n.npy[0]", "n.npy[1]"]
    np.testing.assert_allclose(ds.read_range(1, 2)["csi"][0], np.abs(x[::-1]), rtol=1e-6)


def test_csi_array_import_cli_and_every_bad_input(tmp_path, capsys):
    from wfm.data.loaders.csi_array import read_csi_array

    x = _csi_capture()
    np.save(tmp_path / "c.npy", x)
    wfm_main(["data", "import", "csi-array", str(tmp_path / "c.npy"), "--out", str(tmp_path / "ds"),
              "--interval", "0.001", "--window", "8", "--phase", "linear", "--subcarriers", *map(str, range(0, 60, 2))])
    assert len(ShardedDataset(tmp_path / "ds")) == 5
    assert ShardedDataset(tmp_path / "ds").attrs["phase_sanitisation"] == "linear"

    np.savez(tmp_path / "two.npz", a=x, b=x)
    nan = x.copy()
    nan[7, 1, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.savez(tmp_path / "obj.npz", csi=np.array([x, None], dtype=object))
    (tmp_path / "old.mat").write_bytes(b"MATLAB 5.0 MAT-file".ljust(256, b"\0"))
    (tmp_path / "c.txt").write_text("1 2 3")
    np.save(tmp_path / "pair3.npy", np.zeros((40, 30, 3)))
    cases = [
        (("two.npz",), {"interval": 1e-3}, r"two.npz: holds 2 arrays \(a, b\); name the CSI with --key"),
        (("two.npz",), {"interval": 1e-3, "key": "z"}, r"no array 'z'; it holds a, b"),
        (("c.npy",), {"interval": 1e-3, "axes": "pa"}, r"--axes 'pa' must name"),
        (("c.npy",), {"interval": 1e-3, "axes": "pk"}, r"is \[40, 2, 30\] \(3 axes\) but --axes 'pk' names 2"),
        (("c.npy",), {}, r"give --interval"),
        (("c.npy",), {"interval": 1e-3, "subcarriers": [1, 2]}, r"2 indices for 30 subcarriers"),
        (("nan.npy",), {"interval": 1e-3}, r"nan.npy: 1 NaN or Inf value\(s\) \(the first: capture 0, packet 7, antenna 1, subcarrier 3\)"),
        (("obj.npz",), {"interval": 1e-3}, r"obj.npz: not a readable .npz archive"),
        (("old.mat",), {"interval": 1e-3}, r"before v7.3"),
        (("c.txt",), {"interval": 1e-3}, r"c.txt: not an array file"),
        (("missing.npy",), {"interval": 1e-3}, r"missing.npy: file not found"),
        (("pair3.npy",), {"interval": 1e-3, "axes": "pkc"}, r"axis c \(real, imaginary\) must be a real axis of size 2"),
    ]
    for files, kw, match in cases:
        with pytest.raises(DataError, match=match):
            read_csi_array(tmp_path / files[0], **kw)
    np.savez(tmp_path / "t.npz", csi=x, t=np.r_[0.0, np.zeros(39)])
    with pytest.raises(DataError, match="increasing"):
        read_csi_array(tmp_path / "t.npz", key="csi", time_key="t")
    # The command names the file in one line, and writes nothing.
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        wfm_main(["data", "import", "csi-array", str(tmp_path / "nan.npy"), "--out", str(tmp_path / "no"),
                  "--interval", "0.001"])
    err = capsys.readouterr().err.strip()
    assert e.value.code != 0 and err.count("\n") == 0 and "nan.npy" in err
    assert not (tmp_path / "no" / "manifest.json").exists()


# ---------------------------------------------------------------------------- Hugging Face


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_hf_export_import_round_trip(tmp_path, fmt):
    src = _deepsense(tmp_path / "ds6g")
    ds_dir = import_deepsense(src, tmp_path / "ds")
    z = (np.arange(24) * (1 - 1j)).astype(np.complex64).reshape(2, 12)
    np.save(tmp_path / "z.npy", z)
    z_dir = import_series(tmp_path / "z.npy", tmp_path / "z", interval=0.001, series_kind="csi")
    for root in (ds_dir, z_dir):
        exported = export_hf(root, tmp_path / f"{root.name}-{fmt}", fmt)
        back = import_hf(exported, tmp_path / f"{root.name}-{fmt}-back")
        a, b = ShardedDataset(root), ShardedDataset(back)
        assert (a.kind, a.name, a.attrs, a.specs) == (b.kind, b.name, b.attrs, b.specs)
        ra, rb = a.read_range(0, len(a)), b.read_range(0, len(b))
        for f in a.specs:
            for x, y in zip(ra[f], rb[f]):
                np.testing.assert_array_equal(x, y)


def test_hf_import_of_foreign_parquet(tmp_path):
    import datasets

    hf = datasets.Dataset.from_dict({"load": [[1.0, 2.0, 3.0], [4.0, 5.0]], "cell": [3, 4]})
    hf.to_parquet(str(tmp_path / "foreign.parquet"))
    with pytest.raises(DataError, match="no wfm metadata; pass --interval"):
        import_hf(tmp_path / "foreign.parquet", tmp_path / "o")
    out = import_hf(tmp_path / "foreign.parquet", tmp_path / "o", interval=3600.0)
    ds = ShardedDataset(out)
    assert ds.kind == "series" and ds.specs["load"].ragged and list(ds.read_range(0, 2)["cell"]) == [3, 4]
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="bad.parquet: cannot read"):
        import_hf(tmp_path / "bad.parquet", tmp_path / "o2")


# ---------------------------------------------------------------------------- CLI


def test_cli_import_inspect_and_errors(tmp_path, capsys):
    src = _ti_csv(tmp_path / "ti.csv")
    wfm_main(["data", "import", "telecom-italia", str(src), "--out", str(tmp_path / "ds")])
    wfm_main(["data", "inspect", str(tmp_path / "ds")])
    assert "OK (2 samples" in capsys.readouterr().out
    wfm_main(["data", "export", str(tmp_path / "ds"), "--out", str(tmp_path / "pq")])
    wfm_main(["data", "import", "hf", str(tmp_path / "pq"), "--out", str(tmp_path / "back")])
    assert len(ShardedDataset(tmp_path / "back")) == 2
    bad = _ti_csv(tmp_path / "dup.csv", rows=[f"1,{T0_MS},3", f"1,{T0_MS},4"])
    with pytest.raises(SystemExit) as e:
        wfm_main(["data", "import", "telecom-italia", str(bad), "--out", str(tmp_path / "x")])
    assert e.value.code == 2
    assert "dup.csv: line 3: duplicated timestamp" in capsys.readouterr().err.replace("\n", "")
    csv = tmp_path / "g.csv"
    csv.write_text("v\n1\n\n2\n3\n")
    wfm_main(["data", "import", "csv", str(csv), "--out", str(tmp_path / "g"), "--interval", "0.1"])
    assert ShardedDataset(tmp_path / "g").attrs["interval_s"] == 0.1


def test_fill_gaps_reads_one_series_as_wfm_forecast_reads_a_column():
    """``fill_gaps``: gaps of up to ``max_gap`` filled (linearly, or with the last value), the run after
    the last longer gap kept, the filled values counted; leading and trailing NaN trimmed."""
    from wfm.data.loaders.timegrid import fill_gaps

    nan = float("nan")
    x = [nan, 1, 2, nan, 4, nan, nan, nan, 8, 9, nan, 11, nan]
    got, filled = fill_gaps(x, max_gap=3)
    np.testing.assert_allclose(got, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    assert filled == 5
    got, filled = fill_gaps(x, max_gap=2)  # the 3-step gap cuts: the run after it, its 1-step gap filled
    np.testing.assert_allclose(got, [8, 9, 10, 11])
    assert filled == 1
    got, filled = fill_gaps(x, max_gap=1, fill="ffill")
    np.testing.assert_allclose(got, [8, 9, 9, 11])
    assert filled == 1
    got, filled = fill_gaps(x, fill="none")
    np.testing.assert_allclose(got, [11])
    assert filled == 0
    with pytest.raises(DataError, match="no valid values"):
        fill_gaps([nan, nan])


def test_timestamp_errors_give_every_digit_and_the_date():
    """Two epoch timestamps ten minutes apart read the same to six digits (``1.71212e+09``): an
    error about their order gives every digit of both, and their UTC dates."""
    from wfm.data.loaders.timegrid import check_times

    t = np.array([1712116200.0, 1712115600.0])
    with pytest.raises(DataError, match=r"f.csv: line 3: timestamp 1712115600 \(2024-04-03 03:40:00 UTC\) goes back "
                                        r"in time \(previous line 2 has 1712116200 \(2024-04-03 03:50:00 UTC\)\)"):
        check_times(t, np.array([2, 3]), "f.csv")
    with pytest.raises(DataError, match=r"line 3: duplicated timestamp 0.25 \(same as line 2\)"):
        check_times(np.array([0.25, 0.25]), np.array([2, 3]), "f.csv")
