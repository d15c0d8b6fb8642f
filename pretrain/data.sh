#!/usr/bin/env bash
# Generate every dataset a pretraining config reads (each "${WFM_DATA}/NAME" it lists) from its
# recipe, data/recipes/NAME.yaml or data/recipes/wifi/NAME.yaml, with the recipe's own sample
# count (WFM_NUM_SAMPLES overrides it for all), two at a time. A dataset whose manifest.json exists
# is kept. WFM_DRY_RUN=1 prints the commands instead; WFM_GENERATE_ARGS adds arguments to each
# (e.g. "--device cuda --workers 4"); WFM is the command (default wfm; "python3 -m wfm.cli" works).
#   WFM_DATA=/path/to/data bash pretrain/data.sh pretrain/causal.yaml [more configs ...]
# Sourced, it only defines `generate RECIPE [NUM_SAMPLES]` and `finish` (causal-tiny-catalog-cpu-data.sh).
set -euo pipefail
: "${WFM_DATA:?set WFM_DATA to the data folder the configs read}"
WFM=${WFM:-wfm}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
pids=()

generate() {  # one dataset in the background, at most two at once; a failure stops the script
  local out="$WFM_DATA/$(basename "$1" .yaml)" n=${2:-${WFM_NUM_SAMPLES:-}}
  local cmd=($WFM data generate --recipe "$1" --out "$out")  # $WFM split on purpose: "python3 -m wfm.cli"
  [ -z "$n" ] || cmd+=(--num-samples "$n")
  [ -z "${WFM_GENERATE_ARGS:-}" ] || cmd+=(${WFM_GENERATE_ARGS})
  if [ "${WFM_DRY_RUN:-0}" = 1 ]; then echo "${cmd[*]}"; return 0; fi
  if [ -e "$out/manifest.json" ]; then return 0; fi
  "${cmd[@]}" > /dev/null &
  pids+=($!)
  if [ ${#pids[@]} -eq 2 ]; then finish; fi
}

finish() {
  for p in "${pids[@]}"; do wait "$p"; done
  pids=()
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  cd "$(dirname "$0")/.."
  [ $# -ge 1 ] || { echo "usage: WFM_DATA=DIR bash pretrain/data.sh CONFIG.yaml [CONFIG.yaml ...]" >&2; exit 2; }
  for name in $(grep -ho '\${WFM_DATA}/[A-Za-z0-9._-]*' "$@" | sed 's|.*/||' | awk '!seen[$0]++'); do
    recipe=""
    for f in "data/recipes/$name.yaml" "data/recipes/wifi/$name.yaml"; do [ -f "$f" ] && recipe=$f && break; done
    [ -n "$recipe" ] || { echo "error: no recipe data/recipes/{,wifi/}$name.yaml for \${WFM_DATA}/$name" >&2; exit 2; }
    generate "$recipe"
  done
  finish
  [ "${WFM_DRY_RUN:-0}" = 1 ] || echo "data for $* ready in $WFM_DATA"
fi
