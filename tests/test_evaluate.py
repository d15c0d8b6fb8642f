"""``wfm evaluate`` end to end on tiny data: baselines and a model, JSON, Markdown, plots, errors."""

from __future__ import annotations

import json

import pytest
import torch

from wfm.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def _png(path) -> bool:
    return open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_evaluate_channel_prediction_baselines_and_mae(tiny_dataset, tmp_path):
    out = tmp_path / "ev"
    main(["evaluate", "--task", "channel-prediction-time", "--model", "persistence", "--model", "gru",
          "--model", "scratch:mae_tiny", "--data", str(tiny_dataset), "--out", str(out), "--train-steps", "3"])
    r = json.loads((out / "metrics.json").read_text())
    rows = {row["model"]: row for row in r["rows"]}
    assert set(rows) == {"persistence", "gru", "scratch:mae_tiny"}
    assert rows["scratch:mae_tiny"]["mode"] == "zero-shot" and rows["gru"]["mode"] == "full-shot"
    assert all(row["samples"] == 8 and row["hidden_steps"] == 4 for row in rows.values())  # test tail: 20 % of 40
    assert len(r["curves"]) == 3 and all(len(c) == 4 for c in r["curves"].values())
    assert all(_png(p) for p in r["plots"]) and len(r["plots"]) == 2
    assert "| tiny-uma | persistence |" in (out / "results.md").read_text()


def test_evaluate_persistence_matches_the_hand_computed_nmse(tiny_dataset, tmp_path):
    """The table's persistence NMSE equals masked NMSE of carrying the last visible step forward."""
    from wfm.tasks.channel_prediction import persistence, prediction_mask
    from wfm.tasks.csi_data import load_csi
    from wfm.tasks.metrics import to_db, window_nmse

    out = tmp_path / "ev"
    main(["evaluate", "--task", "channel-prediction-frequency", "--model", "persistence", "--data", str(tiny_dataset),
          "--out", str(out)])
    got = json.loads((out / "metrics.json").read_text())["rows"][0]["nmse_db"]
    csi = load_csi(tiny_dataset, "test")["csi"]
    mask = prediction_mask(tuple(csi.shape), "frequency", 0.5, (4, 4, 4))
    assert got == pytest.approx(to_db(window_nmse(persistence(csi, mask, "frequency"), csi, mask).mean()))


def test_evaluate_label_task_and_train_fractions(tiny_dataset, tmp_path):
    out = tmp_path / "ev"
    main(["evaluate", "--task", "beam-prediction", "--model", "mlp", "--data", str(tiny_dataset), "--out", str(out),
          "--train-steps", "2", "--train-fraction", "0.5", "--train-fraction", "1"])
    r = json.loads((out / "metrics.json").read_text())
    assert [row["train_samples"] for row in r["rows"]] == [14, 28]
    assert all(0 <= row["top1"] <= row["top3"] <= 1 and row["power_loss_db"] >= 0 for row in r["rows"])
    # Beam power of the 8 test samples by hand: the DFT beams of the 1 x 4 array are its FFT, the
    # gain sums |FFT|^2 / 4 over time and subcarriers; the label is the strongest beam. A wrong
    # pick loses between 10 log10(best / second best) and 10 log10(best / weakest), so the mean
    # loss over the 8 samples lies between the smallest and largest possible sums of as many such
    # losses as there are wrong picks (8 (1 - top1)).
    from wfm.tasks.csi_data import load_csi

    csi = load_csi(tiny_dataset, "test")["csi"]
    assert csi.shape == (8, 8, 4, 16)
    gains = (torch.fft.fft(csi, dim=2).abs() ** 2).sum(dim=(1, 3)).double() / 4
    top = gains.sort(dim=1, descending=True).values
    lo = (10 * torch.log10(top[:, 0] / top[:, 1])).sort().values
    hi = (10 * torch.log10(top[:, 0] / top[:, -1])).sort(descending=True).values
    for row in r["rows"]:
        assert row["samples"] == 8 and row["top1"] * 8 == round(row["top1"] * 8)
        assert row["top3"] * 8 == round(row["top3"] * 8)
        wrong = round(8 * (1 - row["top1"]))
        assert float(lo[:wrong].sum()) / 8 - 1e-6 <= row["power_loss_db"] <= float(hi[:wrong].sum()) / 8 + 1e-6
        assert (row["power_loss_db"] > 0) == (wrong > 0)
    assert any(p.endswith("accuracy_vs_fraction.png") for p in r["plots"])


