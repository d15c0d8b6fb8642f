"""Causal models against the better of persistence and the context mean on long CSI windows:
held-out *generated* links (drifting and still) and, for information, the real captures.

    PYTHONPATH=. python pretrain/still_links.py --models checkpoints/causal-tiny-catalog-cpu exports/causal-tiny-still-s0 \
        --data /tmp/long-csi --contexts 16 32 64 --out still_links.json

The generated sets are every WiFi recipe (``data/recipes/wifi``) and TDL-A with ``time_steps: 72``
at ``--seed`` (9090: no pretraining drew them), generated into ``--data`` where missing
(``check_mean.generate``). Per set and context, ``--windows`` held-out samples, each with all its
channels pooled into one window (as ``wfm benchmark real`` pools a capture's), are forecast 8
packets ahead. The ``wifi-still-*`` sets (links that hold their level) are summarised apart from
the others, whose level drifts within the window (their speed, AGC steps that stay). The real
captures of ``--real`` are the time views of ``wfm benchmark real --time-only --csi-window C+8``:
read for information, never to choose.

Prints each cell's ratio of per-window NMSE to the better of persistence and the context mean
(< 1 beats both), and per context and group the geometric mean and how many are at or below 1.
Each cell also has two classical columns that tell a link holding its level from a drifting one:
the mean of the last 8 packets and persistence, each as a ratio to the context mean (above 1
where the level holds: the whole context estimates it best). ``--gain`` adds two ad hoc readings
of the first model (no training, not options of the model): its forecast of the context with every
packet divided by the window's common gain (the RMS over its channels) relative to the context's
mean gain, taken as is (``gain-flat``: the future gain is the context's mean) or multiplied by the
model's own forecast of the gain series (``gain-model``). ``--gain-split`` instead scores the flat
reading as a per-link calibration would choose it: on the first and the second half of each real
capture's windows, and whether it beats the model as given beyond noise on each half.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

import wfm
from wfm.tasks.real_data import _to_series, forecast_windows
from wfm.tasks.real_datasets import STUDY_CSI_HOP, RealBenchConfig, default_datasets_dir, load_wifi

sys.path.insert(0, str(Path(__file__).parent))
from check_mean import generate, long_windows
from evidence_power import best_classical, window_errors, window_nmse


def drift_columns(ctx: torch.Tensor, target: torch.Tensor, group: torch.Tensor) -> dict[str, float]:
    """The mean of the last 8 values and persistence, as ratios of per-window NMSE to the context mean's."""
    mean = window_nmse(ctx.mean(1, keepdim=True).expand_as(target), target, group)
    return {"last8/mean": window_nmse(ctx[:, -8:].mean(1, keepdim=True).expand_as(target), target, group) / mean,
            "last/mean": window_nmse(ctx[:, -1:].expand_as(target), target, group) / mean}


