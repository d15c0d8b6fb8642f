"""pretrain/cpu_precision.py (wfm.training.precision_bench) measures every configuration it is asked for and reports ratios to fp32."""

import pytest

from wfm.training import precision_bench


def test_rows_for_every_model_shape_and_config(tmp_path, capsys):
    rows = precision_bench.main(["--quick", "--tiny", "--configs", "fp32", "bf16 autocast", "--out", str(tmp_path / "r.json")])
    assert [(r["shape"].split(",")[0], r["config"]) for r in rows] == [
        ("CSI [8", "fp32"), ("CSI [8", "bf16 autocast"), ("CSI [16", "fp32"), ("CSI [16", "bf16 autocast"),
        ("context 64 + 64", "fp32"), ("context 64 + 64", "bf16 autocast")]
    assert all("error" not in r and r["samples/s"] > 0 for r in rows), rows
    assert [r["x fp32"] for r in rows if r["config"] == "fp32"] == [1.0, 1.0, 1.0]
    assert (tmp_path / "r.json").exists() and "| model | shape | config |" in capsys.readouterr().out


def test_unknown_config_is_refused():
    with pytest.raises(SystemExit):
        precision_bench.main(["--configs", "fp8"])
