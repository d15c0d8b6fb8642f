"""Atomic file IO and checksums, for every writer in the package (shards, manifests, results,
model exports, saved models).

- ``atomic_path(path)``: a temporary path next to ``path``, fsynced and renamed into place only
  when the block succeeds (readers see the old file or the new one, never a partial one);
- ``write_json_atomic(path, obj)``: indented JSON through ``atomic_path``;
- ``swap_folder_into_place(tmp, dest)``: a finished folder replaces ``dest`` as a whole;
- ``sha256_of(path)``: the hex sha256 of a file, read in chunks;
- ``os_error_in(e)`` / ``os_error_line(e)``: the OSError behind a failed write (a full disk, a
  read-only folder) as one line naming the file, for the shared error path of every command.

Temporaries are named ``.NAME.tmp-PID`` (``wfm.safety.remove_stale_temporaries`` clears those a
killed writer left).
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
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


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None``: Python's ``json`` would write
    them as ``NaN`` / ``Infinity``, which strict JSON readers (``jq``, JavaScript) reject."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented, strict JSON to ``path`` through ``atomic_path`` (a NaN or an
    infinity becomes ``null``: :func:`json_safe`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(json_safe(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def sha256_of(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of the file at ``path``, read ``chunk`` bytes at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------- OS errors as one line


#: errno values that say the machine, not wfm, refused a write: no space, no permission, I/O error.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                                errno.EIO})


def os_error_in(e: BaseException | None) -> OSError | None:
    """The ``OSError`` behind ``e``: ``e`` itself, or one in its chain of causes with an errno
    from :data:`ENVIRONMENT_ERRNOS` (h5py reports a full disk as an OSError, then raises a
    RuntimeError while closing the file). Any other exception is a bug: None."""
    seen: set[int] = set()
    first = e
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError) and (e is first or e.errno in ENVIRONMENT_ERRNOS):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def os_error_line(e: OSError) -> str:
    """``e`` as one line naming the file: h5py's messages hold the file and a multi-line dump."""
    text = " ".join(str(e.strerror or e).split())
    filename = e.filename
    if filename is None:
        m = re.search(r"filename = '([^']+)'", text)
        filename = m.group(1) if m else None
    if e.errno is not None and e.errno in ENVIRONMENT_ERRNOS and ("filename =" in text or not e.strerror):
        text = os.strerror(e.errno)  # h5py: "Can't write data (file write failed: time = ..., ...)"
    if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        text += " (disk full, quota or file-size limit reached)"
    if filename:  # name the file being written, not its temporary (wfm.io: .NAME.tmp-PID)
        filename = re.sub(r"(^|/)\.([^/]+)\.tmp-\d+$", r"\1\2", os.fsdecode(filename))
    return f"{filename}: {text}" if filename else text
