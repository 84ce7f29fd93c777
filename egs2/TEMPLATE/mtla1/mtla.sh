#!/usr/bin/env bash
# The stages of an espnet2-mtla recipe, from raw data to RESULTS.md. A recipe's run.sh sets
# options and calls this script from its own folder (egs2/<corpus>/<task>/), which holds
# path.sh, cmd.sh, db.sh, local/data.sh and conf/. Every stage can be run alone
# (--stage N --stop_stage N) and re-run without harm: finished work is marked .done with a
# digest of what it was made from (input files and options), and is made again when they
# changed. Logs are never overwritten (an earlier train.log becomes train.log.1, ...).
#
#  1. data preparation          local/data.sh -> data/<set>
#  2. speed perturbation        --speed_perturb_factors "0.9 1.0 1.1" -> data/<train_set>_sp
#  3. audio formatting          flac/wav at --fs, segments cut -> dump/raw/org/<set>
#  4. length filtering          --min_wav_duration/--max_wav_duration (train, valid sets);
#                               with --feats_type ssl|fbank|fbank_zip, features stored once
#                               (dump/ssl: S3PRL ark; dump/fbank: Fbank ark + gcmvn.npz;
#                               dump/fbank_zip: fbank80.zip + gcmvn.npz)
#  5. token list                char, or sentencepiece BPE with --nbpe
#  6. statistics                espnet's collect_stats (shape files, feature statistics)
#  7. training                  one model per --attn_confs variant (conf/attention/<v>.yaml);
#                               --train_args win over the config (as asr.sh's --asr_args):
#                               --train_args "--max_epoch 120" continues a trained model
#  8. decoding                  --inference_nj jobs through $decode_cmd, merged; options from
#                               --inference_config (YAML, e.g. beam_size, ctc_weight) and
#                               --inference_args (which win)
#  9. scoring                   --task asr|st|slu|summ -> decode_<set>/score_*/result.txt
# 10. results                   RESULTS.md (+ RESULTS.png) comparing the variants
# 11. packing                   exp/packed/<tag>_<variant>.tar.gz: config, weights, tokens, README
#
# Checkpoint averaging is espnet's: training keeps the --keep_nbest_models best epochs by
# best_model_criterion and averages them into valid.acc.ave.pth (--inference_model).
set -euo pipefail

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (mtla.sh:${BASH_LINENO[0]}) $*" >&2; }

# --- options (change with --name value) -------------------------------------------------
stage=1; stop_stage=11
skip_data_prep=false; skip_train=false; skip_eval=false
local_data_opts=""
task=asr                      # asr | st | slu | summ: inputs and scoring
train_set=""; valid_set=""; test_sets=""
fs=16000; audio_format=flac   # flac | wav | ark (one Kaldi archive per set, read as kaldi_ark)
feats_type=raw                # raw (audio, features online) | ssl (S3PRL features stored as ark)
                              # | fbank (80-dim Kaldi Fbank stored as ark, + gcmvn.npz)
                              # | fbank_zip (the same in fbank80.zip, fairseq style)
ssl_conf=""                   # --feats_type ssl: the frontend fragment, e.g. ../../../conf/frontend/hubert.yaml
speed_perturb_factors=""
min_wav_duration=0.1; max_wav_duration=30
token_type=char; nbpe=500; task_tokens=""   # task_tokens: extra symbols, e.g. "<asr> <st>"
train_config=""               # the base training config; attention fragments are merged in
train_args=""                 # options of espnet2_mtla.bin.train that win over the config
                              # (not the model's: those need a new experiment, --tag)
attn_confs="mtla_s2"          # names of conf/attention/<name>.yaml in the top-level conf/
conf_dir=../../../conf
on_bad_audio=skip              # skip | error: unreadable/empty audio in stage 3 and decoding
ngpu=0; nj=4; inference_nj=4; gpu_inference=false
train_jobs=1                  # variants trained at once; on CPU they share --cpu_threads (two
                              # 1-thread trainings do ~1.3x the work of one 2-thread training);
                              # with --ngpu 1 they take the visible GPUs in turn
