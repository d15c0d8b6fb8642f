"""LightningModule that pretrains the causal forecaster (``wfm.models.causal``) on series windows.

Batches are those of :class:`wfm.data.series_datamodule.SeriesDataModule`:
``{"values": [B, W], "observed": [B, W], "context_len": [B], "interval": [B], "kind": [...]}``.
Windows are left-padded to a whole number of patches; the loss is the model's next-patch loss
over every patch of the window (normalised by the context's statistics).

Validation logs ``val/loss`` (what checkpoints monitor) and per series kind ``val/nmse_<kind>``
and ``val/nmse_db_<kind>``: the one-patch-ahead (teacher-forced) NMSE on the horizon part of
the windows, ``sum (y_hat - y)^2 / sum y^2`` in the normalised space (``y`` minus the context
mean, over the context std), i.e. relative to the context's variance, so kinds of any scale
compare. Multi-step forecasts are scored by ``pretrain/causal_report.py``.

Optimiser as in :mod:`wfm.training.lit_mae`: AdamW without decay on biases and norms, linear
warmup then cosine decay.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric, SumMetric

from wfm.hub import CheckpointError, causal_arch
from wfm.hub_mixin import _check_state_dict
from wfm.models.box_cox import box_cox_windows
from wfm.models.causal import CausalForecaster
from wfm.models.registry import create_model
from wfm.nn.lora import apply_lora
from wfm.pretrain import expand_path
from wfm.tasks.backbones import load_model
from wfm.tasks.metrics import db
from wfm.tasks.significance import KeptWeights
from wfm.training.heldout_selection import HeldOutSelection
from wfm.training.schedule import CALIBRATION_SCALARS, adamw_warmup_cosine

#: Series kinds that get their own validation metrics (others are pooled as ``other``).
VAL_KINDS = ("csi", "aoa", "distance", "speed", "traffic", "beam_power", "other")


#: What a linear probe (and LoRA, besides its adapters) trains: the output head and trend gate.
HEAD_PREFIXES = ("head.", "trend_gate.", "prior_gate.", "backtest_weight", "guard_")


def load_causal(init_from: str) -> CausalForecaster:
    """A causal model from an exported folder, hub id or Lightning ``.ckpt`` (never unpickled)."""
    path = expand_path(init_from)
    model = load_model(path)
    if not isinstance(model, CausalForecaster):
        raise CheckpointError(f"{init_from}: a {type(model).__name__}, not a causal forecaster")
    return model.train()  # loaded for inference (eval mode); this one trains


def point_rows(model: CausalForecaster) -> Tensor:
    """``[out_features]`` bool: the rows of ``model.head`` that give the point forecast (the rest
    give its quantiles; the head's output is ``[..., K, P, 1 + Q]``, point first)."""
    rows = torch.zeros(model.head.out_features, dtype=torch.bool, device=model.head.weight.device)
    rows[::1 + len(model.quantile_levels)] = True
    return rows


def set_trainable(model: CausalForecaster, mode: str, lora_rank: int = 4) -> None:
    """Set what trains (see ``CausalPretrainModule``'s ``mode``)."""
    if mode == "full":
        model.requires_grad_(True)
        return
    if mode == "quantiles":
        if not model.quantile_levels:
            raise ValueError("mode 'quantiles' needs a model with a quantile head (quantiles=())")
        model.requires_grad_(False)
        model.head.requires_grad_(True)
        if model.quantile_steps:
            model.quantile_growth.requires_grad_(True)
        keep = point_rows(model)
        # The point rows get no gradient, so Adam never moves them (no weight decay here either:
        # configure_optimizers), and the point forecast stays as it was, to the bit.
        model.head.weight.register_hook(lambda g: g.masked_fill(keep[:, None], 0.0))
        model.head.bias.register_hook(lambda g: g.masked_fill(keep, 0.0))
        return
    if mode == "lora":
        # wfm.nn.lora.DEFAULT_TARGETS (attention projections, MLP layers); freezes everything else
        apply_lora(model, rank=lora_rank)
    elif mode == "linear-probe":
        model.requires_grad_(False)
    else:
        raise ValueError(f"unknown mode {mode!r}; choose full, lora, linear-probe or quantiles")
    for name, p in model.named_parameters():
        if name.startswith(HEAD_PREFIXES):
            p.requires_grad_(True)


def pad_to_patches(batch: dict[str, Any], patch_len: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(values, observed, context_len)`` of a batch, left-padded to a multiple of ``patch_len``."""
    values, observed, ctx = batch["values"], batch["observed"].bool(), batch["context_len"]
    pad = (-values.shape[1]) % patch_len
    if pad:
        values, observed, ctx = F.pad(values, (pad, 0)), F.pad(observed, (pad, 0)), ctx + pad
    return values.float(), observed, ctx


class CausalPretrainModule(HeldOutSelection, pl.LightningModule):
    """Pretrain a registered ``causal_*`` model on series windows.

    Args:
        model: registered model name (``causal_tiny`` ... ``causal_base``).
        patch_len, quantiles, max_context: overrides of the model's defaults (None: keep).
        model_kwargs: any other ``CausalForecaster`` arguments (e.g. ``{dim: 32, depth: 2}``).
        lr, weight_decay, betas: AdamW.
        warmup_steps, min_lr_ratio, max_steps: schedule (``max_steps=None``: the Trainer's estimate).
        scaled_loss: weigh each series' errors by the inverse of its context's one-step change
            (see ``CausalForecaster.loss``), so smooth and noisy kinds count alike.
        skill_loss: score each series by its error over that of the better of persistence and
            the context mean on the same targets (``CausalForecaster.loss(skill=True)``; the
            quantiles keep their pinball loss); ``"group"``: one ratio per group of channels
            (``data.group_size``), each row weighed by its share of the group's power, as
            per-window NMSE weighs a window's channels.
        compile: ``torch.compile`` each transformer block.
        init_from: fine-tune instead of pretraining: start from this causal model (exported
            folder, hub id or ``.ckpt``, via ``wfm.from_pretrained``); ``model`` and the size
            overrides are then ignored.
        init_weights: continued pretraining: build ``model`` with its overrides as usual, then start
            from this exported causal model's weights (read through ``wfm.from_pretrained`` with its
            checks), with a fresh optimizer and schedule. The architectures must match, except
            that ``model_kwargs.estimators`` may add classical estimators to the weights' prior mix
            (``CausalForecaster.grown_state_dict``). A resume (``--ckpt_path``) overrides them.
        mode: what trains when fine-tuning: ``full`` (everything), ``lora`` (rank-``lora_rank``
            adapters on the attention and MLP layers, plus the output head and trend gate),
            ``linear-probe`` (the output head and trend gate only) or ``quantiles`` (only the
            head's quantile outputs, without weight decay, by the pinball loss of the quantiles
            as ``forecast`` rolls them out, ``CausalForecaster.rollout_quantile_loss``: every
            point forecast stays as it was, to the bit; a calibration stage).
        fixed_scalars: scalar parameters set to these values after any ``init_weights`` and kept
            fixed, e.g. ``{backtest_weight: 4.0}``: the gate then weighs the backtest evidence by
            a set amount, where left to the loss the weight drifted from 4.0 to 0.78 over five
            stages (pretrain/studies.md). Names not among the model's scalars are an error.
        select: which weights a fine-tuning run hands to ``wfm export``. ``"last"`` (pretraining,
            and every run before this option): the last step's. ``"significant"``: the starting
            weights are scored on the validation windows before the first step, and a validation
            check (or the last step) replaces them only where its per-window errors (the next
            patch's NMSE over each window's horizon) beat theirs beyond noise
            (``wfm.tasks.significance.KeptWeights``);
            ``"best"``: on any lower mean. The checkpoint then carries those weights as well
            (``wfm_kept``, what ``wfm export`` exports; resuming still uses the last step's).
        box_cox: train each non-negative window in the Box-Cox space its context chooses
            (:func:`wfm.models.box_cox.box_cox_windows`), where ``forecast`` with the model's
            ``box_cox`` option forecasts it: without it the network is trained on traffic as given
            and then, at inference, reads the same traffic in log space. The loss is then in that
            space. Training steps only (validation metrics stay in the series' own units).
    """

    def __init__(self, model: str = "causal_tiny", patch_len: int | None = None, quantiles: list[float] | None = None,
                 max_context: int | None = None, model_kwargs: dict[str, Any] | None = None, lr: float = 1e-3, weight_decay: float = 0.05,
                 betas: tuple[float, float] = (0.9, 0.95), warmup_steps: int = 500, min_lr_ratio: float = 0.01,
                 max_steps: int | None = None, scaled_loss: bool = True, compile: bool = False,
                 init_from: str | None = None, mode: Literal["full", "lora", "linear-probe", "quantiles"] = "full",
                 lora_rank: int = 4, init_weights: str | None = None,
                 fixed_scalars: dict[str, float] | None = None, skill_loss: bool | Literal["group"] = False,
                 select: Literal["last", "significant", "best"] = "last", box_cox: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        if init_from is None:
            overrides = dict(model_kwargs or {})
            overrides.update({k: v for k, v in (("patch_len", patch_len), ("max_context", max_context)) if v is not None})
            if quantiles is not None:
                overrides["quantiles"] = tuple(quantiles)
            self.model: CausalForecaster = create_model(model, **overrides)
            if init_weights:
                self._load_weights(init_weights)
        else:
            self.model = load_causal(init_from)
        set_trainable(self.model, mode, lora_rank)
        params = dict(self.model.named_parameters())
        for name, value in (fixed_scalars or {}).items():
            if name not in params or params[name].numel() != 1:
                scalars = sorted(k for k, v in params.items() if v.numel() == 1)
                raise ValueError(f"fixed_scalars: {name!r} is not a scalar parameter of the model; it has {scalars}")
            with torch.no_grad():
                params[name].fill_(float(value))
            params[name].requires_grad_(False)
        self.kept = KeptWeights(select)
        self.val_loss = MeanMetric()
        self.val_err = torch.nn.ModuleDict({k: SumMetric() for k in VAL_KINDS})
        self.val_pow = torch.nn.ModuleDict({k: SumMetric() for k in VAL_KINDS})
        #: Set by every training and validation step for the ``Throughput`` callback (a
        #: ``ThroughputMonitor``): this batch's samples and tokens, and its FLOPs on this device.
        self.last_batch_stats: dict[str, int] = {}
        self.flops_per_batch = 0
        self._compiled = False

    def _load_weights(self, source: str) -> None:
        trained = load_causal(source)
        state = trained.state_dict()
        if trained.prior == "mix" and self.model.prior == "mix" and trained.estimators != self.model.estimators:
            try:
                state = trained.grown_state_dict(self.model.estimators)
            except ValueError as e:
                raise CheckpointError(f"{source}: {e}") from None
        own = self.model.state_dict()
        # A calibration scalar the source lacks (an option this stage turns on, e.g. evidence_power)
        # starts at its configured value; every other weight must match.
        state = {**state, **{k: own[k].clone() for k in CALIBRATION_SCALARS if k in own and k not in state}}
        _check_state_dict(self.model, state, f"{source} (init_weights)")  # as hub.load_weights_into
        self.model.load_state_dict(state, strict=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # ``wfm export`` rebuilds the model from this (a fine-tune's architecture is its
        # init_from's, not what ``model`` names).
        checkpoint["wfm_arch"] = causal_arch(self.model)
        if self.kept.select != "last" and self.kept.state is not None:
            checkpoint["wfm_kept"] = {"step": int(self.kept.step), "select": self.kept.select,
                                      "checks": self.kept.checks, "scores": self.kept.scores,
                                      "state_dict": {f"model.{k}": v for k, v in self.kept.state.items()}}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        kept = checkpoint.get("wfm_kept")
        if kept and kept.get("select") == self.kept.select and kept.get("scores") is not None:
            # a resumed run goes on comparing against the weights it had kept
            self.kept.step, self.kept.scores, self.kept.checks = int(kept["step"]), kept["scores"], int(kept["checks"])
            self.kept.state = {k.removeprefix("model."): v for k, v in kept["state_dict"].items()}
            self._offered = int(checkpoint.get("global_step", 0))

    def configure_model(self) -> None:
        if self.hparams.compile and not self._compiled:
            for blk in self.model.blocks:
                blk.compile()
            self._compiled = True

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        values, observed, ctx = pad_to_patches(batch, self.model.patch_len)
        if self.hparams.get("box_cox"):
            values, _ = box_cox_windows(values, observed, ctx, batch.get("group"))
        b, n = values.shape[0], self.model.num_tokens(values.shape[1])
        if self.hparams.get("mode") == "quantiles":  # the quantiles as forecast rolls them out
            loss = self.model.rollout_quantile_loss(values, observed, batch["interval"], ctx,
                                                    scaled=self.hparams.scaled_loss, group=batch.get("group"))
            # one forward pass per patch after the context; the backward reaches the head only
            passes = -(-(values.shape[1] - int(ctx.min())) // self.model.patch_len)
            self.flops_per_batch = passes * b * self.model.forward_flops(n)
        else:
            loss, *_ = self.model.loss(values, observed, batch["interval"], ctx, scaled=self.hparams.scaled_loss,
                                       skill=self.hparams.get("skill_loss", False), group=batch.get("group"))
            self.flops_per_batch = 3 * b * self.model.forward_flops(n)  # forward + backward
        self.last_batch_stats = {"samples": b, "tokens": b * n}
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        return loss

    def _horizon_errors(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(padded values, loss, err [B], power [B])``: each window's squared error of the next
        patch over its horizon, and the targets' power there (one-patch-ahead, teacher-forced)."""
        values, observed, ctx = pad_to_patches(batch, self.model.patch_len)
        loss, out, target, weight = self.model.loss(values, observed, batch["interval"], ctx)
        p = self.model.patch_len
        off = values.shape[1] - out.point.shape[1] * p  # values before the first token (prior="mix")
        pos = torch.arange(off, values.shape[1], device=values.device).view(-1, p)[1:]  # target positions
        horizon = (pos[None] >= ctx[:, None, None]).float() * weight
        err = ((out.point[:, :-1] - target) ** 2 * horizon).sum(dim=(1, 2))
        return values, loss, err, (target ** 2 * horizon).sum(dim=(1, 2))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        values, loss, err, power = self._horizon_errors(batch)
        b = values.shape[0]
        n = self.model.num_tokens(values.shape[1])
        self.last_batch_stats, self.flops_per_batch = {"samples": b, "tokens": b * n}, b * self.model.forward_flops(n)
        self.val_loss.update(loss, weight=b)
        for kind in dict.fromkeys(batch["kind"]):
            sel = torch.tensor([k == kind for k in batch["kind"]], device=values.device)
            key = kind if kind in self.val_err else "other"
            self.val_err[key].update(err[sel].sum())
            self.val_pow[key].update(power[sel].sum())

    def heldout_errors(self, batch: dict[str, Any]) -> Tensor:
        """Per-window errors ``[B]`` that decide which weights a fine-tuning run keeps: the next
        patch's squared error over each window's horizon, over its power (NMSE; 0 where nothing
        is scored); in ``mode="quantiles"`` the pinball loss of its rolled-out quantiles
        (``CausalForecaster.rollout_quantile_loss``, per window)."""
        if self.hparams.get("mode") == "quantiles":  # the point forecast cannot change: what trains is scored
            values, observed, ctx = pad_to_patches(batch, self.model.patch_len)
            return self.model.rollout_quantile_loss(values, observed, batch["interval"], ctx, scaled=False,
                                                    group=batch.get("group"), per_row=True)
        _, _, err, power = self._horizon_errors(batch)
        return err / power.clamp_min(1e-12)

    def selected_module(self) -> torch.nn.Module:
        return self.model

    def heldout_batches(self) -> Any:
        dm = self.trainer.datamodule  # every validation window on every rank (Lightning's loop shards them)
        return dm.eval_loader("val", shard=False) if hasattr(dm, "eval_loader") else dm.val_dataloader()

    def on_train_epoch_end(self) -> None:
        # The last epoch's end: checkpoint callbacks run after this hook, so last.ckpt holds the final decision.
        t = self.trainer
        ends = (t.should_stop or 0 <= t.max_steps <= t.global_step
                or (t.max_epochs is not None and 0 <= t.max_epochs <= t.current_epoch + 1))
        if t.state.fn == "fit" and ends:  # (fit_loop.done would say so too, and log "stopped" twice)
            self.offer_last_step()

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()  # HeldOutSelection: the check's offer
        log = dict(sync_dist=True)
        self.log("val/loss", self.val_loss.compute(), prog_bar=True, **log)
        self.val_loss.reset()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*compute.*before.*update.*")
            for kind in VAL_KINDS:
                err, power = self.val_err[kind].compute(), self.val_pow[kind].compute()  # synced over ranks
                if float(power) > 0:
                    nmse = err / power
                    self.log(f"val/nmse_{kind}", nmse, **log)
                    self.log(f"val/nmse_db_{kind}", db(nmse), **log)
                self.val_err[kind].reset()
                self.val_pow[kind].reset()

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        if hp.get("mode") == "quantiles":  # decay would shrink the frozen point rows
            hp = SimpleNamespace(**{**dict(hp), "weight_decay": 0.0})
        return adamw_warmup_cosine(self.model, hp, self.trainer.estimated_stepping_batches)
