"""Masked NMSE and the persistence baseline on hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from wfm.tasks.channel_prediction import masked_nmse, nmse_db, persistence


def test_masked_nmse_by_hand():
    target = torch.tensor([[[[1 + 1j, 2 + 0j]]]], dtype=torch.complex64)  # [1, 1, 1, 2]
    pred = torch.tensor([[[[0 + 1j, 0 + 0j]]]], dtype=torch.complex64)
    mask = torch.tensor([[[[True, False]]]])
    assert masked_nmse(pred, target, mask).item() == pytest.approx(1 / 2)  # |1|^2 / |1+1j|^2
    mask = torch.ones_like(mask)
    assert masked_nmse(pred, target, mask).item() == pytest.approx((1 + 4) / (2 + 4))
    assert nmse_db(torch.tensor([0.1, 0.1])) == pytest.approx(-10.0)
    with pytest.raises(ValueError, match="shapes differ"):
        masked_nmse(pred, target[..., :1], mask)


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
