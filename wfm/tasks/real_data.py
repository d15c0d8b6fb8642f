"""Zero-shot benchmark on real measured data: every shipped foundation model against the
classical baselines on every real dataset found (``wfm benchmark real``).

Datasets (the layout of ``../shared/datasets``, see its README; each source is optional):

- ``wifi-csi/*.dat`` (Intel 5300, ``csiread.Intel``) and ``wifi-csi/*.pcap`` (Nexmon,
  ``csiread.Nexmon``, BCM4339 unless ``nexmon_chip`` says otherwise, the bandwidth read from the
  packets' length): each capture is linear-phase sanitised with the importer's
  sanitiser (``wfm.data.loaders.phase.remove_linear_phase``: per packet and antenna, the least
  squares phase line across subcarriers is removed) and cut into windows of ``csi_window``
  packets (hop ``csi_hop``); the last ``csi_predict`` packets of each window are predicted from
  the first ones. Two views: the sanitised complex CSI, and its amplitude ``|H|``. With
  ``csi_frequency`` (``wfm benchmark real``'s default) two more, in windows of the same length
  that share no packet: the upper half of the subcarriers predicted from the lower half at every
  packet (channel prediction in frequency: ``axis == "frequency"``, the series run along
  subcarriers).
- ``traffic/*.csv`` (Telecom Italia layout, at the interval read from each file: the
  challenge's 10 minutes, or any other): one dataset per cell, windows of ``traffic_context``
  steps -> the next ``traffic_horizon`` (default 16 h -> 2 h at the file's interval), stride
  ``traffic_stride``, at most ``max_windows`` a cell.
- ``deepsense6g-beam/`` (DeepSense 6G, 0.1 s nominal): per trajectory, windows of
  ``beam_context`` -> ``beam_horizon`` steps (stride = horizon, trajectories too short are
  skipped) of three views: the received power of all 64 beams (linear, as stored; one window is
  ``[H, 64]``), the bearing (deg, compass bearing from the base station's GPS to the
  vehicle's, unwrapped per trajectory) and the distance (m, between the same two fixes): the
  user's path, the series the causal model forecasts zero-shot.

Models: every exported model folder in ``checkpoints/`` (its ``config.json``'s
``model_kind``), so new checkpoints are picked up without code changes. A causal model
(``forecast``) forecasts every dataset as a set of univariate series (CSI: the real and
imaginary part, or the amplitude, of every antenna x subcarrier series; beam power: every
beam). An MAE predicts the CSI views: ``predict(window, "temporal", ratio)`` on the sanitised
complex window, with ``ratio = csi_predict / csi_window`` (``predict(window, "frequency", (K // 2) / K)``
for the frequency views, which only the MAE takes: a series along subcarriers is not a time
series); the amplitude view scores the magnitude of that prediction. A model that cannot take
a dataset (a shape it refuses) gets a row with its one-line error, and the benchmark goes on.

Classical baselines on the same windows (``wfm.models.baselines``): persistence (the last
value of every series: per antenna and subcarrier for CSI, per beam for beam power), the
context mean (per series), and seasonal naive with the period from the interval
(``seasonal_period``: a day or a week of steps; none fits the context of any of the shared
datasets, so it is reported as not applicable there; ``period=`` forces one). Linear
extrapolation and linear prediction (``ar``: the classical AR channel predictor, one recursion per
window pooled over its channels) are shown for reference (kind ``reference``) without setting the
best, and so, on views whose channels are ordered (beam power: the codebook's beams in angular
order), is ``drift``, the window's power profile shifted by its peak's drift
(:func:`wfm.models.profile_drift.drift_forecast`, the classical beam-tracking forecast); the
verdict names the datasets where one of them is ahead of a model.

Saved future-beam models (``checkpoints/*/trained.json``) are scored on their own task, the
next best beam of the DeepSense trajectories against persistence (``wfm.tasks.real_beams``).

Metric (DESIGN.md, "How models are judged"): per-window NMSE, the mean over windows of
``sum |err|^2 / sum |true|^2`` over the window's predicted steps and channels, in linear and dB,
and its ratio to the best classical baseline of the same dataset (``ratio_to_best`` < 1 beats
every classical baseline).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

import wfm
from wfm.console import markdown_table
from wfm.data.errors import DataError
from wfm.models.baselines import ProfileDrift, build_baseline, seasonal_period
from wfm.tasks.forecasting import coverage, forecast_series, pools_channels
from wfm.tasks.metrics import add_best_classical, mean_window_nmse, to_db, window_nmse
from wfm.tasks.real_beams import BEAM_COLUMNS, beam_rows, beam_verdicts, discover_beam_models
# The datasets live in real_datasets; their names are re-exported here, where callers have found them.
from wfm.tasks.real_datasets import (REPO_ROOT, BenchData, RealBenchConfig, _fmt_interval,  # noqa: F401
                                    _series_windows, csi_views, default_datasets_dir, generated_csi_view,
                                    generated_frequency_view, load_beams, load_traffic, load_wifi, skip_or_raise)
from wfm.tasks.real_imported import dataset_folders, load_imported
from wfm.tasks.significance import MIN_GROUPS, geometric_mean_interval, ratio_interval, windows_behind

# ---------------------------------------------------------------------------- datasets


def load_real_datasets(root: str | Path, cfg: RealBenchConfig | None = None,
                       skipped: list[dict[str, str]] | None = None) -> list[BenchData]:
    """Every benchmark dataset under ``root``: the raw files of ``wifi-csi/``, ``traffic/`` and
    ``deepsense6g-beam/``, and wfm dataset folders of measured data at ``root`` or one level
    below it (``wfm data import ...``; :mod:`wfm.tasks.real_imported`).

    A file or folder that does not read (a corrupt capture, a CSV with a bad row) raises its
    :class:`DataError`; with a ``skipped`` list it is noted there instead (``{"source",
    "error"}``) and the others are still loaded (``wfm benchmark real``)."""
    cfg = cfg or RealBenchConfig()
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such datasets folder")
    out: list[BenchData] = []
    for sub, loader in (("wifi-csi", load_wifi), ("traffic", load_traffic)):
        if (root / sub).is_dir():
            out += loader(root / sub, cfg, skipped)
    for folder, loader in ([(root / "deepsense6g-beam", load_beams)] if (root / "deepsense6g-beam").is_dir() else []) + \
            [(f, load_imported) for f in dataset_folders(root)]:
        try:
            out += loader(folder, cfg)
        except DataError as e:
            skip_or_raise(folder, e, skipped)
    # Two imports of one file (same dataset name) in different folders: each named by its folder too.
    sources: dict[str, set[str]] = {}
    for d in out:
        sources.setdefault(d.name, set()).add(d.source)
    out = [d if len(sources[d.name]) < 2 or not d.name.endswith(" (imported)") else
           replace(d, name=f"{d.name[:-len(' (imported)')]} ({Path(d.source).relative_to(root)}, imported)")
           for d in out]
    if not out:
        # Where everything found was skipped, the first reason is what the user needs.
        why = f"; not scored: {skipped[0]['error']}" + (f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else "") \
            if skipped else ""
        raise DataError(f"{root}: no wifi-csi/, traffic/ or deepsense6g-beam/ data, nor an imported dataset folder "
                        f"of CSI or series, with enough steps for a window{why}")
    return out


# ---------------------------------------------------------------------------- models


def discover_models(folder: str | Path | None = None) -> list[tuple[str, str]]:
    """``(path, model_kind)`` of every exported model under ``folder`` (default: the
    repository's ``checkpoints/``), read from each ``config.json``."""
    folder = Path(folder) if folder else REPO_ROOT / "checkpoints"
    found = []
    for cfg in sorted(folder.glob("*/config.json")):
        try:
            kind = json.loads(cfg.read_text()).get("model_kind")
        except (OSError, json.JSONDecodeError):
            continue
        if kind:
            found.append((str(cfg.parent), str(kind)))
    return found


def _to_series(x: Tensor) -> Tensor:
    """``[N, L, *C]`` (real or complex) -> real series ``[N * C (* 2), L]``."""
    if x.is_complex():
        x = torch.view_as_real(x)  # [N, L, *C, 2]
    return x.movedim(1, -1).reshape(-1, x.shape[1])


def _from_series(series: Tensor, like: Tensor) -> Tensor:
    """Inverse of ``_to_series`` for forecasts of ``like``'s layout (``[N, H, *C]``)."""
    N, rest = like.shape[0], list(like.shape[2:])
    H = series.shape[1]
    if like.is_complex():
        x = series.reshape(N, *rest, 2, H).movedim(-1, 1)
        return torch.view_as_complex(x.contiguous())
    return series.reshape(N, *rest, H).movedim(-1, 1)


def forecast_windows(forecaster: Any, data: BenchData, batch: int = 8192, pool: bool = True,
                     quantiles_into: list | None = None) -> Tensor:
    """``forecaster.forecast`` of every channel of every window as its own series: ``[N, H, *C]``.

    ``pool``: the channels of one window form a group (``wfm.tasks.forecasting.forecast_series``):
    a forecaster that takes ``group`` pools their evidence; the classical baselines ignore it.
    ``quantiles_into``: a list that gets the quantiles ``[N * series per window, H, Q]`` of a
    forecaster with ``forecast_with_quantiles`` (from the same run as the point forecast)."""
    series = _to_series(data.context)
    per = len(series) // max(1, data.context.shape[0]) if pool else 1
    parts: list[Tensor] | None = None if quantiles_into is None else []
    pred = forecast_series(forecaster, series, data.interval, data.target.shape[1], per_group=per, batch_size=batch,
                           quantiles_into=parts, ordered=data.ordered, ranges=data.ranges)
    if parts:
        quantiles_into.append(torch.cat(parts))
    return _from_series(pred, data.target)


def quantile_scores(quant: Tensor, data: BenchData, levels: tuple[float, ...]) -> dict[str, float]:
    """Calibration of quantile forecasts ``quant`` ``[S, H, Q]`` of every series of ``data`` (as
    ``_to_series`` orders them): ``interval_coverage``, the share of targets inside the outermost
    quantiles, its nominal share, and ``quantile_loss``, the weighted quantile loss with a window's
    channels as one window (``wfm.tasks.forecasting.weighted_quantile_loss``)."""
    n = data.windows
    # A window's channels as one row: the shares are the same, the loss is per window.
    cov = coverage(quant.reshape(n, -1, quant.shape[-1]), _to_series(data.target).reshape(n, -1), levels)
    return {"interval_coverage": cov["interval"], "interval_nominal": round(cov["interval_nominal"], 6),
            "quantile_loss": cov["quantile_loss"]}


@torch.no_grad()
def mae_windows(model: Any, data: BenchData, batch: int = 64) -> Tensor:
    """The MAE's prediction of every CSI window's target (complex), in the layout of ``data.target``.

    The model gets the whole window as it is (no cropping or padding here). In time (``[N, H, A,
    K]``): ``predict(window, "temporal", H / T)``, which must hide exactly the last ``H`` packets;
    in frequency (``[N, H, T, A]``, ``H`` subcarriers): ``predict(window, "frequency", H / K)``,
    which must hide exactly the upper ``H`` subcarriers."""
    if data.csi is None:
        raise DataError(f"an MAE predicts CSI, not {data.view}")
    full = data.csi.to(torch.complex64)
    L, H = data.context.shape[1], data.target.shape[1]
    freq = data.axis == "frequency"
    dim = 3 if freq else 1
    ratio = H / full.shape[dim]
    outs = []
    for a in range(0, len(full), batch):
        p = model.predict(full[a:a + batch], "frequency" if freq else "temporal", ratio)
        hidden = p.mask.movedim(dim, 1).reshape(p.mask.shape[0], p.mask.shape[dim], -1).all(-1).all(0)
        if hidden.shape[0] != full.shape[dim] or not bool(hidden[L:].all()) or bool(hidden[:L].any()):
            what = "subcarriers" if freq else "time steps"
            raise DataError(f"the model hides {what} {hidden.nonzero().flatten().tolist()}, not the last {H}")
        part = p.reconstruction.narrow(dim, L, H).to(torch.complex64)
        outs.append(part.permute(0, 3, 1, 2) if freq else part)
    return torch.cat(outs)


# ---------------------------------------------------------------------------- scoring


def _score(pred: Tensor, target: Tensor) -> dict[str, Any]:
    """The mean scores, and the per-window NMSE under ``_windows`` for :func:`_finalise` (dropped there)."""
    per = window_nmse(pred, target)
    m = mean_window_nmse(per)
    return {"window_nmse": m, "window_nmse_db": to_db(m), "_windows": per}


def classical_rows(data: BenchData, cfg: RealBenchConfig) -> list[dict[str, Any]]:
    """Rows of persistence, context mean and seasonal naive (where a period fits the context)."""
    L = data.context.shape[1]
    period = cfg.period or seasonal_period(data.interval, L)
    rows = []
    for name in ("persistence", "mean", "seasonal"):
        row: dict[str, Any] = {"model": name, "kind": "classical"}
        if name == "seasonal":
            if data.axis != "time":
                row.update(period="n/a", note="no season along subcarriers")
                rows.append(row)
                continue
            if period is None or period > L:
                row.update(period="n/a", note=f"no season in {L} steps of {_fmt_interval(data.interval)}"
                                              + (f" (period {period})" if period else " (< 1 day)"))
                rows.append(row)
                continue
            row["period"] = period
        f = build_baseline(name, **({"period": period} if name == "seasonal" else {}))
        row.update(_score(forecast_windows(f, data, cfg.batch_series), data.target))
        rows.append(row)
    # Linear extrapolation (last 4 values) is shown for reference; it is not one of DESIGN.md's
    # classical baselines, so it does not set "best classical".
    row = {"model": "linear", "kind": "reference", "note": "least-squares line through the last 4 values"}
    row.update(_score(forecast_windows(build_baseline("linear"), data, cfg.batch_series), data.target))
    rows.append(row)
    # Linear prediction, the classical AR channel predictor, likewise: one recursion per window,
    # pooled over its channels (wfm.models.linear_prediction).
    row = {"model": "ar", "kind": "reference", "note": "linear prediction, one recursion per window over its channels"}
    row.update(_score(forecast_windows(build_baseline("ar"), data, cfg.batch_series), data.target))
    rows.append(row)
    if data.ordered and not data.context.is_complex():  # beams in angular order: the beam-tracking forecast
        row = {"model": "drift", "kind": "reference",
               "note": "the window's profile over its ordered channels shifted by its peak's drift"}
        row.update(_score(forecast_windows(ProfileDrift(), data, cfg.batch_series), data.target))
        rows.append(row)
    return rows


def model_rows(data: BenchData, models: list[tuple[str, str, Any]], cfg: RealBenchConfig,
               mae_cache: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of every foundation model that applies to ``data`` (errors become a row's ``error``)."""
    rows = []
    for path, kind, model in models:
        row: dict[str, Any] = {"model": Path(path).name, "kind": f"FM ({kind}) zero-shot"}
        try:
            if isinstance(model, Exception):  # it did not load: say so on every dataset it would take
                if kind == "mae" and not data.is_csi:
                    continue
                raise model
            if kind == "mae":
                if not data.is_csi:
                    continue
                key = f"{path}|{data.source}|{data.name}|{data.view}"
                if key not in mae_cache:
                    try:
                        mae_cache[key] = mae_windows(model, data, cfg.batch_csi)
                    except Exception as e:
                        mae_cache[key] = e
                pred = mae_cache[key]
                if isinstance(pred, Exception):
                    raise pred
                if not data.target.is_complex():  # an amplitude view: the magnitude of the prediction
                    pred = pred.abs()
                    row["note"] = "amplitude windows as its input (|H| as a real-valued CSI)"
            elif hasattr(model, "forecast") and data.axis == "time":  # along subcarriers is no time series
                levels = tuple(getattr(model, "quantile_levels", ()))
                quant: list[Tensor] | None = [] if len(levels) >= 2 else None
                pred = forecast_windows(model, data, cfg.batch_series, cfg.pool_channels, quant)
                if quant:
                    row.update(quantile_scores(quant[0], data, levels))
                row["note"] = "every channel as a univariate series" + \
                    (" (real, imaginary parts)" if data.context.is_complex() else "") + \
                    ("; a window's channels pool their evidence" if cfg.pool_channels and pools_channels(model)
                     and _to_series(data.context[:1]).shape[0] > 1 else "") + \
                    ("; non-negative windows in the Box-Cox space their context chooses"
                     if getattr(model, "box_cox", False) and not data.context.is_complex()
                     and bool((data.context >= 0).all()) else "")
            else:
                continue
            row.update(_score(pred, data.target))
        except Exception as e:  # a model that refuses a shape is a result, not a crash
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        rows.append(row)
    return rows


def _finalise(rows: list[dict[str, Any]], data: BenchData) -> None:
    classical = {r["model"]: r["window_nmse"] for r in rows if r["kind"] == "classical" and "window_nmse" in r}
    add_best_classical(rows, classical)
    # How far each ratio could move with other windows of the same kind: a block bootstrap over
    # windows whose targets share no step (a Milan cell's stride-1 day is one block: no interval).
    best = next((r["_windows"] for r in rows if r["kind"] == "classical" and r["model"] == r.get("best_classical")
                 and "_windows" in r), None)
    blocks = data.blocks()
    for r in rows:
        mine = r.pop("_windows", None)
        if best is None or mine is None or not r["kind"].startswith("FM"):
            continue
        k, order = windows_behind(mine, best)
        if k:  # behind: how many of its windows make the gap, and where the worst one starts
            r["gap_windows"] = k
            worst = int(order[0])
            r["gap_worst_window"] = worst if data.span is None else f"{worst} (series {int(data.span[worst, 0])}, " \
                                                                     f"step {int(data.span[worst, 1])})"
        ci = ratio_interval(mine, best, blocks)
        if ci is None:
            r["ratio_blocks"] = len(mine) if blocks is None else int(blocks.unique().numel())
        else:
            r["ratio_low"], r["ratio_high"], r["ratio_blocks"] = ci
    for r in rows:
        r.update(dataset=data.name, view=data.view, source=data.source, windows=data.windows, axis=data.axis,
                 context=int(data.context.shape[1]),
                 horizon=int(data.target.shape[1]), interval=_fmt_interval(data.interval))


def run_real_benchmark(root: str | Path, model_specs: list[tuple] | None = None,
                       cfg: RealBenchConfig | None = None,
                       progress: Callable[[int], None] | None = None,
                       beam_models: list[str] | None = None) -> dict[str, Any]:
    """Score every model and the classical baselines on every dataset under ``root``:
    ``{"datasets": [...], "rows": [...], "summary": [...], "config", "models", "beams"}``.

    ``model_specs``: ``(path, model_kind)`` pairs (default ``discover_models()``), loaded with
    ``wfm.from_pretrained``, or ``(name, model_kind, model)`` triples of models already built.
    A model that does not load is reported (an ``error`` on each of its rows), not fatal.
    ``beam_models``: saved future-beam model folders scored on the next best beam of the DeepSense
    data (``wfm.tasks.real_beams``; default: those in ``checkpoints/`` when ``model_specs`` is
    None too, else none); ``beams`` holds their rows (absent without beam models or data)."""
    cfg = cfg or RealBenchConfig()
    skipped: list[dict[str, str]] = []
    data = load_real_datasets(root, cfg, skipped)
    if beam_models is None:
        beam_models = discover_beam_models() if model_specs is None else []
    specs = discover_models() if model_specs is None else list(model_specs)
    models: list[tuple[str, str, Any]] = []
    for spec in specs:
        path, kind = spec[0], spec[1]
        try:
            m = spec[2] if len(spec) > 2 else wfm.from_pretrained(path)
            m.eval()
        except Exception as e:
            m = e
        models.append((path, kind, m))
    rows: list[dict[str, Any]] = []
    mae_cache: dict[str, Any] = {}
    for d in data:
        part = classical_rows(d, cfg) + model_rows(d, models, cfg, mae_cache)
        _finalise(part, d)
        rows += part
        if progress:
            progress(1)
    beams = None
    if beam_models and (Path(root) / "deepsense6g-beam").is_dir():
        from wfm.tasks import saved

        loaded: list[tuple[str, Any, dict[str, Any]]] = []
        for path in beam_models:
            try:
                loaded.append((path, *saved.load(path)))
            except Exception as e:  # reported on its row, as a forecasting model that does not load
                loaded.append((path, e, {}))
        beams = beam_rows(Path(root) / "deepsense6g-beam", loaded)
        if progress:
            progress(1)
    return {"datasets_dir": str(root), "config": asdict(cfg), **({"beams": beams} if beams and beams["rows"] else {}),
            **({"skipped": skipped} if skipped else {}),
            "models": [{"path": p, "kind": k, **({"error": f"cannot load: {m}"} if isinstance(m, Exception) else {})}
                       for p, k, m in models],
            "datasets": [{"dataset": d.name, "view": d.view, "windows": d.windows, "interval_s": d.interval,
                          "source": d.source, "note": d.windows_note} for d in data],
            "rows": rows, "summary": summary_rows(rows, [Path(p).name for p, _, _ in models]),
            "families": family_rows(rows)}


def family_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model, the datasets of one source file and view taken together where there are at least
    ``MIN_GROUPS`` of them (the cells of a traffic file: each cell one day, too little for an
    interval of its own): the geometric mean of their ratios and its 95 % interval over datasets."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r["kind"].startswith("FM") and "ratio_to_best" in r and r.get("source"):
            groups.setdefault((r["model"], r["view"], r["source"]), []).append(r)
    out = []
    for (model, view, source), rs in groups.items():
        if len(rs) < MIN_GROUPS:
            continue
        geo, lo, hi = geometric_mean_interval([r["ratio_to_best"] for r in rs])
        names = [r["dataset"] for r in rs]
        prefix = os.path.commonprefix(names).strip() or Path(source).name
        out.append({"model": model, "view": view, "source": source, "datasets": names,
                    "label": f"{prefix} ({len(rs)} {view} datasets of {Path(source).name})",
                    "geometric_mean_ratio": geo, "ratio_low": lo, "ratio_high": hi})
    return out


def summary_rows(rows: list[dict[str, Any]], model_names: list[str]) -> list[dict[str, Any]]:
    """One row per dataset and view: the best classical baseline and each model's ratio to it."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r["dataset"], r["view"])
        s = out.setdefault(key, {"dataset": r["dataset"], "view": r["view"], "windows": r["windows"]})
        if r["kind"] == "classical" and r.get("best_classical") == r["model"]:
            s["best classical"] = r["model"]
            s["best NMSE dB"] = r["window_nmse_db"]
        elif r["kind"] == "reference":
            s[f"{r['model']} (ref.) ratio"] = r.get("ratio_to_best")
        elif r["kind"] != "classical" and r["model"] in model_names:
            s[f"{r['model']} dB"] = r.get("window_nmse_db", "error" if "error" in r else None)
            s[f"{r['model']} ratio"] = r.get("ratio_to_best", "error" if "error" in r else None)
            if "ratio_to_best" in r:
                s[f"{r['model']} ratio 95 %"] = _fmt_ratio_interval(r)
    return list(out.values())


def _fmt_ratio_interval(row: dict[str, Any]) -> str:
    """``0.91-1.07``, or why there is no interval (``1 block``)."""
    if "ratio_low" in row:
        return f"{row['ratio_low']:.3f}-{row['ratio_high']:.3f}"
    n = row.get("ratio_blocks", 0)
    return f"{n} block{'s' if n != 1 else ''}"


def beyond_noise(row: dict[str, Any]) -> str:
    """``"behind"`` or ``"ahead"`` where a row's 95 % ratio interval lies wholly above or below 1,
    ``"within noise"`` where it holds 1, ``"no interval"`` without one."""
    if "ratio_low" not in row:
        return "no interval"
    return "behind" if row["ratio_low"] > 1 else "ahead" if row["ratio_high"] < 1 else "within noise"


#: How the verdict sorts the datasets a model is behind on (``beyond_noise``), in its words.
BEHIND_KINDS = (("behind", "behind beyond noise (the 95 % interval of the ratio above 1)"),
                ("within noise", "within noise"),
                ("no interval", "too few independent blocks of windows for an interval"))


def verdicts(result: dict[str, Any]) -> list[str]:
    """Plain sentences: per model, on how many datasets it is <= and <= 0.8x the best classical."""
    lines = []
    for m in result["models"]:
        name = Path(m["path"]).name
        mine = [r for r in result["rows"] if r["model"] == name and r["kind"].startswith("FM")]
        scored = [r for r in mine if "ratio_to_best" in r]
        failed = [r for r in mine if "error" in r]
        if not mine:
            continue
        le1 = sum(r["ratio_to_best"] <= 1 for r in scored)
        le08 = sum(r["ratio_to_best"] <= 0.8 for r in scored)
        worst = max(scored, key=lambda r: r["ratio_to_best"], default=None)
        text = (f"{name}: <= best classical on {le1} of {len(mine)} datasets, <= 0.8x on {le08}"
                + (f"; failed on {len(failed)} ({failed[0]['error']})" if failed else "")
                + (f"; worst {worst['ratio_to_best']:.3g}x on {worst['dataset']} ({worst['view']})" if worst else ""))
        lines.append(text)
        over = [r for r in scored if r["ratio_to_best"] > 1]
        if over:
            parts = []
            for kind, label in BEHIND_KINDS:
                rs = [r for r in over if beyond_noise(r) == kind]
                if rs:
                    named = ", ".join(f"{r['dataset']} {r['view']} {_fmt_ratio_interval(r)}"
                                      + (f" [{r['gap_windows']} of its {r['windows']} windows make the gap]"
                                         if "gap_windows" in r else "") for r in rs)
                    parts.append(f"{label} on {len(rs)} ({named})")
            lines.append(f"{name}: of the {len(over)} behind, " + "; ".join(parts))
        refs = [r for r in result["rows"] if r["kind"] == "reference" and "ratio_to_best" in r]
        for ref in dict.fromkeys(r["model"] for r in refs):  # where a reference baseline is ahead of the model
            ratio = {(r["dataset"], r["view"]): r["ratio_to_best"] for r in refs if r["model"] == ref}
            where = [f"{r['dataset']} {r['view']} ({ratio[(r['dataset'], r['view'])]:.3g}x against "
                     f"{r['ratio_to_best']:.3g}x)" for r in scored
                     if ratio.get((r["dataset"], r["view"]), float("inf")) < r["ratio_to_best"]]
            if where:
                lines.append(f"{name}: the reference {ref} is ahead of it on {len(where)}: " + ", ".join(where))
        for f in result.get("families", []):
            if f["model"] == name:
                where = ("ahead beyond noise" if f["ratio_high"] < 1 else "behind beyond noise" if f["ratio_low"] > 1
                         else "within noise")
                lines.append(f"{name}: {f['label']} together: geometric mean of the ratios {f['geometric_mean_ratio']:.3f}, "
                             f"95 % over datasets {f['ratio_low']:.3f}-{f['ratio_high']:.3f} ({where})")
        bands = [r for r in scored if "interval_coverage" in r]
        if bands:
            lo, hi = min(bands, key=lambda r: r["interval_coverage"]), max(bands, key=lambda r: r["interval_coverage"])
            lines.append(f"{name}: its {bands[0]['interval_nominal']:.0%} band holds {lo['interval_coverage']:.0%} "
                         f"({lo['dataset']}, {lo['view']}) to {hi['interval_coverage']:.0%} ({hi['dataset']}, "
                         f"{hi['view']}) of the targets")
    return lines + (beam_verdicts(result["beams"]) if result.get("beams") else [])


TABLE_COLUMNS = ("dataset", "view", "windows", "context", "horizon", "interval", "model", "kind", "period",
                 "window_nmse", "window_nmse_db", "best_classical", "ratio_to_best", "ratio_low", "ratio_high",
                 "ratio_blocks", "gap_windows", "gap_worst_window", "interval_coverage",
                 "quantile_loss", "note", "error")


def markdown_report(result: dict[str, Any], command: str = "wfm benchmark real") -> str:
    def esc(rs: list[dict[str, Any]]) -> list[dict[str, Any]]:  # a "|" in a cell would split it
        return [{k: v.replace("|", "\\|") if isinstance(v, str) else v for k, v in r.items()} for r in rs]

    rows = esc(result["rows"])
    cols = [c for c in TABLE_COLUMNS if any(c in r for r in rows)]
    summary = esc(result["summary"])
    scols = list(dict.fromkeys(k for s in summary for k in s))
    lines = ["# Real-data zero-shot benchmark\n", f"`{command}` on `{result['datasets_dir']}`.\n",
             "Per-window NMSE: mean over windows of sum err^2 / sum true^2 (linear and dB); ratio = model NMSE / "
             "best classical NMSE of the same windows (persistence, context mean, seasonal naive).\n",
             "## Windows\n"]
    lines += [f"- {d['dataset']} ({d['view']}): {d['note']}" for d in result["datasets"]]
    if result.get("skipped"):
        lines += ["", "## Not scored\n"] + [f"- {x['error']}" for x in result["skipped"]]  # the error names the file
    lines += ["", "## Verdict\n"] + [f"- {v}" for v in verdicts(result)]
    lines += ["", "## Summary\n", markdown_table(summary, scols)]
    if result.get("beams"):
        brows = esc(result["beams"]["rows"])
        lines += ["## Next best beam (DeepSense 6G, saved future-beam models)\n",
                  "Top-1 / top-3 accuracy and beam power loss (dB) of the predicted best beam "
                  f"{', '.join(str(w['horizon']) for w in result['beams']['windows'])} step(s) ahead from "
                  f"{', '.join(str(w['context']) for w in result['beams']['windows'])} beam-power vectors; miss ratio = "
                  "model top-1 misses / persistence's on the same windows (< 1 beats it), 95 % over trajectories.\n",
                  markdown_table(brows, [c for c in BEAM_COLUMNS if any(c in r for r in brows)])]
    lines += ["## All rows\n", markdown_table(rows, cols)]
    return "\n".join(lines)

