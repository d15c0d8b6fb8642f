#!/usr/bin/env bash
# Generate every dataset a pretraining config reads (each "${WFM_DATA}/NAME" it lists) from its
# recipe, data/recipes/NAME.yaml or data/recipes/wifi/NAME.yaml, with the recipe's own sample
# count (WFM_NUM_SAMPLES overrides it for all), two at a time. A dataset whose manifest.json exists
# is kept. WFM_DRY_RUN=1 prints the commands instead; WFM_GENERATE_ARGS adds arguments to each
# (e.g. "--device cuda --workers 4"); WFM is the command (default wfm; "python3 -m wfm.cli" works).
#   WFM_DATA=/path/to/data bash pretrain/data.sh pretrain/causal.yaml [more configs ...]
set -euo pipefail
cd "$(dirname "$0")/.."
: "${WFM_DATA:?set WFM_DATA to the data folder the configs read}"
[ $# -ge 1 ] || { echo "usage: WFM_DATA=DIR bash pretrain/data.sh CONFIG.yaml [CONFIG.yaml ...]" >&2; exit 2; }
WFM=${WFM:-wfm}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
names=$(grep -ho '\${WFM_DATA}/[A-Za-z0-9._-]*' "$@" | sed 's|.*/||' | awk '!seen[$0]++')
pids=()
for name in $names; do
  recipe=""
  for f in "data/recipes/$name.yaml" "data/recipes/wifi/$name.yaml"; do [ -f "$f" ] && recipe=$f && break; done
  [ -n "$recipe" ] || { echo "error: no recipe data/recipes/{,wifi/}$name.yaml for \${WFM_DATA}/$name" >&2; exit 2; }
  out="$WFM_DATA/$name"
  cmd=($WFM data generate --recipe "$recipe" --out "$out")  # $WFM split on purpose: "python3 -m wfm.cli"
  [ -z "${WFM_NUM_SAMPLES:-}" ] || cmd+=(--num-samples "$WFM_NUM_SAMPLES")
  [ -z "${WFM_GENERATE_ARGS:-}" ] || cmd+=(${WFM_GENERATE_ARGS})
  if [ "${WFM_DRY_RUN:-0}" = 1 ]; then echo "${cmd[*]}"; continue; fi
  if [ -e "$out/manifest.json" ]; then continue; fi
  "${cmd[@]}" > /dev/null &
  pids+=($!)
  if [ ${#pids[@]} -eq 2 ]; then for p in "${pids[@]}"; do wait "$p"; done; pids=(); fi  # a failure stops the script
done
for p in "${pids[@]}"; do wait "$p"; done
[ "${WFM_DRY_RUN:-0}" = 1 ] || echo "data for $* ready in $WFM_DATA"
