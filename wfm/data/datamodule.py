"""Lightning DataModules that serve CSI to the models: from shards on disk, or live from Sionna.

Both yield whole batches (``DataLoader(batch_size=None)``), each drawn from one dataset so
that its samples share one ``[T, A, K]`` shape; datasets of different shapes mix across
batches. A batch is a dict::

    {"csi": complex64 [B, T, A, K] (divided by the dataset's std: unit power),
     "dataset_index": int, "dataset": str, <other requested fields>: [B, ...]}

Sharding across DDP ranks and DataLoader workers happens inside the iterable datasets
(batch ``i`` of the epoch's plan goes to stream ``i mod (world x workers)``), so no
sampler is involved and Lightning leaves the loaders alone. Training loaders are torchdata
``StatefulDataLoader``s (``_StatefulEpochLoader``): checkpoints hold their position, and a
run resumed mid-epoch trains on the batches of one never interrupted.
"""

from __future__ import annotations

import multiprocessing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchdata.stateful_dataloader import StatefulDataLoader

from wfm.data.errors import DataError
from wfm.data.shards import ShardedDataset

# Lightning warns that an IterableDataset with __len__ may repeat data across workers; ours
# shard the batch plan across ranks and workers themselves, and __len__ is per rank.
warnings.filterwarnings("ignore", message=r".*Your `IterableDataset` has `__len__` defined.*")
# torchdata 0.11 calls torch.set_vital (deprecated) in every StatefulDataLoader it makes.
warnings.filterwarnings("ignore", message=r".*'set_vital' is deprecated.*")


def _rank() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside distributed training."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _per_rank(total: int) -> int:
    """How many of ``total`` round-robin batches fall to this rank (what its loader yields)."""
    rank, world = _rank()
    return len(range(rank, total, world))


def _my_batches(num: int, skip: int = 0, ranks: tuple[int, int] | None = None) -> Iterator[int]:
    """Indices of an epoch's ``num`` batches that this rank x worker produces, less the first
    ``skip`` of this rank's share (those a resumed run already trained on).

    Rank ``r`` owns batches ``r, r + world, ...`` (``_per_rank`` of them, its loader's length).
    Its DataLoader takes one batch from each worker in turn, so worker ``w`` produces the
    positions ``skip + w, skip + w + workers, ...`` of the share, and the rank trains on its
    batches in order whatever its worker count, before and after a resume. ``ranks``: (rank,
    world size) as the rank's main process sees them; default ``_rank()`` here.
    """
    rank, world = ranks if ranks is not None else _rank()
    info = get_worker_info()
    wid, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    share = range(rank, num, world)
    for j in range(skip + wid, len(share), workers):
        yield share[j]


class _EpochStream(IterableDataset):
    """An iterable dataset whose epoch is a fixed sequence of batches, this rank's share of it
    produced by ``_my_batches``, and which can resume mid-epoch through torchdata's protocol.

    ``state_dict`` is taken in each stream (the main process, or each DataLoader worker)
    right after it hands over a batch: the epoch, and where this stream continues: ``skip``
    advanced by its yielded batches times the stream count, so that ``_my_batches`` with the
    new ``skip`` gives the rest of this stream's positions.
    """

    epoch: int = 0
    skip: int = 0  # batches of this rank's share to pass over (mid-epoch resume)
    _yielded: int = 0  # batches this stream yielded since its pass (or resume) began
    _ranks: tuple[int, int] | None = None  # (rank, world size), read in the rank's main process

    def set_epoch(self, epoch: int) -> None:
        """Start a fresh pass over ``epoch``: from its first batch, unless a state is loaded.
        Called in the rank's main process, which also notes the rank here: workers started by
        ``spawn`` (as under ``ddp_spawn``) see no process group, and every rank would take
        rank 0's share."""
        self.epoch, self.skip, self._yielded = int(epoch), 0, 0
        self._ranks = _rank()

    def _my_positions(self, num: int) -> Iterator[int]:
        """This stream's batch indices of an epoch of ``num``, counted as they are handed out."""
        self._yielded = 0
        for i in _my_batches(num, self.skip, self._ranks):
            self._yielded += 1  # before the yield: the stream's state is read once the batch is out
            yield i

    def state_dict(self) -> dict[str, int]:
        info = get_worker_info()
        streams = info.num_workers if info is not None else 1
        return {"epoch": self.epoch, "skip": self.skip + self._yielded * streams}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.skip, self._yielded = int(state["epoch"]), int(state["skip"]), 0


