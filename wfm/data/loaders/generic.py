"""Generic series from CSV or NPY files, at a declared sampling interval or one read from the timestamps.

CSV: every column is one series (``--columns`` picks some; without it, columns of text, such as
cell names, are skipped and listed); an optional time column
(``--time-column``, numbers in seconds or ISO 8601 date-times) is checked against the
declared interval, or sets it where none is declared (the most common step between its
timestamps); otherwise rows are taken as consecutive steps. NPY: a ``[L]`` array is
one series, ``[N, L]`` is N series of one length (rows); complex arrays stay complex.
Missing values (empty cells, NaN) follow the :class:`~wfm.data.loaders.timegrid.GapPolicy`.

Stored as dataset kind ``series``: one sample per series (per segment when gaps are split):
``values`` ``[L]`` float32 or complex64, ``column`` (index into attrs ``names``) and
``start_time`` (s; 0 = first row when there are no timestamps); attrs ``interval_s`` and
``series_kind`` (what the values are: ``traffic``, ``aoa``, ``rssi``...).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from wfm.data.errors import DataError
from wfm.data.loaders.common import read_csv, write_samples
from wfm.data.loaders.timegrid import GapPolicy, check_times, common_step, regular_segments
from wfm.data.shards import FieldSpec


#: Seconds per unit of numeric timestamps (``--time-unit``; ``year``: calendar years, 1871 is 1871-01-01).
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "year": None}
#: Without a declared unit, numeric timestamps that are all whole numbers in this range are
#: calendar years (yearly counts and flows are written so); any other number is seconds.
YEARS = (1000, 2999)
#: Numeric timestamps past this many seconds (year 9999) are in a smaller unit than declared.
_LAST_SECOND = 253402300799.0


def _numbers(cells: list[str]) -> list[float | None]:
    """Each cell as a number, or None where it is not one."""
    out: list[float | None] = []
    for c in cells:
        try:
            out.append(float(c))
        except ValueError:
            out.append(None)
    return out


def _parse_time(cells: list[str], lines: np.ndarray, src: str, column: str, unit: str | None = None) -> np.ndarray:
    """Seconds since the epoch: numbers in ``unit`` (:data:`TIME_UNITS`; ``None``: seconds, or calendar
    years where every cell is a whole number in :data:`YEARS`), ISO 8601 date-times (naive = UTC)."""
    if unit is not None and unit not in TIME_UNITS:
        raise DataError(f"{src}: time unit must be one of {', '.join(TIME_UNITS)}, got {unit!r}")
    cells = [c.strip() for c in cells]
    numbers = _numbers(cells)
    if unit is None:
        years = [v for v in numbers if v is not None]
        unit = ("year" if len(years) == len(cells) and cells
                and all(v.is_integer() and YEARS[0] <= v <= YEARS[1] for v in years) else "s")
    out = np.empty(len(cells), dtype=np.float64)
    for i, (c, number) in enumerate(zip(cells, numbers)):
        if number is not None and unit == "year":
            if not (number.is_integer() and 1 <= number <= 9999):
                raise DataError(f"{src}: line {lines[i]}: time column {column!r} value {c!r} is not a year")
            out[i] = datetime(int(number), 1, 1, tzinfo=timezone.utc).timestamp()
            continue
        if number is not None:
            out[i] = number * TIME_UNITS[unit]
            if abs(out[i]) > _LAST_SECOND:  # epoch milliseconds read as seconds: past the year 9999
                fits = [u for u, f in TIME_UNITS.items() if f is not None and abs(number) * f <= _LAST_SECOND]
                raise DataError(f"{src}: line {lines[i]}: time column {column!r} value {c!r} is past the year 9999 "
                                f"in {unit}: pass the unit of the timestamps (--time-unit {fits[0] if fits else 'ns'})")
            continue
        dt = _iso_time(c)
        if dt is None:
            raise DataError(f"{src}: line {lines[i]}: time column {column!r} value {c!r} is neither "
                            "seconds nor an ISO 8601 date-time (nor a month, 2023-07, or a quarter, 2023Q3)")
        out[i] = dt.timestamp()
    return out


#: Months and quarters as reports write them: ``2023-07`` (ISO 8601's year and month) and
#: ``2023Q3`` / ``2023-Q3``; each is read as the first day of its month or quarter (UTC).
_MONTH_OR_QUARTER = re.compile(r"^(\d{4})(?:-(\d{2})|-?[Qq]([1-4]))$")


def _iso_time(cell: str) -> datetime | None:
    """An ISO 8601 date-time (naive = UTC; a trailing ``Z`` read as UTC), a year and month
    (``2023-07``) or a quarter (``2023Q3``), or None."""
    cell = cell.strip()
    period = _MONTH_OR_QUARTER.match(cell)
    if period:
        year, month, quarter = period.groups()
        month = int(month) if month else 3 * int(quarter) - 2
        return datetime(int(year), month, 1, tzinfo=timezone.utc) if 1 <= month <= 12 else None
    try:
        dt = datetime.fromisoformat(cell.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


def _looks_like_time(cells: list[str]) -> bool:
    """True where the column's first non-empty cell is an ISO 8601 date-time."""
    return _iso_time(next((c for c in cells if c.strip()), "")) is not None


