"""Run every autotune config of the fused kernels alone, each in a fresh process, against the reference.

The autotuner times every config of a kernel in one process, and an illegal memory access leaves
that process's CUDA context unusable: one bad config then fails every later launch, and the
traceback names only the autotuner (kernels/README.md, "Correctness on the GPU"). This pins one
kernel (forward, dK/dV or dQ) to one config at a time, the other two to ``--others`` (their first
config by default), runs the forward and the backward in a child process, and compares outputs and
gradients with :func:`wfm.kernels.reference.reference_attention` in float64. A bad config is then a
row of its own: ``ok``, ``mismatch`` (relative error over ``--tol``), ``error`` or ``crashed``
(the child died, or left no result: an illegal access).

    python -m wfm.kernels.config_check --dtype fp32 --fp32-precision tf32 --variant phase --causal \\
        --seq-len 1024 --head-dim 64 --out configs.json                      # on a GPU
    TRITON_INTERPRET=1 python -m wfm.kernels.config_check --device cpu --seq-len 17 --head-dim 32   # smoke

The kernels' phase-with-TF32 refusal (:func:`wfm.kernels.triton_attention.triton_complex_attention`)
is bypassed here on purpose: the child calls the custom ops directly, to find the config behind it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

KERNELS = {"fwd": "_fwd_kernel", "dkdv": "_bwd_dkdv_kernel", "dq": "_bwd_dq_kernel"}
DTYPES = ("bf16", "fp16", "fp32")
#: Default relative-error limit per dtype (max |error| over the tensor's max |value|).
TOLERANCE = {"bf16": 3e-2, "fp16": 1e-2, "fp32": 2e-2}
OUTPUTS = ("Or", "Oi", "dQr", "dQi", "dKr", "dKi", "dVr", "dVi")


def describe(cfg) -> str:
    """``BLOCK_MxBLOCK_N, W warps, S stages`` of a ``triton.Config``."""
    return f"{cfg.kwargs.get('BLOCK_M')}x{cfg.kwargs.get('BLOCK_N')}, {cfg.num_warps} warps, {cfg.num_stages} stages"


def config_counts() -> dict[str, int]:
    """How many autotune configs each kernel has (1 each under the interpreter)."""
    from wfm.kernels import triton_attention as ta

    return {k: len(getattr(ta, name).configs) for k, name in KERNELS.items()}


def run_case(kernel: str, index: int, case: dict) -> dict:
    """In this process: pin ``kernel`` to config ``index`` (the others to ``case["others"]``), run the
    forward and backward of ``case`` and score them against the float64 reference."""
    import torch

    from wfm.kernels import triton_attention as ta
    from wfm.kernels.reference import reference_attention

    configs = {}
    for k, name in KERNELS.items():
        tuner = getattr(ta, name)
        cfg = tuner.configs[index if k == kernel else case["others"]]
        tuner.configs, tuner.cache = [cfg], {}
        configs[k] = describe(cfg)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[case["dtype"]]
    dev, n, d = case["device"], case["seq_len"], case["head_dim"]
    gen = torch.Generator().manual_seed(0)
    exact = [torch.randn(case["batch"], case["heads"], n, d, generator=gen, dtype=torch.float64) for _ in range(8)]
    halves, grads = exact[:6], exact[6:]
    phase, causal = case["variant"] == "phase", case["causal"]
    scale, eps = d ** -0.5, ta.DEFAULT_EPS
    precision = case["fp32_precision"] if dtype == torch.float32 else "tf32"
    x = [t.to(dev, dtype) for t in halves]
    o_r, o_i, lse = torch.ops.wfm.complex_attention_fwd(*x, phase, causal, scale, eps, precision)
    dx = torch.ops.wfm.complex_attention_bwd(*(g.to(dev, dtype) for g in grads), *x, o_r, o_i, lse,
                                             phase, causal, scale, eps, precision)
    if dev == "cuda":
        torch.cuda.synchronize()  # an illegal access surfaces here, in this child only
    # The reference sees the same rounded inputs, in float64, on the same device (fast on a GPU).
    leaves = [t.to(dtype).to(dev, torch.float64).requires_grad_() for t in halves]
    ref = reference_attention(*leaves, variant=case["variant"], causal=causal, scale=scale, eps=eps, chunk_size=256)
    torch.autograd.backward(ref, [g.to(dtype).to(dev, torch.float64) for g in grads])
    expected = [r.detach().cpu() for r in ref] + [leaves[i].grad.cpu() for i in range(6)]
    actual = [o_r, o_i, dx[0], dx[1], dx[2], dx[3], dx[4], dx[5]]
    errors = {}
    for name, a, e in zip(OUTPUTS, actual, expected):
        a = a.double().cpu()
        errors[name] = float("inf") if not bool(torch.isfinite(a).all()) else \
            float((a - e).abs().max() / e.abs().max().clamp_min(0.1))
    worst = max(errors, key=errors.get)
    status = "ok" if errors[worst] < case["tol"] else "mismatch"
    return {"status": status, "configs": configs, "worst": worst, "error": errors[worst], "errors": errors}


def check_all(case: dict, kernels: list[str], timeout: float = 300.0) -> list[dict]:
    """Every config of each of ``kernels``, each in a child process; one row per config."""
    counts = config_counts()
    rows = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                       os.environ.get("PYTHONPATH", "")])}
    for kernel in kernels:
        for index in range(counts[kernel]):
            row = {"kernel": kernel, "config": index}
            try:
                proc = subprocess.run([sys.executable, "-m", "wfm.kernels.config_check", "--child", kernel,
                                       str(index), json.dumps(case)], env=env, capture_output=True, text=True,
                                      timeout=timeout)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                if proc.returncode == 0 and lines:
                    row.update(json.loads(lines[-1]))
                else:
                    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                    row.update(status="crashed", detail=f"exit {proc.returncode}: {tail[:200]}")
            except subprocess.TimeoutExpired:
                row.update(status="crashed", detail=f"no result within {timeout:.0f} s")
            rows.append(row)
            print(_line(row), flush=True)
    return rows


def _line(row: dict) -> str:
    cfg = row.get("configs", {}).get(row["kernel"], f"config {row['config']}")
    if row["status"] in ("ok", "mismatch"):
        return f"{row['kernel']:5s} {cfg:28s} {row['status']:9s} worst {row['worst']} {row['error']:.2e}"
    return f"{row['kernel']:5s} {cfg:28s} {row['status']:9s} {row.get('detail', '')}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":  # one pinned run; its result is the last line of stdout
        kernel, index, case = argv[1], int(argv[2]), json.loads(argv[3])
        try:
            row = run_case(kernel, index, case)
        except Exception as err:  # a compile error or a refused launch is a row, not a crash
            msg = (str(err).strip().splitlines() or [""])[0]
            row = {"status": "error", "detail": f"{type(err).__name__}: {msg[:200]}"}
        print(json.dumps(row))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--dtype", choices=DTYPES, default="bf16")
    ap.add_argument("--fp32-precision", choices=["ieee", "tf32", "tf32x3"], default="ieee")
    ap.add_argument("--variant", choices=["magnitude", "phase"], default="phase")
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--kernels", nargs="+", choices=list(KERNELS), default=list(KERNELS))
    ap.add_argument("--others", type=int, default=0, help="the config the kernels not under test are pinned to")
    ap.add_argument("--tol", type=float, default=None, help="relative-error limit (default per dtype)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per child")
    ap.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    case = {"device": args.device, "dtype": args.dtype, "fp32_precision": args.fp32_precision,
            "variant": args.variant, "causal": args.causal, "batch": args.batch, "heads": args.heads,
            "seq_len": args.seq_len, "head_dim": args.head_dim, "others": args.others,
            "tol": TOLERANCE[args.dtype] if args.tol is None else args.tol}
    print(f"case: {json.dumps(case)}")
    rows = check_all(case, args.kernels, args.timeout)
    if args.out:
        args.out.write_text(json.dumps({"case": case, "rows": rows}, indent=1))
    bad = [r for r in rows if r["status"] != "ok"]
    not_ok = ", ".join(f"{r['kernel']} {r['config']}" for r in bad)
    print(f"{len(rows) - len(bad)} of {len(rows)} configs ok" + (f"; not ok: {not_ok}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
