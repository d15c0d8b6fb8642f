"""How `wfm forecast` should read a series with missing steps: the last gap-free run, or short gaps filled.

    PYTHONPATH=. python finetune/gap_fill.py --heldout /tmp/gap-fill-heldout --seeds 777 778 779 [--out gap_fill.json]

Real exports miss samples: a logger skips a step, a counter reads empty. `wfm forecast` reads a
column's values on the regular grid of its timestamps; a gap that ``--fill`` does not bridge cuts
the series, and the forecast reads the run after the last such gap. This script measures what that
costs and what filling costs instead, on windows whose whole context is known: the context is
forecast as it is (``complete``), and again with steps removed at random and read as the CLI reads
them (:func:`wfm.data.loaders.timegrid.fill_gaps`), for each ``--max-gap`` of linear filling (0: no
fill, the last gap-free run). Two patterns of missing steps: ``isolated`` (each step missing with
probability 1 %, so gaps of one step or two) and ``outages`` (four gaps per context, each 1-24
steps long). The first and the last value are never removed, so every variant forecasts the same
target. Prints, per cell, the ratio of
per-window NMSE to the best of persistence, the context mean and seasonal naive on the complete
context (< 1 beats them), and per seed the geometric mean over the cells.

Held-out generated traffic (``pretrain/box_cox.py``'s recipes, series drawn with each of
``--seeds``, none seen in pretraining) and, with ``--milan``, the benchmark's Milan cells.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "pretrain"))  # the held-out sets of the pretraining studies
from ar_season import add_seed_arguments, seed_cells  # noqa: E402
from box_cox import best_classical  # noqa: E402
from evidence_power import window_errors  # noqa: E402

import wfm  # noqa: E402
from wfm.data.loaders.timegrid import fill_gaps  # noqa: E402

#: (recipe, context, horizon, interval s): two days or more of context.
CELLS = [("traffic-2min", 1440, 30, 120), ("traffic-5min", 576, 12, 300), ("traffic-10min", 432, 36, 600),
         ("traffic-15min", 192, 16, 900), ("traffic-hourly", 192, 24, 3600)]
PATTERNS = ("isolated", "outages")
MAX_GAPS = (0, 1, 3, 12, 24)


def drop_steps(ctx: np.ndarray, pattern: str, rng: np.random.Generator) -> np.ndarray:
    """``ctx`` ``[R, L]`` with steps set to NaN by ``pattern``; the first and last value of a row stay."""
    out = ctx.astype(np.float64).copy()
    rows, length = out.shape
    for r in range(rows):
        if pattern == "isolated":
            hole = rng.random(length) < 0.01
        elif pattern == "outages":
            hole = np.zeros(length, dtype=bool)
            for _ in range(4):
                g = int(rng.integers(1, 25))
                a = int(rng.integers(1, max(2, length - g - 1)))
                hole[a:a + g] = True
        else:
            raise ValueError(f"unknown pattern {pattern!r}; choose from {PATTERNS}")
        hole[0] = hole[-1] = False
        out[r, hole] = np.nan
    return out


def as_read(row: np.ndarray, max_gap: int) -> np.ndarray:
    """What ``wfm forecast`` forecasts from for one column with NaN steps: the last segment after
    linear filling of gaps up to ``max_gap`` steps (0: no fill, the last gap-free run)."""
    return fill_gaps(row, max_gap, "linear" if max_gap else "none")[0]


@torch.no_grad()
def forecast_rows(model, rows: list[np.ndarray], interval: float, horizon: int) -> torch.Tensor:
    """``[R, horizon]``: each row forecast alone, rows of one length in one batch (as the CLI does)."""
    out = torch.empty(len(rows), horizon)
    for length in sorted({len(r) for r in rows}):
        idx = [i for i, r in enumerate(rows) if len(r) == length]
        ctx = torch.tensor(np.stack([rows[i] for i in idx]), dtype=torch.float32)
        out[idx] = model.forecast(ctx, interval, horizon, group=torch.arange(len(idx))).float()
    return out


def score(model, cells: list[tuple[str, torch.Tensor, torch.Tensor, float]], seed: int,
          max_gaps: tuple[int, ...] = MAX_GAPS) -> dict[str, dict[str, float]]:
    """Per cell (and pattern), each variant's ratio to the best classical on the complete context."""
    out = {}
    for name, ctx, tgt, interval in cells:
        group = torch.arange(len(ctx))
        best = best_classical(ctx, tgt, group, interval)
        full = forecast_rows(model, list(ctx.double().numpy()), interval, tgt.shape[1])
        base = float(window_errors(full, tgt, group).mean()) / best
        for pattern in PATTERNS:
            holed = drop_steps(ctx.numpy(), pattern, np.random.default_rng(seed))
            row = {"complete": base}
            for g in max_gaps:
                pred = forecast_rows(model, [as_read(r, g) for r in holed], interval, tgt.shape[1])
                row[f"max_gap {g}"] = float(window_errors(pred, tgt, group).mean()) / best
            out[f"{name} {pattern}"] = row
    return out


def milan_cells(datasets: Path) -> list[tuple[str, torch.Tensor, torch.Tensor, float]]:
    """The Milan cells of ``wfm benchmark real`` (each window a series of its own)."""
    from wfm.tasks.real_datasets import RealBenchConfig, load_traffic

    return [(d.name, d.context.reshape(len(d.context), -1), d.target.reshape(len(d.target), -1), d.interval)
            for d in load_traffic(datasets / "traffic", RealBenchConfig())]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_seed_arguments(ap, per_series=4)
    ap.add_argument("--milan", type=Path, help="the real datasets folder (../shared/datasets) for the Milan cells")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = wfm.from_pretrained(args.model).eval()
    runs = [(str(seed), cells) for seed, cells in seed_cells(args, CELLS)]
    if args.milan:
        runs.append(("milan", milan_cells(args.milan)))
    result = {}
    for seed, cells in runs:
        rows = score(model, cells, int(seed) if seed.isdigit() else 0)
        for name, r in rows.items():
            print(f"{seed}  {name:42s} " + "  ".join(f"{k} {v:.3f}" for k, v in r.items()), flush=True)
        gm = {k: math.exp(sum(math.log(r[k]) for r in rows.values()) / len(rows)) for k in next(iter(rows.values()))}
        print(f"{seed}: geometric mean " + "  ".join(f"{k} {v:.4f}" for k, v in gm.items()), flush=True)
        result[seed] = {"cells": rows, "geometric_mean": gm}
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "seeds": result}, indent=1))
    return result


if __name__ == "__main__":
    main()
