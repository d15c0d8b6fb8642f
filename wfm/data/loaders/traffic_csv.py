"""Cell traffic in the Telecom Italia Big Data Challenge layout.

Columns: ``square_id`` (grid cell), ``time_interval`` (start of the step, ms since the
Unix epoch), optionally ``countrycode``, and activity columns (``smsin``, ``smsout``,
``callin``, ``callout``, ``internet``, or any other such as ``internet_total``). The raw
challenge files are header-less TSVs of exactly those eight columns; files with a header
may hold any subset. Rows of one cell at one time but different country codes are summed,
and there an empty cell is a zero (the challenge's convention: no activity of that
country); without ``countrycode`` an empty cell is a missing value (see the gap policy)
and a repeated ``(square_id, time_interval)`` is a duplicated timestamp, hence an error.
A truncated file is refused, naming the line: a row with fewer fields than the header, or a
last line without its newline (a value cut mid-number, ``139.3`` of ``139.30``, still parses).

Stored as dataset kind ``traffic``: one sample per cell (per segment when gaps are split),
``traffic`` float32 ``[L, C]`` (C activity columns, names in attrs ``channels``), ``cell_id``
and ``start_time`` (s since the epoch); attrs ``interval_s``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from wfm.data.errors import DataError
from wfm.data.loaders.common import read_csv, write_samples
from wfm.data.loaders.timegrid import GapPolicy, common_step, regular_segments
from wfm.data.shards import FieldSpec

RAW_COLUMNS = ("square_id", "time_interval", "countrycode", "smsin", "smsout", "callin", "callout", "internet")
KEY_COLUMNS = ("square_id", "time_interval", "countrycode")


def load_telecom_italia(path: str | Path, interval: float | None = None, columns: Sequence[str] | None = None,
                        policy: GapPolicy = GapPolicy()) -> dict[str, Any]:
    """Read one file into per-cell regular series: ``{"traffic": [[L, C]...], "cell_id", "start_time",
    "filled": [[L] bool: the steps ``policy`` filled], "channels", "interval_s"}``.

    ``interval``: seconds between steps; ``None`` reads it from the file (the most common step
    between a cell's timestamps, :func:`wfm.data.loaders.timegrid.common_step`): the challenge's
    10 minutes, or the 1, 2, 15 or 60 minutes of other operators' exports in the same layout
    (600 s where every cell has a single timestamp)."""
    # The challenge files are machine-written, one record a line: a last line without its
    # newline is a truncated download (a value cut mid-number still parses), never a choice.
    table = read_csv(path, default_header=RAW_COLUMNS, require_final_newline=True)
    src = str(table.path)
    for key in ("square_id", "time_interval"):
        table.column(key)  # raises "missing column" with the file name
    channels = list(columns) if columns else [c for c in table.header if c not in KEY_COLUMNS]
    if not channels:
        raise DataError(f"{src}: no activity columns besides {', '.join(KEY_COLUMNS)}")
    cell = table.numbers("square_id", allow_empty=False)
    t_ms = table.numbers("time_interval", allow_empty=False)
    values = np.stack([table.numbers(c) for c in channels], axis=1)
    has_country = "countrycode" in table.header

    cells = _in_order_of_appearance(cell)
    if interval is None:
        interval = common_step([t_ms[cell == c] / 1000.0 for c in cells], src, default=600.0)
    out: dict[str, Any] = {"traffic": [], "cell_id": [], "start_time": [], "filled": [], "channels": channels,
                           "interval_s": float(interval)}
    for c in cells:
        idx = np.flatnonzero(cell == c)
        t, v, lines = t_ms[idx] / 1000.0, values[idx], table.lines[idx]
        if has_country:
            t, v, lines = _sum_country_rows(t, v, lines, src)
        for t0, seg, filled in regular_segments(v, lines, interval, src, policy, times=t):
            out["traffic"].append(seg.astype(np.float32))
            out["cell_id"].append(int(c))
            out["start_time"].append(t0)
            out["filled"].append(filled)
    return out


def _in_order_of_appearance(x: np.ndarray) -> np.ndarray:
    _, first = np.unique(x, return_index=True)
    return x[np.sort(first)]


def _sum_country_rows(t: np.ndarray, v: np.ndarray, lines: np.ndarray,
                      src: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum the rows of one timestamp (one per country code); keep time order checks honest."""
    d = np.diff(t)
    if (d < 0).any():
        i = int(np.flatnonzero(d < 0)[0]) + 1
        raise DataError(f"{src}: line {lines[i]}: timestamp goes back in time; sort the file first")
    starts = np.concatenate([[0], np.flatnonzero(d > 0) + 1])
    # The challenge leaves a cell empty when a country had no such activity: it is a zero.
    return t[starts], np.add.reduceat(np.nan_to_num(v), starts, axis=0), lines[starts]


def import_telecom_italia(path: str | Path, out: str | Path, interval: float | None = None,
                          columns: Sequence[str] | None = None, policy: GapPolicy = GapPolicy(),
                          name: str | None = None, shard_size: int = 256) -> Path:
    """Import a Telecom-Italia-layout file as a ``traffic`` dataset (``interval`` ``None``: read
    from the file, as :func:`load_telecom_italia`)."""
    d = load_telecom_italia(path, interval, columns, policy)
    interval = d["interval_s"]
    C = len(d["channels"])
    specs = {"traffic": FieldSpec("float32", (-1, C)), "cell_id": FieldSpec("int64", ()),
             "start_time": FieldSpec("float64", ())}
    samples = {"traffic": d["traffic"], "cell_id": np.array(d["cell_id"], dtype=np.int64),
               "start_time": np.array(d["start_time"], dtype=np.float64)}
    attrs = {"interval_s": float(interval), "channels": d["channels"], "unit": "activity (source units)",
             "source": Path(path).name, "fill": policy.fill, "max_gap": policy.max_gap}
    return write_samples(out, name or Path(path).stem, "traffic", specs, samples, attrs,
                         {"format": "telecom-italia", "source": str(path), "interval": interval,
                          "fill": policy.fill, "max_gap": policy.max_gap, "split": policy.split},
                         shard_size)
