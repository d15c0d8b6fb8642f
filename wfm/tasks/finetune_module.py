"""Fine-tuning a foundation model on a CSI task: the LightningModule and its DataModule.

``TaskDataModule`` loads the task's splits of one or more CSI datasets (same shape) into memory
(``wfm.tasks.csi_data``) with the labels the task needs, keeping a ``train_fraction`` of the
training split (few-shot: 0.01, 0.1, 1.0; a deterministic subset).

``FinetuneModule`` builds the model from ``init_from`` (``wfm.tasks.backbones.load_model``: an
export, hub id, ``.ckpt`` or ``scratch:mae_tiny``; or ``baseline:mlp``, the raw-CSI MLP) and
trains what ``mode`` says (``wfm.tasks.backbones.configure_mode``):

=============  ==============================================  ============================
mode           channel prediction (the MAE itself)             label tasks (encoder + head)
=============  ==============================================  ============================
zero-shot      nothing (predict by masking)                    not allowed
linear-probe   the decoder's output layer ``decoder_pred``     the linear head
lora           LoRA adapters (rank ``lora_rank``) on every     adapters on the encoder +
               attention/MLP linear layer + ``decoder_pred``   the head
full           everything                                      everything
=============  ==============================================  ============================

In training, every module trains in ``full`` and ``lora`` modes (loaded models come in eval
mode; ``FinetuneModule.train`` puts them in train mode); in ``linear-probe`` the frozen
backbone stays in eval mode and only the trainable head is in train mode
(``wfm.tasks.backbones.set_train_mode``).

Channel prediction trains on the task's own mask (the last half of the time steps or of the
subcarriers) with the MAE loss. Label tasks train with cross-entropy or the MSE of standardised
targets. ``test`` writes the task's metrics to ``self.test_results``.

Which weights are tested (``select``, :class:`wfm.tasks.significance.KeptWeights`): the starting
weights are scored on the validation split before the first step, and again at every validation
check and after the last step; a checked step replaces the kept weights only where its
per-sample held-out errors (the test's own NMSE for channel prediction, the per-sample loss for
label tasks) beat theirs beyond noise (``"significant"``, the default), on any lower mean
(``"best"``), or always (``"last"``). A fine-tuning run that does not help on held-out samples
therefore returns the model it started from. With validation switched off
(``limit_val_batches=0``) the last step is kept. ``selection`` records what was kept.
"""

from __future__ import annotations

from typing import Any, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from wfm.data.errors import DataError
from wfm.hub import CheckpointError
from wfm.tasks.backbones import (MAEEncoder, RawCSIFeatures, TaskModel, configure_mode, is_mae, load_model,
                                 set_train_mode)
from wfm.tasks.channel_prediction import MASK_KIND
from wfm.tasks.csi_data import LABEL_FIELDS, TEST_FRACTION, VAL_FRACTION, csi_labels, load_csi
from wfm.tasks.registry import get_task
from wfm.tasks.scoring import score_task
from wfm.tasks.significance import KeptWeights
from wfm.training.heldout_selection import HeldOutSelection


class _Tensors(Dataset):
    def __init__(self, tensors: dict[str, Tensor]):
        self.tensors = tensors
        self.n = len(next(iter(tensors.values())))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


