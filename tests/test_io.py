"""wfm.io: the package's one atomic-write / sha256 helper module."""

from __future__ import annotations

import hashlib
import json

import pytest

import wfm.console
import wfm.data.generate
import wfm.data.shards
import wfm.safety
from wfm import io


def test_atomic_path_replaces_on_success_and_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    with io.atomic_path(path) as tmp:
        assert tmp.parent == path.parent and tmp.name.startswith(".a.txt.tmp-")
        tmp.write_text("new")
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    io.write_json_atomic(path, {"x": [1, 2]})
    assert json.loads(path.read_text()) == {"x": [1, 2]} and path.read_text().endswith("\n")


def test_swap_folder_replaces_the_whole_folder(tmp_path):
    dest, tmp = tmp_path / "model", tmp_path / ".model.tmp"
    dest.mkdir()
    (dest / "stale.bin").write_bytes(b"x")
    tmp.mkdir()
    (tmp / "weights.bin").write_bytes(b"y")
    io.swap_folder_into_place(tmp, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["weights.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no tmp or old folder left


def test_sha256_of_reads_in_chunks(tmp_path):
    data = bytes(range(256)) * 41
    (tmp_path / "f").write_bytes(data)
    assert io.sha256_of(tmp_path / "f", chunk=100) == io.sha256_of(str(tmp_path / "f")) == hashlib.sha256(data).hexdigest()


def test_every_writer_uses_these_helpers():
    assert wfm.data.shards.atomic_path is io.atomic_path and wfm.data.shards.sha256_of is io.sha256_of
    assert wfm.data.generate.write_json_atomic is io.write_json_atomic is wfm.console.write_json_atomic
    assert wfm.safety.sha256_of is io.sha256_of
    assert not hasattr(wfm.safety, "sha256_file")


def test_results_json_is_strict_json(tmp_path):
    """A NaN or an infinity in a result (a ratio over an exact baseline) is written as null, so
    that strict readers (jq, JavaScript) read every results file; nothing else changes."""
    obj = {"a": float("nan"), "b": [1.5, float("inf"), -float("inf")], "c": {"d": (2, float("nan"))}, "e": "x", "f": None}
    path = tmp_path / "r.json"
    wfm.console.write_json(path, obj)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    strict = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict constant {c}"))
    assert strict == {"a": None, "b": [1.5, None, None], "c": {"d": [2, None]}, "e": "x", "f": None}
