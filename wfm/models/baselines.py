"""Forecasting baselines with one interface, so they run through the same evaluation as the
foundation models.

Every forecaster has::

    forecast(context: Tensor [B, L] float32, interval: Tensor [B] seconds, horizon: int) -> Tensor [B, horizon]

in the series' original scale (the causal foundation model exposes the same method).

- ``Persistence``: the last value, repeated.
- ``LinearExtrapolation(points)``: a least-squares line through the last ``points`` values,
  extended.
- ``ContextMean``: the mean of the context, repeated.
- ``SeasonalNaive(period)``: the value one period earlier (``y[t] = y[t - period]``, repeated
  for horizons beyond a period); persistence when the context is shorter than a period (or
  ``period=None``). ``seasonal_period(interval, context)`` sets the period from the data: a
  week of steps where the context holds a week, else a day (``None`` where not even a day fits).
- ``LinearPrediction(order)`` (``ar``): the classical AR channel predictor, one recursion fitted
  on the context (pooled over a window's channels when ``forecast`` gets ``group``) and run
  forward.
- ``RNNForecaster(cell="lstm"|"gru")`` and ``TransformerForecaster``: small networks trained
  from scratch with ``.fit(train_windows, val_windows, steps, lr, batch_size, seed)``. Each
  window is normalised by its context's mean and std inside the model (and the forecast scaled
  back), so one model serves series of any level and scale; the log10 of the sampling
  interval is a second input feature, so one model can see several granularities. They emit
  ``max_horizon`` steps at once (direct multi-step); longer horizons are rolled out by feeding
  forecasts back as context.

``build_baseline(name, **kw)`` builds one by name (``BASELINES`` lists them).
"""

from __future__ import annotations

import math
from typing import Any, Protocol, Sequence

import torch
from torch import Tensor, nn

from wfm.models.series_priors import DAY_S, WEEK_S, YEAR_S
from wfm.nn.blocks import Block
from wfm.training.fit_select import fit_and_select


class Forecaster(Protocol):
    """Anything with ``forecast(context [B, L], interval [B], horizon) -> [B, horizon]``."""

    def forecast(self, context: Tensor, interval: Tensor, horizon: int) -> Tensor: ...


def _check(context: Tensor, horizon: int) -> None:
    if context.ndim != 2 or context.shape[1] < 1:
        raise ValueError(f"context must be [B, L] with L >= 1, got {list(context.shape)}")
    if context.is_complex():
        raise ValueError("forecasters take real series; view complex ones as real/imag parts "
                         "(SeriesWindows(..., complex_mode='real_imag'))")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")


class Persistence:
    """The last observed value carried forward."""

    name = "persistence"

    def forecast(self, context: Tensor, interval: Tensor, horizon: int) -> Tensor:
        _check(context, horizon)
        return context[:, -1:].float().expand(-1, horizon).clone()


class LinearExtrapolation:
    """A least-squares line through the last ``points`` values, extended ``horizon`` steps."""

    name = "linear"

    def __init__(self, points: int = 4) -> None:
        if points < 2:
            raise ValueError(f"LinearExtrapolation needs points >= 2, got {points}")
        self.points = points

    def forecast(self, context: Tensor, interval: Tensor, horizon: int) -> Tensor:
        _check(context, horizon)
        y = context[:, -self.points:].to(torch.float64)
        n = y.shape[1]
        if n < 2:
            return Persistence().forecast(context, interval, horizon)
        x = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
        slope = (y * x).sum(1, keepdim=True) / (x * x).sum()
        level = y.mean(1, keepdim=True)
        steps = (n - 1) / 2 + torch.arange(1, horizon + 1, dtype=torch.float64)
        return (level + slope * steps).float()


class ContextMean:
    """The mean of the context carried forward."""

    name = "mean"

    def forecast(self, context: Tensor, interval: Tensor, horizon: int) -> Tensor:
        _check(context, horizon)
        return context.to(torch.float64).mean(1, keepdim=True).float().expand(-1, horizon).clone()


