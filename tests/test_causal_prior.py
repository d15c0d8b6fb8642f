"""Causal forecaster with the classical-prior mix (``prior="mix"``) and long context."""

from __future__ import annotations

import math

import pytest
import torch

from wfm.models.baselines import ContextMean
from wfm.models.causal import CausalForecaster
from wfm.models.groups import pool_by_group
from wfm.models.series_priors import (BACKTEST_PRIOR, backtest_mse, backtest_mse_values, classical_priors,
                                      normalise_stats)
from wfm.models.registry import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


def walks(b: int = 3, length: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, length, generator=g).cumsum(dim=1)


def mix(**kw) -> CausalForecaster:
    torch.manual_seed(0)
    return create_model("causal_tiny", prior="mix", coarse_len=32, max_coarse=16, max_context=64, **kw).eval()


def randomise(m: CausalForecaster) -> CausalForecaster:
    with torch.no_grad():
        for name in ("head", "prior_gate"):
            torch.nn.init.normal_(getattr(m, name).weight, std=0.05)
    return m


FIVE = ("last", "mean", "trend", "day", "week")


def test_linear_prior_extrapolates_a_least_squares_line_of_the_last_patch():
    g = torch.Generator().manual_seed(0)
    x = 3.0 + 0.5 * torch.arange(32, dtype=torch.float32)[None] + 0.01 * torch.randn(1, 32, generator=g)
    est, avail = classical_priors(x, torch.ones_like(x, dtype=torch.bool), torch.tensor([1.0]), 8, 4, ("linear",))
    i = torch.arange(8, dtype=torch.float64)
    line = torch.linalg.lstsq(torch.stack([torch.ones(8, dtype=torch.float64), i], 1),
                              x[0, 16:24].double()[:, None]).solution.flatten()
    want = line[0] + line[1] * (7 + torch.arange(1, 5, dtype=torch.float64))
    assert avail[0, 2, 0] and torch.allclose(est[0, 2, 0].double(), want, atol=1e-4)
    one = torch.zeros_like(x, dtype=torch.bool)
    one[:, 23:] = True  # a single observed value in patch 2: no line through it
    assert not classical_priors(x * one, one, torch.tensor([1.0]), 8, 4, ("linear",))[1][0, 2, 0]


def test_classical_priors_are_the_classical_estimates():
    x = torch.arange(40, dtype=torch.float32)[None] % 10 + torch.linspace(0, 1, 40)[None]
    obs = torch.ones_like(x, dtype=torch.bool)
    iv = torch.tensor([8640.0])  # a day = 10 steps, a week = 70 (never available here)
    est, avail = classical_priors(x, obs, iv, 4, 12, FIVE)
    j, o = 5, 23  # origin: last value of patch 5
    assert torch.allclose(est[0, j, 0], x[0, o].expand(12))  # last
    assert torch.allclose(est[0, j, 1], x[0, :o + 1].mean().expand(12))  # mean
    slope = (x[0, o] - x[0, o - 3]) / 3
    assert torch.allclose(est[0, j, 2], x[0, o] + 0.5 * slope * torch.arange(1, 13))  # trend
    hs = torch.arange(1, 13)
    assert torch.allclose(est[0, j, 3], x[0, o + hs - 10 * ((hs + 9) // 10)])  # seasonal, a day back
    assert avail[0, j, :4].all() and not avail[0, :, 4].any()
    assert not avail[0, 1, 3] and avail[0, 2, 3]  # a full day seen from origin 11 on (11 + 1 - 10 >= 0)
    # left padding: nothing before the first observed value counts
    obs2 = obs.clone()
    obs2[:, :8] = False
    est2, avail2 = classical_priors(x * obs2, obs2, iv, 4, 12, FIVE)
    assert torch.allclose(est2[0, j, 1], x[0, 8:o + 1].mean().expand(12))
    assert not avail2[0, :2].any() and not avail2[0, 3, 3] and avail2[0, 4, 3]


def test_intervals_over_a_day_forecast_without_a_daily_season():
    """Series sampled every 2 days, a week or a month: the day (and, past a week, the week) holds
    fewer than 2 steps, so those estimators are unavailable, and the forecast is finite (it once
    divided by a period of 0)."""
    x = walks(2, 48)
    obs = torch.ones_like(x, dtype=torch.bool)
    for interval, week_ok in ((2 * 86_400.0, True), (604_800.0, False), (30 * 86_400.0, False)):
        est, avail = classical_priors(x, obs, torch.full((2,), interval), 8, 4, FIVE)
        assert torch.isfinite(est).all() and not avail[..., 3].any()  # no day
        assert bool(avail[:, -1, 4].all()) == week_ok  # 2-day steps: a week is round(3.5) = 4 steps
        model = randomise(mix(estimators=FIVE))
        out = model.forecast(x, interval, 6)
        assert out.shape == (2, 6) and torch.isfinite(out).all()


def test_forecast_names_a_group_of_the_wrong_shape_or_type():
    model, x = mix(), walks(3, 32)
    for bad in (torch.tensor([0, 1]), torch.zeros(3, 1, dtype=torch.long), torch.tensor([0.0, 0.0, 1.0])):
        with pytest.raises(ValueError, match="group must be an integer"):
            model.forecast(x, 1.0, 4, group=bad)
    assert model.forecast(x, 1.0, 4, group=torch.tensor([5, -1, 5])).shape == (3, 4)  # any integer ids


def test_backtest_uses_only_realised_targets():
    x = walks(2, 48)
    obs = torch.ones_like(x, dtype=torch.bool)
    est, avail = classical_priors(x, obs, torch.tensor([1.0, 1.0]), 8, 8, FIVE)
    mse = backtest_mse(x, obs, est, avail, 8)
    assert mse.shape == (2, 6, 5, 8)
    assert torch.allclose(mse[:, :1], torch.ones(2, 1, 5, 8))  # nothing realised yet: the prior value 1
    y = x.clone()
    y[:, 24:] += 100.0  # changes targets of origins >= 2 only: known at origin 3 on
    est_y, _ = classical_priors(y, obs, torch.tensor([1.0, 1.0]), 8, 8, FIVE)
    mse_y = backtest_mse(y, obs, est_y, avail, 8)
    assert torch.allclose(mse[:, :3], mse_y[:, :3]) and not torch.allclose(mse[:, 3:], mse_y[:, 3:])


def test_value_origins_match_patch_ends_and_a_brute_force_backtest():
    x = walks(2, 40, seed=3)
    obs = torch.ones_like(x, dtype=torch.bool)
    obs[1, :11] = False  # left padding
    x = x * obs
    iv = torch.tensor([1.0, 1.0])
    est_v, avail_v = classical_priors(x, obs, iv, 8, 6, FIVE + ("linear", "reversion", "ar"), every_value=True)
    est_p, avail_p = classical_priors(x, obs, iv, 8, 6, FIVE + ("linear", "reversion", "ar"))
    assert est_v.shape == (2, 40, 8, 6)
    assert torch.allclose(est_v[:, 7::8], est_p) and torch.equal(avail_v[:, 7::8], avail_p)
    limit = torch.tensor([40, 30])
    mse = backtest_mse_values(x, obs, iv, 8, 6, FIVE + ("linear", "reversion", "ar"), limit=limit)
    assert mse.shape == (2, 5, 8, 6)
    for b in range(2):
        for i, o in enumerate(range(7, 40, 8)):
            for e in range(8):
                tot, cnt = torch.zeros(6, dtype=torch.float64), torch.zeros(6, dtype=torch.float64)
                for h in range(1, 7):  # every origin j whose h-step target is known at o
                    for j in range(0, o - h + 1):
                        if avail_v[b, j, e] and obs[b, j + h] and j + h < limit[b]:
                            tot[h - 1] += float(est_v[b, j, e, h - 1] - x[b, j + h]) ** 2
                            cnt[h - 1] += 1
                pooled = (tot.sum() + BACKTEST_PRIOR) / (cnt.sum() + BACKTEST_PRIOR)
                want = (tot + BACKTEST_PRIOR * pooled) / (cnt + BACKTEST_PRIOR)
                assert torch.allclose(mse[b, i, e].double(), want, rtol=1e-4), (b, i, e)


def test_value_backtest_tells_noise_from_a_walk_within_one_patch():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(256, 8, generator=g)
    walk = noise.cumsum(dim=1)
    obs = torch.ones_like(noise, dtype=torch.bool)
    iv = torch.ones(256)
    # estimators: last (0), mean (1); measured win rates 0.89 (noise, all steps pooled), 0.77 (walk, one step)
    for x, better, steps, rate in ((noise, 1, slice(None), 0.8), (walk, 0, slice(0, 1), 0.7)):
        assert torch.allclose(backtest_mse(x, obs, *classical_priors(x, obs, iv, 8, 8, ("last", "mean")), 8),
                              torch.ones(1))  # patch ends: no evidence in the first patch
        mse = backtest_mse_values(x, obs, iv, 8, 8, ("last", "mean"))[:, 0, :, steps].mean(dim=-1)  # [B, E]
        assert (mse[:, better] < mse[:, 1 - better]).float().mean() > rate
    m = create_model("causal_tiny", prior="mix", estimators=("last", "mean"), backtest_origins="value")
    from wfm.hub import build_model, causal_arch
    arch = causal_arch(m)
    assert arch["backtest_origins"] == "value" and build_model({"model_kind": "causal", "name": "causal_tiny", "arch": arch}).backtest_origins == "value"
    assert "backtest_origins" not in causal_arch(create_model("causal_tiny", prior="mix"))  # old configs unchanged
    with pytest.raises(ValueError, match="backtest_origins"):
        create_model("causal_tiny", prior="mix", backtest_origins="token")
    f = m.forecast(noise[:4], 1e-3, 8)
    assert f.shape == (4, 8) and torch.isfinite(f).all()


def test_zero_correction_reproduces_the_prior_exactly():
    m = mix()
    with torch.no_grad():
        torch.nn.init.normal_(m.prior_gate.weight, std=0.1)  # a trained-looking gate
    x = walks(3, 300)
    iv = torch.tensor([600.0, 1e-3, 60.0])
    obs = torch.ones_like(x, dtype=torch.bool)
    out = m(x[:, :296], obs[:, :296], iv)
    loc, scale = normalise_stats(x[:, :296], obs[:, :296])
    z = (x[:, :296] - loc) / scale
    est, avail = classical_priors(z, obs[:, :296], iv, 8, 8, m.estimators)
    mse = backtest_mse(z, obs[:, :296], est, avail, 8)
    h = None

    captured = {}
    m.norm.register_forward_hook(lambda mod, inp, o: captured.setdefault("h", o))
    out = m(x[:, :296], obs[:, :296], iv)
    h = captured["h"]
    nf = out.point.shape[1]
    logits = m.prior_gate(h).view(3, nf, len(m.estimators), 8) - m.backtest_weight * mse[:, -nf:].log()
    w = torch.softmax(logits.masked_fill(~avail[:, -nf:, :, None], float("-inf")), dim=2)
    prior = (w * est[:, -nf:]).sum(dim=2)
    assert torch.equal(out.point, prior)  # zero head (a fresh model): the prior, bit for bit
    # and forecast is that prior in the original scale
    f = m.forecast(x[:, :296], iv, 8)
    assert torch.allclose(f, prior[:, -1] * scale + loc, atol=1e-4)


def test_fresh_mix_is_the_inverse_backtest_mse_combination_of_last_and_mean():
    m = create_model("causal_tiny", prior="mix", estimators=("last", "mean"))
    x = walks(2, 64)
    f = m.forecast(x, 1e-3, 8)
    loc, scale = normalise_stats(x, torch.ones_like(x, dtype=torch.bool))
    z = (x - loc) / scale
    obs = torch.ones_like(x, dtype=torch.bool)
    est, avail = classical_priors(z, obs, torch.tensor([1e-3, 1e-3]), 8, 8, ("last", "mean"))
    inv = 1.0 / backtest_mse(z, obs, est, avail, 8)[:, -1]
    expected = (inv * est[:, -1]).sum(1) / inv.sum(1) * scale + loc
    assert torch.allclose(f, expected, atol=1e-4)


def test_old_configs_build_the_trend_model():
    old = CausalForecaster(patch_len=8, dim=64, depth=4, num_heads=4, max_context=256)
    assert old.prior == "trend" and hasattr(old, "trend_gate") and not hasattr(old, "prior_gate")
    assert create_model("causal_tiny").num_params() == 211_209
    from wfm.hub import build_model, causal_arch

    new = mix(quantiles=(0.1, 0.9))
    arch = causal_arch(new)
    assert arch["prior"] == "mix" and arch["coarse_len"] == 32
    rebuilt = build_model({"model_kind": "causal", "name": "causal_tiny", "arch": arch})
    rebuilt.load_state_dict(new.state_dict(), strict=True)
    assert "prior" not in causal_arch(old)


def test_no_leakage_and_padding_with_coarse_tokens():
    m = randomise(mix())
    x = walks(2, 256)
    obs = torch.ones_like(x, dtype=torch.bool)
    iv = torch.tensor([120.0, 120.0])
    t = 200
    ctx = torch.tensor([t, t])
    y = x.clone()
    y[:, t:] = torch.randn(2, 256 - t) * 100
    a, b = m(x, obs, iv, ctx), m(y, obs, iv, ctx)
    off = 256 - a.point.shape[1] * 8  # fine tokens cover the last 64 values
    assert off == 192
    first_future = (t - off) // 8  # tokens before it saw only the past
    assert torch.allclose(a.point[:, :first_future], b.point[:, :first_future], atol=1e-6)
    assert not torch.allclose(a.point[:, first_future:], b.point[:, first_future:], atol=1e-3)
    obs[:, :45] = False
    y = x.clone()
    y[:, :45] = 1e3
    assert torch.allclose(m(x, obs, iv).point, m(y, obs, iv).point, atol=1e-5)


def test_forecast_uses_the_whole_context():
    m = randomise(mix())
    x = walks(2, 3000)
    base = m.forecast(x, 120.0, 24)
    y = x.clone()
    y[:, :100] += 50.0  # values far older than max_context + max_coarse * coarse_len
    assert not torch.allclose(m.forecast(y, 120.0, 24), base, atol=1e-4)  # normalisation and mean see them
    assert m.num_tokens(3000) == 8 + 16


@pytest.mark.parametrize("length", [1, 7, 13, 64, 300, 4096])
def test_any_context_length_equivariance_and_constant(length):
    m = randomise(mix(quantiles=(0.1, 0.5, 0.9)))
    x = walks(2, length)
    out = m.forecast(x, 600.0, 20)
    assert out.shape == (2, 20) and torch.isfinite(out).all()
    assert m.forecast(x, 600.0, 20, quantiles=True).shape == (2, 20, 3)
    assert torch.allclose(m.forecast(3 * x - 7, 600.0, 20), 3 * out - 7, rtol=1e-4, atol=1e-3)
    const = torch.full((1, length), 4.5)
    assert torch.allclose(m.forecast(const, 600.0, 9), const[:, :1].expand(1, 9), rtol=1e-4)


def test_seasonal_series_fresh_model_beats_persistence():
    t = torch.arange(2000, dtype=torch.float32)
    x = torch.sin(2 * torch.pi * t / 144)[None] * 10 + 0.1 * torch.randn(1, 2000)  # a day at 10 min
    m = mix()
    f = m.forecast(x[:, :1900], 600.0, 64)
    err = ((f - x[:, 1900:1964]) ** 2).sum()
    persist = ((x[:, 1899:1900] - x[:, 1900:1964]) ** 2).sum()
    assert err < 0.1 * persist


def test_mix_trains_and_the_gate_gets_gradient():
    torch.manual_seed(0)
    m = randomise(create_model("causal_tiny", depth=1, prior="mix", coarse_len=16, max_context=32)).train()
    x = walks(4, 128)
    obs = torch.ones_like(x, dtype=torch.bool)
    obs[:2, :40] = False
    loss, out, target, weight = m.loss(x, obs, torch.full((4,), 300.0), torch.full((4,), 96), scaled=True)
    assert target.shape == (4, 3, 8) and weight.shape == target.shape
    loss.backward()
    assert torch.isfinite(loss)
    # By hand from what it returns: token i's point forecast of patch i + 1, errors scaled per
    # series (the returned weight is the 0/1 mask times that scale), targets clipped at
    # TARGET_CLIP, Huber beyond HUBER_DELTA, averaged over the scored values.
    from wfm.models.causal import HUBER_DELTA as d
    from wfm.models.series_priors import TARGET_CLIP

    scored = weight > 0
    assert int(scored.sum()) == 4 * 3 * 8  # every value after the context (the hidden starts lie before the tokens)
    r = (weight.sqrt() * (out.point[:, :-1] - target.clamp(-TARGET_CLIP, TARGET_CLIP)).abs())[scored]
    by_hand = torch.where(r <= d, r * r, 2 * d * r - d * d).sum() / scored.sum()
    assert float(loss) == pytest.approx(float(by_hand), rel=1e-5)
    for name in ("head.weight", "prior_gate.weight", "prior_embed.weight", "coarse_embed.0.weight", "backtest_weight"):
        assert dict(m.named_parameters())[name].grad.abs().sum() > 0, name


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="prior"):
        create_model("causal_tiny", prior="seasonal")
    with pytest.raises(ValueError, match="estimators"):
        create_model("causal_tiny", prior="mix", estimators=("holt",))
    with pytest.raises(ValueError, match="coarse_len"):
        create_model("causal_tiny", prior="mix", coarse_len=12)
    with pytest.raises(ValueError, match="coarse_len"):
        create_model("causal_tiny", coarse_len=64)


def test_guard_falls_back_to_the_classical_mix_when_the_network_loses():
    torch.manual_seed(0)
    guarded = create_model("causal_tiny", prior="mix", coarse_len=64, guard=True).eval()
    plain = create_model("causal_tiny", prior="mix", coarse_len=64).eval()
    plain.load_state_dict({k: v for k, v in guarded.state_dict().items() if not k.startswith("guard_")})
    x = walks(2, 2000)
    # zero head and gate: both are the classical combination, bit for bit
    assert torch.equal(guarded.forecast(x, 1e-3, 8), plain.forecast(x, 1e-3, 8))
    with torch.no_grad():  # a wildly wrong correction
        torch.nn.init.normal_(guarded.head.weight, std=1.0)
        plain.head.weight.copy_(guarded.head.weight)
    ctx, future = x[:, :1992], x[:, 1992:]
    err_g = ((guarded.forecast(ctx, 1e-3, 8) - future) ** 2).mean()
    err_p = ((plain.forecast(ctx, 1e-3, 8) - future) ** 2).mean()
    persistence = ((ctx[:, -1:] - future) ** 2).mean()
    assert err_g < 3 * persistence < err_p / 10
    # no leakage: the guard's evidence is realised errors on earlier tokens only
    obs = torch.ones_like(x[:, :512], dtype=torch.bool)
    y = x[:, :512].clone()
    y[:, 400:] += 1e3 * torch.randn(2, 112)
    iv = torch.tensor([1e-3, 1e-3])
    ctx_len = torch.tensor([400, 400])
    a, b = guarded(x[:, :512], obs, iv, ctx_len), guarded(y, obs, iv, ctx_len)
    first_future = (400 - (512 - a.point.shape[1] * 8)) // 8
    assert torch.allclose(a.point[:, :first_future], b.point[:, :first_future], atol=1e-5)
    loss, *_ = guarded.train().loss(x[:, :512], obs, iv, ctx_len)
    loss.backward()
    assert torch.isfinite(loss) and guarded.head.weight.grad.abs().sum() > 0


def test_guard_weight_fixes_the_sharpness_of_the_fallback(tmp_path):
    from wfm.hub import from_pretrained
    torch.manual_seed(0)
    kw = dict(prior="mix", coarse_len=64, estimators=("last", "mean", "trend", "reversion"), backtest_origins="value")
    guarded = create_model("causal_tiny", guard=True, guard_weight=4.0, **kw).eval()
    sharp = create_model("causal_tiny", backtest_weight=4.0, **kw).eval()  # the classical combination at 4.0
    with torch.no_grad():
        guarded.backtest_weight.fill_(0.5)  # the gate's learned weight drifted; the fallback does not follow it
        guarded.guard_bias.fill_(-100.0)  # always fall back
        torch.nn.init.normal_(guarded.head.weight, std=1.0)
    x = walks(3, 300) + torch.randn(3, 300)
    assert torch.allclose(guarded.forecast(x, 1e-3, 8), sharp.forecast(x, 1e-3, 8), atol=1e-4)
    legacy = create_model("causal_tiny", guard=True, **kw).eval()  # no guard_weight: the learned weight
    legacy.load_state_dict(guarded.state_dict())
    soft = create_model("causal_tiny", backtest_weight=0.5, **kw).eval()
    assert torch.allclose(legacy.forecast(x, 1e-3, 8), soft.forecast(x, 1e-3, 8), atol=1e-4)
    guarded.save_pretrained(str(tmp_path / "m"))
    again = from_pretrained(str(tmp_path / "m"))
    assert again.guard_weight == 4.0 and torch.equal(again.forecast(x, 1e-3, 8), guarded.forecast(x, 1e-3, 8))
    with pytest.raises(ValueError, match="guard_weight"):
        create_model("causal_tiny", guard_weight=4.0, **kw)


def test_evidence_power_sharpens_the_gate_with_the_size_of_the_pooled_group(tmp_path):
    from wfm.hub import from_pretrained
    from wfm.models.groups import group_sizes
    torch.manual_seed(0)
    kw = dict(prior="mix", coarse_len=64, estimators=("last", "mean", "reversion"), backtest_origins="value",
              backtest_weight=2.0)
    x = torch.randn(8, 40) + torch.linspace(0, 1, 40)  # noise around a slowly moving level
    group = torch.tensor([0] * 6 + [1, 2])
    assert group_sizes(group).tolist() == [6] * 6 + [1, 1]
    m = create_model("causal_tiny", evidence_power=0.5, **kw).eval()
    plain = create_model("causal_tiny", **kw).eval()
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if k != "evidence_power"})
    sharp = create_model("causal_tiny", **{**kw, "backtest_weight": 2.0 * 6 ** 0.5}).eval()
    sharp.load_state_dict({k: v for k, v in plain.state_dict().items() if k != "backtest_weight"}, strict=False)
    f = m.forecast(x, 1e-3, 8, group=group)
    # the group of 6 weighs its pooled evidence as a model with weight 2 sqrt(6) does; single rows are unchanged
    assert torch.allclose(f[:6], sharp.forecast(x, 1e-3, 8, group=group)[:6], atol=1e-5)
    assert torch.allclose(f[6:], plain.forecast(x, 1e-3, 8, group=group)[6:], atol=1e-5)
    assert not torch.allclose(f[:6], plain.forecast(x, 1e-3, 8, group=group)[:6], atol=1e-4)
    assert torch.equal(m.forecast(x, 1e-3, 8), plain.forecast(x, 1e-3, 8))  # no group: nothing to sharpen
    m.train().loss(torch.randn(4, 64), torch.ones(4, 64, dtype=torch.bool), torch.full((4,), 1e-3),
                   torch.full((4,), 48), group=torch.tensor([0, 0, 0, 1]))[0].backward()
    assert m.evidence_power.grad is not None and m.evidence_power.grad.abs() > 0  # learned
    m.eval().save_pretrained(str(tmp_path / "m"))
    again = from_pretrained(str(tmp_path / "m"))
    assert again.evidence_power_init == 0.5 and torch.equal(again.forecast(x, 1e-3, 8, group=group), f)
    with pytest.raises(ValueError, match="evidence_power"):
        create_model("causal_tiny", evidence_power=0.5)


