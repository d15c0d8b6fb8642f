"""Lightning DataModule of univariate series windows for the causal forecaster.

Every dataset is read through the series view (:mod:`wfm.data.series`): CSI as real and
imaginary series, AoA, distance, traffic... A training item is a window of
``W = context + horizon`` values of one series, with

- ``values`` ``[W]`` float32 (0 where not observed) and ``observed`` ``[W]`` bool;
- ``context_len``: the window's first ``context_len`` positions are the context (the model
  normalises by them); the rest is the horizon;
- ``interval`` (s), ``kind`` (series kind) and ``dataset``.

``interval_jitter`` (training only): the interval of a window of the named kinds is multiplied by
``10 ** U(-d, d)`` (one draw per group of channels). The interval is the time scale, not the kind
of signal: real CSI is logged every 1 ms to 1 s and beam power every 100 ms, while the generated
CSI sits at 0.5-20 ms and the generated trajectories at 100 ms, so without it the model learns
"100 ms means a smooth trajectory" and extrapolates noisy 100 ms CSI as one.

Series shorter than ``W`` (CSI with 16-24 time steps) are right-aligned and left-padded, with
the last ``min(horizon, n // 2)`` values as horizon. In training, with probability
``pad_prob`` the first ``r ~ U[0, context - 1]`` values of a window are hidden as well, so the
model learns every context length; with ``short_hide`` a short series likewise hides the first
``r ~ U[0, c - 1]`` of its ``c`` context values (one draw per group).

Splits are by *sample* (head / middle / tail of every dataset, like
:func:`wfm.data.datamodule.contiguous_splits`), never by window, so no series contributes to
two splits. Training batches come from a weighted mixture of datasets (one dataset per batch,
windows drawn uniformly over its series and start positions), re-drawn every epoch from
``(seed, epoch, batch)`` and sharded over DDP ranks and workers inside the iterable dataset;
validation and test sets are fixed windows, built once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from wfm.data.datamodule import (_attached_trainer, _EpochStream, _per_rank, _StatefulEpochLoader, contiguous_splits,
                                 worker_context)
from wfm.data.errors import DataError
from wfm.data.series import SeriesTable, series_tables

SPLITS = ("train", "val", "test")


def split_table(table: SeriesTable, val_fraction: float, test_fraction: float) -> dict[str, SeriesTable]:
    """A table's samples cut into train / val / test tables (contiguous, by sample; data shared)."""
    ranges = contiguous_splits([len(table.starts)], val_fraction, test_fraction)
    out = {}
    for name, r in ranges.items():
        a, b = r.starts[0], r.stops[0]
        t = SeriesTable(table.data, table.starts[a:b], table.lengths[a:b], table.interval, table.kind,
                        table.source, split_complex=False)
        t.parts, t.is_complex = table.parts, table.is_complex  # keep the parent's real/imag split
        out[name] = t
    return out