cpu_threads=$(nproc)          # torch threads of CPU training (--ngpu 0); path.sh sets 1
inference_config=""           # YAML of decoding options (e.g. conf/decode.yaml: beam_size,
                              # ctc_weight, batch_size); --inference_args win over it
inference_args=""
inference_model=valid.acc.ave.pth
expdir=exp; dumpdir=dump; tag=mtla
results=RESULTS.md            # stage 10's table (and its plot, .png beside it)
help_message="Usage: $0 --train_set <set> --valid_set <set> --test_sets '<set> ...' --train_config <yaml> [options]
(see the header of $0 for the stages; every variable above can be set as --name value)"

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
[ $# -eq 0 ] || { log "unexpected arguments: $*\n${help_message}"; exit 1; }
for name in train_set valid_set test_sets train_config; do
    [ -n "${!name}" ] || { log "--${name} is required\n${help_message}"; exit 1; }
done
case "${task}" in asr|st|slu|summ) ;; *) log "--task must be asr, st, slu or summ"; exit 1;; esac
case "${feats_type}" in
    raw) ;;
    ssl) [ -f "${ssl_conf}" ] || { log "--feats_type ssl needs --ssl_conf <frontend yaml> (got '${ssl_conf}')"; exit 1; } ;;
    fbank|fbank_zip) ;;
    *) log "--feats_type must be raw, ssl, fbank or fbank_zip, got ${feats_type}"; exit 1 ;;
esac
[ "${skip_data_prep}" = false ] || { [ "${stage}" -ge 6 ] || stage=6; }
if [ "${skip_train}" = true ]; then skip_train_stages="5 6 7"; else skip_train_stages=""; fi
if [ "${skip_eval}" = true ]; then skip_eval_stages="8 9 10"; else skip_eval_stages=""; fi
run_stage() {  # run_stage N: true if stage N is selected and not skipped
    [ "$1" -ge "${stage}" ] && [ "$1" -le "${stop_stage}" ] || return 1
    case " ${skip_train_stages} ${skip_eval_stages} " in *" $1 "*) return 1;; esac
    return 0
}
digest() {  # digest <dir> <options...>: sha256 of the dir's files (not audio) and options
    { find "$1" -maxdepth 1 -type f ! -name '.*' -print0 | LC_ALL=C sort -z \
        | xargs -0 -r sha256sum; echo "${*:2}"; } | sha256sum | cut -c1-16
}
up_to_date() {  # up_to_date <out dir> <digest>: finished from the same inputs and options
    [ -f "$1/.done" ] && [ "$(cat "$1/.done")" = "$2" ]
}
rotate() {  # rotate <file>: keep an earlier log as <file>.1, .2, ... (never overwritten)
    [ -e "$1" ] || return 0
    local n=1; while [ -e "$1.${n}" ]; do n=$((n + 1)); done
    mv "$1" "$1.${n}"
}
fail_with_log() {  # fail_with_log <log...>: the logs' last lines on the console, then exit
    local logfile
    for logfile in "$@"; do
        [ -f "${logfile}" ] || continue
        log "the last lines of ${logfile}:"; tail -n 15 "${logfile}" >&2
    done
    exit 1
}
with_progress() {  # with_progress <pattern> <log glob> <command...>: show matching log lines
    local pattern=$1 logs=$2; shift 2
    "$@" &
    local job=$! status=0
    # shellcheck disable=SC2086
    # the logs (a glob: expanded once the command has made them) followed until the command
    # ends; with several logs of different folders, each line says whose it is
    (sleep 2
     # shellcheck disable=SC2086
     set -- ${logs}
     local file label
     for file in "$@"; do
         label="    "
         [ $# -gt 1 ] && [ "$(dirname "$1")" != "$(dirname "$2")" ] \
             && label="    [$(basename "$(dirname "${file}")")] "
         tail -q -n +1 -F --pid="${job}" "${file}" 2>/dev/null \
             | grep --line-buffered -E "${pattern}" | sed -u "s|^|${label}|" >&2 &
     done
     wait) &
    local shower=$!
    wait "${job}" || status=$?
    sleep 1; kill "${shower}" 2>/dev/null || true; wait "${shower}" 2>/dev/null || true
    return "${status}"
}
token_list=data/token_list/${token_type}/tokens.txt
bpemodel=data/token_list/bpe/bpe.model
token_opts="--token_type ${token_type} --token_list ${token_list}"
[ "${token_type}" = bpe ] && token_opts+=" --bpemodel ${bpemodel}"
# the data a model reads: audio (or stored SSL features), and the text (the input source
# for summarisation)
dump_of() {  # dump_of <set>: the folder a model reads for this set
    case "${feats_type}" in
        raw) echo "${dumpdir}/raw/$1" ;;
        *) echo "${dumpdir}/${feats_type}/$1" ;;
    esac
}
input_of() {  # input_of <set>: path,name,type of the model input
    if [ "${task}" = summ ]; then echo "$(dump_of "$1")/src_text,src_text,text"
    elif [ "${feats_type}" = ssl ] || [ "${feats_type}" = fbank ]; then
        echo "$(dump_of "$1")/feats.scp,speech,kaldi_ark"
    elif [ "${feats_type}" = fbank_zip ]; then echo "$(dump_of "$1")/feats.scp,speech,zip_npy"
    elif [ "${audio_format}" = ark ]; then echo "$(dump_of "$1")/wav.scp,speech,kaldi_ark"
    else echo "$(dump_of "$1")/wav.scp,speech,sound"; fi
}
data_opts() {  # data_opts <mode> <set>
    echo "--$1_data_path_and_name_and_type $(input_of "$2") --$1_data_path_and_name_and_type $(dump_of "$2")/text,text,text"
}
feature_opts() {  # stored features: the model has no frontend, only their dimension
    [ "${feats_type}" = raw ] && return 0
    echo "--input_size $(cat "$(dump_of "${train_set}")/feats_dim")"
    # stored Fbank comes with the training set's global CMVN (fairseq style)
    [ "${feats_type}" = fbank ] || [ "${feats_type}" = fbank_zip ] && echo "--normalize global_mvn" \
        "--normalize_conf stats_file=$(dump_of "${train_set}")/gcmvn.npz"
    return 0
}
shape_of() { [ "${task}" = summ ] && echo src_text_shape || echo speech_shape; }

