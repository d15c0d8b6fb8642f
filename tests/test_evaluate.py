"""``wfm evaluate`` end to end on tiny data: baselines and a model, JSON, Markdown, plots, errors."""

from __future__ import annotations

import json

import pytest

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
    from wfm.tasks.channel_prediction import masked_nmse, nmse_db, persistence
    from wfm.tasks.csi_prediction import prediction_mask
    from wfm.tasks.data import load_csi

    out = tmp_path / "ev"
    main(["evaluate", "--task", "channel-prediction-frequency", "--model", "persistence", "--data", str(tiny_dataset),
          "--out", str(out)])
    got = json.loads((out / "metrics.json").read_text())["rows"][0]["nmse_db"]
    csi = load_csi(tiny_dataset, "test")["csi"]
    mask = prediction_mask(tuple(csi.shape), "frequency", 0.5, (4, 4, 4))
    assert got == pytest.approx(nmse_db(masked_nmse(persistence(csi, mask, "frequency"), csi, mask)))


def test_evaluate_label_task_and_train_fractions(tiny_dataset, tmp_path):
    out = tmp_path / "ev"
    main(["evaluate", "--task", "beam-prediction", "--model", "mlp", "--data", str(tiny_dataset), "--out", str(out),
          "--train-steps", "2", "--train-fraction", "0.5", "--train-fraction", "1"])
    r = json.loads((out / "metrics.json").read_text())
    assert [row["train_samples"] for row in r["rows"]] == [14, 28]
    assert all(0 <= row["top1"] <= row["top3"] <= 1 and row["power_loss_db"] >= 0 for row in r["rows"])
    assert any(p.endswith("accuracy_vs_fraction.png") for p in r["plots"])


def test_evaluate_bad_input_is_one_line(tiny_dataset, tmp_path, capsys):
    for argv, needle in (
        (["--task", "los-nlos", "--model", "scratch:mae_tiny"], "no zero-shot mode"),
        (["--task", "los-nlos", "--model", "persistence"], "baseline 'persistence' does not apply to task los-nlos"),
        (["--task", "traffic-forecast", "--model", "persistence"], "needs series of kind traffic"),
        (["--task", "distance-forecast", "--model", "persistence"], "too short or too few"),
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
