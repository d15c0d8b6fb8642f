"""Series tasks' data: the task's series kinds of any dataset, split by sample or by time, as windows.

Each sample of a dataset (a trajectory, a cell's traffic) is one series (or one per channel).
Two splits (``plan_series``):

- ``sample``: samples, never windows, are split: the head / middle / tail of each dataset's
  samples (``wfm.tasks.csi_data.split_range``, 70 / 10 / 20 %), so no series contributes to two
  splits;
- ``time``: every series is cut in time, the first 70 % of its steps train, the next 10 %
  validate, the last 20 % test, with a gap of ``gap`` steps (default: the horizon) before the
  validation and the test part. Targets lie inside their part; a validation or test window's
  context may look back over the earlier parts (the past is known at forecast time), but no
  value is ever a training target and a test target. A single long series (one imported CSV)
  is split this way.

``auto`` splits by sample where every split gets windows, else by time. With ``--train`` /
``--test`` folders, every window of a test folder is scored, and the training folders are cut
into train and validation (by sample where there are 10 or more series, else by time: the last
10 % of each series, after the gap, validates).

Test windows do not overlap (stride = horizon); training windows overlap (stride = horizon / 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from wfm.data.errors import DataError
from wfm.data.series import SeriesTable, SeriesWindows, series_tables
from wfm.tasks.csi_data import TEST_FRACTION, VAL_FRACTION, split_range
from wfm.tasks.registry import Task


def split_tables(tables: Sequence[SeriesTable], split: str, val_fraction: float = VAL_FRACTION,
                 test_fraction: float = TEST_FRACTION) -> list[SeriesTable]:
    """The ``split`` part of every table (by sample), sharing the tables' data."""
    out = []
    for t in tables:
        a, b = split_range(len(t.starts), split, val_fraction, test_fraction)
        if b > a:
            out.append(SeriesTable(t.data, t.starts[a:b], t.lengths[a:b], t.interval, t.kind, t.source,
                                   split_complex=t.parts == 2))
    return out


