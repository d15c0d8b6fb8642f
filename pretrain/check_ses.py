"""Score the causal model's ``check_ses`` on held-out *generated* series of every kind.

    PYTHONPATH=. python pretrain/check_ses.py --model checkpoints/causal-tiny-catalog-cpu \
        --heldout /tmp/check-trend-heldout --seeds 777 778 779 --out check_ses.json

A level that wanders under noise (a random walk plus white noise: the local-level model) is
forecast best by simple exponential smoothing, and the release was 2-8 % behind it there
(``pretrain/studies.md``, "Simple exponential smoothing as a candidate of the check").
``check_ses`` tests it on the checks against the forecast so far.

Scored off and with each share (``half``, ``fitted``) as ``pretrain/check_last.py`` scores its
variants: ratios to the best classical on ``pretrain/check_trend.py``'s held-out cells of each seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))  # run as a script or loaded by the tests
from box_cox import best_classical
from check_trend import variants_main
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
    return variants_main(argv, __doc__, "check_ses", VARIANTS, ratios)


if __name__ == "__main__":
    main()
