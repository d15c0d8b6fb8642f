"""Sharded, parallel, resumable, deterministic dataset generation.

The driver knows nothing about channels: a *sample generator* (one per recipe kind,
see :func:`register_kind`) turns ``(num, seed)`` into field arrays, and the driver cuts
the dataset into shards, farms shards out to worker processes, skips shards already on
disk, and writes the manifest last.

Determinism: shard ``i`` is generated from ``seed_sequence(seed, i)`` alone, so the
result does not depend on the number of workers or on how often a run was interrupted.
"""

from __future__ import annotations

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
from wfm.data.shards import (MANIFEST, FieldSpec, build_manifest, field_stats, read_manifest,
                             shard_name, sha256_of, write_json_atomic, write_shard)

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
    from wfm.data.recipes import KIND_MODULES

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


def _existing_entry(path: Path, num: int, seed: int) -> dict[str, Any] | None:
    """Manifest entry of a shard a previous run finished, or None if it must be (re)made."""
    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as f:
            if int(f.attrs["num_samples"]) != num or json.loads(f.attrs["seed"]) != seed:
                return None
            stats = {}
            for name in f:
                if name.endswith(".offsets"):
                    continue
                stats[name] = field_stats(f[name][()])
    except (OSError, KeyError, ValueError):
        return None  # unreadable leftovers are regenerated, never trusted
    return {"file": path.name, "num_samples": num, "sha256": sha256_of(path), "stats": stats}


def generate_dataset(recipe: Any, out_dir: str | Path, *, num_samples: int | None = None,
                     seed: int = 0, workers: int = 1, device: str = "cpu",
                     progress: Callable[[int], None] | None = None) -> GenerationResult:
    """Generate (or finish generating) the dataset of ``recipe`` into ``out_dir``.

    Re-running the same command after a kill keeps every finished shard and makes only
    the missing ones. Running it into a folder that holds another recipe's data is an
    error rather than a silent mix.
    """
    if num_samples is not None:
        recipe = recipe.with_overrides(num_samples=num_samples)
    gen = generator_for(recipe)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_same_run(out, recipe, seed)

    sizes = _shard_sizes(recipe.num_samples, recipe.shard_size)
    seeds = [shard_seed(seed, i) for i in range(len(sizes))]
    entries: list[dict[str, Any] | None] = [
        _existing_entry(out / shard_name(i), n, s) for i, (n, s) in enumerate(zip(sizes, seeds))]
    todo = [i for i, e in enumerate(entries) if e is None]
    for i, e in enumerate(entries):
        if e is not None and progress:
            progress(sizes[i])

    t0 = time.perf_counter()
    if workers <= 1 or len(todo) <= 1:
        for i in todo:
            entries[i] = _make_shard(gen, str(out / shard_name(i)), sizes[i], seeds[i], device, 0)
            if progress:
                progress(sizes[i])
    else:
        threads = max(1, (os.cpu_count() or 1) // workers) if device == "cpu" else 0
        # spawn, not fork: torch and HDF5 state must not be shared with children.
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_make_shard, gen, str(out / shard_name(i)), sizes[i], seeds[i],
                                   device, threads): i for i in todo}
            for fut in as_completed(futures):
                i = futures[fut]
                entries[i] = fut.result()
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
        prev = json.loads((out / PROGRESS_FILE).read_text())
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
