#!/usr/bin/env bash
# session 30: does MTLA's byte-level LM gap shrink at the paper's width (d 512, 8 heads, r 256)? (#18)
set -u
G=/tmp/g; mkdir -p $G/lm512
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s ($(date -u +%T))" >> $G/progress.txt; }
[ -x tools/venv/bin/python ] || bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { stamp "env failed"; echo x > $G/DONE; exit 1; }
stamp "env ready"
PY=$PWD/tools/venv/bin/python
nvidia-smi --query-gpu=name,driver_version --format=csv > $G/gpu.txt
env ESPNET2_MTLA_KERNELS=0 $PY bench/lm_probe.py --lists_dir .gpu --steps 2000 --breakdown \
    --d_model 512 --heads 8 --out $G/lm512 --seeds 1 2 --jobs 6 \
    --variants mha mla+rank=256 mtla_s2+rank=256 > $G/lm512/probe.log 2>&1
stamp "lm512 rc=$?"
echo done > $G/DONE
