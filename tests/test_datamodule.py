"""DataModules: splits, mixtures, sharding across workers and ranks, live generation."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml

import wfm.data.datamodule as dm_mod
from conftest import tiny_recipe
from wfm.data.datamodule import CSIDataModule, LiveCSIDataModule, contiguous_splits
from wfm.data.errors import DataError
from wfm.data.shards import FieldSpec, ShardedDataset, write_dataset


def test_contiguous_splits_partition_every_dataset():
    s = contiguous_splits([100, 7], 0.1, 0.2)
    for i, n in enumerate([100, 7]):
        parts = [range(s[k].starts[i], s[k].stops[i]) for k in ("train", "val", "test")]
        assert sorted(x for p in parts for x in p) == list(range(n))
    assert (s["train"].size(0), s["val"].size(0), s["test"].size(0)) == (70, 10, 20)
    with pytest.raises(ValueError, match="sum to less than 1"):
        contiguous_splits([10], 0.5, 0.5)


def test_batches_are_normalised_and_shaped(tiny_dataset):
    dm = CSIDataModule([str(tiny_dataset)], batch_size=8, val_fraction=0.2, test_fraction=0.2,
                       fields=["los", "distance"])
    dm.setup()
    batches = list(dm.train_dataloader())
    assert len(batches) == 3  # 24 training samples in batches of 8
    b = batches[0]
    assert b["csi"].shape == (8, 8, 4, 16) and b["csi"].dtype == torch.complex64
    assert b["los"].dtype == torch.bool and b["distance"].shape == (8, 8)
    assert b["dataset"] == "tiny-uma" and b["dataset_index"] == 0
    power = torch.cat([x["csi"] for x in batches]).abs().pow(2).mean()
    assert 0.5 < power < 2.0
    # Normalised: each batch sample is a raw sample of the training range (the first 24 of 40)
    # divided by the std of all 40 samples' CSI, computed here by hand.
    raw = torch.from_numpy(ShardedDataset(tiny_dataset).read_range(0, 40, ["csi"])["csi"])
    std = float((raw.abs().pow(2).mean() - raw.mean().abs().pow(2)).sqrt())
    got = torch.cat([x["csi"] for x in batches]) * std
    dist = (got[:, None] - raw[None, :24]).abs().flatten(2).amax(-1)  # [24 batch samples, 24 train samples]
    assert bool((dist.min(1).values < 1e-4 * raw.abs().max()).all())


@pytest.mark.parametrize("workers", [0, 2])
def test_evaluation_sees_every_sample_once(tiny_dataset, workers):
    dm = CSIDataModule([str(tiny_dataset)], batch_size=3, val_fraction=0.25, test_fraction=0.25,
                       num_workers=workers, normalize=False)
    dm.setup()
    ds = ShardedDataset(tiny_dataset)
    for split, rng in (("val", range(20, 30)), ("test", range(30, 40))):
        loader = dm.val_dataloader() if split == "val" else dm.test_dataloader()
        got = torch.cat([b["csi"] for b in loader]).numpy()
        want = ds.read_range(rng.start, rng.stop)["csi"]
        # Workers interleave batches: compare as sets of samples.
        assert sorted(map(bytes, got)) == sorted(map(bytes, want))


def test_workers_start_from_a_forkserver_and_give_the_batches_of_the_main_process(tiny_dataset):
    """Workers start from a forkserver by default (a fork under DDP's threads can deadlock); the
    batches are those of the main process and of forked workers, and a bad method is refused."""
    def epochs(**kw):
        dm = CSIDataModule([str(tiny_dataset)], batch_size=4, samples_per_epoch=16, **kw)
        dm.setup()
        loader = dm.train_dataloader()
        return loader, [[b["csi"] for b in loader] for _ in range(2)]

    loader, main = epochs(num_workers=0)
    assert loader.multiprocessing_context is None
    for start in ("forkserver", "fork"):
        loader, got = epochs(num_workers=1, **({} if start == "forkserver" else {"worker_start": start}))
        assert loader.multiprocessing_context.get_start_method() == start
        assert all(torch.equal(a, b) for e, f in zip(main, got) for a, b in zip(e, f, strict=True))
    with pytest.raises(DataError, match="CSIDataModule: worker_start must be one of"):
        CSIDataModule([str(tiny_dataset)], worker_start="thread")
    from wfm.data.series_datamodule import SeriesDataModule
    with pytest.raises(DataError, match="SeriesDataModule: worker_start must be one of"):
        SeriesDataModule([str(tiny_dataset)], worker_start="thread")


def test_plan_is_deterministic_per_epoch_and_shards_across_streams(tiny_dataset, monkeypatch):
    dm = CSIDataModule([str(tiny_dataset)], batch_size=4, block_size=2, samples_per_epoch=64)
    dm.setup()
    ds = dm._dataset("train")
    ds.epoch = 0
    plan0 = ds.plan()
    assert plan0 == ds.plan() and len(plan0) == 16
    ds.epoch = 1
    assert ds.plan() != plan0
    for d, blocks in plan0:  # blocks stay inside the training range, two samples each
        assert all(0 <= a < b <= dm.splits["train"].stops[0] and b - a == 2 for a, b in blocks)
    # Two ranks take disjoint halves of the plan that together make it whole.
    ds.epoch = 0
    seen = []
    for me in range(2):
        monkeypatch.setattr(dm_mod, "_rank", lambda me=me: (me, 2))
        seen.append([bytes(b["csi"].numpy()) for b in ds])
    assert len(seen[0]) == len(seen[1]) == 8 and not set(seen[0]) & set(seen[1])


def test_mixture_follows_weights_and_keeps_shapes_apart(tiny_dataset, tiny_cdl_dataset):
    dm = CSIDataModule([str(tiny_dataset), str(tiny_cdl_dataset)], weights=[3, 1], batch_size=2,
                       samples_per_epoch=2 * 400)
    dm.setup()
    loader = dm.train_dataloader()
    counts = Counter()
    for b in loader:
        counts[b["dataset_index"]] += 1
        assert b["csi"].shape[1:] == ((8, 4, 16) if b["dataset_index"] == 0 else (4, 8, 32))
    assert counts[0] + counts[1] == 400
    assert 0.68 < counts[0] / 400 < 0.82
    # A new pass (epoch) draws a new plan.
    first = [b["dataset_index"] for b in loader]
    second = [b["dataset_index"] for b in loader]
    assert first != second


def test_bad_configuration_is_named(tiny_dataset, tmp_path):
    with pytest.raises(DataError, match="2 weights for 1 datasets"):
        CSIDataModule([str(tiny_dataset)], weights=[1, 2])
    with pytest.raises(DataError, match="has no field"):
        CSIDataModule([str(tiny_dataset)], fields=["beam"]).setup()
    series = write_dataset(tmp_path / "series", "s", "traffic", {"values": FieldSpec("float32", (5,))},
                           [{"values": np.zeros((4, 5), np.float32)}], {})
    with pytest.raises(DataError, match="a 'traffic' dataset, CSIDataModule serves CSI"):
        CSIDataModule([str(series)]).setup()


def test_lightning_fits_on_it(tiny_dataset):
    class Probe(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def training_step(self, batch, i):
            return (batch["csi"].abs().mean() - self.w) ** 2

        def validation_step(self, batch, i):
            self.log("val", batch["csi"].abs().mean(), batch_size=len(batch["csi"]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Probe(), CSIDataModule([str(tiny_dataset)], batch_size=4))
    assert trainer.global_step == 2 * 9  # ceil(36 train samples / 4) batches per epoch


def test_live_datamodule(tmp_path):
    paths = []
    for name, changes in (("a", {}), ("b", {"model": "tdl", "profile": "A", "time_steps": 4})):
        p = tmp_path / f"{name}.yaml"
        p.write_text(yaml.safe_dump(tiny_recipe(name=name, **changes).to_dict()))
        paths.append(str(p))
    dm = LiveCSIDataModule(paths, batch_size=4, samples_per_epoch=24, val_samples=8)
    dm.setup()
    val1 = [b["csi"] for b in dm.val_dataloader()]
    val2 = [b["csi"] for b in dm.val_dataloader()]
    assert len(val1) == 4 and all(torch.equal(a, b) for a, b in zip(val1, val2))
    loader = dm.train_dataloader()
    e0 = list(loader)
    e1 = list(loader)
    assert len(e0) == 6
    assert {tuple(b["csi"].shape[1:]) for b in e0} <= {(8, 4, 16), (4, 4, 16)}
    assert not torch.equal(e0[0]["csi"], e1[0]["csi"])  # fresh channels every epoch
    with pytest.raises(DataError, match="num_workers: 0"):
        LiveCSIDataModule(paths, device="cuda", num_workers=2)


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("skip", [0, 1, 4])
def test_each_rank_trains_on_its_share_in_order_from_any_skip(world, workers, skip, monkeypatch):
    """What a rank's DataLoader yields (workers taken in turn) is its share, in order, less
    the ``skip`` batches a resumed run already trained on."""
    num = 17
    for rank in range(world):
        monkeypatch.setattr(dm_mod, "_rank", lambda rank=rank: (rank, world))
        per_worker = []
        for wid in range(workers):
            info = type("Info", (), {"id": wid, "num_workers": workers})()
            monkeypatch.setattr(dm_mod, "get_worker_info", lambda info=info: info)
            per_worker.append(list(dm_mod._my_batches(num, skip)))
        # The DataLoader's order: one batch from each worker in turn, skipping exhausted ones.
        yielded = [w[k] for k in range(max(map(len, per_worker))) for w in per_worker if k < len(w)]
        share = list(range(rank, num, world))
        assert yielded == share[skip:]
        assert len(share) == len(range(rank, num, world))  # == _per_rank(num), the loader's length


def test_two_workers_yield_the_single_process_sequence(tiny_dataset):
    dm = CSIDataModule([str(tiny_dataset)], batch_size=4, block_size=2, samples_per_epoch=40)
    dm.setup()
    one = [b["csi"] for b in dm._loader("train")]
    dm.hparams.num_workers = 2
    two = [b["csi"] for b in dm._loader("train")]
    assert len(one) == len(two) == 10 and all(torch.equal(a, b) for a, b in zip(one, two))


class Probe(pl.LightningModule):
    """Records the CSI sum of every batch it trains on, by step, and fits one weight to them."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: dict[int, float] = {}

    def training_step(self, batch, i):
        self.seen[self.global_step] = round(float(batch["csi"].abs().sum()), 4)
        return (batch["csi"].abs().mean() - self.w) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Killed(Exception):
    pass


class Kill(pl.Callback):
    """Raises ``Killed`` after the batch that reaches ``at`` steps, before its checkpoint: like a kill."""

    def __init__(self, at: int | None):
        self.at = at

    def on_train_batch_end(self, trainer, module, *args):
        self.module = module
        if trainer.global_step == self.at:
            raise Killed


def test_resume_in_the_middle_of_an_epoch_sees_the_uninterrupted_data(tiny_dataset, tmp_path):
    """Killed 5 batches into an epoch of 8 and resumed from its last checkpoint, a run trains on
    exactly the batches (and reaches exactly the weights) of a run never interrupted."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    def run(root, max_steps, callbacks=(), ckpt_path=None):
        module = Probe()
        ckpt = ModelCheckpoint(dirpath=root, save_last=True, every_n_train_steps=1, save_top_k=0)
        trainer = pl.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                             enable_model_summary=False, limit_val_batches=0, callbacks=[ckpt, *callbacks])
        trainer.fit(module, CSIDataModule([str(tiny_dataset)], batch_size=4, samples_per_epoch=32),
                    ckpt_path=ckpt_path)
        return module

    straight = run(tmp_path / "a", 12)  # 8 batches per epoch: ends 4 batches into epoch 1
    with pytest.raises(Killed):
        run(tmp_path / "b", 12, [kill := Kill(5)])
    first = kill.module
    # The kill came after batch 5 but before its checkpoint: the run resumes from step 4.
    assert torch.load(tmp_path / "b" / "last.ckpt", weights_only=True)["global_step"] == 4
    resumed = run(tmp_path / "b", 12, ckpt_path=str(tmp_path / "b" / "last.ckpt"))
    steps = list(straight.seen.values())
    assert list(first.seen.values()) == steps[:5] and list(resumed.seen.values()) == steps[4:]
    assert torch.equal(resumed.w, straight.w)


@pytest.mark.parametrize("workers", [0, 2, 3])
def test_every_kind_of_resume_sees_the_uninterrupted_data(tiny_dataset, tmp_path, workers):
    """A run cut four times and resumed from its last checkpoint each time trains, step for
    step, on the batches of a run never interrupted, and reaches its weights. Its checkpoints:
    mid epoch 0 (then killed), at max_steps on epoch 0's last batch, at max_steps mid epoch 1,
    on epoch 2's last batch (then killed). Lightning's epoch count drifts from the data after
    some of these; workers prefetch ahead; and 8 batches do not divide among 3 workers."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    from wfm.training.finite import FinalCheckpoint

    def run(root, max_steps=30, kill_at=None, resume=False):
        module = Probe()
        ckpt = ModelCheckpoint(dirpath=root, save_last=True, every_n_train_steps=3, save_top_k=0)
        trainer = pl.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                             enable_model_summary=False, limit_val_batches=0,
                             callbacks=[ckpt, FinalCheckpoint(), Kill(kill_at)])
        data = CSIDataModule([str(tiny_dataset)], batch_size=4, samples_per_epoch=32, num_workers=workers)
        try:
            trainer.fit(module, data, ckpt_path=str(root / "last.ckpt") if resume else None)
        except Killed:
            pass
        return module

    straight = run(tmp_path / "a")  # 8 batches per epoch
    cuts = [(dict(kill_at=5), 3), (dict(max_steps=8), 8), (dict(max_steps=13), 13), (dict(kill_at=26), 24), ({}, 30)]
    seen: dict[int, float] = {}
    for i, (cut, last) in enumerate(cuts):
        module = run(tmp_path / "b", resume=i > 0, **cut)
        assert torch.load(tmp_path / "b" / "last.ckpt", weights_only=True)["global_step"] == last
        assert all(straight.seen[s] == v for s, v in module.seen.items()), f"segment {i}"
        seen.update(module.seen)
    assert seen == straight.seen and len(seen) == 30
    assert torch.equal(module.w, straight.w)


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_state_resumes_a_pass_without_lightning(tiny_dataset, workers):
    """The train loader's own state: taken after 3 batches it resumes with the other 5; taken at
    the end of a pass it opens the next epoch; a state of the former loader (epoch and batches
    trained) still resumes. A pass cut short is continued by the next one."""
    dm = CSIDataModule([str(tiny_dataset)], batch_size=4, samples_per_epoch=32, num_workers=workers)
    dm.setup()

    def sums(batches):
        return [round(float(b["csi"].abs().sum()), 4) for b in batches]

    loader = dm._loader("train")
    epochs = [sums(loader), sums(loader)]
    assert len(epochs[0]) == 8 and epochs[0] != epochs[1]

    loader = dm._loader("train")
    it = iter(loader)
    head = sums(next(it) for _ in range(3))
    mid = dm._loader("train")
    mid.load_state_dict(loader.state_dict())
    assert head + sums(mid) == epochs[0]
    assert sums(loader) == epochs[0][3:]
    done = dm._loader("train")
    done.load_state_dict(mid.state_dict())  # epoch 0, finished
    assert sums(done) == epochs[1] and sums(mid) == epochs[1]
    legacy = dm._loader("train")
    legacy.load_state_dict({"epoch": 0, "batches": 3})
    assert sums(legacy) == epochs[0][3:]


