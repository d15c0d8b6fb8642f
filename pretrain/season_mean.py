"""Score the causal model's ``season_mean`` (and ``season_drift``) on held-out *generated* series.

    PYTHONPATH=. python pretrain/season_mean.py --model checkpoints/causal-tiny-catalog-cpu \
        --heldout /tmp/check-trend-heldout --seeds 777 778 779 --out season_mean.json

``check_season`` tests a seasonal candidate on the checks against the forecast so far. Seasonal
naive, its candidate before ``season_mean``, repeats the last period, each value with its own
noise; with ``season_mean`` the candidate is the profile averaged over every full period the
context holds, on the last period's level (``wfm.models.causal_forecast.seasonal_mean``;
``pretrain/studies.md``, "A season averaged over the periods the context holds").

With ``season_drift`` the same candidate with the drift of its period means (a growing season) is
tested after it, and taken where it wins beyond doubt.

Scored off, on, and on with the drift (``drift``): ratios to the best classical on held-out
generated traffic whose contexts hold
several days (``--cells days``, the default: :data:`DAYS_CELLS`, where the option acts), or on
``pretrain/check_trend.py``'s held-out cells of each seed (``--cells heldout``: their contexts hold
one day at most, or a week their checks miss, so the option leaves them as they were).

    WFM_DATA=... PYTHONPATH=. python pretrain/season_mean.py --heldout DIR --seeds 777 778 779   # about 7 min a seed
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))  # run as a script or loaded by the tests
from box_cox import best_classical, ensure_heldout, traffic_cell
from check_trend import heldout_cells, variants_main
from check_trend import ratios as check_trend_ratios
from evidence_power import window_nmse

# best_classical and window_nmse are read from here by the tests, as from the other option scripts.
__all__ = ["OPTIONS", "VARIANTS", "DAYS_CELLS", "ratios", "days_cells", "cells", "main", "best_classical", "window_nmse"]

#: The options of each variant (``check_season`` is the model's own).
OPTIONS = {"off": dict(season_mean=False, season_drift=False), "on": dict(season_mean=True, season_drift=False),
           "drift": dict(season_mean=True, season_drift=True)}
VARIANTS = tuple(OPTIONS)
#: Held-out traffic cells ``(recipe, L, H, interval s[, "idle"])`` whose contexts hold two to five days
#: (four of the 10-minute recipes, 15- and 5-minute, hourly, and 2- and 1-minute at 4,096 values). A
#: context holding a week is left out: its checks miss the week, and ``check_season`` stays out there.
DAYS_CELLS = [("traffic-10min", 432, 12, 600), ("traffic-10min", 432, 36, 600), ("traffic-10min-regimes", 432, 12, 600),
              ("traffic-10min-spikes", 432, 12, 600), ("traffic-10min", 432, 12, 600, "idle"),
              ("traffic-15min", 480, 4, 900), ("traffic-5min", 1440, 12, 300), ("traffic-hourly", 144, 24, 3600),
              ("traffic-hourly-regimes", 144, 24, 3600), ("traffic-2min", 4096, 30, 120), ("traffic-1min", 4096, 60, 60)]


#: Each variant's per-window NMSE over the best classical's (the model's options restored).
ratios = partial(check_trend_ratios, options=OPTIONS)


def days_cells(folder: Path, seed: int, per_series: int):
    """``(name, context, target, group, interval)`` of each :data:`DAYS_CELLS` cell of ``seed``
    (its recipes generated in ``folder`` where missing)."""
    ensure_heldout(folder, seed, list(dict.fromkeys(c[0] for c in DAYS_CELLS)), [], {"traffic": 16, "traj": 0})
    for cell in DAYS_CELLS:
        name, ctx, tgt = traffic_cell(folder, cell, per_series)
        yield name, ctx, tgt, torch.arange(len(ctx)), float(cell[3])


def cells(ap):
    """``--cells days`` (the default: :data:`DAYS_CELLS`) or ``heldout`` (``check_trend.py``'s)."""
    ap.add_argument("--cells", choices=("days", "heldout"), default="days")
    ap.add_argument("--days-per-series", type=int, default=2, help="windows per traffic series of the days cells")

    def of_seed(args, seed: int):
        folder = args.heldout / str(seed)
        return (days_cells(folder, seed, args.days_per_series) if args.cells == "days"
                else heldout_cells(folder, seed, args.data, args.series, args.per_series))
    return of_seed


def main(argv: list[str] | None = None) -> dict:
    return variants_main(argv, __doc__, "season_mean", dict(OPTIONS), ratios, cells=cells, needs="check_season")


if __name__ == "__main__":
    main()