class LinearPrediction:
    """Linear prediction (the classical AR channel predictor): a recursion fitted to the context
    by least squares, its order picked by a backtest on the context, run forward
    (:mod:`wfm.models.linear_prediction`).

    With ``group`` (each row's window index, as ``forecast_series`` passes it) the rows of one
    window (a CSI window's antennas and subcarriers, real and imaginary parts) fit one recursion
    together; without it every row fits its own. Every group must hold the same number of
    consecutive rows.
    """

    name = "ar"

    def __init__(self, order: int | None = None) -> None:
        if order is not None and order < 1:
            raise ValueError(f"LinearPrediction needs order >= 1 or None, got {order}")
        self.order = order

    def forecast(self, context: Tensor, interval: Tensor, horizon: int, group: Tensor | None = None) -> Tensor:
        from wfm.models.linear_prediction import ar_forecast_rows

        _check(context, horizon)
        b = context.shape[0]
        if group is not None and b:
            size = int((group == group[0]).sum())
            if b % size or not bool((group.view(-1, size) == group.view(-1, size)[:, :1]).all()):
                raise ValueError("LinearPrediction needs groups of equal size of consecutive rows")
        return ar_forecast_rows(context, horizon, group, self.order).float()


class ProfileDrift:
    """The beam-tracking forecast (:func:`wfm.models.profile_drift.drift_forecast`): each window's
    power profile over its ordered channels shifted by its peak's drift. Needs ``group`` and
    ``ordered=True`` (``forecast_series`` passes both for a view whose channels are ordered); a
    group that is no power profile (fewer than 3 rows, a negative value) keeps its last values."""

    name = "drift"

    def forecast(self, context: Tensor, interval: Tensor, horizon: int, group: Tensor | None = None,
                 ordered: bool = False) -> Tensor:
        from wfm.models.profile_drift import drift_forecast

        _check(context, horizon)
        if group is None or not ordered:
            raise ValueError("ProfileDrift forecasts a window's ordered channels together: pass group= and ordered=True")
        return drift_forecast(context, horizon, group)[0].float()


def seasonal_period(interval: float, context: int | None = None) -> int | None:
    """Seasonal period in steps for series sampled every ``interval`` seconds.

    A week (``604800 / interval`` steps, rounded) where ``context`` holds at least a week, else a
    day (``86400 / interval``) where ``context`` holds at least a day (or ``context`` is None);
    for series whose week is under 2 steps (weekly, monthly, quarterly: an interval over 3.5
    days), a year (:data:`YEAR_S` ``/ interval``: 52 weekly, 12 monthly, 4 quarterly steps) where
    the context holds one. ``None`` where the context holds none of these (1-ms CSI, 0.1-s beam
    series, yearly values), i.e. there is no cycle to copy and the seasonal baseline has nothing
    to add to persistence.
    """
    if not interval > 0:
        raise ValueError(f"interval must be > 0 seconds, got {interval}")
    day, week, year = round(DAY_S / interval), round(WEEK_S / interval), round(YEAR_S / interval)
    if week < 2:  # a week is at most one step: the cycle to copy is the year's
        return year if year >= 2 and (context is None or context >= year) else None
    if context is None:
        return day if day >= 2 else week
    if context >= week:
        return week
    return day if day >= 2 and context >= day else None


class SeasonalNaive:
    """``y[t] = y[t - period]``; persistence when the context is shorter than a period or the
    period is ``None`` (see ``seasonal_period``)."""

    name = "seasonal"

    def __init__(self, period: int | None) -> None:
        if period is not None and period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.period = period

    def forecast(self, context: Tensor, interval: Tensor, horizon: int) -> Tensor:
        _check(context, horizon)
        L, p = context.shape[1], self.period
        if p is None or L < p:
            return Persistence().forecast(context, interval, horizon)
        season = context[:, L - p:].float()
        reps = math.ceil(horizon / p)
        return season.repeat(1, reps)[:, :horizon].clone()


# ---------------------------------------------------------------------------- trainable


