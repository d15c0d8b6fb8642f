"""The masked NMSE of channel prediction and the persistence baseline on hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from wfm.tasks.channel_prediction import persistence, score_prediction
from wfm.tasks.metrics import window_nmse


def test_masked_nmse_by_hand():
    target = torch.tensor([[[[1 + 1j, 2 + 0j]]]], dtype=torch.complex64)  # [1, 1, 1, 2]
    pred = torch.tensor([[[[0 + 1j, 0 + 0j]]]], dtype=torch.complex64)
    mask = torch.tensor([[[[True, False]]]])
    assert window_nmse(pred, target, mask).item() == pytest.approx(1 / 2)  # |1|^2 / |1+1j|^2
    mask = torch.ones_like(mask)
    assert window_nmse(pred, target, mask).item() == pytest.approx((1 + 4) / (2 + 4))
    with pytest.raises(ValueError, match="shapes differ"):
        window_nmse(pred, target[..., :1], mask)


def test_score_prediction_reports_the_masked_nmse_in_db():
    # Two samples whose hidden last subcarrier has NMSE 0.05 and 0.15: the mean, 0.1, is -10 dB.
    target = torch.ones(2, 1, 1, 2, dtype=torch.complex64)
    pred = target.clone()
    pred[0, ..., 1] += 0.05 ** 0.5
    pred[1, ..., 1] += 0.15 ** 0.5
    pred[:, ..., 0] = 7  # visible: never scored
    mask = torch.zeros(2, 1, 1, 2, dtype=torch.bool)
    mask[..., 1] = True
    s = score_prediction(pred, target, mask, "frequency")
    assert s["nmse_db"] == s["window_nmse_db"] == pytest.approx(-10.0)
    assert s["window_nmse"] == pytest.approx(0.1) and s["per_step_nmse_db"] == [pytest.approx(-10.0)]
    assert s["samples"] == 2 and s["hidden_steps"] == 1


def test_persistence_carries_the_last_visible_value():
    csi = torch.arange(2 * 4 * 1 * 3, dtype=torch.float32).reshape(2, 4, 1, 3).to(torch.complex64)
    tmask = torch.zeros(2, 4, 1, 3, dtype=torch.bool)
    tmask[:, 2:] = True
    p = persistence(csi, tmask, "time")
    assert torch.equal(p[:, :2], csi[:, :2]) and torch.equal(p[:, 3], csi[:, 1])
    fmask = torch.zeros_like(tmask)
    fmask[..., 1:] = True
    p = persistence(csi, fmask, "frequency")
    assert torch.equal(p[..., 2], csi[..., 0])
    with pytest.raises(ValueError, match="visible head and a hidden tail"):
        persistence(csi, torch.ones_like(tmask), "time")
