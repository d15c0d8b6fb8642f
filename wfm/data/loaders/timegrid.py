"""From timestamped or NaN-holed measurements to regular series, with an explicit policy.

Every imported series is regular (one value every ``interval`` seconds), because that is
what the series view and the models assume. Bad timing is an error naming the file and
line, never silently repaired:

- unparseable or non-finite timestamps, timestamps going backwards, duplicated
  timestamps: :class:`DataError`;
- timestamps off the declared grid (``|t - t0 - k * interval| > tolerance * interval``, a tenth
  of a step: a logger's jitter of a few tenths of a second on a minute is placed on its step):
  :class:`DataError` ("irregular interval");
- *missing steps* (a grid step without a row, or a row with NaN/empty values) follow the
  :class:`GapPolicy`: with ``fill="none"`` (the default) any interior gap is an error;
  ``fill="linear"`` / ``"ffill"`` fill gaps of at most ``max_gap`` steps by linear
  interpolation / repeating the last value; a longer gap is an error, or with
  ``split=True`` ends the series there and starts a new segment after it. Missing steps
  at the very start or end of a series are trimmed (there is nothing to fill from);
- irregularly sampled series (packet-timed CSI, GPS fixes, event logs: no grid at all) are
  interpolated onto one only when asked (``resample``, ``--resample``: :func:`resample_grid`).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np

from wfm.data.errors import DataError

FILL_POLICIES = ("none", "linear", "ffill")

#: A calendar month on average (the Gregorian year over 12), in seconds. Monthly, quarterly and
#: yearly timestamps (the 1st of each month, or each month's last day) are not a fixed number of
#: seconds apart: they are placed on calendar months, and their interval is this times the months
#: per step (x 3 a quarter, x 12 a year), so that a year is 12 steps of a monthly series.
MONTH_S = 365.2425 * 86_400 / 12


def calendar_months(times: np.ndarray) -> np.ndarray | None:
    """The month number of each timestamp (months since 1970-01) where the epoch-second ``times``
    lie on a calendar grid: each at the same day of its month and time of day, or at the same time
    before its month's end (month-end dates); else None (also for fewer than two timestamps, or a
    day past the 28th that does not follow the month's end)."""
    t = np.asarray(times, dtype=np.float64)
    if t.size < 2 or not np.isfinite(t).all():
        return None
    ms = np.rint(t * 1000.0).astype("datetime64[ms]")
    months = ms.astype("datetime64[M]")
    since = ms - months.astype("datetime64[ms]")
    until = (months + 1).astype("datetime64[ms]") - ms
    n = months.astype(np.int64)
    if (since == since[0]).all() and since[0] < np.timedelta64(28 * 86_400_000, "ms"):
        return n
    if (until == until[0]).all() and until[0] <= np.timedelta64(86_400_000, "ms"):
        return n
    return None


def calendar_step(interval: float) -> int | None:
    """Months per step where ``interval`` is a whole number of :data:`MONTH_S` (a calendar
    series' interval, as :func:`common_step` reads it), else None."""
    m = interval / MONTH_S
    return int(round(m)) if m > 0.5 and abs(m - round(m)) < 1e-9 * m else None


def interval_label(seconds: float) -> str:
    """An interval as a person reads it: ``1 month``, ``1 quarter``, ``1 year`` (calendar
    series), ``1 d``, ``2 h``, ``10 min``, ``0.5 s``, ``1 ms``."""
    months = calendar_step(seconds)
    if months is not None:
        return {1: "1 month", 3: "1 quarter", 12: "1 year"}.get(months, f"{months} months")
    for unit, size in (("d", 86_400.0), ("h", 3600.0), ("min", 60.0), ("s", 1.0)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds * 1000:g} ms"


