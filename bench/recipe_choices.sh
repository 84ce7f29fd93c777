#!/usr/bin/env bash
# Compares set-ups of one recipe on the dev set, all at once on a lent GPU machine: each
# set-up runs in its own copy of the recipe (egs2/<recipe>_<name>, its own data/ dump/ exp/)
# through stages 1-10 with the test sets replaced by the dev set, so choices are made
# without looking at the test set.
#
#   bench/recipe_choices.sh <carry dir> <out dir> <recipe> '<name>|<local_data_opts>|<config overrides>|<run.sh options>'...
#
# <config overrides>: top-level `key=value` pairs (separated by ';', values as YAML) applied
# to the recipe's conf/train.yaml, e.g. 'max_epoch=3;frontend_conf={n_mels: 80}'. Example:
#   bench/recipe_choices.sh .gpu /tmp/out mini_en/asr1 \
#       'base|--num_train 4000 --num_dev 150 --num_test 200||' \
#       'more|--num_train 4000 --num_dev 150 --num_test 200 --more_voices||'
# Each set-up's RESULTS.md (dev scores), per-epoch lines and configs go to <out dir>/<name>/.
# The data of each distinct <local_data_opts> is built once, before the set-ups start (with
# all cores), and each set-up that asks for it gets a copy of its data/ (the audio shared).
set -euo pipefail
[ $# -ge 4 ] || { sed -n 2,14p "$0" >&2; exit 1; }
. "$(dirname "$0")/gpu_recipe_env.sh" "$1"
out=$(mkdir -p "$2" && cd "$2" && pwd)
recipe=$3
shift 3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "${out}/gpu.txt" 2>/dev/null || true
valid_set=$(run_sh_option "${root}/egs2/${recipe}" valid_set)

data_dir_for() {  # data_dir_for <local_data_opts>: the recipe copy that holds its data/
    echo "${root}/egs2/${recipe}_data_$(echo "$1" | md5sum | cut -c1-10)"
}

build_data() {  # build_data <local_data_opts>: stage 1 once per distinct option set
    local dir; dir=$(data_dir_for "$1")
    [ -f "${dir}/data/.done" ] && return 0
    rm -rf "${dir}"; cp -a "${root}/egs2/${recipe}" "${dir}"
    rm -rf "${dir}"/{data,dump,exp}
    # shellcheck disable=SC2086
    (cd "${dir}" && ./run.sh --stage 1 --stop_stage 1 --local_data_opts "$1 --jobs $(nproc)") \
        > "${out}/data_$(basename "${dir}").log" 2>&1
}

run_one() {  # run_one <spec>
    local name data_opts overrides options dir shared entry
    IFS='|' read -r name data_opts overrides options <<< "$1"
    dir=${root}/egs2/${recipe}_${name}
    rm -rf "${dir}"; cp -a "${root}/egs2/${recipe}" "${dir}"
    rm -rf "${dir}"/{data,dump,exp,RESULTS.md,RESULTS.png}
    shared=$(data_dir_for "${data_opts}")/data
    mkdir "${dir}/data"
    for entry in "${shared}"/* "${shared}"/.done; do
        # data/local holds the audio, which wav.scp names by its path in the shared copy
        if [ "$(basename "${entry}")" = local ]; then ln -s "${entry}" "${dir}/data/local"
        else cp -a "${entry}" "${dir}/data/"; fi
    done
    "${root}/tools/venv/bin/python" - "${dir}/conf/train.yaml" "${overrides}" <<'PY'
import sys, yaml
path, overrides = sys.argv[1], sys.argv[2]
config = yaml.safe_load(open(path))
for pair in filter(None, overrides.split(";")):
    key, value = pair.split("=", 1)
    config[key.strip()] = yaml.safe_load(value)
yaml.safe_dump(config, open(path, "w"), sort_keys=False)
PY
    mkdir -p "${out}/${name}"
    local start; start=$(date +%s)
    # shellcheck disable=SC2086
    (cd "${dir}" && ./run.sh --ngpu 1 --gpu_inference true --nj 4 --inference_nj 1 \
        --local_data_opts "${data_opts} --jobs $(nproc)" --test_sets "${valid_set}" --stop_stage 10 ${options}) \
        > "${out}/${name}/run.log" 2>&1 || echo "${name} failed" >> "${out}/${name}/run.log"
    echo "${name}: $(( $(date +%s) - start )) s" >> "${out}/times.txt"
    cp "${dir}"/RESULTS.md "${dir}/conf/train.yaml" "${out}/${name}/" 2>/dev/null || true
    copy_epoch_lines "${dir}/exp" "${out}/${name}"
}

for spec in "$@"; do
    IFS='|' read -r _ data_opts _ <<< "${spec}"
    build_data "${data_opts}"
done
for spec in "$@"; do run_one "${spec}" & done
wait
