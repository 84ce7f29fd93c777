#!/usr/bin/env bash
# session 30: does MLA in one layer close MTLA's byte-level LM gap? (#18, bench/lm_probe.py +mla_layers)
set -u
G=/tmp/g; mkdir -p $G/lm $G/lm1
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s ($(date -u +%T))" >> $G/progress.txt; }
[ -x tools/venv/bin/python ] || bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { stamp "env failed"; echo x > $G/DONE; exit 1; }
stamp "env ready"
PY=$PWD/tools/venv/bin/python
nvidia-smi --query-gpu=name,driver_version --format=csv > $G/gpu.txt
$PY -c "import torch, transformers; print(torch.__version__, transformers.__version__)" >> $G/gpu.txt
P="env ESPNET2_MTLA_KERNELS=0 $PY bench/lm_probe.py --lists_dir .gpu --steps 4000 --breakdown"
( $P --out $G/lm --seeds 1 2 --jobs 8 --variants mha mtla_s2 mtla_s2+mla_layers=0 mtla_s4+mla_layers=0 \
      > $G/lm/probe.log 2>&1; stamp "lm seeds 1 2 rc=$?" ) &
( $P --out $G/lm1 --seeds 1 --jobs 1 --variants mtla_s2+mla_layers=5 \
      > $G/lm1/probe.log 2>&1; stamp "lm last layer rc=$?" ) &
wait
echo done > $G/DONE
