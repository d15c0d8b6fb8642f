"""Series forecasting evaluation: any forecaster, baseline or foundation model, on the same windows.

A forecaster is anything with ``forecast(context [B, L] float32, interval [B] seconds, horizon)
-> [B, horizon]`` in the series' original scale (``wfm.models.baselines`` and the causal model).
``evaluate_forecaster`` runs it over every window of a ``SeriesWindows`` view (context ``L``,
target ``H`` = the view's horizon) and reports, over the whole set:

- ``nmse`` / ``nmse_db``: the series NMSE of ``wfm.tasks.metrics.series_nmse``: the error energy
  over the energy of ``target - mean(context)``, summed over all windows and steps; 0 dB is
  the skill of forecasting the context mean, lower is better;
- ``window_nmse`` / ``window_nmse_db``: the per-window NMSE, the metric every task reports
  (``wfm.tasks.metrics.window_nmse``): the mean over windows of ``sum err^2 / sum target^2``;
- ``mae`` (the series' unit) and ``smape`` (percent);
- ``per_step``: the three metrics at every step ``1..H`` (lists of length ``H``);
- ``at_horizon``: the metrics of the steps ``1..h`` for each requested ``h <= H``;
- ``windows``: how many windows were scored.

``quantile_coverage`` checks the calibration of a model with a quantile head (the causal
forecaster): the share of targets at or below each forecast quantile, which should be its level.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from wfm.tasks.metrics import mae, series_nmse, smape, to_db, window_nmse_scores


def _metrics(pred: Tensor, target: Tensor, context: Tensor) -> dict[str, float]:
    n = float(series_nmse(pred, target, context))
    return {"nmse": n, "nmse_db": to_db(n), **window_nmse_scores(pred, target), "mae": float(mae(pred, target)),
            "smape": float(smape(pred, target))}


def score_forecasts(pred: Tensor, target: Tensor, context: Tensor,
                    horizons: Sequence[int] = (1, 4, 16)) -> dict[str, Any]:
    """The metrics of the module doc from stacked forecasts ``pred``/``target`` ``[N, H]`` and
    contexts ``[N, L]``."""
    if pred.shape != target.shape:
        raise ValueError(f"forecast shape {list(pred.shape)} differs from target {list(target.shape)}")
    H = target.shape[1]
    out: dict[str, Any] = {"windows": int(target.shape[0]), "horizon": H, **_metrics(pred, target, context)}
    step_nmse = series_nmse(pred, target, context, dim=0)
    out["per_step"] = {
        "nmse": [float(x) for x in step_nmse],
        "nmse_db": [to_db(x) for x in step_nmse],
        "mae": [float(x) for x in mae(pred, target, dim=0)],
        "smape": [float(x) for x in smape(pred, target, dim=0)],
    }
    out["at_horizon"] = {int(h): _metrics(pred[:, :h], target[:, :h], context) for h in horizons if 1 <= h <= H}
    return out


def pools_channels(forecaster: Any) -> bool:
    """Whether ``forecaster.forecast`` takes ``group`` (the causal model: a window's channels
    pool their backtest evidence, :func:`wfm.models.groups.pool_by_group`)."""
    return "group" in inspect.signature(forecaster.forecast).parameters


#: Series kinds that are ranges, the distance from a fixed point to something moving (a dataset's
#: ``series_kind``, ``wfm data import ... --series-kind``): a forecaster whose ``forecast`` takes
#: ``ranges`` is told so (the causal model's ``check_range``: a constant velocity's range).
RANGE_KINDS = ("distance", "range")


def range_hint(forecaster: Any, ranges: bool) -> dict[str, bool]:
    """``{"ranges": True}`` where the rows are ranges and ``forecaster.forecast`` takes the hint, else ``{}``."""
    fn = getattr(forecaster, "forecast", None)
    return {"ranges": True} if ranges and fn is not None and "ranges" in inspect.signature(fn).parameters else {}


@torch.no_grad()
def forecast_series(forecaster: Any, series: Tensor, interval: float, horizon: int, per_group: int = 1,
                    batch_size: int = 8192, quantiles_into: list | None = None, ordered: bool = False,
                    ranges: bool = False) -> Tensor:
    """``forecaster.forecast`` of every row of ``series`` ``[B, L]``: ``[B, horizon]`` (float32, CPU).

    Consecutive runs of ``per_group`` rows are the channels of one window (the antennas and
    subcarriers of a CSI window, the beams of a codebook). A forecaster whose ``forecast`` takes
    ``group`` (the causal model) gets each row's window index, so the channels pool their
    evidence of which classical estimator fits (:func:`wfm.models.groups.pool_by_group`); any
    other forecaster sees independent rows. Batches hold whole windows. ``ordered``: a window's
    channels, in row order, lie along one axis (a codebook's beams in angular order); a forecaster
    whose ``forecast`` takes ``ordered`` is told so (the causal model's ``check_drift``). ``ranges``:
    every row is a range (a user's distance to its base station); a forecaster whose ``forecast``
    takes ``ranges`` is told so (the causal model's ``check_range``).

    With a list ``quantiles_into`` and a forecaster with ``forecast_with_quantiles``, the point
    forecasts come from that (one run) and each batch's ``[b, horizon, Q]`` quantiles are appended.
    """
    if per_group < 1 or len(series) % per_group:
        raise ValueError(f"{len(series)} series are not whole windows of {per_group} channels")
    grouped = per_group > 1 and pools_channels(forecaster)
    tell_order = grouped and ordered and "ordered" in inspect.signature(forecaster.forecast).parameters
    step = max(1, batch_size // per_group) * per_group
    out = []
    for a in range(0, len(series), step):
        ctx = series[a:a + step].float()
        itv = torch.full((len(ctx),), float(interval))
        kw = {"group": torch.arange(a, a + len(ctx)) // per_group} if grouped else {}
        if tell_order:
            kw["ordered"] = True
        kw.update(range_hint(forecaster, ranges))
        if quantiles_into is not None and hasattr(forecaster, "forecast_with_quantiles"):
            pred, quant = forecaster.forecast_with_quantiles(ctx, itv, horizon, **kw)
            quantiles_into.append(quant.detach().float().cpu())
        else:
            pred = forecaster.forecast(ctx, itv, horizon, **kw)
        out.append(torch.as_tensor(pred).detach().float().cpu().reshape(len(ctx), horizon))
    return torch.cat(out) if out else series.new_zeros(0, horizon)


@torch.no_grad()
def collect_forecasts(forecaster: Any, windows: Any, batch_size: int = 1024,
                      progress: Callable[[int], None] | None = None,
                      quantiles: int = 0, quantiles_into: list | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Run ``forecaster`` over every window: ``(pred, target, context)``, each stacked ``[N, .]``.

    With ``quantiles=Q`` it asks ``forecast(..., quantiles=True)`` for ``[B, H, Q]`` forecasts.
    With a list ``quantiles_into`` (and a forecaster with ``forecast_with_quantiles``), the point
    forecasts come from that one run and each batch's ``[B, H, Q]`` quantiles are appended to
    the list: what a second pass with ``quantiles=Q`` would give, for half the time.
    """
    n = len(windows)
    if n == 0:
        raise ValueError("no windows to evaluate (series shorter than context + horizon?)")
    horizon = int(windows.horizon) if hasattr(windows, "horizon") else int(windows[0]["target"].shape[0])
    preds, targets, contexts = [], [], []
    for a in range(0, n, batch_size):
        items = [windows[i] for i in range(a, min(a + batch_size, n))]
        ctx = torch.stack([it["context"] for it in items])
        if ctx.is_complex():
            raise ValueError("forecasters take real series; use SeriesWindows(..., complex_mode='real_imag')")
        ctx = ctx.float()
        itv = torch.stack([torch.as_tensor(it["interval"], dtype=torch.float32) for it in items])
        kw = range_hint(forecaster, all(it.get("kind") in RANGE_KINDS for it in items))
        if quantiles_into is not None and not quantiles:
            pred, q = forecaster.forecast_with_quantiles(ctx, itv, horizon, **kw)
            quantiles_into.append(torch.as_tensor(q).detach().float().cpu())
        elif quantiles:
            pred = forecaster.forecast(ctx, itv, horizon, quantiles=True, **kw)
        else:
            pred = forecaster.forecast(ctx, itv, horizon, **kw)
        pred = torch.as_tensor(pred).detach().float().cpu()
        expected = (len(items), horizon, quantiles) if quantiles else (len(items), horizon)
        if pred.shape != expected:
            raise ValueError(f"{type(forecaster).__name__}.forecast returned {list(pred.shape)}, "
                             f"expected {list(expected)}")
        preds.append(pred)
        targets.append(torch.stack([it["target"] for it in items]).float())
        contexts.append(ctx)
        if progress is not None:
            progress(len(items))
    return torch.cat(preds), torch.cat(targets), torch.cat(contexts)


def evaluate_forecaster(forecaster: Any, windows: Any, horizons: Sequence[int] = (1, 4, 16),
                        batch_size: int = 1024, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Score ``forecaster`` on every window of ``windows`` (metrics per step and overall)."""
    pred, target, context = collect_forecasts(forecaster, windows, batch_size, progress)
    return score_forecasts(pred, target, context, horizons)


def quantile_coverage(model: Any, windows: Any, batch_size: int = 1024) -> dict[str, Any]:
    """Calibration of ``model``'s quantile head over every window and step of ``windows``.

    Returns ``below``: for each level ``q`` of ``model.quantile_levels``, the share of targets at
    or below the forecast ``q``-quantile (calibrated: ``q``); ``interval`` / ``interval_nominal``:
    the share of targets inside the outermost pair of quantiles and the share it should hold
    (e.g. 0.8 for 0.1..0.9); and ``quantile_loss``, the weighted quantile loss (a proper score:
    coverage alone rewards bands that are merely wide).
    """
    levels = tuple(getattr(model, "quantile_levels", ()))
    if len(levels) < 2:
        raise ValueError(f"{type(model).__name__} has no quantile head with two or more levels")
    q, target, _ = collect_forecasts(model, windows, batch_size, quantiles=len(levels))
    return coverage(q, target, levels)


def weighted_quantile_loss(q: Tensor, target: Tensor, levels: Sequence[float]) -> float:
    """Weighted quantile loss of quantile forecasts ``q`` ``[N, H, Q]`` on ``target`` ``[N, H]``:
    per window, twice the pinball loss summed over steps and levels, over ``sum |target|``; the
    mean over windows. A proper score (lower is better) that rewards sharp bands as well as
    covering ones; for a point forecast at every level it is the window's relative absolute error."""
    lv = torch.tensor(tuple(levels), dtype=q.dtype, device=q.device)
    d = target[..., None] - q
    pinball = torch.maximum(lv * d, (lv - 1) * d).sum(dim=(1, 2))
    return float((2 * pinball / target.abs().sum(dim=1).clamp_min(1e-12)).mean())


def coverage(q: Tensor, target: Tensor, levels: Sequence[float]) -> dict[str, Any]:
    """:func:`quantile_coverage` of quantile forecasts ``q`` ``[N, H, Q]`` (levels ``levels``) on
    ``target`` ``[N, H]``, with their ``quantile_loss`` (:func:`weighted_quantile_loss`)."""
    levels = tuple(levels)
    below = (target[..., None] <= q).float().mean(dim=(0, 1))
    lo, hi = levels.index(min(levels)), levels.index(max(levels))
    inside = ((target >= q[..., lo]) & (target <= q[..., hi])).float().mean()
    return {"below": {f"{lv:g}": float(b) for lv, b in zip(levels, below)},
            "interval": float(inside), "interval_nominal": max(levels) - min(levels),
            "quantile_loss": weighted_quantile_loss(q, target, levels)}
