"""Box-Cox transforms chosen by Guerrero's method, and the causal model's ``box_cox`` option."""

import math

import numpy as np
import pytest
import torch

from wfm.models.box_cox import LAMBDAS, box_cox, box_cox_windows, guerrero_lambda, inv_box_cox
from wfm.models.registry import create_model


def _guerrero_reference(x: np.ndarray) -> float:
    """Guerrero's method for one series written out: chunks of 2 (those of zeros left out), the
    lambda of the least coefficient of variation of std / mean ** (1 - lambda); not 0 with zeros."""
    x = x[len(x) % 2:].reshape(-1, 2)
    m, s = x.mean(1), x.std(1, ddof=1)
    m, s = m[m > 0], s[m > 0]
    cvs = []
    for lam in LAMBDAS:
        r = s / m ** (1 - lam)
        cvs.append(np.inf if lam == 0 and (x == 0).any() else r.std() / r.mean())
    return LAMBDAS[int(np.argmin(cvs))]


def _series(rows: int, length: int, multiplicative: bool, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float64)
    level = 50 + 45 * torch.sin(2 * math.pi * t / 144)  # a daily cycle from 5 to 95
    noise = torch.randn(rows, length, generator=g, dtype=torch.float64)
    x = level * torch.exp(0.2 * noise) if multiplicative else level + 3.0 * noise + 10
    return x.float()


def test_guerrero_chooses_the_log_for_changes_that_grow_with_the_level_and_none_otherwise():
    mult, add = _series(8, 721, True), _series(8, 721, False, seed=1)  # odd: the oldest value is dropped
    lam_m, lam_a = guerrero_lambda(mult), guerrero_lambda(add)
    assert bool((lam_m <= 0.2).all()) and bool((lam_a >= 0.8).all())
    for x, lam in ((mult, lam_m), (add, lam_a)):
        assert [_guerrero_reference(r.double().numpy()) for r in x] == pytest.approx(lam.tolist())
    # zeros (an idle cell at night): chunks of zeros left out, and no log (0 has none)
    idle = mult.clone()
    idle[0, 101:200] = 0.0
    lam_i = guerrero_lambda(idle)
    assert lam_i[0] == pytest.approx(_guerrero_reference(idle[0].double().numpy())) and lam_i[0] > 0
    assert bool((lam_i[1:] == lam_m[1:]).all())
    assert bool(torch.isfinite(box_cox(idle[:1], lam_i[:1])).all())
    # a negative value, nothing but zeros, or fewer than 8 chunks: the values as given
    bad = mult.clone()
    bad[0, 5], bad[1] = -1.0, 0.0
    assert bool((guerrero_lambda(bad)[:2] == 1).all()) and bool((guerrero_lambda(bad)[2:] == lam_m[2:]).all())
    assert bool((guerrero_lambda(mult[:, :15]) == 1).all())
    # a group pools its chunks: one exponent, which a non-positive member sets to 1 for all
    group = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    short = mult[:, :6]  # 3 chunks each, 12 pooled per group
    pooled = guerrero_lambda(short, group)
    assert bool((pooled[:4] == pooled[0]).all()) and bool((pooled[4:] == pooled[4]).all())
    assert bool((guerrero_lambda(short) == 1).all())
    bad_short = short.clone()
    bad_short[1, 0] = -1.0
    assert bool((guerrero_lambda(bad_short, group)[:4] == 1).all())
    assert bool((guerrero_lambda(bad_short, group)[4:] == pooled[4:]).all())


def test_training_windows_take_the_exponent_of_their_observed_context_only():
    """``box_cox_windows`` (``CausalPretrainModule(box_cox=True)``): a window's exponent is
    Guerrero's on its observed context alone (padding and targets do not count), its observed
    values are transformed with it, and padding, rows at ``lam = 1`` and rows with a negative
    value (target included) come back to the bit."""
    mult, add = _series(2, 144, True), _series(2, 144, False, seed=1)
    ctx_len, pad = 96, 10  # 10 values of padding on the left, 96 of context, 48 targets
    values = torch.cat([torch.zeros(4, pad), torch.cat([mult, add])], dim=1)
    values[:, :pad] = 7.0  # what padding holds must not matter
    observed = torch.arange(values.shape[1])[None].expand(4, -1) >= pad
    ctx = torch.full((4,), pad + ctx_len)
    values[3, -1] = -1.0  # a negative target: no transform for that row
    out, lam = box_cox_windows(values, observed, ctx)
    expect = guerrero_lambda(values[:, pad:pad + ctx_len])
    assert lam[:3].tolist() == expect[:3].tolist() and lam[3] == 1.0
    assert lam[0] < 1 and lam[1] < 1 and lam[2] == 1.0  # multiplicative rows: a transform; additive: none
    for r in (0, 1):
        assert torch.allclose(out[r, pad:], box_cox(values[r:r + 1, pad:], lam[r:r + 1])[0])
    assert torch.equal(out[:, :pad], values[:, :pad]) and torch.equal(out[2:], values[2:])
    # the targets do not choose: changing them leaves the exponent
    moved = values.clone()
    moved[:2, pad + ctx_len:] *= 3.0
    assert torch.equal(box_cox_windows(moved, observed, ctx)[1], lam)


