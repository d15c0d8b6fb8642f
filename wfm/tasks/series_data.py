"""Series tasks' data: the task's series kinds of any dataset, split by sample, as windows.

Each sample of a dataset (a trajectory, a cell's traffic) is one series (or one per channel);
samples, never windows, are split: the head / middle / tail of each dataset's samples
(``wfm.tasks.data.split_range``), so no series contributes to two splits. Test windows do not
overlap (stride = horizon); training windows overlap (stride = horizon / 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from wfm.data.errors import DataError
from wfm.data.series import SeriesTable, SeriesWindows, series_tables
from wfm.tasks.data import TEST_FRACTION, VAL_FRACTION, split_range
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
    tables: list[SeriesTable] = []
    for root in roots:
        found = series_tables(root, task.series_kinds, split_complex=True)
        if not found:
            raise DataError(f"{root}: task {task.name} needs series of kind {', '.join(task.series_kinds)}; "
                            "this dataset has none")
        tables += found
    out = {}
    for split in ("train", "val", "test"):
        stride = horizon if split == "test" else max(1, horizon // 2)
        out[split] = SeriesWindows(split_tables(tables, split), context, horizon, stride=stride)
    if len(out["test"]) == 0 or len(out["train"]) == 0:
        raise DataError(f"{', '.join(map(str, roots))}: series too short or too few for context {context} + "
                        f"horizon {horizon} in every split (train {len(out['train'])}, test {len(out['test'])} windows)")
    return out
