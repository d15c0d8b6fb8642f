"""Forecasting baselines: hand-computed forecasts, training on a learnable series, evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch


from wfm.data.series import SeriesTable, SeriesWindows
from wfm.models.baselines import (BASELINES, LinearExtrapolation, Persistence, RNNForecaster, SeasonalNaive,
                                  TransformerForecaster, build_baseline, stack_windows)
from wfm.tasks.forecasting import evaluate_forecaster, forecast_series

pytestmark = pytest.mark.usefixtures("one_thread")


def sine_windows(n_series: int, length: int, context: int, horizon: int, seed: int) -> SeriesWindows:
    """Sines of random period, phase, level and scale: learnable, and not persistence-friendly."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    rows = []
    for _ in range(n_series):
        period = rng.uniform(8, 16)
        rows.append(rng.uniform(-50, 50) + rng.uniform(0.5, 20) * np.sin(2 * np.pi * t / period + rng.uniform(0, 6)))
    data = np.concatenate(rows).astype(np.float32)[:, None]
    starts = np.arange(n_series) * length
    table = SeriesTable(data, starts, np.full(n_series, length), 0.1, "test", "sines")
    return SeriesWindows([table], context=context, horizon=horizon, stride=4)


def test_closed_form_baselines_by_hand():
    ctx = torch.tensor([[1.0, 2.0, 3.0, 5.0], [2.0, 2.0, 2.0, 2.0]])
    itv = torch.ones(2)
    assert torch.equal(Persistence().forecast(ctx, itv, 3), torch.tensor([[5.0] * 3, [2.0] * 3]))
    # Line through (0, 2), (1, 3), (2, 5) with points=3: slope 1.5, value at x=2 is 4.8333
    lin = LinearExtrapolation(points=3).forecast(ctx, itv, 2)
    assert torch.allclose(lin[0], torch.tensor([10 / 3 + 1.5 * 2, 10 / 3 + 1.5 * 3]))
    assert torch.allclose(lin[1], torch.tensor([2.0, 2.0]))
    assert torch.equal(SeasonalNaive(2).forecast(ctx, itv, 5)[0], torch.tensor([3.0, 5.0, 3.0, 5.0, 3.0]))
    assert torch.equal(SeasonalNaive(9).forecast(ctx, itv, 2), Persistence().forecast(ctx, itv, 2))


def test_forecasters_reject_complex_and_bad_horizon():
    with pytest.raises(ValueError, match="real series"):
        Persistence().forecast(torch.zeros(2, 4, dtype=torch.complex64), torch.ones(2), 2)
    with pytest.raises(ValueError, match="horizon"):
        Persistence().forecast(torch.zeros(2, 4), torch.ones(2), 0)
    with pytest.raises(KeyError, match="unknown baseline"):
        build_baseline("oracle")


def test_build_baseline_knows_every_name():
    for name in BASELINES:
        kw = {"period": 4} if name == "seasonal" else {"max_horizon": 4} if name in ("lstm", "gru", "transformer") else {}
        f = build_baseline(name, **kw)
        assert f.forecast(torch.randn(3, 12), torch.ones(3), 6).shape == (3, 6)


def test_trainable_forecasters_are_scale_equivariant():
    """Per-window normalisation: forecasting a * x + b gives a * forecast(x) + b."""
    torch.manual_seed(0)
    for f in (RNNForecaster("gru", max_horizon=4), TransformerForecaster(max_horizon=4, dim=32)):
        x, itv = torch.randn(5, 16), torch.full((5,), 0.1)
        y = f.forecast(x, itv, 6)
        y2 = f.forecast(7.0 * x + 300.0, itv, 6)
        assert torch.allclose(y2, 7.0 * y + 300.0, atol=1e-3)


