"""How far below the best classical baseline can any forecaster get on the real benchmark's windows?

Issue 14 asks for each foundation model at <= 0.8x the best classical NMSE on half the real
datasets. Some of those datasets leave no such room for any forecaster that sees only the past;
this script measures how much room each one leaves, on the windows of ``wfm benchmark real``
(in time, and the CSI views in frequency, whose series run along subcarriers), with per-window
NMSE as there:

- ``lag1 median``: the median over windows of the context's scaled lag-1 autocorrelation
  (``wfm.models.evidence.whiteness_score``: 0 for white noise around a
  level, 1 for a straight line), a window's channels pooled;
- ``white windows``: the share of windows whose context is white noise around its mean by the
  causal model's own test (``wfm.models.evidence.looks_white``, a window's channels pooled,
  limit 0.5). For white noise around a fixed level the mean of ``L`` values errs by
  ``sigma^2 (1 + 1 / L)`` per value and a forecaster that knew the level exactly by ``sigma^2``:
  no forecaster beats the mean there by more than ``L / (L + 1)`` (the ``white bound`` column,
  0.889 at 8 packets).
- ``zero``: predicting 0 (the floor of a shrunk mean on zero-mean series: sanitised complex CSI
  whose phase is random per packet).
- ``oracle blend``: per window, the best of ``a * last + (1 - a) * mean`` for ``a`` in 0, 0.1 ..
  1 chosen in hindsight (the most any rule that chooses between persistence and the mean from
  the context could win);
- ``oracle level``: each channel's forecast is the mean of its own targets (a constant that knows
  the future's level; what is left is the variation within the horizon).

Ratios are to the best classical baseline (persistence or the context mean) of the same windows.
Usage: ``PYTHONPATH=. python finetune/headroom.py [--datasets DIR] [--out headroom.json]`` (a few
seconds on one thread).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from wfm.models.evidence import looks_white, whiteness_score
from wfm.tasks.metrics import window_nmse
from wfm.tasks.real_data import RealBenchConfig, _to_series, default_datasets_dir, load_real_datasets
from wfm.tasks.real_datasets import STUDY_CSI_HOP

WHITE_LIMIT = 0.5  # the released causal model's white_limit


def headroom_row(context: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """The headroom measures of one dataset's windows ``context [N, L, *C]``, ``target [N, H, *C]``."""
    n, length = context.shape[:2]
    last = context[:, -1:].expand_as(target)
    mean = context.mean(1, keepdim=True).expand_as(target)
    per_last, per_mean = window_nmse(last, target), window_nmse(mean, target)
    best_name, best = min((("persistence", per_last.mean()), ("mean", per_mean.mean())), key=lambda kv: float(kv[1]))
    blend = torch.stack([window_nmse(a * last + (1 - a) * mean, target) for a in torch.linspace(0, 1, 11)]).amin(0)
    series = _to_series(context)
    group = torch.arange(n).repeat_interleave(len(series) // n)
    white = looks_white(series, WHITE_LIMIT, group).view(n, -1)[:, 0]
    lag1 = whiteness_score(series, group)[0].view(n, -1)[:, 0]
    return {
        "windows": n, "context": length, "best_classical": best_name, "best_nmse": float(best),
        "lag1_median": float(lag1.median()), "white_windows": float(white.double().mean()),
        "white_bound": length / (length + 1),
        "zero": float(window_nmse(torch.zeros_like(target), target).mean() / best),
        "oracle_blend": float(blend.mean() / best),
        "oracle_level": float(window_nmse(target.mean(1, keepdim=True).expand_as(target), target).mean() / best),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=None, help="the real datasets folder (default: ../shared/datasets)")
    ap.add_argument("--out", default="headroom.json")
    args = ap.parse_args(argv)
    root = Path(args.datasets) if args.datasets else default_datasets_dir()
    if not root.is_dir():
        print(f"no real datasets at {root}: nothing to measure")
        return
    rows = []
    for d in load_real_datasets(root, RealBenchConfig(csi_frequency=True, csi_hop=STUDY_CSI_HOP)):
        rows.append({"dataset": d.name, "view": d.view, **headroom_row(d.context, d.target)})
    Path(args.out).write_text(json.dumps(rows, indent=1))
    cols = ("windows", "best_classical", "lag1_median", "white_windows", "white_bound", "zero", "oracle_blend",
            "oracle_level")
    print("| dataset | view | " + " | ".join(c.replace("_", " ") for c in cols) + " |")
    print("|---" * (len(cols) + 2) + "|")
    for r in rows:
        # the bound holds for white windows only: shown where most of a dataset's windows are
        cells = ["-" if c == "white_bound" and r["white_windows"] < 0.5 else
                 f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        print(f"| {r['dataset']} | {r['view']} | " + " | ".join(cells) + " |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