def series_windows(roots: Sequence[str | Path], task: Task, context: int | None = None,
                   horizon: int | None = None) -> dict[str, SeriesWindows]:
    """Train / val / test windows of the task's series kinds in ``roots``."""
    context, horizon = context or task.context, horizon or task.horizon
    tables = load_tables(roots, task)
    out = {}
    for split in ("train", "val", "test"):
        stride = horizon if split == "test" else max(1, horizon // 2)
        out[split] = SeriesWindows(split_tables(tables, split), context, horizon, stride=stride)
    if len(out["test"]) == 0 or len(out["train"]) == 0:
        raise DataError(f"{', '.join(map(str, roots))}: series too short or too few for context {context} + "
                        f"horizon {horizon} in every split (train {len(out['train'])}, test {len(out['test'])} windows)")
    return out


SHARES = (0.7, 0.1, 0.2)


def load_tables(roots: Sequence[str | Path], task: Task) -> list[SeriesTable]:
    """The task's series of every folder (a one-line error for a folder without them)."""
    tables: list[SeriesTable] = []
    for root in roots:
        found = series_tables(root, task.series_kinds, split_complex=True)
        if not found:
            raise DataError(f"{root}: task {task.name} needs series of kind {', '.join(task.series_kinds)}; "
                            "this dataset has none")
        tables += found
    return tables


def _cut(tables: Sequence[SeriesTable], lo: float, hi: float, gap: int, look_back: int) -> list[SeriesTable]:
    """Per series, the steps ``[lo n + gap - look_back, hi n)`` (``lo``, ``hi`` shares of its length
    ``n``; no gap and no look-back at the start of a series)."""
    out = []
    for t in tables:
        n = t.lengths
        a = np.floor(lo * n + 1e-9).astype(np.int64)  # 0.7 + 0.1 is 0.7999...: no step lost to rounding
        b = np.floor(hi * n + 1e-9).astype(np.int64)
        if lo > 0:
            a = np.maximum(a + gap - look_back, 0)
        keep = b > a
        out.append(SeriesTable(t.data, t.starts[keep] + a[keep], (b - a)[keep], t.interval, t.kind, t.source,
                               split_complex=t.parts == 2))
    return out


def _time_parts(tables: Sequence[SeriesTable], shares: tuple[float, float, float], context: int, horizon: int,
                gap: int) -> dict[str, list[SeriesTable]]:
    """The train / val / test parts of a split by time (module doc)."""
    c1, c2 = shares[0], shares[0] + shares[1]
    return {"train": _cut(tables, 0.0, c1, gap, 0),
            "val": _cut(tables, c1, c2, gap, context) if shares[1] > 0 else [],
            "test": _cut(tables, c2, 1.0, gap, context) if shares[2] > 0 else []}


def _time_fix(tables: Sequence[SeriesTable], shares: tuple[float, float, float], context: int, horizon: int,
              gap: int, what: str) -> str:
    """Why a split by time leaves a part without windows, and what to change."""
    n = int(max(int(t.lengths.max()) for t in tables))
    c1, c2 = int(np.floor(shares[0] * n + 1e-9)), int(np.floor((shares[0] + shares[1]) * n + 1e-9))
    parts = {"train": c1}
    if shares[1] > 0:
        parts["validation"] = c2 - c1 - gap
    if shares[2] > 0:
        parts["test"] = n - c2 - gap
    need = {"train": context + horizon, "validation": horizon, "test": horizon}
    short = [f"{k} {v} steps (needs {need[k]})" for k, v in parts.items() if v < need[k]]
    return (f"{what}: the longest series has {n} steps; split by time (train {shares[0]:.0%}, validation "
            f"{shares[1]:.0%}, test {shares[2]:.0%}, gap {gap}) leaves {', '.join(short) or 'too few steps'} for "
            f"context {context} + horizon {horizon}. Fix: a shorter --context or --horizon, --gap 0, or a longer "
            "series; or train on one folder and test on another (--train DIR --test DIR)")


def plan_series(task: Task, train_roots: Sequence[str | Path], test_roots: Sequence[str | Path], within: bool,
                context: int | None = None, horizon: int | None = None, split: str = "auto",
                gap: int | None = None) -> dict[str, Any]:
    """Windows to train, validate and test on (module doc).

    Returns ``train``, ``val`` (``SeriesWindows``; ``val`` may be empty), ``tests``
    (``[(name, SeriesWindows)]``), ``split`` (``sample``, ``time`` or ``train/test``),
    ``description`` (a sentence for the output), ``context``, ``horizon`` and ``gap``."""
    context, horizon = context or task.context, horizon or task.horizon
    gap = horizon if gap is None else int(gap)
    if split not in ("auto", "sample", "time"):
        raise DataError(f"--split {split}: task {task.name} splits series by sample or by time")
    train_stride = max(1, horizon // 2)
    tables = load_tables(train_roots, task) if train_roots else []
    where = ", ".join(map(str, train_roots))
    n_series = sum(len(t.starts) for t in tables)

    def windows(ts: Sequence[SeriesTable], stride: int) -> SeriesWindows:
        return SeriesWindows(list(ts), context, horizon, stride=stride)

    if within:
        shares = SHARES
        by_sample = {k: split_tables(tables, k) for k in ("train", "val", "test")}
        kind = split
        if split == "auto":
            ok = len(windows(by_sample["train"], train_stride)) and len(windows(by_sample["test"], horizon))
            kind = "sample" if ok else "time"
        if kind == "sample":
            parts = by_sample
            desc = (f"split by sample: the first 70 % of the {n_series} series train, the next 10 % validate, the "
                    "last 20 % test")
        else:
            parts = _time_parts(tables, shares, context, horizon, gap)
            desc = (f"split by time: the first 70 % of the steps of every series train, the next 10 % validate, the "
                    f"last 20 % test, after a gap of {gap} steps (--gap); contexts may look back over earlier parts, "
                    "targets never cross")
        out = {k: windows(parts[k], horizon if k == "test" else train_stride) for k in ("train", "val", "test")}
        if len(out["test"]) == 0 or len(out["train"]) == 0:
            if kind == "time":
                raise DataError(_time_fix(tables, shares, context, horizon, gap, where))
            raise DataError(f"{where}: split by sample, the {'test' if not len(out['test']) else 'training'} part "
                            f"of the {n_series} series has no window of context {context} + horizon {horizon} "
                            f"(train {len(out['train'])}, test {len(out['test'])} windows). Fix: --split time, a "
                            "shorter --context or --horizon, or --train DIR --test DIR")
        tests = [(Path(train_roots[0]).name, out["test"])]
        train, val = out["train"], out["val"]
    else:
        kind = "train/test"
        if split == "sample" or (split == "auto" and n_series >= 10):
            parts = {k: split_tables(tables, k, VAL_FRACTION, 0.0) for k in ("train", "val")}
            how = f"the last 10 % of its {n_series} series validate"
        else:
            parts = _time_parts(tables, (0.9, 0.1, 0.0), context, horizon, gap)
            how = f"the last 10 % of every series validates, after a gap of {gap} steps"
        if not train_roots:
            parts, how = {"train": [], "val": []}, ""
        train, val = windows(parts["train"], train_stride), windows(parts["val"], train_stride)
        if len(train) == 0 and train_roots:
            raise DataError(f"{where}: no training window of context {context} + horizon {horizon} "
                            f"({how}). Fix: a shorter --context or --horizon, or longer training series")
        tests = []
        for root in test_roots:
            w = windows(load_tables([root], task), horizon)
            if len(w) == 0:
                raise DataError(f"{root}: no test window: its series are shorter than context {context} + horizon "
                                f"{horizon}. Fix: a shorter --context or --horizon")
            tests.append((Path(root).name, w))
        if not train_roots:
            kind = "test only"
        trained_on = (f"train on {', '.join(Path(r).name for r in train_roots)} ({how})" if train_roots
                      else "no training data (models scored as they are)")
        desc = f"{trained_on}, test on every window of {', '.join(Path(r).name for r in test_roots)}"
    return {"train": train, "val": val, "tests": tests, "split": kind, "description": desc, "context": context,
            "horizon": horizon, "gap": gap}
