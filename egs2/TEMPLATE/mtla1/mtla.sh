#!/usr/bin/env bash
# The stages of an espnet2-mtla recipe, from raw data to RESULTS.md. A recipe's run.sh sets
# options and calls this script from its own folder (egs2/<corpus>/<task>/), which holds
# path.sh, cmd.sh, db.sh, local/data.sh and conf/. Every stage can be run alone
# (--stage N --stop_stage N) and re-run without harm: finished work is marked .done.
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
#  7. training                  one model per --attn_confs variant (conf/attention/<v>.yaml)
#  8. decoding                  --inference_nj jobs through $decode_cmd, merged
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
attn_confs="mtla_s2"          # names of conf/attention/<name>.yaml in the top-level conf/
conf_dir=../../../conf
ngpu=0; nj=4; inference_nj=4; gpu_inference=false
cpu_threads=$(nproc)          # torch threads of CPU training (--ngpu 0); path.sh sets 1
inference_args="--beam_size 5"
inference_model=valid.acc.ave.pth
expdir=exp; dumpdir=dump; tag=mtla
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
    validate_opts=""; [ "${task}" = summ ] && validate_opts="--no-wav"  # text input only
    for set in ${train_set} ${valid_set} ${test_sets}; do
        # shellcheck disable=SC2086
        utils/validate_data_dir.sh ${validate_opts} "data/${set}"
    done
fi

if [ -n "${speed_perturb_factors}" ]; then
    original_train_set=${train_set}
    train_set=${train_set}_sp  # later stages train on the perturbed copies
fi

if [ -n "${speed_perturb_factors}" ] && run_stage 2; then
    if [ -f "data/${train_set}/.done" ]; then
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
        touch "data/${train_set}/.done"
    fi
fi

if run_stage 3; then
    for set in ${train_set} ${valid_set} ${test_sets}; do
        out=${dumpdir}/raw/org/${set}
        [ -f "${out}/.done" ] && { log "stage 3: ${out} done already"; continue; }
        log "stage 3: formatting data/${set} -> ${out} (${audio_format}, ${fs} Hz)"
        if [ "${task}" = summ ]; then
            utils/copy_data_dir.sh "data/${set}" "${out}"
        else
            python -m espnet2_mtla.bin.format_audio --fs "${fs}" --audio_format "${audio_format}" \
                "data/${set}" "${out}"
        fi
        touch "${out}/.done"
    done
fi

if run_stage 4; then
    for set in ${train_set} ${valid_set} ${test_sets}; do
        out=${dumpdir}/raw/${set}
        log "stage 4: ${dumpdir}/raw/org/${set} -> ${out}"
        rm -rf "${out}"
        if [ "${task}" != summ ] && { [ "${set}" = "${train_set}" ] || [ "${set}" = "${valid_set}" ]; }; then
            awk -v fs="${fs}" -v lo="${min_wav_duration}" -v hi="${max_wav_duration}" \
                '$2 >= lo * fs && $2 <= hi * fs {print $1}' \
                "${dumpdir}/raw/org/${set}/utt2num_samples" > "${dumpdir}/raw/org/${set}/kept_by_length"
            utils/subset_data_dir.sh --utt-list "${dumpdir}/raw/org/${set}/kept_by_length" \
                "${dumpdir}/raw/org/${set}" "${out}"
            log "stage 4: kept $(wc -l < "${out}/text") of $(wc -l < "${dumpdir}/raw/org/${set}/text") utterances of ${set}"
        else
            utils/copy_data_dir.sh "${dumpdir}/raw/org/${set}" "${out}"
        fi
    done
fi

if [ "${feats_type}" = ssl ] && run_stage 4; then
    for set in ${train_set} ${valid_set} ${test_sets}; do
        log "stage 4: SSL features of ${dumpdir}/raw/${set} -> $(dump_of "${set}") (${ssl_conf})"
        python -m espnet2_mtla.bin.extract_ssl_feats --frontend_config "${ssl_conf}" \
            --data_dir "${dumpdir}/raw/${set}" --out_dir "$(dump_of "${set}")" --fs "${fs}"
    done
fi

