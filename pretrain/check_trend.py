"""Score the causal model's ``check_trend`` on held-out *generated* series of every kind and on real paths.

    PYTHONPATH=. python pretrain/check_trend.py --model checkpoints/causal-tiny-catalog-cpu \
        --heldout /tmp/check-trend-heldout --seeds 777 778 779 --out check_trend.json

On a smooth path (a vehicle's distance to the base station, its bearing) the network and the
guard's soft classical combination do not continue the last step in full: on the real DeepSense 6G
distance, 16 values -> 4, the release was 0.53x persistence where the last value plus the last
step's change alone is 0.26x. ``check_trend`` tests that extrapolation on the checks of
``check_origins`` against the forecast so far and moves the forecast towards it where it led
(``trend_share``). A GPS fix that jumps makes the last step a poor slope, so ``--candidate``
also scores a robust one (the last step, unless its change from the step before is more than 4
times the median change of slope over the 8 steps before; then the median of the last 4 steps):
the script swaps :func:`wfm.models.causal_forecast.last_step_trend` for it while it scores.

Scored off, with each share (``half``, ``fitted``, as ``check_season``) and with ``fitted`` plus
``trend_local`` (``local``: the extrapolation also where the context's own steps vouch for it, a
path that turned after its checks' cuts) on the held-out cells of ``pretrain/box_cox.py`` (traffic
at 1-60 minutes, vehicular, pedestrian and highway distance and azimuth, CSI amplitude) and on the
same trajectories at the real paths' shapes (16 -> 4, 32 -> 8), and held-out vehicular paths with a GPS
receiver's error (``traj-vehicular-gps``, at those shapes and 64 -> 16), held-out series drawn with each of
``--seeds`` (no pretraining used them), and, for information, on DeepSense 6G distance and bearing
(``--real``). Prints each cell's
ratio of per-window NMSE to the best of persistence, the context mean and seasonal naive (< 1 beats
them) and, per seed, the geometric mean over the cells.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

import wfm
import wfm.models.causal_forecast as causal_forecast

sys.path.insert(0, str(Path(__file__).parent))  # run as a script or loaded by the tests
from box_cox import CSI, TRAFFIC, TRAJ, best_classical, ensure_heldout, heldout_series, path_windows
from check_season import summary
from evidence_power import window_nmse

#: Each variant's options: ``check_trend`` off, each ``trend_share``, and ``fitted`` with
#: ``trend_local`` (session 58: also where the context's own steps vouch for the slope).
OPTIONS = {"off": dict(check_trend=False, trend_share="half", trend_local=False),
           "half": dict(check_trend=True, trend_share="half", trend_local=False),
           "fitted": dict(check_trend=True, trend_share="fitted", trend_local=False),
           "local": dict(check_trend=True, trend_share="fitted", trend_local=True)}
VARIANTS = tuple(OPTIONS)
#: The held-out trajectory recipes also at the real paths' shapes (``wfm benchmark real``'s 16 -> 4).
PATH_SHAPES = ((16, 4), (32, 8))
#: Held-out paths with a GPS receiver's error (data/README.md, "GPS error"), at those shapes and 64 -> 16.
GPS_TRAJ = ["traj-vehicular-gps"]
LAST_STEP = causal_forecast.last_step_trend


def robust_step_trend(context: torch.Tensor, horizon: int) -> torch.Tensor:
    """``[B, horizon]`` float64: the last step continued, unless its change from the step before
    departs from the last 8 steps' median change of slope by more than 4 times it (a jump, not a
    bend); then the median of the last 4 steps continued."""
    x = context.double()
    h = torch.arange(1, horizon + 1, dtype=torch.float64, device=x.device)
    d = x[:, 1:] - x[:, :-1]
    if d.shape[1] < 3:
        return LAST_STEP(context, horizon)
    last, before = d[:, -1:], d[:, -9:-1]
    bend = (before[:, 1:] - before[:, :-1]).abs().median(dim=1, keepdim=True).values
    jump = (last - before[:, -1:]).abs() > 4 * bend
    slope = torch.where(jump, d[:, -4:].median(dim=1, keepdim=True).values, last)
    return x[:, -1:] + h * slope


CANDIDATES = {"last": LAST_STEP, "robust": robust_step_trend}


@torch.no_grad()
def ratios(model, ctx: torch.Tensor, tgt: torch.Tensor, group: torch.Tensor, interval: float,
           variants: tuple[str, ...] | None = None, options: dict[str, dict] | None = None) -> dict[str, float]:
    """Each variant's per-window NMSE over the best classical's (the model's options restored):
    ``options`` (default :data:`OPTIONS`) maps each variant to the model attributes it sets;
    ``variants``: those scored (default: all of them)."""
    options = OPTIONS if options is None else options
    best = best_classical(ctx, tgt, group, interval)
    kept, out = {k: getattr(model, k) for k in options["off"]}, {}
    try:
        for v in tuple(options) if variants is None else variants:
            for k, value in options[v].items():
                setattr(model, k, value)
            out[v] = window_nmse(model.forecast(ctx, interval, tgt.shape[1], group=group), tgt, group) / best
    finally:
        for k, value in kept.items():
            setattr(model, k, value)
    return out


def path_cells(heldout: Path, data: Path, shapes: tuple[tuple[int, int], ...] = PATH_SHAPES):
    """``(name, context, target, group, interval)``: the distance and azimuth of the held-out
    trajectory recipes (and ``data``'s ``traj-highway-heldout``) in windows of each ``(context,
    horizon)``, up to 16 a trajectory, as ``box_cox.heldout_series`` cuts them at 64 -> 16 (8 a
    trajectory), and of the held-out paths with GPS error (:data:`GPS_TRAJ`) also at 64 -> 16."""
    folders = [heldout / t for t in TRAJ] + [data / "traj-highway-heldout"] + [heldout / t for t in GPS_TRAJ]
    for folder in (f for f in folders if f.is_dir()):
        cuts = tuple((L, H, 16) for L, H in shapes) + (((64, 16, 8),) if folder.name in GPS_TRAJ else ())
        for field, L, H, ctx, tgt, interval in path_windows(folder, cuts):
            yield f"{folder.name} {field} (L={L}, H={H})", ctx, tgt, torch.arange(len(ctx)), interval


def real_paths(root: Path, contexts: tuple[tuple[int, int], ...] = ((16, 4), (32, 8))):
    """``(name, context, target, group, interval)`` of DeepSense 6G distance and bearing, windowed
    by ``wfm benchmark real``'s loader at each ``(context, horizon)``."""
    from wfm.tasks.real_datasets import RealBenchConfig, load_beams

    folder = root / "deepsense6g-beam"
    if not folder.is_dir():
        return
    for L, H in contexts:
        for d in load_beams(folder, RealBenchConfig(beam_context=L, beam_horizon=H)):
            if d.view in ("distance", "bearing"):
                yield f"DeepSense 6G {d.view} (L={L}, H={H})", d.context, d.target, torch.arange(len(d.context)), d.interval


def heldout_parser(doc: str, traffic: bool = True) -> argparse.ArgumentParser:
    """The arguments of the scripts that score an inference option on held-out cells: the model,
    the held-out folder and seeds, ``WFM_DATA``, threads, the output JSON (and, with ``traffic``,
    the held-out traffic series per recipe and windows per series)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--model", default="checkpoints/causal-tiny-catalog-cpu")
    ap.add_argument("--heldout", type=Path, required=True, help="folder of per-seed held-out datasets (made if missing)")
    ap.add_argument("--seeds", type=int, nargs="*", default=[777], help="held-out seeds (none: only --real)")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("WFM_DATA", "data/generated")),
                    help="folder of the generated pretraining datasets (CSI, traj-highway-heldout)")
    if traffic:
        ap.add_argument("--series", type=int, default=16, help="held-out traffic series per recipe")
        ap.add_argument("--per-series", type=int, default=16, help="windows per traffic series")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    return ap


def checked_model(ap: argparse.ArgumentParser, args: argparse.Namespace, option: str):
    """``args.model`` loaded on ``args.threads`` threads; a one-line error where it has no checks."""
    torch.set_num_threads(args.threads)
    model = wfm.from_pretrained(args.model).eval()
    if not model.check_origins:
        ap.error(f"{args.model}: {option} needs a model with check_origins")
    return model


def heldout_cells(folder: Path, seed: int, data: Path, series: int, per_series: int) -> list[tuple]:
    """``(name, context, target, group, interval)`` of every held-out cell of ``seed`` (made in
    ``folder`` where missing): ``box_cox.py``'s cells and the trajectories at the real paths' shapes."""
    ensure_heldout(folder, seed, list(dict.fromkeys(c[0] for c in TRAFFIC)), TRAJ + GPS_TRAJ,
                   {"traffic": series, "traj": 64})
    cells = [(name, ctx, tgt, group, itv) for name, _, ctx, tgt, group, itv
             in heldout_series(folder, data, TRAFFIC, TRAJ, CSI, per_series, 16)]
    return cells + list(path_cells(folder, data))


def score_cells(label: str, cells, score, named: bool = False) -> dict:
    """``{"cells", "summary"}``: each cell's ``score(context, target, group, interval)`` (a dict of
    ratios per variant; with ``named``, the cell's name is passed last), printed as it comes, and
    each variant's geometric mean over the cells (none without cells)."""
    rows = {}
    for name, ctx, tgt, group, itv in cells:
        rows[name] = score(ctx, tgt, group, itv, name) if named else score(ctx, tgt, group, itv)
        print(f"{label}  {name:48s} " + "  ".join(f"{k} {v:.4f}" for k, v in rows[name].items()), flush=True)
    s = summary(rows) if rows else {}
    if s:
        print(f"{label}: " + ", ".join(f"{k} {v['geometric_mean']:.4f} ({v['at_or_below_1']} of {len(rows)} <= 1)"
                                       for k, v in s.items()), flush=True)
    return {"cells": rows, "summary": s}


def variants_main(argv: list[str] | None, doc: str, option: str, variants: dict, ratios,
                  cells=None, needs: str | None = None) -> dict:
    """The ``main`` of a script that scores variants of one inference ``option`` (each a key of
    ``variants``, ``"off"`` always among those scored) on :func:`heldout_cells` of every seed:
    ``ratios(model, context, target, group, interval, names)`` gives a cell's row. ``cells(ap)``, to
    score other cells, may add arguments to ``ap`` and returns ``(args, seed) -> cells``; ``needs``:
    an option the model must have on (``option`` acts through it)."""
    ap = heldout_parser(doc)
    ap.add_argument("--variants", nargs="+", choices=list(variants), default=list(variants))
    seed_cells = cells(ap) if cells else None
    args = ap.parse_args(argv)
    model = checked_model(ap, args, option)
    if needs and not getattr(model, needs):
        ap.error(f"{args.model}: {option} acts through {needs}, which the model does not have on")
    names = tuple(dict.fromkeys(["off", *args.variants]))
    result: dict = {"model": args.model, "seeds": {}}
    for seed in args.seeds:
        cells_of_seed = (seed_cells(args, seed) if seed_cells else
                         heldout_cells(args.heldout / str(seed), seed, args.data, args.series, args.per_series))
        result["seeds"][str(seed)] = score_cells(f"seed {seed}", cells_of_seed, lambda *cell: ratios(model, *cell, names))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = heldout_parser(__doc__)
    ap.add_argument("--real", type=Path, default=None, help="real datasets folder (default: wfm benchmark real's; '' skips)")
    ap.add_argument("--candidate", choices=sorted(CANDIDATES), default="last")
    args = ap.parse_args(argv)
    model = checked_model(ap, args, "check_trend")
    causal_forecast.last_step_trend = CANDIDATES[args.candidate]
    result: dict = {"model": args.model, "candidate": args.candidate, "seeds": {}}
    try:
        for seed in args.seeds:
            cells = heldout_cells(args.heldout / str(seed), seed, args.data, args.series, args.per_series)
            result["seeds"][str(seed)] = score_cells(f"seed {seed}", cells,
                                                     lambda *cell: ratios(model, *cell))
        if args.real is None:
            from wfm.tasks.real_data import default_datasets_dir
            args.real = default_datasets_dir()
        if str(args.real):
            result["real"] = score_cells("real", list(real_paths(Path(args.real))),
                                         lambda *cell: ratios(model, *cell))["cells"]
    finally:
        causal_forecast.last_step_trend = LAST_STEP
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
