#!/usr/bin/env bash
# Detached master, session 22, second machine: the strided prefill with the blind rows
# kept from the kernels, float32 products gone: GPU tests, memory and prefill kernels,
# then generate() at 16 x 8000 and 4 x 32000.
set -u
G=/tmp/g; mkdir -p $G/bench $G/tests $G/memory
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s" >> $G/progress.txt; }
bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { echo env failed > $G/DONE; exit 1; }
stamp "env ready"
PY=$PWD/tools/venv/bin/python
$PY -m pytest -q -ra -m gpu test/test_attention_incremental.py > $G/tests/strided.log 2>&1
stamp "tests strided rc=$?"
$PY -m pytest -q -ra -m gpu test/test_hf.py > $G/tests/hf.log 2>&1
stamp "tests hf rc=$?"
for s in 1 2 4; do
  PYTHONPATH=. $PY bench/profile_generate.py --subject mtla_s$s --shape 16x8000 \
      > $G/memory/mtla_s${s}_16x8000.log 2>&1
  stamp "memory s$s rc=$?"
done
for s in 2 4; do
  PYTHONPATH=. $PY bench/profile_generate.py --subject mtla_s$s --shape 4x32000 --kernels \
      > $G/memory/mtla_s${s}_4x32000.log 2>&1
  stamp "memory+kernels s$s 32k rc=$?"
done
$PY -m espnet2_mtla.bin.benchmark --sections generate --generate_shapes 16x8000 \
    --generate_subjects llama llama_static mtla_s1 mtla_s2 mtla_s4 \
    --prefill_chunk_size 2048 --out $G/bench/generate_8k > $G/bench/generate_8k.log 2>&1
stamp "bench generate 16x8000 rc=$?"
$PY -m espnet2_mtla.bin.benchmark --sections generate --generate_shapes 4x32000 \
    --generate_subjects llama llama_static mtla_s1 mtla_s2 mtla_s4 \
    --prefill_chunk_size 2048 --out $G/bench/generate_32k > $G/bench/generate_32k.log 2>&1
stamp "bench generate 4x32000 rc=$?"
echo done > $G/DONE