def test_check_origins_backtests_the_network_against_its_classical_fallback(tmp_path):
    from wfm.hub import from_pretrained
    torch.manual_seed(0)
    kw = dict(prior="mix", coarse_len=64, estimators=("last", "mean", "trend", "reversion"), backtest_origins="value",
              guard=True)
    m = create_model("causal_tiny", check_origins=8, **kw).eval()
    assert m.check_cuts(96, 12) == [48, 60, 72, 84]  # the latest origins, a horizon apart, half the context kept
    assert m.check_cuts(720, 30) == [480 + 30 * i for i in range(8)]
    assert m.check_cuts(16, 4) == [8, 12] and m.check_cuts(8, 8) == []
    x = walks(6, 200) + 0.3 * torch.randn(6, 200)
    plain = create_model("causal_tiny", **kw).eval()
    plain.load_state_dict(m.state_dict())
    # a network that is its own classical combination (zero head and learned gate term) passes every check
    assert torch.equal(m.forecast(x, 1e-3, 8), plain.forecast(x, 1e-3, 8))
    # a wild network the guard trusts blindly fails its checks: the classical combination is returned
    with torch.no_grad():
        torch.nn.init.normal_(m.head.weight, std=1.0)
        m.guard_bias.fill_(100.0)
    plain.load_state_dict(m.state_dict())
    _, (classical, _) = m._rollout(x, torch.full((6,), 1e-3), 8, fallback=True)
    f = m.forecast(x, 1e-3, 8)
    assert torch.allclose(f, classical) and not torch.allclose(plain.forecast(x, 1e-3, 8), classical, atol=1e-3)
    assert torch.equal(m.forecast(x, 1e-3, 8, check=False), plain.forecast(x, 1e-3, 8))  # skipped for one call
    # the fallback rolls out on its own forecasts: a guard that always falls back gives the same forecast,
    # over several autoregressive steps (the later ones batch both sequences)
    iv = torch.full((6,), 1e-3)
    with torch.no_grad():
        m.guard_bias.fill_(-100.0)
    (net, q_net), (fb, q_fb) = m._rollout(x, iv, 20, fallback=True)
    (alone, q_alone), = m._rollout(x, iv, 20)
    assert torch.allclose(net, alone, atol=1e-5) and torch.allclose(fb, alone, atol=1e-4)
    assert q_fb is None or torch.allclose(q_fb, q_alone, atol=1e-4)
    with torch.no_grad():
        m.guard_bias.fill_(100.0)
    q = m.forecast(x, 1e-3, 8, quantiles=True) if m.quantile_levels else None
    assert q is None or q.shape == (6, 8, len(m.quantile_levels))
    # the checks see only the past: values after a cut are its targets, never its inputs
    seen = []
    rollout = m._rollout
    m._rollout = lambda ctx, *a, **k: (seen.append(ctx.shape[1]), rollout(ctx, *a, **k))[1]
    m.forecast(x, 1e-3, 8)
    del m._rollout
    assert sorted(set(seen)) == sorted(set(m.check_cuts(200, 8)) | {200})
    # a group pools its checks and decides once for all its rows
    keep, = m._network_passes_check(x, torch.full((6,), 1e-3), 8, torch.tensor([0, 0, 0, 1, 1, 1]))
    assert len(set(keep[:3].tolist())) == 1 and len(set(keep[3:].tolist())) == 1
    # too short a context (no cut, or one: a test needs two checks): the network's forecast stands
    assert m.check_cuts(12, 8) == [] and m.check_cuts(20, 8) == [12]
    for short in (12, 20):
        assert torch.equal(m.forecast(x[:, :short], 1e-3, 8), plain.forecast(x[:, :short], 1e-3, 8))
    m.save_pretrained(str(tmp_path / "m"))
    again = from_pretrained(str(tmp_path / "m"))
    assert again.check_origins == 8 and torch.equal(again.forecast(x, 1e-3, 8), f)
    with pytest.raises(ValueError, match="check_origins"):
        create_model("causal_tiny", prior="mix", check_origins=4)


def test_rollout_reuses_the_first_steps_backtests_to_the_bit():
    """A rollout's appended values are no evidence, so with origins at every value (and no window)
    every later step's backtest errors are the first step's, an appended patch's the last given
    patch's: reusing them gives the same forecasts, to the bit, for the network, its classical
    fallback, quantiles, groups and both readings of a long context. Where they are not the same
    (origins at patch ends, a window) nothing is reused."""
    from wfm.models.series_priors import backtest_mse_values

    kw = dict(guard=True, check_origins=8, estimators=("last", "mean", "trend", "reversion", "mean16"),
              quantiles=(0.1, 0.5, 0.9))
    x = walks(6, 90) + 0.3 * torch.randn(6, 90)
    iv, group = torch.full((6,), 60.0), torch.tensor([0, 0, 1, 1, 1, 2])
    # the property itself: appended values change nothing of the given part's backtests
    z, obs = torch.cat([torch.zeros(6, 6), x], dim=1), torch.ones(6, 96, dtype=torch.bool)
    obs[:, :6] = False  # left padding
    given = torch.full((6,), 96)
    longer = torch.cat([z, 5.0 * torch.randn(6, 24)], dim=1)
    both = backtest_mse_values(longer, torch.cat([obs, torch.ones(6, 24, dtype=torch.bool)], 1), iv, 8, 8,
                               ("last", "mean", "trend"), 0, given)
    alone = backtest_mse_values(z, obs, iv, 8, 8, ("last", "mean", "trend"), 0, given)
    assert torch.equal(both[:, :12], alone) and torch.equal(both[:, 12:], alone[:, -1:].expand(-1, 3, -1, -1))
    for origins, window, reused in (("value", 0, True), ("value", 4, False), ("patch", 0, False)):
        m = randomise(mix(backtest_origins=origins, backtest_window=window, **kw))
        assert m.has_coarse(90)
        calls = []
        forward = m.forward
        m.forward = lambda *a, **k: calls.append(k.get("backtest") is not None) or forward(*a, **k)
        for coarse in (True, False):
            calls.clear()
            fast = m._rollout(x, iv, 20, group, fallback=True, coarse=coarse)
            assert calls == [False] + [reused] * 2  # 20 ahead: three steps of a patch
            slow = m._rollout(x, iv, 20, group, fallback=True, coarse=coarse, reuse=False)
            for (p1, q1), (p2, q2) in zip(fast, slow):
                assert torch.equal(p1, p2) and torch.equal(q1, q2)


def test_propagate_quantiles_widens_later_patches_by_the_uncertainty_before_them(tmp_path):
    """``propagate_quantiles``: the point forecast and the first patch's quantiles stay as they were,
    to the bit; later patches' outer quantiles move out by the quadrature rule of
    ``spread_bounds``, never in; ordered quantiles stay ordered; without ``quantiles=True`` or with
    ``check=False`` nothing changes; the option survives ``save_pretrained``."""
    from wfm.hub import from_pretrained
    from wfm.models.causal_forecast import spread_bounds

    # the rule on numbers: own distance 1 and a shift of 1 -> sqrt(2) in all; no shift, or a shift
    # away from the bound, adds nothing
    point, q = torch.zeros(1, 3), torch.tensor([[[-1.0, 0.0, 2.0]] * 3])
    lo, hi = spread_bounds(point, q, torch.tensor([[-1.0, 0.0, 1.0]]), torch.tensor([[2.0, 0.0, -1.0]]),
                           (0.1, 0.5, 0.9))
    assert torch.allclose(lo, torch.tensor([[2 ** 0.5 - 1, 0.0, 0.0]]))
    assert torch.allclose(hi, torch.tensor([[8 ** 0.5 - 2, 0.0, 0.0]]))

    kw = dict(guard=True, check_origins=8, estimators=("last", "mean", "trend", "reversion"),
              backtest_origins="value", quantiles=(0.1, 0.5, 0.9))
    m = randomise(mix(propagate_quantiles=True, **kw))
    plain = mix(**kw)
    plain.load_state_dict(m.state_dict())
    x = walks(5, 120)
    for ctx in (x, x[:, :20]):  # with checks, and too short for two
        assert torch.equal(m.forecast(ctx, 1e-3, 24), plain.forecast(ctx, 1e-3, 24))
        wide, narrow = m.forecast(ctx, 1e-3, 24, quantiles=True), plain.forecast(ctx, 1e-3, 24, quantiles=True)
        assert torch.equal(wide[:, :8], narrow[:, :8])  # the first patch has nothing before it
        assert (wide[..., 0] <= narrow[..., 0] + 1e-6).all() and (wide[..., 2] >= narrow[..., 2] - 1e-6).all()
        assert (wide[:, 8:, 0] < narrow[:, 8:, 0] - 1e-6).any()  # a random network does move on its bounds
        assert torch.equal(wide[..., 1], narrow[..., 1])
        ordered = (narrow.diff(dim=-1) >= 0).all(dim=-1)  # a random head need not be; where it is, it stays
        assert ordered.any() and (wide.diff(dim=-1) >= 0).all(dim=-1)[ordered].all()
        assert torch.equal(m.forecast(ctx, 1e-3, 24, quantiles=True, check=False),
                           plain.forecast(ctx, 1e-3, 24, quantiles=True, check=False))
        point, both = m.forecast_with_quantiles(ctx, 1e-3, 24)  # one run, what the two calls return
        # (to float rounding: the point path runs in a larger batch with the bounds' sequences, and
        # some CPU matmul kernels round differently by batch size)
        torch.testing.assert_close(point, m.forecast(ctx, 1e-3, 24), rtol=1e-6, atol=1e-6)
        assert torch.equal(both, wide)
    m.save_pretrained(str(tmp_path / "m"))
    assert from_pretrained(str(tmp_path / "m")).propagate_quantiles
    with pytest.raises(ValueError, match="propagate_quantiles"):
        mix(propagate_quantiles=True, guard=True)


def test_coarse_blend_averages_the_readings_with_and_without_coarse_tokens_each_checked(tmp_path):
    """``coarse_blend``: past ``max_context`` values the forecast is the mean of the network's two
    readings of the context, with its coarse tokens and without them (the last ``max_context``
    values as tokens), each replaced by the classical combination where its own checks fail."""
    from wfm.hub import from_pretrained
    kw = dict(guard=True, check_origins=8, estimators=("last", "mean", "trend", "reversion"), backtest_origins="value",
              quantiles=(0.1, 0.5, 0.9))
    m = randomise(mix(coarse_blend=True, **kw))
    plain = mix(**kw)
    plain.load_state_dict(m.state_dict())
    x, iv = walks(4, 160) + 0.3 * torch.randn(4, 160), torch.full((4,), 1e-3)
    assert m.has_coarse(160) and not m.has_coarse(64) and m.has_coarse(65)  # 65 pads to 72 > 64
    # no coarse tokens in the context: one reading, the same forecast
    assert torch.equal(m.forecast(x[:, -64:], 1e-3, 8), plain.forecast(x[:, -64:], 1e-3, 8))
    (with_c, q_c), = m._rollout(x, iv, 8)
    (without, q_s), = m._rollout(x, iv, 8, coarse=False)
    assert not torch.allclose(with_c, without)  # the coarse tokens change this network's forecast
    # a reading whose checks pass is the network's; here both pass: the plain mean of the two
    keep_c, keep_s = m._network_passes_check(x, iv, 8, None, [True, False])
    assert keep_c.all() and keep_s.all()
    assert torch.allclose(m.forecast(x, 1e-3, 8), 0.5 * (with_c + without), atol=1e-6)
    assert torch.allclose(m.forecast(x, 1e-3, 8, quantiles=True), 0.5 * (q_c + q_s), atol=1e-6)
    # a reading far off on its checks fails them: that half is the classical combination
    rollout = m._rollout

    def coarse_off_by_100(ctx, *a, coarse=True, **k):
        runs = rollout(ctx, *a, coarse=coarse, **k)
        return [(runs[0][0] + (100.0 if coarse else 0.0), runs[0][1])] + runs[1:]
    m._rollout = coarse_off_by_100
    keep_c, keep_s = m._network_passes_check(x, iv, 8, None, [True, False])
    assert not keep_c.any() and keep_s.all()
    (_, (classical, _)) = rollout(x, iv, 8, fallback=True)
    assert torch.allclose(m.forecast(x, 1e-3, 8), 0.5 * (classical + without), atol=1e-6)
    del m._rollout
    # a group decides once for all its rows; check=False skips the blend with the checks
    keep_c, keep_s = m._network_passes_check(x, iv, 8, torch.tensor([0, 0, 1, 1]), [True, False])
    assert keep_s[0] == keep_s[1] and keep_s[2] == keep_s[3]
    plain.load_state_dict(m.state_dict())
    assert torch.equal(m.forecast(x, 1e-3, 8, check=False), plain.forecast(x, 1e-3, 8, check=False))
    m.save_pretrained(str(tmp_path / "m"))
    again = from_pretrained(str(tmp_path / "m"))
    assert again.coarse_blend and torch.equal(again.forecast(x, 1e-3, 8), m.forecast(x, 1e-3, 8))
    with pytest.raises(ValueError, match="coarse_blend"):
        create_model("causal_tiny", prior="mix", coarse_blend=True)


def test_white_limit_gives_the_mean_to_pooled_white_noise_where_no_check_fits(tmp_path):
    """``white_limit``: where the context is too short for two checks, a window's channels whose
    pooled lag-1 autocorrelation says white noise get the context mean (quantiles shifted with it);
    a drifting window, a lone short series (too little evidence) and a context long enough to
    check keep the network."""
    from wfm.hub import from_pretrained
    from wfm.models.evidence import looks_white
    torch.manual_seed(0)
    kw = dict(prior="mix", coarse_len=64, estimators=("last", "mean", "trend", "reversion"), backtest_origins="value",
              guard=True, check_origins=8, quantiles=(0.1, 0.5, 0.9))
    plain = create_model("causal_tiny", **kw).eval()
    m = create_model("causal_tiny", white_limit=0.5, **kw).eval()
    with torch.no_grad():
        torch.nn.init.normal_(plain.head.weight, std=0.5)  # a network that does not forecast the mean
    m.load_state_dict(plain.state_dict())
    noise = 3.0 + torch.randn(64, 8)  # one window of 64 channels: white noise around a level
    ramp = torch.linspace(0, 1, 8).expand(64, 8) * torch.rand(64, 1) + 0.05 * torch.randn(64, 8)  # drifting channels
    x, group = torch.cat([noise, ramp]), torch.arange(128) // 64
    white = looks_white(x, 0.5, group)
    assert white[:64].all() and not white[64:].any()
    # at L values white noise scores about -1/L and a straight line exactly 1 - 3/L (scaled: 0 and 1)
    lines = torch.arange(8.0) * torch.rand(16, 1)
    one = torch.zeros(16, dtype=torch.long)
    assert not looks_white(lines, 0.5, one).any()
    # 16 lines: u = 1 exactly, and one standard error 1 / sqrt(112) / 0.75 = 0.126 above it
    assert looks_white(lines, 1.2, one).all() and not looks_white(lines, 1.1, one).any()
    f, net = m.forecast(x, 1e-3, 8, group=group), plain.forecast(x, 1e-3, 8, group=group)
    # The mean to the bit of the ``mean`` baseline (a tie scores a tie), and the network elsewhere.
    assert torch.equal(f[:64], ContextMean().forecast(x[:64], torch.full((64,), 1e-3), 8)) and torch.equal(f[64:], net[64:])
    assert not torch.allclose(net[:64], f[:64], atol=1e-2)
    q, q_net = m.forecast(x, 1e-3, 8, group=group, quantiles=True), plain.forecast(x, 1e-3, 8, group=group, quantiles=True)
    assert torch.allclose(q - f[..., None], q_net - net[..., None], atol=1e-5)  # the band moves with the point
    # the statistic written out, for a group of 12 channels (77 lag-1 products: enough to decide)
    dev = noise - noise.mean(dim=1, keepdim=True)
    lag, power = (dev[:, 1:] * dev[:, :-1]).sum(1), (dev * dev).sum(1)
    twelve = torch.arange(64) // 12
    pooled = torch.zeros(6).index_add_(0, twelve, lag) / torch.zeros(6).index_add_(0, twelve, power)
    pairs = torch.bincount(twelve).float() * 7
    expect = ((pooled + 1 / 8) / 0.75 + 1 / (pairs.sqrt() * 0.75) <= 0.5) & (pairs >= 64)
    assert torch.equal(looks_white(noise, 0.5, twelve), expect[twelve]) and not expect[-1]  # the last group: 4 rows
    # lone series of 8 values (7 products each) never decide; check=False skips the rule for one call
    assert not looks_white(noise, 0.5).any()
    assert torch.equal(m.forecast(noise, 1e-3, 8), plain.forecast(noise, 1e-3, 8))
    assert torch.equal(m.forecast(x, 1e-3, 8, group=group, check=False), plain.forecast(x, 1e-3, 8, group=group, check=False))
    # a context long enough for the checks: they decide, not this rule
    long = 3.0 + torch.randn(64, 64)
    g = torch.zeros(64, dtype=torch.long)
    assert len(m.check_cuts(64, 8)) >= 2 and looks_white(long, 0.5, g).all()
    assert torch.equal(m.forecast(long, 1e-3, 8, group=g), plain.forecast(long, 1e-3, 8, group=g))
    m.save_pretrained(str(tmp_path / "m"))
    again = from_pretrained(str(tmp_path / "m"))
    assert again.white_limit == 0.5 and torch.equal(again.forecast(x, 1e-3, 8, group=group), f)
    with pytest.raises(ValueError, match="white_limit"):
        create_model("causal_tiny", prior="mix", guard=True, white_limit=0.5)


