#!/usr/bin/env bash
# Detached master, session 21, third machine: MLA's prefill after a cache through the
# bottom-right causal flash kernel: GPU tests, then generate() at 4 x 32000 and 16 x 8000.
set -u
G=/tmp/g; mkdir -p $G/bench $G/tests
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s" >> $G/progress.txt; }
bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { echo env failed > $G/DONE; exit 1; }
stamp "env ready"
PY=$PWD/tools/venv/bin/python
$PY -m pytest -q -ra -m gpu test/test_hf.py > $G/tests/hf.log 2>&1
stamp "tests hf rc=$?"
$PY -m espnet2_mtla.bin.benchmark --sections generate --generate_shapes 4x32000 \
    --generate_subjects llama llama_static mtla_s1 mtla_s2 mtla_s4 \
    --prefill_chunk_size 2048 --out $G/bench/generate_32k > $G/bench/generate_32k.log 2>&1
stamp "bench generate 4x32000 rc=$?"
$PY -m espnet2_mtla.bin.benchmark --sections generate --generate_shapes 16x8000 \
    --generate_subjects llama llama_static mtla_s1 mtla_s2 mtla_s4 \
    --prefill_chunk_size 2048 --out $G/bench/generate_8k > $G/bench/generate_8k.log 2>&1
stamp "bench generate 16x8000 rc=$?"
echo done > $G/DONE
