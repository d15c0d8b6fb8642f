"""Choose a causal model's ``evidence_power`` on held-out *generated* windows, never on real data.

    PYTHONPATH=. python pretrain/evidence_power.py --model checkpoints/causal-tiny-catalog-cpu \
        --data $WFM_DATA --out evidence_power.json

A window's channels pool their backtest evidence (``forecast(..., group=)``); ``evidence_power``
``p`` weighs a group of ``G`` channels' evidence ``G ** p`` times as sharply
(:class:`wfm.models.causal.CausalForecaster`). Which ``p`` is right is a property of the
training distribution (how correlated the channels of one sample are), so it is chosen here on
the held-out samples (the validation split of ``SeriesDataModule``) of the model's own CSI
pretraining datasets: every channel of a sample over the same steps is one window, scored by
per-window NMSE at a few context lengths, as ``wfm benchmark real`` scores real CSI. Prints, per
power, the geometric mean over datasets and contexts of the ratio to the best of persistence and
the context mean, and the power that minimises it. The real-data benchmark stays a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

import wfm
from wfm.data.errors import DataError
from wfm.data.series import series_tables
from wfm.data.series_datamodule import SeriesDataModule, SeriesPool

def has_csi(folder: Path) -> bool:
    """Whether a dataset folder has CSI series (trajectory and traffic datasets have none)."""
    try:
        return bool(series_tables(folder, ["csi"]))
    except DataError:
        return False


def held_out_pool(folder: Path, val_fraction: float = 0.02) -> SeriesPool:
    """The validation split of a dataset's CSI series, as the pretraining configs hold it out."""
    dm = SeriesDataModule(datasets=[str(folder)], kinds=["csi"], val_fraction=val_fraction,
                          test_fraction=val_fraction)
    dm.setup()
    return dm.pools["val"][0]


def held_out_windows(pool: SeriesPool, context: int, horizon: int, windows: int,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor, float] | None:
    """``(series [W * C, context + horizon], group [W * C], interval)``: ``windows`` samples of
    ``pool``, all ``C`` channels of each over the same steps (None: series too short)."""
    rng = np.random.default_rng([seed, context])
    rows, group, interval = [], [], 1.0
    for w in range(windows):
        items = pool.draw_group(rng, context, horizon, 0.0, 1 << 20)  # every channel of the sample
        if not all(bool(it["observed"].all()) for it in items):
            return None
        rows += [it["values"] for it in items]
        group += [w] * len(items)
        interval = float(items[0]["interval"])
    return torch.from_numpy(np.stack(rows)), torch.tensor(group), interval


def window_errors(pred: torch.Tensor, target: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """``[W]`` each window's NMSE, sum err^2 / sum true^2 over its rows (a window = one group)."""
    n = int(group.max()) + 1
    err = torch.zeros(n, dtype=torch.float64).index_add_(0, group, ((pred - target) ** 2).sum(1).double())
    pow_ = torch.zeros(n, dtype=torch.float64).index_add_(0, group, (target ** 2).sum(1).double())
    return err / pow_.clamp_min(1e-30)


def window_nmse(pred: torch.Tensor, target: torch.Tensor, group: torch.Tensor) -> float:
    """Per-window NMSE (mean over windows of sum err^2 / sum true^2, a window = one group)."""
    return float(window_errors(pred, target, group).mean())


def best_classical(ctx: torch.Tensor, tgt: torch.Tensor, group: torch.Tensor) -> float:
    """Per-window NMSE of the better of persistence and the context mean (``ctx`` ``[R, L]``)."""
    return min(window_nmse(ctx[:, -1:].expand_as(tgt), tgt, group),
               window_nmse(ctx.mean(1, keepdim=True).expand_as(tgt), tgt, group))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--powers", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3])
    ap.add_argument("--data", default=os.environ.get("WFM_DATA", "data/generated"), help="folder of the datasets")
    ap.add_argument("--datasets", nargs="+",
                    help="dataset folders under --data (default: the model's own pretraining datasets, as its "
                         "config.json records them; those without CSI series are skipped)")
    ap.add_argument("--contexts", type=int, nargs="+", default=[4, 8], help="context lengths (the CSI recipes hold 16-24 steps: context + horizon must fit)")
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--windows", type=int, default=16, help="held-out samples per dataset and context")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = wfm.from_pretrained(args.model).eval()
    models = {p: base.with_evidence_power(p).eval() for p in args.powers}
    root = Path(args.data)
    config = json.loads((Path(args.model) / "config.json").read_text())
    trained_on = ((config.get("training") or {}).get("data") or {}).get("datasets", [])
    names = args.datasets or [Path(d).name for d in trained_on]
    names = [n for n in names if (root / n).is_dir() and has_csi(root / n)]
    if not names:
        raise SystemExit(f"{root}: none of the CSI pretraining datasets (generate them: pretrain/causal-tiny-catalog-cpu-data.sh)")
    logs: dict[float, list[float]] = {p: [] for p in args.powers}
    cells = []
    with Progress() as bar, torch.no_grad():
        task = bar.add_task("held-out windows", total=len(names) * len(args.contexts))
        for name in names:
            pool = held_out_pool(root / name)
            for L in args.contexts:
                got = held_out_windows(pool, L, args.horizon, args.windows, args.seed)
                bar.advance(task)
                if got is None:
                    continue
                x, group, interval = got
                ctx, tgt = x[:, :L], x[:, L:]
                best = best_classical(ctx, tgt, group)
                cell = {"dataset": name, "context": L, "channels": int((group == 0).sum()), "best_classical": best}
                for p, m in models.items():
                    r = window_nmse(m.forecast(ctx, interval, args.horizon, group=group), tgt, group) / best
                    logs[p].append(math.log(r))
                    cell[f"ratio p={p:g}"] = r
                cells.append(cell)
    geo = {p: math.exp(sum(v) / len(v)) for p, v in logs.items()}
    chosen = min(geo, key=geo.get)
    print("| evidence_power | geometric mean of the ratio to the best classical | cells at or below it |")
    print("|---|---|---|")
    for p in args.powers:
        print(f"| {p:g} | {geo[p]:.4f} | {sum(v <= 0 for v in logs[p])} of {len(logs[p])} |")
    print(f"chosen: evidence_power = {chosen:g} ({len(names)} datasets x {len(args.contexts)} contexts, "
          f"{args.windows} held-out samples each)")
    result = {"model": args.model, "geometric_mean": {str(k): v for k, v in geo.items()}, "chosen": chosen,
              "cells": cells}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
