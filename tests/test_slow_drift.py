"""pretrain/slow_drift.py: the generated link has the SNR asked for, and the two candidate rules for
the causal model's white groups read a line and white noise the right way round."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import load_script

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sd():
    return load_script("pretrain/slow_drift.py")


def test_link_snr_and_doppler(sd):
    still = sd.drifting_csi(400, 2, 16, 0.0, 10.0, 1e-3, 0)
    assert still.shape == (400, 2, 16) and still.dtype == torch.complex64
    noise = still - still.mean(0, keepdim=True)  # no Doppler: all that moves is the noise
    snr = 10 * math.log10(float(still.mean(0).abs().square().mean() / noise.abs().square().mean()))
    assert snr == pytest.approx(10.0, abs=0.5)
    quiet, turning = (sd.drifting_csi(400, 2, 16, f, 40.0, 1e-3, 0) for f in (0.0, 20.0))
    assert float((turning[-1] - turning[0]).abs().mean()) > 10 * float((quiet[-1] - quiet[0]).abs().mean())


@pytest.mark.parametrize("rule", ["line", "backtest"])
def test_rules_say_last_for_a_line_and_mean_for_white_noise(sd, rule):
    g = torch.Generator().manual_seed(0)
    rows, length = 64, 16
    group = torch.zeros(2 * rows, dtype=torch.long)
    group[rows:] = 1
    slope = torch.randn(rows, 1, generator=g)
    line = slope * torch.arange(length) + 0.05 * torch.randn(rows, length, generator=g)
    white = torch.randn(rows, length, generator=g) + 3.0
    says = sd.RULES[rule](torch.cat([line, white]), 8, group)
    assert bool(says[:rows].all()) and not bool(says[rows:].any())


def test_with_rule_changes_only_white_groups(sd):
    from wfm.models.causal import CausalForecaster

    model = CausalForecaster(patch_len=4, dim=16, depth=1, num_heads=2, max_context=32, prior="mix", guard=True,
                             check_origins=8, white_limit=0.5).eval()
    g = torch.Generator().manual_seed(1)
    series = torch.randn(128, 8, generator=g)  # white noise: the release gives its mean
    group = torch.zeros(128, dtype=torch.long)
    point = model.forecast(series, 1e-3, 8, group=group)
    assert torch.allclose(point, series.double().mean(1, keepdim=True).float().expand_as(point), atol=1e-5)
    for rule in sd.RULES:  # no drift: the rules keep the mean
        assert torch.equal(sd.with_rule(model, series, group, 8, point, rule), point)
    ramp = series * 0.01 + torch.linspace(0, 1, 8)  # a drift far above its noise: not white, untouched
    p2 = model.forecast(ramp, 1e-3, 8, group=group)
    assert torch.equal(sd.with_rule(model, ramp, group, 8, p2, "line"), p2)
