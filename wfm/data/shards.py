"""HDF5 shards and the JSON manifest: the one storage format of every wfm dataset.

A dataset is a folder::

    manifest.json        schema version, recipe, fields, shards (+ sha256), statistics
    shard-00000.h5       one HDF5 file per shard: one dataset per field, samples along axis 0
    shard-00001.h5
    ...

Every sample of a dataset has the same *fields* (``csi``, ``los``, ``values``...), each
with a fixed dtype and per-sample shape. A field whose first per-sample dimension is
``-1`` is *ragged* (series of different lengths): it is stored flat, with an
``<name>.offsets`` dataset of ``n + 1`` row offsets.

Files are written to a temporary name and renamed into place, so a killed writer never
leaves a half-written shard or manifest behind.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from wfm import __version__, safety
from wfm.data.errors import DataError
from wfm.io import atomic_path, sha256_of, write_json_atomic

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
#: dtypes a field may have (a manifest naming another is refused before anything is read).
ALLOWED_DTYPES = ("bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                  "float16", "float32", "float64", "complex64", "complex128")
MAX_MANIFEST_BYTES = 64 << 20
MAX_SAMPLE_BYTES = 1 << 30


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.h5"


@dataclass(frozen=True)
class FieldSpec:
    """dtype and per-sample shape of one field; ``shape[0] == -1`` marks a ragged field."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def ragged(self) -> bool:
        return len(self.shape) > 0 and self.shape[0] == -1

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape)}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "FieldSpec":
        return FieldSpec(str(d["dtype"]), tuple(int(x) for x in d["shape"]))


# ---------------------------------------------------------------------------- statistics


def field_stats(x: np.ndarray) -> dict[str, Any]:
    """Sufficient statistics of one field over a shard, mergeable across shards.

    Complex fields keep the complex mean and the mean power, from which the
    normaliser ``std = sqrt(E|x|^2 - |E x|^2)`` follows; real fields keep sum, sum of
    squares, min and max.
    """
    x = np.asarray(x)
    n = int(x.size)
    if np.iscomplexobj(x):
        x128 = x.astype(np.complex128, copy=False)
        s = x128.sum()
        return {"count": n, "sum": [float(s.real), float(s.imag)],
                "sum_sq": float(np.sum(x128.real**2 + x128.imag**2))}
    xf = x.astype(np.float64, copy=False)
    return {"count": n, "sum": float(xf.sum()), "sum_sq": float(np.sum(xf * xf)),
            "min": float(xf.min()) if n else None, "max": float(xf.max()) if n else None}


