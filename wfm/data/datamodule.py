"""Lightning DataModules that serve CSI to the models: from shards on disk, or live from Sionna.

Both yield whole batches (``DataLoader(batch_size=None)``), each drawn from one dataset so
that its samples share one ``[T, A, K]`` shape; datasets of different shapes mix across
batches. A batch is a dict::

    {"csi": complex64 [B, T, A, K] (divided by the dataset's std: unit power),
     "dataset_index": int, "dataset": str, <other requested fields>: [B, ...]}

Sharding across DDP ranks and DataLoader workers happens inside the iterable datasets
(batch ``i`` of the epoch's plan goes to stream ``i mod (world x workers)``), so no
sampler is involved and Lightning leaves the loaders alone.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from wfm.data.errors import DataError
from wfm.data.shards import ShardedDataset

# Lightning warns that an IterableDataset with __len__ may repeat data across workers; ours
# shard the batch plan across ranks and workers themselves, and __len__ is per rank.
warnings.filterwarnings("ignore", message=r".*Your `IterableDataset` has `__len__` defined.*")


def _rank() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside distributed training."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _per_rank(total: int) -> int:
    """How many of ``total`` round-robin batches fall to this rank (what its loader yields)."""
    rank, world = _rank()
    return len(range(rank, total, world))


def _my_batches(num: int, skip: int = 0) -> Iterator[int]:
    """Indices of an epoch's ``num`` batches that this rank x worker produces, less the first
    ``skip`` of this rank's share (those a resumed run already trained on).

    Rank ``r`` owns batches ``r, r + world, ...`` (``_per_rank`` of them, its loader's length).
    Its DataLoader takes one batch from each worker in turn, so worker ``w`` produces the
    positions ``skip + w, skip + w + workers, ...`` of the share, and the rank trains on its
    batches in order whatever its worker count, before and after a resume.
    """
    rank, world = _rank()
    info = get_worker_info()
    wid, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    share = range(rank, num, world)
    for j in range(skip + wid, len(share), workers):
        yield share[j]


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


class ShardBatches(IterableDataset):
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
        self.epoch = 0
        self.skip = 0  # batches of this rank's stream to pass over (mid-epoch resume)
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
        for i in _my_batches(len(plan), self.skip):
            yield self.read_batch(*plan[i])

    def __len__(self) -> int:
        return _per_rank(len(self.plan()) if not self.shuffle else int(self.num_batches or 0))


class _EpochLoader(DataLoader):
    """A DataLoader that sets its dataset's epoch (the shuffle seed) before every pass, and can
    resume in the middle of an epoch.

    The epoch comes from ``trainer`` (a callable returning the attached Trainer or None: its
    current epoch, so a resumed run replays the same plan as an uninterrupted one) or else
    counts passes. Workers are re-created each pass (no persistent workers), so they see the
    new epoch.

    Lightning saves ``state_dict()`` in checkpoints and hands it back to ``load_state_dict``
    on resume: the epoch and how many of this rank's batches were trained on in it, read from
    the Trainer's progress (not from what was fetched, which runs ahead by the prefetch). The
    first pass after a resume then skips those batches, so a run killed mid-epoch sees the
    same data as one never interrupted.
    """

    def __init__(self, *args: Any, trainer: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.trainer_source = trainer
        self._passes = 0
        self._resume: dict[str, int] | None = None

    def _trainer(self) -> Any:
        return self.trainer_source() if self.trainer_source is not None else None

    def __iter__(self):  # type: ignore[override]
        trainer = self._trainer()
        epoch = self._passes if trainer is None else int(trainer.current_epoch)
        self.dataset.epoch = epoch  # type: ignore[attr-defined]
        resume, self._resume = self._resume, None
        self.dataset.skip = resume["batches"] if resume and resume["epoch"] == epoch else 0  # type: ignore[attr-defined]
        self._passes += 1
        return super().__iter__()

    def state_dict(self) -> dict[str, int]:
        trainer = self._trainer()
        if trainer is None:
            return {"epoch": self._passes, "batches": 0}
        return {"epoch": int(trainer.current_epoch),
                "batches": int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = {"epoch": int(state["epoch"]), "batches": int(state["batches"])}


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
                 fields: list[str] | None = None):
        super().__init__()
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
                      persistent_workers=False)
        if split == "train":
            return _EpochLoader(ds, trainer=_attached_trainer(self), **kwargs)
        return DataLoader(ds, **kwargs)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


class LiveCSIBatches(IterableDataset):
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
        self.epoch = 0
        self.skip = 0  # batches of this rank's stream to pass over (mid-epoch resume)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        p = self.weights / self.weights.sum()
        rng = np.random.default_rng([self.seed, self.epoch])
        picks = rng.choice(len(p), size=self.num_batches, p=p)
        device = self.device
        if device == "cuda" and torch.cuda.is_available():
            device = f"cuda:{torch.cuda.current_device()}"
        for i in _my_batches(len(picks), self.skip):
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
        return _EpochLoader(ds, batch_size=None, num_workers=hp.num_workers, persistent_workers=False,
                            trainer=_attached_trainer(self))

    def val_dataloader(self) -> DataLoader:
        self.setup()
        me, count = 0, 1
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:
            me, count = trainer.global_rank, trainer.world_size
        return DataLoader(self.val_batches[me::count], batch_size=None)