def make_window(table: SeriesTable, i: int, start: int, context: int, horizon: int, hide: int = 0
                ) -> tuple[np.ndarray, np.ndarray, int]:
    """``(values [W], observed [W], context_len)`` for series ``i`` of ``table`` from ``start``.

    ``hide`` more values at the left of a full window, or of a short series' first context, are
    marked unobserved (random context length).
    """
    w = context + horizon
    n = int(table.lengths[divmod(i, table.series_per_sample)[0]])
    values = np.zeros(w, dtype=np.float32)
    observed = np.zeros(w, dtype=bool)
    if n >= w:
        values[:] = table.values(i, start, start + w)
        observed[hide:] = True
        values[:hide] = 0.0
        return values, observed, context
    values[w - n:] = table.values(i)
    observed[w - n + hide:] = True
    values[w - n:w - n + hide] = 0.0
    return values, observed, w - min(horizon, max(1, n // 2))


def collate_windows(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack window dicts into a batch (strings become lists; ``group`` ids when the items carry them)."""
    batch = {
        "values": torch.from_numpy(np.stack([it["values"] for it in items])),
        "observed": torch.from_numpy(np.stack([it["observed"] for it in items])),
        "context_len": torch.tensor([it["context_len"] for it in items], dtype=torch.long),
        "interval": torch.tensor([it["interval"] for it in items], dtype=torch.float32),
        "kind": [it["kind"] for it in items],
        "dataset": items[0]["dataset"],
    }
    if "group" in items[0]:
        batch["group"] = torch.tensor([it["group"] for it in items], dtype=torch.long)
    return batch


class SeriesPool:
    """The series of one dataset split: picks a (table, series, start) uniformly over series."""

    def __init__(self, name: str, tables: Sequence[SeriesTable]):
        self.name = name
        self.tables = [t for t in tables if len(t)]
        self.cum = np.concatenate([[0], np.cumsum([len(t) for t in self.tables])]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.cum[-1])

    def draw(self, rng: np.random.Generator, context: int, horizon: int, pad_prob: float,
             interval_jitter: dict[str, float] | None = None, short_hide: bool = False) -> dict[str, Any]:
        return self.draw_group(rng, context, horizon, pad_prob, 1, interval_jitter, short_hide)[0]

    def draw_group(self, rng: np.random.Generator, context: int, horizon: int, pad_prob: float,
                   size: int, interval_jitter: dict[str, float] | None = None,
                   short_hide: bool = False) -> list[dict[str, Any]]:
        """Windows of up to ``size`` distinct series of one sample over the same steps (a CSI
        sample's channels: what a real window's channels are when the model pools their evidence).
        ``interval_jitter`` ``{kind: d}``: the group's interval times ``10 ** U(-d, d)`` (module doc).
        ``short_hide``: a series shorter than the window hides, with ``pad_prob``, the first
        ``r ~ U[0, c - 1]`` of its ``c`` context values too (module doc)."""
        k = int(rng.integers(len(self)))
        t = int(np.searchsorted(self.cum, k, side="right") - 1)
        table, i = self.tables[t], k - int(self.cum[t])
        sample, own = divmod(i, table.series_per_sample)
        n = int(table.lengths[sample])
        w = context + horizon
        start = int(rng.integers(n - w + 1)) if n >= w else 0
        hide = int(rng.integers(context)) if (n >= w and rng.random() < pad_prob) else 0
        if short_hide and n < w and rng.random() < pad_prob:  # (no draw otherwise: streams stay as they were)
            hide = int(rng.integers(n - min(horizon, max(1, n // 2))))
        members = [own]
        if size > 1:  # (no extra draw for single windows: their stream stays as it was)
            members += [int(j) for j in rng.permutation(table.series_per_sample) if j != own][:size - 1]
        interval = table.interval
        if interval_jitter and table.kind in interval_jitter:  # (no draw otherwise: streams stay as they were)
            d = float(interval_jitter[table.kind])
            interval = float(table.interval * 10.0 ** rng.uniform(-d, d))
        out = []
        for j in members:
            values, observed, ctx = make_window(table, sample * table.series_per_sample + j, start, context, horizon,
                                                hide)
            out.append({"values": values, "observed": observed, "context_len": ctx, "interval": interval,
                        "kind": table.kind, "dataset": self.name})
        return out


class MixtureWindows(_EpochStream):
    """Training batches: each from one dataset drawn by weight; re-drawn per epoch; sharded by stream."""

    def __init__(self, pools: Sequence[SeriesPool], weights: Sequence[float], batch_size: int, num_batches: int,
                 context: int, horizon: int, pad_prob: float, seed: int, group_size: int = 1,
                 interval_jitter: dict[str, float] | None = None, short_hide: bool = False):
        self.pools, self.batch_size, self.num_batches = list(pools), batch_size, num_batches
        self.short_hide = short_hide
        self.p = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
        self.context, self.horizon, self.pad_prob, self.seed = context, horizon, pad_prob, seed
        self.group_size, self.interval_jitter = group_size, interval_jitter

    def batch(self, i: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, 0, self.epoch, i])
        pool = self.pools[int(rng.choice(len(self.p), p=self.p))]
        if self.group_size <= 1:
            return collate_windows([pool.draw(rng, self.context, self.horizon, self.pad_prob, self.interval_jitter,
                                              self.short_hide) for _ in range(self.batch_size)])
        items: list[dict[str, Any]] = []
        while len(items) < self.batch_size:
            group = pool.draw_group(rng, self.context, self.horizon, self.pad_prob,
                                    min(self.group_size, self.batch_size - len(items)), self.interval_jitter,
                                    self.short_hide)
            items += [{**it, "group": len(items)} for it in group]  # the group's first row as its id
        return collate_windows(items)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in self._my_positions(self.num_batches):
            yield self.batch(i)

    def __len__(self) -> int:
        return _per_rank(self.num_batches)


class SeriesDataModule(pl.LightningDataModule):
    """Windows of univariate series from one or a weighted mixture of datasets (see module doc).

    Args:
        datasets: dataset folders (any kind with a series view: csi, trajectory, traffic, beam, series).
        weights: sampling weight of each dataset in training batches; default: by number of series.
        kinds: series kinds to keep (e.g. ``["csi", "aoa", "traffic"]``); default all.
        context, horizon: window = ``context + horizon`` values.
        batch_size: windows per batch (per rank).
        samples_per_epoch: training windows per epoch over all ranks.
        eval_windows: windows per dataset in the validation and the test set.
        val_fraction, test_fraction: share of every dataset's samples held out (middle / tail).
        pad_prob: chance that a training window hides a random number of its first values.
        group_size: training windows come in groups of up to this many series of one sample over
            the same steps, with a ``group`` id per window (the model then pools their backtest
            evidence, as the real-data benchmark does with a window's channels); 1: independent.
        interval_jitter: ``{kind: decades}``: training windows of these kinds get their interval
            times ``10 ** U(-decades, decades)`` (module doc); validation and test keep the true one.
            For kinds whose priors never reach a seasonal period (CSI, AoA); not traffic, whose
            day and week estimators need the true interval.
        short_hide: series shorter than the window (CSI of 16-24 steps) also hide, with
            ``pad_prob``, a random number of their first context values (keeping one), so that
            contexts shorter than a patch are trained too; False (every config before this
            option): a short series' context is always whole.
        num_workers: DataLoader worker processes per rank.
        worker_start: how workers start (``CSIDataModule``'s option). ``fork`` here (default):
            the series pools live in memory, and a forkserver or spawned worker gets its own
            pickled copy every epoch (over 250 MB for 6 of the catalog's 37 datasets) where
            forked workers share the parent's pages. ``forkserver`` avoids the rare deadlock of
            a fork under DDP's threads at that cost.
        seed: seed of the training plan and of the evaluation windows.
    """

    def __init__(self, datasets: list[str] | None = None, weights: list[float] | None = None,
                 kinds: list[str] | None = None, context: int = 256, horizon: int = 64, batch_size: int = 64,
                 samples_per_epoch: int = 65536, eval_windows: int = 256, val_fraction: float = 0.1,
                 test_fraction: float = 0.1, pad_prob: float = 0.5, group_size: int = 1, num_workers: int = 0,
                 seed: int = 0, interval_jitter: dict[str, float] | None = None, short_hide: bool = False,
                 worker_start: str = "fork"):
        super().__init__()
        worker_context(0, worker_start, "SeriesDataModule")
        self.worker_start = worker_start  # an attribute: subclasses save their own hyperparameters
        if isinstance(datasets, (str, Path)):
            datasets = [str(datasets)]
        if context < 1 or horizon < 1:
            raise DataError(f"SeriesDataModule: context and horizon must be >= 1, got {context}, {horizon}")
        if group_size < 1:
            raise DataError(f"SeriesDataModule: group_size must be >= 1, got {group_size}")
        if interval_jitter and any(not 0 <= float(d) <= 6 for d in interval_jitter.values()):
            raise DataError(f"SeriesDataModule: interval_jitter decades must lie in [0, 6], got {dict(interval_jitter)}")
        if weights is not None and datasets is not None and (
                len(weights) != len(datasets) or min(weights) < 0 or sum(weights) <= 0):
            raise DataError(f"SeriesDataModule: {len(weights)} weights for {len(datasets)} datasets; "
                            "weights must be non-negative and not all zero")
        self.save_hyperparameters()
        self.pools: dict[str, list[SeriesPool]] = {}
        self._eval: dict[str, list[dict[str, Any]]] = {}

    # ------------------------------------------------------------------ sources
    def load_tables(self) -> list[tuple[str, list[SeriesTable]]]:
        """``(name, tables)`` per dataset; subclasses (synthetic data) override this."""
        if not self.hparams.datasets:
            raise DataError("SeriesDataModule: no datasets given")
        out = []
        for root in self.hparams.datasets:
            tables = series_tables(root, self.hparams.kinds, split_complex=True)
            if not tables:
                raise DataError(f"{root}: no series of kinds {self.hparams.kinds} in this dataset")
            out.append((Path(root).name, tables))
        return out

    def setup(self, stage: str | None = None) -> None:
        if self.pools:
            return
        hp = self.hparams
        loaded = self.load_tables()
        for split in SPLITS:
            self.pools[split] = []
        for name, tables in loaded:
            parts = [split_table(t, hp.val_fraction, hp.test_fraction) for t in tables]
            for split in SPLITS:
                self.pools[split].append(SeriesPool(name, [p[split] for p in parts]))
            if not len(self.pools["train"][-1]):
                raise DataError(f"{name}: no samples left for training")
        self.weights = (list(hp.weights) if hp.weights is not None
                        else [float(len(p)) for p in self.pools["train"]])

    def eval_items(self, split: str) -> list[dict[str, Any]]:
        """The fixed validation or test windows (items, not batches), ``eval_windows`` per dataset."""
        self.setup()
        if split not in self._eval:
            hp = self.hparams
            items = []
            for d, pool in enumerate(self.pools[split]):
                if not len(pool):
                    continue
                rng = np.random.default_rng([hp.seed, 1 + SPLITS.index(split), d])
                items += [pool.draw(rng, hp.context, hp.horizon, 0.0) for _ in range(hp.eval_windows)]
            self._eval[split] = items
        return self._eval[split]

    # ------------------------------------------------------------------ loaders
    def train_dataloader(self) -> DataLoader:
        self.setup()
        hp = self.hparams
        trainer = getattr(self, "trainer", None)
        world = max(1, trainer.world_size) if trainer is not None else 1
        num_batches = -(-hp.samples_per_epoch // (hp.batch_size * world)) * world  # ranks in lockstep
        ds = MixtureWindows(self.pools["train"], self.weights, hp.batch_size, num_batches, hp.context, hp.horizon,
                            hp.pad_prob, hp.seed, hp.group_size, hp.interval_jitter, hp.short_hide)
        return _StatefulEpochLoader(ds, batch_size=None, num_workers=hp.num_workers, persistent_workers=False,
                                    multiprocessing_context=worker_context(hp.num_workers, self.worker_start),
                                    trainer=_attached_trainer(self))

    def eval_loader(self, split: str, shard: bool = True) -> DataLoader:
        """The fixed evaluation windows of ``split`` (``"val"`` / ``"test"``) in batches of one
        dataset each; under DDP each rank gets its share, unless ``shard=False`` (every window:
        what a decision every rank must take alike needs)."""
        items = self.eval_items(split)
        # One dataset per batch (a batch's "dataset" is one name), then split across ranks.
        batches = []
        for name in dict.fromkeys(it["dataset"] for it in items):
            mine = [it for it in items if it["dataset"] == name]
            batches += [collate_windows(mine[a:a + self.hparams.batch_size])
                        for a in range(0, len(mine), self.hparams.batch_size)]
        trainer = getattr(self, "trainer", None)
        if shard and trainer is not None and trainer.world_size > 1:
            batches = batches[trainer.global_rank::trainer.world_size]
        return DataLoader(batches, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.eval_loader("test")
