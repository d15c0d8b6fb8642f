"""Would the causal model's check do better with more candidates, or on short contexts? (measured, not shipped)

    PYTHONPATH=. python pretrain/check_candidates.py --model checkpoints/causal-tiny-catalog-cpu --real
    PYTHONPATH=. python pretrain/check_candidates.py --model checkpoints/causal-tiny-catalog-cpu --data $WFM_DATA

The shipped check (``CausalForecaster(check_origins=)``) backtests the network against its
classical combination from the latest origins a horizon apart that keep half the context and a
patch: an 8-packet CSI window predicting 8 has no such origin, so the network is never checked
there. This script scores variants of the rule, as wrappers around one model (nothing in the
model changes):

- ``shipped``: the model's own ``forecast``;
- ``short: fallback``: where fewer than two regular checks fit, one check from the middle of the
  context (``ceil(L / 2)`` values) over the values left (at most the horizon);
- ``short: fallback, mean``: the same, and the context mean is a second candidate;
- ``regular: fallback, mean``: the regular checks only, the mean a second candidate;
- ``short: mean``: the short check, the mean the only candidate;
- ``below a patch: ...``: the short check only where the context is shorter than one patch (the
  network then sees one half-empty token); otherwise the shipped check.

A candidate replaces the network where it beat it beyond noise on the checks (the shipped
one-sided paired t-test, pooled over the window's channels); among several, the one with the
lower checked error. ``--real`` scores the windows of ``wfm benchmark real``; ``--data`` the
held-out samples of the generated CSI datasets under it (the validation split, every channel of
a sample one window, contexts 4 and 8, horizon 8, as ``pretrain/evidence_power.py`` draws them).
Prints ratios of per-window NMSE to the best classical baseline (< 1 beats it).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import Tensor

import wfm
from wfm.models.causal import CausalForecaster
from wfm.models.evidence import exceeds_noise
from wfm.models.groups import pool_rows


class CheckedSelection:
    """``forecast`` of ``model`` with a check over ``candidates`` (``"fallback"``, ``"mean"``), see the module doc."""

    def __init__(self, model: CausalForecaster, candidates: list[str], short: bool = True,
                 below_patch: bool = False) -> None:
        self.model, self.candidates, self.short, self.below_patch = model, candidates, short, below_patch

    def cuts(self, length: int, horizon: int) -> list[tuple[int, int]]:
        regular = self.model.check_cuts(length, horizon)
        short = self.short and (length < self.model.patch_len or not self.below_patch)
        if len(regular) >= 2 or not short:
            return [(c, horizon) for c in regular]
        cut = -(-length // 2)
        return [(cut, min(horizon, length - cut))] if 1 <= cut < length else []

    def _forecasts(self, past: Tensor, interval: Tensor, horizon: int, group: Tensor) -> dict[str, Tensor]:
        ctx, itv = self.model._check(past, interval, horizon)
        (net, _), (fallback, _) = self.model._rollout(ctx, itv, horizon, group, fallback=True)
        return {"net": net, "fallback": fallback, "mean": past.mean(dim=1, keepdim=True).expand(-1, horizon),
                "last": past[:, -1:].expand(-1, horizon)}

    @torch.no_grad()
    def forecast(self, context: Tensor, interval: Tensor | float, horizon: int, group: Tensor | None = None) -> Tensor:
        b, length = context.shape
        group = torch.arange(b) if group is None else group
        final = self._forecasts(context, interval, horizon, group)
        var = context.double().var(dim=1, unbiased=False).clamp_min(1e-12)
        cuts = self.cuts(length, horizon)
        sums = {k: torch.zeros(3, b, dtype=torch.float64) for k in self.candidates}  # sum d, sum d^2, sum error
        for cut, h in cuts:
            got = self._forecasts(context[:, :cut], interval, h, group)
            truth = context[:, cut:cut + h].double()
            err = {k: ((v.double() - truth) ** 2).mean(dim=1) / var for k, v in got.items()}
            for k in self.candidates:
                d = err["net"] - err[k]  # > 0: the candidate erred less
                sums[k] += torch.stack([d, d * d, err[k]])
        out = final["net"].clone()
        if not cuts:
            return out
        count = pool_rows(torch.full((b,), float(len(cuts)), dtype=torch.float64), group)
        best = torch.full((b,), math.inf, dtype=torch.float64)
        for k in self.candidates:
            s1, s2, total = (pool_rows(x, group) for x in sums[k])
            take = exceeds_noise(s1, s2, count) & (total < best)
            out[take] = final[k][take]
            best = torch.where(take, total, best)
        return out


def variants(model: CausalForecaster) -> dict[str, object]:
    return {"shipped": model,
            "short: fallback": CheckedSelection(model, ["fallback"]),
            "short: fallback, mean": CheckedSelection(model, ["fallback", "mean"]),
            "regular: fallback, mean": CheckedSelection(model, ["fallback", "mean"], short=False),
            "short: mean": CheckedSelection(model, ["mean"]),
            "below a patch: fallback, mean": CheckedSelection(model, ["fallback", "mean"], below_patch=True),
            "below a patch: fallback, mean, last": CheckedSelection(model, ["fallback", "mean", "last"],
                                                                    below_patch=True)}


def real_rows(model: CausalForecaster) -> list[dict]:
    from wfm.tasks.metrics import window_nmse
    from wfm.tasks.real_data import (RealBenchConfig, classical_rows, default_datasets_dir, forecast_windows,
                                     load_real_datasets)
    from wfm.tasks.real_datasets import STUDY_CSI_HOP

    cfg, rows = RealBenchConfig(csi_hop=STUDY_CSI_HOP), []
    for d in load_real_datasets(default_datasets_dir(), cfg):
        best = min(r["window_nmse"] for r in classical_rows(d, cfg) if r.get("kind") == "classical" and "window_nmse" in r)
        row = {"dataset": f"{d.name} ({d.view})", "group": "real"}
        for name, v in variants(model).items():
            row[name] = float(window_nmse(forecast_windows(v, d, cfg.batch_series), d.target).mean()) / best
        rows.append(row)
    return rows


def generated_rows(model: CausalForecaster, root: Path, contexts: tuple[int, ...] = (4, 8), horizon: int = 8,
                   windows: int = 16) -> list[dict]:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from evidence_power import best_classical, has_csi, held_out_pool, held_out_windows, window_nmse

    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and has_csi(p)):
        pool = held_out_pool(folder)
        for length in contexts:
            got = held_out_windows(pool, length, horizon, windows, 0)
            if got is None:
                continue
            x, group, interval = got
            ctx, tgt = x[:, :length], x[:, length:]
            best = best_classical(ctx, tgt, group)
            row = {"dataset": f"{folder.name} (L={length})", "group": f"generated, L={length}"}
            for name, v in variants(model).items():
                row[name] = window_nmse(v.forecast(ctx, interval, horizon, group=group), tgt, group) / best
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--real", action="store_true", help="score the windows of wfm benchmark real")
    ap.add_argument("--data", type=Path, help="folder of generated datasets: score their held-out CSI samples")
    ap.add_argument("--contexts", type=int, nargs="+", default=[4, 8], help="context lengths of the generated windows")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = wfm.from_pretrained(args.model).eval()
    rows = (real_rows(model) if args.real else []) + (generated_rows(model, args.data, tuple(args.contexts)) if args.data else [])
    names = list(variants(model))
    print("| dataset | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for r in rows:
        print(f"| {r['dataset']} | " + " | ".join(f"{r[n]:.3f}" for n in names) + " |")
    for tag in sorted({r["group"] for r in rows}):
        sub = [r for r in rows if r["group"] == tag]
        geo = {n: math.exp(sum(math.log(r[n]) for r in sub) / len(sub)) for n in names}
        print(f"{tag} ({len(sub)} rows): geometric mean " + ", ".join(f"{n} {g:.3f}" for n, g in geo.items())
              + "; at or below 1: " + ", ".join(f"{n} {sum(r[n] <= 1 for r in sub)}" for n in names))
    return rows


if __name__ == "__main__":
    main()
