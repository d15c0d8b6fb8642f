"""fp32 vs bf16 autocast vs ``torch.compile`` for CPU pretraining, measured in one run.

    python pretrain/cpu_precision.py                  # both shipped CPU models at their pretraining shapes
    python pretrain/cpu_precision.py --quick          # 2 + 3 steps each: a smoke test of the script
    python pretrain/cpu_precision.py --out cpu_precision.json

A full training step (forward, backward, AdamW) of the architectures of the two shipped CPU
checkpoints, at the shapes and batch sizes of their pretraining configs:

- ``mae-tiny-catalog-cpu`` (``pretrain/mae-tiny-catalog-cpu.yaml``): MAE-Tiny with the mixed
  prior, batch 32, the largest catalog shape [24, 32, 64] and a WiFi shape [16, 3, 30], the
  WiFo mask mixture cycling random / temporal / frequency;
- ``causal-tiny-catalog-cpu`` (``pretrain/causal-tiny-catalog-cpu.yaml``): causal-Tiny with the
  mixed prior and coarse tokens, batch 64, context 1024 + horizon 64.

Each runs as fp32, bf16 autocast (``torch.autocast("cpu", torch.bfloat16)``, as Lightning's
``bf16-mixed``), fp32 with ``torch.compile`` of every block (the MAE's ``compile_blocks``; the
blocks of the causal model) and both. The table gives samples/s and the ratio to fp32 of
the same model and shape in this run; absolute numbers depend on what else the machine runs,
the ratios much less. The architecture comes from the checkpoint's ``config.json``; weights are
random (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from wfm.data.synthetic import plane_wave_csi
from wfm.models import create_model
from wfm.models.masking import MaskPolicy

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Variant:
    name: str
    bf16: bool
    compile: bool


VARIANTS = [Variant("fp32", False, False), Variant("bf16 autocast", True, False),
            Variant("fp32 + compile", False, True), Variant("bf16 + compile", True, True)]


def _arch(name: str) -> tuple[str, dict]:
    """Registered model name and constructor arguments of a shipped checkpoint (from its config.json)."""
    cfg = json.loads((REPO / "checkpoints" / name / "config.json").read_text())
    return cfg["name"], dict(cfg["arch"])


def _time(step, warmup: int, steps: int) -> float:
    for i in range(warmup):
        step(i)
    t0 = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    return time.perf_counter() - t0


def mae_rate(v: Variant, shape: tuple[int, int, int], batch: int, warmup: int, steps: int) -> float:
    """Training samples/s of the shipped MAE architecture on CSI of ``shape``."""
    name, arch = _arch("mae-tiny-catalog-cpu")
    torch.manual_seed(0)
    model = create_model(name, **arch)
    if v.compile:
        model.compile_blocks()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    csi = plane_wave_csi(batch, shape, generator=torch.Generator().manual_seed(0))
    grid = model.grid_for(csi.shape)  # padded to whole patches, as in pretraining
    policy = MaskPolicy()

    def step(i: int) -> None:
        mask, _, _ = policy(batch, grid, i)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=v.bf16):
            loss = model(csi, mask).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return batch * steps / _time(step, warmup, steps)


def causal_rate(v: Variant, context: int, horizon: int, batch: int, warmup: int, steps: int) -> float:
    """Training samples/s of the shipped causal architecture on windows of ``context + horizon``."""
    name, arch = _arch("causal-tiny-catalog-cpu")
    torch.manual_seed(0)
    model = create_model(name, **arch)
    length = context + horizon
    length += (-length) % model.patch_len
    t = torch.arange(length, dtype=torch.float32)
    values = torch.sin(2 * torch.pi * t / 144)[None] * torch.rand(batch, 1) + 0.1 * torch.randn(batch, length)
    observed = torch.ones_like(values, dtype=torch.bool)
    interval = torch.full((batch,), 600.0)
    ctx = torch.full((batch,), context)
    if v.compile:  # regional, as the MAE: the blocks; the data-dependent prior code stays eager
        for blk in model.blocks:
            blk.compile()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(i: int) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=v.bf16):
            loss = model.loss(values, observed, interval, ctx)[0]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return batch * steps / _time(step, warmup, steps)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=6, help="untimed steps (compilation happens here)")
    p.add_argument("--quick", action="store_true", help="2 warm-up + 3 timed steps, small batches: a smoke test")
    p.add_argument("--tiny", action="store_true", help="with --quick: small shapes too (the test suite's smoke test)")
    p.add_argument("--configs", nargs="*", default=None, choices=[v.name for v in VARIANTS],
                   help="only these configurations (default: all four)")
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    mae_batch, causal_batch = (4, 8) if args.quick else (32, 64)
    if args.quick:
        args.warmup, args.steps = 2, 3
    big, ctx = ((8, 8, 16), 64) if args.tiny else ((24, 32, 64), 1024)
    cases = [("mae-tiny-catalog-cpu", f"CSI {list(big)}, batch {mae_batch}",
              lambda v: mae_rate(v, big, mae_batch, args.warmup, args.steps)),
             ("mae-tiny-catalog-cpu", f"CSI [16, 3, 30], batch {mae_batch}",
              lambda v: mae_rate(v, (16, 3, 30), mae_batch, args.warmup, args.steps)),
             ("causal-tiny-catalog-cpu", f"context {ctx} + 64, batch {causal_batch}",
              lambda v: causal_rate(v, ctx, 64, causal_batch, args.warmup, args.steps))]
    variants = [v for v in VARIANTS if args.configs is None or v.name in args.configs]
    print(f"CPU training step (fwd + bwd + AdamW), {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{args.steps} timed steps after {args.warmup}")
    rows = []
    for model, shape, rate in cases:
        base = None
        for v in variants:
            try:
                r = rate(v)
            except Exception as e:  # a backend that fails here is a result, not a crash
                rows.append({"model": model, "shape": shape, "config": v.name, "error": f"{type(e).__name__}: {e}"[:120]})
                print(f"  {model} {shape} {v.name}: {rows[-1]['error']}", file=sys.stderr)
                continue
            base = r if v.name == "fp32" else base
            rows.append({"model": model, "shape": shape, "config": v.name, "samples/s": round(r, 2),
                         "x fp32": round(r / base, 2) if base else None})
            print(f"  {model} {shape} {v.name}: {r:.2f} samples/s", file=sys.stderr)
    cols = ["model", "shape", "config", "samples/s", "x fp32"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r["error"] if c == "samples/s" and "error" in r else r.get(c, "")) for c in cols) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__,
                                              "steps": args.steps, "warmup": args.warmup, "rows": rows}, indent=2) + "\n")
    return rows
