"""Causal forecaster: masking, interval embedding, any length, normalisation, training, data."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from wfm.models.causal import CausalForecaster, interval_features
from wfm.models.series_priors import normalise_stats
from wfm.models.registry import create_model, list_models

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]


def tiny(**kw) -> CausalForecaster:
    """An untrained causal_tiny whose head is not zero (a fresh model forecasts pure persistence)."""
    torch.manual_seed(0)
    m = create_model("causal_tiny", **kw).eval()
    torch.nn.init.normal_(m.head.weight, std=0.05)
    return m


def test_fresh_model_is_the_half_damped_trend_of_the_last_patch():
    m = create_model("causal_tiny")  # patch_len 8; zero head: the gate is sigmoid(0) = 0.5
    x = walks(2, 21)
    step = (x[:, -1:] - x[:, -8:-7]) / 7
    expected = x[:, -1:] + 0.5 * step * torch.arange(1, 9)
    assert torch.allclose(m.forecast(x, 0.1, 8), expected, atol=1e-4)


def walks(b: int = 3, length: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, length, generator=g).cumsum(dim=1)


def test_registry_sizes_and_param_counts():
    assert {"causal_tiny", "causal_little", "causal_small", "causal_base"} <= set(list_models("causal_*"))
    # Counts from the table in wfm/models/causal.py.
    assert create_model("causal_tiny").num_params() == 211_209
    assert create_model("causal_little").num_params() == 1_231_633
    m = create_model("causal_tiny")
    assert m.forward_flops(16) > m.forward_flops(8) > 0


def test_no_leakage_from_the_future():
    m = tiny()
    x = walks(2, 64)
    obs = torch.ones_like(x, dtype=torch.bool)
    iv = torch.tensor([0.1, 0.1])
    t = 24  # positions >= t are the "future"; patches of 8, so tokens 0..2 see only the past
    ctx = torch.tensor([t, t])
    y = x.clone()
    y[:, t:] = torch.randn(2, 64 - t) * 100
    a, b = m(x, obs, iv, ctx).point, m(y, obs, iv, ctx).point
    assert torch.allclose(a[:, :t // 8], b[:, :t // 8], atol=1e-6)
    assert not torch.allclose(a[:, t // 8:], b[:, t // 8:], atol=1e-3)
    # The same with left padding (explicit attention mask instead of is_causal).
    obs[:, :5] = False
    a, b = m(x, obs, iv, ctx).point, m(y, obs, iv, ctx).point
    assert torch.allclose(a[:, :t // 8], b[:, :t // 8], atol=1e-6)


def test_padding_is_ignored():
    """Values hidden as padding do not matter, only the observed ones."""
    m = tiny()
    x = walks(2, 64)
    obs = torch.ones_like(x, dtype=torch.bool)
    obs[:, :13] = False
    y = x.clone()
    y[:, :13] = 1e3
    iv = torch.tensor([1.0, 1.0])
    assert torch.allclose(m(x, obs, iv).point, m(y, obs, iv).point, atol=1e-6)


def test_interval_embedding_distinguishes_granularity():
    f = interval_features(torch.tensor([1e-3, 0.1, 600.0, 3600.0]), 8)
    assert torch.cdist(f, f).fill_diagonal_(1.0).min() > 0.1
    m = tiny()
    with torch.no_grad():  # a trained embedding is not tiny; make its effect visible
        for p in m.interval_embed.parameters():
            p.mul_(20)
    x = walks(1, 40).expand(2, -1)
    out = m.forecast(x, torch.tensor([1e-3, 600.0]), 8)
    assert (out[0] - out[1]).abs().max() > 1e-3
    # and the embedding receives gradient in training
    m.train()
    loss, *_ = m.loss(walks(2, 32), torch.ones(2, 32, dtype=torch.bool), torch.tensor([1e-3, 600.0]))
    loss.backward()
    assert m.interval_embed[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("length", [1, 7, 13, 64, 300])
@pytest.mark.parametrize("horizon", [1, 4, 16, 33])
def test_any_context_length_and_horizon(length, horizon):
    m = tiny()
    out = m.forecast(walks(3, length), 0.1, horizon)
    assert out.shape == (3, horizon) and torch.isfinite(out).all()


def test_batched_forecast_equals_row_by_row():
    m = tiny()
    x = walks(3, 40)
    iv = torch.tensor([1e-3, 0.1, 600.0])
    batched = m.forecast(x, iv, 20)
    rows = torch.cat([m.forecast(x[i:i + 1], iv[i:i + 1], 20) for i in range(3)])
    assert torch.allclose(batched, rows, atol=1e-5)


def test_quantile_head():
    m = tiny(quantiles=(0.1, 0.5, 0.9))
    q = m.forecast(walks(2, 30), 0.1, 12, quantiles=True)
    assert q.shape == (2, 12, 3)
    with pytest.raises(ValueError, match="quantile"):
        tiny().forecast(walks(2, 30), 0.1, 4, quantiles=True)


def test_normalisation_round_trip_constant_and_equivariance():
    x = walks(4, 50) * 30 + 500
    obs = torch.ones_like(x, dtype=torch.bool)
    loc, scale = normalise_stats(x, obs)
    assert torch.allclose((x - loc) / scale * scale + loc, x, atol=1e-3)
    assert torch.allclose(loc[:, 0], x.double().mean(1).float()) and (scale > 0).all()

    m = tiny()
    const = torch.full((2, 37), 321.5)
    f = m.forecast(const, 0.1, 16)
    assert torch.allclose(f, const[:, :16], rtol=1e-4)  # a constant series stays constant
    assert torch.isfinite(m.forecast(torch.zeros(1, 5), 0.1, 3)).all()

    x = walks(3, 45)
    a, b = 7.5, -120.0
    assert torch.allclose(m.forecast(a * x + b, 0.1, 20), a * m.forecast(x, 0.1, 20) + b, rtol=1e-4, atol=1e-3)


def test_bad_input_is_named():
    m = tiny()
    x = walks(2, 20)
    x[0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        m.forecast(x, 0.1, 4)
    with pytest.raises(ValueError, match=r"\[B, L\]"):
        m.forecast(torch.zeros(2, 3, 4, 5), 0.1, 4)
    with pytest.raises(ValueError, match="one series"):
        m.forecast(torch.zeros(5), 0.1, 4, group=torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="horizon"):
        m.forecast(walks(2, 20), 0.1, 0)
    for bad in (8.0, True, "8"):  # 8.0 used to fail deep inside on a slice
        with pytest.raises(ValueError, match="whole number of steps"):
            m.forecast(walks(2, 20), 0.1, bad)
    assert m.forecast(walks(2, 20), 0.1, np.int64(3)).shape == (2, 3)
    with pytest.raises(ValueError, match="interval"):
        m.forecast(walks(2, 20), torch.tensor([0.1, -1.0]), 4)
    for bad in (float("inf"), float("nan")):  # an infinite interval used to return NaN forecasts
        with pytest.raises(ValueError, match="finite positive"):
            m.forecast(walks(2, 20), bad, 4)
    with pytest.raises(ValueError, match="B >= 1"):  # an empty batch used to fail deep inside
        m.forecast(torch.zeros(0, 20), 0.1, 4)
    z = torch.ones(2, 8, dtype=torch.complex64)
    z[1, 5] = complex(1.0, float("nan"))
    with pytest.raises(ValueError, match="row 1, position 5"):  # a complex row, named as given
        m.forecast(z, 0.1, 4)
    with pytest.raises(ValueError, match="sdpa"):
        CausalForecaster(attention="complex-phase")


def test_the_shipped_forecast_is_the_same_at_any_scale():
    """A received power of 1e-15 W or a counter at 1e13 forecasts as the same series near unit scale
    (the forecast used to come back flat at 3.5x the level at 1e-16, and zero below 1e-18); rows
    within the usual scales are forecast as given, and a group's rows keep their shares of its power."""
    from wfm.hub import from_pretrained

    m = from_pretrained(str(REPO / "checkpoints" / "causal-tiny-catalog-cpu")).eval()
    t = torch.arange(100, dtype=torch.float64)
    x = 10 + torch.sin(2 * math.pi * t / 50)
    want = m.forecast(x, 1.0, 8).double()
    # (linear prediction's fit is not exactly scale-free: the same series times 8, within the usual
    # scales, forecasts within 1e-3 of it too; before, 1e-16 came back 3.5x off)
    for scale in (1e-20, 1e-16, 1e-12, 8.0, 1e13):
        got = m.forecast(x * scale, 1.0, 8).double() / scale
        torch.testing.assert_close(got, want, rtol=2e-3, atol=0)
    rows = torch.stack([x, 3 * x + torch.randn(100, dtype=torch.float64, generator=torch.Generator().manual_seed(0))])
    group = torch.zeros(2, dtype=torch.long)
    want = m.forecast(rows, 1.0, 8, group=group).double()
    torch.testing.assert_close(m.forecast(rows * 1e-15, 1.0, 8, group=group).double() / 1e-15, want, rtol=2e-3, atol=0)


