"""The per-window classical rules and the reversion-margin switch of ``wfm.tasks.guard_study``."""

from __future__ import annotations

import pytest
import torch

import wfm.models.mae as mae_module
from wfm.tasks.guard_study import (ar1_forecast, backtest_pick, band_rows, classical_rule_rows, filter_rows, noise_rows,
                                   reversion_margin)
from wfm.tasks.real_data import BenchData


def _data(series: torch.Tensor, name: str) -> BenchData:
    return BenchData(name, "csi amplitude", series[:, :8], series[:, 8:], 0.1, "", "")


def test_rules_pick_the_mean_for_noise_and_the_last_value_for_a_walk():
    g = torch.Generator().manual_seed(0)
    noise = 5 + torch.randn(64, 16, 40, generator=g)
    walk = torch.randn(64, 16, 40, generator=g).cumsum(dim=1)
    rows = {r["dataset"]: r for r in classical_rule_rows([_data(noise, "noise"), _data(walk, "walk")])}
    assert rows["noise"]["mean"] == 1.0 and rows["noise"]["AR(1), phi pooled"] < 1.02
    assert rows["walk"]["last"] == 1.0 and rows["walk"]["backtest pick (pooled)"] < 1.02
    # AR(1) by hand: phi from the deviations of one series, clipped to [0, 1]
    ctx = walk[:1, :8, :1].double()
    d = ctx[0, :, 0] - ctx[0, :, 0].mean()
    phi = float(((d[1:] * d[:-1]).sum() / (d * d).sum()).clamp(0, 1))
    want = ctx.mean() + phi ** torch.arange(1, 5, dtype=torch.float64) * (ctx[0, -1, 0] - ctx.mean())
    torch.testing.assert_close(ar1_forecast(ctx, 4, pooled=False)[0, :, 0], want)
    assert backtest_pick(ctx, 4).shape == (1, 4, 1)


def test_reversion_margin_is_restored():
    before = mae_module.REVERSION_MARGIN
    try:
        with reversion_margin(7.0):
            assert mae_module.REVERSION_MARGIN == 7.0
            raise RuntimeError
    except RuntimeError:
        pass
    assert mae_module.REVERSION_MARGIN == before


def test_noise_rows_tell_a_common_gain_from_independent_noise():
    g = torch.Generator().manual_seed(0)
    level = torch.randn(32, 1, 2, 30, dtype=torch.complex64, generator=g)
    gain = 10 ** (0.8 * torch.randn(32, 16, 1, 1, generator=g) / 20)  # white per-packet gain, dB
    smooth = torch.linspace(0, 1, 16).view(1, 16, 1, 1) * torch.randn(32, 1, 2, 30, generator=g)
    rows = {}
    for name, csi in (("jitter", level * gain), ("smooth", level * torch.exp(smooth))):
        series = torch.view_as_real(csi).flatten(2)
        d = BenchData(name, "csi complex", series[:, :8], series[:, 8:], 0.1, "", "", csi=csi)
        rows[name] = noise_rows([d])[0]
    assert rows["jitter"]["common gain share"] > 0.99 and rows["smooth"]["common gain share"] < 0.2
    assert rows["jitter"]["series with phi = 0"] > 0.3 and rows["smooth"]["series with phi = 0"] < 0.05


def test_band_rows_tell_a_smooth_band_from_a_selective_one():
    g = torch.Generator().manual_seed(0)
    k = torch.arange(30)
    tilt = 10 ** (torch.randn(16, 1, 2, 1, generator=g) * 3 * (k / 29 - 0.5) / 20)  # a dB slope across the band
    smooth = torch.randn(16, 1, 2, 1, dtype=torch.complex64, generator=g) * tilt
    selective = torch.randn(16, 1, 2, 30, dtype=torch.complex64, generator=g)  # independent subcarriers
    rows = {}
    for name, csi in (("smooth", smooth.expand(16, 8, 2, 30)), ("selective", selective.expand(16, 8, 2, 30))):
        rows[name] = band_rows([BenchData(name, "csi complex", csi[:, :4], csi[:, 4:], 0.1, "", "", csi=csi)])[0]
    s, r = rows["smooth"], rows["selective"]
    assert s["nearest / mean"] < 1 < r["nearest / mean"] and s["adjacent correlation"] > 0.99 > 0.5 > r["adjacent correlation"]
    # The nearest subcarrier of independent unit-power subcarriers: error 2 per unit power; the mean of 15: 1 + 1/15.
    assert r["nearest subcarrier NMSE"] == pytest.approx(2.0, rel=0.2) and r["mean NMSE"] == pytest.approx(16 / 15, rel=0.2)


