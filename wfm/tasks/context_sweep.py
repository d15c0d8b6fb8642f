"""Forecast error against context length on real series: does more context ever hurt?

    PYTHONPATH=. python pretrain/context_sweep.py --model checkpoints/causal-tiny-catalog-cpu \
        --model prior-mix [--data-dir DIR] [--out runs/context-sweep]

For every real series set of ``../shared/datasets`` (imported once into ``--data-dir``, default
``$WFM_DATA/real``, with ``wfm data import``):

- ``intel-complex`` / ``intel-amplitude``: Intel 5300 CSI (100 ms, 3 rx x 2 tx x 30 subcarriers),
  linear-phase sanitised; complex series are forecast as real and imaginary parts and scored
  as one complex window; amplitude is ``|h|``;
- ``nexmon-complex`` / ``nexmon-amplitude``: Nexmon BCM4339 80 MHz CSI (as imported);
- ``milan-traffic``: the six Milan cells (10 min, 144 steps each);
- with ``--generated FOLDER:HORIZON``, also generated series datasets (such as the held-out
  traffic of ``pretrain/box_cox.py``, long enough for 4,096 values of context), or any series
  dataset imported with ``wfm data import`` (a set named after the folder and its series kind);

it forecasts ``horizon`` steps after contexts of 8, 16, ..., 4096 values (as long as the series
allow) and reports the per-window NMSE (mean over windows of sum err^2 / sum true^2) of each
model next to persistence, the context mean and seasonal naive (period a day, or a week where
the context holds one, from the interval; persistence where not even a day fits). Every context
length is scored on the **same** target windows (those that the longest context allows), so the
rows compare. ``prior-mix`` is an untrained ``causal_tiny`` with ``prior="mix"``: its forecast is
the classical-prior mix alone (zero correction). Every step to a longer context also gets a
paired bootstrap interval of each model's change in dB (the same windows resampled for both
contexts, :func:`context_changes`): a longer context makes a model worse beyond noise only where
that interval lies above zero. The windows that end at the same step (every series of a set over
the same packets or hours) are resampled together, as one unit: they share the capture's gain
dips and the day's load, so they are not independent (since session 35; ``changes_by_window`` in
the JSON keeps the interval that draws windows one by one, too narrow). Prints one table per set
and writes ``context_sweep.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from wfm.cli import main as wfm_main
from wfm.data.series import series_tables
from wfm.models.baselines import seasonal_period
from wfm.models.registry import create_model
from wfm.tasks.backbones import load_model

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "datasets"


# ---------------------------------------------------------------------------- data


def import_real(data_dir: Path, shared: Path = SHARED) -> dict[str, Path]:
    """Import the real captures of ``shared`` into ``data_dir`` (once); ``{name: folder}`` of those present."""
    jobs = {
        "intel": (shared / "wifi-csi" / "intel5300_3rx_2tx_100ms.dat",
                  ["intel", "--phase", "linear", "--window", "0", "--nrx", "3", "--ntx", "3"]),
        "nexmon": (shared / "wifi-csi" / "nexmon_bcm4339_80mhz.pcap",
                   ["nexmon", "--phase", "linear", "--window", "0", "--chip", "4339", "--bw", "80"]),
        "milan": (shared / "traffic" / "milan_2013-11-01_internet_6cells.csv",
                  ["telecom-italia", "--columns", "internet_total"]),
    }
    out = {}
    for name, (src, args) in jobs.items():
        dst = data_dir / name
        if not src.is_file():
            continue
        if not dst.is_dir() or not any(dst.iterdir()):
            data_dir.mkdir(parents=True, exist_ok=True)
            wfm_main(["data", "import", args[0], str(src), "--out", str(dst), *args[1:]])
        out[name] = dst
    return out


def series_sets(folders: dict[str, Path], max_series: int) -> dict[str, dict]:
    """``{set name: {"series": [S, L] float64 (complex for complex sets), "interval", "horizon"}}``."""
    sets = {}
    for name, folder in folders.items():
        for t in series_tables(folder):
            n = int(t.lengths.min())
            rows = np.stack([np.asarray(t.values(i))[:n] for i in range(len(t))])
            pick = np.unique(np.linspace(0, len(rows) - 1, min(max_series, len(rows))).round().astype(int))
            rows = rows[pick]
            if t.kind == "csi":
                sets[f"{name}-complex"] = {"series": rows.astype(np.complex128), "interval": t.interval, "horizon": 8}
                sets[f"{name}-amplitude"] = {"series": np.abs(rows).astype(np.float64), "interval": t.interval,
                                             "horizon": 8}
            else:  # traffic, or any other series kind a user imported (a load, an RSSI)
                sets[f"{name}-{t.kind}"] = {"series": rows.astype(np.float64), "interval": t.interval, "horizon": 12}
    return sets


def windows(series: np.ndarray, horizon: int, longest: int, max_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """``(series index, target start)`` of the common target windows: starts ``t >= longest`` with
    ``t + horizon <= L``, at most ``max_windows`` per series, evenly spaced."""
    length = series.shape[1]
    starts = np.arange(longest, length - horizon + 1)
    if len(starts) > max_windows:
        starts = starts[np.unique(np.linspace(0, len(starts) - 1, max_windows).round().astype(int))]
    idx = np.repeat(np.arange(len(series)), len(starts))
    return idx, np.tile(starts, len(series))


# ---------------------------------------------------------------------------- forecasters


def classical(name: str, ctx: torch.Tensor, interval: float, horizon: int) -> torch.Tensor:
    if name == "persistence":
        return ctx[:, -1:].expand(-1, horizon)
    if name == "mean":
        return ctx.mean(dim=1, keepdim=True).expand(-1, horizon)
    if name == "seasonal":
        period = seasonal_period(interval, ctx.shape[1])
        if period is None:
            return ctx[:, -1:].expand(-1, horizon)
        h = torch.arange(1, horizon + 1)
        return ctx[:, ctx.shape[1] + h - 1 - period * ((h + period - 1) // period)]
    raise ValueError(name)


CLASSICAL = ("persistence", "mean", "seasonal")


def load_forecaster(spec: str):
    if spec.startswith("prior-mix"):  # prior-mix[:backtest_weight=W][:estimators=last,mean,...]
        kw = {}
        for part in spec.split(":")[1:]:
            key, value = part.split("=", 1)
            kw[key] = (tuple(value.split(",")) if key == "estimators" else int(value) if key == "backtest_window"
                       else value if key == "backtest_origins" else float(value))
        torch.manual_seed(0)
        return create_model("causal_tiny", prior="mix", coarse_len=64, **kw).eval()
    return load_model(spec).eval()


def forecast_real(model, ctx: np.ndarray, interval: float, horizon: int, batch: int) -> np.ndarray:
    """Forecast ``[B, horizon]`` of real (or, as two rows each, complex) contexts ``[B, C]``."""
    if np.iscomplexobj(ctx):
        both = forecast_real(model, np.concatenate([ctx.real, ctx.imag]), interval, horizon, batch)
        return both[:len(ctx)] + 1j * both[len(ctx):]
    out = []
    for a in range(0, len(ctx), batch):
        x = torch.from_numpy(ctx[a:a + batch]).float()
        if isinstance(model, str):
            out.append(classical(model, x.double(), interval, horizon).numpy())
        else:
            out.append(model.forecast(x, interval, horizon).double().numpy())
    return np.concatenate(out)


def window_nmse(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Each window's NMSE, sum |err|^2 / sum |true|^2 (NaN for a window without power)."""
    err = (np.abs(pred - true) ** 2).sum(axis=1)
    power = (np.abs(true) ** 2).sum(axis=1)
    return np.where(power > 0, err / np.where(power > 0, power, 1.0), np.nan)


