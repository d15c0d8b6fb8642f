"""Score a causal model on textbook processes whose best forecast is known.

    PYTHONPATH=. python pretrain/canonical.py --model checkpoints/causal-tiny-catalog-cpu --out canonical.json

A forecaster of any series should at least match the simple forecast that is optimal for the
process that made it. Each process below is drawn ``--series`` times per data seed (``--seeds``),
at unit noise around a level of 100 (far from zero, so that per-window NMSE ranks forecasts as
squared error does and the oracle is optimal for it too):

- ``white``: white noise around the level; optimal: the level (the context mean estimates it);
- ``random walk``: its increments white; optimal: the last value;
- ``AR(1) 0.9`` / ``AR(1) 0.98``: ``x_t - mu = phi (x_{t-1} - mu) + e_t``; optimal:
  ``mu + phi ** h (x_L - mu)``;
- ``trend``: a line of slope 0.05 per step plus white noise; optimal: the line continued;
- ``shift``: white noise whose level rises by 5 a quarter of the context before its end; optimal:
  the new level;
- ``local level`` (not in the default list): a random walk whose steps have a tenth of the noise's
  variance (``LOCAL_Q``), seen through unit white noise: a level that wanders under measurement
  noise; optimal: the Kalman filter's level (simple exponential smoothing at its steady-state gain);
- ``counts 1`` / ``counts 3`` (not in the default list): independent Poisson counts of rate 1 or 3,
  the small counts of events a network logs (drops, handovers, retransmissions); optimal for squared
  error: the rate (per-window NMSE, which weighs a window by its energy, puts its optimum slightly
  below). Non-negative, so ``box_cox`` forecasts them in the Box-Cox space their context chooses.

At each context length (``--contexts``) and ``--horizon``, per-window NMSE (the benchmark's metric)
of the model's ``forecast`` as users call it, and of the oracle (the optimal forecast, the process's
parameters known), each over the best of persistence and the context mean (the benchmark's
baselines for series without a season). Prints one row per process and context, the mean and the
spread over the data seeds, and the geometric mean of the model's ratios.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import wfm
from wfm.tasks.metrics import window_nmse

PROCESSES = ("white", "random walk", "AR(1) 0.9", "AR(1) 0.98", "trend", "shift")
#: Processes the script knows beyond the default six.
MORE_PROCESSES = ("counts 1", "counts 3", "local level")
LEVEL, SLOPE, SHIFT = 100.0, 0.05, 5.0
#: ``local level``: the variance of the level's steps over the noise's.
LOCAL_Q = 0.1


def draw(process: str, n: int, context: int, horizon: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(series [n, context + horizon], oracle [n, horizon])``: ``n`` draws of ``process`` and the
    optimal forecast of their last ``horizon`` values from the ``context`` before (parameters known)."""
    rng = np.random.default_rng([seed, (PROCESSES + MORE_PROCESSES).index(process), context, horizon])
    length = context + horizon
    e = rng.normal(size=(n, length))
    h = np.arange(1, horizon + 1)
    if process == "white":
        x = LEVEL + e
        oracle = np.full((n, horizon), LEVEL)
    elif process == "random walk":
        x = LEVEL + np.cumsum(e, axis=1)
        oracle = np.repeat(x[:, context - 1:context], horizon, axis=1)
    elif process.startswith("AR(1)"):
        phi = float(process.split()[1])
        dev = np.zeros((n, length))
        dev[:, 0] = e[:, 0] / math.sqrt(1 - phi ** 2)  # drawn from the stationary law
        for t in range(1, length):
            dev[:, t] = phi * dev[:, t - 1] + e[:, t]
        x = LEVEL + dev
        oracle = LEVEL + phi ** h[None] * dev[:, context - 1:context]
    elif process == "trend":
        line = LEVEL + SLOPE * np.arange(length)
        x = line + e
        oracle = np.repeat(line[None, context:], n, axis=0)
    elif process == "shift":
        step = np.where(np.arange(length) >= context - context // 4, SHIFT, 0.0)
        x = LEVEL + step + e
        oracle = np.full((n, horizon), LEVEL + SHIFT)
    elif process == "local level":
        x = LEVEL + math.sqrt(LOCAL_Q) * np.cumsum(rng.normal(size=(n, length)), axis=1) + e
        level, var = x[:, 0].copy(), 1.0  # the Kalman filter from a diffuse start: the first value
        for t in range(1, context):
            var += LOCAL_Q
            gain = var / (var + 1.0)
            level += gain * (x[:, t] - level)
            var *= 1.0 - gain
        oracle = np.repeat(level[:, None], horizon, axis=1)
    elif process.startswith("counts"):
        rate = float(process.split()[1])
        x = rng.poisson(rate, size=(n, length)).astype(np.float64)
        oracle = np.full((n, horizon), rate)
    else:
        raise ValueError(f"unknown process {process!r} (known: {', '.join(PROCESSES + MORE_PROCESSES)})")
    return torch.tensor(x, dtype=torch.float32), torch.tensor(oracle, dtype=torch.float32)


def score(model, process: str, n: int, context: int, horizon: int, seed: int, interval: float) -> dict[str, float]:
    """The model's and the oracle's per-window NMSE over the best of persistence and the context mean."""
    x, oracle = draw(process, n, context, horizon, seed)
    ctx, tgt = x[:, :context], x[:, context:]

    def nmse(pred: torch.Tensor) -> float:
        return float(window_nmse(pred, tgt).mean())

    best = min(nmse(ctx[:, -1:].expand_as(tgt)), nmse(ctx.mean(dim=1, keepdim=True).expand_as(tgt)))
    with torch.no_grad():
        pred = model.forecast(ctx, interval, horizon)
    return {"model": nmse(pred) / best, "oracle": nmse(oracle) / best}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="an exported causal model folder")
    ap.add_argument("--processes", nargs="+", default=list(PROCESSES), choices=PROCESSES + MORE_PROCESSES)
    ap.add_argument("--contexts", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--horizon", type=int, default=16)
    ap.add_argument("--series", type=int, default=64, help="series per process, context and seed")
    ap.add_argument("--seeds", type=int, default=3, help="data seeds")
    ap.add_argument("--interval", type=float, default=60.0, help="seconds between values")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="JSON of every row")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = wfm.from_pretrained(args.model).eval()
    rows = []
    with Progress() as bar:
        task = bar.add_task("processes x contexts", total=len(args.processes) * len(args.contexts))
        for process in args.processes:
            for context in args.contexts:
                runs = [score(model, process, args.series, context, args.horizon, s, args.interval)
                        for s in range(args.seeds)]
                row = {"process": process, "context": context, "horizon": args.horizon}
                for key in ("model", "oracle"):
                    v = np.array([r[key] for r in runs])
                    row[key], row[f"{key}_std"] = float(v.mean()), float(v.std())
                rows.append(row)
                bar.advance(task)
    geo = math.exp(sum(math.log(r["model"]) for r in rows) / len(rows))
    table = Table(title=f"{args.model}: per-window NMSE over the best of persistence and the context mean "
                        f"(mean ± std over {args.seeds} data seeds, {args.series} series each)")
    for col in ("process", "context", "model", "oracle"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["process"], str(r["context"]), f"{r['model']:.3f} ± {r['model_std']:.3f}",
                      f"{r['oracle']:.3f} ± {r['oracle_std']:.3f}")
    Console().print(table)
    below = sum(r["model"] <= 1 for r in rows)
    print(f"geometric mean of the model's ratios {geo:.3f}; at or below the best classical on {below} of {len(rows)}")
    out = {"model": args.model, "rows": rows, "geometric_mean": geo, "at_or_below_1": below}
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
