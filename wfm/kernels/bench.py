"""Benchmark complex attention: fused Triton kernels vs PyTorch baselines.

Prints one table per (mode, causal, head dim) with a row per implementation and a column per
sequence length; each cell is ``TFLOP/s | peak MiB`` (peak memory allocated during the call
above what the inputs already use), ``OOM``, or ``n/a`` (backend refused the shape/dtype).

Implementations:
    triton-<variant>    ours (wfm.kernels.triton_attention), magnitude and phase
    compile-<variant>   torch.compile of the materialised (unchunked) reference
    eager-<variant>     the chunked eager reference (what complex_attention uses off-GPU)
    sdpa-<backend>      real attention of the same shape (concatenated halves, head dim 2D)
                        for each SDPA backend: flash, cudnn, efficient

FLOPs per forward: c * B * H * N^2 * D with c = 12 (magnitude), 16 (phase), 8 (real);
backward counted as 2.5x forward; causal halves both.

    python kernels/bench.py                         # full GPU sweep (long)
    python kernels/bench.py --seq-lens 4096 --head-dims 64 --out results.json
    TRITON_INTERPRET=1 python kernels/bench.py --device cpu --tiny   # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from wfm.kernels.reference import reference_attention

FLOP_COEF = {"magnitude": 12, "phase": 16, "real": 8}
SDPA_BACKENDS = ("flash", "cudnn", "efficient")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class Result:
    impl: str
    variant: str
    mode: str
    causal: bool
    head_dim: int
    seq_len: int
    ms: float | None
    tflops: float | None
    peak_mib: float | None
    status: str  # "ok", "OOM", or the reason it could not run
    device: str = "cuda"
    configs: dict[str, str] | None = None  # ours: the autotuner's pick per kernel (see sass_report.py)

    def cell(self) -> str:
        if self.status != "ok":
            return self.status if self.status == "OOM" else "n/a"
        if math.isnan(self.peak_mib):  # CPU smoke run: FLOP rates are meaningless, show time
            return f"{self.ms:9.2f} ms"
        return f"{self.tflops:7.2f} | {self.peak_mib:8.1f}"


def flops(variant: str, mode: str, causal: bool, b: int, h: int, n: int, d: int) -> float:
    total = FLOP_COEF[variant] * b * h * n * n * d
    if mode == "fwd_bwd":
        total *= 1.0 + 2.5
    return total / 2 if causal else total


def time_ms(fn: Callable[[], None], device: str, grad_to_none: list[torch.Tensor]) -> float:
    """Median runtime in ms: triton.testing.do_bench on CUDA, a simple loop on CPU."""
    if device == "cuda":
        from triton.testing import do_bench  # lazy: triton is optional (absent on some platforms)

        return do_bench(fn, warmup=25, rep=100, grad_to_none=grad_to_none, return_mode="median")
    fn()  # warm-up (compilation)
    times = []
    for _ in range(3):
        for t in grad_to_none:
            t.grad = None
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def peak_mib(fn: Callable[[], None], device: str) -> float:
    """Peak memory allocated by one call, above what was allocated before it (CUDA only)."""
    if device != "cuda":
        return float("nan")
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def make_inputs(b: int, h: int, n: int, d: int, dtype: torch.dtype, device: str,
                grad: bool) -> list[torch.Tensor]:
    return [torch.randn(b, h, n, d, device=device, dtype=dtype, requires_grad=grad)
            for _ in range(6)]


def build_fn(impl: str, variant: str, causal: bool, inputs: list[torch.Tensor],
             mode: str) -> Callable[[], None]:
    """Closure running one forward (and backward for ``fwd_bwd``) of ``impl``."""
    if impl.startswith("triton"):
        # lazy: triton is optional, and the kernels read TRITON_INTERPRET when first imported
        from wfm.kernels.triton_attention import triton_complex_attention

        def attn():
            return triton_complex_attention(*inputs, variant=variant, causal=causal)
    elif impl.startswith("compile"):
        compiled = torch.compile(reference_attention, dynamic=False)

        def attn():
            return compiled(*inputs, variant=variant, causal=causal, chunk_size=None)
    elif impl.startswith("eager"):
        def attn():
            return reference_attention(*inputs, variant=variant, causal=causal)
    elif impl.startswith("sdpa"):
        backend = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                   "efficient": SDPBackend.EFFICIENT_ATTENTION,
                   "math": SDPBackend.MATH}[impl.split("-", 1)[1]]
        qr, qi, kr, ki, vr, vi = inputs
        d = qr.shape[-1]

        def attn():
            # Real attention on the concatenated halves = complex_attention(variant="real").
            with sdpa_kernel(backend):
                out = F.scaled_dot_product_attention(
                    torch.cat([qr, qi], -1), torch.cat([kr, ki], -1), torch.cat([vr, vi], -1),
                    is_causal=causal, scale=1 / math.sqrt(d))
            return out[..., :d], out[..., d:]
    else:
        raise ValueError(impl)

    if mode == "fwd":
        def run() -> None:
            with torch.no_grad():
                attn()
        return run

    def run_bwd() -> None:
        o_r, o_i = attn()
        (o_r.float().sum() + o_i.float().sum()).backward()
    return run_bwd


def autotuned_configs(mode: str) -> dict[str, str]:
    """The config each kernel's autotuner picked for the shape just timed."""
    from wfm.kernels import triton_attention as ta  # lazy: triton is optional (see build_fn)

    from wfm.kernels.config_check import KERNELS, describe

    picked = {}
    for name in (KERNELS["fwd"],) if mode == "fwd" else tuple(KERNELS.values()):
        cfg = getattr(getattr(ta, name), "best_config", None)
        if cfg is not None:
            picked[name.strip("_")] = describe(cfg)
    return picked


