#!/usr/bin/env bash
# Detached master, session 22, fourth machine: MLA's prefill keys from one buffer too:
# GPU tests, memory at the peak, generate() of the LlamaMTLA subjects at the long shapes.
set -u
G=/tmp/g; mkdir -p $G/bench $G/tests $G/memory
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s" >> $G/progress.txt; }
bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { echo env failed > $G/DONE; exit 1; }
stamp "env ready"
PY=$PWD/tools/venv/bin/python
$PY -m pytest -q -ra -m gpu test/test_attention_incremental.py > $G/tests/attention.log 2>&1
stamp "tests attention rc=$?"
$PY -m pytest -q -ra -m gpu test/test_hf.py > $G/tests/hf.log 2>&1
stamp "tests hf rc=$?"
PYTHONPATH=. $PY bench/profile_generate.py --subject mtla_s1 --shape 16x8000 \
    > $G/memory/mtla_s1_16x8000.log 2>&1
stamp "memory s1 rc=$?"
$PY -m espnet2_mtla.bin.benchmark --sections generate --generate_shapes 16x8000 4x32000 \
    --generate_subjects mtla_s1 mtla_s2 mtla_s4 \
    --prefill_chunk_size 2048 --out $G/bench/generate_long > $G/bench/generate_long.log 2>&1
stamp "bench generate long rc=$?"
echo done > $G/DONE
