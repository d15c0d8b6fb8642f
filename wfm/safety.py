"""What keeps hostile or broken inputs from doing harm: one safe checkpoint loader, a YAML
loader without aliases, an exclusive lock on output folders, workers that die with their
parent, and argument types that refuse out-of-range values.

* :func:`load_checkpoint` is the one way ``wfm`` reads a ``.ckpt``: ``torch.load`` with
  ``weights_only=True`` (nothing is unpickled), for local files and, only when downloads are
  allowed (``WFM_ALLOW_DOWNLOADS=1``), for URLs. Downloads land in a cache keyed by the full
  URL and the sha256 of their content, never by file name alone.
* :class:`SafeCheckpointIO` makes Lightning's resume (``--ckpt_path``) go through it.
* :func:`safe_yaml_load` refuses anchors and aliases (no "billion laughs") and oversized text.
* :class:`FolderLock` is an exclusive ``flock`` on a folder being written; a second writer
  gets a one-line error instead of deleting the first one's files.
* :func:`die_with_parent` is a process-pool initializer: a worker whose parent is gone exits.

Standard library only at import time (``wfm --help`` stays fast).
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import math
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from wfm.io import sha256_of

ALLOW_DOWNLOADS_ENV = "WFM_ALLOW_DOWNLOADS"
DOWNLOAD_CACHE = Path("~/.cache/wfm/downloads")
MAX_YAML_BYTES = 4 << 20
LOCK_NAME = ".wfm.lock"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: The URL each file :func:`download` returned came from, so errors about it name the source.
_DOWNLOADED_FROM: dict[str, str] = {}


class CheckpointError(ValueError):
    """A checkpoint or exported model that cannot be exported or loaded (message says why).

    Defined here, beside the one checkpoint loader, and re-exported by ``wfm.hub``."""


class InputError(ValueError):
    """A value or file given by the user that ``wfm`` refuses (one line, exit 2)."""


# ---------------------------------------------------------------------------- checkpoints


def is_url(source: Any) -> bool:
    return isinstance(source, str) and bool(_URL.match(source))


def downloads_allowed() -> bool:
    return os.environ.get(ALLOW_DOWNLOADS_ENV, "").strip().lower() in ("1", "true", "yes")


def _one_line(e: BaseException) -> str:
    """The first line of ``e``'s message, without terminal colour codes."""
    s = _ANSI.sub("", str(e)).strip()
    return s.splitlines()[0].strip() if s else type(e).__name__


