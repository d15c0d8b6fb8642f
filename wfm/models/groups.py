"""Rows that pool their evidence: the channels of one window share a ``group`` id."""

from __future__ import annotations

import torch
from torch import Tensor


def pool_rows(x: Tensor, group: Tensor) -> Tensor:
    """``[B, ...]`` -> ``[B, ...]``: each row gets the sum of ``x`` over the rows of its ``group`` ``[B]``."""
    _, inv = torch.unique(group, return_inverse=True)
    return x.new_zeros((int(inv.max()) + 1, *x.shape[1:])).index_add_(0, inv, x)[inv]


def pool_by_group(x: Tensor, group: Tensor) -> Tensor:
    """Geometric mean of positive ``x`` ``[B, ...]`` over the rows sharing a ``group`` id ``[B]``.

    The channels of one window (the subcarriers and antennas of a CSI capture, the beams of a
    codebook) share their dynamics: whether a level holds (the mean wins) or drifts (the last
    value wins). Eight values of one series say little about that; a few hundred channels of
    the same eight packets say much more. Geometric, because the gate uses ``log`` errors and one
    wild channel must not outvote the rest."""
    if group.shape != x.shape[:1]:
        raise ValueError(f"group must be [B] = [{x.shape[0]}], got shape {tuple(group.shape)}")
    _, inv = torch.unique(group, return_inverse=True)
    flat = x.clamp_min(1e-12).log().reshape(x.shape[0], -1)
    total = flat.new_zeros(int(inv.max()) + 1, flat.shape[1]).index_add_(0, inv, flat)
    count = torch.bincount(inv).to(flat.dtype)[:, None]
    return (total / count)[inv].reshape(x.shape).exp()


def group_sizes(group: Tensor) -> Tensor:
    """How many rows share each row's ``group`` id ``[B]``: ``[B]`` (long)."""
    _, inv = torch.unique(group, return_inverse=True)
    return torch.bincount(inv)[inv]
