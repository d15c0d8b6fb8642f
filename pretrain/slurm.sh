#!/usr/bin/env bash
# Multi-node pretraining under SLURM: one task per GPU, Lightning reads the SLURM environment.
#
#   sbatch pretrain/slurm.sh pretrain/mae.yaml --config pretrain/mae-base.yaml   # 2 nodes x 8 GPUs (below)
#   sbatch --nodes 4 --ntasks-per-node 4 --gpus-per-node 4 pretrain/slurm.sh pretrain/mae.yaml --config pretrain/mae-large.yaml \
#       --data.init_args.datasets '[/scratch/csi/a, /scratch/csi/b]'   # any CLI override after the config
#
# (a GPU size is its base config plus the size overlay as the first override.)
# Re-submitting the same command resumes from runs/<name>/checkpoints/last.ckpt (--ckpt_path last
# starts from scratch, with a warning, when there is none yet). On preemption/time-out SLURM
# sends SIGUSR1 90 s early; Lightning then saves a checkpoint and requeues the job (--requeue).
#SBATCH --job-name=wfm-pretrain
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8          # must equal the GPUs per node: one process per GPU
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=10           # DataLoader workers (data.num_workers) + 1
#SBATCH --mem=0
#SBATCH --time=24:00:00
#SBATCH --signal=SIGUSR1@90
#SBATCH --requeue
#SBATCH --output=runs/slurm-%j.out
set -euo pipefail

CONFIG=${1:?usage: sbatch pretrain/slurm.sh CONFIG.yaml [overrides...]}
shift

# Optional: activate the environment that has wfm installed, e.g.
#   source .venv/bin/activate
export WFM_DATA=${WFM_DATA:-$HOME/.cache/wfm/data}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# NCCL picks the fastest transport itself; uncomment to debug hangs:
# export NCCL_DEBUG=INFO

srun --kill-on-bad-exit=1 wfm pretrain --config "$CONFIG" \
    --trainer.num_nodes "$SLURM_NNODES" \
    --trainer.devices "$SLURM_NTASKS_PER_NODE" \
    --ckpt_path last \
    "$@"
