"""The MAE's guard prior fixed in advance (``guard_prior``), chosen on windows of one link (``wfm calibrate``)."""

from __future__ import annotations

import json

import pytest
import torch

from wfm.models.mae import MaskedAutoencoder
from wfm.models.priors import masked_priors
from wfm.tasks.guard_calibration import calibrate_guard, guard_errors


def _tiny(**kw) -> MaskedAutoencoder:
    torch.manual_seed(0)
    model = MaskedAutoencoder(dim=32, depth=1, num_heads=4, decoder_depth=1, prior="mix", **kw).eval()
    torch.nn.init.zeros_(model.decoder_pred.weight)  # no correction: predict gives the guard's prior itself
    return model


def _band_edge(n: int = 32, seed: int = 0) -> torch.Tensor:
    """``[n, 4, 2, 16]`` windows of a flat band whose lowest 4 subcarriers are noisy (a band edge):
    predicting subcarriers 4-7 from 0-3 (the guard's backtest) favours the mean of the noisy edge,
    predicting 8-15 from 0-7 (the real prediction) the nearest subcarrier, which is exact."""
    g = torch.Generator().manual_seed(seed)
    noise = lambda *s: torch.complex(torch.randn(*s, generator=g), torch.randn(*s, generator=g))  # noqa: E731
    level = (3 * torch.exp(2j * torch.pi * torch.rand(n, 1, 2, 1, generator=g))).expand(n, 4, 2, 16)
    return torch.cat([level[..., :4] + noise(n, 4, 2, 4), level[..., 4:] + 0.05 * noise(n, 4, 2, 12)], dim=3)


def test_guard_prior_fixes_the_estimator_per_mask_kind_and_round_trips(tmp_path):
    import wfm
    from wfm.hub_mixin import mae_arch

    csi = _band_edge(8)
    free, fixed = _tiny(), _tiny(guard_prior={"frequency": "hold"})
    weights, _, _, prior_scale = fixed.backtest(csi, "frequency", 0.5)
    assert torch.equal(weights, torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]]).expand(8, 6))  # hold, mean, reversion, ar, rank1, line
    assert torch.equal(fixed.backtest(csi, "temporal", 0.5)[0], free.backtest(csi, "temporal", 0.5)[0])
    pred = fixed.predict(csi, "frequency", 0.5)
    hold = masked_priors(csi, ~pred.mask)["hold"]
    # the nearest subcarrier, at the scale the guard's shrink gave it (no correction here)
    torch.testing.assert_close(pred.reconstruction[..., 8:], prior_scale[:, None, None, None] * hold[..., 8:])
    assert "guard_prior" not in mae_arch(free)  # configs of the releases stay as they are
    fixed.save_pretrained(tmp_path / "m")
    assert wfm.from_pretrained(tmp_path / "m").guard_prior == {"frequency": "hold"}
    for bad in ({"frequency": "nearest"}, {"random": "hold"}):
        with pytest.raises(ValueError, match="guard_prior"):
            _tiny(guard_prior=bad)


def test_calibration_fixes_the_estimate_that_beats_the_backtest_beyond_noise():
    model = _tiny()
    csi = _band_edge(32)
    errs = guard_errors(model, csi, "frequency")
    assert set(errs) == {"persistence", "mean", "guard backtest", "guard hold", "guard mean", "guard reversion", "guard ar",
                         "guard line", "guard hold|ar", "guard hold|ar|mean", "guard hold|ar|mean|rank1"}
    assert errs["guard backtest"].mean() > 3 * errs["guard hold"].mean()  # the band edge misleads the backtest
    assert errs["guard mean"].mean() > 3 * errs["persistence"].mean()
    res = calibrate_guard(model, csi[:16], "frequency")
    assert res["choice"] == "hold" and model.guard_prior == {"frequency": "hold"}
    chosen = [r for r in res["rows"] if r["chosen"]]
    backtest = next(r for r in res["rows"] if r["model"] == "guard backtest")
    assert [r["model"] for r in chosen] == ["guard hold"] and chosen[0]["ratio"] < backtest["ratio"] / 3
    later = model.predict(csi[16:], "frequency", 0.5).reconstruction[..., 8:]  # later windows follow the choice
    nmse = (later - csi[16:, ..., 8:]).abs().square().flatten(1).sum(1) / csi[16:, ..., 8:].abs().square().flatten(1).sum(1)
    torch.testing.assert_close(nmse, errs["guard hold"][16:])
    # Where nothing beats the current rule beyond noise (two windows), it stays; a fixed rule that
    # loses is replaced like the backtest.
    assert calibrate_guard(_tiny(), csi[:2], "frequency")["choice"] == "backtest"
    res = calibrate_guard(_tiny(guard_prior={"frequency": "mean"}), csi[:16], "frequency")
    assert res["current"] == "mean" and res["choice"] == "hold"


