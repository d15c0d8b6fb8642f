"""Score the causal model's ``check_ses`` on held-out *generated* series of every kind.

    PYTHONPATH=. python pretrain/check_ses.py --model checkpoints/causal-tiny-catalog-cpu \
        --heldout /tmp/check-trend-heldout --seeds 777 778 779 --out check_ses.json

A level that wanders under noise (a random walk plus white noise: the local-level model) is
forecast best by simple exponential smoothing, and the release was 4-9 % behind it there
(``pretrain/studies.md``, "Simple exponential smoothing as a candidate of the check").
``check_ses`` tests it on the checks against the forecast so far.

Scored off and with each share (``half``, ``fitted``, as ``check_last``) on the held-out cells of
``pretrain/check_trend.py`` (``box_cox.py``'s traffic at 1-60 minutes, trajectories and CSI
amplitude, and the trajectories at 16 -> 4 and 32 -> 8), series drawn with each of ``--seeds``
(no pretraining used them). Prints each cell's ratio of per-window NMSE to the best of
persistence, the context mean and seasonal naive (< 1 beats them) and, per seed, the geometric
mean over the cells. The real data is scored by ``wfm benchmark real --model`` on a copy of the
model with the option in its ``config.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))  # run as a script or loaded by the tests
from box_cox import best_classical
from check_trend import checked_model, heldout_cells, heldout_parser, score_cells
from evidence_power import window_nmse

#: ``(check_ses, ses_share)`` of each variant.
VARIANTS = {"off": (False, "half"), "half": (True, "half"), "fitted": (True, "fitted")}


@torch.no_grad()
def ratios(model, ctx: torch.Tensor, tgt: torch.Tensor, group: torch.Tensor, interval: float,
           variants: tuple[str, ...] = tuple(VARIANTS)) -> dict[str, float]:
    """Each variant's per-window NMSE over the best classical's (the model's options restored)."""
    best = best_classical(ctx, tgt, group, interval)
    kept, out = (model.check_ses, model.ses_share), {}
    try:
        for v in variants:
            model.check_ses, model.ses_share = VARIANTS[v]
            out[v] = window_nmse(model.forecast(ctx, interval, tgt.shape[1], group=group), tgt, group) / best
    finally:
        model.check_ses, model.ses_share = kept
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = heldout_parser(__doc__)
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = ap.parse_args(argv)
    model = checked_model(ap, args, "check_ses")
    variants = tuple(dict.fromkeys(["off", *args.variants]))
    result: dict = {"model": args.model, "seeds": {}}
    for seed in args.seeds:
        cells = heldout_cells(args.heldout / str(seed), seed, args.data, args.series, args.per_series)
        result["seeds"][str(seed)] = score_cells(f"seed {seed}", cells, lambda *cell: ratios(model, *cell, variants))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