@dataclass(frozen=True)
class Split:
    """The contiguous range of each dataset that one split uses."""

    starts: tuple[int, ...]
    stops: tuple[int, ...]

    def size(self, i: int) -> int:
        return self.stops[i] - self.starts[i]


def contiguous_splits(sizes: Sequence[int], val_fraction: float, test_fraction: float) -> dict[str, Split]:
    """train / val / test as head / middle / tail of every dataset.

    Contiguous ranges keep reads sequential, and for measured data (ordered in time) they
    keep the future out of the training set. Generated samples are i.i.d., so the tail is
    as good a validation set as any random subset.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction {val_fraction} and test_fraction {test_fraction} must be in [0, 1) "
                         "and sum to less than 1")
    n_test = [int(round(n * test_fraction)) for n in sizes]
    n_val = [int(round(n * val_fraction)) for n in sizes]
    ends_train = [n - v - t for n, v, t in zip(sizes, n_val, n_test)]
    return {
        "train": Split(tuple(0 for _ in sizes), tuple(ends_train)),
        "val": Split(tuple(ends_train), tuple(e + v for e, v in zip(ends_train, n_val))),
        "test": Split(tuple(e + v for e, v in zip(ends_train, n_val)), tuple(sizes)),
    }


class ShardBatches(_EpochStream):
    """Batches from a weighted mixture of shard datasets, read in contiguous blocks.

    Training batches (``shuffle=True``): each picks a dataset with probability given by
    ``weights``, then ``batch_size / block_size`` random blocks of ``block_size`` consecutive
    samples from that dataset's range; the plan is re-drawn every epoch from
    ``(seed, epoch)``. Evaluation batches (``shuffle=False``): every sample of every range
    exactly once, in order.
    """

    def __init__(self, roots: Sequence[str], split: Split, weights: Sequence[float], batch_size: int,
                 block_size: int, num_batches: int | None, shuffle: bool, seed: int,
                 fields: Sequence[str], scales: Sequence[float]):
        self.roots = list(roots)
        self.split = split
        self.weights = np.asarray(weights, dtype=np.float64)
        self.batch_size = batch_size
        self.block_size = max(1, min(block_size, batch_size))
        self.num_batches = num_batches
        self.shuffle = shuffle
        self.seed = seed
        self.fields = list(fields)
        self.scales = list(scales)
        self._datasets: list[ShardedDataset] | None = None

    def _open(self) -> list[ShardedDataset]:
        if self._datasets is None:
            self._datasets = [ShardedDataset(r) for r in self.roots]
        return self._datasets

    def plan(self) -> list[tuple[int, list[tuple[int, int]]]]:
        """This epoch's batches, each ``(dataset index, [(start, stop), ...])``."""
        if not self.shuffle:
            plan = []
            for d in range(len(self.roots)):
                for a in range(self.split.starts[d], self.split.stops[d], self.batch_size):
                    plan.append((d, [(a, min(a + self.batch_size, self.split.stops[d]))]))
            return plan
        rng = np.random.default_rng([self.seed, self.epoch])
        p = self.weights / self.weights.sum()
        plan = []
        for _ in range(self.num_batches or 0):
            d = int(rng.choice(len(p), p=p))
            lo, hi = self.split.starts[d], self.split.stops[d]
            blocks, need = [], self.batch_size
            while need > 0:
                size = min(self.block_size, need, hi - lo)
                a = int(rng.integers(lo, hi - size + 1))
                blocks.append((a, a + size))
                need -= size
            plan.append((d, blocks))
        return plan

    def read_batch(self, d: int, blocks: list[tuple[int, int]]) -> dict[str, Any]:
        ds = self._open()[d]
        n = sum(b - a for a, b in blocks)
        in_worker = get_worker_info() is not None
        batch: dict[str, Any] = {}
        for f in self.fields:
            spec = ds.specs[f]
            # Each block lands in its slice of the batch tensor: one copy from disk, none after.
            # In a worker the tensor is made in shared memory, so handing it to the main
            # process costs no second copy (the DataLoader would otherwise make one).
            t = torch.from_numpy(np.empty(0, dtype=spec.dtype)).new_empty((n, *spec.shape))
            if in_worker:
                t.share_memory_()
            arr, pos = t.numpy(), 0
            for a, b in blocks:
                ds.read_into(f, a, b, arr[pos:pos + b - a])
                pos += b - a
            if f == "csi" and self.scales[d] != 1.0:
                t.mul_(1.0 / self.scales[d])
            batch[f] = t
        batch["dataset_index"] = d
        batch["dataset"] = ds.name
        return batch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        plan = self.plan()
        for i in self._my_positions(len(plan)):
            yield self.read_batch(*plan[i])

    def __len__(self) -> int:
        return _per_rank(len(self.plan()) if not self.shuffle else int(self.num_batches or 0))


