"""``finetune/results.py --quick`` on a subset of tasks at toy sizes: tables, JSON, Markdown."""

from __future__ import annotations

import importlib.util
import json

from conftest import REPO


def test_results_script_quick_subset(tmp_path):
    spec = importlib.util.spec_from_file_location("results", REPO / "finetune" / "results.py")
    results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results)
    sizes = {"csi": 40, "unseen": 16, "traj": 10, "highway": 10, "traffic": 10, "train_steps": 3,
             "finetune_steps": 2, "beam_steps": 3}
    r = results.main(["--quick", "--tasks", "los-nlos,distance-forecast", "--pretrain-steps", "2",
                      "--sizes", json.dumps(sizes), "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path)])
    titles = [t["title"] for t in r["tables"]]
    assert len(titles) == 2 and titles[0].startswith("los-nlos") and titles[1].startswith("distance-forecast")
    los = r["tables"][0]["rows"]
    assert {row["model"] for row in los} == {"MAE-Tiny", "transformer from scratch", "MLP on raw CSI"}
    assert {row["mode"] for row in los} == {"linear-probe", "lora", "full"}
    assert all(0 <= row["accuracy"] <= 1 for row in los)
    dist = r["tables"][1]["rows"]
    assert {row["model"] for row in dist} >= {"persistence", "lstm"} and len({row["dataset"] for row in dist}) == 2
    md = (tmp_path / "results-quick.md").read_text()
    assert "## los-nlos" in md and "Command: `wfm finetune --config finetune/los-nlos.yaml" in md
    assert any("causal" in n for n in r["notes"])
    assert json.loads((tmp_path / "results-quick.json").read_text())["sizes"]["csi"] == 40
