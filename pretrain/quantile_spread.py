"""Score the causal model's quantiles on held-out generated series, with and without ``propagate_quantiles``.

    PYTHONPATH=. python pretrain/quantile_spread.py --model checkpoints/causal-tiny-catalog-cpu \
        --heldout /tmp/box-cox-heldout --out quantile_spread.json

The rollout appends each patch's point forecast as if it were observed, so the quantiles of the
patches after the first leave out how unsure the earlier ones were.
``CausalForecaster(propagate_quantiles=True)`` widens them by the network's response to paths
along the outer bounds (``wfm.models.causal_forecast.spread_bounds``). For each held-out cell,
this script reports, with the option off and on:

- ``inside``: the share of targets inside the outermost quantiles (0.1..0.9: 80 % nominal);
- ``first`` / ``last``: the same over the first and the last patch of the horizon;
- ``loss``: the weighted quantile loss, per window the pinball loss of every level (times 2) over
  the target's absolute sum, averaged over windows (a proper score: lower is better, and it
  rewards sharp intervals as well as covering ones).

Cells: the traffic of ``pretrain/box_cox.py`` (held-out series from the pretraining recipes with
a seed no pretraining used, ``--heldout``, generated where missing), without the idle-night
variants, and distance and azimuth of the vehicular and pedestrian trajectories and of
``--data``'s ``traj-highway-heldout`` (context 64, 16 ahead).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch
from torch import Tensor

import wfm

sys.path.insert(0, str(Path(__file__).parent))  # run as a script or loaded by the tests
import box_cox as study  # noqa: E402  (held-out series and their windows)
from wfm.data.series import dataset_interval  # noqa: E402
from wfm.data.shards import ShardedDataset  # noqa: E402
from wfm.tasks.forecasting import weighted_quantile_loss  # noqa: E402

TRAFFIC = [c for c in study.TRAFFIC if len(c) == 4]  # the idle-night cells are about zeros, not spread


@torch.no_grad()
def score(model, context: Tensor, target: Tensor, interval: float) -> dict[str, dict[str, float]]:
    """Coverage and loss of the model's quantiles with ``propagate_quantiles`` off and on."""
    levels = model.quantile_levels
    lo, hi = levels.index(min(levels)), levels.index(max(levels))
    p, kept, out = model.patch_len, model.propagate_quantiles, {}
    try:
        for name, flag in (("off", False), ("on", True)):
            model.propagate_quantiles = flag
            q = model.forecast(context, interval, target.shape[1], quantiles=True)
            inside = ((target >= q[..., lo]) & (target <= q[..., hi])).float()
            out[name] = {"inside": float(inside.mean()), "first": float(inside[:, :p].mean()),
                         "last": float(inside[:, -p:].mean()), "loss": weighted_quantile_loss(q, target, levels)}
    finally:
        model.propagate_quantiles = kept
    return out


def cells(model, heldout: Path, data: Path, traffic: list[tuple], traj: list[str], series: int,
          per_series: int, trajectories: int) -> list[dict]:
    out = []
    for rec, L, H, itv in traffic:
        ds = ShardedDataset(heldout / rec)
        x = ds.read_range(0, min(series, len(ds)), ["traffic"])["traffic"]
        ctx, tgt = study.series_windows(x.reshape(len(x), -1), L, H, per_series)
        out.append({"cell": f"{rec} (L={L}, H={H})", "windows": len(ctx), **score(model, ctx, tgt, itv)})
    folders = [heldout / t for t in traj] + ([data / "traj-highway-heldout"] if (data / "traj-highway-heldout").is_dir() else [])
    for folder in folders:
        ds = ShardedDataset(folder)
        r = ds.read_range(0, min(trajectories, len(ds)), ["distance", "aoa"])
        for field, x in (("distance", r["distance"]), ("azimuth", r["aoa"][..., 0])):
            ctx, tgt = study.series_windows(x, 64, 16, per_series)
            out.append({"cell": f"{folder.name} {field}", "windows": len(ctx),
                        **score(model, ctx, tgt, dataset_interval(ds))})
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    study.add_heldout_arguments(ap, TRAFFIC)
    ap.set_defaults(per_series=4)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("WFM_DATA", "data/generated")),
                    help="folder of the generated pretraining datasets (traj-highway-heldout)")
    ap.add_argument("--traj", nargs="*", default=study.TRAJ)
    ap.add_argument("--traj-samples", type=int, default=64, help="held-out trajectories per recipe")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = wfm.from_pretrained(args.model).eval()
    if len(model.quantile_levels) < 2:
        raise SystemExit(f"{args.model}: the model has no quantile head with two or more levels")
    traffic = study.traffic_specs(args.traffic)
    study.ensure_heldout(args.heldout, args.seed, [t[0] for t in traffic], args.traj,
                         {"traffic": args.series, "traj": args.traj_samples})
    rows = cells(model, args.heldout, args.data, traffic, args.traj, args.series, args.per_series, args.traj_samples)
    print("| cell | windows | inside | first patch | last patch | quantile loss |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        off, on = r["off"], r["on"]
        print(f"| {r['cell']} | {r['windows']} | {off['inside']:.2f} -> {on['inside']:.2f} | {off['first']:.2f} | "
              f"{off['last']:.2f} -> {on['last']:.2f} | {off['loss']:.4f} -> {on['loss']:.4f} |")
    ratios = [r["on"]["loss"] / r["off"]["loss"] for r in rows]
    summary = {"geometric_mean_loss_ratio": math.exp(sum(map(math.log, ratios)) / len(ratios)),
               "better": sum(x < 1 for x in ratios), "worse": sum(x > 1 for x in ratios), "cells": len(ratios)}
    print(f"propagate_quantiles: loss ratio, geometric mean {summary['geometric_mean_loss_ratio']:.4f}; "
          f"better on {summary['better']}, worse on {summary['worse']} of {summary['cells']} cells")
    result = {"model": args.model, "seed": args.seed, "cells": rows, "summary": summary}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