def step_time(t0: float, steps: int, interval: float) -> float:
    """The time ``steps`` steps after ``t0`` (epoch seconds): ``t0 + steps * interval``, or on a
    calendar grid (:func:`calendar_step`) the same day of the month (or distance before its end,
    where ``t0`` is on its month's last day) ``steps`` x the months per step later."""
    m = calendar_step(interval)
    if m is None:
        return t0 + steps * interval
    at = np.datetime64(int(round(t0 * 1000.0)), "ms")
    month = at.astype("datetime64[M]")
    until = (month + 1).astype("datetime64[ms]") - at
    target = month + steps * m
    if until <= np.timedelta64(86_400_000, "ms"):  # month-end dates stay month-end dates
        out = (target + 1).astype("datetime64[ms]") - until
    else:
        out = target.astype("datetime64[ms]") + (at - month.astype("datetime64[ms]"))
    return float(out.astype(np.int64)) / 1000.0


@dataclass(frozen=True)
class GapPolicy:
    """What to do with missing steps (see the module doc)."""

    fill: str = "none"
    max_gap: int = 0
    split: bool = False

    def __post_init__(self) -> None:
        if self.fill not in FILL_POLICIES:
            raise DataError(f"fill policy {self.fill!r} is not one of {', '.join(FILL_POLICIES)}")
        if self.max_gap < 0:
            raise DataError(f"max_gap must be >= 0, got {self.max_gap}")


def _stamp(t: float) -> str:
    """A timestamp (seconds) for an error message: every digit (``1.71212e+09`` cannot tell two
    steps of a day apart), and the UTC date where it reads as one (1973-2286)."""
    if 1e8 <= t < 1e10:
        date = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{t:.15g} ({date})"
    return f"{t:.15g}"


def check_times(times: np.ndarray, lines: np.ndarray, source: str, unit: str = "line") -> None:
    """Timestamps must be finite and strictly increasing; name the first offending line."""
    times = np.asarray(times, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(times))
    if bad.size:
        raise DataError(f"{source}: {unit} {lines[bad[0]]}: timestamp is not a finite number")
    d = np.diff(times)
    if (d < 0).any():
        i = int(np.flatnonzero(d < 0)[0]) + 1
        raise DataError(f"{source}: {unit} {lines[i]}: timestamp {_stamp(times[i])} goes back in time "
                        f"(previous {unit} {lines[i - 1]} has {_stamp(times[i - 1])}); sort the file first")
    if (d == 0).any():
        i = int(np.flatnonzero(d == 0)[0]) + 1
        raise DataError(f"{source}: {unit} {lines[i]}: duplicated timestamp {_stamp(times[i])} "
                        f"(same as {unit} {lines[i - 1]})")


def common_step(times: list[np.ndarray], source: str, default: float | None = None) -> float:
    """The interval of timestamped series, read from the data: the most common gap (to the
    millisecond) between consecutive distinct timestamps of each series (``times``: one array a
    series, e.g. a grid cell). The most common, not the smallest or the median, so that missing
    steps (gaps of several intervals) and the odd early or late row do not set the grid; rows off
    that grid are then refused by :func:`to_grid`, naming the line. Without two distinct
    timestamps in any series: ``default`` (every series is one value long, so no step is
    wrong), else an error. Where no gap repeats to the millisecond in a tenth of them (a logger's
    jitter), or the millisecond's grid holds fewer than ``GRID_SHARE`` of the rows (a step that is no
    whole number of milliseconds: 15.565 ms, 0.5 ms), the slope of the times against their step
    numbers, to the millisecond where that grid holds them."""
    distinct = [np.unique(np.asarray(t, dtype=np.float64)) for t in times]
    months = [calendar_months(t) for t in distinct if len(t) > 1]
    if months and all(m is not None for m in months):  # monthly, quarterly or yearly dates
        steps, counts = np.unique(np.concatenate([np.diff(m) for m in months]), return_counts=True)
        return float(steps[np.argmax(counts)]) * MONTH_S
    gaps = [np.diff(t) for t in distinct]
    gaps = np.concatenate(gaps) if gaps else np.empty(0)
    gaps = gaps[np.isfinite(gaps) & (gaps > 0)]
    if not gaps.size:
        if default is not None:
            return float(default)
        raise DataError(f"{source}: cannot read the interval: no series has two distinct timestamps "
                        "(give the interval explicitly)")
    ms, counts = np.unique(np.rint(gaps * 1000.0).astype(np.int64), return_counts=True)
    if counts.max() * 10 >= gaps.size:  # a step that repeats to the millisecond: the grid
        step = float(ms[np.argmax(counts)]) / 1000.0
        if _grid_share(distinct, step) >= GRID_SHARE:  # (an odd row off it is refused by to_grid, named)
            return step
        # Most rows off the millisecond's grid: a step that is no whole number of milliseconds (WiFi
        # CSI every 15.565 ms, a 0.5 ms sensor) drifts off it in a few rows. The slope's grid, where
        # it holds them; else the millisecond's, whose first row off it to_grid names.
        fine = _slope_step(distinct, gaps)
        return fine if _grid_share(distinct, fine) >= GRID_SHARE else step
    # No step repeats to the millisecond (a logger's jitter): the slope, to the millisecond unless
    # only the slope itself holds the rows (packet-timed rows, which no grid holds, are resampled
    # onto the millisecond's).
    fine = _slope_step(distinct, gaps)
    step = round(fine, 3)
    if step > 0 and _grid_share(distinct, step) < GRID_SHARE <= _grid_share(distinct, fine):
        return fine
    return step if step > 0 else fine


