"""Causal models side by side on held-out generated traffic with deep and with shallow days.

    PYTHONPATH=. python pretrain/shallow_days.py --models checkpoints/causal-tiny-catalog-cpu DIR ... \
        --heldout /tmp/shallow-heldout --seeds 777 778 779 --out shallow_days.json   # about 4 min a model and seed

The cells are ``box_cox.py``'s 12 held-out traffic cells (nights at a tenth of the peak, as every
traffic recipe of the pretraining mixture has them, some idle at night) and 4 cells of the
``traffic-*-shallow`` recipes (each series' night floor drawn from 0.1 to 1.5 of the peak, as
measured cells that aggregate many users have them): 2 minutes 720 -> 30, 10 minutes 96 -> 12 and
144 -> 6, hourly 168 -> 24. Held-out series are generated with each ``--seeds`` (no pretraining
used them) where the folder lacks them. Each cell: per-window NMSE of each model's ``forecast`` (a
window's series forecast alone) over the best of persistence, the context mean and seasonal naive.
Prints each cell's ratios and, per model, the geometric mean over the deep-day cells and over the
shallow-day cells (pretrain/studies.md, "Traffic with shallow days").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))  # run as a script or loaded by the tests
from box_cox import TRAFFIC, best_classical, ensure_heldout, traffic_cell
from check_season import summary as cells_summary
from evidence_power import window_nmse

import wfm

#: The shallow-day cells: (recipe, context, horizon, interval s).
SHALLOW = [("traffic-2min-shallow", 720, 30, 120), ("traffic-10min-shallow", 96, 12, 600),
           ("traffic-10min-shallow", 144, 6, 600), ("traffic-hourly-shallow", 168, 24, 3600)]


def parse_cell(spec: str) -> tuple:
    """``recipe:L:H:interval[:idle]`` -> a cell tuple as in ``TRAFFIC``."""
    parts = spec.split(":")
    return (parts[0], int(parts[1]), int(parts[2]), int(parts[3]), *parts[4:])


@torch.no_grad()
def score(models: dict, folder: Path, cells: list[tuple], series: int, per_series: int) -> dict[str, dict[str, float]]:
    """``{cell name: {model: ratio}}`` on the held-out series in ``folder``."""
    out = {}
    for cell in cells:
        name, ctx, tgt = traffic_cell(folder, cell, per_series, series)
        group, interval = torch.arange(len(ctx)), float(cell[3])
        best = best_classical(ctx, tgt, group, interval)
        out[name] = {m: window_nmse(model.forecast(ctx, interval, tgt.shape[1], group=group), tgt, group) / best
                     for m, model in models.items()}
        print(f"{folder.name:>6s} {name:46s} " + " ".join(f"{v:.4f}" for v in out[name].values()), flush=True)
    return out


def summary(rows: dict[str, dict[str, float]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{"deep" | "shallow": {model: {geometric_mean, at_or_below_1}}}`` over each kind of cell."""
    kinds = {kind: {k: r for k, r in rows.items() if ("shallow" in k) == (kind == "shallow")}
             for kind in ("deep", "shallow")}
    return {kind: cells_summary(chosen) for kind, chosen in kinds.items() if chosen}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", required=True, help="exported causal model folders")
    ap.add_argument("--heldout", type=Path, required=True, help="folder of per-seed held-out datasets (made if missing)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[777])
    ap.add_argument("--cells", nargs="*", default=None, metavar="RECIPE:L:H:INTERVAL[:idle]",
                    help="cells to score (default: the 12 deep-day and 4 shallow-day cells)")
    ap.add_argument("--series", type=int, default=16, help="held-out series per recipe")
    ap.add_argument("--per-series", type=int, default=16, help="windows per series")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = {m: wfm.from_pretrained(m).eval() for m in args.models}
    cells = [parse_cell(c) for c in args.cells] if args.cells is not None else TRAFFIC + SHALLOW
    rows: dict[str, dict[str, float]] = {}
    for seed in args.seeds:
        folder = args.heldout / str(seed)
        ensure_heldout(folder, seed, list(dict.fromkeys(c[0] for c in cells)), [], {"traffic": args.series})
        rows.update({f"{seed} {k}": v for k, v in score(models, folder, cells, args.series, args.per_series).items()})
    result = {"models": args.models, "seeds": args.seeds, "cells": rows, "summary": summary(rows)}
    for kind, by_model in result["summary"].items():
        for m, v in by_model.items():
            print(f"{kind}-day cells: {m} geometric mean {v['geometric_mean']:.4f}, {v['at_or_below_1']} at or below 1")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
