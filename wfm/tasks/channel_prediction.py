"""Channel prediction in time and frequency: the metric and the persistence baseline.

A prediction task is a boolean mask over ``[B, T, A, K]`` CSI (what is to be predicted) and
the metric is NMSE over the masked elements, per sample, averaged linearly and reported in dB
(as WiFo reports it).
"""

from __future__ import annotations

import torch
from torch import Tensor


def masked_nmse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Per-sample ``||pred - target||^2 / ||target||^2`` over the masked elements, shape ``[B]``."""
    if pred.shape != target.shape or mask.shape != target.shape:
        raise ValueError(f"shapes differ: pred {list(pred.shape)}, target {list(target.shape)}, "
                         f"mask {list(mask.shape)}")
    m = mask.to(torch.float64)
    err = ((pred - target).abs().to(torch.float64) ** 2 * m).flatten(1).sum(1)
    ref = (target.abs().to(torch.float64) ** 2 * m).flatten(1).sum(1)
    return err / ref.clamp_min(1e-30)


def nmse_db(nmse: Tensor) -> float:
    """``10 log10`` of the mean linear NMSE."""
    return float(10 * torch.log10(nmse.mean().clamp_min(1e-30)))


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
