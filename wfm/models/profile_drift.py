"""A power profile that drifts along ordered channels: the classical beam-tracking forecast.

The received power of a codebook's beams, in angular order, is a profile whose peak moves across
the beams as the user moves (DeepSense 6G: 0.65-0.76 beams a frame). A forecaster of each beam on
its own (persistence, the mean, the causal model's univariate priors) cannot see that motion; the
profile shifted by the peak's drift does. :func:`drift_forecast` estimates it:

- the profile's centroid at every step, over the channels, weighted by the squared power above the
  profile's median (the main lobe, not the floor);
- its drift: the least-squares slope of the last ``fit`` centroids (channels per step);
- the forecast ``h`` steps ahead: the mean of the last ``average`` profiles, shifted by the drift
  times ``h`` (plus half the averaged span), with linear interpolation between channels and the
  edge channels held.

``average=2, fit=8`` was chosen on generated 60 GHz street sweeps (``beam-street-60g``, 1280
windows of 16 -> 4 at 100 ms: 0.334x persistence; ``pretrain/studies.md``, "A beam profile that
drifts"). It applies to groups of at least 3 non-negative rows (powers); other rows get no
forecast (``ok`` False).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: The fewest ordered channels a profile needs for its centroid to move.
MIN_CHANNELS = 3


def _profile_drift(x: Tensor, horizon: int, average: int, fit: int) -> Tensor:
    """``x`` ``[G, C, L]`` float64 profiles (C ordered channels, L steps) -> ``[G, C, horizon]``."""
    g, c, length = x.shape
    above = (x - x.quantile(0.5, dim=1, keepdim=True)).clamp_min(0.0) ** 2  # [G, C, L]
    mass = above.sum(dim=1)  # [G, L]
    pos = torch.arange(c, dtype=x.dtype, device=x.device)
    centroid = (above * pos[None, :, None]).sum(dim=1) / mass.clamp_min(1e-300)
    n = min(fit, length)
    t = torch.arange(n, dtype=x.dtype, device=x.device)
    w = (mass[:, -n:] > 0).to(x.dtype)  # a flat profile has no centroid: left out of the fit
    cy = centroid[:, -n:]
    sw = w.sum(dim=1)
    tm = (w * t).sum(dim=1) / sw.clamp_min(1.0)
    ym = (w * cy).sum(dim=1) / sw.clamp_min(1.0)
    var = (w * (t - tm[:, None]) ** 2).sum(dim=1)
    slope = torch.where((sw >= 2) & (var > 0),
                        (w * (t - tm[:, None]) * (cy - ym[:, None])).sum(dim=1) / var.clamp_min(1e-300),
                        torch.zeros_like(var))  # [G]
    k = min(average, length)
    base = x[..., -k:].mean(dim=-1)  # [G, C]
    steps = torch.arange(1, horizon + 1, dtype=x.dtype, device=x.device) + (k - 1) / 2
    src = (pos[None, :, None] - slope[:, None, None] * steps[None, None, :]).clamp(0, c - 1)  # [G, C, H]
    lo = src.floor().long().clamp(max=c - 2)
    frac = src - lo.to(x.dtype)
    flat = base[:, :, None].expand(g, c, horizon)
    return torch.gather(flat, 1, lo) * (1 - frac) + torch.gather(flat, 1, lo + 1) * frac


def drift_forecast(context: Tensor, horizon: int, group: Tensor, average: int = 2,
                   fit: int = 8) -> tuple[Tensor, Tensor]:
    """The drifting-profile forecast of every row of ``context`` ``[B, L]``: ``(forecast [B,
    horizon] float64, ok [B] bool)``. ``group`` ``[B]``: each row's window; a window's rows, in the
    order given, are its channels along one axis (a codebook's beams in angular order). Rows of a
    group with fewer than :data:`MIN_CHANNELS` rows or any negative value get ``ok`` False (and
    their last value as the forecast)."""
    if context.ndim != 2 or group.shape != context.shape[:1]:
        raise ValueError(f"drift_forecast needs context [B, L] and group [B], got {tuple(context.shape)} "
                         f"and {tuple(group.shape)}")
    x = context.to(torch.float64)
    out = x[:, -1:].expand(-1, horizon).clone()
    ok = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    if not len(x):
        return out, ok
    order = torch.argsort(group, stable=True)  # a group's rows together, in their given order
    _, inverse, counts = torch.unique(group[order], return_inverse=True, return_counts=True)
    start = torch.cumsum(counts, 0) - counts
    negative = torch.zeros(len(counts), device=x.device).index_add_(0, inverse, (x[order] < 0).any(dim=1).float())
    nonneg = negative == 0
    for size in counts.unique().tolist():
        pick = ((counts == size) & nonneg).nonzero().flatten()
        if size < MIN_CHANNELS or not len(pick):
            continue
        rows = order[(start[pick][:, None] + torch.arange(size, device=x.device)).flatten()]  # [G * size]
        pred = _profile_drift(x[rows].view(len(pick), size, -1), horizon, average, fit)
        out[rows] = pred.reshape(-1, horizon)
        ok[rows] = True
    return out, ok
