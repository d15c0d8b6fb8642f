"""Sharded, parallel, resumable, deterministic dataset generation.

The driver knows nothing about channels: a *sample generator* (one per recipe kind,
see :func:`register_kind`) turns ``(num, seed)`` into field arrays, and the driver cuts
the dataset into shards, farms shards out to worker processes, skips shards already on
disk, and writes the manifest last.

Determinism: shard ``i`` is generated from ``seed_sequence(seed, i)`` alone, so the
result does not depend on the number of workers or on how often a run was interrupted.
"""

from __future__ import annotations

# torch is imported only inside a worker that sets its thread count: `wfm data inspect` and every
# `wfm data import` use summarize() from here, and need no torch (3 s of CPU on a 2-core box).
import importlib
import json
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import h5py
import numpy as np

from wfm.data.errors import DataError
from wfm.data.recipes import KIND_MODULES
from wfm.data.shards import (MANIFEST, MAX_SAMPLE_BYTES, FieldSpec, build_manifest, check_plain_storage,
                             field_stats, read_manifest, shard_name, write_shard)
from wfm.io import sha256_of, write_json_atomic
from wfm.safety import FolderLock, die_with_parent, remove_stale_temporaries

#: Largest shard generated in memory at once.
MAX_SHARD_BYTES = 4 << 30
MAX_SAMPLES = 1 << 34
MAX_SHARDS = 1 << 20

PROGRESS_FILE = ".progress.json"


class SampleGenerator(Protocol):
    """Turns a recipe into samples. Implementations must be picklable (they cross processes)."""

    kind: str

    def specs(self) -> dict[str, FieldSpec]:
        """Fields of one sample."""

    def attrs(self) -> dict[str, Any]:
        """Dataset-level metadata for the manifest (carrier frequency, interval, ...)."""

    def generate(self, num: int, seed: int, device: str = "cpu") -> dict[str, np.ndarray]:
        """``num`` samples, fully determined by ``seed``."""


_KINDS: dict[str, Callable[[Any], SampleGenerator]] = {}


def register_kind(kind: str, factory: Callable[[Any], SampleGenerator]) -> None:
    """Make ``wfm data generate`` understand recipes of ``kind``."""
    _KINDS[kind] = factory


def generator_for(recipe: Any) -> SampleGenerator:
    """The sample generator of a recipe, by its ``kind``."""
    for module in KIND_MODULES:  # importing a kind's module registers its generator
        importlib.import_module(module)
    try:
        return _KINDS[recipe.kind](recipe)
    except KeyError:
        raise DataError(f"recipe {recipe.name!r}: no generator for kind {recipe.kind!r}") from None


def shard_seed(seed: int, shard: int) -> int:
    """Independent, reproducible seed of one shard."""
    return int(np.random.SeedSequence([seed, shard]).generate_state(1, dtype=np.uint32)[0])


@dataclass
class GenerationResult:
    out_dir: Path
    num_samples: int
    num_shards: int
    generated_shards: int
    skipped_shards: int
    seconds: float

    generated_samples: int

    @property
    def samples_per_second(self) -> float | None:
        """Generation throughput of this run; None when every shard was already there."""
        return self.generated_samples / self.seconds if self.generated_samples else None


def _shard_sizes(num_samples: int, shard_size: int) -> list[int]:
    full, rest = divmod(num_samples, shard_size)
    return [shard_size] * full + ([rest] if rest else [])


