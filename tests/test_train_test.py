"""Train on some folders, test on others (``wfm evaluate --train/--test``), splits that do not
leak (by time, by scenario, by trajectory), seed spread, saving and re-using trained models,
the too-small warning, progress output and early errors. Tiny data, a few training steps."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import load_script
from wfm.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- data


def _series_csv(path: Path, days: int, seed: int, interval_h: float = 1.0) -> Path:
    """An hourly station export: a daily cycle plus noise, one value per line with its time."""
    import datetime as dt

    rng = np.random.default_rng(seed)
    n = int(days * 24 / interval_h)
    t0 = dt.datetime(2024, 3, 4)
    lines = ["time,traffic"]
    for i in range(n):
        v = 100 + 40 * np.sin(2 * np.pi * i * interval_h / 24) + rng.normal(0, 3)
        lines.append(f"{(t0 + dt.timedelta(hours=i * interval_h)).isoformat()},{v:.3f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _station(tmp_path: Path, name: str, days: int, seed: int) -> Path:
    from wfm.data.loaders.generic import import_series

    src = _series_csv(tmp_path / f"{name}.csv", days, seed)
    return import_series(src, tmp_path / name, 3600.0, "traffic", None, "time")


def _deepsense(folder: Path, scenarios=(1, 2, 3), n_traj: int = 4, length: int = 20, seed: int = 1) -> Path:
    """DeepSense-layout arrays: per scenario ``n_traj`` trajectories of ``length`` steps."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for s in scenarios:
        n = n_traj * length
        seq = np.repeat(np.arange(1, n_traj + 1), length)
        bs = np.tile([33.42 + s * 0.01, -111.93], (n, 1))
        ue = np.stack([bs[:, 0] + 20 / 111_195, -111.93 + np.tile(np.linspace(-1, 1, length), n_traj) * 1e-4], 1)
        best = (np.tile(np.arange(length), n_traj) * 2 + 7 * s) % 64  # the best beam drifts along a trajectory
        pwr = rng.uniform(0, 0.2, (n, 64))
        pwr[np.arange(n), best] = 1.0
        np.save(folder / f"scenario{s}_unit1_pwr_60ghz_1-{n}.npy", pwr)
        np.save(folder / f"scenario{s}_unit1_loc_1-{n}.npy", bs)
        np.save(folder / f"scenario{s}_unit2_loc_1-{n}.npy", ue)
        np.save(folder / f"scenario{s}_seq_index_1-{n}.npy", seq)
    return folder


@pytest.fixture(scope="module")
def beams(tmp_path_factory) -> dict[str, Path]:
    from wfm.data.loaders.deepsense import import_deepsense

    root = tmp_path_factory.mktemp("beams")
    raw = _deepsense(root / "raw")
    return {"all": import_deepsense(raw, root / "all"), "s12": import_deepsense(raw, root / "s12", [1, 2]),
            "s3": import_deepsense(raw, root / "s3", [3])}


def _rows(out: Path) -> dict[str, dict]:
    return {r["model"]: r for r in json.loads((out / "metrics.json").read_text())["rows"]}


# ---------------------------------------------------------------------------- series