def test_wfm_calibrate_writes_a_copy_with_the_choice_and_refuses_a_causal_model(tmp_path, capsys):
    import numpy as np

    import wfm
    from wfm.cli import main
    from wfm.data.loaders.common import write_samples
    from wfm.data.shards import FieldSpec
    from wfm.models.causal import CausalForecaster

    _tiny().save_pretrained(tmp_path / "mae")
    csi = _band_edge(24).numpy().astype(np.complex64)
    write_samples(tmp_path / "link", "link", "csi", {"csi": FieldSpec("complex64", (4, 2, 16))}, {"csi": csi},
                  {}, {"source": "test"})
    main(["calibrate", str(tmp_path / "mae"), "--data", str(tmp_path / "link"), "--out", str(tmp_path / "cal"),
          "--axis", "frequency", "--split", "all", "--json", str(tmp_path / "cal.json")])
    res = json.loads((tmp_path / "cal.json").read_text())
    assert res["guard_prior"] == {"frequency": "hold"} and res["results"][0]["windows"] == 24
    copy, source = wfm.from_pretrained(tmp_path / "cal"), wfm.from_pretrained(tmp_path / "mae")
    assert copy.guard_prior == {"frequency": "hold"}
    assert all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(), source.state_dict().values()))
    with pytest.raises(SystemExit):  # an existing copy is not replaced without --force
        main(["calibrate", str(tmp_path / "mae"), "--data", str(tmp_path / "link"), "--out", str(tmp_path / "cal")])
    assert "--force" in capsys.readouterr().err
    main(["calibrate", str(tmp_path / "mae"), "--data", str(tmp_path / "link"), "--out", str(tmp_path / "cal"),
          "--axis", "time", "--split", "all", "--force"])
    assert set(wfm.from_pretrained(tmp_path / "cal").guard_prior) == {"temporal"}  # the new copy replaced the old
    CausalForecaster(patch_len=4, dim=16, depth=1, num_heads=2).save_pretrained(tmp_path / "causal")
    for argv, words in ((["calibrate", str(tmp_path / "causal")], "needs an MAE"),
                        (["calibrate", str(tmp_path / "mae"), "--ratio", "1.5"], "--ratio")):
        with pytest.raises(SystemExit):
            main([*argv, "--data", str(tmp_path / "link"), "--out", str(tmp_path / "x")])
        assert words in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_split_rows_calibrate_on_the_first_half_and_score_the_second():
    from wfm.tasks.guard_calibration import split_rows
    from wfm.tasks.real_data import BenchData

    csi = _band_edge(32)
    along = csi.permute(0, 3, 1, 2)  # a frequency view: [N, K, T, A]
    span = torch.stack([torch.zeros(32, dtype=torch.long), 4 * torch.arange(32)], dim=1)  # windows share no packet
    view = BenchData("link", "csi complex, frequency", along[:, :8], along[:, 8:], 1e-3, "", "test", csi=csi,
                     span=span, axis="frequency", target_steps=(0, 4))
    model = _tiny()
    (row,) = split_rows(model, [view])
    assert row["choice"] == "hold" and row["calibration windows"] == 16 and row["test windows"] == 16
    assert row["calibrated"] < row["backtest"] / 2
    assert model.guard_prior == {}  # the study leaves the model as it was
