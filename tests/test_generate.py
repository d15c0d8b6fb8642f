"""Generation: determinism, parallel workers, resume after a kill, and the CLI's errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import RECIPES, tiny_recipe
from wfm.data.errors import DataError
from wfm.data.generate import generate_dataset
from wfm.data.shards import MANIFEST, ShardedDataset, read_manifest, verify_dataset


def killed(n: int) -> None:
    """A progress hook that stops a run after its first shard, as a kill would."""
    raise KeyboardInterrupt


def checksums(root) -> list[str]:
    return [s["sha256"] for s in read_manifest(root)["shards"]]


def test_sample_schema(tiny_dataset):
    ds = ShardedDataset(tiny_dataset)
    s = ds[0]
    assert s["csi"].dtype == np.complex64 and s["csi"].shape == (8, 4, 16)
    assert s["position"].shape == (8, 3) and s["distance"].shape == (8,) and s["aoa"].shape == (8, 2)
    assert bool(s["geometry_valid"])
    # Distance and AoA follow from the position track (BS at the origin, boresight along x).
    np.testing.assert_allclose(s["distance"], np.linalg.norm(s["position"] - [0, 0, 25], axis=-1), rtol=1e-3)
    assert 10 / 3.6 - 1e-3 <= s["speed"] <= 60 / 3.6 + 1e-3
    step = np.linalg.norm(np.diff(s["position"], axis=0), axis=-1)
    np.testing.assert_allclose(step, s["speed"] * 0.5e-3, rtol=1e-3)
    assert ds.attrs["carrier_frequency"] == 3.5e9 and ds.attrs["array_shape"] == [1, 4]
    m = read_manifest(tiny_dataset)
    assert m["schema_version"] == 1 and m["recipe"]["model"] == "uma" and m["num_samples"] == 40
    assert [s["num_samples"] for s in m["shards"]] == [16, 16, 8]
    assert 0.1 < m["stats"]["csi"]["power"] < 10
    # The manifest's CSI statistics are those of all 40 samples: E|h|^2 and sqrt(E|h|^2 - |E h|^2).
    h = ds.read_range(0, 40, ["csi"])["csi"].astype(np.complex128)
    power = float(np.mean(np.abs(h) ** 2))
    assert m["stats"]["csi"]["power"] == pytest.approx(power, rel=1e-5)
    assert m["stats"]["csi"]["std"] == pytest.approx(np.sqrt(power - abs(h.mean()) ** 2), rel=1e-5)


def test_deterministic_and_independent_of_workers(tiny_dataset, tmp_path):
    generate_dataset(tiny_recipe(), tmp_path / "again", seed=0, workers=2)
    assert checksums(tmp_path / "again") == checksums(tiny_dataset)
    generate_dataset(tiny_recipe(), tmp_path / "other-seed", seed=1)
    a, b = ShardedDataset(tiny_dataset)[0]["csi"], ShardedDataset(tmp_path / "other-seed")[0]["csi"]
    assert not np.allclose(a, b)


def test_resume_keeps_finished_shards(tiny_dataset, tmp_path):
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tiny_recipe(), out, seed=0, progress=killed)
    assert [p.name for p in sorted(out.glob("shard-*.h5"))] == ["shard-00000.h5"]
    assert not (out / MANIFEST).exists()
    first = (out / "shard-00000.h5").stat().st_mtime_ns
    # A stray temp file from a writer killed mid-shard is ignored and never becomes a shard.
    (out / ".shard-00001.h5.tmp-12345").write_bytes(b"partial")
    res = generate_dataset(tiny_recipe(), out, seed=0)
    assert (res.generated_shards, res.skipped_shards) == (2, 1)
    assert (out / "shard-00000.h5").stat().st_mtime_ns == first
    assert checksums(out) == checksums(tiny_dataset)
    verify_dataset(out)


def test_resume_replaces_a_corrupt_leftover(tiny_dataset, tmp_path):
    out = tmp_path / "corrupt"
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tiny_recipe(), out, seed=0, progress=killed)
    (out / "shard-00000.h5").write_bytes(b"garbage")  # e.g. a disk that lost the file's tail
    res = generate_dataset(tiny_recipe(), out, seed=0)
    assert res.generated_shards == 3
    assert checksums(out) == checksums(tiny_dataset)


def test_unknown_shards_are_not_adopted(tiny_dataset, tmp_path):
    out = tmp_path / "foreign"
    out.mkdir()
    (out / "shard-00000.h5").write_bytes((tiny_dataset / "shard-00000.h5").read_bytes())
    with pytest.raises(DataError, match="holds shards of unknown origin"):
        generate_dataset(tiny_recipe(), out, seed=0)


def test_refuses_to_mix_recipes(tiny_dataset, tmp_path):
    out = tmp_path / "mixed"
    generate_dataset(tiny_recipe(num_samples=16), out, seed=0)
    with pytest.raises(DataError, match="holds a dataset of another recipe or seed"):
        generate_dataset(tiny_recipe(num_samples=16, carrier_frequency_ghz=2.6), out, seed=0)
    with pytest.raises(DataError, match="another recipe or seed"):
        generate_dataset(tiny_recipe(num_samples=16), out, seed=5)
    # Growing the same recipe is a resume, not a mix.
    res = generate_dataset(tiny_recipe(num_samples=40), out, seed=0)
    assert res.skipped_shards == 1 and checksums(out) == checksums(tiny_dataset)


def run_wfm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wfm.cli", *args], capture_output=True, text=True)


def test_cli_generate_and_inspect(tmp_path):
    recipe = tmp_path / "small.yaml"
    recipe.write_text((RECIPES / "tdl-b-4p9-4x4-k32-t16.yaml").read_text())
    out = tmp_path / "small"
    r = run_wfm("data", "generate", "--recipe", str(recipe), "--out", str(out), "--num-samples", "20")
    assert r.returncode == 0, r.stderr
    assert "20 samples in 1 shards" in r.stdout
    r = run_wfm("data", "inspect", str(out), "--json", str(tmp_path / "summary.json"))
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["samples"] == 20 and summary["shape"] == [16, 16, 32] and summary["scenario"] == "TDL-B"


def test_cli_errors_are_one_line_and_nonzero(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: uma\nspeed: 3\n")
    r = run_wfm("data", "generate", "--recipe", str(bad), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "bad.yaml: unknown recipe key(s) speed" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_wfm("data", "inspect", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "dataset folder not found" in r.stderr