if run_stage 1; then
    log "stage 1: data preparation (local/data.sh ${local_data_opts})"
    # shellcheck disable=SC2086
    local/data.sh ${local_data_opts}
    # features are computed later (as in ESPnet's recipes); summarisation has text input only
    validate_opts="--no-feats"; [ "${task}" = summ ] && validate_opts="--no-feats --no-wav"
    for set in ${train_set} ${valid_set} ${test_sets}; do
        if [ -f "data/${set}/utt2spk" ] && [ ! -f "data/${set}/spk2utt" ]; then
            # Kaldi's data preparation writes it; a local/data.sh that does not gets it here
            log "stage 1: data/${set}/spk2utt missing: made from utt2spk"
            utils/utt2spk_to_spk2utt.pl "data/${set}/utt2spk" > "data/${set}/spk2utt"
        fi
        # shellcheck disable=SC2086
        utils/validate_data_dir.sh ${validate_opts} "data/${set}"
    done
fi

if [ -n "${speed_perturb_factors}" ]; then
    original_train_set=${train_set}
    train_set=${train_set}_sp  # later stages train on the perturbed copies
fi

if [ -n "${speed_perturb_factors}" ] && run_stage 2; then
    sp_digest=$(digest "data/${original_train_set}" "${speed_perturb_factors}")
    if up_to_date "data/${train_set}" "${sp_digest}"; then
        log "stage 2: data/${train_set} done already"
    else
        log "stage 2: speed perturbation of data/${original_train_set} by ${speed_perturb_factors}"
        parts=()
        for factor in ${speed_perturb_factors}; do
            part=data/${original_train_set}_sp${factor}
            rm -rf "${part}"
            if [ "$(awk -v f="${factor}" 'BEGIN { print (f == 1.0) }')" = 1 ]; then
                utils/copy_data_dir.sh "data/${original_train_set}" "${part}"
            else
                utils/perturb_data_dir_speed.sh "${factor}" "data/${original_train_set}" "${part}"
            fi
            parts+=("${part}")
        done
        rm -rf "data/${train_set}"
        utils/combine_data.sh "data/${train_set}" "${parts[@]}"
        rm -rf "${parts[@]}"
        echo "${sp_digest}" > "data/${train_set}/.done"
    fi
