"""Backbones of the downstream tasks and their heads: load a foundation model, take its
features, add a head, and set what trains (``configure_mode``, ``set_train_mode``).

``load_model(spec)`` takes what users pass as ``--model`` / ``init_from``:

- an exported folder or a Hugging Face Hub id (``wfm.from_pretrained``);
- a Lightning ``.ckpt`` of ``wfm pretrain``, a file or a URL (read with
  ``wfm.safety.load_checkpoint``: weights only, nothing unpickled; a URL only where downloads
  are allowed);
- ``scratch:NAME``: the registered model ``NAME`` (``mae_tiny``...) with random weights.

``MAEEncoder`` is the MAE's encoder on *all* tokens (no mask), its ``forward_features``;
``TaskModel`` mean-pools those tokens into the ``[B, dim]`` feature of a CSI sample
(LWM/WiFo-style linear probing uses such pooled features). ``RawCSIFeatures`` is the baseline
without a foundation model: the flattened real and imaginary parts, each sample divided by its
RMS, through a two-layer MLP. ``TaskModel`` = features (mean-pooled where per token) +
``nn.Linear`` head; regression targets are standardised with the training split's mean and std
(buffers), predictions scaled back.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import wfm
from wfm.hub import CheckpointError, export_checkpoint
from wfm.models.mae import MaskedAutoencoder
from wfm.models.registry import create_model, list_models
from wfm.nn.lora import apply_lora
from wfm.safety import download, is_url


def load_model(spec: str) -> nn.Module:
    """A foundation model from a folder, hub id, ``.ckpt`` or ``scratch:NAME`` (module doc)."""
    if spec.startswith("scratch:"):
        name = spec.split(":", 1)[1]
        if name not in list_models():
            raise CheckpointError(f"{spec}: unknown model {name!r}; registered: {', '.join(list_models())}")
        return create_model(name)
    if is_url(spec):
        return _from_lightning_checkpoint(download(spec))
    path = Path(spec).expanduser()
    if path.suffix == ".ckpt" or path.is_file():
        return _from_lightning_checkpoint(path)
    return wfm.from_pretrained(spec)


def _from_lightning_checkpoint(path: Path) -> nn.Module:
    """The bare model of a ``wfm pretrain`` checkpoint: exported to a temporary folder with
    ``wfm.hub.export_checkpoint`` (read with ``wfm.safety.load_checkpoint``, every key checked)
    and loaded back with ``from_pretrained``, so every model kind the hub knows loads the same way."""
    with tempfile.TemporaryDirectory(prefix="wfm-ckpt-") as tmp:
        folder = export_checkpoint(path, Path(tmp) / "model")
        return wfm.from_pretrained(folder)


def is_mae(model: Any) -> bool:
    return isinstance(model, MaskedAutoencoder)


class MAEEncoder(nn.Module):
    """The encoder of an MAE as a feature extractor: ``mae.forward_features(csi)``, ``[B, N, dim]``.

    Its submodules are the encoder's own (patch embedding, position code, blocks, norm; the same
    objects as the MAE's), so they are what trains, moves and is saved here under the same names
    as in the MAE; the decoder is none of them (it plays no part in features and must not count
    as trainable). The forward pass is the MAE's ``forward_features``, through a reference the
    module does not register.
    """

    def __init__(self, mae: nn.Module) -> None:
        super().__init__()
        self.patch_embed, self.pos, self.blocks, self.norm = mae.patch_embed, mae.pos, mae.blocks, mae.norm
        self.out_dim = int(mae.dim)
        self.__dict__["_mae"] = mae  # not a submodule: its decoder stays out of parameters and state

    def forward(self, csi: Tensor) -> Tensor:
        return self._mae.forward_features(csi)


class RawCSIFeatures(nn.Module):
    """Baseline features: per-sample RMS-normalised raw CSI (real, imag) through a 2-layer MLP."""

    def __init__(self, shape: tuple[int, int, int], hidden: int = 256) -> None:
        super().__init__()
        self.shape = tuple(shape)
        n = 2 * math.prod(shape)
        self.net = nn.Sequential(nn.Linear(n, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.out_dim = hidden

    def forward(self, csi: Tensor) -> Tensor:
        x = torch.view_as_real(csi.to(torch.complex64)).flatten(1)
        x = x / (x.square().mean(1, keepdim=True) * 2 + 1e-30).sqrt()
        return self.net(x)


class TaskModel(nn.Module):
    """Features + linear head. ``outputs`` = classes, or regression dimensions."""

    def __init__(self, features: nn.Module, outputs: int, regression: bool = False) -> None:
        super().__init__()
        self.features = features
        self.head = nn.Linear(features.out_dim, outputs)
        self.regression = regression
        self.register_buffer("y_mean", torch.zeros(outputs))
        self.register_buffer("y_std", torch.ones(outputs))

    def set_target_stats(self, y: Tensor) -> None:
        """Standardise regression targets with these (training) values."""
        self.y_mean.copy_(y.float().mean(0))
        self.y_std.copy_(y.float().std(0).clamp_min(1e-6) if len(y) > 1 else torch.ones_like(self.y_std))

    def forward(self, csi: Tensor) -> Tensor:
        """Logits ``[B, classes]``, or standardised regression outputs."""
        h = self.features(csi)
        return self.head(h.mean(dim=1) if h.ndim == 3 else h)  # token features [B, N, dim]: their mean

    def predict(self, csi: Tensor) -> Tensor:
        out = self(csi)
        return out * self.y_std + self.y_mean if self.regression else out


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def configure_mode(model: nn.Module, mode: str, backbone: nn.Module, head: nn.Module | list[nn.Module],
                   lora_rank: int = 4, lora_alpha: float = 8.0) -> None:
    """Set what trains: ``full`` everything; ``linear-probe`` only ``head``; ``lora`` adapters on
    ``backbone``'s attention/MLP layers + ``head``; ``zero-shot`` nothing."""
    heads = head if isinstance(head, list) else [head]
    if mode == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return
    for p in model.parameters():
        p.requires_grad_(False)
    if mode == "lora":
        try:
            apply_lora(backbone, rank=lora_rank, alpha=lora_alpha)
        except ValueError as e:
            raise CheckpointError(f"LoRA: {e} (LoRA needs the sdpa attention blocks)") from e
    elif mode not in ("linear-probe", "zero-shot"):
        raise ValueError(f"unknown mode {mode!r}; choose zero-shot, linear-probe, lora or full")
    if mode != "zero-shot":
        for h in heads:
            for p in h.parameters():
                p.requires_grad_(True)


def set_train_mode(model: nn.Module, mode: str, training: bool = True) -> None:
    """Train (or eval) mode of ``model`` fine-tuned in ``mode`` (after ``configure_mode``).

    ``full`` and ``lora``: every module trains, the backbone too (its dropout and drop-path act
    as in pretraining). ``linear-probe`` and ``zero-shot``: the frozen backbone is a fixed
    feature extractor, so every module without a trainable parameter stays in eval mode (its
    features are the same in training and at test); only the head is in train mode.
    """
    model.train(training)
    if training and mode in ("linear-probe", "zero-shot"):
        for m in model.modules():
            if not any(p.requires_grad for p in m.parameters()):
                m.eval()
