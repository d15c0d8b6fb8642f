"""The causal model's forecast averaged over trailing readings of its context (measured, not shipped).

    PYTHONPATH=. python pretrain/context_readings.py --fractions 0.5 -- \
        wfm benchmark real --time-only --model checkpoints/causal-tiny-catalog-cpu --threads 1
    PYTHONPATH=. python pretrain/context_readings.py --fractions 0.5 --keep-season -- \
        pretrain/box_cox.py --model checkpoints/causal-tiny-catalog-cpu --heldout DIR --real ''

Runs a ``wfm`` command or a script with ``CausalForecaster.forecast`` (every rule of the model
included) replaced by the mean of the forecasts from the whole context and from its last
``round(f * L)`` values for each ``f`` of ``--fractions``, for contexts of at least ``--min``
values (shorter ones as shipped); quantiles averaged the same way. ``--keep-season``: a reading
never drops below the longest seasonal period (a week, else a day, from the interval) that the
whole context holds, so it cannot lose the model's seasonal estimators; a reading that would
then be the whole context is skipped.

A classical device for zero-shot forecasters (an ensemble over context lengths): a shorter reading
forgets old levels, which helps where the series moves, and costs where the whole context is the
better estimate. Nothing in the model changes; the wrapper is this file's only effect.
"""

from __future__ import annotations

import argparse
import runpy
import sys

import torch
from torch import Tensor

import wfm.models.causal_forecast as causal_forecast

DAY_S = 86400.0


def reading_lengths(length: int, interval: float, fractions: list[float], minimum: int,
                    keep_season: bool) -> list[int]:
    """The lengths of the shorter readings of a context of ``length`` values ``interval`` s apart."""
    if length < minimum:
        return []
    out = []
    for f in fractions:
        n = max(2, round(length * f))
        if keep_season and interval > 0:
            day = round(DAY_S / interval)
            n = max(n, next((p for p in (7 * day, day) if length >= p), n))
        if n < length and n not in out:
            out.append(n)
    return out


def averaged_over_readings(shipped, fractions: list[float], minimum: int, keep_season: bool):
    """``ForecastMixin._forecast`` (one chunk of rows) as the mean of ``shipped`` over readings."""

    def averaged(self, context: Tensor, interval, horizon: int, quantiles: bool, group, check: bool,
                 ordered: bool = False, ranges: bool = False):
        point, quant = shipped(self, context, interval, horizon, quantiles, group, check, ordered, ranges)
        step = float(torch.as_tensor(interval, dtype=torch.float64).flatten()[0])
        lengths = reading_lengths(context.shape[1], step, fractions, minimum, keep_season) if check else []
        if not lengths:
            return point, quant
        points, quants = [point], [quant]
        for n in lengths:
            p, q = shipped(self, context[:, -n:], interval, horizon, quantiles, group, check, ordered, ranges)
            points.append(p)
            quants.append(q)
        return (torch.stack(points).mean(0), None if quant is None else torch.stack(quants).mean(0))

    return averaged


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.5])
    ap.add_argument("--min", type=int, default=32, help="contexts shorter than this are forecast as shipped")
    ap.add_argument("--keep-season", action="store_true")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- wfm ARGS... or -- SCRIPT.py ARGS...")
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("give the command to run after --")
    mixin = causal_forecast.ForecastMixin
    mixin._forecast = averaged_over_readings(mixin._forecast, args.fractions, args.min, args.keep_season)
    if command[0] == "wfm":
        from wfm.cli import main as wfm_main
        sys.argv = command
        sys.exit(wfm_main())
    sys.argv = command
    runpy.run_path(command[0], run_name="__main__")


if __name__ == "__main__":
    main()