def test_series_train_on_one_csv_test_on_another_save_and_reuse(tmp_path, capsys):
    a, b = _station(tmp_path, "station-a", 10, 0), _station(tmp_path, "station-b", 5, 1)
    out, saved = tmp_path / "ev", tmp_path / "saved"
    main(["evaluate", "--task", "traffic-forecast", "--model", "persistence", "--model", "seasonal", "--model", "lstm",
          "--train", str(a), "--test", str(b), "--context", "48", "--horizon", "6", "--train-steps", "4",
          "--batch-size", "16", "--progress-every", "2", "--out", str(out), "--save", str(saved)])
    err = capsys.readouterr().err
    r = json.loads((out / "metrics.json").read_text())
    rows = {row["model"]: row for row in r["rows"]}
    # Every window of the test folder (5 days hourly = 120 steps, stride = horizon), none of the training one.
    assert all(row["windows"] == (120 - 54) // 6 + 1 and row["dataset"] == "station-b" for row in rows.values())
    assert rows["seasonal"]["period"] == 24 and r["periods"] == {"station-b": 24}  # a day at 1 h, from the interval
    assert rows["lstm"]["split"] == "train/test" and "train on station-a" in r["splits"]["station-b"]
    assert rows["lstm"]["selected"].startswith("best val")  # the last 10 % of station-a validates
    assert "lstm (seed 0): step 2/4" in err and "lstm (seed 0): step 4/4" in err  # progress lines without a TTY
    # The saved LSTM scores the same on the test folder without training (and needs no --train).
    folder = saved / "lstm"
    assert (folder / "model.safetensors").is_file() and json.loads((folder / "trained.json").read_text())["class"] == \
        "forecaster"
    main(["evaluate", "--task", "traffic-forecast", "--model", str(folder), "--test", str(b), "--context", "48",
          "--horizon", "6", "--out", str(tmp_path / "again")])
    again = _rows(tmp_path / "again")["lstm"]
    assert again["mode"] == "trained (loaded)"
    assert again["window_nmse"] == pytest.approx(rows["lstm"]["window_nmse"], rel=1e-6)


def test_single_series_is_split_by_time_with_a_stated_gap(tmp_path):
    from wfm.tasks.registry import get_task
    from wfm.tasks.series_data import plan_series

    a = _station(tmp_path, "station-a", 10, 0)  # one series of 240 steps
    p = plan_series(get_task("traffic-forecast"), [str(a)], [str(a)], True, 48, 6)
    assert p["split"] == "time" and p["gap"] == 6 and "gap of 6 steps" in p["description"]
    # Targets never cross: every training target is before 70 %, validation after 70 % + gap, test after 80 % + gap.
    def target_steps(w):
        return [(w.locate(i)[2] + w.context, w.locate(i)[2] + w.context + w.horizon) for i in range(len(w))]
    starts = {k: int(getattr(p[k].tables[0], "starts")[0]) for k in ("train", "val")}
    starts["test"] = int(p["tests"][0][1].tables[0].starts[0])
    train = [(starts["train"] + s, starts["train"] + e) for s, e in target_steps(p["train"])]
    val = [(starts["val"] + s, starts["val"] + e) for s, e in target_steps(p["val"])]
    test = [(starts["test"] + s, starts["test"] + e) for s, e in target_steps(p["tests"][0][1])]
    assert max(e for _, e in train) <= 168 and min(s for s, _ in val) >= 168 + 6
    assert max(e for _, e in val) <= 192 and min(s for s, _ in test) >= 192 + 6 and len(test) >= 1


def test_too_short_single_series_says_why_and_the_fix(tmp_path, capsys):
    a = _station(tmp_path, "station-a", 2, 0)  # 48 steps: a 20 % test part cannot hold context 48
    with pytest.raises(SystemExit):
        main(["evaluate", "--task", "traffic-forecast", "--model", "persistence", "--data", str(a), "--context", "48",
              "--horizon", "6", "--out", str(tmp_path / "x")])
    err = " ".join(capsys.readouterr().err.split())
    assert "split by time" in err and "Fix:" in err and "--train DIR --test DIR" in err and "0 windows" not in err


# ---------------------------------------------------------------------------- DeepSense


def test_deepsense_splits_by_scenario_by_default_and_by_trajectory_on_request(beams, tmp_path):
    from wfm.tasks.future_beam import plan_beam

    p = plan_beam([str(beams["all"])], [str(beams["all"])], True, 4, 1)
    assert p["split"] == "scenario" and "train on scenario(s) 1, validate on 2, test on 3" in p["description"]
    assert set(p["tests"][0][1].scenario.tolist()) == {3} and set(p["train"].scenario.tolist()) == {1}
    t = plan_beam([str(beams["all"])], [str(beams["all"])], True, 4, 1, split="trajectory")
    assert t["split"] == "trajectory" and "within-scenario test" in t["description"]
    tr, te = set(t["train"].trajectory.tolist()), set(t["tests"][0][1].trajectory.tolist())
    assert tr.isdisjoint(te) and len(te) == 2  # 20 % of 12 trajectories


def test_deepsense_train_on_scenarios_test_on_another_with_seeds_and_saving(beams, tmp_path, capsys):
    out, saved = tmp_path / "ev", tmp_path / "saved"
    main(["evaluate", "--task", "future-beam", "--model", "persistence", "--model", "ar", "--model", "position-knn",
          "--model", "gru", "--model", "scratch:mae_tiny", "--train", str(beams["s12"]), "--test", str(beams["s3"]),
          "--context", "4",
          "--seeds", "2", "--train-steps", "3", "--batch-size", "16", "--out", str(out), "--save", str(saved)])
    text = capsys.readouterr().out
    r = json.loads((out / "metrics.json").read_text())
    rows = {row["model"]: row for row in r["rows"]}
    assert {row["trajectories_test"] for row in rows.values()} == {4} and rows["gru"]["context"] == 4
    assert rows["gru"]["seeds"] == 2 and "top1_std" in rows["gru"] and "power_loss_db_std" in rows["gru"]
    assert rows["gru"]["top1"] == pytest.approx(sum(rows["gru"]["per_seed"]["top1"]) / 2)
    assert rows["scratch:mae_tiny"]["mode"] == "full fine-tuning" and rows["scratch:mae_tiny"]["seeds"] == 2
    assert rows["ar"]["mode"] == "closed form" and rows["ar"]["train_samples"] == 0 and 0 <= rows["ar"]["top1"] <= 1
    assert "validate on scenario(s) 2" in r["splits"]["s3"] or "validate on scenario(s) 2" in \
        r["splits"][next(iter(r["splits"]))]
    # Position k-NN has no positions of scenario 3: not scored, and said so (no silent 0.000).
    assert "top1" not in rows["position-knn"] and "not applicable" in rows["position-knn"]["note"]
    assert any("position-knn has no training positions" in w for w in r["warnings"])
    assert " ± " in (out / "results.md").read_text() and "trajectories test 4" in text
    # Saved: one folder per seed; the fine-tuned MAE reloads (safetensors + JSON) and scores the same.
    names = sorted(p.name for p in saved.iterdir())
    assert {"gru-seed0", "gru-seed1", "scratch-mae_tiny-seed0", "position-knn"} <= set(names)
    main(["evaluate", "--task", "future-beam", "--model", str(saved / "scratch-mae_tiny-seed0"), "--model",
          str(saved / "gru-seed1"), "--test", str(beams["s3"]), "--context", "4", "--out", str(tmp_path / "again")])
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())["rows"]
    assert again[0]["kind"] == "foundation" and again[0]["mode"] == "trained (loaded)"
    # the fine-tuned MAE is saved with its prior and frame (the default: relative); --beam-frame absolute
    from wfm.tasks import saved as S

    assert json.loads((saved / "scratch-mae_tiny-seed0" / "trained.json").read_text())["config"]["relative"] is True
    main(["evaluate", "--task", "future-beam", "--model", "scratch:mae_tiny", "--train", str(beams["s12"]), "--test",
          str(beams["s3"]), "--context", "4", "--train-steps", "2", "--batch-size", "16", "--beam-frame", "absolute",
          "--out", str(tmp_path / "abs"), "--save", str(tmp_path / "saved-abs")])
    assert "anchored on persistence; codebook seen from the current best beam" in rows["scratch:mae_tiny"]["note"]
    abs_rows = json.loads((tmp_path / "abs" / "metrics.json").read_text())["rows"]
    assert abs_rows[0]["note"].endswith("codebook as given")
    obj, meta = S.load(tmp_path / "saved-abs" / "scratch-mae_tiny")
    assert obj.relative is False and obj.prior == "persistence" and meta["config"]["relative"] is False
    assert again[1]["top1"] == pytest.approx(rows["gru"]["top1"], abs=0.5)  # a seed's own score, within the seeds' range