fi

if run_stage 3; then
    for set in ${train_set} ${valid_set} ${test_sets}; do
        out=${dumpdir}/raw/org/${set}
        made_from=$(digest "data/${set}" "${task} ${audio_format} ${fs} ${on_bad_audio}")
        if up_to_date "${out}" "${made_from}"; then
            log "stage 3: ${out} done already"; continue
        elif [ -f "${out}/.done" ]; then  # made from other files or options: made anew
            log "stage 3: data/${set} or the options changed since ${out} was made: remaking it"
            rm -rf "${out}"
        fi
        log "stage 3: formatting data/${set} -> ${out} (${audio_format}, ${fs} Hz)"
        if [ "${task}" = summ ]; then
            utils/copy_data_dir.sh "data/${set}" "${out}"
        else
            python -m espnet2_mtla.bin.format_audio --fs "${fs}" --audio_format "${audio_format}" \
                --on_bad_audio "${on_bad_audio}" "data/${set}" "${out}"
        fi
        echo "${made_from}" > "${out}/.done"
    done
fi

if run_stage 4; then
    # each set: its kept utterances (training and dev sets filtered by length) to
    # ${dumpdir}/raw/<set>, then its stored features (feats_type raw: none, the frontend
    # runs online)
    for set in ${train_set} ${valid_set} ${test_sets}; do
        org=${dumpdir}/raw/org/${set}; out=${dumpdir}/raw/${set}
        log "stage 4: ${org} -> ${out}"
        rm -rf "${out}"
        if [ "${task}" != summ ] && { [ "${set}" = "${train_set}" ] || [ "${set}" = "${valid_set}" ]; }; then
            awk -v fs="${fs}" -v lo="${min_wav_duration}" -v hi="${max_wav_duration}" \
                '$2 >= lo * fs && $2 <= hi * fs {print $1}' "${org}/utt2num_samples" > "${org}/kept_by_length"
            utils/subset_data_dir.sh --utt-list "${org}/kept_by_length" "${org}" "${out}"
            log "stage 4: kept $(wc -l < "${out}/text") of $(wc -l < "${org}/text") utterances of ${set}"
        else
            utils/copy_data_dir.sh "${org}" "${out}"
        fi
        case "${feats_type}" in
        ssl)
            log "stage 4: SSL features of ${out} -> $(dump_of "${set}") (${ssl_conf})"
            python -m espnet2_mtla.bin.extract_ssl_feats --frontend_config "${ssl_conf}" \
                --data_dir "${out}" --out_dir "$(dump_of "${set}")" --fs "${fs}"
            ;;
        fbank|fbank_zip)
            archive=zip; [ "${feats_type}" = fbank ] && archive=ark
            gcmvn=""; [ "${set}" = "${train_set}" ] && gcmvn="--gcmvn"
            made_from=$(digest "${out}" "${archive} ${fs} ${gcmvn}" "$(cat "${org}/.done" 2>/dev/null)")
            if [ -f "$(dump_of "${set}")/.done" ] && ! up_to_date "$(dump_of "${set}")" "${made_from}"; then
                log "stage 4: ${out} changed since $(dump_of "${set}") was made: remaking it"
                rm -rf "$(dump_of "${set}")"
            fi
            log "stage 4: Fbank (${archive}) of ${out} -> $(dump_of "${set}")"
            # shellcheck disable=SC2086
            python -m espnet2_mtla.bin.write_fbank --data_dir "${out}" \
                --out_dir "$(dump_of "${set}")" --fs "${fs}" --archive "${archive}" ${gcmvn}
            echo "${made_from}" > "$(dump_of "${set}")/.done"
            ;;
        esac
    done
fi