def _unpickling_refused(e: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in one line: the unpickler's own
    reason (``Unsupported global: GLOBAL io.open ...``) rather than the first line of torch's
    message (a generic preamble, with colour codes, about how to load it unsafely)."""
    s = _ANSI.sub("", str(e))
    m = re.search(r"WeightsUnpickler error:\s*([^\n]+)", s)
    if not m:
        return _one_line(e)
    reason = m.group(1).strip()
    # Drop torch's advice to allowlist the global (that is how a payload would get through).
    return reason.split(" Please use `torch.serialization.add_safe_globals", 1)[0].strip()


def download(url: str, *, sha256: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """Fetch ``url`` into the download cache and return the local file.

    The cache entry is named by the sha256 of the full URL *and* of the content, so two URLs
    that end in the same file name never share an entry. With ``sha256`` (or a
    ``#sha256=<hex>`` fragment) a cached copy is reused and a download that does not match is
    refused; without it the URL is fetched every time.
    """

    if not downloads_allowed():
        raise CheckpointError(f"{url}: refusing to download a checkpoint; set {ALLOW_DOWNLOADS_ENV}=1 to "
                              "allow downloads, or download it yourself and pass the local file")
    base, _, frag = url.partition("#")
    if frag.startswith("sha256="):
        sha256 = frag.split("=", 1)[1]
    if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise CheckpointError(f"{url}: expected sha256 must be 64 lowercase hex digits")
    cache = Path(cache_dir or DOWNLOAD_CACHE).expanduser()
    key = hashlib.sha256(base.encode()).hexdigest()[:32]
    if sha256 is not None:
        cached = cache / f"{key}-{sha256}.ckpt"
        if cached.is_file() and sha256_of(cached) == sha256:
            _DOWNLOADED_FROM[str(cached)] = url
            return cached
    import urllib.request

    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{key}.tmp-{os.getpid()}"
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(base, timeout=60) as r, open(tmp, "wb") as f:  # noqa: S310
            while block := r.read(1 << 20):
                h.update(block)
                f.write(block)
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256:
            raise CheckpointError(f"{url}: sha256 mismatch: expected {sha256[:16]}..., got {digest[:16]}...")
        final = cache / f"{key}-{digest}.ckpt"
        os.replace(tmp, final)
        _DOWNLOADED_FROM[str(final)] = url
        return final
    except CheckpointError:
        raise
    except Exception as e:  # network, HTTP status, disk
        raise CheckpointError(f"{url}: download failed ({type(e).__name__}: {_one_line(e)})") from None
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(source: str | Path, map_location: Any = "cpu") -> Any:
    """Read a checkpoint with ``torch.load(weights_only=True)``; a URL only when downloads are allowed.

    Raises :class:`wfm.hub.CheckpointError` with one line naming the file, and for a download
    the URL it came from (first) and the cached copy (last); no terminal colour codes.
    """
    import torch

    if is_url(str(source)):
        source = download(str(source))
    path = Path(source)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    url = _DOWNLOADED_FROM.get(str(path))
    name, cached = (url, f" (downloaded to {path})") if url else (str(path), "")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):  # torch.save's zip, or a legacy pickle
        raise CheckpointError(f"{name}: not a PyTorch checkpoint (a .ckpt or .pt file written by torch.save, "
                              f"such as a wfm pretrain run's last.ckpt; an exported model is its folder){cached}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # unpickling refused, truncated zip, not a checkpoint at all
        raise CheckpointError(f"{name}: cannot read checkpoint safely (weights_only): "
                              f"{_unpickling_refused(e)}{cached}") from None


def safe_checkpoint_io():
    """A Lightning ``CheckpointIO`` whose loads go through :func:`load_checkpoint`."""
    from pytorch_lightning.plugins.io import TorchCheckpointIO

    class SafeCheckpointIO(TorchCheckpointIO):
        def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: Any = None) -> dict:
            return load_checkpoint(path, map_location if map_location is not None else "cpu")

    return SafeCheckpointIO()


def install_safe_checkpoint_io(trainer: Any) -> None:
    """Make every checkpoint load of ``trainer`` (resume, ``ckpt_path``) weights-only."""
    strategy = trainer.strategy
    io = strategy.checkpoint_io
    if type(io).__name__ == "SafeCheckpointIO":
        return
    from pytorch_lightning.plugins.io import TorchCheckpointIO

    if type(io) is TorchCheckpointIO:
        strategy.checkpoint_io = safe_checkpoint_io()
        return
    # A wrapper (async saving) or another IO: keep it, but route its loads.
    target = getattr(io, "checkpoint_io", None) or io
    target.load_checkpoint = lambda path, map_location=None, weights_only=None: load_checkpoint(
        path, map_location if map_location is not None else "cpu")


def resolve_ckpt_path(ckpt_path: Any) -> Any:
    """A ``--ckpt_path`` as a local path: URLs are downloaded (only when allowed) and verified."""
    if ckpt_path is None or not is_url(str(ckpt_path)):
        return ckpt_path
    return str(download(str(ckpt_path)))


# ---------------------------------------------------------------------------- YAML


def _no_alias_loader():
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):  # type: ignore[override]
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.YAMLError(f"YAML aliases (*{event.anchor}) are not allowed "
                                     f"(line {event.start_mark.line + 1})")
            return super().compose_node(parent, index)

    return NoAliasLoader


def safe_yaml_load(text: str | bytes, source: str = "<yaml>") -> Any:
    """``yaml.safe_load`` without anchors/aliases and of at most :data:`MAX_YAML_BYTES`.

    Raises :class:`InputError` naming ``source``.
    """
    import yaml

    if len(text) > MAX_YAML_BYTES:
        raise InputError(f"{source}: YAML larger than {MAX_YAML_BYTES >> 20} MiB")
    try:
        return yaml.load(text, Loader=_no_alias_loader())  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as e:
        raise InputError(f"{source}: not valid YAML ({' '.join(str(e).split())})") from None
    except RecursionError:
        raise InputError(f"{source}: YAML nested too deeply") from None


def check_yaml_file(path: str | Path) -> Any:
    """Read and parse a YAML file with :func:`safe_yaml_load` (InputError when unreadable)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise InputError(f"{path}: YAML larger than {MAX_YAML_BYTES >> 20} MiB")
        text = path.read_text()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    return safe_yaml_load(text, str(path))


# ---------------------------------------------------------------------------- locks


class FolderLock:
    """An exclusive, non-blocking ``flock`` on ``folder/.wfm.lock`` while a command writes there.

    The lock goes away with the process (also on ``kill -9``). A second writer raises
    :class:`wfm.data.errors.DataError` naming the folder and the holder's pid.
    """

    def __init__(self, folder: str | Path, what: str = "written"):
        self.folder = Path(folder)
        self.what = what
        self._fd: int | None = None

    def __enter__(self) -> "FolderLock":
        import fcntl

        from wfm.data.errors import DataError

        path = self.folder / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise DataError(f"{self.folder}: is being {self.what} by another process (pid {holder}); "
                                "wait for it to finish or choose another folder") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock; the file stays (removing it would race)
            self._fd = None


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete ``.NAME.tmp-PID`` files a killed writer left behind (call with the folder locked)."""
    removed = []
    for p in Path(folder).glob(".*.tmp-*"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


# ---------------------------------------------------------------------------- workers


def die_with_parent(poll_seconds: float = 0.5) -> None:
    """Process-pool initializer: exit this worker as soon as its parent process is gone.

    On Linux the kernel is asked to kill it (``PR_SET_PDEATHSIG``); a watchdog thread that
    notices the parent's pid change covers the rest (and the race before the ``prctl``). The
    parent is the process that started this one (``multiprocessing.parent_process()``), not
    whatever ``getppid()`` says when the initializer runs: a spawned worker imports for seconds
    first, and a parent killed meanwhile would leave it reparented and watching the wrong pid.
    """
    import multiprocessing

    started_by = multiprocessing.parent_process()
    parent = started_by.pid if started_by is not None and started_by.pid else os.getppid()
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux
        pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="wfm-die-with-parent", daemon=True).start()


# ---------------------------------------------------------------------------- argument types


def _number(text: str, kind: type) -> Any:
    try:
        v = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def positive_int(text: str) -> int:
    v = _number(text, int)
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be >= 1")
    return v


def non_negative_int(text: str) -> int:
    v = _number(text, int)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{v} must be >= 0")
    return v


def seed_int(text: str) -> int:
    v = non_negative_int(text)
    if v >= 2**32:
        raise argparse.ArgumentTypeError(f"{v} must be < 2**32")
    return v


def positive_float(text: str) -> float:
    v = _number(text, float)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{v:g} must be > 0")
    return v


def device_name(text: str) -> str:
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not cpu, cuda or cuda:N")
    return text


def strict_int(value: Any, what: str) -> int:
    """``value`` as an int, refusing bools, fractions (32.7) and non-numbers."""
    if isinstance(value, bool):
        raise InputError(f"{what} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise InputError(f"{what} must be an integer, got {value!r}")


def binary_scale(peak: "torch.Tensor", low: float, high: float = math.inf, target: int = 0) -> "torch.Tensor":
    """A power of two for each ``peak`` (a row's or a window's largest magnitude) outside ``[low,
    high]`` that brings it into ``[2^target, 2^(target + 1))``, else 1 (as for a zero peak).
    Dividing by it and multiplying back is exact in floating point, so a model that is
    scale-equivariant by design gives the same answer as at a unit scale, while its numerical
    floors (variances clamped at 1e-12, squared errors in float32) never meet data at 1e-15 watts
    or in raw counts of 1e12."""
    import torch

    peak = peak.double()
    far = (peak > 0) & ((peak < low) | (peak > high)) & torch.isfinite(peak)
    exponent = torch.where(far, torch.floor(torch.log2(peak.clamp_min(1e-300))) - target, torch.zeros_like(peak))
    return torch.pow(2.0, exponent)


def as_tensor(value: Any, what: str) -> "torch.Tensor":
    """``value`` (a tensor, a NumPy array or a nested list of numbers) as a tensor, without a copy
    where it can; anything else (strings, objects, ragged lists) is refused with ``what`` named."""
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        return value
    try:
        arr = np.asarray(value)
    except ValueError as e:  # ragged nested lists
        raise InputError(f"{what} must be a tensor or an array of numbers: {_one_line(e)}") from None
    if arr.dtype.kind not in "biufc":
        raise InputError(f"{what} must be a tensor or an array of numbers, got {type(value).__name__} of "
                         f"dtype {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr))
