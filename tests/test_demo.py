"""`wfm demo` end to end at a small size: data, the shipped MAE (or its own pretraining),
zero-shot table, plots, JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO


def run_demo(out, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    r = subprocess.run([sys.executable, "-m", "wfm.cli", "demo", "--out", str(out), "--num-samples", "64",
                        "--lstm-steps", "3", *extra], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    return r, json.loads((out / "demo.json").read_text())


def check_results(r: subprocess.CompletedProcess, results: dict) -> None:
    assert results["dataset"]["samples"] == 64 and results["dataset"]["shape"] == [16, 8, 32]
    assert {p.split("/")[-1] for p in results["plots"]} == {"csi.png", "prediction.png", "nmse_vs_step.png"}
    for p in results["plots"]:
        assert open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    rows = results["zero_shot"]
    assert len(rows) == 4 and {r["set"] for r in rows} == {"held-out tail", "unseen scenario+band"}
    for row in rows:
        assert -60 < row["mae_db"] < 20 and -60 < row["persistence_db"] < 20 and -60 < row["lstm_db"] < 20
    assert "zero-shot NMSE" in r.stdout


def test_demo_uses_the_shipped_mae_by_default(tmp_path):
    r, results = run_demo(tmp_path / "demo")
    check_results(r, results)
    assert results["model"].endswith("checkpoints/mae-tiny-catalog-cpu")
    assert not (tmp_path / "demo" / "runs").exists()  # nothing pretrained


def test_demo_pretrains_its_own_with_a_flag(tmp_path):
    r, results = run_demo(tmp_path / "demo", "--pretrain", "--pretrain-steps", "6")
    check_results(r, results)
    assert results["model"].endswith("runs/mae-tiny-cpu/checkpoints/last.ckpt")


def test_demo_refuses_a_model_that_is_not_an_mae():
    from wfm.demo import load_checkpoint
    from wfm.hub import CheckpointError

    with pytest.raises(CheckpointError, match="CausalForecaster"):
        load_checkpoint(str(REPO / "checkpoints" / "causal-tiny-catalog-cpu"))
