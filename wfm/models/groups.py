"""Rows that pool their evidence: the channels of one window share a ``group`` id."""

from __future__ import annotations

import torch
from torch import Tensor


def group_sums(x: Tensor, group: Tensor, weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``([G, ...], [B])``: the sum of ``x`` ``[B, ...]`` over the rows of each ``group`` id (in the
    order of the sorted ids; each row's ``x`` times its ``weight`` ``[B]``, if given), and each row's
    index into them."""
    _, inv = torch.unique(group, return_inverse=True)
    if weight is not None:
        x = x * weight.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return x.new_zeros((int(inv.max()) + 1, *x.shape[1:])).index_add_(0, inv, x), inv


def pool_rows(x: Tensor, group: Tensor, weight: Tensor | None = None) -> Tensor:
    """``[B, ...]`` -> ``[B, ...]``: each row gets the sum of ``x`` over the rows of its ``group`` ``[B]``
    (each row's ``x`` times its ``weight`` ``[B]``, if given)."""
    sums, inv = group_sums(x, group, weight)
    return sums[inv]


def pool_by_group(x: Tensor, group: Tensor, weight: Tensor | None = None) -> Tensor:
    """Geometric mean of positive ``x`` ``[B, ...]`` over the rows sharing a ``group`` id ``[B]``,
    weighted by ``weight`` ``[B]`` (non-negative, not all zero in a group; None: equal weights).

    The channels of one window (the subcarriers and antennas of a CSI capture, the beams of a
    codebook) share their dynamics: whether a level holds (the mean wins) or drifts (the last
    value wins). Eight values of one series say little about that; a few hundred channels of
    the same eight packets say much more. Geometric, because the gate uses ``log`` errors and one
    wild channel must not outvote the rest."""
    if group.shape != x.shape[:1]:
        raise ValueError(f"group must be [B] = [{x.shape[0]}], got shape {tuple(group.shape)}")
    _, inv = torch.unique(group, return_inverse=True)
    flat = x.clamp_min(1e-12).log().reshape(x.shape[0], -1)
    w = flat.new_ones(x.shape[0]) if weight is None else weight.to(flat.dtype)
    total = flat.new_zeros(int(inv.max()) + 1, flat.shape[1]).index_add_(0, inv, flat * w[:, None])
    count = flat.new_zeros(int(inv.max()) + 1).index_add_(0, inv, w)[:, None]
    return (total / count.clamp_min(1e-30))[inv].reshape(x.shape).exp()


def power_weights(scale: Tensor, group: Tensor) -> Tensor:
    """``[B]``: each row's share of its group's power, ``scale^2`` over the group's mean ``scale^2``
    (``scale`` ``[B]`` or ``[B, 1]``: each row's spread, as normalisation gives it). A window's
    per-window NMSE weighs its channels so: a strong beam's error counts, a beam in the noise
    floor's hardly. A group with no spread at all weighs its rows equally."""
    s2 = scale.reshape(-1).double() ** 2
    mean = pool_rows(s2, group) / group_sizes(group)
    return torch.where(mean > 0, s2 / mean.clamp_min(1e-300), torch.ones_like(s2))


def group_sizes(group: Tensor) -> Tensor:
    """How many rows share each row's ``group`` id ``[B]``: ``[B]`` (long)."""
    _, inv = torch.unique(group, return_inverse=True)
    return torch.bincount(inv)[inv]