def _slope_step(distinct: list[np.ndarray], gaps: np.ndarray) -> float:
    """A first step from the median gap, then the least-squares slope of each series' times against
    their step numbers (its jitter averages out over the whole series, where one gap carries two
    rows' jitter), to 9 significant digits."""
    near = gaps[np.abs(gaps - np.median(gaps)) <= 0.25 * np.median(gaps)]
    med = float(np.median(near if near.size else gaps))
    num = den = 0.0
    for s in distinct:
        s = s[np.isfinite(s)]
        if s.size < 2:
            continue
        k = np.rint((s - s[0]) / med)
        k, y = k - k.mean(), s - s.mean()
        num, den = num + float(k @ y), den + float(k @ k)
    return float(f"{num / den if den > 0 else med:.9g}")


#: ``common_step``: the share of rows a step's grid must hold (within ``to_grid``'s tolerance) for it to be the interval.
GRID_SHARE = 0.9


def _grid_share(distinct: list[np.ndarray], step: float, tolerance: float = 0.1) -> float:
    """The share of the timestamps of ``distinct`` (one sorted array a series) within ``tolerance``
    steps of their series' grid ``t0 + k * step``, as :func:`to_grid` places them."""
    if not step > 0:
        return 0.0
    held = total = 0
    for t in distinct:
        t = t[np.isfinite(t)]
        if t.size:
            k = (t - t[0]) / step
            held, total = held + int((np.abs(k - np.rint(k)) <= tolerance).sum()), total + t.size
    return held / total if total else 1.0


def to_grid(times: np.ndarray, values: np.ndarray, interval: float, lines: np.ndarray, source: str,
            tolerance: float = 0.1, unit: str = "line") -> tuple[float, np.ndarray, np.ndarray]:
    """Place timestamped rows ``values [n, C]`` on the grid ``t0 + k * interval``.

    Returns ``(t0, grid [m, C] with NaN at missing steps, line of each grid step or -1)``.
    """
    if not interval > 0:
        raise DataError(f"{source}: interval must be > 0 seconds, got {interval}")
    times = np.asarray(times, dtype=np.float64)
    check_times(times, lines, source, unit)
    per, months = calendar_step(interval), calendar_months(times)
    if per is not None and months is not None:  # calendar months: steps by month number
        k = (months - months[0]) / per
        steps = np.rint(k).astype(np.int64)
        off = np.abs(k - steps) > 0
        if off.any():
            i = int(np.flatnonzero(off)[0])
            raise DataError(f"{source}: {unit} {lines[i]}: irregular interval: this date is "
                            f"{int(months[i] - months[i - 1])} month(s) after the previous one, off the "
                            f"{per}-month grid")
    else:
        k = (times - times[0]) / interval
        steps = np.rint(k).astype(np.int64)
        off = np.abs(k - steps) > tolerance
        if off.any():
            i = int(np.flatnonzero(off)[0])
            gap = times[i] - times[i - 1] if i else 0.0
            raise DataError(f"{source}: {unit} {lines[i]}: irregular interval: timestamp "
                            f"{np.format_float_positional(times[i], precision=6, trim='-')} is {gap:g} s after "
                            f"the previous one, off the {interval:g} s grid (by more than a tenth of a step)")
    m = int(steps[-1]) + 1 if len(steps) else 0
    grid = np.full((m, values.shape[1]), np.nan, dtype=np.float64)
    grid[steps] = values
    grid_lines = np.full(m, -1, dtype=np.int64)
    grid_lines[steps] = lines
    return float(times[0]) if len(times) else 0.0, grid, grid_lines