def test_a_saved_future_beam_mae_is_fine_tuned_further_with_tune(beams, tmp_path, capsys):
    from wfm.tasks import saved as S

    saved = tmp_path / "saved"
    main(["evaluate", "--task", "future-beam", "--model", "scratch:mae_tiny", "--model", "lstm", "--train",
          str(beams["s12"]), "--test", str(beams["s3"]), "--context", "4", "--train-steps", "2", "--batch-size", "16",
          "--out", str(tmp_path / "ev"), "--save", str(saved)])
    stage = saved / "scratch-mae_tiny"
    out = tmp_path / "tuned"
    main(["evaluate", "--task", "future-beam", "--model", f"tune:{stage}", "--model", str(stage), "--train",
          str(beams["s12"]), "--test", str(beams["s3"]), "--context", "4", "--train-steps", "3", "--batch-size", "16",
          "--out", str(out), "--save", str(tmp_path / "again")])
    rows = _rows(out)
    tuned, as_is = rows["tune:scratch-mae_tiny"], rows["scratch-mae_tiny"]
    assert tuned["mode"] == "full fine-tuning" and tuned["kind"] == "foundation" and tuned["train_steps"] == 3
    assert as_is["mode"] == "trained (loaded)"
    # the start is the saved model, head included: a run that keeps its start scores as the saved one does
    if tuned["selected"].startswith("best val, step 0"):
        assert tuned["top1"] == as_is["top1"]
    obj, meta = S.load(tmp_path / "again" / "tune-scratch-mae_tiny")
    assert meta["class"] == "beam-mae" and obj.relative is True
    # tune: needs training data and a saved future-beam MAE
    for argv, needle in (
            (["--model", f"tune:{stage}", "--test", str(beams["s3"])], "give --train DIR"),
            (["--model", f"tune:{saved / 'lstm'}", "--train", str(beams["s12"]), "--test", str(beams["s3"])],
             "a saved beam-rnn"),
            (["--model", f"tune:{tmp_path}", "--train", str(beams["s12"]), "--test", str(beams["s3"])],
             "tune: takes a folder saved")):
        with pytest.raises(SystemExit):
            main(["evaluate", "--task", "future-beam", *argv, "--context", "4", "--out", str(tmp_path / "x")])
        assert needle in capsys.readouterr().err

