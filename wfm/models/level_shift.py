"""A clean level shift near the end of a context, and the level it moved to.

A series that holds a level and steps to another a few values before the end of its context (a
link's RSSI when a door closes, a counter's new regime, a receiver's gain step) is forecast by
the causal model drifting back towards the old level: every backtest of the context, and every
check that ``forecast`` cuts from its end, saw the old level only, and there the context mean was
right (pretrain/studies.md, "Recent evidence for the classical mix after a level shift"). No check
can see the shift, so it is tested here directly, on the values themselves:

- the context before the shift (at least ``MIN_BEFORE`` values) must hold one level: its spread
  within ``FLAT`` times its noise, read robustly from its steps (the median absolute step), which
  a daily cycle, a trend, a random walk or a burst all break, as they spread the values far more
  than they move them from one step to the next;
- the last ``n`` values (``MIN_AFTER <= n <= MAX_AFTER``) must hold a level: their spread within
  ``FLAT`` times the old level's noise, and their least-squares line rising or falling by at most
  ``DRIFT`` of the shift; a ramp (traffic falling in the evening) or a burst that does not settle
  breaks that;
- the two levels must differ by more than ``Z`` standard errors.

Where several ``n`` pass, the largest difference in standard errors wins. The forecast of such a
row is the mean of the values after the shift (:func:`level_after_shift`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: Values after the shift that it takes: fewer may be a spike that falls back.
MIN_AFTER = 3
#: The latest shift tested: a shift further back than this is in the checks' reach.
MAX_AFTER = 32
#: The old level needs at least this many values (a 16-value window of beam powers, whose profile drifts
#: across the beams, never has one: there a step is the main lobe arriving, which `check_drift` follows).
MIN_BEFORE = 16
#: Spread within each side, in units of the noise read from the steps.
FLAT = 1.5
#: Standard errors between the two levels.
Z = 8.0
#: The most the values after the shift may rise or fall along their least-squares line, as a share of
#: the shift: a level that is still moving has not settled.
DRIFT = 0.25


def step_noise(context: Tensor) -> Tensor:
    """``[B]`` float64: the noise of one value of each row of ``context`` ``[B, L]``, from its steps:
    the median absolute deviation of the first differences, scaled to a standard deviation and
    divided by sqrt(2) (a step holds the noise of two values)."""
    d = context.double().diff(dim=1)
    mad = (d - d.median(dim=1, keepdim=True).values).abs().median(dim=1).values
    return 1.4826 * mad / math.sqrt(2.0)


def level_shift_start(context: Tensor) -> Tensor:
    """``[B]`` long: the position in ``context`` ``[B, L]`` where a clean level shift starts (the
    first value at the new level), or -1 where there is none (see the module doc)."""
    x = context.double()
    b, length = x.shape
    start = torch.full((b,), -1, dtype=torch.long, device=x.device)
    shifts = range(MIN_AFTER, min(MAX_AFTER, length - MIN_BEFORE) + 1)
    # The noise is a median per row and shift; only rows that could pass need it. Both sides flat
    # within FLAT noise make the noise at least their spread / FLAT, so a passing shift also clears
    # Z standard errors of that spread (no median; the test below decides).
    maybe = torch.zeros(b, dtype=torch.bool, device=x.device)
    for n in shifts:
        after, prev = x[:, length - n:], x[:, :length - n]
        spread = torch.maximum(prev.std(dim=1), after.std(dim=1)) / FLAT
        maybe |= (after.mean(dim=1) - prev.mean(dim=1)).abs() > Z * spread * math.sqrt(1.0 / n + 1.0 / (length - n))
    rows = maybe.nonzero().flatten()
    if not len(rows):
        return start
    x = x[rows]
    best = torch.zeros(len(rows), dtype=torch.float64, device=x.device)
    found = torch.full((len(rows),), -1, dtype=torch.long, device=x.device)
    for n in shifts:
        tau = length - n
        after, prev = x[:, tau:], x[:, :tau]
        sigma = step_noise(prev)  # the old level's noise, from its own steps
        se = sigma * math.sqrt(1.0 / n + 1.0 / tau)
        jump = after.mean(dim=1) - prev.mean(dim=1)
        z = jump.abs() / se.clamp_min(1e-300)
        flat = (prev.std(dim=1) <= FLAT * sigma) & (after.std(dim=1) <= FLAT * sigma)
        # a ramp (traffic falling in the evening) spreads within a noisy old level's noise, but moves
        # along its line by a good share of the shift
        steps = torch.arange(n, dtype=torch.float64, device=x.device) - (n - 1) / 2.0
        drift = (after * steps).sum(dim=1) / (steps ** 2).sum() * (n - 1)  # the least-squares line's rise over it
        settled = drift.abs() <= DRIFT * jump.abs()
        take = flat & settled & (sigma > 0) & (z > Z) & (z > best)
        found = torch.where(take, torch.full_like(found, tau), found)
        best = torch.where(take, z, best)
    start[rows] = found
    return start


def level_after_shift(context: Tensor, start: Tensor) -> Tensor:
    """``[B]`` float64: the mean of each row's values from ``start`` on (``start`` from
    :func:`level_shift_start`; rows with -1 get their whole context's mean)."""
    x = context.double()
    pos = torch.arange(x.shape[1], device=x.device)[None]
    keep = (pos >= start.clamp_min(0)[:, None]).double()
    return (x * keep).sum(dim=1) / keep.sum(dim=1)
