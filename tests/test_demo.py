"""`wfm demo` end to end at a small size: data, pretraining, zero-shot table, plots, JSON."""

from __future__ import annotations

import json
import subprocess
import sys


def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "wfm.cli", "demo", "--out", str(out), "--num-samples", "64",
                        "--pretrain-steps", "6", "--lstm-steps", "3"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads((out / "demo.json").read_text())
    assert results["dataset"]["samples"] == 64 and results["dataset"]["shape"] == [16, 8, 32]
    assert {p.split("/")[-1] for p in results["plots"]} == {"csi.png", "prediction.png", "nmse_vs_step.png"}
    for p in results["plots"]:
        assert open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    rows = results["zero_shot"]
    assert len(rows) == 4 and {r["set"] for r in rows} == {"held-out tail", "unseen scenario+band"}
    for row in rows:
        assert -60 < row["mae_tiny_db"] < 20 and -60 < row["persistence_db"] < 20 and -60 < row["lstm_db"] < 20
    assert "zero-shot NMSE" in r.stdout