def load_csv_series(path: str | Path, interval: float | None, columns: Sequence[str] | None = None,
                    time_column: str | None = None, policy: GapPolicy = GapPolicy(),
                    id_column: str | None = None, time_unit: str | None = None,
                    resample: bool = False) -> dict[str, Any]:
    """``{"values": [[L]...], "column": [...], "start_time": [...], "filled": [...], "names": [...], "ids": [...],
    "interval_s", "skipped": [...]}`` from a CSV (``filled``: how many steps of each segment ``policy``
    filled). ``interval`` ``None``: read from the ``time_column`` (the most common step between its
    timestamps, :func:`wfm.data.loaders.timegrid.common_step`), which it then needs. Without
    ``columns``, every column but the time (and id) column is a series, except text columns (no cell
    a number: cell names, labels) and empty ones (every cell empty or NaN), listed under
    ``skipped``; a named column or a column of numbers with text in it is an error.

    ``id_column``: a long table (one row per series and step, as operators export cell traffic):
    the rows of each id, in the file's order, are that id's series, named after the id (``ID
    COLUMN`` where there are several value columns); ``column`` then indexes those names, and
    ``ids`` gives each name's id (``""`` without ``id_column``). ``time_unit``: of numeric timestamps (``s``, ``ms``,
    ``us``, ``ns``, ``year``; ``None``: seconds, or years where every one is a whole number from 1000 to 2999).
    ``resample``: timestamps with no grid (packet times, GPS fixes) are interpolated onto the ``interval``'s
    (:func:`wfm.data.loaders.timegrid.resample_grid`) instead of refused; a declared ``interval`` is then the
    grid's, whatever the timestamps' step."""
    table = read_csv(path)
    src = str(table.path)
    keys = {time_column, id_column}
    names = list(columns) if columns else [c for c in table.header if c not in keys]
    # A column of date-times is not skipped: read as values, its error tells to pass --time-column.
    skipped = [] if columns else [c for c in names if table.is_text(c) and not _looks_like_time(table.column(c))]
    names = [c for c in names if c not in skipped]
    if not names:
        text = f" (text only: {', '.join(skipped)})" if skipped else ""
        raise DataError(f"{src}: no value columns{text}")
    if resample and time_column is None:
        raise DataError(f"{src}: --resample needs the timestamps to resample (--time-column)")
    times = None
    if time_column is not None:
        times = _parse_time(table.column(time_column), table.lines, src, time_column, time_unit)
    rows = np.arange(len(table.rows))
    groups: dict[str, np.ndarray] = {"": rows}
    if id_column is not None:
        ids = [c.strip() for c in table.column(id_column)]
        order = list(dict.fromkeys(ids))
        if "" in order:
            raise DataError(f"{src}: line {table.lines[ids.index('')]}: column {id_column!r} is empty")
        ids_arr = np.array(ids, dtype=object)
        groups = {i: rows[ids_arr == i] for i in order}
    if interval is None:
        if times is None:
            raise DataError(f"{src}: no interval: give the seconds between rows (--interval), or the column of "
                            "timestamps to read it from (--time-column)")
        interval = common_step([times[g] for g in groups.values()], src)
    elif times is not None and not resample:  # a declared interval the timestamps disagree with: said as such
        for g in groups.values():  # (timestamps out of order are named first, by their line)
            check_times(times[g], table.lines[g], src)
        step = common_step([times[g] for g in groups.values()], src, default=interval)
        if abs(step - interval) > 0.01 * interval:
            raise DataError(f"{src}: the timestamps of {time_column!r} are {step:g} s apart (the most common step), "
                            f"not the {interval:g} s declared (--interval); leave it out to read it from them")
    series = [(name if not gid else gid if len(names) == 1 else f"{gid} {name}", name, gid, g)
              for gid, g in groups.items() for name in names]
    out: dict[str, Any] = {"values": [], "column": [], "start_time": [], "filled": [], "names": [s[0] for s in series],
                           "ids": [s[2] for s in series], "interval_s": float(interval), "skipped": skipped}
    numbers = {}
    for name in names:
        # Text in a value column is most often a time column read as values.
        hint = f"; if that column holds timestamps, pass --time-column {name}" if time_column is None else ""
        numbers[name] = table.numbers(name, hint=hint)
    if not columns:  # a column with no value at all (an empty export field) is skipped as text is
        empty = [n for n in names if np.isnan(numbers[n]).all()]
        if empty and len(empty) == len(names):
            raise DataError(f"{src}: no value in any column ({', '.join(empty)}: every cell is empty or NaN)")
        skipped += empty
        series = [s for s in series if s[1] not in empty]
        out["names"], out["ids"] = [s[0] for s in series], [s[2] for s in series]
    for j, (_, name, gid, g) in enumerate(series):
        where = f"{src} ({id_column} {gid})" if id_column else src
        if np.isnan(numbers[name][g]).all():
            raise DataError(f"{where}: column {name!r} holds no value (every cell is empty or NaN)")
        try:
            segments = regular_segments(numbers[name][g], table.lines[g], interval, where, policy,
                                        None if times is None else times[g], resample=resample)
        except DataError as e:
            if "irregular interval" not in str(e):
                raise
            raise DataError(f"{e}; if the rows are sampled at irregular times (packets, GPS fixes), --resample "
                            "interpolates them onto the grid (or leave --time-column out and give --interval to "
                            "read them as evenly spaced)") from None
        for t0, seg, filled in segments:
            out["values"].append(seg[:, 0].astype(np.float64))  # (stored as float32; a forecast reads float64)
            out["column"].append(j)
            out["start_time"].append(t0)
            out["filled"].append(int(filled.sum()))
    return out


