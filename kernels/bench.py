"""Benchmark complex attention: fused Triton kernels vs PyTorch baselines (wfm.kernels.bench).

    python kernels/bench.py                         # full GPU sweep (long)
    python kernels/bench.py --seq-lens 4096 --head-dims 64 --out results.json
    TRITON_INTERPRET=1 python kernels/bench.py --device cpu --tiny   # CPU smoke run
"""

import sys

from wfm.kernels.bench import main

if __name__ == "__main__":
    sys.exit(main())
