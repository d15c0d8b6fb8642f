"""Hugging Face ``datasets`` (Arrow / Parquet) export and import, local files only.

Export writes one row per sample. Arrow has no complex type, so a complex field ``f``
becomes two columns ``f.real`` and ``f.imag``; every array field is stored flattened
(a list of numbers) and its per-sample shape comes back from the wfm metadata. That
metadata (name, kind, attrs, field specs) travels twice: as ``wfm.json`` next to the data
and inside the dataset's description, so either a ``save_to_disk`` folder or the folder
of a Parquet export imports back exactly.

Import also reads Arrow/Parquet written by others (no wfm metadata): every list column
becomes a ragged float32 series field, ``X.real``/``X.imag`` pairs become complex64,
number columns become scalar fields; ``kind`` (default ``series``) and ``interval`` must
then be given, since nothing in the file states them.
"""

from __future__ import annotations

import json
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import datasets
import numpy as np

from wfm.data.errors import DataError
from wfm.data.loaders.common import prepare_out, write_samples
from wfm.data.shards import FieldSpec, ShardedDataset, verify_dataset

META_FILE = "wfm.json"
PARQUET_FILE = "data.parquet"
FORMATS = ("parquet", "arrow")


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the datasets library's own progress bars (wfm commands show their own)."""
    was = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was:
            datasets.enable_progress_bars()


def _features(specs: dict[str, FieldSpec]):
    feats = {}
    for name, spec in specs.items():
        base = "float32" if spec.dtype == "complex64" else "float64" if spec.dtype == "complex128" else spec.dtype
        value = datasets.Value(base)
        cols = [f"{name}.real", f"{name}.imag"] if spec.dtype.startswith("complex") else [name]
        for c in cols:
            feats[c] = datasets.List(value) if spec.shape else value
    return datasets.Features(feats)


def _rows(root: str, specs: dict[str, FieldSpec], block: int = 64) -> Iterator[dict[str, Any]]:
    """One dict per sample, arrays flattened; reads the shards block by block."""
    ds = ShardedDataset(root)
    for a in range(0, len(ds), block):
        data = ds.read_range(a, min(a + block, len(ds)))
        for i in range(len(next(iter(data.values())))):
            row = {}
            for name, spec in specs.items():
                v = np.asarray(data[name][i])
                flat = v.reshape(-1) if spec.shape else v.item()
                if spec.dtype.startswith("complex"):
                    row[f"{name}.real"], row[f"{name}.imag"] = (flat.real, flat.imag) if spec.shape else (
                        float(np.real(flat)), float(np.imag(flat)))
                else:
                    row[name] = flat
            yield row


def export_hf(root: str | Path, out: str | Path, fmt: str = "parquet") -> Path:
    """Export a wfm dataset folder to ``out`` as Parquet (``data.parquet``) or Arrow (``save_to_disk``)."""
    if fmt not in FORMATS:
        raise DataError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    verify_dataset(root)  # checksums first: an export must never launder a corrupt shard
    src = ShardedDataset(root)
    meta = {"wfm_schema": 1, "name": src.name, "kind": src.kind, "attrs": src.attrs,
            "fields": {k: v.to_dict() for k, v in src.specs.items()}}
    out = prepare_out(out)
    # The generator cache goes to a temporary folder: nothing is written to ~/.cache.
    with tempfile.TemporaryDirectory() as cache, _quiet():
        hf = datasets.Dataset.from_generator(_rows, gen_kwargs={"root": str(root), "specs": src.specs},
                                             features=_features(src.specs), cache_dir=cache,
                                             info=datasets.DatasetInfo(description=json.dumps(meta)))
        out.mkdir(parents=True, exist_ok=True)
        if fmt == "parquet":
            hf.to_parquet(str(out / PARQUET_FILE))
        else:
            hf.save_to_disk(str(out))
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def _open(path: Path):
    if path.is_dir() and (path / "dataset_info.json").is_file():
        with _quiet():
            return datasets.load_from_disk(str(path), keep_in_memory=True)
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files or any(f.suffix != ".parquet" for f in files):
        raise DataError(f"{path}: neither a save_to_disk folder nor Parquet file(s)")
    with tempfile.TemporaryDirectory() as cache, _quiet():
        return datasets.Dataset.from_parquet([str(f) for f in files], cache_dir=cache, keep_in_memory=True)


