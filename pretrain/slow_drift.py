"""Short contexts of slowly drifting CSI: where the white-noise rules pick the mean and persistence wins.

    PYTHONPATH=. python pretrain/slow_drift.py --doppler 5 --snr 20 --seeds 0 1 2 --out slow_drift.json

A 1-ms link whose paths rotate slowly (a few paths, Doppler shifts up to ``--doppler`` Hz, complex
Gaussian noise ``--snr`` dB below the channel's power; ``--antennas`` x ``--subcarriers``, the
paths' delays spread over the band) is cut into windows that end on ``--horizon`` packets to
predict. Scored, per-window NMSE (a window's every channel together):

- the MAE (``--mae``) on windows of ``context + horizon`` packets, ``predict(window, "temporal",
  horizon / (context + horizon))``, at every ``--mae-contexts`` length;
- the causal model (``--causal``) forecasting every channel's real and imaginary part, a window's
  channels pooled (``group=``), at every ``--contexts`` length;
- persistence, the context mean and linear prediction (``ar``, per window, its channels pooled).

Over 8-32 packets such a channel moves by less than its noise, so the white-noise tests of both
models read it as noise around a level and give the mean, while the drift carries the horizon away
from it (pretrain/studies.md, "Slowly drifting CSI over short contexts"). Prints one row per model,
context and seed, and the mean over seeds with its spread.

``--rules line backtest`` also scores two candidate rules for the causal model's white groups (the
last value instead of the mean where the rule says so; the rest of the forecast as released), here
and, with ``--real DIR``, on the CSI views in time of ``wfm benchmark real`` (8 packets -> 8):

- ``line``: a straight line plus white noise fitted to each row (slope and noise variance by least
  squares, the squared slope less its noise bias), pooled over the group; the last value where its
  expected squared error over the horizon is below the mean's (:func:`line_says_last`);
- ``backtest``: the mean of the values before each origin in the context's second half against the
  last of them, on the values after it, pooled over the group; the last value where the mean's
  extra error passes the checks' one-sided t-test over the origins (:func:`backtest_says_last`).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import torch

import wfm
from wfm.models.evidence import exceeds_noise, looks_white
from wfm.models.groups import pool_rows
from wfm.models.linear_prediction import ar_forecast
from wfm.tasks.metrics import window_nmse


def drifting_csi(packets: int, antennas: int, subcarriers: int, doppler_hz: float, snr_db: float,
                 interval_s: float, seed: int, paths: int = 6) -> torch.Tensor:
    """Complex ``[packets, antennas, subcarriers]``: ``paths`` paths with random gains, delays within
    the band's resolution, angles of arrival and Doppler shifts ``doppler_hz * cos(angle)``, plus noise
    ``snr_db`` below the mean channel power."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    gain = torch.complex(rnd(paths), rnd(paths)) / math.sqrt(2 * paths)
    delay = torch.rand(paths, generator=g, dtype=torch.float64) * 4 / subcarriers  # in cycles per subcarrier
    angle = torch.rand(paths, generator=g, dtype=torch.float64) * 2 * math.pi
    shift = doppler_hz * torch.cos(torch.rand(paths, generator=g, dtype=torch.float64) * 2 * math.pi)
    t = torch.arange(packets, dtype=torch.float64)[:, None] * interval_s
    a = torch.arange(antennas, dtype=torch.float64)[:, None]
    k = torch.arange(subcarriers, dtype=torch.float64)[:, None]
    phase_t = torch.polar(torch.ones(packets, paths, dtype=torch.float64), 2 * math.pi * t * shift)        # [P, paths]
    phase_a = torch.polar(torch.ones(antennas, paths, dtype=torch.float64), math.pi * a * torch.sin(angle))  # [A, paths]
    phase_k = torch.polar(torch.ones(subcarriers, paths, dtype=torch.float64), -2 * math.pi * k * delay)     # [K, paths]
    h = torch.einsum("p,tp,ap,kp->tak", gain, phase_t, phase_a, phase_k)
    noise = torch.complex(rnd(*h.shape), rnd(*h.shape)) / math.sqrt(2)
    h = h + noise * math.sqrt(h.abs().square().mean() * 10 ** (-snr_db / 10))
    return h.to(torch.complex64)