class TaskDataModule(pl.LightningDataModule):
    """The splits of a CSI task in memory (see module doc).

    Args:
        task: task name (``wfm.tasks.registry.TASKS``; CSI families).
        datasets: CSI dataset folders (same ``[T, A, K]``), concatenated per split.
        train_datasets, test_datasets: instead of ``datasets``, train on some folders and test on
            others: the training folders are split head / tail into train and validation
            (``val_fraction``), every sample of the test folders is tested.
        batch_size, seed: loader batch size; seed of the few-shot subset and the shuffling.
        train_fraction: share of the training split used (few-shot).
        val_fraction, test_fraction: head / middle / tail split of every dataset.
        oversample: DFT codebook oversampling (beam prediction).
    """

    def __init__(self, task: str, datasets: list[str] | None = None, batch_size: int = 32,
                 train_fraction: float = 1.0, seed: int = 0, val_fraction: float = VAL_FRACTION,
                 test_fraction: float = TEST_FRACTION, oversample: int = 1, train_datasets: list[str] | None = None,
                 test_datasets: list[str] | None = None) -> None:
        super().__init__()
        self.task = get_task(task)
        check_csi_task(self.task.name)

        def folders(x: Any) -> list[str]:
            return [str(d) for d in ([x] if isinstance(x, str) else (x or []))]

        self.datasets = folders(datasets)
        self.train_datasets, self.test_datasets = folders(train_datasets), folders(test_datasets)
        if self.datasets and (self.train_datasets or self.test_datasets):
            raise DataError("give datasets (split inside each) or train_datasets and test_datasets, not both")
        if bool(self.train_datasets) != bool(self.test_datasets):
            raise DataError("train_datasets and test_datasets go together (train on some folders, test on others)")
        if not self.datasets and not self.train_datasets:
            raise DataError("no data: give datasets, or train_datasets and test_datasets")
        self.batch_size, self.train_fraction, self.seed = batch_size, train_fraction, seed
        self.val_fraction, self.test_fraction, self.oversample = val_fraction, test_fraction, oversample
        self.splits: dict[str, dict[str, Tensor]] = {}
        self.info: dict[str, Any] = {}

    def _load(self, split: str) -> dict[str, Tensor]:
        fields = LABEL_FIELDS.get(self.task.label, []) if self.task.label else []
        parts, attrs = [], None
        if self.datasets:
            roots, fracs = self.datasets, (self.val_fraction, self.test_fraction)
        elif split == "test":  # every sample of the test folders
            roots, fracs, split = self.test_datasets, (0.0, 0.0), "train"
        else:
            roots, fracs = self.train_datasets, (self.val_fraction, 0.0)
        for root in roots:
            d = load_csi(root, split, fields, self.task.name, self.train_fraction if split == "train" and
                         roots is not self.test_datasets else 1.0, self.seed, *fracs)
            attrs = attrs or d["attrs"]
            parts.append(csi_labels(d, self.task.label, root, self.oversample) if self.task.label else {"csi": d["csi"]})
        shapes = {tuple(p["csi"].shape[1:]) for p in parts}
        if len(shapes) > 1:
            raise DataError(f"task {self.task.name}: datasets differ in CSI shape {sorted(shapes)}; "
                            "fine-tune on datasets of one shape")
        out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        self.info.setdefault("attrs", attrs)
        return out

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        for split in ("train", "val", "test"):
            self.splits[split] = self._load(split)
        tr = self.splits["train"]
        self.info.update(shape=tuple(tr["csi"].shape[1:]), train_samples=len(tr["csi"]))
        if self.task.label is not None:
            y = tr["y"]
            regression = not self.task.is_classification
            if regression:
                outputs = y.shape[1]
            else:
                outputs = self.task.classes or int(tr.get("beam_power", torch.zeros(1, 2)).shape[1])
            self.info.update(regression=regression, outputs=outputs, y_train=y)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(_Tensors(self.splits[split]), batch_size=self.batch_size, shuffle=shuffle,
                          generator=gen if shuffle else None, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)


def check_csi_task(task: str) -> None:
    """A one-line error, with the command to use, for a task ``wfm finetune`` does not train."""
    t = get_task(task)
    if t.family == "future-beam":
        raise DataError(f"task {task} is trained and scored by wfm evaluate, not wfm finetune: wfm evaluate "
                        f"--task {task} --model persistence --model lstm --model MAE_FOLDER --train DIR --test DIR "
                        "(see finetune/README.md)")
    if t.family == "series":
        raise DataError(f"task {task} is a series task: fine-tune the causal forecaster with wfm finetune --config "
                        "finetune/distance-forecast.yaml, score it with wfm evaluate --task " + task)
    if t.family not in ("channel-prediction", "csi-label"):
        raise DataError(f"task {task} is not a CSI task; wfm finetune trains CSI tasks")


