"""``wfm data ...``: generate, inspect, calibrate and list datasets."""

from __future__ import annotations

# The data modules (generate, recipes, shards: h5py and YAML) are imported inside the commands:
# `wfm --help` imports this module to list the verb, in 0.2 s (tests/startup_bench.py).
import argparse
import importlib
from pathlib import Path

from wfm.console import console, markdown_table, print_table, progress_bar, write_json
from wfm.data.errors import DataError
from wfm.data.summary import print_summary
from wfm.safety import device_name, positive_int, seed_int


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="generate, inspect and list datasets")
    verbs = data.add_subparsers(dest="data_verb", metavar="<command>", required=True)

    g = verbs.add_parser("generate", help="generate a dataset from a recipe (resumable)")
    g.add_argument("--recipe", required=True, help="recipe YAML, e.g. data/recipes/uma-3p5-4x8-k64-t24.yaml")
    g.add_argument("--out", required=True, help="output folder (created; re-run the same command to resume)")
    g.add_argument("--num-samples", type=positive_int, default=None, help="override the recipe's sample count")
    g.add_argument("--seed", type=seed_int, default=0)
    g.add_argument("--workers", type=positive_int, default=1, help="worker processes, one shard each at a time")
    g.add_argument("--device", type=device_name, default="cpu", help="cpu or cuda[:N]: where Sionna runs")
    g.set_defaults(func=cmd_generate)

    i = verbs.add_parser("inspect", help="validate a dataset (checksums, shapes, NaN/Inf) and summarise it")
    i.add_argument("dir", help="dataset folder (holds manifest.json)")
    i.add_argument("--json", default=None, help="also write the summary as JSON here")
    i.set_defaults(func=cmd_inspect)

    c = verbs.add_parser("calibrate", help="fit a CSI capture's receive-chain impairments (gain and phase across "
                                           "the band, per-packet gain jitter) as recipe options")
    c.add_argument("dir", help="CSI dataset folder (wfm data import ... or generate)")
    c.add_argument("--spacing-khz", type=float, default=None,
                   help="subcarrier spacing (default: the dataset's subcarrier_indices x 312.5 kHz, or its recipe's)")
    c.add_argument("--max-samples", type=positive_int, default=4096, help="read at most this many samples")
    c.add_argument("--json", default=None, help="also write the fits and the suggested options as JSON here")
    c.set_defaults(func=cmd_calibrate)

    r = verbs.add_parser("recipes", help="list the recipes of a catalog folder")
    r.add_argument("dir", nargs="?", default="data/recipes")
    r.add_argument("--markdown", action="store_true", help="print the table as Markdown (for data/README.md)")
    r.set_defaults(func=cmd_recipes)

    importlib.import_module("wfm.data.import_cli").register(verbs)


def cmd_generate(args: argparse.Namespace) -> None:
    from wfm.data.generate import generate_dataset
    from wfm.data.recipes import load_recipe
    from wfm.data.shards import read_manifest

    recipe = load_recipe(args.recipe)
    total = args.num_samples or recipe.num_samples
    with progress_bar(f"generating {recipe.name}", total) as advance:
        res = generate_dataset(recipe, args.out, num_samples=args.num_samples, seed=args.seed,
                               workers=args.workers, device=args.device, progress=advance)
    console.print(f"{res.out_dir}: {res.num_samples} samples in {res.num_shards} shards "
                  f"({res.generated_shards} generated, {res.skipped_shards} kept from an earlier run) "
                  f"in {res.seconds:.1f} s")
    print_summary(read_manifest(args.out))


def cmd_inspect(args: argparse.Namespace) -> None:
    from wfm.data.shards import read_manifest, verify_dataset

    manifest = read_manifest(args.dir)
    with progress_bar("verifying shards", len(manifest["shards"])) as advance:
        verify_dataset(args.dir, progress=advance)
    summary = print_summary(manifest)
    console.print(f"{args.dir}: OK ({manifest['num_samples']} samples, {len(manifest['shards'])} shards, "
                  "checksums, shapes and values verified)")
    if args.json:
        write_json(args.json, summary)


