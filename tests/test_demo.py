"""`wfm demo` end to end at a small size: data, the shipped MAE (or its own pretraining),
zero-shot table, plots, JSON."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO


def run_demo(out, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    r = subprocess.run([sys.executable, "-m", "wfm.cli", "demo", "--out", str(out), "--num-samples", "64",
                        "--lstm-steps", "3", *extra], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    return r, json.loads((out / "demo.json").read_text())


def check_results(r: subprocess.CompletedProcess, results: dict, out) -> None:
    assert results["dataset"]["samples"] == 64 and results["dataset"]["shape"] == [16, 8, 32]
    assert {p.split("/")[-1] for p in results["plots"]} == {"csi.png", "prediction.png", "nmse_vs_step.png"}
    for p in results["plots"]:
        assert open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    rows = results["zero_shot"]
    assert len(rows) == 4 and {r["set"] for r in rows} == {"held-out tail", "unseen scenario+band"}
    for row in rows:
        assert -60 < row["mae_db"] < 20 and -60 < row["persistence_db"] < 20 and -60 < row["lstm_db"] < 20
        assert -60 < row["ar_db"] < 20
    assert "zero-shot NMSE" in r.stdout
    check_zero_shot_by_hand(rows, out, results["model"])


def _nmse_db_by_hand(pred: torch.Tensor, csi: torch.Tensor, mask: torch.Tensor) -> float:
    """10 log10 of the mean over samples of sum |err|^2 / sum |h|^2 over the hidden elements."""
    m = mask.float()
    ratio = ((pred - csi).abs() ** 2 * m).sum(dim=(1, 2, 3)) / (csi.abs() ** 2 * m).sum(dim=(1, 2, 3))
    return 10 * math.log10(float(ratio.double().mean()))


def check_zero_shot_by_hand(rows: list[dict], out, model_name: str) -> None:
    """Each row's persistence and MAE NMSE, recomputed from the data the demo wrote: persistence
    carries the last visible time step (subcarrier) over the hidden ones; the MAE's is the error
    of its zero-shot reconstruction (loaded here again) over the same hidden region."""
    from wfm.data.shards import ShardedDataset
    from wfm.demo import load_checkpoint

    path = Path(model_name)
    _, model = load_checkpoint(str(path if path.is_absolute() else REPO / path))
    for row in rows:
        ds = ShardedDataset(out / "data" / row["dataset"])
        n = len(ds)
        if row["set"] == "held-out tail":  # the last 20 %
            assert (row["dataset"], row["samples"]) == ("demo-uma-3p5-2x4-k32-t16", int(round(0.2 * n)))
        else:  # the whole unseen set
            assert (row["dataset"], row["samples"]) == ("demo-zs-cdl-d-1p9-2x4-k32-t16", n)
        csi = torch.from_numpy(ds.read_range(n - row["samples"], n, ["csi"])["csi"])
        ds.close()
        kind, dim = ("temporal", 1) if row["task"].startswith("temporal") else ("frequency", 3)
        with torch.no_grad():
            pred = model.predict(csi, kind, 0.5)
        half = csi.shape[dim] // 2  # the last half of the axis is hidden, nothing else
        assert bool(pred.mask.narrow(dim, half, half).all()) and not bool(pred.mask.narrow(dim, 0, half).any())
        hold = csi.narrow(dim, half - 1, 1).expand_as(csi.narrow(dim, half, half))
        persistence = torch.cat([csi.narrow(dim, 0, half), hold], dim=dim)
        assert row["persistence_db"] == pytest.approx(_nmse_db_by_hand(persistence, csi, pred.mask), abs=1e-3)
        assert row["mae_db"] == pytest.approx(_nmse_db_by_hand(pred.reconstruction, csi, pred.mask), abs=1e-3)


def test_demo_uses_the_shipped_mae_by_default(tmp_path):
    r, results = run_demo(tmp_path / "demo")
    check_results(r, results, tmp_path / "demo")
    assert results["model"].endswith("checkpoints/mae-tiny-catalog-cpu")
    assert not (tmp_path / "demo" / "runs").exists()  # nothing pretrained


def test_demo_pretrains_its_own_with_a_flag(tmp_path):
    r, results = run_demo(tmp_path / "demo", "--pretrain", "--pretrain-steps", "6")
    check_results(r, results, tmp_path / "demo")
    assert results["model"].endswith("runs/mae-tiny-cpu/checkpoints/last.ckpt")


def test_demo_refuses_a_model_that_is_not_an_mae():
    from wfm.demo import load_checkpoint
    from wfm.hub import CheckpointError

    with pytest.raises(CheckpointError, match="CausalForecaster"):
        load_checkpoint(str(REPO / "checkpoints" / "causal-tiny-catalog-cpu"))