def test_box_cox_round_trips_and_leaves_rows_at_lambda_one_untouched():
    x = torch.rand(3, 20, dtype=torch.float64) * 100 + 0.1
    lam = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    y = box_cox(x, lam)
    assert torch.allclose(y[0], x[0].log()) and torch.allclose(y[1], (x[1] ** 0.3 - 1) / 0.3)
    assert torch.equal(y[2], x[2])
    assert torch.allclose(inv_box_cox(y, lam), x, rtol=1e-10)
    # quantile layouts [B, H, Q] transform row by row too
    assert torch.allclose(inv_box_cox(y[:, :, None].expand(-1, -1, 2), lam), x[:, :, None].expand(-1, -1, 2))
    # a forecast below the floor -1/lam is 0; a huge log forecast stays finite
    low = inv_box_cox(torch.tensor([[-10.0], [1e6]]), torch.tensor([0.5, 0.0]))
    assert low[0, 0] == 0 and bool(torch.isfinite(low).all())


def test_causal_box_cox_forecasts_positive_rows_in_the_chosen_space():
    """``box_cox=True``: a row whose context chooses lambda < 1 is forecast as the same model
    forecasts its transformed context, transformed back (the quantiles too); a row at lambda 1
    and ``check=False`` are the model without the option, to the bit; the option round-trips."""
    torch.manual_seed(0)
    kw = dict(prior="mix", coarse_len=64, estimators=("last", "mean", "trend", "reversion"), backtest_origins="value",
              guard=True, check_origins=4, quantiles=(0.1, 0.5, 0.9))
    plain = create_model("causal_tiny", **kw).eval()
    with torch.no_grad():
        torch.nn.init.normal_(plain.head.weight, std=0.3)
    m = create_model("causal_tiny", box_cox=True, **kw).eval()
    m.load_state_dict(plain.state_dict())
    x = torch.cat([_series(2, 288, True), _series(2, 288, False, seed=1)])
    lam = guerrero_lambda(x)
    assert bool((lam[:2] < 1).all()) and bool((lam[2:] == 1).all())
    with torch.no_grad():
        got, got_q = m.forecast(x, 600.0, 12), m.forecast(x, 600.0, 12, quantiles=True)
        want = inv_box_cox(plain.forecast(box_cox(x, lam), 600.0, 12), lam)
        space_q = plain.forecast(box_cox(x, lam), 600.0, 12, quantiles=True)
        want_q = inv_box_cox(space_q, lam)
        assert torch.allclose(got, want, rtol=1e-5) and torch.allclose(got_q, want_q, rtol=1e-5)
        # an increasing transform keeps the quantiles' order (a random head's, whatever it is)
        assert torch.equal(got_q[:2].diff(dim=-1) > 0, space_q[:2].diff(dim=-1) > 0)
        assert torch.equal(got[2:], plain.forecast(x[2:], 600.0, 12))
        assert torch.equal(m.forecast(x, 600.0, 12, check=False), plain.forecast(x, 600.0, 12, check=False))
        assert not torch.allclose(got[:2], plain.forecast(x[:2], 600.0, 12), rtol=1e-3)


def test_causal_box_cox_config_round_trip_and_white_noise_keeps_the_arithmetic_mean(tmp_path):
    from wfm.hub import from_pretrained
    from wfm.models.baselines import ContextMean

    torch.manual_seed(0)
    m = create_model("causal_tiny", prior="mix", coarse_len=64, guard=True, check_origins=8, white_limit=0.5,
                     box_cox=True).eval()
    m.save_pretrained(str(tmp_path / "m"))
    again = from_pretrained(str(tmp_path / "m"))
    assert again.box_cox and not create_model("causal_tiny").box_cox
    # a window of 64 positive white-noise amplitudes, 8 values each: Box-Cox space for the
    # network, but the white-noise rule gives the mean of the values as given, to the bit
    amp = (3.0 + torch.randn(64, 8)).abs() + 0.1
    group = torch.zeros(64, dtype=torch.long)
    with torch.no_grad():
        f = again.forecast(amp, 1e-3, 8, group=group)
    assert torch.equal(f, ContextMean().forecast(amp, torch.full((64,), 1e-3), 8))


def test_pretraining_with_box_cox_takes_the_loss_in_the_space_forecast_uses():
    """``CausalPretrainModule(box_cox=True)``: a training step's loss is the model's loss on the
    windows as ``box_cox_windows`` puts them; without the option, on the windows as given."""
    from wfm.training.lit_causal import CausalPretrainModule

    torch.manual_seed(0)
    x = torch.cat([_series(3, 120, True), _series(1, 120, False, seed=2)])  # 96 of context, 24 ahead
    x[3, 10] = -1.0  # a series with a negative value stays as given
    batch = {"values": x, "observed": torch.ones_like(x, dtype=torch.bool), "context_len": torch.full((4,), 96),
             "interval": torch.full((4,), 600.0), "kind": ["traffic"] * 4}
    kwargs = dict(prior="mix", guard=True, backtest_origins="value")
    on = CausalPretrainModule(model_kwargs=kwargs, box_cox=True)
    off = CausalPretrainModule(model_kwargs=kwargs)
    off.model.load_state_dict(on.model.state_dict())
    loss_on, loss_off = on.training_step(batch, 0), off.training_step(batch, 0)  # (self.log only warns here)
    moved, lam = box_cox_windows(x, batch["observed"], batch["context_len"])
    assert bool((lam[:3] < 1).all()) and lam[3] == 1.0
    want_on = on.model.loss(moved, batch["observed"], batch["interval"], batch["context_len"], scaled=True)[0]
    want_off = on.model.loss(x, batch["observed"], batch["interval"], batch["context_len"], scaled=True)[0]
    assert float(loss_on) == pytest.approx(float(want_on), rel=1e-6)
    assert float(loss_off) == pytest.approx(float(want_off), rel=1e-6)
    assert float(loss_on) != pytest.approx(float(loss_off), rel=1e-3)
