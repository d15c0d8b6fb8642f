"""Linear prediction (the classical AR channel predictor): exact on sums of tones, stable, pooled,
and the MAE guard's ``ar`` estimate."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from wfm.models.baselines import LinearPrediction, build_baseline
from wfm.models.linear_prediction import ar_forecast, choose_order, extrapolate, fit_coefficients, stabilise
from wfm.models.priors import masked_priors

REPO = Path(__file__).resolve().parents[1]


def _tones(groups: int, channels: int, length: int, freqs: tuple[float, ...], seed: int = 0) -> torch.Tensor:
    """``[G, C, length]`` sums of complex exponentials: the same frequencies in every channel of a
    group (one Doppler spectrum), random amplitudes per channel."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float64)
    out = torch.zeros(groups, channels, length, dtype=torch.complex128)
    for f in freqs:
        amp = torch.complex(torch.randn(groups, channels, 1, generator=g, dtype=torch.float64),
                            torch.randn(groups, channels, 1, generator=g, dtype=torch.float64))
        out = out + amp * torch.exp(2j * math.pi * f * t)
    return out


def test_a_sum_of_tones_is_continued_exactly():
    x = _tones(3, 16, 20, (0.07, -0.21, 0.33))
    pred = ar_forecast(x[..., :12], 8)
    err = (pred - x[..., 12:]).abs().square().sum() / x[..., 12:].abs().square().sum()
    assert err < 1e-4  # exact but for the small ridge (persistence and the mean are near 1)
    assert (choose_order(x[..., :12], 8) >= 3).all()  # three tones need order 3


def test_a_real_tone_needs_order_two_and_gets_it():
    t = torch.arange(24, dtype=torch.float64)
    x = torch.cos(2 * math.pi * 0.11 * t + torch.tensor([[0.3], [1.1]]))[None]  # [1, 2, 24]
    pred = ar_forecast(x[..., :16], 8)
    torch.testing.assert_close(pred, x[..., 16:], atol=1e-4, rtol=0)
    c = fit_coefficients(x[..., :16], 2, ridge=0.0)
    torch.testing.assert_close(c, torch.tensor([[2 * math.cos(2 * math.pi * 0.11), -1.0]], dtype=torch.float64))


def test_a_growing_recursion_is_reflected_into_the_unit_circle():
    grow = torch.tensor([[1.2 + 0.0j]], dtype=torch.complex128)  # x[t] = 1.2 x[t-1]
    torch.testing.assert_close(stabilise(grow), torch.tensor([[1 / 1.2 + 0j]], dtype=torch.complex128))
    stable = torch.tensor([[0.5, -0.3], [1.6, -0.8]], dtype=torch.float64)  # poles inside: unchanged
    torch.testing.assert_close(stabilise(stable), stable)
    two = torch.tensor([[2.5, -1.0]], dtype=torch.float64)  # poles 2 and 0.5: 2 -> 0.5
    torch.testing.assert_close(stabilise(two), torch.tensor([[1.0, -0.25]], dtype=torch.float64))
    out = extrapolate(torch.ones(1, 1, 4, dtype=torch.complex128), stabilise(grow), 50)
    assert out.abs().max() <= 1.0


def test_noise_gives_a_bounded_forecast():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, 1, 8, generator=g, dtype=torch.float64)
    pred = ar_forecast(x, 64)
    assert torch.isfinite(pred).all() and pred.abs().max() <= 3 * x.abs().max()


def test_shapes_dtypes_and_errors():
    x = torch.randn(2, 3, 10, dtype=torch.float32)
    assert ar_forecast(x, 4).shape == (2, 3, 4) and ar_forecast(x, 4).dtype == torch.float32
    assert ar_forecast(x, 4, order=2).shape == (2, 3, 4)
    torch.testing.assert_close(ar_forecast(x[..., :1], 3), x[..., :1].expand(2, 3, 3))  # one value: carried
    with pytest.raises(ValueError, match="groups, channels, length"):
        ar_forecast(x[0], 4)
    with pytest.raises(ValueError, match="horizon"):
        ar_forecast(x, 0)
    with pytest.raises(ValueError, match="order 10"):
        fit_coefficients(x, 10)