if run_stage 5; then
    log "stage 5: token list ${token_list}"
    mkdir -p "$(dirname "${token_list}")"
    # the text the tokens are learnt from: targets, and for summarisation the documents too
    token_text=$(dirname "${token_list}")/train_text
    cat "${dumpdir}/raw/${train_set}/text" > "${token_text}"
    [ "${task}" = summ ] && cat "${dumpdir}/raw/${train_set}/src_text" >> "${token_text}"
    # task tokens join the list as extra symbols; sentencepiece also keeps them whole, and
    # for slu every intent label too (those occur in the text, so they enter the list there)
    symbols=${task_tokens}
    if [ "${task}" = slu ] && [ "${token_type}" = bpe ]; then
        symbols+=" $(cut -d ' ' -f 2 "${dumpdir}/raw/${train_set}/text" | sort -u | tr '\n' ' ')"
    fi
    extra=""
    for symbol in ${task_tokens}; do extra+=" --add_symbol ${symbol}:-1"; done
    if [ "${token_type}" = bpe ]; then
        mkdir -p "$(dirname "${bpemodel}")"
        cut -f 2- -d " " "${token_text}" > "$(dirname "${bpemodel}")/train.txt"
        python -m espnet2_mtla.bin.spm_train --input="$(dirname "${bpemodel}")/train.txt" \
            --model_prefix="${bpemodel%.model}" --vocab_size="${nbpe}" --character_coverage=1.0 \
            --model_type=unigram ${symbols:+--user_defined_symbols=$(echo ${symbols} | tr ' ' ',')}
    fi
    # shellcheck disable=SC2086
    python -m espnet2_mtla.bin.tokenize_text --token_type "${token_type}" --field 2- \
        --input "${token_text}" --output "${token_list}" \
        $( [ "${token_type}" = bpe ] && echo "--bpemodel ${bpemodel}" ) \
        --write_vocabulary true --add_symbol "<blank>:0" --add_symbol "<unk>:1" \
        ${extra} --add_symbol "<sos/eos>:-1"
fi

if run_stage 6; then
    log "stage 6: statistics -> ${expdir}/stats"
    for set in ${train_set} ${valid_set}; do
        [ -f "$(dump_of "${set}")/text" ] || { log "stage 6: $(dump_of "${set}")/text is missing: run stages 3-4 first"; exit 1; }
    done
    [ -f "${token_list}" ] || { log "stage 6: ${token_list} is missing: run stage 5 first"; exit 1; }
    rotate "${expdir}/stats/logdir/stats.log"
    # shellcheck disable=SC2046,SC2086
    ${train_cmd} "${expdir}/stats/logdir/stats.log" \
        python -m espnet2_mtla.bin.train --collect_stats true --config "${train_config}" \
        ${token_opts} $(data_opts train "${train_set}") $(data_opts valid "${valid_set}") \
        $(feature_opts) --train_shape_file "$(dump_of "${train_set}")/text" \
        --valid_shape_file "$(dump_of "${valid_set}")/text" --output_dir "${expdir}/stats" \
        || fail_with_log "${expdir}/stats/logdir/stats.log"
fi

exp_of() { echo "${expdir}/${tag}_$1"; }

