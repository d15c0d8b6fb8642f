"""One view of every dataset: a set of univariate series, and windows over them.

Every wfm dataset, whatever its kind, is read as univariate series, each with its
values, its sampling interval in seconds and its *series kind*:

==================  =============================================  ==================
dataset kind        series (one per sample x channel)               series kind
==================  =============================================  ==================
``csi``             ``csi[:, a, k]`` for every antenna a, sub-      ``csi`` (complex)
                    carrier k; ``aoa[:, 0|1]``, ``distance`` when   ``aoa``, ``distance``
                    ``geometry_valid``
``trajectory``      ``aoa[:, 0|1]``, ``distance``, ``speed``         ``aoa``, ``distance``,
                                                                    ``speed``
``traffic``         ``traffic`` (every channel)                     ``traffic``
``beam``            ``beam_power[:, b]`` per beam, ``bearing``,     ``beam_power``,
                    ``distance``                                    ``aoa``, ``distance``
``series``          ``values`` (every channel)                      the ``series_kind``
                                                                    attr (imports)
==================  =============================================  ==================

The interval is the dataset's ``interval_s`` attr (``time_step`` for CSI). Other dataset
kinds join with :func:`register_series_fields`.

Samples of a dataset that carry ``capture`` and ``start`` fields (WiFi CSI imported in
windows) are joined back into one long series per capture where the windows follow each
other, so windows of the view may straddle import windows.

Speed: a dataset's series fields are read into memory once (one block read per shard)
as a 2D array ``[rows, channels]``; a series is a strided column slice of it and a
window is a slice of that, so ``__getitem__`` never touches HDF5.

Complex values (``complex_mode``):
    ``"complex"`` (default): complex series give complex64 tensors, real ones float32;
    the ``complex`` flag of each item says which. Batches mixing both need a custom
    collate, or keep one kind per loader.
    ``"real_imag"``: each complex series becomes two real series (real part, then
    imaginary part), so every item is float32 (``part`` says which half).

Like uni2ts/Moirai, windows are *not* normalised here: scaling (e.g. by the context's
mean and std) belongs to the model, which must invert it for forecasts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from wfm.data.errors import DataError
from wfm.data.shards import ShardedDataset


@dataclass(frozen=True)
class SeriesField:
    """A dataset field read as series: time along the per-sample first axis, the rest channels."""

    field: str
    kind: str  # series kind; "@attr" takes it from the dataset attr of that name
    valid: str | None = None  # optional bool field: samples where it is False are skipped


_SERIES_FIELDS: dict[str, list[SeriesField]] = {
    "csi": [SeriesField("csi", "csi"), SeriesField("aoa", "aoa", "geometry_valid"),
            SeriesField("distance", "distance", "geometry_valid")],
    "trajectory": [SeriesField("aoa", "aoa"), SeriesField("distance", "distance"),
                   SeriesField("speed", "speed")],
    "traffic": [SeriesField("traffic", "traffic")],
    "beam": [SeriesField("beam_power", "beam_power"), SeriesField("bearing", "aoa"),
             SeriesField("distance", "distance")],
    "series": [SeriesField("values", "@series_kind")],
}
JOIN_FIELDS = ("capture", "start")


def register_series_fields(dataset_kind: str, fields: Sequence[SeriesField]) -> None:
    """Say which fields of a dataset kind are series (see the table in the module doc)."""
    _SERIES_FIELDS[dataset_kind] = list(fields)


def dataset_interval(ds: ShardedDataset) -> float:
    """Sampling interval (s) of a dataset's series: ``interval_s`` or, for CSI, ``time_step``."""
    value = ds.attrs.get("interval_s", ds.attrs.get("time_step"))
    if value is None or not float(value) > 0:
        raise DataError(f"{ds.root}: dataset attrs give no sampling interval (interval_s or time_step)")
    return float(value)


@dataclass(frozen=True)
class Series:
    """One univariate series."""

    values: np.ndarray  # [L] float32 or complex64
    interval: float  # seconds between values
    kind: str
    source: str  # dataset name and field, e.g. "traj-pedestrian:aoa"


