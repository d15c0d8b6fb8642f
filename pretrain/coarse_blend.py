"""Score what the causal model does with values older than ``max_context`` (its coarse tokens).

    PYTHONPATH=. python pretrain/coarse_blend.py --model checkpoints/causal-tiny-catalog-cpu \
        --heldout /tmp/box-cox-heldout --out coarse_blend.json

Past its last ``max_context`` values (256 for the release) a context reaches the transformer as
coarse tokens. Each rule below is scored from one set of checks per window, as ``forecast``
runs them (``check_origins``, ``box_cox`` and every other option of the model kept):

- ``coarse``: the network with its coarse tokens (``coarse_blend: false``);
- ``without``: the network without them, the last ``max_context`` values as tokens (the priors
  and the normalisation still see every value);
- ``blend``: the mean of the two, each checked against the classical combination on its own
  (``CausalForecaster(coarse_blend=True)``);
- ``prove coarse`` / ``prove without``: one reading by default, the other only where the checks
  show it erring less beyond doubt (the check's own paired t-test);
- ``argmin``: the reading with the lower mean error on the checks.

On:

- held-out generated traffic whose day of context is longer than ``max_context`` (1, 2 and
  5 minutes, and two of them idle at night), from the pretraining recipes with a seed no
  pretraining used, as ``pretrain/box_cox.py`` draws them (``--heldout``, generated where
  missing); ratio of per-window NMSE to the best classical baseline;
- the real series of ``pretrain/context_sweep.py`` (Intel 5300 and Nexmon CSI, each series
  alone) at ``max_context`` and twice that: per-window NMSE in dB, for information (the rule is
  chosen on the generated series).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

import wfm

sys.path.insert(0, str(Path(__file__).parent))  # run as a script or loaded by the tests
import box_cox as study  # noqa: E402  (held-out traffic windows and baselines)
from wfm.data.shards import ShardedDataset  # noqa: E402
from wfm.models import box_cox as boxcox  # noqa: E402
from wfm.models.evidence import exceeds_noise  # noqa: E402

RULES = ("coarse", "without", "blend", "prove coarse", "prove without", "argmin")
#: (recipe, context, horizon, interval s[, "idle"]): the held-out cells whose context has coarse tokens.
TRAFFIC = [c for c in study.TRAFFIC if c[1] > 256]
REAL_SETS = ("intel-complex", "intel-amplitude", "nexmon-complex", "nexmon-amplitude")


@torch.no_grad()
def rule_forecasts(model, context: Tensor, interval: float, horizon: int) -> tuple[dict[str, Tensor], dict[str, float]]:
    """Every rule's forecast ``[B, H]`` of each row of ``context`` alone, and the share of rows
    where each reading was proven better. ``box_cox`` as ``forecast`` applies it."""
    b, length = context.shape
    lam = boxcox.guerrero_lambda(context, None) if model.box_cox else None
    moved = lam is not None and bool((lam < 1).any())
    z = boxcox.box_cox(context, lam) if moved else context
    iv = torch.full((b,), float(interval))
    var = z.double().var(dim=1, unbiased=False).clamp_min(1e-12)
    sums = {k: [torch.zeros(b, dtype=torch.float64) for _ in range(2)] for k in ("coarse", "without", "gain")}
    n = 0
    for cut in model.check_cuts(length, horizon):
        past, truth = z[:, :cut], z[:, cut:cut + horizon].double()
        (net, _), (cls, _) = model._rollout(past, iv, horizon, fallback=True)
        (alone, _), = model._rollout(past, iv, horizon, coarse=False)
        e_n, e_s, e_c = ((p.double() - truth) ** 2 for p in (net, alone, cls))
        for key, d in (("coarse", e_n - e_c), ("without", e_s - e_c), ("gain", e_s - e_n)):
            d = d.mean(dim=1) / var
            sums[key][0] += d
            sums[key][1] += d * d
        n += 1
    count = torch.full((b,), float(n), dtype=torch.float64)
    (net, _), (cls, _) = model._rollout(z, iv, horizon, fallback=True)
    (alone, _), = model._rollout(z, iv, horizon, coarse=False)
    f_c = torch.where(~exceeds_noise(*sums["coarse"], count)[:, None], net, cls)
    f_s = torch.where(~exceeds_noise(*sums["without"], count)[:, None], alone, cls)
    coarse_proven = exceeds_noise(*sums["gain"], count)
    without_proven = exceeds_noise(-sums["gain"][0], sums["gain"][1], count)
    lower = sums["gain"][0] > 0
    out = {"coarse": f_c, "without": f_s, "blend": 0.5 * (f_c + f_s),
           "prove coarse": torch.where(coarse_proven[:, None], f_c, f_s),
           "prove without": torch.where(without_proven[:, None], f_s, f_c),
           "argmin": torch.where(lower[:, None], f_c, f_s)}
    if moved:
        out = {k: boxcox.inv_box_cox(v, lam) for k, v in out.items()}
    shares = {"coarse proven": float(coarse_proven.double().mean()),
              "without proven": float(without_proven.double().mean())}
    return out, shares


def window_nmse(pred: Tensor, target: Tensor) -> Tensor:
    """``[W]`` per-window NMSE of real or complex windows ``[W, H]``."""
    return ((pred - target).abs() ** 2).sum(dim=1).double() / (target.abs() ** 2).sum(dim=1).double().clamp_min(1e-30)


def traffic_cells(model, heldout: Path, cells: list[tuple], per_series: int) -> list[dict]:
    """Each held-out cell's ratio of every rule's per-window NMSE to the best classical baseline."""
    rows = []
    for rec, L, H, itv, *idle in cells:
        x = ShardedDataset(heldout / rec).read_range(0, len(ShardedDataset(heldout / rec)), ["traffic"])["traffic"]
        x = x.reshape(len(x), -1)
        if idle:  # a cell idle at night, as pretrain/box_cox.py makes it
            x = np.maximum(x - np.quantile(x, 0.2, axis=1, keepdims=True), 0.0)
        ctx, tgt = study.series_windows(x, L, H, per_series)
        keep = tgt.pow(2).sum(dim=1) > 0
        ctx, tgt = ctx[keep], tgt[keep]
        best = study.best_classical(ctx, tgt, torch.arange(len(ctx)), itv)
        got, shares = rule_forecasts(model, ctx, itv, H)
        rows.append({"cell": f"{rec}{', idle nights' if idle else ''} (L={L}, H={H})", "windows": len(ctx),
                     "ratio": {k: float(window_nmse(v, tgt).mean()) / best for k, v in got.items()}, **shares})
    return rows


def real_cells(model, data_dir: Path, contexts: list[int], max_series: int = 48, max_windows: int = 8) -> list[dict]:
    """The context sweep's real CSI series (each alone): every rule's per-window NMSE in dB."""
    from wfm.tasks import context_sweep as cs

    sets = cs.series_sets(cs.import_real(data_dir), max_series)
    rows = []
    for name in REAL_SETS:
        if name not in sets:
            continue
        s = sets[name]
        x, interval, horizon = s["series"], float(s["interval"]), int(s["horizon"])
        idx, starts = cs.windows(x, horizon, max(contexts), max_windows)
        true = torch.from_numpy(np.stack([x[i, t:t + horizon] for i, t in zip(idx, starts)]))
        for c in contexts:
            ctx = np.stack([x[i, t - c:t] for i, t in zip(idx, starts)])
            parts = [ctx.real, ctx.imag] if np.iscomplexobj(ctx) else [ctx]
            got, shares = rule_forecasts(model, torch.from_numpy(np.concatenate(parts)).float(), interval, horizon)
            if len(parts) == 2:
                got = {k: torch.complex(v[:len(ctx)].double(), v[len(ctx):].double()) for k, v in got.items()}
            rows.append({"cell": f"{name} (L={c}, H={horizon})", "windows": len(ctx),
                         "db": {k: 10 * math.log10(float(window_nmse(v, true).mean())) for k, v in got.items()},
                         **shares})
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    study.add_heldout_arguments(ap, TRAFFIC)
    ap.add_argument("--real-data", type=Path, default=None, help="where the real captures are imported "
                    "(default $WFM_DATA/real, as pretrain/context_sweep.py; '' skips them)")
    ap.add_argument("--real-contexts", type=int, nargs="+", default=[256, 512])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = wfm.from_pretrained(args.model).eval()
    cells = study.traffic_specs(args.traffic)
    study.ensure_heldout(args.heldout, args.seed, [c[0] for c in cells], [], {"traffic": args.series, "traj": 0})
    traffic = traffic_cells(model, args.heldout, cells, args.per_series)
    real_dir = args.real_data if args.real_data is not None else \
        Path(os.environ.get("WFM_DATA", Path.home() / ".cache" / "wfm" / "data")) / "real"
    real = real_cells(model, real_dir, args.real_contexts) if str(real_dir) not in ("", ".") else []
    print("| held-out cell | windows | " + " | ".join(RULES) + " |\n|---|---|" + "---|" * len(RULES))
    for r in traffic:
        print(f"| {r['cell']} | {r['windows']} | " + " | ".join(f"{r['ratio'][k]:.4f}" for k in RULES) + " |")
    summary = {k: study.geo(traffic, k) for k in RULES} if traffic else {}
    if traffic:
        print("| geometric mean | | " + " | ".join(f"{summary[k]:.4f}" for k in RULES) + " |")
    if real:
        print("\n| real series (dB) | windows | " + " | ".join(RULES) + " |\n|---|---|" + "---|" * len(RULES))
        for r in real:
            print(f"| {r['cell']} | {r['windows']} | " + " | ".join(f"{r['db'][k]:.3f}" for k in RULES) + " |")
    result = {"model": args.model, "seed": args.seed, "traffic": traffic, "real": real, "geometric_mean": summary}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