def cmd_calibrate(args: argparse.Namespace) -> None:
    import numpy as np

    from wfm.data.calibrate import calibrate, subcarrier_freqs_hz
    from wfm.data.shards import ShardedDataset

    ds = ShardedDataset(args.dir)
    if "csi" not in ds.specs or ds.specs["csi"].ragged or len(ds.specs["csi"].shape) != 3:
        raise DataError(f"{args.dir}: calibration needs a csi field of fixed shape [T, A, K] per sample")
    freqs = subcarrier_freqs_hz(ds, args.spacing_khz)
    n = min(len(ds), args.max_samples)
    csi = np.asarray(ds.read_range(0, n, ["csi"])["csi"])
    if not np.iscomplexobj(csi) or csi.shape[-1] < 4:
        raise DataError(f"{args.dir}: calibration needs complex CSI with at least 4 subcarriers; got {csi.dtype} "
                        f"{tuple(csi.shape[1:])} per sample")
    if not np.isfinite(csi).all():
        raise DataError(f"{args.dir}: csi holds NaN or Inf values in its first {n} samples")
    res = calibrate(csi, freqs)
    print_table(res["chains"], title=f"{args.dir}: receive chains ({n} samples of {csi.shape[1]} packets, "
                                     f"{(freqs[-1] - freqs[0]) / 1e6:.1f} MHz)")
    console.print(f"per-packet common gain: {res['gain_jitter_db']:.2f} dB std")
    if res["gain_dips"] is not None:
        d = res["gain_dips"]
        console.print(f"its dips (> {d['threshold_db']:.2f} dB below the running median): {100 * d['share']:.1f} % of packets, {d['dips']} dips, "
                      f"{d['depth_db']:.2f} dB deep, {d['length']:.2f} packets long; the other packets {d['jitter_db']:.2f} dB std")
    console.print("recipe options that cover it (impairments:):")
    for k, v in res["options"].items():
        console.print(f"  {k}: {v:g}")
    if args.json:
        write_json(args.json, {"dataset": str(args.dir), "samples": n, "band_mhz": float((freqs[-1] - freqs[0]) / 1e6), **res})


def catalog_rows(directory: str | Path) -> list[dict]:
    """One row per recipe: the columns of data/README.md's dataset table."""
    from wfm.data.recipes import CSIRecipe, recipe_catalog

    rows = []
    for r in recipe_catalog(directory):
        if isinstance(r, CSIRecipe):
            rows.append({"name": r.name, "split": r.split, "scenario": r.scenario,
                         "band_ghz": r.carrier_frequency_ghz, "array": f"{r.array[0]}x{r.array[1]}",
                         "K": r.num_subcarriers, "scs_khz": r.subcarrier_spacing_khz, "T": r.time_steps,
                         "dt_ms": r.time_step_ms, "speed_kmh": f"{r.speed_kmh[0]:g}-{r.speed_kmh[1]:g}",
                         "samples": r.num_samples})
        else:
            rows.append({"name": r.name, "split": r.split, "scenario": getattr(r, "kind", ""),
                         "samples": r.num_samples})
    return rows


def cmd_recipes(args: argparse.Namespace) -> None:
    if not Path(args.dir).is_dir():
        raise DataError(f"{args.dir}: no such recipe folder")
    rows = catalog_rows(args.dir)
    # the widest row's columns (a CSI recipe's), so that a beam or series recipe listed first hides none
    columns = list(dict.fromkeys(k for r in sorted(rows, key=len, reverse=True) for k in r))
    if args.markdown:
        print(markdown_table(rows, columns), end="")
    else:
        print_table(rows, title=f"recipes in {args.dir}", columns=columns)
