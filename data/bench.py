"""Data engine throughput: generation (samples/s) and DataModule reads (samples/s per worker).

    python data/bench.py                       # CPU: generation and reads
    python data/bench.py --device cuda         # generation on the GPU as well
    python data/bench.py --json bench.json     # also write the numbers as JSON

Prints one table per measurement, every number measured in this run. Reads are timed on a
`[24, 32, 64]` dataset (the `uma-3p5-4x8-k64-t24` recipe) that the script generates first in
a temporary folder (or `--dataset DIR` to time an existing one).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from wfm.console import print_table, write_json
from wfm.data.csi_generator import CSIGenerator
from wfm.data.datamodule import CSIDataModule
from wfm.data.generate import generate_dataset
from wfm.data.recipes import load_recipe

RECIPES = Path(__file__).resolve().parent / "recipes"
SHAPE_RECIPES = ["uma-3p5-4x8-k64-t24", "cdl-a-3p5-4x8-k64-t24"]


def bench_generation(device: str, batch_sizes: list[int], repeats: int) -> list[dict]:
    rows = []
    for name in SHAPE_RECIPES:
        gen = CSIGenerator(load_recipe(RECIPES / f"{name}.yaml"))
        for bs in batch_sizes:
            gen.generate(min(bs, 32), 0, device)  # warm-up: imports, kernels, caches
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for r in range(repeats):
                gen.generate(bs, 1 + r, device)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            rows.append({"recipe": name, "device": device, "threads": torch.get_num_threads(), "batch": bs,
                         "samples/s": bs * repeats / dt})
    return rows


def bench_reads(root: Path, batch_size: int, block_sizes: list[int], workers: list[int], seconds: float) -> list[dict]:
    rows = []
    for block in block_sizes:
        for nw in workers:
            dm = CSIDataModule([str(root)], batch_size=batch_size, block_size=block, num_workers=nw,
                               val_fraction=0, test_fraction=0, samples_per_epoch=10**7)
            dm.setup()
            n, t0, first = 0, None, True
            for b in dm.train_dataloader():
                if first:  # exclude worker start-up
                    first, t0 = False, time.perf_counter()
                    continue
                n += len(b["csi"])
                if time.perf_counter() - t0 > seconds:
                    break
            dt = time.perf_counter() - t0
            rows.append({"block": block, "workers": nw, "batch": batch_size, "samples/s": n / dt,
                         "samples/s/worker": n / dt / max(nw, 1), "MB/s": n * b["csi"][0].nbytes / dt / 1e6})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dataset", default=None, help="time reads on this dataset instead of a fresh one")
    p.add_argument("--read-samples", type=int, default=2048, help="size of the dataset generated for reads")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--seconds", type=float, default=5.0, help="time per read measurement")
    p.add_argument("--json", default=None)
    args = p.parse_args()

    results = {"cpu_count": os.cpu_count(), "torch": torch.__version__,
               "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    results["generation"] = bench_generation("cpu", args.batch_sizes, args.repeats)
    if args.device != "cpu":
        results["generation"] += bench_generation(args.device, args.batch_sizes + [1024, 4096], args.repeats)
    print_table(results["generation"], title="generation (Sionna, [24, 32, 64] CSI)")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.dataset) if args.dataset else Path(tmp) / "uma"
        if not args.dataset:
            generate_dataset(load_recipe(RECIPES / "uma-3p5-4x8-k64-t24.yaml"), root,
                             num_samples=args.read_samples, workers=1, device=args.device)
        results["reads"] = bench_reads(root, 64, [1, 16], args.workers, args.seconds)
    print_table(results["reads"], title="CSIDataModule reads (workers 0 = in the main process)")
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