def test_white_level_gives_the_mean_to_long_white_contexts_and_keeps_drift_and_hidden_cycles(tmp_path):
    """``white_level``: where the checks fit, a row whose autocorrelations at lags 1-8 are jointly
    white noise's and whose block means hold gets ``white_limit``'s mean; a level that drifts under
    its noise (lag-1 nearly white, block means not), a Doppler turn of a quarter cycle a step (lag 1
    exactly white, lag 2 not) and a lone series of 64 values (63 products: too few) keep the
    forecast to the bit."""
    from wfm.hub import from_pretrained
    from wfm.models.evidence import level_holds, white_beyond_doubt, whiteness_score

    g = torch.Generator().manual_seed(0)
    kw = dict(prior="mix", coarse_len=64, estimators=("last", "mean", "trend", "reversion"), backtest_origins="value",
              guard=True, check_origins=8, quantiles=(0.1, 0.5, 0.9), white_limit=0.5)
    off = create_model("causal_tiny", **kw).eval()
    with torch.no_grad():
        torch.nn.init.normal_(off.head.weight, std=0.5)  # a network that does not forecast the mean
    on = create_model("causal_tiny", white_level=True, **kw).eval()
    on.load_state_dict(off.state_dict())
    n, L = 400, 256
    white = 50 + torch.randn(n, L, generator=g, dtype=torch.float64)
    drift = 50 + 0.1 * torch.randn(n, L, generator=g, dtype=torch.float64).cumsum(1) + torch.randn(n, L, generator=g,
                                                                                                    dtype=torch.float64)
    turn = 50 + 3 * torch.cos(math.pi / 2 * torch.arange(L) + 6 * torch.rand(n, 1, generator=g)) + torch.randn(
        n, L, generator=g, dtype=torch.float64)
    assert white_beyond_doubt(white).double().mean() > 0.85
    assert white_beyond_doubt(drift).double().mean() < 0.1 and level_holds(drift).double().mean() < 0.1
    assert whiteness_score(turn)[0].abs().mean() < 0.05 and not white_beyond_doubt(turn).any()  # lag 1 says white
    assert not white_beyond_doubt(white[:, :64]).any()  # 63 lag-1 products decide nothing
    rows = torch.cat([white[:4], drift[:4], turn[:4]]).float()
    passed = white_beyond_doubt(rows)
    assert len(on.check_cuts(L, 8)) >= 2 and passed[:4].any() and not passed[4:].any()
    f, base = on.forecast(rows, 1e-3, 8), off.forecast(rows, 1e-3, 8)
    assert torch.equal(f[passed], ContextMean().forecast(rows[passed], torch.full((int(passed.sum()),), 1e-3), 8))
    assert torch.equal(f[~passed], base[~passed]) and not torch.allclose(f[passed], base[passed], atol=1e-3)
    short = rows[:, -16:]  # too short for two checks: white_limit's own rule, unchanged
    assert torch.equal(on.forecast(short, 1e-3, 8), off.forecast(short, 1e-3, 8))
    # 256 hourly values hold a week in part: a white stretch of it (a quiet night) says nothing of
    # what the week does next, so no mean
    assert on.context_seasons(L, 8, torch.tensor([3600.0]))[1].all()
    assert torch.equal(on.forecast(rows, 3600.0, 8), off.forecast(rows, 3600.0, 8))
    on.save_pretrained(str(tmp_path / "m"))
    assert from_pretrained(str(tmp_path / "m")).white_level and not off.white_level
    with pytest.raises(ValueError, match="white_level .* needs white_limit"):
        create_model("causal_tiny", prior="mix", guard=True, check_origins=8, white_level=True)


def test_white_shrink_gives_zero_mean_noise_about_zero_and_a_level_its_mean(tmp_path):
    """``white_shrink``: a white window whose channels are zero-mean noise (CSI parts of random
    phase) gets its means shrunk to about zero, which beats the plain mean; a window whose levels
    stand out of their noise keeps the context mean to the bit."""
    from wfm.hub import from_pretrained
    from wfm.models.evidence import shrunk_mean

    torch.manual_seed(0)
    kw = dict(prior="mix", coarse_len=64, estimators=("last", "mean", "trend", "reversion"), backtest_origins="value",
              guard=True, check_origins=8, white_limit=0.5)
    plain = create_model("causal_tiny", **kw).eval()
    m = create_model("causal_tiny", white_shrink=True, **kw).eval()
    m.load_state_dict(plain.state_dict())
    g = torch.Generator().manual_seed(1)
    power = torch.rand(128, 1, generator=g) * 4 + 0.1  # channels of very different power
    zero = power.sqrt() * torch.randn(128, 16, generator=g)  # zero-mean: context 8, truth 8
    level = 5 * power + power.sqrt() * torch.randn(128, 16, generator=g)
    group = torch.arange(128) // 64  # two windows of 64 channels each
    for x, shrinks in ((zero, True), (level, False)):
        ctx, tgt = x[:, :8], x[:, 8:]
        f, f_plain = m.forecast(ctx, 1e-3, 8, group=group), plain.forecast(ctx, 1e-3, 8, group=group)
        assert torch.equal(f_plain, ContextMean().forecast(ctx, torch.full((128,), 1e-3), 8))  # both windows white
        if shrinks:
            assert f.abs().mean() < 0.3 * f_plain.abs().mean()
            assert ((f - tgt) ** 2).mean() < ((f_plain - tgt) ** 2).mean()
        else:
            assert torch.equal(f, f_plain)
    # by hand: the group's mean square of the means against its noise, and the posterior mean
    ctx = zero[:64, :8].double()
    mm, se2 = ctx.mean(1), ctx.var(1) / 8
    tau2 = max(float((mm ** 2 - se2).mean()), 0.0)
    assert (mm ** 2).sum() <= (1 + (2 * (1 + 1 / 7) / ((se2.sum() ** 2) / (se2 ** 2).sum())).sqrt()) * se2.sum()
    assert torch.allclose(shrunk_mean(zero[:64, :8], torch.zeros(64, dtype=torch.long))[:, 0], mm * tau2 / (tau2 + se2))
    m.save_pretrained(str(tmp_path / "m"))
    assert from_pretrained(str(tmp_path / "m")).white_shrink is True
    with pytest.raises(ValueError, match="white_shrink"):
        create_model("causal_tiny", prior="mix", guard=True, check_origins=8, white_shrink=True)


def test_check_threshold_is_the_student_t_quantile_at_two_sigma():
    from wfm.models.evidence import CHECK_Z, check_threshold
    stats = pytest.importorskip("scipy.stats")
    dof = torch.tensor([1.0, 2.0, 3.0, 7.0, 10.0, 11.0, 20.0, 60.0, 500.0])
    want = torch.tensor([stats.t.ppf(stats.norm.cdf(CHECK_Z), float(v)) for v in dof], dtype=torch.float64)
    got = check_threshold(dof)
    assert torch.allclose(got, want, rtol=2e-3)
    assert (got[1:] < got[:-1]).all() and got[-1] > CHECK_Z  # stricter with fewer checks, 2 sigma in the limit


def test_reversion_prior_is_the_ar1_forecast_around_the_mean():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 48, generator=g)
    x[1] = torch.randn(48, generator=g).cumsum(0)  # a random walk: phi near 1, close to the last value
    obs = torch.ones_like(x, dtype=torch.bool)
    obs[0, :9] = False  # left padding
    xm = x * obs
    est, avail = classical_priors(xm, obs, torch.tensor([1.0, 1.0]), 8, 12, ("last", "mean", "reversion"))
    j, o = 4, 39
    for b in range(2):
        seen = x[b, :o + 1][obs[b, :o + 1]].double()
        d = seen - seen.mean()
        phi = float(((d[1:] * d[:-1]).sum() / (d * d).sum()).clamp(0, 1))
        want = seen.mean() + phi ** torch.arange(1, 13, dtype=torch.float64) * (seen[-1] - seen.mean())
        assert avail[b, j, 2] and torch.allclose(est[b, j, 2].double(), want, atol=1e-4), b
    # white noise: phi clips to ~0 and the estimate is the mean; the walk's first step is near its last value
    assert torch.allclose(est[0, j, 2], est[0, j, 1], atol=0.05 * float(x[0].std()))
    assert abs(float(est[1, j, 2, 0] - est[1, j, 0, 0])) < abs(float(est[1, j, 1, 0] - est[1, j, 0, 0]))


def test_ar_prior_is_linear_prediction_fitted_at_every_origin():
    """The ``ar`` estimator at origin ``o`` is the reference linear prediction (forward-backward least
    squares, ``wfm.models.linear_prediction``) of the order its earlier forecasts favour, fitted to
    the values up to ``o`` only; a window's channels pool one recursion; padding is ignored."""
    from wfm.models.linear_prediction import extrapolate, fit_coefficients
    from wfm.models.series_priors import AR_ORDERS, ar_prior

    t = torch.arange(64, dtype=torch.float64)
    tone = torch.stack([torch.cos(0.3 * t + 0.5), torch.sin(0.3 * t + 0.5)]).float()  # one complex exponential
    obs = torch.ones_like(tone, dtype=torch.bool)
    origins = torch.tensor([5, 20, 63])
    est, avail = ar_prior(tone, obs, origins, 8, group=torch.tensor([0, 0]))
    ahead = origins[:, None] + 1 + torch.arange(8)
    truth = torch.stack([torch.cos(0.3 * ahead + 0.5), torch.sin(0.3 * ahead + 0.5)]).float()
    assert avail.all() and torch.allclose(est[:, 1:], truth[:, 1:], atol=1e-3)  # pooled: 2 rows fit order 2 by origin 20

    g = torch.Generator().manual_seed(5)
    x = (torch.randn(3, 96, generator=g).cumsum(dim=1) * 0.2 + torch.randn(3, 96, generator=g))
    x = x - x.mean(dim=1, keepdim=True)
    obs = torch.ones_like(x, dtype=torch.bool)
    o = torch.tensor([40, 95])
    est, avail = ar_prior(x, obs, o, 6)
    assert avail.all()
    for b in range(3):
        for i, origin in enumerate(o.tolist()):
            seen = x[b, :origin + 1].double()[None, None]
            refs = [extrapolate(seen, fit_coefficients(seen, k, 1e-6), 6)[0, 0] for k in AR_ORDERS]
            assert min(float((r - est[b, i].double()).abs().max()) for r in refs) < 1e-4, (b, origin)
    y = x.clone()
    y[:, 41:] = 100.0  # only the future of origin 40 changes
    assert torch.equal(ar_prior(y, obs, o[:1], 6)[0], est[:, :1])
    pad = torch.zeros(3, 106)
    pad[:, 10:] = x
    pobs = torch.zeros_like(pad, dtype=torch.bool)
    pobs[:, 10:] = True
    assert torch.allclose(ar_prior(pad, pobs, o + 10, 6)[0], est, atol=1e-5)  # left padding ignored
    first = ar_prior(x, obs, torch.tensor([0, 1]), 6)[1]
    assert not first[:, 0].any()  # one value: nothing to fit
    noise = torch.randn(4, 64, generator=g)
    e, _ = ar_prior(noise, torch.ones_like(noise, dtype=torch.bool), torch.arange(64), 8)
    bound = 2 * noise.abs().cummax(dim=1).values[..., None]
    assert (e.abs() <= bound + 1e-6).all()  # never beyond twice the largest value so far


def test_ar_given_runs_the_recursion_of_the_given_context_past_it_and_reads_no_appended_value_as_evidence(monkeypatch):
    """``ar_fit(given=)``: origins before ``given`` are as without it; past it, the estimate is the
    recursion fitted and chosen on the values before ``given``, run from the values as they stand
    (what is appended moves the history, never the coefficients or the order), the same carried
    (``since``) as refitted; and the release's bearing through zero, whose second patch the refit on
    its own forecast sent up to 165 degrees, continues down with ``ar_given``."""
    from wfm.hub import from_pretrained
    from wfm.models.linear_prediction import extrapolate
    from wfm.models.series_priors import AR_FITS, ar_fit

    t = torch.arange(72, dtype=torch.float64)
    wave = torch.stack([torch.cos(0.2 * t), torch.cos(0.31 * t + 1.0)])  # each an exact AR(2)
    obs = torch.ones_like(wave, dtype=torch.bool)
    bent = wave.clone()
    bent[:, 48:56] += torch.linspace(0.0, 0.8, 8, dtype=torch.float64)  # a forecast patch that bends away
    given = torch.full((2,), 48)
    for length in (72, 2 * AR_FITS + 40):  # every value refitted; a grid
        y = torch.nn.functional.pad(bent[None], (length - 72, 0), mode="replicate")[0] if length > 72 else bent
        g = given + (length - 72)
        o = torch.arange(length)
        cut, avail, _ = ar_fit(y, torch.ones_like(y, dtype=torch.bool), o, 8, given=g)
        early, _, _ = ar_fit(y[:, :int(g[0])], torch.ones_like(y[:, :int(g[0])], dtype=torch.bool),
                             torch.arange(int(g[0])), 8)
        torch.testing.assert_close(cut[:, :int(g[0])], early, rtol=0, atol=0)
        assert avail[:, int(g[0]):].all()
        if length == 72:  # order 2 alone: the fitted recursion is the waves' own, exact from any history
            from wfm.models import series_priors

            monkeypatch.setattr(series_priors, "AR_ORDERS", (2,))
            cut, _, _ = ar_fit(y, torch.ones_like(y, dtype=torch.bool), o, 8, given=g)
            coef = torch.stack([2 * torch.cos(torch.tensor([0.2, 0.31], dtype=torch.float64)),
                                -torch.ones(2, dtype=torch.float64)], dim=1)
            want = extrapolate(y[:, None, :56], coef, 8)[:, 0]
            torch.testing.assert_close(cut[:, 55], want, rtol=1e-3, atol=1e-3)
            # refitted on the bent patch (no given), the recursion is no longer the waves'
            assert (ar_fit(y, obs, o, 8)[0][:, 55] - want).abs().max() > 1e-2
            monkeypatch.undo()
    rows = torch.randn(3, 72, generator=torch.Generator().manual_seed(4), dtype=torch.float64).cumsum(dim=1)
    each = torch.tensor([30, 48, 64])  # a training batch: each row its own context length
    est, _, _ = ar_fit(rows, torch.ones_like(rows, dtype=torch.bool), torch.arange(72), 8, given=each)
    for i in range(3):
        alone, _, _ = ar_fit(rows[i:i + 1], torch.ones_like(rows[i:i + 1], dtype=torch.bool), torch.arange(72), 8,
                             given=each[i:i + 1])
        torch.testing.assert_close(est[i:i + 1], alone, rtol=1e-9, atol=1e-9)
    _, _, known = ar_fit(bent[:, :48], obs[:, :48], torch.arange(48), 8)
    whole, _, _ = ar_fit(bent, obs, torch.arange(48, 72), 8, given=given)
    part, _, _ = ar_fit(bent, obs, torch.arange(48, 72), 8, since=48, known=known, given=given)
    torch.testing.assert_close(part, whole, rtol=1e-6, atol=1e-6)

    model = from_pretrained("checkpoints/causal-tiny-catalog-cpu").eval()
    az = torch.rad2deg(torch.atan2(15.0 * (7.0 - 0.1 * torch.arange(80.0)), torch.tensor(20.0)))
    with torch.no_grad():
        model.ar_given = False
        before = model.forecast(az[:64], 0.1, 16)
        model.ar_given = True
        after = model.forecast(az[:64], 0.1, 16)
    assert before.max() > 100  # the explosion this option removes
    assert (after[8:] - az[72:]).abs().max() < 15 and (after[8:].diff() < 0).all()  # measured: 10.2 (before: 199)
    with pytest.raises(ValueError, match="ar_given .* needs 'ar'"):
        mix(ar_given=True)


