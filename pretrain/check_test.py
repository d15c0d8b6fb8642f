"""Score ``check_test``, the statistic of the causal model's ``check_origins``, on smooth series.

    PYTHONPATH=. python pretrain/check_test.py --model checkpoints/causal-tiny-catalog-cpu \
        --csi /tmp/long/wifi-long-intel --out check_test.json

``check_origins`` backtests the network against its classical combination on cuts from the end of
the context and falls back where the network lost beyond noise. ``check_test`` says what is tested
per check: the difference of the squared errors (``"difference"``), their log ratio
(``"log_ratio"``), or either (``"either"``). This script scores each on what the difference misses:

- sinusoids with a period of 20-500 values, a random phase, around a level of 0 or 5, with white
  noise of 0, 1 % or 5 % of their amplitude (``--series`` of each), 30 ahead at 2 minutes, each
  series a window of its own;
- ``--csi`` folders: generated CSI datasets with long windows (a recipe with ``time_steps: 1024``,
  such as ``wifi-intel-5p2-3x1-k30-t24`` at 1 ms with only that changed), every channel a series
  (real and imaginary parts, or the amplitude), a sample's channels one pooled window, 8 ahead.

Prints each cell's per-window NMSE as a ratio to the better of persistence and the context mean
(< 1 beats them) and, per variant, the geometric mean over the cells. The rest of the evidence for
a choice comes from the held-out generated series (``pretrain/box_cox.py``), textbook processes
(``pretrain/canonical.py``) and the real data (``wfm benchmark real``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

import wfm

sys.path.insert(0, str(Path(__file__).parent))  # run as a script or loaded by the tests
from evidence_power import best_classical, window_nmse
from wfm.data.series import dataset_interval
from wfm.data.shards import ShardedDataset
from wfm.models.evidence import CHECK_TESTS


def sinusoids(count: int, length: int, level: float, noise: float, seed: int) -> torch.Tensor:
    """``[count, length]`` float64: unit sinusoids of random period (20-500 values) and phase,
    around ``level``, plus white noise of standard deviation ``noise``."""
    g = torch.Generator().manual_seed(seed)
    period = 20.0 * (25.0 ** torch.rand(count, 1, generator=g, dtype=torch.float64))
    phase = 2 * math.pi * torch.rand(count, 1, generator=g, dtype=torch.float64)
    t = torch.arange(length, dtype=torch.float64)
    return level + torch.sin(2 * math.pi * t / period + phase) + noise * torch.randn(count, length, generator=g,
                                                                                          dtype=torch.float64)


def score(model, ctx: torch.Tensor, tgt: torch.Tensor, interval: float, group: torch.Tensor,
          tests: list[str]) -> dict[str, float]:
    """Each ``check_test``'s per-window NMSE over the best classical; the model's own is restored."""
    kept, best, out = model.check_test, best_classical(ctx, tgt, group), {}
    try:
        for test in tests:
            model.check_test = test
            out[test] = window_nmse(model.forecast(ctx, interval, tgt.shape[1], group=group), tgt, group) / best
    finally:
        model.check_test = kept
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="an exported causal model folder")
    ap.add_argument("--tests", nargs="+", default=list(CHECK_TESTS), choices=CHECK_TESTS)
    ap.add_argument("--contexts", type=int, nargs="+", default=[256, 1024, 2970])
    ap.add_argument("--series", type=int, default=16, help="sinusoids per level, noise and context")
    ap.add_argument("--csi", type=Path, nargs="*", default=[], help="generated CSI datasets with long windows")
    ap.add_argument("--csi-contexts", type=int, nargs="+", default=[64, 256, 1016])
    ap.add_argument("--csi-samples", type=int, default=8, help="samples (pooled windows) per CSI dataset")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = wfm.from_pretrained(args.model).eval()
    cells = []

    def report(name: str, ratios: dict[str, float]) -> None:
        cells.append({"cell": name, "ratio": ratios})
        print(f"{name:48s} " + "  ".join(f"{k} {v:.4g}" for k, v in ratios.items()), flush=True)

    horizon = 30
    for length in args.contexts:
        for level in (0.0, 5.0):
            for noise in (0.0, 0.01, 0.05):
                x = sinusoids(args.series, length + horizon, level, noise, seed=length + int(100 * noise) + int(level))
                ctx, tgt = x[:, :length].float(), x[:, length:].float()
                report(f"sinusoids, level {level:g}, noise {noise:g}, L={length}",
                       score(model, ctx, tgt, 120.0, torch.arange(args.series), args.tests))
    for folder in args.csi:
        ds = ShardedDataset(folder)
        n = min(args.csi_samples, len(ds))
        h = torch.from_numpy(ds.read_range(0, n, ["csi"])["csi"])  # [S, T, A, K]
        t = h.shape[1]
        for view in ("complex", "amplitude"):
            x = h.abs() if view == "amplitude" else torch.view_as_real(h)
            x = x.reshape(n, t, -1).movedim(1, -1).reshape(-1, t).float()
            group = torch.arange(n).repeat_interleave(x.shape[0] // n)
            for length in args.csi_contexts:
                if length + 8 > t:
                    continue
                report(f"{folder.name} {view}, L={length}",
                       score(model, x[:, t - 8 - length:t - 8], x[:, t - 8:], dataset_interval(ds), group, args.tests))
    summary = {test: math.exp(sum(math.log(c["ratio"][test]) for c in cells) / len(cells)) for test in args.tests}
    print("geometric mean over the cells: " + "  ".join(f"{k} {v:.4f}" for k, v in summary.items()))
    result = {"model": args.model, "cells": cells, "geometric_mean": summary}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
