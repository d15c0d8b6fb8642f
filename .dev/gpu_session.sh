#!/usr/bin/env bash
# The GPU measurements the open issues need, in few calls of the workplace's lent GPU machine.
# Nothing here runs in CI or on a user's cluster (users pip install the package as usual).
#
# Here, once (downloads the wheels the machine lacks into the git-ignored .whl/):
#   bash .dev/gpu_session.sh wheels
# Then one device call per stage (each well inside the 10-minute limit; carry .whl):
#   bash .dev/gpu_session.sh tests        # kernel, complex-layer, torch.compile and flash/sync tests, gpu marker included
#   bash .dev/gpu_session.sh kernels      # kernels/bench.py, N 1k..32k, D 64/128 (issue 4's table)
#   bash .dev/gpu_session.sh throughput   # pretrain/throughput.py, MAE-Base (issue 5's table)
#   bash .dev/gpu_session.sh pretrain     # Sionna data on the GPU + a short MAE-Tiny pretraining run
#   bash .dev/gpu_session.sh causal       # kernels/bench.py, causal only, ours vs SDPA (no compile baseline)
#   bash .dev/gpu_session.sh suite        # the whole test suite with CUDA visible, 15 xdist workers
#   bash .dev/gpu_session.sh configs      # each autotune config alone (wfm.kernels.config_check): which one crashes
# Several stages in one call: bash .dev/gpu_session.sh tests kernels
# Everything lands in $OUT (JSON + text); the readable tables are printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

# The packages the machine's image lacks (it has torch, triton, lightning, timm, h5py, safetensors).
WHEELS="jsonargparse==4.53.0 docstring_parser==0.18.0 typeshed_client==2.14.0 importlib_resources==7.1.0
        sionna-no-rt==2.2.0 gymnasium==1.4.0 Farama-Notifications==0.0.6 csiread==1.4.1
        torchdata==0.11.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19"

setup() {
  if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      || { echo "installing .whl failed"; exit 1; }
    export PYTHONPATH=$PYTHONPATH:/tmp/site
  fi
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } \
    | tee "$OUT/machine.txt"
}

stage_wheels() {
  # shellcheck disable=SC2086
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl $WHEELS
}

stage_tests() {
  # test_compile: torch.compile through the kernels' custom ops (compiled Triton, not the interpreter);
  # test_fast_paths: the causal step on FlashAttention only, with CUDA sync debug mode "error".
  timeout 540 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_complex_nn.py \
    tests/test_compile.py tests/test_fast_paths.py \
    2>&1 | tee "$OUT/tests.txt" | tail -25
}

stage_kernels() {
  timeout 560 python3 kernels/bench.py --seq-lens 1024 4096 16384 32768 --out "$OUT/kernels.json" \
    > "$OUT/kernels.txt" 2>&1
  echo "kernels/bench.py exit $?"; tail -n 80 "$OUT/kernels.txt"
}

stage_causal() {
  # Causal only, ours against SDPA's backends over the same tokens; the compile baseline's
  # autotuning would take most of a call (its non-causal ratios are in kernels/README.md).
  timeout 250 python3 kernels/bench.py --seq-lens 1024 4096 16384 --causal true --impls triton sdpa \
    --baseline-max-seq-len 16384 --out "$OUT/kernels-causal.json" > "$OUT/kernels-causal.txt" 2>&1
  echo "kernels/bench.py (causal) exit $?"; tail -n 60 "$OUT/kernels-causal.txt"
}

stage_suite() {
  # Every test, CUDA visible: the gpu-marked ones run, and the rest show that nothing breaks
  # where a GPU is present (tests needing ../shared skip: it does not travel).
  # SIGINT at the limit, so pytest still prints its summary of failures (a killed run prints none).
  OMP_NUM_THREADS=1 timeout -s INT 330 python3 -m pytest -q -n 15 -p no:cacheprovider -p no:benchmark \
    --timeout 200 -rfE --durations 12 tests 2>&1 | grep -v '^\.\.\.\.' | tee "$OUT/suite.txt" | tail -60
}

stage_configs() {
  # Session 41's illegal access (phase, fp32 inputs, TF32 dots, causal, N = 1024, D = 64): every
  # config of the three kernels alone, each in its own process, then bf16 at D = 128 (silent errors).
  timeout 200 python3 -m wfm.kernels.config_check --dtype fp32 --fp32-precision tf32 --variant phase --causal \
    --seq-len 1024 --head-dim 64 --timeout 60 --out "$OUT/configs-tf32.json" 2>&1 | tee "$OUT/configs.txt" | tail -20
  timeout 150 python3 -m wfm.kernels.config_check --dtype bf16 --variant phase --causal --seq-len 4096 \
    --head-dim 128 --timeout 60 --out "$OUT/configs-bf16.json" 2>&1 | tee -a "$OUT/configs.txt" | tail -20
}

stage_throughput() {
  timeout 560 python3 pretrain/throughput.py --out "$OUT/throughput.json" > "$OUT/throughput.txt" 2>&1
  echo "pretrain/throughput.py exit $?"; tail -n 20 "$OUT/throughput.txt"
}

stage_pretrain() {
  # The datasets of pretrain/mae.yaml (16 catalog + 14 WiFi-like recipes) x 512 samples and the
  # zero-shot sets, generated on the GPU, then MAE-Tiny for 5 minutes of bf16 training; the
  # exported model comes back in $OUT.
  export WFM_DATA=/tmp/wfm-data
  WFM="python3 -m wfm.cli" WFM_NUM_SAMPLES=512 WFM_GENERATE_ARGS="--device cuda --workers 4" \
    bash pretrain/data.sh pretrain/mae.yaml 2>> "$OUT/generate.txt" || echo "generate failed"
  for r in data/recipes/zs-*.yaml; do
    python3 -m wfm.cli data generate --recipe "$r" --out "$WFM_DATA/$(basename "$r" .yaml)" \
      --num-samples 256 --device cuda --workers 4 > /dev/null 2>> "$OUT/generate.txt" || echo "generate $r failed"
  done
  timeout 330 python3 -m wfm.cli pretrain --config pretrain/mae.yaml --config pretrain/mae-tiny.yaml --trainer.devices 1 \
    --trainer.max_time 00:00:05:00 --trainer.val_check_interval 500 --data.num_workers 4 \
    --trainer.enable_progress_bar false > "$OUT/pretrain.txt" 2>&1
  echo "pretrain exit $?"; tail -n 5 "$OUT/pretrain.txt"
  python3 -m wfm.cli export runs/mae-tiny/checkpoints/last.ckpt "$OUT/mae-tiny-gpu" && ls -la "$OUT/mae-tiny-gpu"
}

[[ $# -gt 0 ]] || { sed -n 2,13p "$0"; exit 2; }
[[ $1 == wheels ]] && { stage_wheels; exit; }
setup
for stage in "$@"; do
  echo "=== $stage"
  "stage_$stage"
done