class SeriesTable:
    """The series of one field of one dataset: columns of a ``[rows, channels]`` array.

    Sample ``n`` occupies rows ``starts[n] : starts[n] + lengths[n]``; series
    ``i = (n * channels + c) * parts + p`` is column ``c`` of it (``p`` picks the real or
    imaginary half when complex series are split).
    """

    def __init__(self, data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, interval: float,
                 kind: str, source: str, split_complex: bool = False):
        self.data = data.reshape(data.shape[0], -1)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.interval = float(interval)
        self.kind = kind
        self.source = source
        self.is_complex = np.iscomplexobj(self.data)
        self.parts = 2 if (split_complex and self.is_complex) else 1
        self.channels = self.data.shape[1]

    @property
    def series_per_sample(self) -> int:
        return self.channels * self.parts

    def __len__(self) -> int:
        return len(self.starts) * self.series_per_sample

    def values(self, i: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Values ``start:stop`` of series ``i`` (a view when not split)."""
        n, r = divmod(i, self.series_per_sample)
        c, p = divmod(r, self.parts)
        length = int(self.lengths[n])
        stop = length if stop is None else min(stop, length)
        v = self.data[self.starts[n] + start:self.starts[n] + stop, c]
        if self.parts == 2:
            return v.imag if p else v.real
        return v

    def series(self, i: int) -> Series:
        return Series(self.values(i), self.interval, self.kind, self.source)

    def __iter__(self) -> Iterator[Series]:
        return (self.series(i) for i in range(len(self)))


def series_tables(dataset: str | Path | ShardedDataset, kinds: Iterable[str] | None = None,
                  split_complex: bool = False) -> list[SeriesTable]:
    """Read the series fields of a dataset (optionally only some series kinds) into tables."""
    ds = dataset if isinstance(dataset, ShardedDataset) else ShardedDataset(dataset)
    if ds.kind not in _SERIES_FIELDS:
        raise DataError(f"{ds.root}: dataset kind {ds.kind!r} has no series view "
                        f"(known: {', '.join(sorted(_SERIES_FIELDS))})")
    wanted = set(kinds) if kinds is not None else None
    interval = dataset_interval(ds)
    tables = []
    for sf in _SERIES_FIELDS[ds.kind]:
        kind = str(ds.attrs.get(sf.kind[1:], "series")) if sf.kind.startswith("@") else sf.kind
        if (wanted is not None and kind not in wanted) or sf.field not in ds.specs or len(ds) == 0:
            continue
        extra = [f for f in ((sf.valid,) if sf.valid else ()) + JOIN_FIELDS if f in ds.specs]
        block = ds.read_range(0, len(ds), [sf.field, *extra])
        data, starts, lengths = _rows(block[sf.field], ds.specs[sf.field].ragged)
        if all(f in block for f in JOIN_FIELDS):
            starts, lengths = _join(starts, lengths, np.asarray(block["capture"]), np.asarray(block["start"]))
        elif sf.valid in block:
            keep = np.asarray(block[sf.valid], dtype=bool)
            starts, lengths = starts[keep], lengths[keep]
        if len(starts):
            tables.append(SeriesTable(data, starts, lengths, interval, kind, f"{ds.name}:{sf.field}",
                                      split_complex))
    return tables


def _rows(x: Any, ragged: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack samples along time: ``(data [rows, ...], starts, lengths)``."""
    if ragged:
        lengths = np.array([len(r) for r in x], dtype=np.int64)
        data = np.concatenate(x) if len(x) else np.zeros((0,))
    else:
        x = np.asarray(x)
        lengths = np.full(x.shape[0], x.shape[1], dtype=np.int64)
        data = x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])  # a view: samples are contiguous
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return data, starts, lengths


