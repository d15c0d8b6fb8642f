"""Task metrics on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch


from wfm.tasks import metrics as M

pytestmark = pytest.mark.usefixtures("one_thread")


def test_nmse_and_db_by_hand():
    target = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    pred = torch.tensor([[1.0, 1.0], [3.0, 4.0 + 5.0]])
    # sample 0: 1 / 5, sample 1: 25 / 25
    assert torch.allclose(M.nmse(pred, target), torch.tensor([0.2, 1.0], dtype=torch.float64))
    assert M.nmse_db(pred, target) == pytest.approx(10 * math.log10(0.6))
    assert M.to_db(0.01) == pytest.approx(-20.0)


def test_nmse_complex_uses_magnitude():
    target = torch.tensor([[1 + 1j, 0 + 0j]], dtype=torch.complex64)
    pred = torch.tensor([[1 + 0j, 0 + 1j]], dtype=torch.complex64)
    # error |(-1j)|^2 + |1j|^2 = 2 over |1+1j|^2 = 2
    assert float(M.nmse(pred, target)[0]) == pytest.approx(1.0)


def test_per_step_nmse_by_hand():
    target = torch.ones(2, 3, 2)  # [B, steps, elements]
    pred = target.clone()
    pred[:, 1] = 0.0  # step 1 entirely wrong: NMSE 1
    pred[0, 2, 0] = 2.0  # step 2, sample 0: error 1 over 2 -> 0.5; sample 1: 0 -> mean 0.25
    assert torch.allclose(M.per_step_nmse(pred, target, step_dim=1), torch.tensor([0.0, 1.0, 0.25], dtype=torch.float64))


def test_series_nmse_normalises_by_variation_not_level():
    context = torch.tensor([[100.0, 102.0]])  # mean 101
    target = torch.tensor([[103.0, 105.0]])  # variation 2, 4 -> energy 20
    pred = torch.tensor([[102.0, 105.0]])  # error energy 1
    assert float(M.series_nmse(pred, target, context)) == pytest.approx(1 / 20)
    assert torch.allclose(M.series_nmse(pred, target, context, dim=0), torch.tensor([1 / 4, 0 / 16], dtype=torch.float64))
    # Forecasting the context mean scores exactly 0 dB.
    assert float(M.series_nmse(torch.full_like(target, 101.0), target, context)) == pytest.approx(1.0)


def test_mae_rmse_smape_by_hand():
    pred, target = torch.tensor([[1.0, 3.0]]), torch.tensor([[2.0, 1.0]])
    assert float(M.mae(pred, target)) == pytest.approx(1.5)
    assert float(M.rmse(pred, target)) == pytest.approx(math.sqrt((1 + 4) / 2))
    # 200*1/3 and 200*2/4 -> mean (66.67 + 100) / 2
    assert float(M.smape(pred, target)) == pytest.approx((200 / 3 + 100) / 2)
    assert float(M.smape(torch.zeros(1, 2), torch.zeros(1, 2))) == 0.0
    assert float(M.smape(torch.tensor([[1.0]]), torch.tensor([[-1.0]]))) == pytest.approx(200.0)


def test_topk_accuracy_by_hand():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 1, 0])
    assert M.topk_accuracy(scores, labels, 1) == pytest.approx(1 / 3)
    assert M.topk_accuracy(scores, labels, 2) == pytest.approx(2 / 3)
    assert M.topk_accuracy(scores, labels, 3) == pytest.approx(1.0)


def test_generic_metrics_by_hand_per_step_and_edge_cases():
    """The torchmetrics-backed metrics give the hand-computed numbers, per step (``dim=0``) too."""
    pred = torch.tensor([[1.0, 0.0, 5.0], [3.0, 0.0, -5.0]])
    target = torch.tensor([[2.0, 0.0, 5.0], [1.0, 0.0, 5.0]])
    # per step over the two windows: |err| (1, 2), (0, 0), (0, 10)
    assert torch.allclose(M.mae(pred, target, dim=0), torch.tensor([1.5, 0.0, 5.0], dtype=torch.float64))
    assert torch.allclose(M.rmse(pred, target, dim=0),
                          torch.tensor([math.sqrt(2.5), 0.0, math.sqrt(50)], dtype=torch.float64))
    assert torch.allclose(M.rmse(pred, target, dim=1),
                          torch.tensor([math.sqrt(1 / 3), math.sqrt(104 / 3)], dtype=torch.float64))
    # 200|e|/(|p|+|t|): (200/3, 100), (0 for 0 vs 0, 0), (0, 200)
    assert torch.allclose(M.smape(pred, target, dim=0),
                          torch.tensor([(200 / 3 + 100) / 2, 0.0, 100.0], dtype=torch.float64))
    assert float(M.smape(pred, target)) == pytest.approx((200 / 3 + 100 + 200) / 6)
    assert M.rmse(pred.double(), target).dtype == torch.float64
    # Macro F1 leaves out a class in neither pred nor labels (class 2 of 3); class 0: tp 1, fp 0,
    # fn 1 -> 2/3; class 1: tp 1, fp 1, fn 0 -> 2/3.
    assert M.f1_score(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), num_classes=3) == pytest.approx(2 / 3)
    # Binary F1 without a true or predicted positive is 0.
    assert M.f1_score(torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long), average="binary") == 0.0
    # A test split of one class, predicted as that class (all NLoS): accuracy 1, not an error
    # (torchmetrics refuses one class; the LoS/NLoS fine-tune crashed on such a split).
    assert M.accuracy(torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long)) == 1.0
    assert M.accuracy(torch.tensor([0, 1, 0]), torch.zeros(3, dtype=torch.long)) == pytest.approx(2 / 3)
    # Top-1 among tied scores is torch.topk's pick, as before torchmetrics (whose argmax takes the
    # first: class 0). For votes 2, 2, 1, 0.5 topk picks class 1 (torch 2.x on CPU).
    votes = torch.tensor([[2.0, 2.0, 1.0, 0.5], [0.0, 0.0, 3.0, 0.0]])
    pick = int(votes[0].topk(1).indices)
    assert M.topk_accuracy(votes, torch.tensor([pick, 2]), 1) == 1.0
    if pick != 0:
        assert M.topk_accuracy(votes, torch.tensor([0, 2]), 1) == 0.5
    assert M.topk_accuracy(votes, torch.tensor([3, 1]), 5) == 1.0  # k capped at the number of classes


def test_beam_power_loss_by_hand():
    power = torch.tensor([[1.0, 10.0, 0.1], [4.0, 1.0, 2.0]])
    # sample 0 picks the best (0 dB); sample 1 picks 1.0 of best 4.0 -> 6.02 dB; mean 3.01
    loss = M.beam_power_loss_db(torch.tensor([1, 1]), power)
    assert loss == pytest.approx(10 * math.log10(4) / 2)


def test_accuracy_and_f1_by_hand():
    pred, labels = torch.tensor([1, 1, 0, 0, 1]), torch.tensor([1, 0, 0, 1, 1])
    assert M.accuracy(pred, labels) == pytest.approx(3 / 5)
    # class 1: tp 2, fp 1, fn 1 -> 4/6; class 0: tp 1, fp 1, fn 1 -> 2/4
    assert M.f1_score(pred, labels, average="binary") == pytest.approx(4 / 6)
    assert M.f1_score(pred, labels) == pytest.approx((4 / 6 + 2 / 4) / 2)


def test_shape_errors():
    with pytest.raises(ValueError, match="shapes differ"):
        M.nmse(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="scores must be"):
        M.topk_accuracy(torch.zeros(3), torch.zeros(3))


def test_window_nmse_by_hand():
    """Mean over windows of sum err^2 / sum true^2 (not the ratio of the sums)."""
    target = torch.tensor([[1.0, 2.0], [10.0, 0.0]])
    pred = torch.tensor([[1.0, 0.0], [9.0, 1.0]])
    # window 0: 4 / 5 = 0.8; window 1: (1 + 1) / 100 = 0.02 -> mean 0.41 (the pooled ratio would be 6 / 105)
    assert torch.allclose(M.window_nmse(pred, target), torch.tensor([0.8, 0.02], dtype=torch.float64))
    s = M.window_nmse_scores(pred, target)
    assert s["window_nmse"] == pytest.approx(0.41) and s["window_nmse_db"] == pytest.approx(10 * math.log10(0.41))
    # Complex windows [N, H, A, K] with a mask: only the masked elements count.
    t = torch.ones(1, 2, 1, 2, dtype=torch.complex64)
    p = torch.zeros_like(t)
    p[0, 1, 0, 0] = 1j  # |1j - 1|^2 = 2 on a masked element
    mask = torch.zeros(1, 2, 1, 2, dtype=torch.bool)
    mask[0, 1] = True
    assert float(M.window_nmse(p, t, mask)[0]) == pytest.approx((2 + 1) / 2)


def test_a_window_with_an_all_zero_target_is_not_scored():
    """An idle night's all-zero target has no energy to normalise by: its NMSE is NaN (it was
    err / 1e-30, which made the mean 1e30 whatever the other windows scored) and the mean leaves it out."""
    target = torch.tensor([[0.0, 0.0], [1.0, 2.0], [0.0, 0.0]])
    pred = torch.tensor([[0.1, 0.0], [1.0, 0.0], [0.0, 0.0]])
    per = M.window_nmse(pred, target)
    assert torch.isnan(per[[0, 2]]).all() and float(per[1]) == pytest.approx(0.8)
    assert M.mean_window_nmse(per) == pytest.approx(0.8) and M.unscored_windows(per) == 2
    assert M.scorable_windows(target).tolist() == [False, True, False]
    s = M.window_nmse_scores(pred, target)
    assert s["window_nmse"] == pytest.approx(0.8) and s["unscored_windows"] == 2
    assert "unscored_windows" not in M.window_nmse_scores(pred[1:2], target[1:2])
    assert math.isnan(M.mean_window_nmse(per[[0]]))


def test_best_classical_and_ratio():
    rows = [{"model": "persistence", "window_nmse": 0.2}, {"model": "mean", "window_nmse": 0.1},
            {"model": "fm", "window_nmse": 0.05}, {"model": "broken"}]
    M.add_best_classical(rows, {"persistence": 0.2, "mean": 0.1})
    assert [r.get("best_classical") for r in rows] == ["mean", "mean", "mean", None]
    assert [r.get("ratio_to_best") for r in rows] == [pytest.approx(2.0), pytest.approx(1.0), pytest.approx(0.5), None]
