"""Per-window classical rules and the MAE guard's reversion margin on real (and generated) CSI.

Two tables of pretrain/README.md ("The MAE's guard"), as ratios of per-window NMSE to the best
of persistence and the context mean on the same windows (< 1 beats it):

- :func:`classical_rule_rows`: rules that choose, per window, from the context alone: the last
  value, the mean, the better of the two by a backtest inside the context (pooled over every
  series of the window), and the AR(1) forecast around the mean (``mean + phi^h (last - mean)``,
  ``phi`` the clipped lag-1 autocorrelation of the context's deviations) with ``phi`` per
  series or pooled over the window.
- :func:`noise_rows`: how much of each CSI view is noise around a level: the share of series
  whose context has no positive lag-1 autocorrelation (``phi`` clipped to 0), and the share of
  the amplitude's change over time that is one gain per packet common to every antenna and
  subcarrier (what ``gain_jitter_db`` generates).
- :func:`margin_rows`: an MAE's ``predict`` with ``REVERSION_MARGIN`` set to each value (a huge
  margin is "the reversion estimate only").
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import wfm.models.mae as mae_module
from wfm.hub import from_pretrained
from wfm.tasks.csi_data import load_csi
from wfm.tasks.metrics import window_nmse
from wfm.tasks.real_data import BenchData, default_datasets_dir, load_real_datasets, mae_windows


def _score(pred: Tensor, target: Tensor) -> float:
    return float(window_nmse(pred, target).mean())


def _real_view(x: Tensor) -> Tensor:
    """``[N, L, *C]`` real or complex -> real float64 ``[N, L, C']``."""
    if x.is_complex():
        x = torch.view_as_real(x)
    return x.reshape(x.shape[0], x.shape[1], -1).double()


def ar1_forecast(context: Tensor, horizon: int, pooled: bool) -> Tensor:
    """AR(1) around the context mean, ``[N, L, C]`` -> ``[N, horizon, C]`` (see module docstring)."""
    mu = context.mean(dim=1, keepdim=True)
    dev = context - mu
    lag = (dev[:, 1:] * dev[:, :-1]).sum(dim=1)
    power = (dev * dev).sum(dim=1)
    if pooled:
        lag, power = lag.sum(dim=1, keepdim=True), power.sum(dim=1, keepdim=True)
    phi = (lag / power.clamp_min(1e-30)).clamp(0.0, 1.0)[:, None]  # [N, 1, C or 1]
    h = torch.arange(1, horizon + 1, dtype=context.dtype)[None, :, None]
    return mu + phi ** h * (context[:, -1:] - mu)


def backtest_pick(context: Tensor, horizon: int) -> Tensor:
    """Last value or mean per window, whichever did better predicting the rest of the context from
    each origin of its second half (errors pooled over every series of the window)."""
    n, length = context.shape[:2]
    err = {"last": torch.zeros(n, dtype=context.dtype), "mean": torch.zeros(n, dtype=context.dtype)}
    for o in range(max(1, length // 2 - 1), length - 1):
        past, future = context[:, :o + 1], context[:, o + 1:]
        err["last"] += ((future - past[:, -1:]) ** 2).sum(dim=(1, 2))
        err["mean"] += ((future - past.mean(dim=1, keepdim=True)) ** 2).sum(dim=(1, 2))
    last = context[:, -1:].expand(-1, horizon, -1)
    mean = context.mean(dim=1, keepdim=True).expand(-1, horizon, -1)
    return torch.where((err["last"] < err["mean"])[:, None, None], last, mean)


def classical_rule_rows(datasets: Sequence[BenchData]) -> list[dict[str, Any]]:
    """One row per dataset: each rule's per-window NMSE over the best of last value and mean."""
    rows = []
    for d in datasets:
        ctx, tgt = _real_view(d.context), _real_view(d.target)
        h = tgt.shape[1]
        preds = {"last": ctx[:, -1:].expand(-1, h, -1), "mean": ctx.mean(dim=1, keepdim=True).expand(-1, h, -1),
                 "backtest pick (pooled)": backtest_pick(ctx, h),
                 "AR(1), phi per series": ar1_forecast(ctx, h, pooled=False),
                 "AR(1), phi pooled": ar1_forecast(ctx, h, pooled=True)}
        scores = {k: _score(v, tgt) for k, v in preds.items()}
        best = min(scores["last"], scores["mean"])
        rows.append({"dataset": d.name, "view": d.view, **{k: v / best for k, v in scores.items()}})
    return rows


def noise_rows(datasets: Sequence[BenchData]) -> list[dict[str, Any]]:
    """One row per CSI dataset: the share of series with ``phi = 0`` and the common-gain share (see module doc)."""
    rows = []
    for d in datasets:
        ctx = _real_view(d.context)
        dev = ctx - ctx.mean(dim=1, keepdim=True)
        phi = ((dev[:, 1:] * dev[:, :-1]).sum(dim=1) / (dev * dev).sum(dim=1).clamp_min(1e-30)).clamp(0.0, 1.0)
        amp = d.csi.abs().double().clamp_min(1e-12).log()  # [N, T, A, K]
        change = amp - amp.mean(dim=1, keepdim=True)
        common = change.mean(dim=(2, 3), keepdim=True)
        rows.append({"dataset": d.name, "view": d.view, "series with phi = 0": float((phi == 0).double().mean()),
                     "common gain share": float(common.pow(2).mean() / change.pow(2).mean().clamp_min(1e-30))})
    return rows


def generated_windows(root: str | Path, limit: int = 256) -> list[BenchData]:
    """The complex view of a generated CSI dataset's test split (first ``limit`` samples): the first
    half of the time steps as context, the second half as target, like the real CSI views."""
    csi = load_csi(root, "test", task="guard-study")["csi"][:limit]
    half = csi.shape[1] // 2
    return [BenchData(Path(root).name, "csi complex", csi[:, :half], csi[:, half:2 * half], 0.0,
                      f"{len(csi)} test samples, {half} -> {half} steps", str(root), csi=csi[:, :2 * half])]


@contextmanager
def reversion_margin(value: float) -> Iterator[None]:
    """``MaskedAutoencoder.predict`` with ``REVERSION_MARGIN = value`` inside the block."""
    old = mae_module.REVERSION_MARGIN
    mae_module.REVERSION_MARGIN = float(value)
    try:
        yield
    finally:
        mae_module.REVERSION_MARGIN = old


def _generated_ratios(model: Any, root: str | Path, limit: int = 256) -> dict[str, float]:
    csi = load_csi(root, "test", task="guard-study")["csi"][:limit]
    out = {}
    for kind, dim in (("time", 1), ("frequency", 3)):
        size = csi.shape[dim]
        hidden = size // 2
        tgt, ctx = csi.narrow(dim, size - hidden, hidden), csi.narrow(dim, 0, size - hidden)
        pred = model.predict(csi, "temporal" if kind == "time" else "frequency", 0.5).reconstruction
        hold = ctx.narrow(dim, size - hidden - 1, 1).expand_as(tgt)
        mean = ctx.mean(dim, keepdim=True).expand_as(tgt)
        best = min(_score(hold, tgt), _score(mean, tgt))
        out[f"{Path(root).name} {kind}"] = _score(pred.narrow(dim, size - hidden, hidden), tgt) / best
    return out


def margin_rows(model: Any, margins: Sequence[float], real: Sequence[BenchData],
                generated: Sequence[str | Path] = ()) -> list[dict[str, Any]]:
    """One row per margin: the MAE's ratio to the best classical on every real CSI view and on
    the hidden half (time, frequency) of each generated dataset's test split."""
    rows = []
    for m in margins:
        row: dict[str, Any] = {"margin": m}
        with reversion_margin(m):
            for d in real:
                pred = mae_windows(model, d)
                pred = pred if d.target.is_complex() else pred.real
                best = min(_score(d.context[:, -1:].expand_as(d.target), d.target),
                           _score(d.context.mean(dim=1, keepdim=True).expand_as(d.target), d.target))
                row[f"{d.name} {d.view}"] = _score(pred, d.target) / best
            for root in generated:
                row.update(_generated_ratios(model, root))
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of rows with the same keys (floats to 3 decimals)."""
    keys = list(rows[0])
    cell = (lambda v: f"{v:.3f}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python pretrain/guard_study.py [--model FOLDER] [--margin M ...] [--data DIR ...]``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=str(default_datasets_dir()), help="real datasets folder")
    ap.add_argument("--model", help="an MAE folder: also score its guard at each --margin")
    ap.add_argument("--margin", type=float, action="append", help="REVERSION_MARGIN values (default 1, 1.5, 2.5, 1e9)")
    ap.add_argument("--data", action="append", default=[],
                    help="generated CSI dataset folders (their rules and noise rows; with --model, its margins)")
    args = ap.parse_args(argv)
    real = load_real_datasets(args.datasets)
    generated = [w for root in args.data for w in generated_windows(root)]
    print(markdown(classical_rule_rows(real + generated)))
    print()
    print(markdown(noise_rows([d for d in real if d.is_csi] + generated)))
    if args.model:
        csi = [d for d in real if d.is_csi]
        print()
        print(markdown(margin_rows(from_pretrained(args.model), args.margin or [1.0, 1.5, 2.5, 1e9], csi, args.data)))