def _join(starts: np.ndarray, lengths: np.ndarray, capture: np.ndarray,
          first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge samples that continue the previous one (same capture, next step, adjacent rows)."""
    out_s, out_l = [], []
    for n in range(len(starts)):
        if (out_s and capture[n] == capture[n - 1] and first[n] == first[n - 1] + lengths[n - 1]
                and starts[n] == out_s[-1] + out_l[-1]):
            out_l[-1] += int(lengths[n])
        else:
            out_s.append(int(starts[n]))
            out_l.append(int(lengths[n]))
    return np.array(out_s, dtype=np.int64), np.array(out_l, dtype=np.int64)


class SeriesWindows(Dataset):
    """Windows ``(context, target)`` over the univariate series of one or more datasets.

    Each series of length ``L >= context + horizon`` yields windows starting at
    ``0, stride, 2 * stride, ...`` while the window fits; shorter series yield none.
    Items are dicts:

    - ``context``: ``[context]`` tensor, ``target``: ``[horizon]`` tensor (the values right
      after the context); complex64 or float32, see ``complex_mode`` in the module doc;
    - ``interval``: float32 scalar tensor, seconds between values;
    - ``kind``: series kind (``csi``, ``aoa``, ``distance``, ``traffic``, ``beam_power``...);
    - ``complex``: whether the values are complex; ``part``: 0, or 1 for the imaginary half;
    - ``series``: index of the series in this view, ``start``: index of the first context value.
    """

    def __init__(self, datasets: Sequence[str | Path | ShardedDataset | SeriesTable], context: int,
                 horizon: int, stride: int | None = None, kinds: Iterable[str] | None = None,
                 complex_mode: str = "complex"):
        if context < 1 or horizon < 0:
            raise DataError(f"context must be >= 1 and horizon >= 0, got {context} and {horizon}")
        if complex_mode not in ("complex", "real_imag"):
            raise DataError(f"complex_mode {complex_mode!r} is not 'complex' or 'real_imag'")
        self.context, self.horizon = int(context), int(horizon)
        self.stride = int(stride or horizon or context)
        kinds = list(kinds) if kinds is not None else None
        self.tables: list[SeriesTable] = []
        for d in datasets:
            if isinstance(d, SeriesTable):
                if kinds is None or d.kind in kinds:
                    self.tables.append(d)
            else:
                self.tables += series_tables(d, kinds, split_complex=complex_mode == "real_imag")
        span = self.context + self.horizon
        # Per table and sample: windows per series; then cumulative window counts so that an
        # index resolves with two binary searches.
        self._per_series = [np.where(t.lengths >= span, (t.lengths - span) // self.stride + 1, 0)
                            for t in self.tables]
        self._sample_cum = [np.concatenate([[0], np.cumsum(w * t.series_per_sample)])
                            for w, t in zip(self._per_series, self.tables)]
        self._table_cum = np.concatenate([[0], np.cumsum([c[-1] for c in self._sample_cum])]).astype(np.int64)
        self._series_base = np.concatenate([[0], np.cumsum([len(t) for t in self.tables])]).astype(np.int64)

    def __len__(self) -> int:
        return int(self._table_cum[-1])

    @property
    def num_series(self) -> int:
        return int(self._series_base[-1])

    def locate(self, index: int) -> tuple[int, int, int]:
        """``(table, series within table, first context step)`` of window ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range 0..{len(self) - 1}")
        t = int(np.searchsorted(self._table_cum, index, side="right") - 1)
        local = index - int(self._table_cum[t])
        cum = self._sample_cum[t]
        n = int(np.searchsorted(cum, local, side="right") - 1)
        per = int(self._per_series[t][n])
        s, w = divmod(local - int(cum[n]), per)
        return t, n * self.tables[t].series_per_sample + s, w * self.stride

    def __getitem__(self, index: int) -> dict[str, Any]:
        t, i, start = self.locate(index)
        table = self.tables[t]
        v = np.ascontiguousarray(table.values(i, start, start + self.context + self.horizon))
        x = torch.from_numpy(v.astype(np.complex64 if np.iscomplexobj(v) else np.float32, copy=False))
        return {
            "context": x[:self.context],
            "target": x[self.context:],
            "interval": torch.tensor(table.interval, dtype=torch.float32),
            "kind": table.kind,
            "complex": bool(np.iscomplexobj(v)),
            "part": int(i % table.parts) if table.parts == 2 else 0,
            "series": int(self._series_base[t] + i),
            "start": int(start),
        }
