#!/usr/bin/env bash
# Detached master, session 22, third machine: generate() at 32 x 1024 (256 new tokens)
# with every subject, and a second run of the LlamaMTLA subjects at the long shapes.
set -u
G=/tmp/g; mkdir -p $G/bench
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s" >> $G/progress.txt; }
bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { echo env failed > $G/DONE; exit 1; }
stamp "env ready"
PY=$PWD/tools/venv/bin/python
$PY -m espnet2_mtla.bin.benchmark --sections generate --generate_shapes 16x8000 4x32000 \
    --generate_subjects mtla_s1 mtla_s2 mtla_s4 \
    --prefill_chunk_size 2048 --out $G/bench/generate_long_again > $G/bench/generate_long_again.log 2>&1
stamp "bench generate long again rc=$?"
$PY -m espnet2_mtla.bin.benchmark --sections generate --generate_shapes 32x1024 --new_tokens 256 \
    --generate_subjects llama llama_static mtla_s1 mtla_s2 mtla_s4 \
    --out $G/bench/generate_1k > $G/bench/generate_1k.log 2>&1
stamp "bench generate 32x1024 rc=$?"
echo done > $G/DONE