def test_a_large_level_keeps_its_variation_in_float64():
    """A float64 series far above its spread (a carrier frequency in Hz, a counter) is forecast as its
    deviations, in float64: 1.7e9 + sin used to come back 1,280 off, as float32 rounds 1.7e9 to 128.
    Rows near their level, and constant rows, are forecast as before, in float32."""
    from wfm.hub import from_pretrained

    m = from_pretrained(str(REPO / "checkpoints" / "causal-tiny-catalog-cpu")).eval()
    s = torch.sin(2 * math.pi * torch.arange(108, dtype=torch.float64) / 50)
    want = m.forecast(s[:100], 1.0, 8)
    for level in (1e5, 1.7e9):
        got = m.forecast(s[:100] + level, 1.0, 8)
        assert got.dtype == torch.float64
        torch.testing.assert_close(got - level, want.double(), atol=1e-4, rtol=0)
    rows = torch.stack([s[:100] + 1.7e9, s[:100] + 3.0])
    both = m.forecast(rows, 1.0, 8)
    torch.testing.assert_close(both[1], m.forecast(rows[1:], 1.0, 8)[0].double(), atol=1e-6, rtol=0)
    assert m.forecast(torch.full((20,), 3.0, dtype=torch.float64), 1.0, 2).dtype == torch.float32