def _read_npy(path: Path) -> np.ndarray:
    """A .npy array whose header is checked against the file's size before anything is allocated
    (a header may claim any shape), never unpickled."""
    src = str(path)
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            if dtype.hasobject:
                raise ValueError("object arrays are not read (they would need unpickling)")
            need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            have = path.stat().st_size - f.tell()
            if need != have:
                raise ValueError(f"header says {list(shape)} {dtype} ({need} bytes), the file holds {have}")
            if need == 0:
                raise ValueError(f"empty array {list(shape)}")
            a = np.fromfile(f, dtype=dtype, count=int(np.prod(shape)))
        return a.reshape(shape, order="F" if fortran else "C")
    except (ValueError, OSError, EOFError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"{src}: not a readable .npy array ({msg})") from None


def load_npy_series(path: str | Path, interval: float, policy: GapPolicy = GapPolicy()) -> dict[str, Any]:
    """Series from a ``[L]`` or ``[N, L]`` .npy array (real or complex)."""
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise DataError(f"{src}: file not found")
    a = _read_npy(path)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.dtype.kind not in "iufc":
        raise DataError(f"{src}: expected a numeric [L] or [N, L] array, got {a.dtype}{list(a.shape)}")
    is_complex = a.dtype.kind == "c"
    infinite = np.isinf(a.real) | np.isinf(a.imag) if is_complex else np.isinf(a)
    if infinite.any():  # NaN is a missing value (the gap policy decides); infinity is an error
        row, col = (int(k) for k in np.argwhere(infinite)[0])
        raise DataError(f"{src}: {int(infinite.sum())} infinite value(s) (the first: row {row}, index {col}); "
                        "write a missing value as nan")
    out: dict[str, Any] = {"values": [], "column": [], "start_time": [], "names": [f"row{i}" for i in range(len(a))]}
    for i, row in enumerate(a):
        # Complex series go through the gap policy as two channels (real, imaginary).
        v = np.stack([row.real, row.imag], 1) if is_complex else row[:, None]
        where = f"{src} row {i}" if len(a) > 1 else src
        for t0, seg, _ in regular_segments(v, np.arange(len(row)), interval, where, policy, unit="index"):
            out["values"].append((seg[:, 0] + 1j * seg[:, 1]).astype(np.complex64) if is_complex
                                 else seg[:, 0].astype(np.float32))
            out["column"].append(i)
            out["start_time"].append(t0)
    return out


