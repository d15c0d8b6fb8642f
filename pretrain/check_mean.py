"""``check_mean`` on held-out *generated* CSI windows long enough for the checks (32-64 packets).

    PYTHONPATH=. python pretrain/check_mean.py --model checkpoints/causal-tiny-catalog-cpu \
        --data /tmp/long-csi --contexts 32 64 --out check_mean.json

The CSI recipes hold 16-24 packets, too few for two checks of 8 ahead, so this script first
generates every WiFi recipe (``data/recipes/wifi``) and a 3GPP one again with ``time_steps: 72``
and ``--samples`` samples at ``--seed`` (9090: no pretraining drew them) into ``--data`` (skipped
where a folder is there already). Then, per dataset and context, ``--windows`` held-out samples with
all their channels pooled into one window (as ``wfm benchmark real`` pools a capture's), and the
channels of the first 4 each alone, are forecast 8 ahead with ``check_mean`` off and on (the same
weights); prints the ratio of per-window NMSE to the better of persistence and the context mean,
and per context the geometric mean over datasets and how many are at or below 1.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
import yaml

import wfm
from wfm.data.generate import generate_dataset
from wfm.data.recipes import load_recipe

sys.path.insert(0, str(Path(__file__).parent))
from evidence_power import best_classical, has_csi, held_out_pool, held_out_windows, window_nmse

RECIPES = sorted(Path("data/recipes/wifi").glob("*.yaml")) + [Path("data/recipes/tdl-a-5p9-1x4-k64-t24.yaml")]


def generate(folder: Path, samples: int, seed: int, steps: int) -> None:
    """Every recipe of ``RECIPES`` with ``time_steps: steps`` into ``folder`` (resumable)."""
    folder.mkdir(parents=True, exist_ok=True)
    for recipe in RECIPES:
        out = folder / recipe.stem
        if out.exists():
            continue
        spec = yaml.safe_load(recipe.read_text())
        spec.update(time_steps=steps, num_samples=samples, shard_size=samples)
        long_recipe = folder / f"{recipe.stem}.yaml"
        long_recipe.write_text(yaml.safe_dump(spec))
        generate_dataset(load_recipe(long_recipe), out, seed=seed)


def long_windows(data: Path, contexts: list[int], windows: int, sets: list[str] | tuple[str, ...] = ()):
    """Per CSI set of ``data`` (those whose name holds one of ``sets``; all without) and context:
    ``(name, context, ctx [R, context], target [R, 8], group [R], interval)``, ``windows`` held-out
    samples with every channel of each pooled into one window (a set too short for it is skipped)."""
    for folder in sorted(data.iterdir()):
        if not folder.is_dir() or not has_csi(folder) or (sets and not any(k in folder.name for k in sets)):
            continue
        pool = held_out_pool(folder, 0.45)
        for context in contexts:
            drawn = held_out_windows(pool, context, 8, windows, 0)
            if drawn is None:
                continue
            x, group, interval = drawn
            yield folder.name, context, x[:, :context].float(), x[:, context:].float(), group, interval


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="checkpoints/causal-tiny-catalog-cpu")
    ap.add_argument("--data", type=Path, default=Path("/tmp/long-csi"), help="folder of the long generated sets")
    ap.add_argument("--contexts", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--seed", type=int, default=9090)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    generate(args.data, args.samples, args.seed, max(args.contexts) + 8)
    model = wfm.from_pretrained(args.model)
    results: dict[str, dict[str, float]] = {}
    for name, context, ctx, target, group, interval in long_windows(args.data, args.contexts, args.windows):
        alone = group < 4
        row = {}
        for on in (False, True):
            model.check_mean = on
            key = "on" if on else "off"
            row[key] = window_nmse(model.forecast(ctx, interval, 8, group=group), target, group) / best_classical(
                ctx, target, group)
            row[f"alone_{key}"] = window_nmse(model.forecast(ctx[alone], interval, 8), target[alone],
                                              group[alone]) / best_classical(ctx[alone], target[alone], group[alone])
        results[f"{name}|{context}"] = row
        print(f"{name:40s} {context:3d}  pooled {row['off']:.4f} -> {row['on']:.4f}   "
              f"alone {row['alone_off']:.4f} -> {row['alone_on']:.4f}", flush=True)
    for context in args.contexts:
        for key in ("off", "on", "alone_off", "alone_on"):
            v = [r[key] for name, r in results.items() if name.endswith(f"|{context}")]
            if v:
                gm = math.exp(sum(map(math.log, v)) / len(v))
                print(f"context {context} {key:9s} geometric mean {gm:.4f}, at or below 1: {sum(r <= 1 for r in v)} of {len(v)}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
