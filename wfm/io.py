"""Atomic file IO and checksums, for every writer in the package (shards, manifests, results,
model exports, saved models).

- ``atomic_path(path)``: a temporary path next to ``path``, fsynced and renamed into place only
  when the block succeeds (readers see the old file or the new one, never a partial one);
- ``write_json_atomic(path, obj)``: indented JSON through ``atomic_path``;
- ``swap_folder_into_place(tmp, dest)``: a finished folder replaces ``dest`` as a whole;
- ``sha256_of(path)``: the hex sha256 of a file, read in chunks.

Temporaries are named ``.NAME.tmp-PID`` (``wfm.safety.remove_stale_temporaries`` clears those a
killed writer left).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it into place only on success."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def swap_folder_into_place(tmp: Path, dest: Path) -> None:
    """Rename the finished folder ``tmp`` to ``dest``, replacing an existing ``dest`` as a whole
    (the old one is moved aside first and removed after), so readers never see a mix."""
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` through ``atomic_path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_of(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of the file at ``path``, read ``chunk`` bytes at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
