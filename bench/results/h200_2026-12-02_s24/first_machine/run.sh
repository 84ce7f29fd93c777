#!/usr/bin/env bash
# session 24, machine 1: LM probe with the per-offset latent gain (#18), bytes and BPE,
# a second seed; then the decode kernels of generate() at 4 x 32000 (#24).
set -u
G=/tmp/g; mkdir -p $G/lm $G/lm_seed2 $G/lm_bpe $G/prof
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s ($(date -u +%T))" >> $G/progress.txt; }
bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { stamp "env failed"; echo x > $G/DONE; exit 1; }
stamp "env ready"
PY=$PWD/tools/venv/bin/python
nvidia-smi --query-gpu=name,driver_version --format=csv > $G/gpu.txt
$PY -c "import torch, transformers; print(torch.__version__, transformers.__version__)" >> $G/gpu.txt
git rev-parse HEAD > $G/commit.txt 2>/dev/null; git diff --stat >> $G/commit.txt 2>/dev/null
P="env ESPNET2_MTLA_KERNELS=0 $PY bench/lm_probe.py --lists_dir .gpu --steps 4000"
( $P --out $G/lm --jobs 6 --variants mha mtla_s2 mtla_s2+offset mtla_s2+rank=256+offset \
      mtla_s4 mtla_s4+offset > $G/lm/probe.log 2>&1; stamp "lm bytes rc=$?" ) &
( $P --out $G/lm_seed2 --seed 2 --jobs 2 --variants mha mtla_s2+offset > $G/lm_seed2/probe.log 2>&1
  stamp "lm seed2 rc=$?" ) &
( $P --out $G/lm_bpe --tokens bpe --vocab 2000 --jobs 3 --variants mha mtla_s2 mtla_s2+offset \
      > $G/lm_bpe/probe.log 2>&1; stamp "lm bpe rc=$?" ) &
wait
for s in 1 2; do
  PYTHONPATH=. $PY bench/profile_generate.py --subject mtla_s$s --shape 4x32000 --new_tokens 64 \
      --decode_kernels --rows 25 > $G/prof/mtla_s${s}_4x32000.log 2>&1
  stamp "profile s$s rc=$?"
done
echo done > $G/DONE