class _StatefulEpochLoader(StatefulDataLoader):
    """torchdata's resumable DataLoader over an ``_EpochStream``, whose batches make one
    stream: epoch 0's plan, then epoch 1's, and so on. Every pass continues the stream where
    the last one stopped, so a run resumed from any checkpoint trains on the data of a run
    never interrupted, however Lightning cuts it into epochs.

    Lightning saves ``state_dict()`` in checkpoints and hands it back to ``load_state_dict``
    on resume. It holds the epoch in course, whether all of it was yielded, and torchdata's
    state: each stream's ``_EpochStream.state_dict`` as of the last batch the loader yielded
    (torchdata accounts for what workers prefetched). What was yielded is what was trained
    on: Lightning prefetches nothing from a loader whose length it knows, and ours have one.
    Positions count in the rank's share of a plan, and ranks go in lockstep, so rank 0's
    state (the one a checkpoint holds) resumes every rank.

    Continuing the stream rather than following ``trainer.current_epoch`` matters on resume
    (Lightning 2.6): from a checkpoint written on an epoch's last batch, Lightning opens a
    pass while it still counts that epoch, then trains it as the next one; after a
    ``max_steps`` stop mid-epoch it counts one epoch more but draws only what the stopped one
    had left; after a ``max_steps`` stop on an epoch's last batch it draws one batch from a
    pass, then opens another. So a pass opens:

    * after a loaded state: the saved epoch where it stopped, or the next epoch from its
      start if all of it was yielded (a finished epoch's state is not restored: that would
      resume the workers' round-robin mid-cycle);
    * after a pass: where that pass stopped, or the next epoch if it yielded all its batches;
    * the loader's first pass otherwise: ``trainer.current_epoch`` (``trainer``: a callable
      returning the attached Trainer or None), or 0.

    A state of the former loader (``{"epoch", "batches"}``: batches of the rank's share
    trained on) resumes too. Workers are re-created each pass (no persistent workers), so
    they see the new epoch.
    """

    def __init__(self, *args: Any, trainer: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.trainer_source = trainer
        self._epoch = 0
        self._resume: dict[str, Any] | None = None

    def _done(self) -> bool:
        """Whether the current pass yielded all its epoch."""
        # _num_yielded: torch's count of batches the iterator handed out (restored on resume);
        # _finished: torchdata's flag of an iterator that raised StopIteration.
        return self._iterator._finished or self._iterator._num_yielded >= len(self)

    def __iter__(self):  # type: ignore[override]
        resume, self._resume = self._resume, None
        if resume is None and self._iterator is not None:
            # Taken before set_epoch below, which resets the (in-process) dataset's position.
            resume = {"epoch": self._epoch, "done": self._done(), "loader": super().state_dict()}
        skip = 0
        if resume is not None:
            epoch = int(resume["epoch"])
            if "loader" not in resume:  # written by the former loader
                skip = int(resume["batches"])
                if skip >= len(self):
                    epoch, skip = epoch + 1, 0
            elif resume["done"]:
                epoch += 1
            else:
                super().load_state_dict(resume["loader"])
        else:
            trainer = self.trainer_source() if self.trainer_source is not None else None
            epoch = int(trainer.current_epoch) if trainer is not None else 0
        self._epoch = epoch
        self.dataset.set_epoch(epoch)  # type: ignore[attr-defined]
        self.dataset.skip = skip  # type: ignore[attr-defined]
        return super().__iter__()

    def state_dict(self) -> dict[str, Any]:
        if self._iterator is None:  # no pass yet: nothing to save (and torchdata would start workers)
            return {}
        return {"epoch": self._epoch, "done": self._done(), "loader": super().state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume = dict(state) if state else None


START_METHODS = ("fork", "forkserver", "spawn")


def worker_context(num_workers: int, start: str, owner: str = "DataLoader") -> str | None:
    """The ``multiprocessing_context`` of a loader with ``num_workers`` workers started by
    ``start`` (one of ``START_METHODS``; None without workers). For ``forkserver`` the server
    imports this module (torch, h5py) and ``__main__`` once, so each worker forks from it with
    them loaded instead of importing torch anew."""
    if start not in START_METHODS:
        raise DataError(f"{owner}: worker_start must be one of {START_METHODS}, got {start!r}")
    if not num_workers:
        return None
    if start == "forkserver":
        multiprocessing.set_forkserver_preload(["__main__", __name__])
    return start


def _attached_trainer(module: pl.LightningDataModule) -> Any:
    """A callable giving the module's attached Trainer, or None without one."""
    return lambda: getattr(module, "trainer", None)


class CSIDataModule(pl.LightningDataModule):
    """CSI datasets from disk (``wfm data generate`` folders), one or a weighted mixture.

    Args:
        datasets: dataset folders (each holds ``manifest.json``).
        weights: sampling weight of each dataset in training batches; default: by size.
        batch_size: samples per batch (per rank).
        num_workers: DataLoader worker processes per rank.
        worker_start: how workers start (``multiprocessing`` start method): ``forkserver``
            (default) starts them from a clean single-threaded server, so a worker never
            inherits a lock held by another thread at ``fork`` (DDP's process-group threads:
            pytorch/pytorch#130610, seen here as a hang of a 2-rank CPU run). It costs nothing
            here: a worker gets only file names and the batch plan, and opens the HDF5 shards
            itself. ``fork`` starts workers about a second sooner per epoch.
        val_fraction, test_fraction: share of every dataset held out (its middle / tail).
        seed: seed of the batch plan (re-drawn each epoch from seed and epoch).
        samples_per_epoch: training samples per epoch over all ranks; default: the training
            split's size.
        block_size: consecutive samples read as one block; batches hold
            ``batch_size / block_size`` random blocks. 1 gives fully random batches.
        normalize: divide CSI by each dataset's std (from the manifest): unit power.
        fields: fields to put in batches besides ``csi`` (e.g. ``["los", "speed"]``).
    """

    def __init__(self, datasets: list[str], weights: list[float] | None = None, batch_size: int = 64,
                 num_workers: int = 0, val_fraction: float = 0.05, test_fraction: float = 0.05, seed: int = 0,
                 samples_per_epoch: int | None = None, block_size: int = 16, normalize: bool = True,
                 fields: list[str] | None = None, worker_start: str = "forkserver"):
        super().__init__()
        worker_context(0, worker_start, "CSIDataModule")
        if isinstance(datasets, (str, Path)):
            datasets = [str(datasets)]
        if not datasets:
            raise DataError("CSIDataModule: no datasets given")
        if weights is not None and (len(weights) != len(datasets) or min(weights) < 0 or sum(weights) <= 0):
            raise DataError(f"CSIDataModule: {len(weights)} weights for {len(datasets)} datasets; "
                            "weights must be non-negative and not all zero")
        self.save_hyperparameters()
        self.roots = [str(d) for d in datasets]
        self.fields = ["csi"] + [f for f in (fields or []) if f != "csi"]
        self._ready = False

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        hp = self.hparams
        sizes, scales = [], []
        for root in self.roots:
            ds = ShardedDataset(root)
            if ds.kind != "csi":
                raise DataError(f"{root}: a {ds.kind!r} dataset, CSIDataModule serves CSI")
            missing = [f for f in self.fields if f not in ds.specs]
            if missing:
                raise DataError(f"{root}: has no field(s) {', '.join(missing)}")
            ragged = [f for f in self.fields if ds.specs[f].ragged]
            if ragged:
                raise DataError(f"{root}: field(s) {', '.join(ragged)} vary in length; use the series view")
            sizes.append(len(ds))
            std = ds.manifest.get("stats", {}).get("csi", {}).get("std")
            scales.append(float(std) if hp.normalize and std else 1.0)
            ds.close()
        self.sizes, self.scales = sizes, scales
        self.splits = contiguous_splits(sizes, hp.val_fraction, hp.test_fraction)
        train = self.splits["train"]
        for i, root in enumerate(self.roots):
            if train.size(i) < 1:
                raise DataError(f"{root}: {sizes[i]} samples leave none for training")
        self.weights = (np.asarray(hp.weights, dtype=float) if hp.weights is not None
                        else np.asarray([train.size(i) for i in range(len(sizes))], dtype=float))
        self._ready = True

    def _world(self) -> int:
        trainer = getattr(self, "trainer", None)
        return max(1, trainer.world_size) if trainer is not None else 1

    def _dataset(self, split: str) -> ShardBatches:
        self.setup()
        hp = self.hparams
        if split == "train":
            total = hp.samples_per_epoch or sum(self.splits["train"].size(i) for i in range(len(self.roots)))
            # Round up to whole batches on every rank, so ranks step in lockstep.
            per_round = hp.batch_size * self._world()
            num_batches = -(-total // per_round) * self._world()
        else:
            num_batches = None
        return ShardBatches(self.roots, self.splits[split], self.weights, hp.batch_size, hp.block_size,
                            num_batches, split == "train", hp.seed, self.fields, self.scales)

    def _loader(self, split: str) -> DataLoader:
        ds = self._dataset(split)
        kwargs = dict(batch_size=None, num_workers=self.hparams.num_workers, pin_memory=torch.cuda.is_available(),
                      persistent_workers=False,
                      multiprocessing_context=worker_context(self.hparams.num_workers, self.hparams.worker_start))
        if split == "train":
            return _StatefulEpochLoader(ds, trainer=_attached_trainer(self), **kwargs)
        return DataLoader(ds, **kwargs)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


class LiveCSIBatches(_EpochStream):
    """An endless supply of fresh CSI batches generated from recipes as they are consumed."""

    def __init__(self, generators: Sequence[Any], weights: Sequence[float], batch_size: int, num_batches: int,
                 seed: int, device: str, scales: Sequence[float]):
        self.generators = list(generators)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.batch_size = batch_size
        self.num_batches = num_batches
        self.seed = seed
        self.device = device
        self.scales = list(scales)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        p = self.weights / self.weights.sum()
        rng = np.random.default_rng([self.seed, self.epoch])
        picks = rng.choice(len(p), size=self.num_batches, p=p)
        device = self.device
        if device == "cuda" and torch.cuda.is_available():
            device = f"cuda:{torch.cuda.current_device()}"
        for i in self._my_positions(len(picks)):
            d = picks[i]
            # Train seeds live in their own stream (0, ...) apart from validation's (1, ...).
            s = int(np.random.SeedSequence([self.seed, 0, self.epoch, i]).generate_state(1)[0])
            out = self.generators[d].generate(self.batch_size, s, device)
            yield {"csi": torch.from_numpy(out["csi"]) / self.scales[d], "dataset_index": int(d),
                   "dataset": self.generators[d].recipe.name}

    def __len__(self) -> int:
        return _per_rank(self.num_batches)


class LiveCSIDataModule(pl.LightningDataModule):
    """CSI generated on the fly from recipes: pretraining on an unbounded stream, no disk.

    Training batches are new every epoch; the validation set is generated once (its own
    seeds) and kept in memory, so validation curves are comparable across epochs.

    Args:
        recipes: recipe YAML files (``kind: csi``).
        weights: sampling weight of each recipe; default equal.
        batch_size: samples per batch (per rank).
        samples_per_epoch: training samples per epoch over all ranks.
        val_samples: validation samples per recipe.
        device: where Sionna runs: ``cpu`` (in ``num_workers`` processes) or ``cuda`` (the
            rank's GPU, in the main process: ``num_workers`` must be 0).
        num_workers: DataLoader worker processes per rank (CPU generation).
        seed: seed of the stream.
    """

    def __init__(self, recipes: list[str], weights: list[float] | None = None, batch_size: int = 64,
                 samples_per_epoch: int = 8192, val_samples: int = 256, device: str = "cpu",
                 num_workers: int = 0, seed: int = 0):
        super().__init__()
        if isinstance(recipes, (str, Path)):
            recipes = [str(recipes)]
        if device.startswith("cuda") and num_workers > 0:
            raise DataError("LiveCSIDataModule: generation on cuda runs in the main process; set num_workers: 0")
        if weights is not None and len(weights) != len(recipes):
            raise DataError(f"LiveCSIDataModule: {len(weights)} weights for {len(recipes)} recipes")
        self.save_hyperparameters()
        self._ready = False

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        from wfm.data.generate import generator_for
        from wfm.data.recipes import load_recipe

        hp = self.hparams
        self.generators = [generator_for(load_recipe(r)) for r in hp.recipes]
        for r, g in zip(hp.recipes, self.generators):
            if g.kind != "csi":
                raise DataError(f"{r}: a {g.kind!r} recipe, LiveCSIDataModule serves CSI")
        # Fixed validation set; its power also fixes each recipe's normaliser.
        self.val_batches: list[dict[str, Any]] = []
        self.scales = []
        for d, g in enumerate(self.generators):
            s = int(np.random.SeedSequence([hp.seed, 1, d]).generate_state(1)[0])
            csi = torch.from_numpy(g.generate(hp.val_samples, s, "cpu")["csi"])
            scale = float(csi.abs().pow(2).mean().sqrt())
            self.scales.append(scale)
            for a in range(0, hp.val_samples, hp.batch_size):
                self.val_batches.append({"csi": csi[a:a + hp.batch_size] / scale, "dataset_index": d,
                                         "dataset": g.recipe.name})
        self._ready = True

    def train_dataloader(self) -> DataLoader:
        self.setup()
        hp = self.hparams
        world = max(1, self.trainer.world_size) if getattr(self, "trainer", None) is not None else 1
        num_batches = -(-hp.samples_per_epoch // (hp.batch_size * world)) * world
        weights = hp.weights or [1.0] * len(self.generators)
        ds = LiveCSIBatches(self.generators, weights, hp.batch_size, num_batches, hp.seed, hp.device, self.scales)
        return _StatefulEpochLoader(ds, batch_size=None, num_workers=hp.num_workers, persistent_workers=False,
                                    trainer=_attached_trainer(self))

    def val_dataloader(self) -> DataLoader:
        self.setup()
        me, count = 0, 1
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:
            me, count = trainer.global_rank, trainer.world_size
        return DataLoader(self.val_batches[me::count], batch_size=None)
