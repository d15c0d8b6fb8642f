"""Score causal models on held-out *generated* beam sweeps, windowed as the DeepSense benchmark windows its real ones.

    PYTHONPATH=. python pretrain/beam_heldout.py --model checkpoints/causal-tiny-catalog-cpu \
        --model exports/causal-tiny-beam --heldout /tmp/beam-777 --out beam_heldout.json

``data/recipes/beam-street-60g.yaml`` at a seed no pretraining or fine-tuning used (``--seed``, 777;
generated into ``--heldout`` where missing): the power of each of the 64 beams and the bearing,
context 16 -> next 4 at 100 ms, stride 4 within a trajectory, a window's 64 beams pooling their
evidence (``wfm benchmark real``'s DeepSense windows, ``wfm.tasks.real_data``). Prints each model's
per-window NMSE as a ratio to the best classical baseline (persistence, context mean), with the
linear-prediction reference. What a real sweep adds beyond the generator's physics is what this
cell cannot show: read it beside the real DeepSense rows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import wfm
from wfm.data.shards import ShardedDataset
from wfm.tasks.real_data import BenchData, RealBenchConfig, _series_windows, classical_rows, model_rows

RECIPE = Path(__file__).resolve().parent.parent / "data" / "recipes" / "beam-street-60g.yaml"


def ensure_sweeps(folder: Path, samples: int, seed: int) -> ShardedDataset:
    """The held-out sweeps in ``folder``, generated there first where missing."""
    if not (folder / "manifest.json").exists():
        from wfm.data.generate import generate_dataset
        from wfm.data.recipes import load_recipe

        generate_dataset(load_recipe(RECIPE), folder, num_samples=samples, seed=seed)
    return ShardedDataset(folder)


def sweep_views(ds: ShardedDataset, context: int = 16, horizon: int = 4, interval: float = 0.1) -> list[BenchData]:
    """Beam power (a window is all beams) and bearing windows of every trajectory in ``ds``."""
    items = [ds[i] for i in range(len(ds))]
    out = []
    for view, key in (("beam power", "beam_power"), ("bearing", "bearing")):
        ctx, tgt, span = _series_windows([it[key] for it in items], context, horizon, horizon)
        out.append(BenchData(f"{ds.root.name} (generated)", view, ctx, tgt, interval,
                             f"{len(ctx)} windows of {context} -> {horizon}", str(ds.root), span=span,
                             ordered=view == "beam power"))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="a causal model folder (repeatable)")
    ap.add_argument("--heldout", type=Path, required=True, help="folder of the held-out sweeps (generated if missing)")
    ap.add_argument("--samples", type=int, default=128, help="trajectories to generate")
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--correction-off", action="store_true",
                    help="also score each model with its network correction off (its classical mix alone)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = RealBenchConfig()
    models = [(m, "causal", wfm.from_pretrained(m).eval()) for m in args.model]
    if args.correction_off:
        from wfm.tasks.prior_ablation import correction_off

        models += [(f"{m} (correction off)", "causal", correction_off(model)) for m, _, model in models]
    cells = []
    for data in sweep_views(ensure_sweeps(args.heldout, args.samples, args.seed)):
        classical = classical_rows(data, cfg)
        best = min(r["window_nmse"] for r in classical if r["kind"] == "classical" and "window_nmse" in r)
        # model_rows names a model by its folder's name; the full label keeps two folders of one name apart
        labels = [r["model"] for r in classical] + [m for m, _, _ in models]
        rows = classical + model_rows(data, models, cfg, {})
        cell = {"view": data.view, "windows": data.windows, "best_classical_nmse": best,
                "ratio": {label: r["window_nmse"] / best for r, label in zip(rows, labels) if "window_nmse" in r}}
        cells.append(cell)
    names = list(dict.fromkeys(n for c in cells for n in c["ratio"]))  # "drift" is beam power's alone
    print("| view | windows | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for c in cells:
        print(f"| {c['view']} | {c['windows']} | " + " | ".join(f"{c['ratio'][n]:.4f}" if n in c["ratio"] else "" for n in names) + " |")
    result = {"recipe": str(RECIPE.name), "seed": args.seed, "samples": args.samples, "cells": cells}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
