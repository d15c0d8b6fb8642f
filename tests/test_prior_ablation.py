"""The with/without-prior ablation: the correction-off variant is exactly the classical prior."""

from __future__ import annotations

import pytest
import torch

from wfm.models.causal import CausalForecaster
from wfm.models.mae import MaskedAutoencoder
from wfm.models.priors import masked_priors
from wfm.tasks.prior_ablation import correction_off, markdown

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mae_correction_off_predicts_its_prior_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = MaskedAutoencoder(dim=32, depth=1, num_heads=4, decoder_depth=1, prior="hold")
    torch.nn.init.normal_(model.decoder_pred.weight)  # a "trained" correction
    off = correction_off(model)
    assert model.decoder_pred.weight.abs().sum() > 0
    csi = torch.randn(2, 8, 3, 30, dtype=torch.complex64)
    pred = off.predict(csi, "temporal", 0.5, guard=False)
    torch.testing.assert_close(pred.reconstruction, masked_priors(csi, ~pred.mask)["hold"], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(model.predict(csi, "temporal", 0.5, guard=False).reconstruction, pred.reconstruction)


def test_models_without_a_prior_are_refused():
    with pytest.raises(ValueError, match="no classical prior"):
        correction_off(MaskedAutoencoder(dim=32, depth=1, num_heads=4, decoder_depth=1))
    with pytest.raises(ValueError, match="no classical prior"):
        correction_off(CausalForecaster(patch_len=4, dim=16, depth=1, num_heads=2, max_context=32))


def test_markdown_one_line_per_view_with_ratios():
    rows = [{"dataset": "d", "view": "v", "model": "persistence", "classical": True, "window_nmse": 0.1,
             "window_nmse_db": -10.0, "ratio_to_best": 1.0},
            {"dataset": "d", "view": "v", "model": "shipped", "window_nmse": 0.05, "window_nmse_db": -13.01,
             "ratio_to_best": 0.5}]
    table = markdown(rows, ["shipped", "correction off"])
    assert "| d | v | persistence -10.00 | -13.01 (0.50) | - |" in table
