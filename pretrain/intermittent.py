"""Causal models side by side on intermittent counts: i.i.d. zero-inflated Poisson series.

    python -c "import wfm; m = wfm.from_pretrained('checkpoints/causal-tiny-catalog-cpu'); m.box_cox = m.raw_paths = False; m.save_pretrained('/tmp/nobc')"
    PYTHONPATH=. python pretrain/intermittent.py --models checkpoints/causal-tiny-catalog-cpu /tmp/nobc \
        --out intermittent.json   # about 3 min a model

Traffic counted per user, per flow or per short interval is intermittent: most intervals carry
nothing and the rest a few units. Each cell is ``--series`` series whose values are 0 with
probability ``zeros`` and Poisson(``--rate``) otherwise, independently (the context mean is the
best forecast there), cut into one window of ``L`` values -> the next ``H`` each (windows whose
target is all zero are dropped: they have no NMSE). Each cell: per-window NMSE of each model's
``forecast`` (each series alone) over the best of persistence, the context mean and seasonal
naive. Prints each cell's ratios and each model's geometric mean (pretrain/studies.md, "Probes of
session 69").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))  # run as a script or loaded by the tests
from box_cox import best_classical
from check_season import summary as cells_summary
from evidence_power import window_nmse

import wfm

#: ``(context, horizon, interval s)`` of each cell: 16 h of 10-minute counts, a day of 2-minute counts.
SHAPES = ((96, 12, 600), (720, 30, 120))
#: The shares of zeros.
ZEROS = (0.3, 0.5, 0.7, 0.9)


def intermittent_windows(zeros: float, length: int, horizon: int, series: int, rate: float,
                         seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(context [N, length], target [N, horizon])`` float64 of ``series`` i.i.d. zero-inflated
    Poisson series, those whose target is all zero dropped."""
    g = np.random.default_rng(seed)
    x = np.where(g.random((series, length + horizon)) < zeros, 0.0, g.poisson(rate, (series, length + horizon)))
    x = torch.tensor(x[(x[:, length:] > 0).any(axis=1)], dtype=torch.float64)
    return x[:, :length], x[:, length:]


@torch.no_grad()
def score(models: dict, zeros: tuple[float, ...], shapes: tuple[tuple[int, int, int], ...], series: int,
          rate: float, seed: int) -> dict[str, dict[str, float]]:
    """``{cell name: {model: ratio}}``, each cell drawn with its own stream of ``seed``."""
    out = {}
    for i, z in enumerate(zeros):
        for j, (length, horizon, interval) in enumerate(shapes):
            ctx, tgt = intermittent_windows(z, length, horizon, series, rate, seed + 100 * i + j)
            group = torch.arange(len(ctx))
            best = best_classical(ctx, tgt, group, float(interval))
            name = f"zeros {z:g} (L={length}, H={horizon})"
            out[name] = {m: window_nmse(model.forecast(ctx, float(interval), horizon, group=group), tgt, group) / best
                         for m, model in models.items()}
            print(f"{name:32s} " + " ".join(f"{v:.4f}" for v in out[name].values()), flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", required=True, help="exported causal model folders")
    ap.add_argument("--zeros", type=float, nargs="+", default=list(ZEROS), help="shares of zeros")
    ap.add_argument("--shapes", nargs="*", default=None, metavar="L:H:INTERVAL",
                    help="context, horizon and interval (s) of each cell (default: 96:12:600 720:30:120)")
    ap.add_argument("--series", type=int, default=128, help="series (one window each) per cell")
    ap.add_argument("--rate", type=float, default=3.0, help="the Poisson mean of a nonzero interval")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    shapes = tuple(tuple(int(v) for v in s.split(":")) for s in args.shapes) if args.shapes is not None else SHAPES
    models = {m: wfm.from_pretrained(m).eval() for m in args.models}
    rows = score(models, tuple(args.zeros), shapes, args.series, args.rate, args.seed)
    result = {"models": args.models, "seed": args.seed, "rate": args.rate, "cells": rows, "summary": cells_summary(rows)}
    for m, v in result["summary"].items():
        print(f"{m}: geometric mean {v['geometric_mean']:.4f}, {v['at_or_below_1']} of {len(rows)} at or below 1")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
