#!/usr/bin/env bash
# session 24, machine 3: the LM probe's second seed for the plain and offset-gain variants (#18)
set -u
G=/tmp/g; mkdir -p $G/lm_seed2
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s ($(date -u +%T))" >> $G/progress.txt; }
bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { stamp "env failed"; echo x > $G/DONE; exit 1; }
stamp "env ready"
PY=$PWD/tools/venv/bin/python
env ESPNET2_MTLA_KERNELS=0 $PY bench/lm_probe.py --lists_dir .gpu --steps 4000 --out $G/lm_seed2 \
    --seed 2 --jobs 3 --variants mtla_s2 mtla_s4 mtla_s4+offset > $G/lm_seed2/probe.log 2>&1
stamp "lm seed2 rc=$?"
echo done > $G/DONE