def merge_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge per-shard statistics and add mean/std."""
    n = sum(p["count"] for p in parts)
    if n == 0:
        return {"count": 0}
    sum_sq = sum(p["sum_sq"] for p in parts)
    if isinstance(parts[0]["sum"], list):
        s = complex(sum(p["sum"][0] for p in parts), sum(p["sum"][1] for p in parts))
        mean = s / n
        power = sum_sq / n
        return {"count": n, "mean": [mean.real, mean.imag], "power": power,
                "std": float(np.sqrt(max(power - abs(mean) ** 2, 0.0)))}
    mean = sum(p["sum"] for p in parts) / n
    mins = [p["min"] for p in parts if p.get("min") is not None]
    maxs = [p["max"] for p in parts if p.get("max") is not None]
    return {"count": n, "mean": mean, "std": float(np.sqrt(max(sum_sq / n - mean**2, 0.0))),
            "min": min(mins) if mins else None, "max": max(maxs) if maxs else None}


# ---------------------------------------------------------------------------- shards


def check_fields(arrays: Mapping[str, Any], specs: Mapping[str, FieldSpec], where: str) -> int:
    """Check arrays against their specs (names, dtypes, shapes, finiteness); return n."""
    if set(arrays) != set(specs):
        raise DataError(f"{where}: fields {sorted(arrays)} differ from declared {sorted(specs)}")
    n = None
    for name, spec in specs.items():
        a = arrays[name]
        if spec.ragged:
            rows = list(a)
            count = len(rows)
            for i, r in enumerate(rows):
                r = np.asarray(r)
                if r.dtype != np.dtype(spec.dtype) or r.shape[1:] != spec.shape[1:]:
                    raise DataError(f"{where}: field {name!r} sample {i} has {r.dtype}{list(r.shape)}, "
                                    f"expected {spec.dtype}[n, {', '.join(map(str, spec.shape[1:]))}]")
                _check_finite(r, f"{where}: field {name!r} sample {i}")
        else:
            a = np.asarray(a)
            count = a.shape[0] if a.ndim else -1
            if a.dtype != np.dtype(spec.dtype) or a.shape[1:] != spec.shape:
                raise DataError(f"{where}: field {name!r} is {a.dtype}{list(a.shape[1:])} per sample, "
                                f"expected {spec.dtype}{list(spec.shape)}")
            _check_finite(a, f"{where}: field {name!r}")
        if n is None:
            n = count
        elif count != n:
            raise DataError(f"{where}: field {name!r} has {count} samples, others have {n}")
    return n or 0


def _check_finite(a: np.ndarray, where: str) -> None:
    if a.dtype.kind in "fc" and not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))[0]
        raise DataError(f"{where}: NaN or Inf at index {bad.tolist()}")


def write_shard(path: Path, arrays: Mapping[str, Any], specs: Mapping[str, FieldSpec],
                attrs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate and write one shard atomically. Returns its manifest entry."""
    n = check_fields(arrays, specs, str(path))
    stats = {}
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["num_samples"] = n
            for key, value in (attrs or {}).items():
                f.attrs[key] = json.dumps(value)
            for name, spec in specs.items():
                if spec.ragged:
                    rows = [np.asarray(r) for r in arrays[name]]
                    lengths = np.array([len(r) for r in rows], dtype=np.int64)
                    flat = (np.concatenate(rows) if rows else
                            np.zeros((0, *spec.shape[1:]), dtype=spec.dtype))
                    f.create_dataset(name, data=flat)
                    f.create_dataset(f"{name}.offsets", data=np.concatenate([[0], np.cumsum(lengths)]))
                    stats[name] = field_stats(flat)
                else:
                    # Contiguous layout (no chunks, no compression): a block of samples is
                    # one sequential read, which is what keeps a reader ahead of a GPU.
                    a = np.ascontiguousarray(arrays[name])
                    f.create_dataset(name, data=a)
                    stats[name] = field_stats(a)
    return {"file": path.name, "num_samples": n, "sha256": sha256_of(path), "stats": stats}


