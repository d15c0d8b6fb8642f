"""Score the causal model's ``box_cox`` option on held-out *generated* series of every kind; show it on the real ones.

    PYTHONPATH=. python pretrain/box_cox.py --model checkpoints/causal-tiny-catalog-cpu \
        --heldout /tmp/box-cox-heldout --out box_cox.json

``CausalForecaster(box_cox=True)`` forecasts a non-negative row (or a window's pooled
channels) in the Box-Cox space its context chooses by Guerrero's method
(``wfm.models.box_cox``) and transforms the forecast back. This script scores the model as
given, with ``box_cox``, and, for reference, with the log forced on every positive row:

- held-out generated series, from recipes the model was pretrained on but with a seed no
  pretraining used (``--seed``, 777; generated into ``--heldout`` where missing):
  - traffic at 1, 2, 5, 10, 15 and 60 minutes (with and without regimes), 16 series each, one
    day of context (a week for hourly) and an hour ahead (a day for hourly), up to 16 windows
    per series a horizon apart; every window a series of its own; and three of them as cells
    idle at night (each series less its 20th percentile, clipped at 0; windows whose target is
    all zeros dropped);
  - vehicular and pedestrian trajectories (64 each) and ``--data``'s ``traj-highway-heldout``:
    distance and azimuth (deg), context 64, 16 ahead;
  - the amplitude ``|H|`` of the last 16 samples of ``--data``'s CSI datasets in ``CSI``, every
    channel of a sample one window (pooled), the last 8 packets ahead of the rest;
- the real datasets of ``wfm benchmark real`` (``--real``; '' skips them), for information only:
  the option is chosen on the generated series.

Prints each cell's ratio of per-window NMSE to the best classical baseline (persistence, context
mean, seasonal naive where the context holds a day; < 1 beats them), the geometric mean over
cells and how many are at or below 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

import wfm

sys.path.insert(0, str(Path(__file__).parent))  # run as a script or loaded by the tests
from evidence_power import window_nmse
from wfm.data.series import dataset_interval
from wfm.data.shards import ShardedDataset
from wfm.models.baselines import seasonal_period
from wfm.models.box_cox import box_cox, inv_box_cox
from wfm.models.groups import pool_rows

RECIPES = Path(__file__).resolve().parent.parent / "data" / "recipes"
#: (recipe, context, horizon, interval s): a day of context, an hour ahead (hourly: a week, a day).
TRAFFIC = [("traffic-1min", 1440, 60, 60), ("traffic-2min", 720, 30, 120), ("traffic-5min", 288, 12, 300),
           ("traffic-10min", 144, 6, 600), ("traffic-10min", 96, 12, 600), ("traffic-10min-regimes", 96, 12, 600),
           ("traffic-15min", 96, 4, 900), ("traffic-hourly", 168, 24, 3600), ("traffic-hourly-regimes", 168, 24, 3600),
           ("traffic-2min", 720, 30, 120, "idle"), ("traffic-5min", 288, 12, 300, "idle"), ("traffic-10min", 96, 12, 600, "idle")]
TRAJ = ["traj-vehicular", "traj-pedestrian"]
CSI = ["zs-cdl-d-1p9-4x8-k64-t24", "zs-cdl-e-4p0-2x4-k64-t16", "zs-tdl-c-6p7-2x8-k128-t24", "umi-3p5-2x8-k64-t16",
       "wifi-intel-5p2-3x1-k30-t24", "wifi-nexmon-5p8-1x1-k242-t16", "wifi-jitter-intel-5p2-6x1-k30-t16",
       "wifi-static-nexmon-5p8-1x1-k242-t16"]
VARIANTS = ("as given", "box_cox", "log (reference)")


def ensure_heldout(folder: Path, seed: int, traffic: list[str], traj: list[str], samples: dict[str, int]) -> None:
    """Generate the held-out datasets missing from ``folder`` (recipes from ``data/recipes``)."""
    from wfm.data.generate import generate_dataset
    from wfm.data.recipes import load_recipe

    for name in dict.fromkeys(traffic + traj):
        if not (folder / name / "manifest.json").exists():
            recipe = load_recipe(RECIPES / f"{name}.yaml")
            generate_dataset(recipe, folder / name, num_samples=samples["traffic" if name in traffic else "traj"],
                             seed=seed)


def series_windows(x: np.ndarray, context: int, horizon: int, per_series: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(context [W, L], target [W, H])``: up to ``per_series`` windows of each row of ``x``
    ``[S, T]``, a horizon apart and spread evenly over the series."""
    rows = []
    for s in x:
        starts = list(range(0, len(s) - context - horizon + 1, horizon))
        if len(starts) > per_series:
            starts = [starts[i] for i in np.linspace(0, len(starts) - 1, per_series).astype(int)]
        rows += [s[a:a + context + horizon] for a in starts]
    w = torch.tensor(np.stack(rows), dtype=torch.float32)
    return w[:, :context], w[:, context:]


