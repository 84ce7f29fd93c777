#!/usr/bin/env bash
# session 27: the LM probe's window of unmerged recent latents (+prev=N) at full size (#18)
set -u
G=/tmp/g; mkdir -p $G/lm $G/lm_s34 $G/lm_bpe
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s ($(date -u +%T))" >> $G/progress.txt; }
bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { stamp "env failed"; echo x > $G/DONE; exit 1; }
stamp "env ready"
PY=$PWD/tools/venv/bin/python
nvidia-smi --query-gpu=name,driver_version --format=csv > $G/gpu.txt
$PY -c "import torch, transformers; print(torch.__version__, transformers.__version__)" >> $G/gpu.txt
git rev-parse HEAD > $G/commit.txt 2>/dev/null
P="env ESPNET2_MTLA_KERNELS=0 $PY bench/lm_probe.py --lists_dir .gpu --steps 4000"
( $P --out $G/lm --seeds 1 2 --jobs 7 --variants mtla_s2+prev=4 mla+prev=4 mtla_s2+prev=2 mtla_s4+prev=4 \
      > $G/lm/probe.log 2>&1; stamp "lm seeds 1 2 rc=$?" ) &
( $P --out $G/lm_s34 --seeds 3 4 --jobs 2 --variants mtla_s2+prev=4 \
      > $G/lm_s34/probe.log 2>&1; stamp "lm seeds 3 4 rc=$?" ) &
( $P --out $G/lm_bpe --tokens bpe --vocab 2000 --seeds 1 --jobs 1 --variants mtla_s2+prev=4 \
      > $G/lm_bpe/probe.log 2>&1; stamp "lm bpe rc=$?" ) &
wait
echo done > $G/DONE
