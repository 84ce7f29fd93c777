#!/usr/bin/env bash
# The multi-GPU paths of espnet2-mtla, run for real on one node with 2 GPUs, through
# espnet's trainer and the recipe script (bench/ddp_check.py checks the model's DDP alone):
#
#   trainer   espnet2_mtla.bin.train on 1 GPU and with --ngpu 2 (espnet's DDP, NCCL) at the
#             same global batch (fp32, no dropout, loss logged every step), and a
#             checkpoint of each resumed on the other (2 -> 1 and 1 -> 2 GPUs);
#   torchrun  the same training started by torchrun (--multiprocessing_distributed true,
#             env:// init): one launcher per node with --ngpu 2, and two "nodes" of one
#             GPU each (two launchers, --nnodes 2) as on a cluster; and one process per
#             GPU (--nproc_per_node 2 --ngpu 1 --multiprocessing_distributed false);
#   recipe    mtla.sh training with --ngpu 2, then "decode";
#   decode    mtla.sh decoding of exp/mtla_mtla_s2 with --gpu_inference true in 2 jobs (one
#             GPU each, through run.pl) and in 1 job: the merged outputs compared;
#   speed     training throughput of the paper-sized MTLA s=2 model (12-layer encoder,
#             9-layer decoder, d_model 512) on 1 vs 2 GPUs at the same global batch, for
#             each global batch size in SPEED_BATCHES (default "40 200");
#   variants  the same paper-sized model on 1 GPU for each attention fragment in
#             SPEED_VARIANTS (default "mha mtla_s2"), eager and with its decoder layers
#             compiled (SPEED_COMPILE, default "false true": decoder_conf compile), each
#             batch size in SPEED_BATCHES: utterances/s and the ratio to MHA (issue #20).
#
#   bench/multigpu_check.sh <data> <results dir> [parts]
#
# parts: any of trainer torchrun recipe decode speed variants (default: all but decode,
# which recipe includes, and variants). A CPU dry run of the flow: NGPU_SINGLE=0 NGPU_MULTI=0
# DIST_BACKEND=gloo GPU_INFERENCE=false (gloo, no GPUs; speed is too slow there).
#
# <data> holds Kaldi data dirs train/ dev/ test/ (e.g. a subset of mini_en's data/, whose
# wav.scp paths are relative to it); it is copied into the recipe folder
# egs2/mini_en/multigpu_check (created here, next to mini_en's asr1). Logs, the step losses
# side by side and the summary (bench/multigpu_compare.py) go to <results dir>.
set -euo pipefail
data=$(cd "${1:?usage: $0 <data dir> <results dir> [parts]}" && pwd)
results=$(mkdir -p "${2:?usage: $0 <data dir> <results dir> [parts]}" && cd "$2" && pwd)
parts=${3:-trainer torchrun recipe speed}
ngpu_multi=${NGPU_MULTI:-2}
ngpu_single=${NGPU_SINGLE:-1}
backend=${DIST_BACKEND:-nccl}
gpu_inference=${GPU_INFERENCE:-true}

root=$(cd "$(dirname "$0")/.." && pwd)
recipe=${root}/egs2/mini_en/multigpu_check
mkdir -p "${recipe}"
cp -a "${root}"/egs2/mini_en/asr1/{cmd.sh,db.sh,mtla.sh,path.sh,utils,conf} "${recipe}/"
mkdir -p "${recipe}/data"
cp -r -n "${data}/." "${recipe}/data/"  # what is there already is kept
cd "${recipe}"
. ./path.sh
log() { echo "$(date '+%H:%M:%S') multigpu_check: $*" | tee -a "${results}/check.log" >&2; }

recipe_opts=(--task asr --train_set train --valid_set dev --test_sets test
    --train_config conf/train.yaml --conf_dir conf --attn_confs mtla_s2
    --token_type bpe --nbpe 300 --nj 8)
if [ ! -f exp/stats/train/speech_shape ]; then
    log "mtla.sh stages 3-6 (audio, filtering, BPE tokens, statistics)"
    ./mtla.sh "${recipe_opts[@]}" --stage 3 --stop_stage 6 > "${results}/stages3-6.log" 2>&1
fi

