"""Optimiser and learning-rate schedule shared by the pretraining modules: AdamW without decay
on biases, norms and the mask token, linear warmup then cosine decay (``LambdaLR`` multipliers)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from wfm.safety import InputError


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> float:
    """Linear warmup from ~0 to 1 over ``warmup_steps``, then cosine decay to ``min_lr_ratio``
    at ``total_steps``; constant ``min_lr_ratio`` after that.

    The warmup starts at ``1/warmup_steps`` rather than 0 so the first optimizer step moves.
    A negative ``warmup_steps`` or a ``min_lr_ratio`` outside ``[0, 1]`` (a negative learning
    rate) raises ``ValueError``.
    """
    if isinstance(warmup_steps, bool) or int(warmup_steps) != warmup_steps or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio!r}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


#: Calibration parameters (the causal prior's backtest weight and guard, the band's growth per patch
#: ahead): decaying them pulls the gate towards ignoring its evidence at every continued-pretraining
#: stage. A stage that turns one on starts it at its configured value.
CALIBRATION_SCALARS = ("backtest_weight", "guard_scale", "guard_bias", "evidence_power", "quantile_growth")


def no_weight_decay(name: str) -> bool:
    """Biases, norm parameters, the mask token and the calibration scalars are not decayed.

    Decided by name, not by ``p.ndim``: under FSDP parameters can be flattened shards.
    """
    parts = name.split(".")
    return (parts[-1].startswith("bias") or parts[-1] == "mask_token" or parts[-1] in CALIBRATION_SCALARS
            or any("norm" in part for part in parts))


def adamw_warmup_cosine(model: nn.Module, hp: Any, total_steps: float) -> dict[str, Any]:
    """Lightning's ``configure_optimizers`` answer: AdamW over ``model``'s trainable parameters
    (``hp.lr``, ``hp.betas``, ``hp.weight_decay`` except where :func:`no_weight_decay`) and a
    per-step warmup/cosine schedule (``hp.warmup_steps``, ``hp.min_lr_ratio``) of
    ``hp.max_steps`` or else ``total_steps`` steps."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if no_weight_decay(name) else decay).append(p)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=hp.lr, betas=tuple(hp.betas),
    )
    try:  # refused here, before the first step, not as a diverging loss
        warmup_cosine(0, hp.warmup_steps, 1, hp.min_lr_ratio)
    except ValueError as e:
        raise InputError(f"model: {e}") from None
    total = hp.max_steps or total_steps
    if not math.isfinite(total):
        raise ValueError("set model.max_steps or trainer.max_steps/max_epochs: the cosine schedule needs a length")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, hp.warmup_steps, int(total), hp.min_lr_ratio)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