if run_stage 7; then
    # every variant is checked before any trains: fragments exist, inputs are there
    for variant in ${attn_confs}; do
        fragment=${conf_dir}/attention/${variant}.yaml
        [ -f "${fragment}" ] || { log "stage 7: --attn_confs ${variant}: no attention fragment ${fragment} (have: $(cd "${conf_dir}/attention" && ls -- *.yaml | sed 's/\.yaml$//' | tr '\n' ' '))"; exit 1; }
    done
    for needed in "${token_list}" "${expdir}/stats/train/$(shape_of)" "${expdir}/stats/valid/$(shape_of)" \
            "$(dump_of "${train_set}")/text" "$(dump_of "${valid_set}")/text"; do
        [ -f "${needed}" ] || { log "stage 7: ${needed} is missing: run the stages before 7 first (--stage 1, or the stage that makes it)"; exit 1; }
    done
    [ "${train_jobs}" -ge 1 ] 2>/dev/null || { log "--train_jobs must be a positive number, got '${train_jobs}'"; exit 1; }
    for variant in ${attn_confs}; do
        exp=$(exp_of "${variant}")
        fragment=${conf_dir}/attention/${variant}.yaml
        mkdir -p "${exp}"
        python -m espnet2_mtla.bin.merge_config "${train_config}" "${fragment}" -o "${exp}/train.yaml.new"
        # an experiment that holds weights keeps its config: a changed one is refused
        if [ -f "${exp}/train.yaml" ] && ! cmp -s "${exp}/train.yaml" "${exp}/train.yaml.new" \
                && compgen -G "${exp}/*.pth" > /dev/null; then
            log "stage 7: ${train_config} + ${fragment} differ from ${exp}/train.yaml, which ${exp}'s weights were trained with:"
            diff "${exp}/train.yaml" "${exp}/train.yaml.new" >&2 || true
            log "train a new experiment with --tag <name> (-> ${expdir}/<name>_${variant}), or remove ${exp} to start it anew"
            rm -f "${exp}/train.yaml.new"; exit 1
        fi
        mv "${exp}/train.yaml.new" "${exp}/train.yaml"
    done
    # with --ngpu 1 on this machine (run.pl), the variants trained at once take the visible
    # GPUs in turn; a scheduler (slurm.pl) gives each job its own
    gpus=()
    if [ "${ngpu}" -eq 1 ] && [[ "${train_cmd}" == *run.pl* ]]; then
        if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then IFS=, read -r -a gpus <<< "${CUDA_VISIBLE_DEVICES}"
        elif command -v nvidia-smi > /dev/null; then
            mapfile -t gpus < <(nvidia-smi --query-gpu=index --format=csv,noheader 2> /dev/null || true)
        fi
    fi
    train_one() {  # train_one <variant> <threads> <job number>
        local exp; exp=$(exp_of "$1")
        # (a subshell: the GPU chosen is this job's alone; unset stays unset, not empty)
        [ "${#gpus[@]}" -gt 1 ] && export CUDA_VISIBLE_DEVICES=${gpus[$(( $3 % ${#gpus[@]} ))]// /}
        # shellcheck disable=SC2046,SC2086
        OMP_NUM_THREADS=$2 ${train_cmd} --gpu "${ngpu}" "${exp}/train.log" \
            python -m espnet2_mtla.bin.train --config "${exp}/train.yaml" ${token_opts} \
            $(data_opts train "${train_set}") $(data_opts valid "${valid_set}") $(feature_opts) \
            --train_shape_file "${expdir}/stats/train/$(shape_of)" \
            --valid_shape_file "${expdir}/stats/valid/$(shape_of)" \
            --resume true --ngpu "${ngpu}" --output_dir "${exp}" ${train_args} \
            || { log "stage 7: training ${exp} failed"; return 1; }
    }
    train_together() {  # train_together <threads> <variant>...: in parallel, all waited for
        local threads=$1 pids=() status=0 pid job=0; shift
        for variant in "$@"; do
            train_one "${variant}" "${threads}" "${job}" & pids+=("$!"); job=$((job + 1))
        done
        for pid in "${pids[@]}"; do wait "${pid}" || status=1; done
        return "${status}"
    }
    read -r -a variants <<< "${attn_confs}"
    for ((first = 0; first < ${#variants[@]}; first += train_jobs)); do
        group=("${variants[@]:first:train_jobs}")
        threads=1; [ "${ngpu}" -eq 0 ] && threads=$(( cpu_threads / ${#group[@]} > 0 ? cpu_threads / ${#group[@]} : 1 ))
        logs=()
        for variant in "${group[@]}"; do
            rotate "$(exp_of "${variant}")/train.log"; logs+=("$(exp_of "${variant}")/train.log")
        done
        where="${threads} CPU thread(s) each"
        [ "${ngpu}" -ge 1 ] && where="GPUs: ${gpus[*]:-as visible}"
        log "stage 7: training $(for v in "${group[@]}"; do printf '%s ' "$(exp_of "${v}")"; done)(logs: */train.log; ${where})"
        with_progress "epoch results|[0-9]+epoch:.*iter|Error|error:" "${logs[*]}" \
            train_together "${threads}" "${group[@]}" \
            || fail_with_log "${logs[@]}"
    done
fi

if run_stage 8; then
    [ -z "${inference_config}" ] || [ -f "${inference_config}" ] || { log "stage 8: --inference_config ${inference_config} does not exist"; exit 1; }
    for variant in ${attn_confs}; do
        exp=$(exp_of "${variant}")
        [ -f "${exp}/${inference_model}" ] || { log "stage 8: ${exp}/${inference_model} is missing: train first (stage 7)"; exit 1; }
        for set in ${test_sets}; do
            decode=${exp}/decode_${set}
            logdir=${decode}/logdir
            mkdir -p "${logdir}"
            input=$(input_of "${set}")
            count=$(wc -l < "$(dump_of "${set}")/text")
            jobs=$(( inference_nj < count ? inference_nj : count ))
            # nothing of an earlier decode stays: merged results, scores, outputs of jobs
            # beyond this split; each job empties its own output unless it finished this
            # very run (--skip_done: same model, config, options and keys)
            rm -rf "${decode}"/*best_recog "${decode}"/score_* "${decode}/efficiency.json" \
                "${decode}/skipped" "${logdir}"/keys.*
            for old in "${logdir}"/output.*; do
                [ -e "${old}" ] || continue
                [ "${old##*.}" -le "${jobs}" ] 2>/dev/null || rm -rf "${old}"
            done
            for logfile in "${logdir}"/decode.*.log; do [ -e "${logfile}" ] && rotate "${logfile}"; done
            utils/split_scp.pl "$(dump_of "${set}")/text" \
                $(for j in $(seq "${jobs}"); do echo "${logdir}/keys.${j}"; done)
            gpu_opts=""
            [ "${gpu_inference}" = true ] && gpu_opts="--gpu 1"
            log "stage 8: decoding ${set} (${count} utterances) with ${exp} in ${jobs} jobs (logs: ${logdir})"
            # shellcheck disable=SC2086
            with_progress "decoded [0-9]+/|skipping|kept|Error|error:" "${logdir}/decode.*.log" \
                ${decode_cmd} ${gpu_opts} JOB=1:"${jobs}" "${logdir}/decode.JOB.log" \
                python -m espnet2_mtla.bin.inference --train_config "${exp}/config.yaml" \
                --model_file "${exp}/${inference_model}" --data_path_and_name_and_type "${input}" \
                --key_file "${logdir}/keys.JOB" --output_dir "${logdir}/output.JOB" \
                --on_bad_audio "${on_bad_audio}" --skip_done true \
                --ngpu $([ "${gpu_inference}" = true ] && echo 1 || echo 0) \
                ${inference_config:+--config "${inference_config}"} ${inference_args} \
                || fail_with_log "${logdir}"/decode.*.log
            python -m espnet2_mtla.bin.merge_decodes --out "${decode}" \
                $(for j in $(seq "${jobs}"); do echo "${logdir}/output.${j}"; done)
        done
    done
fi

if run_stage 9; then
    for variant in ${attn_confs}; do
        for set in ${test_sets}; do
            decode=$(exp_of "${variant}")/decode_${set}
            log "stage 9: scoring ${decode}"
            python -m espnet2_mtla.bin.score --task "${task}" --ref "${dumpdir}/raw/${set}/text" \
                --hyp "${decode}/1best_recog/text" --out_dir "${decode}"
        done
    done
fi

if run_stage 10; then
    # every variant decoded under ${expdir}, not only this run's --attn_confs
    experiments=()
    for exp in "${expdir}/${tag}"_*; do
        compgen -G "${exp}/decode_*/efficiency.json" > /dev/null && experiments+=("${exp}")
    done
    [ "${#experiments[@]}" -gt 0 ] || { log "stage 10: no decoded experiment under ${expdir}: run stage 8 first"; exit 1; }
    log "stage 10: ${results} of ${experiments[*]}"
    python -m espnet2_mtla.bin.collect_results --out "${results}" "${experiments[@]}"
fi
if run_stage 11; then
    for variant in ${attn_confs}; do
        exp=$(exp_of "${variant}")
        log "stage 11: packing ${exp} -> ${expdir}/packed/$(basename "${exp}").tar.gz"
        python -m espnet2_mtla.bin.pack_model --exp_dir "${exp}" --model_file "${inference_model}" \
            --out "${expdir}/packed/$(basename "${exp}").tar.gz"
    done
fi
log "finished stages ${stage}..${stop_stage}"
