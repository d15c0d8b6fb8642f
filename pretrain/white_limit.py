"""Choose a causal model's ``white_limit`` on held-out *generated* windows; show it on the real ones.

    PYTHONPATH=. python pretrain/white_limit.py --model checkpoints/causal-tiny-catalog-cpu \
        --data $WFM_DATA --limits 0.3 0.5 0.7 --out white_limit.json

``CausalForecaster(white_limit=)`` gives a row (or a window's pooled channels) the context mean
where the context is too short for the backtest check and its lag-1 autocorrelation says white
noise (``wfm.models.evidence.looks_white``). This script scores that rule against the network alone:

- on held-out generated CSI windows (the validation split of each of the model's CSI
  pretraining datasets and of the ``--extra`` ones, as ``pretrain/evidence_power.py`` draws
  them): every channel of a sample as one window (``--windows`` samples), and every channel as a
  window of its own (``--rows`` samples), each at every ``--contexts`` length, horizon 8;
- on the CSI views of ``wfm benchmark real`` (8 packets predicting 8), for information only:
  rules are chosen on the generated windows.

Prints the geometric mean over datasets of the ratio of per-window NMSE to the best of
persistence and the context mean, and how many datasets are at or below 1, per limit and context;
then the geometric mean over every cell (dataset x context x pooled or alone) and the limit with
the lowest pooled geometric mean at each context. No single limit is picked here: at 3-4 values
the network loses to the mean even on windows that are not white (the short-context weakness of
pretrain/studies.md, "Contexts shorter than a patch"), which pulls the lowest limit up there
(pretrain/studies.md, "White noise where no check fits").
The network's forecast is computed once; each limit only changes which rows get the mean.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch
from rich.progress import Progress

import wfm

sys.path.insert(0, str(Path(__file__).parent))  # run as a script or loaded by the tests
from evidence_power import best_classical, has_csi, held_out_pool, held_out_windows, window_nmse
from wfm.models.evidence import backtest_scale, looks_white, shrunk_mean
from wfm.tasks.real_data import RealBenchConfig, _to_series, default_datasets_dir, load_real_datasets
from wfm.tasks.real_datasets import STUDY_CSI_HOP

EXTRA = ["zs-cdl-d-1p9-4x8-k64-t24", "zs-cdl-e-4p0-2x4-k64-t16", "zs-tdl-c-6p7-2x8-k128-t24"]


def with_limit(model, net: torch.Tensor, ctx: torch.Tensor, horizon: int, group: torch.Tensor | None,
               limit: float | None, shrink: bool = False, dips: bool = False, scale: bool = False) -> torch.Tensor:
    """``forecast``'s post-processing under ``white_limit = limit`` (and ``white_shrink = shrink``,
    ``white_dips = dips``, ``white_scale = scale``), from the network's forecast ``net``."""
    if limit is None or len(model.check_cuts(ctx.shape[1], horizon)) >= 2:
        return net
    mean = shrunk_mean(ctx, group).to(ctx.dtype) if shrink else ctx.mean(dim=1, keepdim=True)
    if scale:
        mean = (mean.double() * backtest_scale(ctx, group)).to(ctx.dtype)
    return torch.where(looks_white(ctx, limit, group, dips)[:, None], mean, net)


