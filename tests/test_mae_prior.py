"""Prior-anchored MAE and CSI of any shape: classical estimates, zero correction, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wfm.models.mae import MaskedAutoencoder, pad_to_patches
from wfm.models.priors import masked_priors


def _csi(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(*shape, generator=g), torch.randn(*shape, generator=g))


def _tiny(prior: str, **kw) -> MaskedAutoencoder:
    torch.manual_seed(0)
    return MaskedAutoencoder(dim=32, depth=1, num_heads=4, decoder_depth=1, prior=prior, **kw).eval()


def test_priors_temporal_are_persistence_and_context_mean():
    csi = _csi(2, 8, 3, 5)
    vis = torch.zeros(2, 8, 3, 5, dtype=torch.bool)
    vis[:, :5] = True
    est = masked_priors(csi, vis)
    assert torch.equal(est["hold"][:, 5:], csi[:, 4:5].expand(-1, 3, -1, -1))
    torch.testing.assert_close(est["mean"][:, 5:], csi[:, :5].mean(dim=1, keepdim=True).expand(-1, 3, -1, -1))
    assert torch.equal(est["hold"][:, :5], csi[:, :5]) and torch.equal(est["mean"][:, :5], csi[:, :5])


def test_priors_frequency_hold_nearest_subcarrier_and_antenna_fallback():
    csi = _csi(1, 4, 2, 6)
    vis = torch.ones(1, 4, 2, 6, dtype=torch.bool)
    vis[..., 4:] = False  # upper subcarriers at every time step: time has nothing, subcarriers do
    est = masked_priors(csi, vis)
    assert torch.equal(est["hold"][..., 4:], csi[..., 3:4].expand(-1, -1, -1, 2))
    torch.testing.assert_close(est["mean"][..., 4:], csi[..., :4].mean(dim=-1, keepdim=True).expand(-1, -1, -1, 2))
    vis = torch.ones(1, 4, 2, 6, dtype=torch.bool)
    vis[:, :, 1] = False  # a whole antenna: only the antenna axis has visible values
    assert torch.equal(masked_priors(csi, vis)["hold"][:, :, 1], csi[:, :, 0])


@pytest.mark.parametrize("prior", ["hold", "mean", "mix"])
@pytest.mark.parametrize("kind", ["temporal", "frequency"])
def test_zero_correction_reproduces_the_prior_exactly(prior, kind):
    model = _tiny(prior)
    csi = 3.0 * _csi(2, 16, 3, 30)
    pred = model.predict(csi, kind, 0.5, guard=False)
    axis = 1 if kind == "temporal" else 3
    vis = ~pred.mask
    est = masked_priors(csi, vis)
    want = est["hold"] if prior == "hold" else est["mean"] if prior == "mean" else 0.5 * (est["hold"] + est["mean"])
    torch.testing.assert_close(pred.reconstruction, want, rtol=1e-5, atol=1e-5)
    assert int(pred.mask.sum(dim=axis)[0].flatten()[0]) == csi.shape[axis] // 2


def test_prior_none_keeps_the_original_mae_parameters():
    plain = MaskedAutoencoder(dim=32, depth=1, num_heads=4, decoder_depth=1)
    anchored = _tiny("mix")
    extra = set(anchored.state_dict()) - set(plain.state_dict())
    assert extra == {"prior_embed.weight", "prior_embed.bias", "prior_gate.weight", "prior_gate.bias"}


@pytest.mark.parametrize("shape", [(16, 3, 30), (15, 1, 56), (9, 2, 114), (16, 3, 242), (20, 4, 64)])
def test_any_shape_predicts_exactly_the_hidden_part(shape):
    model = _tiny("hold")
    csi = _csi(2, *shape)
    t, a, k = shape
    pred = model.predict(csi, "temporal", 0.5)
    assert pred.reconstruction.shape == csi.shape and pred.mask.shape == csi.shape
    hidden = round(0.5 * t)
    assert pred.mask[:, t - hidden:].all() and not pred.mask[:, :t - hidden].any()
    assert torch.equal(pred.reconstruction[:, :t - hidden], csi[:, :t - hidden])
    # The reported NMSE is over the user's elements only, padding excluded.
    err = ((pred.reconstruction - csi).abs() ** 2 * pred.mask).sum(dim=(1, 2, 3))
    power = (csi.abs() ** 2 * pred.mask).sum(dim=(1, 2, 3))
    torch.testing.assert_close(pred.nmse, err / power, rtol=1e-4, atol=1e-6)
    fpred = model.predict(csi, "frequency", 0.5)
    assert fpred.mask[..., k - round(0.5 * k):].all() and not fpred.mask[..., :k - round(0.5 * k)].any()


def test_one_window_predicts_as_a_batch_of_one():
    """``predict`` on one ``[16, 3, 30]`` window, as a user holds it: the batch of one's result
    without its axis; anything but 3 or 4 axes is named."""
    model = _tiny("mix", guard_prior={"frequency": "hold"}, white_limit=0.5, white_dips=True)
    csi = _csi(16, 3, 30)
    for kind in ("temporal", "frequency"):
        one, batch = model.predict(csi, kind, 0.5), model.predict(csi[None], kind, 0.5)
        assert one.reconstruction.shape == one.mask.shape == csi.shape and one.nmse.shape == ()
        torch.testing.assert_close(one.reconstruction, batch.reconstruction[0])
        assert torch.equal(one.mask, batch.mask[0]) and one.nmse_db == batch.nmse_db
    with pytest.raises(ValueError, match=r"\[T, A, K\].*got shape \(16, 30\)"):
        model.predict(csi[:, 0], "temporal", 0.5)


def test_padding_is_edge_repetition_with_a_validity_mask():
    csi = _csi(1, 5, 3, 6)
    padded, valid, crop = pad_to_patches(csi, (4, 4, 4), front=(3, 0, 0))
    assert padded.shape == (1, 8, 4, 8) and valid.shape == (1, 8, 4, 8)
    assert crop == ((3, 5), (0, 3), (0, 6))
    assert torch.equal(padded[:, 3:, :3, :6], csi) and int(valid.sum()) == csi[0].numel()
    assert torch.equal(padded[:, :3, :3, :6], csi[:, :1].expand(-1, 3, -1, -1))


def test_training_loss_ignores_padding():
    model = _tiny("mix").train()
    csi = _csi(2, 16, 3, 30)
    grid = model.grid_for(csi.shape)
    mask = torch.zeros(2, grid[0] * grid[1] * grid[2], dtype=torch.bool)
    mask[:, -grid[1] * grid[2]:] = True
    out = model(csi, mask)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.valid is not None
    assert model.prior_gate.bias.grad is not None and model.decoder_pred.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_predict_refuses_non_finite_csi(bad):
    csi = _csi(1, 16, 2, 8)
    csi[0, 3, 1, 2] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        _tiny("hold").predict(csi, "temporal", 0.5)


def test_predict_refuses_values_whose_square_overflows():
    csi = _csi(1, 16, 2, 8)
    csi[0, 0, 0, 0] = 1e30  # finite, but its square is not in float32: the output used to be NaN
    with pytest.raises(ValueError, match="rescale"):
        _tiny("mix").predict(csi, "temporal", 0.5)
    big = _tiny("mix").predict(_csi(1, 16, 2, 8) * 1e12, "temporal", 0.5)  # large but representable: fine
    assert torch.isfinite(torch.view_as_real(big.reconstruction)).all()


def test_guard_picks_the_estimator_that_did_best_and_drops_a_harmful_correction():
    model = _tiny("mix")
    torch.nn.init.normal_(model.decoder_pred.weight, std=1.0)  # a large, useless correction
    g = torch.Generator().manual_seed(1)
    noisy = torch.complex(torch.randn(4, 16, 2, 8, generator=g), torch.randn(4, 16, 2, 8, generator=g)) + 5
    t = torch.linspace(0, 1, 16)[None, :, None, None]
    smooth = torch.exp(2j * torch.pi * 0.3 * t) * torch.ones(4, 16, 2, 8) + 0.01 * noisy
    names = ["hold", "mean", "reversion", "ar", "rank1"]  # ESTIMATORS, then the guard's own along the masked axis
    # Noise around a level: the mean, or the reversion estimate (phi ~ 0: the same); a smooth
    # rotation: linear prediction, which continues it (the nearest packet only holds it).
    for csi, best in ((noisy, ("mean", "reversion")), (smooth, ("ar",))):
        weights, scale, dim, prior_scale = model.backtest(csi, "temporal", 0.5)
        assert dim == 1 and (sum(weights[:, names.index(b)] for b in best) > 0.75).all()
        assert (scale < 0.2).all()
        pred = model.predict(csi, "temporal", 0.5)
        est = masked_priors(csi, ~pred.mask, reversion_dim=1)
        want = sum(weights[:, i, None, None, None] * est[n] for i, n in enumerate(names))
        err = ((pred.reconstruction - want).abs() ** 2 * pred.mask).sum() / ((want.abs() ** 2) * pred.mask).sum()
        assert err < 0.05  # at most the little correction the backtest let through
    assert model.backtest(noisy, "random", 0.5) is None and _tiny("none").backtest(noisy, "temporal", 0.5) is None


def test_guard_shrinks_a_prior_only_where_the_target_decorrelated_from_it():
    from wfm.models.mae import BacktestSums, fitted_correction_scale, fitted_scales

    def sums(p: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> BacktestSums:
        d = lambda a, b: (a * b).sum(dim=1).double()  # noqa: E731
        return BacktestSums(d(t, t), d(p, t), d(c, t), d(p, p), d(p, c), d(c, c))

    g = torch.Generator().manual_seed(0)
    p, c, n = (torch.randn(4, 256, generator=g) for _ in range(3))
    n = n - (n * p).sum(1, keepdim=True) / (p * p).sum(1, keepdim=True) * p  # noise uncorrelated with the prior
    # Noise around what the prior holds, and a gain step down or up: the prior stays at full scale,
    # and the correction keeps its plain least-squares fit.
    for t in (p + 0.3 * n, 0.5 * p, 2.0 * p):
        s = sums(p, t, c)
        a, b = fitted_scales(s)
        assert torch.allclose(a, torch.ones(4)) and torch.allclose(b, fitted_correction_scale(s.cr, s.cc).float())
    # A target that kept 0.3 of its correlation with the prior: shrunk to about 0.3, which the
    # backtest scores below the full prior.
    s = sums(p, 0.3 * p + 0.95 * n, c)
    a, b = fitted_scales(s)
    assert ((a - 0.3).abs() < 0.1).all() and (s.error(a.double(), b.double()) < s.error(torch.ones(4).double(), b.double())).all()
    assert torch.allclose(s.rr, ((0.3 * p + 0.95 * n - p) ** 2).sum(1).double())

    # End to end: a zero-mean channel whose packets are independent draws (nothing to hold) is
    # predicted closer to zero, and better, than with the prior at full scale; a still level with
    # noise is predicted as before (to within how far the backtest's own noise moves ``a`` from 1).
    import wfm.models.mae as mae_module

    model = _tiny("mix")
    fading = _csi(6, 16, 2, 8, seed=3)
    still = 3 + 0.1 * _csi(6, 16, 2, 8, seed=4)
    out = {}
    for on in (True, False):
        mae_module.PRIOR_SHRINK = on
        try:
            out[on] = [model.predict(x, "temporal", 0.5).reconstruction for x in (fading, still)]
        finally:
            mae_module.PRIOR_SHRINK = True
    err = [float(((o[0] - fading)[:, 8:].abs() ** 2).mean()) for o in (out[True], out[False])]
    assert err[0] < 0.95 * err[1]  # about the power of the channel itself (2), not the mean of 8 draws on top
    assert out[True][0][:, 8:].abs().mean() < 0.5 * out[False][0][:, 8:].abs().mean()
    assert float((out[True][1] - out[False][1]).abs().max()) < 0.01 * 3
    assert (model.backtest(still, "temporal", 0.5)[3] > 0.99).all()


def test_skill_loss_weighs_each_sample_against_its_own_prior():
    from wfm.models.mae import SKILL_FLOOR

    model = _tiny("mix", loss="skill").train()
    csi = _csi(3, 16, 3, 30)
    csi[1] *= 100.0  # a loud sample does not dominate: every term is relative to that sample's prior
    mask, front = model.prediction_mask(csi.shape, "temporal", 0.5)
    out = model(csi, mask, front)
    m = (out.mask[..., None].float() * (1.0 if out.valid is None else out.valid)).expand_as(out.target)
    err = (((out.pred - out.target) ** 2) * m).sum(dim=(1, 2))
    prior_err = (((out.prior - out.target) ** 2) * m).sum(dim=(1, 2))
    power = ((out.target ** 2) * m).sum(dim=(1, 2))
    torch.testing.assert_close(out.loss, (err / (prior_err + SKILL_FLOOR * power)).mean())
    # The untrained correction is zero, so each sample scores its prior: just under 1 (the floor).
    assert 0.99 < float(out.loss) <= 1.0
    out.loss.backward()
    assert model.decoder_pred.weight.grad.abs().sum() > 0  # the correction head learns from it
    with pytest.raises(ValueError, match="skill"):
        MaskedAutoencoder(dim=32, depth=1, num_heads=4, decoder_depth=1, loss="skill")  # needs a prior


def test_init_weights_continues_from_an_exported_model():
    from wfm.hub import CheckpointError, from_pretrained
    from wfm.training.lit_mae import MAEPretrainModule

    from conftest import REPO

    folder = str(REPO / "checkpoints" / "mae-tiny-catalog-cpu")
    released = from_pretrained(folder).state_dict()
    module = MAEPretrainModule(model="mae_tiny", prior="mix", loss="skill", init_weights=folder)
    got = module.model.state_dict()
    assert got.keys() == released.keys() and all(torch.equal(got[k], released[k]) for k in got)
    with pytest.raises(CheckpointError, match=r"init_weights.*unexpected keys"):  # prior "none" has no prior layers
        MAEPretrainModule(model="mae_tiny", prior="none", init_weights=folder)


def test_reversion_prior_pools_one_phi_over_the_window():
    from wfm.models.priors import reversion_weight

    g = torch.Generator().manual_seed(0)
    vis = torch.zeros(2, 200, 3, 30, dtype=torch.bool)
    vis[:, :150] = True
    noise = torch.complex(torch.randn(1, 200, 3, 30, generator=g), torch.randn(1, 200, 3, 30, generator=g))
    ar = torch.zeros_like(noise)
    for t in range(1, 200):  # AR(1), phi = 0.9, on every antenna and subcarrier
        ar[:, t] = 0.9 * ar[:, t - 1] + noise[:, t]
    csi = torch.cat([noise + 3, ar + 3])
    w = reversion_weight(csi, vis, dim=1)
    assert float(w[0, 150:].max()) < 0.05  # white noise: phi ~ 0, the mean
    assert abs(float(w[1, 150, 0, 0]) - 0.9) < 0.03 and torch.allclose(w[1, 151], w[1, 150] ** 2)
    est = masked_priors(csi, vis, reversion_dim=1)
    torch.testing.assert_close(est["reversion"][:, 150:], (w * est["hold"] + (1 - w) * est["mean"])[:, 150:])
    torch.testing.assert_close(est["reversion"][:, :150], csi[:, :150])  # visible: the input itself


def test_rank1_prior_holds_the_gain_times_profile_approximation():
    """``rank1``: each antenna's visible block approximated as a per-packet gain times the mean
    profile, ``g(t) S(k)``, then its nearest visible value along the masked axis."""
    g = torch.Generator().manual_seed(3)
    gain = torch.complex(torch.randn(2, 8, 3, 1, generator=g), torch.randn(2, 8, 3, 1, generator=g))
    profile = torch.complex(torch.randn(2, 1, 3, 16, generator=g), torch.randn(2, 1, 3, 16, generator=g))
    clean = gain * profile
    vis = torch.ones(2, 8, 3, 16, dtype=torch.bool)
    vis[..., 10:] = False
    est = masked_priors(clean, vis, reversion_dim=3)
    # A window that is rank 1 is its own approximation: rank1 is then the nearest subcarrier.
    torch.testing.assert_close(est["rank1"], est["hold"])
    noisy = clean + 0.3 * _csi(2, 8, 3, 16, seed=4)
    est = masked_priors(noisy, vis, reversion_dim=3)
    # the leading singular pair of each antenna's visible [8, 10] block, its subcarrier 9 held
    u, sv, vh = torch.linalg.svd(noisy[..., :10].permute(0, 2, 1, 3))  # [2, 3, 8, 10]
    lead = (u[..., :, :1] * sv[..., None, :1] * vh[..., :1, :]).permute(0, 2, 1, 3)  # [2, 8, 3, 10]
    torch.testing.assert_close(est["rank1"][..., 10:], lead[..., 9:10].expand(-1, -1, -1, 6), atol=1e-3, rtol=1e-3)
    assert torch.equal(est["rank1"][..., :10], noisy[..., :10])  # visible: the input itself
    # The noise of one subcarrier at one packet averages out over the window's packets.
    err = {k: float((est[k][..., 10:] - clean[..., 9:10]).abs().square().mean()) for k in ("hold", "rank1")}
    assert err["rank1"] < 0.5 * err["hold"]


def test_line_prior_continues_the_least_squares_line_of_the_last_visible_values():
    """``line``: per channel, the least-squares line through the last ``LINE_SPAN`` visible values
    along the masked axis, continued; ``hold`` where the visible part is not one leading block."""
    from wfm.models.priors import LINE_SPAN

    k = torch.arange(16, dtype=torch.float32)
    g = torch.Generator().manual_seed(7)
    a, b = _csi(2, 4, 3, 1, seed=8), _csi(2, 4, 3, 1, seed=9)
    tilted = a + b * k  # a complex line along subcarriers in every channel
    vis = torch.ones(2, 4, 3, 16, dtype=torch.bool)
    vis[..., 10:] = False
    est = masked_priors(tilted, vis, reversion_dim=3)
    torch.testing.assert_close(est["line"], tilted, atol=1e-4, rtol=1e-4)  # continued exactly
    # Under noise: the line through visible subcarriers 2..9 only (LINE_SPAN of them), against numpy's fit.
    noisy = tilted + 0.2 * torch.complex(torch.randn(2, 4, 3, 16, generator=g), torch.randn(2, 4, 3, 16, generator=g))
    est = masked_priors(noisy, vis, reversion_dim=3)
    x = np.arange(10 - LINE_SPAN, 10)
    y = noisy[0, 1, 2, 10 - LINE_SPAN:10].numpy()
    re, im = np.polyfit(x, y.real, 1), np.polyfit(x, y.imag, 1)
    want = np.polyval(re, np.arange(10, 16)) + 1j * np.polyval(im, np.arange(10, 16))
    np.testing.assert_allclose(est["line"][0, 1, 2, 10:].numpy(), want, atol=1e-4)
    assert torch.equal(est["line"][..., :10], noisy[..., :10])
    # In time, the same along packets; a visible part that is not one leading block: hold.
    vis_t = torch.ones(2, 8, 3, 16, dtype=torch.bool)
    vis_t[:, 5:] = False
    steady = _csi(2, 1, 3, 16, seed=10) + _csi(2, 1, 3, 16, seed=11) * torch.arange(8.0).view(1, 8, 1, 1)
    torch.testing.assert_close(masked_priors(steady, vis_t, reversion_dim=1)["line"], steady, atol=1e-4, rtol=1e-4)
    gap = vis.clone()
    gap[..., 3] = False
    est = masked_priors(tilted, gap, reversion_dim=3)
    assert torch.equal(est["line"], est["hold"])


def test_a_fixed_line_rule_follows_a_tilted_band_that_the_backtest_cannot_show():
    """``guard_prior: {frequency: line}`` (what ``wfm calibrate`` can choose): a band whose amplitude
    falls along the subcarriers is predicted along its tilt, well ahead of the backtest's rule."""
    from wfm.models.mae import GUARD_PRIORS

    assert "line" in GUARD_PRIORS
    k = torch.arange(30, dtype=torch.float32)
    g = torch.Generator().manual_seed(12)
    band = (2.0 - k / 20).to(torch.complex64) * (1 + 0.05 * torch.randn(8, 16, 3, 1, generator=g))
    model = _tiny("mix", guard_prior={"frequency": "line"})
    fixed = model.predict(band, "frequency", 0.5)
    model.guard_prior = {"frequency": "hold|ar|mean|rank1"}
    chosen = model.predict(band, "frequency", 0.5)
    assert float(fixed.nmse.mean()) < 0.5 * float(chosen.nmse.mean())