def _meta(path: Path, hf: Any) -> dict[str, Any] | None:
    side = (path if path.is_dir() else path.parent) / META_FILE
    if side.is_file():
        return json.loads(side.read_text())
    try:
        m = json.loads(hf.info.description or "")
        return m if isinstance(m, dict) and "wfm_schema" in m else None
    except json.JSONDecodeError:
        return None


def _infer_specs(hf: Any, path: Path) -> dict[str, FieldSpec]:
    specs: dict[str, FieldSpec] = {}
    for col, feat in hf.features.items():
        name = col[:-5] if col.endswith((".real", ".imag")) else col
        is_list = isinstance(feat, (datasets.List, datasets.Sequence, list))
        if col.endswith((".real", ".imag")):
            other = name + (".imag" if col.endswith(".real") else ".real")
            if other not in hf.features:
                raise DataError(f"{path}: column {col!r} has no matching {other!r}")
            specs[name] = FieldSpec("complex64", (-1,) if is_list else ())
        elif is_list:
            specs[name] = FieldSpec("float32", (-1,))
        elif isinstance(feat, datasets.Value) and feat.dtype in ("bool", "int32", "int64", "float32", "float64"):
            specs[name] = FieldSpec(feat.dtype, ())
        else:
            raise DataError(f"{path}: column {col!r} of type {feat} cannot be imported (numbers and lists only)")
    return specs


def import_hf(path: str | Path, out: str | Path, kind: str | None = None, interval: float | None = None,
              name: str | None = None, shard_size: int = 256) -> Path:
    """Import Arrow/Parquet (a wfm export or any table of numbers and number lists)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found")
    try:
        hf = _open(path)
    except DataError:
        raise
    except Exception as e:  # pyarrow/datasets raise many types on foreign files
        raise DataError(f"{path}: cannot read as Arrow/Parquet ({type(e).__name__}: {e})") from None
    meta = _meta(path, hf)
    if meta is not None:
        specs = {k: FieldSpec.from_dict(v) for k, v in meta["fields"].items()}
        kind, attrs, name = kind or meta["kind"], dict(meta["attrs"]), name or meta["name"]
    else:
        if interval is None:
            raise DataError(f"{path}: no wfm metadata; pass --interval (seconds) and --kind")
        specs = _infer_specs(hf, path)
        kind, attrs, name = kind or "series", {}, name or path.stem
    if interval is not None:
        attrs["interval_s"] = float(interval)
    # Plain Python values: the numpy formatter would turn float64 lists into float32.
    cols = hf.with_format(None)
    samples: dict[str, Any] = {}
    for field, spec in specs.items():
        def col(c: str) -> Any:
            if c not in hf.column_names:
                raise DataError(f"{path}: missing column {c!r}")
            return cols[c]
        if spec.dtype.startswith("complex"):
            re, im = col(f"{field}.real"), col(f"{field}.imag")
            vals = ([np.asarray(r) + 1j * np.asarray(i) for r, i in zip(re, im)] if spec.shape
                    else np.asarray(re) + 1j * np.asarray(im))
        else:
            vals = col(field)
        if spec.ragged:
            samples[field] = [np.asarray(v).reshape(-1, *spec.shape[1:]).astype(spec.dtype) for v in vals]
        elif spec.shape:
            samples[field] = np.stack([np.asarray(v).reshape(spec.shape) for v in vals]).astype(spec.dtype)
        else:
            samples[field] = np.asarray(vals).astype(spec.dtype)
    return write_samples(out, name, kind, specs, samples, attrs,
                         {"format": "hf", "source": str(path)}, shard_size)