data_args=(--token_type bpe --token_list data/token_list/bpe/tokens.txt
    --bpemodel data/token_list/bpe/bpe.model
    --train_data_path_and_name_and_type dump/raw/train/wav.scp,speech,sound
    --train_data_path_and_name_and_type dump/raw/train/text,text,text
    --valid_data_path_and_name_and_type dump/raw/dev/wav.scp,speech,sound
    --valid_data_path_and_name_and_type dump/raw/dev/text,text,text
    --train_shape_file exp/stats/train/speech_shape --valid_shape_file exp/stats/valid/speech_shape
    --dist_backend "${backend}")
mkdir -p exp/check
python -m espnet2_mtla.bin.merge_config conf/train.yaml conf/attention/mtla_s2.yaml \
    -o exp/check/small.yaml
# deterministic steps: no dropout anywhere, fp32 with TF32 off, loss logged every step;
# --min_batch_size 2 as espnet sets it on 2 GPUs, so that 1 GPU sees the same batches
exact=(--config exp/check/small.yaml --min_batch_size 2 --encoder_conf dropout_rate=0.0
    --encoder_conf positional_dropout_rate=0.0 --encoder_conf attention_dropout_rate=0.0
    --decoder_conf dropout=0.0 --log_interval 1 --num_workers 2 --keep_nbest_models 1
    --use_tf32 false)

free_port() {  # a free TCP port for a torchrun master (espnet's helper)
    python -c "from espnet2.train.distributed_utils import free_port; print(free_port())"
}

train() {  # train <name> <log> <options...>: espnet's trainer, output exp/check/<name>
    local name=$1 logfile=$2; shift 2
    log "train ${name}: $*"
    python -m espnet2_mtla.bin.train "${data_args[@]}" "${exact[@]}" \
        --output_dir "exp/check/${name}" "$@" >> "${results}/${logfile}" 2>&1
}

if [[ " ${parts} " == *" trainer "* ]]; then
    train gpu1 gpu1.log --ngpu "${ngpu_single}" --max_epoch 2
    train gpu2_then_1 gpu2_then_1.log --ngpu "${ngpu_multi}" --max_epoch 1
    train gpu2_then_1 gpu2_then_1.log --ngpu "${ngpu_single}" --max_epoch 2 --resume true
    train gpu1_then_2 gpu1_then_2.log --ngpu "${ngpu_single}" --max_epoch 1
    train gpu1_then_2 gpu1_then_2.log --ngpu "${ngpu_multi}" --max_epoch 2 --resume true
fi

if [[ " ${parts} " == *" torchrun "* ]]; then
    log "torchrun, one node: --nproc_per_node 1 ... --ngpu ${ngpu_multi}"
    python -m torch.distributed.run --nnodes 1 --nproc_per_node 1 --master_port "$(free_port)" \
        -m espnet2_mtla.bin.train "${data_args[@]}" "${exact[@]}" --max_epoch 1 \
        --ngpu "${ngpu_multi}" --multiprocessing_distributed true \
        --output_dir exp/check/torchrun_1node > "${results}/torchrun_1node.log" 2>&1
    log "torchrun, two nodes of one GPU each: --nnodes 2 --node_rank 0|1 ... --ngpu ${ngpu_single}"
    port=$(free_port)  # the same on both "nodes"
    for node in 1 0; do  # the same command on each node; here each sees one GPU
        CUDA_VISIBLE_DEVICES=${node} python -m torch.distributed.run --nnodes 2 \
            --node_rank "${node}" --nproc_per_node 1 --master_addr 127.0.0.1 \
            --master_port "${port}" -m espnet2_mtla.bin.train "${data_args[@]}" \
            "${exact[@]}" --max_epoch 1 --ngpu "${ngpu_single}" \
            --multiprocessing_distributed true --output_dir exp/check/torchrun_2nodes \
            > "${results}/torchrun_2nodes.node${node}.log" 2>&1 &
    done
    wait
    log "torchrun, one process per GPU: --ngpu 1 --multiprocessing_distributed false"
    processes=$(( ngpu_multi > 0 ? ngpu_multi : 2 ))
    python -m torch.distributed.run --nnodes 1 --nproc_per_node "${processes}" \
        --master_port "$(free_port)" -m espnet2_mtla.bin.train "${data_args[@]}" \
        "${exact[@]}" --max_epoch 1 --ngpu "${ngpu_single}" --multiprocessing_distributed false \
        --output_dir exp/check/torchrun_per_gpu > "${results}/torchrun_per_gpu.log" 2>&1