class ShardReader:
    """Reads samples from one shard; opens the file lazily so it is safe across fork."""

    def __init__(self, path: Path, specs: Mapping[str, FieldSpec], num_samples: int):
        self.path = Path(path)
        self.specs = dict(specs)
        self.num_samples = num_samples
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._offsets: dict[str, np.ndarray] = {}

    def _open(self) -> h5py.File:
        # A handle inherited through fork is unsafe: each process opens its own.
        if self._file is None or self._pid != os.getpid():
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as e:
                raise DataError(f"{self.path}: cannot open shard ({e})") from None
            check_plain_storage(self._file, self.path)
            self._pid = os.getpid()
            self._offsets = {name: self._file[f"{name}.offsets"][()]
                             for name, spec in self.specs.items() if spec.ragged}
        return self._file

    def read(self, start: int, stop: int, fields: list[str] | None = None) -> dict[str, Any]:
        """Samples ``start:stop`` of this shard as one contiguous block read per field."""
        f = self._open()
        out: dict[str, Any] = {}
        for name in fields or list(self.specs):
            try:
                if self.specs[name].ragged:
                    off = self._offsets[name]
                    flat = f[name][off[start]:off[stop]]
                    out[name] = [flat[a - off[start]:b - off[start]]
                                 for a, b in zip(off[start:stop], off[start + 1:stop + 1])]
                else:
                    spec = self.specs[name]
                    out[name] = self.read_into(name, start, stop,
                                               np.empty((stop - start, *spec.shape), dtype=spec.dtype))
            except (OSError, KeyError) as e:
                raise DataError(f"{self.path}: cannot read field {name!r} ({e})") from None
        return out

    def read_into(self, name: str, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Read samples ``start:stop`` of a fixed-shape field straight into ``out`` (no copy)."""
        if stop > start:
            try:
                self._open()[name].read_direct(out, np.s_[start:stop])
            except (OSError, KeyError, TypeError) as e:
                raise DataError(f"{self.path}: cannot read field {name!r} ({e})") from None
        return out

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        return state


# ---------------------------------------------------------------------------- datasets


def build_manifest(name: str, kind: str, specs: Mapping[str, FieldSpec], shards: list[dict[str, Any]],
                   attrs: Mapping[str, Any], recipe: Mapping[str, Any] | None = None,
                   seed: int | None = None) -> dict[str, Any]:
    """The manifest of a finished dataset: shards in order, statistics merged."""
    stats = {f: merge_stats([s["stats"][f] for s in shards]) for f in specs}
    if not _all_finite(stats):  # never write NaN statistics: every batch would be normalised to NaN
        bad = [f for f, st in stats.items() if not _all_finite(st)]
        raise DataError(f"{name}: statistics of field(s) {', '.join(bad)} are NaN or Inf; "
                        "a shard holds non-finite values")
    return {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "kind": kind,
        "created_by": f"wfm {__version__}",
        "recipe": dict(recipe) if recipe is not None else None,
        "seed": seed,
        "attrs": dict(attrs),
        "fields": {k: v.to_dict() for k, v in specs.items()},
        "num_samples": sum(s["num_samples"] for s in shards),
        "shards": [{k: s[k] for k in ("file", "num_samples", "sha256")} for s in shards],
        "stats": stats,
    }


_TEMPORARY = re.compile(r"^\..+\.tmp-\d+$")


def left_by_a_failed_write(p: Path) -> bool:
    """The folder lock, or a temporary file of a writer that died (removed under the lock)."""
    return p.name == safety.LOCK_NAME or (_TEMPORARY.match(p.name) is not None and p.is_file())


def check_empty_output(out: Path) -> None:
    """Refuse an output folder that holds data: it must be new or empty, so a dataset never mixes
    with earlier files. What a failed or killed write leaves (the lock file, ``.NAME.tmp-PID``
    temporaries) does not count. Authoritative only with the folder locked (see :func:`write_dataset`)."""
    if out.exists() and (not out.is_dir() or not all(left_by_a_failed_write(p) for p in out.iterdir())):
        raise DataError(f"{out}: output folder exists and is not empty; choose a new folder")


def write_dataset(out_dir: str | Path, name: str, kind: str, specs: Mapping[str, FieldSpec],
                  shards: list[Mapping[str, Any]], attrs: Mapping[str, Any],
                  recipe: Mapping[str, Any] | None = None) -> Path:
    """Write in-memory shards (each a dict of field arrays) as a new dataset folder.

    For data that fits in memory (imports of measured data, small test sets); generation
    at scale writes shard by shard through :mod:`wfm.data.generate`. ``out_dir`` must be new
    or empty (:func:`check_empty_output`); that is checked with the folder locked, so a writer
    that finished just before this one took the lock is refused, never written over.
    """
    out = Path(out_dir)
    check_empty_output(out)  # early, before creating anything; checked again under the lock
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{out}: cannot create the output folder ({e.strerror})") from None
    with safety.FolderLock(out, "written"):
        check_empty_output(out)  # the check that counts: no other writer can add files now
        safety.remove_stale_temporaries(out)
        entries = [write_shard(out / shard_name(i), arrays, specs) for i, arrays in enumerate(shards)]
        write_json_atomic(out / MANIFEST, build_manifest(name, kind, specs, entries, attrs, recipe))
    return out


class ShardedDataset:
    """A dataset folder opened for reading: manifest checked, samples by global index."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self.specs = {k: FieldSpec.from_dict(v) for k, v in self.manifest["fields"].items()}
        self.readers = [ShardReader(self.root / s["file"], self.specs, int(s["num_samples"]))
                        for s in self.manifest["shards"]]
        self.offsets = np.concatenate([[0], np.cumsum([r.num_samples for r in self.readers])]).astype(np.int64)
        for s in self.manifest["shards"]:
            if not (self.root / s["file"]).is_file():
                raise DataError(f"{self.root / s['file']}: shard listed in the manifest is missing")

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def attrs(self) -> dict[str, Any]:
        return self.manifest["attrs"]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """(shard, index within shard) of a global sample index."""
        if not 0 <= index < len(self):
            raise IndexError(f"{self.root}: sample {index} out of range 0..{len(self) - 1}")
        shard = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return shard, int(index - self.offsets[shard])

    def read_range(self, start: int, stop: int, fields: list[str] | None = None) -> dict[str, Any]:
        """Samples ``start:stop`` (global), reading each shard's part as one block."""
        parts = []
        while start < stop:
            shard, local = self.locate(start)
            take = min(stop - start, self.readers[shard].num_samples - local)
            parts.append(self.readers[shard].read(local, local + take, fields))
            start += take
        if len(parts) == 1:
            return parts[0]
        return {k: (sum((p[k] for p in parts), []) if self.specs[k].ragged
                    else np.concatenate([p[k] for p in parts])) for k in parts[0]}

    def read_into(self, name: str, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Samples ``start:stop`` (global) of a fixed-shape field, read straight into ``out``."""
        pos = 0
        while start < stop:
            shard, local = self.locate(start)
            take = min(stop - start, self.readers[shard].num_samples - local)
            self.readers[shard].read_into(name, local, local + take, out[pos:pos + take])
            start, pos = start + take, pos + take
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        shard, local = self.locate(index)
        block = self.readers[shard].read(local, local + 1)
        return {k: v[0] for k, v in block.items()}

    def close(self) -> None:
        for r in self.readers:
            r.close()


def read_manifest(root: str | Path) -> dict[str, Any]:
    """Load and sanity-check a dataset's manifest (not the shards: see ``verify_dataset``)."""
    path = Path(root) / MANIFEST
    if not Path(root).is_dir():
        raise DataError(f"{root}: " + ("a file, not a dataset folder (measured data becomes one with `wfm data import`)"
                                       if Path(root).is_file() else "dataset folder not found"))
    if not path.is_file():
        raise DataError(f"{path}: manifest not found (an unfinished generation run? re-run it to resume)")
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise DataError(f"{path}: manifest larger than {MAX_MANIFEST_BYTES >> 20} MiB")
        m = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: manifest is not valid JSON ({e})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: manifest is not UTF-8 text") from None
    except RecursionError:
        raise DataError(f"{path}: manifest nested too deeply") from None
    if not isinstance(m, dict):
        raise DataError(f"{path}: manifest must be a JSON object")
    for key in ("schema_version", "name", "kind", "fields", "shards", "num_samples"):
        if key not in m:
            raise DataError(f"{path}: manifest lacks {key!r}")
    _check_manifest_values(m, path)
    if int(m["schema_version"]) > SCHEMA_VERSION:
        raise DataError(f"{path}: schema version {m['schema_version']} is newer than this wfm "
                        f"understands ({SCHEMA_VERSION}); upgrade wfm")
    if sum(int(s["num_samples"]) for s in m["shards"]) != int(m["num_samples"]):
        raise DataError(f"{path}: shard counts add up to "
                        f"{sum(int(s['num_samples']) for s in m['shards'])}, manifest says {m['num_samples']}")
    return m


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_manifest_values(m: dict[str, Any], path: Path) -> None:
    """Types and ranges of every manifest value a reader relies on (one-line DataError)."""
    def bad(msg: str) -> DataError:
        return DataError(f"{path}: {msg}")

    if not _is_int(m["schema_version"]) or m["schema_version"] < 1:
        raise bad(f"schema_version {m['schema_version']!r} is not a positive integer")
    if not _is_int(m["num_samples"]) or m["num_samples"] < 0:
        raise bad(f"num_samples {m['num_samples']!r} is not an integer >= 0")
    if not isinstance(m["fields"], dict) or not m["fields"]:
        raise bad("fields must be a non-empty object")
    for name, f in m["fields"].items():
        if not isinstance(f, dict) or "dtype" not in f or "shape" not in f:
            raise bad(f"field {name!r} needs dtype and shape")
        if f["dtype"] not in ALLOWED_DTYPES:
            raise bad(f"field {name!r} has dtype {f['dtype']!r}; allowed: {', '.join(ALLOWED_DTYPES)}")
        shape = f["shape"]
        if (not isinstance(shape, list) or len(shape) > 8 or not all(_is_int(d) for d in shape)
                or any(d < 1 for d in shape[1:]) or (shape and shape[0] < 1 and shape[0] != -1)):
            raise bad(f"field {name!r} has an invalid shape {shape!r}")
        per_sample = int(np.prod([abs(d) for d in shape], dtype=np.float64)) * np.dtype(f["dtype"]).itemsize
        if per_sample > MAX_SAMPLE_BYTES:
            raise bad(f"field {name!r}: {per_sample} bytes per sample exceeds {MAX_SAMPLE_BYTES >> 20} MiB")
    if not isinstance(m["shards"], list):
        raise bad("shards must be a list")
    for i, e in enumerate(m["shards"]):
        if not isinstance(e, dict):
            raise bad(f"shard entry {i} is not an object")
        f = e.get("file")
        if not isinstance(f, str) or not f or "/" in f or "\\" in f or f.startswith("."):
            raise bad(f"shard entry {i}: file {f!r} must be a plain file name in the dataset folder")
        if not _is_int(e.get("num_samples")) or e["num_samples"] < 0:
            raise bad(f"shard entry {i}: num_samples {e.get('num_samples')!r} is not an integer >= 0")
        sha = e.get("sha256")
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise bad(f"shard entry {i} ({f}): sha256 missing or not 64 hex digits")
    stats = m.get("stats", {})
    if not isinstance(stats, dict):
        raise bad("stats must be an object")
    if not _all_finite(stats):
        raise bad("statistics contain NaN or Inf (regenerate the dataset)")


def _all_finite(x: Any) -> bool:
    if isinstance(x, dict):
        return all(_all_finite(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return all(_all_finite(v) for v in x)
    if isinstance(x, float):
        return math.isfinite(x)
    return True


def check_plain_storage(f: h5py.File, path: Path) -> None:
    """Refuse what the sha256 of the shard does not cover: external raw storage, virtual
    datasets, soft and external links (their data lives, or can change, outside the file)."""
    for name in f:
        link = f.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise DataError(f"{path}: {name!r} is a {type(link).__name__}; shards must hold their data themselves")
        d = f[name]
        if not isinstance(d, h5py.Dataset):
            raise DataError(f"{path}: {name!r} is not a dataset")
        if d.external or d.is_virtual:
            raise DataError(f"{path}: field {name!r} uses external or virtual storage, which the checksum "
                            "does not cover; refusing it")


def verify_dataset(root: str | Path, progress: Any = None) -> dict[str, Any]:
    """Check every shard against the manifest: checksum, sample count, dtypes, shapes, NaN/Inf.

    Raises :class:`DataError` naming the first bad file; returns a summary otherwise.
    ``progress`` is an optional callable advanced once per shard.
    """
    ds = ShardedDataset(root)
    for entry, reader in zip(ds.manifest["shards"], ds.readers):
        path = reader.path
        digest = sha256_of(path)
        if digest != entry["sha256"]:
            raise DataError(f"{path}: checksum mismatch (corrupt or replaced shard)")
        try:
            with h5py.File(path, "r") as f:
                check_plain_storage(f, path)
                n = int(f.attrs.get("num_samples", -1))
                if n != int(entry["num_samples"]):
                    raise DataError(f"{path}: holds {n} samples, manifest says {entry['num_samples']}")
                for name, spec in ds.specs.items():
                    if name not in f:
                        raise DataError(f"{path}: field {name!r} missing")
                    d = f[name]
                    if d.dtype != np.dtype(spec.dtype):
                        raise DataError(f"{path}: field {name!r} is {d.dtype}, manifest says {spec.dtype}")
                    if not spec.ragged and (d.shape[0] != n or d.shape[1:] != spec.shape):
                        raise DataError(f"{path}: field {name!r} has shape {list(d.shape)}, "
                                        f"expected [{n}, {', '.join(map(str, spec.shape))}]")
                    # Scan in blocks so a large shard never has to fit in memory.
                    step = max(1, (64 << 20) // max(1, d[:1].nbytes))
                    for a in range(0, d.shape[0], step):
                        _check_finite(d[a:a + step], f"{path}: field {name!r} rows {a}..")
        except OSError as e:
            raise DataError(f"{path}: not a readable HDF5 shard ({e})") from None
        if progress is not None:
            progress()
    ds.close()
    return {"name": ds.name, "num_samples": len(ds), "num_shards": len(ds.readers)}