def best_classical(ctx: torch.Tensor, tgt: torch.Tensor, group: torch.Tensor, interval: float) -> float:
    """Per-window NMSE of the best of persistence, the context mean and seasonal naive (period
    from the interval, where the context holds it)."""
    scores = [window_nmse(ctx[:, -1:].expand_as(tgt), tgt, group),
              window_nmse(ctx.mean(1, keepdim=True).expand_as(tgt), tgt, group)]
    period = seasonal_period(interval, ctx.shape[1])
    if period is not None:
        idx = ctx.shape[1] - period + torch.arange(tgt.shape[1]) % period
        scores.append(window_nmse(ctx[:, idx], tgt, group))
    return min(scores)


@torch.no_grad()
def forecasts(model, ctx: torch.Tensor, interval: float, horizon: int, group: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each variant's forecast; the model's ``box_cox`` is restored."""
    kept, out = model.box_cox, {}
    try:
        for name in VARIANTS[:2]:
            model.box_cox = name == "box_cox"
            out[name] = model.forecast(ctx, interval, horizon, group=group)
        model.box_cox = False
        positive = pool_rows((ctx <= 0).any(dim=1).float(), group) == 0
        lam = torch.where(positive, 0.0, 1.0).double()
        out[VARIANTS[2]] = inv_box_cox(model.forecast(box_cox(ctx, lam), interval, horizon, group=group), lam)
    finally:
        model.box_cox = kept
    return out


def score(model, name: str, kind: str, ctx: torch.Tensor, tgt: torch.Tensor, group: torch.Tensor,
          interval: float) -> dict:
    best = best_classical(ctx, tgt, group, interval)
    got = forecasts(model, ctx, interval, tgt.shape[1], group)
    return {"cell": name, "kind": kind, "windows": int(group.max()) + 1,
            "ratio": {k: window_nmse(v, tgt, group) / best for k, v in got.items()}}


def cell_name(cell: tuple) -> str:
    """A traffic cell's printed name: its recipe, whether idle at night, its context and horizon."""
    rec, L, H, _, *idle = cell
    return f"{rec}{', idle nights' if idle else ''} (L={L}, H={H})"


def traffic_cell(heldout: Path, cell: tuple, per_series: int,
                 series: int | None = None) -> tuple[str, torch.Tensor, torch.Tensor]:
    """``(name, context, target)`` of a traffic cell ``(recipe, L, H, interval[, "idle"])``: up to
    ``per_series`` windows of each held-out series of the recipe (the first ``series``; all without),
    idle cells less each series' 20th percentile (clipped at 0), all-zero targets dropped."""
    rec, L, H, _, *idle = cell
    ds = ShardedDataset(heldout / rec)
    x = ds.read_range(0, len(ds) if series is None else min(series, len(ds)), ["traffic"])["traffic"]
    x = x.reshape(len(x), -1)
    if idle:  # a cell idle at night: zero below each series' 20th percentile
        x = np.maximum(x - np.quantile(x, 0.2, axis=1, keepdims=True), 0.0)
    ctx, tgt = series_windows(x, L, H, per_series)
    keep = tgt.pow(2).sum(dim=1) > 0  # an all-zero target has no NMSE
    return cell_name(cell), ctx[keep], tgt[keep]


def path_windows(folder: Path, shapes: tuple[tuple[int, int, int], ...] = ((64, 16, 8),)):
    """``(field, context_len, horizon, context, target, interval)``: the distance and azimuth of the
    first 64 trajectories of ``folder`` in windows of each ``(context, horizon, per trajectory)``."""
    ds = ShardedDataset(folder)
    r = ds.read_range(0, min(64, len(ds)), ["distance", "aoa"])
    for field, x in (("distance", r["distance"]), ("azimuth", r["aoa"][..., 0])):
        for L, H, per in shapes:
            ctx, tgt = series_windows(x, L, H, per)
            yield field, L, H, ctx, tgt, dataset_interval(ds)


def heldout_series(heldout: Path, data: Path, traffic: list[tuple], traj: list[str], csi: list[str],
                   per_series: int, csi_samples: int, progress=lambda: None):
    """``(name, kind, context, target, group, interval)`` of each held-out cell (module doc):
    ``traffic`` cells, ``traj`` recipes in ``heldout`` and ``data``'s ``traj-highway-heldout``,
    ``csi`` datasets in ``data`` (those present); ``progress`` is called after each."""
    for cell in traffic:
        name, ctx, tgt = traffic_cell(heldout, cell, per_series)
        yield name, "traffic", ctx, tgt, torch.arange(len(ctx)), cell[3]
        progress()
    folders = [heldout / t for t in traj] + ([data / "traj-highway-heldout"] if (data / "traj-highway-heldout").is_dir() else [])
    for folder in folders:
        for field, _, _, ctx, tgt, interval in path_windows(folder):
            yield f"{folder.name} {field}", field, ctx, tgt, torch.arange(len(ctx)), interval
        progress()
    for name in csi:
        if not (data / name).is_dir():
            progress()
            continue
        ds = ShardedDataset(data / name)
        n = min(csi_samples, len(ds))
        h = torch.from_numpy(ds.read_range(len(ds) - n, len(ds), ["csi"])["csi"]).abs()  # [S, T, A, K]
        s, t = h.shape[:2]
        x = h.reshape(s, t, -1).movedim(1, -1).reshape(-1, t)
        group = torch.arange(s).repeat_interleave(x.shape[0] // s)
        yield f"{name} |H| (L={t - 8})", "csi amplitude", x[:, :t - 8], x[:, t - 8:], group, dataset_interval(ds)
        progress()


def generated_cells(model, heldout: Path, data: Path, traffic: list[tuple], traj: list[str], csi: list[str],
                    per_series: int, csi_samples: int, progress) -> list[dict]:
    return [score(model, name, kind, ctx, tgt, group, interval) for name, kind, ctx, tgt, group, interval
            in heldout_series(heldout, data, traffic, traj, csi, per_series, csi_samples, progress)]


def real_cells(model, root: str) -> list[dict]:
    from wfm.tasks.real_data import forecast_windows, load_real_datasets
    from wfm.tasks.metrics import window_nmse as real_window_nmse
    from wfm.tasks.real_data import RealBenchConfig, classical_rows
    from wfm.tasks.real_datasets import STUDY_CSI_HOP

    cfg, cells = RealBenchConfig(csi_hop=STUDY_CSI_HOP), []
    kept = model.box_cox
    try:
        for d in load_real_datasets(root, cfg):
            best = min(r["window_nmse"] for r in classical_rows(d, cfg) if r["kind"] == "classical" and "window_nmse" in r)
            ratio = {}
            for name in VARIANTS[:2]:
                model.box_cox = name == "box_cox"
                ratio[name] = float(real_window_nmse(forecast_windows(model, d, cfg.batch_series), d.target).mean()) / best
            cells.append({"cell": f"{d.name} ({d.view})", "kind": "real", "windows": d.windows, "ratio": ratio})
    finally:
        model.box_cox = kept
    return cells


def geo(cells: list[dict], name: str) -> float:
    vals = [c["ratio"][name] for c in cells if name in c["ratio"]]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else float("nan")


def add_heldout_arguments(ap: argparse.ArgumentParser, traffic: list[tuple]) -> None:
    """The options of the held-out series this script and ``pretrain/coarse_blend.py`` score:
    ``--model``, ``--heldout``, ``--seed``, ``--traffic`` (default ``traffic``'s cells),
    ``--series``, ``--per-series``, ``--threads`` and ``--out``."""
    ap.add_argument("--model", required=True)
    ap.add_argument("--heldout", type=Path, required=True, help="folder of the held-out generated datasets (made if missing)")
    ap.add_argument("--seed", type=int, default=777, help="seed of the held-out series (pretraining used others)")
    ap.add_argument("--traffic", nargs="*", default=[":".join(map(str, c)) for c in traffic],
                    help="RECIPE:CONTEXT:HORIZON:INTERVAL_S cells; a fifth field 'idle' zeroes each series below its "
                         "20th percentile (a cell idle at night)")
    ap.add_argument("--series", type=int, default=16, help="held-out traffic series per recipe")
    ap.add_argument("--per-series", type=int, default=16, help="windows per traffic series")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)


def traffic_specs(specs: list[str]) -> list[tuple]:
    """``--traffic`` cells as ``(recipe, context, horizon, interval s[, "idle"])``."""
    return [(r, int(L), int(H), float(i), *idle) for r, L, H, i, *idle in (c.split(":") for c in specs)]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_heldout_arguments(ap, TRAFFIC)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("WFM_DATA", "data/generated")),
                    help="folder of the generated pretraining datasets (CSI, traj-highway-heldout)")
    ap.add_argument("--traj", nargs="*", default=TRAJ)
    ap.add_argument("--csi", nargs="*", default=CSI, help="CSI datasets under --data (their last samples)")
    ap.add_argument("--traj-samples", type=int, default=64, help="held-out trajectories per recipe")
    ap.add_argument("--csi-samples", type=int, default=16)
    ap.add_argument("--real", default=None, help="real datasets folder (default: wfm benchmark real's; '' skips)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = wfm.from_pretrained(args.model).eval()
    traffic = traffic_specs(args.traffic)
    ensure_heldout(args.heldout, args.seed, [t[0] for t in traffic], args.traj,
                   {"traffic": args.series, "traj": args.traj_samples})
    with Progress(transient=True) as bar:
        task = bar.add_task("held-out cells", total=len(traffic) + len(args.traj) + 1 + len(args.csi))
        cells = generated_cells(model, args.heldout, args.data, traffic, args.traj, args.csi, args.per_series,
                                args.csi_samples, lambda: bar.advance(task))
    from wfm.tasks.real_data import default_datasets_dir

    real_root = str(default_datasets_dir()) if args.real is None else args.real
    real = real_cells(model, real_root) if real_root and Path(real_root).is_dir() else []
    print("| cell | windows | " + " | ".join(VARIANTS) + " |")
    print("|---|---|" + "---|" * len(VARIANTS))
    for c in cells + real:
        print(f"| {c['cell']} | {c['windows']} | " + " | ".join(
            f"{c['ratio'][v]:.4f}" if v in c["ratio"] else "" for v in VARIANTS) + " |")
    summary = {}
    for tag, sub in (("held-out generated", cells), ("real", real)):
        if sub:
            summary[tag] = {v: {"geometric_mean": geo(sub, v), "at_or_below_1": sum(c["ratio"][v] <= 1 for c in sub
                                                                                      if v in c["ratio"]),
                                "cells": sum(v in c["ratio"] for c in sub)} for v in VARIANTS if v in sub[0]["ratio"]}
            print(f"{tag}: " + "; ".join(f"{v} {s['geometric_mean']:.4f} ({s['at_or_below_1']} of {s['cells']} <= 1)"
                                        for v, s in summary[tag].items()))
    result = {"model": args.model, "seed": args.seed, "cells": cells, "real": real, "summary": summary}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
