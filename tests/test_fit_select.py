"""fit_and_select: the one fit-and-keep-the-best-validation loop (baselines and beam predictors)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wfm.training.fit_select import fit_and_select


class Counter(nn.Module):
    """One weight that each training step sets to the step number (counted from 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.modes: list[bool] = []

    def step(self, step: int) -> torch.Tensor:
        self.modes.append(self.training)
        with torch.no_grad():
            self.w.fill_(step + 1)
        return self.w * 2


@pytest.mark.parametrize("maximize, kept", [(False, 4), (True, 6)])
def test_keeps_the_weights_of_the_best_check(maximize, kept):
    m = Counter()
    # Checked after steps 2, 4, 6 and 7 (the last): scores 5, 1, 9, 5.
    scores = {2: 5.0, 4: 1.0, 6: 9.0, 7: 5.0}

    def val() -> float:
        m.eval()  # a score may switch to eval mode; the next step is in train mode again
        return scores[int(m.w)]

    seen: list[tuple[int, float]] = []
    sel = fit_and_select(m, m.step, 7, val, eval_every=2, maximize=maximize, score_name="val_x",
                         progress=lambda s, loss: seen.append((s, float(loss))))
    assert float(m.w) == kept and not m.training and all(m.modes)
    assert sel == m.selection == {"kept": f"best val, step {kept}/7", "step": kept, "checks": 4,
                                  "val_x": scores[kept]}
    assert seen == [(s, 2.0 * s) for s in range(1, 8)]


def test_first_of_tied_scores_and_no_validation():
    m = Counter()
    fit_and_select(m, m.step, 6, lambda: 1.0, eval_every=2)
    assert float(m.w) == 2 and m.selection["kept"] == "best val, step 2/6" and m.selection["checks"] == 3
    m = Counter()
    sel = fit_and_select(m, m.step, 6, None)
    assert float(m.w) == 6 and sel == {"kept": "last, step 6 (no val split)", "step": 6, "checks": 0}
    # A score that never improves on infinity (NaN) keeps the last weights, as no validation does.
    m = Counter()
    assert fit_and_select(m, m.step, 3, lambda: float("nan"), eval_every=1)["kept"] == "last, step 3 (no val split)"
