"""Rows that pool their evidence: the channels of one window share a ``group`` id."""

from __future__ import annotations

import torch
from torch import Tensor


def pool_rows(x: Tensor, group: Tensor) -> Tensor:
    """``[B, ...]`` -> ``[B, ...]``: each row gets the sum of ``x`` over the rows of its ``group`` ``[B]``."""
    _, inv = torch.unique(group, return_inverse=True)
    return x.new_zeros((int(inv.max()) + 1, *x.shape[1:])).index_add_(0, inv, x)[inv]