def bench_one(impl: str, variant: str, mode: str, causal: bool, b: int, h: int, n: int, d: int,
              dtype: torch.dtype, device: str) -> Result:
    def result(ms=None, tf=None, mem=None, status="ok") -> Result:
        return Result(impl, variant, mode, causal, d, n, ms, tf, mem, status, device)

    try:
        inputs = make_inputs(b, h, n, d, dtype, device, grad=(mode == "fwd_bwd"))
        fn = build_fn(impl, variant, causal, inputs, mode)
        ms = time_ms(fn, device, inputs if mode == "fwd_bwd" else [])
        mem = peak_mib(fn, device)
        tf = flops(variant, mode, causal, b, h, n, d) / (ms * 1e-3) / 1e12
        r = result(ms, tf, mem)
        if impl.startswith("triton"):
            r.configs = autotuned_configs(mode)
        return r
    except torch.cuda.OutOfMemoryError:
        return result(status="OOM")
    except Exception as err:  # a backend refusing a shape/dtype is a result, not a crash
        msg = str(err).strip().splitlines()
        return result(status=f"{type(err).__name__}: {msg[0][:120] if msg else ''}")
    finally:
        if device == "cuda":
            torch.cuda.empty_cache()


def print_tables(results: list[Result], seq_lens: list[int]) -> None:
    groups: dict[tuple, list[Result]] = {}
    for r in results:
        groups.setdefault((r.mode, r.causal, r.head_dim), []).append(r)
    for (mode, causal, d), rows in groups.items():
        unit = "TFLOP/s | peak MiB" if rows[0].device == "cuda" else "median ms, CPU"
        print(f"\n== {mode}, {'causal' if causal else 'non-causal'}, D={d}  (cells: {unit}) ==")
        header = f"{'impl':<22}" + "".join(f"{'N=' + str(n):>22}" for n in seq_lens)
        print(header)
        print("-" * len(header))
        by_impl: dict[str, dict[int, Result]] = {}
        for r in rows:
            by_impl.setdefault(r.impl, {})[r.seq_len] = r
        for impl, cells in by_impl.items():
            line = f"{impl:<22}" + "".join(
                f"{(cells[n].cell() if n in cells else '-'):>22}" for n in seq_lens)
            print(line)
    failures = [r for r in results if r.status not in ("ok", "OOM")]
    if failures:
        print("\nn/a cells:")
        for r in failures:
            print(f"  {r.impl} {r.mode} causal={r.causal} D={r.head_dim} N={r.seq_len}: {r.status}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true",
                        help="smoke-test sizes (N=32,64; D=32; B=1; H=2); required for --device cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--dtype", choices=list(DTYPES), default="bf16")
    parser.add_argument("--seq-lens", type=int, nargs="+",
                        default=[1024, 2048, 4096, 8192, 16384, 32768])
    parser.add_argument("--baseline-max-seq-len", type=int, default=16384,
                        help="baselines (compile/eager/SDPA) stop here; ours runs every N")
    parser.add_argument("--head-dims", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--variants", nargs="+", default=["magnitude", "phase"],
                        choices=["magnitude", "phase"])
    parser.add_argument("--impls", nargs="+", default=["triton", "compile", "eager", "sdpa"],
                        choices=["triton", "compile", "eager", "sdpa"])
    parser.add_argument("--modes", nargs="+", default=["fwd", "fwd_bwd"], choices=["fwd", "fwd_bwd"])
    parser.add_argument("--causal", nargs="+", default=["false", "true"], choices=["false", "true"])
    parser.add_argument("--out", help="write all results as JSON here")
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench.py: no CUDA GPU found. This is a GPU benchmark; for a CPU smoke run use\n"
              "  TRITON_INTERPRET=1 python kernels/bench.py --device cpu --tiny", file=sys.stderr)
        return 2
    if args.device == "cpu" and not args.tiny:
        print("bench.py: --device cpu only supports --tiny (the numbers are not meaningful)",
              file=sys.stderr)
        return 2
    if args.tiny:
        args.batch, args.heads, args.seq_lens, args.head_dims = 1, 2, [32, 64], [32]
        args.baseline_max_seq_len = 64
        if args.device == "cpu":
            args.dtype = "fp32"
            if os.environ.get("TRITON_INTERPRET") != "1" and "triton" in args.impls:
                print("bench.py: skipping 'triton' on CPU (set TRITON_INTERPRET=1 to include it)")
                args.impls = [i for i in args.impls if i != "triton"]
    dtype = DTYPES[args.dtype]

    impls: list[tuple[str, str]] = []  # (impl name, variant)
    for variant in args.variants:
        for kind in ("triton", "compile", "eager"):
            if kind in args.impls:
                impls.append((f"{kind}-{variant}", variant))
    if "sdpa" in args.impls:
        backends = SDPA_BACKENDS if args.device == "cuda" else ("math",)
        impls += [(f"sdpa-{bk}", "real") for bk in backends]

    if args.device == "cuda":
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, dtype {args.dtype}, "
              f"B={args.batch}, H={args.heads}")
    results: list[Result] = []
    for mode in args.modes:
        for causal in (c == "true" for c in args.causal):
            for d in args.head_dims:
                for impl, variant in impls:
                    oom_from = math.inf  # larger N after an OOM would OOM too: skip them
                    for n in args.seq_lens:
                        if not impl.startswith("triton") and n > args.baseline_max_seq_len:
                            continue
                        if n >= oom_from:
                            results.append(Result(impl, variant, mode, causal, d, n,
                                                  None, None, None, "OOM", args.device))
                            continue
                        r = bench_one(impl, variant, mode, causal, args.batch, args.heads, n, d,
                                      dtype, args.device)
                        if r.status == "OOM":
                            oom_from = n
                        results.append(r)
                        print(f"  {impl:<20} {mode:<8} causal={causal!s:<5} D={d:<4} N={n:<6} "
                              f"{r.cell() if r.status in ('ok', 'OOM') else r.status}",
                              flush=True)
    print_tables(results, args.seq_lens)
    if args.out:
        meta = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                "torch": torch.__version__, "dtype": args.dtype, "batch": args.batch,
                "heads": args.heads}
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "results": [asdict(r) for r in results]}, f, indent=1)
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
