"""``finetune/results.py --quick`` (``wfm.tasks.results_table``) on a subset of tasks at toy sizes:
tables, JSON, Markdown."""

from __future__ import annotations

import json
import math

import pytest

from wfm.tasks import results_table


def test_results_script_quick_subset(tmp_path):
    sizes = {"csi": 40, "unseen": 16, "traj": 10, "highway": 10, "traffic": 10, "train_steps": 3,
             "finetune_steps": 2, "beam_steps": 3}
    r = results_table.main(["--quick", "--tasks", "los-nlos,distance-forecast", "--pretrain-steps", "2",
                            "--sizes", json.dumps(sizes), "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path)])
    titles = [t["title"] for t in r["tables"]]
    assert len(titles) == 2 and titles[0].startswith("los-nlos") and titles[1].startswith("distance-forecast")
    los = r["tables"][0]["rows"]
    assert {row["model"] for row in los} == {"MAE-Tiny", "transformer from scratch", "MLP on raw CSI"}
    assert {row["mode"] for row in los} == {"linear-probe", "lora", "full"}
    assert all(0 <= row["accuracy"] <= 1 for row in los)
    # Scored on the 8-sample test tail (20 % of 40): accuracy is a count of 8.
    assert all(row["samples"] == 8 and row["accuracy"] * 8 == round(row["accuracy"] * 8) for row in los)
    dist = r["tables"][1]["rows"]
    assert {row["model"] for row in dist} >= {"persistence", "lstm"} and len({row["dataset"] for row in dist}) == 2
    # Every row's ratio is its window NMSE over that of the best classical baseline's row of its
    # dataset (persistence is one; being best, its own ratio is exactly 1).
    for row in dist:
        best = next(b for b in dist if b["dataset"] == row["dataset"] and b["model"] == row["best_classical"])
        assert row["ratio_to_best"] == pytest.approx(row["window_nmse"] / best["window_nmse"], rel=1e-9)
        assert row["window_nmse_db"] == pytest.approx(10 * math.log10(row["window_nmse"]), abs=1e-9)
    assert all(row["ratio_to_best"] == 1.0 for row in dist if row["model"] == row["best_classical"])
    md = (tmp_path / "results-quick.md").read_text()
    assert "## los-nlos" in md and "Command: `wfm finetune --config finetune/los-nlos.yaml" in md
    assert any("causal" in n for n in r["notes"])
    assert json.loads((tmp_path / "results-quick.json").read_text())["sizes"]["csi"] == 40


def test_merge_replaces_the_rerun_tasks_tables_keeps_the_rest_and_refuses_other_sizes():
    def run(rows: dict[str, int], seconds: float = 600.0, sizes: dict | None = None) -> dict:  # a results.json in small
        return {"quick": False, "sizes": sizes or {"traj": 200, "pretrain": 2000}, "seed": 0, "seconds": seconds, "datasets": {},
                "mae_checkpoint": None, "notes": [],
                "tables": [{"title": f"{task} (NMSE dB)", "rows": [{"nmse_db": v}], "command": "c", "columns": ["nmse_db"]}
                           for task, v in rows.items()]}

    base = run({"los-nlos": 1, "distance-forecast": 2, "traffic-forecast": 3}, seconds=2400.0)
    merged = results_table.merge_results(base, run({"distance-forecast": 20}, seconds=300.0))
    assert [t["title"].split()[0] for t in merged["tables"]] == ["los-nlos", "distance-forecast", "traffic-forecast"]
    assert [t["rows"][0]["nmse_db"] for t in merged["tables"]] == [1, 20, 3]
    assert merged["seconds"] == 2400.0 and base["tables"][1]["rows"][0]["nmse_db"] == 2  # base is not changed
    assert len(merged["notes"]) == 1 and "distance-forecast re-run on" in merged["notes"][0] and "5.0 min" in merged["notes"][0]
    assert "note: distance-forecast re-run" in results_table.render_markdown(merged)
    with pytest.raises(SystemExit, match="same sizes and seed"):
        results_table.merge_results(base, run({"distance-forecast": 20}, sizes={"traj": 10, "pretrain": 2000}), "old.json")
    with pytest.raises(SystemExit, match="old.json: no table of beam-prediction"):
        results_table.merge_results(base, run({"beam-prediction": 5}), "old.json")
    with pytest.raises(SystemExit, match="missing.json: not a results.json"):  # before any work
        results_table.main(["--merge", "missing.json", "--tasks", "los-nlos"])
