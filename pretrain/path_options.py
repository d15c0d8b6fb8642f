"""Score a causal inference option on held-out *generated* paths and traffic, and on the real paths.

The options: ``raw_paths``, ``ar_given``, ``level_shift``, ``white_level``, ``walk_last``.

    PYTHONPATH=. python pretrain/path_options.py --option raw_paths --model checkpoints/causal-tiny-catalog-cpu \
        --heldout /tmp/check-trend-heldout --seeds 777 778 779 --out raw_paths.json

The first two were found on paths (a user's bearing, distance); each must leave noise alone:

- ``raw_paths``: ``box_cox`` forecasts every non-negative context in the Box-Cox space Guerrero's
  method chooses. An angle that stays positive through its context (a bearing decaying towards
  zero) gets an exponent below 1 there, and the inverse transform bounds the forecast at zero,
  which the angle then crosses. The option forecasts the rows whose own steps vouch for their
  trend (:func:`wfm.models.causal_forecast.trend_holds_locally`: smooth paths) as given.
- ``ar_given``: a rollout's later patches refitted the ``ar`` estimator on the appended forecast
  and chose its order on errors against it; a bent forecast patch drew an explosive recursion (a
  bearing through zero forecast up to 165 degrees). The option fits and chooses it on the given
  context only, and runs that recursion from the values as they stand.
- ``level_shift`` (found on a toy, scored here for what it must leave alone): a context that held
  one level and stepped to another within its last 32 values drifted back towards the old level,
  which every backtest and check favoured; the option forecasts the level since the shift
  (:func:`wfm.models.level_shift.level_shift_start`).
- ``white_level`` (found on textbook white noise and the real Nexmon series at 128-512 values,
  scored here for what it must leave alone): ``white_limit``'s mean also for long contexts that
  are white beyond doubt (:func:`wfm.models.evidence.white_beyond_doubt`).
- ``walk_last`` (found on public random walks: a share price, a heart rate; scored here for what
  it must leave alone): the last value, plus a drift beyond doubt, for rows that are random walks
  beyond doubt (:func:`wfm.models.evidence.walk_beyond_doubt`) and hold no season they cannot read.

Scored off and on, on the distance and azimuth of the held-out trajectory recipes of
``pretrain/check_trend.py`` (vehicular, pedestrian, vehicular with a GPS receiver's error, and
``--data``'s ``traj-highway-heldout``) at 64 -> 16, 32 -> 8 and 16 -> 4, on the held-out traffic
cells of ``pretrain/box_cox.py``, series drawn with each of ``--seeds`` (no pretraining used them),
and, for information, on DeepSense 6G distance and bearing (``--real``). Distances are forecast as
ranges (``ranges=True``), as the series tasks and ``wfm benchmark real`` forecast them. Prints
each cell's ratio of per-window NMSE to the best of persistence, the context mean and seasonal
naive (< 1 beats them) and, per seed, the geometric mean over the cells.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))  # run as a script or loaded by the tests
from box_cox import TRAFFIC, TRAJ, best_classical, ensure_heldout, path_windows, traffic_cell
from check_range import SHAPES
from check_trend import GPS_TRAJ, checked_model, heldout_parser, real_paths, score_cells
from evidence_power import window_nmse


#: The options this script scores.
OPTIONS = ("raw_paths", "ar_given", "level_shift", "white_level", "walk_last")


@torch.no_grad()
def ratios(model, ctx: torch.Tensor, tgt: torch.Tensor, interval: float, ranges: bool,
           option: str = "raw_paths") -> dict[str, float]:
    """``option`` off and on: per-window NMSE over the best classical's (the option restored)."""
    group = torch.arange(len(ctx))
    best = best_classical(ctx, tgt, group, interval)
    kept, out = getattr(model, option), {}
    try:
        for name in ("off", "on"):
            setattr(model, option, name == "on")
            pred = model.forecast(ctx, interval, tgt.shape[1], group=group, ranges=ranges)
            out[name] = window_nmse(pred, tgt, group) / best
    finally:
        setattr(model, option, kept)
    return out


def cells(heldout: Path, data: Path, series: int, per_series: int):
    """``(name, context, target, group, interval)``: the held-out traffic cells, and the distance and
    azimuth of each held-out trajectory recipe (and ``data``'s ``traj-highway-heldout``) in
    windows of each of ``check_range``'s shapes."""
    for cell in TRAFFIC:
        name, ctx, tgt = traffic_cell(heldout, cell, per_series, series)
        yield name, ctx, tgt, torch.arange(len(ctx)), float(cell[3])
    folders = [heldout / t for t in TRAJ + GPS_TRAJ] + [data / "traj-highway-heldout"]
    for folder in (f for f in folders if f.is_dir()):
        for field, L, H, ctx, tgt, interval in path_windows(folder, SHAPES):
            yield f"{folder.name} {field} (L={L}, H={H})", ctx, tgt, torch.arange(len(ctx)), interval


def main(argv: list[str] | None = None) -> dict:
    ap = heldout_parser(__doc__)
    ap.add_argument("--option", choices=OPTIONS, default="raw_paths")
    ap.add_argument("--real", type=Path, default=None, help="real datasets folder (default: wfm benchmark real's; '' skips)")
    args = ap.parse_args(argv)
    model = checked_model(ap, args, args.option)
    if args.option == "raw_paths" and not model.box_cox:
        ap.error(f"{args.model}: raw_paths needs a model with box_cox")
    if args.option == "ar_given" and "ar" not in model.estimators:
        ap.error(f"{args.model}: ar_given needs a model with the ar estimator")
    result: dict = {"model": args.model, "option": args.option, "seeds": {}}

    def score(ctx: torch.Tensor, tgt: torch.Tensor, _group: torch.Tensor, itv: float, name: str) -> dict[str, float]:
        return ratios(model, ctx.reshape(len(ctx), -1), tgt.reshape(len(tgt), -1), itv, "distance" in name, args.option)

    for seed in args.seeds:
        folder = args.heldout / str(seed)
        ensure_heldout(folder, seed, list(dict.fromkeys(c[0] for c in TRAFFIC)), TRAJ + GPS_TRAJ,
                       {"traffic": args.series, "traj": 64})
        result["seeds"][str(seed)] = score_cells(f"seed {seed}", cells(folder, args.data, args.series, args.per_series),
                                                  score, named=True)
    if args.real is None:
        from wfm.tasks.real_data import default_datasets_dir
        args.real = default_datasets_dir()
    if str(args.real):
        result["real"] = score_cells("real", real_paths(Path(args.real)), score, named=True)["cells"]
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