def test_filter_rows_fit_each_chain_of_the_complex_views_they_know_the_spacing_of():
    import numpy as np

    from wfm.data.impairments import edge_delay_phase

    tau = np.array([[90e-9, 40e-9], [20e-9, 70e-9]])  # [chain, (low, high edge)]
    csi = torch.from_numpy(np.exp(1j * (tau @ edge_delay_phase(np.arange(30) * 625e3, 3.0)))).to(torch.complex64)
    csi = csi.expand(4, 6, 2, 30)  # packets with one response
    views = [BenchData("nic", "csi complex", csi[:, :3], csi[:, 3:], 0.1, "", "", csi=csi),
             BenchData("other", "csi complex", csi[:, :3], csi[:, 3:], 0.1, "", "", csi=csi),  # no spacing given
             BenchData("nic", "csi amplitude", csi.abs()[:, :3], csi.abs()[:, 3:], 0.1, "", "", csi=csi.abs())]
    rows = filter_rows(views, {"nic": np.arange(30) * 625e3})
    assert [(r["dataset"], r["chain"]) for r in rows] == [("nic", 0), ("nic", 1)]
    for r, (lo, hi) in zip(rows, tau * 1e9):
        assert r["r2"] > 0.999 and r["width_mhz"] == 3.0
        assert r["tau_low_ns"] == pytest.approx(lo, abs=0.5) and r["tau_high_ns"] == pytest.approx(hi, abs=0.5)


def test_correction_rules_are_scored_against_the_shipped_fit_by_hand():
    from wfm.models.mae import MaskedAutoencoder
    from wfm.tasks.guard_study import correction_rule_rows, correction_rules, guard_constant
    from wfm.tasks.metrics import window_nmse
    from wfm.tasks.prior_ablation import correction_off

    torch.manual_seed(0)
    model = MaskedAutoencoder(dim=32, depth=1, num_heads=4, decoder_depth=1, prior="mix").eval()
    torch.nn.init.normal_(model.decoder_pred.weight, std=0.05)  # a correction that is not zero
    g = torch.Generator().manual_seed(1)
    csi = torch.randn(6, 16, 2, 8, dtype=torch.complex64, generator=g) + 3
    (row,) = correction_rule_rows(model, [("toy", csi, "temporal")])
    assert set(row) == {"set", *[k for k in correction_rules() if k != "least squares (shipped)"]}

    def nmse(m):  # the rules are studied with the prior at full scale
        with guard_constant("PRIOR_SHRINK", 0):
            pred = m.predict(csi, "temporal", 0.5).reconstruction[:, 8:]
        return float(window_nmse(pred, csi[:, 8:]).mean())

    # "off" is the model with its correction head zeroed, over the model as shipped (the least-squares fit).
    assert row["off"] == pytest.approx(nmse(correction_off(model)) / nmse(model), rel=1e-4)
    # a gate no fit can pass is "off"
    (strict,) = correction_rule_rows(model, [("toy", csi, "temporal")], {"least squares (shipped)": correction_rules()["least squares (shipped)"],
                                                                         "never": correction_rules((2.0,))["gate 2"]})
    assert strict["never"] == pytest.approx(row["off"])


