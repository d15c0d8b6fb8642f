"""The causal model zero-shot on public real series far from wireless (where sessions 62-64 found rules).

    pip download pmdarima==2.1.1 statsmodels==0.15.0 --no-deps -d /tmp/whl
    PYTHONPATH=. python finetune/public_series.py --pmdarima /tmp/whl/pmdarima-*.whl \
        --statsmodels /tmp/whl/statsmodels-*.whl [--model checkpoints/causal-tiny-catalog-cpu] [--out public.json]

The causal model forecasts "any univariate series with an interval": these are measured series
that two PyPI wheels carry (no download), at intervals from half a second to a year, none of them
in the pretraining data nor in ``../shared``: half-hourly electricity demand, a heart rate, monthly
wine sales and air passengers, quarterly wool production, yearly lynx trappings and river flows,
monthly and yearly sunspots, a share price, weekly CO2, monthly sea temperatures and equipment
orders, quarterly unemployment and GDP. Each series is cut into windows of ``L`` values -> the
next ``H`` (``H`` by the interval: a day of half-hours, a year of months, ...) at every origin (at
most 1,000, evenly spaced), at two contexts (64 and 256 values where the series holds at least 3
horizons more; ``--contexts`` others). Each window is scored by per-window NMSE (a window whose
target is all zero is not scored); the ratio is the model's over the best of persistence, the
context mean and seasonal naive (the period from the interval: a day, a week, or for weekly,
monthly and quarterly values a year). Prints one row per series and context, and the geometric
mean of the ratios over the series at each context.

These are not wireless data: they test whether the model stays a sound forecaster on series it
was not built for (random walks, multiplicative seasons, long cycles), which real wireless series
also have. The shares of the inference options were never chosen on them.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import math
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import torch

import wfm
from wfm.data.loaders.timegrid import MONTH_S, fill_gaps
from wfm.models.baselines import ContextMean, Persistence, SeasonalNaive, seasonal_period
from wfm.tasks.metrics import mean_window_nmse, window_nmse

DAY = 86_400.0
CONTEXTS = (64, 256)
MAX_WINDOWS = 1000


def _pmdarima_array(z: zipfile.ZipFile, module: str) -> np.ndarray:
    """The values a pmdarima dataset module holds inline (``rslt = np.array([...])``)."""
    src = z.read(f"pmdarima/datasets/{module}.py").decode()
    body = src[src.rindex("rslt = np.array([") + len("rslt = np.array(["):]
    return np.array([float(v) for v in re.findall(r"-?\d+\.?\d*(?:[eE]-?\d+)?", body[:body.index("])")])])


def _csv_column(text: str, column: str) -> np.ndarray:
    """One column of a CSV as floats, empty cells NaN."""
    rows = list(csv.DictReader(io.StringIO(text)))
    return np.array([float(r[column]) if r[column].strip() not in ("", "NA") else np.nan for r in rows])


def _tar_csv(z: zipfile.ZipFile, member: str, column: str) -> np.ndarray:
    with tarfile.open(fileobj=io.BytesIO(z.read(member))) as t:
        f = next(m for m in t.getmembers() if m.name.endswith(".csv"))
        return _csv_column(t.extractfile(f).read().decode(), column)


def load_series(pmdarima: Path, statsmodels: Path) -> dict[str, tuple[np.ndarray, float, int]]:
    """``{name: (values, interval s, horizon)}`` of every series the two wheels hold (NaN runs
    filled as ``wfm forecast`` fills them)."""
    out: dict[str, tuple[np.ndarray, float, int]] = {}
    with zipfile.ZipFile(pmdarima) as z:
        out["electricity demand (taylor), 30 min"] = (_pmdarima_array(z, "taylor"), 1800.0, 48)
        out["heart rate, 0.5 s"] = (_pmdarima_array(z, "heartrate"), 0.5, 10)
        out["wine sales (wineind), monthly"] = (_pmdarima_array(z, "wineind"), MONTH_S, 12)
        out["air passengers, monthly"] = (_pmdarima_array(z, "airpassengers"), MONTH_S, 12)
        out["wool production (woolyrnq), quarterly"] = (_pmdarima_array(z, "woolyrnq"), 3 * MONTH_S, 4)
        out["lynx trappings, yearly"] = (_pmdarima_array(z, "lynx"), 12 * MONTH_S, 5)
        spots = gzip.decompress(z.read("pmdarima/datasets/data/sunspots.txt.gz")).split()
        out["sunspots, monthly"] = (np.array([float(v) for v in spots]), MONTH_S, 12)
        out["share price (msft close), trading days"] = (_tar_csv(z, "pmdarima/datasets/data/msft.tar.gz", "Close"),
                                                         DAY, 5)
        out["daily counts (dated), daily"] = (_tar_csv(z, "pmdarima/datasets/data/dated.tar.gz", "y"), DAY, 7)
    with zipfile.ZipFile(statsmodels) as z:
        def text(name: str) -> str:
            return z.read(f"statsmodels/datasets/{name}").decode()

        out["CO2 at Mauna Loa, weekly"] = (_csv_column(text("co2/co2.csv"), "co2"), 7 * DAY, 13)
        elnino = list(csv.reader(io.StringIO(text("elnino/elnino.csv"))))[1:]
        out["sea temperature (elnino), monthly"] = (np.array([float(v) for r in elnino for v in r[1:]]), MONTH_S, 12)
        out["equipment orders (elec_equip), monthly"] = (
            _csv_column(text("elec_equip/elec_equip.csv"), "STS.M.I7.W.TOVT.NS0016.4.000"), MONTH_S, 12)
        out["Nile flow, yearly"] = (_csv_column(text("nile/nile.csv"), "volume"), 12 * MONTH_S, 5)
        out["sunspots, yearly"] = (_csv_column(text("sunspots/sunspots.csv"), "SUNACTIVITY"), 12 * MONTH_S, 5)
        macro = text("macrodata/macrodata.csv")
        out["unemployment, quarterly"] = (_csv_column(macro, "unemp"), 3 * MONTH_S, 4)
        out["real GDP, quarterly"] = (_csv_column(macro, "realgdp"), 3 * MONTH_S, 4)
    return {k: (fill_gaps(v)[0], itv, h) for k, (v, itv, h) in out.items()}


def windows(values: np.ndarray, context: int, horizon: int,
            limit: int = MAX_WINDOWS) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows at every origin that has ``context`` values before it and ``horizon`` after (at most
    ``limit``, evenly spaced, the last one ending at the series' end). Every origin, not one every
    ``horizon`` values: a horizon is often a period, so those origins would all be midnight, or
    January, and a short series' few windows would decide the ratio by where they happen to start."""
    n = len(values) - context - horizon + 1
    ends = np.unique(np.linspace(context + horizon, len(values), min(n, limit)).round().astype(int))
    x = torch.tensor(values, dtype=torch.float32)
    return (torch.stack([x[e - horizon - context:e - horizon] for e in ends]),
            torch.stack([x[e - horizon:e] for e in ends]))