def test_evaluate_bad_input_is_one_line(tiny_dataset, tmp_path, capsys):
    for argv, needle in (
        (["--task", "los-nlos", "--model", "scratch:mae_tiny"], "no zero-shot mode"),
        (["--task", "los-nlos", "--model", "persistence"], "baseline 'persistence' does not apply to task los-nlos"),
        (["--task", "traffic-forecast", "--model", "persistence"], "needs series of kind traffic"),
        # 8-step series: no split gets a window; the message says why and what to change.
        (["--task", "distance-forecast", "--model", "persistence"], "the longest series has 8 steps; split by time"),
    ):
        with pytest.raises(SystemExit) as e:
            main(["evaluate", *argv, "--data", str(tiny_dataset), "--out", str(tmp_path / "x")])
        assert e.value.code == 2
        assert needle in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--task", "los-nlos", "--model", "mlp", "--data", str(tmp_path / "nope")])
    assert "no such dataset folder" in capsys.readouterr().err


def test_model_labels_tell_checkpoints_of_two_runs_apart(tmp_path):
    """Two runs' ``checkpoints/last.ckpt`` share a short name; the table must not."""
    from wfm.tasks.evaluation import model_labels

    specs = []
    for run in ("sdpa", "complex-phase"):
        ckpt = tmp_path / run / "runs" / "mae-tiny" / "checkpoints" / "last.ckpt"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(b"")
        specs.append(str(ckpt))
    labels = model_labels([*specs, "persistence", specs[0]])
    assert labels == {specs[0]: "mae-tiny/last.ckpt (sdpa)", specs[1]: "mae-tiny/last.ckpt (complex-phase)",
                      "persistence": "persistence"}


def test_seasonal_period_from_the_interval():
    from wfm.data.loaders.timegrid import MONTH_S
    from wfm.models.baselines import seasonal_period

    assert seasonal_period(120.0, 720) == 720  # 2-min data: a day is 720 steps
    assert seasonal_period(120.0, 719) is None  # ... and a shorter context holds no day
    assert seasonal_period(600.0, 144) == 144  # 10-min: a day
    assert seasonal_period(600.0, 1008) == 1008  # ... a week where the context holds one
    assert seasonal_period(3600.0, 48) == 24 and seasonal_period(3600.0, 168) == 168  # hourly
    assert seasonal_period(3600.0) == 24  # no context given: a day
    assert seasonal_period(1e-3, 4096) is None  # 1-ms CSI: no daily cycle within any context
    assert seasonal_period(2 * 86_400.0, 10) == 4  # 2-day steps: no day, but a week of 4 steps
    # Weekly, monthly, quarterly steps: a week is at most one step, the cycle is the year's
    assert seasonal_period(604_800.0, 10) is None and seasonal_period(604_800.0, 52) == 52
    assert seasonal_period(MONTH_S, 11) is None and seasonal_period(MONTH_S, 64) == 12
    assert seasonal_period(3 * MONTH_S, 8) == 4 and seasonal_period(12 * MONTH_S, 100) is None  # yearly: none
    with pytest.raises(ValueError):
        seasonal_period(0.0, 10)


def _traffic_dataset(root, interval_min: float = 10, days: int = 3, cells: int = 10):
    """A Telecom-Italia-layout file of daily cycles, imported as a traffic dataset."""
    import numpy as np

    from wfm.data.loaders.traffic_csv import import_telecom_italia

    steps = int(days * 1440 / interval_min)
    day = int(1440 / interval_min)
    rng = np.random.default_rng(0)
    lines = ["square_id,time_interval,internet_total"]
    for c in range(cells):
        level, phase = rng.uniform(50, 150), rng.uniform(0, 6)
        for i in range(steps):
            v = level * (1.5 + np.sin(2 * np.pi * i / day + phase)) + rng.normal(0, 1)
            lines.append(f"{c},{1383260400000 + int(i * interval_min * 60_000)},{v:.4f}")
    src = root / "traffic.csv"
    src.write_text("\n".join(lines) + "\n")
    return import_telecom_italia(src, root / "traffic-ds", interval=interval_min * 60)


