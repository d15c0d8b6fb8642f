"""Training throughput of the MAE on one GPU: samples/s and MFU per configuration, in one run.

    python pretrain/throughput.py                       # MAE-Base, [24, 32, 64] CSI, batch 128
    python pretrain/throughput.py --model mae_large --batch-size 64
    python pretrain/throughput.py --device cpu --tiny   # smoke test of the script itself

Every configuration trains the same model on the same data for the same steps (forward,
backward, AdamW step) with the WiFo masking mixture cycling random 0.85 / temporal 0.5 /
frequency 0.5, so the encoder length varies from step to step as in real pretraining:

- ``bf16 sdpa``: bf16 autocast, PyTorch SDPA (FlashAttention on H100) - the default config;
- ``bf16 sdpa + compile``: the same with ``torch.compile`` of every block;
- ``fp32 (TF32) sdpa``: fp32 weights and activations, TF32 matmuls (WiFo's TF32 setting);
- ``bf16 complex-{real,magnitude,phase}``: complex tokens and attention (``wfm.kernels``).

The MAE is the one ``pretrain/mae.yaml`` trains (``prior: mix``, skill loss; ``--prior none``: the
original MAE). MFU = model FLOPs (exact matmul count, 3x forward per training step; see
``wfm.models.mae``) / time / the GPU's dense peak for that precision (bf16, or TF32 for fp32;
Lightning's ``get_available_flops`` through ``wfm.training.throughput.available_flops``;
``--peak-tflops`` overrides). Ratios are only meaningful within one run of this script.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from wfm.data.synthetic import plane_wave_csi
from wfm.models import create_model
from wfm.models.masking import MaskPolicy
from wfm.nn.patching import patch_grid
from wfm.training.throughput import available_flops


@dataclass
class Variant:
    name: str
    attention: str = "sdpa"
    bf16: bool = True
    compile: bool = False


VARIANTS = [
    Variant("bf16 sdpa"),
    Variant("bf16 sdpa + compile", compile=True),
    Variant("fp32 (TF32) sdpa", bf16=False),
    Variant("bf16 complex-real", attention="complex-real"),
    Variant("bf16 complex-magnitude", attention="complex-magnitude"),
    Variant("bf16 complex-phase", attention="complex-phase"),
]


def run_variant(v: Variant, args: argparse.Namespace, csi: torch.Tensor) -> dict[str, float | str]:
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = create_model(args.model, patch_size=tuple(args.patch), attention=v.attention, prior=args.prior,
                         loss="mse" if args.prior == "none" else "skill").to(device)
    if v.compile:
        model.compile_blocks()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    policy = MaskPolicy()
    grid = patch_grid(csi.shape, model.patch_size)
    b = csi.shape[0]

    def step(i: int) -> int:
        mask, _, _ = policy(b, grid, i)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=v.bf16):
            loss = model(csi, mask).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return 3 * b * model.forward_flops(grid, int(mask[0].sum()))

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(args.warmup):  # also covers compilation of all three mask kinds
        step(i)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)
    sync()
    t0 = time.perf_counter()
    flops = sum(step(args.warmup + i) for i in range(args.steps))
    sync()
    dt = time.perf_counter() - t0
    result: dict[str, float | str] = {
        "config": v.name,
        "samples/s": b * args.steps / dt,
        "TFLOP/s": flops / dt / 1e12,
    }
    if device.type == "cuda":
        peak = args.peak_tflops * 1e12 if args.peak_tflops else available_flops(device, torch.bfloat16 if v.bf16 else torch.float32)
        result["MFU"] = result["TFLOP/s"] * 1e12 / peak if peak else float("nan")
        result["peak GiB"] = torch.cuda.max_memory_allocated(device) / 2**30
    del model, opt
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def print_table(rows: list[dict[str, float | str]]) -> None:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    fmt = {"samples/s": "{:.1f}", "TFLOP/s": "{:.2f}", "MFU": "{:.1%}", "peak GiB": "{:.1f}"}
    cells = [[fmt.get(c, "{}").format(r[c]) if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols]
             for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")


def main(argv: list[str] | None = None) -> list[dict[str, float | str]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mae_base")
    p.add_argument("--shape", type=int, nargs=3, default=[24, 32, 64], metavar=("T", "A", "K"))
    p.add_argument("--patch", type=int, nargs=3, default=[4, 4, 4], metavar=("PT", "PA", "PK"))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--warmup", type=int, default=6, help="untimed steps (a multiple of 3 covers every mask kind)")
    p.add_argument("--steps", type=int, default=30, help="timed steps")
    p.add_argument("--device", default="cuda")
    p.add_argument("--peak-tflops", type=float, default=None, help="per-GPU peak for MFU (default: detected)")
    p.add_argument("--only", nargs="*", default=None, help="run only these configs (by name)")
    p.add_argument("--prior", default="mix", choices=["none", "hold", "mean", "mix"],
                   help="the MAE's classical prior: mix (with the skill loss) as pretrain/mae.yaml trains it; "
                        "none: the MAE before the prior, as session 39 measured it on an H200")
    p.add_argument("--tiny", action="store_true", help="mae_tiny, [8, 8, 16], batch 4, 2+2 steps: a smoke test")
    p.add_argument("--out", default=None, help="also write the run's settings and rows as JSON here")
    args = p.parse_args(argv)
    if args.tiny:
        args.model, args.shape, args.batch_size, args.warmup, args.steps = "mae_tiny", [8, 8, 16], 4, 2, 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("pretrain/throughput.py measures GPU training throughput and no CUDA GPU is visible; "
                 "use --device cpu --tiny to smoke-test the script on CPU")
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True  # the fp32 row is TF32, as in WiFo's figure
        torch.backends.cudnn.allow_tf32 = True
    variants = [v for v in VARIANTS if args.only is None or v.name in args.only]
    csi = plane_wave_csi(args.batch_size, tuple(args.shape), generator=torch.Generator().manual_seed(0)).to(args.device)
    n_tokens = math.prod(patch_grid(csi.shape, tuple(args.patch)))
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(f"{args.model} (prior {args.prior}), CSI {args.shape}, patch {args.patch} ({n_tokens} tokens), batch {args.batch_size}, "
          f"{args.steps} timed steps after {args.warmup}, on {where}, torch {torch.__version__}")
    rows = []
    for v in variants:
        if v.compile and not args.device.startswith("cuda"):
            rows.append({"config": v.name, "samples/s": "skipped on CPU"})
            continue
        try:
            rows.append(run_variant(v, args, csi))
        except torch.cuda.OutOfMemoryError:
            rows.append({"config": v.name, "samples/s": "out of memory"})
            gc.collect()
            torch.cuda.empty_cache()
        print(f"  done: {v.name}", file=sys.stderr)
    print_table(rows)
    if args.out:
        run = {"device": where, "torch": torch.__version__, **{k: v for k, v in vars(args).items() if k != "out"},
               "tokens": n_tokens, "rows": rows}
        Path(args.out).write_text(json.dumps(run, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
