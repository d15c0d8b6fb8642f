"""Pretrained vs scratch across datasets (``wfm.tasks.transfer``) on synthetic stand-in folders."""

from __future__ import annotations

import math

import pytest
import torch

from wfm.models.causal import CausalForecaster
from wfm.models.mae import MaskedAutoencoder
from wfm.tasks import transfer as T

from test_real_benchmark import standin  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_causal_transfer_rows_compare_like_with_like(standin):  # noqa: F811
    torch.manual_seed(0)
    model = CausalForecaster(patch_len=4, dim=16, depth=1, num_heads=2, max_context=64, prior="mix").eval()
    cfg = T.TransferConfig(steps=2, batch_size=4, seeds=2, val_fraction=0)
    rows = T.run_transfer(model, "causal", [("Milan cell 11|traffic", "Milan cell 12|traffic")], str(standin), cfg)
    assert [r["init"] for r in rows] == ["pretrained", "scratch"]
    for r in rows:
        assert len(r["nmse_db"]) == 2 and r["best_classical"] in ("persistence", "mean", "seasonal")
        assert r["nmse_db_mean"] == pytest.approx(sum(r["nmse_db"]) / 2)
    # Scratch seeds draw different initial weights: their scores differ.
    assert rows[1]["nmse_db"][0] != rows[1]["nmse_db"][1]
    assert "Milan cell 11, traffic -> Milan cell 12, traffic" in T.markdown(rows)