if { [ "${feats_type}" = fbank ] || [ "${feats_type}" = fbank_zip ]; } && run_stage 4; then
    archive=zip; [ "${feats_type}" = fbank ] && archive=ark
    for set in ${train_set} ${valid_set} ${test_sets}; do
        gcmvn=""; [ "${set}" = "${train_set}" ] && gcmvn="--gcmvn"
        log "stage 4: Fbank (${archive}) of ${dumpdir}/raw/${set} -> $(dump_of "${set}")"
        # shellcheck disable=SC2086
        python -m espnet2_mtla.bin.write_fbank --data_dir "${dumpdir}/raw/${set}" \
            --out_dir "$(dump_of "${set}")" --fs "${fs}" --archive "${archive}" ${gcmvn}
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
        python - "$(dirname "${bpemodel}")/train.txt" "${bpemodel%.model}" "${nbpe}" "${symbols}" <<'PY'
import sys
import sentencepiece
text, prefix, size, symbols = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split()
sentencepiece.SentencePieceTrainer.train(input=text, model_prefix=prefix, vocab_size=size,
    character_coverage=1.0, model_type="unigram", user_defined_symbols=symbols or None)
PY
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
    # shellcheck disable=SC2046,SC2086
    ${train_cmd} "${expdir}/stats/logdir/stats.log" \
        python -m espnet2_mtla.bin.train --collect_stats true --config "${train_config}" \
        ${token_opts} $(data_opts train "${train_set}") $(data_opts valid "${valid_set}") \
        $(feature_opts) --train_shape_file "$(dump_of "${train_set}")/text" \
        --valid_shape_file "$(dump_of "${valid_set}")/text" --output_dir "${expdir}/stats"
fi

exp_of() { echo "${expdir}/${tag}_$1"; }

if run_stage 7; then
    for variant in ${attn_confs}; do
        exp=$(exp_of "${variant}")
        fragment=${conf_dir}/attention/${variant}.yaml
        [ -f "${fragment}" ] || { log "no attention fragment ${fragment}"; exit 1; }
        mkdir -p "${exp}"
        python -m espnet2_mtla.bin.merge_config "${train_config}" "${fragment}" -o "${exp}/train.yaml"
        log "stage 7: training ${exp} (log: ${exp}/train.log)"
        # shellcheck disable=SC2046,SC2086
        threads=1; [ "${ngpu}" -eq 0 ] && threads=${cpu_threads}
        OMP_NUM_THREADS=${threads} ${train_cmd} --gpu "${ngpu}" "${exp}/train.log" \
            python -m espnet2_mtla.bin.train --config "${exp}/train.yaml" ${token_opts} \
            $(data_opts train "${train_set}") $(data_opts valid "${valid_set}") $(feature_opts) \
            --train_shape_file "${expdir}/stats/train/$(shape_of)" \
            --valid_shape_file "${expdir}/stats/valid/$(shape_of)" \
            --resume true --ngpu "${ngpu}" --output_dir "${exp}"
    done
fi

if run_stage 8; then
    for variant in ${attn_confs}; do
        exp=$(exp_of "${variant}")
        for set in ${test_sets}; do
            decode=${exp}/decode_${set}
            logdir=${decode}/logdir
            mkdir -p "${logdir}"
            input=$(input_of "${set}")
            count=$(wc -l < "$(dump_of "${set}")/text")
            jobs=$(( inference_nj < count ? inference_nj : count ))
            utils/split_scp.pl "$(dump_of "${set}")/text" \
                $(for j in $(seq "${jobs}"); do echo "${logdir}/keys.${j}"; done)
            gpu_opts=""
            [ "${gpu_inference}" = true ] && gpu_opts="--gpu 1"
            log "stage 8: decoding ${set} with ${exp} in ${jobs} jobs (logs: ${logdir})"
            # shellcheck disable=SC2086
            ${decode_cmd} ${gpu_opts} JOB=1:"${jobs}" "${logdir}/decode.JOB.log" \
                python -m espnet2_mtla.bin.inference --train_config "${exp}/config.yaml" \
                --model_file "${exp}/${inference_model}" --data_path_and_name_and_type "${input}" \
                --key_file "${logdir}/keys.JOB" --output_dir "${logdir}/output.JOB" \
                --ngpu $([ "${gpu_inference}" = true ] && echo 1 || echo 0) ${inference_args}
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
    log "stage 10: RESULTS.md"
    # shellcheck disable=SC2046
    python -m espnet2_mtla.bin.collect_results --out RESULTS.md \
        $(for variant in ${attn_confs}; do exp_of "${variant}"; done)
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