def line_says_last(context: torch.Tensor, horizon: int, group: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: under a line plus white noise fitted per row and pooled over ``group``, the last
    value's expected squared error over ``horizon`` steps is below the context mean's: mean
    ``s^2 (1 + 1 / L) + b^2 mean_j ((L - 1) / 2 + j)^2``, last ``2 s^2 + b^2 mean_j j^2``."""
    x = context.double()
    length = x.shape[1]
    t = torch.arange(length, dtype=torch.float64) - (length - 1) / 2.0
    sxx = float((t * t).sum())
    dev = x - x.mean(dim=1, keepdim=True)
    slope = (dev * t).sum(dim=1) / sxx
    s2 = ((dev * dev).sum(dim=1) - slope * slope * sxx).clamp_min(0.0) / (length - 2)
    s2, b2 = pool_rows(s2, group), pool_rows(slope * slope - s2 / sxx, group).clamp_min(0.0)
    j = torch.arange(1, horizon + 1, dtype=torch.float64)
    from_mean, from_last = float(((length - 1) / 2.0 + j).square().mean()), float(j.square().mean())
    return 2.0 * s2 + b2 * from_last < s2 * (1.0 + 1.0 / length) + b2 * from_mean


def backtest_says_last(context: torch.Tensor, horizon: int, group: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: from each origin ``o`` of the context's second half, the pooled squared error of
    the mean of the values before ``o`` on the values after it, less the last value's; the last
    value where those differences are positive beyond noise (``exceeds_noise``)."""
    x = context.double()
    length = x.shape[1]
    total, total_sq, count = (torch.zeros(len(x), dtype=torch.float64) for _ in range(3))
    for o in range(max(2, length // 2), length):
        past, future = x[:, :o], x[:, o:o + horizon]
        d = pool_rows(((future - past.mean(1, keepdim=True)) ** 2 - (future - past[:, -1:]) ** 2).sum(1), group)
        total, total_sq, count = total + d, total_sq + d * d, count + 1
    return exceeds_noise(total, total_sq, count)


RULES = {"line": line_says_last, "backtest": backtest_says_last}


def with_rule(causal, series: torch.Tensor, group: torch.Tensor, horizon: int, point: torch.Tensor,
              rule: str) -> torch.Tensor:
    """The released forecast ``point`` with the last value instead of the mean for the groups the
    white rule gave the mean (no check fits, ``looks_white``) and ``rule`` says drift."""
    if len(causal.check_cuts(series.shape[1], horizon)) >= 2 or causal.white_limit is None:
        return point
    white = looks_white(series, causal.white_limit, group, causal.white_dips)
    last = white & RULES[rule](series, horizon, group)
    return torch.where(last[:, None], series[:, -1:].to(point.dtype), point)


def as_series(w: torch.Tensor) -> torch.Tensor:
    """``[N, L, A, K]`` complex -> ``[N * A * K * 2, L]`` real series (real and imaginary parts)."""
    return torch.view_as_real(w).permute(0, 2, 3, 4, 1).reshape(-1, w.shape[1])


def score(h: torch.Tensor, context: int, horizon: int, stride: int, mae, causal,
          rules: tuple[str, ...] = ()) -> dict[str, float]:
    """Mean per-window NMSE of each model and baseline on the windows of ``h`` ending ``horizon`` ahead."""
    span = context + horizon
    starts = range(0, h.shape[0] - span + 1, stride)
    w = torch.stack([h[s:s + span] for s in starts])  # [N, span, A, K]
    ctx, tgt = w[:, :context], w[:, context:]
    out = {"persistence": window_nmse(ctx[:, -1:].expand_as(tgt), tgt),
           "mean": window_nmse(ctx.mean(1, keepdim=True).expand_as(tgt), tgt)}
    n, per = w.shape[0], 2 * w.shape[2] * w.shape[3]
    series = as_series(ctx)
    # linear prediction per window, its channels pooled (the benchmarks' reference column)
    ar = ar_forecast(series.reshape(n, per, context).double(), horizon).float()  # [N, per, H]
    out["ar"] = window_nmse(torch.complex(*ar.reshape(n, *w.shape[2:], 2, horizon).movedim(-1, 1).unbind(-1)), tgt)
    if mae is not None:
        rec = mae.predict(w, "temporal", horizon / span).reconstruction[:, context:]
        out["mae"] = window_nmse(rec, tgt)
    if causal is not None:
        group = torch.arange(n).repeat_interleave(per)
        released = causal.forecast(series, 1e-3, horizon, group=group)  # [N * per, H]
        for name, fc in [("causal", released)] + [(f"causal {r}", with_rule(causal, series, group, horizon, released, r))
                                                  for r in rules]:
            fc = fc.reshape(n, *w.shape[2:], 2, horizon).movedim(-1, 1)
            out[name] = window_nmse(torch.complex(*fc.unbind(-1)), tgt)
    return {k: float(v.mean()) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mae", default="checkpoints/mae-tiny-catalog-cpu")
    ap.add_argument("--causal", default="checkpoints/causal-tiny-catalog-cpu")
    ap.add_argument("--doppler", type=float, default=5.0, help="largest Doppler shift, Hz")
    ap.add_argument("--snr", type=float, default=20.0, help="channel power over noise, dB")
    ap.add_argument("--antennas", type=int, default=3)
    ap.add_argument("--subcarriers", type=int, default=30)
    ap.add_argument("--packets", type=int, default=1200)
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--contexts", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--mae-contexts", type=int, nargs="*", default=[8, 16])
    ap.add_argument("--stride", type=int, default=16)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rules", nargs="*", default=[], choices=sorted(RULES), help="candidate rules for white groups")
    ap.add_argument("--real", default=None, help="wfm benchmark real's datasets folder: the rules on its CSI in time")
    ap.add_argument("--out", default=None, help="JSON file of every row")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    mae = wfm.from_pretrained(args.mae).eval() if args.mae else None
    causal = wfm.from_pretrained(args.causal).eval() if args.causal else None
    rows = []
    for seed in args.seeds:
        h = drifting_csi(args.packets, args.antennas, args.subcarriers, args.doppler, args.snr, 1e-3, seed)
        for context in sorted(set(args.contexts) | set(args.mae_contexts)):
            r = score(h, context, args.horizon, args.stride, mae if context in args.mae_contexts else None,
                      causal if context in args.contexts else None, tuple(args.rules))
            rows.append({"seed": seed, "context": context, **r})
            print(json.dumps(rows[-1]))
    print(f"\nDoppler {args.doppler:g} Hz, SNR {args.snr:g} dB, 1 ms, {args.antennas} x {args.subcarriers}, "
          f"-> {args.horizon}: ratio to persistence, mean over seeds (spread = sample std)")
    print("| context | model | NMSE dB | / persistence | / mean | / ar |")
    print("|---|---|---|---|---|---|")
    for context in sorted({r["context"] for r in rows}):
        sub = [r for r in rows if r["context"] == context]
        for model in ("mae", "causal", *(f"causal {r}" for r in args.rules), "ar", "mean"):
            if model not in sub[0]:
                continue
            def stat(den: str) -> str:
                v = [r[model] / r[den] for r in sub]
                return f"{statistics.mean(v):.3f} ± {statistics.stdev(v) if len(v) > 1 else 0:.3f}"
            db = 10 * math.log10(statistics.mean(r[model] for r in sub))
            print(f"| {context} | {model} | {db:.2f} | {stat('persistence')} | {stat('mean')} | {stat('ar')} |")
    real = real_rows(causal, args.real, tuple(args.rules)) if args.real and causal is not None else []
    if real:
        print("\nreal CSI in time (wfm benchmark real's windows): the causal model's ratio to the best classical")
        print("| dataset | view | " + " | ".join(["causal", *(f"causal {r}" for r in args.rules)]) + " |")
        print("|---|---|" + "---|" * (1 + len(args.rules)))
        for r in real:
            print(f"| {r['dataset']} | {r['view']} | " + " | ".join(f"{v:.4f}" for v in r["ratios"]) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps({"synthetic": rows, "real": real}, indent=1))


def real_rows(causal, folder: str, rules: tuple[str, ...]) -> list[dict]:
    """The causal model's ratio to the best of persistence and the mean on the real CSI views in
    time, as released and with each rule."""
    from wfm.tasks.real_data import RealBenchConfig, _from_series, _to_series, load_real_datasets
    from wfm.tasks.real_datasets import STUDY_CSI_HOP

    out = []
    for d in load_real_datasets(folder, RealBenchConfig(csi_hop=STUDY_CSI_HOP)):
        if d.axis != "time" or not d.is_csi:
            continue
        tgt = d.target
        best = min(float(window_nmse(d.context[:, -1:].expand_as(tgt), tgt).mean()),
                   float(window_nmse(d.context.mean(1, keepdim=True).expand_as(tgt), tgt).mean()))
        series = _to_series(d.context)
        group = torch.arange(d.windows).repeat_interleave(len(series) // d.windows)
        released = causal.forecast(series, d.interval, tgt.shape[1], group=group)
        fcs = [released] + [with_rule(causal, series, group, tgt.shape[1], released, r) for r in rules]
        out.append({"dataset": d.name, "view": d.view,
                    "ratios": [float(window_nmse(_from_series(f, tgt), tgt).mean()) / best for f in fcs]})
    return out


if __name__ == "__main__":
    main()
