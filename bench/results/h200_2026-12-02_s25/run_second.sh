#!/usr/bin/env bash
# session 25, second call: after stopping mini_en_de, the LM probe at 8,000 steps for
# seeds 2 and 3 and at 4,000 steps for seed 4 (#18)
G=/tmp/g; start=$(date +%s); PY=$PWD/tools/venv/bin/python
stamp() { echo "$1 at $(( $(date +%s) - start )) s ($(date -u +%T))" >> $G/progress.txt; }
P="env ESPNET2_MTLA_KERNELS=0 $PY bench/lm_probe.py --lists_dir .gpu"
mkdir -p $G/lm_8k23 $G/lm_seed4
( $P --steps 8000 --out $G/lm_8k23 --seeds 2 3 --jobs 4 --variants mha mtla_s2 > $G/lm_8k23/probe.log 2>&1; stamp "lm 8k23 rc=$?" ) &
( $P --steps 4000 --out $G/lm_seed4 --seeds 4 --jobs 2 --variants mha mtla_s2 > $G/lm_seed4/probe.log 2>&1; stamp "lm seed4 rc=$?" ) &
wait; echo done > $G/DONE2