def nmse(pred: np.ndarray, true: np.ndarray) -> float:
    """Per-window NMSE: mean over windows of sum |err|^2 / sum |true|^2."""
    return float(np.nanmean(window_nmse(pred, true)))


def context_changes(per_window: dict[int, np.ndarray], resamples: int = 2000, seed: int = 0,
                    clusters: np.ndarray | None = None) -> dict[int, dict]:
    """The change in per-window NMSE (dB) from each context to the next longer one, with a paired
    95 % bootstrap interval: ``{c: {"db", "lo", "hi"}}`` for every context ``c`` but the shortest.

    ``per_window[c]``: the windows' NMSE at context ``c``, the same windows for every ``c``. A
    resample draws windows with replacement and scores both contexts on the same draw, so the
    interval is that of the change, not of either level. ``clusters`` ``[W]``: windows that are not
    independent share an id and are drawn together (the series of one capture over the same
    packets share its gain dips and level steps: drawn one by one, 48 of them would count as 48
    independent windows, and the interval would be far too narrow)."""
    ctxs = sorted(per_window)
    rng = np.random.default_rng(seed)
    out = {}
    for prev, c in zip(ctxs, ctxs[1:]):
        a, b = per_window[prev], per_window[c]
        ok = np.isfinite(a) & np.isfinite(b)
        a, b = a[ok], b[ok]
        # each cluster's sums (a window alone without clusters), clusters drawn with replacement:
        # the ratio of the two sums is that of the two means over the same drawn windows
        _, inv = np.unique(np.arange(len(ok))[ok] if clusters is None else clusters[ok], return_inverse=True)
        sa, sb = np.bincount(inv, a), np.bincount(inv, b)
        draw = rng.integers(0, len(sa), size=(resamples, len(sa)))
        boot = 10 * np.log10(sb[draw].sum(axis=1) / sa[draw].sum(axis=1))
        out[c] = {"db": float(10 * np.log10(b.mean() / a.mean())), "lo": float(np.quantile(boot, 0.025)),
                  "hi": float(np.quantile(boot, 0.975))}
    return out


