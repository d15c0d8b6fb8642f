"""``wfm forecast``: forecast the next values of a user's own series (CSV columns) with a causal model.

    wfm forecast checkpoints/causal-tiny-catalog-cpu station.csv --interval 120 --horizon 30 \
        --time-column time --out forecast-station

For every value column of the CSV (``--columns`` picks some), the model reads the whole series
(``--context N``: only the last ``N`` values) and forecasts ``--horizon`` values ahead, with the
inference options its ``config.json`` records. Before that it is checked where the answer is
known: the last ``--horizon`` values are forecast from the values before them (as many as the
forecast reads, ``--context``, where the series holds them), by the model and
by the classical baselines (persistence, context mean, seasonal naive with the period from the
interval), and each gets its NMSE there (``sum err^2 / sum true^2``). One window is one window:
the check says whether the model is in the right range on this series, not which is better;
``--checks N`` scores the ``N`` latest windows (targets not overlapping) and reports the mean of
their NMSEs (per-window NMSE), which says more.

Missing steps (absent timestamps, empty or NaN cells) in runs of up to ``--max-gap`` steps are
filled by linear interpolation (``--fill``; the check's ``filled`` counts them); a longer gap cuts
the series, and the model reads the run after the last such gap (``--fill none``: after any gap).

``--channels pooled`` reads the value columns (each id's, with ``--id-column``) as one link's
channels (antennas, subcarriers, beams), which pool their evidence (``forecast(..., group=)``, as
``wfm benchmark real`` forecasts a window), and adds each link's check as a whole (``sum err^2 /
sum true^2`` over its channels); ``--channels ordered`` also says that they are in the columns'
order along one axis (a codebook's beam powers in angular order: ``ordered=True``, which a model
with ``check_drift`` needs to follow the profile's drift), and ``forecast.png`` then draws each link's
channels against time as one image, the forecast after the context. ``--ranges`` says that
every column is a range, a distance from a fixed point to something moving (a user's distance to
its base station: ``ranges=True``, with which a model with ``check_range`` also tests a constant
velocity's range, which bends as a vehicle passes the base station).

Writes, into ``--out`` as a whole (a folder that is complete or absent, never half-written; a new or
empty folder, or an earlier forecast's: one holding other files is refused):
``forecast.csv`` (column, step, time, point forecast and quantiles), ``forecast.json`` (the
same, the check and what was read) and ``forecast.png`` (the end of each series, the forecast
and its 0.1..0.9 band).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from wfm.console import console, print_table, progress_bar
from wfm.data.import_cli import add_time_arguments
from wfm.safety import InputError, non_negative_int, positive_float, positive_int

#: ``--max-gap``'s default: runs of up to this many missing steps are filled (``--fill linear``), so that a
#: logger's skipped samples do not cut the series to its last few values (finetune/README.md, "Missing
#: steps in your own series": measured by ``finetune/gap_fill.py``).
DEFAULT_MAX_GAP = 12


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("forecast", help="forecast the next values of each column of a CSV with a causal model "
                                        "(checked against classical baselines on the series' last values)")
    p.add_argument("model", help="exported causal model folder, e.g. checkpoints/causal-tiny-catalog-cpu")
    p.add_argument("csv", help="CSV with a header row; every value column is one series")
    p.add_argument("--interval", type=positive_float, default=None,
                   help="seconds between values, e.g. 120 (default: read from --time-column)")
    p.add_argument("--horizon", type=positive_int, required=True, help="values to forecast")
    p.add_argument("--columns", nargs="*", default=None, help="value columns (default: all but --time-column)")
    p.add_argument("--time-column", default=None,
                   help="timestamps (s, ISO 8601, months 2023-07, quarters 2023Q3), checked against --interval or "
                        "setting it (the most common step between them)")
    p.add_argument("--id-column", default=None, help="a long table's series id (a cell, a user): each id's rows "
                                                      "are its own series (forecast per id)")
    add_time_arguments(p)
    p.add_argument("--checks", type=positive_int, default=1,
                   help="windows of the check (each --horizon values, ending at the last value; default 1): "
                        "their mean per-window NMSE tells model and baselines apart better than one")
    p.add_argument("--channels", choices=("separate", "pooled", "ordered"), default="separate",
                   help="separate (default): every column is its own series; pooled: the value columns (of each "
                        "id with --id-column) are one link's channels (antennas, subcarriers) and pool their "
                        "evidence, as wfm benchmark real's windows do; ordered: pooled, and in the columns' order "
                        "along one axis (a codebook's beam powers in angular order), so that a model with "
                        "check_drift can follow the profile's drift")
    p.add_argument("--ranges", action="store_true",
                   help="every column is a range, the distance from a fixed point to something moving (a user's "
                        "distance to its base station), so that a model with check_range also tests a constant "
                        "velocity's range")
    p.add_argument("--box-cox", choices=("model", "checked", "off"), default="model",
                   help="non-negative series in Box-Cox space: as the model's config.json says (default); checked: "
                        "only where the checks, scored in the values' own units, do not show the transform losing "
                        "(box_cox_check: for intermittent counts, mostly zeros, which the transform forecasts near "
                        "zero); off: never (a series idle at night then gets small positive forecasts there)")
    p.add_argument("--context", type=non_negative_int, default=0, help="read only the last N values (0: all)")
    p.add_argument("--fill", choices=("none", "linear", "ffill"), default="linear",
                   help="fill runs of missing values up to --max-gap long (default linear: interpolated, and counted "
                        "in the check's 'filled'; none: the forecast reads the run after the last gap)")
    p.add_argument("--max-gap", type=non_negative_int, default=DEFAULT_MAX_GAP,
                   help=f"longest run of missing values --fill fills (default {DEFAULT_MAX_GAP}); a longer gap cuts "
                        "the series, and the forecast reads the run after the last such gap")
    p.add_argument("--out", default="wfm-forecast", help="output folder: new, empty, or an earlier forecast's, which is "
                   "replaced as a whole (default wfm-forecast)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default 1)")
    p.set_defaults(func=cmd_forecast)


def _set_box_cox(model: Any, mode: str, where: str) -> None:
    """``--box-cox``: leave the model's Box-Cox options (``model``), add ``box_cox_check`` (``checked``),
    or turn the transform off (``off``, with ``raw_paths``, ``box_cox_check`` and ``box_cox_white``,
    which need it)."""
    if mode == "checked":
        if not (model.box_cox and model.check_origins):
            raise InputError(f"{where}: --box-cox checked needs a model with box_cox and check_origins "
                             f"(its config.json has box_cox: {model.box_cox}, check_origins: {model.check_origins})")
        model.box_cox_check = True
    elif mode == "off":
        model.box_cox = model.raw_paths = model.box_cox_check = model.box_cox_white = False


def _series(args: argparse.Namespace) -> tuple[list[str], list[Any], list[float], list[str], list[str], list[int]]:
    """``(names, values [L] each, start time s, text columns skipped, id of each name, values filled
    in each)``: each column's last run that no unfilled gap cuts."""
    from wfm.data.loaders.generic import load_csv_series
    from wfm.data.loaders.timegrid import RESAMPLE_SPAN, GapPolicy, interval_label

    # split=True keeps every run, so a gap the policy does not fill only cuts off the older part
    d = load_csv_series(args.csv, args.interval, args.columns, args.time_column,
                        GapPolicy(args.fill, args.max_gap, split=True), args.id_column, args.time_unit,
                        args.resample)
    if args.interval is None:  # read from the time column: said, so that a misread shows
        console.print(f"interval read from {args.time_column!r}: {interval_label(d['interval_s'])} "
                      f"({d['interval_s']:g} s)")
    if args.resample:
        console.print(f"resampled onto a grid of {interval_label(d['interval_s'])}: linear interpolation between "
                      f"samples up to {RESAMPLE_SPAN:g} steps apart (wider spans are gaps)")
    args.interval = d["interval_s"]  # as declared, or read from the time column
    names, values, starts, ids, filled = [], [], [], [], []
    for j, name in enumerate(d["names"]):
        runs = [i for i, c in enumerate(d["column"]) if c == j]
        if not runs:
            raise InputError(f"{args.csv}: column {name!r} holds no values")
        last = runs[-1]
        if len(runs) > 1:
            kept, total = len(d["values"][last]), sum(len(d["values"][i]) for i in runs)
            what, how = (("gap(s) (--fill none)", "--fill linear bridges gaps of up to --max-gap steps")
                         if args.fill == "none" else
                         (f"gap(s) longer than --max-gap {args.max_gap}", "a larger --max-gap bridges longer gaps"))
            console.print(f"{name}: {len(runs) - 1} {what}; forecasting from the run after the last one, "
                          f"{kept} of {total} values ({how})")
        if d["filled"][last]:
            console.print(f"{name}: {d['filled'][last]} missing value(s) in gaps of up to {args.max_gap} step(s) "
                          f"filled ({'by linear interpolation' if args.fill == 'linear' else 'with the last value'}; "
                          "--fill none leaves every gap a cut)")
        names.append(name)
        values.append(d["values"][last])
        starts.append(float(d["start_time"][last]))
        ids.append(d["ids"][j])
        filled.append(int(d["filled"][last]))
    return names, values, starts, d["skipped"], ids, filled


