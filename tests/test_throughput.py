"""Throughput plumbing: Lightning's FLOPs lookup (H200 included) and ``measure_flops`` against the
MAE's exact analytic FLOP count. The callback in a real fit: tests/test_pretrain.py."""

from __future__ import annotations

import pytest
import torch
from lightning_fabric.utilities.throughput import measure_flops
from torch.nn.attention import SDPBackend, sdpa_kernel

from wfm.data.synthetic import plane_wave_csi
from wfm.models import create_model
from wfm.models.masking import make_mask
from wfm.nn.patching import patch_grid
from wfm.training.throughput import Throughput, available_flops


@pytest.mark.filterwarnings("ignore:.*FLOPs not found")
def test_available_flops_is_lightnings_table_with_the_h200(monkeypatch):
    gpu = torch.device("cuda", 0)  # only its name is read: monkeypatched below, no GPU needed

    def peak(name: str, dtype: torch.dtype) -> int | None:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: name)
        return available_flops(gpu, dtype)

    assert peak("NVIDIA H100 80GB HBM3", torch.bfloat16) == int(989.4e12)  # dense, not the sparse 1979
    assert peak("NVIDIA H200", torch.bfloat16) == int(989.4e12)  # Lightning alone finds none
    assert peak("NVIDIA H100 PCIe", torch.float16) == int(756e12)
    assert peak("NVIDIA A100-SXM4-80GB", torch.bfloat16) == int(312e12)
    assert peak("Tesla K80", torch.bfloat16) is None  # unknown: no MFU
    # fp32 counts at the TF32 peak when TF32 matmuls are allowed (on Ampere or later).
    monkeypatch.setattr("lightning_fabric.accelerators.cuda._is_ampere_or_later", lambda: True)
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "high")
    assert peak("NVIDIA H200", torch.float32) == int(494.7e12)
    monkeypatch.undo()
    assert available_flops(torch.device("cpu"), torch.bfloat16) is None


def test_measure_flops_agrees_with_the_exact_forward_count():
    """``forward_flops`` (our analytic count, what training logs) is what Lightning's
    ``measure_flops`` counts: exactly for the forward pass; for forward + backward, 3 x forward less
    the one gradient backward does not compute, the input CSI's through the patch embedding
    (2 x tokens x patch_dim x dim per sample), which is 0.34 % here."""
    torch.manual_seed(0)
    model = create_model("mae_tiny", patch_size=(2, 2, 4))
    x = plane_wave_csi(2, (8, 4, 16), generator=torch.Generator().manual_seed(0))
    grid = patch_grid(x.shape, model.patch_size)
    mask = make_mask("random", 2, grid, 0.75, generator=torch.Generator().manual_seed(0))
    forward = 2 * model.forward_flops(grid, int(mask[0].sum()))
    # The math backend decomposes attention into matmuls the counter sees (the fused CPU/GPU
    # kernels are not all counted).
    with sdpa_kernel(SDPBackend.MATH):
        assert measure_flops(model, lambda: model(x, mask).loss) == forward
        train = measure_flops(model, lambda: model(x, mask).loss, loss_fn=lambda loss: loss)
    input_grad = 2 * 2 * (4 * 2 * 4) * model.patch_dim * model.dim
    assert train == 3 * forward - input_grad
    assert train == pytest.approx(3 * forward, rel=0.005)


def test_window_of_at_least_two_batches():
    with pytest.raises(ValueError, match="window >= 2"):
        Throughput(window=1)