def test_test_trajectories_seen_in_training_are_a_warning(beams, tmp_path):
    out = tmp_path / "ev"
    main(["evaluate", "--task", "future-beam", "--model", "persistence", "--model", "lstm", "--train", str(beams["all"]),
          "--test", str(beams["s3"]), "--context", "4", "--train-steps", "2", "--out", str(out)])
    w = json.loads((out / "metrics.json").read_text())["warnings"]
    assert any("4 of its 4 trajectories (scenario(s) 3) are also in the training data" in x for x in w)


def test_saved_model_is_checked(beams, tmp_path, capsys):
    from wfm.tasks import saved as S

    out, saved = tmp_path / "ev", tmp_path / "saved"
    main(["evaluate", "--task", "future-beam", "--model", "lstm", "--data", str(beams["all"]), "--context", "4",
          "--train-steps", "2", "--out", str(out), "--save", str(saved)])
    folder = saved / "lstm"
    obj, meta = S.load(folder)
    assert meta["task"] == "future-beam" and meta["training"]["split"] == "scenario"
    # A changed weight file is refused before anything is built from it.
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(SystemExit):
        main(["evaluate", "--task", "future-beam", "--model", str(folder), "--test", str(beams["s3"]), "--out",
              str(out)])
    assert "sha256 mismatch" in capsys.readouterr().err
    # A saved beam model does not pass for a series forecaster.
    meta_path = folder / "trained.json"
    with pytest.raises(SystemExit):
        main(["evaluate", "--task", "traffic-forecast", "--model", str(folder), "--test", str(beams["s3"]),
              "--out", str(out)])
    assert "saved from task future-beam" in capsys.readouterr().err
    meta_path.write_text(json.dumps({"format": "pickle"}))
    with pytest.raises(S.SavedModelError):
        S.read_meta(folder)


# ---------------------------------------------------------------------------- the too-small warning


def test_too_small_test_set_warns_with_numbers():
    from wfm.tasks.significance import Scored, separation_warnings

    groups = torch.arange(40).repeat_interleave(5)  # 40 trajectories of 5 windows
    b = (torch.arange(200) % 2).double()  # right on half the windows
    a = b.clone()
    a[torch.arange(0, 200, 6)[:17]] = 1.0 - a[torch.arange(0, 200, 6)[:17]]  # they disagree on 17 windows ...
    a[torch.arange(3, 200, 6)[:13]] = 1.0 - a[torch.arange(3, 200, 6)[:13]]  # ... and on 13 more
    assert 0 < float(a.mean() - b.mean()) < 0.05
    w = separation_warnings([Scored("lstm", a, float(a.mean())), Scored("gru", b, float(b.mean()))], "top1", True,
                            groups, "trajectories", "ds")
    assert len(w) == 1 and "too small to separate" in w[0] and "over 40 test trajectories" in w[0] and "x as many" in w[0]
    # A large, clear difference is not flagged.
    c = torch.ones(200, dtype=torch.float64)
    assert separation_warnings([Scored("good", c, 1.0), Scored("gru", b, float(b.mean()))], "top1", True, groups,
                               "trajectories", "ds") == []


# ---------------------------------------------------------------------------- progress, early errors, finetune


