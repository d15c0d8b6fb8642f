"""pretrain/context_readings.py: which shorter readings of a context it takes, and that the wrapped
forecast is the mean of the model's forecasts from them."""

from __future__ import annotations

import pytest
import torch

from conftest import load_script
from wfm.models.causal import causal_tiny
from wfm.models.causal_forecast import ForecastMixin

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cr():
    return load_script("pretrain/context_readings.py")


def test_reading_lengths(cr):
    assert cr.reading_lengths(96, 600.0, [0.5], 32, False) == [48]
    assert cr.reading_lengths(16, 600.0, [0.5], 32, False) == []  # short contexts as shipped
    assert cr.reading_lengths(96, 600.0, [0.5], 32, True) == [48]  # 96 x 10 min holds no day
    assert cr.reading_lengths(144, 600.0, [0.5], 32, True) == []  # a day of 10-min values: kept whole
    assert cr.reading_lengths(200, 600.0, [0.5, 0.75], 32, True) == [144, 150]  # never below the day it holds
    assert cr.reading_lengths(168, 3600.0, [0.5], 32, True) == []  # an hourly week


def test_averaged_forecast_is_the_mean_of_the_readings(cr, monkeypatch):
    torch.manual_seed(0)
    model = causal_tiny(patch_len=8).eval()
    ctx = torch.randn(3, 64).cumsum(1)
    with torch.no_grad():
        full = model.forecast(ctx, 1.0, 8)
        half = model.forecast(ctx[:, -32:], 1.0, 8)
        monkeypatch.setattr(ForecastMixin, "_forecast",
                            cr.averaged_over_readings(ForecastMixin._forecast, [0.5], 32, False))
        both = model.forecast(ctx, 1.0, 8)
        short = model.forecast(ctx[:, -16:], 1.0, 8)
    torch.testing.assert_close(both, 0.5 * (full + half))
    monkeypatch.undo()
    with torch.no_grad():
        torch.testing.assert_close(short, model.forecast(ctx[:, -16:], 1.0, 8))
