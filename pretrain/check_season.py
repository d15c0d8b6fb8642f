"""Score the causal model's ``check_season`` on held-out *generated* traffic whose checks hold a season.

    PYTHONPATH=. python pretrain/check_season.py --model checkpoints/causal-tiny-catalog-cpu \
        --heldout /tmp/check-season-heldout --seeds 777 778 --out check_season.json

The guard's classical combination mixes its estimators with soft weights (the gate's learned
evidence weight, 0.81: weights as the backtest error to the power -0.81), so on a strongly
seasonal series it carries a share of every estimator, and the network follows it: on half-hourly
electricity demand with two weeks of context the release was 2.7x seasonal naive. ``check_season``
tests seasonal naive itself (the longest period the earliest check holds) on the checks of
``check_origins`` against the forecast so far, and moves the forecast towards it where it led.

Scored here off and with each share rule (``half``: all of it where it won beyond doubt, half where
it led on average; ``fitted``: the mean of that and the share fitted on the checks) on traffic cells whose every check holds a day or a week, held-out series drawn
with each of ``--seeds`` (no pretraining used them), every window a series of its own. Prints each
cell's ratio of per-window NMSE to the best of persistence, the context mean and seasonal naive (<
1 beats them) and, per seed, the geometric mean over the cells. Contexts whose checks hold no
season do not move by construction (every dataset of ``wfm benchmark real``).

``--taylor`` also scores a real series no pretraining saw: half-hourly electricity demand in England
and Wales, 5 June - 27 August 2000 (Taylor 2003; 4,032 values), from the wheel of ``pmdarima``,
which carries it (``pip download pmdarima==2.1.1 --no-deps -d DIR``; nothing is installed), at
contexts of 4 days, two and three weeks, a day ahead, one window a day.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import zipfile
from pathlib import Path

import torch

import wfm

sys.path.insert(0, str(Path(__file__).parent))  # run as a script or loaded by the tests
from ar_season import add_seed_arguments, seed_cells
from box_cox import best_classical
from evidence_power import window_nmse

#: (recipe, context, horizon, interval s[, "idle"]): contexts of two days or more (a week and more
#: for the weekly cells), horizons from an hour to a day.
CELLS = [("traffic-2min", 1440, 30, 120), ("traffic-2min", 1440, 30, 120, "idle"), ("traffic-5min", 576, 72, 300),
         ("traffic-5min", 576, 12, 300, "idle"), ("traffic-10min", 288, 36, 600), ("traffic-10min", 1008, 36, 600),
         ("traffic-10min-regimes", 432, 36, 600), ("traffic-15min", 192, 16, 900), ("traffic-15min", 672, 96, 900),
         ("traffic-hourly", 192, 24, 3600), ("traffic-hourly", 336, 24, 3600), ("traffic-hourly-regimes", 336, 24, 3600)]
VARIANTS = ("off", "half", "fitted")


@torch.no_grad()
def score(model, cells: list[tuple[str, torch.Tensor, torch.Tensor, float]],
          variants: tuple[str, ...] = VARIANTS) -> dict[str, dict[str, float]]:
    """Per cell, the ratio to the best classical of each variant (the model's options restored)."""
    kept, out = (model.check_season, model.season_share), {}
    try:
        for name, ctx, tgt, itv in cells:
            group = torch.arange(len(ctx))
            best = best_classical(ctx, tgt, group, itv)
            row = {}
            for v in variants:
                model.check_season, model.season_share = v != "off", "half" if v == "off" else v
                row[v] = window_nmse(model.forecast(ctx, itv, tgt.shape[1], group=group), tgt, group) / best
            out[name] = row
    finally:
        model.check_season, model.season_share = kept
    return out


def taylor_series(wheel: Path) -> torch.Tensor:
    """The 4,032 half-hourly demands (MW) that ``pmdarima/datasets/taylor.py`` holds in ``wheel``."""
    with zipfile.ZipFile(wheel) as z:
        src = z.read("pmdarima/datasets/taylor.py").decode()
    body = src[src.index("np.array([") + len("np.array(["):]
    values = [float(v) for v in re.findall(r"\d+\.?\d*", body[:body.index("])")])]
    if len(values) != 4032:
        raise ValueError(f"{wheel}: expected the 4,032 values of the taylor series, read {len(values)}")
    return torch.tensor(values, dtype=torch.float32)


def taylor_cells(series: torch.Tensor, contexts: tuple[int, ...] = (192, 672, 1008),
                 horizon: int = 48, first_end: int = 1008) -> list[tuple[str, torch.Tensor, torch.Tensor, float]]:
    """One cell per context: a window ending at every midnight from ``first_end`` on (day 21, or the
    longest context if later; the same targets for every context), a day ahead."""
    ends = range(max(first_end, *contexts), len(series) - horizon + 1, 48)
    tgt = torch.stack([series[e:e + horizon] for e in ends])
    return [(f"taylor electricity demand, 30 min (L={L}, H={horizon})",
             torch.stack([series[e - L:e] for e in ends]), tgt, 1800.0) for L in contexts]


def summary(rows: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each variant's geometric mean over the cells and how many cells it has at or below 1."""
    keys = next(iter(rows.values())).keys()
    return {k: {"geometric_mean": math.exp(sum(math.log(r[k]) for r in rows.values()) / len(rows)),
                "at_or_below_1": sum(r[k] <= 1 for r in rows.values())} for k in keys}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_seed_arguments(ap, per_series=4)  # --seeds with none: only --taylor
    ap.add_argument("--taylor", type=Path, help="a pmdarima wheel: also score its real taylor series")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = wfm.from_pretrained(args.model).eval()
    if not model.check_origins:
        ap.error(f"{args.model}: check_season needs a model with check_origins")
    result = {}
    for seed, cells in seed_cells(args, CELLS):
        rows = {}
        for cell in cells:
            rows.update(score(model, [cell]))
            name = cell[0]
            print(f"seed {seed}  {name:48s} " + "  ".join(f"{k} {v:.4f}" for k, v in rows[name].items()), flush=True)
        s = summary(rows)
        print(f"seed {seed}: " + ", ".join(f"{k} {v['geometric_mean']:.4f} ({v['at_or_below_1']} of {len(rows)} <= 1)"
                                           for k, v in s.items()), flush=True)
        result[str(seed)] = {"cells": rows, "summary": s}
    if args.taylor:
        rows = score(model, taylor_cells(taylor_series(args.taylor)))
        for name, r in rows.items():
            print(f"real  {name:48s} " + "  ".join(f"{k} {v:.4f}" for k, v in r.items()), flush=True)
        result["taylor"] = rows
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "seeds": result}, indent=1))
    return result


if __name__ == "__main__":
    main()