def test_guard_rules_are_sets_of_estimates_and_backtest_leaves_rank1_out():
    from wfm.models.mae import GUARD_ESTIMATES, check_guard_prior

    assert check_guard_prior({"frequency": "mean|rank1"}) == {"frequency": "mean|rank1"}
    for bad in ("hold|hold", "hold|nearest", "", "rank1|"):
        with pytest.raises(ValueError, match="guard_prior"):
            check_guard_prior({"frequency": bad})
    # A still band (a bump at its low edge, so the mean is biased) whose packets each have their own
    # complex gain, under noise: the nearest subcarrier of the gain x profile approximation beats the
    # nearest subcarrier itself and the mean, and the rule that names it takes it.
    g = torch.Generator().manual_seed(5)
    k = torch.arange(16, dtype=torch.float32)
    profile = (1.0 + torch.exp(-k / 2)).to(torch.complex64)
    gain = (1 + 0.3 * torch.rand(4, 16, 2, 1, generator=g)) * torch.exp(2j * torch.pi * torch.rand(4, 16, 2, 1, generator=g))
    csi = gain * profile + 0.3 * _csi(4, 16, 2, 16, seed=6)
    model = _tiny("mix", guard_prior={"frequency": "hold|ar|mean|rank1"})
    weights = model.backtest(csi, "frequency", 0.5)[0]
    assert (weights[:, GUARD_ESTIMATES.index("rank1")] > 0.5).all()

    def nmse(m: MaskedAutoencoder) -> float:
        pred = m.predict(csi, "frequency", 0.5)
        return float(((pred.reconstruction - csi).abs() ** 2).sum() / (csi.abs() ** 2 * pred.mask).sum())

    with_rank1 = nmse(model)
    model.guard_prior = {"frequency": "hold|ar|mean"}
    assert with_rank1 < 0.8 * nmse(model)
    model.guard_prior = {}  # the backtest's default weighs what it weighed before rank1 existed
    assert model.backtest(csi, "frequency", 0.5)[0][:, GUARD_ESTIMATES.index("rank1")].max() == 0


