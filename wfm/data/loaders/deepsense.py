"""DeepSense 6G beam-prediction arrays (scenarios 1-9 as shared by Morais & Alkhateeb).

Per scenario N the folder holds ``scenarioN_unit1_pwr_60ghz_*.npy`` (received power on
each of 64 beams, [n, 64]), ``scenarioN_unit1_loc_*.npy`` (base-station GPS, [n, 2]
lat/lon), ``scenarioN_unit2_loc_*.npy`` / ``scenarioN_unit2_loc_cal_*.npy`` (vehicle GPS,
calibrated where present, preferred) and ``scenarioN_seq_index_*.npy`` (trajectory of each
sample, [n]). Samples of one trajectory are consecutive in time.

Stored as dataset kind ``beam``: one sample per trajectory (lengths differ, so the
fields are ragged): ``beam_power`` [L, 64], ``bearing`` [L] (deg, compass bearing of the
vehicle from the base station, unwrapped; the AoA proxy, up to the unknown array
orientation), ``distance`` [L] (m, horizontal, from GPS), ``vehicle_gps`` [L, 2],
``best_beam`` [L], and ``scenario`` / ``sequence_id`` so downstream splits can be made by
trajectory; the dataset is named after its scenarios (``deepsense6g-beam-s1-5``). The
arrays carry no timestamps: ``interval_s`` is the declared nominal sampling interval
(default 0.1 s, DeepSense's 10 samples/s), marked ``interval_nominal``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from wfm.data.errors import DataError
from wfm.data.geometry import gps_bearing, gps_to_local
from wfm.data.loaders.common import write_samples
from wfm.data.shards import FieldSpec

NUM_BEAMS = 64


def _one(folder: Path, pattern: str, required: bool = True) -> Path | None:
    hits = sorted(folder.glob(pattern))
    if not hits:
        if required:
            raise DataError(f"{folder}: no file matches {pattern}")
        return None
    if len(hits) > 1:
        raise DataError(f"{folder}: several files match {pattern}: {', '.join(h.name for h in hits)}")
    return hits[0]


def _load(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: not a readable .npy array ({e})") from None


def scenarios_in(folder: str | Path) -> list[int]:
    """Scenario numbers with a beam-power file in ``folder``."""
    found = {int(m.group(1)) for p in Path(folder).glob("scenario*_unit1_pwr_*.npy")
             if (m := re.match(r"scenario(\d+)_", p.name))}
    return sorted(found)


def load_scenario(folder: str | Path, scenario: int, calibrated: bool = True) -> dict[str, Any]:
    """One scenario as per-trajectory arrays (see the module doc for the fields)."""
    folder = Path(folder)
    pwr_path = _one(folder, f"scenario{scenario}_unit1_pwr_*.npy")
    bs_path = _one(folder, f"scenario{scenario}_unit1_loc_*.npy")
    cal = _one(folder, f"scenario{scenario}_unit2_loc_cal_*.npy", required=False) if calibrated else None
    ue_path = cal or _one(folder, f"scenario{scenario}_unit2_loc_[0-9]*.npy")
    seq_path = _one(folder, f"scenario{scenario}_seq_index_*.npy")
    pwr, bs, ue, seq = (_load(p) for p in (pwr_path, bs_path, ue_path, seq_path))  # type: ignore[arg-type]
    n = len(pwr)
    if pwr.ndim != 2 or pwr.shape[1] != NUM_BEAMS:
        raise DataError(f"{pwr_path}: expected [n, {NUM_BEAMS}] beam powers, got {list(pwr.shape)}")
    for p, a, shape in ((bs_path, bs, (n, 2)), (ue_path, ue, (n, 2)), (seq_path, seq, (n,))):
        if a.shape != shape:
            raise DataError(f"{p}: expected shape {list(shape)} to match {pwr_path.name}, got {list(a.shape)}")
    for p, a in ((pwr_path, pwr), (bs_path, bs), (ue_path, ue)):
        bad = np.flatnonzero(~np.isfinite(a).reshape(n, -1).all(axis=1))
        if bad.size:
            raise DataError(f"{p}: row {bad[0]}: NaN or Inf")
    # A trajectory must be one run of consecutive rows, or its time order is unknown.
    change = np.flatnonzero(np.diff(seq) != 0) + 1
    starts = np.concatenate([[0], change])
    ids = seq[starts]
    _, first = np.unique(ids, return_index=True)
    if len(first) != len(ids):
        dup = ids[np.setdiff1d(np.arange(len(ids)), first)[0]]
        row = starts[np.flatnonzero(ids == dup)[1]]
        raise DataError(f"{seq_path}: row {row}: sequence {dup} starts again after other sequences")
    stops = np.concatenate([change, [n]])
    out: dict[str, list[Any]] = {k: [] for k in ("beam_power", "bearing", "distance", "vehicle_gps",
                                                 "best_beam", "bs_gps", "scenario", "sequence_id")}
    for a, b, sid in zip(starts, stops, ids):
        en = gps_to_local(ue[a:b], bs[a:b])
        bearing = np.rad2deg(np.unwrap(np.deg2rad(gps_bearing(bs[a:b], ue[a:b]))))
        out["beam_power"].append(pwr[a:b].astype(np.float32))
        out["bearing"].append(bearing.astype(np.float32))
        out["distance"].append(np.linalg.norm(en, axis=-1).astype(np.float32))
        out["vehicle_gps"].append(ue[a:b].astype(np.float64))
        out["best_beam"].append(np.argmax(pwr[a:b], axis=1).astype(np.int64))
        out["bs_gps"].append(bs[a].astype(np.float64))
        out["scenario"].append(scenario)
        out["sequence_id"].append(int(sid))
    return out


SPECS = {
    "beam_power": FieldSpec("float32", (-1, NUM_BEAMS)),
    "bearing": FieldSpec("float32", (-1,)),
    "distance": FieldSpec("float32", (-1,)),
    "vehicle_gps": FieldSpec("float64", (-1, 2)),
    "best_beam": FieldSpec("int64", (-1,)),
    "bs_gps": FieldSpec("float64", (2,)),
    "scenario": FieldSpec("int64", ()),
    "sequence_id": FieldSpec("int64", ()),
}


def default_name(scenarios: Sequence[int]) -> str:
    """``deepsense6g-beam-s1-5`` for scenarios 1..5, ``deepsense6g-beam-s1-3+6`` for 1, 2, 3, 6."""
    s = sorted(set(int(x) for x in scenarios))
    runs: list[list[int]] = []
    for x in s:
        if runs and x == runs[-1][-1] + 1:
            runs[-1].append(x)
        else:
            runs.append([x])
    return "deepsense6g-beam-s" + "+".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs)


def import_deepsense(folder: str | Path, out: str | Path, scenarios: Sequence[int] | None = None,
                     interval: float = 0.1, calibrated: bool = True, name: str | None = None,
                     shard_size: int = 256) -> Path:
    """Import DeepSense scenarios (all found when ``scenarios`` is None) as a ``beam`` dataset."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    scenarios = list(scenarios) if scenarios else scenarios_in(folder)
    if not scenarios:
        raise DataError(f"{folder}: no scenario*_unit1_pwr_*.npy files")
    if not interval > 0:
        raise DataError(f"{folder}: interval must be > 0 seconds, got {interval}")
    parts = [load_scenario(folder, s, calibrated) for s in scenarios]
    samples: dict[str, Any] = {k: sum((p[k] for p in parts), []) for k in SPECS}
    for k in ("bs_gps", "scenario", "sequence_id"):
        samples[k] = np.array(samples[k], dtype=SPECS[k].dtype)
    attrs = {"interval_s": float(interval), "interval_nominal": True, "num_beams": NUM_BEAMS,
             "carrier_frequency": 60e9, "scenarios": scenarios, "gps": "calibrated where present" if calibrated
             else "raw", "bearing": "deg clockwise from north, BS to vehicle, unwrapped per trajectory"}
    return write_samples(out, name or default_name(scenarios), "beam", SPECS, samples, attrs,
                         {"format": "deepsense", "source": str(folder), "scenarios": scenarios,
                          "interval": interval, "calibrated": calibrated}, shard_size)
