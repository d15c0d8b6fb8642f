"""Training throughput and MFU logging: Lightning's ``ThroughputMonitor`` fed with our FLOP count.

``Throughput`` is ``pytorch_lightning.callbacks.ThroughputMonitor`` with

- samples and tokens per batch taken from the LightningModule's ``last_batch_stats``
  (``{"samples": int, "tokens": int}``, set by every training and validation step), and FLOPs
  from its ``flops_per_batch`` (the attribute ``ThroughputMonitor`` reads): the model's exact
  analytic matmul count for that batch on this device (``MaskedAutoencoder.forward_flops``,
  ``CausalForecaster.forward_flops``; times 3 for forward + backward in training). The tests
  check the MAE's count against ``lightning_fabric.utilities.throughput.measure_flops``;
- a rolling window of ``window`` batches (Lightning's ``window_size``), so compilation and
  warm-up batches drop out of the rates once the window has moved past them;
- the peak for MFU from Lightning's ``get_available_flops`` for the device and training precision
  (NVIDIA's dense figures: H100 SXM bf16 989.4 TFLOP/s, A100 312, TF32 half of that for fp32 when
  TF32 matmuls are allowed), looking an H200 up as the H100 SXM it matches (see
  ``available_flops``), or ``peak_tflops`` when given. On CPU or a GPU Lightning does not know,
  no MFU is logged.

Logged every ``log_every_n_steps`` (Lightning's names, prefixed by the stage, ``train`` or
``validate``): ``train/device/samples_per_sec``, ``train/device/items_per_sec`` (tokens),
``train/device/flops_per_sec`` and ``train/device/mfu`` per device; with several devices also
``train/samples_per_sec``, ``train/items_per_sec`` and ``train/flops_per_sec`` over all of them;
and the running totals ``train/time``, ``train/batches``, ``train/samples``, ``train/lengths``.
"""

from __future__ import annotations

import contextlib
from typing import Any
from unittest import mock

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.throughput import get_available_flops
from pytorch_lightning.callbacks import ThroughputMonitor

#: The name CUDA reports for an H200 SXM, and the H100 SXM's, which has the same tensor cores and
#: clocks (dense bf16 989.4 TFLOP/s). Lightning keys its H200 rows "h200 sxm1"/"h200 nvl1" (and at
#: the sparse figures), which the reported name never matches, so it finds no peak for an H200
#: (Lightning-AI/pytorch-lightning#20660).
H200, H100_SXM = "NVIDIA H200", "NVIDIA H100 80GB HBM3"


@contextlib.contextmanager
def _h200_as_h100(device: torch.device):
    """Inside, an H200 reports the H100 SXM's name to Lightning's FLOPs lookup."""
    if device.type == "cuda" and torch.cuda.get_device_name(device) == H200:
        with mock.patch("torch.cuda.get_device_name", return_value=H100_SXM):
            yield
    else:
        yield


def available_flops(device: torch.device, dtype: torch.dtype) -> int | None:
    """Lightning's ``get_available_flops`` (dense peak FLOP/s of one device at ``dtype``; TF32 for
    float32 when TF32 matmuls are allowed), with an H200 looked up as an H100 SXM; ``None`` on CPU
    and for GPUs Lightning does not know."""
    with _h200_as_h100(device):
        return get_available_flops(device, dtype)


class Throughput(ThroughputMonitor):
    """``ThroughputMonitor`` for the wfm LightningModules (see module docstring).

    Args:
        window: batches in the rolling window the rates are computed over (at least 2).
        peak_tflops: per-device peak TFLOP/s for MFU; ``None`` uses ``available_flops``.
    """

    def __init__(self, window: int = 20, peak_tflops: float | None = None) -> None:
        if window < 2:
            raise ValueError("Throughput needs window >= 2 (rates are differences over the window)")
        super().__init__(batch_size_fn=self._samples, length_fn=self._tokens, window_size=window)
        self.peak_tflops = peak_tflops
        self._module: pl.LightningModule | None = None

    def _stats(self) -> dict[str, int]:
        stats = getattr(self._module, "last_batch_stats", None)
        if not stats:
            raise RuntimeError(f"{type(self._module).__name__} must set last_batch_stats and flops_per_batch "
                               "in each step for the Throughput callback")
        return stats

    def _samples(self, batch: Any) -> int:
        return self._stats()["samples"]

    def _tokens(self, batch: Any) -> int:
        return self._stats()["tokens"]

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._module = pl_module
        with _h200_as_h100(trainer.strategy.root_device):
            super().setup(trainer, pl_module, stage)
        if self.peak_tflops is not None:
            self.available_flops = int(self.peak_tflops * 1e12)
            for throughput in self._throughputs.values():
                throughput.available_flops = self.available_flops
