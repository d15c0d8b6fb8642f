"""The prior-anchored future-beam MAE (``BeamMAE(prior="persistence")``): it starts as the
persistence baseline, learns a correction where the training data has one, and keeps its start
where training does not beat it on the validation windows."""

from __future__ import annotations

import json

import pytest
import torch

from wfm.models.registry import create_model
from wfm.tasks.future_beam import BeamMAE, BeamWindows, persistence_logits, persistence_scores

pytestmark = pytest.mark.usefixtures("one_thread")


def _windows(n: int, drift: int, seed: int, context: int = 8, beams: int = 64,
             starts: tuple[int, int] | None = None) -> BeamWindows:
    """Beam-power windows whose strongest beam moves ``drift`` beams a step (0: stays), with a
    noise floor as the real captures have."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = starts or (0, beams)
    start = torch.randint(lo, hi, (n,), generator=g)
    steps = torch.arange(context + 1)
    best = (start[:, None] + drift * steps) % beams  # [n, context + 1]
    k = torch.arange(beams)
    dist = (k[None, None, :] - best[..., None]).abs()
    dist = torch.minimum(dist, beams - dist).float()
    power = 0.4 * torch.exp(-0.5 * dist ** 2) + 0.02 + 0.002 * torch.rand(n, context + 1, beams, generator=g)
    return BeamWindows(power[:, :context], best[:, -1], power[:, -1], torch.zeros(n, 2), torch.zeros(n, dtype=torch.long),
                       torch.arange(n))


def test_an_untrained_anchored_model_ranks_the_beams_as_persistence_does():
    torch.manual_seed(0)
    beam = BeamMAE(create_model("mae_tiny"), 64).eval()
    w = _windows(32, 1, seed=0)
    with torch.no_grad():
        scores = beam(w.past)
    # exactly the prior: the head starts at zero and the prior's scale at 1
    assert torch.equal(scores, persistence_logits(w.past))
    assert torch.equal(scores.argsort(dim=1, descending=True), persistence_scores(w).argsort(dim=1, descending=True))
    # dead beams get a finite score
    past = torch.zeros(2, 8, 64)
    past[:, -1, 3] = 1.0
    assert torch.isfinite(persistence_logits(past)).all()
    with pytest.raises(ValueError, match="prior must be one of"):
        BeamMAE(create_model("mae_tiny"), 64, prior="mean")


def test_the_anchored_model_learns_a_drift_and_keeps_its_start_where_there_is_nothing_to_learn():
    torch.manual_seed(0)
    mae = create_model("mae_tiny")
    # the best beam moves one beam a step: persistence is always one beam off, a correction fixes it
    train, val, test = _windows(512, 1, seed=1), _windows(128, 1, seed=2), _windows(128, 1, seed=3)
    beam = BeamMAE(mae, 64).fit(train, val, steps=150, lr=2e-3, batch_size=64, eval_every=50)
    assert beam.selection["checks"] == 4  # the start, then steps 50, 100, 150
    top1 = float((beam.scores(test).argmax(1) == test.label).float().mean())
    persistence = float((persistence_scores(test).argmax(1) == test.label).float().mean())
    assert persistence == 0.0 and top1 > 0.5 and beam.selection["step"] > 0
    # a beam that stays: persistence is right on every validation window, no step can beat the
    # start there, and the fitted model is persistence again (to the bit), however it trained
    still_train, still_val = _windows(256, 0, seed=4), _windows(128, 0, seed=5)
    beam = BeamMAE(create_model("mae_tiny"), 64).fit(still_train, still_val, steps=40, lr=1e-2, batch_size=64,
                                                      eval_every=20)
    assert beam.selection["step"] == 0 and "the start" in beam.selection["kept"]
    assert torch.equal(beam.scores(test), persistence_logits(test.past))


def test_a_saved_anchored_model_round_trips_and_old_saves_load_without_the_prior(tmp_path):
    from wfm.tasks import saved

    torch.manual_seed(0)
    beam = BeamMAE(create_model("mae_tiny"), 64)
    with torch.no_grad():
        beam.head.bias.add_(torch.randn(64) * 0.1)
        beam.prior_log_scale.fill_(0.5)
    cls, config = saved.describe(beam)
    assert cls == "beam-mae" and config["prior"] == "persistence"
    rebuilt = saved.build(cls, config)
    rebuilt.load_state_dict(beam.state_dict())
    w = _windows(4, 1, seed=0)
    with torch.no_grad():
        assert torch.equal(rebuilt(w.past), beam(w.past))
    assert config["relative"] is True
    old = {k: v for k, v in config.items() if k not in ("prior", "relative")}
    assert saved.build(cls, old).prior == "none" and saved.build(cls, old).relative is False


def test_beams_shift_along_a_line_and_a_drift_learned_in_one_part_of_the_codebook_carries_to_another():
    from wfm.tasks.future_beam import _shift_beams

    x = torch.arange(1.0, 9.0).reshape(1, 1, 8).repeat(2, 1, 1)
    shifted = _shift_beams(x, torch.tensor([2, -3]))
    assert shifted[0, 0].tolist() == [3, 4, 5, 6, 7, 8, 0, 0]  # beam j from j + 2; past the end: 0
    assert shifted[1, 0].tolist() == [0, 0, 0, 1, 2, 3, 4, 5]
    assert torch.equal(_shift_beams(_shift_beams(x, torch.tensor([2, -3])), torch.tensor([-2, 3]))[:, :, 3:5],
                       x[:, :, 3:5])
    # Train where the best beams lie in 0..15 and drift up one beam a step, test where they lie in
    # 28..43: persistence is always one beam off there; the relative frame learned the drift.
    train, val = _windows(512, 1, seed=1, starts=(0, 8)), _windows(128, 1, seed=2, starts=(0, 8))
    test = _windows(256, 1, seed=3, starts=(28, 36))
    torch.manual_seed(0)
    beam = BeamMAE(create_model("mae_tiny"), 64).fit(train, val, steps=150, lr=2e-3, batch_size=64, eval_every=50)
    assert beam.relative
    assert float((beam.scores(test).argmax(1) == test.label).float().mean()) > 0.5
    # the absolute codebook learns where the training beams went, which is nowhere near the test's
    torch.manual_seed(0)
    absolute = BeamMAE(create_model("mae_tiny"), 64, relative=False).fit(train, val, steps=150, lr=2e-3,
                                                                          batch_size=64, eval_every=50)
    assert float((absolute.scores(test).argmax(1) == test.label).float().mean()) < 0.5


def test_the_recurrent_baseline_takes_the_same_anchor_and_frame_and_stays_plain_by_default(tmp_path):
    from wfm.tasks import saved
    from wfm.tasks.future_beam import BeamRNN

    plain = BeamRNN(64, 32, "gru")
    assert plain.prior == "none" and not plain.relative and not plain.check_start
    train, val = _windows(512, 1, seed=1, starts=(0, 8)), _windows(128, 1, seed=2, starts=(0, 8))
    test = _windows(256, 1, seed=3, starts=(28, 36))
    net = BeamRNN(64, 32, "gru", prior="persistence", relative=True)
    # fit re-initialises a baseline's weights from its seed, and the anchored head still starts at zero
    net.fit(train, val, steps=0, seed=0)
    assert net.selection["step"] == 0 and torch.equal(net.scores(test), persistence_logits(test.past))
    net.fit(train, val, steps=150, lr=5e-3, batch_size=64, seed=0, eval_every=50)
    assert float((net.scores(test).argmax(1) == test.label).float().mean()) > 0.5
    cls, config = saved.describe(net)
    assert (config["prior"], config["relative"]) == ("persistence", True)
    rebuilt = saved.build(cls, config)
    rebuilt.load_state_dict(net.state_dict())
    assert torch.equal(rebuilt.scores(test), net.scores(test))
    old = {k: v for k, v in config.items() if k not in ("prior", "relative")}
    assert saved.build(cls, old).prior == "none"


def _flicker(n: int, seed: int) -> BeamWindows:
    """Windows whose best beam is always the current one (``drift`` 0), but whose last sweep has
    its neighbour a hair stronger in some windows than a drifting lobe would: a model that follows
    the neighbour moves off a beam that stays."""
    w = _windows(n, 0, seed)
    g = torch.Generator().manual_seed(seed + 100)
    here = w.past[:, -1].argmax(1)
    nxt = (here + 1) % 64
    lift = torch.rand(n, generator=g) < 0.5
    w.past[lift, -1, nxt[lift]] = w.past[lift, -1, here[lift]] * 0.99  # close behind, never ahead
    w.trajectory[:] = torch.arange(n) // 4  # four windows a drive: the test counts drives, not windows
    return w


def test_a_stay_bias_adds_to_the_current_best_beam_and_calibration_chooses_it_only_beyond_noise():
    from wfm.tasks.future_beam import calibrate_beam_biases

    torch.manual_seed(0)
    beam = BeamMAE(create_model("mae_tiny"), 64).eval()
    with torch.no_grad():  # a head that pulls every score one beam up the codebook: it moves too readily
        beam.head.weight.zero_()
        beam.head.bias.copy_(torch.zeros(64).index_fill_(0, torch.tensor([33]), 1.0))
    w = _flicker(256, seed=1)
    with torch.no_grad():
        base = beam(w.past)
        beam.stay_bias = 0.7
        biased = beam(w.past)
    here = w.past[:, -1].argmax(1)
    assert torch.allclose(biased - base, 0.7 * torch.nn.functional.one_hot(here, 64).float())
    beam.stay_bias = 0.0
    top1 = float((beam.scores(w).argmax(1) == w.label).float().mean())
    assert top1 < 0.7  # it moves off a beam that stays
    res = calibrate_beam_biases(beam, w)
    assert res["current"] == 0.0 and res["choice"] > 0 and beam.stay_bias == res["choice"]
    assert float((beam.scores(w).argmax(1) == w.label).float().mean()) == 1.0
    assert {r["stay_bias"] for r in res["rows"]} >= {0.0, 2.0} and res["trajectories"] == 64
    # where the best beam does move, staying is wrong and no bias beats none: it keeps 0
    moving = _windows(256, 1, seed=2)
    moving.trajectory[:] = torch.arange(256) // 4
    fresh = BeamMAE(create_model("mae_tiny"), 64).eval()
    with torch.no_grad():
        fresh.head.bias.copy_(torch.zeros(64).index_fill_(0, torch.tensor([33]), 1.0))
    assert calibrate_beam_biases(fresh, moving)["choice"] == 0.0 and fresh.stay_bias == 0.0


def test_a_bias_on_linear_predictions_beam_is_exact_calibrated_with_the_stay_bias_and_saved(tmp_path):
    from wfm.tasks import saved
    from wfm.tasks.future_beam import LinearPredictionBeams, calibrate_beam_biases

    torch.manual_seed(0)
    beam = BeamMAE(create_model("mae_tiny"), 64).eval()  # zero head: persistence, which misses a drift
    w = _windows(256, 1, seed=3)  # the lobe moves a beam a step: linear prediction of the powers follows
    w.trajectory[:] = torch.arange(256) // 4
    ahead = LinearPredictionBeams(1).scores(w).argmax(1)
    assert float((ahead == w.label).float().mean()) > 0.9
    with torch.no_grad():
        base = beam(w.past)
        beam.ar_bias = 0.6
        biased = beam(w.past)
    assert torch.allclose(biased - base, 0.6 * torch.nn.functional.one_hot(ahead, 64).float())
    beam.ar_bias = 0.0
    res = calibrate_beam_biases(beam, w, ar_biases=(0.0, 1.0, 2.0))
    assert res["ar_current"] == 0.0 and res["ar_choice"] > 0 and beam.ar_bias == res["ar_choice"]
    assert float((beam.scores(w).argmax(1) == w.label).float().mean()) > 0.9
    assert "ar_bias" in res["rows"][0]
    folder = saved.save(beam, tmp_path / "m", "future-beam", "future-beam", {"context": 8, "horizon": 1})
    back, meta = saved.load(folder)
    assert back.ar_bias == beam.ar_bias and meta["config"]["ar_horizon"] == 1
    with torch.no_grad():
        assert torch.equal(back(w.past), beam(w.past))
    beam.ar_bias = 0.0
    assert "ar_bias" not in saved.describe(beam)[1]  # unchanged configs for uncalibrated models


def test_a_calibrated_stay_bias_is_saved_and_models_saved_before_it_load_without_one(tmp_path):
    from wfm.tasks import saved

    torch.manual_seed(0)
    beam = BeamMAE(create_model("mae_tiny"), 64)
    assert "stay_bias" not in saved.describe(beam)[1]  # unchanged configs for uncalibrated models
    beam.stay_bias = 0.9
    folder = saved.save(beam, tmp_path / "m", "future-beam", "future-beam", {"context": 8, "horizon": 1})
    back, meta = saved.load(folder)
    assert back.stay_bias == 0.9 and meta["config"]["stay_bias"] == 0.9
    w = _windows(8, 1, seed=0)
    with torch.no_grad():
        assert torch.equal(back(w.past), beam.eval()(w.past))


def test_wfm_calibrate_writes_a_copy_of_a_saved_future_beam_model_with_its_stay_bias(tmp_path, capsys):
    from wfm.cli import main
    from wfm.data.generate import generate_dataset
    from wfm.data.recipes import load_recipe
    from wfm.tasks import saved

    recipe = load_recipe("data/recipes/beam-street-60g.yaml").with_overrides(num_samples=12, shard_size=12)
    data = generate_dataset(recipe, tmp_path / "sites").out_dir
    torch.manual_seed(0)
    beam = BeamMAE(create_model("mae_tiny"), 64)
    with torch.no_grad():  # a model that moves off every beam: calibration has something to fix
        beam.head.bias.copy_(torch.zeros(64).index_fill_(0, torch.tensor([33]), 20.0))
    src = saved.save(beam, tmp_path / "model", "future-beam", "future-beam",
                     {"context": 8, "horizon": 1, "trained_on": ["nothing: a test"]})
    out = tmp_path / "calibrated"
    main(["calibrate", str(src), "--data", str(data), "--split", "all", "--out", str(out),
          "--json", str(tmp_path / "cal.json")])
    back, meta = saved.load(out)
    assert meta["training"]["trained_on"] == ["nothing: a test"]
    assert meta["training"]["stay_bias_calibrated_on"].startswith("sites (all, scenario(s)")
    res = json.loads((tmp_path / "cal.json").read_text())
    assert back.stay_bias == res["stay_bias"] == res["result"]["choice"]
    assert back.ar_bias == res["ar_bias"] == res["result"]["ar_choice"]
    assert saved.load(src)[0].stay_bias == 0.0  # the source is left as it was
    # the copy's weights are the source's
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), saved.load(src)[0].state_dict().values()))
    # by default on the training part of the split `wfm evaluate --data` makes, its test left unseen
    main(["calibrate", str(src), "--data", str(data), "--out", str(tmp_path / "on-train")])
    assert saved.load(tmp_path / "on-train")[1]["training"]["stay_bias_calibrated_on"].startswith("sites (train,")
    with pytest.raises(SystemExit):  # the CLI prints the one-line error and exits 2
        main(["calibrate", str(src), "--data", str(data), "--out", str(out)])
    assert "not empty" in capsys.readouterr().err