def test_the_baseline_pools_a_window_channels_when_grouped():
    x = torch.view_as_real(_tones(4, 6, 16, (0.1, -0.25)).to(torch.complex64))  # [G, C, L, 2]
    rows = x.permute(0, 1, 3, 2).reshape(48, 16)  # real and imaginary parts as rows, 12 per window
    f = build_baseline("ar")
    assert isinstance(f, LinearPrediction)
    group = torch.arange(48) // 12
    pooled = f.forecast(rows[:, :10], torch.ones(48), 6, group=group)
    want = ar_forecast(rows[:, :10].to(torch.float64).view(4, 12, 10), 6).reshape(48, 6).float()
    torch.testing.assert_close(pooled, want)
    assert ((pooled - rows[:, 10:]).square().sum() / rows[:, 10:].square().sum()) < 1e-4
    assert f.forecast(rows[:, :10], torch.ones(48), 6).shape == (48, 6)  # ungrouped: row by row
    with pytest.raises(ValueError, match="groups of equal size"):
        f.forecast(rows[:, :10], torch.ones(48), 6, group=torch.cat([torch.zeros(5), torch.ones(43)]).long())
    with pytest.raises(ValueError, match="order"):
        LinearPrediction(order=0)


def test_the_guard_estimate_continues_the_visible_block_and_falls_back_to_hold():
    x = _tones(2, 12, 16, (0.12, -0.3)).to(torch.complex64).view(2, 3, 4, 16).permute(0, 3, 1, 2)  # [B, T, A, K]
    vis = torch.zeros(2, 16, 3, 4, dtype=torch.bool)
    vis[:, 2:10] = True  # padding before, the hidden part after (as predict's masks)
    est = masked_priors(x, vis, reversion_dim=1)
    want = ar_forecast(x[:, 2:10].permute(0, 2, 3, 1).reshape(2, 12, 8), 6).reshape(2, 3, 4, 6).permute(0, 3, 1, 2)
    torch.testing.assert_close(est["ar"][:, 10:], want)
    torch.testing.assert_close(est["ar"][:, 2:10], x[:, 2:10])  # visible: the input itself
    ragged = torch.rand(2, 16, 3, 4) > 0.5  # not one block along time: the nearest visible value
    est = masked_priors(x, ragged, reversion_dim=1)
    torch.testing.assert_close(est["ar"], est["hold"])


def test_the_hold_or_ar_rule_weighs_only_those_two():
    from wfm.models.mae import GUARD_ESTIMATES, MaskedAutoencoder

    torch.manual_seed(0)
    model = MaskedAutoencoder(dim=32, depth=1, num_heads=4, decoder_depth=1, prior="mix",
                              guard_prior={"frequency": "hold|ar"}).eval()
    k = torch.arange(16, dtype=torch.float32)
    delays = torch.exp(-2j * torch.pi * 0.09 * k) + 0.6 * torch.exp(-2j * torch.pi * 0.31 * k)  # two paths
    g = torch.Generator().manual_seed(2)
    amp = torch.complex(torch.randn(4, 8, 2, 1, generator=g), torch.randn(4, 8, 2, 1, generator=g))
    band = amp * delays  # [4, 8, 2, 16]: every packet and antenna sees the same two delays
    noise = torch.complex(torch.randn(4, 8, 2, 16, generator=g), torch.randn(4, 8, 2, 16, generator=g)) + 3
    hold, mean, ar = (GUARD_ESTIMATES.index(e) for e in ("hold", "mean", "ar"))
    w_band, w_noise = model.backtest(band, "frequency", 0.5)[0], model.backtest(noise, "frequency", 0.5)[0]
    assert (w_band[:, ar] > 0.99).all()  # the delays are continued exactly
    assert (w_noise[:, hold] > 0.75).all()  # noise: mostly the nearest subcarrier, never the mean
    assert w_noise[:, mean].max() == 0 and w_band[:, mean].max() == 0
    pred = model.predict(band, "frequency", 0.5)
    err = ((pred.reconstruction - band).abs() ** 2).sum() / (band.abs() ** 2 * pred.mask).sum()
    assert err < 1e-2


