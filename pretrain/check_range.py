"""Score the causal model's ``check_range`` on held-out *generated* user distances and on the real one.

    PYTHONPATH=. python pretrain/check_range.py --model checkpoints/causal-tiny-catalog-cpu \
        --heldout /tmp/check-trend-heldout --seeds 777 778 779 --out check_range.json

A vehicle passing its base station bends its distance within a few values: down, a turn, up.
The last step's extrapolation (``check_trend``) overshoots the turn and the network flattens it.
At constant velocity the squared distance is a quadratic in time, so ``check_range`` tests that
fit (:func:`wfm.models.causal_forecast.constant_velocity_range`) on the checks of
``check_origins`` and moves the forecast towards it where it led, for series that ``forecast`` is
told are ranges (``ranges=True``).

Scored off and with each share (``half``, ``fitted``, as ``check_trend``), at each ``--spans``
(values the fit reads), on the distance of the held-out trajectory recipes of
``pretrain/check_trend.py`` (vehicular, pedestrian, vehicular with a GPS receiver's error, and
``--data``'s ``traj-highway-heldout``) at 64 -> 16, 32 -> 8 and 16 -> 4, series drawn with each of
``--seeds`` (no pretraining used them), and, for information, on DeepSense 6G distance
(``--real``). Prints each cell's ratio of per-window NMSE to the best of persistence, the context
mean and seasonal naive (< 1 beats them) and, per seed, the geometric mean over the cells.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))  # run as a script or loaded by the tests
from box_cox import TRAJ, best_classical, ensure_heldout, path_windows
from check_trend import GPS_TRAJ, checked_model, heldout_parser, real_paths, score_cells
from evidence_power import window_nmse

#: ``check_range`` off, and on with each share.
OPTIONS = {"off": dict(check_range=False, range_share="half"),
           "half": dict(check_range=True, range_share="half"),
           "fitted": dict(check_range=True, range_share="fitted")}
#: The real paths' shapes (``wfm benchmark real``'s 16 -> 4, and 32 -> 8) and the task's 64 -> 16,
#: with windows per trajectory.
SHAPES = ((64, 16, 8), (32, 8, 16), (16, 4, 16))


def variants(spans: list[int]) -> list[tuple[str, dict, int]]:
    """``(name, options, span)``: off once, each share at each span."""
    out = [("off", OPTIONS["off"], spans[0])]
    return out + [(f"{share} {span}", OPTIONS[share], span) for share in ("half", "fitted") for span in spans]


@torch.no_grad()
def ratios(model, ctx: torch.Tensor, tgt: torch.Tensor, interval: float, spans: list[int]) -> dict[str, float]:
    """Each variant's per-window NMSE over the best classical's (the model's options restored)."""
    from wfm.models import causal_forecast

    group = torch.arange(len(ctx))
    best = best_classical(ctx, tgt, group, interval)
    kept = {k: getattr(model, k) for k in OPTIONS["off"]}
    span0 = causal_forecast.RANGE_SPAN
    out = {}
    try:
        for name, options, span in variants(spans):
            for k, value in options.items():
                setattr(model, k, value)
            causal_forecast.RANGE_SPAN = span
            pred = model.forecast(ctx, interval, tgt.shape[1], group=group, ranges=True)
            out[name] = window_nmse(pred, tgt, group) / best
    finally:
        for k, value in kept.items():
            setattr(model, k, value)
        causal_forecast.RANGE_SPAN = span0
    return out


def distance_cells(heldout: Path, data: Path):
    """``(name, context, target, group, interval)``: the distance of each held-out trajectory recipe (and
    ``data``'s ``traj-highway-heldout``) in windows of each of :data:`SHAPES`."""
    folders = [heldout / t for t in TRAJ + GPS_TRAJ] + [data / "traj-highway-heldout"]
    for folder in (f for f in folders if f.is_dir()):
        for field, L, H, ctx, tgt, interval in path_windows(folder, SHAPES):
            if field == "distance":
                yield f"{folder.name} distance (L={L}, H={H})", ctx, tgt, torch.arange(len(ctx)), interval


def main(argv: list[str] | None = None) -> dict:
    ap = heldout_parser(__doc__, traffic=False)
    ap.add_argument("--real", type=Path, default=None, help="real datasets folder (default: wfm benchmark real's; '' skips)")
    ap.add_argument("--spans", type=int, nargs="+", default=[16], help="values the range fit reads")
    args = ap.parse_args(argv)
    model = checked_model(ap, args, "check_range")
    result: dict = {"model": args.model, "spans": args.spans, "seeds": {}}

    def score(ctx: torch.Tensor, tgt: torch.Tensor, _group: torch.Tensor, itv: float) -> dict[str, float]:
        return ratios(model, ctx.reshape(len(ctx), -1), tgt.reshape(len(tgt), -1), itv, args.spans)

    for seed in args.seeds:
        folder = args.heldout / str(seed)
        ensure_heldout(folder, seed, [], TRAJ + GPS_TRAJ, {"traj": 64})
        result["seeds"][str(seed)] = score_cells(f"seed {seed}", list(distance_cells(folder, args.data)), score)
    if args.real is None:
        from wfm.tasks.real_data import default_datasets_dir
        args.real = default_datasets_dir()
    if str(args.real):
        result["real"] = score_cells("real", [c for c in real_paths(Path(args.real)) if "distance" in c[0]],
                                     score)["cells"]
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
