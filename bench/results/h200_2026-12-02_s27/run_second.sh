#!/usr/bin/env bash
# session 27, second machine: generate() at 4 x 32000 with 512 new tokens, s = 1, 2, 4, two
# passes in opposite orders, to measure the decode step against run-to-run spread (#24)
set -u
G=/tmp/g; mkdir -p $G
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s ($(date -u +%T))" >> $G/progress.txt; }
[ -x tools/venv/bin/python ] || bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { stamp "env failed"; exit 1; }
stamp "env ready"
PY=$PWD/tools/venv/bin/python
nvidia-smi --query-gpu=name,driver_version --format=csv > $G/gpu.txt
$PY -c "import torch, transformers; print(torch.__version__, transformers.__version__)" >> $G/gpu.txt
B="timeout 170 $PY -m espnet2_mtla.bin.benchmark --sections generate --generate_shapes 4x32000 --prefill_chunk_size 2048 --new_tokens 512 --generate_repeats 5"
$B --generate_subjects mtla_s1 mtla_s2 mtla_s4 --out $G/gen_a > $G/gen_a.log 2>&1; stamp "pass a rc=$?"
$B --generate_subjects mtla_s4 mtla_s2 mtla_s1 --out $G/gen_b > $G/gen_b.log 2>&1; stamp "pass b rc=$?"