def test_the_hold_ar_or_mean_rule_takes_the_mean_of_a_band_the_noise_decorrelated():
    """``hold|ar|mean``: the same two delays still go to linear prediction, but a band of white
    noise around its level (the nearest subcarrier costs twice the noise there) now gets the mean,
    and its prediction beats ``hold|ar``'s."""
    from wfm.models.mae import GUARD_ESTIMATES, MaskedAutoencoder

    torch.manual_seed(0)
    model = MaskedAutoencoder(dim=32, depth=1, num_heads=4, decoder_depth=1, prior="mix",
                              guard_prior={"frequency": "hold|ar|mean"}).eval()
    k = torch.arange(16, dtype=torch.float32)
    delays = torch.exp(-2j * torch.pi * 0.09 * k) + 0.6 * torch.exp(-2j * torch.pi * 0.31 * k)
    g = torch.Generator().manual_seed(2)
    band = torch.complex(torch.randn(4, 8, 2, 1, generator=g), torch.randn(4, 8, 2, 1, generator=g)) * delays
    noise = torch.complex(torch.randn(4, 8, 2, 16, generator=g), torch.randn(4, 8, 2, 16, generator=g)) + 3
    hold, mean, ar = (GUARD_ESTIMATES.index(e) for e in ("hold", "mean", "ar"))
    w_band, w_noise = model.backtest(band, "frequency", 0.5)[0], model.backtest(noise, "frequency", 0.5)[0]
    assert (w_band[:, ar] > 0.99).all() and (w_noise[:, mean] > 0.9).all()
    assert w_noise[:, GUARD_ESTIMATES.index("reversion")].max() == 0  # only the three named

    def nmse(m: MaskedAutoencoder) -> float:
        pred = m.predict(noise, "frequency", 0.5)
        return float(((pred.reconstruction - noise).abs() ** 2).sum() / (noise.abs() ** 2 * pred.mask).sum())

    with_mean = nmse(model)
    model.guard_prior = {"frequency": "hold|ar"}
    assert with_mean < 0.75 * nmse(model)


def test_linear_prediction_of_beam_powers_scores_the_next_sweep():
    from wfm.tasks.future_beam import BeamWindows, LinearPredictionBeams

    # Beam 0 is the strongest now but fades fast (0.5 a sweep), beam 1 fades slowly (0.95): two
    # sweeps ahead beam 1 is the best. Persistence keeps beam 0; the pooled recursion sees the
    # take-over (not the exact decays: the backward equations pull its poles towards the unit circle).
    t = torch.arange(6, dtype=torch.float64)[:, None]
    past = torch.cat([40 * 0.5 ** t, 0.95 ** t, 0.5 * 0.5 ** t], dim=1)[None].float()  # [1, 6, 3]
    zeros = torch.zeros(1)
    w = BeamWindows(past=past, label=zeros, future_power=zeros, position=zeros, scenario=zeros, trajectory=zeros)
    scores = LinearPredictionBeams(horizon=2).scores(w)
    assert scores.shape == (1, 3) and int(scores.argmax()) == 1 and int(past[0, -1].argmax()) == 0
    assert scores[0, 1] > scores[0, 0] > scores[0, 2]
    with pytest.raises(ValueError, match="horizon"):
        LinearPredictionBeams(horizon=0)


def test_all_zero_channels_forecast_zero_and_never_reach_the_eigenvalue_routine_with_nan():
    """A window of all-zero CSI (a dead chain, a zero-filled gap) used to fit a NaN recursion, on
    which oneMKL's eigenvalue routine crashed the whole process (a segfault, not an exception)."""
    zero = torch.zeros(2, 3, 8, dtype=torch.complex128)
    assert torch.equal(fit_coefficients(zero, 2), torch.zeros(2, 2, dtype=torch.complex128))
    assert torch.equal(ar_forecast(zero, 4), torch.zeros(2, 3, 4, dtype=torch.complex128))
    torch.testing.assert_close(stabilise(torch.tensor([[float("nan"), 0.5]])), torch.tensor([[0.0, 0.5]]))
    # A zero group next to a live one leaves the live one's forecast as it is alone.
    t = torch.arange(8, dtype=torch.float64)
    live = torch.exp(1j * 0.3 * t)[None, None].expand(1, 3, 8).to(torch.complex128)
    both = ar_forecast(torch.cat([zero[:1], live]), 4)
    torch.testing.assert_close(both[1:], ar_forecast(live, 4))
    assert torch.equal(both[0], torch.zeros(3, 4, dtype=torch.complex128))


@pytest.mark.parametrize("kind", ["temporal", "frequency"])
def test_the_shipped_mae_predicts_an_all_zero_window_as_zero(kind):
    import wfm

    model = wfm.from_pretrained(REPO / "checkpoints" / "mae-tiny-catalog-cpu")
    pred = model.predict(torch.zeros(2, 16, 3, 30, dtype=torch.complex64), kind, 0.5)
    assert torch.equal(pred.reconstruction, torch.zeros(2, 16, 3, 30, dtype=torch.complex64))
