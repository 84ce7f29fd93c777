#!/usr/bin/env bash
# session 31 (second call): merge-weight ablations of the list (#18): per-channel weights, the
# hyper-network's position encoding, RMS-normalised merged latents (bench/lm_probe.py)
set -u
G=/tmp/g; mkdir -p $G/lm
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s ($(date -u +%T))" >> $G/progress.txt; }
[ -x tools/venv/bin/python ] || bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { stamp "env failed"; echo x > $G/DONE; exit 1; }
stamp "env ready"
PY=$PWD/tools/venv/bin/python
nvidia-smi --query-gpu=name,driver_version --format=csv > $G/gpu.txt
$PY -c "import torch, transformers; print(torch.__version__, transformers.__version__)" >> $G/gpu.txt
cp .gpu/run31b.sh $G/
P="env ESPNET2_MTLA_KERNELS=0 $PY bench/lm_probe.py --lists_dir .gpu --steps 4000 --breakdown"
$P --out $G/lm --seeds 1 2 --jobs 4 --variants mtla_s2 mtla_s2+merge=channel > $G/lm/probe.log 2>&1
stamp "lm rc=$?"
echo done > $G/DONE