fi

if [[ " ${parts} " == *" recipe "* ]]; then
    log "mtla.sh stage 7 with --ngpu ${ngpu_multi}"
    ./mtla.sh "${recipe_opts[@]}" --stage 7 --stop_stage 7 --ngpu "${ngpu_multi}" \
        > "${results}/recipe_train.log" 2>&1
    cp exp/mtla_mtla_s2/train.log "${results}/recipe_train.espnet.log"
fi

if [[ " ${parts} " == *" recipe "* || " ${parts} " == *" decode "* ]]; then
    log "mtla.sh stages 8-9 with --gpu_inference ${gpu_inference}, 2 jobs and 1 job"
    decode_opts=(--inference_args "--beam_size 5 --batch_size 20 --dtype float32")
    for jobs in 2 1; do
        rm -rf exp/mtla_mtla_s2/decode_test
        ./mtla.sh "${recipe_opts[@]}" --stage 8 --stop_stage 9 \
            --gpu_inference "${gpu_inference}" --inference_nj "${jobs}" "${decode_opts[@]}" \
            > "${results}/recipe_decode_nj${jobs}.log" 2>&1
        rm -rf "exp/check/decode_nj${jobs}"
        cp -r exp/mtla_mtla_s2/decode_test "exp/check/decode_nj${jobs}"
    done
fi

# the paper's model and optimiser; utterance-level normalisation (no global stats here),
# AMP; sorted batches of each global size in SPEED_BATCHES (split over the GPUs; sizes that
# divide the training set keep every batch full), SPEED_ITERS steps per epoch (espnet
# cycles through the data), SPEED_EPOCHS epochs (the first warms up CUDA and cuDNN)
paper_opts=(--normalize utterance_mvn --batch_type sorted
    --accum_grad 1 --num_workers 4 --use_amp true --num_iters_per_epoch "${SPEED_ITERS:-10}"
    --max_epoch "${SPEED_EPOCHS:-3}"
    --keep_nbest_models 1 --num_att_plot 0 --scheduler_conf warmup_steps=1000)
if [[ " ${parts} " == *" speed "* ]]; then
    python -m espnet2_mtla.bin.merge_config "${root}/egs2/must_c/st1/conf/train.yaml" \
        "${root}/conf/attention/mtla_s2.yaml" -o exp/check/paper.yaml
    paper=(--config exp/check/paper.yaml "${paper_opts[@]}")
    for batch in ${SPEED_BATCHES:-40 200}; do
        for gpus in "${ngpu_single}" "${ngpu_multi}"; do
            log "speed: paper-sized MTLA s=2, global batch ${batch}, --ngpu ${gpus}"
            python -m espnet2_mtla.bin.train "${data_args[@]}" "${paper[@]}" \
                --batch_size "${batch}" --ngpu "${gpus}" \
                --output_dir "exp/check/paper_b${batch}_gpu${gpus}" \
                > "${results}/paper_b${batch}_gpu${gpus}.log" 2>&1
        done
    done
fi

if [[ " ${parts} " == *" variants "* ]]; then
    for variant in ${SPEED_VARIANTS:-mha mtla_s2}; do
        python -m espnet2_mtla.bin.merge_config "${root}/egs2/must_c/st1/conf/train.yaml" \
            "${root}/conf/attention/${variant}.yaml" -o "exp/check/paper_${variant}.yaml"
        for compile in ${SPEED_COMPILE:-false true}; do
            for batch in ${SPEED_BATCHES:-40 200}; do
                name=variant_${variant}_compile${compile}_b${batch}
                log "variants: paper-sized ${variant}, compile ${compile}, batch ${batch}, --ngpu ${ngpu_single}"
                python -m espnet2_mtla.bin.train "${data_args[@]}" \
                    --config "exp/check/paper_${variant}.yaml" "${paper_opts[@]}" \
                    --decoder_conf "compile=${compile}" --batch_size "${batch}" \
                    --ngpu "${ngpu_single}" --output_dir "exp/check/${name}" \
                    > "${results}/${name}.log" 2>&1
            done
        done
    done
fi

log "comparing"
python "${root}/bench/multigpu_compare.py" --check_dir exp/check --results "${results}" | tee "${results}/summary.md"
