"""Fixed 3D sin-cos position code for a (time, antenna, subcarrier) patch grid.

The width ``dim`` is split into three even parts, one per axis; each part is the usual 1D
transformer code ``[sin(p * w_i), cos(p * w_i)]`` with ``w_i = 10000^(-2i/d)``. Time gets
the remainder so any even ``dim`` works (e.g. 64 -> 24 + 20 + 20).

Because the code is a function of the grid, not a learned table, one model can take batches
of different shapes (``SinCos3D`` caches one table per grid size and device).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

Grid = tuple[int, int, int]


def axis_dims(dim: int) -> tuple[int, int, int]:
    """Split ``dim`` into even (time, antenna, subcarrier) widths that sum to ``dim``."""
    if dim % 2 != 0 or dim < 6:
        raise ValueError(f"3D sin-cos position code needs an even width >= 6; got {dim}")
    base = (dim // 6) * 2
    return dim - 2 * base, base, base


def sincos_1d(positions: Tensor, dim: int) -> Tensor:
    """1D sin-cos code ``[len(positions), dim]`` (``dim`` even)."""
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    angles = positions.double()[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_3d(grid: Grid, dim: int) -> Tensor:
    """3D sin-cos code ``[gt*ga*gk, dim]`` in token order (time slowest, subcarrier fastest)."""
    gt, ga, gk = grid
    dt, da, dk = axis_dims(dim)
    et = sincos_1d(torch.arange(gt), dt)[:, None, None, :].expand(gt, ga, gk, dt)
    ea = sincos_1d(torch.arange(ga), da)[None, :, None, :].expand(gt, ga, gk, da)
    ek = sincos_1d(torch.arange(gk), dk)[None, None, :, :].expand(gt, ga, gk, dk)
    return torch.cat([et, ea, ek], dim=-1).reshape(gt * ga * gk, dim)


class SinCos3D(nn.Module):
    """Returns the ``[1, N, dim]`` code for a grid; tables are cached, not saved in checkpoints."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        axis_dims(dim)  # validate early
        self.dim = dim
        self._cache: dict[tuple[Grid, torch.device, torch.dtype], Tensor] = {}

    def forward(self, grid: Grid, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
        key = (tuple(grid), torch.device(device), dtype)
        table = self._cache.get(key)
        if table is None:
            table = sincos_3d(grid, self.dim).to(device=device, dtype=dtype)[None]
            self._cache[key] = table
        return table