def test_progress_lines_every_n_steps_and_the_last():
    from wfm.tasks.progress import Reporter

    buf = io.StringIO()
    with Reporter(every=3, tty=False, stream=buf) as rep:
        rep.start("task / data: lstm")
        with rep.training("lstm (seed 0)", 7) as step:
            for s in range(1, 8):
                step(s, torch.tensor(0.5))
    lines = buf.getvalue().splitlines()
    assert lines[0] == "[1] task / data: lstm"
    assert [ln.split(",")[0].strip() for ln in lines[1:]] == ["lstm (seed 0): step 3/7", "lstm (seed 0): step 6/7",
                                                              "lstm (seed 0): step 7/7"]


def test_training_without_validation_says_so():
    from wfm.models.baselines import RNNForecaster

    x = torch.randn(64, 12)
    data = (x[:, :8], x[:, 8:], torch.ones(64))
    f = RNNForecaster("gru", max_horizon=4, hidden=8).fit(data, None, steps=3, batch_size=16)
    assert f.selection["kept"].startswith("last") and "no val split" in f.selection["kept"]
    f = RNNForecaster("gru", max_horizon=4, hidden=8).fit(data, data, steps=3, batch_size=16, eval_every=1)
    assert f.selection["kept"].startswith("best val") and f.selection["checks"] == 3


def test_argument_and_model_errors_come_before_torch_and_data(tmp_path, beams):
    """Bad arguments and models answer without importing torch or reading data (not timed:
    tests/startup_bench.py measures the seconds)."""
    code = ("import sys\nfrom wfm.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print('torch' in sys.modules, e.code)\n")
    cases = [
        (["--task", "future-beam", "--model", "lstm", "--train", str(beams["s12"])], "--train needs --test"),
        (["--task", "future-beam", "--model", "lstm", "--test", str(beams["s3"])], "lstm is trained on data"),
        (["--task", "future-beam", "--model", "nosuchmodel", "--data", str(beams["all"])], "not a baseline of task"),
        (["--task", "future-beam", "--model", "seasonal", "--data", str(beams["all"])], "does not apply"),
        (["--task", "future-beam", "--model", str(REPO / "checkpoints" / "causal-tiny-catalog-cpu"), "--data",
          str(beams["all"])], "a causal model; task future-beam needs an MAE"),
        (["--task", "traffic-forecast", "--model", "persistence", "--data", str(tmp_path / "nope")], "no such dataset"),
        (["--task", "traffic-forecast", "--model", "persistence", "--data", str(tmp_path), "--split", "scenario"],
         "splits by sample or time"),
        (["--task", "future-beam", "--model", "persistence", "--data", str(tmp_path), "--seeds", "0"], "seeds"),
        (["--task", "future-beam", "--model", f"tune:{tmp_path}", "--train", str(beams["s12"]), "--test",
          str(beams["s3"])], "tune: takes a folder saved"),
        (["--task", "traffic-forecast", "--model", f"tune:{REPO / 'checkpoints' / 'beam-mae-tiny-street-cpu'}",
          "--train", str(beams["s12"]), "--test", str(beams["s3"])], "not traffic-forecast"),
    ]
    for argv, needle in cases:
        p = subprocess.run([sys.executable, "-c", code, "evaluate", *argv, "--out", str(tmp_path / "o")],
                           capture_output=True, text=True, cwd=REPO, timeout=60)
        assert p.stdout.split() == ["False", "2"], (argv, p.stdout, p.stderr)
        assert needle in " ".join(p.stderr.split()), (needle, p.stderr)


