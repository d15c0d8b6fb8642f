"""LightningModule that pretrains the CSI masked autoencoder.

One training batch = one mask kind from the ``MaskPolicy`` mixture (WiFo-style). Masks are
drawn from a generator seeded by ``(mask_seed, micro-step, rank)``, so runs are reproducible and
a resumed run draws exactly the masks the uninterrupted run would; ranks draw different random
masks but always the same kind (equal work per rank, no stragglers).

Validation evaluates every kind of the mixture on every batch with a fixed per-batch mask, and
logs ``val/loss`` (the mean over kinds; what checkpoints monitor) and per kind
``val/loss_<kind>``, ``val/nmse_<kind>`` and ``val/nmse_db_<kind>``.

Optimiser: AdamW with no weight decay on biases, norms and the mask token; linear warmup and
cosine decay to ``min_lr_ratio * lr`` over ``max_steps`` (default: the Trainer's
``estimated_stepping_batches``). Gradient clipping and accumulation are Trainer settings.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch import Tensor
from torchmetrics import MeanMetric

from wfm.hub import load_weights_into
from wfm.models.mae import MaskedAutoencoder
from wfm.models.masking import MaskPolicy, make_mask
from wfm.models.registry import create_model
from wfm.tasks.metrics import db
from wfm.training.schedule import adamw_warmup_cosine


class MAEPretrainModule(pl.LightningModule):
    """Pretrain ``wfm.models.mae`` on batches ``{"csi": complex64 [B, T, A, K], ...}``.

    Args:
        model: registered model name (``mae_tiny`` ... ``mae_large``).
        patch_size, attention, decoder_dim, sample_norm, norm_pix_loss, prior, drop_path_rate,
            layer_scale: overrides of the model's defaults (see ``MaskedAutoencoder``; ``prior``
            anchors every prediction on a classical estimate, ``none`` is the original MAE).
        mask_kinds, mask_ratios, mask_mode, mask_weights: the masking mixture (``MaskPolicy``).
        mask_seed: seed of the mask draws.
        lr, weight_decay, betas: AdamW.
        warmup_steps, min_lr_ratio, max_steps: schedule (optimizer steps; ``max_steps=None``
            uses the Trainer's estimate).
        compile: ``torch.compile`` each transformer block (see ``MaskedAutoencoder.compile_blocks``).
        loss: ``mse`` or ``skill`` (each sample's error relative to its classical prior's; see
            ``MaskedAutoencoder``).
        model_kwargs: any other ``MaskedAutoencoder`` arguments, such as its inference rules
            (``guard_prior``, ``white_limit``, ``white_dips``, ``guard_origins``), which ``wfm
            export`` writes into the model's ``config.json``.
        init_weights: start from these weights (an exported folder or hub id, read through
            ``wfm.from_pretrained`` with its checks) instead of a random init, with a fresh
            optimizer and schedule: continued pretraining of a released model on new data. The
            architecture given here must match the weights' exactly. A resume (``--ckpt_path``)
            overrides them, as it restores everything.
    """

    def __init__(
        self,
        model: str = "mae_tiny",
        patch_size: tuple[int, int, int] = (4, 4, 4),
        attention: Literal["sdpa", "complex-real", "complex-magnitude", "complex-phase"] = "sdpa",
        decoder_dim: int | None = None,
        sample_norm: bool = True,
        norm_pix_loss: bool = False,
        prior: Literal["none", "hold", "mean", "mix"] = "none",
        drop_path_rate: float = 0.0,
        layer_scale: float | None = None,
        mask_kinds: list[str] = ["random", "temporal", "frequency"],  # noqa: B006 (copied below)
        mask_ratios: list[float] = [0.85, 0.5, 0.5],  # noqa: B006
        mask_mode: Literal["cycle", "sample"] = "cycle",
        mask_weights: list[float] | None = None,
        mask_seed: int = 0,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_steps: int = 500,
        min_lr_ratio: float = 0.01,
        max_steps: int | None = None,
        compile: bool = False,
        loss: Literal["mse", "skill"] = "mse",
        init_weights: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model: MaskedAutoencoder = create_model(
            model, patch_size=tuple(patch_size), attention=attention,
            decoder_dim=decoder_dim, sample_norm=sample_norm, norm_pix_loss=norm_pix_loss,
            prior=prior, drop_path_rate=drop_path_rate, layer_scale=layer_scale, loss=loss,
            **(model_kwargs or {}),
        )
        if init_weights:
            load_weights_into(self.model, init_weights)
        self.mask_policy = MaskPolicy(list(mask_kinds), list(mask_ratios), mask_mode,
                                      None if mask_weights is None else list(mask_weights))
        # Validation scores every (kind, ratio) of the mixture; named by kind, plus the ratio
        # in percent when one kind appears with several ratios ("random85").
        pairs = list(dict.fromkeys(zip(self.mask_policy.kinds, self.mask_policy.ratios)))
        kinds = [k for k, _ in pairs]
        self.val_kinds = [(k if kinds.count(k) == 1 else f"{k}{round(100 * r)}", k, r) for k, r in pairs]
        self.val_loss = torch.nn.ModuleDict({name: MeanMetric() for name, _, _ in self.val_kinds})
        self.val_nmse = torch.nn.ModuleDict({name: MeanMetric() for name, _, _ in self.val_kinds})
        #: Set by every training and validation step for the ``Throughput`` callback (a
        #: ``ThroughputMonitor``): this batch's samples and tokens, and its FLOPs on this device.
        self.last_batch_stats: dict[str, int] = {}
        self.flops_per_batch = 0
        self._compiled = False

    def configure_model(self) -> None:
        if self.hparams.compile and not self._compiled:
            self.model.compile_blocks()
            self._compiled = True

    # ------------------------------------------------------------------ steps
    def _micro_step(self, batch_idx: int) -> int:
        """Index of this micro-batch over the whole run, recomputed from the restored
        ``global_step`` after a resume (so the mask sequence continues exactly)."""
        accumulate = self.trainer.accumulate_grad_batches if self._trainer is not None else 1
        return self.global_step * accumulate + batch_idx % accumulate

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        csi = batch["csi"]
        b = csi.shape[0]
        grid = self.model.grid_for(csi.shape)
        mask, kind, _ = self.mask_policy(b, grid, self._micro_step(batch_idx),
                                         seed=self.hparams.mask_seed, rank=self.global_rank)
        out = self.model(csi, mask)
        self.last_batch_stats = {"samples": b, "tokens": b * math.prod(grid)}
        self.flops_per_batch = 3 * b * self.model.forward_flops(grid, int(mask[0].sum()))  # forward + backward
        self.log("train/loss", out.loss, prog_bar=True, batch_size=b)
        self.log("train/nmse_db", db(out.nmse.detach().mean()), prog_bar=True, batch_size=b)
        self.log(f"train/loss_{kind}", out.loss, batch_size=b)
        return out.loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        csi = batch["csi"]
        b = csi.shape[0]
        grid = self.model.grid_for(csi.shape)
        self.last_batch_stats, self.flops_per_batch = {"samples": b, "tokens": b * math.prod(grid)}, 0
        for name, kind, ratio in self.val_kinds:
            # Fixed per-batch masks: every validation pass scores the same problems.
            gen = torch.Generator().manual_seed(self.hparams.mask_seed * 1_000_003 + 7919 * batch_idx + self.global_rank)
            mask = make_mask(kind, b, grid, ratio, generator=gen)
            out = self.model(csi, mask)
            self.flops_per_batch += b * self.model.forward_flops(grid, int(mask[0].sum()))
            self.val_loss[name].update(out.loss, weight=b)
            self.val_nmse[name].update(out.nmse)

    def on_validation_epoch_end(self) -> None:
        # compute() already reduces over ranks, so every rank holds the same values; sync_dist
        # just tells Lightning so (an all-reduce of a few identical scalars).
        log = dict(sync_dist=True)
        losses = []
        for name, _, _ in self.val_kinds:
            loss = self.val_loss[name].compute()  # synced across ranks
            nmse = self.val_nmse[name].compute()
            losses.append(loss)
            self.log(f"val/loss_{name}", loss, **log)
            self.log(f"val/nmse_{name}", nmse, **log)
            self.log(f"val/nmse_db_{name}", db(nmse), **log)
            self.val_loss[name].reset()
            self.val_nmse[name].reset()
        self.log("val/loss", torch.stack(losses).mean(), prog_bar=True, **log)

    # ------------------------------------------------------------------ optim
    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_warmup_cosine(self.model, self.hparams, self.trainer.estimated_stepping_batches)
