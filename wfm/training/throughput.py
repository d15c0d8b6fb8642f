"""Training throughput and MFU logging.

``Throughput`` times windows of ``window`` training batches (one device synchronisation per
window, so it does not stall the GPU every step) and logs

- ``perf/samples_per_s`` and ``perf/tokens_per_s``: global (all ranks), assuming every rank
  processes the same batch size, which DDP/FSDP training does;
- ``perf/tflops_per_s``: achieved model TFLOP/s per device;
- ``perf/mfu``: model FLOPs utilisation per device, achieved / peak (GPU only).

FLOPs come from the LightningModule: after each training step it must set
``last_batch_stats = {"samples": int, "tokens": int, "flops": int}`` where ``flops`` is the
training FLOPs of that batch on this device (the MAE uses its exact matmul count times 3 for
forward + backward, see ``wfm.models.mae``). The first ``warmup_batches`` (compilation, cuDNN
autotuning, allocator growth) are not timed.

The peak is ``peak_tflops`` if given, else looked up for known GPUs from NVIDIA's dense (no
sparsity) datasheet figures for the training precision: bf16/fp16 for ``*-mixed``/``*-true``
16-bit precisions, TF32 for fp32 when TF32 matmuls are allowed, plain fp32 otherwise. On
CPU or an unknown GPU only samples/s, tokens/s and TFLOP/s are logged.
"""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

#: Dense peak TFLOP/s per GPU (SXM parts unless named); keys are matched against the device name.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H100 PCIe": {"bf16": 756.0, "tf32": 378.0, "fp32": 51.0},
    "H100": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "H200": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "A100": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
}


def precision_kind(precision: str | int | None) -> str:
    """Map a Lightning precision setting to ``bf16``/``tf32``/``fp32`` (which peak applies)."""
    p = str(precision)
    if p.startswith(("bf16", "16")):
        return "bf16"  # fp16 and bf16 share the tensor-core peak on these parts
    tf32 = torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest"
    return "tf32" if tf32 else "fp32"


def detect_peak_tflops(device_name: str, precision: str | int | None) -> float | None:
    """Peak dense TFLOP/s of a known GPU for a precision, or ``None`` if unknown."""
    for key, peaks in PEAK_TFLOPS.items():  # most specific names first
        if key in device_name:
            return peaks[precision_kind(precision)]
    return None


class Throughput(Callback):
    """Log samples/s, tokens/s, TFLOP/s and MFU (see module docstring).

    Args:
        window: batches per timing window (also how often it logs).
        warmup_batches: batches skipped before the first window.
        peak_tflops: per-device peak for MFU; ``None`` detects known GPUs.
    """

    def __init__(self, window: int = 20, warmup_batches: int = 5, peak_tflops: float | None = None) -> None:
        super().__init__()
        if window < 1 or warmup_batches < 0:
            raise ValueError("Throughput needs window >= 1 and warmup_batches >= 0")
        self.window, self.warmup_batches, self.peak_tflops = window, warmup_batches, peak_tflops
        self._reset()
        self._seen = 0

    def _reset(self) -> None:
        self._t0: float | None = None
        self._batches = self._samples = self._tokens = self._flops = 0

    def _sync(self, trainer: pl.Trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.peak_tflops is None and trainer.strategy.root_device.type == "cuda":
            name = torch.cuda.get_device_name(trainer.strategy.root_device)
            self.peak_tflops = detect_peak_tflops(name, trainer.precision)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._t0 is None and self._seen >= self.warmup_batches:
            self._sync(trainer)
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._seen += 1
        if self._t0 is None:
            return
        stats = getattr(pl_module, "last_batch_stats", None)
        if not stats:
            raise RuntimeError(f"{type(pl_module).__name__} must set last_batch_stats for the Throughput callback")
        self._batches += 1
        self._samples += stats["samples"]
        self._tokens += stats["tokens"]
        self._flops += stats["flops"]
        if self._batches < self.window:
            return
        self._sync(trainer)
        dt = time.perf_counter() - self._t0
        world = trainer.world_size
        metrics = {
            "perf/samples_per_s": self._samples * world / dt,
            "perf/tokens_per_s": self._tokens * world / dt,
            "perf/tflops_per_s": self._flops / dt / 1e12,
        }
        if self.peak_tflops:
            metrics["perf/mfu"] = metrics["perf/tflops_per_s"] / self.peak_tflops
        # Straight to the loggers: self.log would only flush on log_every_n_steps boundaries,
        # which need not line up with the window.
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
        self.last_metrics = metrics
        self._reset()