def test_ar_prior_refits_a_long_series_at_most_ar_fits_times():
    """Past ``AR_FITS`` values, ``ar`` refits every position of the start and then on a coarser
    grid: an origin runs the recursion of the latest refit at or before it, from its own last
    values (the reference fit to the values up to that refit), and a tone is still continued."""
    from wfm.models.linear_prediction import extrapolate, fit_coefficients
    from wfm.models.series_priors import AR_FITS, AR_ORDERS, ar_prior

    length = 4 * AR_FITS
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, length, generator=g, dtype=torch.float64).cumsum(dim=1) * 0.05
    x = ((x - x.mean(dim=1, keepdim=True)) / x.std(dim=1, keepdim=True)).float()
    obs = torch.ones_like(x, dtype=torch.bool)
    dense = AR_FITS // 2
    stride = -(-(length - dense) // (AR_FITS - dense))
    origins = torch.tensor([dense + stride, dense + stride + 1, length - 1])  # on the grid, just after it, the end
    est, avail = ar_prior(x, obs, origins, 6)
    assert avail.all()
    for b in range(2):
        for i, origin in enumerate(origins.tolist()):
            fit = dense + (origin - dense) // stride * stride  # the latest refit
            seen = x[b, :fit + 1].double()[None, None]
            hist = x[b, :origin + 1].double()[None, None]
            refs = [extrapolate(hist, fit_coefficients(seen, k, 1e-6), 6)[0, 0] for k in AR_ORDERS]
            assert min(float((r - est[b, i].double()).abs().max()) for r in refs) < 1e-4, (b, origin)
    t = torch.arange(length, dtype=torch.float64)
    tone = torch.cos(0.05 * t + 0.3)[None].float()
    est, _ = ar_prior(tone, torch.ones_like(tone, dtype=torch.bool), torch.tensor([length - 9]), 8)
    assert torch.allclose(est[0, 0], tone[0, -8:], atol=1e-3)


def test_a_fresh_mix_with_ar_continues_the_tones_of_a_pooled_window():
    """Four channels of one window carry the same two Doppler tones (real and imaginary parts as
    rows): the ``ar`` estimator's backtest is near zero, so a fresh mix (the inverse-MSE
    combination) follows it, where persistence and the mean cannot; the group pools one fit."""
    t = torch.arange(48, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    amp = torch.randn(4, 2, 2, generator=g, dtype=torch.float64)
    x = sum(torch.cos(w * t + amp[:, k, :1]) * amp[:, k, 1:] for k, w in enumerate((0.21, 0.47)))  # [4, 48]
    x = torch.cat([x, sum(torch.sin(w * t + amp[:, k, :1]) * amp[:, k, 1:] for k, w in enumerate((0.21, 0.47)))])
    group = torch.zeros(8, dtype=torch.long)
    ctx, future = x[:, :40].float(), x[:, 40:]
    kw = dict(prior="mix", backtest_origins="value", backtest_weight=4.0)  # the shipped model's sharpness
    m = create_model("causal_tiny", estimators=("last", "mean", "ar"), **kw).eval()
    plain = create_model("causal_tiny", estimators=("last", "mean"), **kw).eval()
    with torch.no_grad():
        err_ar = (m.forecast(ctx, 1e-3, 8, group=group).double() - future).pow(2).mean()
        err_plain = (plain.forecast(ctx, 1e-3, 8, group=group).double() - future).pow(2).mean()
    power = future.pow(2).mean()  # measured: -26 dB with ar (its backtest error floors at the prior's pseudo-count), 0 without
    assert err_ar < 0.01 * power and err_plain > 0.5 * power


def test_a_rollout_fits_ar_only_on_its_appended_patches():
    """A rollout's later passes keep the first pass's ``ar`` estimates at the given patch ends and
    its orders' errors at the context's end (``ArCarry``), and fit only the appended patches
    (``ar_fit(since=)``): the same estimates as fitting the whole sequence, so the same forecast;
    a fresh guarded mix with ``ar`` continues two tones for three patches, one without cannot."""
    from wfm.models.series_priors import AR_FITS, ar_fit

    g = torch.Generator().manual_seed(1)
    for length, group in ((48, torch.tensor([0, 0, 1])), (2 * AR_FITS, None)):  # every value refitted; a grid
        x = torch.randn(3, length + 24, generator=g, dtype=torch.float64).cumsum(dim=1) * 0.1
        x = (x + torch.randn(3, length + 24, generator=g, dtype=torch.float64)).float()
        obs = torch.ones_like(x, dtype=torch.bool)
        obs[0, :5] = False
        est0, avail0, known = ar_fit(x[:, :length], obs[:, :length], torch.arange(length), 8, group)
        whole, avail, _ = ar_fit(x, obs, torch.arange(length + 24), 8, group)
        more = torch.arange(length, length + 24)
        part, apart, _ = ar_fit(x, obs, more, 8, group, since=length, known=known)
        if length <= AR_FITS:
            torch.testing.assert_close(est0, whole[:, :length], rtol=0, atol=0)  # appending moves no fit
            torch.testing.assert_close(part, whole[:, length:], rtol=1e-6, atol=1e-6)
            assert torch.equal(apart, avail[:, length:])
        else:  # the whole series' grid (its stride) depends on its length: the same orders, refits nearby
            assert (part - whole[:, length:]).abs().mean() < 0.05 * whole[:, length:].abs().mean()
    # A grid coarser than the appended patch (stride 32 at 4,104 values): the first new origins run
    # the refit before ``since - ahead``, kept for them.
    x = torch.randn(2, 4104, generator=g, dtype=torch.float64).cumsum(dim=1).float() * 0.02
    obs = torch.ones_like(x, dtype=torch.bool)
    _, _, known = ar_fit(x[:, :4088], obs[:, :4088], torch.tensor([4087]), 8)
    whole, _, _ = ar_fit(x, obs, torch.arange(4088, 4104), 8)
    part, apart, _ = ar_fit(x, obs, torch.arange(4088, 4104), 8, since=4088, known=known)
    assert apart.all() and (part - whole).abs().mean() < 0.05 * whole.abs().mean()
    y = x.clone()
    y[:, 4096:] += 1.0  # only the future of origins 4088 .. 4095 changes
    early, _, _ = ar_fit(y, obs, torch.arange(4088, 4096), 8, since=4088, known=known)
    assert torch.equal(early, part[:, :8])

    t = torch.arange(72, dtype=torch.float64)
    amp = torch.randn(3, 2, 2, generator=g, dtype=torch.float64)
    tones = sum(torch.cos(w * t + amp[:, k, :1]) * amp[:, k, 1:] for k, w in enumerate((0.17, 0.41)))  # [3, 72]
    ctx, future, group = tones[:, :48].float(), tones[:, 48:], torch.zeros(3, dtype=torch.long)
    kw = dict(prior="mix", backtest_origins="value", backtest_weight=4.0, guard=True)
    m = create_model("causal_tiny", estimators=("last", "mean", "ar"), **kw).eval()
    plain = create_model("causal_tiny", estimators=("last", "mean"), **kw).eval()
    iv = torch.full((3,), 1e-3)
    with torch.no_grad():
        carried = m._rollout(ctx, iv, 24, group, fallback=True)  # three patches of 8: two carried passes
        refitted = m._rollout(ctx, iv, 24, group, fallback=True, reuse=False)  # (with the fallback: two sequences)
        without = plain._rollout(ctx, iv, 24, group)[0][0]
    for (c, _), (r, _) in zip(carried, refitted):
        torch.testing.assert_close(c, r, rtol=1e-5, atol=1e-5)
    carried = carried[0][0]
    err = [(f.double() - future).pow(2).mean() / future.pow(2).mean() for f in (carried, without)]
    assert err[0] < 0.2 and err[1] > 1.0  # measured: 0.08 and 1.36


def test_ar_level_fits_the_recursion_about_the_running_mean_and_about_the_series_level():
    """``ar_fit(level=)`` fits every order about the mean of the values up to each refit and about
    the series' level (``z + level``, the values as measured): a tone of 12 values about zero (a
    channel, a sum of exponentials with no constant term) is continued to 1e-10 about its level; on
    noise about a far level the backtest keeps the running mean (a recursion reverting to it). A rollout carries both; the option saves."""
    from wfm.hub_mixin import causal_arch
    from wfm.models.series_priors import ar_fit

    t = torch.arange(24, dtype=torch.float64)
    tone = torch.stack([torch.cos(0.5 * t + 0.3), torch.sin(0.5 * t + 0.3)])  # one complex exponential
    ctx = tone[:, :12]
    loc, scale = ctx.mean(dim=1, keepdim=True), ctx.std(dim=1, keepdim=True)
    z = ((ctx - loc) / scale).float()
    obs = torch.ones_like(z, dtype=torch.bool)
    truth = (tone[:, 12:20] - loc) / scale
    group = torch.tensor([0, 0])
    about_mean, _, _ = ar_fit(z, obs, torch.tensor([11]), 8, group)
    about_level, avail, known = ar_fit(z, obs, torch.tensor([11]), 8, group, level=(loc / scale).view(2))
    assert avail.all() and known.shape == (2, 8)  # four orders about each centre
    assert known[0, 4:].min() < known[0, :4].min()  # the backtest prefers the level
    err = [float((e[:, 0].double() - truth).pow(2).mean() / truth.pow(2).mean()) for e in (about_mean, about_level)]
    assert err[1] < 1e-10 and err[0] > 1e-6  # measured: 6e-12 and 2e-5 (order 4 absorbs the mean)

    g = torch.Generator().manual_seed(2)
    noise = torch.randn(4, 96, generator=g)
    noise = noise - noise.mean(dim=1, keepdim=True)
    nobs = torch.ones_like(noise, dtype=torch.bool)
    plain, _, _ = ar_fit(noise, nobs, torch.tensor([95]), 8)
    level, _, known = ar_fit(noise, nobs, torch.tensor([95]), 8, level=torch.full((4,), 20.0))
    assert known[:, :4].min(dim=1).values.lt(known[:, 4:].min(dim=1).values).all()  # the running mean errs less
    assert level.abs().max() < 0.5 < noise[:, -1].abs().max()  # it reverts to the mean (its order may differ)

    x = (torch.randn(3, 72, generator=g, dtype=torch.float64).cumsum(dim=1) * 0.3 + 5.0).float()
    obs = torch.ones_like(x, dtype=torch.bool)
    lv = torch.tensor([3.0, -1.0, 10.0])
    _, _, known = ar_fit(x[:, :48], obs[:, :48], torch.tensor([47]), 8, level=lv)
    whole, _, _ = ar_fit(x, obs, torch.arange(48, 72), 8, level=lv)
    part, _, _ = ar_fit(x, obs, torch.arange(48, 72), 8, since=48, known=known, level=lv)
    torch.testing.assert_close(part, whole, rtol=1e-6, atol=1e-6)

    kw = dict(prior="mix", backtest_origins="value", backtest_weight=4.0, guard=True)
    m = create_model("causal_tiny", estimators=("last", "mean", "ar"), ar_level=True, **kw).eval()
    assert causal_arch(m)["ar_level"] is True and "ar_level" not in causal_arch(mix(estimators=("last", "mean", "ar")))
    series = (tone[:, :48] + 3.0).float()
    with torch.no_grad():
        carried = m._rollout(series, torch.full((2,), 1e-3), 24, group, fallback=True)
        refitted = m._rollout(series, torch.full((2,), 1e-3), 24, group, fallback=True, reuse=False)
    for (c, _), (r, _) in zip(carried, refitted):
        torch.testing.assert_close(c, r, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="ar_level"):
        create_model("causal_tiny", estimators=("last", "mean"), ar_level=True, **kw)


def test_recent_means_average_the_last_values_once_the_context_holds_a_window():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 320, generator=g).cumsum(dim=1)
    obs = torch.ones_like(x, dtype=torch.bool)
    obs[1, :40] = False  # left padding
    obs[1, 100] = False  # a gap inside the window
    xm = x * obs
    names = ("mean", "mean16", "mean64", "mean256")
    est, avail = classical_priors(xm, obs, torch.tensor([1.0, 1.0]), 8, 4, names)
    for b in range(2):
        first = int(obs[b].float().argmax())
        for j in range(40):
            o = 8 * j + 7
            for e, w in ((1, 16), (2, 64), (3, 256)):
                full = o - w + 1 >= first
                assert bool(avail[b, j, e]) == full, (b, j, w)
                if full:
                    win = x[b, o - w + 1:o + 1][obs[b, o - w + 1:o + 1]].double()
                    assert torch.allclose(est[b, j, e].double(), win.mean().expand(4), atol=1e-4), (b, j, w)
    # a long context with a level shift: the recent means follow the new level, the mean lags
    step = torch.cat([torch.zeros(1, 256), torch.full((1, 64), 5.0)], dim=1)
    est, _ = classical_priors(step, torch.ones_like(step, dtype=torch.bool), torch.tensor([1.0]), 8, 1, names)
    assert est[0, -1, :, 0].tolist() == pytest.approx([1.0, 5.0, 5.0, 1.25], abs=1e-5)


def test_exponential_smoothing_is_the_textbook_recursion_over_the_observed_values():
    """``ewm``: simple exponential smoothing; ``holt``: Brown's double smoothing, level ``2 s1 - s2``,
    trend ``alpha / (1 - alpha) (s1 - s2)`` damped by ``HOLT_DAMPING`` a step: against a loop over
    the observed values (weights normalised, so the start needs no initial level), at patch ends and
    at every value; available once the context holds the span; a line is continued by holt."""
    from wfm.models.series_priors import HOLT_DAMPING, SMOOTHERS

    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 96, generator=g).cumsum(dim=1)
    obs = torch.ones_like(x, dtype=torch.bool)
    obs[1, :20] = False  # left padding
    names = tuple(SMOOTHERS)

    def ref(b: int, o: int, name: str) -> torch.Tensor:
        alpha = 2.0 / (SMOOTHERS[name] + 1.0)
        num1 = den = num2 = 0.0
        s1 = s2 = None
        for t in range(o + 1):  # weighted means with (1 - alpha) ** age, over observed values only
            if not obs[b, t]:
                continue
            num1, den = (1 - alpha) * num1 + float(x[b, t]), (1 - alpha) * den + 1.0
            s1 = num1 / den
            num2 = (1 - alpha) * num2 + s1
            s2 = num2 / den
        if name.startswith("ewm"):
            return torch.full((4,), s1, dtype=torch.float64)
        damp = torch.cumsum(HOLT_DAMPING ** torch.arange(1, 5, dtype=torch.float64), 0)
        return (2 * s1 - s2) + alpha / (1 - alpha) * (s1 - s2) * damp

    for every in (False, True):
        est, avail = classical_priors(x * obs, obs, torch.tensor([1.0, 1.0]), 8, 4, names, every_value=every)
        for b in range(2):
            first = int(obs[b].float().argmax())
            for j in range(est.shape[1]):
                o = j if every else 8 * j + 7
                for e, name in enumerate(names):
                    full = o - SMOOTHERS[name] + 1 >= first
                    assert bool(avail[b, j, e]) == full, (b, j, name)
                    if full:
                        assert torch.allclose(est[b, j, e].double(), ref(b, o, name), atol=1e-4), (b, j, name)
    line = torch.arange(200.0)[None]
    est, _ = classical_priors(line, torch.ones_like(line, dtype=torch.bool), torch.tensor([1.0]), 8, 4, names)
    ahead = est[0, -1, :, 0]  # one step ahead of 199
    assert float(ahead[0]) < 199 - 0.5 and abs(float(ahead[2]) - (199 + HOLT_DAMPING)) < 0.05  # holt follows it


def test_grown_state_dict_adds_an_estimator_and_keeps_the_old_ones_in_place():
    old = randomise(mix(estimators=("last", "mean", "trend", "linear", "day", "week")))
    shuffled = mix(estimators=("week", "mean", "last", "linear", "day", "trend"))
    shuffled.load_state_dict(old.grown_state_dict(shuffled.estimators))
    x = walks(4, 64)
    torch.testing.assert_close(shuffled.forecast(x, 60.0, 8), old.forecast(x, 60.0, 8), rtol=1e-5, atol=1e-5)
    grown = mix(estimators=(*old.estimators, "reversion"))
    grown.load_state_dict(old.grown_state_dict(grown.estimators))
    e, p = len(grown.estimators), grown.patch_len
    w = grown.prior_embed.weight
    assert not w[:, 6 * p:7 * p].any() and not w[:, e * p + 6].any() and not w[:, e * p + e + 6].any()
    with pytest.raises(ValueError, match="drop"):
        old.grown_state_dict(("last", "mean"))


def test_with_estimators_grows_the_mix_and_keeps_every_inference_option():
    """How the release got ``ar``: the same weights, the mix grown, the inference options kept;
    where the new estimator has no fit (1 value of context), the forecast is unchanged."""
    from wfm.hub_mixin import causal_arch

    old = randomise(mix(estimators=("last", "mean", "trend"), guard=True, check_origins=4, white_limit=0.5, box_cox=True))
    grown = old.with_estimators((*old.estimators, "ar"))
    assert grown.estimators == ("last", "mean", "trend", "ar")
    assert {k: v for k, v in causal_arch(grown).items() if k != "estimators"} == \
        {k: v for k, v in causal_arch(old).items() if k != "estimators"}
    x = walks(4, 1)
    torch.testing.assert_close(grown.forecast(x, 60.0, 8), old.forecast(x, 60.0, 8))
    x = walks(4, 64)
    assert not torch.allclose(grown.forecast(x, 60.0, 8), old.forecast(x, 60.0, 8))  # ar is in the mix


def test_init_weights_grows_an_exported_model_by_an_estimator(tmp_path):
    from wfm.hub import from_pretrained
    from wfm.safety import CheckpointError
    from wfm.training.lit_causal import CausalPretrainModule

    kwargs = dict(prior="mix", guard=True, coarse_len=64, max_coarse=64, backtest_weight=4.0)
    folder = str(tmp_path / "six")  # the mix of the stage-2 release: no reversion
    randomise(create_model("causal_tiny", quantiles=(0.1, 0.5, 0.9), **kwargs)).save_pretrained(folder)
    released = from_pretrained(folder)
    module = CausalPretrainModule(quantiles=[0.1, 0.5, 0.9], init_weights=folder,
                                  model_kwargs={**kwargs, "estimators": [*released.estimators, "reversion"]})
    want = released.grown_state_dict(module.model.estimators)
    got = module.model.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    with pytest.raises(CheckpointError, match=r"init_weights.*shape mismatch"):  # another width
        CausalPretrainModule(quantiles=[0.1, 0.5, 0.9], init_weights=folder, model_kwargs={**kwargs, "dim": 32})
    with pytest.raises(CheckpointError, match="drop"):
        CausalPretrainModule(quantiles=[0.1, 0.5, 0.9], init_weights=folder, model_kwargs={**kwargs, "estimators": ["last"]})


def test_calibration_scalars_are_not_weight_decayed():
    from types import SimpleNamespace

    from wfm.training.schedule import adamw_warmup_cosine

    m = mix(guard=True)
    hp = SimpleNamespace(lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05, warmup_steps=1, min_lr_ratio=0.1, max_steps=10)
    decay, no_decay = adamw_warmup_cosine(m, hp, 10)["optimizer"].param_groups
    kept = {id(p) for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(id(getattr(m, n)) in kept for n in ("backtest_weight", "guard_scale", "guard_bias"))
    assert id(m.prior_gate.weight) not in kept and id(m.head.weight) not in kept


def test_fixed_scalars_are_set_after_init_weights_and_not_trained(tmp_path):
    from types import SimpleNamespace

    from wfm.training.lit_causal import CausalPretrainModule
    from wfm.training.schedule import adamw_warmup_cosine

    kwargs = dict(prior="mix", guard=True, coarse_len=64, max_coarse=64, backtest_weight=4.0)
    trained = randomise(create_model("causal_tiny", **kwargs))
    with torch.no_grad():
        trained.backtest_weight.fill_(0.78)  # a drifted weight, as stage 5 shipped
    trained.save_pretrained(str(tmp_path / "m"))
    module = CausalPretrainModule(init_weights=str(tmp_path / "m"), model_kwargs=kwargs,
                                  fixed_scalars={"backtest_weight": 4.0})
    m = module.model
    assert float(m.backtest_weight) == 4.0 and not m.backtest_weight.requires_grad
    assert torch.equal(m.head.weight, trained.head.weight) and m.guard_scale.requires_grad
    hp = SimpleNamespace(lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05, warmup_steps=1, min_lr_ratio=0.1, max_steps=10)
    opt = adamw_warmup_cosine(m, hp, 10)["optimizer"]
    assert all(p is not m.backtest_weight for g in opt.param_groups for p in g["params"])
    with pytest.raises(ValueError, match="not a scalar parameter"):
        CausalPretrainModule(model_kwargs=kwargs, fixed_scalars={"head.weight": 0.0})


def test_pool_by_group_is_the_geometric_mean_of_each_group():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 2, generator=g) + 0.1
    group = torch.tensor([7, 2, 7, 7, 2, 5])
    pooled = pool_by_group(x, group)
    for gid in (7, 2, 5):
        rows = group == gid
        want = x[rows].log().mean(dim=0).exp()
        assert torch.allclose(pooled[rows], want.expand_as(pooled[rows]), rtol=1e-6)
    assert torch.allclose(pool_by_group(x, torch.arange(6)), x, rtol=1e-6)  # one row per group: unchanged
    with pytest.raises(ValueError, match="group must be"):
        pool_by_group(x, torch.zeros(5, dtype=torch.long))


def test_a_window_pools_its_channels_evidence():
    """64 channels of one window are white noise around a level; one of them happens to rise
    steadily through its 8 packets. On its own, its backtest says the last value wins; pooled
    with its window, the mean does, as it does for the other 63."""
    torch.manual_seed(0)
    m = create_model("causal_tiny", prior="mix", estimators=("last", "mean"), backtest_origins="value",
                     backtest_weight=4.0).eval()
    g = torch.Generator().manual_seed(1)
    ctx = torch.randn(64, 8, generator=g)
    ctx[0] = torch.linspace(-1.5, 1.5, 8)
    mean, last = ctx.mean(dim=1, keepdim=True), ctx[:, -1:]
    alone = m.forecast(ctx, 1e-3, 4)
    pooled = m.forecast(ctx, 1e-3, 4, group=torch.zeros(64, dtype=torch.long))
    # weight of the mean in each forecast: (forecast - last) / (mean - last)
    w_alone, w_pooled = ((alone - last) / (mean - last))[0], ((pooled - last) / (mean - last))[0]
    assert w_alone.mean() < 0.25 and w_pooled.mean() > 0.7  # measured 0.08 and 0.76
    noise_err = lambda f: ((f[1:] - mean[1:]) ** 2).mean()  # noqa: E731  (the level is the best forecast)
    assert noise_err(pooled) <= noise_err(alone)
    # distinct ids are the same as no group; a group that is not [B] is named
    assert torch.allclose(m.forecast(ctx, 1e-3, 4, group=torch.arange(64)), alone, atol=1e-5)
    with pytest.raises(ValueError, match="group must be"):
        m.forecast(ctx, 1e-3, 4, group=torch.zeros(3, dtype=torch.long))