class _RankBatches(pl.LightningModule):
    """Writes the batches its rank trained on (module level: ddp_spawn pickles it)."""

    def __init__(self, out: str):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.out, self.seen = out, []

    def training_step(self, batch, i):
        self.seen.append(round(float(batch["csi"].abs().sum()), 4))
        return (batch["csi"].abs().mean() - self.w) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_train_end(self):
        with open(f"{self.out}.{self.global_rank}.yaml", "w") as f:
            yaml.safe_dump(self.seen, f)


@pytest.mark.slow
def test_ddp_spawn_ranks_with_workers_take_their_own_shares(tiny_dataset, tmp_path):
    """Under ddp_spawn, DataLoader workers are spawned and see no process group; each rank
    still takes its own share of the plan (rank r: batches r, r + 2, ...), not rank 0's."""
    data = dict(batch_size=4, samples_per_epoch=32)
    single = CSIDataModule([str(tiny_dataset)], **data)
    single.setup()
    plan = [round(float(b["csi"].abs().sum()), 4) for b in single._loader("train")]
    trainer = pl.Trainer(max_steps=4, accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         limit_val_batches=0)
    trainer.fit(_RankBatches(str(tmp_path / "seen")), CSIDataModule([str(tiny_dataset)], num_workers=2, **data))
    for rank in (0, 1):
        assert yaml.safe_load((tmp_path / f"seen.{rank}.yaml").read_text()) == plan[rank::2]
