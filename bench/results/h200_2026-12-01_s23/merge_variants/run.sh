#!/usr/bin/env bash
# session 23, second machine: the merge-weight update variants, decode-step kernels
set -u
G=/tmp/g; mkdir -p $G/bench $G/tests $G/memory
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s" >> $G/progress.txt; }
bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { echo env failed > $G/DONE; exit 1; }
stamp "env ready"
PY=$PWD/tools/venv/bin/python
PYTHONPATH=. $PY bench/merge_update_speed.py > $G/bench/merge_update_speed.log 2>&1
stamp "merge update speed rc=$?"
$PY -m pytest -q -m gpu test/test_kernels.py > $G/tests/gpu_tests_kernels.log 2>&1
stamp "kernel tests rc=$?"
for mode in none one two; do
  MERGE_MODE=$mode $PY -m espnet2_mtla.bin.benchmark --sections generate --generate_shapes 32x1024 \
      --new_tokens 256 --generate_subjects mtla_s1 mtla_s2 mtla_s4 \
      --out $G/bench/generate_1k_$mode > $G/bench/generate_1k_$mode.log 2>&1
  stamp "generate 32x1024 merge $mode rc=$?"
done
for s in 1 2; do
  PYTHONPATH=. $PY bench/profile_generate.py --subject mtla_s$s --shape 32x1024 --prefill_chunk_size 0 \
      --new_tokens 65 --decode_kernels --rows 25 > $G/memory/decode_kernels_mtla_s${s}_32x1024.log 2>&1
  stamp "decode kernels s$s rc=$?"
done
echo done > $G/DONE