def test_finetune_leaves_the_pretrained_model_untouched_and_mae_trains(standin):  # noqa: F811
    from wfm.tasks.real_data import load_real_datasets

    data = {f"{d.name}|{d.view}": d for d in load_real_datasets(standin)}
    csi = next(d for k, d in data.items() if k.endswith("csi complex"))
    torch.manual_seed(0)
    mae = MaskedAutoencoder(dim=32, depth=1, num_heads=4, decoder_depth=1, prior="mix").eval()
    before = {k: v.clone() for k, v in mae.state_dict().items()}
    tuned, _ = T.finetune(mae, "mae", csi, T.TransferConfig(steps=2, batch_size=2, val_fraction=0), seed=0)
    assert all(torch.equal(v, mae.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(v, tuned.state_dict()[k]) for k, v in before.items())
    assert T.score(tuned, "mae", csi) > 0
    # The score is the tuned MAE's per-window NMSE on the hidden last H packets of each window.
    L, H = csi.context.shape[1], csi.target.shape[1]
    assert csi.csi.shape[1] == L + H
    with torch.no_grad():
        pred = tuned.predict(csi.csi, "temporal", H / (L + H)).reconstruction[:, L:]
    err = ((pred - csi.target).abs() ** 2).sum(dim=(1, 2, 3)) / (csi.target.abs() ** 2).sum(dim=(1, 2, 3))
    assert T.score(tuned, "mae", csi) == pytest.approx(float(err.double().mean()), rel=1e-5)


def test_split_by_time_holds_out_the_last_windows_and_drops_training_windows_on_their_targets(standin):  # noqa: F811
    from wfm.tasks.real_data import load_real_datasets

    data = {f"{d.name}|{d.view}": d for d in load_real_datasets(standin)}
    d = data["Milan cell 11|traffic"]
    train, val = T.split_by_time(d, 0.2)
    n, L, H = d.windows, d.context.shape[1], d.target.shape[1]
    assert val.tolist() == list(range(n - len(val), n)) and len(val) == -(-n // 5)
    # brute force: no training window contains a held-out target step of its series
    held = {(int(s), int(a) + t) for s, a in d.span[val].tolist() for t in range(L, L + H)}
    for i in range(n - len(val)):
        s, a = d.span[i].tolist()
        overlaps = any((s, a + t) in held for t in range(L + H))
        assert (i in train.tolist()) == (not overlaps)
    assert len(train) > 0
    sub = d.subset(val)
    assert torch.equal(sub.target, d.target[val]) and torch.equal(sub.span, d.span[val])


def test_finetune_keeps_the_step_that_scores_best_on_held_out_windows(standin, monkeypatch):  # noqa: F811
    from wfm.tasks.real_data import load_real_datasets

    d = {f"{x.name}|{x.view}": x for x in load_real_datasets(standin)}["Milan cell 11|traffic"]
    torch.manual_seed(0)
    model = CausalForecaster(patch_len=4, dim=16, depth=1, num_heads=2, max_context=64, prior="mix").eval()
    seen = []
    real_scores = T.window_scores

    def spy(m, kind, data):  # held-out scores: the start is best, every later step worse
        seen.append(data.windows)
        return torch.full((data.windows,), 1.0 + 0.1 * (len(seen) - 1), dtype=torch.float64)

    monkeypatch.setattr(T, "window_scores", spy)
    tuned, step = T.finetune(model, "causal", d, T.TransferConfig(steps=6, batch_size=2, eval_every=2, select="best"), seed=0)
    assert step == 0 and len(seen) == 4 and set(seen) == {-(-d.windows // 5)}  # steps 0, 2, 4, 6 on the held-out part
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in tuned.state_dict().items())
    monkeypatch.setattr(T, "window_scores", real_scores)
    last, step = T.finetune(model, "causal", d, T.TransferConfig(steps=3, batch_size=2, val_fraction=0), seed=0)
    assert step == 3 and any(not torch.equal(v, model.state_dict()[k]) for k, v in last.state_dict().items())


def test_finetune_moves_only_as_far_as_the_held_out_windows_vouch_for(monkeypatch):
    """``select="significant"``: a step replaces the kept weights only if it beats them beyond noise
    over independent blocks of held-out windows; ``"best"`` takes any lower mean."""
    from wfm.tasks.real_data import BenchData

    n, L, H = 40, 8, 4
    ctx, tgt = torch.randn(n, L), torch.randn(n, H)
    # One series, stride H: every window's target is its own block, so 8 held-out blocks.
    d = BenchData("toy", "traffic", ctx, tgt, 1.0, "", "", span=torch.stack([torch.zeros(n), torch.arange(n) * H], 1).long())
    model = CausalForecaster(patch_len=4, dim=16, depth=1, num_heads=2, max_context=64, prior="mix").eval()
    noise = torch.tensor([1.0, -1.0] * 4, dtype=torch.float64)
    plans = {"noisy": [torch.full((8,), 1.0, dtype=torch.float64), 0.95 + 0.2 * noise, 0.98 + 0.2 * noise],
             "clear": [torch.full((8,), 1.0, dtype=torch.float64), 0.9 + 0.01 * noise, 0.5 + 0.01 * noise]}
    for name, plan in plans.items():
        for select, expect in (("significant", {"noisy": 0, "clear": 4}), ("best", {"noisy": 2, "clear": 4})):
            calls = iter(plan)
            monkeypatch.setattr(T, "window_scores", lambda m, kind, data: next(calls))
            _, step = T.finetune(model, "causal", d, T.TransferConfig(steps=4, batch_size=2, eval_every=2, select=select), seed=0)
            assert step == expect[name], (name, select)
    # Overlapping held-out windows are one block: nothing can be shown, the start is kept.
    d1 = BenchData("toy", "traffic", ctx, tgt, 1.0, "", "", span=torch.stack([torch.zeros(n), torch.arange(n)], 1).long())
    calls = iter(plans["clear"])
    monkeypatch.setattr(T, "window_scores", lambda m, kind, data: next(calls))
    _, step = T.finetune(model, "causal", d1, T.TransferConfig(steps=4, batch_size=2, eval_every=2), seed=0)
    assert step == 0
    with pytest.raises(ValueError, match="select must be one of"):
        T.TransferConfig(select="newest")


def test_unknown_dataset_names_the_ones_there_are(standin):  # noqa: F811
    model = CausalForecaster(patch_len=4, dim=16, depth=1, num_heads=2, max_context=64)
    with pytest.raises(KeyError, match="Milan cell 11"):
        T.run_transfer(model, "causal", [("nope|traffic", "Milan cell 12|traffic")], str(standin))


def test_deepsense_scenarios_split_by_site(tmp_path):
    from test_real_benchmark import _deepsense

    from wfm.data.errors import DataError
    from wfm.tasks.real_data import load_real_datasets

    folder = tmp_path / "deepsense6g-beam"
    _deepsense(folder, scenario=1, n_traj=3)
    _deepsense(folder, scenario=2, n_traj=2)
    data = {f"{d.name}|{d.view}": d for d in load_real_datasets(tmp_path)}
    both = data["DeepSense 6G|beam power"]
    assert sorted(set(both.scenario.tolist())) == [1, 2]
    for view in ("beam power", "bearing"):
        one = T.pick_dataset(data, f"DeepSense 6G|{view}|1")
        two = T.pick_dataset(data, f"DeepSense 6G|{view}|2")
        assert one.name == "DeepSense 6G s1" and set(one.scenario.tolist()) == {1}
        assert one.windows + two.windows == data[f"DeepSense 6G|{view}"].windows
        # whole trajectories: no trajectory (span series) in both
        assert not set(one.span[:, 0].tolist()) & set(two.span[:, 0].tolist())
        assert torch.equal(torch.cat([one.target, two.target]), data[f"DeepSense 6G|{view}"].target)
    assert T.pick_dataset(data, "DeepSense 6G|beam power|1,2").name == "DeepSense 6G s1-2"
    with pytest.raises(DataError, match=r"no scenario \[3\]"):
        T.pick_dataset(data, "DeepSense 6G|beam power|3")
    with pytest.raises(KeyError, match="integers"):
        T.pick_dataset(data, "DeepSense 6G|beam power|one")
    model = CausalForecaster(patch_len=4, dim=16, depth=1, num_heads=2, max_context=64, prior="mix").eval()
    rows = T.run_transfer(model, "causal", [("DeepSense 6G|beam power|1", "DeepSense 6G|beam power|2")], str(tmp_path),
                          T.TransferConfig(steps=1, batch_size=2, seeds=1))
    assert rows[0]["source"] == "DeepSense 6G s1|beam power" and rows[0]["target"] == "DeepSense 6G s2|beam power"


def test_generated_csi_folders_are_sources_and_targets(tiny_dataset, tiny_cdl_dataset):
    """A generated CSI folder is a dataset of its own: the source's train split, the target's test
    split, each sample's first half of time steps as context and the next half as target."""
    from wfm.tasks.csi_data import load_csi
    from wfm.tasks.real_data import generated_csi_view

    view = generated_csi_view(tiny_dataset, "test")
    csi = load_csi(tiny_dataset, "test", task="check")["csi"]
    assert view.view == "csi complex" and view.windows == len(csi) and view.interval == pytest.approx(0.5e-3)
    assert torch.equal(view.context, csi[:, :4]) and torch.equal(view.target, csi[:, 4:8]) and torch.equal(view.csi, csi)
    assert torch.equal(view.span[:, 0], torch.arange(len(csi))) and not view.span[:, 1].any()  # every sample its own series
    assert T.pick_dataset({}, str(tiny_dataset), "train").windows == len(load_csi(tiny_dataset, "train", task="check")["csi"])
    torch.manual_seed(0)
    mae = MaskedAutoencoder(dim=32, depth=1, num_heads=4, decoder_depth=1, prior="mix").eval()
    cfg = T.TransferConfig(steps=1, batch_size=2, seeds=1, val_fraction=0.2, eval_every=1)
    rows = T.run_transfer(mae, "mae", [(str(tiny_cdl_dataset), str(tiny_dataset))], "/nonexistent", cfg)
    assert [(r["source"], r["target"], r["init"]) for r in rows] == [
        ("tiny-cdl|csi complex", "tiny-uma|csi complex", "pretrained"), ("tiny-cdl|csi complex", "tiny-uma|csi complex", "scratch")]
    assert rows[0]["pretrained_zero_shot_db"] == pytest.approx(10 * math.log10(T.score(mae, "mae", view)), abs=1e-4)


def test_frequency_views_train_under_the_frequency_mask_and_split_by_packets(standin, tiny_dataset):  # noqa: F811
    from wfm.tasks.real_data import RealBenchConfig, load_real_datasets

    data = {f"{d.name}|{d.view}": d for d in load_real_datasets(standin, RealBenchConfig(csi_frequency=True))}
    d = next(v for k, v in data.items() if k.endswith("csi complex, frequency"))
    train, val = T.split_by_time(d, 0.2)
    # a frequency window's target is every packet of it, and these windows share no packet:
    # holding out the last ones drops no other (split by subcarriers, they would all overlap)
    assert len(val) > 0 and len(train) + len(val) == d.windows
    view = T.pick_dataset({}, f"{tiny_dataset}|frequency", "test")
    assert view.axis == "frequency" and view.view == "csi complex, frequency" and T.is_generated(f"{tiny_dataset}|frequency")
    torch.manual_seed(0)
    mae = MaskedAutoencoder(dim=32, depth=1, num_heads=4, decoder_depth=1, prior="mix").eval()
    win, ctx = view.csi[:2].to(torch.complex64), view.context.shape[1]
    loss = T._mae_step(mae, win, ctx, torch.Generator().manual_seed(0), "frequency")
    mask, front = mae.prediction_mask(win.shape, "frequency", 1 - ctx / win.shape[3])
    assert torch.equal(loss, mae(win, mask, front).loss)  # the upper subcarriers hidden, as scored
    tuned, _ = T.finetune(mae, "mae", view, T.TransferConfig(steps=1, batch_size=2, val_fraction=0), seed=0)
    assert T.score(tuned, "mae", view) > 0