def test_skill_loss_is_the_ratio_to_the_better_of_persistence_and_the_mean():
    torch.manual_seed(0)
    m = create_model("causal_tiny", prior="mix", estimators=("last",), max_context=64)  # zero head: persistence
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(64, 64, generator=g)
    obs = torch.ones_like(noise, dtype=torch.bool)
    iv, ctx = torch.full((64,), 1e-3), torch.full((64,), 32)

    def by_hand(x: torch.Tensor) -> float:  # persistence's error over the better reference's, per series
        z = (x - x[:, :32].mean(1, keepdim=True)) / x[:, :32].std(1, unbiased=False, keepdim=True)
        err, ref_last, ref_mean, power = (torch.zeros(len(x)) for _ in range(4))
        for o in (31, 39, 47, 55):  # the origins of the tokens that predict patches 4..7
            tgt = z[:, o + 1:o + 9]
            err += ((z[:, o:o + 1] - tgt) ** 2).sum(1)
            ref_last += ((z[:, o:o + 1] - tgt) ** 2).sum(1)
            ref_mean += ((z[:, :o + 1].mean(1, keepdim=True) - tgt) ** 2).sum(1)
            power += (tgt ** 2).sum(1)
        return float((err / (torch.minimum(ref_last, ref_mean) + 1e-3 * power)).mean())

    walk_loss, *_ = m.loss(noise.cumsum(dim=1), obs, iv, ctx, skill=True)
    noise_loss, *_ = m.loss(noise, obs, iv, ctx, skill=True)
    assert float(walk_loss) == pytest.approx(by_hand(noise.cumsum(dim=1)), rel=1e-4)
    assert float(noise_loss) == pytest.approx(by_hand(noise), rel=1e-4)
    # a walk: persistence is mostly the better reference (ratio near 1); white noise: the mean is
    assert float(walk_loss) < 1.2 < 1.6 < float(noise_loss)
    mix_model = randomise(mix()).train()
    loss, *_ = mix_model.loss(noise.cumsum(dim=1), obs, iv, ctx, skill=True)
    loss.backward()
    assert torch.isfinite(loss) and mix_model.head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="skill loss"):
        mix_model.loss(noise, obs, iv, skill=True)


def test_pool_by_power_weighs_a_windows_channels_by_their_share_of_its_power():
    """``power_weights`` / weighted ``pool_by_group`` / ``ar_fit(weight=)`` against their definitions,
    and ``CausalForecaster(pool_by_power=True)``: a window of one strong ramp and many weak white
    channels follows the ramp's evidence (equal weights let the white channels choose the mean);
    ungrouped rows are unchanged to the bit; the option saves."""
    from wfm.hub_mixin import causal_arch
    from wfm.models.groups import power_weights
    from wfm.models.series_priors import ar_fit

    group = torch.tensor([0, 0, 0, 1, 1])
    scale = torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0])
    w = power_weights(scale, group)
    torch.testing.assert_close(w, torch.tensor([3 / 14, 12 / 14, 27 / 14, 1.0, 1.0], dtype=torch.float64))
    x = torch.rand(5, 3, 4) + 0.1
    plain = pool_by_group(x, group)
    torch.testing.assert_close(plain, torch.stack([x[:3].log().mean(0).exp()] * 3 + [x[3:].log().mean(0).exp()] * 2))
    ref = ((w[:3, None, None] * x[:3].double().log()).sum(0) / w[:3].sum()).exp().float()
    torch.testing.assert_close(pool_by_group(x, group, w)[1], ref)
    torch.testing.assert_close(pool_by_group(x, group, torch.ones(5)), plain)

    # A pooled fit with weights s^2 is the unweighted pooled fit of the rows in common units (z * s).
    g = torch.Generator().manual_seed(5)
    z = torch.randn(3, 40, generator=g, dtype=torch.float64).cumsum(dim=1) * 0.2
    s = torch.tensor([[1.0], [3.0], [0.5]], dtype=torch.float64)
    obs = torch.ones_like(z, dtype=torch.bool)
    grp = torch.zeros(3, dtype=torch.long)
    weighted, _, _ = ar_fit(z, obs, torch.arange(20, 40), 4, grp, weight=(s ** 2).view(3))
    units, _, _ = ar_fit(z * s, obs, torch.arange(20, 40), 4, grp)
    torch.testing.assert_close(weighted, units / s[..., None], rtol=1e-9, atol=1e-9)

    kw = dict(prior="mix", backtest_origins="value", backtest_weight=4.0, guard=True,
              estimators=("last", "mean", "linear"))
    torch.manual_seed(0)
    off = create_model("causal_tiny", patch_len=8, **kw).eval()
    on = create_model("causal_tiny", patch_len=8, pool_by_power=True, **kw).eval()
    on.load_state_dict(off.state_dict())
    assert causal_arch(on)["pool_by_power"] is True and "pool_by_power" not in causal_arch(off)
    t = torch.arange(40, dtype=torch.float32)
    ramp = 100.0 * t + torch.randn(40, generator=g).float()
    weak = torch.randn(30, 40, generator=g).float()
    rows = torch.cat([ramp[None], weak])
    grp = torch.zeros(31, dtype=torch.long)
    with torch.no_grad():
        f_off, f_on = off.forecast(rows[:, :32], 1.0, 8, group=grp), on.forecast(rows[:, :32], 1.0, 8, group=grp)
        alone = [m.forecast(rows[:, :32], 1.0, 8) for m in (off, on)]
    err = [float((f[0] - ramp[32:]).pow(2).mean()) for f in (f_off, f_on)]
    assert err[1] < 0.5 * err[0]
    torch.testing.assert_close(alone[0], alone[1], rtol=0, atol=0)
    onar = create_model("causal_tiny", patch_len=8, pool_by_power=True, **{**kw, "estimators": ("last", "mean", "ar")}).eval()
    with torch.no_grad():  # a rollout's later passes carry the weighted ar fit: the same as refitting
        carried = onar._rollout(rows[:, :32], torch.full((31,), 1.0), 24, grp, fallback=True)
        refitted = onar._rollout(rows[:, :32], torch.full((31,), 1.0), 24, grp, fallback=True, reuse=False)
    for (c, _), (r, _) in zip(carried, refitted):
        torch.testing.assert_close(c, r, rtol=1e-5, atol=1e-3)


def test_common_gain_dips_are_found_and_filled_and_a_fade_is_not():
    """``dip_steps`` / ``fill_dips``: a drop every channel of a window shares for a step and that
    comes back is a dip (replaced by each row's mean of its other steps), and so is a low last step
    next to one; a low end alone, a fade that builds over the window, a lone row, a small group or
    a drop at the end longer than a quarter of the steps is not."""
    from wfm.models.evidence import dip_steps, fill_dips
    g = torch.Generator().manual_seed(0)
    level = 1.0 + torch.rand(64, 1, generator=g)
    still = level + 0.02 * torch.randn(64, 8, generator=g)  # one window: 64 channels, 8 steps
    gain = torch.ones(8)
    gain[[2, 7]] = torch.tensor([0.8, 0.6])  # -1.9 dB in the middle, -4.4 dB at the end
    x, group = still * gain, torch.zeros(64, dtype=torch.long)
    dip = dip_steps(x, group)
    assert dip[:, [2, 7]].all() and not dip[:, [0, 1, 3, 4, 5, 6]].any()
    filled = fill_dips(x, group)
    keep = x[:, [0, 1, 3, 4, 5, 6]]
    assert torch.allclose(filled[:, [2, 7]], keep.mean(1, keepdim=True).expand(64, 2))
    assert torch.equal(filled[:, [0, 1, 3, 4, 5, 6]], keep)
    # a fade over the window: each step's drop is no outlier of the spread it builds
    fade = still * torch.logspace(0, -0.3, 8)[None]  # 0 to -6 dB
    assert not dip_steps(fade, group).any() and fill_dips(fade, group) is fade
    # no group, too few rows, too many low steps: no dips
    assert not dip_steps(x).any()
    assert not dip_steps(x[:4], group[:4]).any()
    many = still * gain
    many[:, 5:] *= 0.6  # three low steps at the end: a level that changed, not a dip
    assert not dip_steps(many, group).any()
    end = still.clone()
    end[:, 7] *= 0.6  # a low last step with no dip that came back: an AGC step as much as a dip
    assert not dip_steps(end, group).any()
    # two windows: only the one with the dip changes
    both, ids = torch.cat([still, x]), torch.arange(128) // 64
    assert torch.equal(fill_dips(both, ids)[:64], still) and torch.allclose(fill_dips(both, ids)[64:], filled)


def test_white_dips_reads_a_white_window_through_its_dips_and_keeps_its_mean(tmp_path):
    """``white_dips``: a white window whose first packet and last two dip on every channel is not
    white to the plain test (the dips read as level changes) but is once they are left out; it then gets
    the context mean of every value given, to the bit, and the option survives a save and load."""
    from wfm.hub import from_pretrained
    from wfm.models.evidence import looks_white
    torch.manual_seed(0)
    kw = dict(prior="mix", coarse_len=64, estimators=("last", "mean", "trend", "reversion"), backtest_origins="value",
              guard=True, check_origins=8, white_limit=0.5)
    plain = create_model("causal_tiny", **kw).eval()
    m = create_model("causal_tiny", white_dips=True, **kw).eval()
    with torch.no_grad():
        torch.nn.init.normal_(plain.head.weight, std=0.5)
    m.load_state_dict(plain.state_dict())
    g = torch.Generator().manual_seed(2)
    x = 3.0 + 0.1 * torch.randn(128, 8, generator=g)
    x[:, [0, 6, 7]] *= 0.6
    group = torch.zeros(128, dtype=torch.long)
    assert not looks_white(x, 0.5, group).any() and looks_white(x, 0.5, group, dips=True).all()
    f = m.forecast(x, 1e-3, 8, group=group)
    assert torch.equal(f, ContextMean().forecast(x, torch.full((128,), 1e-3), 8))
    assert not torch.allclose(plain.forecast(x, 1e-3, 8, group=group), f, atol=1e-2)  # without it: the network
    m.save_pretrained(str(tmp_path / "m"))
    assert from_pretrained(str(tmp_path / "m")).white_dips is True
    with pytest.raises(ValueError, match="white_dips"):
        create_model("causal_tiny", prior="mix", guard=True, check_origins=8, white_dips=True)


def test_check_test_log_ratio_is_not_drowned_by_one_check_missed_by_far(tmp_path):
    """``check_test``: the statistic ``check_origins`` tests per check. The network losing on every
    one of 8 checks, by 100x and once by 10^4x (a smooth series it misses), passes the paired test on
    the squared-error differences (the one far miss widens their spread more than their mean) but not
    the test on their log ratios; ``"either"`` falls back where one of the two says so. On errors of
    equal size both keep the network. The log ratios decide from 4 checks on. A group's log ratio is
    that of its pooled errors. The option survives ``save_pretrained``; an unknown name is refused."""
    from wfm.hub import from_pretrained

    kw = dict(guard=True, check_origins=8, estimators=("last", "mean", "trend"), backtest_origins="value")
    x = walks(4, 200)
    iv = torch.full((4,), 60.0)
    var = x.double().var(dim=1, unbiased=False)

    def fake(ratios: list[float], cls_err: float = 1e-4, length: int = 200):
        """A ``_rollout`` whose classical forecast misses each check's truth by ``cls_err`` (squared,
        over the context's variance) and the network by ``ratios[k]`` times that at the k-th cut."""
        cuts = mix(**kw).check_cuts(length, 8)

        def rollout(past, interval, horizon, group=None, fallback=False, coarse=True, **_):
            cut = past.shape[1]
            truth = x[:, cut:cut + horizon]
            step = (cls_err * var).sqrt().float()[:, None]
            net = truth + step * ratios[cuts.index(cut)] ** 0.5
            return [(net, None), (truth + step, None)] if fallback else [(net, None)]
        return rollout

    one_far = [100.0] * 7 + [1e4]
    for test, want in (("difference", True), ("log_ratio", False), ("either", False)):
        m = mix(check_test=test, **kw)
        assert m.check_cuts(200, 8) == [136 + 8 * i for i in range(8)]
        m._rollout = fake(one_far)
        keep, = m._network_passes_check(x, iv, 8)
        assert keep.tolist() == [want] * 4, test
        m._rollout = fake([1.0] * 8)  # a tie on every check: nothing to test
        assert m._network_passes_check(x, iv, 8)[0].all(), test
        m._rollout = fake([100.0, 50.0, 200.0, 80.0, 120.0, 150.0, 90.0, 110.0])  # a plain loss: both fall back
        assert not m._network_passes_check(x, iv, 8)[0].any(), test
    # fewer than LOG_RATIO_MIN_CHECKS checks: the log ratios decide nothing (three far misses of equal
    # size have no spread, which the difference test takes as a loss whatever the t threshold)
    from wfm.models.evidence import LOG_RATIO_MIN_CHECKS
    m = mix(check_test="log_ratio", **kw)
    assert len(m.check_cuts(48, 8)) == 3 < LOG_RATIO_MIN_CHECKS
    m._rollout = fake([1e4, 100.0, 1e3], length=48)
    assert m._network_passes_check(x[:, :48], iv, 8)[0].all()
    # a group decides once, on its pooled errors: one row's far misses count by their size
    m = mix(check_test="log_ratio", **kw)
    m._rollout = fake(one_far)
    keep, = m._network_passes_check(x, iv, 8, torch.tensor([0, 0, 1, 1]))
    assert not keep.any()
    m = mix(check_test="either", **kw)
    m.save_pretrained(str(tmp_path / "m"))
    assert from_pretrained(str(tmp_path / "m")).check_test == "either"
    from wfm.hub_mixin import causal_arch
    assert "check_test" not in causal_arch(mix(**kw))  # the default is not written: older configs load as they were
    with pytest.raises(ValueError, match="check_test"):
        mix(check_test="median", **kw)


def test_check_ar_takes_linear_prediction_where_it_wins_the_checks_and_nothing_else(tmp_path):
    """``check_ar``: linear prediction competes on the checks with what they kept. A noise-free
    sinusoid (a recursion of order 2) is then forecast by it, exactly, rows alone or a group pooled,
    with the quantiles moved along; white noise around a level, and a context too short for two
    checks, keep what they had. It needs ``check_origins``; it survives ``save_pretrained``."""
    from wfm.hub import from_pretrained
    from wfm.models.linear_prediction import ar_forecast_rows

    kw = dict(guard=True, check_origins=8, estimators=("last", "mean", "trend"), backtest_origins="value",
              quantiles=(0.1, 0.5, 0.9))
    off, on = mix(**kw), mix(check_ar=True, **kw)
    t = torch.arange(330, dtype=torch.float64)
    sines = torch.stack([torch.sin(2 * math.pi * t / p + ph) for p, ph in ((37, 0.0), (23, 1.0), (51, 2.0))]) + 5
    x, truth = sines[:, :300].float(), sines[:, 300:]
    point, quant = on.forecast_with_quantiles(x, 120.0, 30)
    assert torch.allclose(point.double(), ar_forecast_rows(x, 30), atol=1e-5)
    nmse = ((point.double() - truth) ** 2).sum(1) / (truth ** 2).sum(1)
    old_point, old_quant = off.forecast_with_quantiles(x, 120.0, 30)
    old = ((old_point.double() - truth) ** 2).sum(1) / (truth ** 2).sum(1)
    assert bool((nmse < 1e-3).all()) and bool((old > 10 * nmse).all()), (nmse, old)
    assert torch.allclose(quant - point[..., None], old_quant - old_point[..., None], atol=1e-4)  # the band moves along
    # a group (two phases of one sinusoid): one recursion for both rows
    two = (torch.stack([torch.sin(2 * math.pi * t[:300] / 37 + ph) for ph in (0.0, 1.5)]) + 5).float()
    pooled = on.forecast(two, 120.0, 30, group=torch.tensor([0, 0]))
    assert torch.allclose(pooled.double(), ar_forecast_rows(two, 30, torch.tensor([0, 0])), atol=1e-5)
    g = torch.Generator().manual_seed(0)
    noise = 3 + torch.randn(4, 300, generator=g)
    assert torch.equal(on.forecast(noise, 120.0, 30), off.forecast(noise, 120.0, 30))
    assert len(on.check_cuts(40, 30)) < 2 and torch.equal(on.forecast(x[:, :40], 120.0, 30), off.forecast(x[:, :40], 120.0, 30))
    with pytest.raises(ValueError, match="check_ar .* needs check_origins"):
        mix(check_ar=True, guard=True)
    on.save_pretrained(str(tmp_path / "m"))
    assert from_pretrained(str(tmp_path / "m")).check_ar and not mix(**kw).check_ar


def test_ar_blend_averages_linear_prediction_in_where_it_leads_the_checks_without_proof(tmp_path):
    """``ar_blend``: where linear prediction erred less than what the checks kept on average but
    not beyond doubt, the forecast is the mean of the two (the band moved along); where it won
    beyond doubt it is linear prediction, as with ``check_ar`` alone; elsewhere nothing changes."""
    from wfm.hub import from_pretrained
    from wfm.models.linear_prediction import ar_forecast_rows

    kw = dict(guard=True, check_origins=8, estimators=("last", "mean", "trend"), backtest_origins="value",
              quantiles=(0.1, 0.5, 0.9), check_ar=True)
    on, blend = randomise(mix(**kw)), randomise(mix(ar_blend=True, **kw))
    g = torch.Generator().manual_seed(0)
    t = torch.arange(300, dtype=torch.float64)
    x = torch.stack([torch.sin(2 * math.pi * t / (15 + 4 * i)) + (0.05, 0.2, 0.5, 1.0)[i % 4]
                     * torch.randn(300, generator=g, dtype=torch.float64) for i in range(12)]).float() + 5
    (a, qa), (b, qb) = on.forecast_with_quantiles(x, 120.0, 30), blend.forecast_with_quantiles(x, 120.0, 30)
    ar = ar_forecast_rows(x, 30).float()
    same = (a - b).abs().amax(1) < 1e-5
    blended = (b - 0.5 * (a + ar)).abs().amax(1) < 1e-4
    won = (a - ar).abs().amax(1) < 1e-4
    assert bool((same | blended).all())
    assert bool((blended & ~won).any()) and bool((same & ~won).any()) and bool(won.any())  # every case is met
    torch.testing.assert_close(qb - b[..., None], qa - a[..., None], atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="ar_blend .* needs check_ar"):
        mix(guard=True, check_origins=8, ar_blend=True)
    blend.save_pretrained(str(tmp_path / "m"))
    assert from_pretrained(str(tmp_path / "m")).ar_blend and not on.ar_blend


def test_ar_season_leaves_linear_prediction_out_where_the_checks_miss_a_season_the_context_holds(tmp_path):
    """``ar_season``: a row whose earliest check lacks a day (or week) that its whole context holds
    gets no linear prediction at all (its forecast is that of the same model without ``check_ar``,
    to the bit); with the season in every check, or none in the context, nothing changes."""
    from wfm.hub import from_pretrained

    kw = dict(guard=True, check_origins=8, estimators=FIVE, backtest_origins="value", check_ar=True, ar_blend=True)
    release, season, plain = randomise(mix(**kw)), randomise(mix(ar_season=True, **kw)), randomise(
        mix(**{**kw, "check_ar": False, "ar_blend": False}))
    itv = torch.full((3,), 600.0)
    assert season.checks_miss_season(144, 108, itv).all()  # a day of 10-minute values; the checks hold 108-136
    assert not season.checks_miss_season(288, 144, itv).any() and not season.checks_miss_season(96, 48, itv).any()
    assert not season.checks_miss_season(144, 72, torch.full((1,), 60.0)).any()  # a day is 1440 values at 1 minute
    assert season.checks_miss_season(168, 144, torch.full((1,), 3600.0)).all()  # a week of hourly values
    assert not mix(ar_season=True, **{**kw, "estimators": ("last", "mean", "trend")}).checks_miss_season(144, 108, itv).any()
    g = torch.Generator().manual_seed(0)
    t = torch.arange(288, dtype=torch.float64)
    x = torch.stack([torch.sin(2 * math.pi * t / (15 + 4 * i)) + (0.05, 0.2, 0.5, 1.0)[i % 4]
                     * torch.randn(288, generator=g, dtype=torch.float64) for i in range(12)]).float() + 5
    day = x[:, :144]
    assert not torch.equal(release.forecast(day, 600.0, 12), plain.forecast(day, 600.0, 12))  # linear prediction taken
    assert torch.equal(season.forecast(day, 600.0, 12), plain.forecast(day, 600.0, 12))
    for ctx, itv_s in ((x, 600.0), (x[:, :96], 600.0), (day, 60.0)):  # every check holds the day; no day; a day unheld
        assert torch.equal(season.forecast(ctx, itv_s, 12), release.forecast(ctx, itv_s, 12))
    with pytest.raises(ValueError, match="ar_season .* needs check_ar"):
        mix(guard=True, check_origins=8, ar_season=True)
    season.save_pretrained(str(tmp_path / "m"))
    assert from_pretrained(str(tmp_path / "m")).ar_season and not release.ar_season


