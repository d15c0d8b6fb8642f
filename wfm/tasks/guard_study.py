"""Per-window classical rules and the MAE guard's reversion margin on real (and generated) CSI.

Two tables of pretrain/studies.md ("The MAE's guard"), as ratios of per-window NMSE to the best
of persistence and the context mean on the same windows (< 1 beats it):

- :func:`classical_rule_rows`: rules that choose, per window, from the context alone: the last
  value, the mean, the better of the two by a backtest inside the context (pooled over every
  series of the window), and the AR(1) forecast around the mean (``mean + phi^h (last - mean)``,
  ``phi`` the clipped lag-1 autocorrelation of the context's deviations) with ``phi`` per
  series or pooled over the window.
- :func:`noise_rows`: how much of each CSI view is noise around a level: the share of series
  whose context has no positive lag-1 autocorrelation (``phi`` clipped to 0), and the share of
  the amplitude's change over time that is one gain per packet common to every antenna and
  subcarrier (what ``gain_jitter_db`` generates).
- :func:`band_rows`: how smooth each CSI dataset is across its band: the per-window NMSE of the
  nearest lower subcarrier and of the lower half's mean, predicting the upper half of the
  subcarriers at every packet, and the correlation of adjacent subcarriers.
- :func:`filter_rows`: the receive filter's phase of each complex CSI dataset, as
  ``band_delay_ns`` / ``band_delay_mhz`` fitted per chain (``wfm.data.calibrate.fit_band_delay``).
- :func:`margin_rows`: an MAE's ``predict`` with ``REVERSION_MARGIN`` set to each value (a huge
  margin is "the reversion estimate only"), or another guard constant (``GUARD_SHARPNESS``;
  ``PRIOR_SHRINK`` off and on, ``--prior-shrink``).
- :func:`forced_prior_rows`: an MAE's prediction with its prior forced to each classical
  estimate (hold, mean, the AR(1) reversion), the learned correction off and at full scale,
  against the guard's own choice: whether the correction or the choice of prior is what loses.
- :func:`white_gate_rows`: the causal model's ``white_limit`` rule applied to an MAE's temporal
  prediction (the visible mean where a window's pooled autocorrelation says white noise).
- :func:`white_limit_rows`: an MAE's temporal prediction with its ``white_limit`` off and at each
  limit (a white window gets its mean, shrunk as the backtest says, without the correction), at
  several window lengths and horizons.
- :func:`correction_rule_rows`: rules for the scale of the MAE's learned correction from its
  backtest on the visible part (``MaskedAutoencoder.backtest_fit``): the least-squares fit clipped
  to [0, 1] (the shipped rule), off, and fits that must explain a share ``tau`` of the prior's
  backtest error (a gate) or are shrunk by it (positive-part James-Stein), as ratios to the
  shipped rule on the same windows.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import wfm.models.mae as mae_module
from wfm.data.calibrate import fit_band_delay, subcarrier_freqs_hz
from wfm.data.shards import ShardedDataset
from wfm.models.evidence import looks_white
from wfm.models.mae import GUARD_ESTIMATES, fitted_correction_scale
from wfm.hub import from_pretrained
from wfm.tasks.csi_data import load_csi
from wfm.tasks.metrics import window_nmse
from wfm.tasks.real_data import (BenchData, RealBenchConfig, _to_series, default_datasets_dir, generated_csi_view,
                                 generated_frequency_view, load_real_datasets, mae_windows)
from wfm.tasks.real_datasets import STUDY_CSI_HOP


def _score(pred: Tensor, target: Tensor) -> float:
    return float(window_nmse(pred, target).mean())


def _real_view(x: Tensor) -> Tensor:
    """``[N, L, *C]`` real or complex -> real float64 ``[N, L, C']``."""
    if x.is_complex():
        x = torch.view_as_real(x)
    return x.reshape(x.shape[0], x.shape[1], -1).double()


def ar1_forecast(context: Tensor, horizon: int, pooled: bool) -> Tensor:
    """AR(1) around the context mean, ``[N, L, C]`` -> ``[N, horizon, C]`` (see module docstring)."""
    mu = context.mean(dim=1, keepdim=True)
    dev = context - mu
    lag = (dev[:, 1:] * dev[:, :-1]).sum(dim=1)
    power = (dev * dev).sum(dim=1)
    if pooled:
        lag, power = lag.sum(dim=1, keepdim=True), power.sum(dim=1, keepdim=True)
    phi = (lag / power.clamp_min(1e-30)).clamp(0.0, 1.0)[:, None]  # [N, 1, C or 1]
    h = torch.arange(1, horizon + 1, dtype=context.dtype)[None, :, None]
    return mu + phi ** h * (context[:, -1:] - mu)


def backtest_pick(context: Tensor, horizon: int) -> Tensor:
    """Last value or mean per window, whichever did better predicting the rest of the context from
    each origin of its second half (errors pooled over every series of the window)."""
    n, length = context.shape[:2]
    err = {"last": torch.zeros(n, dtype=context.dtype), "mean": torch.zeros(n, dtype=context.dtype)}
    for o in range(max(1, length // 2 - 1), length - 1):
        past, future = context[:, :o + 1], context[:, o + 1:]
        err["last"] += ((future - past[:, -1:]) ** 2).sum(dim=(1, 2))
        err["mean"] += ((future - past.mean(dim=1, keepdim=True)) ** 2).sum(dim=(1, 2))
    last = context[:, -1:].expand(-1, horizon, -1)
    mean = context.mean(dim=1, keepdim=True).expand(-1, horizon, -1)
    return torch.where((err["last"] < err["mean"])[:, None, None], last, mean)


def classical_rule_rows(datasets: Sequence[BenchData]) -> list[dict[str, Any]]:
    """One row per dataset: each rule's per-window NMSE over the best of last value and mean."""
    rows = []
    for d in datasets:
        ctx, tgt = _real_view(d.context), _real_view(d.target)
        h = tgt.shape[1]
        preds = {"last": ctx[:, -1:].expand(-1, h, -1), "mean": ctx.mean(dim=1, keepdim=True).expand(-1, h, -1),
                 "backtest pick (pooled)": backtest_pick(ctx, h),
                 "AR(1), phi per series": ar1_forecast(ctx, h, pooled=False),
                 "AR(1), phi pooled": ar1_forecast(ctx, h, pooled=True)}
        scores = {k: _score(v, tgt) for k, v in preds.items()}
        best = min(scores["last"], scores["mean"])
        rows.append({"dataset": d.name, "view": d.view, **{k: v / best for k, v in scores.items()}})
    return rows


def noise_rows(datasets: Sequence[BenchData]) -> list[dict[str, Any]]:
    """One row per CSI dataset: the share of series with ``phi = 0`` and the common-gain share (see module doc)."""
    rows = []
    for d in datasets:
        ctx = _real_view(d.context)
        dev = ctx - ctx.mean(dim=1, keepdim=True)
        phi = ((dev[:, 1:] * dev[:, :-1]).sum(dim=1) / (dev * dev).sum(dim=1).clamp_min(1e-30)).clamp(0.0, 1.0)
        amp = d.csi.abs().double().clamp_min(1e-12).log()  # [N, T, A, K]
        change = amp - amp.mean(dim=1, keepdim=True)
        common = change.mean(dim=(2, 3), keepdim=True)
        rows.append({"dataset": d.name, "view": d.view, "series with phi = 0": float((phi == 0).double().mean()),
                     "common gain share": float(common.pow(2).mean() / change.pow(2).mean().clamp_min(1e-30))})
    return rows


def band_rows(datasets: Sequence[BenchData]) -> list[dict[str, Any]]:
    """One row per complex CSI dataset (see module doc): whether the nearest subcarrier or the band's
    mean extrapolates its upper half better, and the adjacent-subcarrier correlation."""
    rows = []
    for d in datasets:
        if d.csi is None or not d.csi.is_complex():
            continue
        csi = d.csi.to(torch.complex128)  # [N, T, A, K]
        k = csi.shape[3]
        lower, upper = csi[..., :k - k // 2], csi[..., k - k // 2:]
        along = lambda x: x.permute(0, 3, 1, 2)  # noqa: E731  (subcarriers as the window's steps)
        near = float(window_nmse(along(lower[..., -1:].expand_as(upper)), along(upper)).mean())
        mean = float(window_nmse(along(lower.mean(dim=3, keepdim=True).expand_as(upper)), along(upper)).mean())
        a, b = csi[..., 1:], csi[..., :-1]
        adj = (a * b.conj()).sum().abs() / ((a.abs() ** 2).sum() * (b.abs() ** 2).sum()).sqrt().clamp_min(1e-30)
        rows.append({"dataset": d.name, "subcarriers": k, "nearest subcarrier NMSE": near, "mean NMSE": mean,
                     "nearest / mean": near / mean, "adjacent correlation": float(adj)})
    return rows


#: Subcarrier spacing of the real captures' CSI columns: the Intel 5300 reports 30 groups of 20 MHz
#: (every second subcarrier, 625 kHz, but for the two centre groups), Nexmon's VHT80 every subcarrier.
REAL_SPACING_HZ = {"Intel 5300": 625e3, "Nexmon BCM4339": 312.5e3}
STUDY_WINDOWS = RealBenchConfig(csi_hop=STUDY_CSI_HOP)  # the real captures' windows these studies measured


def filter_rows(datasets: Sequence[BenchData], freqs_hz: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One row per receive chain of every complex CSI dataset named in ``freqs_hz`` (dataset name ->
    its subcarrier frequencies, Hz): the edge group delays that explain its phase across the band
    after a linear sanitisation, and how much of it they explain (``r2``; module doc)."""
    rows = []
    for d in datasets:
        if d.csi is None or not d.csi.is_complex() or d.name not in freqs_hz:
            continue
        rows += [{"dataset": d.name, **r} for r in fit_band_delay(d.csi.numpy(), freqs_hz[d.name])]
    return rows


def generated_windows(root: str | Path, limit: int = 256) -> list[BenchData]:
    """The complex view of a generated CSI dataset's test split (first ``limit`` samples): the first
    half of the time steps as context, the second half as target, like the real CSI views."""
    return [generated_csi_view(root, "test", limit)]


@contextmanager
def guard_constant(name: str, value: float) -> Iterator[None]:
    """``MaskedAutoencoder.predict`` with the module constant ``name`` (``REVERSION_MARGIN``,
    ``GUARD_SHARPNESS``, ``PRIOR_SHRINK``) set to ``value`` inside the block."""
    old = getattr(mae_module, name)
    setattr(mae_module, name, float(value))
    try:
        yield
    finally:
        setattr(mae_module, name, old)


def reversion_margin(value: float) -> Iterator[None]:
    """``MaskedAutoencoder.predict`` with ``REVERSION_MARGIN = value`` inside the block."""
    return guard_constant("REVERSION_MARGIN", value)


def _generated_ratios(model: Any, root: str | Path, limit: int = 256) -> dict[str, float]:
    csi = load_csi(root, "test", task="guard-study")["csi"][:limit]
    out = {}
    for kind, dim in (("time", 1), ("frequency", 3)):
        size = csi.shape[dim]
        hidden = size // 2
        tgt, ctx = csi.narrow(dim, size - hidden, hidden), csi.narrow(dim, 0, size - hidden)
        pred = model.predict(csi, "temporal" if kind == "time" else "frequency", 0.5).reconstruction
        hold = ctx.narrow(dim, size - hidden - 1, 1).expand_as(tgt)
        mean = ctx.mean(dim, keepdim=True).expand_as(tgt)
        best = min(_score(hold, tgt), _score(mean, tgt))
        out[f"{Path(root).name} {kind}"] = _score(pred.narrow(dim, size - hidden, hidden), tgt) / best
    return out


def margin_rows(model: Any, margins: Sequence[float], real: Sequence[BenchData],
                generated: Sequence[str | Path] = (), constant: str = "REVERSION_MARGIN") -> list[dict[str, Any]]:
    """One row per margin (or value of another guard ``constant``): the MAE's ratio to the best
    classical on every real CSI view and on the hidden half (time, frequency) of each generated
    dataset's test split, and the geometric mean of the generated ones per axis."""
    rows = []
    for m in margins:
        row: dict[str, Any] = {"margin" if constant == "REVERSION_MARGIN" else constant.lower(): m}
        with guard_constant(constant, m):
            for d in real:
                pred = mae_windows(model, d)
                pred = pred if d.target.is_complex() else pred.real
                best = min(_score(d.context[:, -1:].expand_as(d.target), d.target),
                           _score(d.context.mean(dim=1, keepdim=True).expand_as(d.target), d.target))
                row[f"{d.name} {d.view}"] = _score(pred, d.target) / best
            gen: dict[str, float] = {}
            for root in generated:
                gen.update(_generated_ratios(model, root))
            row.update(gen)
            for axis in ("time", "frequency"):
                vals = [v for k, v in gen.items() if k.endswith(f" {axis}")]
                if vals:
                    row[f"generated {axis}, geometric mean"] = math.exp(sum(math.log(v) for v in vals) / len(vals))
        rows.append(row)
    return rows


def correction_rules(taus: Sequence[float] = (0.01, 0.05, 0.2)) -> dict[str, Any]:
    """Correction scale ``[B]`` from the backtest sums ``(r.r, c.r, c.c)`` (module doc), by name."""
    def fit(rr: Tensor, cr: Tensor, cc: Tensor) -> Tensor:
        return fitted_correction_scale(cr, cc)

    def share(rr: Tensor, cr: Tensor, cc: Tensor) -> Tensor:  # share of r.r the fitted correction removes
        return cr.clamp_min(0) ** 2 / (cc * rr).clamp_min(1e-30)

    rules: dict[str, Any] = {"least squares (shipped)": fit, "off": lambda rr, cr, cc: torch.zeros_like(cr)}
    for t in taus:
        rules[f"gate {t:g}"] = lambda rr, cr, cc, t=t: torch.where(share(rr, cr, cc) > t, fit(rr, cr, cc), torch.zeros_like(cr))
        rules[f"shrink {t:g}"] = lambda rr, cr, cc, t=t: fit(rr, cr, cc) * (1 - t / share(rr, cr, cc).clamp_min(1e-30)).clamp_min(0)
    return rules


@torch.no_grad()
def correction_rule_rows(model: Any, sets: Sequence[tuple[str, Tensor, str]],
                         rules: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per set ``(label, csi [N, T, A, K] complex, "temporal" | "frequency")`` (predict the
    last half): each rule's per-window NMSE over the least-squares rule's (< 1: better than it), all
    with the prior at full scale (``PRIOR_SHRINK`` off)."""
    rules = rules or correction_rules()
    rows = []
    for label, csi, kind in sets:
        csi = csi.to(torch.complex64)
        weights, bt, dim = model.backtest_fit(csi, kind, 0.5)
        mask, front = model.prediction_mask(csi.shape, kind, 0.5)
        out = model(csi, mask, front, weights, torch.ones(len(csi)), dim)  # the correction at scale 1
        m = out.scored
        r, c = (out.target - out.prior) * m, out.correction * m
        rr, cr, cc, power = ((a * b).sum(dim=(1, 2)).double() for a, b in ((r, r), (c, r), (c, c), (out.target * m, out.target)))
        score = {}
        for name, rule in rules.items():
            s = rule(bt.rr, bt.cr, bt.cc)
            score[name] = float(((rr - 2 * s * cr + s * s * cc) / power.clamp_min(1e-30)).mean())
        base = score["least squares (shipped)"]
        rows.append({"set": label, **{k: v / base for k, v in score.items() if k != "least squares (shipped)"}})
    return rows


@torch.no_grad()
def forced_prior_rows(model: Any, datasets: Sequence[BenchData]) -> list[dict[str, Any]]:
    """One row per CSI view (time or frequency): the MAE's ratio to the best of persistence and the
    mean with the guard (``predict``), and with the prior forced to each of hold, mean,
    reversion and ar (``GUARD_ESTIMATES``), its correction off (``+ 0``) and at full scale (``+ c``), the prior unshrunk. A zero
    correction reproduces each classical estimate, so ``hold + 0`` is 1 where persistence is best."""
    rows = []
    for d in datasets:
        if d.csi is None:
            continue
        full = d.csi.to(torch.complex64)
        freq = d.axis == "frequency"
        dim, kind = (3, "frequency") if freq else (1, "temporal")
        L, H = d.context.shape[1], d.target.shape[1]
        ratio = H / full.shape[dim]
        mask, front = model.prediction_mask(full.shape, kind, ratio)
        layout = (lambda x: x.narrow(3, L, H).permute(0, 3, 1, 2)) if freq else (lambda x: x.narrow(1, L, H))  # noqa: E731

        def score(pred: Tensor) -> float:
            pred = layout(pred)
            return _score(pred if d.target.is_complex() else pred.real, d.target)

        best = min(_score(d.context[:, -1:].expand_as(d.target), d.target),
                   _score(d.context.mean(dim=1, keepdim=True).expand_as(d.target), d.target))
        row: dict[str, Any] = {"dataset": d.name, "view": d.view,
                               "guard": score(model.predict(full, kind, ratio).reconstruction) / best}
        n, ones = len(full), torch.ones(len(full))
        names = GUARD_ESTIMATES  # every estimate the guard weighs, in forward's order
        for i, name in enumerate(names):
            weights = torch.zeros(n, len(names))
            weights[:, i] = 1.0
            for tag, scale in (("+ 0", 0.0), ("+ c", 1.0)):
                out = model(full, mask, front, weights, scale * ones, dim, ones)
                row[f"{name} {tag}"] = score(model.reconstruct(out)) / best
        rows.append(row)
    return rows


@torch.no_grad()
def white_gate_rows(model: Any, datasets: Sequence[BenchData], limit: float = 0.5) -> list[dict[str, Any]]:
    """An MAE's temporal prediction of each CSI window against the same with the causal model's
    ``white_limit`` rule: the context mean where the window's channels (real and imaginary parts
    as series), pooled, look white at ``limit`` (``wfm.models.evidence.looks_white``). Ratios
    to the best of persistence and the mean on the same windows."""
    rows = []
    for d in datasets:
        pred = mae_windows(model, d)
        if d.view != "csi complex":
            pred = pred.abs()
        series = _to_series(d.context)
        per = len(series) // len(d.context)
        white = looks_white(series, limit, torch.arange(len(series)) // per).view(len(d.context), per)[:, 0]
        mean = d.context.mean(dim=1, keepdim=True).expand_as(d.target).to(pred.dtype)
        last = d.context[:, -1:].expand_as(d.target).to(pred.dtype)
        e, e_mean = window_nmse(pred, d.target), window_nmse(mean, d.target)
        best = min(float(e_mean.mean()), float(window_nmse(last, d.target).mean()))
        rows.append({"set": f"{d.name} ({d.view})", "white windows": float(white.double().mean()),
                     "MAE": float(e.mean()) / best, f"MAE, mean where white (limit {limit:g})":
                     float(torch.where(white, e_mean, e).mean()) / best})
    return rows


@torch.no_grad()
def white_limit_rows(model: Any, sets: Sequence[tuple[str, Tensor, bool]], windows: Sequence[tuple[int, int]],
                     limits: Sequence[float | None] = (None, 0.5), batch: int = 64,
                     dips: bool = False) -> list[dict[str, Any]]:
    """An MAE's ``predict(window, "temporal", n / T)`` of the last ``n`` of the first ``T`` packets of
    every window of each set (``(name, csi [N, T', A, K] complex, real-valued)``; sets shorter than
    ``T`` are skipped), with ``model.white_limit`` at each of ``limits`` (``None``: off). Ratios to
    the best of persistence and the mean on the same windows, and the share of white windows at
    the last limit given. Real-valued sets (amplitudes) are scored on the real part. ``dips``: each
    limit also with ``white_dips`` (its column ``white_limit L, dips``). The model's own limit and
    ``white_dips`` are restored afterwards."""
    saved, saved_dips, rows = model.white_limit, model.white_dips, []
    runs = [(limit, False) for limit in limits] + ([(limit, True) for limit in limits if limit is not None] if dips else [])
    try:
        for name, csi, real in sets:
            for t, n in windows:
                if t > csi.shape[1]:
                    continue
                full = csi[:, :t].to(torch.complex64)
                seen, target = full[:, :t - n], full[:, t - n:]
                part = (lambda x: x.real) if real else (lambda x: x)  # noqa: E731

                def score(pred: Tensor) -> float:
                    return float(window_nmse(part(pred), part(target)).mean())  # noqa: B023
                best = min(score(seen[:, -1:].expand_as(target)), score(seen.mean(dim=1, keepdim=True).expand_as(target)))
                row: dict[str, Any] = {"set": name, "window": f"{t - n} -> {n}"}
                for limit, dip in runs:
                    model.white_limit, model.white_dips = limit, dip
                    pred = torch.cat([model.predict(full[a:a + batch], "temporal", n / t).reconstruction[:, t - n:]
                                      for a in range(0, len(full), batch)])
                    row["off" if limit is None else f"white_limit {limit:g}" + (", dips" if dip else "")] = score(pred) / best
                white = model.white_windows(full, "temporal", n / t)
                row["white windows"] = float(white.double().mean()) if white is not None else 0.0
                rows.append(row)
    finally:
        model.white_limit, model.white_dips = saved, saved_dips
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of rows with the same keys (floats to 3 decimals)."""
    keys = list(rows[0])
    cell = (lambda v: f"{v:.3f}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python pretrain/guard_study.py [--model FOLDER] [--margin M ...] [--data DIR ...]``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=str(default_datasets_dir()), help="real datasets folder")
    ap.add_argument("--model", help="an MAE folder: also score its guard at each --margin")
    ap.add_argument("--margin", type=float, action="append", help="REVERSION_MARGIN values (default 1, 1.5, 2.5, 1e9)")
    ap.add_argument("--sharpness", type=float, action="append",
                    help="with --model: GUARD_SHARPNESS values to score instead of the margins")
    ap.add_argument("--prior-shrink", type=int, action="append", choices=(0, 1),
                    help="with --model: only score PRIOR_SHRINK off (0) and on (1), on the real CSI in time and in "
                         "frequency and on --data's generated folders")
    ap.add_argument("--data", action="append", default=[],
                    help="generated CSI dataset folders (their rules and noise rows; with --model, its margins)")
    ap.add_argument("--correction-data", action="append", default=[],
                    help="with --model: only score correction-scale rules (correction_rule_rows) on these generated "
                         "folders' last --held-out share of samples (the first 16 steps; time and frequency) and the real CSI")
    ap.add_argument("--white-gate", action="append", default=[],
                    help="with --model: only score the causal model's white_limit rule (0.5) on the MAE's temporal "
                         "prediction (white_gate_rows), on these generated folders' last --held-out share of samples "
                         "(the first 16 steps: 8 -> 8) and the real CSI")
    ap.add_argument("--white-limit", action="append", default=None, nargs="*", metavar="DIR",
                    help="with --model: only score its white_limit off and at --limit (white_limit_rows) on the real "
                         "CSI in time and on these generated folders (the first 256 test samples), at each --window")
    ap.add_argument("--limit", type=float, action="append", help="with --white-limit: the limits to score (default 0.5)")
    ap.add_argument("--dips", action="store_true", help="with --white-limit: each limit also with white_dips")
    ap.add_argument("--window", action="append", help="with --white-limit: CONTEXT:AHEAD packets "
                    "(default 8:8, 8:4, 16:16, 24:8; the real windows hop by AHEAD)")
    ap.add_argument("--forced-prior", action="store_true",
                    help="with --model: only score forced_prior_rows on the real CSI (time and frequency) and --data's "
                         "generated folders (the first 256 test samples, half of the steps or of the subcarriers hidden)")
    ap.add_argument("--calibration", action="store_true",
                    help="with --model: only score the guard calibrated on the first half of each real CSI view's "
                         "windows against the zero-shot backtest on the second half (wfm.tasks.guard_calibration)")
    ap.add_argument("--held-out", type=float, default=0.02, help="share of samples no pretraining config trained on")
    args = ap.parse_args(argv)

    def real_csi() -> list[BenchData]:  # every real CSI view, in time and in frequency
        return [d for d in load_real_datasets(args.datasets, RealBenchConfig(csi_frequency=True, csi_hop=STUDY_CSI_HOP)) if d.is_csi]

    if args.calibration:
        if not args.model:
            ap.error("--calibration needs --model")
        from wfm.tasks.guard_calibration import split_rows

        print(markdown(split_rows(from_pretrained(args.model), real_csi())))
        return
    if args.white_limit is not None:
        if not args.model:
            ap.error("--white-limit needs --model")
        windows = []
        for w in args.window or ["8:8", "8:4", "16:16", "24:8"]:
            seen, ahead = (int(v) for v in w.split(":"))
            windows.append((seen + ahead, ahead))
        model, rows = from_pretrained(args.model), []
        for t, n in windows:
            cfg = RealBenchConfig(csi_window=t, csi_predict=n, csi_hop=n)
            real = [d for d in load_real_datasets(args.datasets, cfg) if d.is_csi]
            rows += white_limit_rows(model, [(f"{d.name} ({d.view})", d.csi, d.view != "csi complex") for d in real],
                                     [(t, n)], [None, *(args.limit or [0.5])], dips=args.dips)
        for root in (r for group in args.white_limit for r in group):
            csi = generated_csi_view(root, "test", 256).csi
            rows += white_limit_rows(model, [(Path(root).name, csi, False)], windows, [None, *(args.limit or [0.5])],
                                     dips=args.dips)
        print(markdown(rows))
        return
    if args.forced_prior:
        if not args.model:
            ap.error("--forced-prior needs --model")
        sets = real_csi()
        for root in args.data:
            view = generated_csi_view(root, "test", 256)
            sets += [view, generated_frequency_view(view)]
        print(markdown(forced_prior_rows(from_pretrained(args.model), sets)))
        return
    if args.white_gate:
        if not args.model:
            ap.error("--white-gate needs --model")
        sets = [d for d in load_real_datasets(args.datasets, STUDY_WINDOWS) if d.is_csi]
        for root in args.white_gate:
            csi = load_csi(root, "test", task="guard-study", val_fraction=args.held_out, test_fraction=args.held_out)["csi"][:256, :16]
            sets.append(BenchData(Path(root).name, "csi complex", csi[:, :8], csi[:, 8:16], 0.0, "", str(root), csi=csi))
        print(markdown(white_gate_rows(from_pretrained(args.model), sets)))
        return
    if args.prior_shrink:
        if not args.model:
            ap.error("--prior-shrink needs --model")
        print(markdown(margin_rows(from_pretrained(args.model), args.prior_shrink, real_csi(), args.data, "PRIOR_SHRINK")))
        return
    if args.correction_data:
        if not args.model:
            ap.error("--correction-data needs --model")
        sets = [(f"{d.name} (time)", d.csi, "temporal") for d in load_real_datasets(args.datasets, STUDY_WINDOWS) if d.view == "csi complex"]
        for root in args.correction_data:
            csi = load_csi(root, "test", task="guard-study", val_fraction=args.held_out, test_fraction=args.held_out)["csi"][:256, :16]
            sets += [(f"{Path(root).name} (time)", csi, "temporal"), (f"{Path(root).name} (frequency)", csi, "frequency")]
        print(markdown(correction_rule_rows(from_pretrained(args.model), sets)))
        return
    real = load_real_datasets(args.datasets, STUDY_WINDOWS)
    generated = [w for root in args.data for w in generated_windows(root)]
    print(markdown(classical_rule_rows(real + generated)))
    print()
    print(markdown(noise_rows([d for d in real if d.is_csi] + generated)))
    print()
    print(markdown(band_rows([d for d in real if d.view == "csi complex"] + generated)))
    print()
    complex_views = [d for d in real if d.view == "csi complex"] + generated
    freqs = {d.name: np.arange(d.csi.shape[-1]) * REAL_SPACING_HZ[d.name] for d in complex_views if d.name in REAL_SPACING_HZ}
    freqs.update({Path(root).name: subcarrier_freqs_hz(ShardedDataset(root)) for root in args.data})
    print(markdown(filter_rows(complex_views, freqs)))
    if args.model:
        csi = [d for d in real if d.is_csi]
        print()
        if args.sharpness:
            print(markdown(margin_rows(from_pretrained(args.model), args.sharpness, csi, args.data, "GUARD_SHARPNESS")))
        else:
            print(markdown(margin_rows(from_pretrained(args.model), args.margin or [1.0, 1.5, 2.5, 1e9], csi, args.data)))
