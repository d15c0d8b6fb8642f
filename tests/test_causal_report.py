"""pretrain/causal_report.py (``wfm.tasks.causal_report``) --quick runs end to end and writes its JSON and Markdown."""

from __future__ import annotations

import json

import pytest
import torch

from wfm.tasks import causal_report


@pytest.mark.slow
def test_report_quick_smoke(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        causal_report.main(["--quick", "--steps", "10", "--out", str(tmp_path / "out"),
                            "--data-dir", str(tmp_path / "data")])
    finally:
        torch.set_num_threads(threads)
    res = json.loads((tmp_path / "out" / "report.json").read_text())
    assert set(res["kinds"]) == {"csi", "aoa", "traffic"}
    rows = res["distance"]["rows"]
    assert {"persistence", "causal_tiny zero-shot"} <= set(rows)
    assert all(set(r) == {"h1", "h4", "h16", "windows"} for r in rows.values())
    env = res["env"]["rows"]
    oracle = env["oracle future (upper bound)"]["mean_return"]
    assert all(oracle >= r["mean_return"] - 1e-4 for r in env.values())
    assert "# Causal forecaster report" in (tmp_path / "out" / "report.md").read_text()
    assert "Zero-shot on distance" in capsys.readouterr().out