def test_one_series_is_a_batch_of_one():
    """A univariate series ``[L]`` forecasts as the row of a ``[1, L]`` batch, without its axis."""
    m = tiny(quantiles=(0.1, 0.5, 0.9))
    x = walks(1, 30)
    point, bands = m.forecast_with_quantiles(x[0], 0.1, 6)
    assert point.shape == (6,) and bands.shape == (6, len(m.quantile_levels))
    torch.testing.assert_close(point, m.forecast(x, 0.1, 6)[0])
    torch.testing.assert_close(m.forecast(x[0], 0.1, 6, quantiles=True), bands)


def test_windows_of_channels_pool_each_window_as_group_does():
    """``[N, C, L]`` is ``N`` windows of ``C`` channels: the forecast of the ``[N * C, L]`` rows with
    one group per window, to the bit, shaped ``[N, C, H]``; ``interval`` per window or per channel."""
    from wfm.hub import from_pretrained

    m = from_pretrained(str(REPO / "checkpoints" / "causal-tiny-catalog-cpu")).eval()
    g = torch.Generator().manual_seed(3)
    x = 5.0 + torch.randn(3, 4, 24, generator=g)
    x[1] += torch.linspace(0, 6, 24)  # one window drifts, so the windows do not all take the same rule
    ids = torch.arange(3).repeat_interleave(4)
    want_point, want_bands = m.forecast_with_quantiles(x.reshape(12, 24), 0.01, 8, group=ids)
    point, bands = m.forecast_with_quantiles(x, 0.01, 8)
    assert point.shape == (3, 4, 8) and bands.shape == (3, 4, 8, 3)
    assert torch.equal(point, want_point.reshape(3, 4, 8)) and torch.equal(bands, want_bands.reshape(3, 4, 8, 3))
    assert torch.equal(m.forecast(x, torch.full((3,), 0.01), 8), point)
    assert torch.equal(m.forecast(x, torch.full((3, 4), 0.01), 8), point)
    with pytest.raises(ValueError, match="already pools each window's C channels"):
        m.forecast(x, 0.01, 8, group=ids)
    with pytest.raises(ValueError, match=r"scalar, \[N\] or \[N, C\]"):
        m.forecast(x, torch.full((4,), 0.01), 8)
    with pytest.raises(ValueError, match="N >= 1 windows"):
        m.forecast(torch.zeros(0, 4, 24), 0.01, 8)


