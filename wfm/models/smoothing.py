"""Simple exponential smoothing: the local-level forecast, with its smoothing weight fitted on the context.

A series that is a slowly wandering level seen through noise (a random walk plus white noise: a
link's gain that drifts under measurement noise, a cell's load between its quiet and busy hours)
is forecast best by neither its last value (all noise) nor its mean (a level long gone) but by
an exponentially weighted mean of the recent values, ``level_t = level_{t-1} + alpha (x_t -
level_{t-1})``, flat over the horizon. ``alpha`` is the steady-state Kalman gain of that model,
set by the ratio of the level's steps to the noise; here it is fitted on the context by the
one-step errors it would have made (Hyndman and Athanasopoulos, "Forecasting: principles and
practice", ch. 8.1), among :data:`ALPHAS`. ``alpha = 1`` is persistence, a small ``alpha`` nears
the mean of the older values.

One pass over the context gives the fitted level at several cuts at once (:func:`ses_levels`),
each fitted on the values before its cut only, so that the checks of
:class:`wfm.models.causal.CausalForecaster` can backtest it honestly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from wfm.models.groups import pool_rows

#: The smoothing weights the fit chooses among (log-spaced below 0.1, where the level of a
#: nearly still series moves in small steps; 1 is persistence).
ALPHAS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def ses_levels(x: Tensor, cuts: list[int], group: Tensor | None = None) -> list[Tensor]:
    """The fitted level ``[B]`` (float64) of ``x`` ``[B, L]`` at each of ``cuts`` (``2 <= cut <= L``):
    simple exponential smoothing of ``x[:, :cut]`` started at its first value, with the ``alpha``
    of :data:`ALPHAS` whose one-step errors over ``x[:, :cut]`` sum smallest (each row's over its
    variance up to the cut and, with ``group`` ``[B]``, summed over the group's rows, which then
    share one ``alpha``)."""
    if not cuts or min(cuts) < 2 or max(cuts) > x.shape[1]:
        raise ValueError(f"cuts must lie in 2..{x.shape[1]}, got {cuts}")
    x = x.double()
    alphas = torch.tensor(ALPHAS, dtype=torch.float64, device=x.device)
    level = x[:, :1].expand(-1, len(ALPHAS)).clone()
    sse = torch.zeros_like(level)
    at, stops = {}, set(cuts)
    for t in range(1, max(cuts)):
        err = x[:, t:t + 1] - level
        sse += err * err
        level = level + alphas * err
        if t + 1 in stops:
            at[t + 1] = (level.clone(), sse.clone())
    out = []
    for cut in cuts:
        lev, err = at[cut]
        err = err / x[:, :cut].var(dim=1, unbiased=False).clamp_min(1e-300)[:, None]
        if group is not None:
            err = pool_rows(err, group)
        out.append(lev.gather(1, err.argmin(dim=1, keepdim=True))[:, 0])
    return out


def ses_forecast(x: Tensor, horizon: int, group: Tensor | None = None) -> Tensor:
    """``[B, horizon]`` float64: the fitted level of ``x`` ``[B, L]`` (``L >= 2``) held over the horizon."""
    return ses_levels(x, [x.shape[1]], group)[0][:, None].expand(-1, horizon)
