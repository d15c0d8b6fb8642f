"""LoRA: low-rank adapters on linear layers (Hu et al., 2021), without extra dependencies.

``LoRALinear`` wraps an ``nn.Linear``: ``y = W x + b + (alpha / r) B A x`` with ``A`` ``[r, in]``
(Kaiming-uniform init) and ``B`` ``[out, r]`` (zero init, so a fresh adapter changes nothing).
The base weight and bias are frozen. ``merge()`` folds ``(alpha / r) B A`` into ``W`` for
inference at the base layer's cost; ``unmerge()`` takes it out again.

``apply_lora(model, targets, rank, alpha)`` replaces every ``nn.Linear`` whose qualified name
ends with one of ``targets`` (default: the attention projections ``qkv``/``proj`` and the MLP
``fc1``/``fc2`` of ``wfm.nn.blocks``) and freezes every other parameter of ``model``; the
caller unfreezes what it trains besides the adapters (a task head).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

#: The package's one LoRA target list: the attention projections and MLP layers of every
#: transformer block (``wfm.nn.blocks``; the MAE's fine-tuning in ``wfm.tasks.backbones`` and the
#: causal forecaster's in ``wfm.training.lit_causal`` both use it).
DEFAULT_TARGETS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable rank-``r`` update (see module doc)."""

    def __init__(self, base: nn.Linear, rank: int = 4, alpha: float = 8.0) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.base = base
        self.rank, self.alpha = rank, alpha
        self.scaling = alpha / rank
        # Saved with the weights, so a checkpoint's adapters can be folded without the config.
        self.register_buffer("lora_scaling", torch.tensor(float(self.scaling)))
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.merged = False

    @property
    def weight(self) -> Tensor:  # what code reading ``.weight`` of a Linear expects
        return self.base.weight

    @property
    def bias(self) -> Tensor | None:
        return self.base.bias

    def delta(self) -> Tensor:
        """The update ``(alpha / r) B A`` ``[out, in]``."""
        return (self.lora_b @ self.lora_a) * self.scaling

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)
        if self.merged:
            return y
        return y + (x @ self.lora_a.t().to(x.dtype)) @ (self.lora_b.t().to(x.dtype) * self.scaling)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base.weight += self.delta().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= self.delta().to(self.base.weight.dtype)
            self.merged = False


def apply_lora(model: nn.Module, targets: Sequence[str] = DEFAULT_TARGETS, rank: int = 4,
               alpha: float = 8.0) -> list[str]:
    """Wrap the matching linear layers of ``model`` in ``LoRALinear``, freeze the rest; returns
    the wrapped layers' names. Raises if nothing matched (a model without such layers)."""
    for p in model.parameters():
        p.requires_grad_(False)
    names = [n for n, m in model.named_modules() if type(m) is nn.Linear and n.endswith(tuple(targets))]
    if not names:
        raise ValueError(f"no linear layer of {type(model).__name__} ends with any of {', '.join(targets)}")
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), rank, alpha))
    return names


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def merge_lora(model: nn.Module) -> None:
    """Fold every adapter into its base weight (outputs unchanged, no adapter cost)."""
    for m in lora_layers(model):
        m.merge()


def unmerge_lora(model: nn.Module) -> None:
    for m in lora_layers(model):
        m.unmerge()


def fold_lora_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The state dict of the plain model: every (unmerged) adapter ``X.base.weight``,
    ``X.lora_a``, ``X.lora_b``, ``X.lora_scaling`` folded into ``X.weight`` (and ``X.base.bias``
    renamed ``X.bias``), so a LoRA fine-tuned checkpoint exports like any other."""
    prefixes = [k[: -len(".lora_a")] for k in state if k.endswith(".lora_a")]
    out = dict(state)
    for x in prefixes:
        a, b = out.pop(f"{x}.lora_a"), out.pop(f"{x}.lora_b")
        scaling = out.pop(f"{x}.lora_scaling")
        weight = out.pop(f"{x}.base.weight")
        out[f"{x}.weight"] = weight + (b.double() @ a.double() * scaling.double()).to(weight.dtype)
        if f"{x}.base.bias" in out:
            out[f"{x}.bias"] = out.pop(f"{x}.base.bias")
    return out
