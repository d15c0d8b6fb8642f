#!/usr/bin/env bash
# Generate every dataset the causal-tiny-catalog-cpu stages read (the base config and its overlays)
# into $WFM_DATA, with the sample counts of checkpoints.md; about 5 min on 2 cores, two at a time.
# A dataset whose manifest.json exists is kept. WFM_DRY_RUN=1 prints the commands instead.
#   WFM_DATA=/path/to/data bash pretrain/causal-tiny-catalog-cpu-data.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source pretrain/data.sh  # generate, finish (WFM_DATA, WFM, WFM_GENERATE_ARGS as there)
jobs=()
for f in data/recipes/{cdl,rma,tdl,uma,umi}-*.yaml; do jobs+=("$f 512"); done                 # 16 CSI catalog recipes
for f in data/recipes/wifi/wifi-{intel,ht20,ht40,nexmon}-*.yaml; do jobs+=("$f 2048"); done  # 5 WiFi-like impaired
for f in data/recipes/traj-{pedestrian,vehicular}.yaml; do jobs+=("$f 1024"); done
for f in data/recipes/traffic-{10min,hourly}.yaml; do jobs+=("$f 512"); done
for f in data/recipes/traffic-{1min,2min,5min,15min,10min-regimes,hourly-regimes}.yaml; do jobs+=("$f 256"); done
for f in data/recipes/wifi/wifi-static-*.yaml; do jobs+=("$f 1024"); done                    # from stage 2
for f in data/recipes/wifi/wifi-jitter-*.yaml; do jobs+=("$f 2048"); done                    # from stage 4
for f in data/recipes/wifi/wifi-still-*.yaml; do jobs+=("$f 1024"); done                     # the still stage
jobs+=("data/recipes/beam-street-60g.yaml 1024")                                           # the beam stage
for f in data/recipes/wifi/wifi-dips-*.yaml; do jobs+=("$f 2048"); done                      # the dips stage
jobs+=("data/recipes/process-textbook.yaml 2048")                                       # the process stage
jobs+=("data/recipes/process-textbook-csi.yaml 2048")                                   # the process stage at CSI intervals
for f in data/recipes/traffic-{2min,10min,15min}-spikes.yaml; do jobs+=("$f 256"); done      # the spikes stage
for f in data/recipes/traffic-{2min,10min,hourly}-shallow.yaml; do jobs+=("$f 256"); done    # the shallow stage
for j in "${jobs[@]}"; do generate $j; done
finish
[ "${WFM_DRY_RUN:-0}" = 1 ] || echo "causal-tiny-catalog-cpu data ready in $WFM_DATA"
