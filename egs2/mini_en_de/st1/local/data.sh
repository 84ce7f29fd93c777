#!/usr/bin/env bash
# Builds data/{train,dev,test} of mini_en_de: English speech (espeak-ng) of gettext messages -> German (see local/README.md).
# Options go to espnet2_mtla.bin.make_mini_corpus st (e.g. --num_train N --seed S).
set -euo pipefail
. ./path.sh
if [ "$(cat data/.done 2> /dev/null)" = "st $*" ] && [ -f data/test/text ]; then
    echo "local/data.sh: data/ built already with options '$*'" >&2; exit 0
fi
python -m espnet2_mtla.bin.make_mini_corpus st --out data  "$@"
echo "st $*" > data/.done
