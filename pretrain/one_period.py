"""Score seasonal naive blended into the causal model's forecast where the context holds exactly one period.

    PYTHONPATH=. python pretrain/one_period.py --heldout /tmp/check-season-heldout --seeds 777 778 779 \
        [--taylor pmdarima-2.1.1-*.whl] --out one_period.json

With exactly one day of context (144 values at 10 minutes, 720 at 2 minutes) no backtest can show
the daily season: a check that ends before the context's end holds less than a day, so
``check_season`` never runs there and seasonal naive is never tested. The release is then behind
seasonal naive on some traffic (hourly traffic, Taylor's electricity demand) and ahead of it by
2-17x on other (1- to 5-minute traffic, where seasonal naive is far behind persistence).

The only evidence of the season such a context holds is at its two ends: a value at its start and
one ``P - k`` steps later at its end are ``k`` steps apart in the time of day. Where the day
repeats, their squared differences are those of ``k``-step changes; where it does not, they are
larger. :func:`wrap_ratio` is that ratio, pooled over ``k = 1 .. min(H, L / 4)``. Scored here: the
release, seasonal naive averaged in by half (``half``), only where the ratio is below 1
(``half if wrap < 1``), and by a share ``0.5 / (1 + wrap)`` (``wrap share``), on held-out traffic
cells of each recipe at one day of context (16 series of each of ``--seeds``, ``--per-series``
windows each, none seen in pretraining), and with ``--taylor`` on Taylor's half-hourly demand
(``pretrain/check_season.py``: a day of context, a day ahead from every midnight from day 21 on).
Prints each cell's ratio of per-window NMSE to the best of persistence, the context mean and
seasonal naive (< 1 beats them) and, per seed, the geometric mean over the cells.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))  # run as a script or loaded by the tests
from ar_season import add_seed_arguments, seed_cells
from box_cox import best_classical
from check_season import taylor_cells, taylor_series
from evidence_power import window_nmse

import wfm

#: (recipe, context = one day, horizon, interval s).
CELLS = [("traffic-1min", 1440, 60, 60), ("traffic-2min", 720, 30, 120), ("traffic-5min", 288, 12, 300),
         ("traffic-10min", 144, 36, 600), ("traffic-10min-regimes", 144, 36, 600),
         ("traffic-10min-spikes", 144, 36, 600), ("traffic-15min", 96, 16, 900), ("traffic-15min-spikes", 96, 16, 900),
         ("traffic-hourly", 24, 24, 3600), ("traffic-hourly-regimes", 24, 24, 3600)]
VARIANTS = ("release", "half", "half if wrap < 1", "wrap share")


def seasonal_naive(ctx: torch.Tensor, period: int, horizon: int) -> torch.Tensor:
    """``[R, horizon]``: each row of ``ctx`` ``[R, L]`` continued by its value one ``period`` earlier."""
    return ctx[:, ctx.shape[1] - period + torch.arange(horizon) % period]


def wrap_ratio(ctx: torch.Tensor, horizon: int) -> torch.Tensor:
    """``[R]``: the squared differences between the context's first values and its last ones
    (pairs ``(t, t + L - k)``, ``t < k``, ``k = 1 .. min(horizon, L // 4)``) over what ``k``-step
    changes inside the context give for as many pairs: about 1 where the context's end leads back
    to its start as the time of day does, more where it does not."""
    x = ctx.double()
    length = x.shape[1]
    num = torch.zeros(len(x), dtype=torch.float64)
    den = torch.zeros_like(num)
    for k in range(1, max(1, min(horizon, length // 4)) + 1):
        num += ((x[:, length - k:] - x[:, :k]) ** 2).sum(1)
        den += k * ((x[:, k:] - x[:, :-k]) ** 2).mean(1)
    return num / den.clamp_min(1e-300)


def variants(release: torch.Tensor, ctx: torch.Tensor, period: int) -> dict[str, torch.Tensor]:
    """Each variant's forecast from the release's and the context (exactly ``period`` values)."""
    season = seasonal_naive(ctx, period, release.shape[1]).to(release.dtype)
    wrap = wrap_ratio(ctx, release.shape[1]).to(release.dtype)[:, None]
    shares = {"release": torch.zeros_like(wrap), "half": torch.full_like(wrap, 0.5),
              "half if wrap < 1": 0.5 * (wrap < 1).to(release.dtype), "wrap share": 0.5 / (1 + wrap)}
    return {name: release + share * (season - release) for name, share in shares.items()}


@torch.no_grad()
def score(model, cells: list[tuple[str, torch.Tensor, torch.Tensor, float]]) -> dict[str, dict[str, float]]:
    """Per cell, each variant's ratio to the best classical (every window a series of its own)."""
    out = {}
    for name, ctx, tgt, interval in cells:
        group = torch.arange(len(ctx))
        release = model.forecast(ctx, interval, tgt.shape[1], group=group)
        best = best_classical(ctx, tgt, group, interval)
        out[name] = {k: window_nmse(v, tgt, group) / best
                     for k, v in variants(release, ctx, round(86400 / interval)).items()}
    return out


def summary(rows: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per variant, the geometric mean over the cells and the cells at or below 1."""
    return {k: {"geometric_mean": math.exp(sum(math.log(r[k]) for r in rows.values()) / len(rows)),
                "at_or_below_1": sum(r[k] <= 1 for r in rows.values())} for k in VARIANTS}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_seed_arguments(ap, per_series=4)
    ap.add_argument("--taylor", type=Path, help="the pmdarima 2.1.1 wheel (pip download pmdarima==2.1.1 --no-deps)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = wfm.from_pretrained(args.model).eval()
    result = {}
    runs = list(seed_cells(args, CELLS))
    if args.taylor:
        runs.append(("taylor", taylor_cells(taylor_series(args.taylor), (48,))))
    for seed, cells in runs:
        rows = score(model, cells)
        for name, r in rows.items():
            print(f"{seed}  {name:42s} " + "  ".join(f"{k} {v:.3f}" for k, v in r.items()), flush=True)
        s = summary(rows)
        print(f"{seed}: geometric mean " + "  ".join(f"{k} {v['geometric_mean']:.4f} ({v['at_or_below_1']} <= 1)"
                                              for k, v in s.items()), flush=True)
        result[str(seed)] = {"cells": rows, "summary": s}
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "seeds": result}, indent=1))
    return result


if __name__ == "__main__":
    main()
