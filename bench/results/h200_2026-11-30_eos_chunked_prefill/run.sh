#!/usr/bin/env bash
# Detached master, session 15, second call (one H200): the late-recapture GPU test on the
# unmended and the mended cuda_graph.py; #23's EOS-terminated beam; #24's generate with
# Transformers' chunked prefill; the peak-memory order effect (allocated_at_start).
set -u
G=/tmp/g; mkdir -p $G/bench $G/tests
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s" >> $G/progress.txt; }
. bench/gpu_recipe_env.sh .gpu > $G/env.log 2>&1 || { echo env failed > $G/DONE; exit 1; }
stamp "env ready"
nvidia-smi > $G/nvidia-smi.txt
PY=$PWD/tools/venv/bin/python
cp espnet2_mtla/inference/cuda_graph.py /tmp/mended_cuda_graph.py
cp .gpu/old_cuda_graph.py espnet2_mtla/inference/cuda_graph.py
$PY -m pytest -q -ra test/test_cuda_graph.py -k last_step > $G/tests/unmended.log 2>&1
stamp "test on the unmended file rc=$?"
cp /tmp/mended_cuda_graph.py espnet2_mtla/inference/cuda_graph.py
$PY -m pytest -q -ra test/test_cuda_graph.py > $G/tests/mended.log 2>&1
stamp "test_cuda_graph on the mended file rc=$?"
$PY -m espnet2_mtla.bin.benchmark --sections beam --eos_terminated \
    --variants mha mtla_s2 mtla_s4 --compare_graphs --beams 10 --utterances 128 --output_len 200 \
    --out $G/bench/eos > $G/bench/eos.log 2>&1
stamp "bench eos rc=$?"
$PY -m espnet2_mtla.bin.benchmark --sections generate --generate_shapes 16x8000 4x32000 \
    --prefill_chunk_size 0 2048 --out $G/bench/generate > $G/bench/generate.log 2>&1
stamp "bench generate rc=$?"
$PY -m espnet2_mtla.bin.benchmark --sections decode beam --variants mtla_s2 --compare_graphs \
    --out $G/bench/order_decode_beam > $G/bench/order_decode_beam.log 2>&1
stamp "bench decode+beam rc=$?"
$PY -m espnet2_mtla.bin.benchmark --sections beam --variants mtla_s2 --compare_graphs \
    --out $G/bench/order_beam > $G/bench/order_beam.log 2>&1
stamp "bench beam alone rc=$?"
echo done > $G/DONE