def test_a_complex_series_is_its_two_parts_pooled():
    """A complex context is forecast as its real and imaginary parts, the two parts of each series
    one group (or the series' own group), and comes back complex: ``[L]``, ``[B, L]`` and
    ``[N, C, L]``, quantiles per part; ``ordered`` (beam powers in angular order) is refused."""
    from wfm.hub import from_pretrained

    m = from_pretrained(str(REPO / "checkpoints" / "causal-tiny-catalog-cpu")).eval()
    g = torch.Generator().manual_seed(4)
    z = torch.complex(torch.randn(4, 16, generator=g), torch.randn(4, 16, generator=g)) + (2 - 1j)
    parts = torch.stack([z.real, z.imag], dim=1).reshape(8, 16)
    want = m.forecast(parts, 0.01, 8, group=torch.arange(4).repeat_interleave(2))
    point, bands = m.forecast_with_quantiles(z, 0.01, 8)
    assert point.dtype == torch.complex64 and point.shape == (4, 8) and bands.shape == (4, 8, 3)
    assert torch.equal(point.real, want[0::2]) and torch.equal(point.imag, want[1::2])
    _, part_bands = m.forecast_with_quantiles(parts, 0.01, 8, group=torch.arange(4).repeat_interleave(2))
    assert torch.equal(bands.real, part_bands[0::2]) and torch.equal(bands.imag, part_bands[1::2])
    windows = torch.complex(torch.randn(2, 3, 16, generator=g), torch.randn(2, 3, 16, generator=g))
    flat = torch.stack([windows.real, windows.imag], dim=2).reshape(12, 16)  # re, im of each channel
    want = m.forecast(flat, 0.01, 4, group=torch.arange(2).repeat_interleave(6))
    got = m.forecast(windows, 0.01, 4)
    assert got.shape == (2, 3, 4)
    assert torch.equal(got.real.reshape(6, 4), want[0::2]) and torch.equal(got.imag.reshape(6, 4), want[1::2])
    one = m.forecast(z[0].numpy(), 0.01, 8)
    assert one.shape == (8,) and torch.equal(one, m.forecast(z[:1], 0.01, 8)[0])
    with pytest.raises(ValueError, match="no such order"):
        m.forecast(z, 0.01, 8, ordered=True)
    with pytest.raises(ValueError, match=r"\[B\] = \[4\]"):
        m.forecast(z, torch.ones(3), 8)


def test_overfits_a_tiny_set():
    torch.manual_seed(0)
    m = create_model("causal_tiny", depth=2)
    t = torch.arange(64, dtype=torch.float32)
    x = torch.stack([torch.sin(2 * math.pi * t / p + s) for p, s in ((16, 0.0), (24, 1.0), (11, 2.0), (32, 0.5))])
    obs = torch.ones_like(x, dtype=torch.bool)
    iv = torch.full((4,), 0.1)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.0)
    first = None
    for _ in range(150):
        loss, *_ = m.loss(x, obs, iv)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else float(loss)
    assert float(loss) < first / 10, (first, float(loss))


# ---------------------------------------------------------------------------- data


def test_synthetic_series_datamodule_batches_and_splits():
    from wfm.data.synthetic_series import SyntheticSeriesDataModule

    dm = SyntheticSeriesDataModule(series_per_kind=20, context=48, horizon=16, batch_size=8, samples_per_epoch=64,
                                   eval_windows=8)
    dm.setup()
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == 8
    b = batches[0]
    assert b["values"].shape == (8, 64) and b["observed"].dtype == torch.bool and b["interval"].shape == (8,)
    assert len(b["kind"]) == 8 and set(b["kind"]) <= {"csi", "aoa", "traffic"}
    assert {x["dataset"] for x in batches} <= {"synthetic-csi", "synthetic-aoa", "synthetic-traffic"}
    # CSI series (64 steps, complex) are real/imag pairs and fill the window exactly
    assert len(dm.pools["train"][0]) == 2 * 16
    # deterministic per epoch, different across epochs
    again = list(dm.train_dataloader())
    assert all(torch.equal(x["values"], y["values"]) for x, y in zip(batches, again))
    loader.epoch_source = lambda: 1
    other = next(iter(loader))
    assert not torch.equal(other["values"], batches[0]["values"])
    # splits by sample: train/val/test take disjoint sample ranges of every table
    for pools in zip(*(dm.pools[s] for s in ("train", "val", "test"))):
        starts = [set(p.tables[0].starts.tolist()) for p in pools]
        assert not (starts[0] & starts[1]) and not (starts[0] & starts[2]) and not (starts[1] & starts[2])
    val = list(dm.val_dataloader())
    assert sum(len(x["kind"]) for x in val) == 3 * 8
    assert all((x["context_len"] == 48).all() for x in val)


