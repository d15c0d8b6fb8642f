"""``drift_ar`` on held-out generated CSI windows, slowly turning links and the real captures.

    WFM_DATA=DIR PYTHONPATH=. python pretrain/drift_ar.py --contexts 8 16 --out drift_ar.json

``CausalForecaster(drift_ar=True)`` forecasts a window whose channels drift together beyond doubt
(:func:`wfm.models.evidence.drifts_beyond_noise`) by linear prediction pooled over them, where the
context is too short for two checks of the horizon (below 32 packets for 8 ahead). The script
scores the causal model with the option off, on with the release's test before session 73
(``drift_ar``) and on with ``drift_shape``'s (same weights), a window's channels pooled
(``group=``), 8 packets ahead:

- held-out generated CSI: the validation split of every CSI dataset under ``--data`` (the
  model's pretraining sets and the never-trained ones; ``pretrain/evidence_power.py``'s draw,
  ``--windows`` samples per set and context), ratio of per-window NMSE to the better of
  persistence and the context mean, geometric mean over the sets;
- slowly turning 1-ms links (``pretrain/slow_drift.py``'s generator, 3 x 30, ``--dopplers`` at
  ``--snrs``, ``--seeds``), ratio to persistence, mean over the seeds with its spread;
- the real captures in time (``wfm benchmark real``'s loaders, windows of ``context + 8`` packets,
  hop 8), ratio to the better of persistence and the mean: for information, since the rule is
  chosen on the generated windows.

Linear prediction pooled over every window (``ar``, no test) is printed beside them: the test is
what keeps it from the still links. With ``--mae PATH`` the MAE's ``drift_ar`` (the same test on
the visible packets, the guard's linear prediction) is scored likewise, in the same three arms, on windows of
``context + 8`` packets (``predict(window, "temporal", 8 / (context + 8))``; the generated sets'
test split, ``--mae-windows`` samples).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from pathlib import Path

import torch

import wfm
from wfm.models.linear_prediction import ar_forecast_rows
from wfm.tasks.csi_data import load_csi
from wfm.tasks.metrics import window_nmse
from wfm.tasks.real_data import RealBenchConfig, _from_series, _to_series, default_datasets_dir, load_real_datasets

sys.path.insert(0, str(Path(__file__).parent))  # run as a script or loaded by the tests
from evidence_power import best_classical, has_csi, held_out_pool, held_out_windows  # noqa: E402
from evidence_power import window_nmse as grouped_nmse  # noqa: E402
from slow_drift import as_series, drifting_csi  # noqa: E402

ARMS = ("off", "drift_ar", "drift_shape", "ar")
MAE_ARMS = ("mae off", "mae drift_ar", "mae drift_shape")


def arms(model, series: torch.Tensor, interval: float, horizon: int, group: torch.Tensor) -> dict[str, torch.Tensor]:
    """The forecasts ``[B, horizon]`` of ``series`` ``[B, L]``: the model with ``drift_ar`` off, on,
    and on with ``drift_shape``, and linear prediction pooled over each group (none without a model)."""
    out: dict[str, torch.Tensor] = {}
    if model is None:
        return out
    for arm in ARMS[:3]:
        model.drift_ar, model.drift_shape = arm != "off", arm == "drift_shape"
        out[arm] = model.forecast(series, interval, horizon, group=group)
    out["ar"] = ar_forecast_rows(series, horizon, group).to(series.dtype)
    return out


def mae_arms(mae, windows: torch.Tensor, context: int) -> dict[str, torch.Tensor]:
    """The MAE's predictions of the packets after the first ``context`` of ``windows`` (complex
    ``[N, T, A, K]``), with ``drift_ar`` off, on, and on with ``drift_shape``."""
    out = {}
    ratio = (windows.shape[1] - context) / windows.shape[1]
    for arm in MAE_ARMS:
        mae.drift_ar, mae.drift_shape = arm != "mae off", arm == "mae drift_shape"
        out[arm] = mae.predict(windows, "temporal", ratio).reconstruction[:, context:]
    return out


def best_of_two(context: torch.Tensor, target: torch.Tensor) -> float:
    """Per-window NMSE of the better of persistence and the context mean on windows ``[N, T, ...]``."""
    return min(float(window_nmse(context[:, -1:].expand_as(target), target).mean()),
               float(window_nmse(context.mean(1, keepdim=True).expand_as(target), target).mean()))


def geo(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="checkpoints/causal-tiny-catalog-cpu", help="the causal model ('' skips it)")
    ap.add_argument("--data", default=os.environ.get("WFM_DATA", "data/generated"), help="folder of the generated sets")
    ap.add_argument("--real", default=str(default_datasets_dir()), help="real datasets folder ('' to skip)")
    ap.add_argument("--datasets", nargs="*", default=None,
                    help="generated sets under --data (default: every CSI set there; none: skip them)")
    ap.add_argument("--contexts", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--windows", type=int, default=32, help="held-out samples per generated set and context")
    ap.add_argument("--draw", type=int, default=0,
                    help="draw of the generated windows (0: the held-out samples as before; another: other "
                         "samples of the same splits)")
    ap.add_argument("--dopplers", type=float, nargs="*", default=[1.0, 5.0, 20.0], help="turning links: Hz")
    ap.add_argument("--snrs", type=float, nargs="+", default=[20.0], help="turning links: channel over noise, dB")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="turning links: one link per seed")
    ap.add_argument("--mae", default="", help="an MAE folder: its drift_ar scored too ('' skips)")
    ap.add_argument("--mae-windows", type=int, default=64, help="test samples per generated set for the MAE")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = wfm.from_pretrained(args.model).eval() if args.model else None
    mae = wfm.from_pretrained(args.mae).eval() if args.mae else None
    arms_all = (ARMS if model is not None else ()) + (MAE_ARMS if mae is not None else ())
    H = args.horizon
    result: dict[str, list] = {"generated": [], "turning": [], "real": []}
    root = Path(args.data)
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and has_csi(p)) if root.is_dir() else []
    names = names if args.datasets is None else [n for n in names if n in args.datasets]
    with torch.no_grad():
        for name in names:
            pool = held_out_pool(root / name)
            for L in args.contexts:
                got = held_out_windows(pool, L, H, args.windows, args.draw)
                if got is None:  # the set's samples are shorter than L + H
                    continue
                x, group, interval = got
                ctx, tgt = x[:, :L], x[:, L:]
                best = best_classical(ctx, tgt, group)
                ratio = {k: grouped_nmse(f, tgt, group) / best for k, f in arms(model, ctx, interval, H, group).items()}
                if mae is not None:
                    csi = load_csi(root / name, "test", task="drift-ar")["csi"]
                    if args.draw:  # other test samples than the first ones
                        csi = csi[torch.randperm(len(csi), generator=torch.Generator().manual_seed(args.draw))]
                    csi = csi[:args.mae_windows, :L + H]
                    tgt_c = csi[:, L:]
                    best_c = best_of_two(csi[:, :L], tgt_c)
                    ratio.update({k: float(window_nmse(f, tgt_c).mean()) / best_c for k, f in mae_arms(mae, csi, L).items()})
                result["generated"].append({"dataset": name, "context": L, "ratio": ratio})
                print(json.dumps(result["generated"][-1]), flush=True)
        for snr in args.snrs:
            for hz in args.dopplers:
                for seed in args.seeds:
                    h = drifting_csi(1200, 3, 30, hz, snr, 1e-3, seed)
                    for L in args.contexts:
                        w = torch.stack([h[s:s + L + H] for s in range(0, h.shape[0] - L - H + 1, 16)])
                        ctx, tgt = w[:, :L], w[:, L:]
                        series = as_series(ctx)
                        per = len(series) // len(w)
                        group = torch.arange(len(w)).repeat_interleave(per)
                        persistence = float(window_nmse(ctx[:, -1:].expand_as(tgt), tgt).mean())
                        ratio = {}
                        for k, f in arms(model, series, 1e-3, H, group).items():
                            f = f.reshape(len(w), *w.shape[2:], 2, H).movedim(-1, 1)
                            ratio[k] = float(window_nmse(torch.complex(*f.unbind(-1)), tgt).mean()) / persistence
                        if mae is not None:
                            ratio.update({k: float(window_nmse(f, tgt).mean()) / persistence
                                          for k, f in mae_arms(mae, w, L).items()})
                        result["turning"].append({"doppler": hz, "snr": snr, "seed": seed, "context": L, "ratio": ratio})
                        print(json.dumps(result["turning"][-1]), flush=True)
        for L in args.contexts if args.real else []:
            cfg = RealBenchConfig(csi_window=L + H, csi_predict=H, csi_hop=H, csi_frequency=False)
            for d in load_real_datasets(args.real, cfg):
                if not d.is_csi or d.axis != "time":
                    continue
                series = _to_series(d.context)
                group = torch.arange(d.windows).repeat_interleave(len(series) // d.windows)
                tgt = d.target
                best = best_of_two(d.context, tgt)
                ratio = {k: float(window_nmse(_from_series(f, tgt), tgt).mean()) / best
                         for k, f in arms(model, series, float(d.interval), H, group).items()}
                if mae is not None:
                    ratio.update({k: float(window_nmse(f, tgt).mean()) / best
                                  for k, f in mae_arms(mae, torch.cat([d.context, tgt], 1), L).items()})
                result["real"].append({"dataset": f"{d.name} {d.view}", "context": L, "ratio": ratio})
                print(json.dumps(result["real"][-1]), flush=True)
    print(f"\nheld-out generated CSI ({len(names)} sets): geometric mean of the ratios to the best classical / "
          "sets at or below 1")
    print("| context | " + " | ".join(arms_all) + " |\n|---|" + "---|" * len(arms_all))
    for L in args.contexts:
        cells = [c["ratio"] for c in result["generated"] if c["context"] == L]
        if cells:
            print(f"| {L} | " + " | ".join(f"{geo([c[a] for c in cells]):.4f} / {sum(c[a] <= 1 for c in cells)} of "
                                            f"{len(cells)}" for a in arms_all) + " |")
    if result["turning"]:
        print("\nslowly turning 1-ms links: ratio to persistence, mean ± spread over the seeds")
        print("| Doppler | SNR | context | " + " | ".join(arms_all) + " |\n|---|---|---|" + "---|" * len(arms_all))
        for snr in args.snrs:
            for hz in args.dopplers:
                for L in args.contexts:
                    rows = [t["ratio"] for t in result["turning"] if (t["doppler"], t["snr"], t["context"]) == (hz, snr, L)]
                    cell = [statistics.mean(r[a] for r in rows) for a in arms_all]
                    spread = [statistics.stdev([r[a] for r in rows]) if len(rows) > 1 else 0.0 for a in arms_all]
                    print(f"| {hz:g} Hz | {snr:g} dB | {L} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(cell, spread)) + " |")
    if result["real"]:
        print("\nreal captures in time: ratio to the best classical")
        print("| dataset | context | " + " | ".join(arms_all) + " |\n|---|---|" + "---|" * len(arms_all))
        for r in result["real"]:
            print(f"| {r['dataset']} | {r['context']} | " + " | ".join(f"{r['ratio'][a]:.4f}" for a in arms_all) + " |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