def apply_gap_policy(grid: np.ndarray, lines: np.ndarray, policy: GapPolicy, source: str,
                     unit: str = "line") -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Fill or split missing steps (rows with any NaN) of ``grid [m, C]``.

    Returns ``[(first step, segment [l, C], filled [l] bool: the steps the policy filled), ...]``:
    one segment unless gaps were split.
    """
    missing = np.isnan(grid).any(axis=1)
    present = np.flatnonzero(~missing)
    if present.size == 0:
        raise DataError(f"{source}: no valid values (every step is missing or NaN)")
    first, last = int(present[0]), int(present[-1])
    segments: list[tuple[int, np.ndarray, np.ndarray]] = []
    seg_start = first
    # Interior runs of missing steps, as (start, stop) with stop exclusive.
    edges = np.diff(missing[first:last + 1].astype(np.int8))
    run_starts = np.flatnonzero(edges == 1) + 1 + first
    run_stops = np.flatnonzero(edges == -1) + 1 + first
    out = grid.copy()
    for a, b in zip(run_starts, run_stops):
        g = int(b - a)
        where = f"{source}: {unit} {_line_after(lines, b)}"
        if policy.fill == "none" or g > policy.max_gap:
            if policy.split:
                segments.append((seg_start, out[seg_start:a], missing[seg_start:a]))
                seg_start = int(b)
                continue
            hint = ("pass --fill linear|ffill with --max-gap >= " if policy.fill == "none"
                    else "raise --max-gap to ")
            raise DataError(f"{where}: {g} missing step(s) before this {unit} (NaN, empty or absent "
                            f"timestamps); {hint}{g}, or --split-gaps")
        if policy.fill == "ffill":
            out[a:b] = out[a - 1]
        else:
            w = (np.arange(1, g + 1) / (g + 1))[:, None]
            out[a:b] = (1 - w) * out[a - 1] + w * out[b]
    segments.append((seg_start, out[seg_start:last + 1], missing[seg_start:last + 1]))
    return segments


def fill_gaps(series, max_gap: int = 12, fill: str = "linear") -> tuple[np.ndarray, int]:
    """One series with missing values (NaN) as ``wfm forecast`` reads a column: ``(the run after its last
    gap longer than max_gap steps, how many values of that run were filled)``, shorter gaps filled
    (``fill``: ``linear`` or ``ffill``; ``none`` fills nothing). Leading and trailing NaN are trimmed;
    a series with no value is an error. For a causal model's ``forecast``, which takes gap-free rows::

        x, filled = fill_gaps(np.asarray(series, dtype=float))
        model.forecast(torch.from_numpy(x), interval, horizon)
    """
    x = np.asarray(series, dtype=np.float64).reshape(-1)
    _, seg, filled = apply_gap_policy(x[:, None], np.arange(len(x)), GapPolicy(fill, max_gap, split=True), "series",
                                      unit="index")[-1]
    return seg[:, 0], int(filled.sum())


def _line_after(lines: np.ndarray, step: int) -> int:
    """The file line of the first present step at or after ``step`` (for messages)."""
    later = lines[step:]
    hit = later[later >= 0]
    return int(hit[0]) if hit.size else int(lines[lines >= 0][-1])


#: Steps between two samples this many intervals apart or closer are interpolated when resampling;
#: a wider span leaves them missing (each step so interpolated is at most one interval from a sample).
RESAMPLE_SPAN = 2.0


def resample_grid(times: np.ndarray, values: np.ndarray, interval: float, lines: np.ndarray, source: str,
                  unit: str = "line") -> tuple[float, np.ndarray, np.ndarray]:
    """Irregularly sampled rows ``values [n, C]`` (NaN: missing) linearly interpolated onto the grid
    ``t0 + k * interval``, from the first timestamp to the last: packet-timed CSI, GPS fixes and
    event-driven logs have no grid for :func:`to_grid` to place them on. A step that lies between
    two samples more than ``RESAMPLE_SPAN`` intervals apart is missing (NaN), for the gap policy
    to fill or split as it does an absent row; a sample on a step is kept as it is, and rows that
    share a timestamp (a clock coarser than the packets) are their mean.

    Returns ``(t0, grid [m, C], the line of the sample nearest each step)``.
    """
    if not interval > 0:
        raise DataError(f"{source}: interval must be > 0 seconds, got {interval}")
    times = np.asarray(times, dtype=np.float64)
    lines = np.asarray(lines, dtype=np.int64)
    d = np.diff(times)
    if (d == 0).any() and not (d < 0).any():  # rows that share a timestamp (a coarse clock): their mean
        times, first = np.unique(times, return_index=True)
        sums = np.add.reduceat(np.nan_to_num(values), first, axis=0)
        seen = np.add.reduceat((~np.isnan(values)).astype(np.float64), first, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(seen > 0, sums / seen, np.nan)
        lines = lines[first]
    check_times(times, lines, source, unit)
    t0 = float(times[0])
    m = int(np.floor((times[-1] - t0) / interval * (1 + 1e-12))) + 1
    at = t0 + interval * np.arange(m)
    grid = np.full((m, values.shape[1]), np.nan, dtype=np.float64)
    for c in range(values.shape[1]):
        ok = ~np.isnan(values[:, c])
        t, v = times[ok], values[ok, c]
        if t.size == 0:
            continue
        right = np.searchsorted(t, at, side="left").clip(0, t.size - 1)  # the first sample at or after the step
        left = np.where(t[right] > at, right - 1, right)
        inside = (left >= 0) & (at <= t[-1])
        left = left.clip(0)
        near = (t[right] - t[left]) <= RESAMPLE_SPAN * interval
        grid[:, c] = np.where(inside & near, np.interp(at, t, v), np.nan)
    pos = np.searchsorted(times, at).clip(1, len(times) - 1)
    nearest = np.where(at - times[pos - 1] <= times[pos] - at, pos - 1, pos)
    return t0, grid, lines[nearest]


def regular_segments(values: np.ndarray, lines: np.ndarray, interval: float, source: str,
                     policy: GapPolicy, times: np.ndarray | None = None,
                     unit: str = "line", resample: bool = False) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Timestamps (optional: rows are consecutive steps without them) + values -> regular segments.

    Returns ``[(time of the first value, segment [l, C] float64, filled [l] bool), ...]``
    (``filled``: the steps the policy filled); without timestamps the time is ``step * interval``
    from the first row. ``resample``: timestamps off the grid are interpolated onto it
    (:func:`resample_grid`) instead of refused (dates on calendar months are placed as they are).
    """
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    lines = np.asarray(lines, dtype=np.int64)
    if times is None:
        t0, grid, grid_lines = 0.0, values, lines
    elif resample and len(times) > 1 and not (calendar_step(interval) and calendar_months(times) is not None):
        t0, grid, grid_lines = resample_grid(times, values, interval, lines, source, unit=unit)
    else:
        t0, grid, grid_lines = to_grid(times, values, interval, lines, source, unit=unit)
    return [(step_time(t0, s, interval), seg, filled)
            for s, seg, filled in apply_gap_policy(grid, grid_lines, policy, source, unit)]
