"""Callbacks that ``wfm pretrain`` and ``wfm finetune`` add to every Trainer.

* :class:`FiniteGuard`: a NaN or Inf loss or gradient stops training with
  :class:`NonFiniteError` (one line naming the step and batch, exit 2) instead of training on
  NaN to the end and exiting 0.
* :class:`FinalCheckpoint`: when training ends (``max_steps`` reached, or the data run out)
  at a step that no ``ModelCheckpoint`` saved yet, ``last.ckpt`` is written, so a run whose
  ``max_steps`` is not a multiple of ``every_n_train_steps`` loses nothing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning import Callback


class NonFiniteError(ValueError):
    """Training produced a NaN or Inf (loss or gradient); the message names where."""


def _loss_of(outputs: Any) -> Any:
    if isinstance(outputs, dict):
        return outputs.get("loss")
    return outputs


class FiniteGuard(Callback):
    """Stop at the first non-finite loss or gradient (checked every ``every_n_steps`` steps)."""

    def __init__(self, every_n_steps: int = 1, check_gradients: bool = True):
        self.every_n_steps = max(1, int(every_n_steps))
        self.check_gradients = check_gradients

    def _where(self, trainer: Any, batch_idx: int | None = None) -> str:
        where = f"step {trainer.global_step}"
        if batch_idx is not None:
            where += f" (epoch {trainer.current_epoch}, batch {batch_idx})"
        dm = getattr(trainer, "datamodule", None)
        names = getattr(dm, "datasets", None) if dm is not None else None
        if names:
            where += f", data {', '.join(Path(str(n)).name for n in names)}"
        return where

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = _loss_of(outputs)
        if loss is None or trainer.global_step % self.every_n_steps:
            return
        value = float(loss.detach().float()) if torch.is_tensor(loss) else float(loss)
        if not math.isfinite(value):
            raise NonFiniteError(f"training loss is {value} at {self._where(trainer, batch_idx)}: "
                                 "check the data for NaN/Inf and the learning rate")

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if not self.check_gradients or trainer.global_step % self.every_n_steps:
            return
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if not grads:
            return
        norms = torch._foreach_norm(grads) if hasattr(torch, "_foreach_norm") else [g.norm() for g in grads]
        total = torch.stack([n.float() for n in norms])
        if not bool(torch.isfinite(total).all()):
            names = [n for n, p in pl_module.named_parameters() if p.grad is not None]
            bad = names[int((~torch.isfinite(total)).nonzero()[0])]
            raise NonFiniteError(f"non-finite gradient of {bad} at {self._where(trainer)}: "
                                 "check the data for NaN/Inf and the learning rate")


class FinalCheckpoint(Callback):
    """Write ``last.ckpt`` at the end of training when no ModelCheckpoint saved the final step."""

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or getattr(trainer, "interrupted", False):
            return
        for cb in trainer.checkpoint_callbacks:
            dirpath = getattr(cb, "dirpath", None)
            if not dirpath or not getattr(cb, "save_last", None):
                continue
            if getattr(cb, "_last_global_step_saved", None) == trainer.global_step:
                continue
            path = str(Path(dirpath) / f"{cb.CHECKPOINT_NAME_LAST}{cb.FILE_EXTENSION}")
            trainer.save_checkpoint(path)
            cb.last_model_path = path
            cb._last_global_step_saved = trainer.global_step
            return