def test_short_series_and_random_context(tmp_path):
    from wfm.data.series import SeriesTable
    from wfm.data.series_datamodule import SeriesPool, make_window

    data = np.arange(24, dtype=np.float32)[:, None]
    t = SeriesTable(data, np.array([0]), np.array([24]), 1e-3, "csi", "x")
    v, o, c = make_window(t, 0, 0, 48, 16)
    assert o.sum() == 24 and o[-24:].all() and c == 64 - 12 and v[-1] == 23
    long = SeriesTable(np.arange(100, dtype=np.float32)[:, None], np.array([0]), np.array([100]), 0.1, "aoa", "y")
    v, o, c = make_window(long, 0, 10, 48, 16, hide=5)
    assert c == 48 and not o[:5].any() and o[5:].all() and v[5] == 15 and (v[:5] == 0).all()
    rng = np.random.default_rng(0)
    hidden = [int((~SeriesPool("y", [long]).draw(rng, 48, 16, 1.0)["observed"]).sum()) for _ in range(20)]
    assert len(set(hidden)) > 5 and max(hidden) < 48


def test_grouped_windows_are_channels_of_one_sample_over_the_same_steps():
    from wfm.data.series import SeriesTable
    from wfm.data.series_datamodule import MixtureWindows, SeriesPool

    # 3 samples of 40 steps x 5 channels; value = 1000 * sample + 100 * channel + step
    data = np.array([[1000 * n + 100 * c + t for c in range(5)] for n in range(3) for t in range(40)], np.float32)
    table = SeriesTable(data, np.array([0, 40, 80]), np.array([40, 40, 40]), 1.0, "csi", "x")
    stream = MixtureWindows([SeriesPool("x", [table])], [1.0], batch_size=7, num_batches=4, context=16,
                            horizon=8, pad_prob=0.5, seed=0, group_size=3)
    for i in range(4):
        b = stream.batch(i)
        assert b["values"].shape == (7, 24) and b["group"].tolist()[:3] == [0, 0, 0]
        for g in b["group"].unique():
            rows = b["values"][b["group"] == g]
            obs = b["observed"][b["group"] == g]
            assert len(rows) <= 3 and (obs == obs[0]).all()  # same hidden prefix
            first = int(obs[0].float().argmax())
            v = rows[:, first:]
            sample, chan, step = v // 1000, (v % 1000) // 100, v % 100
            assert (sample == sample[:1, :1]).all() and (step == step[:1]).all()  # one sample, same steps
            assert len(set(chan[:, 0].tolist())) == len(rows)  # distinct channels
    single = MixtureWindows([SeriesPool("x", [table])], [1.0], 7, 4, 16, 8, 0.5, 0)
    assert "group" not in single.batch(0)


def test_interval_jitter_rescales_the_interval_of_the_named_kinds_per_group():
    from wfm.data.series import SeriesTable
    from wfm.data.series_datamodule import MixtureWindows, SeriesPool

    data = np.arange(3 * 40 * 5, dtype=np.float32).reshape(120, 5)
    csi = SeriesTable(data, np.array([0, 40, 80]), np.array([40, 40, 40]), 0.01, "csi", "c")
    traffic = SeriesTable(data, np.array([0, 40, 80]), np.array([40, 40, 40]), 600.0, "traffic", "t")
    pools = [SeriesPool("c", [csi]), SeriesPool("t", [traffic])]
    args = dict(batch_size=12, num_batches=40, context=16, horizon=8, pad_prob=0.5, seed=3, group_size=4)
    plain = MixtureWindows(pools, [1.0, 1.0], **args)
    jitter = MixtureWindows(pools, [1.0, 1.0], **args, interval_jitter={"csi": 1.0})
    seen = []
    for i in range(40):
        a, b = plain.batch(i), jitter.batch(i)
        if b["dataset"] == "t":  # another kind: the very same batch, true interval
            assert (b["interval"] == 600.0).all() and torch.equal(a["values"], b["values"])
            continue
        assert (a["interval"] == 0.01).all()
        ratio = torch.log10(b["interval"].double() / 0.01)
        assert (ratio.abs() <= 1.0 + 1e-6).all()
        for g in b["group"].unique():  # one draw per group: a window's channels share their interval
            assert (b["interval"][b["group"] == g] == b["interval"][b["group"] == g][0]).all()
        seen += ratio[b["group"].unique()].tolist()
    assert len(seen) > 20 and min(seen) < -0.5 and max(seen) > 0.5  # spread over both decades
    again = MixtureWindows(pools, [1.0, 1.0], **args, interval_jitter={"csi": 1.0})
    assert torch.equal(again.batch(5)["interval"], jitter.batch(5)["interval"])  # deterministic


