#!/usr/bin/env bash
# Builds data/{train,dev,test} of mini_en: sentences of Debian package descriptions spoken by espeak-ng (see local/README.md).
# Options go to espnet2_mtla.bin.make_mini_corpus asr (e.g. --num_train N --seed S).
set -euo pipefail
. ./path.sh
if [ "$(cat data/.done 2> /dev/null)" = "asr $*" ] && [ -f data/test/text ]; then
    echo "local/data.sh: data/ built already with options '$*'" >&2; exit 0
fi
python -m espnet2_mtla.bin.make_mini_corpus asr --out data  "$@"
echo "asr $*" > data/.done
