"""Score the causal model's ``ar_season`` on held-out *generated* traffic whose context holds a season.

    PYTHONPATH=. python pretrain/ar_season.py --model checkpoints/causal-tiny-catalog-cpu \
        --heldout /tmp/ar-season-heldout --seeds 777 778 779 --out ar_season.json

``CausalForecaster(check_ar=True)`` takes linear prediction (or, with ``ar_blend``, half of it)
where it led the checks of ``check_origins``, each a forecast from a cut of the context. Where the
whole context holds a day (or a week) and the checks' cuts do not (10-minute traffic with exactly a
day of context: the cuts hold 72-138 values), the network and its classical combination lack their
seasonal estimator on the checks but have it for the forecast, so the checks overrate linear
prediction. ``ar_season`` leaves linear prediction out for such rows.

Scored here, off and on, on the traffic cells of ``pretrain/box_cox.py`` (every recipe with a day of
context and an hour ahead, a week and a day for hourly; three of them idle at night) and three
cells with longer horizons (10 minutes: a day -> 6 h and two days -> 6 h; 2 minutes: two days ->
an hour), held-out series drawn with each of ``--seeds`` (no pretraining used them), every window a
series of its own. Prints each cell's ratio of per-window NMSE to the best of persistence, the
context mean and seasonal naive (< 1 beats them) and, per seed, the geometric mean over the cells
and how many move each way. Cells whose context holds no season, or whose every check holds it, do
not move by construction (the 10-minute cells with 16 h of context; the real data of
``wfm benchmark real``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

import wfm

sys.path.insert(0, str(Path(__file__).parent))  # run as a script or loaded by the tests
from box_cox import TRAFFIC, best_classical, cell_name, ensure_heldout, traffic_cell
from evidence_power import window_nmse

#: The box_cox cells and three with a longer horizon: (recipe, context, horizon, interval s[, "idle"]).
CELLS = TRAFFIC + [("traffic-10min", 144, 36, 600), ("traffic-10min", 288, 36, 600), ("traffic-2min", 1440, 30, 120)]


@torch.no_grad()
def score(model, cells: list[tuple[str, torch.Tensor, torch.Tensor, float]]) -> dict[str, dict[str, float]]:
    """Per cell, the ratio to the best classical with ``ar_season`` off and on (restored afterwards)."""
    kept, out = model.ar_season, {}
    try:
        for name, ctx, tgt, itv in cells:
            group = torch.arange(len(ctx))
            best = best_classical(ctx, tgt, group, itv)
            row = {}
            for on in (False, True):
                model.ar_season = on
                row["on" if on else "off"] = window_nmse(model.forecast(ctx, itv, tgt.shape[1], group=group), tgt, group) / best
            out[name] = row
    finally:
        model.ar_season = kept
    return out


def summary(rows: dict[str, dict[str, float]]) -> dict[str, float]:
    """Geometric means off / on and how many cells got better / worse."""
    gm = {k: math.exp(sum(math.log(r[k]) for r in rows.values()) / len(rows)) for k in ("off", "on")}
    return {**gm, "better": sum(r["on"] < r["off"] for r in rows.values()), "worse": sum(r["on"] > r["off"] for r in rows.values())}


def add_seed_arguments(ap: argparse.ArgumentParser, per_series: int) -> None:
    """The options of the held-out traffic this script and ``pretrain/check_season.py`` score:
    ``--model``, ``--heldout``, ``--seeds``, ``--cells``, ``--series``, ``--per-series``,
    ``--threads`` and ``--out``."""
    ap.add_argument("--model", default="checkpoints/causal-tiny-catalog-cpu")
    ap.add_argument("--heldout", type=Path, required=True, help="folder of the held-out sets, one subfolder per seed (made if missing)")
    ap.add_argument("--seeds", type=int, nargs="*", default=[777, 778, 779], help="held-out draws")
    ap.add_argument("--cells", nargs="*", default=None, help="only the cells whose name holds one of these")
    ap.add_argument("--series", type=int, default=16)
    ap.add_argument("--per-series", type=int, default=per_series)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)


def seed_cells(args: argparse.Namespace, cells: list[tuple]):
    """Per seed of ``args.seeds``: ``(seed, [(name, context, target, interval)])`` of the ``cells``
    that ``args.cells`` chooses, their held-out series generated where missing."""
    chosen = [c for c in cells if not args.cells or any(k in cell_name(c) for k in args.cells)]
    for seed in args.seeds:
        folder = args.heldout / str(seed)
        ensure_heldout(folder, seed, sorted({c[0] for c in chosen}), [], {"traffic": args.series, "traj": 0})
        yield seed, [(*traffic_cell(folder, c, args.per_series, args.series), float(c[3])) for c in chosen]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_seed_arguments(ap, per_series=16)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = wfm.from_pretrained(args.model).eval()
    if not model.check_ar:
        ap.error(f"{args.model}: ar_season needs a model with check_ar")
    result = {}
    for seed, cells in seed_cells(args, CELLS):
        rows = score(model, cells)
        for name, r in rows.items():
            print(f"seed {seed}  {name:44s} off {r['off']:.4f}  on {r['on']:.4f}", flush=True)
        s = summary(rows)
        print(f"seed {seed}: geometric mean {s['off']:.4f} -> {s['on']:.4f}, {s['better']} better, {s['worse']} worse", flush=True)
        result[str(seed)] = {"cells": rows, "summary": s}
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "seeds": result}, indent=1))
    return result


if __name__ == "__main__":
    main()