def test_causal_model_predicts_csi_from_the_cli(tiny_dataset, tmp_path):
    out = tmp_path / "ev"
    main(["evaluate", "--task", "channel-prediction-time", "--model", str(REPO / "checkpoints" /
          "causal-tiny-catalog-cpu"), "--model", "persistence", "--data", str(tiny_dataset), "--out", str(out)])
    rows = _rows(out)
    row = rows["causal-tiny-catalog-cpu"]
    assert row["mode"] == "zero-shot" and np.isfinite(row["window_nmse"]) and row["best_classical"]
    # By hand on the 8-sample test tail (time steps 4..7 hidden): the causal model forecasts each
    # antenna x subcarrier series' real and imaginary parts from steps 0..3, persistence repeats
    # step 3; window NMSE = mean over samples of sum |err|^2 / sum |h|^2 over the hidden steps.
    # The series of one sample are one group: they pool their backtest evidence.
    from wfm.hub import from_pretrained
    from wfm.tasks.csi_data import load_csi

    test = load_csi(tiny_dataset, "test")
    csi, dt = test["csi"], float(test["attrs"]["time_step"])
    assert csi.shape == (8, 8, 4, 16) and row["samples"] == 8 and row["hidden_steps"] == 4
    ctx = torch.view_as_real(csi[:, :4]).permute(0, 2, 3, 4, 1).reshape(-1, 4)  # [N A K 2, 4]
    with torch.no_grad():
        f = from_pretrained(str(REPO / "checkpoints" / "causal-tiny-catalog-cpu")).forecast(
            ctx, torch.full((len(ctx),), dt), 4, group=torch.arange(len(ctx)) // (4 * 16 * 2))
    causal = torch.view_as_complex(f.float().reshape(8, 4, 16, 2, 4).permute(0, 4, 1, 2, 3).contiguous())

    def window_nmse(pred: torch.Tensor) -> float:
        true = csi[:, 4:]
        return float(((pred - true).abs() ** 2).sum(dim=(1, 2, 3)).double().div(
            (true.abs() ** 2).sum(dim=(1, 2, 3)).double()).mean())

    assert row["window_nmse"] == pytest.approx(window_nmse(causal), rel=1e-4)
    assert rows["persistence"]["window_nmse"] == pytest.approx(window_nmse(csi[:, 3:4].expand(8, 4, 4, 16)), rel=1e-5)
    # The classical baselines scored on the side (persistence and the context mean; no seasonal
    # period for 0.5 ms steps): persistence is the best, so the ratio is to its row.
    classical = json.loads((out / "metrics.json").read_text())["classical"]["tiny-uma"]
    assert set(classical) == {"persistence", "mean"} and classical["mean"] > classical["persistence"]
    assert classical["persistence"] == pytest.approx(rows["persistence"]["window_nmse"], rel=1e-9)
    assert classical["mean"] == pytest.approx(window_nmse(csi[:, :4].mean(1, keepdim=True).expand(8, 4, 4, 16)),
                                              rel=1e-5)
    assert row["best_classical"] == "persistence"
    assert row["ratio_to_best"] == pytest.approx(row["window_nmse"] / rows["persistence"]["window_nmse"], rel=1e-9)


def test_finetune_train_test_arguments_and_data_module(tiny_dataset, tiny_cdl_dataset):
    from wfm.finetune import train_test_args
    from wfm.safety import InputError
    from wfm.tasks.finetune_module import TaskDataModule

    assert train_test_args(["--config", "c.yaml", "--train", "a", "b", "--test=c", "--model.mode", "full"]) == [
        "--config", "c.yaml", "--model.mode", "full", '--data.train_datasets=["a", "b"]',
        '--data.test_datasets=["c"]', "--data.datasets=null"]
    with pytest.raises(InputError):
        train_test_args(["--train", "a"])
    dm = TaskDataModule("los-nlos", train_datasets=[str(tiny_dataset)], test_datasets=[str(tiny_dataset)])
    dm.setup()
    assert [len(dm.splits[k]["csi"]) for k in ("train", "val", "test")] == [36, 4, 40]
    from wfm.data.errors import DataError

    with pytest.raises(DataError, match="wfm evaluate"):
        TaskDataModule("future-beam", [str(tiny_dataset)])


def test_deepsense_import_is_named_after_its_scenarios():
    from wfm.data.loaders.deepsense import default_name

    assert default_name([1, 2, 3, 4, 5]) == "deepsense6g-beam-s1-5"
    assert default_name([3, 1, 2, 6]) == "deepsense6g-beam-s1-3+6" and default_name([7]) == "deepsense6g-beam-s7"


def test_conj_groups_across_receive_chains_for_a_one_tx_capture(tmp_path, monkeypatch):
    import wfm.data.loaders.wifi_csi as W
    from wfm.data.errors import DataError
    from wfm.data.shards import ShardedDataset

    rng = np.random.default_rng(0)
    csi = (rng.normal(size=(20, 3, 8)) + 1j * rng.normal(size=(20, 3, 8))).astype(np.complex64)
    cap = {"csi": csi, "timestamp": np.arange(20) * 0.1, "subcarriers": np.arange(8), "chip": "intel5300",
           "bandwidth": 20e6, "antennas": ["rx0-tx0", "rx1-tx0", "rx2-tx0"], "conj_groups": [[0], [1], [2]]}
    monkeypatch.setattr(W, "read_capture", lambda path, fmt, **kw: cap)
    with pytest.raises(DataError, match="--conj-groups all"):
        W.import_wifi_csi(["x.dat"], tmp_path / "a", "intel", phase="conj", window=10)
    out = W.import_wifi_csi(["x.dat"], tmp_path / "b", "intel", phase="conj", window=10, conj_groups="all")
    ds = ShardedDataset(out)
    x = ds.read_range(0, 1, ["csi"])["csi"][0]
    ref = int(np.argmax(np.mean(np.abs(csi) ** 2, axis=(0, 2))))
    assert ds.attrs["conj_groups"] == "all" and np.allclose(np.asarray(x)[:, ref].imag, 0, atol=1e-5)


def test_label_task_train_test_folders_save_and_reuse(tiny_dataset, tmp_path):
    out, saved = tmp_path / "ev", tmp_path / "saved"
    main(["evaluate", "--task", "los-nlos", "--model", "mlp", "--train", str(tiny_dataset), "--test",
          str(tiny_dataset), "--train-steps", "2", "--out", str(out), "--save", str(saved)])
    row = _rows(out)["mlp"]
    assert row["samples"] == 40 and row["train_samples"] == 36 and row["selected"].startswith("last")
    main(["evaluate", "--task", "los-nlos", "--model", str(saved / "mlp"), "--test", str(tiny_dataset), "--out",
          str(tmp_path / "again")])
    again = _rows(tmp_path / "again")["mlp"]
    assert again["mode"] == "trained (loaded)" and again["accuracy"] == pytest.approx(row["accuracy"])


def test_beam_frames_script_trains_both_frames_from_both_starts_and_learns_a_drift_across_sites(beams):
    bf = load_script("finetune/beam_frames.py")
    res = bf.run(str(beams["s12"]), [str(beams["s3"])], "scratch:mae_tiny", seeds=2, steps=60, lr=2e-3, batch_size=64)
    assert res["persistence"] == {"s3": 0.0}  # the best beam moves 2 beams every step
    assert [(r["frame"], len(r["steps_kept"])) for r in res["rows"]] == [("absolute", 2), ("relative", 2)] * 2
    rel = [r for r in res["rows"] if r["frame"] == "relative"]
    # the drift seen on scenarios 1-2 carries to scenario 3, whose beams lie elsewhere in the codebook
    assert all(min(r["top1"]["s3"]) > 0.5 for r in rel)


def test_beam_frames_starts_from_a_saved_future_beam_mae_in_its_own_frame(beams, tmp_path):
    from wfm.models.registry import create_model
    from wfm.tasks import saved
    from wfm.tasks.future_beam import BeamMAE, plan_beam

    bf = load_script("finetune/beam_frames.py")
    torch.manual_seed(0)
    plan = plan_beam([str(beams["s12"])], [str(beams["s3"])], False, 8, 1)
    net = BeamMAE(create_model("mae_tiny"), 64, relative=True)
    net.fit(plan["train"], plan["val"], steps=40, lr=2e-3, batch_size=64, seed=0)  # a beam stage, in short
    folder = saved.save(net, tmp_path / "stage", "future-beam", "future-beam", {"steps": 40})
    assert bf.start_net(str(folder), "absolute", 64) is None  # trained in the relative frame only
    start = bf.start_net(str(folder), "relative", 64)
    w = plan["tests"][0][1]
    assert torch.equal(start.scores(w), net.scores(w))  # head and anchor as trained, not a zero head
    res = bf.run(str(beams["s12"]), [str(beams["s3"])], [str(folder)], seeds=1, steps=0, batch_size=64)
    rows = [(r["start"], r["frame"]) for r in res["rows"]]
    assert rows == [("stage", "relative"), ("scratch:mae_tiny", "absolute"), ("scratch:mae_tiny", "relative")]
    # no training step: the saved model is scored as it is
    assert res["rows"][0]["top1"]["s3"] == [float((net.scores(w).argmax(1) == w.label).float().mean())]
    with pytest.raises(SystemExit, match="not a future-beam MAE"):
        from wfm.tasks.future_beam import BeamRNN
        bf.start_net(str(saved.save(BeamRNN(64), tmp_path / "rnn", "future-beam", "future-beam", {})), "relative", 64)
