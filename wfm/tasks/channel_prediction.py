"""Channel prediction in time and frequency: the persistence baseline.

A prediction task is a boolean mask over ``[B, T, A, K]`` CSI (what is to be predicted) and
the metric is NMSE over the masked elements, per sample, averaged linearly and reported in dB
(as WiFo reports it): ``wfm.tasks.metrics.window_nmse`` with the mask.
"""

from __future__ import annotations

import torch
from torch import Tensor


def persistence(csi: Tensor, mask: Tensor, axis: str) -> Tensor:
    """The last observed value carried forward along ``axis`` ("time" or "frequency").

    For a temporal mask (the last steps are hidden) every hidden step gets the last visible
    step; for a frequency mask (the upper subcarriers are hidden) every hidden subcarrier gets
    the last visible one. Visible elements are returned unchanged.
    """
    dim = {"time": 1, "frequency": 3}[axis]
    hidden = mask.any(dim=tuple(d for d in range(mask.ndim) if d != dim))  # [size along dim]
    if not hidden.any():
        return csi.clone()
    first = int(hidden.nonzero()[0])
    if first == 0 or not hidden[first:].all():
        raise ValueError(f"persistence along {axis} needs a visible head and a hidden tail")
    last_seen = csi.narrow(dim, first - 1, 1)
    return torch.where(mask, last_seen.expand_as(csi), csi)