def import_series(path: str | Path, out: str | Path, interval: float | None, series_kind: str = "series",
                  columns: Sequence[str] | None = None, time_column: str | None = None,
                  policy: GapPolicy = GapPolicy(), name: str | None = None, shard_size: int = 256,
                  id_column: str | None = None, time_unit: str | None = None, resample: bool = False) -> Path:
    """Import a CSV or NPY file of series as a ``series`` dataset (``interval`` ``None``: read
    from a CSV's ``time_column``; ``id_column``, ``time_unit``, ``resample``: :func:`load_csv_series`)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        if columns or time_column or id_column or resample:
            raise DataError(f"{path}: --columns, --time-column, --id-column and --resample apply to CSV files only")
        if interval is None:
            raise DataError(f"{path}: an NPY file has no timestamps: give the seconds between values (--interval)")
        d = load_npy_series(path, interval, policy)
    else:
        d = load_csv_series(path, interval, columns, time_column, policy, id_column, time_unit, resample)
        interval = d["interval_s"]
    dtype = "complex64" if any(np.iscomplexobj(v) for v in d["values"]) else "float32"
    specs = {"values": FieldSpec(dtype, (-1,)), "column": FieldSpec("int64", ()),
             "start_time": FieldSpec("float64", ())}
    samples = {"values": [np.asarray(v, dtype=dtype) for v in d["values"]],
               "column": np.array(d["column"], dtype=np.int64),
               "start_time": np.array(d["start_time"], dtype=np.float64)}
    attrs = {"interval_s": float(interval), "series_kind": series_kind, "names": d["names"],
             "source": path.name, "fill": policy.fill, "max_gap": policy.max_gap}
    if d.get("skipped"):
        attrs["skipped_text_columns"] = d["skipped"]
    return write_samples(out, name or path.stem, "series", specs, samples, attrs,
                         {"format": path.suffix.lower().lstrip(".") or "csv", "source": str(path),
                          "interval": interval, "series_kind": series_kind, "time_column": time_column,
                          "resampled": resample,
                          "fill": policy.fill, "max_gap": policy.max_gap, "split": policy.split},
                         shard_size)
