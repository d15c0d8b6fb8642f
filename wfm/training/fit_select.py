"""Fit and keep the best validation score: the one training loop of the small from-scratch models
(the forecasting baselines of ``wfm.models.baselines`` and the beam predictors of
``wfm.tasks.future_beam``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn


def fit_and_select(model: nn.Module, train_step: Callable[[int], Tensor], steps: int,
                   val_score: Callable[[], float] | None = None, eval_every: int = 50,
                   maximize: bool = False, score_name: str = "val_loss",
                   progress: Callable[[int, Any], None] | None = None,
                   check_start: bool = False) -> dict[str, Any]:
    """Run ``steps`` calls of ``train_step(step)`` (one optimisation step with ``model`` in train
    mode; returns the loss) and, with ``val_score``, keep the weights of the best score.

    ``val_score()`` scores the current weights (it may switch ``model`` to eval mode; the next
    step switches it back); it is checked every ``eval_every`` steps and after the last step, and
    the weights of the strictly best score (lowest, or highest with ``maximize``; the first on a
    tie) are loaded at the end. ``check_start`` also scores the weights before the first step
    (step 0), for a model whose start is already a result (a prior-anchored model starts as its
    classical baseline): they are kept unless a later check beats them. Without ``val_score`` the
    last weights stay.
    ``progress(step, loss)`` is called after every step (step counted from 1).

    Returns the selection record, also set as ``model.selection``: ``kept`` (what was kept, in
    words), ``step``, ``checks`` (number of validation checks) and, with a validation score, its
    best value under ``score_name``. ``model`` is left in eval mode.
    """
    best, state, best_step, checks = (-math.inf if maximize else math.inf), None, 0, 0
    if val_score is not None and check_start:
        best, state, checks = val_score(), copy.deepcopy(model.state_dict()), 1
    for step in range(steps):
        model.train()
        loss = train_step(step)
        if progress is not None:
            progress(step + 1, loss.detach())
        if val_score is not None and ((step + 1) % eval_every == 0 or step + 1 == steps):
            score = val_score()
            checks += 1
            if (score > best) if maximize else (score < best):
                best, state, best_step = score, copy.deepcopy(model.state_dict()), step + 1
    if state is not None:
        model.load_state_dict(state)
        selection = {"kept": f"best val, step {best_step}/{steps}" + (" (the start)" if best_step == 0 else ""),
                     "step": best_step, "checks": checks,
                     score_name: best}
    else:
        selection = {"kept": f"last, step {steps} (no val split)", "step": steps, "checks": 0}
    model.selection = selection
    model.eval()
    return selection