def test_short_hide_trains_contexts_shorter_than_a_patch_on_short_series():
    from wfm.data.series import SeriesTable
    from wfm.data.series_datamodule import MixtureWindows, SeriesPool

    # 3 samples of 16 steps x 4 channels (a CSI recipe's series), windows of 64 + 8: right-aligned,
    # the last 8 the horizon, the first 8 the context
    data = np.arange(1, 3 * 16 * 4 + 1, dtype=np.float32).reshape(48, 4)
    table = SeriesTable(data, np.array([0, 16, 32]), np.array([16, 16, 16]), 0.01, "csi", "c")
    args = dict(batch_size=8, num_batches=30, context=64, horizon=8, pad_prob=0.5, seed=1, group_size=4)
    plain = MixtureWindows([SeriesPool("c", [table])], [1.0], **args)
    short = MixtureWindows([SeriesPool("c", [table])], [1.0], **args, short_hide=True)
    hidden = []
    for i in range(30):
        a, b = plain.batch(i), short.batch(i)
        assert (a["observed"].sum(1) == 16).all()  # without: every short series is whole
        assert torch.equal(a["context_len"], b["context_len"]) and (b["context_len"] == 64).all()
        for g in b["group"].unique():
            obs, val = b["observed"][b["group"] == g], b["values"][b["group"] == g]
            assert (obs == obs[0]).all() and (val[~obs] == 0).all()  # one hidden prefix per group
            seen = obs[0, 56:64]  # the first context: 8 values, of which a prefix is hidden
            n = int(seen.sum())
            assert 1 <= n <= 8 and seen[8 - n:].all() and obs[0, 64:].all()
            hidden.append(8 - n)
    assert set(hidden) == set(range(8)) and 0.3 < hidden.count(0) / len(hidden) < 0.7  # U[0, 7] half the time


def test_interval_jitter_is_checked():
    from wfm.data.errors import DataError
    from wfm.data.series_datamodule import SeriesDataModule

    with pytest.raises(DataError, match="interval_jitter"):
        SeriesDataModule(datasets=["x"], interval_jitter={"csi": -1.0})


def test_grouped_loss_pools_the_evidence_as_forecast_does():
    from wfm.models.groups import pool_by_group

    torch.manual_seed(0)
    m = create_model("causal_tiny", prior="mix", guard=True, coarse_len=32, max_coarse=16, max_context=64).eval()
    with torch.no_grad():
        torch.nn.init.normal_(m.head.weight, std=0.05)
    x = torch.randn(6, 48).cumsum(dim=1)
    x[3:] = torch.randn(3, 48)  # two windows with different dynamics
    obs, iv, ctx = torch.ones_like(x, dtype=torch.bool), torch.ones(6), torch.full((6,), 40)
    group = torch.tensor([0, 0, 0, 3, 3, 3])
    with torch.no_grad():
        alone, out_alone, *_ = m.loss(x, obs, iv, ctx)
        pooled, out_pooled, *_ = m.loss(x, obs, iv, ctx, group=group)
        direct = m(x, obs, iv, ctx, group=group)
    torch.testing.assert_close(out_pooled.point, direct.point)
    assert not torch.allclose(out_pooled.point, out_alone.point) and torch.isfinite(pooled)
    assert pool_by_group(torch.tensor([1.0, 4.0, 2.0]), torch.tensor([0, 0, 1])).tolist() == pytest.approx([2, 2, 2])


def test_series_datamodule_on_generated_traffic(tmp_path):
    from wfm.data.generate import generate_dataset
    from wfm.data.recipes import load_recipe
    from wfm.data.series_datamodule import SeriesDataModule

    out = tmp_path / "traffic"
    generate_dataset(load_recipe(REPO / "data" / "recipes" / "traffic-hourly.yaml"), out, num_samples=10, seed=0)
    dm = SeriesDataModule([str(out)], kinds=["traffic"], context=96, horizon=24, batch_size=4,
                          samples_per_epoch=8, eval_windows=4)
    b = next(iter(dm.train_dataloader()))
    assert b["values"].shape == (4, 120) and set(b["kind"]) == {"traffic"}
    assert torch.allclose(b["interval"], torch.full((4,), 3600.0))
    with pytest.raises(Exception, match="no series"):
        SeriesDataModule([str(out)], kinds=["csi"]).setup()


