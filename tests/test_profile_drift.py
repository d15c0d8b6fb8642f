"""The drifting-profile forecast (``wfm.models.profile_drift``), the causal model's ``check_drift``, and the
shares of a candidate fitted on the checks (``drift_share``, ``ar_share``)."""

from __future__ import annotations

import pytest
import torch

from wfm.models import create_model
from wfm.models.profile_drift import drift_forecast


def moving_lobes(windows: int = 4, beams: int = 24, steps: int = 40, speed: float = 0.4,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``[windows * beams, steps]`` beam powers of a Gaussian main lobe (width 2 beams) over a floor,
    its centre moving ``speed`` beams a step (each window from its own start, alternately up and
    down), rows of a window in beam order, and each row's window."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(steps, dtype=torch.float64)
    rows = []
    for w in range(windows):
        centre = 6 + 4 * torch.rand(1, generator=g, dtype=torch.float64) + (1 if w % 2 == 0 else -1) * speed * t
        if w % 2:
            centre = centre + 8
        b = torch.arange(beams, dtype=torch.float64)[:, None]
        rows.append(1 + 20 * torch.exp(-0.5 * ((b - centre[None]) / 2.0) ** 2))
    return torch.cat(rows), torch.arange(windows).repeat_interleave(beams)


def test_drift_forecast_follows_a_lobe_that_moves_and_holds_one_that_stands():
    x, group = moving_lobes()
    ctx, truth = x[:, :32], x[:, 32:36]
    pred, ok = drift_forecast(ctx, 4, group)
    assert ok.all() and pred.dtype == torch.float64 and pred.shape == (len(x), 4)
    err = ((pred - truth) ** 2).sum() / ((ctx[:, -1:] - truth) ** 2).sum()
    assert err < 0.05  # persistence misses the moving lobe; its shifted profile does not
    # A lobe that stands still: no drift, the mean of the last two profiles, exactly.
    still = x[:, :1].expand(-1, 16) + torch.linspace(0, 1e-3, 16, dtype=torch.float64)
    pred, ok = drift_forecast(still, 3, group)
    torch.testing.assert_close(pred, still[:, -2:].mean(1, keepdim=True).expand(-1, 3))
    # The rows of one window keep their order however the windows are interleaved.
    order = torch.stack([torch.arange(24), torch.arange(24, 48)], 1).flatten()
    torch.testing.assert_close(drift_forecast(ctx[order], 4, group[order])[0], drift_forecast(ctx, 4, group)[0][order])


def test_drift_forecast_leaves_out_groups_without_a_power_profile():
    x, group = moving_lobes(windows=3)
    x[30, 5] = -1.0  # a negative value: not powers (window 1)
    small = torch.tensor([7, 7, 9, 9, 9])  # two rows: too few to move along
    ctx = torch.cat([x, torch.rand(5, 40, dtype=torch.float64)])
    grp = torch.cat([group, small])
    pred, ok = drift_forecast(ctx[:, :32], 4, grp)
    assert ok[:24].all() and not ok[24:48].any() and ok[48:72].all()
    assert not ok[72:74].any() and ok[74:].all()
    torch.testing.assert_close(pred[~ok], ctx[~ok, 31:32].expand(-1, 4))
    with pytest.raises(ValueError, match="drift_forecast needs"):
        drift_forecast(ctx, 4, grp[:-1])


def test_check_drift_takes_the_drifting_profile_where_it_wins_the_checks_of_an_ordered_group(tmp_path):
    """``check_drift``: for groups that ``forecast`` is told are ordered, the drifting profile competes
    on the checks with the forecast so far and is averaged with it where it erred less; the
    same groups unordered, or a model without the option, forecast as before, to the bit."""
    from wfm.hub import from_pretrained

    torch.manual_seed(0)
    kw = dict(prior="mix", coarse_len=32, max_coarse=16, max_context=64, guard=True, check_origins=8,
              estimators=("last", "mean", "trend"), backtest_origins="value", check_test="either",
              quantiles=(0.1, 0.5, 0.9))
    off = create_model("causal_tiny", **kw).eval()
    on = create_model("causal_tiny", check_drift=True, **kw).eval()
    on.load_state_dict(off.state_dict())
    x, group = moving_lobes(windows=6, beams=32, speed=0.25)
    ctx, truth = x[:, :32].float(), x[:, 32:40].float()
    before = off.forecast(ctx, 0.1, 8, group=group, ordered=True)
    assert torch.equal(on.forecast(ctx, 0.1, 8, group=group), before)  # not told the rows are ordered
    after = on.forecast(ctx, 0.1, 8, group=group, ordered=True)
    drift = drift_forecast(ctx, 8, group)[0].float()
    per_window = lambda p: ((p - truth) ** 2).view(6, -1).sum(1) / (truth ** 2).view(6, -1).sum(1)  # noqa: E731
    assert (per_window(after) < 0.5 * per_window(before)).all()
    moved = (after - before).view(6, -1).abs().amax(1) > 1e-3
    assert moved.all()
    far = (drift - before).abs() > 1e-2  # half way to the drift, every window
    torch.testing.assert_close(((after - before) / (drift - before))[far], torch.full((int(far.sum()),), 0.5),
                               atol=1e-3, rtol=0)
    q_off, q_on = (m.forecast_with_quantiles(ctx, 0.1, 8, group=group, ordered=True) for m in (off, on))
    torch.testing.assert_close(q_on[1] - q_on[0][..., None], q_off[1] - q_off[0][..., None], atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="check_drift .* needs check_origins"):
        create_model("causal_tiny", prior="mix", check_drift=True)
    on.save_pretrained(str(tmp_path / "m"))
    assert from_pretrained(str(tmp_path / "m")).check_drift and not off.check_drift


def test_profile_drift_baseline_is_drift_forecast_through_forecast_series():
    """The benchmark's ``drift`` reference: ``forecast_series`` passes a view's windows as ordered
    groups, and the result is :func:`drift_forecast` of each window; unordered it refuses."""
    from wfm.models.baselines import ProfileDrift
    from wfm.tasks.forecasting import forecast_series

    x, group = moving_lobes(windows=5)
    ctx = x[:, :32].float()
    got = forecast_series(ProfileDrift(), ctx, 0.1, 4, per_group=24, batch_size=48, ordered=True)
    torch.testing.assert_close(got, drift_forecast(ctx, 4, group)[0].float())
    with pytest.raises(ValueError, match="ordered=True"):
        forecast_series(ProfileDrift(), ctx, 0.1, 4, per_group=24)


def test_drift_share_fitted_takes_more_of_a_drift_that_the_checks_find_exact_and_round_trips(tmp_path):
    """``drift_share="fitted"``: the mean of the fixed half and the least-squares share on the checks.
    A lobe that moves steadily is forecast by its drift far better than by the model, so the
    fitted share is well above a half and the forecast goes more than half of the way (at most 3/4;
    half of it with ``"half"``), by one share per window, and closer to the truth; the quantiles
    move with it; the option is saved and read back, and a bad value is refused."""
    from wfm.hub import from_pretrained

    torch.manual_seed(0)
    kw = dict(prior="mix", coarse_len=32, max_coarse=16, max_context=64, guard=True, check_origins=8,
              estimators=("last", "mean", "trend"), backtest_origins="value", check_test="either",
              quantiles=(0.1, 0.5, 0.9), check_drift=True)
    half = create_model("causal_tiny", **kw).eval()
    fitted = create_model("causal_tiny", drift_share="fitted", **kw).eval()
    fitted.load_state_dict(half.state_dict())
    x, group = moving_lobes(windows=6, beams=32, speed=0.25)
    ctx, truth = x[:, :32].float(), x[:, 32:40].float()
    before = half.forecast(ctx, 0.1, 8, group=group)  # not ordered: no drift at all
    drift = drift_forecast(ctx, 8, group)[0].float()
    got = {m.drift_share: m.forecast_with_quantiles(ctx, 0.1, 8, group=group, ordered=True) for m in (half, fitted)}
    far = (drift - before).abs() > 1e-2
    way = {k: ((p - before) / (drift - before))[far] for k, (p, _) in got.items()}
    torch.testing.assert_close(way["half"], torch.full_like(way["half"], 0.5), atol=1e-3, rtol=0)
    assert 0.55 < float(way["fitted"].min()) and float(way["fitted"].max()) <= 0.75 + 1e-3
    shares = ((got["fitted"][0] - before) / (drift - before)).masked_fill(~far, float("nan")).view(6, -1)
    assert (shares.nan_to_num(1.0).amin(1) > shares.nan_to_num(0.0).amax(1) - 2e-3).all()  # one per window
    per_window = lambda p: ((p - truth) ** 2).view(6, -1).sum(1) / (truth ** 2).view(6, -1).sum(1)  # noqa: E731
    assert (per_window(got["fitted"][0]) < per_window(got["half"][0])).all()
    point, quant = got["fitted"]
    base_point, base_quant = half.forecast_with_quantiles(ctx, 0.1, 8, group=group)
    torch.testing.assert_close(quant - point[..., None], base_quant - base_point[..., None], atol=1e-3, rtol=0)
    fitted.save_pretrained(str(tmp_path / "m"))
    half.save_pretrained(str(tmp_path / "h"))
    assert from_pretrained(str(tmp_path / "m")).drift_share == "fitted"
    assert from_pretrained(str(tmp_path / "h")).drift_share == "half"
    assert "drift_share" not in (tmp_path / "h" / "config.json").read_text()
    with pytest.raises(ValueError, match="drift_share must be"):
        create_model("causal_tiny", drift_share="all", **kw)


def test_fitted_share_is_the_least_squares_combination_of_the_checks_pooled_per_group(tmp_path):
    """``PairedChecks.fitted_share``: the ``w`` of ``A + w (B - A)`` that fits the checks' truth best,
    a group's rows pooled (each weighed by its context variance, as the paired test weighs it),
    clamped to [0, 1]; ``ar_share="fitted"`` needs ``check_ar`` and round-trips."""
    from wfm.hub import from_pretrained
    from wfm.models.causal_forecast import PairedChecks

    g = torch.Generator().manual_seed(0)
    context = torch.randn(6, 32, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2, 1, 1, 3, 1])[:, None]
    group = torch.tensor([0, 0, 1, 1, 2, 3])
    true_w = torch.tensor([0.3, 0.3, 0.8, 0.8, 1.7, -0.4], dtype=torch.float64)  # the last two beyond [0, 1]
    stats = PairedChecks(context, group, pool_by_power=False)
    for _ in range(4):
        a, b = (torch.randn(6, 5, generator=g, dtype=torch.float64) for _ in range(2))
        stats.add_forecasts(a, b, a + true_w[:, None] * (b - a))
    torch.testing.assert_close(stats.fitted_share(), torch.tensor([0.3, 0.3, 0.8, 0.8, 1.0, 0.0], dtype=torch.float64))
    # Rows of one group that disagree: the variance-weighted least squares over both.
    stats = PairedChecks(context[:2], torch.tensor([0, 0]), pool_by_power=False)
    a, b = torch.zeros(2, 3, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64)
    stats.add_forecasts(a, b, torch.tensor([[0.2] * 3, [0.6] * 3], dtype=torch.float64))
    w = 1 / stats.var
    torch.testing.assert_close(stats.fitted_share(), ((0.2 * w[0] + 0.6 * w[1]) / w.sum()).expand(2))
    assert torch.equal(PairedChecks(context, None, False).fitted_share(), torch.zeros(6, dtype=torch.float64))

    kw = dict(prior="mix", guard=True, check_origins=8, check_ar=True, ar_blend=True)
    m = create_model("causal_tiny", ar_share="fitted", **kw)
    m.save_pretrained(str(tmp_path / "m"))
    assert from_pretrained(str(tmp_path / "m")).ar_share == "fitted"
    with pytest.raises(ValueError, match="ar_share .* needs check_ar"):
        create_model("causal_tiny", prior="mix", guard=True, check_origins=8, ar_share="fitted")