def _make_shard(gen: SampleGenerator, path: str, num: int, seed: int, device: str,
                threads: int) -> dict[str, Any]:
    """Worker body: generate one shard and write it atomically."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    arrays = gen.generate(num, seed, device)
    return write_shard(Path(path), arrays, gen.specs(), attrs={"seed": seed})


def _existing_entry(path: Path, num: int, seed: int, known_sha256: str | None = None) -> dict[str, Any] | None:
    """Manifest entry of a shard a previous run finished, or None if it must be (re)made.

    A shard is kept only if it matches the sha256 that the previous run recorded for it
    (manifest or progress file), uses no storage outside the file, and holds finite values:
    a flipped or replaced shard is regenerated, never re-hashed into the manifest.
    """
    if not path.is_file():
        return None
    digest = sha256_of(path)
    if known_sha256 is not None and digest != known_sha256:
        return None  # corrupt or replaced since it was written: regenerate
    try:
        with h5py.File(path, "r") as f:
            check_plain_storage(f, path)
            if int(f.attrs["num_samples"]) != num or json.loads(f.attrs["seed"]) != seed:
                return None
            stats = {}
            for name in f:
                if name.endswith(".offsets"):
                    continue
                stats[name] = field_stats(f[name][()])
    except (OSError, KeyError, ValueError, DataError):
        return None  # unreadable leftovers are regenerated, never trusted
    if not all(_finite_stats(st) for st in stats.values()):
        return None  # NaN/Inf inside: regenerate rather than write NaN statistics
    return {"file": path.name, "num_samples": num, "sha256": digest, "stats": stats}


def _finite_stats(st: Mapping[str, Any]) -> bool:
    vals = [v for v in st.values() if v is not None]
    flat = [x for v in vals for x in (v if isinstance(v, list) else [v])]
    return all(np.isfinite(float(x)) for x in flat)


def _recorded_hashes(out: Path) -> dict[str, str]:
    """sha256 per shard file as the previous run recorded it (manifest, else progress file)."""
    hashes: dict[str, str] = {}
    try:
        if (out / PROGRESS_FILE).is_file():
            hashes.update(json.loads((out / PROGRESS_FILE).read_text()).get("shards") or {})
        if (out / MANIFEST).is_file():
            hashes.update({e["file"]: e["sha256"] for e in read_manifest(out)["shards"]})
    except (ValueError, KeyError, TypeError, AttributeError, DataError):
        return {}
    return {k: v for k, v in hashes.items() if isinstance(k, str) and isinstance(v, str)}


def check_sizes(recipe: Any, specs: Mapping[str, FieldSpec] | None = None) -> None:
    """Refuse a recipe whose samples or shards would not fit in memory, before allocating."""
    shape = getattr(recipe, "shape", None)
    per_sample = 0
    if specs is not None:
        for spec in specs.values():
            dims = [abs(int(d)) for d in spec.shape] or [1]
            per_sample += int(np.prod(dims, dtype=np.float64)) * np.dtype(spec.dtype).itemsize
    elif shape is not None:
        per_sample = int(np.prod([int(d) for d in shape], dtype=np.float64)) * 8  # complex64
    if int(recipe.num_samples) > MAX_SAMPLES or -(-int(recipe.num_samples) // int(recipe.shard_size)) > MAX_SHARDS:
        raise DataError(f"recipe {recipe.name!r}: {recipe.num_samples} samples in shards of {recipe.shard_size} "
                        f"exceeds the limits ({MAX_SAMPLES} samples, {MAX_SHARDS} shards)")
    if per_sample > MAX_SAMPLE_BYTES:
        raise DataError(f"recipe {recipe.name!r}: one sample would take {per_sample / 2**20:.0f} MiB "
                        f"(limit {MAX_SAMPLE_BYTES >> 20} MiB); reduce its shape")
    if per_sample * int(recipe.shard_size) > MAX_SHARD_BYTES:
        raise DataError(f"recipe {recipe.name!r}: one shard of {recipe.shard_size} samples would take "
                        f"{per_sample * recipe.shard_size / 2**30:.1f} GiB (limit {MAX_SHARD_BYTES >> 30} GiB); "
                        "reduce shard_size or the sample shape")


def generate_dataset(recipe: Any, out_dir: str | Path, *, num_samples: int | None = None,
                     seed: int = 0, workers: int = 1, device: str = "cpu",
                     progress: Callable[[int], None] | None = None) -> GenerationResult:
    """Generate (or finish generating) the dataset of ``recipe`` into ``out_dir``.

    Re-running the same command after a kill keeps every finished shard and makes only
    the missing ones. Running it into a folder that holds another recipe's data is an
    error rather than a silent mix.
    """
    if num_samples is not None:
        if isinstance(num_samples, bool) or int(num_samples) != num_samples or num_samples < 1:
            raise DataError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        recipe = recipe.with_overrides(num_samples=num_samples)
    if isinstance(seed, bool) or int(seed) != seed or not 0 <= seed < 2**32:
        raise DataError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise DataError(f"workers must be an integer >= 1, got {workers!r}")
    check_sizes(recipe)  # before the generator allocates anything
    gen = generator_for(recipe)
    check_sizes(recipe, gen.specs())
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{out}: cannot create the output folder ({e.strerror})") from None
    with FolderLock(out, "generated"):
        remove_stale_temporaries(out)  # left by a killed writer; we hold the lock, so none is live
        return _generate_locked(recipe, gen, out, seed, workers, device, progress)


def _generate_locked(recipe: Any, gen: SampleGenerator, out: Path, seed: int, workers: int, device: str,
                     progress: Callable[[int], None] | None) -> GenerationResult:
    known = _recorded_hashes(out)
    _check_same_run(out, recipe, seed)

    sizes = _shard_sizes(recipe.num_samples, recipe.shard_size)
    seeds = [shard_seed(seed, i) for i in range(len(sizes))]
    entries: list[dict[str, Any] | None] = [
        _existing_entry(out / shard_name(i), n, s, known.get(shard_name(i)))
        for i, (n, s) in enumerate(zip(sizes, seeds))]
    stamp = json.loads((out / PROGRESS_FILE).read_text())
    stamp["shards"] = {e["file"]: e["sha256"] for e in entries if e is not None}

    def record(entry: dict[str, Any]) -> None:
        stamp["shards"][entry["file"]] = entry["sha256"]  # a resume trusts a shard only by this hash
        write_json_atomic(out / PROGRESS_FILE, stamp)
    todo = [i for i, e in enumerate(entries) if e is None]
    for i, e in enumerate(entries):
        if e is not None and progress:
            progress(sizes[i])

    t0 = time.perf_counter()
    if workers <= 1 or len(todo) <= 1:
        for i in todo:
            entries[i] = _make_shard(gen, str(out / shard_name(i)), sizes[i], seeds[i], device, 0)
            record(entries[i])  # type: ignore[arg-type]
            if progress:
                progress(sizes[i])
    else:
        threads = max(1, (os.cpu_count() or 1) // workers) if device == "cpu" else 0
        # spawn, not fork: torch and HDF5 state must not be shared with children.
        # Workers exit when this process dies (kill -9 included), so nothing is orphaned.
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=die_with_parent) as pool:
            futures = {pool.submit(_make_shard, gen, str(out / shard_name(i)), sizes[i], seeds[i],
                                   device, threads): i for i in todo}
            for fut in as_completed(futures):
                i = futures[fut]
                entries[i] = fut.result()
                record(entries[i])  # type: ignore[arg-type]
                if progress:
                    progress(sizes[i])
    seconds = time.perf_counter() - t0

    # Stale shards beyond the current count (a run with more samples before) must go.
    for extra in sorted(out.glob("shard-*.h5"))[len(sizes):]:
        extra.unlink()
    manifest = build_manifest(recipe.name, gen.kind, gen.specs(), entries, gen.attrs(),  # type: ignore[arg-type]
                              recipe.to_dict(), seed)
    write_json_atomic(out / MANIFEST, manifest)
    (out / PROGRESS_FILE).unlink(missing_ok=True)
    return GenerationResult(out, recipe.num_samples, len(sizes), len(todo), len(sizes) - len(todo), seconds,
                            sum(sizes[i] for i in todo))


def _check_same_run(out: Path, recipe: Any, seed: int) -> None:
    """Refuse to resume into a folder generated from a different recipe or seed."""
    stamp = {"recipe": recipe.to_dict(), "seed": seed}
    stamp_no_count = {**stamp, "recipe": {k: v for k, v in recipe.to_dict().items() if k != "num_samples"}}
    prev = None
    if (out / MANIFEST).is_file():
        m = read_manifest(out)
        prev = {"recipe": m.get("recipe"), "seed": m.get("seed")}
    elif (out / PROGRESS_FILE).is_file():
        try:
            p = json.loads((out / PROGRESS_FILE).read_text())
            prev = {"recipe": p.get("recipe"), "seed": p.get("seed")}
        except (ValueError, AttributeError):
            raise DataError(f"{out / PROGRESS_FILE}: unreadable progress file; delete the folder and "
                            "generate again") from None
    if prev is not None and prev.get("recipe") is not None:
        prev_no_count = {**prev, "recipe": {k: v for k, v in prev["recipe"].items() if k != "num_samples"}}
        if prev_no_count != stamp_no_count:
            raise DataError(f"{out}: holds a dataset of another recipe or seed; "
                            "choose an empty folder or delete it first")
    elif any(out.glob("shard-*.h5")):
        raise DataError(f"{out}: holds shards of unknown origin; choose an empty folder")
    write_json_atomic(out / PROGRESS_FILE, stamp)


def summarize(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """A flat summary of a dataset manifest, for tables and JSON output."""
    rec = manifest.get("recipe") or {}
    attrs = manifest.get("attrs", {})
    fields = manifest["fields"]
    main = "csi" if "csi" in fields else next(iter(fields))
    st = manifest.get("stats", {}).get(main, {})
    return {
        "name": manifest["name"],
        "kind": manifest["kind"],
        "samples": manifest["num_samples"],
        "shards": len(manifest["shards"]),
        "shape": fields[main]["shape"],
        "dtype": fields[main]["dtype"],
        "scenario": attrs.get("scenario", rec.get("model")),
        "carrier_ghz": attrs.get("carrier_frequency", 0) / 1e9 if "carrier_frequency" in attrs else None,
        "power": st.get("power"),
        "std": st.get("std"),
    }
