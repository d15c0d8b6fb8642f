"""Score the causal model's ``check_last`` on held-out *generated* series of every kind and on real data.

    PYTHONPATH=. python pretrain/check_last.py --model checkpoints/causal-tiny-catalog-cpu \
        --heldout /tmp/check-trend-heldout --seeds 777 778 779 --out check_last.json

On the held-out highway azimuth of ``finetune/results.py`` (64 -> 16 at 0.05 s) two windows whose
bearing swung 170 degrees and then held were forecast swinging back by up to 80 degrees: the
network and the guard's classical combination (the context mean, the windowed means) both carry
the older level into the horizon, and persistence, which would have been right, was not among the
checks' candidates. ``check_last`` tests it there.

Scored off and with each share (``half``, ``fitted``, as ``check_trend``) and each margin
(``LAST_MARGIN``: 1, persistence wherever it led the checks; 2, only where the forecast so far
erred more than twice persistence's error on most checks) on the held-out cells of
``pretrain/check_trend.py`` (``box_cox.py``'s traffic at 1-60 minutes, trajectories and CSI
amplitude, and the trajectories at 16 -> 4 and 32 -> 8), series drawn with each of ``--seeds``
(no pretraining used them). Prints each cell's ratio of per-window NMSE to the best of
persistence, the context mean and seasonal naive (< 1 beats them) and, per seed, the geometric
mean over the cells. The real data is scored by ``wfm benchmark real --model`` on a copy of the
model with the option in its ``config.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))  # run as a script or loaded by the tests
from box_cox import best_classical
from check_trend import variants_main
from evidence_power import window_nmse

#: ``(check_last, last_share, LAST_MARGIN)`` of each variant.
VARIANTS = {"off": (False, "half", 2.0), "half": (True, "half", 1.0), "fitted": (True, "fitted", 1.0),
            "half, margin 2": (True, "half", 2.0), "fitted, margin 2": (True, "fitted", 2.0)}


@torch.no_grad()
def ratios(model, ctx: torch.Tensor, tgt: torch.Tensor, group: torch.Tensor, interval: float,
           variants: tuple[str, ...] = tuple(VARIANTS)) -> dict[str, float]:
    """Each variant's per-window NMSE over the best classical's (the model's options restored)."""
    from wfm.models import causal_forecast

    best = best_classical(ctx, tgt, group, interval)
    kept, margin, out = (model.check_last, model.last_share), causal_forecast.LAST_MARGIN, {}
    try:
        for v in variants:
            model.check_last, model.last_share, causal_forecast.LAST_MARGIN = VARIANTS[v]
            out[v] = window_nmse(model.forecast(ctx, interval, tgt.shape[1], group=group), tgt, group) / best
    finally:
        (model.check_last, model.last_share), causal_forecast.LAST_MARGIN = kept, margin
    return out


def main(argv: list[str] | None = None) -> dict:
    return variants_main(argv, __doc__, "check_last", VARIANTS, ratios)


if __name__ == "__main__":
    main()