def sweep(sets: dict[str, dict], models: dict[str, object], contexts: list[int], max_windows: int,
          batch: int) -> dict:
    results = {}
    for name, s in sets.items():
        x, interval, horizon = s["series"], float(s["interval"]), int(s["horizon"])
        ctxs = [c for c in contexts if c + horizon <= x.shape[1]]
        if not ctxs:
            continue
        idx, starts = windows(x, horizon, max(ctxs), max_windows)
        true = np.stack([x[i, t:t + horizon] for i, t in zip(idx, starts)])
        rows, per_window = {}, {label: {} for label in models}
        for c in ctxs:
            ctx = np.stack([x[i, t - c:t] for i, t in zip(idx, starts)])
            row = {}
            for label, model in [*((k, k) for k in CLASSICAL), *models.items()]:
                w = window_nmse(forecast_real(model, ctx, interval, horizon, batch), true)
                row[label] = float(np.nanmean(w))
                if label in per_window:
                    per_window[label][c] = w
            row["best classical"] = min(row[k] for k in CLASSICAL)
            rows[c] = row
        results[name] = {"interval_s": interval, "horizon": horizon, "windows": int(len(idx)),
                         "series": int(x.shape[0]), "complex": bool(np.iscomplexobj(x)),
                         "seasonal_period": {c: seasonal_period(interval, c) for c in ctxs}, "rows": rows,
                         "changes": {label: context_changes(pw, clusters=starts) for label, pw in per_window.items()},
                         "changes_by_window": {label: context_changes(pw) for label, pw in per_window.items()}}
    return results


def table(name: str, res: dict) -> str:
    rows = res["rows"]
    cols = list(next(iter(rows.values())))
    head = (f"### {name}: interval {res['interval_s']:.4g} s, horizon {res['horizon']}, "
            f"{res['windows']} windows of {res['series']} series (per-window NMSE, dB)\n\n")
    lines = ["| context | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for c, row in rows.items():
        lines.append(f"| {c} | " + " | ".join(f"{10 * math.log10(max(row[k], 1e-12)):.2f}" for k in cols) + " |")
    steps = [(f"{label} {c}: +{ch['db']:.2f} dB (95 % {ch['lo']:+.2f} .. {ch['hi']:+.2f})", ch["lo"] > 0)
             for label, changes in res.get("changes", {}).items() for c, ch in changes.items() if ch["db"] > 0]
    lines.append("\nlonger context worse (change from the previous context, paired bootstrap): "
                 + ("; ".join(text for text, _ in steps) or "never"))
    lines.append("worse beyond noise (interval above 0, the windows ending at one step drawn together): "
                 + ("; ".join(text for text, b in steps if b) or "never"))
    alone = [f"{label} {c}: 95 % {ch['lo']:+.2f} .. {ch['hi']:+.2f}"
             for label, changes in res.get("changes_by_window", {}).items() for c, ch in changes.items()
             if ch["db"] > 0 and ch["lo"] > 0]
    if alone:
        lines.append("(drawn window by window, as if independent: above 0 for " + "; ".join(alone) + ")")
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", default=[], help="model folder / .ckpt / hub id, or prior-mix")
    ap.add_argument("--data-dir", type=Path, default=None, help="where the real captures are imported")
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--out", type=Path, default=Path("runs/context-sweep"))
    ap.add_argument("--contexts", type=int, nargs="+", default=[2 ** k for k in range(3, 13)])
    ap.add_argument("--max-series", type=int, default=48)
    ap.add_argument("--max-windows", type=int, default=8)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--sets", nargs="*", default=None, help="only these series sets")
    ap.add_argument("--generated", nargs="*", default=[], metavar="FOLDER:HORIZON",
                    help="also generated series datasets (e.g. pretrain/box_cox.py's held-out traffic), each "
                         "forecast HORIZON steps ahead; a set named after the folder and its kind")
    args = ap.parse_args(argv)
    data_dir = args.data_dir or Path(os.environ.get("WFM_DATA", Path.home() / ".cache" / "wfm" / "data")) / "real"
    folders = import_real(data_dir, args.shared)
    if not folders and not args.generated:
        sys.exit(f"{args.shared}: no real captures found")
    sets = series_sets(folders, args.max_series)
    for spec in args.generated:
        folder, horizon = spec.rsplit(":", 1)
        for name, s in series_sets({Path(folder).name: Path(folder)}, args.max_series).items():
            sets[name] = {**s, "horizon": int(horizon)}
    if args.sets:
        sets = {k: v for k, v in sets.items() if k in args.sets}
    names = [spec if spec.startswith("prior-mix") else Path(spec).name for spec in args.model]
    # Two folders of one name (the release and a worktree's copy of it) would overwrite each other.
    names = [n if names.count(n) == 1 else spec for n, spec in zip(names, args.model)]
    models = {name: load_forecaster(spec) for name, spec in zip(names, args.model)}
    t0 = time.time()
    res = sweep(sets, models, args.contexts, args.max_windows, args.batch)
    args.out.mkdir(parents=True, exist_ok=True)
    out = {"models": args.model, "contexts": args.contexts, "seconds": round(time.time() - t0, 1), "sets": res}
    (args.out / "context_sweep.json").write_text(json.dumps(out, indent=2) + "\n")
    for name, r in res.items():
        print(table(name, r))
    print(f"wrote {args.out / 'context_sweep.json'}")
    return out


if __name__ == "__main__":
    main()
