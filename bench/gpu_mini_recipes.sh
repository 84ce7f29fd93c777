#!/usr/bin/env bash
# Runs mini recipes through their own stages on a lent GPU machine (no network, torch
# installed, no espnet): the offline environment from carried wheels, espeak-ng and the
# Debian text index from carried files, then each recipe's run.sh with its GPU config.
#
#   bench/gpu_mini_recipes.sh <carry dir> <out dir> <recipe>... [-- <run.sh options>]
#
# <carry dir> is what bench/gpu_carry.sh assembles (wheels, espeak-ng, Debian's text
# index, mini_en_de's German catalogs). The recipes (e.g. mini_en/asr1) run at once,
# each `./run.sh --ngpu 1 --gpu_inference true --train_config conf/train_gpu.yaml --expdir
# exp_gpu --results RESULTS_gpu.md` plus the options after `--` (the variants a recipe
# trains at once take the GPUs in turn: --train_jobs); each builds its data with its share
# of the cores (--jobs) and its run.sh's --local_data_opts, or those in its
# conf/local_data_opts_gpu.txt where a GPU run needs more data than the CPU's minutes
# allow (mini_en_de: 7,000 pairs of 45 packages' catalogs). Its RESULTS_gpu.md, the
# per-epoch lines and the log go to <out dir>/<corpus>_<task>/, the epoch lines also every
# minute while it trains (what a run cut short has done still comes back).
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,14p "$0" >&2; exit 1; }
. "$(dirname "$0")/gpu_recipe_env.sh" "$1"
out=$(mkdir -p "$2" && cd "$2" && pwd)
shift 2
recipes=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do recipes+=("$1"); shift; done
[ $# -eq 0 ] || shift
[ "${#recipes[@]}" -gt 0 ] || { echo "$0: no recipe given" >&2; exit 1; }
data_jobs=$(( $(nproc) / ${#recipes[@]} > 0 ? $(nproc) / ${#recipes[@]} : 1 ))

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "${out}/gpu.txt"
run_recipe() {  # run_recipe <recipe> <run.sh options...>
    local recipe=$1 name dir data_opts start status=0; shift
    name=$(echo "${recipe}" | tr '/' '_'); dir=${root}/egs2/${recipe}
    mkdir -p "${out}/${name}"
    if [ -f "${dir}/conf/local_data_opts_gpu.txt" ]; then
        data_opts=$(cat "${dir}/conf/local_data_opts_gpu.txt")
    else
        data_opts=$(run_sh_option "${dir}" local_data_opts)
    fi
    (while sleep 60; do copy_epoch_lines "${dir}/exp_gpu" "${out}/${name}"; done) &
    local watcher=$!
    start=$(date +%s)
    (cd "${dir}" && ./run.sh --ngpu 1 --gpu_inference true --train_config conf/train_gpu.yaml \
        --expdir exp_gpu --results RESULTS_gpu.md --local_data_opts "${data_opts} --jobs ${data_jobs}" "$@") \
        > "${out}/${name}/run.log" 2>&1 || { status=1; echo "$0: ${recipe} failed" >&2; }
    kill "${watcher}" 2> /dev/null || true
    echo "${recipe}: $(( $(date +%s) - start )) s" >> "${out}/times.txt"
    cp "${dir}"/RESULTS_gpu.{md,png} "${out}/${name}/" 2>/dev/null || true
    copy_epoch_lines "${dir}/exp_gpu" "${out}/${name}"
    return "${status}"
}
pids=()
for recipe in "${recipes[@]}"; do run_recipe "${recipe}" "$@" & pids+=("$!"); done
status=0
for pid in "${pids[@]}"; do wait "${pid}" || status=1; done
exit "${status}"