def test_evaluate_series_reports_window_nmse_best_classical_and_period(tmp_path):
    from wfm.models.baselines import Persistence
    from wfm.tasks.forecasting import collect_forecasts
    from wfm.tasks.metrics import window_nmse
    from wfm.tasks.registry import get_task
    from wfm.tasks.series_data import series_windows

    ds = _traffic_dataset(tmp_path)
    out = tmp_path / "ev"
    main(["evaluate", "--task", "traffic-forecast", "--model", "persistence", "--model", "seasonal",
          "--data", str(ds), "--out", str(out)])
    r = json.loads((out / "metrics.json").read_text())
    rows = {row["model"]: row for row in r["rows"]}
    assert rows["seasonal"]["period"] == 144 and r["periods"] == {"traffic-ds": 144}
    assert set(r["classical"]["traffic-ds"]) == {"persistence", "mean", "seasonal"}
    # Daily cycles: the seasonal naive is the best classical baseline, and persistence's ratio is to it.
    assert all(row["best_classical"] == "seasonal" for row in rows.values())
    assert rows["seasonal"]["ratio_to_best"] == pytest.approx(1.0)
    assert rows["persistence"]["ratio_to_best"] == pytest.approx(
        rows["persistence"]["window_nmse"] / rows["seasonal"]["window_nmse"])
    # The table's per-window NMSE equals the hand computation on the same test windows.
    w = series_windows([ds], get_task("traffic-forecast"))["test"]
    pred, target, _ = collect_forecasts(Persistence(), w)
    assert rows["persistence"]["window_nmse"] == pytest.approx(float(window_nmse(pred, target).mean()))
    md = (out / "results.md").read_text()
    assert "seasonal period traffic-ds: 144 steps" in md and "ratio_to_best" in md
    # --period overrides the interval's.
    main(["evaluate", "--task", "traffic-forecast", "--model", "seasonal", "--data", str(ds), "--out", str(out),
          "--period", "72"])
    r = json.loads((out / "metrics.json").read_text())
    assert r["rows"][0]["period"] == 72 and r["periods"] == {"traffic-ds": 72}


def test_evaluate_channel_prediction_has_best_classical(tiny_dataset, tmp_path):
    out = tmp_path / "ev"
    main(["evaluate", "--task", "channel-prediction-time", "--model", "persistence", "--model", "mean",
          "--data", str(tiny_dataset), "--out", str(out)])
    r = json.loads((out / "metrics.json").read_text())
    rows = {row["model"]: row for row in r["rows"]}
    best = min(rows.values(), key=lambda x: x["window_nmse"])
    assert all(row["best_classical"] == best["model"] for row in rows.values())
    assert best["ratio_to_best"] == pytest.approx(1.0)
    assert r["periods"] == {"tiny-uma": None}  # 0.5-ms steps: no season
    for row in rows.values():
        assert row["window_nmse_db"] == pytest.approx(row["nmse_db"])  # the CSI NMSE is the per-window one


def test_channel_prediction_row_and_curve_of_seeds_are_their_means(tiny_dataset):
    """Channel prediction and series rows come from one scoring loop: a model trained with two
    seeds gets the mean of the seeds' scores, and its per-step curve the mean of their curves."""
    from wfm.tasks.evaluation import EvalOptions, evaluate_task

    def one(seed: int, seeds: int) -> tuple[dict, list[float]]:
        r = evaluate_task("channel-prediction-time", ["persistence", "lstm"], [str(tiny_dataset)],
                          EvalOptions(train_steps=2, batch_size=16, seed=seed, seeds=seeds))
        assert [row["model"] for row in r["rows"]] == ["persistence", "lstm"]
        assert r["rows"][0]["mode"] == "closed form" and r["rows"][1]["mode"] == "full-shot"
        return r["rows"][1], r["curves"]["lstm @ tiny-uma"]

    (row0, c0), (row1, c1), (both, c) = one(0, 1), one(1, 1), one(0, 2)
    assert both["seeds"] == 2 and both["per_seed"]["window_nmse"] == [row0["window_nmse"], row1["window_nmse"]]
    assert both["window_nmse"] == pytest.approx((row0["window_nmse"] + row1["window_nmse"]) / 2)
    assert len(c) == 4 and c == pytest.approx([(a + b) / 2 for a, b in zip(c0, c1)])


def test_per_baseline_budget_and_bad_options(tiny_dataset, tmp_path, capsys):
    from wfm.evaluate import parse_baseline_options

    assert parse_baseline_options(["lstm:steps=3,batch=8", "gru:threads=1"]) == {
        "lstm": {"steps": 3, "batch": 8}, "gru": {"threads": 1}}
    out = tmp_path / "ev"
    main(["evaluate", "--task", "channel-prediction-time", "--model", "lstm", "--model", "gru", "--data",
          str(tiny_dataset), "--out", str(out), "--train-steps", "2", "--baseline-options", "lstm:steps=3,batch=8"])
    rows = {r["model"]: r for r in json.loads((out / "metrics.json").read_text())["rows"]}
    assert (rows["lstm"]["train_steps"], rows["lstm"]["batch_size"]) == (3, 8)
    assert (rows["gru"]["train_steps"], rows["gru"]["batch_size"]) == (2, 256)
    for bad in ("lstm", "lstm:epochs=3", "lstm:steps=0"):
        with pytest.raises(SystemExit):
            main(["evaluate", "--task", "channel-prediction-time", "--model", "lstm", "--data", str(tiny_dataset),
                  "--out", str(out), "--baseline-options", bad])
        assert "--baseline-options" in capsys.readouterr().err