@torch.no_grad()
def score(model, series: dict[str, tuple[np.ndarray, float, int]], contexts=CONTEXTS, min_windows: int = 3) -> dict:
    """``{series: {context: row}}``: each forecaster's per-window NMSE and the model's ratio to the best classical."""
    out: dict[str, dict[int, dict]] = {}
    for name, (values, interval, horizon) in series.items():
        for L in contexts:
            if len(values) < L + min_windows * horizon:
                continue
            ctx, tgt = windows(values, L, horizon)
            period = seasonal_period(interval, L)
            baselines = [Persistence(), ContextMean()] + ([SeasonalNaive(period)] if period is not None else [])
            preds = {b.name: b.forecast(ctx, interval, horizon) for b in baselines}
            preds["model"] = model.forecast(ctx, interval, horizon)
            row = {k: mean_window_nmse(window_nmse(p, tgt)) for k, p in preds.items()}
            best = min((k for k in preds if k != "model"), key=row.__getitem__)
            row.update(windows=len(tgt), period=period, best=best, ratio=row["model"] / row[best])
            out.setdefault(name, {})[L] = row
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pmdarima", type=Path, required=True, help="pmdarima-2.1.1 wheel")
    ap.add_argument("--statsmodels", type=Path, required=True, help="statsmodels-0.15.0 wheel")
    ap.add_argument("--model", default="checkpoints/causal-tiny-catalog-cpu")
    ap.add_argument("--contexts", type=int, nargs="+", default=list(CONTEXTS),
                    help="context lengths (default 64 256; a series is scored where it holds 3 horizons more)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="JSON of every row")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = wfm.from_pretrained(args.model).eval()
    rows = score(model, load_series(args.pmdarima, args.statsmodels), contexts=tuple(args.contexts))
    print(f"{'series':44s} {'L':>4s} {'win':>4s} {'best classical':>16s} {'NMSE':>9s} {'model':>9s} {'ratio':>6s}")
    for name, by_context in rows.items():
        for L, r in by_context.items():
            print(f"{name:44s} {L:4d} {r['windows']:4d} {r['best']:>16s} {r[r['best']]:9.3e} {r['model']:9.3e} "
                  f"{r['ratio']:6.3f}")
    summary = {}
    for L in args.contexts:
        ratios = [by[L]["ratio"] for by in rows.values() if L in by]
        summary[L] = {"series": len(ratios), "geometric_mean": math.exp(sum(map(math.log, ratios)) / len(ratios)),
                      "at_or_below_1": sum(r <= 1 for r in ratios)}
        print(f"context {L}: {summary[L]['at_or_below_1']} of {len(ratios)} series at or below the best classical, "
              f"geometric mean of the ratios {summary[L]['geometric_mean']:.3f}")
    result = {"model": args.model, "rows": {k: {str(L): r for L, r in v.items()} for k, v in rows.items()},
              "summary": {str(k): v for k, v in summary.items()}}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
