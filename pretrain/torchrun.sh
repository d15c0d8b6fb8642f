#!/usr/bin/env bash
# Multi-node pretraining without SLURM: run this on every node (torchrun starts one process
# per GPU; Lightning reads torchrun's environment).
#
#   # node 0 (its address is MASTER_ADDR):
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 pretrain/torchrun.sh pretrain/mae.yaml --config pretrain/mae-base.yaml
#   # node 1:
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 pretrain/torchrun.sh pretrain/mae.yaml --config pretrain/mae-base.yaml
#
# Any CLI override may follow the config (a GPU size: its base config, then --config SIZE-OVERLAY). Re-running resumes from the last checkpoint.
set -euo pipefail

CONFIG=${1:?usage: pretrain/torchrun.sh CONFIG.yaml [overrides...]}
shift
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(nvidia-smi --list-gpus | wc -l)}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

torchrun --nnodes "$NNODES" --node-rank "$NODE_RANK" --nproc-per-node "$GPUS_PER_NODE" \
    --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \
    -m wfm.pretrain --config "$CONFIG" \
    --trainer.num_nodes "$NNODES" --trainer.devices "$GPUS_PER_NODE" \
    --ckpt_path last \
    "$@"
