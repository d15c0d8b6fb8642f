"""The storage format: round trips, atomic writes and every kind of bad shard."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from wfm.data.errors import DataError
from wfm.data.shards import (MANIFEST, FieldSpec, ShardedDataset, merge_stats, field_stats, read_manifest,
                             verify_dataset, write_dataset, write_shard)

SPECS = {"csi": FieldSpec("complex64", (4, 2, 3)), "los": FieldSpec("bool", ()),
         "series": FieldSpec("float32", (-1, 2))}


def sample_shard(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    csi = (rng.normal(size=(n, 4, 2, 3)) + 1j * rng.normal(size=(n, 4, 2, 3))).astype(np.complex64)
    return {"csi": csi, "los": rng.random(n) > 0.5,
            "series": [rng.normal(size=(int(rng.integers(1, 9)), 2)).astype(np.float32) for _ in range(n)]}


@pytest.fixture
def dataset(tmp_path):
    shards = [sample_shard(5, 0), sample_shard(3, 1)]
    write_dataset(tmp_path / "ds", "toy", "csi", SPECS, shards, {"time_step": 1e-3})
    return tmp_path / "ds", shards


def test_round_trip_with_ragged_fields(dataset):
    root, shards = dataset
    ds = ShardedDataset(root)
    assert len(ds) == 8 and ds.name == "toy" and ds.attrs == {"time_step": 1e-3}
    flat_series = shards[0]["series"] + shards[1]["series"]
    for i in range(8):
        s = ds[i]
        shard, j = (0, i) if i < 5 else (1, i - 5)
        np.testing.assert_array_equal(s["csi"], shards[shard]["csi"][j])
        assert s["los"] == shards[shard]["los"][j]
        np.testing.assert_array_equal(s["series"], flat_series[i])
    # A range across the shard boundary reads both parts in order.
    block = ds.read_range(3, 7)
    np.testing.assert_array_equal(block["csi"], np.concatenate([shards[0]["csi"][3:], shards[1]["csi"][:2]]))
    assert [len(x) for x in block["series"]] == [len(x) for x in flat_series[3:7]]
    assert verify_dataset(root)["num_samples"] == 8


def test_stats_merge_matches_whole_data():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=1000) * 3 + 1 + 1j * rng.normal(size=1000)).astype(np.complex64)
    st = merge_stats([field_stats(x[:300]), field_stats(x[300:])])
    assert st["std"] == pytest.approx(np.std(x), rel=1e-5)
    assert complex(*st["mean"]) == pytest.approx(np.mean(x), rel=1e-5)
    r = rng.normal(size=500).astype(np.float32)
    st = merge_stats([field_stats(r[:100]), field_stats(r[100:])])
    assert st["mean"] == pytest.approx(r.mean(), abs=1e-6) and st["std"] == pytest.approx(r.std(), rel=1e-5)
    assert st["min"] == r.min() and st["max"] == r.max()


@pytest.mark.parametrize("breakage, message", [
    (lambda a: a.update(csi=a["csi"].astype(np.complex128)), "field 'csi' is complex128"),
    (lambda a: a.update(csi=a["csi"][:, :2]), r"field 'csi' is complex64\[2, 2, 3\]"),
    (lambda a: a["csi"].__setitem__((1, 0, 0, 0), np.nan), "NaN or Inf at index"),
    (lambda a: a["series"][2].__setitem__((0, 0), np.inf), "field 'series' sample 2: NaN or Inf"),
    (lambda a: a.update(los=a["los"][:3]), "field 'los' has 3 samples"),
    (lambda a: a.pop("los"), "fields .* differ from declared"),
])
def test_bad_samples_are_refused_and_nothing_is_written(tmp_path, breakage, message):
    arrays = sample_shard(5, 0)
    breakage(arrays)
    with pytest.raises(DataError, match=message):
        write_shard(tmp_path / "shard-00000.h5", arrays, SPECS)
    assert list(tmp_path.iterdir()) == []  # no half-written file, no temp file


def test_checksum_mismatch_is_detected(dataset):
    root, _ = dataset
    with h5py.File(root / "shard-00001.h5", "a") as f:
        f["csi"][0, 0, 0, 0] = 99
    with pytest.raises(DataError, match="shard-00001.h5: checksum mismatch"):
        verify_dataset(root)


def test_truncated_shard_is_detected(dataset):
    root, _ = dataset
    path = root / "shard-00000.h5"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="shard-00000.h5: checksum mismatch"):
        verify_dataset(root)
    # Reading (not verifying) a truncated file names the file too.
    with pytest.raises(DataError, match="shard-00000.h5: cannot open shard"):
        ShardedDataset(root)[0]


def test_manifest_disagreements(dataset):
    root, _ = dataset
    m = json.loads((root / MANIFEST).read_text())
    m["num_samples"] = 9
    (root / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(DataError, match="shard counts add up to 8, manifest says 9"):
        read_manifest(root)
    m["num_samples"] = 8
    m["schema_version"] = 99
    (root / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(DataError, match="schema version 99 is newer"):
        read_manifest(root)
    m["schema_version"] = 1
    m["fields"]["csi"]["shape"] = [4, 2, 5]
    (root / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(DataError, match=r"field 'csi' has shape \[5, 4, 2, 3\], expected \[5, 4, 2, 5\]"):
        verify_dataset(root)
    (root / MANIFEST).write_text("{not json")
    with pytest.raises(DataError, match="manifest is not valid JSON"):
        read_manifest(root)
    (root / MANIFEST).unlink()
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(root)


def test_missing_shard_and_nan_in_stored_data(dataset):
    root, _ = dataset
    with h5py.File(root / "shard-00000.h5", "a") as f:
        f["csi"][2, 1, 1, 1] = np.nan
    m = json.loads((root / MANIFEST).read_text())
    from wfm.io import sha256_of

    m["shards"][0]["sha256"] = sha256_of(root / "shard-00000.h5")  # checksum fine, values not
    (root / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(DataError, match="shard-00000.h5: field 'csi' rows 0..: NaN or Inf"):
        verify_dataset(root)
    (root / "shard-00001.h5").unlink()
    with pytest.raises(DataError, match="shard-00001.h5: shard listed in the manifest is missing"):
        ShardedDataset(root)