def test_white_gate_gives_the_mean_to_white_windows_only():
    """``white_gate_rows``: the MAE's prediction, and the same with the context mean where a
    window's pooled channels look like white noise (all of the noise windows, none of the ramps)."""
    from wfm.models.mae import MaskedAutoencoder
    from wfm.tasks.guard_study import white_gate_rows
    from wfm.tasks.metrics import window_nmse
    from wfm.tasks.real_data import mae_windows

    torch.manual_seed(0)
    model = MaskedAutoencoder(dim=32, depth=1, num_heads=4, decoder_depth=1, prior="mix").eval()
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(6, 16, 2, 8, dtype=torch.complex64, generator=g) + 3
    ramp = (torch.linspace(0, 1, 16)[None, :, None, None] * torch.rand(6, 1, 2, 8, generator=g) + 1).to(torch.complex64)
    sets = [BenchData(n, "csi complex", x[:, :8], x[:, 8:], 0.1, "", "", csi=x) for n, x in (("noise", noise), ("ramp", ramp))]
    rows = {r["set"]: r for r in white_gate_rows(model, sets)}
    gated = "MAE, mean where white (limit 0.5)"
    assert rows["noise (csi complex)"]["white windows"] == 1.0 and rows["ramp (csi complex)"]["white windows"] == 0.0
    assert rows["ramp (csi complex)"][gated] == rows["ramp (csi complex)"]["MAE"]
    d = sets[0]
    mean, last = (window_nmse(x.expand_as(d.target), d.target).mean() for x in (d.context.mean(1, keepdim=True), d.context[:, -1:]))
    best = float(min(mean, last))
    assert rows["noise (csi complex)"][gated] == pytest.approx(float(mean) / best)
    assert rows["noise (csi complex)"]["MAE"] == pytest.approx(float(window_nmse(mae_windows(model, d), d.target).mean()) / best)


def test_forced_prior_rows_reproduce_each_classical_estimate_with_the_correction_off():
    """``forced_prior_rows``: ``hold + 0`` / ``mean + 0`` are persistence and the mean exactly (over
    the best of the two), in time and along subcarriers; ``+ c`` adds the network's correction;
    ``guard`` is ``predict``'s own prediction."""
    from wfm.models.mae import MaskedAutoencoder
    from wfm.tasks.guard_study import forced_prior_rows
    from wfm.tasks.real_data import generated_frequency_view
    from wfm.tasks.metrics import window_nmse

    torch.manual_seed(0)
    model = MaskedAutoencoder(dim=32, depth=1, num_heads=4, decoder_depth=1, prior="mix").eval()
    torch.nn.init.normal_(model.decoder_pred.weight, std=0.05)  # a correction that is not zero
    g = torch.Generator().manual_seed(1)
    csi = torch.randn(6, 16, 2, 10, dtype=torch.complex64, generator=g) + torch.linspace(0, 3, 10)
    time = BenchData("toy", "csi complex", csi[:, :8], csi[:, 8:], 0.1, "", "", csi=csi)
    freq = generated_frequency_view(time)
    assert freq.context.shape == (6, 5, 16, 2) and freq.target.shape == (6, 5, 16, 2) and freq.axis == "frequency"
    rows = forced_prior_rows(model, [time, freq])
    assert [r["view"] for r in rows] == ["csi complex", "csi complex, frequency"]
    for r, d in zip(rows, (time, freq)):
        hold = float(window_nmse(d.context[:, -1:].expand_as(d.target), d.target).mean())
        mean = float(window_nmse(d.context.mean(dim=1, keepdim=True).expand_as(d.target), d.target).mean())
        assert r["hold + 0"] == pytest.approx(hold / min(hold, mean), rel=1e-4)
        assert r["mean + 0"] == pytest.approx(mean / min(hold, mean), rel=1e-4)
        assert r["hold + c"] != pytest.approx(r["hold + 0"], rel=1e-3)
    pred = model.predict(csi, "temporal", 0.5).reconstruction[:, 8:]
    hold = float(window_nmse(csi[:, 7:8].expand_as(csi[:, 8:]), csi[:, 8:]).mean())
    mean = float(window_nmse(csi[:, :8].mean(dim=1, keepdim=True).expand_as(csi[:, 8:]), csi[:, 8:]).mean())
    assert rows[0]["guard"] == pytest.approx(float(window_nmse(pred, csi[:, 8:]).mean()) / min(hold, mean), rel=1e-4)
