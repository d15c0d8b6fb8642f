"""``wfm demo``: the main job, end to end on an embedded default, on a laptop CPU.

Today it generates a small CSI dataset with Sionna (3GPP UMa, a 2x4 UPA, 32 subcarriers,
16 steps of 0.5 ms, users at 30-120 km/h), verifies it, prints its summary and writes a
PNG of CSI magnitude over time x subcarrier and over antennas x subcarrier. It grows as
the models and tasks land.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from wfm.console import console, print_table, progress_bar, write_json

#: The embedded recipe: no data file needed to run the demo.
DEMO_RECIPE: dict[str, Any] = {
    "name": "demo-uma-3p5-2x4-k32-t16",
    "model": "uma",
    "carrier_frequency_ghz": 3.5,
    "subcarrier_spacing_khz": 30,
    "num_subcarriers": 32,
    "array": [2, 4],
    "time_steps": 16,
    "time_step_ms": 0.5,
    "speed_kmh": [30, 120],
    "num_samples": 512,
    "shard_size": 128,
    "description": "wfm demo: small UMa dataset",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the end-to-end demo on an embedded default (CPU, minutes)")
    p.add_argument("--out", default="wfm-demo", help="output folder (default: wfm-demo)")
    p.add_argument("--num-samples", type=int, default=DEMO_RECIPE["num_samples"])
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from wfm.data.generate import generate_dataset, summarize
    from wfm.data.recipes import recipe_from_dict
    from wfm.data.shards import ShardedDataset, read_manifest, verify_dataset

    out = Path(args.out)
    t0 = time.perf_counter()
    recipe = recipe_from_dict(DEMO_RECIPE, source="wfm.demo.DEMO_RECIPE")
    data_dir = out / "data" / recipe.name
    console.rule("1. generate CSI with Sionna (3GPP TR 38.901 UMa)")
    with progress_bar("generating", args.num_samples) as advance:
        gen = generate_dataset(recipe, data_dir, num_samples=args.num_samples, seed=args.seed,
                               progress=advance)
    verify_dataset(data_dir)
    manifest = read_manifest(data_dir)
    summary = summarize(manifest)
    ds = ShardedDataset(data_dir)
    meta = ds.read_range(0, len(ds), ["los", "speed", "distance"])
    summary.update({"los_fraction": float(np.mean(meta["los"])),
                    "speed_kmh_mean": float(np.mean(meta["speed"]) * 3.6),
                    "distance_m_median": float(np.median(meta["distance"][:, 0])),
                    "generation_samples_per_s": gen.samples_per_second})
    print_table([summary], title="generated dataset")

    png = plot_csi(ds, out / "csi.png")
    ds.close()
    results = {"dataset": summary, "plots": [str(png)], "seconds": time.perf_counter() - t0}
    write_json(out / "demo.json", results)
    console.print(f"wrote {png} and {out / 'demo.json'} in {results['seconds']:.1f} s")
    return results


def plot_csi(ds: Any, path: Path) -> Path:
    """|H| over time x subcarrier (first antenna) and over antenna x subcarrier (first step)
    for one LoS and one NLoS sample, when the data has both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    los = ds.read_range(0, len(ds), ["los"])["los"]
    picks = [int(np.argmax(los)), int(np.argmin(los))] if los.any() and not los.all() else [0, 1]
    fig, axes = plt.subplots(len(picks), 2, figsize=(10, 3.6 * len(picks)), squeeze=False)
    dt = ds.attrs["time_step"] * 1e3
    for row, idx in zip(axes, picks):
        s = ds[idx]
        mag = 20 * np.log10(np.abs(s["csi"]) + 1e-12)
        T, A, K = mag.shape
        tag = f"sample {idx}, {'LoS' if s['los'] else 'NLoS'}, {s['speed'] * 3.6:.0f} km/h, {s['distance'][0]:.0f} m"
        im = row[0].imshow(mag[:, 0, :], aspect="auto", origin="lower", extent=[0, K, 0, T * dt])
        row[0].set(xlabel="subcarrier", ylabel="time (ms)", title=f"|H| dB, antenna 0\n{tag}")
        fig.colorbar(im, ax=row[0])
        im = row[1].imshow(mag[0], aspect="auto", origin="lower", extent=[0, K, 0, A])
        row[1].set(xlabel="subcarrier", ylabel="antenna", title=f"|H| dB, time step 0\n{tag}")
        fig.colorbar(im, ax=row[1])
    fig.suptitle(f"{ds.name}: {ds.attrs['scenario']}, {ds.attrs['carrier_frequency'] / 1e9:g} GHz")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