# ---------------------------------------------------------------------------- training


def test_lightning_fit_with_the_cpu_config(tmp_path, monkeypatch):
    from wfm.pretrain import main

    monkeypatch.chdir(tmp_path)
    main(["--config", str(REPO / "pretrain" / "causal-tiny-cpu.yaml"), "--trainer.max_steps", "4",
          "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "3", "--trainer.log_every_n_steps", "1",
          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
          "--data.series_per_kind", "16", "--data.samples_per_epoch", "256", "--data.eval_windows", "8"])
    run = tmp_path / "runs" / "causal-tiny-cpu"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    rows = list(csv.DictReader(open(next(run.glob("csv/version_*/metrics.csv")))))
    keys = {k for r in rows for k, v in r.items() if v}
    assert {"train/loss", "val/loss", "val/nmse_csi", "val/nmse_aoa", "val/nmse_traffic"} <= keys
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4 and ckpt["hyper_parameters"]["model"] == "causal_tiny"


def test_training_batches_are_split_across_ranks(monkeypatch):
    """Two DDP ranks get disjoint halves of the one-process epoch plan, in lockstep."""
    import wfm.data.datamodule as dm_mod
    from wfm.data.synthetic_series import SyntheticSeriesDataModule

    dm = SyntheticSeriesDataModule(series_per_kind=12, context=24, horizon=8, batch_size=4, samples_per_epoch=40)
    ds = dm.train_dataloader().dataset
    everything = [b["values"] for b in ds]
    per_rank = []
    for rank in (0, 1):
        monkeypatch.setattr(dm_mod, "_rank", lambda r=rank: (r, 2))
        per_rank.append([b["values"] for b in ds])
    assert len(per_rank[0]) == len(per_rank[1]) == len(everything) // 2
    merged = [per_rank[i % 2][i // 2] for i in range(len(everything))]
    assert all(torch.equal(a, b) for a, b in zip(merged, everything))


@pytest.mark.parametrize("size", ["tiny", "little", "small", "base"])
def test_gpu_configs_parse(size, capsys):
    from wfm.pretrain import main

    with pytest.raises(SystemExit) as e:
        main(["--config", str(REPO / "pretrain" / "causal.yaml"), "--config", str(REPO / "pretrain" / f"causal-{size}.yaml"),
              "--print_config"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "wfm.training.lit_causal.CausalPretrainModule" in out and f"model: causal_{size}" in out
    assert "wfm.data.series_datamodule.SeriesDataModule" in out and "precision: bf16-mixed" in out


def test_direct_multi_patch_head():
    m = tiny(horizon_patches=3, quantiles=(0.1, 0.9))
    x = walks(2, 37)
    for h in (1, 4, 16, 33, 50):
        assert m.forecast(x, 0.1, h).shape == (2, h)
    assert m.forecast(x, 0.1, 30, quantiles=True).shape == (2, 30, 2)
    # one forward pass covers 3 patches: the first 24 values do not depend on the rollout
    a, b = m.forecast(x, 0.1, 24), m.forecast(x, 0.1, 48)[:, :24]
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(m.forecast(4 * x + 9, 0.1, 30), 4 * m.forecast(x, 0.1, 30) + 9, rtol=1e-4, atol=1e-3)
    # no leakage: outputs of early tokens ignore later inputs
    obs = torch.ones(2, 64, dtype=torch.bool)
    y, z = walks(2, 64), walks(2, 64)
    z[:, :32] = y[:, :32]
    ctx = torch.tensor([32, 32])
    assert torch.allclose(m(y, obs, torch.tensor([0.1, 0.1]), ctx).ahead[:, :4],
                          m(z, obs, torch.tensor([0.1, 0.1]), ctx).ahead[:, :4], atol=1e-6)
    # it trains: every offset is scored
    m.train()
    loss, *_ = m.loss(y, obs, torch.tensor([0.1, 0.1]), ctx)
    loss.backward()
    assert torch.isfinite(loss) and m.head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="horizon_patches"):
        create_model("causal_tiny", horizon_patches=0)


@pytest.mark.parametrize("prior", ["trend", "mix"])
def test_forward_features_are_the_heads_input(prior):
    torch.manual_seed(0)
    m = create_model("causal_tiny", depth=2, prior=prior).eval()
    x = walks(3, 45)  # not a multiple of the patch: left-padded like forecast
    h = m.forward_features(x, 0.1)
    n = -(-45 // m.patch_len)
    assert h.shape == (3, n, m.blocks[0].attn.qkv.in_features)
    # Everything the head adds to the output is head(features): zero the head and the difference is it.
    values = torch.nn.functional.pad(x, ((-45) % m.patch_len, 0))
    observed = torch.nn.functional.pad(torch.ones_like(x, dtype=torch.bool), ((-45) % m.patch_len, 0))
    iv = torch.full((3,), 0.1)
    bare = copy.deepcopy(m)
    torch.nn.init.zeros_(bare.head.weight)
    torch.nn.init.zeros_(bare.head.bias)
    with torch.no_grad():
        added = m(values, observed, iv).point - bare(values, observed, iv).point
        want = m.head(h).view(3, n, m.horizon_patches, m.patch_len, -1)[:, :, 0, :, 0]
    torch.testing.assert_close(added[:, -n:], want, rtol=1e-4, atol=1e-5)
    assert h.requires_grad  # usable under a trainable head


def test_eval_loader_shards_across_ranks_unless_asked_for_every_window():
    from types import SimpleNamespace

    from wfm.data.synthetic_series import SyntheticSeriesDataModule

    dm = SyntheticSeriesDataModule(series_per_kind=8, context=24, horizon=8, batch_size=4, eval_windows=8)
    dm.setup()
    every = [b["values"] for b in dm.eval_loader("val", shard=False)]
    dm.trainer = SimpleNamespace(world_size=2, global_rank=1)
    mine = [b["values"] for b in dm.val_dataloader()]
    assert len(every) >= 2 and len(mine) == len(every) // 2 and all(torch.equal(a, b) for a, b in zip(mine, every[1::2]))
    assert all(torch.equal(a["values"], b) for a, b in zip(dm.eval_loader("val", shard=False), every))


def test_group_skill_loss_is_one_ratio_per_group_weighed_by_power():
    """``loss(skill="group")``: singleton groups (or no group) give ``skill=True``'s loss; the pooled
    sums weigh each row by ``scale^2`` over its group's mean, as per-window NMSE weighs channels."""
    from wfm.models.causal import pool_skill
    from wfm.models.registry import create_model

    err, power = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 5.0, 6.0])
    ref = torch.tensor([[1.0, 2.0], [3.0, 1.0], [2.0, 2.0]])
    scale, group = torch.tensor([1.0, 3.0, 2.0]), torch.tensor([7, 7, 2])
    e, r, p = pool_skill(err, ref, power, scale, group)
    w = torch.tensor([2 * 1 / 10, 2 * 9 / 10])  # group 7: scale^2 1 and 9 over their mean 5
    assert torch.allclose(e, torch.tensor([3.0, w[0] * 1 + w[1] * 2]))  # sorted ids: 2, then 7
    assert torch.allclose(r, torch.stack([ref[2], w[0] * ref[0] + w[1] * ref[1]]))
    assert torch.allclose(p, torch.tensor([6.0, w[0] * 4 + w[1] * 5]))

    torch.manual_seed(0)
    model = create_model("causal_tiny", prior="mix", quantiles=(), estimators=("last", "mean", "trend")).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.head.weight, std=0.05)
    t = torch.arange(64.0)
    x = torch.stack([torch.sin(t / 3) + 0.3 * torch.randn(64), torch.cos(t / 5) + 0.1 * t / 64 + 0.2 * torch.randn(64)])
    obs = torch.ones_like(x, dtype=torch.bool)
    itv, ctx = torch.full((2,), 0.01), torch.full((2,), 40)
    with torch.no_grad():
        rows, *_ = model.loss(x, obs, itv, ctx, skill=True)
        single, *_ = model.loss(x, obs, itv, ctx, skill="group", group=torch.tensor([0, 1]))
        assert float(single) == pytest.approx(float(rows), rel=1e-6)
        assert float(model.loss(x, obs, itv, ctx, skill="group")[0]) == pytest.approx(float(rows), rel=1e-6)
        both, *_ = model.loss(x, obs, itv, ctx, skill=True, group=torch.tensor([0, 0]))
        pooled, *_ = model.loss(x, obs, itv, ctx, skill="group", group=torch.tensor([0, 0]))
        assert float(pooled) != pytest.approx(float(both), rel=1e-4)  # one ratio, not the mean of two
        with pytest.raises(ValueError, match="skill must be"):
            model.loss(x, obs, itv, ctx, skill="grouped")