def stack_windows(windows: Any, max_windows: int | None = None, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """``(context [N, L], target [N, H], interval [N])`` of a window dataset (``SeriesWindows``
    or any sequence of dicts with those keys); a seeded random subset of ``max_windows``."""
    n = len(windows)
    if n == 0:
        raise ValueError("no windows to stack (series shorter than context + horizon?)")
    idx: Sequence[int] = range(n)
    if max_windows is not None and n > max_windows:
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(n, generator=gen)[:max_windows].sort().values.tolist()
    items = [windows[i] for i in idx]
    if any(bool(it.get("complex", False)) or it["context"].is_complex() for it in items[:1]):
        raise ValueError("forecasters take real series; use SeriesWindows(..., complex_mode='real_imag')")
    ctx = torch.stack([it["context"] for it in items]).float()
    tgt = torch.stack([it["target"] for it in items]).float()
    itv = torch.stack([torch.as_tensor(it["interval"], dtype=torch.float32) for it in items])
    return ctx, tgt, itv


class _Normalised(nn.Module):
    """Shared machinery of the trainable forecasters: per-window scaling and the rollout.

    Subclasses implement ``_net(x [B, L, 2]) -> [B, max_horizon]`` on normalised inputs.
    """

    name = "trainable"

    def __init__(self, max_horizon: int) -> None:
        super().__init__()
        self.max_horizon = int(max_horizon)

    @staticmethod
    def _scale(context: Tensor) -> tuple[Tensor, Tensor]:
        mean = context.mean(1, keepdim=True)
        # The std floor keeps flat contexts from blowing up; relative to the level, or 1e-3.
        std = context.std(1, keepdim=True, unbiased=False)
        floor = 1e-3 * mean.abs().clamp_min(1.0)
        return mean, torch.maximum(std, floor)

    def _features(self, z: Tensor, interval: Tensor) -> Tensor:
        li = torch.log10(interval.float().clamp_min(1e-9))[:, None, None].expand(-1, z.shape[1], 1)
        return torch.cat([z[..., None], li], dim=-1)

    def _net(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, context: Tensor, interval: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Normalised ``[B, max_horizon]`` forecast and the ``(mean, std)`` used."""
        mean, std = self._scale(context)
        return self._net(self._features((context - mean) / std, interval)), mean, std

    @torch.no_grad()
    def forecast(self, context: Tensor, interval: Tensor, horizon: int) -> Tensor:
        _check(context, horizon)
        self.eval()
        dev = next(self.parameters()).device
        ctx = context.float().to(dev)
        interval = torch.as_tensor(interval, dtype=torch.float32, device=dev).expand(ctx.shape[0])
        out: list[Tensor] = []
        need = horizon
        while need > 0:
            z, mean, std = self(ctx, interval)
            step = z * std + mean
            out.append(step[:, :need])
            need -= step.shape[1]
            ctx = torch.cat([ctx, step], 1)[:, -context.shape[1]:]
        return torch.cat(out, 1)[:, :horizon].cpu()

    def fit(self, train_windows: Any, val_windows: Any = None, steps: int = 500, lr: float = 1e-3,
            batch_size: int = 256, seed: int = 0, max_windows: int | None = 200_000,
            eval_every: int = 50, progress: Any = None) -> "_Normalised":
        """Train on windows (``SeriesWindows`` or a tuple ``(context, target, interval)``) with
        AdamW on the MSE in normalised space; with ``val_windows`` (not empty), keep the weights of
        the best validation loss (checked every ``eval_every`` steps), else the last weights;
        ``selection`` says which were kept. ``progress(step, loss)`` is called after every step.
        Deterministic for a ``seed``."""
        torch.manual_seed(seed)
        for m in self.modules():  # fit trains from scratch: the initial weights follow the seed too
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()
        ctx, tgt, itv = train_windows if isinstance(train_windows, tuple) else stack_windows(train_windows, max_windows, seed)
        if tgt.shape[1] < self.max_horizon:
            raise ValueError(f"training targets have {tgt.shape[1]} steps, the model predicts {self.max_horizon}")
        tgt = tgt[:, :self.max_horizon]
        val = None
        if val_windows is not None and len(val_windows[0] if isinstance(val_windows, tuple) else val_windows):
            val = val_windows if isinstance(val_windows, tuple) else stack_windows(val_windows, 20_000, seed)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)

        def train_step(step: int) -> Tensor:
            idx = torch.randint(0, len(ctx), (min(batch_size, len(ctx)),), generator=gen)
            z, mean, std = self(ctx[idx], itv[idx])
            loss = ((z - (tgt[idx] - mean) / std) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.parameters(), 1.0)
            opt.step()
            sched.step()
            return loss

        fit_and_select(self, train_step, steps, None if val is None else lambda: self.val_loss(*val),
                       eval_every, progress=progress)
        return self

    @torch.no_grad()
    def val_loss(self, ctx: Tensor, tgt: Tensor, itv: Tensor) -> float:
        """Mean normalised MSE on validation windows."""
        self.eval()
        total, n = 0.0, 0
        for a in range(0, len(ctx), 4096):
            z, mean, std = self(ctx[a:a + 4096], itv[a:a + 4096])
            t = (tgt[a:a + 4096, :self.max_horizon] - mean) / std
            total += float(((z - t) ** 2).sum())
            n += t.numel()
        return total / max(n, 1)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class RNNForecaster(_Normalised):
    """LSTM or GRU encoder over the context; a linear head on its last state gives
    ``max_horizon`` steps."""

    def __init__(self, cell: str = "lstm", max_horizon: int = 16, hidden: int = 64, layers: int = 1) -> None:
        super().__init__(max_horizon)
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
        self.name = cell
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(2, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, max_horizon)

    def _net(self, x: Tensor) -> Tensor:
        y, _ = self.rnn(x)
        return self.head(y[:, -1])


class TransformerForecaster(_Normalised):
    """A small pre-norm transformer encoder over the context values (sin-cos positions counted
    back from the last value, so any context length works); the last token's state gives
    ``max_horizon`` steps. Its blocks are the models' (``wfm.nn.blocks.Block``: timm's ``Block``,
    bidirectional attention, GELU MLP of width ``2 dim``)."""

    name = "transformer"

    def __init__(self, max_horizon: int = 16, dim: int = 64, depth: int = 2, heads: int = 4) -> None:
        super().__init__(max_horizon)
        self.dim = dim
        self.embed = nn.Linear(2, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio=2.0) for _ in range(depth))  # the models' timm block
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, max_horizon)

    def _pos(self, n: int, device: torch.device) -> Tensor:
        pos = torch.arange(n - 1, -1, -1, device=device, dtype=torch.float32)[:, None]
        freq = torch.exp(torch.arange(0, self.dim, 2, device=device) * (-math.log(1e4) / self.dim))
        pe = torch.zeros(n, self.dim, device=device)
        pe[:, 0::2] = torch.sin(pos * freq)
        pe[:, 1::2] = torch.cos(pos * freq)
        return pe

    def _net(self, x: Tensor) -> Tensor:
        h = self.embed(x) + self._pos(x.shape[1], x.device)
        for blk in self.blocks:
            h = blk(h)
        return self.head(self.norm(h[:, -1]))


BASELINES = ("persistence", "linear", "mean", "seasonal", "ar", "lstm", "gru", "transformer")
#: The closed-form baselines that set the "best classical" reference of a task (DESIGN.md).
CLASSICAL = ("persistence", "mean", "seasonal")


def build_baseline(name: str, **kw: Any) -> Any:
    """A forecasting baseline by name (``BASELINES``); keyword arguments go to its class."""
    table = {
        "persistence": Persistence,
        "linear": LinearExtrapolation,
        "mean": ContextMean,
        "seasonal": SeasonalNaive,
        "ar": LinearPrediction,
        "lstm": lambda **k: RNNForecaster(cell="lstm", **k),
        "gru": lambda **k: RNNForecaster(cell="gru", **k),
        "transformer": TransformerForecaster,
    }
    if name not in table:
        raise KeyError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    return table[name](**kw)


def is_trainable(forecaster: Any) -> bool:
    """Whether a forecaster has weights to fit."""
    return isinstance(forecaster, nn.Module) and hasattr(forecaster, "fit")
