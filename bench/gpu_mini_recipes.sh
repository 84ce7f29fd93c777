#!/usr/bin/env bash
# Runs mini recipes through their own stages on a lent GPU machine (no network, torch
# installed, no espnet): the offline environment from carried wheels, espeak-ng and the
# Debian text index from carried files, then each recipe's run.sh with its GPU config.
#
#   bench/gpu_mini_recipes.sh <carry dir> <out dir> <recipe>... [-- <run.sh options>]
#
# <carry dir> holds wheels/ (bench/offline_wheels.sh), the .deb files of espeak-ng and its
# libraries (bench/gpu_carry.sh fetches them) and Debian's Translation-en index. Each
# recipe (e.g. mini_en/asr1) runs `./run.sh --ngpu 1 --gpu_inference true --train_config
# conf/train_gpu.yaml --expdir exp_gpu --results RESULTS_gpu.md` plus the options after
# `--`; its RESULTS_gpu.md, the
# training curves and the logs are copied to <out dir>/<corpus>_<task>/.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 <carry dir> <out dir> <recipe>... [-- options]" >&2; exit 1; }
. "$(dirname "$0")/gpu_recipe_env.sh" "$1"
out=$(mkdir -p "$2" && cd "$2" && pwd)
shift 2
recipes=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do recipes+=("$1"); shift; done
[ $# -eq 0 ] || shift

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "${out}/gpu.txt"
status=0
for recipe in "${recipes[@]}"; do
    name=$(echo "${recipe}" | tr '/' '_')
    mkdir -p "${out}/${name}"
    start=$(date +%s)
    (cd "${root}/egs2/${recipe}" && ./run.sh --ngpu 1 --gpu_inference true \
        --train_config conf/train_gpu.yaml --expdir exp_gpu --results RESULTS_gpu.md "$@") \
        > "${out}/${name}/run.log" 2>&1 || { status=1; echo "$0: ${recipe} failed" >&2; }
    echo "${recipe}: $(( $(date +%s) - start )) s" >> "${out}/times.txt"
    cp "${root}/egs2/${recipe}"/RESULTS_gpu.{md,png} "${out}/${name}/" 2>/dev/null || true
    copy_epoch_lines "${root}/egs2/${recipe}/exp_gpu" "${out}/${name}"
done
exit "${status}"