class FinetuneModule(HeldOutSelection, pl.LightningModule):
    """Fine-tune (or zero-shot evaluate) a model on a CSI task; see the module doc.

    Args:
        task: task name. init_from: model spec (module doc). mode: zero-shot | linear-probe |
        lora | full. lora_rank, lora_alpha: adapter size and scale. lr, weight_decay: AdamW.
        warmup_steps: linear warmup, then constant. select: which checked step's weights are
        tested, ``"significant"`` | ``"best"`` | ``"last"`` (module doc).
    """

    def __init__(self, task: str, init_from: str = "scratch:mae_tiny", mode: str = "full", lora_rank: int = 4,
                 lora_alpha: float = 8.0, lr: float = 1e-3, weight_decay: float = 0.01, warmup_steps: int = 20,
                 select: str = "significant") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.task = get_task(task)
        check_csi_task(task)  # before the mode: a future-beam run must not be told about modes
        if mode not in self.task.modes:
            raise CheckpointError(f"task {task} has no mode {mode!r}; it allows {', '.join(self.task.modes)}")
        self.kept = KeptWeights(select)  # checks the rule's name now, before any data loads
        self.net: torch.nn.Module | None = None
        self.test_results: dict[str, Any] = {}
        #: What ``fit`` kept: ``select``, ``kept_step``, ``checks``, held-out errors (module doc).
        self.selection: dict[str, Any] = {}
        self._active: bool | None = None  # whether this run selects (``selection_active``)
        self._test_out: list[dict[str, Tensor]] = []

    # ------------------------------------------------------------------ building
    def build(self, info: dict[str, Any]) -> None:
        """Make the model for the data's shape and labels (called from ``setup``)."""
        hp = self.hparams
        baseline = hp.init_from.startswith("baseline:")
        if baseline and (hp.init_from != "baseline:mlp" or self.task.family != "csi-label" or hp.mode != "full"):
            raise CheckpointError(f"{hp.init_from}: the only trainable baseline here is baseline:mlp, for label "
                                  "tasks, mode full")
        model = None if baseline else load_model(hp.init_from)
        if model is not None and not is_mae(model):
            raise CheckpointError(f"{hp.init_from}: a {type(model).__name__}; CSI task {self.task.name} needs an MAE")
        if self.task.family == "channel-prediction":
            configure_mode(model, hp.mode, model, [model.decoder_pred], hp.lora_rank, hp.lora_alpha)
            self.net = model
        else:
            feats = RawCSIFeatures(info["shape"]) if baseline else MAEEncoder(model)
            self.net = TaskModel(feats, info["outputs"], info["regression"])
            if info["regression"]:
                self.net.set_target_stats(info["y_train"])
            configure_mode(self.net, hp.mode, feats, self.net.head, hp.lora_rank, hp.lora_alpha)
        self.train(self.training)  # loaded models come in eval mode

    def train(self, mode: bool = True) -> "FinetuneModule":
        """Train mode for what fine-tunes; a linear probe's frozen backbone stays in eval (module doc)."""
        super().train(mode)
        if getattr(self, "net", None) is not None:
            set_train_mode(self.net, self.hparams.mode, mode)
        return self

    def setup(self, stage: str | None = None) -> None:
        if self.net is None:
            dm = self.trainer.datamodule
            dm.setup(stage)
            self.build(dm.info)

    # ------------------------------------------------------------------ steps
    def _loss(self, batch: dict[str, Tensor]) -> Tensor:
        if self.task.family == "channel-prediction":
            # predict's own mask: any (T, A, K), padded so the hidden part starts on a patch border
            mask, front = self.net.prediction_mask(batch["csi"].shape, MASK_KIND[self.task.axis], self.task.ratio)
            return self.net(batch["csi"], mask, front).loss
        out = self.net(batch["csi"])
        if self.net.regression:
            return F.mse_loss(out, (batch["y"] - self.net.y_mean) / self.net.y_std)
        return F.cross_entropy(out, batch["y"])

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        if self.hparams.mode == "zero-shot":
            raise CheckpointError("mode zero-shot trains nothing: run wfm finetune with trainer.max_steps 0 "
                                  "or use wfm evaluate")
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["csi"]))
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.log("val/loss", self._loss(batch), prog_bar=True, batch_size=len(batch["csi"]))

    # ------------------------------------------------------------------ which weights are kept
    def heldout_errors(self, batch: dict[str, Tensor]) -> Tensor:
        """Per-sample errors ``[B]`` that decide which weights are kept: the test's own per-sample
        NMSE for channel prediction (``predict``, the guard included), the loss for label tasks."""
        csi = batch["csi"]
        if self.task.family == "channel-prediction":
            return self.net.predict(csi, MASK_KIND[self.task.axis], self.task.ratio).nmse.reshape(len(csi))
        out = self.net(csi)
        if self.net.regression:
            err = F.mse_loss(out, (batch["y"] - self.net.y_mean) / self.net.y_std, reduction="none")
            return err.reshape(len(csi), -1).mean(dim=1)
        return F.cross_entropy(out, batch["y"], reduction="none")

    def selected_module(self) -> torch.nn.Module:
        return self.net

    def selection_active(self) -> bool:
        if self._active is None:  # (once per run: the answer does not change)
            dm = self.trainer.datamodule
            self._active = (super().selection_active() and self.trainer.limit_val_batches != 0
                            and len(dm.val_dataloader().dataset) > 0)
        return self._active

    def on_train_end(self) -> None:
        last = int(self.global_step)
        if not self.selection_active():
            self.selection = {"select": self.kept.select, "kept_step": last, "checks": 0}
            return
        self.offer_last_step()
        self.net.load_state_dict(self.kept.state)
        self.selection = {"select": self.kept.select, "kept_step": int(self.kept.step), "checks": self.kept.checks,
                          "kept_heldout_error": float(self.kept.scores.mean())}

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._test_out.append({k: v.detach().cpu() for k, v in self.predict_batch(batch).items()})

    @torch.no_grad()
    def predict_batch(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Predictions and what scoring needs, for one batch."""
        csi = batch["csi"]
        if self.task.family == "channel-prediction":
            pred = self.net.predict(csi, MASK_KIND[self.task.axis], self.task.ratio)
            return {"pred": pred.reconstruction, "csi": csi, "mask": pred.mask}
        out = {"y": batch["y"], "out": self.net.predict(csi)}
        if "beam_power" in batch:
            out["beam_power"] = batch["beam_power"]
        return out

    def on_test_epoch_start(self) -> None:
        self._test_out = []

    def on_test_epoch_end(self) -> None:
        cat = {k: torch.cat([o[k] for o in self._test_out]) for k in self._test_out[0]}
        self.test_results = score_task(self.task, cat)
        for k, v in self.test_results.items():
            if isinstance(v, (int, float)):
                self.log(f"test/{k}", float(v))

    # ------------------------------------------------------------------ optimiser
    def configure_optimizers(self) -> Any:
        params = [p for p in self.net.parameters() if p.requires_grad]
        if not params:
            params = [torch.nn.Parameter(torch.zeros(1))]  # zero-shot: Lightning still wants an optimiser
        opt = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        warm = max(1, int(self.hparams.warmup_steps))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters() if p.requires_grad)


def run_finetune(task: str, datasets: Sequence[str] | None, init_from: str = "scratch:mae_tiny", mode: str = "full",
                 train_fraction: float = 1.0, max_steps: int = 200, batch_size: int = 32, lr: float = 1e-3,
                 seed: int = 0, lora_rank: int = 4, val_every: int | None = None,
                 train_datasets: Sequence[str] | None = None, test_datasets: Sequence[str] | None = None,
                 return_model: bool = False, split_seed: int | None = None) -> dict[str, Any]:
    """Fine-tune and test in one call (what ``finetune/results.py``, ``wfm evaluate`` and the
    tests use). ``return_model``: the trained network under ``"net"``. ``split_seed`` (default
    ``seed``) picks the few-shot subset and the batch order, ``seed`` the initial weights."""
    pl.seed_everything(seed, workers=True, verbose=False)
    dm = TaskDataModule(task, list(datasets) if datasets else None, batch_size=batch_size,
                        train_fraction=train_fraction, seed=seed if split_seed is None else split_seed,
                        train_datasets=list(train_datasets) if train_datasets else None,
                        test_datasets=list(test_datasets) if test_datasets else None)
    module = FinetuneModule(task, init_from=init_from, mode=mode, lr=lr, lora_rank=lora_rank)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=max_steps if mode != "zero-shot" else 0,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)
    if mode != "zero-shot" and max_steps > 0:
        trainer.fit(module, datamodule=dm)
    else:
        dm.setup()
        module.build(dm.info)
    trainer.test(module, datamodule=dm, verbose=False)
    out = {"task": task, "model": init_from, "mode": mode, "train_fraction": train_fraction,
           "train_samples": dm.info["train_samples"], "steps": max_steps if mode != "zero-shot" else 0,
           "trainable_params": module.trainable_parameters(), **module.test_results}
    if return_model:
        out["net"] = module.net.eval()
    return out