def flat_reading(model: torch.nn.Module, ctx: torch.Tensor, group: torch.Tensor, interval: float,
                 horizon: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(flat [R, H], gain [W, L], ref [W, 1])``: the model's forecast of the context with every step
    of a window divided by its common gain (the RMS over the window's rows) relative to the context's
    mean gain ``ref`` (the future gain taken as that mean), and the gain series itself."""
    W = int(group.max()) + 1
    power = torch.zeros(W, ctx.shape[1]).index_add_(0, group, ctx ** 2)
    gain = (power / torch.bincount(group, minlength=W)[:, None]).sqrt()
    ref = gain.mean(1, keepdim=True)
    return model.forecast(ctx * (ref / gain)[group], interval, horizon, group=group), gain, ref


def gain_columns(model: torch.nn.Module, ctx: torch.Tensor, target: torch.Tensor, group: torch.Tensor,
                 interval: float, best: float) -> dict[str, float]:
    """``--gain``: the model's forecast of the gain-normalised context, with the context's mean gain
    (``gain-flat``) or the model's forecast of the gain series (``gain-model``) ahead; ratios to ``best``."""
    H = target.shape[1]
    flat, gain, ref = flat_reading(model, ctx, group, interval, H)
    ahead = model.forecast(gain, interval, H)  # one series per window
    return {"gain-flat": window_nmse(flat, target, group) / best,
            "gain-model": window_nmse(flat * (ahead / ref)[group], target, group) / best}


def real_views(root: Path, context: int):
    """Per real CSI time view of ``wfm benchmark real`` at ``context`` packets, 8 ahead:
    ``(view, ctx [R, context], target [R, 8], group [R])``, a window's channels one group."""
    for view in load_wifi(root / "wifi-csi", RealBenchConfig(csi_window=context + 8, csi_predict=8, csi_hop=STUDY_CSI_HOP)):
        ctx, target = _to_series(view.context), _to_series(view.target)  # a window's rows are consecutive
        yield view, ctx, target, torch.arange(view.windows).repeat_interleave(len(ctx) // view.windows)


def gain_split_rows(model: torch.nn.Module, root: Path, context: int) -> list[dict]:
    """``--gain-split``: the per-link calibration a user could run, on each real CSI time view at
    ``context`` packets: the flat gain-normalised reading (``flat_reading``) against the model as
    given on the first and the second half of the windows (in time order), each half's ratios to its
    better of persistence and the mean, and whether the flat reading beats the model beyond noise there
    (``wfm.tasks.significance.beats_beyond_noise``, the rule ``wfm calibrate`` applies)."""
    from wfm.tasks.significance import beats_beyond_noise

    rows = []
    for view, ctx, target, group in real_views(root, context):
        W = view.windows
        given = window_errors(_to_series(forecast_windows(model, view)), target, group)
        flat = window_errors(flat_reading(model, ctx, group, view.interval, 8)[0], target, group)
        mean = window_errors(ctx.mean(1, keepdim=True).expand_as(target), target, group)
        last = window_errors(ctx[:, -1:].expand_as(target), target, group)
        blocks = view.blocks()
        for half, sl in (("first", slice(0, W // 2)), ("second", slice(W // 2, W))):
            best = min(float(mean[sl].mean()), float(last[sl].mean()))
            rows.append({"view": f"{view.name} {view.view}", "context": context, "half": half, "windows": len(given[sl]),
                         "as given": float(given[sl].mean()) / best, "gain-flat": float(flat[sl].mean()) / best,
                         "flat beats beyond noise": beats_beyond_noise(given[sl], flat[sl],
                                                                       None if blocks is None else blocks[sl])})
    return rows


def real_ratios(models: dict[str, torch.nn.Module], root: Path, context: int,
                gain: bool = False) -> dict[str, dict[str, float]]:
    """Per real CSI time view at ``context`` packets: each model's ratio to the better of persistence
    and the mean, the drift columns and with ``gain`` the first model's gain columns."""
    out = {}
    for view, ctx, target, group in real_views(root, context):
        best = best_classical(ctx, target, group)
        row = {n: window_nmse(_to_series(forecast_windows(m, view)), target, group) / best for n, m in models.items()}
        out[f"REAL {view.name} {view.view}"] = {**row, **drift_columns(ctx, target, group), **(
            gain_columns(next(iter(models.values())), ctx, target, group, view.interval, best) if gain else {})}
    return out


def summarise(results: dict[str, dict[str, float]], names: list[str], contexts: list[int]) -> list[str]:
    """Per context, for the drifting sets, the still sets and the real views: each model's geometric
    mean of the ratios and how many are at or below 1."""
    lines = []
    for context in contexts:
        for label, pick in (("drifting sets", lambda s: not s.startswith(("wifi-still", "REAL"))),
                            ("still sets", lambda s: s.startswith("wifi-still")), ("real", lambda s: s.startswith("REAL"))):
            cells = [r for key, r in results.items() if key.endswith(f"|{context}") and pick(key)]
            if not cells:
                continue
            parts = []
            for n in names:
                v = [c[n] for c in cells]
                gm = math.exp(sum(map(math.log, v)) / len(v))
                parts.append(f"{gm:.4f} / {sum(x <= 1 for x in v)}")
            lines.append(f"context {context:3d} {label:14s} ({len(cells):2d}): " + "   ".join(parts))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["checkpoints/causal-tiny-catalog-cpu"])
    ap.add_argument("--data", type=Path, default=Path("/tmp/long-csi"), help="folder of the long generated sets")
    ap.add_argument("--real", type=Path, default=default_datasets_dir(), help="datasets folder ('' skips)")
    ap.add_argument("--contexts", type=int, nargs="+", default=[16, 32, 64], help="packets of context, at most 64")
    ap.add_argument("--sets", nargs="*", default=[], help="only the generated sets whose name holds one of these")
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--seed", type=int, default=9090)
    ap.add_argument("--gain", action="store_true", help="also the first model's gain-normalised readings")
    ap.add_argument("--gain-split", action="store_true",
                    help="only the first model's flat gain reading on each half of the real captures' windows (a per-link calibration)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if max(args.contexts) > 64:
        ap.error("--contexts: at most 64 (the generated sets hold 72 packets, 8 of them ahead)")
    torch.set_num_threads(args.threads)
    models = {m: wfm.from_pretrained(m).eval() for m in args.models}
    if args.gain_split:
        with torch.no_grad():
            rows = [r for c in args.contexts for r in gain_split_rows(next(iter(models.values())), args.real, c)]
        for r in rows:
            print(f"{r['view']:32s} {r['context']:3d} {r['half']:6s} {r['windows']:3d} windows  as given {r['as given']:.4f}"
                  f"  gain-flat {r['gain-flat']:.4f}  beats beyond noise: {r['flat beats beyond noise']}")
        if args.out:
            args.out.write_text(json.dumps({"models": list(models), "gain_split": rows}, indent=1))
        return
    generate(args.data, args.samples, args.seed, 72)
    names = list(models)
    results: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        for set_name, context, ctx, target, group, interval in long_windows(args.data, args.contexts, args.windows, args.sets):
            best = best_classical(ctx, target, group)
            row = {n: window_nmse(m.forecast(ctx, interval, 8, group=group), target, group) / best
                   for n, m in models.items()}
            results[f"{set_name}|{context}"] = row = {**row, **drift_columns(ctx, target, group), **(
                gain_columns(models[names[0]], ctx, target, group, interval, best) if args.gain else {})}
            print(f"{set_name:40s} {context:3d}  " + "  ".join(f"{v:.4f}" for v in row.values()), flush=True)
        if str(args.real) not in ("", "."):
            for context in args.contexts:
                for view, row in real_ratios(models, args.real, context, args.gain).items():
                    results[f"{view}|{context}"] = row
                    print(f"{view:40s} {context:3d}  " + "  ".join(f"{v:.4f}" for v in row.values()), flush=True)
    print("columns: " + " | ".join(names) + " | last8/mean | last/mean" + (" | gain-flat | gain-model" if args.gain else ""))
    print("\n".join(summarise(results, names, args.contexts)))
    if args.out:
        args.out.write_text(json.dumps({"models": names, "results": results}, indent=1))


if __name__ == "__main__":
    main()
