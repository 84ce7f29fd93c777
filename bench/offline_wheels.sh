#!/usr/bin/env bash
# Wheels for bench/offline_env.sh: what the task's imports need beyond a GPU image that has
# torch, numpy, scipy, numba, sentencepiece, tensorboard (the lent H100/H200 image of
# 2026-11, Python 3.12), at the versions of tools/requirements.lock; transformers too, as
# the image's 5.17 is outside the range espnet2_mtla.hf supports. Run where
# PyPI is reachable; ~18 MB.
#
#   bench/offline_wheels.sh <out dir> [python version, default 3.12]
set -euo pipefail
out=${1:?usage: $0 <out dir> [python version]}
python_version=${2:-3.12}
root=$(cd "$(dirname "$0")/.." && pwd)
python=${root}/tools/venv/bin/python
[ -x "${python}" ] || python=python3
pinned() {  # pinned <name>...: name==version of each, from the lock
    for name in "$@"; do
        grep -i -E "^${name}==" "${root}/tools/requirements.lock" \
            || { echo "$0: ${name} is not in tools/requirements.lock" >&2; exit 1; }
    done
}
mkdir -p "${out}"
# compiled: wheels for the target Python
# shellcheck disable=SC2046
"${python}" -m pip download --no-deps --only-binary=:all: --python-version "${python_version}" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 --platform any -d "${out}" \
    $(pinned cffi soxr soundfile pycparser RapidFuzz regex lxml tokenizers safetensors hf-xet)
# pure Python (some only as sdists): built here, any Python 3
# shellcheck disable=SC2046
"${python}" -m pip wheel --no-deps -w "${out}" \
    $(pinned espnet s3prl espnet-g2p-en espnet_tts_frontend librosa kaldiio typeguard \
        humanfriendly hydra-core omegaconf antlr4-python3-runtime torch-complex jaconv jamo \
        inflect jaraco.functools more-itertools nltk Unidecode decorator defusedxml pooch \
        platformdirs wcwidth audioread ConfigArgParse jiwer click rouge_score absl-py six \
        sacrebleu portalocker tabulate colorama transformers huggingface_hub httpx2 httpcore2 h11 truststore \
        anyio idna typer shellingham annotated-doc)
ls "${out}"
