"""Imported datasets in ``wfm benchmark real``: a user's own measured data, in any wfm dataset
folder (``wfm data import intel|nexmon|csi-array|csv|npy|telecom-italia|hf``) placed in the
datasets folder or one level below it, is scored like the shared captures.

- kind ``csi``: each capture's windows are joined back into its packets (the ``capture`` and
  ``start`` fields; runs that do not follow each other are separate segments; a sample without
  them is a segment of its own), and the segments are cut into the benchmark's CSI windows
  (:func:`wfm.tasks.real_data.csi_views`: linear-phase sanitised, complex and amplitude, in time
  and in frequency), the subcarrier indices from the ``subcarrier_indices`` attr.
- kinds ``series`` and ``traffic``: each sample's channels form one window (``[L, C]``, pooled
  like a CSI window's), ``series_context`` values -> the next ``series_horizon``, stride
  ``series_stride`` (default the horizon); complex series as their real and imaginary parts.

At most ``max_windows`` windows per view, evenly spaced, so that a long capture does not make
the benchmark run for hours. Other kinds (generated beams, trajectories) are left out.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from wfm.data.errors import DataError
from wfm.data.series import dataset_interval, series_tables
from wfm.data.shards import MANIFEST, ShardedDataset
from wfm.tasks.real_datasets import BenchData, RealBenchConfig, _series_windows, csi_views
from wfm.tasks.forecasting import RANGE_KINDS

# Raw-file subfolders that real_data reads itself.
RAW_FOLDERS = ("wifi-csi", "traffic", "deepsense6g-beam")


def dataset_folders(root: Path) -> list[Path]:
    """wfm dataset folders (with a manifest) at ``root`` or one level below it."""
    found = [root] if (root / MANIFEST).is_file() else []
    found += [p for p in sorted(root.iterdir()) if p.is_dir() and p.name not in RAW_FOLDERS and (p / MANIFEST).is_file()]
    return found


def _csi_segments(ds: ShardedDataset) -> list[np.ndarray]:
    """Each capture's packets ``[P, A, K]``, split where its windows leave a gap."""
    fields = ["csi"] + [f for f in ("capture", "start") if f in ds.specs]
    block = ds.read_range(0, len(ds), fields)
    csi = np.asarray(block["csi"])
    if len(fields) == 1:
        return list(csi)
    T = csi.shape[1]
    segments = []
    capture, start = np.asarray(block["capture"]), np.asarray(block["start"])
    for c in np.unique(capture):
        idx = np.flatnonzero(capture == c)
        idx = idx[np.argsort(start[idx], kind="stable")]
        packets = np.zeros((int(start[idx].max()) + T, *csi.shape[2:]), dtype=csi.dtype)
        have = np.zeros(len(packets), dtype=bool)
        for i in idx:
            packets[start[i]:start[i] + T] = csi[i]
            have[start[i]:start[i] + T] = True
        edges = np.flatnonzero(np.diff(np.r_[0, have.astype(np.int8), 0]))
        segments += [packets[a:b] for a, b in zip(edges[::2], edges[1::2])]
    return segments


def _merge(parts: list[list[BenchData]], name: str, source: str) -> list[BenchData]:
    """One view per kind out of the views of each segment: their windows stacked, ``span``'s
    series the segment's index."""
    out = []
    for views in zip(*parts):
        first = views[0]
        spans = [torch.stack([torch.full_like(v.span[:, 0], i), v.span[:, 1]], 1) for i, v in enumerate(views)]
        out.append(replace(first, name=name, source=source,
                           context=torch.cat([v.context for v in views]), target=torch.cat([v.target for v in views]),
                           csi=torch.cat([v.csi for v in views]), span=torch.cat(spans),
                           windows_note=f"{sum(v.windows for v in views)} windows from {len(views)} segment(s), each "
                                        + first.windows_note.split(" windows ", 1)[-1]))
    return out


def load_imported(folder: Path, cfg: RealBenchConfig) -> list[BenchData]:
    """The benchmark views of one wfm dataset folder (module doc); ``[]`` for kinds it does not score."""
    ds = ShardedDataset(folder)
    name, source = f"{ds.name} (imported)", str(folder)
    interval = dataset_interval(ds)
    if ds.kind == "csi":
        runs = _csi_segments(ds)
        segments = [s for s in runs if len(s) >= cfg.csi_window]
        if not segments:  # said under "Not scored", never dropped in silence
            raise DataError(f"{folder}: no run of {cfg.csi_window} packets without a gap for one window "
                            f"(the longest: {max((len(s) for s in runs), default=0)})")
        K = segments[0].shape[-1]
        sub = np.asarray(ds.attrs.get("subcarrier_indices") or (np.arange(K) - K // 2))
        views = _merge([csi_views(name, s, sub, interval, cfg, source) for s in segments], name, source)
    elif ds.kind in ("series", "traffic"):
        L, H = cfg.series_context, cfg.series_horizon
        stride = cfg.series_stride or H
        views, longest = [], 0
        for table in series_tables(ds, split_complex=True):
            per = table.series_per_sample
            samples = [np.stack([table.values(n * per + j) for j in range(per)], 1) for n in range(len(table.starts))]
            if per == 1:  # one channel: [L] windows, as a traffic cell's
                samples = [x[:, 0] for x in samples]
            longest = max([longest, *(len(x) for x in samples)])
            ctx, tgt, span = _series_windows(samples, L, H, stride)
            if not len(ctx):
                continue
            note = (f"{len(ctx)} windows (stride {stride}) of {L} values -> next {H}, "
                    f"{per} channel(s) a window, every {interval:g} s")
            view = f"series ({table.kind})"  # never "csi...": CSI views are windows the MAE takes
            views.append(BenchData(name, view, ctx, tgt, interval, note, source, span=span,
                                   ranges=table.kind in RANGE_KINDS))
        if not views:
            raise DataError(f"{folder}: no series of {L + H} values for one window (the longest: {longest}); "
                            "--series-context / --series-horizon set the window")
    else:
        return []
    return [v.scorable().thin(cfg.max_windows) for v in views]
