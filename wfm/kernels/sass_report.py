"""Static resource report of the fused kernels for an H100 (sm_90), without a GPU.

Compiles every autotune config of the forward, dK/dV and dQ kernels ahead of time (Triton's
bundled ptxas) and reads the cubin: registers per thread, spill stack, shared memory, and the
SASS instruction counts that decide attention speed (HGMMA tensor-core ops, MUFU special-
function ops: ex2, sqrt, rsqrt, rcp; local-memory spill traffic STL/LDL). A config that
spills or needs more shared memory than the GPU has will be slow or rejected by the autotuner;
this shows it before any GPU time is spent. Counts are static (instructions in the binary,
unrolled loop bodies included), not executed instructions: compare configs and versions with
them, measure speed with ``kernels/bench.py``.

    PYTHONPATH=. python kernels/sass_report.py --out sass.json              # every config
    PYTHONPATH=. python kernels/sass_report.py --head-dims 64 --kernels fwd  # a subset
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

H100_SHARED_KIB = 227  # opt-in shared memory per block on sm_90
POINTERS = {"QR", "QI", "KR", "KI", "VR", "VI", "OR", "OI", "DOR", "DOI",
            "DKR", "DKI", "DVR", "DVI", "DQR", "DQI"}
KERNELS = {"fwd": ("_fwd_kernel", "_FWD_SPACE"), "dkdv": ("_bwd_dkdv_kernel", "_DKDV_SPACE"),
           "dq": ("_bwd_dq_kernel", "_DQ_SPACE")}
# "/*3950*/   @!P0 BRA 0xa950 ;": address, optional predicate, opcode, operands.
_INSN = re.compile(r"^\s+/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)*)([^;]*);", re.M)
_FP32 = ("FADD", "FMUL", "FFMA", "FMNMX", "FSEL", "FSETP", "FCHK")


def _compiler_not_interpreter() -> None:
    """Unset TRITON_INTERPRET: the report needs the compiler, and triton reads the variable when it
    is imported, so triton (and the kernels) are imported in the functions below, after this."""
    os.environ.pop("TRITON_INTERPRET", None)


def _tool(name: str) -> str:
    import triton  # lazy: see _compiler_not_interpreter

    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)


def compile_one(job: tuple[str, int, bool, bool, tuple[int, int, int, int], str]) -> dict:
    """Compile one kernel config for sm_90 and return its resource and instruction counts."""
    _compiler_not_interpreter()
    import triton  # lazy: see _compiler_not_interpreter
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    import wfm.kernels.triton_attention as ta

    kernel, head_dim, phase, causal, (bm, bn, warps, stages), dtype = job
    fn = getattr(ta, KERNELS[kernel][0]).fn
    consts = dict(HEAD_DIM=head_dim, PHASE=phase, CAUSAL=causal, DOT_PRECISION="tf32",
                  BLOCK_M=bm, BLOCK_N=bn)
    signature = {a: "constexpr" if a in consts else f"*{dtype}" if a in POINTERS
                 else "*fp32" if a in ("LSE", "DELTA") else "fp32" if a in ("sm_scale", "eps2")
                 else "i32" for a in fn.arg_names}
    src = ASTSource(fn=fn, signature=signature,
                    constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()})
    row = dict(kernel=kernel, variant="phase" if phase else "magnitude", causal=causal,
               head_dim=head_dim, dtype=dtype, block_m=bm, block_n=bn, num_warps=warps,
               num_stages=stages)
    try:
        compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32),
                                  options={"num_warps": warps, "num_stages": stages})
    except Exception as exc:  # out of resources at compile time, unsupported layout, ...
        return {**row, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "k.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        usage = subprocess.run([_tool("cuobjdump"), "--dump-resource-usage", str(cubin)],
                               capture_output=True, text=True, check=True).stdout
        sass = subprocess.run([_tool("cuobjdump"), "-sass", str(cubin)],
                              capture_output=True, text=True, check=True).stdout
    regs = int(re.search(r"REG:(\d+)", usage).group(1))
    stack = int(re.search(r"STACK:(\d+)", usage).group(1))
    insns = [(int(a, 16), op, args) for a, op, args in _INSN.findall(sass)]
    return {**row, "registers": regs, "spill_stack_bytes": stack,
            "shared_kib": round(compiled.metadata.shared / 1024, 1),
            "kernel_total": _counts(op for _, op, _ in insns), "main_loop": _main_loop(insns)}


def _counts(ops) -> dict:
    """Instruction counts by class: tensor-core, special-function, spill traffic, FP32 ALU."""
    c = Counter()
    for op in ops:
        head = op.split(".")[0]
        c["instructions"] += 1
        if head in ("HGMMA", "HMMA"):  # warpgroup (sm_90) or warp-level tensor-core op
            c[head.lower()] += 1
        elif head == "MUFU":
            c["mufu_" + op.split(".")[1].lower()] += 1
        elif head in ("STL", "LDL"):
            c[head.lower()] += 1
        elif head in _FP32:
            c["fp32_alu"] += 1
    return dict(c)


def _mma(counts: dict, default: int = 0) -> int:
    return counts.get("hgmma", 0) + counts.get("hmma", 0) if counts else default


def _main_loop(insns: list[tuple[int, str, str]]) -> dict:
    """Counts inside the hot loop: the backward branch whose body holds the most tensor-core ops.

    A loop body is ``[target, branch]`` of a branch to a lower address. Spills inside it cost
    on every iteration; spills outside it (prologue, epilogue) hardly matter.
    """
    best: dict = {}
    for addr, op, args in insns:
        m = re.match(r"\s*(0x[0-9a-f]+)", args)
        if op != "BRA" or not m or int(m.group(1), 16) >= addr:
            continue
        lo = int(m.group(1), 16)
        body = _counts(o for a, o, _ in insns if lo <= a <= addr)
        if _mma(body) > _mma(best, -1):
            best = body
    return best


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kernels", nargs="+", default=list(KERNELS), choices=list(KERNELS))
    p.add_argument("--variants", nargs="+", default=["magnitude", "phase"], choices=["magnitude", "phase"])
    p.add_argument("--causal", nargs="+", default=["false", "true"], choices=["false", "true"])
    p.add_argument("--head-dims", nargs="+", type=int, default=[64, 128])
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", type=Path, help="write the rows as JSON")
    args = p.parse_args(argv)

    _compiler_not_interpreter()
    import wfm.kernels.triton_attention as ta  # lazy: see _compiler_not_interpreter

    if ta.INTERPRET:
        sys.exit("unset TRITON_INTERPRET: the report compiles for the GPU")
    jobs = [(k, d, v == "phase", c == "true", cfg, args.dtype)
            for k in args.kernels for v in args.variants for c in args.causal
            for d in args.head_dims for cfg in getattr(ta, KERNELS[k][1])]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(tqdm(pool.map(compile_one, jobs), total=len(jobs), desc="compiling for sm_90"))

    print("Main loop = the loop body with the most tensor-core ops (counts are static, per body).")
    print("| kernel | variant | causal | D | BLOCK_M x BLOCK_N, warps, stages | regs | spill B | "
          "shared KiB | loop: instr | HGMMA/HMMA | MUFU | FP32 ALU | STL+LDL |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cfg = f"{r['block_m']}x{r['block_n']}, {r['num_warps']}, {r['num_stages']}"
        head = f"| {r['kernel']} | {r['variant']} | {r['causal']} | {r['head_dim']} | {cfg} |"
        if "error" in r:
            print(f"{head} {r['error']} ||||||||")
            continue
        lp = r["main_loop"]
        mufu = sum(v for k, v in lp.items() if k.startswith("mufu_"))
        too_big = " (> H100)" if r["shared_kib"] > H100_SHARED_KIB else ""
        print(f"{head} {r['registers']} | {r['spill_stack_bytes']} | {r['shared_kib']}{too_big} | "
              f"{lp.get('instructions', 0)} | {lp.get('hgmma', 0)}/{lp.get('hmma', 0)} | {mufu} | {lp.get('fp32_alu', 0)} | "
              f"{lp.get('stl', 0) + lp.get('ldl', 0)} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