def test_check_mean_takes_the_context_mean_where_it_wins_the_checks_and_nothing_else(tmp_path):
    """``check_mean``: the context mean competes on the checks with the forecast so far. White
    noise around a level, forecast by the last value (an untrained model whose only estimator it
    is), then gets its mean where the checks show the mean ahead beyond doubt (the band moved
    along): a group pooling its rows' checks, and some rows alone; with ``box_cox`` the mean of the
    values given. A noise-free sinusoid, and a context too short for two checks, keep what they had."""
    from wfm.hub import from_pretrained

    kw = dict(guard=True, check_origins=8, estimators=("last",), backtest_origins="value", quantiles=(0.1, 0.5, 0.9),
              check_test="either")
    off, on = mix(**kw), mix(check_mean=True, **kw)
    g = torch.Generator().manual_seed(0)
    noise = (3 + torch.randn(12, 300, generator=g)).float()
    mean = noise.double().mean(1, keepdim=True).expand(-1, 30)
    group = torch.zeros(12, dtype=torch.long)
    (a, qa), (b, qb) = (m.forecast_with_quantiles(noise, 120.0, 30, group=group) for m in (off, on))
    assert torch.allclose(a, noise[:, -1:].expand(-1, 30)) and torch.allclose(b.double(), mean, atol=1e-5)
    torch.testing.assert_close(qb - b[..., None], qa - a[..., None], atol=1e-4, rtol=0)
    alone, last = on.forecast(noise, 120.0, 30).double(), noise[:, -1:].double().expand(-1, 30)
    took = (alone - mean).abs().amax(1) < 1e-5
    assert bool(took.any()) and bool((took | ((alone - last).abs().amax(1) < 1e-6)).all())
    boxed = mix(check_mean=True, box_cox=True, **kw).forecast(noise.abs(), 120.0, 30, group=group)
    assert torch.allclose(boxed.double(), noise.abs().double().mean(1, keepdim=True).expand(-1, 30), atol=1e-4)
    t = torch.arange(300, dtype=torch.float64)
    sines = (torch.stack([torch.sin(2 * math.pi * t / p) for p in (37, 23)]) + 5).float()
    assert torch.equal(on.forecast(sines, 120.0, 30), off.forecast(sines, 120.0, 30))
    short = noise[:, :40]
    assert len(on.check_cuts(40, 30)) < 2 and torch.equal(on.forecast(short, 120.0, 30, group=group),
                                                          off.forecast(short, 120.0, 30, group=group))
    with pytest.raises(ValueError, match="check_mean .* needs check_origins"):
        mix(check_mean=True, guard=True)
    on.save_pretrained(str(tmp_path / "m"))
    assert from_pretrained(str(tmp_path / "m")).check_mean and not off.check_mean


def _check_option_is_refused_alone_and_round_trips(tmp_path, option: str, share: str, on, off) -> None:
    """A ``check_*`` candidate of the checks: refused without ``check_origins``, its ``*_share``
    refused but for its rules, and ``on`` (the option set) saved and loaded with both."""
    from wfm.hub import from_pretrained

    with pytest.raises(ValueError, match=f"{option} .* needs check_origins"):
        mix(**{option: True})
    with pytest.raises(ValueError, match=share):
        mix(guard=True, check_origins=8, **{option: True, share: "all"})
    on.save_pretrained(str(tmp_path / "m"))
    back = from_pretrained(str(tmp_path / "m"))
    assert getattr(back, option) and getattr(back, share) == getattr(on, share) and not getattr(off, option)


def test_trend_local_continues_a_path_that_turned_inside_its_context_and_leaves_noise_and_exact_forecasts_alone(tmp_path):
    """``trend_local``: a vehicle passing the base station turns within 16 values, so the checks
    (cut before the turn) deny ``check_trend``'s slope; the context's own steps vouch for it, and the
    forecast takes it. Noise never passes the local test; a sinusoid that linear prediction forecasts
    exactly on every check (where the extrapolation loses beyond doubt) keeps its forecast to the bit."""
    from wfm.models.causal_forecast import last_step_trend, trend_holds_locally

    t = torch.arange(20, dtype=torch.float64) * 0.1
    paths = torch.stack([torch.sqrt(8.0 ** 2 + (10.0 * (t - 0.8 - 0.05 * i)) ** 2) for i in range(4)])
    ctx, tgt = paths[:, :16].float(), paths[:, 16:]
    noise = torch.randn(4, 64, generator=torch.Generator().manual_seed(2))
    assert trend_holds_locally(ctx, 4).all() and not trend_holds_locally(noise, 4).any()
    bend = (torch.arange(16, dtype=torch.float64) ** 2)[None]  # constant curvature: the horizon decides
    assert trend_holds_locally(bend, 1).all() and not trend_holds_locally(bend, 16).any()
    mixed = torch.cat([ctx[:1], 10 * noise[:1, :16]])  # a window's channels pool their steps
    assert trend_holds_locally(mixed, 4).tolist() == [True, False]
    assert not trend_holds_locally(mixed, 4, torch.zeros(2, dtype=torch.long)).any()
    kw = dict(guard=True, check_origins=8, estimators=("mean",), backtest_origins="value", check_trend=True,
              trend_share="fitted")
    checked, local = mix(**kw), mix(trend_local=True, **kw)
    err = {k: float(((p.double() - tgt) ** 2).mean()) for k, p in
           (("checked", checked.forecast(ctx, 0.1, 4)), ("local", local.forecast(ctx, 0.1, 4)),
            ("trend", last_step_trend(ctx, 4)))}
    assert err["local"] < 0.1 * err["checked"] and err["local"] == pytest.approx(err["trend"], rel=1e-3), err
    assert torch.equal(local.forecast(noise, 1.0, 4), checked.forecast(noise, 1.0, 4))
    ar = dict(kw, check_ar=True)
    wave = torch.sin(2 * math.pi * torch.arange(256, dtype=torch.float64) / 250)[None].repeat(2, 1).float()
    assert trend_holds_locally(wave, 8).all()  # smooth: only the checks (8 of them) can refute it
    assert torch.equal(mix(trend_local=True, **ar).forecast(wave, 120.0, 8), mix(**ar).forecast(wave, 120.0, 8))
    with pytest.raises(ValueError, match="trend_local .* needs check_trend"):
        mix(guard=True, check_origins=8, trend_local=True)
    local.save_pretrained(str(tmp_path / "m"))
    from wfm.hub import from_pretrained

    assert from_pretrained(str(tmp_path / "m")).trend_local and not checked.trend_local


def test_raw_paths_forecasts_a_smooth_path_as_given_and_leaves_noisy_series_in_box_cox(tmp_path):
    """``raw_paths``: an angle decaying towards zero is positive through its context, so Box-Cox
    applies (Guerrero chooses an exponent below 1) and its inverse would bound the forecast at zero;
    the path's own steps vouch for its trend, so it is forecast as given, to the bit, unless it is told
    it is a range (which cannot cross zero). Positive noise (traffic-like) stays in Box-Cox, to the
    bit; a window's channels decide together."""
    from wfm.models.box_cox import guerrero_lambda
    from wfm.models.causal_forecast import trend_holds_locally

    t = torch.arange(64, dtype=torch.float64) * 0.1
    path = torch.stack([40 * torch.exp(-t / tau) - off for tau, off in ((3.0, 4.0), (4.0, 8.0))]).float()
    g = torch.Generator().manual_seed(3)
    noise = (50 + 10 * torch.randn(2, 64, generator=g)).abs() * (1 + torch.rand(2, 64, generator=g))
    assert (path > 0).all() and (guerrero_lambda(path) < 1).all() and trend_holds_locally(path, 16).all()
    assert (guerrero_lambda(noise) < 1).all() and not trend_holds_locally(noise, 16).any()
    kw = dict(guard=True, check_origins=8, backtest_origins="value")
    boxed, raw, plain = mix(box_cox=True, **kw), mix(box_cox=True, raw_paths=True, **kw), mix(**kw)
    assert torch.equal(raw.forecast(path, 0.1, 16), plain.forecast(path, 0.1, 16))
    assert not torch.equal(boxed.forecast(path, 0.1, 16), plain.forecast(path, 0.1, 16))
    assert torch.equal(raw.forecast(path, 0.1, 16, ranges=True), boxed.forecast(path, 0.1, 16, ranges=True))
    assert torch.equal(raw.forecast(noise, 600.0, 16), boxed.forecast(noise, 600.0, 16))
    both = torch.cat([path[:1], noise[:1]])  # one window: the noisy channel keeps the pair in Box-Cox
    group = torch.zeros(2, dtype=torch.long)
    assert (guerrero_lambda(both, group) < 1).all() and not trend_holds_locally(both, 16, group).any()
    assert torch.equal(raw.forecast(both, 0.1, 16, group=group), boxed.forecast(both, 0.1, 16, group=group))
    with pytest.raises(ValueError, match="raw_paths .* needs box_cox"):
        mix(raw_paths=True)
    raw.save_pretrained(str(tmp_path / "m"))
    from wfm.hub import from_pretrained

    assert from_pretrained(str(tmp_path / "m")).raw_paths and not boxed.raw_paths


def test_box_cox_check_forecasts_as_given_where_the_transform_lost_on_the_checks_in_the_values_units(tmp_path):
    """``box_cox_check``: intermittent counts (zeros a third of the time, Poisson counts otherwise)
    put a zero at ``-1 / lam``, far below the counts, and the forecast in Box-Cox space comes back
    far below their mean; on the checks, scored in the counts' own units, it loses to the forecast
    as given beyond doubt (a window of four such series pooling its checks), so the window is
    forecast as given, to the bit. Level-proportional noise keeps Box-Cox, to the bit; fewer than
    two checks decide nothing; the option needs box_cox and check_origins and survives a save."""
    g = torch.Generator().manual_seed(4)
    counts = torch.where(torch.rand(4, 400, generator=g) < 0.3, 0.0, torch.poisson(torch.full((4, 400), 3.0), generator=g))
    noise = (50 + 10 * torch.randn(2, 400, generator=g)).abs() * (1 + torch.rand(2, 400, generator=g))
    one = torch.zeros(4, dtype=torch.long)  # the counts: one window
    kw = dict(guard=True, check_origins=8, backtest_origins="value")
    boxed, checked, plain = mix(box_cox=True, **kw), mix(box_cox=True, box_cox_check=True, **kw), mix(**kw)
    assert float(boxed.forecast(counts, 600.0, 12, group=one).mean()) < 0.6 * float(counts.mean())  # what it is for
    assert torch.equal(checked.forecast(counts, 600.0, 12, group=one), plain.forecast(counts, 600.0, 12, group=one))
    assert torch.equal(checked.forecast(noise, 600.0, 12), boxed.forecast(noise, 600.0, 12))
    assert not torch.equal(boxed.forecast(noise, 600.0, 12), plain.forecast(noise, 600.0, 12))
    short = counts[:, :40]  # one check of 12 values fits: nothing is decided
    assert torch.equal(checked.forecast(short, 600.0, 12, group=one), boxed.forecast(short, 600.0, 12, group=one))
    with pytest.raises(ValueError, match="box_cox_check .* needs box_cox and check_origins"):
        mix(box_cox_check=True, **kw)
    checked.save_pretrained(str(tmp_path / "m"))
    from wfm.hub import from_pretrained

    assert from_pretrained(str(tmp_path / "m")).box_cox_check and not boxed.box_cox_check


def test_box_cox_white_keeps_white_counts_as_given_and_a_daily_cycle_in_box_cox(tmp_path):
    """``box_cox_white``: i.i.d. counts (zeros a third of the time, Poisson otherwise) hold their
    level, so Guerrero's method reads its exponent from chance and the transformed forecast comes
    back well below their mean; white beyond doubt, each row is forecast as given, to the bit, and
    nearer the mean. Counts that follow a daily cycle (level-proportional noise) keep Box-Cox, to the
    bit, in the same batch, and so does the cycle with one burst a hundred times its peak, which the
    test reads as white as given but not in Box-Cox space; too few values to test keep Box-Cox too.
    Needs box_cox; survives a save."""
    from wfm.models.box_cox import box_cox, guerrero_lambda
    from wfm.models.evidence import white_beyond_doubt

    g = torch.Generator().manual_seed(4)
    counts = torch.where(torch.rand(4, 400, generator=g) < 0.3, 0.0, torch.poisson(torch.full((4, 400), 3.0), generator=g))
    day = 30 * (1.2 + torch.sin(2 * math.pi * torch.arange(400) / 144))  # 10-minute steps: 144 a day
    cycle = torch.poisson(day.expand(2, -1).contiguous(), generator=g)
    batch = torch.cat([counts, cycle])
    kw = dict(guard=True, check_origins=8, backtest_origins="value", box_cox=True)
    boxed, white, plain = mix(**kw), mix(box_cox_white=True, **kw), mix(guard=True, check_origins=8,
                                                                        backtest_origins="value")
    assert boxed.box_cox_white is False  # off unless asked for (every model saved before it)
    got, was = white.forecast(batch, 600.0, 12), boxed.forecast(batch, 600.0, 12)
    assert torch.equal(got[:4], plain.forecast(counts, 600.0, 12))  # the counts: as given
    assert torch.equal(got[4:], was[4:])  # the cycle: Box-Cox
    burst = cycle.clone()
    burst[:, 300] = 1e4  # one burst: the raw values read as white noise, their logs show the day
    assert white_beyond_doubt(burst).all() and not white_beyond_doubt(box_cox(burst, guerrero_lambda(burst))).any()
    assert torch.equal(white.forecast(burst, 600.0, 12), boxed.forecast(burst, 600.0, 12))
    mean = counts.mean(dim=1, keepdim=True)
    assert float(was[:4].mean()) < 0.8 * float(mean.mean())  # what it is for
    assert ((got[:4] - mean).abs().mean() < (was[:4] - mean).abs().mean())
    short = counts[:, :40]  # 39 lag-1 products a row: no test, so Box-Cox stays
    assert torch.equal(white.forecast(short, 600.0, 12), boxed.forecast(short, 600.0, 12))
    with pytest.raises(ValueError, match="box_cox_white .* needs box_cox"):
        mix(box_cox_white=True, guard=True)
    white.save_pretrained(str(tmp_path / "m"))
    from wfm.hub import from_pretrained

    assert from_pretrained(str(tmp_path / "m")).box_cox_white and not from_pretrained(str(tmp_path / "m")).box_cox_check


def test_white_whole_season_gives_a_day_of_white_noise_its_mean_and_keeps_the_veto_short_of_a_day(tmp_path):
    """``white_whole_season``: white noise at 10 minutes over a whole day (144 values) passes
    ``white_level``'s test, and with the day seen at every hour the season veto is lifted: the
    forecast is flat at the level. Over half a day the veto stands, and a daily cycle is not white:
    both as without the option, to the bit. Needs white_level; survives a save."""
    g = torch.Generator().manual_seed(5)
    noise = 100 + torch.randn(4, 144, generator=g)
    kw = dict(guard=True, check_origins=8, backtest_origins="value", white_limit=0.5, white_level=True)
    off, on = mix(**kw), mix(white_whole_season=True, **kw)
    got, was = on.forecast(noise, 600.0, 12), off.forecast(noise, 600.0, 12)
    assert torch.equal(got, got[:, :1].expand_as(got))  # flat: the level
    torch.testing.assert_close(got[:, 0], noise.double().mean(dim=1).to(got.dtype), rtol=0, atol=1e-3)
    assert not torch.equal(was, was[:, :1].expand_as(was))
    half = noise[:, :72]  # half a day: a white night says nothing of the morning
    assert torch.equal(on.forecast(half, 600.0, 12), off.forecast(half, 600.0, 12))
    day = 100 + 10 * torch.sin(2 * math.pi * torch.arange(144) / 144) + torch.randn(4, 144, generator=g)
    assert torch.equal(on.forecast(day, 600.0, 12), off.forecast(day, 600.0, 12))
    with pytest.raises(ValueError, match="white_whole_season .* needs white_level"):
        mix(white_whole_season=True, guard=True, check_origins=8, white_limit=0.5)
    on.save_pretrained(str(tmp_path / "m"))
    from wfm.hub import from_pretrained

    assert from_pretrained(str(tmp_path / "m")).white_whole_season and not off.white_whole_season


def test_dip_level_lifts_a_trailing_dip_of_a_link_that_dips_and_comes_back_and_nothing_else(tmp_path):
    """``dip_level``: a window of 12 channels whose common gain dipped 2.3 dB for one packet and came
    back, and whose last packet dips again, is forecast from its context with that packet lifted to
    the level before it; every other step is kept to the bit. Without an earlier dip that came back,
    after an AGC step that stays, where either dip held two packets, for lone rows and for a window
    of 4 rows: the context itself, and
    the forecast as without the option. Survives a save."""
    from wfm.models.evidence import lift_trailing_dips

    g = torch.Generator().manual_seed(3)
    chans = 1.0 + 0.3 * torch.randn(12, 1, generator=g)  # each channel's level
    noise = 1.0 + 0.003 * torch.randn(12, 40, generator=g)
    dip = 10 ** (-2.3 / 20)

    def window(gain: torch.Tensor) -> torch.Tensor:
        return chans * noise * gain

    group = torch.zeros(12, dtype=torch.long)
    ones = torch.ones(40)
    both = ones.clone()
    both[20], both[39] = dip, dip
    lifted = lift_trailing_dips(window(both), group)
    assert torch.equal(lifted[:, :39], window(both)[:, :39])
    torch.testing.assert_close(lifted[:, 39], window(ones)[:, 39], rtol=0.02, atol=0)  # back at the level
    trailing = ones.clone()
    trailing[39] = dip  # no earlier dip: it may be a new level
    step = ones.clone()
    step[20:] = dip  # an AGC step that stays
    step[39] = dip * dip
    two = both.clone()
    two[38] = dip  # a trailing dip of two packets (DIP_RUN = 1: only one-packet dips are lifted)
    wide = trailing.clone()
    wide[20:22] = dip  # the earlier dip held two packets
    for gain in (trailing, step, two, wide):
        assert torch.equal(lift_trailing_dips(window(gain), group), window(gain))
    assert torch.equal(lift_trailing_dips(window(both), None), window(both))
    assert torch.equal(lift_trailing_dips(window(both)[:4], group[:4]), window(both)[:4])
    kw = dict(guard=True, check_origins=8, backtest_origins="value")
    off, on = mix(**kw), mix(dip_level=True, **kw)
    assert torch.equal(on.forecast(window(both), 0.1, 8, group=group), off.forecast(lifted, 0.1, 8, group=group))
    assert not torch.equal(on.forecast(window(both), 0.1, 8, group=group),
                           off.forecast(window(both), 0.1, 8, group=group))
    assert torch.equal(on.forecast(window(both), 0.1, 8), off.forecast(window(both), 0.1, 8))
    assert torch.equal(on.forecast(window(step), 0.1, 8, group=group), off.forecast(window(step), 0.1, 8, group=group))
    on.save_pretrained(str(tmp_path / "m"))
    from wfm.hub import from_pretrained

    assert from_pretrained(str(tmp_path / "m")).dip_level and not off.dip_level