def cmd_forecast(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    from wfm.data.loaders.timegrid import step_time
    from wfm.hub import from_pretrained

    out = _output_folder(Path(args.out))
    torch.set_num_threads(args.threads)
    model = from_pretrained(args.model).eval()
    if getattr(model, "model_kind", None) != "causal":
        raise InputError(f"{args.model}: wfm forecast needs a causal (series) model; this one is "
                         f"{getattr(model, 'model_kind', type(model).__name__)!r} (CSI models: wfm evaluate)")
    _set_box_cox(model, args.box_cox, args.model)
    names, values, starts, skipped, ids, filled = _series(args)
    if skipped:
        console.print(f"skipped columns with no number in them: {', '.join(skipped)}")
    h, levels = args.horizon, list(model.quantile_levels)
    xs, fulls = [], []
    for name, v in zip(names, values):
        x = torch.from_numpy(np.asarray(v, dtype=np.float64))  # float64: a large level keeps its variation
        fulls.append(x)
        if args.context:
            x = x[-args.context:]
        if x.numel() < 2:
            read = f" (--context {args.context})" if args.context else ""
            gap = "gap" if args.fill == "none" else f"gap longer than --max-gap {args.max_gap}"
            raise InputError(f"{args.csv}: column {name!r} has {x.numel()} value(s) after its last {gap}{read}; "
                             "a forecast needs at least 2")
        xs.append(x)
    batches = _batches(args, names, values, starts, ids, xs)
    points: list[Any] = [None] * len(xs)
    quants: list[Any] = [None] * len(xs)
    # filled: the values --fill put into the series (all of them, not only those the forecast reads)
    checks: list[dict[str, Any]] = [{"column": n, "context": int(x.numel()), "filled": f}
                                    for n, x, f in zip(names, xs, filled)]
    ordered, group_mode = args.channels == "ordered", args.channels != "separate"
    link_checks: list[dict[str, Any]] = []  # --channels pooled|ordered: each link's window as a whole
    link_rows: dict[str, list[int]] = {}
    with progress_bar("forecast", len(xs)) as advance:
        for idx, group in batches:
            length = xs[idx[0]].numel()
            batch = torch.stack([xs[i] for i in idx])
            if model.quantile_levels:
                point, q = model.forecast_with_quantiles(batch, args.interval, h, group=group, ordered=ordered,
                                                         ranges=args.ranges)
            else:
                point, q = model.forecast(batch, args.interval, h, group=group, ordered=ordered,
                                          ranges=args.ranges), None
            for j, i in enumerate(idx):
                points[i], quants[i] = point[j], None if q is None else q[j]
            # The check reads as many values as the forecast does, where the series holds them: a
            # shorter context can miss what the forecast sees (a day of 2-minute values).
            n = min(min(fulls[i].numel() for i in idx), length + args.checks * h)
            linked = _check_batch(model, torch.stack([fulls[i][-n:] for i in idx]), [checks[i] for i in idx], h,
                                  args.interval, args.checks, context=length, group=group, ordered=ordered,
                                  ranges=args.ranges)
            if group is not None:  # each link's columns, in their order
                members = [[i for i, k in zip(idx, group.tolist()) if k == g] for g in range(int(group.max()) + 1)]
                link_rows.update({ids[m[0]] or "all columns": m for m in members})
                link_checks += [{"link": ids[m[0]] or "all columns", "columns": len(m), "context": length, **c}
                                for m, c in zip(members, linked)]
            advance(len(idx))
    rows, out_rows = [], []
    for name, x, v, t0, point, q in zip(names, xs, values, starts, points, quants):
        for i in range(h):
            t = step_time(t0, len(v) + i, args.interval)
            row = {"column": name, "step": i + 1,
                   "time": datetime.fromtimestamp(t, tz=timezone.utc).isoformat() if args.time_column else t,
                   "forecast": float(point[i])}
            if q is not None:
                row.update({f"q{lv:g}": float(q[i, j]) for j, lv in enumerate(levels)})
            out_rows.append(row)
        rows.append((name, x.numpy(), point.numpy(), None if q is None else q.numpy()))
    result = {"model": str(args.model), "csv": str(args.csv), "interval_s": args.interval, "horizon": h,
              "quantile_levels": levels, "skipped_text_columns": skipped, "channels": args.channels,
              "box_cox": args.box_cox,
              "check": checks, **({"link_check": link_checks} if group_mode else {}), "forecast": out_rows}
    _write(out, result, rows, levels, link_rows if ordered else None)
    shown, what, kind = (link_checks, "link (its columns' window as a whole)", "links") if group_mode else \
        (checks, "column", "series")
    print_table(shown[:PRINT_SERIES], title=f"check: the last {h} values of each {what} forecast from the ones "
                f"before (per-window NMSE{f', up to {args.checks} windows' if args.checks > 1 else ''})"
                + (f"; the first {PRINT_SERIES} of {len(shown)} {kind}" if len(shown) > PRINT_SERIES else ""))
    ratios = [c["model / best classical"] for c in shown if c.get("model / best classical") is not None]
    if len(shown) > PRINT_SERIES and ratios:
        at_or_below = sum(r <= 1 for r in ratios)
        console.print(f"{len(ratios)} {kind} checked: the model at or below the best classical baseline on "
                      f"{at_or_below} ({100 * at_or_below / len(ratios):.0f} %), "
                      f"median ratio {float(np.median(ratios)):.3g} (forecast.json holds every check)")
    for hint in (_intermittent_hint(model, args.box_cox, names, xs, checks, args.interval, h),
                 _pooled_hint(args.channels, args.id_column, checks)):
        if hint:
            console.print(hint)
    console.print(f"wrote {args.out}/forecast.csv, forecast.json and forecast.png")
    return result


#: The share of zeros from which ``wfm forecast`` calls a column intermittent counts.
INTERMITTENT_ZEROS = 0.3


def _intermittent_hint(model: Any, mode: str, names: list[str], xs: list[Any], checks: list[dict[str, Any]],
                       interval: float = 1.0, horizon: int = 1) -> str:
    """A line for the columns that are mostly zeros (``INTERMITTENT_ZEROS``) and whose check put the
    model behind the best classical, where the model's own Box-Cox space is used (not for a column
    the model forecasts as given, ``box_cox_white``'s counts whose level holds): the transform
    forecasts such counts near zero, and ``--box-cox checked`` is the measured alternative."""
    if mode != "model" or not getattr(model, "box_cox", False) or getattr(model, "box_cox_check", False):
        return ""

    def boxed(x: Any) -> bool:
        exponents = getattr(model, "box_cox_exponents", None)
        if exponents is None:
            return True
        import torch

        with torch.no_grad():
            lam = exponents(x.double()[None], torch.tensor([float(interval)], dtype=torch.float64), horizon)
        return bool((lam < 1).all())

    hit = [n for n, x, c in zip(names, xs, checks)
           if float((x == 0).double().mean()) >= INTERMITTENT_ZEROS and bool((x >= 0).all())
           and (c.get("model / best classical") or 0.0) > 1.0 and boxed(x)]
    if not hit:
        return ""
    shown = ", ".join(hit[:5]) + (f" and {len(hit) - 5} more" if len(hit) > 5 else "")
    return (f"{shown}: mostly zeros and behind the best classical on the check; Box-Cox space forecasts "
            "intermittent counts near zero: try --box-cox checked (pretrain/studies.md, \"Box-Cox judged on the checks\")")


#: The fewest value columns of one table for which ``wfm forecast`` suggests ``--channels pooled``.
POOL_HINT_COLUMNS = 4


def _pooled_hint(channels: str, id_column: str | None, checks: list[dict[str, Any]]) -> str:
    """A line for a wide table forecast column by column (``--channels separate``, no ``--id-column``,
    ``POOL_HINT_COLUMNS`` columns or more) whose check put the model behind the best classical on
    most columns: if they are one link's channels, pooling their evidence is what keeps it at or
    below the mean on real CSI (pretrain/studies.md, "A complex series' two parts")."""
    ratios = [c["model / best classical"] for c in checks if c.get("model / best classical") is not None]
    if channels != "separate" or id_column or len(ratios) < POOL_HINT_COLUMNS:
        return ""
    behind = sum(r > 1.0 for r in ratios)
    if 2 * behind <= len(ratios):
        return ""
    return (f"behind the best classical on {behind} of {len(ratios)} columns, each forecast on its own: if the "
            "columns are one link's channels (antennas x subcarriers, a codebook's beams), --channels pooled pools "
            "their evidence (real CSI at 8 packets: 1.04-1.14x the context mean apart, 0.89-1.02x pooled)")


def _batches(args: argparse.Namespace, names: list[str], values: list[Any], starts: list[float], ids: list[str],
             xs: list[Any]) -> list[tuple[list[int], Any]]:
    """``(series indices, group [n] or None)`` of each forecast batch; ``xs`` (the contexts) is cropped
    in place where ``--channels pooled|ordered`` makes a link's columns one window.

    Separate series of one length are one batch (2,000 cells of 144 values: about a minute); each
    is its own series (no group), so a batch gives each the forecast it gets alone. Pooled
    columns must end at the same time (one link's channels, read at once); they are read over
    their common stretch, and links of one length share a batch, one group each."""
    import torch

    by_length: dict[int, list[int]] = {}
    if args.channels == "separate":
        for i, x in enumerate(xs):
            by_length.setdefault(x.numel(), []).append(i)
        return [(idx, None) for idx in by_length.values()]
    links: dict[str, list[int]] = {}
    for i, gid in enumerate(ids):
        links.setdefault(gid, []).append(i)
    groups: dict[int, list[list[int]]] = {}
    for gid, idx in links.items():
        ends = [starts[i] + len(values[i]) * args.interval for i in idx]
        if max(ends) - min(ends) > 0.5 * args.interval:
            late, early = idx[ends.index(max(ends))], idx[ends.index(min(ends))]
            raise InputError(f"{args.csv}: --channels {args.channels}: column {names[late]!r} ends "
                             f"{(max(ends) - min(ends)) / args.interval:.0f} value(s) after {names[early]!r} "
                             f"{'(' + args.id_column + ' ' + gid + ') ' if gid else ''}; one link's channels end "
                             "together (fill the gaps, --fill, or pick the columns, --columns)")
        n = min(xs[i].numel() for i in idx)
        for i in idx:
            xs[i] = xs[i][-n:]
        groups.setdefault(n, []).append(idx)
    out = []
    for links_of_length in groups.values():
        idx = [i for link in links_of_length for i in link]
        group = torch.cat([torch.full((len(link),), g, dtype=torch.long) for g, link in enumerate(links_of_length)])
        out.append((idx, group))
    return out


def _check_batch(model: Any, batch: Any, checks: list[dict[str, Any]], h: int, interval: float, windows: int,
                 context: int | None = None, group: Any = None, ordered: bool = False,
                 ranges: bool = False) -> list[dict[str, Any]]:
    """Fill each series' ``check`` (rows of ``batch`` ``[B, L]``): the last ``h`` values forecast from
    the ones before (at most ``context`` of them), and as many windows before them as ``windows``
    asks and the series holds (each ``h`` values, their targets not overlapping), by the model and
    the classical baselines; the mean of their NMSEs (per-window NMSE) and the model's ratio to the
    best baseline. ``group``, ``ordered`` and ``ranges``: the model's, as the forecast read them; with a
    ``group``, returns the same check of each group's window as a whole (``sum err^2 / sum true^2``
    over its channels, as ``wfm benchmark real`` scores a link), in group order."""
    import torch

    from wfm.models.baselines import CLASSICAL, build_baseline, seasonal_period
    from wfm.models.groups import group_sums
    from wfm.tasks.metrics import window_nmse

    length = batch.shape[1]
    ends = [length - k * h for k in range(windows) if length - k * h > h + 1]
    if not ends:
        return []
    itv = torch.full((len(batch),), float(interval))
    scores: dict[str, list[Any]] = {}
    links: dict[str, list[Any]] = {}
    for end in ends:
        past, truth = batch[:, max(0, end - h - (context or length)):end - h], batch[:, end - h:end]
        period = seasonal_period(interval, past.shape[1])
        fcs = {"model": model.forecast(past, itv, h, group=group, ordered=ordered, ranges=ranges)}
        fcs.update({b: build_baseline(b, **({"period": period} if b == "seasonal" else {})).forecast(past, itv, h)
                    for b in CLASSICAL})
        for k, f in fcs.items():
            scores.setdefault(k, []).append(window_nmse(f, truth).numpy())
            if group is not None:  # each group's window as a whole (ids 0..G-1, as _batches numbers them)
                err, true = (group_sums((v.double() ** 2).sum(1), group)[0]
                             for v in (f.double() - truth.double(), truth))
                links.setdefault(k, []).append(torch.where(true > 0, err / true.clamp_min(1e-300), torch.nan).numpy())
    for j, check in enumerate(checks):
        check.update(_window_means({k: [s[j] for s in v] for k, v in scores.items()}))
    return [_window_means({k: [s[g] for s in v] for k, v in links.items()})
            for g in range(len(next(iter(links.values()))[0]) if links else 0)]


def _window_means(per: dict[str, list[float]]) -> dict[str, Any]:
    """A check's scores from each forecaster's per-window NMSEs (NaN: an all-zero target, which no
    NMSE scores): ``windows`` scored, ``unscored (all-zero target)`` where some were not, each
    forecaster's mean and the model's ratio to the best classical."""
    import numpy as np

    nan = np.isnan(per["model"])
    out: dict[str, Any] = {"windows": int((~nan).sum())}
    if nan.any():
        out["unscored (all-zero target)"] = int(nan.sum())
    out.update({k: float(np.mean(np.asarray(v)[~nan])) if (~nan).any() else None for k, v in per.items()})
    _add_ratio(out)
    return out


def _add_ratio(check: dict[str, Any]) -> None:
    """``check["model / best classical"]``: the model's NMSE over the best classical baseline's."""
    from wfm.models.baselines import CLASSICAL

    if check["model"] is None:  # no window scored
        check["model / best classical"] = None
        return
    best = min(check[b] for b in CLASSICAL)
    # A classical baseline that is exact (a constant column) leaves no ratio to report.
    check["model / best classical"] = check["model"] / best if best > 0 else None


#: Series whose check is printed (the first ones; forecast.json holds every check).
PRINT_SERIES = 20

#: Series drawn in forecast.png (the first ones; the CSV and JSON hold every series).
PLOT_SERIES = 12


#: What ``wfm forecast`` writes: an output folder holding only these is an earlier forecast's.
OUTPUT_FILES = ("forecast.csv", "forecast.json", "forecast.png")


def _output_folder(out: Path) -> Path:
    """``out`` resolved, where the forecast may replace it as a whole: absent, an empty folder or an
    earlier forecast's (nothing but :data:`OUTPUT_FILES`). Anything else (a file, a folder with other
    files in it, such as the input CSV, the working directory) is refused before any work."""
    resolved = out.expanduser().resolve()
    if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents or resolved.parent == resolved:
        raise InputError(f"--out {out}: the working directory or one above it; give a new folder for the forecast")
    if resolved.exists():
        if not resolved.is_dir():
            raise InputError(f"--out {out}: exists and is not a folder; give a new folder for the forecast")
        other = sorted(p.name for p in resolved.iterdir() if p.name not in OUTPUT_FILES)
        if other:
            shown = ", ".join(other[:3]) + (f" and {len(other) - 3} more" if len(other) > 3 else "")
            raise InputError(f"--out {out}: holds files that are not an earlier forecast's ({shown}); "
                             "the forecast replaces its folder as a whole, so give a new or empty one")
    return resolved


def _write(out: Path, result: dict[str, Any], rows: list[tuple], levels: list[float],
           links: dict[str, list[int]] | None = None) -> None:
    """The three files into a fresh folder beside ``out``, swapped into place when all are written.
    ``links`` (``--channels ordered``: each link's rows, in order) draws each link's profile."""
    from wfm.console import write_json
    from wfm.io import swap_folder_into_place
    from wfm.tasks.plots import pyplot, save

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with open(tmp / "forecast.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(result["forecast"][0]))
            w.writeheader()
            w.writerows(result["forecast"])
        write_json(tmp / "forecast.json", result)
        plt = pyplot()
        fig = _profile_figure(plt, result, rows, links) if links else _series_figure(plt, result, rows, levels)
        save(fig, tmp / "forecast.png")
        swap_folder_into_place(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _series_figure(plt: Any, result: dict[str, Any], rows: list[tuple], levels: list[float]) -> Any:
    """The end of each series (the first :data:`PLOT_SERIES`), its forecast and its outermost band."""
    shown_rows = rows[:PLOT_SERIES]  # a figure a person can read (and matplotlib can draw)
    fig, axes = plt.subplots(len(shown_rows), 1, figsize=(8, 2.6 * len(shown_rows)), squeeze=False)
    titled = len(rows) > len(shown_rows)
    if titled:
        fig.suptitle(f"the first {len(shown_rows)} of {len(rows)} series (forecast.csv holds every one)", fontsize=10)
    h = result["horizon"]
    for ax, (name, x, point, q) in zip(axes[:, 0], shown_rows):
        shown = x[-4 * h:]
        t = range(-len(shown) + 1, 1)
        ax.plot(t, shown, color="0.3", lw=1, label="series")
        ahead = range(1, h + 1)
        ax.plot(ahead, point, color="C0", lw=1.5, label="forecast")
        if q is not None and len(levels) >= 2:
            lo, hi = levels.index(min(levels)), levels.index(max(levels))
            ax.fill_between(ahead, q[:, lo], q[:, hi], color="C0", alpha=0.25,
                            label=f"{min(levels):g}..{max(levels):g} quantiles")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("steps from the last value")
    axes[0, 0].legend(fontsize=8, loc="upper left")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()) if titled else None)
    return fig


#: Links drawn in forecast.png with ``--channels ordered`` (one profile image each).
PLOT_LINKS = 6


def _profile_figure(plt: Any, result: dict[str, Any], rows: list[tuple], links: dict[str, list[int]]) -> Any:
    """``--channels ordered``: each link's channels (rows, in their order) against time, the end of
    the context and then the forecast, as an image: a beam sweep's main lobe is easier to follow
    drifting across the beams than in one line per beam."""
    import numpy as np

    shown = list(links.items())[:PLOT_LINKS]
    fig, axes = plt.subplots(len(shown), 1, figsize=(8, 2.8 * len(shown)), squeeze=False)
    titled = len(links) > len(shown)
    if titled:
        fig.suptitle(f"the first {len(shown)} of {len(links)} links (forecast.csv holds every one)", fontsize=10)
    h = result["horizon"]
    for ax, (name, idx) in zip(axes[:, 0], shown):
        past = np.stack([rows[i][1][-4 * h:] for i in idx])
        image = np.concatenate([past, np.stack([rows[i][2] for i in idx])], axis=1)
        steps = past.shape[1]
        im = ax.imshow(image, aspect="auto", origin="lower", interpolation="nearest",
                       extent=(-steps + 0.5, h + 0.5, -0.5, len(idx) - 0.5))
        ax.axvline(0.5, color="w", lw=1.5, ls="--")
        fig.colorbar(im, ax=ax, fraction=0.04)
        ax.set_title(f"{name}: {len(idx)} channels in order; the forecast right of the dashed line", fontsize=9)
        ax.set_xlabel("steps from the last value")
        ax.set_ylabel("channel")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()) if titled else None)
    return fig