def variants(limits: list[float], shrink: bool, dips: bool = False,
             scale: bool = False) -> list[tuple[str, float | None, bool, bool, bool]]:
    """``(label, limit, shrink, dips, scale)``: the network alone, each limit, with ``shrink`` each
    limit with ``white_shrink`` too, with ``dips`` each of those with ``white_dips``, and with
    ``scale`` each of those with ``white_scale``."""
    out = [("network", None, False, False, False)] + [(str(lim), lim, False, False, False) for lim in limits]
    out += [(f"{lim} shrunk", lim, True, False, False) for lim in limits] if shrink else []
    out += [(f"{label} dips", lim, sh, True, False) for label, lim, sh, _, _ in out[1:]] if dips else []
    return out + ([(f"{label} scaled", lim, sh, dp, True) for label, lim, sh, dp, _ in out[1:]] if scale else [])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--limits", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    ap.add_argument("--data", default=os.environ.get("WFM_DATA", "data/generated"), help="folder of the generated datasets")
    ap.add_argument("--extra", nargs="*", default=EXTRA, help="held-out datasets under --data no pretraining saw")
    ap.add_argument("--real", default=str(default_datasets_dir()), help="real datasets folder ('' to skip)")
    ap.add_argument("--contexts", type=int, nargs="+", default=[3, 4, 6, 8])
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--windows", type=int, default=32, help="held-out samples per dataset and context, channels pooled")
    ap.add_argument("--rows", type=int, default=4, help="held-out samples per dataset and context, every channel alone")
    ap.add_argument("--shrink", action="store_true",
                    help="also score each limit with white_shrink (the mean shrunk towards zero where a window's "
                         "channels are zero-mean noise)")
    ap.add_argument("--dips", action="store_true",
                    help="also score each variant with white_dips (a window's common-gain dips left out of the "
                         "white test: wfm.models.evidence.fill_dips)")
    ap.add_argument("--scale", action="store_true",
                    help="also score each variant with white_scale (the mean scaled by what the context's own "
                         "backtest fits, where below a half: wfm.models.evidence.backtest_scale)")
    ap.add_argument("--seed", type=int, default=0, help="draw of the pooled windows (the lone ones: seed + 1)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = wfm.from_pretrained(args.model).eval()
    if model.check_origins < 2:
        raise SystemExit(f"{args.model}: white_limit needs check_origins >= 2 (it has {model.check_origins})")
    limits = variants(args.limits, args.shrink, args.dips, args.scale)
    root = Path(args.data)
    config = json.loads((Path(args.model) / "config.json").read_text())
    trained_on = [Path(d).name for d in ((config.get("training") or {}).get("data") or {}).get("datasets", [])]
    names = [n for n in trained_on + list(args.extra) if (root / n).is_dir() and has_csi(root / n)]
    if not names:
        raise SystemExit(f"{root}: none of the CSI datasets (generate them: pretrain/causal-tiny-catalog-cpu-data.sh)")
    H = args.horizon
    cells = []
    with Progress() as bar, torch.no_grad():
        task = bar.add_task("held-out windows", total=len(names) * len(args.contexts) * 2)
        for name in names:
            pool = held_out_pool(root / name)
            for L in args.contexts:
                for how, count, seed in (("pooled", args.windows, args.seed), ("alone", args.rows, args.seed + 1)):
                    got = held_out_windows(pool, L, H, count, seed)
                    bar.advance(task)
                    if got is None:
                        continue
                    x, group, interval = got
                    if how == "alone":
                        group = torch.arange(len(x))
                    ctx, tgt = x[:, :L], x[:, L:]
                    net = model.forecast(ctx, interval, H, group=group if how == "pooled" else None, check=False)
                    best = best_classical(ctx, tgt, group)
                    pooled = group if how == "pooled" else None
                    ratios = {key: window_nmse(with_limit(model, net, ctx, H, pooled, lim, sh, dp, sc), tgt, group) / best
                              for key, lim, sh, dp, sc in limits}
                    cells.append({"dataset": name, "context": L, "windows": how, "ratio": ratios})
    real = []
    if args.real:
        for d in load_real_datasets(args.real, RealBenchConfig(csi_hop=STUDY_CSI_HOP)):
            if not d.is_csi:
                continue
            series = _to_series(d.context)
            group = torch.arange(len(series)) // (len(series) // d.context.shape[0])
            net = model.forecast(series, float(d.interval), d.target.shape[1], group=group, check=False)
            mean = window_nmse(_to_series(d.context.mean(1, keepdim=True).expand_as(d.target)), _to_series(d.target), group)
            last = window_nmse(_to_series(d.context[:, -1:].expand_as(d.target)), _to_series(d.target), group)
            best = min(mean, last)
            real.append({"dataset": f"{d.name} {d.view}", "ratio": {
                key: window_nmse(with_limit(model, net, series, d.target.shape[1], group, lim, sh, dp, sc),
                                 _to_series(d.target), group) / best for key, lim, sh, dp, sc in limits}})
    print("| limit | windows | " + " | ".join(f"context {L}" for L in args.contexts) + " |")
    print("|---|---|" + "---|" * len(args.contexts))
    for how in ("pooled", "alone"):
        for key, *_ in limits:
            row = []
            for L in args.contexts:
                r = [c["ratio"][key] for c in cells if c["windows"] == how and c["context"] == L]
                row.append(f"{math.exp(sum(map(math.log, r)) / len(r)):.3f} / {sum(v <= 1 for v in r)} of {len(r)}" if r else "-")
            print(f"| {key} | {how} | " + " | ".join(row) + " |")
    def geo(key: str, how: str | None = None) -> float:
        r = [c["ratio"][key] for c in cells if how in (None, c["windows"])]
        return math.exp(sum(map(math.log, r)) / len(r))
    print()
    print("| limit | all pooled cells | all lone cells | all cells |")
    print("|---|---|---|---|")
    for key, *_ in limits:
        print(f"| {key} | {geo(key, 'pooled'):.4f} | {geo(key, 'alone'):.4f} | {geo(key):.4f} |")
    lowest = {}
    for L in args.contexts:
        pooled = {key: [c["ratio"][key] for c in cells if c["windows"] == "pooled" and c["context"] == L]
                  for key, *_ in limits}
        if pooled["network"]:
            lowest[L] = min(pooled, key=lambda k: sum(map(math.log, pooled[k])))
    print("lowest pooled geometric mean per context: " + ", ".join(f"{L} values: {k}" for L, k in lowest.items()))
    if real:
        print()
        print("| limit | " + " | ".join(r["dataset"] for r in real) + " |")
        print("|---|" + "---|" * len(real))
        for key, *_ in limits:
            print(f"| {key} | " + " | ".join(f"{r['ratio'][key]:.3f}" for r in real) + " |")
    result = {"model": args.model, "lowest": lowest, "cells": cells, "real": real}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