def test_check_range_follows_a_vehicle_past_its_base_station_only_for_series_told_they_are_ranges(tmp_path):
    """``check_range``: at constant velocity the squared range is a quadratic in time, so the fit
    continues a pass exactly where the last step's extrapolation overshoots the turn. With
    ``ranges=True`` the forecast of passing vehicles (16 and 32 values) moves most of the way to it;
    the same rows not told they are ranges, and white noise around a level told so, keep the
    forecast of the model without the option to the bit."""
    from wfm.models.causal_forecast import constant_velocity_range, last_step_trend

    t = torch.arange(40, dtype=torch.float64) * 0.1
    paths = torch.stack([torch.sqrt(8.0 ** 2 + (10.0 * (t - 1.2 - 0.1 * i)) ** 2) for i in range(4)])
    for span in (3, 8, 16, 64):  # exact at any span: d^2 = d0^2 + v^2 (t - t0)^2
        pred, valid = constant_velocity_range(paths[:, :32], 8, span)
        assert valid.all() and torch.allclose(pred, paths[:, 32:], atol=1e-6)
    odd = torch.tensor([[3.0, 2.0, 1.0, -1.0], [0.0, 1.0, 1.4, 1.7], [1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    pred, valid = constant_velocity_range(odd, 2)  # a negative value; a fit bending down; a line is a radial pass
    assert valid.tolist() == [False, False, True] and torch.equal(pred[:2], odd[:2, -1:].expand(-1, 2))
    kw = dict(guard=True, check_origins=8, estimators=("mean",), backtest_origins="value", check_trend=True,
              trend_share="fitted", trend_local=True, quantiles=(0.1, 0.5, 0.9))
    off, on = mix(**kw), mix(check_range=True, range_share="fitted", **kw)
    for L in (16, 32):
        ctx, tgt = paths[:, 4:4 + L].float(), paths[:, 4 + L:8 + L]  # the turn inside the context
        (a, qa), (b, qb) = (m.forecast_with_quantiles(ctx, 0.1, 4, ranges=True) for m in (off, on))
        err = {k: float(((p.double() - tgt) ** 2).mean()) for k, p in
               (("off", a), ("on", b), ("trend", last_step_trend(ctx, 4)))}
        assert err["on"] < 0.1 * err["off"] and err["on"] < 0.1 * err["trend"], (L, err)
        assert torch.allclose(qb - qa, (b - a)[..., None].expand_as(qa), atol=1e-4)  # the band moves with it
        assert torch.equal(on.forecast(ctx, 0.1, 4), a)  # not told they are ranges
    noise = 5 + torch.randn(4, 64, generator=torch.Generator().manual_seed(2))
    assert torch.equal(on.forecast(noise, 1.0, 4, ranges=True), off.forecast(noise, 1.0, 4))
    _check_option_is_refused_alone_and_round_trips(tmp_path, "check_range", "range_share", on, off)


def test_check_last_holds_a_level_that_the_mean_would_pull_back_and_leaves_noise_alone(tmp_path):
    """``check_last``: a bearing that swung 175 degrees and then held, forecast by the context mean
    (an untrained model whose only estimator it is), swings back towards the older level; persistence
    wins every check by far, and the forecast moves most of the way to it, the band with it. White
    noise around a level, where the mean wins the checks, and a context holding a day that its checks
    miss keep their forecast to the bit."""
    t = torch.arange(80, dtype=torch.float64)
    rows = torch.stack([-10 - 175 / (1 + torch.exp(-(t - 24) / 1.5)) + 0.3 * i for i in range(4)])
    ctx, tgt = rows[:, :64].float(), rows[:, 64:]
    kw = dict(guard=True, check_origins=8, estimators=("mean",), backtest_origins="value", quantiles=(0.1, 0.5, 0.9))
    off, on = mix(**kw), mix(check_last=True, last_share="fitted", **kw)
    (a, qa), (b, qb) = (m.forecast_with_quantiles(ctx, 0.05, 16) for m in (off, on))
    err = {k: float(((p.double() - tgt) ** 2).mean()) for k, p in (("off", a), ("on", b))}
    assert err["on"] < 0.1 * err["off"], err
    assert torch.allclose(qb - qa, (b - a)[..., None].expand_as(qa), atol=1e-3)  # the band moves with it
    noise = 5 + torch.randn(4, 64, generator=torch.Generator().manual_seed(2))
    assert torch.equal(on.forecast(noise, 1.0, 4), off.forecast(noise, 1.0, 4))
    # the same values every 30 minutes, forecast with a daily estimator: the context holds a day (48)
    # that its checks (cut at 48 and 32) miss, where they would favour persistence over a forecast
    # that has the day
    daily = {**kw, "estimators": ("mean", "day")}
    assert torch.equal(mix(check_last=True, **daily).forecast(ctx, 1800.0, 16), mix(**daily).forecast(ctx, 1800.0, 16))
    assert not torch.equal(mix(check_last=True, **daily).forecast(ctx, 0.05, 16), mix(**daily).forecast(ctx, 0.05, 16))
    _check_option_is_refused_alone_and_round_trips(tmp_path, "check_last", "last_share", on, off)


def test_ses_levels_match_a_plain_loop_and_read_nothing_past_their_cut():
    """``ses_levels``: each cut's level is the smoothing of the values before it with the weight
    whose one-step errors there summed smallest (a plain loop per weight as the reference); values
    after a cut never change its level; a group shares one weight; alpha 1 is persistence."""
    from wfm.models.smoothing import ALPHAS, ses_forecast, ses_levels

    g = torch.Generator().manual_seed(0)
    x = (100 + torch.randn(3, 40, generator=g, dtype=torch.float64).cumsum(1) * 0.3
         + torch.randn(3, 40, generator=g, dtype=torch.float64))

    def reference(row: torch.Tensor) -> float:
        best = None
        for a in ALPHAS:
            level, sse = float(row[0]), 0.0
            for v in row[1:].tolist():
                sse += (v - level) ** 2
                level += a * (v - level)
            best = min(best or (sse, level), (sse, level))
        return best[1]

    got = ses_levels(x, [20, 40])
    for i in range(3):
        assert got[0][i].item() == pytest.approx(reference(x[i, :20]), rel=1e-12)
        assert got[1][i].item() == pytest.approx(reference(x[i]), rel=1e-12)
    later = x.clone()
    later[:, 20:] += 50.0
    assert torch.equal(ses_levels(later, [20])[0], got[0])
    pooled = ses_levels(x, [40], torch.zeros(3, dtype=torch.long))[0]
    assert pooled.shape == (3,) and not torch.equal(pooled, got[1])  # one weight for the three rows
    walk = torch.arange(10, dtype=torch.float64)[None] ** 2  # every one-step error smallest at alpha 1
    assert torch.equal(ses_forecast(walk, 3), torch.full((1, 3), 81.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="cuts"):
        ses_levels(x, [1])


def test_check_ses_follows_a_wandering_level_and_leaves_white_noise_alone(tmp_path):
    """``check_ses``: a level that wanders under noise, forecast by the context mean (an untrained
    model whose only estimator it is), moves towards the smoothed recent level, which wins the
    checks, and errs less; white noise around a level, where the fitted weight is small and the
    smoothed level near the mean, moves by a few hundredths of its noise at most; a context holding
    a day that its checks miss keeps its forecast to the bit."""
    g = torch.Generator().manual_seed(1)
    steps = torch.randn(64, 80, generator=g, dtype=torch.float64)
    rows = 100 + steps.cumsum(1) + 0.5 * torch.randn(64, 80, generator=g, dtype=torch.float64)
    ctx, tgt = rows[:, :64].float(), rows[:, 64:]
    kw = dict(guard=True, check_origins=8, estimators=("mean",), backtest_origins="value")
    off, on = mix(**kw), mix(check_ses=True, ses_share="fitted", **kw)
    err = {k: float(((m.forecast(ctx, 1.0, 16).double() - tgt) ** 2).mean()) for k, m in (("off", off), ("on", on))}
    assert err["on"] < 0.5 * err["off"], err
    noise = 5 + torch.randn(4, 64, generator=torch.Generator().manual_seed(2))
    assert float((on.forecast(noise, 1.0, 4) - off.forecast(noise, 1.0, 4)).abs().max()) < 0.03
    daily = {**kw, "estimators": ("mean", "day")}
    assert torch.equal(mix(check_ses=True, **daily).forecast(ctx, 1800.0, 16), mix(**daily).forecast(ctx, 1800.0, 16))
    _check_option_is_refused_alone_and_round_trips(tmp_path, "check_ses", "ses_share", on, off)


def test_check_season_moves_towards_seasonal_naive_where_it_leads_the_checks_and_nowhere_else(tmp_path):
    """``check_season``: seasonal naive of the longest period the earliest check holds competes on
    the checks with the forecast so far. A noisy daily cycle of hourly values, forecast by the last
    value (an untrained model whose only estimator it is), then comes out close to seasonal naive
    and far better than without the option. Contexts with no season in their checks (1-ms CSI, a
    day of hourly values), or a week that the checks miss, keep their forecast to the bit."""
    from wfm.models.baselines import SeasonalNaive
    from wfm.models.causal_forecast import seasonal_naive

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 50, generator=g)
    for period, horizon in ((7, 12), (7, 3), (1, 4), (50, 60)):
        want = SeasonalNaive(period).forecast(x, 1.0, horizon)
        assert torch.equal(seasonal_naive(x, torch.full((3,), period), horizon), want)
    kw = dict(guard=True, check_origins=8, estimators=("last",), backtest_origins="value", quantiles=(0.1, 0.5, 0.9))
    off, on = mix(**kw), mix(check_season=True, **kw)
    itv = torch.full((2,), 600.0)  # a day is 144 values, a week 1008
    assert on.season_period(144, itv).tolist() == [144, 144] and on.season_period(143, itv).tolist() == [0, 0]
    assert on.season_period(1008, itv).tolist() == [1008, 1008]
    assert on.season_period(10 ** 6, torch.full((1,), 1e-3)).tolist() == [0]  # 1-ms CSI: a day is 8.6e7 values
    from wfm.data.loaders.timegrid import MONTH_S

    # weekly, monthly, quarterly series: the year's cycle (52, 12, 4 steps); daily: still the week
    steps = torch.tensor([7 * 86_400.0, MONTH_S, 3 * MONTH_S, 86_400.0, 12 * MONTH_S])
    assert on.season_period(60, steps).tolist() == [52, 12, 4, 7, 0]
    assert on.season_period(11, steps).tolist() == [0, 0, 4, 7, 0]
    year = torch.arange(96 + 12, dtype=torch.float64)
    monthly = torch.stack([100 + 20 * torch.cos(2 * math.pi * (year + i) / 12) + torch.randn(len(year), generator=g)
                           for i in range(6)]).float()
    got, flat = (m.forecast(monthly[:, :-12], MONTH_S, 12) for m in (on, off))
    naive = SeasonalNaive(12).forecast(monthly[:, :-12], MONTH_S, 12)
    err = {k: float(((p - monthly[:, -12:]) ** 2).mean()) for k, p in (("on", got), ("off", flat), ("naive", naive))}
    assert err["on"] < 0.1 * err["off"] and err["on"] < 1.5 * err["naive"], err
    t = torch.arange(24 * 7 + 12, dtype=torch.float64)
    cycle = torch.stack([10 + 3 * torch.sin(2 * math.pi * (t + 5 * i) / 24) + 0.1 * torch.randn(len(t), generator=g)
                         for i in range(6)]).float()
    ctx, tgt = cycle[:, :-12], cycle[:, -12:]
    (a, qa), (b, qb) = (m.forecast_with_quantiles(ctx, 3600.0, 12) for m in (off, on))
    naive = SeasonalNaive(24).forecast(ctx, 3600.0, 12)
    err = {k: float(((p - tgt) ** 2).mean()) for k, p in (("off", a), ("on", b), ("naive", naive))}
    assert err["on"] < 0.1 * err["off"] and err["on"] < 1.5 * err["naive"], err
    assert torch.allclose(qb - qa, (b - a)[..., None].expand_as(qa), atol=1e-4)  # the band moves with the forecast
    for series, seconds in ((ctx, 1e-3), (ctx[:, -24:], 3600.0)):  # no season; no check holds the day
        assert torch.equal(on.forecast(series, seconds, 12), off.forecast(series, seconds, 12))
    seasons = ("last", "mean", "trend", "day", "week")
    week_off, week_on = mix(**{**kw, "estimators": seasons}), mix(check_season=True, **{**kw, "estimators": seasons})
    long = torch.cat([cycle, cycle[:, :40]], dim=1)[:, :192]  # 8 days: the context holds a week, its checks do not
    assert torch.equal(week_on.forecast(long, 3600.0, 24), week_off.forecast(long, 3600.0, 24))
    _check_option_is_refused_alone_and_round_trips(tmp_path, "check_season", "season_share", on, off)


def test_check_trend_continues_a_smooth_path_where_it_leads_the_checks_and_leaves_noise_alone(tmp_path):
    """``check_trend``: linear extrapolation through the last two values competes on the checks
    with the forecast so far, where it cut persistence's error in half on most checks. Smooth
    bending paths (a passing vehicle's distance), forecast by the context mean (an untrained model
    whose only estimator it is), then move most of the way to the extrapolation, four times better
    than without the option; white noise and a cell idle but for its last values (every check
    flat) keep their forecast to the bit, Box-Cox or not."""
    from wfm.models.causal_forecast import last_step_trend, trend_in_range

    x = torch.tensor([[1.0, 2.0, 4.0], [5.0, 5.0, 5.0]])
    assert torch.equal(last_step_trend(x, 3), torch.tensor([[6.0, 8.0, 10.0], [5.0, 5.0, 5.0]], dtype=torch.float64))
    kw = dict(guard=True, check_origins=8, estimators=("mean",), backtest_origins="value", quantiles=(0.1, 0.5, 0.9))
    off, on = mix(**kw), mix(check_trend=True, trend_share="fitted", **kw)
    t = torch.arange(36, dtype=torch.float64) * 0.1
    paths = torch.stack([torch.sqrt(15.0 ** 2 + (8.0 * (t - 1.5 - 0.2 * i)) ** 2) for i in range(4)]).float()
    ctx, tgt = paths[:, :32], paths[:, 32:]
    (a, qa), (b, qb) = (m.forecast_with_quantiles(ctx, 0.1, 4) for m in (off, on))
    err = {k: float(((p.double() - tgt) ** 2).mean()) for k, p in
           (("off", a), ("on", b), ("trend", last_step_trend(ctx, 4)))}
    assert err["on"] < 0.25 * err["off"] and err["trend"] < err["on"], err  # a share; rows that turn in their checks keep theirs
    assert torch.allclose(qb - qa, (b - a)[..., None].expand_as(qa), atol=1e-4)  # the band moves with the forecast
    noise = torch.randn(4, 64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(on.forecast(noise, 1.0, 4), off.forecast(noise, 1.0, 4))  # the slope never paid
    # idle, then a rise at the very end: every check is flat, where the extrapolation is persistence
    # (right, but no evidence of a trend), so no share of the rise x 12 goes in (Box-Cox space too)
    idle = torch.zeros(3, 96)
    idle[:, -2:] = torch.tensor([2.0, 9.0])
    for box in (False, True):
        a, b = (mix(box_cox=box, **k).forecast(idle, 600.0, 12) for k in (kw, {**kw, "check_trend": True}))
        assert torch.equal(a, b)
    # a steady ramp whose checks all vouch for the slope, but whose last step is a burst: carried 36
    # steps it would leave the context's range 16-fold, so the forecast stays as it was (the burst's
    # step stays in range over 1 step, where the trend still goes in)
    ramp = (10.0 + torch.arange(144, dtype=torch.float32)).repeat(2, 1)
    ramp[1, -1] += 100.0
    assert trend_in_range(ramp, 36).tolist() == [True, False] and trend_in_range(ramp, 1).tolist() == [True, True]
    a, b = (m.forecast(ramp, 600.0, 36) for m in (off, on))
    assert torch.equal(a[1], b[1]) and float((b[0] - a[0]).abs().max()) > 1.0
    _check_option_is_refused_alone_and_round_trips(tmp_path, "check_trend", "trend_share", on, off)


def test_level_shift_forecasts_the_new_level_of_a_clean_shift_and_nothing_else(tmp_path):
    """``level_shift``: a row that holds a level and steps to another within its last 32 values is
    forecast as the mean since the shift, its quantiles moved with it; one or two values at a new
    level (a spike), a burst that does not settle, a daily cycle, a trend and a random walk are
    left to the forecast as it was, to the bit."""
    from wfm.models.level_shift import MAX_AFTER, level_after_shift, level_shift_start, step_noise

    g = torch.Generator().manual_seed(0)
    n = torch.randn(8, 200, generator=g, dtype=torch.float64)
    t = torch.arange(200, dtype=torch.float64)
    assert step_noise(n).sub(1).abs().max() < 0.25  # unit white noise read from its steps
    rows = {}
    for k in (3, 5, 16, MAX_AFTER):
        rows[f"shift {k}"] = torch.where(t < 200 - k, 10.0, 20.0) + n[0]
    rows["shift 40"] = torch.where(t < 160, 10.0, 20.0) + n[1]  # past MAX_AFTER: the checks' reach
    rows["spike of 2"] = torch.where(t >= 198, 20.0, 10.0) + n[2]
    burst = 10 + n[3]
    burst[190:] += torch.tensor([10.0, 25, 5, 30, 12, 28, 8, 22, 15, 26], dtype=torch.float64)  # no new level
    rows["unsettled burst"] = burst
    rows["daily cycle"] = 10 + 5 * torch.sin(2 * math.pi * t / 144) + 0.3 * n[4]
    rows["trend"] = 10 + 0.2 * t + n[5]
    rows["random walk"] = 100 + n[6].cumsum(0)
    x = torch.stack(list(rows.values()))
    start = level_shift_start(x)
    want = [200 - 3, 200 - 5, 200 - 16, 200 - MAX_AFTER, -1, -1, -1, -1, -1, -1]
    assert start.tolist() == want, dict(zip(rows, start.tolist()))
    level = level_after_shift(x, start)
    assert torch.allclose(level[:4], torch.stack([x[i, s:].mean() for i, s in enumerate(want[:4])]))
    kw = dict(guard=True, check_origins=8, backtest_origins="value", quantiles=(0.1, 0.5, 0.9))
    off, on = mix(**kw), mix(level_shift=True, **kw)
    with torch.no_grad():
        p0, q0 = off.forecast_with_quantiles(x.float(), 60.0, 12)
        p1, q1 = on.forecast_with_quantiles(x.float(), 60.0, 12)
        unchecked = on.forecast(x.float(), 60.0, 12, check=False)
    moved = start >= 0
    assert torch.allclose(p1[moved], level[moved, None].float().expand(-1, 12), atol=1e-5)
    assert torch.allclose(q1[moved] - p1[moved, :, None], q0[moved] - p0[moved, :, None], atol=1e-4)
    assert torch.equal(p1[~moved], p0[~moved]) and torch.equal(q1[~moved], q0[~moved])
    assert torch.equal(unchecked, off.forecast(x.float(), 60.0, 12, check=False))  # check=False skips it
    on.save_pretrained(str(tmp_path / "m"))
    from wfm.hub import from_pretrained

    assert from_pretrained(str(tmp_path / "m")).level_shift and not off.level_shift


def test_seasonal_mean_averages_the_profile_over_the_periods_held_on_the_last_level():
    """``seasonal_mean`` against a plain loop over periods counted back from the context's end; it is
    seasonal naive where the context holds one period (to the bit), the last value at a period of 1,
    and reads nothing before the full periods it averages."""
    from wfm.models.causal_forecast import seasonal_mean, seasonal_naive

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 45, generator=g, dtype=torch.float64)

    def reference(row: torch.Tensor, t: int, horizon: int) -> list[float]:
        n, length, out = len(row) // t, len(row), []
        for h in range(1, horizon + 1):
            last = length - 1 + h - t * math.ceil(h / t)
            devs = [row[last - (k - 1) * t] - row[length - k * t:length - (k - 1) * t].mean() for k in range(1, n + 1)]
            out.append(float(sum(devs) / n + row[length - t:].mean()))
        return out

    period = torch.tensor([7, 12, 45, 1])
    got = seasonal_mean(x, period, 16)
    for i, t in enumerate(period.tolist()):
        assert got[i].tolist() == pytest.approx(reference(x[i], t, 16), rel=1e-12, abs=1e-12)
    assert torch.equal(got[2], seasonal_naive(x[2:3], period[2:3], 16)[0])  # one period
    assert torch.allclose(got[3], x[3, -1].expand(16), atol=1e-12)
    older = x.clone()
    older[:, :3] += 100.0  # before the six full weeks of 45 values
    assert torch.equal(seasonal_mean(older[:1], period[:1], 16), got[:1])
    t = torch.arange(45 + 16, dtype=torch.float64)
    growing = 0.7 * t + torch.tensor([0.0, 5.0, 0.0, -5.0, 2.0, 1.0, -3.0]).repeat(9)[:len(t)]
    drifted = seasonal_mean(growing[None, :45], period[:1], 16, drift=True)  # a line plus a fixed weekly profile
    assert torch.allclose(drifted[0], growing[45:], atol=1e-9)
    assert torch.equal(seasonal_mean(x[2:3], period[2:3], 16, drift=True), got[2:3])  # one period: no drift


def test_season_mean_averages_out_what_seasonal_naive_carries_of_one_periods_noise(tmp_path):
    """``season_mean``: a daily cycle of hourly values under noise as large as its swing, forecast by
    the last value (an untrained model whose only estimator it is). ``check_season`` takes the
    seasonal candidate where it leads the checks; averaged over the eight days the context holds it
    errs far less than seasonal naive, which repeats one day's noise. A context of one day holds
    one period, where the two are the same."""
    g = torch.Generator().manual_seed(4)
    t = torch.arange(24 * 9, dtype=torch.float64)
    rows = torch.stack([10 + 3 * torch.sin(2 * math.pi * (t + 5 * i) / 24) + 2 * torch.randn(len(t), generator=g)
                        for i in range(16)]).float()
    ctx, tgt = rows[:, :24 * 8], rows[:, 24 * 8:].double()
    kw = dict(guard=True, check_origins=8, estimators=("last",), backtest_origins="value", check_season=True)
    naive, averaged = mix(**kw), mix(season_mean=True, **kw)
    err = {k: float(((m.forecast(ctx, 3600.0, 24).double() - tgt) ** 2).mean()) for k, m in
           (("naive", naive), ("averaged", averaged))}
    assert err["averaged"] < 0.85 * err["naive"], err
    short = rows[:, :40]  # checks cut at 24 or later hold one day
    assert torch.allclose(averaged.forecast(short, 3600.0, 8), naive.forecast(short, 3600.0, 8), atol=1e-5)
    with pytest.raises(ValueError, match="season_mean .* needs check_season"):
        mix(guard=True, check_origins=8, season_mean=True)
    averaged.save_pretrained(str(tmp_path / "m"))
    from wfm.hub import from_pretrained

    assert from_pretrained(str(tmp_path / "m")).season_mean and not naive.season_mean


def test_season_drift_follows_a_growing_season_where_it_wins_beyond_doubt(tmp_path):
    """``season_drift``: a daily cycle of hourly values on a rising level, forecast by the last value
    (an untrained model whose only estimator it is). The averaged season alone lags the rise by
    half a day; with its drift tested on the checks, the growing season is followed. A season that
    does not grow keeps ``season_mean``'s forecast to a hundredth of its swing (what drift its period
    means show is noise)."""
    g = torch.Generator().manual_seed(6)
    t = torch.arange(24 * 9, dtype=torch.float64)
    rising = torch.stack([10 + 0.2 * t + 3 * torch.sin(2 * math.pi * (t + 5 * i) / 24)
                          + 0.3 * torch.randn(len(t), generator=g, dtype=torch.float64) for i in range(8)]).float()
    ctx, tgt = rising[:, :24 * 8], rising[:, 24 * 8:].double()
    kw = dict(guard=True, check_origins=8, estimators=("last",), backtest_origins="value", check_season=True,
              season_mean=True)
    flat, growing = mix(**kw), mix(season_drift=True, **kw)
    err = {k: float(((m.forecast(ctx, 3600.0, 24).double() - tgt) ** 2).mean()) for k, m in
           (("mean", flat), ("drift", growing))}
    assert err["drift"] < 0.2 * err["mean"], err
    still = torch.stack([10 + 3 * torch.sin(2 * math.pi * (t + 5 * i) / 24)
                         + 0.3 * torch.randn(len(t), generator=g, dtype=torch.float64) for i in range(8)]).float()
    moved = growing.forecast(still[:, :192], 3600.0, 24) - flat.forecast(still[:, :192], 3600.0, 24)
    assert float(moved.abs().max()) < 0.05  # a hundredth of the swing: no drift to carry
    with pytest.raises(ValueError, match="season_drift .* needs season_mean"):
        mix(guard=True, check_origins=8, check_season=True, season_drift=True)
    growing.save_pretrained(str(tmp_path / "m"))
    from wfm.hub import from_pretrained

    assert from_pretrained(str(tmp_path / "m")).season_drift and not flat.season_drift


def test_short_checks_let_a_short_context_test_its_season_and_keep_extrapolations_out(tmp_path):
    """``short_checks``: 24 monthly values -> 12 fit one check of the whole horizon, which decides
    nothing; three checks of 4 months do, and seasonal naive, exact on a clean season the prior
    lacks (the year), takes (a share of) the forecast. A trend that pays over 4 steps is not
    carried over 12 on their word, and a day the prior holds is left to the network. Contexts with
    two whole checks, or no room for any, are checked as before."""
    from wfm.data.loaders.timegrid import MONTH_S
    from wfm.hub import from_pretrained
    from wfm.models.baselines import SeasonalNaive

    kw = dict(prior="mix", estimators=("last", "mean", "trend"), backtest_origins="value", guard=True,
              check_origins=8, check_season=True)
    off = create_model("causal_tiny", **kw).eval()
    with torch.no_grad():
        torch.nn.init.normal_(off.head.weight, std=0.5)  # a network that does not copy the season
    on = create_model("causal_tiny", short_checks=True, **kw).eval()
    on.load_state_dict(off.state_dict())
    assert off.check_plan(24, 12) == ([12], 12) and on.check_plan(24, 12) == ([12, 16, 20], 4)
    assert on.check_plan(96, 12) == (off.check_cuts(96, 12), 12)  # two whole checks or more: unchanged
    assert on.check_plan(8, 8) == ([], 8)  # no room for any
    g = torch.Generator().manual_seed(0)
    t = torch.arange(36, dtype=torch.float64)
    rows = 100 + 20 * torch.sin(2 * math.pi * (t + 12 * torch.rand(8, 1, generator=g, dtype=torch.float64)) / 12)
    rows = (rows + 0.01 * torch.randn(8, 36, generator=g, dtype=torch.float64)).float()
    ctx, truth = rows[:, :24], rows[:, 24:].double()
    f_on, f_off = on.forecast(ctx, MONTH_S, 12).double(), off.forecast(ctx, MONTH_S, 12).double()
    naive = SeasonalNaive(12).forecast(ctx, MONTH_S, 12).double()
    err_on, err_off = ((f_on - truth) ** 2).mean(), ((f_off - truth) ** 2).mean()
    assert ((f_on - naive) ** 2).mean() < 0.5 * ((f_off - naive) ** 2).mean() and err_on < 0.5 * err_off
    # A ramp: check_trend's extrapolation is left out of short checks (as without check_trend)
    trend = create_model("causal_tiny", short_checks=True, check_trend=True, **kw).eval()
    trend.load_state_dict(off.state_dict())
    ramp = (5 + 0.5 * torch.arange(24.0) + 0.05 * torch.randn(4, 24, generator=g)).abs()
    assert torch.equal(trend.forecast(ramp, 60.0, 12), on.forecast(ramp, 60.0, 12))
    # A day the prior holds (its own `day` estimator) is the network's to use: short checks of 8 hours
    # do not overrule it with seasonal naive, nor does the guard switch on them
    kw_day = dict(kw, estimators=("last", "mean", "trend", "day"))
    day_off = create_model("causal_tiny", **kw_day).eval()
    day_on = create_model("causal_tiny", short_checks=True, **kw_day).eval()
    day_on.load_state_dict(day_off.state_dict())
    hours = torch.arange(48, dtype=torch.float64)
    daily = 50 + 20 * torch.sin(2 * math.pi * hours / 24) + 0.01 * torch.randn(4, 48, generator=g, dtype=torch.float64)
    assert day_on.check_plan(48, 24) == ([24, 32, 40], 8)
    assert torch.equal(day_on.forecast(daily.float(), 3600.0, 24), day_off.forecast(daily.float(), 3600.0, 24))
    on.save_pretrained(str(tmp_path / "m"))
    assert from_pretrained(str(tmp_path / "m")).short_checks and not off.short_checks
    with pytest.raises(ValueError, match="short_checks .* needs check_origins"):
        create_model("causal_tiny", prior="mix", guard=True, short_checks=True)


def test_walk_last_gives_a_random_walk_its_last_value_and_leaves_levels_seasons_and_short_contexts(tmp_path):
    """``walk_last``: a row whose steps are white, whose level does not hold and whose unit root
    the Dickey-Fuller test keeps is forecast as its last value (plus a drift beyond doubt); noise
    around a level, an AR(1) at 0.5, a clean season in its steps and a context too short to test
    a year of lags keep the forecast to the bit, and groups pool the test."""
    from wfm.hub import from_pretrained
    from wfm.models.evidence import walk_beyond_doubt

    g = torch.Generator().manual_seed(0)
    n, L = 300, 96
    steps = torch.randn(n, L, generator=g, dtype=torch.float64)
    walk = 50 + steps.cumsum(1)
    drifting = 50 + (steps + 1.0).cumsum(1)
    level = 50 + steps
    ar = torch.zeros(n, L, dtype=torch.float64)
    for t in range(1, L):
        ar[:, t] = 0.5 * ar[:, t - 1] + steps[:, t]
    season = walk + 20 * torch.sin(2 * math.pi * torch.arange(L) / 12)
    w, d = walk_beyond_doubt(walk)
    assert w.double().mean() > 0.6 and (d != 0).double().mean() < 0.05
    w, d = walk_beyond_doubt(drifting)
    assert w.double().mean() > 0.6 and (d[w] - 1.0).abs().max() < 0.5  # the drift, each row's own
    for other in (level, 50 + ar, season):
        assert walk_beyond_doubt(other)[0].double().mean() < 0.1
    assert not walk_beyond_doubt(walk[:, :36])[0].any()  # 35 steps cannot test the year's lag
    # Groups pool the test: four walks pass together; two walks with two levels do not
    group = torch.arange(3).repeat_interleave(4)
    pooled = walk_beyond_doubt(torch.cat([walk[:4], level[:4], walk[4:6], level[4:6]]), group)[0]
    assert pooled.tolist() == [True] * 4 + [False] * 8

    kw = dict(prior="mix", estimators=("last", "mean", "trend"), backtest_origins="value", guard=True, check_origins=8)
    off = create_model("causal_tiny", **kw).eval()
    with torch.no_grad():
        torch.nn.init.normal_(off.head.weight, std=0.5)  # a network that does not hold the last value
    on = create_model("causal_tiny", walk_last=True, **kw).eval()
    on.load_state_dict(off.state_dict())
    rows = torch.cat([walk[:6], drifting[:6], level[:6]]).float()
    passed, drift = walk_beyond_doubt(rows)
    assert passed[:12].any() and not passed[12:].any()
    f, base = on.forecast(rows, 1.0, 8), off.forecast(rows, 1.0, 8)  # (a day: 900 contexts)
    ahead = torch.arange(1, 9, dtype=torch.float64)
    expect = (rows[:, -1:].double() + drift[:, None] * ahead).float()
    assert torch.equal(f[passed], expect[passed]) and torch.equal(f[~passed], base[~passed])
    assert torch.equal(on.forecast(rows[:, -36:], 1.0, 8), off.forecast(rows[:, -36:], 1.0, 8))
    # A season the test cannot read (a day of hourly values over 96 of them, a day of 15 minutes over
    # one day, a day of minutes over 15 contexts) may be what looks like a walk: no verdict; one
    # far longer than the context (a day of seconds) is nearly a line over it, and a week of daily
    # values is among the lags read
    seasons, unseen = on.context_seasons(96, 8, torch.tensor([3600.0, 900.0, 60.0, 1.0, 86400.0]))
    assert seasons.tolist() == [[24, 168], [96, 672], [1440, 10080], [86400, 604800], [0, 7]]
    assert unseen.tolist() == [True, True, True, False, False]
    assert torch.equal(on.forecast(rows, 3600.0, 8), off.forecast(rows, 3600.0, 8))
    on.save_pretrained(str(tmp_path / "m"))
    assert from_pretrained(str(tmp_path / "m")).walk_last and not off.walk_last
    with pytest.raises(ValueError, match="walk_last .* needs check_origins"):
        create_model("causal_tiny", prior="mix", walk_last=True)


def test_drift_ar_forecasts_a_window_that_drifts_together_by_pooled_linear_prediction(tmp_path):
    """``drift_ar``: a window whose channels turn together, slowly under their noise, passes the
    drift test and is forecast by linear prediction pooled over its channels where no two checks
    fit; white noise, white noise under one common gain (a still link's AGC: a few effective
    channels, so its autocorrelation proves nothing), a window of fewer than 8 channels, lone rows
    and a context long enough for two checks keep the forecast to the bit."""
    from wfm.hub import from_pretrained
    from wfm.models.evidence import drifts_beyond_noise
    from wfm.models.linear_prediction import ar_forecast_rows

    g = torch.Generator().manual_seed(0)
    rows, L, H = 32, 16, 8
    t = torch.arange(L + H, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(rows, 1, generator=g, dtype=torch.float64)
    gain = 1 + torch.rand(rows, 1, generator=g, dtype=torch.float64)
    turning = gain * torch.cos(2 * math.pi * 0.02 * t + phase) + 0.3 * torch.randn(rows, L + H, generator=g,
                                                                                      dtype=torch.float64)
    white = torch.randn(rows, L + H, generator=g, dtype=torch.float64)
    common = 1 + 0.1 * torch.randn(1, L + H, generator=g, dtype=torch.float64)  # every channel's gain at once
    still = (2 + torch.randn(rows, 1, generator=g, dtype=torch.float64)) * common + 0.01 * white
    one = torch.zeros(rows, dtype=torch.long)
    assert drifts_beyond_noise(turning[:, :L], one).all()
    for other in (white, still):
        assert not drifts_beyond_noise(other[:, :L], one).any()
    assert not drifts_beyond_noise(turning[:7, :L], one[:7]).any()  # too few channels to count
    # Long contexts are read in blocks of rows: the same verdict
    import wfm.models.evidence as evidence
    block, evidence.DRIFT_BLOCK = evidence.DRIFT_BLOCK, 3 * L * L
    try:
        assert drifts_beyond_noise(turning[:, :L], one).all()
    finally:
        evidence.DRIFT_BLOCK = block

    kw = dict(prior="mix", estimators=("last", "mean", "trend"), backtest_origins="value", guard=True,
              check_origins=8, white_limit=0.5, quantiles=(0.1, 0.5, 0.9))
    off = create_model("causal_tiny", **kw).eval()
    on = create_model("causal_tiny", drift_ar=True, **kw).eval()
    on.load_state_dict(off.state_dict())
    context = torch.cat([turning, white, still])[:, :L].float()
    group = torch.arange(3).repeat_interleave(rows)
    f, base = on.forecast(context, 1e-3, H, group=group), off.forecast(context, 1e-3, H, group=group)
    expect = ar_forecast_rows(context[:rows], H, group[:rows]).float()
    assert torch.equal(f[:rows], expect) and not torch.equal(base[:rows], expect)
    assert torch.equal(f[rows:], base[rows:])
    assert torch.equal(on.forecast(context, 1e-3, H), off.forecast(context, 1e-3, H))  # lone rows: never
    _, q = on.forecast_with_quantiles(context, 1e-3, H, group=group)  # the quantiles move with the point
    _, q0 = off.forecast_with_quantiles(context, 1e-3, H, group=group)
    assert torch.allclose(q[:rows] - f[:rows, :, None], q0[:rows] - base[:rows, :, None], atol=1e-4)
    long = torch.cat([turning, white])[:, None, :].repeat(1, 1, 3).flatten(1)[:, :48].float()  # 2 checks fit
    assert len(on.check_cuts(48, H)) >= 2
    assert torch.equal(on.forecast(long, 1e-3, H, group=group[:2 * rows]),
                       off.forecast(long, 1e-3, H, group=group[:2 * rows]))
    on.save_pretrained(str(tmp_path / "m"))
    assert from_pretrained(str(tmp_path / "m")).drift_ar and not off.drift_ar
    with pytest.raises(ValueError, match="drift_ar .* needs check_origins"):
        create_model("causal_tiny", prior="mix", drift_ar=True)


def test_drift_shape_finds_a_turn_in_eight_packets_and_leaves_a_gain_step_that_every_channel_shares(tmp_path):
    """``drift_shape``: with Ljung-Box's small-sample variance a window turning slowly under its
    noise passes ``drift_ar``'s test in 8 packets, where the release's variance does not, and is
    forecast by pooled linear prediction. A still link whose gain steps on every channel at once (an
    AGC step) passes the sharper variance too, but not once each packet is divided by the common
    gain, and keeps the forecast of the model without ``drift_ar``; a window the release's test
    passes still does. The option survives a save and needs ``drift_ar``."""
    from wfm.hub import from_pretrained
    from wfm.models import evidence
    from wfm.models.evidence import drifts_beyond_noise
    from wfm.models.linear_prediction import ar_forecast_rows

    g = torch.Generator().manual_seed(0)
    rows, H = 32, 8
    t = torch.arange(8 + H, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(rows, 1, generator=g, dtype=torch.float64)
    gain = 1 + torch.rand(rows, 1, generator=g, dtype=torch.float64)
    turning = (gain * torch.cos(2 * math.pi * 0.04 * t + phase)
               + 0.3 * torch.randn(rows, 8 + H, generator=g, dtype=torch.float64))[:, :8]

    def stepped(length: int, at: int, noise: float) -> torch.Tensor:
        gen = torch.Generator().manual_seed(0)
        common = torch.ones(1, length, dtype=torch.float64)
        common[:, at:] = 0.85  # every channel's gain steps down and stays
        return (2 + torch.randn(rows, 1, generator=gen, dtype=torch.float64)) * common \
            + noise * torch.randn(rows, length, generator=gen, dtype=torch.float64)

    still, strong = stepped(12, 8, 0.05), stepped(16, 10, 0.05)
    one = torch.zeros(rows, dtype=torch.long)
    _, inv, counts = torch.unique(one, return_inverse=True, return_counts=True)
    assert not drifts_beyond_noise(turning, one).any() and drifts_beyond_noise(turning, one, shape=True).all()
    excess, channels, _ = evidence._lag1_excess(still, inv, counts)
    assert float(evidence._drift_z(excess, channels, 12, True)[0]) > evidence.DRIFT_Z  # the sharper variance alone
    assert not drifts_beyond_noise(still, one).any() and not drifts_beyond_noise(still, one, shape=True).any()
    assert drifts_beyond_noise(strong, one).all() and drifts_beyond_noise(strong, one, shape=True).all()

    kw = dict(prior="mix", estimators=("last", "mean", "trend"), backtest_origins="value", guard=True,
              check_origins=8, white_limit=0.5)
    plain = create_model("causal_tiny", **kw).eval()
    release = create_model("causal_tiny", drift_ar=True, **kw).eval()
    shape = create_model("causal_tiny", drift_ar=True, drift_shape=True, **kw).eval()
    release.load_state_dict(plain.state_dict())
    shape.load_state_dict(plain.state_dict())
    group = torch.zeros(rows, dtype=torch.long)
    f = shape.forecast(turning.float(), 1e-3, H, group=group)
    assert torch.equal(f, ar_forecast_rows(turning.float(), H, group).float())
    assert torch.equal(release.forecast(turning.float(), 1e-3, H, group=group),
                       plain.forecast(turning.float(), 1e-3, H, group=group))
    assert torch.equal(shape.forecast(still.float(), 1e-3, H, group=group),
                       plain.forecast(still.float(), 1e-3, H, group=group))
    assert torch.equal(shape.forecast(strong.float(), 1e-3, H, group=group),
                       release.forecast(strong.float(), 1e-3, H, group=group))
    shape.save_pretrained(str(tmp_path / "m"))
    assert from_pretrained(str(tmp_path / "m")).drift_shape and not release.drift_shape
    with pytest.raises(ValueError, match="drift_shape .* needs drift_ar"):
        create_model("causal_tiny", drift_shape=True, **kw)