def test_backtest_scale_takes_zero_mean_noise_to_zero_and_keeps_a_level():
    """``white_scale``'s scale (:func:`wfm.models.evidence.backtest_scale`): a window of zero-mean noise
    (random-phase CSI's real and imaginary parts) gets about 0, one whose level stands out of its noise
    1, a window pooling its rows; contexts too short for a backtest get 1; the model scales its white
    mean by it, and the quantiles follow."""
    from wfm.models.evidence import backtest_scale

    g = torch.Generator().manual_seed(0)
    noise = torch.randn(40, 8, generator=g, dtype=torch.float64)
    group = torch.arange(40) // 20  # window 0 zero-mean; window 1 a level of 5
    x = noise + torch.where(group[:, None] == 1, 5.0, 0.0)
    a = backtest_scale(x, group)
    assert a.shape == (40, 1) and float(a[:20].max()) < 0.2
    assert torch.equal(a[20:], torch.ones(20, 1, dtype=torch.float64))
    assert torch.equal(a[:20], a[:1].expand(20, 1))  # one scale per window
    # by hand for one row: backtests hiding 2, 3 and 4 of its 8 values
    row = x[:1]
    p = [row[:, :8 - k].mean() for k in (2, 3, 4)]
    pt = sum(pk * row[0, 8 - k:].sum() for pk, k in zip(p, (2, 3, 4)))
    pp = sum(pk ** 2 * k for pk, k in zip(p, (2, 3, 4)))
    tt = sum((row[0, 8 - k:] ** 2).sum() for k in (2, 3, 4))
    want = float((pt / min(pp, tt)).clamp(0, 1))
    got = float(backtest_scale(row)[0, 0])
    assert got == pytest.approx(want, rel=1e-5) if want < 0.5 else got == 1.0
    assert torch.equal(backtest_scale(x[:, :3], group), torch.ones(40, 1, dtype=torch.float64))

    kw = dict(prior="mix", guard=True, check_origins=8, white_limit=0.5, quantiles=(0.1, 0.5, 0.9))
    torch.manual_seed(0)
    plain = create_model("causal_tiny", **kw).eval()
    scaled = create_model("causal_tiny", white_scale=True, **kw).eval()
    scaled.load_state_dict(plain.state_dict())
    ctx = x.float()
    (p0, q0), (p1, q1) = (m.forecast_with_quantiles(ctx, 0.01, 8, group=group) for m in (plain, scaled))
    mean = ctx[:20].double().mean(1, keepdim=True)
    torch.testing.assert_close(p0[:20], mean.expand(-1, 8).float())  # white: the mean
    torch.testing.assert_close(p1[:20], (ctx[:20].double().mean(1, keepdim=True) * a[:20]).expand(-1, 8).float())
    torch.testing.assert_close(p1[20:], p0[20:])
    torch.testing.assert_close(q1 - p1[..., None], q0 - p0[..., None])
    with pytest.raises(ValueError, match="white_scale .* needs white_limit"):
        create_model("causal_tiny", prior="mix", guard=True, check_origins=8, white_scale=True)