def test_rank1_prior_on_a_padded_grid_is_the_one_of_the_users_own_window():
    """Odd T and 30 subcarriers are padded to the patch grid inside the model; the padding never
    counts as data, so the model's ``rank1`` estimate is ``masked_priors``' on the window as given."""
    from wfm.nn.patching import unpatchify

    model = _tiny("mix")
    csi = _csi(2, 15, 3, 30, seed=7)
    mask, front = model.prediction_mask(csi.shape, "frequency", 0.5)
    out = model(csi, mask, front, reversion_dim=3)
    (t0, t), (a0, a), (k0, k) = out.crop
    est = unpatchify(out.estimates["rank1"], out.grid, model.patch_size)[:, t0:t0 + t, a0:a0 + a, k0:k0 + k]
    hidden = model.predict(csi, "frequency", 0.5).mask
    want = masked_priors(csi, ~hidden, reversion_dim=3)["rank1"]
    torch.testing.assert_close(est * out.scale[..., None], want, rtol=1e-4, atol=1e-5)


def test_guard_origins_average_the_estimates_log_errors_over_several_backtests(tmp_path):
    import wfm
    from wfm.models.mae import GUARD_ESTIMATES, margined, origin_log_errors

    g = torch.Generator().manual_seed(1)
    noisy = torch.complex(torch.randn(4, 8, 2, 8, generator=g), torch.randn(4, 8, 2, 8, generator=g)) + 5
    # One origin by hand: hide the last 3 of the 8 packets, errors relative to the hidden power.
    vis = torch.ones(4, 8, 2, 8, dtype=torch.bool)
    vis[:, 5:] = False
    est = masked_priors(noisy, vis, reversion_dim=1)
    power = noisy[:, 5:].abs().square().flatten(1).sum(1)
    mse = torch.stack([(e[:, 5:] - noisy[:, 5:]).abs().square().flatten(1).sum(1) / power for e in est.values()], 1)
    torch.testing.assert_close(origin_log_errors(noisy, 1, (3,)), torch.log(margined(mse) + 1e-12))
    two = (origin_log_errors(noisy, 1, (2,)) + origin_log_errors(noisy, 1, (4,))) / 2
    torch.testing.assert_close(origin_log_errors(noisy, 1, (2, 4, 8)), two)  # 8 hides everything: skipped
    assert origin_log_errors(noisy, 1, (8, 9)) is None
    # The guard with several origins: noise around a level -> the mean (or reversion), a rotation -> ar.
    t = torch.linspace(0, 1, 16)[None, :, None, None]
    smooth = torch.exp(2j * torch.pi * 0.3 * t) * torch.ones(4, 16, 2, 8) + 0.01 * noisy.repeat(1, 2, 1, 1)
    model = _tiny("mix", guard_origins=(2, 3, 4))
    names = list(GUARD_ESTIMATES)
    w_noise = model.backtest(noisy.repeat(1, 2, 1, 1), "temporal", 0.5)[0]
    w_smooth = model.backtest(smooth, "temporal", 0.5)[0]
    assert (w_noise[:, names.index("mean")] + w_noise[:, names.index("reversion")] > 0.75).all()
    assert (w_smooth[:, names.index("ar")] > 0.75).all() and w_noise[:, names.index("rank1")].max() == 0
    model.save_pretrained(tmp_path / "m")
    assert wfm.from_pretrained(tmp_path / "m").guard_origins == (2, 3, 4)
    for bad in ((), (0, 2)):
        with pytest.raises(ValueError, match="guard_origins"):
            _tiny("mix", guard_origins=bad)