def test_lstm_learns_sines_better_than_persistence_and_fit_is_deterministic():
    train = sine_windows(64, 64, context=24, horizon=4, seed=0)
    test = sine_windows(16, 64, context=24, horizon=4, seed=1)
    data = stack_windows(train)
    a = RNNForecaster("lstm", max_horizon=4, hidden=32).fit(data, steps=60, lr=1e-2, batch_size=64, seed=3)
    b = RNNForecaster("lstm", max_horizon=4, hidden=32).fit(data, steps=5, lr=1e-2, batch_size=64, seed=4)
    b.fit(data, steps=60, lr=1e-2, batch_size=64, seed=3)  # re-fitting starts from scratch
    x, itv = torch.randn(4, 24), torch.full((4,), 0.1)
    assert torch.equal(a.forecast(x, itv, 4), b.forecast(x, itv, 4))
    lstm = evaluate_forecaster(a, test, horizons=(1, 4))
    pers = evaluate_forecaster(Persistence(), test, horizons=(1, 4))
    assert lstm["nmse"] < 0.5 * pers["nmse"]


def test_evaluate_forecaster_reports_steps_and_horizons():
    test = sine_windows(4, 40, context=16, horizon=8, seed=2)
    r = evaluate_forecaster(Persistence(), test, horizons=(1, 4, 16), batch_size=5)
    assert r["windows"] == len(test) and r["horizon"] == 8
    assert set(r["at_horizon"]) == {1, 4} and len(r["per_step"]["nmse"]) == 8
    # The overall MAE is the mean of the per-step MAEs (equal windows per step).
    assert r["mae"] == pytest.approx(float(np.mean(r["per_step"]["mae"])))
    assert r["at_horizon"][1]["mae"] == pytest.approx(r["per_step"]["mae"][0])
    # Persistence on a sine degrades with the step.
    assert r["per_step"]["nmse"][0] < r["per_step"]["nmse"][3]


def test_forecast_series_gives_whole_windows_their_group():
    class Recorder:
        def __init__(self) -> None:
            self.groups: list[torch.Tensor] = []

        def forecast(self, context, interval, horizon, group=None):
            self.groups.append(group)
            return context[:, -1:].expand(-1, horizon)

    rec = Recorder()
    series = torch.arange(30.0).view(10, 3)  # 5 windows of 2 channels
    out = forecast_series(rec, series, 0.1, 4, per_group=2, batch_size=5)
    assert out.shape == (10, 4) and torch.equal(out[:, 0], series[:, -1])
    assert [g.tolist() for g in rec.groups] == [[0, 0, 1, 1], [2, 2, 3, 3], [4, 4]]  # batches hold whole windows
    # a forecaster without ``group`` (the baselines) gets independent rows
    assert torch.equal(forecast_series(build_baseline("persistence"), series, 0.1, 4, per_group=2), out)
    with pytest.raises(ValueError, match="whole windows"):
        forecast_series(rec, series, 0.1, 4, per_group=3)


def test_ranges_reach_a_forecaster_that_takes_them_and_no_other():
    """A range series (``RANGE_KINDS``: a user's distance) tells a forecaster whose ``forecast`` takes
    ``ranges`` so, through ``forecast_series(ranges=True)`` and through windows of kind ``distance``
    (``collect_forecasts``, the series tasks); windows of any other kind, a batch mixing kinds, and
    forecasters without the parameter (the baselines) are not told."""
    from wfm.tasks.forecasting import collect_forecasts

    class Recorder:
        def __init__(self) -> None:
            self.told: list[bool] = []

        def forecast(self, context, interval, horizon, group=None, ranges=False):
            self.told.append(ranges)
            return context[:, -1:].expand(-1, horizon)

    rec, series = Recorder(), torch.arange(30.0).view(10, 3)
    forecast_series(rec, series, 0.1, 4, ranges=True)
    forecast_series(rec, series, 0.1, 4)
    assert rec.told == [True, False]
    assert torch.equal(forecast_series(build_baseline("persistence"), series, 0.1, 4, ranges=True), series[:, -1:].expand(-1, 4))
    rec.told.clear()
    window = {"context": torch.arange(8.0), "target": torch.zeros(2), "interval": 0.1}
    kinds = ["distance"] * 4 + ["aoa"] * 4 + ["distance", "aoa", "range", "range"]
    collect_forecasts(rec, [dict(window, kind=k) for k in kinds], batch_size=4)
    assert rec.told == [True, False, False]
    assert collect_forecasts(build_baseline("persistence"), [dict(window, kind="distance")])[0].shape == (1, 2)
