"""Which step a fine-tuning run keeps: the LightningModule side of ``wfm.tasks.significance.KeptWeights``.

A module that mixes in :class:`HeldOutSelection` (before ``pl.LightningModule``) and sets
``self.kept = KeptWeights(select)`` is scored on its held-out windows before the first step and
after every validation check of ``fit``; each score is offered to ``self.kept``, which keeps a
step only if it beat the kept weights beyond noise (or on any lower mean; ``"last"``: no
selection). What is done with the kept weights is the module's: ``wfm finetune``'s CSI module
loads them before testing, the causal module writes them into its checkpoint for ``wfm export``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from wfm.tasks.significance import KeptWeights


class HeldOutSelection:
    """Mixin for a LightningModule: offers its weights to ``self.kept`` (module doc).

    The module provides ``heldout_errors(batch) -> [B]`` (lower is better, per window or sample)
    and ``selected_module()`` (whose ``state_dict`` is kept); ``heldout_batches()`` (default: the
    data module's validation loader) must give every rank the same windows, so that every rank
    keeps the same step.
    """

    kept: KeptWeights
    _offered: int | None = None  # the last step offered to ``self.kept``

    def heldout_errors(self, batch: dict[str, Any]) -> Tensor:
        raise NotImplementedError

    def selected_module(self) -> nn.Module:
        raise NotImplementedError

    def heldout_batches(self) -> Iterable[dict[str, Any]]:
        return self.trainer.datamodule.val_dataloader()

    def selection_active(self) -> bool:
        """Whether this run selects (``select`` is not ``"last"`` and there is data to score)."""
        return self.kept.select != "last" and self.trainer.datamodule is not None

    def offer_current_weights(self) -> None:
        """Score the current weights on every held-out window and offer them to ``self.kept``."""
        was = self.training
        self.eval()
        with torch.no_grad():
            errors = [self.heldout_errors({k: v.to(self.device) if torch.is_tensor(v) else v for k, v in b.items()})
                      for b in self.heldout_batches()]
        self.train(was)
        self._offered = int(self.global_step)
        self.kept.offer(self._offered, torch.cat(errors), self.selected_module().state_dict)

    def offer_last_step(self) -> None:
        """Offer the current weights unless a check already did at this step: the steps after the
        last validation check (``max_steps`` between two checks). Each module calls it where its
        decision must be final: the CSI module before testing, the causal module before
        ``ModelCheckpoint`` writes ``last.ckpt``."""
        if self.selection_active() and self._offered != self.global_step:
            self.offer_current_weights()

    def on_train_start(self) -> None:
        if self.selection_active() and self.kept.scores is None:  # (a resumed run has its kept scores)
            self.offer_current_weights()  # step 0: the weights fine-tuning starts from

    def on_validation_epoch_end(self) -> None:
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking and self.selection_active() \
                and self._offered != self.global_step:
            self.offer_current_weights()  # before ModelCheckpoint saves (on_validation_end)
